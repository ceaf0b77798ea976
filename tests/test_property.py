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


def _llama_configuration(rnd, name, sizes, params):
    """Heads, head width and cache that agree with each other, for the Llama kernels
    (independent random sizes almost never do): heads, kv_heads, Dq = heads Dh,
    Dkv = kv_heads Dh, and for generation T tokens in a cache of P >= S + T - 1."""
    kv_heads = rnd.choice([1, 2, 4])
    heads = kv_heads * rnd.choice([1, 2])
    dh = rnd.choice([2, 4, 8])
    params.update(heads=heads, kv_heads=kv_heads)
    sizes.update(Dh=dh, Dq=heads * dh, Dkv=kv_heads * dh)
    if name == "llama_generate":
        params["T"] = sizes["T"]
        sizes["P"] = max(sizes["P"], 4 * -(-(sizes["S"] + sizes["T"] - 1) // 4))


def _resident_configuration(rnd, grid, sizes, params):
    """matmul_systolic_resident's arrays fit the grid: Ar [H ra, W K], Bc [H K, W rb],
    M = H mb with mb <= W ra, N = W nb with nb <= H rb."""
    W, H = grid
    K, ra, rb = rnd.choice([1, 3, 8]), rnd.choice([1, 2]), rnd.choice([1, 2])
    sizes.update(AR=H * ra, AK=W * K, BK=H * K, BC=W * rb)
    params.update(M=H * rnd.randint(1, W * ra), N=W * rnd.randint(1, H * rb))


@pytest.mark.parametrize("seed", range(6))
def test_random_configurations_of_every_kernel(seed):
    """Random kernel, sizes, grid and queue depth (down to 1 wavelet, so back-pressure is
    everywhere): it either fails to compile with a CompileError, or runs bit-exact. Draws
    go on until three configurations have run (most random shapes break some kernel's
    divisibility rule, and those draws are checked for a message)."""
    import random

    from tilegrid import kernels
    from tilegrid.compiler import CompileError
    from tilegrid.emulator import MachineConfig

    rnd = random.Random(seed)
    ran = draws = 0
    while ran < 3 and draws < 40:
        draws += 1
        name = rnd.choice(sorted(kernels.BUNDLED))
        spec = kernels.BUNDLED[name]
        sizes = {k: rnd.choice([2, 4, 6, 8, 12, 16]) for k in spec.demo_sizes}
        grid = (rnd.randint(1, 4), rnd.randint(1, 4))
        params = {}
        blocks = ("transformer_block", "block_pipelined", "two_blocks_pipelined")
        if name in ("attention",) + blocks:
            params["causal"] = rnd.randint(0, 1)
        if name in blocks:
            params["heads"] = rnd.choice([1, 2, 4])
        if name in ("llama_layer", "llama_model", "llama_step", "llama_generate"):
            _llama_configuration(rnd, name, sizes, params)
        if name == "matmul_systolic_resident":
            _resident_configuration(rnd, grid, sizes, params)
        config = MachineConfig(queue_depth=rnd.choice([1, 2, 8]))
        inputs = spec.make_inputs(np.random.default_rng(seed), sizes)
        try:
            result = tilegrid.run_kernel(name, inputs, grid=grid, params=params, config=config, check=True)
        except CompileError as err:
            assert str(err)  # a message, not a crash
            continue
        assert result.check.ok, (name, grid, sizes, params, result.check.summary())
        ran += 1
    assert ran == 3, f"only {ran} of {draws} random configurations compiled"
