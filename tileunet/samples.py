"""The sample table: which images, which labels, which split.

A TSV with columns ``sample``, ``image``, ``labels``, ``split``; ``split`` is
one of ``train``, ``val``, ``test``, ``predict``; ``labels`` may be empty only
for ``predict`` rows (slides to segment without ground truth).  Relative paths
are taken from the working directory, as Snakemake does.
"""

import csv
import dataclasses
import re
from pathlib import Path

from .errors import InputError

SPLITS = ("train", "val", "test", "predict")
COLUMNS = ("sample", "image", "labels", "split")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclasses.dataclass(frozen=True)
class Sample:
    """One row of the sample table."""

    name: str
    image: str
    labels: str
    split: str

    def level(self, predict_level):
        """The resolution level its image is read at: ``predict.level`` for a slide of split predict,
        0 for the others, whose labels are at full resolution."""
        return predict_level if self.split == "predict" else 0


def _row_error(path, line, problem, fix):
    return InputError(f"{path} (line {line})", problem, fix)


def _parse_row(path, line, row):
    name, image, labels, split = (str(row.get(c) or "").strip() for c in COLUMNS)
    if not NAME.match(name):
        raise _row_error(path, line, f"sample name {name!r} is empty or has characters other than letters, digits, '_', '.', '-'",
                         "rename the sample, e.g. frame_01")
    if split not in SPLITS:
        raise _row_error(path, line, f"split {split!r} of sample {name!r} is not one of {', '.join(SPLITS)}",
                         "set the split column to train, val, test or predict")
    if not image:
        raise _row_error(path, line, f"sample {name!r} has no image", "fill in the image column")
    if not labels and split != "predict":
        raise _row_error(path, line, f"sample {name!r} of split {split} has no labels",
                         "give a label file, or set split to predict for a slide without ground truth")
    return Sample(name, image, labels, split)


def read_sample_table(path):
    """Read and check the sample table.

    Parameters
    ----------
    path : str or Path
        TSV file with header ``sample image labels split``.

    Returns
    -------
    dict of str -> Sample
        In table order.

    Raises
    ------
    InputError
        Missing file or columns, bad names or splits, duplicate sample names,
        missing labels on a labelled split, or no ``train`` sample.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "sample table does not exist", "create it (columns: sample image labels split) or set `samples:` in the config")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(path, f"sample table lacks column(s) {', '.join(missing)}",
                             "use a tab-separated header line: sample<TAB>image<TAB>labels<TAB>split")
        samples = {}
        for row in reader:
            line = reader.line_num
            s = _parse_row(path, line, row)
            if s.name in samples:
                raise _row_error(path, line, f"duplicate sample name {s.name!r}", "give every row a unique sample name")
            samples[s.name] = s
    if not any(s.split == "train" for s in samples.values()):
        raise InputError(path, "the training split is empty", "mark at least one labelled row with split train")
    return samples
