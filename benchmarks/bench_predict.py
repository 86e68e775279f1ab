"""Chunked prediction pipeline: efficiency against the bare forward passes, memory flatness, throughput.

(a) Efficiency: the demo config's model (config/config.yaml: depth, base_channels,
    predict.tile, predict.batch_size; random weights) on a 4096x4096 slide in a
    Zarr store.  Baseline = the bare model forward over the same input windows,
    already in memory, in the same batches; figure = baseline time / the whole
    pipeline's wall time (intensity range, reading, halo, forward, writing,
    labels, pyramid), the median over ``--repeats`` alternating pairs.  Floor
    0.9 on CPU.
(b) Peak RSS (ru_maxrss of a fresh subprocess each) of the whole pipeline with a
    tiny net (depth 2, base 2) that follows the image (:func:`follower`) on lazily
    generated synthetic slides of 8192^2 and 32768^2 (a Zarr array written chunk by
    chunk, never whole in memory).
    Floor: the large slide under 2 GiB and within 25% of the small one.
(c) The same for RGB whole-slide images as users have them (``--rss-rgb``): a
    pyramidal tiled RGB TIFF (zlib-compressed 512 px tiles, two sub-resolutions
    in SubIFDs, written tile by tile) of 8192^2 and 40960^2 px, read at full
    resolution through tifffile's aszarr (tileunet.io.open_image), with a
    3-channel follower.  Floor: the large slide within 25% of the small one.
(d) Megapixels per second of every run.

Usage::

    .venv/bin/python benchmarks/bench_predict.py                  # everything (~10 min on 2 idle cores)
    .venv/bin/python benchmarks/bench_predict.py --efficiency 1024 --rss 2048 4096 --rss-rgb 2048 4096  # quick
    .venv/bin/python benchmarks/bench_predict.py --efficiency 0 --rss --rss-rgb 8192 40960   # (c) only (~15 min)
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
import zarr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tileunet import predict, segment  # noqa: E402
from tileunet.postprocess import PostProcessing  # noqa: E402
from tileunet.tiling import grid_of, input_window, plan_tiling  # noqa: E402
from tileunet.model import UNet  # noqa: E402

GEN_CHUNK = 2048


def demo_settings():
    """(depth, base_channels, tile, batch_size) of config/config.yaml; (4, 16, 364, 4) if absent."""
    try:
        cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
        return (cfg["model"]["depth"], cfg["model"]["base_channels"], cfg["predict"]["tile"],
                cfg["predict"]["batch_size"])
    except (OSError, KeyError):
        return 4, 16, 364, 4


def synthetic_slide(path, size):
    """uint8 size x size Zarr array of blob-like cells, generated and written one 2048^2 chunk at a time."""
    arr = zarr.create_array(path, shape=(size, size), chunks=(GEN_CHUNK, GEN_CHUNK), dtype="uint8", zarr_format=3)
    for y in range(0, size, GEN_CHUNK):
        for x in range(0, size, GEN_CHUNK):
            yy, xx = np.mgrid[y:min(y + GEN_CHUNK, size), x:min(x + GEN_CHUNK, size)].astype(np.float32)
            cells = np.cos(2 * np.pi * yy / 23) * np.cos(2 * np.pi * xx / 29 + 0.3 * np.sin(yy / 97))
            arr[y:y + GEN_CHUNK, x:x + GEN_CHUNK] = (128 + 100 * cells).astype(np.uint8)
    return arr


def _rgb_tiles(size, step, tile):
    """The tiles, row by row, of an RGB slide of cells sampled every ``step`` px (level 0: step 1)."""
    for y in range(0, size, tile):
        for x in range(0, size, tile):
            yy, xx = np.mgrid[y:y + tile, x:x + tile].astype(np.float32) * step
            cells = np.cos(2 * np.pi * yy / 23) * np.cos(2 * np.pi * xx / 29 + 0.3 * np.sin(yy / 97))
            stain = (128 + 100 * cells)[..., None] * np.array([0.6, 0.5, 0.9], np.float32)
            yield stain.astype(np.uint8)


def rgb_slide(path, size, levels=3, tile=512):
    """A pyramidal tiled RGB TIFF as scanners' converters write it, tile by tile (never whole in memory)."""
    import tifffile
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for level in range(levels):
            edge = -(-size // 2 ** level)
            kw = {"subifds": levels - 1, "metadata": {"axes": "YXS"}} if level == 0 else {"subfiletype": 1}
            tif.write(_rgb_tiles(edge, 2 ** level, tile), shape=(edge, edge, 3), dtype="uint8", tile=(tile, tile),
                      photometric="rgb", compression="zlib", **kw)
    return path


def follower(channels=1, depth=2, base=2, gain=10.0):
    """A U-Net whose foreground probability is sigmoid(2 gain (x - 0.5)) of the channel mean x.

    Centre taps pass the normalised input along the skip path of the first level; every other
    weight is 0.  Its labels are the slide's cells (about one per 330 px), as a trained net's
    would be: an untrained net's probability is one component over the whole slide or a
    checkerboard of one-pixel ones, and the labelling's bookkeeping, which grows with the
    number of instances, would be measured for a slide no microscope makes.
    """
    model = model_of(depth, base, channels)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        first, last = model.down[0], model.up[-1]
        first[0].weight[0, :, 1, 1] = 1.0 / channels
        first[2].weight[0, 0, 1, 1] = 1.0
        last[0].weight[0, 0, 1, 1] = 1.0  # channel 0 of the concatenation: the skip
        last[2].weight[0, 0, 1, 1] = 1.0
        model.head.weight[1, 0], model.head.weight[0, 0] = gain, -gain
        model.head.bias[1], model.head.bias[0] = -gain / 2, gain / 2
    return model


def model_of(depth, base, channels=1):
    torch.manual_seed(0)
    model = UNet(channels, depth=depth, base_channels=base, dropout=0.0).eval()
    model.normalization = {"method": "percentile", "low": 1.0, "high": 99.8}
    return model


def run_pipeline(model, image, tmp, tile, batch_size, dtype="float16"):
    t0 = time.perf_counter()
    # components: an untrained net's probability is noise, whose watershed would time the noise, not the pipeline
    n = segment.predict_to_ome_zarr(model, image, Path(tmp) / "out.ome.zarr", Path(tmp) / "work", tile=tile,
                                    pp=PostProcessing("components", 0.5, 0), batch_size=batch_size,
                                    probability_dtype=dtype, pyramid_levels=3, progress=False)
    return time.perf_counter() - t0, n


def efficiency(size, threads, repeats):
    depth, base, tile, batch = demo_settings()
    model = model_of(depth, base)
    with tempfile.TemporaryDirectory() as tmp:
        image = synthetic_slide(Path(tmp) / "slide.zarr", size)
        t = plan_tiling(model, tile)
        _, ny, nx = grid_of(image.shape, t.chunk)
        lo, hi = predict.plane_ranges(model, image)[0]
        origins = [(cy, cx) for cy in range(ny) for cx in range(nx)]
        windows = [np.stack([predict.apply_range(input_window(image, None, cy, cx, t), lo, hi)
                             for cy, cx in origins[i:i + batch]]) for i in range(0, len(origins), batch)]
        for shape in {w.shape for w in windows}:  # warm-up (oneDNN plans per shape), for both
            predict._forward(model, np.zeros(shape, np.float32))
        # bare and pipeline in turn, each pair its own ratio: a slow spell of a shared machine
        # falls on one pair, not on one side; the figure is the median ratio
        pairs = []
        for r in range(repeats):
            t0 = time.perf_counter()
            for w in windows:
                predict._forward(model, w)
            bare = time.perf_counter() - t0
            run = Path(tmp) / f"run{r}"  # a fresh store each time: a finished one would be resumed, not predicted
            run.mkdir()
            pairs.append((bare, run_pipeline(model, image, run, tile, batch)[0]))
    print(f"(a) efficiency, depth {depth} base {base} tile {tile} (chunk {t.chunk}) batch {batch}, "
          f"{size}x{size}, {len(origins)} tiles, {threads} threads, {repeats} alternating runs:")
    for bare, wall in pairs:
        print(f"    bare forward {bare:.1f} s, pipeline {wall:.1f} s -> {bare / wall:.3f}")
    ratios = [b / w for b, w in pairs]
    print(f"    efficiency (median) {statistics.median(ratios):.3f} (floor 0.9), range {min(ratios):.3f}-"
          f"{max(ratios):.3f}; {size * size / statistics.median(w for _, w in pairs) / 1e6:.2f} Mpx/s")


def child(size, tile, threads, rgb=False):
    """One RSS measurement, in its own process: prints a JSON line."""
    from tileunet.io import open_image
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        if rgb:
            image, _ = open_image(rgb_slide(Path(tmp) / "slide.ome.tif", size))
        else:
            image = synthetic_slide(Path(tmp) / "slide.zarr", size)
        gen = time.perf_counter() - t0
        wall, n = run_pipeline(follower(3 if rgb else 1), image, tmp, tile, 4, dtype="uint8")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"size": size, "rss_mib": rss, "wall_s": wall, "generate_s": gen, "instances": n}))


def rss(sizes, tile, threads, rgb=False):
    print(f"({'c' if rgb else 'b'}) peak RSS, follower net (depth 2, base 2), tile {tile}, uint8 probability, "
          f"{threads} threads, {'pyramidal RGB TIFF' if rgb else 'grey Zarr'} slides:")
    results = []
    for size in sizes:
        out = subprocess.run([sys.executable, __file__, "--child", str(size), "--tile", str(tile),
                              "--threads", str(threads)] + ["--rgb"] * rgb, capture_output=True, text=True,
                             check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"    {size}x{size}: peak RSS {r['rss_mib']:.0f} MiB, {r['instances']} instances, "
              f"pipeline {r['wall_s']:.1f} s ({size * size / r['wall_s'] / 1e6:.2f} Mpx/s), "
              f"slide generation {r['generate_s']:.1f} s")
    big, small = results[-1], results[0]
    print(f"    largest/smallest RSS ratio {big['rss_mib'] / small['rss_mib']:.3f} (floor <= 1.25)"
          + ("" if rgb else f", largest {big['rss_mib'] / 1024:.2f} GiB (floor < 2)"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--efficiency", type=int, default=4096, help="slide edge of (a); 0 skips it")
    ap.add_argument("--rss", type=int, nargs="*", default=[8192, 32768], help="slide edges of (b)")
    ap.add_argument("--rss-rgb", type=int, nargs="*", default=[8192, 40960], help="slide edges of (c)")
    ap.add_argument("--tile", type=int, default=508, help="tile of the follower net in (b) and (c)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="alternating bare/pipeline pairs of (a)")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--rgb", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        return child(args.child, args.tile, args.threads, args.rgb)
    if args.efficiency:
        efficiency(args.efficiency, args.threads, args.repeats)
    if args.rss:
        rss(args.rss, args.tile, args.threads)
    if args.rss_rgb:
        rss(args.rss_rgb, args.tile, args.threads, rgb=True)


if __name__ == "__main__":
    main()
