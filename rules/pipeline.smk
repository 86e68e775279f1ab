# The pipeline's stages, in data-flow order; also the module each ablation variant runs.


include: "common.smk"
include: "data.smk"
include: "weights.smk"
include: "augment.smk"
include: "train.smk"
include: "predict.smk"
include: "evaluate.smk"
