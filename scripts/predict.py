"""Segment one slide or stack: chunked overlap-tile inference into OME-Zarr, resumable."""

import logging
import os
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                    force=True)

import torch  # noqa: E402

from tileunet.device import select_device  # noqa: E402
from tileunet.io import open_array  # noqa: E402
from tileunet.model import load_model  # noqa: E402
from tileunet.ome import guess_leading_axis  # noqa: E402
from tileunet.predict import predict_to_ome_zarr  # noqa: E402

sm = snakemake  # noqa: F821
cfg = sm.params.cfg
torch.set_num_threads(sm.threads)
device = select_device(cfg["device"])
image_path = Path(sm.input.image)
image = open_array(image_path)
stat = image_path.stat()
logging.info("slide %s %s %s on %s, tile %d", image_path, image.shape, image.dtype, device, cfg["tile"])
if cfg["parts"] > 1:
    logging.warning("predict.parts=%d: scatter-gather jobs are not wired into the workflow yet; one job", cfg["parts"])
remote = bool(cfg["scheduler_address"])
n = predict_to_ome_zarr(
    (sm.input.model, str(device)) if remote else load_model(sm.input.model, device),
    str(image_path) if remote else image,
    sm.output[0], sm.params.partial, tile=cfg["tile"], batch_size=cfg["batch_size"], threshold=cfg["threshold"],
    min_size=cfg["min_size"], probability_dtype=cfg["probability_dtype"], pyramid_levels=cfg["pyramid_levels"],
    leading_axis=guess_leading_axis(image_path), workers=2 if device.type == "cuda" else 1,
    scheduler_address=cfg["scheduler_address"], source=f"{image_path.resolve()} {stat.st_size} {stat.st_mtime_ns}")
logging.info("wrote %s: %d instances", sm.output[0], n)
