"""What the augmented-copy tie break decides on a trained run, and what it costs.

On one run's delivered ``model.pt`` (the checkpoint choice does not depend
on the tie break), the post-processing is tuned on the validation frames
twice: with ties left to grid order (``train.tune.copies: 0``, the baseline)
and broken on the augmented copies (the config's ``train.tune.copies``).
Both searches are made on the maps the delivered weights' search uses
(8-pass with ``train.tune.tta``, which follows ``predict.tta``).  Each
choice is then applied to the 8-pass test-time-augmented maps of the
test frames and scored there, so the two rows differ by the tie break alone.
The test frames are only scored here, never used to choose.  Also prints
the time of one validation pass with and without the copies, and its ratio,
and each choice's errors on each validation frame (what validation saw).

Usage::

    .venv/bin/python benchmarks/bench_tie_break.py                        # the main run, results/
    .venv/bin/python benchmarks/bench_tie_break.py --run results/repeat/seed1
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
import zarr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tileunet import metrics  # noqa: E402
from tileunet.config import member_train_config  # noqa: E402
from tileunet.geometry import check_input_size  # noqa: E402
from tileunet.model import load_model  # noqa: E402
from tileunet.postprocess import extract, resolve  # noqa: E402
from tileunet.samples import read_sample_table  # noqa: E402
from tileunet.tiles import validation_planes  # noqa: E402
from tileunet.train import TrainConfig  # noqa: E402
from tileunet.validation import augmented_copies, maps_of, validate_instances  # noqa: E402


def _test_planes(stores):
    """(image ingest normalised, labels) of each 2D test frame (its store has no weights: not validation_planes)."""
    groups = [zarr.open_group(store, mode="r") for store in stores]
    return [(np.asarray(g["image"], np.float32), np.asarray(g["labels"])) for g in groups]


def _test_scores(test, pp):
    """``pp`` applied to the test maps and scored, as results/evaluation/metrics.tsv's summary row."""
    return metrics.summarize([metrics.evaluate_pair(extract(fg, seeds, pp), labels) for fg, seeds, labels in test])


def _frame_errors(maps, names, pp):
    """'name F1 f (m merges, s splits)' of ``pp`` on each (foreground, seeds, labels) map, joined by '; '."""
    rows = [metrics.evaluate_pair(extract(fg, seeds, pp), labels) for fg, seeds, labels in maps]
    return "; ".join(f"{n} F1 {r['f1']:.3f} ({r['merges']} merges, {r['splits']} splits)" for n, r in zip(names, rows))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="results", help="a run's folder: model/model.pt, augmented.zarr, data/")
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run, cfg = Path(args.run), yaml.safe_load(Path(args.config).read_text())
    train = TrainConfig.from_dict(member_train_config({"train": {}, **cfg}))
    tta = bool(train.tune["tta"])  # the delivered weights' search: on 8-pass maps with predict.tta
    samples = read_sample_table(cfg["samples"])
    data = run / "data" if (run / "data").exists() else Path("results/data")
    val_names = [s.name for s in samples.values() if s.split == "val"]
    val = [str(data / f"{name}.zarr") for name in val_names]
    test = [str(data / f"{s.name}.zarr") for s in samples.values() if s.split == "test"]
    model = load_model(run / "model" / "model.pt")
    planes = validation_planes(val)
    copies = augmented_copies(planes, run / "augmented.zarr", train.tune["copies"])
    tile = check_input_size(train.tile_size, model.config.depth, model.config.padding)  # as in training
    labels, choices, seconds = ("grid order", f"{len(copies)} augmented copies"), {}, {}
    for name, extra in zip(labels, ([], copies)):
        start = time.perf_counter()
        choices[name], _ = validate_instances(model, planes, tile, train, train.batch_size, extra, tta)
        seconds[name] = time.perf_counter() - start
    base, with_copies = (seconds[n] for n in labels)
    print(f"run {run}: validation pass {base:.1f} s with grid order, {with_copies:.1f} s with the copies "
          f"(ratio {with_copies / base:.2f})")
    print("| ties broken by | post-processing | val ties | left tied | test F1 | test IoU | merges | splits |")
    print("|---|---|---|---|---|---|---|---|")
    test = maps_of(model, _test_planes(test), tile, tta=True)  # one set of maps: the rows differ by the post-processing

    for name, tuned in choices.items():
        pp, record = resolve({}, tuned), tuned[tuned["chosen"]]
        s = _test_scores(test, pp)
        print(f"| {name} | {pp.params()} | {record['val_ties']} | {record.get('aug_ties', record['val_ties'])} | "
              f"{s['f1']:.3f} | {s['iou']:.3f} | {s['merges']} | {s['splits']} |")
    val_maps = maps_of(model, planes, tile, tta=tta)  # as the delivered weights' search
    for name, tuned in choices.items():
        print(f"validation frames, ties broken by {name}: {_frame_errors(val_maps, val_names, resolve({}, tuned))}")


if __name__ == "__main__":
    main()
