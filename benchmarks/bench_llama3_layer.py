"""One decode step of a Llama-3-8B-shaped layer on a wafer-sized grid.

The default is the issue's case: hidden 4096, intermediate 14336, 32 heads,
8 key-value heads (head_dim 128), random bf16 weights, a KV cache holding 4096
earlier positions, on 720 x 720 tiles (518,400), with kernels/llama_step_wide.tg
(each key-value head over 90 tile columns). It prints the modeled cycles of the
layer, what 32 such layers would mean in tokens/s at 850 MHz and at 1.1 GHz beside
the published figures, and the emulation's wall time and memory. --check compares
the output bit for bit with the ordered reference and with a float64 model.

    python benchmarks/bench_llama3_layer.py                               # 720x720: about 1.5 minutes, 4.8 GiB
    python benchmarks/bench_llama3_layer.py --grid 72x72 --hidden 512 --intermediate 1792 --head-dim 16 --check
"""
from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np

from tilegrid import llm
from tilegrid.api import check_against_reference, read_source
from tilegrid.compiler.driver import compile_source
from tilegrid.emulator import Emulator
from tilegrid.emulator.config import MachineConfig, parse_grid
from tilegrid.emulator.state import FabricState

from bench_matmul import cpu_name  # noqa: E402

WAFERLLM_TOKENS_PER_S = 2700   # WaferLLM (OSDI 2025), Llama3-8B, one request, one wafer
VENDOR_TOKENS_PER_S = 1800     # the vendor's service, Llama 3.1 8B
HALF = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")


def random_layer(model: llm.LlamaConfig, rng) -> dict:
    """A layer's tensors in Hugging Face names and [out, in] layouts, bf16-valued."""
    import ml_dtypes

    out = {}
    for name, shape in model.hf_shapes().items():
        if not name.startswith("model.layers.0."):
            continue
        short = name[len("model.layers.0."):]
        if short.endswith("layernorm.weight"):
            value = 1 + 0.1 * rng.standard_normal(shape, dtype=np.float32)
        else:
            value = rng.standard_normal(shape, dtype=np.float32) * np.float32(shape[1] ** -0.5)
        out[short] = value.astype(ml_dtypes.bfloat16).astype(np.float32)
    return out


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", default="720x720")
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--intermediate", type=int, default=14336)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--cached", type=int, default=4096, help="positions already in the KV cache (default 4096)")
    ap.add_argument("--clock-mhz", type=int, default=MachineConfig.clock_mhz)
    ap.add_argument("--check", action="store_true", help="bit-exact against the ordered reference, and float64")
    ap.add_argument("--phases", action="store_true", help="print the time of each statement")
    ap.add_argument("--json")
    args = ap.parse_args()
    W, H = parse_grid(args.grid)
    model = llm.LlamaConfig(hidden=args.hidden, intermediate=args.intermediate, heads=args.heads,
                            kv_heads=args.kv_heads, layers=1, vocab=1, eps=1e-5, theta=500000.0,
                            head_dim=args.head_dim, tied=True)
    config = MachineConfig(width=W, height=H, clock_mhz=args.clock_mhz)
    print(f"CPU: {cpu_name()}")
    print(f"layer: hidden {model.hidden}, intermediate {model.intermediate}, {model.heads} heads, "
          f"{model.kv_heads} key-value heads of {model.head_dim}, bf16 weights; {args.cached} cached positions; "
          f"grid {W}x{H} ({W * H:,} tiles)")
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    layer = random_layer(model, rng)
    dkv = model.kv_heads * model.head_dim
    x = rng.standard_normal(model.hidden, dtype=np.float32)
    keys = rng.standard_normal((args.cached, dkv), dtype=np.float32)
    values = rng.standard_normal((args.cached, dkv), dtype=np.float32)
    layout = llm.WideLayout.for_grid(model, W, H, args.cached + 1)
    inputs, params = llm.wide_layer_inputs(model, layer, layout, x, keys, values, args.cached)
    del layer, keys, values
    t1 = time.perf_counter()
    source, path = read_source("llama_step_wide")
    for name in HALF:
        source = source.replace(f"{name}: f32[", f"{name}: bf16[", 1)
    compiled = compile_source(source, path, config, {k: v.shape for k, v in inputs.items()}, params)
    program = compiled.program
    t2 = time.perf_counter()
    print(f"layout: {layout.tph} tile columns a key-value head, {layout.c} dimensions a tile; padded hidden "
          f"{layout.hidden_pad}, intermediate {layout.inter_pad}, head {layout.head_pad}, cache {layout.positions} "
          f"positions; SRAM plan {program.sram_words * 4 + program.code_bytes():,} bytes a tile "
          f"(code {program.code_bytes():,})")
    print(f"emulator state estimate: {FabricState.estimate_bytes(program, 0) / 2 ** 30:.2f} GiB")
    emu = Emulator(program)
    emu.load_inputs(inputs)
    t3 = time.perf_counter()
    stats = emu.run()
    t4 = time.perf_counter()
    outputs = emu.read_outputs()
    clock = config.clock_mhz * 1e6
    per_token_32 = 32 * stats.cycles
    row = {"grid": f"{W}x{H}", "tiles": W * H, "cycles_per_layer": stats.cycles,
           "layer_seconds": stats.cycles / clock, "tokens_per_second_32_layers": clock / per_token_32,
           "tokens_per_second_32_layers_at_1_1_GHz": 1.1e9 / per_token_32,
           "waferllm_cycles_per_layer_at_1_1_GHz": 1.1e9 / WAFERLLM_TOKENS_PER_S / 32,
           "wall_setup_s": t1 - t0, "wall_compile_s": t2 - t1, "wall_load_s": t3 - t2, "wall_emulate_s": t4 - t3,
           "rounds": stats.rounds, "tile_visits": stats.tile_visits, "peak_rss_gib": rss_gib(),
           "sram_bytes_per_tile": program.sram_words * 4 + program.code_bytes(),
           "instructions": stats.instructions, "wavelets": stats.wavelets}
    print(f"modeled: {stats.cycles:,} cycles a layer = {stats.cycles / clock * 1e6:.1f} us at {config.clock_mhz} MHz; "
          f"32 layers: {row['tokens_per_second_32_layers']:,.0f} tokens/s "
          f"({row['tokens_per_second_32_layers_at_1_1_GHz']:,.0f} at 1.1 GHz)")
    print(f"published: WaferLLM {WAFERLLM_TOKENS_PER_S:,} tokens/s (about "
          f"{row['waferllm_cycles_per_layer_at_1_1_GHz']:,.0f} cycles a layer at 1.1 GHz); the vendor's service "
          f"about {VENDOR_TOKENS_PER_S:,} tokens/s")
    print(f"emulation: setup {t1 - t0:.1f} s, compile {t2 - t1:.1f} s, load {t3 - t2:.1f} s, run {t4 - t3:.1f} s "
          f"({stats.rounds:,} rounds, {stats.tile_visits:,} tile visits); peak RSS {row['peak_rss_gib']:.2f} GiB")
    if args.phases:
        from tilegrid.cli import phase_table
        print(phase_table(stats))
    if args.check:
        t5 = time.perf_counter()
        report = check_against_reference(program, inputs, outputs, params)
        row["bit_exact"], row["within_bound"] = bool(report.bit_exact), bool(report.within_bound)
        print(report.summary())
        print(f"check: {time.perf_counter() - t5:.1f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(row, fh, indent=2)


if __name__ == "__main__":
    main()
