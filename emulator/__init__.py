"""The tile-grid emulator: machine model, ISA, program format and the numba core."""
from .jit_cache import refresh_stale_cache

refresh_stale_cache()

from .config import MachineConfig, parse_grid  # noqa: E402  (after the cache check)
from .budget import RunBudget  # noqa: E402
from .machine import BudgetError, DeadlockError, Emulator, EmulatorError, RunStats, run_program  # noqa: E402
from .program import BufferPlacement, CodeRegion, Program, ProgramError, TensorIO  # noqa: E402

__all__ = ["MachineConfig", "parse_grid", "Emulator", "EmulatorError", "DeadlockError", "BudgetError", "RunBudget", "RunStats",
           "run_program", "Program", "ProgramError", "CodeRegion", "BufferPlacement", "TensorIO"]
