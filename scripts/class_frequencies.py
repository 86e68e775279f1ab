"""Background / foreground pixel fractions over all training labels (weights.frequency_scope: dataset)."""

import json
import logging
import sys

import zarr

from tileunet.io import atomic_path
from tileunet.weights import class_frequencies

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, force=True)
sys.stderr = open(snakemake.log[0], "a")

stores = list(snakemake.params.stores)
frequencies = class_frequencies(zarr.open_group(s, mode="r")["labels"] for s in stores)
with atomic_path(snakemake.output[0]) as tmp:
    tmp.write_text(json.dumps({"frequencies": frequencies, "order": ["background", "foreground"],
                               "samples": stores}, indent=2))
logging.info("class frequencies over %d training samples: background %.4f, foreground %.4f",
             len(stores), *frequencies)
