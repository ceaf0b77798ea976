"""Compile time against program size: it should grow linearly.

Compiles kernels of N statements (`C = C + <constant>`, each its own constant
buffer and instruction, as in shared/fuzz-repro/r25) for several N, on a
machine with enough SRAM for the code, and prints the time per statement.
Linear growth shows as a flat time per statement.

    python benchmarks/bench_compile.py                      # N = 1000 .. 16000
    python benchmarks/bench_compile.py --sizes 2000 20000
"""
from __future__ import annotations

import argparse
import time

from bench_matmul import cpu_name

from tilegrid.compiler.driver import compile_source
from tilegrid.emulator.config import MachineConfig


def kernel_source(n: int) -> str:
    body = "\n".join(f"    C = C + {i}.5" for i in range(n))
    return f"kernel k(A: f32[M, N] block(y, x)) -> C: f32[M, N] block(y, x)\n{{\n    C = A\n{body}\n}}\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000, 8000, 16000])
    ap.add_argument("--repeat", type=int, default=3, help="best of this many compiles")
    args = ap.parse_args()
    print(f"compile time by program size on {cpu_name()}")
    print(f"{'statements':>10}  {'best':>8}  {'per statement':>14}")
    for n in args.sizes:
        source = kernel_source(n)
        # room for the code: about 4 instructions and a constant per statement
        config = MachineConfig(width=2, height=2, sram_bytes=min(16 << 20, 4096 + 100 * n))
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            compile_source(source, "bench.tg", config, {"A": (16, 16)})
            best = min(best, time.perf_counter() - t0)
        print(f"{n:>10}  {best:7.2f}s  {best / n * 1e3:11.3f} ms")


if __name__ == "__main__":
    main()
