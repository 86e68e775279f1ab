"""One comparison table and figure for the weight-map ablation variants."""

import logging
import sys

from tileunet.io import atomic_path
from tileunet.metrics import read_summary, write_html, write_tsv
from tileunet.plots.evaluate import comparison_figure

sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)
KEYS = ("iou", "dice", "f1", "precision", "recall", "merges", "splits", "rand_error")

summaries = {v: read_summary(p) for v, p in zip(snakemake.params.variants, snakemake.input.metrics)}
rows = [{"variant": v, **{k: s.get(k, "") for k in KEYS}} for v, s in summaries.items()]
write_tsv(rows, snakemake.output.table)
write_html(rows, snakemake.output.html, "Weight-map ablation: test summary per variant")
with atomic_path(snakemake.output.figure) as tmp:
    comparison_figure(summaries, keys=("iou", "f1", "merges")).savefig(tmp, format="png")
logging.info("%s", summaries)
