"""Training and validation tiles read lazily from Zarr, mirrored at the border.

A tile is an output window of ``out`` x ``out`` pixels at (y, x) in one 2D
plane; the network input is that window grown by the model's ``margin`` on
every side.  Where the input window leaves the image, the missing context is
mirrored (paper section 2, figure 2: overlap-tile), so border pixels are
trained exactly as overlap-tile inference will see them.  Output pixels that
fall outside a plane smaller than the tile get weight 0 and do not count.

Every read touches only the chunks under the window, so memory does not grow
with the data set.  Training tiles are drawn by a counter-based generator:
tile ``t`` depends only on (seed, t), which makes the sampler state a single
integer and the draw independent of DataLoader workers.
"""

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import torch
import zarr

from . import targets
from .channels import CHANNELS_ATTR, as_chw, spatial_shape
from .errors import InputError
from .tiling import inside_mask, read_window

ARRAYS = ("image", "labels", "weights")


@dataclasses.dataclass(frozen=True)
class Plane:
    """One 2D plane of a Zarr group: ``store`` path, leading index (None for 2D), (Y, X), channel names.

    ``channels`` is empty for a single-channel image; otherwise the image array has the
    channel axis at -3 (:mod:`tileunet.channels`).
    """

    store: str
    index: object
    shape: tuple
    channels: tuple = ()

    @property
    def n_channels(self):
        return max(len(self.channels), 1)


def _open_group(path, need_leading):
    path = Path(path)
    try:
        group = zarr.open_group(path, mode="r")
    except Exception as exc:
        raise InputError(path, f"cannot be opened as a Zarr group ({exc})",
                         "re-run the stage that writes it (snakemake --forcerun ingest augment)") from exc
    missing = [a for a in ARRAYS if a not in group]
    if missing:
        raise InputError(path, f"lacks the arrays {missing}", "re-run the weights and augment stages that write them")
    names = tuple(group["image"].attrs.get(CHANNELS_ATTR) or ())
    shapes = {a: group[a].shape for a in ARRAYS}
    spatial = {spatial_shape(shapes["image"], len(names))} | {shapes[a] for a in ARRAYS[1:]}
    if len(spatial) != 1 or len(shapes["labels"]) not in ((3,) if need_leading else (2, 3)):
        raise InputError(path, f"has arrays of shapes {shapes}; image (less its channel axis), labels and weights "
                         f"must share one {'(copies, Y, X)' if need_leading else '(Y, X) or (N, Y, X)'} shape",
                         "re-run the stage that writes it")
    return group, shapes["labels"], names


def planes_of(path, need_leading=False):
    """The :class:`Plane` list of one sample group (2D, or a stack / augmented copies)."""
    _, shape, names = _open_group(path, need_leading)
    if len(shape) == 2:
        return [Plane(str(path), None, tuple(shape), names)]
    return [Plane(str(path), i, tuple(shape[1:]), names) for i in range(shape[0])]


def sample_groups(root):
    """(name, group) pairs of a Zarr group's subgroups, quiet about foreign files.

    Snakemake marks a directory output with a ``.snakemake_timestamp`` file,
    which zarr would warn about on every listing.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not recognized as a component of a Zarr hierarchy")
        return sorted(root.groups(), key=lambda item: item[0])


def augmented_planes(path):
    """Every (sample, copy) plane of ``results/augmented.zarr`` (one group per sample)."""
    path = Path(path)
    try:
        root = zarr.open_group(path, mode="r")
    except Exception as exc:
        raise InputError(path, f"cannot be opened as a Zarr group ({exc})", "re-run `snakemake augment`") from exc
    names = sorted(name for name, _ in sample_groups(root))
    if not names:
        raise InputError(path, "holds no sample groups", "check that the sample table has rows of split train")
    return [p for name in names for p in planes_of(path / name, need_leading=True)]


class TileReader:
    """Reads (image, target, weights) windows of planes, opening each store once per process.

    Parameters
    ----------
    planes : list of Plane
    out : int
        Output tile edge (px).
    margin : int
        Context per side (px) the network consumes; the input edge is ``out + 2 * margin``.
    target : {"foreground", "border"}
        Classes of the target (:mod:`tileunet.targets`).
    border_width : int
        Width (px) of the border class.
    """

    def __init__(self, planes, out, margin, target="foreground", border_width=2):
        self.planes, self.out, self.margin = list(planes), int(out), int(margin)
        self.target, self.border_width = target, int(border_width)
        self._context = targets.context(target, border_width)
        self._groups = {}

    def __getstate__(self):
        # zarr handles are reopened in each DataLoader worker rather than pickled
        return {**self.__dict__, "_groups": {}}

    def _group(self, store):
        if store not in self._groups:
            self._groups[store] = zarr.open_group(store, mode="r")
        return self._groups[store]

    def read(self, plane_id, y, x):
        """Tile with output origin (y, x) in plane ``plane_id``.

        Returns
        -------
        image : float32 (C, out + 2 margin, out + 2 margin)
        target : int64 (out, out)
            Class per pixel (:func:`tileunet.targets.classes`).
        weights : float32 (out, out)
            The weight map, 0 outside the plane.
        """
        plane = self.planes[plane_id]
        group, m, out, c = self._group(plane.store), self.margin, self.out, self._context
        image = read_window(group["image"], plane.index, y - m, x - m, out + 2 * m, out + 2 * m)
        labels = read_window(group["labels"], plane.index, y - c, x - c, out + 2 * c, out + 2 * c)
        weights = read_window(group["weights"], plane.index, y, x, out, out) * inside_mask(y, x, out, out, plane.shape)
        return (as_chw(image, plane.n_channels).astype(np.float32, copy=False),
                targets.classes(labels, self.target, self.border_width),
                weights.astype(np.float32, copy=False))


def foreground_points(reader, stride=8):
    """Per plane, the foreground pixels of a ``stride`` grid: list of int (K, 2) arrays (y, x).

    A coarse grid keeps this small (K ~ foreground area / stride**2) while still
    hitting every cell wider than ``stride`` px.
    """
    points = []
    for plane in reader.planes:
        labels = reader._group(plane.store)["labels"]
        grid = np.asarray(labels[(slice(None, None, stride),) * 2 if plane.index is None
                                 else (plane.index, slice(None, None, stride), slice(None, None, stride))])
        points.append(np.argwhere(grid > 0) * stride)
    return points


class RandomTiles(torch.utils.data.Dataset):
    """Training tile ``t`` = a random output window, drawn from ``numpy.random.default_rng([seed, t])``.

    With probability ``foreground_p`` the window is placed over a random
    foreground pixel (of a plane that has one); otherwise a plane is picked with
    probability proportional to its area and the window uniformly among the
    positions that keep it inside the plane (or at 0 when the plane is smaller
    than the tile), as the paper's uniform sampling.  Foreground oversampling is
    not in the paper (it follows nnU-Net); it matters when cells cover a few
    percent of the image, where most uniform tiles hold background only.

    Parameters
    ----------
    reader : TileReader
    seed : int
    foreground_p : float in [0, 1]
    """

    def __init__(self, reader, seed, foreground_p=0.0):
        self.reader, self.seed, self.foreground_p = reader, int(seed), float(foreground_p)
        areas = np.array([p.shape[0] * p.shape[1] for p in reader.planes], dtype=np.float64)
        self._p = areas / areas.sum()
        self._fg = foreground_points(reader) if self.foreground_p > 0 else []
        self._fg_planes = [i for i, pts in enumerate(self._fg) if len(pts)]

    def __len__(self):
        return np.iinfo(np.int64).max

    def spec(self, t):
        """(plane id, y, x) of tile ``t``."""
        rng = np.random.default_rng([self.seed, int(t)])
        out = self.reader.out
        if self._fg_planes and rng.random() < self.foreground_p:
            pid = self._fg_planes[int(rng.integers(len(self._fg_planes)))]
            py, px = self._fg[pid][int(rng.integers(len(self._fg[pid])))]
            ny, nx = self.reader.planes[pid].shape
            y = int(np.clip(py - rng.integers(0, out), 0, max(ny - out, 0)))
            x = int(np.clip(px - rng.integers(0, out), 0, max(nx - out, 0)))
            return pid, y, x
        pid = int(rng.choice(len(self._p), p=self._p))
        ny, nx = self.reader.planes[pid].shape
        return pid, int(rng.integers(0, max(ny - out, 0) + 1)), int(rng.integers(0, max(nx - out, 0) + 1))

    def __getitem__(self, t):
        return tuple(torch.from_numpy(a) for a in self.reader.read(*self.spec(t)))


class IterationBatches(torch.utils.data.Sampler):
    """Batches of tile indices for iterations ``start .. stop - 1``: iteration i uses tiles i*B .. i*B+B-1."""

    def __init__(self, start, stop, batch_size):
        self.start, self.stop, self.batch_size = int(start), int(stop), int(batch_size)

    def __len__(self):
        return max(self.stop - self.start, 0)

    def __iter__(self):
        for i in range(self.start, self.stop):
            yield list(range(i * self.batch_size, (i + 1) * self.batch_size))


def grid_specs(planes, out):
    """Output windows covering every plane on a regular grid (the last row/column flush with the edge)."""
    specs = []
    for pid, plane in enumerate(planes):
        ys, xs = (sorted({*range(0, max(n - out, 0) + 1, out), max(n - out, 0)}) for n in plane.shape)
        specs += [(pid, y, x) for y in ys for x in xs]
    return specs


def validation_tiles(stores, out, margin, n_tiles, target="foreground", border_width=2):
    """Fixed validation tiles: ``n_tiles`` evenly spread over the grid covering every plane.

    Parameters
    ----------
    stores : list of path
        ``results/data/{sample}.zarr`` groups with image, labels, weights of shape (Y, X) or (N, Y, X).
    out, margin : int
        Output tile edge and model margin (px).
    n_tiles : int
        At most this many tiles (fewer when the grid is smaller).
    target, border_width
        As :class:`TileReader`.

    Returns
    -------
    tuple of torch.Tensor or None
        image (T, C, out + 2 margin, out + 2 margin) float32, target (T, out, out) int64,
        weights (T, out, out) float32 (0 outside the planes); None without stores.
    """
    planes = [p for s in stores for p in planes_of(s)]
    if not planes:
        return None
    specs = grid_specs(planes, out)
    keep = np.unique(np.linspace(0, len(specs) - 1, min(n_tiles, len(specs))).round().astype(int))
    reader = TileReader(planes, out, margin, target, border_width)
    tiles = [reader.read(*specs[k]) for k in keep]
    return tuple(torch.from_numpy(np.stack(a)) for a in zip(*tiles))


def validation_planes(stores):
    """Every whole validation plane: list of (normalised image float32 (Y, X) or (C, Y, X), labels int32 (Y, X))."""
    out = []
    for plane in (p for s in stores for p in planes_of(s)):
        group = zarr.open_group(plane.store, mode="r")
        index = () if plane.index is None else (plane.index,)
        out.append((np.asarray(group["image"][index], np.float32), np.asarray(group["labels"][index])))
    return out
