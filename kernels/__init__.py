"""The bundled kernels: DSL sources, ordered references, float64 ground truths."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from . import (attention_ref, block_pipelined_ref, gemv_ref, ground_truth, layernorm_ref, llama_generate_ref,
               llama_layers_ref, matmul_cannon_ref, matmul_ref, matmul_systolic_ref, mlp_ref, softmax_ref, transformer_block_ref)

KERNEL_DIR = Path(__file__).parent


@dataclass(frozen=True)
class KernelSpec:
    name: str
    reference: Callable       # (inputs, params, grid) -> {output: float32 array}, bit-exact
    ground_truth: Callable    # (inputs, params) -> ({output: float64}, {output: error bound})
    make_inputs: Callable     # (rng, sizes) -> {input: float32 array}
    demo_sizes: dict          # sizes for `tilegrid demo` and quick runs

    @property
    def path(self) -> Path:
        return KERNEL_DIR / f"{self.name}.tg"

    def interface(self) -> tuple[tuple, tuple]:
        """((name, dims) of each tensor input, (name, dims) of each output) of the
        bundled source: what the reference takes and returns. dims holds each
        dimension's size name as declared ('M'), or None for an expression."""
        return _interface(self.name)


@lru_cache(maxsize=None)
def _interface(name: str) -> tuple[tuple, tuple]:
    from tilegrid.compiler import ast
    from tilegrid.compiler.parser import parse

    path = KERNEL_DIR / f"{name}.tg"
    kernel = next(k for k in parse(path.read_text(), str(path)).kernels if k.name == name)

    def dims(decl):
        return tuple(d.id if isinstance(d, ast.Name) else None for d in decl.type.shape)
    inputs = tuple((p.name, dims(p)) for p in kernel.params if isinstance(p, ast.TensorDecl))
    return inputs, tuple((o.name, dims(o)) for o in kernel.outputs)


def _randn(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _resident_inputs(rng, s):
    """Random operands already in matmul_systolic_resident's layout (its slots hold A
    rows and B columns; which rows and columns depends on the grid, and the
    reference reads them back by the same rule). The demo sizes, on 4x4 tiles, are
    K = 32 with one slot per tile (Ar [H, W K], Bc [H K, W]): M, N up to 16."""
    return {"Ar": _randn(rng, s["AR"], s["AK"]), "Bc": _randn(rng, s["BK"], s["BC"])}


def _mlp_inputs(rng, s):
    dm, dff = s["Dm"], s["Dff"]
    return {"X": _randn(rng, s["S"], dm), "w1": _randn(rng, dm, dff, scale=dm ** -0.5),
            "b1": _randn(rng, dff, scale=0.1), "w2": _randn(rng, dff, dm, scale=dff ** -0.5),
            "b2": _randn(rng, dm, scale=0.1)}


def _block_inputs(rng, s):
    dm = s["Dm"]
    weights = {w: _randn(rng, dm, dm, scale=dm ** -0.5) for w in ("wq", "wk", "wv", "wo")}
    mlp = _mlp_inputs(rng, s)
    return {"x": _randn(rng, s["S"], dm),
            "ln1_g": 1 + _randn(rng, dm, scale=0.1), "ln1_b": _randn(rng, dm, scale=0.1),
            **weights,
            "ln2_g": 1 + _randn(rng, dm, scale=0.1), "ln2_b": _randn(rng, dm, scale=0.1),
            **{n: mlp[n] for n in ("w1", "b1", "w2", "b2")}}


def _swiglu_inputs(rng, s):
    dm, dff = s["Dm"], s["Dff"]
    return {"X": _randn(rng, s["S"], dm), "w_gate": _randn(rng, dm, dff, scale=dm ** -0.5),
            "w_up": _randn(rng, dm, dff, scale=dm ** -0.5), "w_down": _randn(rng, dff, dm, scale=dff ** -0.5)}


def _rope_inputs(rng, s):
    cos, sin = llama_layers_ref.rope_tables(s["P"], s["D"])
    return {"X": _randn(rng, s["R"], s["D"]), "cos": cos, "sin": sin}


def _llama_inputs(rng, s):
    """One layer's weights, [in, out], for heads of width Dh: Dq = heads Dh, Dkv = kv_heads Dh."""
    dm, dff, dh, dq, dkv = s["Dm"], s["Dff"], s["Dh"], s["Dq"], s["Dkv"]
    cos, sin = llama_layers_ref.rope_tables(s["S"], dh)  # the prompt's positions 0 .. S - 1
    return {"x": _randn(rng, s["S"], dm), "attn_norm": 1 + _randn(rng, dm, scale=0.1),
            "wq": _randn(rng, dm, dq, scale=dm ** -0.5), "wk": _randn(rng, dm, dkv, scale=dm ** -0.5),
            "wv": _randn(rng, dm, dkv, scale=dm ** -0.5), "wo": _randn(rng, dq, dm, scale=dq ** -0.5),
            "cos": cos, "sin": sin, "mlp_norm": 1 + _randn(rng, dm, scale=0.1),
            "w_gate": _randn(rng, dm, dff, scale=dm ** -0.5), "w_up": _randn(rng, dm, dff, scale=dm ** -0.5),
            "w_down": _randn(rng, dff, dm, scale=dff ** -0.5)}


def _llama_model_inputs(rng, s):
    """L layers' weights stacked [L, ...], the prompt's rotary tables and the final norm."""
    layers = [_llama_inputs(rng, s) for _ in range(s["L"])]
    out = {n: np.stack([w[n] for w in layers]) for n in llama_layers_ref.LAYER_WEIGHTS}
    out.update(x=layers[0]["x"], cos=layers[0]["cos"], sin=layers[0]["sin"],
               final_norm=1 + _randn(rng, s["Dm"], scale=0.1))
    return out


def _llama_stack(rng, s):
    """L layers' weights for llama_step's layouts, [in, out], stacked [L, ...]."""
    dm, dff, dq, dkv, n = s["Dm"], s["Dff"], s["Dq"], s["Dkv"], s["L"]
    return {"attn_norm": 1 + _randn(rng, n, dm, scale=0.1), "wq": _randn(rng, n, dm, dq, scale=dm ** -0.5),
            "wk": _randn(rng, n, dm, dkv, scale=dm ** -0.5), "wv": _randn(rng, n, dm, dkv, scale=dm ** -0.5),
            "wo": _randn(rng, n, dq, dm, scale=dq ** -0.5), "mlp_norm": 1 + _randn(rng, n, dm, scale=0.1),
            "w_gate": _randn(rng, n, dm, dff, scale=dm ** -0.5), "w_up": _randn(rng, n, dm, dff, scale=dm ** -0.5),
            "w_down": _randn(rng, n, dff, dm, scale=dff ** -0.5)}


def _llama_step_inputs(rng, s):
    """One layer, R new rows, and a cache of P positions holding earlier keys and values."""
    cos, sin = llama_layers_ref.rope_tables(s["P"], s["Dh"])
    layer = {n: w[0] for n, w in _llama_stack(rng, {**s, "L": 1}).items()}
    return {"x": _randn(rng, s["R"], s["Dm"]), **layer, "Kc": _randn(rng, s["P"], s["Dkv"]),
            "Vc": _randn(rng, s["P"], s["Dkv"]), "cos": cos, "sin": sin}


def _llama_generate_inputs(rng, s):
    """A random model of L layers, a prompt of S token ids, rotary tables of P positions."""
    cos, sin = llama_layers_ref.rope_tables(s["P"], s["Dh"])
    vocab, dm = s["V"], s["Dm"]
    return {"prompt": rng.integers(0, vocab, (1, s["S"])).astype(np.float32),
            "embed": _randn(rng, vocab, dm), **_llama_stack(rng, s),
            "final_norm": 1 + _randn(rng, dm, scale=0.1), "lm_head": _randn(rng, dm, vocab, scale=dm ** -0.5),
            "idx": np.arange(vocab, dtype=np.float32)[None], "cos": cos, "sin": sin}


def _llama_step_wide_inputs(rng, s):
    """One decode step's layer in llama_step_wide's layout (random: the kernel's rules
    hold for any values), with a cache of P positions and rotary tables."""
    dm, dkv, dff, g, P = s["Dm"], s["Dkv"], s["Dff"], s["G"], s["P"]
    angles = rng.uniform(0, 2 * np.pi, (P, dkv // 2))
    return {"x": _randn(rng, 1, dm), "attn_norm": 1 + _randn(rng, dm, scale=0.1),
            "wq": _randn(rng, g, dm, dkv, scale=dm ** -0.5), "wk": _randn(rng, dm, dkv, scale=dm ** -0.5),
            "wv": _randn(rng, dm, dkv, scale=dm ** -0.5), "wo": _randn(rng, g, dkv, dm, scale=(g * dkv) ** -0.5),
            "mlp_norm": 1 + _randn(rng, dm, scale=0.1), "w_gate": _randn(rng, dm, dff, scale=dm ** -0.5),
            "w_up": _randn(rng, dm, dff, scale=dm ** -0.5), "w_down": _randn(rng, dff, dm, scale=dff ** -0.5),
            "Kc": _randn(rng, P, dkv), "Vc": _randn(rng, P, dkv),
            "cos": np.cos(angles).astype(np.float32), "sin": np.sin(angles).astype(np.float32)}


def _batch_inputs(rng, s, suffixes=("",)):
    """A batch of B sequences x [B, S, Dm] and one block's weights per suffix ('_a', '_b')."""
    out = {"x": _randn(rng, s["B"], s["S"], s["Dm"])}
    for suffix in suffixes:
        weights = _block_inputs(rng, s)
        out.update({f"{n}{suffix}": v for n, v in weights.items() if n != "x"})
    return out


BUNDLED = {
    "matmul": KernelSpec("matmul", matmul_ref.reference, ground_truth.matmul,
                         lambda rng, s: {"A": _randn(rng, s["M"], s["K"]), "B": _randn(rng, s["K"], s["N"])},
                         {"M": 64, "K": 64, "N": 64}),
    "gemv": KernelSpec("gemv", gemv_ref.reference, ground_truth.gemv,
                       lambda rng, s: {"A": _randn(rng, s["M"], s["N"]), "x": _randn(rng, s["N"])},
                       {"M": 64, "N": 64}),
    "matmul_cannon": KernelSpec("matmul_cannon", matmul_cannon_ref.reference, ground_truth.matmul_cannon,
                                lambda rng, s: {"A": _randn(rng, s["M"], s["K"]),
                                                "B": _randn(rng, s["K"], s["N"])},
                                {"M": 64, "K": 64, "N": 64}),
    "matmul_systolic": KernelSpec("matmul_systolic", matmul_systolic_ref.reference,
                                  ground_truth.matmul_systolic,
                                  lambda rng, s: {"A": _randn(rng, s["M"], s["K"]),
                                                  "B": _randn(rng, s["K"], s["N"])},
                                  {"M": 32, "K": 32, "N": 32}),
    "matmul_systolic_resident": KernelSpec("matmul_systolic_resident", matmul_systolic_ref.resident_reference,
                                           ground_truth.matmul_systolic_resident, _resident_inputs,
                                           {"AR": 4, "AK": 128, "BK": 128, "BC": 4}),
    "softmax": KernelSpec("softmax", softmax_ref.reference, ground_truth.softmax,
                          lambda rng, s: {"X": _randn(rng, s["R"], s["C"]) * 4}, {"R": 64, "C": 64}),
    "layernorm": KernelSpec("layernorm", layernorm_ref.reference, ground_truth.layernorm,
                            lambda rng, s: {"X": _randn(rng, s["R"], s["C"]) + 1,
                                            "gamma": _randn(rng, s["C"]), "beta": _randn(rng, s["C"])},
                            {"R": 64, "C": 64}),
    "attention": KernelSpec("attention", attention_ref.reference, ground_truth.attention,
                            lambda rng, s: {n: _randn(rng, s["S"], s["D"]) for n in ("Q", "K", "V")},
                            {"S": 64, "D": 32}),
    "mlp": KernelSpec("mlp", mlp_ref.reference, ground_truth.mlp, _mlp_inputs,
                      {"S": 64, "Dm": 128, "Dff": 512}),
    "transformer_block": KernelSpec("transformer_block", transformer_block_ref.reference,
                                    ground_truth.transformer_block, _block_inputs,
                                    {"S": 64, "Dm": 128, "Dff": 512}),
    "rmsnorm": KernelSpec("rmsnorm", llama_layers_ref.rmsnorm, ground_truth.rmsnorm,
                          lambda rng, s: {"X": _randn(rng, s["R"], s["C"]), "g": 1 + _randn(rng, s["C"], scale=0.1)},
                          {"R": 64, "C": 64}),
    "swiglu": KernelSpec("swiglu", llama_layers_ref.swiglu, ground_truth.swiglu, _swiglu_inputs,
                         {"S": 64, "Dm": 128, "Dff": 256}),
    "rope": KernelSpec("rope", llama_layers_ref.rope, ground_truth.rope, _rope_inputs, {"R": 64, "D": 32, "P": 96}),
    "llama_layer": KernelSpec("llama_layer", llama_layers_ref.llama_layer, ground_truth.llama_layer, _llama_inputs,
                              {"S": 64, "Dm": 64, "Dh": 16, "Dq": 64, "Dkv": 32, "Dff": 128}),
    "llama_model": KernelSpec("llama_model", llama_layers_ref.llama_model, ground_truth.llama_model,
                              _llama_model_inputs, {"L": 2, "S": 32, "Dm": 32, "Dh": 8, "Dq": 32, "Dkv": 16,
                                                    "Dff": 64}),
    "argmax": KernelSpec("argmax", llama_layers_ref.argmax, ground_truth.argmax,
                         lambda rng, s: {"x": _randn(rng, 1, s["N"]) * 3,
                                         "idx": np.arange(s["N"], dtype=np.float32)[None]},
                         {"N": 256}),
    "llama_step": KernelSpec("llama_step", llama_generate_ref.step_reference, ground_truth.llama_step,
                             _llama_step_inputs, {"R": 1, "P": 32, "Dm": 64, "Dh": 8, "Dq": 64, "Dkv": 32,
                                                  "Dff": 128}),
    "llama_step_wide": KernelSpec("llama_step_wide", llama_generate_ref.llama_step_wide,
                                  ground_truth.llama_step_wide, _llama_step_wide_inputs,
                                  {"G": 2, "P": 32, "Dm": 64, "Dkv": 32, "A": 16, "Dff": 128}),
    "llama_generate": KernelSpec("llama_generate", llama_generate_ref.generate, ground_truth.llama_generate,
                                 _llama_generate_inputs, {"L": 2, "S": 8, "T": 8, "P": 16, "V": 64, "Dm": 64,
                                                          "Dh": 8, "Dq": 64, "Dkv": 32, "Dff": 96}),
    "block_pipelined": KernelSpec("block_pipelined", block_pipelined_ref.block_pipelined,
                                  ground_truth.block_pipelined, _batch_inputs,
                                  {"B": 4, "S": 32, "Dm": 64, "Dff": 128}),
    "two_blocks_pipelined": KernelSpec("two_blocks_pipelined", block_pipelined_ref.two_blocks_pipelined,
                                       ground_truth.two_blocks_pipelined,
                                       lambda rng, s: _batch_inputs(rng, s, ("_a", "_b")),
                                       {"B": 4, "S": 32, "Dm": 32, "Dff": 64}),
}


def source_path(name_or_path: str) -> Path:
    """A bundled kernel's name, or a path to a .tg file."""
    if name_or_path in BUNDLED:
        return BUNDLED[name_or_path].path
    return Path(name_or_path)


def spec_for(kernel_name: str) -> KernelSpec | None:
    """The reference for a kernel, matched by the kernel's name in its source:
    a user's edited copy of matmul.tg is still checked against matmul's reference."""
    return BUNDLED.get(kernel_name)
