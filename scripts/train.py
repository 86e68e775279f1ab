"""Train the U-Net on the augmented set; write model.pt, the metrics TSV and the loss curve."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "a")  # noqa: F821 (snakemake is injected); "a": a resumed run keeps its history
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

from tileunet.io import store_of  # noqa: E402
from tileunet.model import save_model  # noqa: E402
from tileunet.plots.train import loss_curve  # noqa: E402
from tileunet.train import train, write_metrics  # noqa: E402

sm = snakemake  # noqa: F821
model, history = train(store_of(sm.input.augmented), sm.params.val_stores, sm.params.model, sm.params.train,
                       sm.params.checkpoints, seed=sm.params.seed, threads=sm.threads)
last = history[-1] if history else {}
logging.info("finished at iteration %s: %s", last.get("iteration"), last)
save_model(sm.output.model, model, sm.params.normalization,
           extra={"iterations": last.get("iteration", 0), "seed": sm.params.seed, "train": dict(sm.params.train),
                  "selected_iteration": model.selected_iteration, "postprocessing": model.postprocessing,
                  "channels": model.channels})
write_metrics(sm.output.metrics, history)
loss_curve(history, sm.output.curve)
