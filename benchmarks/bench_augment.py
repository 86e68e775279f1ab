"""Augmentation throughput (tileunet.augment) against elasticdeform's method, per CPU core.

Reference, as elasticdeform does it (its package, 0.5.1, does not import with
numpy 2): a 3x3 grid of N(0, 10 px) displacements upsampled with
``scipy.ndimage.zoom(order=3)``, then ``scipy.ndimage.map_coordinates`` with
order 3 for the image and order 0 for the labels (mirrored borders).  It
yields no weights, so it is also shown with :func:`tileunet.weights.weight_map`
recomputed on its labels (like for like).

tileunet: the default config's transforms (elastic 3x3 / 10 px, rotation,
flips, shift, scale, gray values), one composed grid, and the weight map
recomputed from the deformed labels (``weights_mode: recompute``, the
default) or bilinearly interpolated (``interpolate``).  Everything runs on one
thread (torch and scipy), so Mpx/s is per core; a megapixel is one output
pixel of one copy with all of its arrays.  Both are measured in the same run,
on the same images.

Usage::

    .venv/bin/python benchmarks/bench_augment.py                  # 512 and 2048
    .venv/bin/python benchmarks/bench_augment.py --sizes 512 --copies 4
"""

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from skimage.segmentation import expand_labels

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tileunet.augment import AugmentParams, augment_plane, copy_rng, draw_transform, vary_intensity  # noqa: E402
from tileunet.warp import sampling_grid, warp_image, warp_labels  # noqa: E402
from tileunet.labels import separate_touching  # noqa: E402
from tileunet.weights import weight_map  # noqa: E402

CELLS = {512: 60, 1024: 250, 2048: 1000}  # image edge -> cells, as benchmarks/bench_weights.py
WEIGHTS = {"w0": 10.0, "sigma": 5.0}


def touching_cells(size, n_cells, seed=0):
    """Convex cells tiling most of the image, 1-px gaps where they touch, and a matching noisy image."""
    rng = np.random.default_rng(seed)
    markers = np.zeros((size, size), np.int32)
    ys, xs = rng.integers(0, size, (2, n_cells))
    markers[ys, xs] = np.arange(1, n_cells + 1)
    labels = separate_touching(expand_labels(markers, distance=0.6 * size / math.sqrt(n_cells)))
    image = ndimage.gaussian_filter((labels > 0).astype(np.float32), 1.5) + rng.normal(0, 0.05, labels.shape)
    return image.astype(np.float32), labels


def reference(image, labels, rng, weights=False):
    """elasticdeform's method: zoom(order=3) of a 3x3 grid, map_coordinates order 3 / order 0."""
    grid = rng.normal(0, 10.0, (2, 3, 3))
    zoom = (image.shape[0] / 3, image.shape[1] / 3)
    coords = np.indices(image.shape, dtype=np.float64)
    coords += np.stack([ndimage.zoom(g, zoom, order=3) for g in grid])
    out_image = ndimage.map_coordinates(image, coords, order=3, mode="mirror")
    out_labels = ndimage.map_coordinates(labels, coords, order=0, mode="mirror")
    return out_image, out_labels, (weight_map(out_labels, **WEIGHTS) if weights else None)


def ours(image, labels, source_weights, k, mode):
    params = AugmentParams.from_config()
    t = draw_transform(params, copy_rng(0, "bench", 0, k))
    return augment_plane(image, labels, t, source_weights, mode, WEIGHTS, separate=True)


def per_copy(funcs, copies):
    """Median seconds of each ``func(k)`` over ``copies`` calls, after one warm-up each.

    The methods take turns copy by copy, so a slow spell of a shared machine
    falls on all of them rather than on one.
    """
    for func in funcs:
        func(copies)
    times = [[] for _ in funcs]
    for k in range(copies):
        for func, spent in zip(funcs, times):
            start = time.perf_counter()
            func(k)
            spent.append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def breakdown(image, labels, copies):
    """Median ms of each step of tileunet's recompute path."""
    params = AugmentParams.from_config()
    steps = {"grid": [], "image": [], "labels": [], "separate": [], "weights": [], "gray": []}
    for k in range(copies):
        t = draw_transform(params, copy_rng(0, "bench", 0, k))
        marks = [time.perf_counter()]
        grid = sampling_grid(t, image.shape)
        marks.append(time.perf_counter())
        img = warp_image(image, grid)
        marks.append(time.perf_counter())
        lab = warp_labels(labels, grid)
        marks.append(time.perf_counter())
        lab = separate_touching(lab)
        marks.append(time.perf_counter())
        weight_map(lab, **WEIGHTS)
        marks.append(time.perf_counter())
        vary_intensity(img, t)
        marks.append(time.perf_counter())
        for name, a, b in zip(steps, marks, marks[1:]):
            steps[name].append(b - a)
    return {name: 1e3 * float(np.median(v)) for name, v in steps.items()}


def backends(image, labels, copies):
    """The sampling backends on one composed grid: torch grid_sample against scipy map_coordinates.

    Returns median ms of (torch bicubic, scipy order 3, torch nearest, scipy order 0) and the largest
    and mean absolute difference of the two cubic images (Keys' kernel vs scipy's cubic B-spline).
    """
    times, diffs = {k: [] for k in ("torch cubic", "scipy cubic", "torch nearest", "scipy nearest")}, []
    for k in range(copies):
        t = draw_transform(AugmentParams.from_config(), copy_rng(0, "bench", 0, k))
        grid = sampling_grid(t, image.shape)
        g = grid.numpy()[0].astype(np.float64)
        coords = np.stack([(g[..., 1] + 1) * (image.shape[0] - 1) / 2, (g[..., 0] + 1) * (image.shape[1] - 1) / 2])
        runs = {"torch cubic": lambda: warp_image(image, grid),
                "scipy cubic": lambda: ndimage.map_coordinates(image, coords, order=3, mode="mirror"),
                "torch nearest": lambda: warp_labels(labels, grid),
                "scipy nearest": lambda: ndimage.map_coordinates(labels, coords, order=0, mode="mirror")}
        out = {}
        for name, func in runs.items():
            start = time.perf_counter()
            out[name] = func()
            times[name].append(time.perf_counter() - start)
        diff = np.abs(out["torch cubic"] - out["scipy cubic"])
        diffs.append((float(diff.max()), float(diff.mean())))
    return {k: 1e3 * float(np.median(v)) for k, v in times.items()}, np.max(diffs, axis=0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--copies", type=int, default=0, help="copies timed per size (default 16 at 512, fewer above)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("one thread; median time per copy; Mpx/s per core (output pixels of one copy, all arrays)")
    print(f"{'size':>9} {'method':<44} {'ms/copy':>9} {'Mpx/s':>8} {'vs ref':>7}")
    for size in args.sizes:
        image, labels = touching_cells(size, CELLS.get(size, max(4, size * size // 4400)))
        source_weights = weight_map(labels, **WEIGHTS)
        copies = args.copies or max(3, 16 * 512 * 512 // (size * size))
        mpx = size * size / 1e6
        rows = {
            "reference: zoom + map_coordinates (img, lab)": lambda k: reference(image, labels, np.random.default_rng(k)),
            "reference + weight_map recomputed": lambda k: reference(image, labels, np.random.default_rng(k), True),
            "tileunet, weights recomputed (default)": lambda k: ours(image, labels, None, k, "recompute"),
            "tileunet, weights interpolated": lambda k: ours(image, labels, source_weights, k, "interpolate"),
        }
        medians = per_copy(list(rows.values()), copies)
        for name, seconds in zip(rows, medians):
            print(f"{size:>4}x{size:<4} {name:<44} {1e3 * seconds:>9.1f} {mpx / seconds:>8.1f} "
                  f"{medians[0] / seconds:>6.1f}x", flush=True)
        parts = breakdown(image, labels, copies)
        total = sum(parts.values())
        print(f"{'':>9} tileunet steps (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items())
              + f"; weight_map is {100 * parts['weights'] / total:.0f}% of {total:.1f}; without it "
              f"{mpx / ((total - parts['weights']) / 1e3):.1f} Mpx/s", flush=True)
        ms, (max_diff, mean_diff) = backends(image, labels, copies)
        print(f"{'':>9} backends on the same grid (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in ms.items())
              + f"; cubic images differ by <= {max_diff:.3f} (mean {mean_diff:.4f}) on a 0..1 image", flush=True)


if __name__ == "__main__":
    main()
