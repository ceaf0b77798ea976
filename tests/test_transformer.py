"""MLP and the transformer block: bit-exact against the composed ordered references,
and close to an independent float64 implementation written here with @."""
import numpy as np
import pytest

from tilegrid import kernels
import tilegrid

BLOCK_CASES = [
    ((8, 8), {"S": 64, "Dm": 128, "Dff": 512}, {"heads": 4, "causal": 0}),   # the issue's size
    ((8, 8), {"S": 64, "Dm": 128, "Dff": 512}, {"heads": 4, "causal": 1}),
    ((4, 4), {"S": 64, "Dm": 64, "Dff": 256}, {"heads": 4, "causal": 1}),
    ((16, 16), {"S": 256, "Dm": 64, "Dff": 256}, {"heads": 2, "causal": 1}),
    ((3, 2), {"S": 12, "Dm": 12, "Dff": 24}, {"heads": 3, "causal": 0}),
    ((1, 1), {"S": 4, "Dm": 8, "Dff": 16}, {"heads": 2, "causal": 1}),
]


def gelu64(h):
    return 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3)))


def layer_norm64(t, g, b, eps=1e-5):
    mu = t.mean(axis=1, keepdims=True)
    var = ((t - mu) ** 2).mean(axis=1, keepdims=True)
    return (t - mu) / np.sqrt(var + eps) * g + b


def block64(p, heads, causal):
    """The block as the issue defines it, in float64, independent of kernels/."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    x = p["x"]
    S, Dm = x.shape
    dh = Dm // heads
    a = layer_norm64(x, p["ln1_g"], p["ln1_b"])
    q, k, v = a @ p["wq"], a @ p["wk"], a @ p["wv"]
    heads_out = []
    for i in range(heads):
        c = slice(i * dh, (i + 1) * dh)
        s = q[:, c] @ k[:, c].T / np.sqrt(dh)
        if causal:
            s[np.triu_indices(S, 1)] = -np.inf
        w = np.exp(s - s.max(axis=1, keepdims=True))
        heads_out.append((w / w.sum(axis=1, keepdims=True)) @ v[:, c])
    h = x + np.concatenate(heads_out, axis=1) @ p["wo"]
    return h + gelu64(layer_norm64(h, p["ln2_g"], p["ln2_b"]) @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]


@pytest.mark.parametrize("grid,sizes,params", BLOCK_CASES,
                         ids=[f"{g[0]}x{g[1]}-S{s['S']}-Dm{s['Dm']}-h{p['heads']}-c{p['causal']}"
                              for g, s, p in BLOCK_CASES])
def test_transformer_block(grid, sizes, params):
    spec = kernels.BUNDLED["transformer_block"]
    inputs = spec.make_inputs(np.random.default_rng(sizes["S"] + grid[0]), sizes)
    result = tilegrid.run_kernel("transformer_block", inputs, grid=grid, params=params, check=True)
    assert result.check.bit_exact, result.check.summary()
    y = result.outputs["y"]
    want = block64(inputs, params["heads"], params["causal"])
    # stated tolerance: 1e-4 of (|y| + rms(y)); the f32 errors measured are around 1e-6 relative
    rms = np.sqrt(np.mean(want ** 2))
    assert np.all(np.abs(y - want) <= 1e-4 * (np.abs(want) + rms)), np.max(np.abs(y - want) / rms)
    assert result.stats.sram_peak_bytes <= 48 * 1024


def test_block_fits_48k_on_8x8_and_reports_its_plan():
    spec = kernels.BUNDLED["transformer_block"]
    shapes = {k: v.shape for k, v in spec.make_inputs(np.random.default_rng(0), spec.demo_sizes).items()}
    prog = tilegrid.compile_kernel("transformer_block", grid=(8, 8), shapes=shapes).program
    plan = prog.format_plan()
    assert prog.sram_bytes_used() <= 48 * 1024
    assert "SRAM plan per tile" in plan and "w1" in plan and "attention." in plan


def test_block_too_big_for_the_grid_is_an_sram_error():
    spec = kernels.BUNDLED["transformer_block"]
    inputs = spec.make_inputs(np.random.default_rng(0), {"S": 64, "Dm": 128, "Dff": 512})
    with pytest.raises(tilegrid.CompileError) as err:
        tilegrid.run_kernel("transformer_block", inputs, grid=(4, 4))
    msg = str(err.value)
    assert "SRAM overflow on tile (0, 0)" in msg and "a tile has 49152" in msg
    assert "'w1' 16384 B" in msg  # the block's largest buffer on 4x4: a 32x128 slice of w1


def test_block_sizes_that_do_not_divide_are_explained():
    spec = kernels.BUNDLED["transformer_block"]
    inputs = spec.make_inputs(np.random.default_rng(0), {"S": 64, "Dm": 64, "Dff": 128})
    with pytest.raises(tilegrid.CompileError, match=r"multiple of W \* H.*called from"):
        tilegrid.run_kernel("transformer_block", inputs, grid=(16, 16))
    with pytest.raises(tilegrid.CompileError, match="Dm must be a multiple of heads"):
        tilegrid.run_kernel("transformer_block", inputs, grid=(2, 2), params={"heads": 3})


@pytest.mark.parametrize("grid", [(8, 8), (2, 4), (1, 1)])
def test_mlp(grid):
    spec = kernels.BUNDLED["mlp"]
    sizes = {"S": 16, "Dm": 32, "Dff": 64} if grid != (8, 8) else spec.demo_sizes
    inputs = spec.make_inputs(np.random.default_rng(7), sizes)
    result = tilegrid.run_kernel("mlp", inputs, grid=grid, check=True)
    assert result.check.ok, result.check.summary()
    p = {k: v.astype(np.float64) for k, v in inputs.items()}
    want = gelu64(p["X"] @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
    assert np.allclose(result.outputs["Y"], want, rtol=1e-4, atol=1e-5)


def test_block_plan_never_shares_sram_between_live_buffers():
    spec = kernels.BUNDLED["transformer_block"]
    shapes = {k: v.shape for k, v in spec.make_inputs(np.random.default_rng(0), spec.demo_sizes).items()}
    prog = tilegrid.compile_kernel("transformer_block", grid=(8, 8), shapes=shapes).program
    bufs = [b for b in prog.buffers if b.words > 0]
    assert len(bufs) > 50  # every inlined kernel's buffers are in the one plan
    shared = 0
    for i, a in enumerate(bufs):
        for b in bufs[i + 1:]:
            if a.addr < b.addr + b.words and b.addr < a.addr + a.words:
                shared += 1
                assert a.live[1] < b.live[0] or b.live[1] < a.live[0], (a.name, b.name)
    assert shared > 0  # lifetime-aware reuse actually happens
    assert prog.sram_words < sum(b.words for b in bufs)
