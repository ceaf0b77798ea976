"""Randomized property test: random grids and shapes the mappings accept, always bit-exact."""
import math

import numpy as np
import pytest

import tilegrid
from conftest import assert_bits_equal, ordered_gemv, ordered_matmul

SEEDS = range(12)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_matmul(seed):
    rng = np.random.default_rng(seed)
    W, H = int(rng.integers(1, 7)), int(rng.integers(1, 7))
    P = math.lcm(W, H)
    M = H * int(rng.integers(1, 5))
    N = W * int(rng.integers(1, 5))
    K = P * int(rng.integers(1, 4))
    scale = 10.0 ** rng.uniform(-4, 4)
    A = (rng.standard_normal((M, K)) * scale).astype(np.float32)
    B = (rng.standard_normal((K, N)) / scale).astype(np.float32)
    C = tilegrid.run_kernel("matmul", {"A": A, "B": B}, grid=(W, H)).outputs["C"]
    assert_bits_equal(C, ordered_matmul(A, B))
    assert np.allclose(C, A.astype(np.float64) @ B.astype(np.float64), rtol=1e-4, atol=1e-4 * K)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_gemv(seed):
    rng = np.random.default_rng(100 + seed)
    W, H = int(rng.integers(1, 7)), int(rng.integers(1, 7))
    M = H * int(rng.integers(1, 6))
    N = W * int(rng.integers(1, 6))
    A = rng.standard_normal((M, N)).astype(np.float32)
    x = rng.standard_normal(N).astype(np.float32)
    y = tilegrid.run_kernel("gemv", {"A": A, "x": x}, grid=(W, H)).outputs["y"]
    assert_bits_equal(y, ordered_gemv(A, x, W))
    assert np.allclose(y, A.astype(np.float64) @ x.astype(np.float64), rtol=1e-4, atol=1e-4 * N)
