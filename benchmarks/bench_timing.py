"""What the fast timing model costs, and the emulator against NumPy with it on.

For each case it times Emulator.run() warm (best of --repeat), once with
--timing fast (the default: clocks, per-statement accounting, link sharing)
and once with --timing off (clocks only), and prints the ratio. For matmul it
also times NumPy's A @ B in the same process, so the ratio is not at the mercy
of a noisy machine. Traces are off in both (a trace is opt-in).

    python benchmarks/bench_timing.py
    python benchmarks/bench_timing.py --repeat 5 --json timing.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from bench_matmul import best_of, cpu_name  # noqa: E402

from tilegrid import kernels  # noqa: E402
from tilegrid.api import compile_kernel  # noqa: E402
from tilegrid.emulator import Emulator, MachineConfig  # noqa: E402

CASES = [  # name, kernel, grid, sizes, params, SRAM KiB per tile
    ("matmul 1024^3", "matmul", (16, 16), {"M": 1024, "K": 1024, "N": 1024}, {}, 128),
    ("matmul_cannon 512^3", "matmul_cannon", (8, 8), {"M": 512, "K": 512, "N": 512}, {}, 128),
    ("gemv 1024^2", "gemv", (16, 16), {"M": 1024, "N": 1024}, {}, 48),
    ("transformer block (demo)", "transformer_block", (8, 8), None, {"heads": 4, "causal": 1}, 48),
]


def run_case(kernel, grid, sizes, params, sram_kib, repeat):
    spec = kernels.BUNDLED[kernel]
    inputs = spec.make_inputs(np.random.default_rng(0), sizes or spec.demo_sizes)
    config = MachineConfig(sram_bytes=sram_kib * 1024)
    program = compile_kernel(kernel, grid, {k: v.shape for k, v in inputs.items()}, params, config).program
    out = {}
    for mode in ("off", "fast"):
        def once():
            emu = Emulator(program, timing=mode)
            emu.load_inputs(inputs)
            t = time.perf_counter()
            stats = emu.run()
            once.elapsed, once.cycles = time.perf_counter() - t, stats.cycles
        once()  # warm: JIT cache load
        best = min(_timed(once) for _ in range(repeat))
        out[mode] = {"seconds": best, "cycles": once.cycles}
    return inputs, out


def _timed(fn):
    fn()
    return fn.elapsed


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, numpy {np.__version__}; best of {args.repeat}")
    rows = []
    for label, kernel, grid, sizes, params, sram in CASES:
        inputs, out = run_case(kernel, grid, sizes, params, sram, args.repeat)
        row = {"case": label, "grid": f"{grid[0]}x{grid[1]}", "off_s": out["off"]["seconds"],
               "fast_s": out["fast"]["seconds"], "fast_over_off": out["fast"]["seconds"] / out["off"]["seconds"],
               "cycles": out["fast"]["cycles"], "same_cycles": out["fast"]["cycles"] == out["off"]["cycles"]}
        if kernel == "matmul":
            A, B = inputs["A"], inputs["B"]
            numpy_s = best_of(lambda: A @ B, max(args.repeat, 5))
            row["numpy_s"] = numpy_s
            row["fast_over_numpy"] = out["fast"]["seconds"] / numpy_s
        rows.append(row)
        extra = f", {row['fast_over_numpy']:.2f}x numpy @ ({row['numpy_s'] * 1e3:.1f} ms)" if "numpy_s" in row else ""
        print(f"{label:<26} {row['grid']:>6}: off {row['off_s'] * 1e3:8.1f} ms, fast {row['fast_s'] * 1e3:8.1f} ms, "
              f"fast/off {row['fast_over_off']:.2f}x{extra}; {row['cycles']:,} cycles")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_name(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
