"""Generating tokens with a Llama checkpoint held in tile SRAM (kernels/llama_generate.tg,
tilegrid/llm.py): tokens and logits bit-exact against the ordered reference model
with a float64 model beside it, over layer counts, GQA ratios, grids and weight
types; Hugging Face's layouts checked by a model written from the checkpoint's own
tensors; checkpoint errors as one-line messages."""
import json

import ml_dtypes
import numpy as np
import pytest

import tilegrid
from tilegrid import kernels, llm
from tilegrid.cli import main
from tilegrid.emulator.config import MachineConfig


def model(layers=1, heads=4, kv_heads=2, hidden=16, intermediate=32, vocab=32, head_dim=4, tied=False):
    return llm.LlamaConfig(hidden=hidden, intermediate=intermediate, heads=heads, kv_heads=kv_heads, layers=layers,
                           vocab=vocab, eps=1e-5, theta=10000.0, head_dim=head_dim, tied=tied)


def checkpoint(tmp_path, cfg, dtype="f32", seed=0, name="ck"):
    return llm.write_checkpoint(tmp_path / name, cfg, np.random.default_rng(seed), dtype)


def hf_forward64(tensors: dict, cfg: llm.LlamaConfig, ids: list) -> np.ndarray:
    """The last position's logits in float64, written from the Hugging Face names and
    layouts ([out, in] Linear weights, rotate-half RoPE, repeat_kv), not from llm's
    kernel layout: so a wrong transpose or head order in the loader shows up here."""
    t = {k: np.asarray(v, np.float64) for k, v in tensors.items() if not k.startswith("%")}
    n, dh, eps = len(ids), cfg.head_dim, cfg.eps
    inv_freq = 1.0 / cfg.theta ** (np.arange(0, dh, 2) / dh)
    ang = np.arange(n)[:, None] * inv_freq[None, :]
    cos, sin = np.cos(np.concatenate([ang, ang], 1)), np.sin(np.concatenate([ang, ang], 1))

    def norm(x, w):
        return w * (x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps))

    def rope(x):  # x [heads, n, dh]
        return x * cos + np.concatenate([-x[..., dh // 2:], x[..., :dh // 2]], -1) * sin

    x = t["model.embed_tokens.weight"][ids]
    for l in range(cfg.layers):
        p = f"model.layers.{l}."
        a = norm(x, t[p + "input_layernorm.weight"])
        q = (a @ t[p + "self_attn.q_proj.weight"].T).reshape(n, cfg.heads, dh).transpose(1, 0, 2)
        k = (a @ t[p + "self_attn.k_proj.weight"].T).reshape(n, cfg.kv_heads, dh).transpose(1, 0, 2)
        v = (a @ t[p + "self_attn.v_proj.weight"].T).reshape(n, cfg.kv_heads, dh).transpose(1, 0, 2)
        q, k = rope(q), rope(k)
        rep = cfg.heads // cfg.kv_heads
        k, v = np.repeat(k, rep, axis=0), np.repeat(v, rep, axis=0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(dh) + np.triu(np.full((n, n), -np.inf), 1)
        w = np.exp(s - s.max(-1, keepdims=True))
        o = ((w / w.sum(-1, keepdims=True)) @ v).transpose(1, 0, 2).reshape(n, cfg.heads * dh)
        h = x + o @ t[p + "self_attn.o_proj.weight"].T
        a = norm(h, t[p + "post_attention_layernorm.weight"])
        g = a @ t[p + "mlp.gate_proj.weight"].T
        x = h + (g / (1 + np.exp(-g)) * (a @ t[p + "mlp.up_proj.weight"].T)) @ t[p + "mlp.down_proj.weight"].T
    head = t["model.embed_tokens.weight"] if cfg.tied else t["lm_head.weight"]
    return norm(x, t["model.norm.weight"])[-1] @ head.T


GENERATIONS = [  # (layers, heads, kv_heads, grid, dtype)
    (1, 4, 2, (1, 1), "f32"),
    (2, 4, 2, (2, 2), "bf16"),
    (3, 4, 4, (4, 2), "f16"),      # plain multi-head
    (2, 8, 2, (2, 4), "f32"),      # GQA ratio 4
    (1, 4, 1, (1, 2), "bf16"),     # multi-query
    (2, 8, 4, (4, 4), "bf16"),
]


@pytest.mark.parametrize("layers, heads, kv_heads, grid, dtype", GENERATIONS)
def test_generation_is_bit_exact_and_agrees_with_float64(tmp_path, layers, heads, kv_heads, grid, dtype):
    cfg = model(layers, heads, kv_heads, hidden=8 * grid[1], intermediate=8 * grid[0] * grid[1],
                vocab=16 * grid[0], head_dim=4)
    path = checkpoint(tmp_path, cfg, dtype, seed=layers + heads)
    gen = llm.generate(path, [3, 1, 4, 1, 5, 9][:grid[1] + 2], 5, MachineConfig(width=grid[0], height=grid[1]),
                       check=True)
    assert gen.check.bit_exact, gen.check.summary()      # tokens and every step's logits, raw bits
    assert gen.check.within_bound, gen.check.summary()   # the float64 model's tokens, and its logits
    assert len(gen.generated) == 5 and all(0 <= t < cfg.vocab for t in gen.generated)
    assert np.array_equal(np.argmax(gen.logits, axis=1), gen.generated)


def test_the_loader_follows_hugging_face_layouts(tmp_path):
    """Logits of every step against a float64 forward pass over the checkpoint's own
    tensors (non-square projections, GQA 2, two layers), re-run on the whole sequence."""
    cfg = model(layers=2, heads=4, kv_heads=2, hidden=24, intermediate=40, vocab=32, head_dim=8)
    path = checkpoint(tmp_path, cfg, "f32", seed=4)
    prompt = [5, 17, 2]
    gen = llm.generate(path, prompt, 4, MachineConfig(width=2, height=2))
    _, tensors = llm.read_checkpoint(path)
    ids = list(prompt)
    for step, token in enumerate(gen.generated):
        want = hf_forward64(tensors, cfg, ids)
        np.testing.assert_allclose(gen.logits[step], want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
        assert token == int(np.argmax(want))
        ids.append(token)


def test_tied_embeddings_use_the_embedding_table_as_the_head(tmp_path):
    tied = model(tied=True)
    path = checkpoint(tmp_path, tied, "f32", seed=8, name="tied")
    untied = tmp_path / "untied"
    untied.mkdir()
    from safetensors.numpy import load_file, save_file
    tensors = load_file(str(path / "model.safetensors"))
    assert "lm_head.weight" not in tensors
    save_file({**tensors, "lm_head.weight": tensors["model.embed_tokens.weight"]}, str(untied / "model.safetensors"))
    (untied / "config.json").write_text(json.dumps({**tied.to_json(), "tie_word_embeddings": False}))
    a = llm.generate(path, [1, 2], 4, MachineConfig(width=2, height=2))
    b = llm.generate(untied, [1, 2], 4, MachineConfig(width=2, height=2))
    assert a.generated == b.generated
    assert np.array_equal(a.logits.view(np.uint32), b.logits.view(np.uint32))


def test_a_longer_cache_gives_the_same_tokens(tmp_path):
    """Positions past the sequence are masked: a cache of 24 positions instead of 8."""
    path = checkpoint(tmp_path, model(), "f32", seed=2)
    cfg = MachineConfig(width=2, height=2)
    short = llm.generate(path, [7, 3, 9], 6, cfg)
    long = llm.generate(path, [7, 3, 9], 6, cfg, context=24, check=True)
    assert long.check.ok, long.check.summary()
    assert short.generated == long.generated
    np.testing.assert_allclose(short.logits, long.logits, rtol=1e-5, atol=1e-5)


def test_a_model_too_big_for_f32_fits_in_bf16(tmp_path):
    """Half the matrices' bytes: at 56 KiB a tile, f32 weights overflow and bf16 fit."""
    cfg = model(layers=4, heads=4, kv_heads=2, hidden=32, intermediate=64, vocab=32, head_dim=8)
    path = checkpoint(tmp_path, cfg, "bf16", seed=3)
    machine = MachineConfig(width=2, height=2, sram_bytes=56 * 1024)
    with pytest.raises(tilegrid.CompileError, match="SRAM overflow"):
        llm.generate(path, [1, 2, 3], 3, machine, dtype="f32")
    gen = llm.generate(path, [1, 2, 3], 3, machine, check=True)
    assert gen.check.ok, gen.check.summary()
    assert gen.sram["total"] <= machine.sram_bytes
    # per tile of 4: the layers' matrices and the embedding table in 2 bytes a value; the
    # norms (split over the 2 tile rows) and the LM head in 4
    L, dm, dq, dkv, dff, v = 4, 32, 32, 16, 64, 32
    matrices = L * (2 * dm * dq + 2 * dm * dkv + 3 * dm * dff) // 4
    want = 2 * (matrices + v * dm // 4) + 4 * (2 * L * dm // 2 + dm // 2 + dm * v // 4)
    assert gen.sram["weights"] == want


def test_the_modeled_time_adds_up(tmp_path):
    cfg = model(layers=2)
    path = checkpoint(tmp_path, cfg, "bf16", seed=5)
    gen = llm.generate(path, [1, 2, 3, 4], 5, MachineConfig(width=2, height=2), gpu_bandwidth=1e12)
    m = gen.modeled
    # the first token comes after the prompt's pass; then four decode steps to the end of the run
    assert 0 < m["time_to_first_token_cycles"] < m["total_cycles"]
    assert m["time_to_first_token_cycles"] + 4 * m["cycles_per_token"] <= m["total_cycles"]
    assert m["total_cycles"] - (m["time_to_first_token_cycles"] + 4 * m["cycles_per_token"]) < 10
    assert m["tokens_per_second"] == pytest.approx(m["clock_mhz"] * 1e6 / m["cycles_per_token"])
    # a decode step runs every layer once: the layers take most of it, and not more than all of it
    assert 0.5 * m["cycles_per_token"] < 2 * m["per_layer"]["decode_cycles"] < m["cycles_per_token"]
    # the GPU bound: every layer matrix and the head, 2 bytes each, over 1 TB/s (plus the cache)
    from safetensors.numpy import load_file
    stored = load_file(str(path / "model.safetensors"))
    weight_bytes = sum(v.nbytes for n, v in stored.items() if n.startswith("model.layers.") or n == "lm_head.weight")
    assert m["gpu_bound"]["weight_bytes"] == weight_bytes
    assert m["gpu_bound"]["seconds_per_token"] == pytest.approx((weight_bytes + m["gpu_bound"]["kv_cache_bytes"]) / 1e12)


def test_decode_costs_the_same_whatever_the_token(tmp_path):
    """The step's code is static. On one tile column two prompts cost the same cycles
    per token; on two columns only the embedding row's broadcast (from the column
    holding the token) moves, by a few cycles."""
    path = checkpoint(tmp_path, model(kv_heads=2), "f32", seed=6)
    per_token = {}
    for width in (1, 2):
        for prompt in ([1, 2, 3], [30, 0, 12]):
            gen = llm.generate(path, prompt, 4, MachineConfig(width=width, height=2))
            per_token.setdefault(width, []).append(gen.modeled["cycles_per_token"])
    assert per_token[1][0] == per_token[1][1]
    assert abs(per_token[2][0] - per_token[2][1]) <= 0.01 * per_token[2][0]


# ----------------------------------------------------------------- the CLI and its errors
def test_cli_generate_writes_the_json_the_issue_names(tmp_path, capsys):
    path = checkpoint(tmp_path, model(layers=2), "bf16")
    out = tmp_path / "gen.json"
    assert main(["generate", str(path), "--grid", "2x2", "--prompt-ids", "1,2,3", "--tokens", "4",
                 "--output", str(out), "--check"]) == 0
    text = capsys.readouterr().out
    assert "tokens/s" in text and "GPU" in text and "bit-exact: logits matches" in text
    data = json.loads(out.read_text())
    assert data["prompt"] == [1, 2, 3] and len(data["generated"]) == 4
    for key in ("time_to_first_token_s", "seconds_per_token", "tokens_per_second"):
        assert data["modeled"][key] > 0


def _hf_files(tmp_path, cfg):
    path = checkpoint(tmp_path, cfg, "f32")
    from safetensors.numpy import load_file
    return path, load_file(str(path / "model.safetensors"))


def _save(path, tensors):
    from safetensors.numpy import save_file
    save_file(tensors, str(path / "model.safetensors"))


@pytest.mark.parametrize("damage, message", [
    ("missing", "missing tensor 'model.layers.0.self_attn.k_proj.weight'"),
    ("misnamed", "missing tensor 'model.layers.0.mlp.up_proj.weight' (found model.layers.0.mlp.upp.up_proj"),
    ("shape", "tensor 'model.norm.weight' has shape (15,), config.json says (16,)"),
    ("config", "config.json: missing rope_theta"),
    ("json", "config.json: not a readable JSON file"),
    ("no_weights", "no model.safetensors"),
    ("garbage", "not a readable safetensors file"),
    ("grid", "num_key_value_heads (2) must be a multiple of the grid's width (4)"),
    ("prompt", "token id 99 is outside the vocabulary"),
])
def test_checkpoint_errors_are_one_line_messages(tmp_path, capsys, damage, message):
    path, tensors = _hf_files(tmp_path, model())
    grid, prompt = "2x2", "1,2"
    if damage == "missing":
        del tensors["model.layers.0.self_attn.k_proj.weight"]
        _save(path, tensors)
    elif damage == "misnamed":
        tensors["model.layers.0.mlp.upp.up_proj.weight"] = tensors.pop("model.layers.0.mlp.up_proj.weight")
        _save(path, tensors)
    elif damage == "shape":
        tensors["model.norm.weight"] = tensors["model.norm.weight"][:15].copy()
        _save(path, tensors)
    elif damage == "config":
        data = json.loads((path / "config.json").read_text())
        del data["rope_theta"]
        (path / "config.json").write_text(json.dumps(data))
    elif damage == "json":
        (path / "config.json").write_text("{ not json")
    elif damage == "no_weights":
        (path / "model.safetensors").unlink()
    elif damage == "garbage":
        (path / "model.safetensors").write_bytes(b"\x00" * 40)
    elif damage == "grid":
        grid = "4x2"
    elif damage == "prompt":
        prompt = "1,99"
    assert main(["generate", str(path), "--grid", grid, "--prompt-ids", prompt, "--tokens", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_bad_prompt_ids_and_a_short_context_are_errors(tmp_path, capsys):
    path = checkpoint(tmp_path, model(), "f32")
    assert main(["generate", str(path), "--grid", "2x2", "--prompt-ids", "1,x"]) == 2
    assert "--prompt-ids takes token ids" in capsys.readouterr().err
    assert main(["generate", str(path), "--grid", "2x2", "--prompt-ids", "1,2,3", "--tokens", "4",
                 "--context", "4"]) == 2
    assert "need 6 positions" in capsys.readouterr().err


# ----------------------------------------------------------------- one layer over the cache
@pytest.mark.parametrize("grid, sizes, params", [
    ((2, 2), {"R": 1, "P": 16, "Dm": 16, "Dh": 4, "Dq": 16, "Dkv": 8, "Dff": 32}, {"pos": 11, "heads": 4,
                                                                                    "kv_heads": 2}),
    ((2, 4), {"R": 6, "P": 24, "Dm": 16, "Dh": 4, "Dq": 32, "Dkv": 8, "Dff": 32}, {"pos": 9, "heads": 8,
                                                                                    "kv_heads": 2}),
    ((1, 1), {"R": 4, "P": 4, "Dm": 8, "Dh": 4, "Dq": 8, "Dkv": 4, "Dff": 16}, {"pos": 0, "heads": 2,
                                                                                 "kv_heads": 1}),
])
def test_one_layer_over_the_cache_is_bit_exact(grid, sizes, params):
    """R new rows at a position the cache already holds keys before (the cache's later
    rows hold random values: the mask must hide them)."""
    inputs = kernels.BUNDLED["llama_step"].make_inputs(np.random.default_rng(9), sizes)
    result = tilegrid.run_kernel("llama_step", inputs, grid=grid, params=params, check=True)
    assert result.check.ok, result.check.summary()


def test_bf16_weights_are_rounded_to_nearest_even_in_the_checkpoint(tmp_path):
    path = checkpoint(tmp_path, model(), "bf16", seed=1)
    _, tensors = llm.read_checkpoint(path)
    from safetensors.numpy import load_file
    raw = load_file(str(path / "model.safetensors"))["model.layers.0.self_attn.q_proj.weight"]
    assert raw.dtype == ml_dtypes.bfloat16
    got = tensors["model.layers.0.self_attn.q_proj.weight"]
    assert np.array_equal(got, raw.astype(np.float32))


@pytest.mark.parametrize("grid", [(2, 2), (4, 4), (4, 2), (2, 4)])
def test_a_layer_taking_half_the_grids_sram_fits(grid):
    """The issue's rule for one decode layer: weights, cache and activations up to half
    of all the tiles' SRAM must compile. The MLP is grown to the largest width within
    that half; nothing is gathered into whole rows, so it fits with room for the code."""
    W, H = grid
    cfg = MachineConfig(width=W, height=H)
    heads, kv_heads, dh, dm, P = 2 * W, W, 8, 16 * H, 16 * H
    dq, dkv = heads * dh, kv_heads * dh
    step = W * H // np.gcd(W, H)

    def data_bytes(dff):
        weights = 2 * dm + 2 * dm * dq + 2 * dm * dkv + 3 * dm * dff
        activations = 3 * dm + 2 * dq + 2 * dkv + 2 * dff
        return 4 * (weights + 2 * P * dkv + activations + 2 * P * dh)   # with the rotary tables
    dff = step
    while data_bytes(dff + step) <= cfg.tiles * cfg.sram_bytes // 2:
        dff += step
    assert data_bytes(dff) <= cfg.tiles * cfg.sram_bytes // 2 < data_bytes(dff + step)
    sizes = {"R": 1, "P": P, "Dm": dm, "Dh": dh, "Dq": dq, "Dkv": dkv, "Dff": dff}
    inputs = kernels.BUNDLED["llama_step"].make_inputs(np.random.default_rng(1), sizes)
    result = tilegrid.run_kernel("llama_step", inputs, grid=grid,
                                 params={"pos": P - 1, "heads": heads, "kv_heads": kv_heads}, check=True)
    assert result.check.ok, result.check.summary()
    assert result.stats.sram_peak_bytes <= cfg.sram_bytes


# ----------------------------------------------------------------- grids wider than kv_heads
def hf_decode_step64(layer: dict, cfg: llm.LlamaConfig, x, keys, values, pos):
    """One Hugging Face decode step in float64 from the layer's own tensors: x [Dm] at
    position pos, keys/values [pos, kv_heads head_dim] of the earlier positions."""
    t = {k: np.asarray(v, np.float64) for k, v in layer.items()}
    dh, G = cfg.head_dim, cfg.heads // cfg.kv_heads
    inv_freq = 1.0 / cfg.theta ** (np.arange(0, dh, 2) / dh)
    cos, sin = np.cos(np.tile(pos * inv_freq, 2)), np.sin(np.tile(pos * inv_freq, 2))

    def norm(v, w):
        return w * v / np.sqrt(np.mean(v * v) + cfg.eps)

    def rope(v):  # [heads, dh]
        return v * cos + np.concatenate([-v[:, dh // 2:], v[:, :dh // 2]], axis=1) * sin

    a = norm(np.asarray(x, np.float64), t["input_layernorm.weight"])
    q = rope((t["self_attn.q_proj.weight"] @ a).reshape(cfg.heads, dh))
    k = rope((t["self_attn.k_proj.weight"] @ a).reshape(cfg.kv_heads, dh))
    v = (t["self_attn.v_proj.weight"] @ a).reshape(cfg.kv_heads, dh)
    K = np.concatenate([np.asarray(keys, np.float64).reshape(pos, cfg.kv_heads, dh), k[None]])
    V = np.concatenate([np.asarray(values, np.float64).reshape(pos, cfg.kv_heads, dh), v[None]])
    o = np.zeros((cfg.heads, dh))
    for i in range(cfg.heads):
        s = K[:, i // G] @ q[i] / np.sqrt(dh)
        p = np.exp(s - s.max())
        o[i] = (p / p.sum()) @ V[:, i // G]
    h = x + t["self_attn.o_proj.weight"] @ o.reshape(-1)
    a = norm(h, t["post_attention_layernorm.weight"])
    g = t["mlp.gate_proj.weight"] @ a
    return h + t["mlp.down_proj.weight"] @ (g / (1 + np.exp(-g)) * (t["mlp.up_proj.weight"] @ a))


@pytest.mark.parametrize("grid, shape, pos", [
    ((6, 3), dict(heads=4, kv_heads=2, hidden=20, intermediate=34, head_dim=4), 7),   # heads padded 4 -> 6
    ((8, 2), dict(heads=8, kv_heads=2, hidden=16, intermediate=32, head_dim=8), 3),   # 4 columns a head
    ((4, 4), dict(heads=4, kv_heads=4, hidden=16, intermediate=24, head_dim=6), 0),   # the first position
    ((12, 9), dict(heads=6, kv_heads=3, hidden=30, intermediate=50, head_dim=8), 11),  # reductions in groups of 3
])
def test_a_layer_on_a_grid_wider_than_its_kv_heads(tmp_path, grid, shape, pos):
    """llama_step_wide on the layout wide_layer_inputs builds from a Hugging Face layer:
    bit-exact against its ordered reference, and equal within f32 rounding to a float64
    decode step written from the layer's own tensors (so the padding and reordering of
    heads and dimensions is checked against Hugging Face's layout)."""
    cfg = model(layers=1, vocab=8, **shape)
    path = checkpoint(tmp_path, cfg, "f32", seed=pos)
    _, tensors = llm.read_checkpoint(path)
    layer = {k[len("model.layers.0."):]: v for k, v in tensors.items() if k.startswith("model.layers.0.")}
    rng = np.random.default_rng(pos)
    x = rng.standard_normal(cfg.hidden).astype(np.float32)
    dkv = cfg.kv_heads * cfg.head_dim
    keys, values = (rng.standard_normal((pos, dkv)).astype(np.float32) for _ in range(2))
    layout = llm.WideLayout.for_grid(cfg, grid[0], grid[1], pos + 1)
    inputs, params = llm.wide_layer_inputs(cfg, layer, layout, x, keys, values, pos)
    result = tilegrid.run_kernel("llama_step_wide", inputs, grid=grid, params=params, check=True)
    assert result.check.ok, result.check.summary()
    y = result.outputs["y"][0]
    assert not y[cfg.hidden:].any()           # the padding stays zero
    want = hf_decode_step64(layer, cfg, x, keys, values, pos)
    np.testing.assert_allclose(y[:cfg.hidden], want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
