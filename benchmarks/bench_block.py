"""The transformer block on the emulator against NumPy, in one process.

Times, warm (best of --repeat):
  emulate     Emulator.run() of the compiled block
  end2end     host load of x and the weights + run + reading y back
  float64     a float64 NumPy forward pass of the same block (BLAS @)
  ordered     the bit-exact f32 reference (kernels/transformer_block_ref.py)
and prints the ratios and peak RSS; checks the emulator's y bit for bit.

    python benchmarks/bench_block.py                    # S=64 Dm=128 heads=4 Dff=512 on 8x8
    python benchmarks/bench_block.py --grid 16x16 --S 256 --Dm 64 --Dff 256 --heads 2
"""
from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np


from tilegrid import kernels  # noqa: E402
from tilegrid.kernels import ground_truth  # noqa: E402
from bench_matmul import best_of, cpu_name  # noqa: E402
from tilegrid.emulator import Emulator, parse_grid  # noqa: E402
from tilegrid.api import compile_kernel  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", default="8x8")
    ap.add_argument("--S", type=int, default=64)
    ap.add_argument("--Dm", type=int, default=128)
    ap.add_argument("--Dff", type=int, default=512)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--causal", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args(argv)
    grid = parse_grid(args.grid)
    spec = kernels.BUNDLED["transformer_block"]
    params = {"heads": args.heads, "causal": args.causal}
    inputs = spec.make_inputs(np.random.default_rng(0), {"S": args.S, "Dm": args.Dm, "Dff": args.Dff})

    t0 = time.perf_counter()
    program = compile_kernel("transformer_block", grid, {k: v.shape for k, v in inputs.items()}, params).program
    compile_s = time.perf_counter() - t0
    emu = Emulator(program)
    emu.load_inputs(inputs)
    stats = emu.run()  # warm-up (JIT)
    y = emu.read_outputs()["y"]

    def emulate():
        e = Emulator(program)
        e.load_inputs(inputs)
        t = time.perf_counter()
        e.run()
        return time.perf_counter() - t

    def end_to_end():
        e = Emulator(program)
        e.load_inputs(inputs)
        e.run()
        e.read_outputs()

    emulate_s = min(emulate() for _ in range(args.repeat))
    end2end_s = best_of(end_to_end, args.repeat)
    float64_s = best_of(lambda: ground_truth.block_forward64(inputs, params), args.repeat)
    t0 = time.perf_counter()
    ref = spec.reference(inputs, params, grid)["y"]
    ordered_s = time.perf_counter() - t0
    exact = np.array_equal(y.view(np.uint32), ref.view(np.uint32))

    print(f"machine: {cpu_name()}; block S={args.S} Dm={args.Dm} heads={args.heads} Dff={args.Dff} "
          f"causal={args.causal} on {args.grid}")
    print(f"bit-exact vs ordered reference: {'yes' if exact else 'NO'}")
    print(f"  compile        {compile_s * 1e3:9.1f} ms")
    print(f"  emulate        {emulate_s * 1e3:9.1f} ms   {emulate_s / float64_s:7.2f}x float64 numpy   "
          f"{emulate_s / ordered_s:7.3f}x ordered f32 reference")
    print(f"  load+run+read  {end2end_s * 1e3:9.1f} ms   {end2end_s / float64_s:7.2f}x float64 numpy")
    print(f"  float64 numpy  {float64_s * 1e3:9.1f} ms")
    print(f"  ordered f32    {ordered_s * 1e3:9.1f} ms")
    print(f"  modelled: {stats.cycles} cycles, utilization {stats.utilization:.0%}, {stats.wavelets} wavelets, "
          f"SRAM {stats.sram_peak_bytes / 1024:.1f} KiB/tile, {stats.rounds} rounds")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
