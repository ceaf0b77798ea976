"""Ordered reference for kernels/matmul_systolic.tg (output-stationary systolic),
and the zero-padding that runs it on sizes that do not divide the grid.

In every fold each tile computes one C element as a [1, K] @ [K, 1] product
from zero: C[i, j] starts at 0 and adds A[i, k] * B[k, j] for k ascending,
with one rounding after the multiply and one after the add. The fold
schedule only decides which tile computes which element and when, not the
order inside an element, so the reference does not depend on the grid.

Sizes that do not divide the grid (the kernel needs M % H, N % W, K % W and
K % H to be 0) run through run_padded():
  - M and N are zero-padded at the end to the next multiples of H and W, so
    the kernel runs exactly ceil(M / H) * ceil(N / W) folds; the extra rows
    and columns of C are cropped off;
  - K is zero-padded at the front to the next multiple of lcm(W, H). Every
    element then starts with products 0 * 0 = +0.0 added to +0.0, which
    leaves it at +0.0, the value the unpadded sum starts from; so the cropped
    C is bit-identical to the ordered product of the unpadded A and B (even
    with inf or NaN inputs: padded A columns only meet padded B rows).
"""
from __future__ import annotations

from math import gcd

import numpy as np

from .ordered import f32


def reference(inputs: dict, params: dict, grid: tuple) -> dict:
    A, B = f32(inputs["A"]), f32(inputs["B"])
    C = np.zeros((A.shape[0], B.shape[1]), np.float32)
    for k in range(A.shape[1]):                      # k ascending; vectorized over all of C
        C = C + A[:, k, None] * B[None, k, :]        # f32 product, rounded; then f32 add, rounded
    return {"C": C}


def _ceil_to(n: int, m: int) -> int:
    return -(-n // m) * m


def padded_sizes(M: int, K: int, N: int, grid: tuple) -> tuple[int, int, int]:
    """(M, K, N) rounded up to what the kernel takes on grid = (W, H)."""
    W, H = int(grid[0]), int(grid[1])
    return _ceil_to(M, H), _ceil_to(K, W * H // gcd(W, H)), _ceil_to(N, W)


def folds(M: int, N: int, grid: tuple) -> int:
    """The kernel's folds for an M x N output on grid = (W, H): ceil(M / H) * ceil(N / W)."""
    W, H = int(grid[0]), int(grid[1])
    return -(-M // H) * -(-N // W)


def pad_inputs(A: np.ndarray, B: np.ndarray, grid: tuple) -> tuple[np.ndarray, np.ndarray]:
    """A [M, K] and B [K, N] zero-padded for grid = (W, H): M and N at the end, K at the front."""
    A, B = f32(A), f32(B)
    (M, K), N = A.shape, B.shape[1]
    if B.shape[0] != K:
        raise ValueError(f"A is {A.shape} and B is {B.shape}: the inner sizes differ")
    Mp, Kp, Np = padded_sizes(M, K, N, grid)
    Ap = np.zeros((Mp, Kp), np.float32)
    Bp = np.zeros((Kp, Np), np.float32)
    Ap[:M, Kp - K:] = A
    Bp[Kp - K:, :N] = B
    return Ap, Bp


def run_padded(A: np.ndarray, B: np.ndarray, grid: tuple, **run_kwargs):
    """The product of A and B by kernels/matmul_systolic.tg for any M, K, N: pad, run, crop.
    run_kwargs go to tilegrid.run_kernel (params, config, check, budget).
    Returns (C [M, N], the RunResult of the padded run)."""
    from tilegrid.api import run_kernel  # here, not at import: tilegrid.api imports this package

    Ap, Bp = pad_inputs(A, B, grid)
    result = run_kernel("matmul_systolic", {"A": Ap, "B": Bp}, grid=grid, **run_kwargs)
    return result.outputs["C"][:np.shape(A)[0], :np.shape(B)[1]], result
