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


# ---- kernels/matmul_systolic_resident.tg: A rows and B columns on their injecting tiles

def _resident_places(M: int, N: int, grid: tuple):
    """Where matmul_systolic_resident keeps its operands (M, N already padded): for
    each A row i, (i, tile row, slot, tile column); for each B column j, (j, tile
    row, tile column, slot). The rule, restated from the kernel's header: A row
    ty*mb + fi on tile ((fi + ty) % W, ty), slot fi // W; B column tx*nb + fj on
    tile (tx, (fj + tx + 1) % H), column fj // H."""
    W, H = int(grid[0]), int(grid[1])
    mb, nb = M // H, N // W
    rows = [(ty * mb + fi, ty, fi // W, (fi + ty) % W) for ty in range(H) for fi in range(mb)]
    cols = [(tx * nb + fj, (fj + tx + 1) % H, tx, fj // H) for tx in range(W) for fj in range(nb)]
    return rows, cols


def resident_layout(A: np.ndarray, B: np.ndarray, grid: tuple) -> tuple[dict, dict]:
    """({"Ar", "Bc"}, {"M", "N"}): A [M, K] and B [K, N] arranged for
    matmul_systolic_resident on grid = (W, H), with M and N zero-padded at the end
    to multiples of H and W (those rows and columns of C are zero and cropped by
    the caller)."""
    A, B = f32(A), f32(B)
    (M, K), N = A.shape, B.shape[1]
    if B.shape[0] != K:
        raise ValueError(f"A is {A.shape} and B is {B.shape}: the inner sizes differ")
    W, H = int(grid[0]), int(grid[1])
    Mp, Np = _ceil_to(M, H), _ceil_to(N, W)
    ra, rb = -(-(Mp // H) // W), -(-(Np // W) // H)
    Ar = np.zeros((H, ra, W, K), np.float32)        # [tile row, slot, tile column, k]
    Bc = np.zeros((H, K, W, rb), np.float32)        # [tile row, k, tile column, slot]
    rows, cols = _resident_places(Mp, Np, grid)
    for i, ty, slot, tx in rows:
        if i < M:
            Ar[ty, slot, tx] = A[i]
    for j, ty, tx, slot in cols:
        if j < N:
            Bc[ty, :, tx, slot] = B[:, j]
    return ({"Ar": Ar.reshape(H * ra, W * K), "Bc": Bc.reshape(H * K, W * rb)}, {"M": Mp, "N": Np})


def from_resident(Ar: np.ndarray, Bc: np.ndarray, M: int, N: int, grid: tuple) -> tuple[np.ndarray, np.ndarray]:
    """A [M, K] and B [K, N] back out of resident_layout's arrangement (the slots no
    A row or B column uses are ignored)."""
    W, H = int(grid[0]), int(grid[1])
    K = Ar.shape[1] // W
    Ar4 = f32(Ar).reshape(H, Ar.shape[0] // H, W, K)
    Bc4 = f32(Bc).reshape(H, K, W, Bc.shape[1] // W)
    A = np.empty((M, K), np.float32)
    B = np.empty((K, N), np.float32)
    rows, cols = _resident_places(M, N, grid)
    for i, ty, slot, tx in rows:
        A[i] = Ar4[ty, slot, tx]
    for j, ty, tx, slot in cols:
        B[:, j] = Bc4[ty, :, tx, slot]
    return A, B


def resident_reference(inputs: dict, params: dict, grid: tuple) -> dict:
    A, B = from_resident(inputs["Ar"], inputs["Bc"], int(params["M"]), int(params["N"]), grid)
    return reference({"A": A, "B": B}, params, grid)


def run_resident(A: np.ndarray, B: np.ndarray, grid: tuple, **run_kwargs):
    """The product of A and B by kernels/matmul_systolic_resident.tg: arrange, run, crop.
    Returns (C [M, N], the RunResult)."""
    from tilegrid.api import run_kernel

    inputs, sizes = resident_layout(A, B, grid)
    params = {**run_kwargs.pop("params", {}), **sizes}
    result = run_kernel("matmul_systolic_resident", inputs, grid=grid, params=params, **run_kwargs)
    return result.outputs["C"][:np.shape(A)[0], :np.shape(B)[1]], result
