"""SUMMA matmul on the emulator: bit-exact against the ordered reference on many grids."""
import numpy as np
import pytest

import tilegrid
from conftest import assert_bits_equal, assert_close_f64, ordered_matmul

# (W, H) grids from the issue, each with shapes the mapping accepts:
# M % H == 0, N % W == 0, K % lcm(W, H) == 0.
CASES = [
    ((1, 1), (5, 7, 3)),
    ((1, 1), (16, 16, 16)),
    ((2, 2), (8, 8, 8)),
    ((2, 2), (6, 10, 4)),
    ((3, 2), (4, 12, 9)),
    ((3, 2), (10, 6, 15)),
    ((2, 5), (15, 20, 8)),
    ((2, 5), (5, 10, 2)),
    ((4, 4), (32, 32, 32)),
    ((4, 4), (20, 12, 36)),
    ((8, 8), (64, 64, 64)),
    ((8, 8), (24, 40, 16)),
]


@pytest.mark.parametrize("grid,shape", CASES, ids=[f"{g[0]}x{g[1]}-{s[0]}x{s[1]}x{s[2]}" for g, s in CASES])
def test_summa_bit_exact(grid, shape, rng):
    M, K, N = shape
    A = rng.standard_normal((M, K)).astype(np.float32)
    B = rng.standard_normal((K, N)).astype(np.float32)
    result = tilegrid.run_kernel("matmul", {"A": A, "B": B}, grid=grid)
    C = result.outputs["C"]
    assert_bits_equal(C, ordered_matmul(A, B))
    A64, B64 = A.astype(np.float64), B.astype(np.float64)
    assert_close_f64(C, A64 @ B64, np.abs(A64) @ np.abs(B64), K)
    assert result.stats.tiles == grid[0] * grid[1]
    assert result.stats.sram_peak_bytes <= 48 * 1024


def test_summa_order_is_visible(rng):
    """The reference order matters: a different summation order gives different bits,
    so the bit-exact test above has teeth."""
    M = K = N = 32
    A = (rng.standard_normal((M, K)) * 10 ** rng.uniform(-3, 3, (M, K))).astype(np.float32)
    B = (rng.standard_normal((K, N)) * 10 ** rng.uniform(-3, 3, (K, N))).astype(np.float32)
    C = tilegrid.run_kernel("matmul", {"A": A, "B": B}, grid=(4, 4)).outputs["C"]
    reversed_order = np.zeros((M, N), np.float32)
    for k in reversed(range(K)):
        reversed_order = reversed_order + A[:, k, None] * B[None, k, :]
    assert not np.array_equal(C.view(np.uint32), reversed_order.view(np.uint32))
    assert_bits_equal(C, ordered_matmul(A, B))


def test_summa_special_values():
    """Signed zeros, infinities and NaN propagate exactly as in the ordered reference."""
    A = np.array([[0.0, -0.0, 1.0, 2.0], [np.inf, 1.0, -1.0, 0.0],
                  [-0.0, -0.0, -0.0, -0.0], [1e30, 1e30, -1e30, 3.0]], np.float32)
    B = np.array([[-0.0, 1.0], [0.0, -1.0], [2.0, np.nan], [1e10, 1e-30]], np.float32)
    C = tilegrid.run_kernel("matmul", {"A": A, "B": B}, grid=(2, 2)).outputs["C"]
    assert_bits_equal(C, ordered_matmul(A, B))


def test_stats_are_consistent(rng):
    M = K = N = 32
    A = rng.standard_normal((M, K)).astype(np.float32)
    B = rng.standard_normal((K, N)).astype(np.float32)
    s = tilegrid.run_kernel("matmul", {"A": A, "B": B}, grid=(4, 4)).stats
    # Each of 4 steps: every row broadcasts an (M/4 x K/4) panel, every column a (K/4 x N/4) one.
    panel = (M // 4) * (K // 4)
    assert s.wavelets == 4 * (4 * panel + 4 * panel)
    # A row broadcast from column r reaches 3 tiles over 3 links; so does a column one.
    assert s.wavelet_hops == 4 * (4 * 3 * panel + 4 * 3 * panel)
    assert s.cycles >= M * N * K // 16  # each tile does (M/4)(N/4)K multiply-adds at 1 per cycle
    assert 0 < s.utilization <= 1
    assert s.undelivered_wavelets == 0
