"""Ordered references for the pipelined kernels (kernels/block_pipelined.tg,
kernels/two_blocks_pipelined.tg). Each stage runs on one region, half the
grid's columns (`split(x)`), and computes what transformer_block computes on a
grid of that size, so its reference is transformer_block's, on the region's
grid, per sequence of the batch."""
import numpy as np

from . import transformer_block_ref
from .ordered import f32

BLOCK_WEIGHTS = ("ln1_g", "ln1_b", "wq", "wk", "wv", "wo", "ln2_g", "ln2_b", "w1", "b1", "w2", "b2")


def stage_grid(grid: tuple) -> tuple:
    """The grid one stage sees: its region, the left or right half."""
    return grid[0] // 2, grid[1]


def block_pipelined(inputs: dict, params: dict, grid: tuple) -> dict:
    x = f32(inputs["x"])
    y = np.empty_like(x)
    for b in range(x.shape[0]):  # attention then the MLP: the whole block, as one region computes it
        y[b] = transformer_block_ref.reference({**inputs, "x": x[b]}, params, stage_grid(grid))["y"]
    return {"y": y}


def block_weights(inputs: dict, suffix: str) -> dict:
    return {n: inputs[f"{n}_{suffix}"] for n in BLOCK_WEIGHTS}


def two_blocks_pipelined(inputs: dict, params: dict, grid: tuple) -> dict:
    x = f32(inputs["x"])
    y = np.empty_like(x)
    for b in range(x.shape[0]):
        h = transformer_block_ref.reference({**block_weights(inputs, "a"), "x": x[b]}, params,
                                            stage_grid(grid))["y"]
        y[b] = transformer_block_ref.reference({**block_weights(inputs, "b"), "x": h}, params,
                                               stage_grid(grid))["y"]
    return {"y": y}
