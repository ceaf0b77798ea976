"""The Python API: what `tilegrid run` and `tilegrid compile` do, as functions.

    import numpy as np, tilegrid
    A = np.random.rand(64, 32).astype(np.float32)
    B = np.random.rand(32, 48).astype(np.float32)
    result = tilegrid.run_kernel("matmul", {"A": A, "B": B}, grid=(4, 4), check=True)
    result.outputs["C"], result.stats.cycles, result.check.ok
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from tilegrid import kernels
from tilegrid.compiler.driver import CompiledKernel, compile_source
from tilegrid.compiler.source_files import SourceFileError, read_source_file
from tilegrid.emulator.config import MachineConfig
from tilegrid.emulator.budget import RunBudget
from tilegrid.emulator.machine import Emulator, RunStats, to_half
from tilegrid.emulator.program import Program

from .checking import CheckReport, check_outputs
from .errors import UserError


@dataclass
class RunResult:
    outputs: dict
    stats: RunStats
    program: Program
    check: CheckReport | None = None


def machine(grid=(4, 4), config: MachineConfig | None = None) -> MachineConfig:
    base = config or MachineConfig()
    try:
        return replace(base, width=int(grid[0]), height=int(grid[1]))
    except (ValueError, TypeError) as exc:
        raise UserError(str(exc)) from None


def read_source(kernel: str) -> tuple[str, str]:
    path = kernels.source_path(kernel)
    if not path.exists():
        names = ", ".join(kernels.BUNDLED)
        raise UserError(f"no kernel '{kernel}': not a file, nor a bundled kernel ({names})")
    try:
        return read_source_file(path), str(path)
    except SourceFileError as exc:
        raise UserError(f"cannot read kernel: {exc}") from None


def compile_kernel(kernel: str, grid=(4, 4), shapes: dict | None = None, params: dict | None = None,
                   config: MachineConfig | None = None) -> CompiledKernel:
    """Compile a bundled kernel name or .tg path. shapes: {input name: shape}."""
    source, path = read_source(kernel)
    return compile_source(source, path, machine(grid, config), shapes or {}, params or {})


def validate_inputs(inputs: dict) -> dict:
    checked = {}
    for name, value in inputs.items():
        arr = np.asarray(value)
        if arr.dtype != np.float32:
            raise UserError(f"input '{name}' has dtype {arr.dtype}; kernels take float32 "
                            "(convert with .astype(np.float32))")
        checked[name] = arr
    return checked


def run_kernel(kernel: str, inputs: dict, grid=(4, 4), params: dict | None = None,
               config: MachineConfig | None = None, check: bool = False,
               budget: RunBudget | None = None, timing: str = "fast", trace_tiles=None) -> RunResult:
    """Compile for the inputs' shapes, run on the emulator, optionally check.
    budget bounds the run (instructions and cycles per tile, rounds); see RunBudget.
    timing and trace_tiles: see run_program_checked."""
    inputs = validate_inputs(inputs)
    compiled = compile_kernel(kernel, grid, {k: v.shape for k, v in inputs.items()}, params, config)
    return run_program_checked(compiled.program, inputs, params or {}, check, budget, timing, trace_tiles)


def run_program_checked(program: Program, inputs: dict, params: dict, check: bool,
                        budget: RunBudget | None = None, timing: str = "fast", trace_tiles=None,
                        progress=None, fabric=None, workers: int = 1, backend: str = "ray",
                        address: str | None = None) -> RunResult:
    """timing: 'fast', 'cycle' (the cycle-level model's cycles) or 'off';
    trace_tiles: tile indices whose timed events go into stats.events;
    fabric: a repaired defective wafer (emulator/repair.py), None for a perfect grid;
    workers > 1: shard the grid into bands of rows on Ray actors (backend 'ray', a local
    Ray or the cluster at address) or in this process (backend 'local'), emulator/sharding.py."""
    missing = [io.name for io in program.io if io.role == "input" and io.name not in inputs]
    if missing:
        raise UserError(f"missing input '{missing[0]}' (kernel {program.meta.get('kernel')} takes "
                        f"{', '.join(io.name for io in program.io if io.role == 'input')})")
    if check:
        reference_for(program)  # before the run: a kernel --check cannot compare is refused at once
    emu = Emulator(program, budget, trace_tiles=trace_tiles, timing=timing, fabric=fabric, workers=workers,
                   backend=backend, address=address)
    emu.load_inputs(inputs)
    stats = emu.run(progress)
    outputs = emu.read_outputs()
    report = None
    if check:
        report = check_against_reference(program, inputs, outputs, params, emu)
    return RunResult(outputs, stats, program, report)


def reference_for(program: Program) -> kernels.KernelSpec:
    """The bundled reference --check compares with: matched by the kernel's name,
    and only when the kernel takes and gives the same tensors as the bundled one."""
    name = program.meta.get("kernel", "")
    spec = kernels.spec_for(name)
    if spec is None:
        raise UserError(f"--check needs a reference, and kernel '{name}' has none "
                        f"(bundled: {', '.join(kernels.BUNDLED)})")
    shapes = {io.name: tuple(io.shape) for io in program.io}
    here = (tuple(io.name for io in program.io if io.role == "input"),
            tuple(io.name for io in program.io if io.role == "output"))
    bundled_inputs, bundled_outputs = spec.interface()
    declared = dict(bundled_inputs + bundled_outputs)
    fits = here == (tuple(n for n, _ in bundled_inputs), tuple(n for n, _ in bundled_outputs))
    sizes: dict = {}
    for tensor, dims in declared.items() if fits else ():
        shape = shapes[tensor]
        fits = fits and len(shape) == len(dims)
        for dim, size in zip(dims, shape) if fits else ():
            fits = fits and (dim is None or sizes.setdefault(dim, size) == size)
    if not fits:
        raise UserError(f"--check compares kernel '{name}' with the bundled {name}'s reference, but it takes "
                        f"and gives other tensors: {_signature(here, shapes)}; the bundled {name} has "
                        f"{_signature(([n for n, _ in bundled_inputs], [n for n, _ in bundled_outputs]), declared)}")
    return spec


def _signature(names, shapes) -> str:
    def one(n):
        dims = ", ".join("?" if d is None else str(d) for d in shapes[n])
        return f"{n}[{dims}]"
    return f"{', '.join(map(one, names[0]))} -> {', '.join(map(one, names[1]))}"


def check_against_reference(program: Program, inputs: dict, outputs: dict, params: dict,
                            emu: Emulator | None = None) -> CheckReport:
    spec = reference_for(program)
    grid = (program.config.width, program.config.height)
    bound_params = {**program.meta.get("bindings", {}), **params}
    # a bf16 / f16 input holds its values rounded to that type: the references take those
    halves = {io.name: io.dtype for io in program.io if io.role == "input" and io.dtype != "f32"}
    inputs = {k: to_half(v, halves[k]) if k in halves else v for k, v in inputs.items()}
    with np.errstate(all="ignore"):  # the references follow IEEE too: NaN and inf, without warnings
        expected = spec.reference(inputs, bound_params, grid)
        truth, bounds = spec.ground_truth(inputs, bound_params)
        return check_outputs(program, outputs, expected, truth, bounds,
                             emu.replica_mismatch if emu is not None else None)
