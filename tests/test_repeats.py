"""Repeated runs: mean ± sd per variant, every seed's row, and the comparison script."""

import csv
from types import SimpleNamespace

import matplotlib.image
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tileunet import metrics, repeats


def test_mean_and_sample_sd_per_variant_in_first_seen_order():
    runs = [("b", 0, {"f1": 0.5, "iou": 0.7}), ("a", 0, {"f1": 0.9, "iou": 0.8}), ("b", 1, {"f1": 0.7, "iou": 0.9})]
    rows = repeats.per_variant(runs, keys=("f1", "iou"))
    assert [r["variant"] for r in rows] == ["b", "a"] and [r["runs"] for r in rows] == [2, 1]
    assert rows[0]["f1_mean"] == pytest.approx(0.6) and rows[0]["f1_sd"] == pytest.approx(np.sqrt(0.02))
    assert np.isnan(rows[1]["f1_sd"])
    assert repeats.mean_sd_text(rows[0], keys=("f1",))["f1"] == "0.600 ± 0.141"
    assert repeats.mean_sd_text(rows[1], keys=("f1",))["f1"] == "0.900"


def test_compare_runs_script_writes_seeds_and_summary(tmp_path, run_script):
    paths, variants, seeds = [], [], []
    for variant, values in (("main", (0.8, 0.9, 0.85)), ("none", (0.5, 0.6, 0.7))):
        for seed, f1 in enumerate(values):
            rows = [{"sample": "a", "plane": 0, "iou": f1 - 0.1, "f1": f1, "merges": seed}]
            paths.append(tmp_path / variant / str(seed) / "metrics.tsv")
            metrics.write_tsv(rows + [{"sample": "summary", "plane": "", **metrics.summarize(rows)}], paths[-1])
            variants.append(variant)
            seeds.append(seed)
    out = tmp_path / "out"
    run_script("compare_runs.py", input=SimpleNamespace(metrics=[str(p) for p in paths]), log=[str(tmp_path / "c.log")],
               params=SimpleNamespace(variants=variants, seeds=seeds, title="Runs"),
               output=SimpleNamespace(runs=str(out / "runs.tsv"), table=str(out / "summary.tsv"),
                                      html=str(out / "summary.html"), figure=str(out / "summary.png")))
    with open(out / "summary.tsv") as fh:
        table = list(csv.DictReader(fh, delimiter="\t"))
    assert [r["variant"] for r in table] == ["main", "none"] and table[0]["runs"] == "3"
    assert float(table[0]["f1_mean"]) == pytest.approx(0.85) and float(table[1]["f1_sd"]) == pytest.approx(0.1)
    with open(out / "runs.tsv") as fh:
        assert len(list(csv.DictReader(fh, delimiter="\t"))) == 6
    html = (out / "summary.html").read_text()
    assert "0.850 ± 0.050" in html and "<td>none</td>" in html
    assert matplotlib.image.imread(out / "summary.png").shape[0] > 100


def test_comparison_figure_draws_the_mean_per_variant_and_every_seed():
    from tileunet.plots.evaluate import comparison_figure

    runs = [("full", 0, {"iou": 0.9, "merges": 1}), ("full", 1, {"iou": 0.8, "merges": 3}),
            ("none", 0, {"iou": 0.85, "merges": 6})]
    fig = comparison_figure(runs, keys=("iou", "merges"))
    assert [ax.get_title().split()[0] for ax in fig.axes] == ["iou", "merges"]
    assert [b.get_height() for b in fig.axes[1].patches] == [2, 6]
    dots = [line.get_ydata().tolist() for line in fig.axes[1].lines if line.get_marker() == "."]
    assert dots == [[1, 3], [6]]


def test_ablation_variants_are_chosen_by_name_or_all_and_unknown_ones_refused():
    variants = {"a": {"train": {"ema": 0.0}}, "b": {}, "c": {}}
    assert repeats.select_variants(variants, []) == variants
    assert list(repeats.select_variants(variants, ["c", "a", "c"])) == ["c", "a"]
    with pytest.raises(repeats.InputError, match=r"r.yaml: repeat.variants names \['z'\].*Fix: choose from \['a', 'b', 'c'\]"):
        repeats.select_variants(variants, ["a", "z"], "r.yaml")


@given(seed=st.integers(0, 10**6), runs=st.integers(1, repeats.SEED_STRIDE - 1), members=st.integers(1, 8))
def test_member_seeds_are_distinct_across_the_members_of_every_repeated_run(seed, runs, members):
    """Member k of run seed + i trains with seed + i + 1000 k: no two trainings of `repeat` share a seed."""
    used = [repeats.member_seed(seed + i, k) for i in range(runs) for k in range(members)]
    assert len(set(used)) == len(used) and repeats.member_seed(seed, 0) == seed
