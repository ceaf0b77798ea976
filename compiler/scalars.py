"""Scalar expressions: compile-time folding (ints exact, floats in f32), run-time
integer expressions (IExpr) for each tile, conditions, and the interval
analysis that bounds-checks run-time indices. A mixin of the Checker."""
from __future__ import annotations

import math

import numpy as np

from . import ast
from .builtins import COLLECTIVES, SCALAR_UNARY, TENSOR_FUNCS, UNARY_FUNCS
from .diagnostics import CompileError
from .spatial_ir import IBool, ICmp, IConst, INot, ibin, interval


# Compile-time integers are exact but bounded, so that constant folding can
# neither blow up (a chain of squarings) nor hand the emitter a value no
# instruction field can hold.
MAX_INT = (1 << 63) - 1


def exact_int(v: int, span, what: str = "integer arithmetic") -> int:
    if -MAX_INT - 1 <= v <= MAX_INT:
        return v
    raise CompileError(f"{what} gives {_digits(v)}, beyond the compiler's 64-bit integers", span)


def _digits(v: int) -> str:
    text = str(v) if v.bit_length() < 200 else f"a {len(str(abs(v)))}-digit number"
    return text if len(text) <= 24 else f"{text[:10]}...{text[-4:]} ({len(text.lstrip('-'))} digits)"


def known(v) -> bool:
    return isinstance(v, (int, float))


def to_iexpr(v):
    return IConst(v) if isinstance(v, int) else v


def iadd(a, b):
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    return ibin("+", to_iexpr(a), to_iexpr(b))


def imul(a, c: int):
    if isinstance(a, int):
        return a * c
    return ibin("*", a, IConst(c))


def source_text(e) -> str:
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.Number):
        return str(e.value)
    return "(...)"


class ScalarEval:
    def _value(self, e):
        """Evaluate a scalar expression: int/float/bool if known now, else an IExpr/ICond."""
        if isinstance(e, ast.Number):
            return e.value
        if isinstance(e, ast.Name):
            sym = self._lookup(e.id, e.span)
            if sym.kind == "tensor":
                raise CompileError(f"'{e.id}' is a tensor; a number is needed here", e.span)
            return sym.value
        if isinstance(e, ast.Neg):
            v = self._value(e.operand)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return -v
            return ibin("-", IConst(0), v)
        if isinstance(e, ast.Not):
            c = self._cond(e.operand)
            return (not c) if isinstance(c, bool) else INot(c)
        if isinstance(e, ast.Call):
            return self._scalar_call(e)
        if isinstance(e, ast.BinOp):
            if e.op in ("and", "or"):
                a, b = self._cond(e.lhs), self._cond(e.rhs)
                if isinstance(a, bool) and isinstance(b, bool):
                    return (a and b) if e.op == "and" else (a or b)
                if isinstance(a, bool):
                    return b if (a if e.op == "and" else not a) else a
                if isinstance(b, bool):
                    return a if (b if e.op == "and" else not b) else b
                return IBool(e.op, a, b)
            a, b = self._value(e.lhs), self._value(e.rhs)
            if e.op in ("==", "!=", "<", "<=", ">", ">="):
                if known(a) and known(b):
                    return {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b,
                            ">": a > b, ">=": a >= b}[e.op]
                return ICmp(e.op, self._as_iexpr(a, e.lhs), self._as_iexpr(b, e.rhs))
            if e.op == "@":
                raise CompileError("'@' needs tensors", e.span)
            if known(a) and known(b):
                return self._fold(e, a, b)
            if e.op == "/":
                raise CompileError("'/' needs both sides known at compile time (exact division); use '//' "
                                   "for floor division of run-time values", e.span)
            return ibin(e.op, self._as_iexpr(a, e.lhs), self._as_iexpr(b, e.rhs))
        if isinstance(e, ast.Subscript):
            raise CompileError("a tensor element is not a compile-time number", e.span)
        raise CompileError("expected a number", e.span)

    def _fold(self, e: ast.BinOp, a, b):
        if isinstance(a, bool) or isinstance(b, bool):
            raise CompileError(f"operator '{e.op}' does not apply to conditions", e.span)
        if e.op in ("//", "%", "/") and b == 0:
            raise CompileError("division by zero", e.span)
        if isinstance(a, float) or isinstance(b, float):  # compile-time floats are f32, like the machine
            fa, fb = np.float32(a), np.float32(b)
            ops = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}
            if e.op not in ops:
                raise CompileError(f"operator '{e.op}' needs integers", e.span)
            return float(ops[e.op](fa, fb))
        if e.op == "+":
            return exact_int(a + b, e.span)
        if e.op == "-":
            return exact_int(a - b, e.span)
        if e.op == "*":
            return exact_int(a * b, e.span)
        if e.op == "/":
            if a % b:
                raise CompileError(f"{source_text(e.lhs)} / {source_text(e.rhs)}: {a} is not divisible by {b}", e.span)
            return exact_int(a // b, e.span)
        if e.op == "//":
            return exact_int(a // b, e.span)
        if e.op == "%":
            return a % b
        raise CompileError(f"operator '{e.op}' does not apply here", e.span)

    def _scalar_call(self, e: ast.Call):
        if e.func not in ("lcm", "gcd", "min", "max") and e.func not in COLLECTIVES | TENSOR_FUNCS:
            raise CompileError(f"unknown function '{e.func}'", e.span)
        args = [self._value(a) for a in e.args]
        if e.kwargs:
            raise CompileError(f"{e.func}() takes no keyword arguments", e.span)
        if e.func in ("lcm", "gcd", "min", "max") and len(args) == 2:
            a, b = args
            if known(a) and known(b):
                if e.func in ("lcm", "gcd"):
                    for arg, node in zip(args, e.args):
                        if isinstance(arg, (bool, float)):
                            raise CompileError(f"{e.func}() takes integers, got {arg!r}", node.span)
                    fn = math.lcm if e.func == "lcm" else math.gcd
                    return exact_int(fn(a, b), e.span, f"{e.func}()")
                return min(a, b) if e.func == "min" else max(a, b)
            if e.func in ("min", "max"):
                return ibin(e.func, self._as_iexpr(a, e.args[0]), self._as_iexpr(b, e.args[1]))
            raise CompileError(f"{e.func}() needs values known at compile time", e.span)
        if e.func in ("lcm", "gcd", "min", "max"):
            raise CompileError(f"{e.func}() takes two arguments", e.span)
        if e.func in COLLECTIVES:
            raise CompileError(f"{e.func}(...) must be the whole right-hand side of an assignment", e.span)
        if e.func in UNARY_FUNCS and len(args) == 1 and known(args[0]) and not isinstance(args[0], bool):
            return float(SCALAR_UNARY[e.func](np.float32(args[0])))
        if e.func in TENSOR_FUNCS:
            raise CompileError(f"{e.func}() works on tensors; a number is needed here", e.span)
        raise CompileError(f"unknown function '{e.func}'", e.span)

    def _as_iexpr(self, v, e):
        if isinstance(v, bool) or isinstance(v, float):
            raise CompileError("an integer is needed here", e.span)
        if isinstance(v, int):
            return IConst(v)
        if isinstance(v, (ICmp, IBool, INot)):
            raise CompileError("a condition cannot be used as a number", e.span)
        return v

    def _int(self, e):
        v = self._value(e)
        if isinstance(v, bool) or isinstance(v, float) or isinstance(v, (ICmp, IBool, INot)):
            raise CompileError("an integer is needed here", e.span)
        return v

    def _const(self, e, what: str) -> int:
        v = self._value(e)
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, float):
                raise CompileError(f"{what} must be an integer, got {v!r}", e.span)
            raise CompileError(f"{what} must be known at compile time", e.span)
        return v

    def _cond(self, e):
        v = self._value(e)
        if isinstance(v, (bool, ICmp, IBool, INot)):
            return v
        raise CompileError("expected a condition (a comparison)", e.span)

    def _interval(self, e) -> tuple[int, int]:
        return interval(e, self.ranges)

    def _check_range(self, value, lo: int, hi: int, what: str, span):
        vlo, vhi = (value, value) if isinstance(value, int) else self._interval(value)
        if vlo < lo or vhi > hi:
            shown = str(value) if isinstance(value, int) else f"values from {vlo} to {vhi}"
            raise CompileError(f"{what} can take {shown}, outside {lo}..{hi}", span)
