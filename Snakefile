# tileunet: the U-Net paper's training strategy (Ronneberger et al. 2015) as a workflow.
# Targets: ingest weights augment train predict evaluate all (default all).
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/weights.smk"
include: "rules/augment.smk"
include: "rules/train.smk"
include: "rules/predict.smk"
include: "rules/evaluate.smk"


report: "report/workflow.rst"


rule all:
    input:
        rules.evaluate.input,
        rules.predict.input,
    default_target: True
