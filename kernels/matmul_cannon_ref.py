"""Ordered reference for kernels/matmul_cannon.tg (Cannon's algorithm).

At step s, tile (x, y) multiplies k-block (x + y + s) mod W, so C block (y, x)
adds its k-blocks in that rotated order, k ascending within each block,
every multiply-add unfused."""
import numpy as np

from .ordered import f32, matmac_ordered


def reference(inputs: dict, params: dict, grid: tuple) -> dict:
    A, B = f32(inputs["A"]), f32(inputs["B"])
    n = grid[0]
    mb, kb, nb = A.shape[0] // n, A.shape[1] // n, B.shape[1] // n
    C = np.zeros((A.shape[0], B.shape[1]), np.float32)
    for y in range(n):
        for x in range(n):
            c = np.zeros((mb, nb), np.float32)
            for s in range(n):
                k = (x + y + s) % n
                c = matmac_ordered(c, A[y * mb:(y + 1) * mb, k * kb:(k + 1) * kb],
                                   B[k * kb:(k + 1) * kb, x * nb:(x + 1) * nb])
            C[y * mb:(y + 1) * mb, x * nb:(x + 1) * nb] = c
    return {"C": C}
