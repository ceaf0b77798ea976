"""Ordered reference for kernels/matmul.tg (SUMMA).

Every element of C starts at 0 and adds A[i, k] * B[k, j] for k ascending,
with a rounding after the multiply and after the add. The panel schedule of
the kernel visits k in exactly this order on every grid, so the reference
does not depend on the grid.
"""
from .ordered import f32, matmul_ordered


def reference(inputs: dict, params: dict, grid: tuple) -> dict:
    A, B = f32(inputs["A"]), f32(inputs["B"])
    return {"C": matmul_ordered(A, B)}
