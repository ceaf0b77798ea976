"""Language models on the fabric: Hugging Face-style Llama checkpoints, greedy
generation with kernels/llama_generate.tg, and the modeled time beside the
bandwidth bound of a GPU that streams the weights from HBM for every token.

A checkpoint directory holds config.json and model.safetensors (or shards
model-*.safetensors). The semantics are those of LlamaForCausalLM: Linear
weights [out, in] (transposed here to the kernels' [in, out]), rotate-half RoPE
with inv_freq = 1 / rope_theta^(2i / head_dim), K/V heads repeated for GQA, and
tie_word_embeddings honoured.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tilegrid import kernels
from tilegrid.compiler.driver import compile_source
from tilegrid.emulator.config import MachineConfig
from tilegrid.emulator.machine import HALF_TYPES

from .api import read_source, run_program_checked
from .errors import UserError

CONFIG_KEYS = ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads",
               "num_hidden_layers", "vocab_size", "rms_norm_eps", "rope_theta")
# the kernel's name for each layer weight, its Hugging Face name, and whether it is a Linear ([out, in])
LAYER_TENSORS = (("attn_norm", "input_layernorm.weight", False), ("wq", "self_attn.q_proj.weight", True),
                 ("wk", "self_attn.k_proj.weight", True), ("wv", "self_attn.v_proj.weight", True),
                 ("wo", "self_attn.o_proj.weight", True), ("mlp_norm", "post_attention_layernorm.weight", False),
                 ("w_gate", "mlp.gate_proj.weight", True), ("w_up", "mlp.up_proj.weight", True),
                 ("w_down", "mlp.down_proj.weight", True))
# the inputs a half-precision run stores as halves: the layers' matrices and the embedding table.
# (The LM head stays f32: each use widens a half tensor whole, and a widened copy of the
# head beside its halves would take more SRAM than the f32 head.)
HALF_INPUTS = ("embed", "wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")
DTYPES = ("f32", "bf16", "f16")
DEFAULT_GPU_BANDWIDTH = 3.35e12   # bytes/s: one H100 SXM's HBM3, the usual figure for a decode bound


@dataclass(frozen=True)
class LlamaConfig:
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    layers: int
    vocab: int
    eps: float
    theta: float
    head_dim: int
    tied: bool

    @classmethod
    def from_json(cls, data: dict, where: str = "config.json") -> "LlamaConfig":
        missing = [k for k in CONFIG_KEYS if k not in data]
        if missing:
            raise UserError(f"{where}: missing {', '.join(missing)}")
        try:
            ints = {k: int(data[k]) for k in CONFIG_KEYS[:6]}
            eps, theta = float(data["rms_norm_eps"]), float(data["rope_theta"])
        except (TypeError, ValueError):
            raise UserError(f"{where}: the sizes must be integers and rms_norm_eps, rope_theta numbers") from None
        if min(ints.values()) < 1:
            raise UserError(f"{where}: every size must be at least 1")
        heads, kv_heads = ints["num_attention_heads"], ints["num_key_value_heads"]
        if heads % kv_heads:
            raise UserError(f"{where}: num_key_value_heads ({kv_heads}) must divide num_attention_heads ({heads})")
        head_dim = int(data.get("head_dim") or ints["hidden_size"] // heads)
        if data.get("attention_bias") or data.get("mlp_bias"):
            raise UserError(f"{where}: attention_bias / mlp_bias: Llama layers with biases are not modeled")
        return cls(ints["hidden_size"], ints["intermediate_size"], heads, kv_heads, ints["num_hidden_layers"],
                   ints["vocab_size"], eps, theta, head_dim, bool(data.get("tie_word_embeddings", False)))

    def to_json(self) -> dict:
        return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": self.hidden,
                "intermediate_size": self.intermediate, "num_attention_heads": self.heads,
                "num_key_value_heads": self.kv_heads, "num_hidden_layers": self.layers, "vocab_size": self.vocab,
                "rms_norm_eps": self.eps, "rope_theta": self.theta, "head_dim": self.head_dim,
                "tie_word_embeddings": self.tied}

    def hf_shapes(self) -> dict:
        """Every tensor a checkpoint must hold: {Hugging Face name: shape}."""
        dm, dq, dkv, dff = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate
        per_layer = {"input_layernorm.weight": (dm,), "self_attn.q_proj.weight": (dq, dm),
                     "self_attn.k_proj.weight": (dkv, dm), "self_attn.v_proj.weight": (dkv, dm),
                     "self_attn.o_proj.weight": (dm, dq), "post_attention_layernorm.weight": (dm,),
                     "mlp.gate_proj.weight": (dff, dm), "mlp.up_proj.weight": (dff, dm),
                     "mlp.down_proj.weight": (dm, dff)}
        shapes = {"model.embed_tokens.weight": (self.vocab, dm), "model.norm.weight": (dm,)}
        for l in range(self.layers):
            shapes.update({f"model.layers.{l}.{n}": s for n, s in per_layer.items()})
        if not self.tied:
            shapes["lm_head.weight"] = (self.vocab, dm)
        return shapes

    def weight_count(self) -> int:
        """Parameters a decode step reads: every layer and the LM head (the embedding
        lookup reads one row)."""
        shapes = self.hf_shapes()
        head = shapes.get("lm_head.weight", (self.vocab, self.hidden))
        return sum(math.prod(s) for n, s in shapes.items() if n.startswith("model.layers.")) + math.prod(head)


def read_checkpoint(directory) -> tuple[LlamaConfig, dict]:
    """(config, {Hugging Face name: float32 array}) from a checkpoint directory."""
    from safetensors import SafetensorError, safe_open  # noqa: PLC0415  (only `generate` needs it)

    d = Path(directory)
    if not d.is_dir():
        raise UserError(f"checkpoint '{d}': not a directory")
    cfg_path = d / "config.json"
    try:
        data = json.loads(cfg_path.read_text())
    except FileNotFoundError:
        raise UserError(f"checkpoint '{d}': no config.json") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{cfg_path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{cfg_path}: expected a JSON object")
    config = LlamaConfig.from_json(data, str(cfg_path))
    files = sorted(d.glob("model*.safetensors"))
    if not files:
        raise UserError(f"checkpoint '{d}': no model.safetensors")
    found, dtypes = {}, {}
    for f in files:
        try:
            with safe_open(str(f), framework="np") as st:
                for name in st.keys():
                    found[name] = (f, st.get_slice(name).get_shape())
                    dtypes[name] = st.get_slice(name).get_dtype()
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(f"{f}: not a readable safetensors file ({exc})") from None
    tensors = {}
    for name, shape in config.hf_shapes().items():
        if name not in found:
            near = [n for n in found if n.split(".")[-2:] == name.split(".")[-2:]]
            hint = f" (found {near[0]})" if near else ""
            raise UserError(f"checkpoint '{d}': missing tensor '{name}'{hint}")
        if tuple(found[name][1]) != shape:
            raise UserError(f"checkpoint '{d}': tensor '{name}' has shape {tuple(found[name][1])}, "
                            f"config.json says {shape}")
        if dtypes[name] not in ("F32", "BF16", "F16"):
            raise UserError(f"checkpoint '{d}': tensor '{name}' is {dtypes[name]}; F32, BF16 and F16 are read")
    by_file: dict = {}
    for name in config.hf_shapes():
        by_file.setdefault(found[name][0], []).append(name)
    for f, names in by_file.items():
        with safe_open(str(f), framework="np") as st:
            for name in names:
                tensors[name] = np.asarray(st.get_tensor(name)).astype(np.float32)
    tensors["%dtype"] = sorted({dtypes[n] for n in config.hf_shapes()})
    return config, tensors


def write_checkpoint(directory, config: LlamaConfig, rng: np.random.Generator, dtype: str = "bf16") -> Path:
    """A random Llama checkpoint (weights scaled like an initialised model), for
    tests and the demo: config.json and model.safetensors in dtype."""
    from safetensors.numpy import save_file  # noqa: PLC0415

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    np_type = np.float32 if dtype == "f32" else HALF_TYPES[dtype]
    tensors = {}
    for name, shape in config.hf_shapes().items():
        if name.endswith("norm.weight"):
            value = 1 + 0.1 * rng.standard_normal(shape)
        elif name == "model.embed_tokens.weight":
            value = rng.standard_normal(shape)
        else:
            value = rng.standard_normal(shape) / np.sqrt(shape[-1])
        tensors[name] = np.ascontiguousarray(value.astype(np.float32).astype(np_type))
    (d / "config.json").write_text(json.dumps({**config.to_json(), "torch_dtype": {
        "f32": "float32", "bf16": "bfloat16", "f16": "float16"}[dtype]}, indent=2) + "\n")
    save_file(tensors, str(d / "model.safetensors"))
    return d


def rope_tables(positions: int, head_dim: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    return kernels.llama_layers_ref.rope_tables(positions, head_dim, theta)


def kernel_inputs(config: LlamaConfig, tensors: dict, prompt: list[int], positions: int) -> dict:
    """The inputs of kernels/llama_generate.tg: layer weights stacked [L, ...] and [in, out]."""
    out = {}
    for ours, hf, linear in LAYER_TENSORS:
        layers = [tensors[f"model.layers.{l}.{hf}"] for l in range(config.layers)]
        out[ours] = np.ascontiguousarray(np.stack([w.T if linear else w for w in layers]), np.float32)
    embed = tensors["model.embed_tokens.weight"]
    head = embed if config.tied else tensors["lm_head.weight"]
    cos, sin = rope_tables(positions, config.head_dim, config.theta)
    out.update(prompt=np.asarray(prompt, np.float32)[None], embed=embed, final_norm=tensors["model.norm.weight"],
               lm_head=np.ascontiguousarray(head.T), idx=np.arange(config.vocab, dtype=np.float32)[None],
               cos=cos, sin=sin)
    return out


def check_fits(config: LlamaConfig, width: int, height: int) -> None:
    """The model's shapes against the grid, with the checkpoint's names (before the
    compiler's rules, which name the kernel's)."""
    rules = [(config.kv_heads % width == 0, f"num_key_value_heads ({config.kv_heads}) must be a multiple of "
              f"the grid's width ({width}): each tile column holds whole key-value heads"),
             (config.head_dim % 2 == 0, f"head_dim ({config.head_dim}) must be even (rotate-half RoPE)"),
             (config.hidden % height == 0, f"hidden_size ({config.hidden}) must be a multiple of the grid's "
              f"height ({height})"),
             (config.intermediate % width == 0 and config.intermediate % height == 0,
              f"intermediate_size ({config.intermediate}) must be a multiple of the grid's width and height "
              f"({width}, {height})"),
             (config.vocab % width == 0, f"vocab_size ({config.vocab}) must be a multiple of the grid's width "
              f"({width}): the logits are split over the tile columns")]
    for ok, message in rules:
        if not ok:
            raise UserError(f"the model does not fit a {width}x{height} grid: {message}")


@dataclass
class Generation:
    prompt: list
    generated: list
    modeled: dict
    sram: dict
    check: object = None          # the CheckReport, with --check
    logits: np.ndarray | None = field(default=None, repr=False)
    stats: object = field(default=None, repr=False)
    program: object = field(default=None, repr=False)

    def to_json(self) -> dict:
        out = {"prompt": self.prompt, "generated": self.generated, "modeled": self.modeled, "sram": self.sram}
        if self.check is not None:
            out["check"] = {"bit_exact": bool(self.check.bit_exact), "within_bound": bool(self.check.within_bound)}
        return out


def generation_source(dtype: str) -> tuple[str, str]:
    """llama_generate.tg's source, with the HALF_INPUTS typed dtype for a half run."""
    source, path = read_source("llama_generate")
    if dtype != "f32":
        for name in HALF_INPUTS:
            decl = f"{name}: f32["
            if decl not in source:
                raise AssertionError(f"llama_generate.tg no longer declares '{decl}'")
            source = source.replace(decl, f"{name}: {dtype}[", 1)
    return source, path


def generate(checkpoint, prompt: list[int], tokens: int, config: MachineConfig, dtype: str | None = None,
             context: int | None = None, check: bool = False, gpu_bandwidth: float = DEFAULT_GPU_BANDWIDTH,
             run=None) -> Generation:
    """Greedy generation of `tokens` tokens after `prompt` on the emulated grid.
    dtype: how the fabric holds the weights (default: the checkpoint's type);
    context: the cache's positions (default: just enough); run(program, inputs,
    params, check) -> RunResult runs the program (default: run_program_checked)."""
    model, tensors = read_checkpoint(checkpoint)
    stored = tensors.pop("%dtype")
    if dtype is None:  # the checkpoint's own type (f32 if its tensors mix types)
        dtype = {("BF16",): "bf16", ("F16",): "f16"}.get(tuple(stored), "f32")
    if dtype not in DTYPES:
        raise UserError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if not prompt:
        raise UserError("--prompt-ids needs at least one token id")
    bad = [t for t in prompt if not 0 <= t < model.vocab]
    if bad:
        raise UserError(f"--prompt-ids: token id {bad[0]} is outside the vocabulary (0 .. {model.vocab - 1})")
    if tokens < 1:
        raise UserError(f"--tokens must be at least 1, got {tokens}")
    W, H = config.width, config.height
    check_fits(model, W, H)
    need = len(prompt) + tokens - 1
    positions = context if context is not None else need
    if positions < need:
        raise UserError(f"--context {positions}: the prompt and the generated tokens need {need} positions")
    positions = -(-positions // H) * H  # the cache's positions are split over the tile rows
    inputs = kernel_inputs(model, tensors, prompt, positions)
    params = {"T": tokens, "heads": model.heads, "kv_heads": model.kv_heads, "eps": model.eps}
    source, path = generation_source(dtype)
    compiled = compile_source(source, path, config, {k: v.shape for k, v in inputs.items()}, params)
    result = (run or run_program_checked)(compiled.program, inputs, params, check)
    out = result.outputs
    generated = [int(t) for t in out["tokens"][0]]
    modeled = modeled_time(result.stats, model, tokens, dtype, positions, gpu_bandwidth)
    return Generation(list(prompt), generated, modeled, sram_budget(compiled.program), result.check,
                      out["logits"], result.stats, compiled.program)


def _phase(stats, text: str) -> list:
    return [p for p in stats.phases if text in p["name"]]


def modeled_time(stats, model: LlamaConfig, tokens: int, dtype: str, positions: int,
                 gpu_bandwidth: float) -> dict:
    """Time to first token and per decode token from the run's phases, a per-layer
    breakdown, and the GPU's bandwidth bound for the same model."""
    clock = stats.clock_mhz * 1e6
    decode = _phase(stats, "for t in 1 .. T")
    if decode and tokens > 1:
        first, last = decode[0]["first_cycle"], decode[0]["last_cycle"]
        ttft, per_token = first, (last - first) / (tokens - 1)
    else:
        ttft, per_token = stats.cycles, None

    def busy(phases):  # the time the tiles spent in these statements, averaged over tiles
        return sum(p["compute"] + p["blocked"] + p["scalar"] for p in phases) / stats.tiles
    steps = max(tokens - 1, 1)
    layer_decode = busy(_phase(stats, "h = llama_step(")) / (steps * model.layers) if tokens > 1 else None
    layer_prefill = busy(_phase(stats, "x = llama_step(")) / model.layers
    weight_bytes = model.weight_count() * (4 if dtype == "f32" else 2)
    # a GPU also reads the KV cache once per token: 2 L ctx kv_heads head_dim values
    cache_bytes = 2 * model.layers * positions * model.kv_heads * model.head_dim * (4 if dtype == "f32" else 2)
    gpu_seconds = (weight_bytes + cache_bytes) / gpu_bandwidth
    out = {"clock_mhz": stats.clock_mhz, "time_to_first_token_cycles": int(ttft),
           "time_to_first_token_s": ttft / clock,
           "cycles_per_token": per_token, "seconds_per_token": None if per_token is None else per_token / clock,
           "tokens_per_second": None if per_token is None else clock / per_token,
           "per_layer": {"prefill_cycles": layer_prefill, "decode_cycles": layer_decode,
                         "layers": model.layers},
           "total_cycles": stats.cycles,
           "gpu_bound": {"bandwidth_bytes_per_s": gpu_bandwidth, "weight_bytes": weight_bytes,
                         "kv_cache_bytes": cache_bytes, "seconds_per_token": gpu_seconds,
                         "tokens_per_second": 1.0 / gpu_seconds}}
    return out


def sram_budget(program) -> dict:
    """Bytes per tile: weights, KV cache, tables, activations (the rest of the plan) and code."""
    wb = program.config.word_bytes
    weights = {"embed", "lm_head", "final_norm", *(n for n, _, _ in LAYER_TENSORS)}
    own = {}
    for b in program.buffers:
        kind = ("weights" if b.name in weights else "kv_cache" if b.name in ("Kc", "Vc")
                else "tables" if b.name in ("cos", "sin", "idx", "prompt") else None)
        if kind is not None:
            own[kind] = own.get(kind, 0) + b.words * wb
    data = program.sram_words * wb
    own["activations"] = data - sum(own.values())
    own["code"] = program.code_bytes()
    own["total"] = data + own["code"]
    own["capacity"] = program.config.sram_bytes
    return own


def describe(gen: Generation, model_name: str = "") -> str:
    """The run in words: tokens, modeled time, the GPU bound, SRAM per tile."""
    m, g, s = gen.modeled, gen.modeled["gpu_bound"], gen.sram
    lines = [f"prompt: {gen.prompt}", f"generated: {gen.generated}"]
    lines.append(f"modeled at {m['clock_mhz']} MHz: time to first token {m['time_to_first_token_cycles']:,} cycles "
                 f"= {m['time_to_first_token_s'] * 1e6:.1f} us")
    if m["cycles_per_token"] is not None:
        layer = m["per_layer"]
        lines.append(f"  decode: {m['cycles_per_token']:,.0f} cycles per token = {m['seconds_per_token'] * 1e6:.2f} us, "
                     f"{m['tokens_per_second']:,.0f} tokens/s (one request)")
        lines.append(f"  per layer: {layer['decode_cycles']:,.0f} cycles a decode step, "
                     f"{layer['prefill_cycles']:,.0f} for the prompt ({layer['layers']} layers)")
    lines.append(f"a GPU streaming the weights ({g['weight_bytes'] / 1e6:.3g} MB) and the KV cache "
                 f"({g['kv_cache_bytes'] / 1e6:.3g} MB) from HBM at {g['bandwidth_bytes_per_s'] / 1e12:.3g} TB/s: "
                 f"at most {g['tokens_per_second']:,.0f} tokens/s"
                 + (f"; the wafer's modeled rate is {m['tokens_per_second'] / g['tokens_per_second']:.2g}x that"
                    if m["tokens_per_second"] else ""))
    kib = {k: v / 1024 for k, v in s.items()}
    lines.append(f"SRAM per tile: {kib['total']:.1f} of {kib['capacity']:.0f} KiB (weights {kib.get('weights', 0):.1f}, "
                 f"KV cache {kib.get('kv_cache', 0):.1f}, tables {kib.get('tables', 0):.1f}, "
                 f"activations {kib['activations']:.1f}, code {kib['code']:.1f})")
    return "\n".join(lines)


__all__ = ["LlamaConfig", "Generation", "read_checkpoint", "write_checkpoint", "kernel_inputs", "generate",
           "describe", "modeled_time", "DEFAULT_GPU_BANDWIDTH"]


# ------------------------------------------------------------ grids wider than kv_heads
@dataclass(frozen=True)
class WideLayout:
    """How kernels/llama_step_wide.tg lays a layer out on a W x H grid with W a
    multiple of kv_heads: tph = W / kv_heads tile columns a head, c of its
    dimensions a tile (c / 2 of the first half and their partners), every size
    padded with zeros to split evenly into blocks of an even width."""
    width: int
    height: int
    tph: int
    c: int
    head_pad: int      # a head's dimensions, padded: tph * c
    hidden_pad: int
    inter_pad: int
    positions: int

    @classmethod
    def for_grid(cls, model: LlamaConfig, width: int, height: int, positions: int) -> "WideLayout":
        if width % model.kv_heads:
            raise UserError(f"the wide layout puts each of the {model.kv_heads} key-value heads on "
                            f"{width} / {model.kv_heads} tile columns: the width must be a multiple of kv_heads")
        if model.head_dim % 2:
            raise UserError(f"head_dim ({model.head_dim}) must be even (rotate-half RoPE)")
        tph = width // model.kv_heads
        c = 2 * -(-(model.head_dim // 2) // tph)
        # blocks of an even width, so that bf16 weights pack two a word
        rows, both = 2 * height, 2 * width * height // math.gcd(width, height)
        return cls(width, height, tph, c, tph * c, -(-model.hidden // rows) * rows,
                   -(-model.intermediate // both) * both, -(-positions // height) * height)

    def head_order(self, head_dim: int) -> np.ndarray:
        """For each padded slot of a head, the original dimension it holds (-1: padding):
        tile m of the head holds firsts m c / 2 .. and their partners + head_dim / 2."""
        half, order = self.c // 2, []
        for m in range(self.tph):
            firsts = [m * half + e for e in range(half)]
            order += [i if i < head_dim // 2 else -1 for i in firsts]
            order += [i + head_dim // 2 if i < head_dim // 2 else -1 for i in firsts]
        return np.array(order)


def _pad(a: np.ndarray, shape: tuple) -> np.ndarray:
    out = np.zeros(shape, np.float32)
    out[tuple(slice(0, n) for n in a.shape)] = a
    return out


def wide_layer_inputs(model: LlamaConfig, layer: dict, layout: WideLayout, x: np.ndarray, keys: np.ndarray,
                      values: np.ndarray, pos: int, theta: float | None = None) -> tuple[dict, dict]:
    """(inputs, params) of llama_step_wide for one Hugging Face layer (names without the
    'model.layers.N.' prefix) and one token x [Dm] at position pos, with the cache of
    positions 0 .. pos - 1 as Hugging Face keeps it (keys after RoPE): [pos, kv_heads
    head_dim] each."""
    L = layout
    G, dh, kv = model.heads // model.kv_heads, model.head_dim, model.kv_heads
    order = L.head_order(dh)
    held = order >= 0
    dkv = kv * L.head_pad

    def columns(w_out_in: np.ndarray, head: int) -> np.ndarray:
        """The padded [Dm_pad, head_pad] block of one head from an [out, in] weight."""
        block = np.zeros((L.hidden_pad, L.head_pad), np.float32)
        block[:model.hidden, held] = w_out_in[head * dh + order[held], :].T
        return block

    wq = np.stack([np.concatenate([columns(layer["self_attn.q_proj.weight"], j * G + g) for j in range(kv)], axis=1)
                   for g in range(G)])
    wk = np.concatenate([columns(layer["self_attn.k_proj.weight"], j) for j in range(kv)], axis=1)
    wv = np.concatenate([columns(layer["self_attn.v_proj.weight"], j) for j in range(kv)], axis=1)
    wo = np.stack([np.concatenate([columns(layer["self_attn.o_proj.weight"].T, j * G + g) for j in range(kv)],
                                  axis=1).T for g in range(G)])
    cache = []
    for t in (keys, values):
        c = np.zeros((L.positions, dkv), np.float32)
        for j in range(kv):
            c[:len(t), j * L.head_pad + np.nonzero(held)[0]] = t[:, j * dh + order[held]]
        cache.append(c)
    # each tile column's c / 2 angles: tile m of a head rotates its firsts m c / 2 ..
    inv_freq = np.float32(1.0) / (np.float32(theta or model.theta)
                                  ** (np.arange(0, dh, 2, dtype=np.float32) / np.float32(dh)))
    firsts = order[:: 1].reshape(L.tph, L.c)[:, :L.c // 2].reshape(-1)   # per slot of the first halves
    freqs = np.where(firsts >= 0, inv_freq[np.maximum(firsts, 0)], 0).astype(np.float32)
    angle = np.arange(L.positions, dtype=np.float32)[:, None] * np.tile(freqs, kv)[None, :]
    inputs = {"x": _pad(x[None], (1, L.hidden_pad)),
              "attn_norm": _pad(layer["input_layernorm.weight"], (L.hidden_pad,)),
              "wq": wq, "wk": wk, "wv": wv, "wo": wo,
              "mlp_norm": _pad(layer["post_attention_layernorm.weight"], (L.hidden_pad,)),
              "w_gate": _pad(layer["mlp.gate_proj.weight"].T, (L.hidden_pad, L.inter_pad)),
              "w_up": _pad(layer["mlp.up_proj.weight"].T, (L.hidden_pad, L.inter_pad)),
              "w_down": _pad(layer["mlp.down_proj.weight"].T, (L.inter_pad, L.hidden_pad)),
              "Kc": cache[0], "Vc": cache[1],
              "cos": np.cos(angle).astype(np.float32), "sin": np.sin(angle).astype(np.float32)}
    params = {"pos": pos, "kv_heads": kv, "head_dim": dh, "hidden": model.hidden, "eps": model.eps}
    return inputs, params


def unpad_hidden(y: np.ndarray, model: LlamaConfig) -> np.ndarray:
    return y[..., :model.hidden]
