"""The `tilegrid` command: run, compile, demo, kernels.

Exit status: 0 success, 1 a --check found a difference, 2 a user error
(bad arguments or files, compile error, SRAM overflow, deadlock, ...).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from tilegrid import kernels
from tilegrid.emulator.budget import RunBudget
from tilegrid.emulator.config import MachineConfig, parse_grid
from tilegrid.emulator.defects import DEFAULT_SPARE_EVERY, DefectMap, SpareLayout
from tilegrid.emulator.jit_cache import cache_is_cold
from tilegrid.emulator.machine import TIMING_MODES
from tilegrid.emulator.program import Program
from tilegrid.emulator.repair import repair

from . import llm, sweep
from .api import (check_against_reference, compile_kernel, machine, run_program_checked,
                  validate_inputs)
from .errors import USER_ERRORS, UserError
from .heatmap import physical_view, write_heatmaps, write_wafer_map
from .input_files import load_npz, read_headers, write_npz
from .progress import RunProgress
from .trace import parse_tile_window, write_chrome_trace

EMIT_CHOICES = ("ir", "lowered", "asm", "routes", "plan")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        self.exit(2, f"tilegrid: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="tilegrid", description="Compile and run dataflow kernels on an emulated tile grid.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def machine_args(sp, grid_default="4x4"):
        # Defaults are filled in by _config, so that a flag given for a saved
        # program (which carries its own machine) can be told from one left out.
        sp.set_defaults(grid_default=grid_default)
        sp.add_argument("--grid", help=f"tiles WxH (default {grid_default})")
        sp.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a kernel parameter or size, e.g. --param M=64")
        sp.add_argument("--sram-bytes", type=int, help=f"SRAM per tile (default {MachineConfig.sram_bytes})")
        sp.add_argument("--colors", type=int, help=f"colors per router (default {MachineConfig.colors})")
        sp.add_argument("--queue-depth", type=int,
                        help=f"wavelets buffered per color at a tile's ramp (default {MachineConfig.queue_depth})")
        sp.add_argument("--clock-mhz", type=int,
                        help=f"clock that converts cycles to seconds (default {MachineConfig.clock_mhz})")

    def observe_args(sp):
        sp.add_argument("--timing", choices=TIMING_MODES, default="fast",
                        help="fast: the closed-form model (default); cycle: also step every wavelet through "
                             "every router and report those cycles (slow: small grids); off: for benchmarks")
        sp.add_argument("--trace", metavar="FILE.json",
                        help="write a Chrome/Perfetto trace of the run (open it in ui.perfetto.dev)")
        sp.add_argument("--trace-tiles", metavar="X0:X1,Y0:Y1",
                        help=f"the tiles to trace (default: all up to {TRACE_ALL_TILES} tiles, else the "
                             f"top-left {TRACE_WINDOW}x{TRACE_WINDOW})")
        sp.add_argument("--heatmap", metavar="DIR", help="write per-tile heatmaps (PNG) into DIR")

    def fabric_args(sp):
        sp.add_argument("--defects", type=float, metavar="RATE",
                        help="run on a wafer with this fraction of its physical tiles defective (random; "
                             "half dead cores, half dead tiles), repaired onto the spares")
        sp.add_argument("--defect-seed", type=int, default=0, metavar="S",
                        help="seed of the random defects (default 0)")
        sp.add_argument("--defect-map", metavar="FILE",
                        help="the defective tiles, one 'x y core|tile' per line (physical coordinates)")
        sp.add_argument("--spare-every", type=int, default=DEFAULT_SPARE_EVERY, metavar="N",
                        help=f"one spare column per N logical columns (default {DEFAULT_SPARE_EVERY})")
        sp.add_argument("--save-defect-map", metavar="FILE",
                        help="write the defects used (random or read) as a defect map file, to edit or reuse")

    def shard_args(sp):
        sp.add_argument("--workers", type=int, default=1, metavar="N",
                        help="shard the grid into N bands of rows on Ray actors (pip install -e "
                             "'.[distributed]'): each holds its band's SRAM; bits and cycles are the "
                             "one-process run's (default 1: one process)")
        sp.add_argument("--ray-address", metavar="ADDR",
                        help="with --workers: join the Ray cluster at ADDR (default: start a local Ray)")

    def budget_args(sp):
        d = RunBudget()
        sp.add_argument("--max-instructions", type=int, default=d.instructions, metavar="N",
                        help=f"stop when a tile has retired N instructions (default {d.instructions:,})")
        sp.add_argument("--max-cycles", type=int, default=d.cycles, metavar="N",
                        help=f"stop when a tile's clock passes N cycles (default {d.cycles:,})")
        sp.add_argument("--max-rounds", type=int, default=d.rounds, metavar="N",
                        help=f"stop after N compute/fabric rounds (default {d.rounds:,})")

    run = sub.add_parser("run", help="compile a kernel for its inputs and run it")
    run.add_argument("kernel", help="a bundled kernel name, a .tg file, or a saved .tgp program")
    run.add_argument("--inputs", required=True, help=".npz file with one array per kernel input")
    run.add_argument("--output", help=".npz file to write the outputs to")
    run.add_argument("--check", action="store_true",
                     help="compare with the ordered reference (raw bits) and a float64 ground truth")
    run.add_argument("--stats", metavar="FILE.json", nargs="?", const="",
                    help="print the time of each statement (kernel call); with FILE, also write run statistics as JSON")
    machine_args(run)
    fabric_args(run)
    shard_args(run)
    observe_args(run)
    budget_args(run)

    comp = sub.add_parser("compile", help="compile a kernel and print the lowered program")
    comp.add_argument("kernel")
    comp.add_argument("--emit", choices=EMIT_CHOICES, default="asm",
                      help="ir: spatial IR; lowered: after lowering; asm: instructions; routes; plan: SRAM")
    comp.add_argument("--inputs", help=".npz file to take input shapes from (instead of --param sizes)")
    comp.add_argument("-o", "--save", help="also save the program (.tgp) for `tilegrid run`")
    machine_args(comp)
    fabric_args(comp)

    demo = sub.add_parser("demo", help="run a bundled model on random inputs and check it")
    demo.add_argument("--model", choices=("matmul", "block", "pipeline", "wafer", "llm"), default="matmul",
                      help="matmul: SUMMA C = A @ B; block: a pre-LN transformer block "
                           "(S=64, Dm=128, heads=4, Dff=512, causal); pipeline: the block with attention and "
                           "the MLP on two regions, then two blocks on two regions, over a batch of 4 sequences; "
                           "wafer: y = A x on a million tiles "
                           f"({WAFER_SIDE}x{WAFER_SIDE}, M = N = {4 * WAFER_SIDE}) with {WAFER_DEFECTS:.0%} "
                           "defects (unless --defects or --defect-map say otherwise), repaired onto the spares; "
                           "llm: a random 2-layer Llama checkpoint in bf16 generating 16 tokens after an 8-token "
                           "prompt, checked, with the modeled tokens/s beside a GPU's bandwidth bound")
    demo.add_argument("--size", type=int, default=256, help="matmul: M = K = N (default 256)")
    demo.add_argument("--stats", metavar="FILE.json", nargs="?", const="",
                     help="print the time of each statement (kernel call); with FILE, also write run statistics as JSON")
    machine_args(demo, grid_default="8x8")
    fabric_args(demo)
    shard_args(demo)
    observe_args(demo)
    budget_args(demo)

    gen = sub.add_parser("generate", help="generate tokens with a Llama checkpoint held in tile SRAM",
                         description="Greedy generation with a Hugging Face-style Llama checkpoint (config.json "
                                     "and model.safetensors): the prompt in one pass, then one token at a time "
                                     "with the KV cache in tile SRAM. Prints the tokens, the modeled time per "
                                     "token and a GPU's bandwidth bound for the same model.")
    gen.add_argument("checkpoint", help="a directory with config.json and model.safetensors")
    gen.add_argument("--prompt-ids", required=True, metavar="1,2,3", help="the prompt's token ids")
    gen.add_argument("--tokens", type=int, default=8, metavar="T", help="tokens to generate (default 8)")
    gen.add_argument("--dtype", choices=llm.DTYPES,
                     help="how the fabric holds the weights (default: the checkpoint's type)")
    gen.add_argument("--context", type=int, metavar="P",
                     help="positions the KV cache holds (default: the prompt and the tokens)")
    gen.add_argument("--gpu-bandwidth", type=float, default=llm.DEFAULT_GPU_BANDWIDTH, metavar="BYTES/S",
                     help=f"the HBM bandwidth of the GPU bound (default {llm.DEFAULT_GPU_BANDWIDTH:.3g}: one H100 SXM)")
    gen.add_argument("--output", metavar="gen.json", help="write the prompt, the tokens and the modeled time as JSON")
    gen.add_argument("--check", action="store_true",
                     help="compare tokens and logits with the ordered reference model (raw bits) and a float64 model")
    gen.add_argument("--stats", metavar="FILE.json", nargs="?", const="",
                     help="print the time of each statement; with FILE, also write run statistics as JSON")
    machine_args(gen)
    fabric_args(gen)
    shard_args(gen)
    observe_args(gen)
    budget_args(gen)

    sub.add_parser("kernels", help="list the bundled kernels")

    sw = sub.add_parser("sweep", help="run a kernel over grids and parameters; write a table and a plot",
                        description=sweep.DESCRIPTION)
    sweep.add_arguments(sw)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("run", "demo", "sweep", "generate") and sys.stderr.isatty() and cache_is_cold():
        print("tilegrid: compiling the emulator core; this happens once and takes about a minute",
              file=sys.stderr, flush=True)
    try:
        # Numbers follow IEEE f32 (inf, NaN) without numpy's warnings on the terminal.
        with np.errstate(all="ignore"):
            return _dispatch(args)
    except USER_ERRORS as err:
        print(_one_message(err), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tilegrid: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


def console_main() -> int:
    """The `tilegrid` command and `python -m tilegrid`. After Ctrl-C it leaves at
    once: a normal interpreter exit would first wait on an abandoned compile
    thread and free the whole emulator state, which can take seconds."""
    status = main()
    if status == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    return status


def _dispatch(args) -> int:
    return {"run": cmd_run, "compile": cmd_compile, "demo": cmd_demo, "kernels": cmd_kernels,
            "sweep": sweep.cmd_sweep, "generate": cmd_generate}[args.command](args)


def _one_message(err) -> str:
    """Compile errors already read `path:line:col: error: ...`; others get the tool's prefix."""
    text = str(err)
    return text if ": error:" in text.split("\n")[0] else f"tilegrid: error: {text}"


MACHINE_FLAGS = {"sram_bytes": "--sram-bytes", "colors": "--colors", "queue_depth": "--queue-depth",
                 "clock_mhz": "--clock-mhz"}
TRACE_ALL_TILES, TRACE_WINDOW = 256, 16


def _config(args) -> MachineConfig:
    base = MachineConfig()
    try:
        grid = parse_grid(args.grid or args.grid_default)
        given = {f: getattr(args, f) for f in MACHINE_FLAGS if getattr(args, f) is not None}
        return machine(grid, MachineConfig(**{**base.to_dict(), **given}))
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _refuse_machine_flags(args, program: Program) -> None:
    """A saved program was compiled for its machine; flags cannot change it."""
    cfg = program.config
    if args.grid is not None and parse_grid(args.grid) != (cfg.width, cfg.height):
        raise UserError(f"--grid {args.grid}: '{args.kernel}' was compiled for {cfg.width}x{cfg.height} tiles; "
                        "recompile the kernel for another grid")
    for field, flag in MACHINE_FLAGS.items():
        value = getattr(args, field)
        if value is not None and value != getattr(cfg, field):
            raise UserError(f"{flag} {value}: '{args.kernel}' was compiled for {getattr(cfg, field)}; "
                            "recompile the kernel for another machine")


def parse_params(items: list[str]) -> dict:
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise UserError(f"--param takes NAME=VALUE, got {item!r}")
        try:
            params[name] = int(value)
        except ValueError:
            try:
                params[name] = float(value)
            except ValueError:
                raise UserError(f"--param {name}: {value!r} is not a number") from None
    return params


def _budget(args) -> RunBudget:
    try:
        return RunBudget(instructions=args.max_instructions, cycles=args.max_cycles, rounds=args.max_rounds)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _fabric_bytes(cfg: MachineConfig) -> tuple[int, str]:
    """Inputs larger than every tile's SRAM together cannot be placed."""
    total = cfg.tiles * cfg.sram_bytes
    return total, f"the {cfg.width}x{cfg.height} fabric has"


def cmd_run(args) -> int:
    params = parse_params(args.param)
    budget = _budget(args)
    headers = read_headers(args.inputs)  # shapes first; no data is decompressed before the checks
    if args.kernel.endswith(".tgp"):
        program = Program.load(args.kernel)
        _refuse_machine_flags(args, program)
        _check_saved_inputs(program, {k: h.shape for k, h in headers.items()})
        args.fabric = _fabric(args, program.config)
    else:
        cfg = _config(args)
        args.fabric = _fabric(args, cfg)  # a defect map that cannot be used fails before the compile
        program = compile_kernel(args.kernel, (cfg.width, cfg.height), {k: h.shape for k, h in headers.items()},
                                 params, cfg).program
    limit, room = _fabric_bytes(program.config)
    inputs = validate_inputs(load_npz(args.inputs, limit, f"{room} {limit} bytes of SRAM in all:"))
    result = _observed_run(args, program, inputs, params, args.check, budget)
    if args.output:
        write_npz(args.output, result.outputs)
    print(summary_line(program, result.stats))
    _report(args, program, result.stats)
    if result.check is not None:
        print(result.check.summary())
        return 0 if result.check.ok else 1
    return 0


def parse_ids(text: str, flag: str) -> list[int]:
    try:
        ids = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise UserError(f"{flag} takes token ids separated by commas, got {text!r}") from None
    return ids


def cmd_generate(args) -> int:
    if args.param:
        raise UserError("generate takes its sizes from the checkpoint's config.json, not --param")
    cfg = _config(args)
    args.fabric = _fabric(args, cfg)
    budget = _budget(args)
    if args.output and Path(args.output).is_dir():
        raise UserError(f"cannot write '{args.output}': it is a directory")
    gen = llm.generate(args.checkpoint, parse_ids(args.prompt_ids, "--prompt-ids"), args.tokens, cfg,
                       dtype=args.dtype, context=args.context, check=args.check, gpu_bandwidth=args.gpu_bandwidth,
                       run=lambda program, inputs, params, check: _observed_run(args, program, inputs, params,
                                                                                check, budget))
    return _print_generation(args, gen)


def _print_generation(args, gen) -> int:
    print(summary_line(gen.program, gen.stats))
    _report(args, gen.program, gen.stats)
    print(llm.describe(gen))
    if args.output:
        try:
            Path(args.output).write_text(json.dumps(gen.to_json(), indent=2) + "\n")
        except OSError as exc:
            raise UserError(f"cannot write '{args.output}': {exc.strerror or exc}") from None
    if gen.check is not None:
        print(gen.check.summary())
        return 0 if gen.check.ok else 1
    return 0


def _check_saved_inputs(program: Program, shapes: dict):
    for io in program.io:
        if io.role == "input" and io.name in shapes and tuple(shapes[io.name]) != tuple(io.shape):
            raise UserError(f"input '{io.name}' has shape {tuple(shapes[io.name])}, the saved program "
                            f"was compiled for {tuple(io.shape)}")


def cmd_compile(args) -> int:
    cfg = _config(args)
    shapes = {k: h.shape for k, h in read_headers(args.inputs).items()} if args.inputs else {}
    compiled = compile_kernel(args.kernel, (cfg.width, cfg.height), shapes, parse_params(args.param), cfg)
    prog = compiled.program
    fabric = _fabric(args, cfg)
    routes = prog.format_routes() + ("" if fabric is None else "\n" + fabric.format_map())
    text = {"ir": compiled.ir, "lowered": compiled.lowered, "asm": prog.format_asm(),
            "routes": routes, "plan": prog.format_plan()}[args.emit]
    print(text)
    if args.save:
        try:
            prog.save(args.save)
        except OSError as exc:
            raise UserError(f"cannot write '{args.save}': {exc}") from None
    return 0


WAFER_SIDE, WAFER_DEFECTS = 1024, 0.01


def cmd_demo(args) -> int:
    if args.model == "wafer":
        args.grid = args.grid or f"{WAFER_SIDE}x{WAFER_SIDE}"
        if args.defects is None and not args.defect_map:
            args.defects = WAFER_DEFECTS
    cfg = _config(args)
    args.fabric = _fabric(args, cfg)
    rng = np.random.default_rng(0)
    if args.model == "pipeline":
        return _demo_pipeline(args, cfg, rng)
    if args.model == "llm":
        return _demo_llm(args, cfg, rng)
    if args.model == "wafer":
        name, params = "gemv", {}
        sizes = {"M": 4 * cfg.height, "N": 4 * cfg.width}
        what = f"y = A x, A {sizes['M']}x{sizes['N']} f32 (4x4 per tile)"
    elif args.model == "block":
        name, params = "transformer_block", {"heads": 4, "causal": 1}
        sizes = kernels.BUNDLED[name].demo_sizes
        what = (f"a pre-LN transformer block, S={sizes['S']} Dm={sizes['Dm']} heads=4 Dff={sizes['Dff']}, "
                "causal")
    else:
        name, params, n = "matmul", {}, args.size
        if n < 1:
            raise UserError(f"--size must be at least 1, got {n}")
        sizes = {"M": n, "K": n, "N": n}
        what = f"C = A @ B with SUMMA, {n}x{n}x{n} f32"
    need = 4 * sum(int(np.prod(shape)) for shape in _demo_shapes(name, sizes))
    limit, room = _fabric_bytes(cfg)
    if need > limit:
        raise UserError(f"the demo's inputs take {need} bytes; {room} {limit} bytes of SRAM in all "
                        "(use a smaller --size or a larger --grid)")
    inputs = kernels.BUNDLED[name].make_inputs(rng, sizes)
    print(f"tilegrid demo: {what} on a {cfg.width}x{cfg.height} grid")
    _, report, times = _demo_run(args, cfg, name, inputs, params)
    print(report.summary())
    print(times)
    return 0 if report.ok else 1


def _demo_run(args, cfg, name: str, inputs: dict, params: dict):
    """Compile, run (with the observing flags) and check one bundled kernel, printing
    its summary and reports: (the run's result, the check, the times as a line)."""
    t0 = time.perf_counter()
    compiled = compile_kernel(name, (cfg.width, cfg.height), {k: v.shape for k, v in inputs.items()}, params, cfg)
    t1 = time.perf_counter()
    result = _observed_run(args, compiled.program, inputs, params, False, _budget(args))
    t2 = time.perf_counter()
    report = check_against_reference(compiled.program, inputs, result.outputs, params)
    print(summary_line(compiled.program, result.stats))
    _report(args, compiled.program, result.stats)
    return result, report, f"compile {t1 - t0:.2f} s, emulate {t2 - t1:.2f} s"


def _demo_pipeline(args, cfg, rng) -> int:
    """The two pipelines over regions, each beside its stages run one after another."""
    if cfg.width % 2:
        raise UserError(f"the pipeline demo splits the grid's columns in two; {cfg.width} is odd")
    params = {"heads": 4, "causal": 1}
    ok = True
    for name, stages, what in (("block_pipelined", 1, "attention on the left half, the MLP on the right"),
                               ("two_blocks_pipelined", 2, "block 1 on the left half, block 2 on the right")):
        sizes = kernels.BUNDLED[name].demo_sizes
        inputs = kernels.BUNDLED[name].make_inputs(rng, sizes)
        print(f"tilegrid demo: {name}: {sizes['B']} sequences of S={sizes['S']}, Dm={sizes['Dm']}, "
              f"Dff={sizes['Dff']}, heads=4, causal; {what}, on a {cfg.width}x{cfg.height} grid")
        result, report, times = _demo_run(args, cfg, name, inputs, params)
        if args.stats is None:
            print(region_table(result.stats))
        # the same work with no overlap: one block, one sequence, on a grid the size of a region
        block = dict(inputs) if stages == 1 else {k[:-2]: v for k, v in inputs.items() if k.endswith("_a")}
        block["x"] = inputs["x"][0]
        one = run_program_checked(compile_kernel("transformer_block", (cfg.width // 2, cfg.height),
                                                 {k: v.shape for k, v in block.items()}, params, cfg).program,
                                  block, params, check=False)
        serial = one.stats.cycles * sizes["B"] * stages
        print(f"pipelined: {result.stats.cycles:,} cycles; one stage after another ({sizes['B']} sequences x "
              f"{stages} block{'s' if stages > 1 else ''} of {one.stats.cycles:,} cycles on a "
              f"{cfg.width // 2}x{cfg.height} grid): {serial:,}; {serial / result.stats.cycles:.2f}x")
        print(report.summary())
        print(times + "\n")
        ok &= report.ok
    return 0 if ok else 1


def demo_llm_config(width: int, height: int) -> "llm.LlamaConfig":
    """A small Llama sized to a width x height grid (hidden 128 on 8x8): at least 4
    key-value heads, a whole number of them per tile column, two query heads each."""
    def up(n, m):
        return -(-n // m) * m
    kv = up(4, width)
    both = width * height // math.gcd(width, height)
    return llm.LlamaConfig(hidden=16 * height, intermediate=up(24 * max(width, height), both), heads=2 * kv,
                           kv_heads=kv, layers=2, vocab=up(128, width), eps=1e-5, theta=10000.0,
                           head_dim=8 if width >= 4 else 4, tied=False)


def _demo_llm(args, cfg, rng) -> int:
    """A random bf16 checkpoint, written like a Hugging Face one, generating tokens."""
    import tempfile  # noqa: PLC0415

    model = demo_llm_config(cfg.width, cfg.height)
    prompt, tokens = [int(t) for t in rng.integers(0, model.vocab, 8)], 16
    print(f"tilegrid demo: a random {model.layers}-layer Llama (hidden {model.hidden}, {model.heads} heads, "
          f"{model.kv_heads} key-value heads, MLP {model.intermediate}, vocabulary {model.vocab}) in bf16, "
          f"a prompt of {len(prompt)} tokens and {tokens} generated, on a {cfg.width}x{cfg.height} grid")
    budget = _budget(args)
    with tempfile.TemporaryDirectory(prefix="tilegrid-llm-") as tmp:
        path = llm.write_checkpoint(tmp, model, rng, "bf16")
        t0 = time.perf_counter()
        gen = llm.generate(path, prompt, tokens, cfg, check=True,
                           run=lambda program, inputs, params, check: _observed_run(args, program, inputs, params,
                                                                                    check, budget))
    args.output = None
    status = _print_generation(args, gen)
    print(f"compile, emulate and check: {time.perf_counter() - t0:.2f} s")
    return status


def _demo_shapes(name: str, sizes: dict) -> list[tuple]:
    if name == "matmul":
        return [(sizes["M"], sizes["K"]), (sizes["K"], sizes["N"])]
    if name == "gemv":
        return [(sizes["M"], sizes["N"]), (sizes["N"],)]
    return [(sizes["S"], sizes["Dm"])]  # the block's activations; its weights are checked at compile time


def cmd_kernels(args) -> int:
    for name, spec in kernels.BUNDLED.items():
        doc = spec.path.read_text().splitlines()[0].lstrip("# ")
        print(f"{name:<10} {doc}  [{spec.path}]")
    return 0


def summary_line(program: Program, stats) -> str:
    cfg = program.config
    kib = stats.sram_peak_bytes / 1024
    model = "" if stats.timing != "cycle" else f" (cycle-level; the fast model says {stats.fast_cycles})"
    return (f"{program.meta.get('kernel', 'program')} on {cfg.width}x{cfg.height} tiles: {stats.cycles} cycles"
            f"{model} = {_seconds(stats.seconds)} at {stats.clock_mhz} MHz, "
            f"{stats.instructions} instructions, {stats.wavelets} wavelets ({stats.wavelet_hops} hops), "
            f"SRAM {kib:.1f} of {cfg.sram_bytes / 1024:.0f} KiB per tile, utilization {stats.utilization:.0%}, "
            f"waiting on the fabric {stats.blocked_fraction:.0%}, colors {stats.colors_used}")


def _seconds(s: float) -> str:
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


def _trace_tiles(args, cfg) -> list[int] | None:
    if not args.trace:
        if args.trace_tiles:
            raise UserError("--trace-tiles needs --trace FILE")
        return None
    if args.trace_tiles:
        try:
            return parse_tile_window(args.trace_tiles, cfg.width, cfg.height)
        except ValueError as exc:
            raise UserError(f"--trace-tiles: {exc}") from None
    if cfg.tiles <= TRACE_ALL_TILES:
        return list(range(cfg.tiles))
    w, h = min(TRACE_WINDOW, cfg.width), min(TRACE_WINDOW, cfg.height)
    print(f"tilegrid: tracing the top-left {w}x{h} tiles of {cfg.width}x{cfg.height} (--trace-tiles picks others)",
          file=sys.stderr)
    return [y * cfg.width + x for y in range(h) for x in range(w)]


def _fabric(args, cfg):
    """The repaired wafer the flags ask for, or None for a perfect grid."""
    if args.defects is not None and args.defect_map:
        raise UserError("--defects and --defect-map both give the defects; use one")
    if args.defects is None and not args.defect_map:
        if args.save_defect_map:
            raise UserError("--save-defect-map needs --defects or --defect-map")
        return None
    layout = SpareLayout(args.spare_every)
    wp = layout.physical_width(cfg.width)
    if args.defect_map:
        defects = DefectMap.load(args.defect_map, wp, cfg.height)
    else:
        defects = DefectMap.random(wp, cfg.height, args.defects, args.defect_seed)
    fabric = repair(cfg.width, cfg.height, defects, layout)
    if args.save_defect_map:
        try:
            defects.save(args.save_defect_map)
        except OSError as exc:
            raise UserError(f"cannot write '{args.save_defect_map}': {exc.strerror or exc}") from None
    return fabric


def _observed_run(args, program: Program, inputs: dict, params: dict, check: bool, budget):
    """A run with the timing mode, trace window, progress bar and fabric (args.fabric,
    set by the command from the flags) they ask for. On a defective fabric the program runs a second time on a perfect one: the
    outputs must be the same bits, and the cycles give the defects' overhead."""
    for path in (args.trace, args.stats):
        if path and Path(path).is_dir():
            raise UserError(f"cannot write '{path}': it is a directory")
    fabric = args.fabric
    tiles = args.traced_tiles = _trace_tiles(args, program.config)  # _report writes the same window
    with RunProgress(f"{program.meta.get('kernel', 'program')}") as bar:
        result = run_program_checked(program, inputs, params, check=check, budget=budget, timing=args.timing,
                                     trace_tiles=tiles, progress=bar, fabric=fabric, **_shards(args))
    if fabric is not None:
        with RunProgress(f"{program.meta.get('kernel', 'program')} (perfect fabric)") as bar:
            perfect = run_program_checked(program, inputs, params, check=False, budget=budget,
                                          timing=args.timing, progress=bar)
        same = all(np.asarray(result.outputs[k]).tobytes() == np.asarray(perfect.outputs[k]).tobytes()
                   for k in result.outputs)
        cycles = perfect.stats.cycles
        result.stats.fabric.update(perfect_cycles=cycles, same_outputs_as_perfect=same,
                                   cycle_overhead=(result.stats.cycles - cycles) / cycles if cycles else 0.0)
    return result


def _shards(args) -> dict:
    """run_program_checked's sharding arguments from --workers and --ray-address."""
    workers = getattr(args, "workers", 1)
    if workers == 1:
        if getattr(args, "ray_address", None):
            raise UserError("--ray-address needs --workers N (N > 1)")
        return {}
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UserError("--workers needs Ray, which is not installed: pip install -e '.[distributed]'") from None
    return {"workers": workers, "address": args.ray_address}


def _report(args, program: Program, stats) -> None:
    """--stats (JSON and the per-statement table), --trace and --heatmap."""
    cfg = program.config
    fabric = args.fabric
    if fabric is not None:
        f = stats.fabric
        print(fabric.summary_text())
        print(f"defects' cost: {stats.cycles:,} cycles against {f['perfect_cycles']:,} on a perfect fabric "
              f"({f['cycle_overhead']:+.2%}); {stats.physical_wavelet_hops:,} router hops against "
              f"{stats.wavelet_hops:,} logical link hops; outputs bit-identical to the perfect fabric's: "
              f"{'yes' if f['same_outputs_as_perfect'] else 'NO'}")
    if args.stats is not None:
        if args.stats:
            try:
                Path(args.stats).write_text(json.dumps(stats.to_dict(), indent=2) + "\n")
            except OSError as exc:
                raise UserError(f"cannot write '{args.stats}': {exc.strerror or exc}") from None
        print(phase_table(stats))
        if len(stats.regions) > 1:
            print(region_table(stats))
    if args.trace:
        try:
            summary = write_chrome_trace(args.trace, stats.events, cfg.width, cfg.height, cfg.clock_mhz,
                                         phases=stats.phases, link_wavelets=stats.link_wavelets,
                                         tiles=args.traced_tiles, per_tile_cycles=stats.per_tile_cycles,
                                         events_dropped=stats.events_dropped,
                                         regions=stats.regions if len(stats.regions) > 1 else None)
        except OSError as exc:
            raise UserError(f"cannot write '{args.trace}': {exc.strerror or exc}") from None
        dropped = f", {summary.dropped} events dropped to stay under the size cap" if summary.dropped else ""
        print(f"trace: {args.trace} ({summary.records_written} events, {summary.bytes / 1e6:.1f} MB{dropped}); "
              "open it in ui.perfetto.dev")
    if args.heatmap:
        try:
            if fabric is None:
                paths = write_heatmaps(args.heatmap, stats, cfg.width, cfg.height)
            else:  # drawn on the physical wafer, defects marked
                view, mask = physical_view(stats, fabric)
                paths = write_heatmaps(args.heatmap, view, fabric.physical_width, cfg.height, defects=mask)
                paths.append(write_wafer_map(args.heatmap, fabric))
        except OSError as exc:
            raise UserError(f"cannot write heatmaps to '{args.heatmap}': {exc.strerror or exc}") from None
        print(f"heatmaps: {', '.join(str(p) for p in paths)}")


def phase_table(stats) -> str:
    """Per source statement (for a composed program: per kernel call): when it ran
    and where the tiles' time went, summed over tiles."""
    rows = [("statement", "first", "last", "compute", "fabric wait", "scalar", "instr")]
    for ph in stats.phases:
        name = ph["name"] if len(ph["name"]) <= 58 else ph["name"][:55] + "..."
        rows.append((name, f"{ph['first_cycle']:,}", f"{ph['last_cycle']:,}", f"{ph['compute']:,}",
                     f"{ph['blocked']:,}", f"{ph['scalar']:,}", f"{ph['instructions']:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["time per statement (cycles; compute, fabric wait and scalar are summed over tiles):"]
    for r in rows:
        lines.append("  " + r[0].ljust(widths[0]) + "".join("  " + c.rjust(w) for c, w in zip(r[1:], widths[1:])))
    return "\n".join(lines)


def region_table(stats) -> str:
    """Per region of a program with regions: where its tiles' time went, as shares of
    its tiles x the run's cycles (halted: done, while other regions still ran)."""
    rows = [("region", "tiles", "compute", "fabric wait", "scalar", "halted", "last cycle", "SRAM/tile")]
    for r in stats.regions:
        whole = max(r["tiles"] * stats.cycles, 1)
        rows.append((f"{r['name']} x[{r['x0']},{r['x1']}) y[{r['y0']},{r['y1']})", f"{r['tiles']:,}",
                     *(f"{r[k] / whole:.0%}" for k in ("compute", "blocked", "scalar", "halted")),
                     f"{r['last_cycle']:,}", f"{r['sram_bytes'] / 1024:.1f} KiB"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["time per region (share of its tiles x the run's cycles; fabric wait includes waiting for "
             "another region's data):"]
    for r in rows:
        lines.append("  " + r[0].ljust(widths[0]) + "".join("  " + c.rjust(w) for c, w in zip(r[1:], widths[1:])))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(console_main())
