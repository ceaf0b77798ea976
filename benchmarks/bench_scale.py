"""Wafer-scale runs: wall time and memory against grid size, with and without defects.

Each case runs in its own process, so its peak RSS is its own. Per case it
reports the compile time, the allocation and host load, the emulator run, the
rounds, the tiles the rounds visited (compute-phase visits: a round visits only
the tiles that can make progress) and the wall time per visit, the state the
emulator allocated and the peak RSS.

    python benchmarks/bench_scale.py                          # gemv and SUMMA at 64^2 and 256^2, gemv at 1024^2
    python benchmarks/bench_scale.py --sides 1024 --kernels matmul   # SUMMA 2x2 blocks on a million tiles (minutes)
    python benchmarks/bench_scale.py --defects 0.01 --json out.json

Cases:
  gemv     y = A x, M = N = 4 * side (4x4 blocks per tile)
  matmul   SUMMA, M = K = N = 2 * side (2x2 blocks per tile)
  transformer_block   S = side^2, Dm = side, Dff = 2 * side, heads 2, causal: fits up to 32x32
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

from bench_matmul import cpu_name  # noqa: E402

DEFAULT_CASES = [("gemv", 64), ("matmul", 64), ("gemv", 256), ("matmul", 256), ("gemv", 1024)]


def sizes_for(kernel: str, side: int) -> tuple[dict, dict]:
    if kernel == "gemv":
        return {"M": 4 * side, "N": 4 * side}, {}
    if kernel == "matmul":
        return {"M": 2 * side, "K": 2 * side, "N": 2 * side}, {}
    if kernel == "transformer_block":
        # attention takes one key chunk per tile (S = tiles) and gathers q, k, v and o into
        # whole rows per tile (4 x side x Dm words), so Dm = side: the block fits up to 32x32
        return {"S": side * side, "Dm": side, "Dff": 2 * side}, {"heads": 2, "causal": 1}
    raise SystemExit(f"unknown kernel {kernel}")


def make_inputs(kernel: str, side: int) -> dict:
    from tilegrid import kernels
    return kernels.BUNDLED[kernel].make_inputs(np.random.default_rng(0), sizes_for(kernel, side)[0])


def compile_case(kernel: str, side: int, inputs: dict):
    """The case's program on a side x side grid (profile_rounds.py shares it)."""
    from tilegrid import api
    from tilegrid.emulator import MachineConfig
    params = sizes_for(kernel, side)[1]
    cfg = MachineConfig(width=side, height=side)
    return api.compile_kernel(kernel, (side, side), {k: v.shape for k, v in inputs.items()}, params, cfg).program


def run_case(kernel: str, side: int, defects: float, seed: int) -> dict:
    from tilegrid.emulator import Emulator
    from tilegrid.emulator.defects import DefectMap, SpareLayout
    from tilegrid.emulator.repair import repair

    sizes = sizes_for(kernel, side)[0]
    inputs = make_inputs(kernel, side)
    t0 = time.perf_counter()
    program = compile_case(kernel, side, inputs)
    t1 = time.perf_counter()
    fabric = None
    if defects:
        layout = SpareLayout()
        fabric = repair(side, side, DefectMap.random(layout.physical_width(side), side, defects, seed), layout)
    t2 = time.perf_counter()
    emu = Emulator(program, fabric=fabric)
    emu.load_inputs(inputs)
    t3 = time.perf_counter()
    stats = emu.run()
    t4 = time.perf_counter()
    out = {"kernel": kernel, "side": side, "tiles": side * side, "sizes": sizes, "defects": defects,
           "compile_s": t1 - t0, "repair_s": t2 - t1, "alloc_load_s": t3 - t2, "run_s": t4 - t3,
           "rounds": stats.rounds, "tile_visits": stats.tile_visits, "instructions": stats.instructions,
           "cycles": stats.cycles, "state_mb": emu.state.nbytes() / 1e6,
           "ns_per_visit": (t4 - t3) / max(stats.tile_visits, 1) * 1e9,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if fabric is not None:
        out["fabric"] = stats.fabric
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sides", type=int, nargs="+", help="grid sides (default: the cases listed above)")
    ap.add_argument("--kernels", nargs="+", default=["gemv", "matmul"],
                    help="with --sides: gemv, matmul, transformer_block")
    ap.add_argument("--defects", type=float, default=0.0, help="random defect rate (default 0: a perfect grid)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--case", nargs=2, metavar=("KERNEL", "SIDE"), help=argparse.SUPPRESS)  # one case, in-process
    args = ap.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case[0], int(args.case[1]), args.defects, args.seed)))
        return 0
    cases = [(k, s) for s in args.sides for k in args.kernels] if args.sides else DEFAULT_CASES
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, numpy {np.__version__}")
    print(f"{'case':<26}{'compile':>9}{'alloc+load':>11}{'run':>9}{'rounds':>8}{'visits':>15}{'ns/visit':>10}"
          f"{'state MB':>10}{'peak RSS':>10}")
    results = []
    for kernel, side in cases:
        cmd = [sys.executable, __file__, "--case", kernel, str(side), "--defects", str(args.defects),
               "--seed", str(args.seed)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        label = f"{kernel} {side}x{side}"
        if proc.returncode != 0:
            print(f"{label:<26} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else '?'}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"{label:<26}{r['compile_s']:>8.2f}s{r['alloc_load_s']:>10.2f}s{r['run_s']:>8.2f}s{r['rounds']:>8}"
              f"{r['tile_visits']:>15,}{r['ns_per_visit']:>10.0f}{r['state_mb']:>10.0f}{r['peak_rss_mb']:>9.0f}M",
              flush=True)
        if "fabric" in r:
            f = r["fabric"]
            print(f"{'':<26}defects {f['defects']}, {f['spares_used']} spares used, "
                  f"{f['extra_link_hops']} extra link hops")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"cpu": cpu_name(), "cores": os.cpu_count(), "results": results}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
