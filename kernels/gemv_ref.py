"""Ordered reference for kernels/gemv.tg.

Tile column c multiplies its block of A by its block of x, adding columns in
ascending order from 0; the W partial vectors are then summed left to right
(parts[0] + parts[1] + ...), as the row chain does. So the result depends on
the grid width W.
"""
from .ordered import chain_reduce, f32, matvec_ordered


def reference(inputs: dict, params: dict, grid: tuple) -> dict:
    A, x = f32(inputs["A"]), f32(inputs["x"])
    width = grid[0]
    nb = A.shape[1] // width
    parts = [matvec_ordered(A[:, c * nb:(c + 1) * nb], x[c * nb:(c + 1) * nb]) for c in range(width)]
    return {"y": chain_reduce(parts)}
