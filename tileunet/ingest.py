"""Validate an image / label pair and turn it into the arrays of results/data/{sample}.zarr.

Everything is checked before anything is written, and every refusal names
the file, the problem and the fix.
"""

import logging

import numpy as np
from scipy import ndimage
from skimage.segmentation import relabel_sequential

from .checks import check_finite, check_image, check_labels, check_pair, warn_constant, warn_no_cells
from .channels import CHANNELS_ATTR, spatial_shape
from .errors import InputError
from .io import atomic_path, read_array, read_image, write_array
from .normalize import normalize_plane

log = logging.getLogger(__name__)


def is_binary(labels):
    """True if the labels hold a single foreground value (a mask, not instances)."""
    values = np.unique(labels)
    return bool(len(values[values > 0]) == 1 and binary_to_instances(labels).max() > 1)


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


def load_pair(image_path, labels_path, binary_labels="components", channels=None):
    """Read and check one image / label pair.

    Parameters
    ----------
    image_path, labels_path : str or Path
        TIFF / OME-TIFF or Zarr; 2D (Y, X) or stacks (N, Y, X) of equal shape, the
        image with or without channels (:func:`tileunet.io.open_image`).
    binary_labels : {"components", "error"}
        How to treat a binary mask given as labels.
    channels : list of int or str, optional
        The image channels to keep (``ingest.channels``); all if None.

    Returns
    -------
    image : numpy.ndarray, raw pixels, shape (Y, X) or (N, Y, X); (C, Y, X) or (N, C, Y, X) for C > 1
    labels : numpy.ndarray of int32, shape (Y, X) or (N, Y, X)
    binary : bool, whether the labels were a binary mask turned into components
    names : list of str, the kept channels' names
    """
    image, names = read_image(image_path, channels)
    check_image(image, image_path, len(names))
    check_finite(image, image_path)
    labels = read_array(labels_path)
    check_pair(image_path, spatial_shape(image.shape, len(names)), labels_path, labels.shape)
    labels = check_labels(labels, labels_path)
    warn_constant(image, image_path, len(names))
    warn_no_cells(labels, labels_path)
    binary = is_binary(labels)
    if binary:
        if binary_labels == "error":
            raise InputError(labels_path, "is a binary mask, not instance labels",
                             "export instance labels (one id per cell) or set ingest.binary_labels: components")
        log.warning("%s is a binary mask: labelling connected components, so touching cells merge into one "
                    "instance; export instance labels to train the network to separate them", labels_path)
        labels = binary_to_instances(labels)
    return image, to_int32(labels), binary, names


def per_plane(func, array):
    """Apply a 2D function to a 2D array or to each plane of a (N, Y, X) stack."""
    return func(array) if array.ndim == 2 else np.stack([func(p) for p in array])


def normalize(image, low=1.0, high=99.8, channels=1):
    """Per-plane (and per-channel) percentile normalisation (see :mod:`tileunet.normalize`); float32, same shape."""
    if channels > 1:
        flat = image.reshape((-1,) + image.shape[-2:])
        return np.stack([normalize_plane(p, low, high) for p in flat]).reshape(image.shape)
    return per_plane(lambda p: normalize_plane(p, low, high), image)


def ingest_sample(image_path, labels_path, store, split, low=1.0, high=99.8, chunk=1024,
                  binary_labels="components", separate=False, channels=None):
    """Check one image / label pair and write it as ``results/data/{sample}.zarr`` (``image``, ``labels``).

    Parameters
    ----------
    image_path, labels_path : str or Path
        See :func:`load_pair`.
    store : str or Path
        The sample's Zarr group; written atomically, so a refusal leaves nothing behind.
    split : str
        The sample's split, recorded in the attributes.
    low, high : float
        Normalisation percentiles (:func:`normalize`).
    chunk : int
        Chunk edge of the arrays (whole planes of a stack are never split across chunks' leading axis).
    binary_labels : {"components", "error"}
        See :func:`load_pair`.
    separate : bool
        Carve a 1-px gap between touching cells (:func:`tileunet.labels.separate_touching`), as for
        train and val labels.
    channels : list of int or str, optional
        See :func:`load_pair`.  An image of C > 1 channels is written (C, Y, X) or (N, C, Y, X),
        each channel normalised on its own, with the names in the attribute ``channels``.

    Returns
    -------
    image shape : tuple of int
    instances : int
        The largest label id written.
    """
    from .labels import separate_touching  # numba: imported only where needed

    image, labels, binary, names = load_pair(image_path, labels_path, binary_labels, channels)
    if separate:
        labels = separate_touching(labels)  # takes (Y, X) or (N, Y, X)
    chunks = tuple(min(c, s) for c, s in zip((1,) * (labels.ndim - 2) + (chunk,) * 2, labels.shape))
    image_chunks = chunks[:-2] + (len(names),) + chunks[-2:] if len(names) > 1 else chunks
    common = {"source_image": str(image_path), "source_labels": str(labels_path), "split": split}
    with atomic_path(store) as tmp:
        write_array(tmp, "image", normalize(image, low, high, len(names)), image_chunks,
                    {**common, "normalization": {"method": "percentile", "low": low, "high": high},
                     **({CHANNELS_ATTR: names} if len(names) > 1 else {})})
        write_array(tmp, "labels", labels, chunks,
                    {**common, "binary_mask_components": binary, "touching_separated": bool(separate)})
    return image.shape, int(labels.max(initial=0))
