"""Evaluate the test predictions: metrics per image plus a summary row, and overlay PNGs."""

import logging
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

import numpy as np  # noqa: E402
import zarr  # noqa: E402
from tqdm import tqdm  # noqa: E402

from tileunet import metrics  # noqa: E402
from tileunet.errors import InputError  # noqa: E402
from tileunet.io import atomic_path, open_array, store_of  # noqa: E402
from tileunet.ome import read_prediction  # noqa: E402
from tileunet.plots.evaluate import pick_planes, save_overlays  # noqa: E402

sm = snakemake  # noqa: F821
cfg = sm.params.cfg
# Array folders and stores from the inputs (.../{sample}.zarr/labels/zarr.json, .../{sample}.ome.zarr/zarr.json),
# so a module's replace_prefix applies.
label_dirs, image_dirs = ([Path(p).parent for p in paths] for paths in (sm.input.labels, sm.input.images))
stores = [store_of(p) for p in sm.input.predictions]
truths = [open_array(d) for d in label_dirs]
picks = pick_planes([t.shape[0] if t.ndim == 3 else 1 for t in truths], cfg["overlays"])

rows = []
with atomic_path(sm.output.overlays) as folder:
    folder.mkdir()
    for sample, pred_path, label_dir, image_dir, truth, planes in tqdm(
            list(zip(sm.params.samples, stores, label_dirs, image_dirs, truths, picks)),
            desc="evaluate", file=sys.stderr):
        prob, pred = read_prediction(pred_path)
        true = np.asarray(truth[...])
        if pred.shape != true.shape:
            raise InputError(pred_path, f"has shape {pred.shape}, but the labels {label_dir} have {true.shape}",
                             "re-run the prediction of this sample (snakemake --forcerun predict_sample)")
        sample_rows = metrics.evaluate_stack(pred, true, cfg["iou_threshold"], prob)
        rows += [{"sample": sample, **row} for row in sample_rows]
        for png in save_overlays(folder, sample, zarr.open_array(image_dir, mode="r"), pred, true, sample_rows, planes):
            logging.info("overlay %s", png.name)
summary = {"sample": "summary", "plane": "", **metrics.summarize(rows)}
logging.info("summary: %s", summary)
metrics.write_tsv(rows + [summary], sm.output.metrics)
metrics.write_html(rows + [summary], sm.output.table, "Test metrics (results/evaluation/metrics.tsv)")
