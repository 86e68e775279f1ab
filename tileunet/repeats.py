"""Repeated training runs: the test summaries of several seeds per variant, as mean ± sd.

One training of twelve small frames is one draw from a wide distribution
(instance F1 of one configuration has moved by 0.3 between runs), so a
number worth reporting is the mean over seeds with its standard deviation,
next to every seed's own row; never the best run.  The seeds of an
ensemble's members (:func:`member_seed`) are kept apart from the runs' own.
"""

import numpy as np

from .errors import InputError

#: Test-summary columns compared across runs.
KEYS = ("iou", "dice", "f1", "precision", "recall", "merges", "splits", "rand_error")


#: Ensemble member k of the run with seed s trains with seed s + SEED_STRIDE * k (train.ensemble):
#: distinct from the seeds s + 1, s + 2, ... of the repeated runs while repeat.runs < SEED_STRIDE.
SEED_STRIDE = 1000


def member_seed(seed, member):
    """Training seed of ensemble member ``member`` (0-based) of the run with seed ``seed``; member 0 keeps it."""
    return int(seed) + SEED_STRIDE * int(member)


def select_variants(variants, names, where="the configuration"):
    """The ablation variants to train: those named, in that order, or all of them if none are.

    Parameters
    ----------
    variants : dict
        Variant name -> config section overrides, as in ``config/ablation.yaml``.
    names : list of str
        ``repeat.variants``; empty means every variant.
    where : str
        The config file that set ``names``, for the message.

    Returns
    -------
    dict

    Examples
    --------
    >>> select_variants({"a": {}, "b": {"train": {"ema": 0.0}}}, ["b"])
    {'b': {'train': {'ema': 0.0}}}
    """
    unknown = [n for n in names if n not in variants]
    if unknown:
        raise InputError(where, f"repeat.variants names {unknown}, which config/ablation.yaml does not define",
                         f"choose from {sorted(variants)}, or leave repeat.variants empty for all of them")
    return dict(variants) if not names else {n: variants[n] for n in dict.fromkeys(names)}


def per_run(runs, keys=KEYS):
    """One row per run: variant, seed and each key of its test summary.

    Parameters
    ----------
    runs : list of (str, int, dict)
        (variant, seed, :func:`tileunet.metrics.read_summary` row).
    keys : sequence of str

    Returns
    -------
    list of dict
    """
    return [{"variant": v, "seed": s, **{k: summary.get(k, float("nan")) for k in keys}} for v, s, summary in runs]


def per_variant(runs, keys=KEYS):
    """Mean and sample standard deviation (ddof 1) over the seeds of each variant, in first-seen order.

    Parameters
    ----------
    runs : list of (str, int, dict)
        As :func:`per_run`.
    keys : sequence of str

    Returns
    -------
    list of dict
        ``variant``, ``runs``, then ``{key}_mean`` and ``{key}_sd`` per key
        (sd NaN for a single run).

    Examples
    --------
    >>> rows = per_variant([("a", 0, {"f1": 0.8}), ("a", 1, {"f1": 0.9})], keys=("f1",))
    >>> rows[0]["runs"], round(rows[0]["f1_mean"], 3), round(rows[0]["f1_sd"], 4)
    (2, 0.85, 0.0707)
    """
    rows = per_run(runs, keys)
    out = []
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        row = {"variant": variant, "runs": len(mine)}
        for k in keys:
            values = np.array([r[k] for r in mine], dtype=float)
            row[f"{k}_mean"] = float(np.mean(values))
            row[f"{k}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
        out.append(row)
    return out


def mean_sd_text(row, keys=KEYS, digits=3):
    """A :func:`per_variant` row with each key as one ``"mean ± sd"`` string (for the report's table)."""
    out = {"variant": row["variant"], "runs": row["runs"]}
    for k in keys:
        mean, sd = row[f"{k}_mean"], row[f"{k}_sd"]
        out[k] = f"{mean:.{digits}f}" + ("" if np.isnan(sd) else f" ± {sd:.{digits}f}")
    return out
