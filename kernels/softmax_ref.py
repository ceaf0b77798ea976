"""Ordered reference for kernels/softmax.tg: row max and row sum are reduced
inside each tile column block in ascending column order, then chained left to
right across the W blocks; exp is tilegrid's own f32 exp."""
from tilegrid.emulator.transcendentals import exp

from .ordered import f32, row_blocks_reduce


def reference(inputs: dict, params: dict, grid: tuple) -> dict:
    X = f32(inputs["X"])
    m = row_blocks_reduce(X, grid[0], "max")
    E = exp(X - m)
    s = row_blocks_reduce(E, grid[0], "add")
    return {"Y": E / s}
