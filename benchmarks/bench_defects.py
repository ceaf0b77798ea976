"""What defects cost: every bundled kernel on a repaired wafer against a perfect one.

For each kernel it runs the same program on a perfect grid and on fabrics with
random defects (--seeds of them), checks that the outputs are the same bits,
and reports the cycle overhead and the repair (defects, spares used, extra
link hops). Cycles come from the fast timing model; wall time is not measured.

    python benchmarks/bench_defects.py                    # 16x16, 1% defects, 5 seeds
    python benchmarks/bench_defects.py --grid 32x32 --rate 0.02 --spare-every 8
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from tilegrid import api, kernels
from tilegrid.emulator import parse_grid
from tilegrid.emulator.defects import DefectMap, SpareLayout
from tilegrid.emulator.repair import repair

# sizes that fit a 16x16 grid (attention takes one key chunk per tile: S = tiles)
SIZES = {
    "matmul": ({"M": 64, "K": 64, "N": 64}, {}),
    "gemv": ({"M": 64, "N": 64}, {}),
    "matmul_cannon": ({"M": 64, "K": 64, "N": 64}, {}),
    "matmul_systolic": ({"M": 32, "K": 32, "N": 32}, {}),
    "matmul_systolic_resident": ({"AR": 16, "AK": 512, "BK": 512, "BC": 16}, {"M": 64, "N": 64}),
    "softmax": ({"R": 64, "C": 64}, {}),
    "layernorm": ({"R": 64, "C": 64}, {}),
    "attention": ({"S": 256, "D": 16}, {}),
    "mlp": ({"S": 32, "Dm": 32, "Dff": 64}, {}),
    "transformer_block": ({"S": 256, "Dm": 32, "Dff": 64}, {"heads": 2, "causal": 1}),
    "rmsnorm": ({"R": 64, "C": 64}, {}),
    "swiglu": ({"S": 32, "Dm": 32, "Dff": 64}, {}),
    "rope": ({"R": 32, "D": 16, "P": 48}, {"pos": 9}),
    "argmax": ({"N": 256}, {}),
    "llama_layer": ({"S": 256, "Dm": 32, "Dh": 8, "Dq": 64, "Dkv": 32, "Dff": 64}, {"heads": 8, "kv_heads": 4}),
    "llama_model": ({"L": 2, "S": 256, "Dm": 32, "Dh": 8, "Dq": 32, "Dkv": 32, "Dff": 64}, {"heads": 4, "kv_heads": 4}),
    # on regions of 8x16 tiles
    "block_pipelined": ({"B": 2, "S": 128, "Dm": 32, "Dff": 64}, {"heads": 2, "causal": 1}),
    "two_blocks_pipelined": ({"B": 2, "S": 128, "Dm": 32, "Dff": 64}, {"heads": 2, "causal": 1}),
}
ATTENTION_LIKE = ("attention", "transformer_block", "llama_layer", "llama_model", "block_pipelined",
                  "two_blocks_pipelined")  # S grows with the tile count


def scaled(name: str, sizes: dict, factor: int) -> dict:
    """Sizes for a grid `factor` times wider and taller: the split dimensions grow with it
    (attention's S with the tile count), the model widths stay."""
    def grow(k, v):
        if k == "S":
            return v * factor * (factor if name in ATTENTION_LIKE else 1)
        return v * factor if k in ("M", "K", "N", "R", "C", "P", "AR", "AK", "BK", "BC") else v
    return {k: grow(k, v) for k, v in sizes.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", default="16x16", help="a square multiple of 16x16")
    ap.add_argument("--rate", type=float, default=0.01)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--spare-every", type=int, default=16)
    ap.add_argument("--kernels", help="comma-separated kernels (default: all)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    w, h = parse_grid(args.grid)
    factor = w // 16
    layout = SpareLayout(args.spare_every)
    print(f"{args.grid}, {args.rate:.1%} random defects, one spare column per {args.spare_every}, "
          f"seeds 0..{args.seeds - 1}")
    print(f"{'kernel':<20}{'perfect':>10}{'overhead: min':>15}{'mean':>8}{'max':>8}{'defects':>9}{'spares':>8}"
          f"{'extra hops':>12}  bits")
    rows = []
    chosen = args.kernels.split(",") if args.kernels else list(SIZES)
    for name in chosen:
        sizes, params = SIZES[name]
        sizes = scaled(name, sizes, factor)
        inputs = kernels.BUNDLED[name].make_inputs(np.random.default_rng(0), sizes)
        program = api.compile_kernel(name, (w, h), {k: v.shape for k, v in inputs.items()}, params).program
        perfect = api.run_program_checked(program, inputs, params, check=False)
        overheads, defects, spares, hops, same = [], [], [], [], True
        for seed in range(args.seeds):
            fabric = repair(w, h, DefectMap.random(layout.physical_width(w), h, args.rate, seed), layout)
            run = api.run_program_checked(program, inputs, params, check=False, fabric=fabric)
            same &= all(run.outputs[k].tobytes() == perfect.outputs[k].tobytes() for k in run.outputs)
            overheads.append(run.stats.cycles / perfect.stats.cycles - 1)
            s = fabric.summary()
            defects.append(s["defects"])
            spares.append(s["spares_used"])
            hops.append(s["extra_link_hops"])
        rows.append({"kernel": name, "sizes": sizes, "perfect_cycles": perfect.stats.cycles,
                     "overhead": overheads, "defects": defects, "spares_used": spares, "extra_link_hops": hops,
                     "bit_identical": bool(same)})
        print(f"{name:<20}{perfect.stats.cycles:>10,}{min(overheads):>14.2%} {np.mean(overheads):>7.2%} "
              f"{max(overheads):>7.2%}{np.mean(defects):>9.1f}{np.mean(spares):>8.1f}{np.mean(hops):>12.1f}  "
              f"{'same' if same else 'DIFFERENT'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0 if all(r["bit_identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
