"""Validate one image / label pair and write results/data/{sample}.zarr (image, labels)."""

import logging
import sys

from tileunet.ingest import ingest_sample

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, force=True)
sys.stderr = open(snakemake.log[0], "a")
cfg = snakemake.params.cfg

shape, n = ingest_sample(snakemake.input.image, snakemake.input.labels, snakemake.params.store, snakemake.params.split,
                         cfg["normalize_low"], cfg["normalize_high"], cfg["chunk"], cfg["binary_labels"],
                         snakemake.params.separate_touching, cfg["channels"])
logging.info("%s: image %s, %d instances", snakemake.wildcards.sample, shape, n)
