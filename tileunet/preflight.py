"""What the workflow checks before its first job (``rules/common.smk``).

Everything that needs no pixels is refused here, with the file, the problem
and the fix, so that ``snakemake -n`` already stops a bad run: the
configuration against ``config/schema.yaml`` (:func:`check_config`, naming the
layer that set a bad key), the tile sizes and channel count against the
network (:func:`check_tile_sizes`), and every file of the sample table, opened
but not read (:func:`check_sample_files`).  Job scripts never import this
module; the checks it shares with them are in :mod:`tileunet.checks`.
"""

import difflib
import os
from pathlib import Path

import jsonschema

from . import geometry
from .channels import spatial_shape
from .checks import check_image, check_label_type, check_pair
from .config import load_schema, source_of
from .errors import InputError
from .io import open_array, open_image


# --- the configuration ---------------------------------------------------------------------------


def check_config(config, layers=(), schema=None):
    """Refuse a configuration that ``config/schema.yaml`` does not accept.

    Parameters
    ----------
    config : dict
        The layered configuration, before the schema's defaults are filled in.
    layers : sequence of (str, dict)
        Its layers (:func:`tileunet.config.config_layers`), to name the file that set a bad key.
    schema : dict, optional
        Defaults to ``config/schema.yaml``.

    Raises
    ------
    InputError
        For the most relevant error (:func:`jsonschema.exceptions.best_match`): an unknown key
        (with the nearest known name), a wrong type or a value out of range.
    """
    schema = schema or load_schema()
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is None:
        return
    key = ".".join(map(str, error.absolute_path))
    if error.validator == "additionalProperties":
        known = error.schema.get("properties", {})
        name = sorted(set(error.instance) - set(known))[0]
        near = difflib.get_close_matches(name, known, n=1)
        dotted = f"{key}.{name}" if key else name
        hint = f"did you mean {f'{key}.' if key else ''}{near[0]}? " if near else ""
        raise InputError(source_of(dotted, layers), f"unknown configuration key {dotted}",
                         f"{hint}remove or rename it; config/README.md lists every key")
    what = error.schema.get("description", "")
    raise InputError(source_of(key, layers), f"configuration key {key} = {error.instance!r}: {error.message}",
                     f"set {key} to an allowed value ({what})" if what else f"correct {key}")


def _near_outputs(tile, depth, padding):
    """Up to four output edges of the network nearest to ``tile``, none under the pooling grid."""
    align = 2 ** (depth - 1)
    outs = [o for o in range(max(align, tile - 8 * align), max(align, tile) + 8 * align)
            if geometry.input_size(o, depth, padding)]
    return sorted(sorted(outs, key=lambda o: abs(o - tile))[:4])


def predict_tile_problem(tile, depth, padding="valid"):
    """Why ``predict.tile`` cannot be tiled for this network, and the fix; None if it can.

    The rule of :func:`tileunet.tiling.plan_tiling`, without building a network:
    a valid-padding net needs an output edge it can produce (an input edge exists)
    that is at least one pooling grid ``2**(depth-1)``; a same-padding net a
    positive multiple of that grid.

    Examples
    --------
    >>> predict_tile_problem(388, 5) is None
    True
    >>> predict_tile_problem(61, 2)[1]
    'set predict.tile to one of [58, 60, 62, 64]'
    """
    align = 2 ** (depth - 1)
    if padding == "valid":
        if geometry.input_size(tile, depth, padding) is None:
            return (f"{tile} is not an output edge of the depth-{depth} valid-padding U-Net: no input tile gives "
                    f"it with every 2x2 max-pooling on an even size",
                    f"set predict.tile to one of {_near_outputs(tile, depth, padding)}")
        if tile < align:
            smallest = next(o for o in range(align, 1 << 20) if geometry.input_size(o, depth, padding))
            return (f"{tile} is smaller than the pooling grid {align} of the depth-{depth} U-Net",
                    f"set predict.tile to at least {smallest}")
        return None
    if tile % align or tile <= 0:
        return (f"{tile} is not a positive multiple of the pooling grid {align} of the depth-{depth} "
                f"same-padding U-Net", f"set predict.tile to {max(align, tile - tile % align)}")
    return None


def check_tile_sizes(config, layers=()):
    """Refuse tile sizes and channel counts the configured network cannot take, before any job.

    Parameters
    ----------
    config : dict
        The validated configuration (defaults filled in).
    layers : sequence of (str, dict)
        Its layers, to name the file that set the bad value.

    Raises
    ------
    InputError
        ``train.tile_size`` not a valid input edge (:func:`tileunet.geometry.output_size`),
        ``predict.tile`` not an output edge the overlap-tile plan accepts
        (:func:`predict_tile_problem`).
    """
    model = config["model"]
    depth, padding = model["depth"], model["padding"]
    net = f" (model.depth {depth} is set by {source_of('model.depth', layers)})"
    tile = config["train"]["tile_size"]
    if geometry.output_size(tile, depth, padding) is None:
        raise InputError(source_of("train.tile_size", layers),
                         f"train.tile_size {tile} is not a valid input edge of the depth-{depth} {padding}-padding "
                         f"U-Net: some 2x2 max-pooling would see an odd size{net}", f"set train.tile_size to one of {geometry.valid_sizes_near(tile, depth, padding)}")
    problem = predict_tile_problem(config["predict"]["tile"], depth, padding)
    if problem:
        raise InputError(source_of("predict.tile", layers), f"predict.tile {problem[0]}{net}", problem[1])


# --- the sample table's files ---------------------------------------------------------------------


def _open_source(path, what, produced, opener=open_array):
    """Open one file of the sample table lazily, or None if a rule of the workflow will make it."""
    if produced(path):
        return None
    p = Path(path)
    if not p.exists():
        raise InputError(path, f"does not exist ({what}; relative paths start at the working directory {os.getcwd()})",
                         "correct the path in the sample table, or create the file")
    if not os.access(p, os.R_OK) or (p.is_dir() and not os.access(p, os.X_OK)):
        raise InputError(path, f"is not readable ({what})", "give yourself read permission (chmod u+r) or copy the file")
    return opener(p)


def check_sample_files(samples, table="the sample table", produced=lambda path: False, channels=None, level=0):
    """Refuse sample files that are missing, unreadable or of the wrong layout, before any job.

    Each file is opened (its header parsed, no pixels read): a missing or unreadable file, a
    type tileunet does not read, a shape other than (Y, X) or (N, Y, X) (images: with or
    without channels), a channel ``channels`` does not find, images of different channel
    counts, RGB or multichannel labels, a non-numeric pixel type, and labels of another
    shape than their image are refused here; NaN pixels and bad label values are found by
    the job that reads them.

    Parameters
    ----------
    samples : dict of str -> tileunet.samples.Sample
    table : str
        The sample table's path, for the messages.
    produced : callable, optional
        ``produced(path)`` is True for a file a rule of the workflow will write (the demo's
        frames): such files are checked by the job that reads them.
    channels : list of int or str, optional
        ``ingest.channels``.
    level : int
        ``predict.level``: the resolution level the slides of split predict are opened at.
    """
    counts = {}
    for s in samples.values():
        opened = _open_source(s.image, f"image of sample {s.name!r} in {table}", produced,
                              lambda p: open_image(p, channels, s.level(level)))
        labels = _open_source(s.labels, f"labels of sample {s.name!r} in {table}", produced) if s.labels else None
        image, names = opened or (None, None)
        if image is not None:
            check_image(image, s.image, len(names))
            counts.setdefault(len(names), (s.image, names))
        if labels is not None:
            check_label_type(labels.dtype, s.labels)
        if image is not None and labels is not None:
            check_pair(s.image, spatial_shape(image.shape, len(names)), s.labels, labels.shape)
    if len(counts) > 1:
        (n1, (p1, c1)), (n2, (p2, c2)) = sorted(counts.items())[:2]
        raise InputError(p2, f"has {n2} channel(s) {c2}, but {p1} has {n1} {c1}: one network takes one channel count",
                         "give every image of the sample table the same channels, or choose them with ingest.channels")
