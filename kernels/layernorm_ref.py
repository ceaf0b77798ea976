"""Ordered reference for kernels/layernorm.tg: sums as in softmax_ref (blocks,
then a chain), mean = sum / C, biased variance, rsqrt(v) = 1 / sqrt(v),
y = ((d * rsqrt) * gamma) + beta."""
import numpy as np

from .ordered import f32, row_blocks_reduce


def reference(inputs: dict, params: dict, grid: tuple) -> dict:
    X, gamma, beta = f32(inputs["X"]), f32(inputs["gamma"]), f32(inputs["beta"])
    C = np.float32(X.shape[1])
    eps = np.float32(params.get("eps", 1e-5))
    mean = row_blocks_reduce(X, grid[0], "add") / C
    d = X - mean
    var = row_blocks_reduce(d * d, grid[0], "add") / C
    r = np.float32(1.0) / np.sqrt(var + eps)
    return {"Y": d * r * gamma + beta}
