"""The tilegrid kernel compiler: grammar, checker, spatial IR and lowering passes."""
from .diagnostics import CompileError, Span
from .driver import CompiledKernel, compile_source

__all__ = ["CompileError", "Span", "CompiledKernel", "compile_source"]
