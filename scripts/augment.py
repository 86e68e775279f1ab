"""Write the augmented training set results/augmented.zarr and its example grid (rule augment_set)."""

import logging
import sys
from pathlib import Path

from tileunet.augmented_set import write_augmented
from tileunet.io import store_of
from tileunet.plots.augment import save_examples


def main(sm):
    sys.stderr = open(sm.log[0], "w")
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.captureWarnings(True)
    # Store folders from the inputs (.../{sample}.zarr/image/zarr.json), so a module's replace_prefix applies.
    stores = {sample: Path(p).parent.parent for sample, p in zip(sm.params.samples, sm.input.image)}
    out = store_of(sm.output.store)  # the rule declares the store's root zarr.json
    cfg = sm.params.cfg
    logging.info("%d training samples, %d copies each, %d threads", len(stores), cfg["copies"], sm.threads)
    write_augmented(stores, out, cfg, sm.params.weights_cfg, sm.params.seed,
                    threads=sm.threads, progress=True)
    save_examples(out, sm.output.examples, cfg["preview"])
    logging.info("wrote %s and %s", out, sm.output.examples)


if __name__ == "__main__":  # worker processes (spawn) re-import this file under another name
    main(snakemake)  # noqa: F821 (snakemake is injected)
