"""The Llama building blocks: RMSNorm, the SwiGLU MLP, rotary embeddings and the
decoder layer over a prompt (GQA, causal), bit-exact against their ordered
references on several grids, with a float64 check beside each (run_kernel's check
does both; the layer's float64 model follows Hugging Face's order of operations)."""
import numpy as np
import pytest

import tilegrid
from tilegrid import kernels
from tilegrid.compiler.diagnostics import CompileError
from tilegrid.kernels.llama_layers_ref import rope_tables

CASES = [
    ("rmsnorm", (4, 4), {"R": 32, "C": 64}, {}),
    ("rmsnorm", (3, 2), {"R": 6, "C": 12}, {"eps": 1e-6}),
    ("rmsnorm", (1, 1), {"R": 3, "C": 7}, {}),
    ("swiglu", (2, 2), {"S": 16, "Dm": 16, "Dff": 48}, {}),
    ("swiglu", (4, 2), {"S": 8, "Dm": 32, "Dff": 64}, {}),
    ("rope", (2, 2), {"R": 8, "D": 16, "P": 32}, {"pos": 0}),
    ("rope", (1, 4), {"R": 16, "D": 8, "P": 40}, {"pos": 24}),   # the last rows of the tables
    ("rope", (3, 3), {"R": 9, "D": 32, "P": 20}, {"pos": 7}),
    # the decoder layer over a prompt: GQA ratios 2, 4 (and MQA), 1 (plain multi-head)
    ("llama_layer", (2, 2), {"S": 16, "Dm": 32, "Dh": 8, "Dq": 32, "Dkv": 16, "Dff": 64},
     {"heads": 4, "kv_heads": 2}),
    ("llama_layer", (2, 4), {"S": 16, "Dm": 32, "Dh": 8, "Dq": 32, "Dkv": 8, "Dff": 64},
     {"heads": 4, "kv_heads": 1}),
    ("llama_layer", (4, 2), {"S": 8, "Dm": 16, "Dh": 4, "Dq": 16, "Dkv": 16, "Dff": 32},
     {"heads": 4, "kv_heads": 4, "eps": 1e-6}),
    ("llama_layer", (4, 4), {"S": 32, "Dm": 64, "Dh": 8, "Dq": 64, "Dkv": 16, "Dff": 128},
     {"heads": 8, "kv_heads": 2}),
    # L layers from stacked weights, then the final norm
    ("llama_model", (2, 2), {"L": 3, "S": 16, "Dm": 32, "Dh": 8, "Dq": 32, "Dkv": 16, "Dff": 64},
     {"heads": 4, "kv_heads": 2}),
    ("llama_model", (4, 2), {"L": 2, "S": 16, "Dm": 32, "Dh": 8, "Dq": 32, "Dkv": 8, "Dff": 32},
     {"heads": 4, "kv_heads": 1}),
]


@pytest.mark.parametrize("name, grid, sizes, params", CASES)
def test_llama_layers_are_bit_exact(name, grid, sizes, params):
    spec = kernels.BUNDLED[name]
    inputs = spec.make_inputs(np.random.default_rng(11), sizes)
    result = tilegrid.run_kernel(name, inputs, grid=grid, params=params, check=True)
    assert result.check.bit_exact, result.check.summary()
    assert result.check.within_bound, result.check.summary()


def test_rope_rotates_pairs_by_the_position_angle():
    """Independently of the reference: with cos/sin tables of angle p * f, RoPE keeps
    each pair's length and turns it by its angle (checked in float64)."""
    R, D, P, pos = 4, 8, 16, 5
    cos, sin = rope_tables(P, D)
    X = np.random.default_rng(2).standard_normal((R, D)).astype(np.float32)
    Y = tilegrid.run_kernel("rope", {"X": X, "cos": cos, "sin": sin}, grid=(1, 2), params={"pos": pos}).outputs["Y"]
    h = D // 2
    x = X[:, :h] + 1j * X[:, h:]
    y = Y[:, :h].astype(np.float64) + 1j * Y[:, h:]
    np.testing.assert_allclose(np.abs(y), np.abs(x), rtol=1e-5)
    inv_freq = 1.0 / 10000.0 ** (np.arange(0, D, 2) / D)
    angle = (np.arange(pos, pos + R)[:, None] * inv_freq[None, :])
    np.testing.assert_allclose(y, x * np.exp(1j * angle), rtol=1e-4, atol=1e-5)


def test_rope_outside_its_tables_is_a_compile_error():
    inputs = kernels.BUNDLED["rope"].make_inputs(np.random.default_rng(0), {"R": 8, "D": 8, "P": 10})
    with pytest.raises(CompileError) as err:
        tilegrid.run_kernel("rope", inputs, grid=(2, 2), params={"pos": 3})
    assert "must be rows of the tables" in str(err.value) and "pos = 3" in str(err.value)


def test_the_layer_refuses_weights_that_do_not_match_its_heads():
    spec = kernels.BUNDLED["llama_layer"]
    inputs = spec.make_inputs(np.random.default_rng(0), {"S": 16, "Dm": 32, "Dh": 8, "Dq": 32, "Dkv": 16,
                                                         "Dff": 64, "P": 16})
    with pytest.raises(CompileError) as err:
        tilegrid.run_kernel("llama_layer", inputs, grid=(2, 2), params={"heads": 4, "kv_heads": 3})
    assert "kv_heads must divide heads" in str(err.value)
    with pytest.raises(CompileError) as err:
        tilegrid.run_kernel("llama_layer", inputs, grid=(2, 2), params={"heads": 4, "kv_heads": 1})
    assert "kv_heads * Dh columns" in str(err.value)


@pytest.mark.parametrize("grid, N", [((4, 2), 64), ((1, 1), 12), ((8, 1), 8), ((2, 3), 20)])
def test_argmax_picks_the_lowest_index_of_the_largest_value(grid, N):
    rng = np.random.default_rng(N)
    idx = np.arange(N, dtype=np.float32)[None]
    cases = [rng.standard_normal((1, N)).astype(np.float32) * 5,
             np.full((1, N), -3.0, np.float32),                       # all equal: index 0
             np.linspace(-1, 1, N, dtype=np.float32)[None],           # the last one
             np.where(np.arange(N) % 3 == 0, -np.inf, 1e-38).astype(np.float32)[None]]  # tiny ties, -inf
    cases[0][0, [N // 3, N - 1]] = 50.0                                # a tie: the lower index wins
    for x in cases:
        result = tilegrid.run_kernel("argmax", {"x": x, "idx": idx}, grid=grid, check=True)
        assert result.check.ok, result.check.summary()
        assert result.outputs["best"][0, 0] == np.argmax(x)             # independently of the reference
