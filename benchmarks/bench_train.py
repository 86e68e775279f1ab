"""Training throughput of the paper's U-Net (572 -> 388): tiles/s, achieved FLOP/s and MFU.

FLOPs of one optimiser step (forward + backward) are counted by
``torch.utils.flop_counter.FlopCounterMode`` on the real step, so they match
the network exactly.  The baseline, measured in the same run, is a large
dense matmul on the same device and precision: the ratio says how close the
U-Net gets to what this device sustains on its easiest workload.  MFU is
against the device peak: ``--peak-tflops``, a table for known GPUs, or on CPU
an estimate from cores x clock x SIMD FLOPs per cycle (printed as such),
raised to the measured matmul when that is faster (boost clocks).
The tile loader (lazy Zarr reads with mirroring) is timed on its own, to show
it keeps up with the step.

    python benchmarks/bench_train.py                       # CPU: 2 timed steps, about a minute
    python benchmarks/bench_train.py --device cuda --steps 50 --compile
"""

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tileunet.device import autocast, configure, select_device  # noqa: E402
from tileunet.io import write_array  # noqa: E402
from tileunet.model import UNet  # noqa: E402
from tileunet.tiles import RandomTiles, TileReader, augmented_planes  # noqa: E402
from tileunet.loss import weighted_cross_entropy  # noqa: E402

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets.
GPU_PEAK_BF16 = {"H100": 989.0, "H200": 989.0, "GH200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0,
                 "RTX 4090": 165.0, "V100": 125.0}


def cpu_peak_tflops(threads):
    """Estimated fp32 peak of ``threads`` cores: clock x FLOPs per cycle (2 FMA pipes x SIMD width x 2)."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    mhz = [float(m) for m in re.findall(r"cpu MHz\s*:\s*([\d.]+)", text)] or [2500.0]
    flags = set(re.findall(r"^flags\s*:\s*(.*)$", text, re.M)[0].split()) if "flags" in text else set()
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    per_cycle = 2 * lanes * (2 if "fma" in flags or "avx512f" in flags else 1)
    return threads * max(mhz) * 1e6 * per_cycle / 1e12, f"{threads} cores x {max(mhz):.0f} MHz x {per_cycle} FLOP/cycle"


def device_peak_tflops(device, amp, threads, override):
    """(peak TFLOP/s, where the number comes from)."""
    if override:
        return override, "--peak-tflops"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peak in GPU_PEAK_BF16.items():
            if key in name:
                return (peak if amp else peak / 2), f"{name} data sheet ({'bf16' if amp else 'tf32'} dense)"
        return None, f"{name}: unknown, pass --peak-tflops"
    if device.type == "cpu":
        peak, how = cpu_peak_tflops(threads)
        return peak, f"estimate: {how}"
    return None, "unknown, pass --peak-tflops"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_tflops(device, amp, n, repeats):
    """Sustained TFLOP/s of an n x n matmul, the same precision the training uses."""
    dtype = torch.bfloat16 if amp and device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12


def make_step(model, optimizer, device, amp, compiled):
    forward = torch.compile(model) if compiled else model

    def step(x, y, w):
        with autocast(device, amp):
            logits = forward(x)
        loss = weighted_cross_entropy(logits, y, w)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss
    return step


def loader_tiles_per_s(tile, out, margin, n):
    """Tiles/s of the training tile reader on a temporary augmented set (2 x 1024 x 1024 planes)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "augmented.zarr"
        zarr.open_group(root, mode="w", zarr_format=3)
        rng = np.random.default_rng(0)
        write_array(root / "s", "image", rng.normal(size=(2, 1024, 1024)).astype(np.float32))
        write_array(root / "s", "labels", rng.integers(0, 3, (2, 1024, 1024), dtype=np.int32))
        write_array(root / "s", "weights", rng.random((2, 1024, 1024), dtype=np.float32))
        tiles = RandomTiles(TileReader(augmented_planes(root), out, margin), seed=0)
        tiles[0]
        start = time.perf_counter()
        for t in range(1, n + 1):
            tiles[t]
        return n / (time.perf_counter() - start)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--tile", type=int, default=572, help="input tile edge (paper 572)")
    p.add_argument("--depth", type=int, default=5)
    p.add_argument("--base-channels", type=int, default=64)
    p.add_argument("--batch", type=int, default=1, help="tiles per step (paper 1)")
    p.add_argument("--steps", type=int, default=2, help="timed steps (after one counting and one warm-up step)")
    p.add_argument("--no-amp", action="store_true", help="fp32 on CUDA instead of bf16 autocast")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (TFLOP/s)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    configure(device)
    amp = device.type == "cuda" and not args.no_amp
    torch.manual_seed(0)
    model = UNet(depth=args.depth, base_channels=args.base_channels).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    out = model.output_size(args.tile)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.99)
    step = make_step(model, optimizer, device, amp, args.compile)
    x = torch.randn(args.batch, 1, args.tile, args.tile, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (args.batch, out, out), device=device)
    w = torch.rand(args.batch, out, out, device=device) + 0.5

    with FlopCounterMode(display=False) as counter:
        step(x, y, w)
    flops = counter.get_total_flops()
    step(x, y, w)  # warm-up (cuDNN autotuning, compilation)
    sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step(x, y, w)
    sync(device)
    seconds = (time.perf_counter() - start) / args.steps
    achieved = flops / seconds / 1e12
    threads = torch.get_num_threads()
    baseline = matmul_tflops(device, amp, 8192 if device.type == "cuda" else 2048, 20 if device.type == "cuda" else 10)
    peak, peak_from = device_peak_tflops(device, amp, threads, args.peak_tflops)
    if device.type == "cpu" and not args.peak_tflops and peak < baseline:
        # /proc/cpuinfo reports the current clock, not the boost clock: the matmul proves a higher peak
        peak, peak_from = baseline, f"the measured matmul, above the nominal {peak_from} = {peak:.3f}"
    loader = loader_tiles_per_s(args.tile, out, model.margin, 20)

    precision = "bf16 autocast" if amp else "fp32"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{threads} threads"
    print(f"device: {device} ({name}), {precision}, torch {torch.__version__}")
    print(f"net: depth {args.depth}, {args.base_channels} base channels, tile {args.tile} -> {out}, batch {args.batch}")
    print(f"FLOPs per step (forward + backward): {flops / 1e9:.1f} GFLOP")
    print(f"step time: {seconds * 1e3:.1f} ms over {args.steps} steps")
    print(f"training throughput: {args.batch / seconds:.3f} tiles/s, {args.batch * out * out / seconds / 1e6:.3f} "
          "Mpx/s of output")
    print(f"achieved: {achieved:.4f} TFLOP/s")
    print(f"baseline (dense matmul, same device and precision): {baseline:.4f} TFLOP/s; "
          f"ratio U-Net / matmul = {achieved / baseline:.3f}")
    if peak:
        print(f"peak: {peak:.3f} TFLOP/s ({peak_from}); MFU = {achieved / peak:.1%}; "
              f"matmul reaches {baseline / peak:.1%} of it")
    else:
        print(f"peak: {peak_from}")
    print(f"tile loader: {loader:.1f} tiles/s per worker process ({loader * seconds / args.batch:.1f}x the step rate)")


if __name__ == "__main__":
    main()
