"""Fast weight map (tileunet.weights.weight_map) against the per-cell naive map.

The naive map is what public implementations do: one Euclidean distance
transform per cell over the whole image, then the two smallest values per
pixel.  Here it keeps the two smallest with a running min/max fold instead of
stacking and sorting all cells (identical result; a stack of 1000 cells on
2048x2048 would need 32 GB), so the baseline is, if anything, faster than
the usual one.  Both are measured in the same run, on the same image.

Usage::

    .venv/bin/python benchmarks/bench_weights.py              # 512/60, 1024/250, 2048/1000
    .venv/bin/python benchmarks/bench_weights.py --sizes 512  # quick
"""

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.segmentation import expand_labels

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tileunet.labels import separate_touching  # noqa: E402
from tileunet.weights import weight_map  # noqa: E402

CASES = {512: 60, 1024: 250, 2048: 1000}  # image edge -> cells
W0, SIGMA = 10.0, 5.0


def touching_cells(size, n_cells, seed=0):
    """About ``n_cells`` convex cells tiling most of a size x size image, touching along Voronoi borders,
    then separated by a 1-px gap as the pipeline's ingest does."""
    rng = np.random.default_rng(seed)
    markers = np.zeros((size, size), np.int32)
    ys, xs = rng.integers(0, size, (2, n_cells))
    markers[ys, xs] = np.arange(1, n_cells + 1)
    spacing = size / math.sqrt(n_cells)
    labels = expand_labels(markers, distance=0.6 * spacing)
    return separate_touching(labels)


def naive_weight_map(labels, w0=W0, sigma=SIGMA):
    """Exact map, one whole-image EDT per cell; w_c by inverse class frequency, border term on background."""
    d1 = np.full(labels.shape, np.inf)
    d2 = np.full(labels.shape, np.inf)
    for cell in np.unique(labels[labels > 0]):
        d = ndimage.distance_transform_edt(labels != cell)
        d2 = np.minimum(d2, np.maximum(d1, d))
        d1 = np.minimum(d1, d)
    fg = (labels > 0).mean()
    freq = np.array([1 - fg, fg])
    wc = freq.max() / freq
    w = np.where(labels > 0, wc[1], wc[0])
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
    return (w + np.where(labels == 0, np.nan_to_num(border), 0.0)).astype(np.float32)


def best_of(func, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - t)
    return min(times), result


def run(size, n_cells, repeats):
    labels = touching_cells(size, n_cells)
    cells = len(np.unique(labels)) - 1
    fast_s, fast = best_of(lambda: weight_map(labels, w0=W0, sigma=SIGMA), repeats)
    naive_s, naive = best_of(lambda: naive_weight_map(labels), 1)
    diff = float(np.abs(fast.astype(np.float64) - naive).max())
    print(f"{size}x{size:<5} {cells:>6} {fast_s:>10.3f} {naive_s:>10.1f} {naive_s / fast_s:>9.0f}x {diff:>12.2e}",
          flush=True)
    return naive_s / fast_s, diff


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=sorted(CASES), choices=sorted(CASES))
    parser.add_argument("--repeats", type=int, default=5, help="fast map: best of this many runs")
    args = parser.parse_args()
    print(f"w0={W0} sigma={SIGMA} tol=1e-4 (default); fast = best of {args.repeats}, naive = 1 run")
    print(f"{'image':<11} {'cells':>6} {'fast [s]':>10} {'naive [s]':>10} {'speed-up':>10} {'max |diff|':>12}",
          flush=True)
    for size in args.sizes:
        ratio, diff = run(size, CASES[size], args.repeats)
        if size == 2048:
            ok = ratio >= 500 and diff <= 1e-3
            print(f"floor (>= 500x, max |diff| <= 1e-3) at 2048/1000: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
