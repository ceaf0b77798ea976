"""Output-stationary systolic matmul (kernels/matmul_systolic.tg) against SCALE-Sim's model.

For each case it compiles the kernel for the grid (zero-padding sizes that do
not divide it, as matmul_systolic_ref.run_padded does), runs it once to warm
up (numba compiles or loads its cache), then times Emulator.run() alone, best
of --repeat, checks C bit for bit against the ordered reference of the
unpadded A and B, and prints:

  folds        ceil(M / R) * ceil(N / C) on an R x C grid (R = H tile rows, C = W columns)
  cycles       tilegrid's timing model (stats.cycles)
  SCALE-Sim    its output-stationary formula ceil(M/R) * ceil(N/C) * (K + R + C - 2) - 1
  ratio        cycles / SCALE-Sim
  emulate s    the emulator's wall time for the run (warm)
  SCALE-Sim s  SCALE-Sim's reported time for the same simulation, where it reported one
               (6.8 s for 16x16 with 256^3, 387 s for 32x32 with 1024^3): constants quoted
               from SCALE-Sim, not measured here
  piped        whether the program's fold loop is software-pipelined (double_buffer's two
               halves of a and b, next fold's vectors received during the dot)

    python benchmarks/bench_systolic.py                    # the default cases
    python benchmarks/bench_systolic.py --large            # and 32x32 with 1024^3
    python benchmarks/bench_systolic.py --repeat 1 --json out.json
    python benchmarks/bench_systolic.py --case 8x8:64,64,64
    python benchmarks/bench_systolic.py --pipelined        # double_buffer's rewrite, always

The driver takes double_buffer's rewrite of the fold loop where it fits the SRAM (every
default case does), so the compiled program is the pipelined one; --pipelined forces the
rewrite even where the driver would fall back to the plain loop.

All default cases fit the default 48 KiB per tile, pipelined or not (the kernel keeps
only its own blocks of A, B and C plus the staged rows and columns; see the kernel's header).
Cycles are the fast model's, which docs/timing.md checks against the cycle-level model.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from tilegrid import api
from tilegrid.api import compile_kernel
from tilegrid.compiler import driver
from tilegrid.compiler.checker import check_kernel
from tilegrid.compiler.passes import double_buffer
from tilegrid.compiler.spatial_ir import format_ir
from tilegrid.emulator import Emulator, MachineConfig
from tilegrid.kernels.matmul_systolic_ref import folds, pad_inputs, reference, resident_layout

# the two kernels: operands stored evenly over the tiles and gathered to the injecting
# tiles first (matmul_systolic), or already on them (matmul_systolic_resident)
KERNELS = {"distributed": "matmul_systolic", "resident": "matmul_systolic_resident"}

# SCALE-Sim's reported simulation times, seconds, keyed by (W, H, M, N, K). Quoted, not measured.
SCALESIM_REPORTED_S = {(16, 16, 256, 256, 256): 6.8, (32, 32, 1024, 1024, 1024): 387.0}

# (W, H), (M, N, K)
DEFAULT_CASES = [
    ((16, 16), (256, 256, 256)),
    ((32, 32), (512, 512, 512)),
    ((16, 16), (100, 72, 64)),       # does not divide: padded to 112 x 80, 7 * 5 = 35 folds
]
LARGE_CASE = ((32, 32), (1024, 1024, 1024))  # SCALE-Sim's large case (--large); 46 KiB per tile


def scalesim_os_cycles(M: int, N: int, K: int, grid: tuple) -> int:
    """SCALE-Sim's output-stationary compute cycles on an R x C array (R = H, C = W)."""
    W, H = grid
    return -(-M // H) * -(-N // W) * (K + H + W - 2) - 1


def parse_case(text: str):
    g, s = text.split(":")
    W, H = (int(v) for v in g.lower().split("x"))
    M, N, K = (int(v) for v in s.split(","))
    return (W, H), (M, N, K)


def compile_program(kernel: str, grid: tuple, shapes: dict, params: dict, config: MachineConfig, pipelined: bool):
    """(program, lowered IR text): as tilegrid compiles it, or with double_buffer's rewrite taken."""
    if not pipelined:
        compiled = compile_kernel(kernel, grid, shapes, params, config)
        return compiled.program, compiled.lowered
    source, path = api.read_source(kernel)
    machine = api.machine(grid, config)
    own, table = driver.load_kernels(source, path)
    spatial = check_kernel(own[-1], machine.width, machine.height, shapes, params, table,
                           max_ops=machine.sram_bytes // machine.instruction_bytes)
    spatial, program = driver._lower_and_emit(double_buffer(spatial), machine, path)
    return program, format_ir(spatial)


def bench(kernel: str, grid: tuple, shape: tuple, repeat: int, sram_kib: int, seed: int = 0,
          pipelined: bool = False) -> dict:
    M, N, K = shape
    rng = np.random.default_rng(seed + M + N + K)
    A = rng.standard_normal((M, K)).astype(np.float32)
    B = rng.standard_normal((K, N)).astype(np.float32)
    if kernel == "matmul_systolic":
        Ap, Bp = pad_inputs(A, B, grid)
        inputs, params = {"A": Ap, "B": Bp}, {}
        padded = (Ap.shape[0], Bp.shape[1], Ap.shape[1])
    else:
        inputs, params = resident_layout(A, B, grid)
        padded = (params["M"], params["N"], K)
    config = MachineConfig(sram_bytes=sram_kib * 1024)
    t0 = time.perf_counter()
    program, lowered = compile_program(kernel, grid, {k: v.shape for k, v in inputs.items()}, params, config,
                                       pipelined)
    compile_s = time.perf_counter() - t0

    emu = Emulator(program)
    emu.load_inputs(inputs)
    stats = emu.run()  # warm-up: the numba core compiles or loads its cache
    C = emu.read_outputs()["C"][:M, :N]

    times = []
    for _ in range(repeat):
        e = Emulator(program)
        e.load_inputs(inputs)
        t = time.perf_counter()
        e.run()
        times.append(time.perf_counter() - t)

    want = reference({"A": A, "B": B}, {}, grid)["C"]
    exact = bool(np.array_equal(C.view(np.uint32), want.view(np.uint32)))
    formula = scalesim_os_cycles(M, N, K, grid)
    return {
        "kernel": kernel, "grid": f"{grid[0]}x{grid[1]}", "M": M, "N": N, "K": K,
        "padded": list(padded) if padded != (M, N, K) else None,
        "folds": folds(M, N, grid), "cycles": int(stats.cycles), "scalesim_cycles": formula,
        "ratio": stats.cycles / formula, "emulate_s": min(times), "compile_s": compile_s,
        "scalesim_reported_s": SCALESIM_REPORTED_S.get((*grid, M, N, K)),
        "bit_exact": exact, "pipelined": "a%2" in lowered, "sram_peak_bytes": int(stats.sram_peak_bytes),
        "utilization": float(stats.utilization), "wavelets": int(stats.wavelets),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", action="append", metavar="WxH:M,N,K",
                    help="a case to run instead of the defaults (repeatable)")
    ap.add_argument("--large", action="store_true",
                    help="also run 32x32 with 1024^3, SCALE-Sim's large case (minutes per run)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per case, best taken (default 3)")
    ap.add_argument("--sram-kib", type=int, default=48, help="SRAM per tile (default 48, the machine's)")
    ap.add_argument("--pipelined", action="store_true",
                    help="compile with double_buffer's rewrite taken (see above)")
    ap.add_argument("--kernel", choices=["both", *KERNELS], default="both",
                    help="distributed: matmul_systolic (operands gathered to the injecting tiles first); "
                         "resident: matmul_systolic_resident (operands already there); default both")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    kernels = list(KERNELS.values()) if args.kernel == "both" else [KERNELS[args.kernel]]
    cases = [parse_case(c) for c in args.case] if args.case else list(DEFAULT_CASES)
    if args.large:
        cases.append(LARGE_CASE)
    print(f"{os.cpu_count()} cores, numpy {np.__version__}, {args.sram_kib} KiB SRAM per tile, "
          f"best of {args.repeat} warm runs")
    head = (f"{'kernel':>24} {'grid':>6} {'M':>5} {'N':>5} {'K':>5} {'folds':>6} {'cycles':>10} {'SCALE-Sim':>10} "
            f"{'ratio':>6} {'emulate s':>10} {'SCALE-Sim s':>12} {'piped':>5}  bit-exact")
    print(head)
    print("-" * len(head))
    rows = []
    for grid, shape in cases:
        for kernel in kernels:
            r = bench(kernel, grid, shape, args.repeat, args.sram_kib, pipelined=args.pipelined)
            rows.append(r)
            reported = f"{r['scalesim_reported_s']:.1f}" if r["scalesim_reported_s"] is not None else "-"
            note = f"  (padded to {r['padded'][0]}x{r['padded'][1]}x{r['padded'][2]})" if r["padded"] else ""
            print(f"{r['kernel']:>24} {r['grid']:>6} {r['M']:>5} {r['N']:>5} {r['K']:>5} {r['folds']:>6} {r['cycles']:>10} "
                  f"{r['scalesim_cycles']:>10} {r['ratio']:>6.2f} {r['emulate_s']:>10.3f} {reported:>12} "
                  f"{'yes' if r['pipelined'] else 'no':>5}  "
                  f"{'yes' if r['bit_exact'] else 'NO'}{note}", flush=True)
    print("SCALE-Sim s: SCALE-Sim's reported time for that simulation (quoted, not measured here).")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": rows, "cores": os.cpu_count()}, indent=2))
    return 0 if all(r["bit_exact"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
