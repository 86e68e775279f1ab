"""Validate one image / label pair and write results/data/{sample}.zarr (image, labels)."""

import logging
import sys

from tileunet.ingest import load_pair, normalize
from tileunet.io import atomic_path, write_array
from tileunet.labels import separate_touching

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, force=True)
sys.stderr = open(snakemake.log[0], "a")
cfg = snakemake.params.cfg

image, labels, binary = load_pair(snakemake.input.image, snakemake.input.labels, cfg["binary_labels"])
if snakemake.params.separate_touching:
    labels = separate_touching(labels)  # takes (Y, X) or (N, Y, X)
low, high = cfg["normalize_low"], cfg["normalize_high"]
chunks = (1,) * (image.ndim - 2) + (cfg["chunk"],) * 2
chunks = tuple(min(c, s) for c, s in zip(chunks, image.shape))
common = {"source_image": str(snakemake.input.image), "source_labels": str(snakemake.input.labels),
          "split": snakemake.params.split}
with atomic_path(snakemake.params.store) as tmp:
    write_array(tmp, "image", normalize(image, low, high), chunks,
                {**common, "normalization": {"method": "percentile", "low": low, "high": high}})
    write_array(tmp, "labels", labels, chunks,
                {**common, "binary_mask_components": binary, "touching_separated": bool(snakemake.params.separate_touching)})
logging.info("%s: image %s, %d instances", snakemake.wildcards.sample, image.shape, int(labels.max()))
