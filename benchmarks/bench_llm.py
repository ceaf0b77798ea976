"""Emulated Llama generation against a float32 NumPy forward pass of the same model.

For each (model, grid): the emulator's wall time for the prompt's pass (prefill)
and per decode token, warm (numba compiled, the program compiled once), beside a
float32 NumPy forward pass of the same weights in the same process: the prompt in
one pass, then one token at a time against a NumPy KV cache. The ratios are
emulated / NumPy. The modeled figures (cycles, tokens/s at the machine's clock,
the GPU bound) come from the same runs.

The emulator's per-token time comes from two runs: T = 1 (prefill and the first
token) and T = 1 + k; per token = (wall(T = 1 + k) - wall(T = 1)) / k.

    python benchmarks/bench_llm.py                 # three models, on 4x4, 8x8 and 16x16
    python benchmarks/bench_llm.py --repeat 5 --json out.json
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np

from tilegrid import llm
from tilegrid.compiler.driver import compile_source
from tilegrid.emulator import Emulator
from tilegrid.emulator.config import MachineConfig

from bench_matmul import cpu_name  # noqa: E402

# (label, grid, config): heads split per tile column, so kv_heads is a multiple of the width
CASES = [
    ("tiny", (4, 4), dict(hidden=64, intermediate=96, heads=8, kv_heads=4, layers=2, vocab=64, head_dim=8)),
    ("small", (8, 8), dict(hidden=128, intermediate=192, heads=16, kv_heads=8, layers=2, vocab=128, head_dim=8)),
    ("medium", (16, 16), dict(hidden=256, intermediate=512, heads=32, kv_heads=16, layers=2, vocab=256,
                              head_dim=8)),
]
PROMPT, STEPS = 8, 8


def numpy_model(cfg: llm.LlamaConfig, inputs: dict):
    """(prefill(ids) -> logits, decode(id) -> logits): float32, BLAS products, a KV cache."""
    f = {k: np.asarray(v, np.float32) for k, v in inputs.items()}
    dh, group = cfg.head_dim, cfg.heads // cfg.kv_heads
    cache = [[None, None] for _ in range(cfg.layers)]

    def norm(x, g):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + np.float32(cfg.eps)) * g

    def rope(t, at):  # t [n, heads, dh]
        c, s = f["cos"][at][:, None, :], f["sin"][at][:, None, :]
        return t * c + np.concatenate([-t[..., dh // 2:], t[..., :dh // 2]], axis=-1) * s

    def forward(ids, start):
        n = len(ids)
        at = np.arange(start, start + n)
        x = f["embed"][ids]
        for l in range(cfg.layers):
            a = norm(x, f["attn_norm"][l])
            q = rope((a @ f["wq"][l]).reshape(n, cfg.heads, dh), at)
            k = rope((a @ f["wk"][l]).reshape(n, cfg.kv_heads, dh), at)
            v = (a @ f["wv"][l]).reshape(n, cfg.kv_heads, dh)
            K = k if start == 0 else np.concatenate([cache[l][0], k])
            V = v if start == 0 else np.concatenate([cache[l][1], v])
            cache[l] = [K, V]
            Kr, Vr = np.repeat(K, group, axis=1), np.repeat(V, group, axis=1)
            s = np.einsum("nhd,mhd->hnm", q, Kr) / np.float32(np.sqrt(dh))
            s = s + np.where(np.arange(len(K))[None, :] > at[:, None], -np.inf, 0).astype(np.float32)
            p = np.exp(s - s.max(axis=-1, keepdims=True))
            o = np.einsum("hnm,mhd->nhd", p / p.sum(axis=-1, keepdims=True), Vr).reshape(n, -1)
            h = x + o @ f["wo"][l]
            a = norm(h, f["mlp_norm"][l])
            g = a @ f["w_gate"][l]
            x = h + (g / (1 + np.exp(-g)) * (a @ f["w_up"][l])) @ f["w_down"][l]
        return norm(x[-1:], f["final_norm"]) @ f["lm_head"]

    return (lambda ids: forward(list(ids), 0)), (lambda pos, tok: forward([tok], pos))


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cases", default=",".join(c[0] for c in CASES))
    ap.add_argument("--json")
    args = ap.parse_args()
    print(f"CPU: {cpu_name()}; prompt {PROMPT} tokens, {STEPS} decode steps timed; best of {args.repeat}")
    head = (f"{'model':<8} {'grid':>6} {'params':>8} {'prefill emu':>12} {'numpy':>9} {'ratio':>7} "
            f"{'token emu':>10} {'numpy':>9} {'ratio':>7} {'cycles/token':>13} {'tokens/s':>10} {'GPU bound':>11}")
    print(head)
    rows = []
    for label, grid, shape in CASES:
        if label not in args.cases.split(","):
            continue
        cfg = llm.LlamaConfig(eps=1e-5, theta=10000.0, tied=False, **shape)
        machine = MachineConfig(width=grid[0], height=grid[1])
        with tempfile.TemporaryDirectory() as tmp:
            path = llm.write_checkpoint(tmp, cfg, np.random.default_rng(0), "f32")
            _, tensors = llm.read_checkpoint(path)
        tensors.pop("%dtype")
        prompt = [int(t) for t in np.random.default_rng(1).integers(0, cfg.vocab, PROMPT)]
        positions = -(-(PROMPT + STEPS) // grid[1]) * grid[1]
        inputs = llm.kernel_inputs(cfg, tensors, prompt, positions)
        source, kpath = llm.generation_source("f32")
        walls, stats = {}, {}
        for steps in (1, 1 + STEPS):
            params = {"T": steps, "heads": cfg.heads, "kv_heads": cfg.kv_heads, "eps": cfg.eps}
            program = compile_source(source, kpath, machine, {k: v.shape for k, v in inputs.items()}, params).program

            def run():
                emu = Emulator(program)
                emu.load_inputs(inputs)
                return emu.run(), emu.read_outputs()
            run()  # warm
            walls[steps], (stats[steps], outputs) = best(run, args.repeat)
        modeled = llm.modeled_time(stats[1 + STEPS], cfg, 1 + STEPS, "f32", positions, llm.DEFAULT_GPU_BANDWIDTH)
        prefill, decode = numpy_model(cfg, inputs)
        np_prefill, logits = best(lambda: prefill(prompt), args.repeat)
        tokens = [int(t) for t in outputs["tokens"][0]]

        def numpy_steps():
            prefill(prompt)
            for i, tok in enumerate(tokens[:-1]):
                decode(PROMPT + i, tok)
        np_all, _ = best(numpy_steps, args.repeat)
        np_token = (np_all - np_prefill) / STEPS
        emu_token = (walls[1 + STEPS] - walls[1]) / STEPS
        params_count = cfg.weight_count()
        row = {"model": label, "grid": f"{grid[0]}x{grid[1]}", "parameters": params_count,
               "prefill_emulated_s": walls[1], "prefill_numpy_s": np_prefill, "prefill_ratio": walls[1] / np_prefill,
               "token_emulated_s": emu_token, "token_numpy_s": np_token, "token_ratio": emu_token / np_token,
               "cycles_per_token": modeled["cycles_per_token"], "tokens_per_second": modeled["tokens_per_second"],
               "gpu_bound_tokens_per_second": modeled["gpu_bound"]["tokens_per_second"],
               "first_token_matches_numpy": int(np.argmax(logits[0])) == tokens[0]}
        rows.append(row)
        print(f"{label:<8} {row['grid']:>6} {params_count:>8,} {walls[1] * 1e3:>10.1f}ms {np_prefill * 1e3:>7.2f}ms "
              f"{row['prefill_ratio']:>6.0f}x {emu_token * 1e3:>8.1f}ms {np_token * 1e3:>7.2f}ms "
              f"{row['token_ratio']:>6.0f}x {modeled['cycles_per_token']:>13,.0f} "
              f"{modeled['tokens_per_second']:>10,.0f} {row['gpu_bound_tokens_per_second']:>11,.0f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
