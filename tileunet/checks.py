"""Checks of images and labels, shared by the workflow, ingest and prediction.

Every refusal is a :class:`tileunet.errors.InputError` naming the file, the
problem and the fix; input that is legal but suspicious passes with a warning
of the same form (:func:`warn`).  Shape and dtype checks need only a file's
header, so the workflow runs them before any job (:mod:`tileunet.preflight`);
the checks of pixel values run in the job that reads them: :func:`check_finite`
and :func:`check_labels` in ingest, :func:`warn_constant` in ingest and predict.
Which layouts can be read at all (types, RGB and multichannel data) is
:func:`tileunet.io.open_array`'s business.
"""

import logging

import numpy as np

from .channels import spatial_shape
from .errors import InputError
from .normalize import sample_plane

log = logging.getLogger(__name__)


def warn(path, problem, fix):
    """Log a warning in the form of an :class:`InputError`: file, problem, fix."""
    log.warning("%s: %s. Fix: %s", path, problem, fix)


# --- images and labels ---------------------------------------------------------------------------


def check_image(image, path="image", channels=1):
    """Refuse an image the pipeline cannot segment: not (Y, X) / (N, Y, X), empty, or not real numbers.

    Only the shape and dtype are looked at, so ``image`` may be lazy (a zarr array).  An
    image of ``channels`` > 1 has its channel axis at -3 (:mod:`tileunet.channels`).
    """
    shape, dtype = spatial_shape(image.shape, channels), np.dtype(image.dtype)
    if len(shape) not in (2, 3) or 0 in shape:
        raise InputError(path, f"has shape {shape}; tileunet takes a 2D (Y, X) image or an (N, Y, X) stack",
                         "export one channel as a 2D image or a Z/T stack")
    if dtype.kind not in "biuf":
        raise InputError(path, f"has dtype {dtype}, not a number type",
                         "save the image as an integer or floating-point grey image")


def check_finite(image, path="image"):
    """Refuse NaN or infinite pixels in an in-memory image."""
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        n = int((~np.isfinite(image)).sum())
        raise InputError(path, f"has {n} NaN or infinite pixel(s)", "replace them (e.g. with 0) before exporting the image")


def check_label_type(dtype, path="labels"):
    """Refuse a label dtype that cannot hold instance ids (what the header says; no pixels read)."""
    if np.dtype(dtype).kind not in "buif":
        raise InputError(path, f"has label type {np.dtype(dtype)}", "labels must be integer instance ids (0 = background)")


def check_labels(labels, path="labels"):
    """Refuse non-integer or negative labels; return them as int64."""
    check_label_type(labels.dtype, path)
    if labels.dtype.kind == "f" and (not np.isfinite(labels).all() or not np.array_equal(labels, np.round(labels))):
        raise InputError(path, "has non-integer label values",
                         "labels must be integer instance ids (0 = background); save them as an integer TIFF")
    if labels.size and labels.min() < 0:
        raise InputError(path, "has negative label values", "labels must be >= 0 (0 = background, 1.. = cells)")
    return labels.astype(np.int64)


def check_pair(image_path, image_shape, labels_path, labels_shape):
    """Refuse labels whose shape differs from their image's."""
    if tuple(image_shape) != tuple(labels_shape):
        raise InputError(labels_path, f"has shape {tuple(labels_shape)} but its image {image_path} has "
                         f"{tuple(image_shape)}",
                         "pair each image with the label file of the same size (and the same number of planes)")


def _planes(array):
    return [array] if array.ndim == 2 else [array[p] for p in range(array.shape[0])]


def warn_constant(image, path="image", channels=1):
    """Warn about planes (channels) whose intensity sample (:func:`tileunet.normalize.sample_plane`) is constant.

    Returns
    -------
    list of int, or of (plane, channel) for ``channels`` > 1
        The constant planes (0 for a 2D image); channels of a (C, Y, X) image as (0, c).
    """
    if channels == 1:
        flat = [p for p, plane in enumerate(_planes(image)) if np.ptp(sample_plane(plane)) == 0]
        which = "the image is" if image.ndim == 2 else f"plane(s) {flat} of {image.shape[0]} are"
    else:
        lead = image.shape[:-2] if image.ndim == 4 else (1, channels)
        flat = [(p, c) for p, c in np.ndindex(*lead)
                if np.ptp(sample_plane(image[(p, c) if image.ndim == 4 else (c,)])) == 0]
        which = f"(plane, channel) {flat} are"
    if flat:
        warn(path, f"{which} constant (one intensity everywhere): nothing to segment, and the prediction there "
                   f"is the network's guess for an empty frame",
             "check the export (an all-black image usually means a wrong channel or bit depth) or drop the sample")
    return flat


def warn_no_cells(labels, path="labels"):
    """Warn about planes of a label image that hold no cell (all zero).

    Returns
    -------
    list of int
        The empty planes (0 for a 2D image).
    """
    empty = [p for p, plane in enumerate(_planes(labels)) if not np.any(plane)]
    if empty:
        which = "holds no cell (all zero)" if labels.ndim == 2 else (
            f"has no cell (all zero) in plane(s) {empty} of {labels.shape[0]}")
        warn(path, f"{which}: its weight map is 1 everywhere and it teaches only background",
             "check that this is the right label file (an instance export, not an empty layer); "
             "keep it only if the image really shows no cell")
    return empty
