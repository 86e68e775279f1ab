"""Validate an image / label pair and turn it into the arrays of results/data/{sample}.zarr.

Everything is checked before anything is written, and every refusal names
the file, the problem and the fix.
"""

import logging

import numpy as np
from scipy import ndimage
from skimage.segmentation import relabel_sequential

from .errors import InputError
from .io import read_array
from .normalize import normalize_plane

log = logging.getLogger(__name__)


def check_image(image, path):
    """Refuse non-numeric dtypes and NaN/inf pixels; ``image`` is a numpy array."""
    if image.dtype.kind not in "uif":
        raise InputError(path, f"has pixel type {image.dtype}, not a number type", "save the image as an integer or float TIFF")
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        n = int((~np.isfinite(image)).sum())
        raise InputError(path, f"has {n} NaN or infinite pixel(s)", "replace them (e.g. with 0) before exporting the image")


def check_labels(labels, path):
    """Refuse non-integer or negative labels; return them as int64."""
    if labels.dtype.kind == "b":
        return labels.astype(np.int64)
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all() or not np.array_equal(labels, np.round(labels)):
            raise InputError(path, "has non-integer label values", "labels must be integer instance ids (0 = background); save them as an integer TIFF")
    elif labels.dtype.kind not in "ui":
        raise InputError(path, f"has label type {labels.dtype}", "labels must be integer instance ids (0 = background)")
    if labels.size and labels.min() < 0:
        raise InputError(path, "has negative label values", "labels must be >= 0 (0 = background, 1.. = cells)")
    return labels.astype(np.int64)


def is_binary(labels):
    """True if the labels hold a single foreground value (a mask, not instances)."""
    values = np.unique(labels)
    return len(values[values > 0]) == 1 and binary_to_instances(labels).max() > 1


def binary_to_instances(mask):
    """Connected components (4-connectivity) of a binary mask, plane by plane; int64, same shape.

    Touching cells become one instance: the components of a mask cannot tell them apart.
    """
    return per_plane(lambda p: ndimage.label(p > 0)[0].astype(np.int64), np.asarray(mask))


def to_int32(labels):
    """Labels as int32, relabelled sequentially only if ids exceed int32."""
    if labels.size and labels.max() > np.iinfo(np.int32).max:
        labels = relabel_sequential(labels)[0]
    return labels.astype(np.int32)


def load_pair(image_path, labels_path, binary_labels="components"):
    """Read and check one image / label pair.

    Parameters
    ----------
    image_path, labels_path : str or Path
        TIFF / OME-TIFF or Zarr; 2D (Y, X) or stacks (N, Y, X) of equal shape.
    binary_labels : {"components", "error"}
        How to treat a binary mask given as labels.

    Returns
    -------
    image : numpy.ndarray, raw pixels, shape (Y, X) or (N, Y, X)
    labels : numpy.ndarray of int32, same shape
    binary : bool, whether the labels were a binary mask turned into components
    """
    image, labels = read_array(image_path), read_array(labels_path)
    check_image(image, image_path)
    if image.shape != labels.shape:
        raise InputError(labels_path, f"has shape {labels.shape} but its image {image_path} has {image.shape}",
                         "pair each image with the label file of the same size (and the same number of planes)")
    labels = check_labels(labels, labels_path)
    binary = is_binary(labels)
    if binary:
        if binary_labels == "error":
            raise InputError(labels_path, "is a binary mask, not instance labels",
                             "export instance labels (one id per cell) or set ingest.binary_labels: components")
        log.warning("%s is a binary mask: labelling connected components, so touching cells merge into one "
                    "instance; export instance labels to train the network to separate them", labels_path)
        labels = binary_to_instances(labels)
    return image, to_int32(labels), binary


def per_plane(func, array):
    """Apply a 2D function to a 2D array or to each plane of a (N, Y, X) stack."""
    return func(array) if array.ndim == 2 else np.stack([func(p) for p in array])


def normalize(image, low=1.0, high=99.8):
    """Per-plane percentile normalisation (see :mod:`tileunet.normalize`); float32, same shape."""
    return per_plane(lambda p: normalize_plane(p, low, high), image)
