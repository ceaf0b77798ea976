"""Each collective on its own, in every direction, against block arithmetic done here."""
import numpy as np
import pytest

from tilegrid.compiler import compile_source
from conftest import assert_bits_equal
from tilegrid.emulator import MachineConfig, run_program

GRIDS = [(3, 2), (2, 3), (4, 4), (1, 3)]


def run(text, grid, X):
    prog = compile_source(text, "t.tg", MachineConfig(width=grid[0], height=grid[1]), {"X": X.shape}).program
    return run_program(prog, {"X": X})[0]


def blocks(X, grid):
    """X [H*r, W*c] -> [H, W, r, c] tile blocks."""
    W, H = grid
    r, c = X.shape[0] // H, X.shape[1] // W
    return X.reshape(H, r, W, c).transpose(0, 2, 1, 3)


def unblocks(B):
    H, W, r, c = B.shape
    return B.transpose(0, 2, 1, 3).reshape(H * r, W * c)


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("direction,dx,dy", [("east", 1, 0), ("west", -1, 0), ("south", 0, 1), ("north", 0, -1)])
def test_rotate_and_shift(grid, direction, dx, dy, rng):
    W, H = grid
    X = rng.standard_normal((2 * H, 3 * W)).astype(np.float32)
    B = blocks(X, grid)
    rot = run(f"kernel k(X: f32[R, C] block(y, x)) -> Y: f32[R, C] block(y, x) {{ Y = rotate(X, {direction}) }}",
              grid, X)
    # tile (x, y) receives from (x - dx, y - dy), wrapping around
    want = np.empty_like(B)
    for y in range(H):
        for x in range(W):
            want[y, x] = B[(y - dy) % H, (x - dx) % W]
    assert_bits_equal(rot["Y"], unblocks(want))
    sh = run(f"kernel k(X: f32[R, C] block(y, x)) -> Y: f32[R, C] block(y, x) {{ Y = -1.0\n Y = shift(X, {direction}) }}",
             grid, X)
    want = np.full_like(B, -1.0)
    for y in range(H):
        for x in range(W):
            sx, sy = x - dx, y - dy
            if 0 <= sx < W and 0 <= sy < H:
                want[y, x] = B[sy, sx]
    assert_bits_equal(sh["Y"], unblocks(want))


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("op", ["add", "max"])
def test_reduce_row_and_col(grid, op, rng):
    W, H = grid
    X = (rng.standard_normal((2 * H, 3 * W)) * 1e3).astype(np.float32)
    B = blocks(X, grid)
    f = np.add if op == "add" else np.maximum
    out = run(f"kernel k(X: f32[R, C] block(y, x)) -> S: f32[R, C / W] block(y, _) {{ S = reduce_row(X, {op}) }}",
              grid, X)
    acc = B[:, 0]
    for x in range(1, W):  # ascending tile x, left to right
        acc = f(acc, B[:, x])
    assert_bits_equal(out["S"], acc.reshape(-1, acc.shape[-1]))
    out = run(f"kernel k(X: f32[R, C] block(y, x)) -> S: f32[R / H, C] block(_, x) {{ S = reduce_col(X, {op}) }}",
              grid, X)
    acc = B[0]
    for y in range(1, H):  # ascending tile y, top to bottom
        acc = f(acc, B[y])
    assert_bits_equal(out["S"], acc.transpose(1, 0, 2).reshape(acc.shape[1], -1))


@pytest.mark.parametrize("grid", GRIDS)
def test_broadcasts_from_every_root(grid, rng):
    W, H = grid
    X = rng.standard_normal((2 * H, 2 * W)).astype(np.float32)
    B = blocks(X, grid)
    for r in range(W):
        out = run(f"kernel k(X: f32[R, C] block(y, x)) -> Y: f32[R, C] block(y, x) "
                  f"{{ Y = broadcast_row(X, from = {r}) }}", grid, X)
        assert_bits_equal(out["Y"], unblocks(np.repeat(B[:, r:r + 1], W, axis=1)))
    for r in range(H):
        out = run(f"kernel k(X: f32[R, C] block(y, x)) -> Y: f32[R, C] block(y, x) "
                  f"{{ Y = broadcast_col(X, from = {r}) }}", grid, X)
        assert_bits_equal(out["Y"], unblocks(np.repeat(B[r:r + 1], H, axis=0)))
