"""The tile-grid emulator: machine model, ISA, program format and the numba core."""
from .jit_cache import refresh_stale_cache

refresh_stale_cache()

from .config import MachineConfig, parse_grid
from .machine import DeadlockError, Emulator, EmulatorError, RunStats, run_program
from .program import BufferPlacement, CodeRegion, Program, ProgramError, TensorIO

__all__ = ["MachineConfig", "parse_grid", "Emulator", "EmulatorError", "DeadlockError", "RunStats",
           "run_program", "Program", "ProgramError", "CodeRegion", "BufferPlacement", "TensorIO"]
