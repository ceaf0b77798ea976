"""A grid in bands of rows on Ray actors (--workers) against one process.

For each case: the one-process run's wall time and state, the sharded run's wall
time, each worker's state (its band's SRAM, and the replicated control state),
and whether the bits and cycles are the same (they must be). The sharded run pays
two rounds of Ray calls per emulated round, so it is slower; what it buys is SRAM
state split over machines.

    python benchmarks/bench_sharding.py                    # transformer_block 8x8, matmul 64x64, gemv 256x256
    python benchmarks/bench_sharding.py --workers 4 --json out.json

Needs Ray: pip install -e '.[distributed]'.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

import tilegrid
from tilegrid import kernels
from tilegrid.emulator import Emulator

from bench_matmul import cpu_name  # noqa: E402

CASES = [("transformer_block", 8, {"S": 64, "Dm": 64, "Dff": 128}, {"heads": 2, "causal": 1}),
         ("matmul", 64, {"M": 128, "K": 128, "N": 128}, {}),
         ("gemv", 256, {"M": 1024, "N": 1024}, {})]


def timed_run(program, inputs, **kw):
    t0 = time.perf_counter()
    emu = Emulator(program, **kw)
    emu.load_inputs(inputs)
    t1 = time.perf_counter()
    stats = emu.run()
    t2 = time.perf_counter()
    return emu, emu.read_outputs(), stats, t1 - t0, t2 - t1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args()
    print(f"CPU: {cpu_name()}; {args.workers} Ray workers on this machine")
    print(f"{'case':<24} {'1 process':>10} {'sharded':>10} {'ratio':>6} {'state, 1 process':>17} "
          f"{'per worker: SRAM + control':>27} {'same':>5}")
    rows = []
    for name, side, sizes, params in CASES:
        inputs = kernels.BUNDLED[name].make_inputs(np.random.default_rng(0), sizes)
        program = tilegrid.compile_kernel(name, (side, side), {k: v.shape for k, v in inputs.items()},
                                          params).program
        one, out1, s1, _, t1 = timed_run(program, inputs)
        sharded, out2, s2, setup, t2 = timed_run(program, inputs, workers=args.workers)
        same = s1.cycles == s2.cycles and all(np.array_equal(out1[k].view(np.uint32), out2[k].view(np.uint32))
                                              for k in out1)
        mem = sharded.shards.memory()
        row = {"case": f"{name} {side}x{side}", "rounds": s1.rounds, "one_process_s": t1, "sharded_s": t2,
               "sharded_setup_s": setup, "one_process_state_bytes": one.state.nbytes(), "workers": mem,
               "same_bits_and_cycles": same}
        rows.append(row)
        worker = max(mem, key=lambda m: m["sram"])
        print(f"{row['case']:<24} {t1:>9.2f}s {t2:>9.2f}s {t2 / t1:>5.0f}x {one.state.nbytes() / 1e6:>14.1f} MB "
              f"{worker['sram'] / 1e6:>12.1f} + {worker['control'] / 1e6:.1f} MB {str(same):>5}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_name(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
