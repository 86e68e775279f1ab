"""The augmented training set: the paper's elastic deformation, materialised to Zarr (section 3.1).

The paper's key augmentation is elastic deformation: random displacement
vectors on a coarse 3x3 grid, drawn from a Gaussian with 10 px standard
deviation, turned into per-pixel displacements by bicubic interpolation; plus
shift, rotation and gray-value variation.  Here every copy is drawn once and
written to ``results/augmented.zarr``, so training reads rather than computes
and users can look at exactly what the network saw.

One copy is one output pixel grid ``p = (y, x)`` sampled at the source
coordinates

.. math::

    q(p) = c + A\\,(p - c) + t + d(p), \\qquad A = R(\\theta)\\,F / s,

with ``c`` the image centre, ``R`` a rotation, ``F`` the flips, ``s`` an
isotropic scale (``s > 1`` magnifies), ``t`` a shift and ``d`` the elastic
displacement, in source pixels.  ``d`` is the coarse grid upsampled by cubic
spline interpolation (``scipy.ndimage.zoom(order=3)``, as elasticdeform does),
which is separable: ``d = W_y G W_x^T`` with ``W`` of shape (n, grid).  So the
whole coordinate map is one rank-``grid + 2`` matrix product, and every output
pixel is interpolated exactly once: the image with bicubic convolution
(``torch.nn.functional.grid_sample``, Keys' kernel, a = -0.75), the labels with
nearest neighbour (a copy of a source pixel, so no id is ever invented), the
weights bilinearly when interpolated.  Borders are mirrored without repeating
the edge pixel (``numpy.pad(mode="reflect")``, scipy's ``mirror``), as in
overlap-tile.  By default the weights of a copy are recomputed from its labels
with :func:`tileunet.weights.weight_map`.

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
import functools
import hashlib
import json
import math
import multiprocessing
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import zarr
from scipy import ndimage

from . import __version__
from .errors import InputError
from .io import atomic_path
from .weights import separate_touching, weight_kwargs, weight_map

ARRAYS = ("image", "labels", "weights")
WEIGHTS_MODES = ("recompute", "interpolate")
# float32 holds every integer below 2**24 exactly; larger ids go through float64
_FLOAT32_EXACT = 2**24
PARALLEL_MIN_PX = 2**26  # ~64 Mpx, 5-15 s on one core: worth a worker start-up (torch import, script re-import)
LAYOUT = ("one group per training sample; arrays image, labels, weights of shape (planes * copies, Y, X), "
          "plane-major (index = plane * copies + copy; a 2D sample has planes = 1), one copy per chunk")


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
    """The ``augment`` config section; defaults are the paper's and ``config/schema.yaml``'s.

    Probabilities ``*_p`` are in [0, 1]; lengths are in source pixels;
    intensities are in normalised units (``results/data`` images map the 1st
    and 99.8th percentiles to 0 and 1).  ``flip_p`` applies per axis.
    """

    copies: int = 8
    weights_mode: str = "recompute"
    elastic_p: float = 1.0
    elastic_grid: int = 3
    elastic_std: float = 10.0
    rotate_p: float = 1.0
    rotate_degrees: float = 180.0
    flip_p: float = 0.5
    shift_p: float = 0.5
    shift_px: float = 32.0
    scale_p: float = 0.3
    scale_min: float = 0.9
    scale_max: float = 1.1
    brightness_p: float = 0.5
    brightness_delta: float = 0.1
    contrast_p: float = 0.5
    contrast_min: float = 0.8
    contrast_max: float = 1.2
    gamma_p: float = 0.3
    gamma_min: float = 0.8
    gamma_max: float = 1.25
    noise_p: float = 0.3
    noise_std: float = 0.03
    preview: int = 4

    def __post_init__(self):
        for f in dataclasses.fields(self):
            _check_param(f.name, getattr(self, f.name), f.type)
        for name in ("scale", "contrast", "gamma"):
            lo, hi = getattr(self, f"{name}_min"), getattr(self, f"{name}_max")
            if not 0 < lo <= hi:
                raise InputError(f"config augment.{name}_min/{name}_max", f"are {lo}, {hi}",
                                 f"use 0 < {name}_min <= {name}_max")

    @classmethod
    def from_config(cls, cfg=None):
        """Build from a config dict; unknown keys are an error naming them."""
        cfg = dict(cfg or {})
        unknown = sorted(set(cfg) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise InputError("config augment", f"has unknown keys {unknown}", "remove them or fix their spelling")
        return cls(**cfg)


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
    )


@functools.lru_cache(maxsize=16)
def upsampling_matrix(n, points):
    """Cubic-spline upsampling of ``points`` control values to ``n`` pixels, float64 (n, points).

    Column ``j`` is ``scipy.ndimage.zoom(order=3)`` of the ``j``-th unit
    vector, so ``W @ g == zoom(g, n / points, order=3)`` for any ``g``;
    control points sit at pixels ``0, (n - 1) / (points - 1), ..., n - 1``.
    Being linear and separable, zoom of a 2D grid ``G`` is ``W_y G W_x^T``.
    """
    w = ndimage.zoom(np.eye(points), (n / points, 1), order=3)
    w.setflags(write=False)
    return w


def displacement_field(elastic, shape):
    """Per-pixel elastic displacement ``d`` (2, Y, X), float64, source pixels.

    The paper's bicubic interpolation of the coarse grid, equal to
    ``scipy.ndimage.zoom(grid, (Y / g, X / g), order=3)`` per component.
    """
    grid = np.asarray(elastic, dtype=np.float64)
    wy, wx = upsampling_matrix(shape[0], grid.shape[1]), upsampling_matrix(shape[1], grid.shape[2])
    return np.stack([wy @ g @ wx.T for g in grid])


def sampling_grid(transform, shape):
    """The source coordinates ``q(p)`` of every output pixel, as ``grid_sample`` wants them.

    Parameters
    ----------
    transform : Transform
    shape : (int, int)
        (Y, X) of the source and of the output, each >= 2.

    Returns
    -------
    torch.Tensor of float32, shape (1, Y, X, 2)
        (x, y) normalised so that -1 and 1 are the centres of the first and
        last pixels (``align_corners=True``).

    Notes
    -----
    Per source axis ``a``, ``q_a = L K_a R^T`` with the left basis
    ``L = [W_y, y, 1]`` (Y, g + 2), the right basis ``R = [W_x, x, 1]``
    (X, g + 2) and a small ``K_a`` holding the grid, the affine part and the
    normalisation: one float32 matrix product yields the whole interleaved grid.
    """
    ny, nx = shape
    amat = transform.matrix()
    centre = np.array([(ny - 1) / 2, (nx - 1) / 2])
    offset = centre - amat @ centre + np.asarray(transform.shift, dtype=np.float64)
    g = 0 if transform.elastic is None else len(transform.elastic[0])
    yb, xb = np.arange(ny, dtype=np.float64), np.arange(nx, dtype=np.float64)
    left = np.column_stack(([upsampling_matrix(ny, g)] if g else []) + [yb, np.ones(ny)])
    right = np.column_stack(([upsampling_matrix(nx, g)] if g else []) + [xb, np.ones(nx)])
    kernels = []
    for a, size in ((1, nx), (0, ny)):  # grid_sample's last axis is (x, y)
        k = np.zeros((g + 2, g + 2))
        if g:
            k[:g, :g] = transform.elastic[a]
        k[g, g + 1], k[g + 1, g], k[g + 1, g + 1] = amat[a, 0], amat[a, 1], offset[a]
        k *= 2.0 / (size - 1)
        k[g + 1, g + 1] -= 1.0
        kernels.append(k @ right.T)  # (g + 2, X)
    rhs = torch.from_numpy(np.stack(kernels, axis=-1).reshape(g + 2, 2 * nx).astype(np.float32))
    return (torch.from_numpy(left.astype(np.float32)) @ rhs).view(1, ny, nx, 2)


def _sample(array, grid, mode):
    """``grid_sample`` of one 2D array with mirrored borders; returns a (Y, X) tensor."""
    return F.grid_sample(array[None, None], grid, mode=mode, padding_mode="reflection", align_corners=True)[0, 0]


def warp_image(image, grid):
    """Bicubic (Keys, a = -0.75) resampling of a float32 (Y, X) image at ``grid``."""
    return _sample(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)), grid, "bicubic").numpy()


def warp_weights(weights, grid):
    """Bilinear resampling of a weight map: never below its minimum nor above its maximum."""
    return _sample(torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float32)), grid, "bilinear").numpy()


def warp_labels(labels, grid):
    """Nearest-neighbour resampling of instance labels, int32 (Y, X).

    Every output pixel is a copy of one source pixel, so the output ids are a
    subset of the input's.  The ids pass through a float type that holds
    them exactly (float32 below 2**24, float64 above).
    """
    labels = np.asarray(labels)
    dtype = torch.float32 if labels.size == 0 or int(labels.max()) < _FLOAT32_EXACT else torch.float64
    lab = torch.from_numpy(np.ascontiguousarray(labels)).to(dtype)
    return _sample(lab, grid.to(dtype), "nearest").numpy().astype(np.int32)


def vary_intensity(image, transform):
    """The gray-value variations of one copy, in this order: gamma, contrast, brightness, noise.

    Gamma acts on the copy's min-max range (so normalised intensities
    outside [0, 1] stay defined), contrast scales about the mean.  The paper
    names "gray value variations" without a recipe; these are the usual ones.

    Parameters
    ----------
    image : ndarray of float32, shape (Y, X)
    transform : Transform

    Returns
    -------
    ndarray of float32, shape (Y, X)
        A new array (``image`` is not modified).
    """
    out = np.array(image, dtype=np.float32)
    t = transform
    if t.gamma != 1.0:
        lo, hi = float(out.min()), float(out.max())
        if hi > lo:
            out = (lo + (hi - lo) * np.power((out - lo) / np.float32(hi - lo), np.float32(t.gamma))).astype(np.float32)
    if t.contrast != 1.0:
        mean = np.float32(out.mean(dtype=np.float64))
        out -= mean
        out *= np.float32(t.contrast)
        out += mean
    if t.brightness:
        out += np.float32(t.brightness)
    if t.noise_std:
        noise = np.random.default_rng(t.noise_seed).standard_normal(out.shape, dtype=np.float32)
        noise *= np.float32(t.noise_std)
        out += noise
    return out


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
    image : ndarray of float32, shape (Y, X)
        Normalised intensities.
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
        (:func:`tileunet.weights.separate_touching`): nearest-neighbour
        sampling can close a 1-px gap, and copies keep the invariant of their
        source labels (carved pixels become background, ids never appear).

    Returns
    -------
    image : ndarray of float32, shape (Y, X)
    labels : ndarray of int32, shape (Y, X)
    weights : ndarray of float32, shape (Y, X)
    """
    if weights_mode not in WEIGHTS_MODES:
        raise InputError("weights_mode", f"is {weights_mode!r}", f"use one of {', '.join(WEIGHTS_MODES)}")
    if weights_mode == "interpolate" and weights is None:
        raise InputError("weights", "are missing for weights_mode interpolate", "pass the source weight map")
    if transform.is_geometric_identity():
        image, labels = np.array(image, dtype=np.float32), np.array(labels, dtype=np.int32)
        weights = None if weights is None else np.array(weights, dtype=np.float32)
    else:
        grid = sampling_grid(transform, np.shape(image))
        image, labels = warp_image(image, grid), warp_labels(labels, grid)
        weights = warp_weights(weights, grid) if weights_mode == "interpolate" else None
    if separate:
        labels = separate_touching(labels)
    if weights_mode == "recompute":
        weights = weight_map(labels, **(weights_kwargs or {}))
    return vary_intensity(image, transform), labels, weights


@contextlib.contextmanager
def torch_threads(n):
    """Run torch with ``n`` intra-op threads inside the block, then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_source(sample, path, need_weights):
    """Open and check one ``results/data/{sample}.zarr``; return its image shape and weights attributes."""
    try:
        group = zarr.open_group(path, mode="r")
    except Exception as exc:
        raise InputError(path, f"cannot be opened as a Zarr group ({exc})",
                         f"re-run ingest and weights for sample {sample}") from exc
    needed = ARRAYS if need_weights else ARRAYS[:2]
    missing = [name for name in needed if name not in group]
    if missing:
        raise InputError(path, f"has no array {', '.join(missing)}", f"re-run ingest and weights for sample {sample}")
    shapes = {name: group[name].shape for name in ARRAYS if name in group}
    shape = shapes["image"]
    if len(set(shapes.values())) != 1 or len(shape) not in (2, 3) or min(shape[-2:]) < 2:
        raise InputError(path, f"has array shapes {shapes}",
                         "image, labels and weights must share one (Y, X) or (N, Y, X) shape, Y and X >= 2")
    if group["labels"].dtype.kind not in "iu" or group["image"].dtype.kind != "f":
        raise InputError(path, f"has image {group['image'].dtype} and labels {group['labels'].dtype}",
                         "re-run ingest (image float32, labels int32)")
    attrs = dict(group["weights"].attrs) if "weights" in group else {}
    return shape, attrs


@functools.lru_cache(maxsize=2)
def _read_plane(path, plane, ndim, with_weights):
    """Source plane ``plane`` of a store: image, labels and (optional) weights as numpy arrays."""
    group = zarr.open_group(path, mode="r")
    index = (plane,) if ndim == 3 else ()
    return tuple(np.asarray(group[name][index]) if (name != "weights" or with_weights) else None for name in ARRAYS)


def _augment_task(task):
    """Compute one copy and write it into its own chunk of the output store; returns its transform."""
    params = AugmentParams(**task["params"])
    rng = copy_rng(task["seed"], task["sample"], task["plane"], task["copy"])
    transform = draw_transform(params, rng)
    interpolate = params.weights_mode == "interpolate"
    image, labels, weights = _read_plane(task["source"], task["plane"], task["ndim"], interpolate)
    image, labels, weights = augment_plane(image, labels, transform, weights, params.weights_mode,
                                           task["weights_kwargs"], task["separate"])
    group = zarr.open_group(Path(task["out"]) / task["sample"], mode="r+")
    for name, data in zip(ARRAYS, (image, labels, weights)):
        group[name][task["index"]] = data
    return task["sample"], task["index"], transform.to_dict()


def _init_worker():
    """Worker processes: one torch thread each (the pool itself is the parallelism)."""
    torch.set_num_threads(1)


def _jsonable(value):
    """A JSON round trip of config values (numpy scalars and arrays become lists and numbers)."""
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


def _create_group(root, sample, shape, attrs):
    """The output group of one sample, with empty arrays chunked one copy per chunk."""
    group = root.create_group(sample, attributes=attrs)
    for name, dtype in zip(ARRAYS, (np.float32, np.int32, np.float32)):
        group.create_array(name, shape=shape, chunks=(1,) + shape[1:], dtype=dtype, fill_value=0)
    return group


def write_augmented(stores, out, cfg=None, weights_cfg=None, seed=0, threads=1, progress=False,
                    min_parallel_px=PARALLEL_MIN_PX):
    """Write the augmented training set as a Zarr v3 store, atomically.

    Parameters
    ----------
    stores : dict of str -> path
        Training sample name -> ``results/data/{sample}.zarr`` (arrays
        ``image`` float32, ``labels`` int32, ``weights`` float32 of shape
        (Y, X), or (N, Y, X) for a stack, each plane then being a source).
    out : path
        The store to write (``results/augmented.zarr``); replaced only once
        complete.
    cfg : dict or AugmentParams, optional
        The ``augment`` config section.
    weights_cfg : dict, optional
        The ``weights`` config section, for recomputed weight maps.  With
        ``frequency_scope: dataset`` the frequencies recorded in a source's
        weights attributes are used (:func:`dataset_frequencies`).
    seed : int
        The master seed.
    threads : int
        Worker processes; the result does not depend on it.
    progress : bool
        A tqdm bar on stderr.
    min_parallel_px : int
        Worker processes are started only for at least this many output
        pixels (all copies); below, starting them (each imports torch, and
        re-imports a calling script) costs more than it saves.

    Returns
    -------
    Path
        ``out``.

    Notes
    -----
    Layout: one group per sample holding ``image`` (float32), ``labels``
    (int32) and ``weights`` (float32) of shape (planes * copies, Y, X),
    plane-major (index ``plane * copies + copy``; a 2D sample has one plane),
    zstd-compressed, one copy per chunk so parallel writers never share one.
    Root and group attributes hold the seed, every parameter, the sources,
    the layout and the tileunet version; each group also lists the drawn
    :class:`Transform` of every copy (``transforms``, in index order).
    """
    params = cfg if isinstance(cfg, AugmentParams) else AugmentParams.from_config(cfg)
    weights_cfg = dict(weights_cfg or {})
    common = {"tileunet_version": __version__, "seed": int(seed), "augment": dataclasses.asdict(params),
              "weights": _jsonable(weights_cfg), "layout": LAYOUT}
    groups, tasks = plan(stores, params, weights_cfg, seed)
    out = Path(out)
    with atomic_path(out) as tmp:
        root = zarr.open_group(tmp, mode="w", zarr_format=3,
                               attributes={**common, "sources": {k: str(v) for k, v in stores.items()}})
        for sample, (shape, attrs) in groups.items():
            _create_group(root, sample, shape, {**common, **attrs})
        transforms = {sample: [None] * shape[0] for sample, (shape, _) in groups.items()}
        total_px = sum(math.prod(shape) for shape, _ in groups.values())
        workers = threads if total_px >= min_parallel_px else 1
        for sample, index, transform in _run([{**t, "out": str(tmp)} for t in tasks], workers, progress):
            transforms[sample][index] = transform
        for sample, items in transforms.items():
            root[sample].attrs["transforms"] = items
    return out


def plan(stores, params, weights_cfg, seed):
    """Check every source and list the work: one task per (sample, plane, copy).

    Returns
    -------
    groups : dict of str -> (shape, attrs)
        Output shape (planes * copies, Y, X) and attributes of each sample's group.
    tasks : list of dict
        Picklable arguments of :func:`_augment_task`, in output order.
    """
    if not stores:
        raise InputError("augment stores", "name no training sample",
                         "mark at least one sample `train` in the sample table")
    groups, tasks = {}, []
    separate = bool(weights_cfg.get("separate_touching", False))
    for sample, source in stores.items():
        shape, wattrs = _check_source(sample, source, params.weights_mode == "interpolate")
        planes = shape[0] if len(shape) == 3 else 1
        frequencies = dataset_frequencies(wattrs)
        scoped = weights_cfg
        if weights_cfg.get("frequency_scope") == "dataset" and frequencies is None:
            warnings.warn(f"{source}/weights has no 'frequencies' attribute; weight maps of the copies use "
                          "per-image class frequencies. Re-run the weights stage to record the dataset's.")
            scoped = {**weights_cfg, "frequency_scope": "image"}
        groups[sample] = ((planes * params.copies,) + tuple(shape[-2:]),
                          {"source": str(source), "planes": planes, "copies": params.copies,
                           "frequencies": frequencies})
        common = {"sample": sample, "source": str(source), "ndim": len(shape), "seed": int(seed),
                  "params": dataclasses.asdict(params), "separate": separate,
                  "weights_kwargs": weight_kwargs(scoped, frequencies)}
        tasks += [{**common, "plane": plane, "copy": copy, "index": plane * params.copies + copy}
                  for plane in range(planes) for copy in range(params.copies)]
    return groups, tasks


def _run(tasks, threads, progress):
    """Yield :func:`_augment_task` results in task order, in-process or over spawned worker processes."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), desc="augmented copies", unit="copy", file=sys.stderr)
    workers = max(1, min(int(threads), len(tasks)))
    try:
        if workers == 1:
            with torch_threads(1):
                for task in tasks:
                    yield _augment_task(task)
                    if bar is not None:
                        bar.update()
        else:
            context = multiprocessing.get_context("spawn")  # fork after torch/OpenMP start can deadlock
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
                for result in pool.map(_augment_task, tasks):
                    yield result
                    if bar is not None:
                        bar.update()
    finally:
        _read_plane.cache_clear()
        if bar is not None:
            bar.close()
