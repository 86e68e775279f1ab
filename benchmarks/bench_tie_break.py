"""What the augmented-copy tie break decides on a trained run, and what it costs.

On one run's delivered ``model.pt`` (the checkpoint choice does not depend
on the tie break), the post-processing is tuned on the validation frames
twice: with ties left to grid order (``train.tune.copies: 0``, the baseline)
and broken on the augmented copies (the config's ``train.tune.copies``).
Each choice is then applied to the 8-pass test-time-augmented maps of the
test frames and scored there, so the two rows differ by the tie break alone.
The test frames are only scored here, never used to choose.  Also prints
the time of one validation pass with and without the copies, and its ratio.

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
from tileunet.config import with_defaults  # noqa: E402
from tileunet.model import load_model  # noqa: E402
from tileunet.geometry import check_input_size  # noqa: E402
from tileunet.postprocess import PARAMETERS, PostProcessing, extract  # noqa: E402
from tileunet.predict import plane_maps  # noqa: E402
from tileunet.samples import read_sample_table  # noqa: E402
from tileunet.tiles import validation_planes  # noqa: E402
from tileunet.train import TrainConfig  # noqa: E402
from tileunet.validation import augmented_copies, validate_instances  # noqa: E402


def _chosen(tuned):
    record = tuned[tuned["chosen"]]
    return PostProcessing(record["instances"], **{k: record[k] for k in PARAMETERS[record["instances"]]})


def _test_scores(model, stores, tile, pp):
    rows = []
    for store in stores:  # 2D test frames: normalised image and labels, as ingest wrote them
        group = zarr.open_group(store, mode="r")
        image, labels = np.asarray(group["image"], np.float32), np.asarray(group["labels"])
        maps = plane_maps(model, image, tile, tta=True)
        rows.append(metrics.evaluate_pair(extract(maps[0], maps[1] if len(maps) > 1 else None, pp), labels))
    return metrics.summarize(rows)  # as results/evaluation/metrics.tsv's summary row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="results", help="a run's folder: model/model.pt, augmented.zarr, data/")
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run, cfg = Path(args.run), yaml.safe_load(Path(args.config).read_text())
    train = TrainConfig.from_dict(with_defaults("train", cfg.get("train", {})))
    samples = read_sample_table(cfg["samples"])
    data = run / "data" if (run / "data").exists() else Path("results/data")
    val = [str(data / f"{s.name}.zarr") for s in samples.values() if s.split == "val"]
    test = [str(data / f"{s.name}.zarr") for s in samples.values() if s.split == "test"]
    model = load_model(run / "model" / "model.pt")
    planes = validation_planes(val)
    copies = augmented_copies(planes, run / "augmented.zarr", train.tune["copies"])
    tile = check_input_size(train.tile_size, model.config.depth, model.config.padding)  # as in training
    choices, seconds = {}, {}
    for name, extra in (("grid order", []), (f"{len(copies)} augmented copies", copies)):
        start = time.perf_counter()
        tuned, _ = validate_instances(model, planes, tile, train, train.batch_size, extra)
        seconds[name] = time.perf_counter() - start
        choices[name] = (_chosen(tuned), tuned[tuned["chosen"]])
    print(f"run {run}: validation pass {seconds['grid order']:.1f} s with grid order, "
          f"{seconds[name]:.1f} s with the copies (ratio {seconds[name] / seconds['grid order']:.2f})")
    print("| ties broken by | post-processing | val ties | left tied | test F1 | test IoU | merges | splits |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (pp, record) in choices.items():
        s = _test_scores(model, test, tile, pp)
        print(f"| {name} | {pp.params()} | {record['val_ties']} | {record.get('aug_ties', record['val_ties'])} | "
              f"{s['f1']:.3f} | {s['iou']:.3f} | {s['merges']} | {s['splits']} |")


if __name__ == "__main__":
    main()
