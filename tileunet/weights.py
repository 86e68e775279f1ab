"""The paper's pixel-wise loss weights (Ronneberger et al. 2015, section 3, eq. 2).

.. math::

    w(x) = w_c(x) + w_0 \\exp\\left(-\\frac{(d_1(x) + d_2(x))^2}{2\\sigma^2}\\right)

``w_c`` balances the class frequencies; ``d1``/``d2`` are the distances from
pixel ``x`` to the nearest and second-nearest cell.  The border term is what
makes the network learn the thin background gaps between touching cells.

The usual implementation runs one Euclidean distance transform per cell over
the whole image, O(cells x pixels).  Here one exact separable transform finds
the two nearest *distinct* cells of every pixel (:func:`two_nearest`,
compiled with numba, :mod:`tileunet.two_nearest`), and the border term is cut where it falls below
``tol``: it is below ``tol`` once ``d1 + d2`` exceeds
``R = sigma * sqrt(2 ln(w0 / tol))``, which bounds each pixel's search.
That is O(pixels x R) time, independent of the number of cells, and the map
differs from the exact one by less than ``tol`` everywhere
(:func:`weight_map`, Notes).
"""

import inspect
import math
import sys

import numpy as np

from .errors import InputError
from .two_nearest import add_border_term, compact

BORDER_REGIONS = ("background", "all")
CLASS_BALANCES = ("inverse_frequency", "explicit", "none")


def _check_labels(labels, ndim=2):
    """Return ``labels`` as an integer ndarray, or raise InputError naming the problem and the fix."""
    labels = np.asarray(labels)
    if labels.ndim != ndim:
        other = "weight_map_stack for (N, Y, X) stacks" if ndim == 2 else "weight_map for one (Y, X) image"
        raise InputError("labels", f"has shape {labels.shape}, expected {ndim} axes", f"pass one plane, or use {other}")
    if labels.dtype.kind == "b":
        raise InputError("labels", "is a boolean mask, not instance ids",
                         "label connected components first (tileunet.ingest.binary_to_instances)")
    if labels.dtype.kind not in "iu":
        raise InputError("labels", f"has dtype {labels.dtype}; instance ids must be integers",
                         "cast integer-valued labels with labels.astype(np.int32)")
    if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
        raise InputError("labels", "has negative ids", "use 0 for background and positive ids for cells")
    return labels


def _check_pair(values, name, allow_zero=True):
    values = np.asarray(values, dtype=float)
    if values.shape != (2,) or not np.isfinite(values).all() or (values < 0).any() or (not allow_zero and (values == 0).any()):
        need = "non-negative" if allow_zero else "positive"
        raise InputError(name, f"is {values.tolist()}, expected two finite {need} numbers",
                         f"give {name} as [background, foreground]" if name != "spacing" else "give spacing as [y, x]")
    return values


def _check_params(w0, sigma, tol, border_region, class_balance):
    for name, value, positive in (("w0", w0, False), ("sigma", sigma, True), ("tol", tol, True)):
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            need = "positive" if positive else "non-negative"
            raise InputError(name, f"is {value}, expected a finite {need} number", f"set weights.{name} to a {need} value")
    if border_region not in BORDER_REGIONS:
        raise InputError("border_region", f"is {border_region!r}", f"use one of {', '.join(BORDER_REGIONS)}")
    if class_balance not in CLASS_BALANCES:
        raise InputError("class_balance", f"is {class_balance!r}", f"use one of {', '.join(CLASS_BALANCES)}")


def cutoff_radius(w0, sigma, tol):
    """Distance ``d1 + d2`` beyond which the border term is below ``tol``.

    Returns
    -------
    float
        ``sigma * sqrt(2 ln(w0 / tol))`` in the units of ``sigma``; ``-inf``
        when ``w0 <= tol`` (the whole term is then below ``tol``).
    """
    if w0 <= tol:
        return -math.inf
    return sigma * math.sqrt(2.0 * math.log(w0 / tol))


def class_frequencies(label_arrays):
    """Background and foreground pixel fractions over many label images.

    Parameters
    ----------
    label_arrays : iterable of array-like
        Instance-label images (0 = background) of any shape; zarr arrays are
        read one leading-axis plane at a time.

    Returns
    -------
    list of float
        ``[background_fraction, foreground_fraction]``, summing to 1.

    Examples
    --------
    >>> class_frequencies([np.array([[0, 1], [0, 0]]), np.array([[2, 2]])])
    [0.5, 0.5]
    """
    background = total = 0
    for arr in label_arrays:
        planes = [arr] if np.ndim(arr) <= 2 else (arr[i] for i in range(arr.shape[0]))
        for plane in planes:
            plane = np.asarray(plane)
            background += int(np.count_nonzero(plane == 0))
            total += plane.size
    if total == 0:
        raise InputError("label_arrays", "hold no pixels", "pass at least one non-empty label image")
    return [background / total, (total - background) / total]


def class_weights_map(labels, class_balance="inverse_frequency", class_weights=None, frequencies=None):
    """The class-balance term ``w_c`` of eq. 2 (section 3), float32, same shape as ``labels``.

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X)
        Instance ids, 0 = background.
    class_balance : {"inverse_frequency", "explicit", "none"}
        ``inverse_frequency``: ``w_c = f_max / f_c``, so the most frequent class
        weighs 1 (the paper does not give its formula).  ``explicit``:
        ``class_weights``.  ``none``: 1 everywhere.
    class_weights : sequence of 2 float, optional
        ``[background, foreground]``; required for ``explicit``.
    frequencies : sequence of 2 float, optional
        ``[background, foreground]`` frequencies (e.g. over the training set,
        :func:`class_frequencies`); default: this image's.  A class of
        frequency 0 weighs 1.

    Returns
    -------
    ndarray of float32, shape (Y, X)
    """
    if class_balance == "none":
        per_class = np.ones(2)
    elif class_balance == "explicit":
        if class_weights is None:
            raise InputError("class_weights", "is missing for class_balance explicit",
                             "give class_weights as [background, foreground]")
        per_class = _check_pair(class_weights, "class_weights")
    else:
        if frequencies is None:
            fg = np.count_nonzero(labels) / max(labels.size, 1)
            frequencies = [1.0 - fg, fg]
        freq = _check_pair(frequencies, "frequencies")
        if freq.sum() == 0:
            raise InputError("frequencies", "are both 0", "give class frequencies as [background, foreground] fractions")
        per_class = np.where(freq > 0, freq.max() / np.where(freq > 0, freq, 1.0), 1.0)
    return np.where(labels > 0, np.float32(per_class[1]), np.float32(per_class[0])).astype(np.float32)


def weight_map(labels, w0=10.0, sigma=5.0, tol=1e-4, spacing=(1.0, 1.0), border_region="background",
               class_balance="inverse_frequency", class_weights=None, frequencies=None, border_term=True):
    """The paper's weight map for one 2D instance-label image (section 3, eq. 2).

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X)
        Non-negative instance ids, 0 = background; ids need not be
        contiguous.  Binary masks must be split into components first.
    w0 : float
        Amplitude of the border term (paper: 10).
    sigma : float
        Width of the border term, in the units of ``spacing`` (paper: ~5 px).
    tol : float
        Border-term values below ``tol`` are dropped; the map differs from the
        exact one by less than ``tol`` everywhere.
    spacing : sequence of 2 float
        Pixel size (Y, X) for the distances, in the units of ``sigma``.
    border_region : {"background", "all"}
        Where the border term applies: background pixels only (the gaps
        between cells, the paper's intent), or every pixel (inside a cell
        ``d1 = 0`` and ``d2`` is the distance to the nearest other cell).
    class_balance, class_weights, frequencies
        The class-balance term, see :func:`class_weights_map`.
    border_term : bool
        False leaves ``w_c`` only (ablation).

    Returns
    -------
    ndarray of float32, shape (Y, X)

    Raises
    ------
    InputError
        Labels not 2D, not integer, negative or boolean; parameters out of range.

    Notes
    -----
    ``d1``, ``d2`` are Euclidean distances from a pixel to the nearest pixel of
    the nearest and second-nearest cell.  The border term is 0 where fewer than
    two cells exist, and an all-background image gets ``w_c`` only.  Where
    ``d1 + d2 > R = sigma sqrt(2 ln(w0 / tol))`` the term (< ``tol``) is set
    to 0, so the error against the exact map is below ``tol``
    (default 1e-4, plus float32 rounding).

    References
    ----------
    O. Ronneberger, P. Fischer, T. Brox. U-Net: Convolutional Networks for
    Biomedical Image Segmentation. MICCAI 2015, arXiv:1505.04597, eq. 2.

    Examples
    --------
    Two one-pixel cells four pixels apart; the midpoint has d1 = d2 = 2:

    >>> labels = np.zeros((1, 9), int); labels[0, 2] = 1; labels[0, 6] = 2
    >>> w = weight_map(labels, class_balance="none")
    >>> round(float(w[0, 4]), 4), round(1 + 10 * math.exp(-16 / 50), 4)
    (8.2615, 8.2615)
    """
    labels = _check_labels(labels)
    _check_params(w0, sigma, tol, border_region, class_balance)
    spacing = _check_pair(spacing, "spacing", allow_zero=False)
    weights = class_weights_map(labels, class_balance, class_weights, frequencies)
    radius = cutoff_radius(w0, sigma, tol)
    if not border_term or radius < 0 or labels.size == 0:
        return weights
    add_border_term(compact(labels), float(spacing[0]), float(spacing[1]), float(radius), float(w0), float(sigma),
                     border_region == "background", weights)
    return weights


def weight_map_stack(labels, progress=False, **kwargs):
    """:func:`weight_map` for each plane of a (N, Y, X) stack; float32, same shape.

    ``progress=True`` shows a tqdm bar on stderr.  Other keyword arguments go
    to :func:`weight_map`.
    """
    labels = _check_labels(labels, ndim=3)
    planes = labels
    if progress:
        from tqdm import tqdm

        planes = tqdm(labels, desc="weight maps", unit="plane", file=sys.stderr)
    out = np.empty(labels.shape, np.float32)
    for i, plane in enumerate(planes):
        out[i] = weight_map(plane, **kwargs)
    return out


def weight_kwargs(cfg, frequencies=None):
    """Every :func:`weight_map` keyword argument, from the config's ``weights`` section.

    Parameters
    ----------
    cfg : dict
        Keys ``w0, sigma, tol, border_region, class_balance, class_weights,
        frequency_scope, spacing, border_term``; missing keys take
        :func:`weight_map`'s defaults, other keys are ignored.
    frequencies : sequence of 2 float, optional
        Dataset ``[background, foreground]`` frequencies
        (:func:`class_frequencies`), required when ``frequency_scope`` is
        ``dataset``.

    Returns
    -------
    dict
        JSON-serialisable; ``class_weights`` is set only for ``explicit``,
        ``frequencies`` only for dataset scope (otherwise None).
    """
    defaults = {k: v.default for k, v in inspect.signature(weight_map).parameters.items() if k != "labels"}
    kwargs = {**defaults, **{k: cfg[k] for k in defaults if k in cfg}}
    kwargs["spacing"] = [float(s) for s in kwargs["spacing"]]
    if kwargs["class_balance"] != "explicit":
        kwargs["class_weights"] = None
    kwargs["frequencies"] = None
    if cfg.get("frequency_scope", "image") == "dataset":
        if frequencies is None:
            raise InputError("weights.frequency_scope", "is dataset but no dataset frequencies were given",
                             "compute them with class_frequencies over the training labels")
        kwargs["frequencies"] = [float(f) for f in frequencies]
    return kwargs
