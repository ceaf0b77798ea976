"""Speed of the cycle-level timing model (emulator/cycle_model.py) on compiled kernels.

For each kernel: the grid, the cycles the model reports, how many global
cycles it stepped one by one (the rest it skipped as idle), the wall time of
the simulation in a warm run (CycleLevelResult.wall_seconds, best of
--repeat; the numba compile is excluded by a first run, and so are the
program check and the state allocation, which add about a millisecond), and

  simulated tile-cycles / s = tiles * simulated_cycles / wall
  stepped tile-cycles / s   = tiles * stepped_cycles / wall

The first is what the model delivers; the second is its raw stepping speed.

    python benchmarks/bench_cycle_model.py
    python benchmarks/bench_cycle_model.py --repeat 5
"""
from __future__ import annotations

import argparse

import numpy as np

from tilegrid.api import compile_kernel
from tilegrid.emulator.cycle_model import run_cycle_level
from tilegrid.kernels import BUNDLED

CASES = [  # (kernel, grid, sizes): small grids, sizes that keep the fabric busy
    ("matmul", (4, 4), {"M": 64, "K": 64, "N": 64}),
    ("matmul", (8, 8), {"M": 128, "K": 128, "N": 128}),
    ("gemv", (8, 8), {"M": 512, "N": 512}),
    ("softmax", (8, 8), {"R": 128, "C": 512}),
    ("layernorm", (8, 8), {"R": 128, "C": 512}),
    ("matmul_cannon", (2, 2), {"M": 64, "K": 64, "N": 64}),
    ("attention", (4, 2), {"S": 32, "D": 8}),
    ("mlp", (4, 4), {"S": 32, "Dm": 64, "Dff": 128}),
    # rings and tiles sending on the color they receive on (deadlocked before the router
    # buffers were per input port)
    ("matmul_cannon", (4, 4), {"M": 64, "K": 64, "N": 64}),
    ("attention", (4, 4), {"S": 64, "D": 32}),
    ("matmul_systolic", (4, 4), {"M": 64, "K": 64, "N": 64}),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    print(f"{'kernel':<15} {'grid':>5} {'cycles':>9} {'stepped':>9} {'wall ms':>9} "
          f"{'sim tile-cyc/s':>15} {'stepped tile-cyc/s':>19}")
    for name, grid, sizes in CASES:
        inputs = BUNDLED[name].make_inputs(np.random.default_rng(0), sizes)
        program = compile_kernel(name, grid, {k: v.shape for k, v in inputs.items()}).program
        run_cycle_level(program)  # numba compile (or cache load) and warm-up
        runs = [run_cycle_level(program) for _ in range(args.repeat)]
        res = min(runs, key=lambda r: r.wall_seconds)
        best = res.wall_seconds
        tiles = program.config.tiles
        print(f"{name:<15} {grid[0]}x{grid[1]:<3} {res.cycles:>9} {res.stepped_cycles:>9} {best * 1e3:>9.2f} "
              f"{tiles * res.simulated_cycles / best:>15.3g} {tiles * res.stepped_cycles / best:>19.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
