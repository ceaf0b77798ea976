"""The programs the two timing models are compared on (tests and docs/timing.md).

MICRO: one-line kernels whose timing the docs work out by hand; the fast
model must give the cycle-level model's cycles exactly. KERNELS: every
bundled kernel on small grids; the fast model must be within 5%.
"""
from __future__ import annotations

import numpy as np

MICRO_SOURCES = {
    "shift east": "kernel k(A: f32[N] block(x)) -> B: f32[N] block(x) { B = shift(A, east) }",
    "rotate east (ring)": "kernel k(A: f32[N] block(x)) -> B: f32[N] block(x) { B = rotate(A, east) }",
    "shift south": "kernel k(A: f32[N] block(y)) -> B: f32[N] block(y) { B = shift(A, south) }",
    "rotate north (ring)": "kernel k(A: f32[N] block(y)) -> B: f32[N] block(y) { B = rotate(A, north) }",
    "broadcast_row": "kernel k(A: f32[N] block(x)) -> B: f32[N] block(x) { B = broadcast_row(A, from = 0) }",
    "broadcast_col": "kernel k(A: f32[N] block(y)) -> B: f32[N] block(y) { B = broadcast_col(A, from = 0) }",
    "reduce_row (chain)": "kernel k(A: f32[N] block(x)) -> B: f32[N / W] block(_) { B = reduce_row(A, add) }",
    "reduce_row (grouped)":
        "kernel k(A: f32[N] block(x)) -> B: f32[N / W] block(_) { B = reduce_row(A, add, order = grouped) }",
    "reduce_col (grouped)":
        "kernel k(A: f32[N] block(y)) -> B: f32[N / H] block(_) { B = reduce_col(A, max, order = grouped) }",
    "reduce_row (grouped, segments of 4)":
        "kernel k(A: f32[N] block(x)) -> B: f32[N] block(x) { B = reduce_row(A, add, order = grouped, segment = 4) }",
}
ROW_KERNELS = {"shift east", "rotate east (ring)", "broadcast_row", "reduce_row (chain)", "reduce_row (grouped)",
               "reduce_row (grouped, segments of 4)"}


def micro_cases():
    """(label, source, grid, N) for each micro-benchmark: N = tiles * L."""
    out = []
    for name, src in MICRO_SOURCES.items():
        # grouped: also groups of 4, 3 tiles apart, in chunks
        for n_tiles, L in ((4, 64), (8, 256)) + (((16, 200),) if "grouped" in name else ()):
            grid = (n_tiles, 1) if name in ROW_KERNELS else (1, n_tiles)
            out.append((f"{name}, {n_tiles} tiles, L={L}", src, grid, n_tiles * L))
    return out


# bundled kernel, grid, sizes, params
KERNEL_CASES = [
    ("matmul", (2, 2), {"M": 16, "K": 16, "N": 16}, {}),
    ("matmul", (4, 4), {"M": 32, "K": 32, "N": 32}, {}),
    ("matmul_cannon", (4, 4), {"M": 32, "K": 32, "N": 32}, {}),
    ("matmul_systolic", (4, 4), {"M": 16, "K": 16, "N": 16}, {}),
    ("matmul_systolic_resident", (4, 4), {"AR": 4, "AK": 64, "BK": 64, "BC": 4}, {"M": 16, "N": 16}),
    ("gemv", (4, 4), {"M": 32, "N": 32}, {}),
    ("softmax", (4, 4), {"R": 32, "C": 32}, {}),
    ("layernorm", (4, 4), {"R": 32, "C": 32}, {}),
    ("attention", (2, 2), {"S": 16, "D": 8}, {}),
    ("mlp", (2, 2), {"S": 8, "Dm": 16, "Dff": 32}, {}),
    ("transformer_block", (2, 2), {"S": 8, "Dm": 16, "Dff": 32}, {"heads": 2, "causal": 1}),
]


def kernel_inputs(name: str, sizes: dict) -> dict:
    from tilegrid import kernels
    return kernels.BUNDLED[name].make_inputs(np.random.default_rng(1), sizes)
