"""CPU training steps of a trained U-Net with subnormal floats flushed to zero or not.

Late in training the gradients of confidently classified pixels underflow to
subnormal floats, which x86 CPUs process many times slower; ``tileunet.train``
therefore trains inside :func:`tileunet.device.flushed_denormals`.  This
times the same optimiser steps of a trained model on its own training tiles
both ways.  The float mode must be set before torch starts its worker threads
(they inherit it), so each way runs in a fresh process; they alternate, and
the medians are compared.  Needs a finished demo (``results/model/model.pt``
and ``results/augmented.zarr``).

    python benchmarks/bench_denormals.py
    python benchmarks/bench_denormals.py --model results/model/model.pt --steps 8 --rounds 3
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def subnormal_gradients(model):
    """Count of non-zero gradient entries below float32's smallest normal number."""
    tiny = torch.finfo(torch.float32).tiny
    g = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return int(((g != 0) & (g.abs() < tiny)).sum())


def child(args):
    """Seconds per optimiser step in this process, with the float mode of ``args.flush``."""
    torch.set_flush_denormal(args.flush == "on")  # before any parallel op: worker threads inherit it
    torch.set_num_threads(args.threads)
    from tileunet.model import load_model
    from tileunet.tiles import RandomTiles, TileReader, augmented_planes
    from tileunet.loss import weighted_cross_entropy

    model = load_model(args.model).train()
    out = args.tile - 2 * model.margin
    tiles = RandomTiles(TileReader(augmented_planes(args.augmented), out, model.margin), seed=0, foreground_p=0.5)
    x, y, w = (torch.stack(t) for t in zip(*(tiles[i] for i in range(args.batch))))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-6)

    def step():
        optimizer.zero_grad()
        weighted_cross_entropy(model(x), y, w).backward()
        optimizer.step()

    step()
    subnormal = subnormal_gradients(model)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    print(f"{(time.perf_counter() - start) / args.steps:.4f} {subnormal}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="results/model/model.pt")
    p.add_argument("--augmented", default="results/augmented.zarr")
    p.add_argument("--tile", type=int, default=252, help="input tile edge (the demo's train.tile_size)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=6, help="timed steps per process (after one warm-up step)")
    p.add_argument("--rounds", type=int, default=3, help="processes per mode, alternating")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--flush", choices=["on", "off"], help=argparse.SUPPRESS)  # child mode
    args = p.parse_args(argv)
    if args.flush:
        return child(args)
    for path in (args.model, args.augmented):
        if not Path(path).exists():
            sys.exit(f"{path} not found: run the demo first (snakemake --cores 2), or pass --model / --augmented")
    times = {"off": [], "on": []}
    for _ in range(args.rounds):
        for mode in times:
            result = subprocess.run([sys.executable, __file__, *(argv or sys.argv[1:]), "--flush", mode],
                                    check=True, capture_output=True, text=True).stdout.split()
            times[mode].append(float(result[0]))
            if mode == "off":
                subnormal = int(result[1])
    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    print(f"{args.threads} threads, batch {args.batch} x {args.tile} px, median of {args.rounds} processes "
          f"x {args.steps} steps; {subnormal} subnormal gradient entries after one step")
    print(f"subnormals kept:     {off:.3f} s/step  {args.batch / off:6.2f} tiles/s")
    print(f"subnormals flushed:  {on:.3f} s/step  {args.batch / on:6.2f} tiles/s   {off / on:.2f}x")


if __name__ == "__main__":
    main()
