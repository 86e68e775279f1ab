# tileunet: the U-Net paper's training strategy (Ronneberger et al. 2015) as a workflow.
# Targets: ingest weights augment train predict evaluate all (default: all), repeat (the
# main configuration over repeat.runs seeds) and ablation (config/ablation.yaml's variants,
# each over the same seeds).
from snakemake.utils import min_version

min_version("9.0.1")


# The workflow's own config (beside this file, not in the working directory), under any --configfile.
configfile: f"{workflow.basedir}/config/config.yaml"


include: "rules/pipeline.smk"
include: "rules/ablation.smk"


check_samples()


rule all:
    input:
        rules.evaluate.input,
        rules.predict.input,
    default_target: True
    localrule: True


report: "report/workflow.rst"
