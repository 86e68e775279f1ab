"""Join the trained members into one model.pt: their mean, with the post-processing chosen for it on validation."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                    force=True)

import torch  # noqa: E402

from tileunet.device import select_device  # noqa: E402
from tileunet.ensemble import join  # noqa: E402
from tileunet.io import store_of  # noqa: E402
from tileunet.model import from_model_file, read_model_file, save_model  # noqa: E402
from tileunet.plots.train import members_curve  # noqa: E402
from tileunet.tables import read_tsv, write_tsv  # noqa: E402
from tileunet.train import METRIC_COLUMNS, TrainConfig  # noqa: E402
from tileunet.validation import validate_stores  # noqa: E402

sm = snakemake  # noqa: F821
torch.set_num_threads(sm.threads)
cfg = TrainConfig.from_dict(sm.params.train)
paths = list(sm.input.members)
device = select_device(cfg.device)  # the validation pass of every member: the job's GPU where it has one
stored = [read_model_file(p) for p in paths]
ensemble = join([from_model_file(s, device) for s in stored], paths)
tuned, score = validate_stores(ensemble, sm.params.val_stores, cfg, store_of(sm.input.augmented))
histories = [read_tsv(p) for p in sm.input.metrics]
rows = [{"member": k, **r} for k, h in enumerate(histories) for r in h]
rows += [{"member": "ensemble", "val_f1": score[0], "val_iou": score[1]}] if tuned else []
save_model(sm.output.model, ensemble, stored[0]["normalization"],
           extra={"members": len(paths), "seeds": [s.get("seed") for s in stored], "train": dict(sm.params.train),
                  "iterations": [s.get("iterations") for s in stored],
                  "selected_iteration": [s.get("selected_iteration") for s in stored],
                  "postprocessing": tuned, "channels": ensemble.channels})
write_tsv(rows, sm.output.metrics, ("member",) + METRIC_COLUMNS)
members_curve(histories, sm.output.curve)
