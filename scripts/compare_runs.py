"""Repeated runs (seeds x variants): one TSV per seed, mean ± sd per variant as TSV, HTML and a figure."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

from tileunet.io import atomic_path  # noqa: E402
from tileunet.tables import read_summary, write_html, write_tsv  # noqa: E402
from tileunet.plots.evaluate import comparison_figure  # noqa: E402
from tileunet.repeats import mean_sd_text, per_run, per_variant  # noqa: E402

sm = snakemake  # noqa: F821
runs = [(v, s, read_summary(p)) for v, s, p in zip(sm.params.variants, sm.params.seeds, sm.input.metrics)]
write_tsv(per_run(runs), sm.output.runs)
summary = per_variant(runs)
write_tsv(summary, sm.output.table)
write_html([mean_sd_text(r) for r in summary] + per_run(runs), sm.output.html, sm.params.title)
with atomic_path(sm.output.figure) as tmp:
    comparison_figure(runs, keys=("iou", "f1", "merges", "splits")).savefig(tmp, format="png")
for row in summary:
    logging.info("%s: %s", row["variant"], mean_sd_text(row))
