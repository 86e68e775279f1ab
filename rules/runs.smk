# Helpers of the repeated runs (ablation.smk): seeds, prefixes and configs; no rules.
import copy

from tileunet.config import source_of
from tileunet.repeats import select_variants

with open(workflow.source_path("../config/ablation.yaml")) as fh:
    ABLATION_VARIANTS = yaml.safe_load(fh)
ABLATION = select_variants(ABLATION_VARIANTS, config["repeat"]["variants"], source_of("repeat.variants", CONFIG_LAYERS))


def repeat_seeds():
    """Seeds of the repeated runs: the main seed, then seed + 1, ... (repeat.runs in all)."""
    return [config["seed"] + i for i in range(config["repeat"]["runs"])]


def run_prefix(variant, seed):
    """Where a run writes: results/ for the main run itself, else under repeat/ or ablation/."""
    if variant == "main":
        return "results/" if seed == config["seed"] else f"results/repeat/seed{seed}/"
    return f"results/ablation/{variant}/seed{seed}/"


def run_config(variant, seed):
    """The main configuration with the seed and a variant's section overrides."""
    cfg = copy.deepcopy(config)
    for section, values in ({} if variant == "main" else ABLATION_VARIANTS[variant]).items():
        cfg[section].update(values)
    cfg["seed"] = seed
    return cfg


def repeated_runs():
    """(module name, rule-name prefix, config, results prefix) of every run but the main one."""
    runs = [("main", s) for s in repeat_seeds()[1:]] + [(v, s) for v in ABLATION for s in repeat_seeds()]
    return [(f"{v}_seed{s}", f"{v}_seed{s}_", run_config(v, s), run_prefix(v, s)) for v, s in runs]


def run_metrics(variants):
    """The test metrics TSV of every seed of every variant, with the variant and seed of each."""
    runs = [(v, s) for v in variants for s in repeat_seeds()]
    return {"metrics": [run_prefix(v, s) + "evaluation/metrics.tsv" for v, s in runs],
            "variants": [v for v, _ in runs], "seeds": [s for _, s in runs]}
