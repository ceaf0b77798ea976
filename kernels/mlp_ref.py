"""Ordered reference for kernels/mlp.tg: SUMMA products (k ascending), then the
bias and the tanh GELU in the kernel's operation order, with tilegrid's tanh."""
import numpy as np

from tilegrid.emulator.transcendentals import tanh

from .ordered import f32, matmul_ordered

F = np.float32

def gelu(h):
    t = h * h * h * F(0.044715)
    t = h + t
    t = tanh(t * F(0.7978845608028654))
    return F(0.5) * h * (F(1.0) + t)


def reference(inputs: dict, params: dict, grid: tuple) -> dict:
    X, w1, b1, w2, b2 = (f32(inputs[n]) for n in ("X", "w1", "b1", "w2", "b2"))
    return {"Y": matmul_ordered(gelu(matmul_ordered(X, w1) + b1), w2) + b2}
