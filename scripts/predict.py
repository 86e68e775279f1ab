"""Segment one slide or stack: chunked overlap-tile inference into OME-Zarr, resumable.

params.step: "all" (one job), or the scatter-gather steps "prepare", "part" (one band
of chunk rows, wildcards.part of predict.parts) and "gather" (labels, pyramids, publish).
"""

import logging
import shutil
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                    force=True)

import torch  # noqa: E402

from tileunet.checks import warn_constant  # noqa: E402
from tileunet.device import select_device  # noqa: E402
from tileunet.channels import check_model_channels  # noqa: E402
from tileunet.io import open_image, store_of  # noqa: E402
from tileunet.pixel_size import pixel_size  # noqa: E402
from tileunet.model import load_model  # noqa: E402
from tileunet.ome import guess_leading_axis  # noqa: E402
from tileunet.postprocess import resolve  # noqa: E402
from tileunet.segment import ModelFile, SlideFile, band_rows, finalise, predict_rows, prepare, publish  # noqa: E402

sm = snakemake  # noqa: F821
cfg, step, work = sm.params.cfg, sm.params.step, sm.params.work
torch.set_num_threads(sm.threads)
device = select_device(cfg["device"] if step in ("all", "part") else "cpu")  # prepare/gather: CPU jobs and env
image_path = Path(sm.input.image)
image, channels = open_image(image_path, sm.params.channels, sm.params.level)
stat = image_path.stat()
logging.info("%s: slide %s %s %s on %s, tile %d", step, image_path, image.shape, image.dtype, device, cfg["tile"])
remote = bool(cfg["scheduler_address"])
local = load_model(sm.input.model, device)
check_model_channels(local, channels, image_path, sm.input.model)
pp = resolve(cfg, local.postprocessing, sm.input.model)  # before any work: a model without one is refused
store = store_of(sm.output[0])  # the OME-Zarr store: the rules declare its root zarr.json
if step in ("all", "gather"):
    shutil.rmtree(store, ignore_errors=True)  # as for a directory() output: no old store left if this job fails
logging.info("instances: %s (%s)", pp.as_dict(), "config and validation" if local.postprocessing else "config")
model = ModelFile(sm.input.model, str(device)) if remote else local
if step in ("all", "prepare"):
    warn_constant(image, image_path, len(channels))
    prepare(local, image, work, cfg["tile"], cfg["probability_dtype"], cfg["pyramid_levels"],
            guess_leading_axis(image_path), source=f"{image_path.resolve()} {stat.st_size} {stat.st_mtime_ns}",
            tta=cfg["tta"], pixel_size=pixel_size(image_path, sm.params.level))
if step in ("all", "part"):
    rows = band_rows(work, int(sm.wildcards.part), cfg["parts"]) if step == "part" else None
    slide = SlideFile(str(image_path), tuple(sm.params.channels or ()) or None, sm.params.level) if remote else image
    predict_rows(model, slide, work, rows, cfg["batch_size"], cfg["amp"],
                 workers=2 if device.type == "cuda" else 1, scheduler_address=cfg["scheduler_address"])
if step in ("all", "gather"):
    n = finalise(work, pp, cfg["max_object_size"], workers=sm.threads)
    publish(work, store)
    logging.info("wrote %s: %d instances", store, n)
