"""The compiler pipeline: source -> AST -> checked spatial IR -> lowered IR -> Program."""
from __future__ import annotations

from dataclasses import dataclass

from emulator.config import MachineConfig
from emulator.program import Program

from .checker import check_kernel
from .diagnostics import CompileError
from .parser import parse
from .passes import allocate_sram, emit_code, lower_collectives, route_streams
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
        return _compile(source, path, config, dict(input_shapes or {}), dict(params or {}), entry)
    except CompileError as err:
        raise err.attach(path, source) from None


def _compile(source, path, config, input_shapes, params, entry) -> CompiledKernel:
    module = parse(source, path)
    kernels = {k.name: k for k in module.kernels}
    if entry is None:
        kernel = module.kernels[-1]
    elif entry in kernels:
        kernel = kernels[entry]
    else:
        raise CompileError(f"no kernel named '{entry}' (this file has {', '.join(kernels)})")
    known = {p.name for p in kernel.params}
    for name in input_shapes:
        if name not in known:
            raise CompileError(f"kernel '{kernel.name}' has no input named '{name}' "
                               f"(inputs: {', '.join(p.name for p in kernel.params)})")
    spatial = check_kernel(kernel, config.width, config.height, input_shapes, params)
    ir_text = format_ir(spatial)
    spatial = lower_collectives(spatial)
    spatial = route_streams(spatial, config.colors)
    spatial = allocate_sram(spatial, config)
    meta = {"source": path, "grid": [config.width, config.height]}
    program = emit_code(spatial, config, meta)
    code_words = -(-program.code_bytes() // config.word_bytes)
    if program.sram_words + code_words > config.sram_words:
        allocate_sram(spatial, config, reserved_words=code_words)  # raises, naming the buffer
    program.verify()
    return CompiledKernel(program, ir_text, format_ir(spatial), spatial)
