"""The compiler pipeline: source -> AST -> checked spatial IR -> lowered IR -> Program."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tilegrid.emulator.config import MachineConfig
from tilegrid.emulator.program import Program

from .checker import check_kernel
from .deep_stack import call_with_deep_stack
from .diagnostics import CompileError
from .parser import parse
from .source_files import SourceFileError, read_source_file
from .passes import allocate_sram, double_buffer, emit_code, lower_collectives, route_streams
from .passes.link_regions import link_regions
from .passes.split_regions import split_regions
from .spatial_ir import SpatialKernel, format_ir


@dataclass
class CompiledKernel:
    program: Program
    ir: str          # the checked spatial IR (collectives), as text
    lowered: str     # after lowering, placement and routing, as text
    kernel: SpatialKernel


def compile_source(source: str, path: str, config: MachineConfig, input_shapes: dict | None = None,
                   params: dict | None = None, entry: str | None = None) -> CompiledKernel:
    """Compile kernel source for config's grid. Raises CompileError with path and source attached."""
    try:
        return call_with_deep_stack(_compile, source, path, config, dict(input_shapes or {}),
                                    dict(params or {}), entry)
    except CompileError as err:
        raise err.attach(path, source) from None


def load_kernels(source: str, path: str) -> tuple[list, dict]:
    """Parse a file and everything it imports: (the file's own kernels, every kernel by name)."""
    module = parse(source, path)
    table: dict = {}
    _collect(module, path, table, {str(Path(path).resolve())})
    return module.kernels, table


def _collect(module, path: str, table: dict, seen: set):
    import tilegrid.kernels as bundled  # the library of bundled .tg files

    for imp in module.imports:
        target = Path(path).parent / imp.target if imp.is_path else bundled.source_path(imp.target)
        if not imp.is_path and imp.target not in bundled.BUNDLED:
            raise CompileError(f"no bundled kernel '{imp.target}' to import "
                               f"({', '.join(bundled.BUNDLED)})", imp.span).attach(path, module_source(module))
        if imp.is_path and target.suffix != ".tg":  # never parse, or quote, a file that is no kernel
            raise CompileError(f"cannot import '{imp.target}': kernel files end in .tg", imp.span).attach(
                path, module_source(module))
        key = str(target.resolve())
        if key in seen:
            continue
        seen.add(key)
        try:
            text = read_source_file(target)
        except SourceFileError as exc:
            raise CompileError(f"cannot import: {exc}", imp.span).attach(path, module_source(module)) from None
        sub = parse(text, str(target))
        _collect(sub, str(target), table, seen)
    for k in module.kernels:
        if k.name in table and table[k.name].path != k.path:
            raise CompileError(f"kernel '{k.name}' is defined twice ({table[k.name].path} and {k.path})", k.span)
        table[k.name] = k


def module_source(module) -> str:
    return module.kernels[0].source if module.kernels else ""


def _compile(source, path, config, input_shapes, params, entry) -> CompiledKernel:
    # Constant folding follows IEEE f32 like the machine: an overflow is inf and
    # sqrt(-1) is NaN, silently, with no numpy warnings on the user's terminal.
    with np.errstate(all="ignore"):
        return _compile_quietly(source, path, config, input_shapes, params, entry)


def _lower_and_emit(spatial, config, path):
    """The passes after checking; raises CompileError when the plan and code overflow SRAM."""
    spatial = lower_collectives(spatial)
    spatial = route_streams(spatial, config.colors)
    spatial = allocate_sram(spatial, config)
    program = emit_code(spatial, config, {"source": path, "grid": [config.width, config.height]})
    code_words = -(-program.code_bytes() // config.word_bytes)
    if program.sram_words + code_words > config.sram_words:
        allocate_sram(spatial, config, reserved_words=code_words)  # raises, naming the buffer
    return spatial, program


def _compile_quietly(source, path, config, input_shapes, params, entry) -> CompiledKernel:
    own, table = load_kernels(source, path)
    if not own:
        raise CompileError("the file defines no kernel")
    if entry is None:
        kernel = own[-1]
    elif entry in table:
        kernel = table[entry]
    else:
        raise CompileError(f"no kernel named '{entry}' (this file has {', '.join(k.name for k in own)})")
    known = {p.name for p in kernel.params}
    for name in input_shapes:
        if name not in known:
            raise CompileError(f"kernel '{kernel.name}' has no input named '{name}' "
                               f"(inputs: {', '.join(p.name for p in kernel.params)})")
    spatial = check_kernel(kernel, config.width, config.height, input_shapes, params, table,
                           max_ops=config.sram_bytes // config.instruction_bytes)
    ir_text = format_ir(spatial)
    if spatial.regions:  # one SPMD kernel per region, compiled alone, then linked
        parts = [_compile_spmd(part, config, path) for part in split_regions(spatial)]
        program = link_regions(spatial, parts, config)
        lowered = "\n\n".join(format_ir(part) for part, _ in parts)
    else:
        spatial, program = _compile_spmd(spatial, config, path)
        lowered = format_ir(spatial)
    # the statement behind each instruction names its phase in --stats and traces
    source_lines = source.splitlines()
    program.meta["statements"] = {str(n): source_lines[n - 1].strip()[:80]
                                  for n in sorted(set(program.meta["source_lines"])) if 0 < n <= len(source_lines)}
    program.verify()
    return CompiledKernel(program, ir_text, lowered, spatial)


def _compile_spmd(spatial, config, path):
    """The passes for one SPMD kernel: (the lowered kernel, its program)."""
    # Double buffering where the extra buffers fit the SRAM: both kinds of loop,
    # else one kind, else the plain loops (whose errors are the ones to report);
    # pipelined loops unrolled where their code fits too.
    names = [b.name for b in spatial.buffers]
    for panels, rotations, unroll in ((True, True, True), (True, True, False), (True, False, True),
                                      (True, False, False), (False, True, False)):
        buffered = double_buffer(copy.deepcopy(spatial), panels, rotations, unroll)
        if [b.name for b in buffered.buffers] == names:
            continue  # nothing to pipeline this way
        try:
            return _lower_and_emit(buffered, config, path)
        except CompileError:
            continue
    return _lower_and_emit(spatial, config, path)
