"""Matmul on the emulator against NumPy, in one process.

For each size it times, warm (after the JIT has compiled or loaded its cache):
  emulate   Emulator.run() alone (the fabric executing the program)
  end2end   host load of A and B into tile SRAM + run + reading C back
  ordered   the bit-exact NumPy reference: C = 0; for k: C = C + A[:, k, None] * B[None, k, :]
  numpy @   A @ B (BLAS, all cores)
and prints the ratios, checks the emulator's C bit for bit against the ordered
reference, and reports peak RSS. Times are the best of two blocks of --repeat
runs each (emulate, end2end, numpy, then again); ratios are taken in the same
run, since absolute times on a shared machine are noise.

    python benchmarks/bench_matmul.py                  # 512^3 and 1024^3 on 16x16
    python benchmarks/bench_matmul.py --sizes 256 --grid 8x8 --json out.json

1024^3 on 16x16 needs 80 KiB of SRAM per tile (A, B, C and two panel
buffers of 64x64 f32), more than the default 48 KiB, so the benchmark's
machine has --sram-kib 128 unless told otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np


from tilegrid.emulator import Emulator, MachineConfig, parse_grid  # noqa: E402
from tilegrid.api import compile_kernel  # noqa: E402


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def ordered_reference(A, B):
    C = np.zeros((A.shape[0], B.shape[1]), np.float32)
    for k in range(A.shape[1]):
        C = C + A[:, k, None] * B[None, k, :]
    return C


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def bench(n: int, grid: tuple, sram_kib: int, repeat: int) -> dict:
    rng = np.random.default_rng(n)
    A = rng.standard_normal((n, n)).astype(np.float32)
    B = rng.standard_normal((n, n)).astype(np.float32)
    config = MachineConfig(sram_bytes=sram_kib * 1024)
    t0 = time.perf_counter()
    program = compile_kernel("matmul", grid, {"A": A.shape, "B": B.shape}, {}, config).program
    compile_s = time.perf_counter() - t0

    emu = Emulator(program)
    emu.load_inputs({"A": A, "B": B})
    stats = emu.run()  # warm-up: JIT compile or cache load
    C = emu.read_outputs()["C"]

    def emulate_only():
        e = Emulator(program)
        e.load_inputs({"A": A, "B": B})
        t = time.perf_counter()
        e.run()
        return time.perf_counter() - t

    def end_to_end():
        e = Emulator(program)
        e.load_inputs({"A": A, "B": B})
        e.run()
        e.read_outputs()

    # Each is timed in blocks of its own: numba's and OpenBLAS's worker threads spin
    # for a while after their work, so on two cores a run right after the other's
    # shares the cores with those spinning threads. Two passes over the three
    # blocks, so a burst of load from elsewhere is unlikely to hit only one of them.
    emulate, end2end, matmul = [], [], []
    for _ in range(2):
        emulate += [emulate_only() for _ in range(repeat)]
        end2end.append(best_of(end_to_end, repeat))
        matmul.append(best_of(lambda: A @ B, repeat))
    emulate_s, end2end_s, matmul_s = min(emulate), min(end2end), min(matmul)
    t0 = time.perf_counter()
    ref = ordered_reference(A, B)
    ordered_s = time.perf_counter() - t0
    exact = bool(np.array_equal(C.view(np.uint32), ref.view(np.uint32)))
    return {
        "n": n, "grid": f"{grid[0]}x{grid[1]}", "bit_exact": exact,
        "compile_s": compile_s, "emulate_s": emulate_s, "end2end_s": end2end_s,
        "numpy_matmul_s": matmul_s, "ordered_reference_s": ordered_s,
        "emulate_over_matmul": emulate_s / matmul_s, "end2end_over_matmul": end2end_s / matmul_s,
        "emulate_over_ordered": emulate_s / ordered_s,
        "cycles": stats.cycles, "utilization": stats.utilization, "wavelets": stats.wavelets,
        "sram_peak_bytes": stats.sram_peak_bytes, "rounds": stats.rounds,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--grid", default="16x16")
    ap.add_argument("--sram-kib", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    grid = parse_grid(args.grid)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, numpy {np.__version__}")
    print(f"grid {args.grid}, {args.sram_kib} KiB SRAM per tile, best of {args.repeat}")
    rows = []
    for n in args.sizes:
        r = bench(n, grid, args.sram_kib, args.repeat)
        rows.append(r)
        print(f"\nmatmul {n}^3: bit-exact vs ordered reference: {'yes' if r['bit_exact'] else 'NO'}")
        print(f"  compile          {r['compile_s'] * 1e3:9.1f} ms")
        print(f"  emulate          {r['emulate_s'] * 1e3:9.1f} ms   "
              f"{r['emulate_over_matmul']:6.2f}x numpy @   {r['emulate_over_ordered']:6.3f}x ordered ref")
        print(f"  load+run+read    {r['end2end_s'] * 1e3:9.1f} ms   {r['end2end_over_matmul']:6.2f}x numpy @")
        print(f"  numpy A @ B      {r['numpy_matmul_s'] * 1e3:9.1f} ms")
        print(f"  ordered ref      {r['ordered_reference_s'] * 1e3:9.1f} ms")
        print(f"  modelled: {r['cycles']} cycles, utilization {r['utilization']:.0%}, "
              f"{r['wavelets']} wavelets, SRAM {r['sram_peak_bytes'] / 1024:.1f} KiB/tile, {r['rounds']} rounds")
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS {rss_mib:.0f} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": rows, "peak_rss_mib": rss_mib,
                                               "cpu": cpu_name(), "cores": os.cpu_count()}, indent=2))
    return 0 if all(r["bit_exact"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
