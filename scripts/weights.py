"""Compute the paper's weight map (section 3) for one sample into results/data/{sample}.zarr/weights."""

import json
import logging
import sys
from pathlib import Path

import numpy as np
import zarr

from tileunet import __version__
from tileunet.errors import InputError
from tileunet.io import write_array
from tileunet.plots.weights import save_weight_preview
from tileunet.weights import weight_kwargs, weight_map_stack

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, force=True)
sys.stderr = open(snakemake.log[0], "a")
cfg, store = snakemake.params.cfg, Path(snakemake.params.store)

group = zarr.open_group(store, mode="r")
labels_array = group["labels"]
labels = np.asarray(labels_array[...])
frequencies = None
if snakemake.input.frequencies:
    frequencies = json.loads(Path(str(snakemake.input.frequencies)).read_text())["frequencies"]
kwargs = weight_kwargs(cfg, frequencies)
try:
    weights = weight_map_stack(labels.reshape((-1,) + labels.shape[-2:]), progress=True, **kwargs)
except InputError as exc:
    raise InputError(store / "labels", exc.problem, exc.fix) from exc
weights = weights.reshape(labels.shape)

separated = labels_array.attrs.get("touching_separated")
if cfg.get("separate_touching") and not separated:
    logging.warning("%s: weights.separate_touching is on but the labels were not separated at ingest", store)
attrs = {"method": "Ronneberger et al. 2015, section 3, eq. 2", "tileunet_version": __version__,
         "parameters": kwargs, "config": cfg, "labels_touching_separated": separated}
write_array(store, "weights", weights, chunks=labels_array.chunks, attrs=attrs)
plane = (0,) * (labels.ndim - 2)
image = np.asarray(group["image"][plane])
save_weight_preview(snakemake.output.preview, image, labels[plane], weights[plane],
                    title=f"{snakemake.wildcards.sample}" + (" (plane 0)" if plane else ""))
logging.info("%s: weights %s, range %.3f..%.3f", snakemake.wildcards.sample, weights.shape,
             float(weights.min()), float(weights.max()))
