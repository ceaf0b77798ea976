"""Errors a user can cause, as opposed to bugs: each prints as one clear message."""
from tilegrid.compiler.diagnostics import CompileError
from tilegrid.emulator.machine import EmulatorError
from tilegrid.emulator.program import ProgramError


class UserError(Exception):
    """Bad arguments or input files."""


USER_ERRORS = (UserError, CompileError, EmulatorError, ProgramError)
