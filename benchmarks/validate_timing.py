"""The validation tables of docs/timing.md: fast model against the cycle-level one.

    python benchmarks/validate_timing.py            # micro-benchmarks and every bundled kernel
    python benchmarks/validate_timing.py --markdown # the tables as markdown, for the docs

For each program it prints the fast model's cycles, the cycle-level model's,
their difference, and the wall time of each, plus the cycle-level model's
speed in simulated tile-cycles per second.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from bench_matmul import cpu_name  # noqa: E402

from tilegrid import api  # noqa: E402
from tilegrid.emulator import Emulator  # noqa: E402
from tilegrid.emulator.cycle_model import run_cycle_level  # noqa: E402
from tilegrid.timing_cases import KERNEL_CASES, kernel_inputs, micro_cases  # noqa: E402


def compare(program, inputs):
    emu = Emulator(program)
    emu.load_inputs(inputs)
    t = time.perf_counter()
    fast = emu.run().cycles
    fast_s = time.perf_counter() - t
    t = time.perf_counter()
    result = run_cycle_level(program)
    cycle_s = time.perf_counter() - t
    return fast, result.cycles, fast_s, cycle_s, program.config.tiles * result.simulated_cycles / max(cycle_s, 1e-9)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for label, src, grid, n in micro_cases():
            path = os.path.join(d, "k.tg")
            with open(path, "w") as f:
                f.write(src)
            program = api.compile_kernel(path, grid, {"A": (n,)}).program
            rows.append((label, f"{grid[0]}x{grid[1]}") + compare(program, {"A": np.arange(n, dtype=np.float32)}))
    for name, grid, sizes, params in KERNEL_CASES:
        inputs = kernel_inputs(name, sizes)
        program = api.compile_kernel(name, grid, {k: v.shape for k, v in inputs.items()}, params).program
        shown = ", ".join(f"{k}={v}" for k, v in {**sizes, **params}.items())
        rows.append((f"{name} ({shown})", f"{grid[0]}x{grid[1]}") + compare(program, inputs))
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores")
    if args.markdown:
        print("| program | grid | fast | cycle-level | difference |")
        print("|---|---|---|---|---|")
        for label, grid, fast, cyc, *_ in rows:
            print(f"| {label} | {grid} | {fast:,} | {cyc:,} | {100 * (fast - cyc) / cyc:+.2f}% |")
    else:
        for label, grid, fast, cyc, fs, cs, rate in rows:
            print(f"{label:<58} {grid:>5}: fast {fast:>9,} cycle-level {cyc:>9,} ({100 * (fast - cyc) / cyc:+6.2f}%)"
                  f"  wall {fs * 1e3:7.1f} / {cs * 1e3:8.1f} ms, {rate:.2e} tile-cycles/s")
    worst = max(abs(r[2] - r[3]) / r[3] for r in rows)
    print(f"largest difference: {100 * worst:.2f}%")


if __name__ == "__main__":
    main()
