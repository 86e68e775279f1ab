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

from tileunet.samples import read_sample_table  # noqa: E402

validate(config, workflow.source_path("../config/schema.yaml"))

SAMPLES = read_sample_table(config["samples"])


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


def predict_work(wildcards, output):
    """A slide's resumable prediction work folder, beside its output (not an output itself)."""
    folder = Path(output[0]).parent
    if folder.name.endswith(".parts"):  # a scatter-gather marker
        folder = folder.parent
    return str(folder / f".{wildcards.sample}.partial")


def get_source(kind):
    """Input function: the image or labels file a sample table row names."""
    return lambda wc: getattr(SAMPLES[wc.sample], kind)


def class_frequencies_input():
    """Dataset-wide class frequencies, needed only for weights.frequency_scope == dataset."""
    if config["weights"]["frequency_scope"] == "dataset":
        return "results/weights/class_frequencies.json"
    return []


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


def normalization():
    """The intensity normalisation ingest applied, stored in model.pt for inference."""
    return {"method": "percentile", "low": config["ingest"]["normalize_low"],
            "high": config["ingest"]["normalize_high"]}


wildcard_constraints:
    sample=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    part=r"\d+",


with open(workflow.source_path("../config/ablation.yaml")) as fh:
    ABLATION = yaml.safe_load(fh)


def variant_config(overrides):
    """The main configuration with an ablation variant's `weights` overrides."""
    cfg = copy.deepcopy(config)
    cfg["weights"].update(overrides)
    return cfg


def main_run_name():
    """How the main run appears in the ablation comparison: its own weight settings."""
    w = config["weights"]
    return f"main: w_c={w['class_balance']}, border={'on' if w['border_term'] else 'off'}"
