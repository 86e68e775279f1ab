"""The augmented training set: the paper's elastic deformation, materialised to Zarr (section 3.1).

The paper's key augmentation is elastic deformation: random displacement
vectors on a coarse 3x3 grid, drawn from a Gaussian with 10 px standard
deviation, turned into per-pixel displacements by bicubic interpolation; plus
shift, rotation and gray-value variation.  Here every copy is drawn once and
written to ``results/augmented.zarr``, so training reads rather than computes
and users can look at exactly what the network saw.

The geometry of a copy is :mod:`tileunet.warp`; writing the set is :mod:`tileunet.augmented_set`.

Reproducibility: the random state of copy ``k`` of plane ``i`` of sample
``name`` is ``SeedSequence(seed, spawn_key=(key(name), i, k))``, so a copy
depends on nothing but the seed, its own position and the parameters: the
store is byte-identical for any thread count and order, and adding a sample
leaves the others' copies unchanged.  Work is spread over processes, each
running torch single-threaded.  Callers of
:func:`write_augmented` with ``threads > 1`` from a script must guard it with
``if __name__ == "__main__":``, as for any ``multiprocessing`` spawn.
"""

import contextlib
import dataclasses
import hashlib
import math

import numpy as np
import torch

from .config import with_defaults
from .errors import InputError
from .warp import sampling_grid, upsampling_matrix, warp_image, warp_labels, warp_weights
from .labels import separate_touching
from .weights import weight_map

ARRAYS = ("image", "labels", "weights")
WEIGHTS_MODES = ("recompute", "interpolate")
PARALLEL_MIN_PX = 2**26  # ~64 Mpx, 5-15 s on one core: worth a worker start-up (torch import, script re-import)
LAYOUT = ("one group per training sample; arrays image, labels, weights of shape (planes * copies, Y, X), "
          "plane-major (index = plane * copies + copy; a 2D sample has planes = 1), one copy per chunk; "
          "an image of C > 1 channels is (planes * copies, C, Y, X), its names in the attribute channels")


def _check_param(name, value, kind):
    """Raise InputError unless one augment parameter has the right type and range."""
    where, fix = f"config augment.{name}", "correct it in the config's augment section (see config/README.md)"
    if name == "weights_mode":
        if value not in WEIGHTS_MODES:
            raise InputError(where, f"is {value!r}", f"use one of {', '.join(WEIGHTS_MODES)}")
        return
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if kind in (int, "int") and not is_int:
        raise InputError(where, f"is {value!r}, expected an integer", fix)
    if not (is_int or isinstance(value, (float, np.floating))) or not math.isfinite(value) or value < 0:
        raise InputError(where, f"is {value!r}, expected a finite number >= 0", fix)
    lowest = {"copies": 1, "elastic_grid": 2}.get(name, 0)
    if name.endswith("_p") and value > 1:
        raise InputError(where, f"is {value}, outside its range", "use a probability in [0, 1]")
    if value < lowest:
        raise InputError(where, f"is {value}, outside its range", f"use at least {lowest}")


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """The ``augment`` config section (defaults: ``config/schema.yaml``, the paper's where it gives one).

    Probabilities ``*_p`` are in [0, 1]; lengths are in source pixels;
    intensities are in normalised units (``results/data`` images map the 1st
    and 99.8th percentiles to 0 and 1).  ``flip_p`` applies per axis.
    """

    copies: int
    weights_mode: str
    elastic_p: float
    elastic_grid: int
    elastic_std: float
    rotate_p: float
    rotate_degrees: float
    flip_p: float
    shift_p: float
    shift_px: float
    scale_p: float
    scale_min: float
    scale_max: float
    brightness_p: float
    brightness_delta: float
    contrast_p: float
    contrast_min: float
    contrast_max: float
    gamma_p: float
    gamma_min: float
    gamma_max: float
    noise_p: float
    noise_std: float
    local_contrast_p: float
    local_contrast_min: float
    local_contrast_spacing: float
    preview: int

    def __post_init__(self):
        for f in dataclasses.fields(self):
            _check_param(f.name, getattr(self, f.name), f.type)
        for name in ("scale", "contrast", "gamma"):
            lo, hi = getattr(self, f"{name}_min"), getattr(self, f"{name}_max")
            if not 0 < lo <= hi:
                raise InputError(f"config augment.{name}_min/{name}_max", f"are {lo}, {hi}",
                                 f"use 0 < {name}_min <= {name}_max")
        if not 0 < self.local_contrast_min <= 1:
            raise InputError("config augment.local_contrast_min", f"is {self.local_contrast_min}",
                             "use a factor in (0, 1]")
        if self.local_contrast_spacing <= 0:
            raise InputError("config augment.local_contrast_spacing", f"is {self.local_contrast_spacing}",
                             "use a spacing of more than 0 px")

    @classmethod
    def from_config(cls, cfg=None):
        """Build from a config dict, missing keys taking the schema's defaults; unknown keys are an error."""
        cfg = dict(cfg or {})
        unknown = sorted(set(cfg) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise InputError("config augment", f"has unknown keys {unknown}", "remove them or fix their spelling")
        return cls(**with_defaults("augment", cfg))


@dataclasses.dataclass(frozen=True)
class Transform:
    """The drawn parameters of one augmented copy (see the module docstring for ``q(p)``).

    Attributes
    ----------
    elastic : tuple or None
        Grid displacements of shape (2, grid, grid) as nested tuples, (dy, dx)
        in source pixels at the control points; None for no deformation.
    angle : float
        Rotation in degrees about the image centre; positive turns the
        content clockwise as displayed (y down), 90 gives ``numpy.rot90(image, -1)``.
    flip : (bool, bool)
        Mirror the y and the x axis.
    shift : (float, float)
        ``t`` in source pixels (y, x).
    scale : float
        Isotropic magnification ``s``.
    brightness, contrast, gamma : float
        Offset, factor about the mean, exponent on the min-max range (0, 1, 1: none).
    noise_std : float
        Standard deviation of the added Gaussian noise (0: none).
    noise_seed : int
        Seed of the noise, so a copy is rebuilt from its parameters alone.
    local_contrast : float
        Lowest factor of the smooth contrast field (1: none), see :func:`contrast_field`.
    local_contrast_spacing : float
        Its control-point spacing (px).
    local_contrast_seed : int
        Seed of its control values.
    """

    elastic: tuple | None = None
    angle: float = 0.0
    flip: tuple = (False, False)
    shift: tuple = (0.0, 0.0)
    scale: float = 1.0
    brightness: float = 0.0
    contrast: float = 1.0
    gamma: float = 1.0
    noise_std: float = 0.0
    noise_seed: int = 0
    local_contrast: float = 1.0
    local_contrast_spacing: float = 0.0
    local_contrast_seed: int = 0

    def matrix(self):
        """``A = R(angle) F / scale`` acting on (y, x), float64 (2, 2)."""
        a = math.radians(self.angle)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        return rot @ np.diag([-1.0 if f else 1.0 for f in self.flip]) / self.scale

    def is_geometric_identity(self):
        """True when ``q(p) = p``: no pixel needs interpolating."""
        no_elastic = self.elastic is None or not np.any(self.elastic)
        return no_elastic and not any(self.shift) and np.array_equal(self.matrix(), np.eye(2))

    def to_dict(self):
        """JSON-ready dict, as stored in the augmented store's ``transforms`` attribute."""
        d = dataclasses.asdict(self)
        return {k: np.asarray(v).tolist() if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`: rebuild a stored copy's transform."""
        def freeze(v):
            return tuple(map(freeze, v)) if isinstance(v, list) else v
        return cls(**{k: freeze(v) for k, v in d.items()})


def sample_key(name):
    """A stable 64-bit integer of a sample name (SHA-256), the first spawn-key entry of its copies."""
    return int.from_bytes(hashlib.sha256(str(name).encode()).digest()[:8], "little")


def copy_rng(seed, sample, plane, copy):
    """The random generator of one copy: ``SeedSequence(seed, spawn_key=(sample_key(sample), plane, copy))``."""
    key = (sample_key(sample), int(plane), int(copy))
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=key))


def draw_transform(params, rng):
    """Draw one copy's :class:`Transform`.

    Every value is drawn whatever the probabilities, in a fixed order (the
    elastic grid last), so changing one probability or range leaves the other
    transforms of a copy unchanged.

    Parameters
    ----------
    params : AugmentParams
    rng : numpy.random.Generator

    Returns
    -------
    Transform
    """
    p = params
    on = rng.random(10) < [p.elastic_p, p.rotate_p, p.flip_p, p.flip_p, p.shift_p, p.scale_p,
                           p.brightness_p, p.contrast_p, p.gamma_p, p.noise_p]
    angle = rng.uniform(-p.rotate_degrees, p.rotate_degrees)
    shift = rng.uniform(-p.shift_px, p.shift_px, 2)
    scale = rng.uniform(p.scale_min, p.scale_max)
    brightness = rng.uniform(-p.brightness_delta, p.brightness_delta)
    contrast = rng.uniform(p.contrast_min, p.contrast_max)
    gamma = rng.uniform(p.gamma_min, p.gamma_max)
    noise_seed = int(rng.integers(2**63))
    grid = rng.standard_normal((2, p.elastic_grid, p.elastic_grid)) * p.elastic_std
    # Drawn after the grid, so copies made before this option existed are unchanged with it off.
    local = rng.random() < p.local_contrast_p
    local_seed = int(rng.integers(2**63))
    return Transform(
        elastic=tuple(tuple(map(tuple, g.tolist())) for g in grid) if on[0] else None,
        angle=float(angle) if on[1] else 0.0,
        flip=(bool(on[2]), bool(on[3])),
        shift=tuple(float(s) for s in shift) if on[4] else (0.0, 0.0),
        scale=float(scale) if on[5] else 1.0,
        brightness=float(brightness) if on[6] else 0.0,
        contrast=float(contrast) if on[7] else 1.0,
        gamma=float(gamma) if on[8] else 1.0,
        noise_std=float(p.noise_std) if on[9] else 0.0,
        noise_seed=noise_seed,
        local_contrast=float(p.local_contrast_min) if local else 1.0,
        local_contrast_spacing=float(p.local_contrast_spacing) if local else 0.0,
        local_contrast_seed=local_seed,
    )


def vary_intensity(image, transform):
    """The gray-value variations of one copy, in this order: gamma, contrast, local contrast, brightness, noise.

    Gamma acts on the copy's min-max range (so normalised intensities
    outside [0, 1] stay defined), contrast scales about the mean, local
    contrast about the mean by :func:`contrast_field`.  The paper names
    "gray value variations" without a recipe; these are the usual ones, plus
    the local one (our addition, not the paper's), which shows the network
    cells of lower contrast than their neighbours, as the inner cells of a
    dense phase-contrast colony are.

    Parameters
    ----------
    image : ndarray of float32, shape (Y, X), or (C, Y, X)
        Gamma and contrast act on each channel's own range and mean; brightness and
        noise (drawn per pixel and channel) on all.
    transform : Transform

    Returns
    -------
    ndarray of float32, same shape
        A new array (``image`` is not modified).
    """
    out = np.array(image, dtype=np.float32)
    t = transform
    out = np.stack([_gamma_contrast(c, t) for c in out]) if out.ndim == 3 else _gamma_contrast(out, t)
    if t.brightness:
        out += np.float32(t.brightness)
    if t.noise_std:
        noise = np.random.default_rng(t.noise_seed).standard_normal(out.shape, dtype=np.float32)
        noise *= np.float32(t.noise_std)
        out += noise
    return out


def _gamma_contrast(out, t):
    """Gamma on the min-max range, contrast, then local contrast about the mean, of one float32 (Y, X) channel."""
    if t.gamma != 1.0:
        lo, hi = float(out.min()), float(out.max())
        if hi > lo:
            out = (lo + (hi - lo) * np.power((out - lo) / np.float32(hi - lo), np.float32(t.gamma))).astype(np.float32)
    if t.contrast != 1.0:
        out = _scale_about_mean(out, np.float32(t.contrast))
    if t.local_contrast != 1.0:
        out = _scale_about_mean(out, contrast_field(out.shape, t.local_contrast, t.local_contrast_spacing,
                                                    t.local_contrast_seed))
    return out


def _scale_about_mean(out, factor):
    """``(out - mean) * factor + mean`` in float32, a new array; ``factor`` a scalar or an array of ``out``'s shape."""
    mean = np.float32(out.mean(dtype=np.float64))
    scaled = out - mean
    scaled *= factor
    scaled += mean
    return scaled


def contrast_field(shape, lowest, spacing, seed):
    """A smooth random contrast factor per pixel, float32 (Y, X), in [lowest, 1].

    Control values uniform in [lowest, 1] on a grid of ``spacing`` px,
    cubic-spline upsampled as the elastic grid is (:func:`tileunet.warp.upsampling_matrix`)
    and clipped to the range.

    Parameters
    ----------
    shape : (int, int)
    lowest : float
        In (0, 1].
    spacing : float
        Control-point spacing, px; one cell-sized spacing dims single cells.
    seed : int
    """
    points = [max(int(np.ceil((n - 1) / spacing)) + 1, 2) for n in shape]
    control = np.random.default_rng(seed).uniform(lowest, 1.0, points)
    wy, wx = upsampling_matrix(shape[0], points[0]), upsampling_matrix(shape[1], points[1])
    return np.clip(wy @ control @ wx.T, lowest, 1.0).astype(np.float32)


def dataset_frequencies(attrs):
    """Dataset class frequencies recorded in a source weights array's attributes, or None.

    Looked up under ``frequencies``, then under ``parameters.frequencies``
    (the weight-map arguments the weights stage records).
    """
    found = attrs.get("frequencies")
    if found is None and isinstance(attrs.get("parameters"), dict):
        found = attrs["parameters"].get("frequencies")
    return None if found is None else [float(f) for f in found]


def augment_plane(image, labels, transform, weights=None, weights_mode="recompute", weights_kwargs=None,
                  separate=False):
    """One augmented copy of a 2D image, its labels and weights.

    Parameters
    ----------
    image : ndarray of float32, shape (Y, X), or (C, Y, X)
        Normalised intensities; every channel is deformed by the one field.
    labels : ndarray of int, shape (Y, X)
        Instance ids, 0 = background.
    transform : Transform
    weights : ndarray of float32, shape (Y, X), optional
        The source weight map; needed for ``weights_mode="interpolate"``.
    weights_mode : {"recompute", "interpolate"}
        Recompute the map from the deformed labels (exact), or resample the
        source map bilinearly (as the authors' Caffe layer did; cheaper, but
        the border term is stretched with the cells).
    weights_kwargs : dict, optional
        Passed to :func:`tileunet.weights.weight_map` when recomputing.
    separate : bool
        Re-carve 1-px gaps between touching cells after warping
        (:func:`tileunet.labels.separate_touching`): nearest-neighbour
        sampling can close a 1-px gap, and copies keep the invariant of their
        source labels (carved pixels become background, ids never appear).

    Returns
    -------
    image : ndarray of float32, shape of ``image``
    labels : ndarray of int32, shape (Y, X)
    weights : ndarray of float32, shape (Y, X)
    """
    if weights_mode not in WEIGHTS_MODES:
        raise InputError("weights_mode", f"is {weights_mode!r}", f"use one of {', '.join(WEIGHTS_MODES)}")
    if weights_mode == "interpolate" and weights is None:
        raise InputError("weights", "are missing for weights_mode interpolate", "pass the source weight map")
    image, labels, weights = _deform(image, labels, transform, weights if weights_mode == "interpolate" else None,
                                     separate)
    if weights_mode == "recompute":
        weights = weight_map(labels, **(weights_kwargs or {}))
    return vary_intensity(image, transform), labels, weights


def augment_pair(image, labels, transform, separate=False):
    """One augmented copy of a 2D image and its labels, without a weight map (see :func:`augment_plane`).

    Returns
    -------
    image : ndarray of float32, shape of ``image``
    labels : ndarray of int32, shape (Y, X)
    """
    image, labels, _ = _deform(image, labels, transform, None, separate)
    return vary_intensity(image, transform), labels


def _deform(image, labels, transform, weights, separate):
    """The geometry of one copy: image, labels and (if given) weights resampled, then gaps re-carved."""
    if transform.is_geometric_identity():
        image, labels = np.array(image, dtype=np.float32), np.array(labels, dtype=np.int32)
        weights = None if weights is None else np.array(weights, dtype=np.float32)
    else:
        grid = sampling_grid(transform, np.shape(labels))
        image, labels = warp_image(image, grid), warp_labels(labels, grid)
        weights = None if weights is None else warp_weights(weights, grid)
    if separate:
        labels = separate_touching(labels)
    return image, labels, weights


@contextlib.contextmanager
def torch_threads(n):
    """Run torch with ``n`` intra-op threads inside the block, then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
