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


def grouped_blocks(parts, f):
    """order = grouped, restated from docs/language.md: runs of g parts (g the largest
    divisor of the count at most its square root), h = count / g // 2 runs before the
    middle. Those runs are chained left to right, then their sums (L); the runs after
    the middle right to left, then their sums right to left (R); the result R op L."""
    n = len(parts)
    g = max(d for d in range(1, n + 1) if n % d == 0 and d * d <= n)
    if g == 1:
        acc = parts[0]
        for p in parts[1:]:
            acc = f(acc, p)
        return acc

    def chain(items):
        acc = items[0]
        for p in items[1:]:
            acc = f(acc, p)
        return acc
    h = n // g // 2
    runs = [parts[i:i + g] for i in range(0, n, g)]
    near = chain([chain(r) for r in runs[:h]])
    far = chain([chain(r[::-1]) for r in runs[h:]][::-1])
    return f(far, near)


@pytest.mark.parametrize("grid,cols", [((4, 2), 1), ((16, 1), 40), ((6, 3), 70), ((7, 2), 3), ((12, 4), 3),
                                       ((2, 9), 5), ((1, 16), 50)])
@pytest.mark.parametrize("op", ["add", "max"])
def test_grouped_reduce_row_and_col(grid, cols, op, rng):
    """Groups of tiles chained, then the groups: bit-exact against that order on data
    whose magnitudes span eight decades (so the order shows), in place and not, in
    chunks (70 values) and not; a float64 sum agrees."""
    W, H = grid
    X = (rng.standard_normal((2 * H, cols * W)) * 10.0 ** rng.integers(-4, 4, (2 * H, cols * W))).astype(np.float32)
    B = blocks(X, grid)
    f = np.add if op == "add" else np.maximum
    row = run(f"kernel k(X: f32[R, C] block(y, x)) -> S: f32[R, C / W] block(y, _) "
              f"{{ S = reduce_row(X, {op}, order = grouped) }}", grid, X)["S"]
    want = grouped_blocks([B[:, x] for x in range(W)], f).reshape(-1, cols)
    assert_bits_equal(row, want)
    in_place = run(f"kernel k(X: f32[R, C] block(y, x)) -> S: f32[R, C / W] block(y, _) {{ local t: f32[2, {cols}]\n"
                   f" t = X\n t = reduce_row(t, {op}, order = grouped)\n S = t }}", grid, X)["S"]
    assert_bits_equal(in_place, want)
    col = run(f"kernel k(X: f32[R, C] block(y, x)) -> S: f32[R / H, C] block(_, x) "
              f"{{ S = reduce_col(X, {op}, order = grouped) }}", grid, X)["S"]
    acc = grouped_blocks([B[y] for y in range(H)], f)
    assert_bits_equal(col, acc.transpose(1, 0, 2).reshape(acc.shape[1], -1))
    X64 = X.astype(np.float64).reshape(2 * H, W, cols)
    exact = X64.sum(axis=1) if op == "add" else X64.max(axis=1)
    assert np.allclose(row, exact, rtol=1e-5, atol=1e-6 * np.abs(X64).max())


def test_the_grouped_order_is_not_the_chain_and_needs_fewer_cycles(rng):
    """On 16 tiles a row (groups of 4) the two orders round differently somewhere,
    and the grouped one, 3 + 3 hops in a row instead of 15, takes fewer modeled cycles."""
    X = (rng.standard_normal((1, 16 * 8)) * 10.0 ** rng.integers(-4, 4, (1, 16 * 8))).astype(np.float32)
    results = {}
    for order in ("chain", "grouped"):
        prog = compile_source(f"kernel k(X: f32[R, C] block(y, x)) -> S: f32[R, C / W] block(y, _) "
                              f"{{ S = reduce_row(X, add, order = {order}) }}", "t.tg",
                              MachineConfig(width=16, height=1), {"X": X.shape}).program
        out, stats = run_program(prog, {"X": X})[:2]
        results[order] = (out["S"], stats.cycles)
    assert not np.array_equal(results["chain"][0].view(np.uint32), results["grouped"][0].view(np.uint32))
    assert results["grouped"][1] < results["chain"][1]


def test_a_reduce_order_that_does_not_exist_is_a_message():
    from tilegrid.compiler import CompileError
    with pytest.raises(CompileError, match="order = chain or grouped"):
        compile_source("kernel k(X: f32[R, C] block(y, x)) -> S: f32[R, C / W] block(y, _) "
                       "{ S = reduce_row(X, add, order = tree) }", "t.tg", MachineConfig(width=4, height=1),
                       {"X": (2, 8)})


@pytest.mark.parametrize("grid,segment,order", [((12, 2), 4, "grouped"), ((12, 2), 3, "chain"), ((16, 3), 8, "grouped"),
                                                ((9, 9), 9, "grouped"), ((6, 4), 1, "chain"), ((2, 12), 6, "grouped")])
def test_segmented_reductions_stay_inside_their_runs(grid, segment, order, rng):
    """segment = n: every run of n tiles along the row (column) reduces on its own, in
    the given order, and receives only its own result; a float64 sum agrees."""
    W, H = grid
    X = (rng.standard_normal((2 * H, 70 * W)) * 10.0 ** rng.integers(-4, 4, (2 * H, 70 * W))).astype(np.float32)
    B = blocks(X, grid)

    def reduce(parts):
        if order == "grouped":
            return grouped_blocks(parts, np.add)
        acc = parts[0]
        for p in parts[1:]:
            acc = acc + p
        return acc
    if W % segment == 0:
        out = run(f"kernel k(X: f32[R, C] block(y, x)) -> Y: f32[R, C] block(y, x) "
                  f"{{ Y = reduce_row(X, add, order = {order}, segment = {segment}) }}", grid, X)["Y"]
        want = np.empty_like(B)
        for x0 in range(0, W, segment):
            want[:, x0:x0 + segment] = reduce([B[:, x] for x in range(x0, x0 + segment)])[:, None]
        assert_bits_equal(out, unblocks(want))
        X64 = blocks(X.astype(np.float64), grid).reshape(H, W // segment, segment, 2, 70).sum(axis=2)
        assert np.allclose(blocks(out, grid)[:, ::segment], X64, rtol=1e-5, atol=1e-6 * np.abs(X).max())
    if H % segment == 0:
        out = run(f"kernel k(X: f32[R, C] block(y, x)) -> Y: f32[R, C] block(y, x) "
                  f"{{ Y = reduce_col(X, add, order = {order}, segment = {segment}) }}", grid, X)["Y"]
        want = np.empty_like(B)
        for y0 in range(0, H, segment):
            want[y0:y0 + segment] = reduce([B[y] for y in range(y0, y0 + segment)])[None]
        assert_bits_equal(out, unblocks(want))


def test_a_segment_that_does_not_divide_the_row_is_a_message():
    from tilegrid.compiler import CompileError
    with pytest.raises(CompileError, match="segment = 3 must divide the 4 tiles along the row"):
        compile_source("kernel k(X: f32[R, C] block(y, x)) -> S: f32[R, C] block(y, x) "
                       "{ S = reduce_row(X, add, segment = 3) }", "t.tg", MachineConfig(width=4, height=1),
                       {"X": (2, 8)})
