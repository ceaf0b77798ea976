"""tilegrid: a functional emulator of a wafer-scale dataflow processor, with a
compiler for a small kernel language. See README.md."""
from tilegrid.compiler.diagnostics import CompileError
from tilegrid.emulator.config import MachineConfig
from tilegrid.emulator.budget import RunBudget
from tilegrid.emulator.machine import BudgetError, DeadlockError, EmulatorError, RunStats
from tilegrid.emulator.program import Program

from .api import RunResult, compile_kernel, run_kernel
from .errors import UserError

__all__ = ["compile_kernel", "run_kernel", "RunResult", "MachineConfig", "Program", "RunStats",
           "CompileError", "EmulatorError", "DeadlockError", "BudgetError", "RunBudget", "UserError"]
