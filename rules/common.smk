# Config validation, the sample table and input functions; no rules here.
import copy
import os
import sys
from pathlib import Path

import yaml

from snakemake.utils import validate

# The tileunet package ships beside the Snakefile: importable here and, through
# PYTHONPATH, in every script job (local, conda env or cluster) without installing it.
sys.path.insert(0, workflow.basedir)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])))

from tileunet.preflight import check_config, check_sample_files, check_tile_sizes  # noqa: E402
from tileunet.config import config_layers, member_train_config as _member_train_config  # noqa: E402
from tileunet.samples import read_sample_table  # noqa: E402
from tileunet.repeats import member_seed  # noqa: E402

# Everything checkable is checked here, before the first job, and refused with the file, the
# problem and the fix. The layers of this run's configuration, lowest first (config/README.md):
# the workflow's config/config.yaml, the --configfile files, --config; the schema's defaults under all.
CONFIG_LAYERS = config_layers(workflow.config_settings.configfiles, workflow.config_settings.config,
                              f"{workflow.basedir}/config/config.yaml")
check_config(config, CONFIG_LAYERS)  # unknown keys, types, ranges: naming the file that set them
validate(config, workflow.source_path("../config/schema.yaml"))  # fills in the schema's defaults
check_tile_sizes(config, CONFIG_LAYERS)  # train.tile_size, predict.tile against model.depth / padding

SAMPLES = read_sample_table(config["samples"])


def check_samples():
    """Every file of the sample table exists, is readable and has a layout tileunet reads.

    Called by the Snakefile after its includes, so that the files that the workflow writes
    itself (the demo's frames) are known and left to the job that reads them.
    """
    check_sample_files(SAMPLES, config["samples"], lambda path: any(r.is_producer(path) for r in workflow.rules),
                       config["ingest"]["channels"], config["predict"]["level"])


def samples_of(*splits):
    """Sample names of the given splits, in table order."""
    return [s.name for s in SAMPLES.values() if s.split in splits]


def data_array(name, samples):
    """The zarr.json of array `name` in results/data/{sample}.zarr for each sample."""
    return [f"results/data/{s}.zarr/{name}/zarr.json" for s in samples]


def group_of(array_json):
    """results/data/{sample}.zarr from .../{sample}.zarr/{array}/zarr.json.

    Paths in params are derived from inputs and outputs this way, so that the
    ablation modules' replace_prefix (which rewrites inputs and outputs, not
    params) moves them too.
    """
    return str(Path(array_json).parent.parent)


def predictions(samples):
    """The root zarr.json of results/predictions/{sample}.ome.zarr for each sample.

    The store is the folder; its zarr.json is the declared output rather than directory(),
    for which Snakemake writes a .snakemake_timestamp into the store that zarr warns about
    whenever the prediction is opened.
    """
    return [f"results/predictions/{s}.ome.zarr/zarr.json" for s in samples]


def predict_work(wildcards, output):
    """A slide's resumable prediction work folder, beside its store (not an output itself).

    output[0] is the store's zarr.json, or a scatter-gather marker in .{sample}.parts/.
    """
    return str(Path(output[0]).parent.parent / f".{wildcards.sample}.partial")


def input_level(wildcards):
    """The resolution level a slide is predicted at: predict.level for split predict, 0 for test images."""
    return SAMPLES[wildcards.sample].level(config["predict"]["level"])


def get_source(kind):
    """Input function: the image or labels file a sample table row names."""
    return lambda wc: getattr(SAMPLES[wc.sample], kind)


def class_frequencies_input():
    """Dataset-wide class frequencies, needed only for weights.frequency_scope == dataset."""
    if config["weights"]["frequency_scope"] == "dataset":
        return "results/weights/class_frequencies.json"
    return []


def ensemble_members():
    """Member ids 0..N-1 of a `train.ensemble: N > 1` run; empty for one network (train_model trains it)."""
    n = config["train"]["ensemble"]
    return list(range(n)) if n > 1 else []


def training_outputs(member=False):
    """model.pt, metrics TSV and loss curve of the trained model, or of one ensemble {member}."""
    model, train = ("results/train/members/{member}/",) * 2 if member else ("results/model/", "results/train/")
    return dict(model=model + "model.pt", metrics=train + "metrics.tsv",
                curve=report(train + "loss.png", caption="../report/train_curve.rst", category="3. Training"))


def training_path(folder, suffix, member=False):
    """Log or benchmark file of the trained model (folder/train{suffix}) or of one ensemble {member}."""
    return folder + ("train/member{member}" if member else "train") + suffix


def training_seed(member=False):
    """The seed of the trained model, or an input function of {member} for an ensemble member."""
    seed = config["seed"]
    return (lambda wildcards: member_seed(seed, wildcards.member)) if member else seed


def member_train_config(member=False):
    """The train section one network, or one ensemble member, trains with (:func:`tileunet.config.member_train_config`)."""
    return _member_train_config(config, member)


def _stage_resources(kind):
    """mem_mb and runtime (minutes) of a stage kind; runtime grows with each retry."""
    res = config["resources"][kind]
    return dict(mem_mb=res["mem_mb"], runtime=lambda wildcards, attempt: res["runtime"] * attempt)


def gpu_resources():
    """Resources of train and predict; gpu=1 only when a CUDA device is configured."""
    res = _stage_resources("gpu")
    if "cuda" in (config["train"]["device"], config["predict"]["device"]):
        res["gpu"] = 1
    return res


def cpu_resources():
    """Resources of the CPU stages (ingest, weights, augment, evaluate)."""
    return _stage_resources("cpu")


# conda environments (envs/*.yaml; paths are relative to rules/, where every rule lives).
# CPU: pytorch-cpu, never a CUDA build. CUDA: pytorch-gpu with a cuda-version it was built
# for; needs an NVIDIA driver (conda's __cuda virtual package) to solve. AUTO: plain pytorch,
# which conda-forge builds for CPU and CUDA and gives the CUDA builds a higher build number,
# so the solver takes a CUDA build where a driver is present and the CPU build (MPS on
# Apple silicon) everywhere else: it solves on every machine.
CONDA_ENVS = {"cpu": "../envs/tileunet-cpu.yaml", "cuda": "../envs/tileunet-cuda.yaml",
              "auto": "../envs/tileunet.yaml", "mps": "../envs/tileunet.yaml"}


def conda_env(stage):
    """The conda env file of a rule: `cpu` for CPU stages, else the env of train/predict.device.

    Parameters
    ----------
    stage : {"cpu", "train", "predict"}
        "cpu" for rules that never use a GPU (ingest ... evaluate, and the prepare/gather
        steps of scatter-gather prediction); "train" / "predict" follow the configured device.

    Returns
    -------
    str
        Path of an envs/*.yaml, relative to rules/.
    """
    if stage == "cpu":
        return CONDA_ENVS["cpu"]
    return CONDA_ENVS[str(config[stage]["device"]).split(":")[0]]


def normalization():
    """The intensity normalisation ingest applied, stored in model.pt for inference."""
    return {"method": "percentile", "low": config["ingest"]["normalize_low"],
            "high": config["ingest"]["normalize_high"]}


wildcard_constraints:
    sample=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    part=r"\d+",
    member=r"\d+",
