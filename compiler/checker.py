"""Checks a kernel and elaborates it into spatial IR for one grid.

Checking needs the concrete sizes (shapes bind from the inputs or from
--param, the grid is known), so checking and elaboration are one walk:
names, types, shapes, distributions, divisibility and index bounds are all
checked here, and each statement becomes spatial IR ops. Every error carries
the span of the offending source.
"""
from __future__ import annotations

import math

import numpy as np

from emulator.transcendentals import exp_f32, tanh_f32

from . import ast
from .diagnostics import CompileError, Span
from .spatial_ir import (Broadcast, Buffer, Copy, Elementwise, Fill, Fmac, IBool, ICmp, IConst, ibin,
                         IfTile, INot, IVar, Loop, Mask, MatMac, Reduce, Scale, Shift, SpatialKernel,
                         TensorPlacement, Unary, View)

BUILTINS = {"W", "H", "tx", "ty"}
DIRECTIONS = ("east", "west", "south", "north")
REDUCE_OPS = ("add", "max")
COLLECTIVES = {"broadcast_row", "broadcast_col", "shift", "rotate", "reduce_row", "reduce_col"}
ELEMENTWISE = {"+": "add", "-": "sub", "*": "mul", "/": "div"}
UNARY_FUNCS = {"exp", "tanh", "sqrt"}
LOCAL_REDUCTIONS = {"rowsum": ("add", 0.0), "rowmax": ("max", float("-inf"))}
SCALAR_UNARY = {"exp": exp_f32, "tanh": tanh_f32, "sqrt": np.sqrt}
TENSOR_FUNCS = UNARY_FUNCS | set(LOCAL_REDUCTIONS) | {"transpose", "max", "min", "causal_mask"}
# Masked scores get a large finite negative value, not -inf: an online softmax whose first
# block is fully masked then computes exp(0) for them instead of exp(-inf - -inf) = NaN,
# and the later rescale by exp(-1e30 - m) = 0 removes them exactly.
MASK_VALUE = -1e30
MAX_RANK = 4


class Sym:
    """What a name stands for."""

    def __init__(self, kind: str, value, span: Span | None = None, dist: "Dist | None" = None):
        self.kind = kind       # int | float | rint | tensor
        self.value = value     # python int / float, IExpr, or the tile's View of a tensor
        self.span = span
        self.dist = dist       # for distributed tensors: the global shape and grid axes


class Dist:
    """A distributed tensor: the global shape, the grid axis of each dim, the tile's block."""

    def __init__(self, shape: tuple, axes: tuple, view: View):
        self.shape, self.axes, self.view = tuple(shape), tuple(axes), view

    def describe(self) -> str:
        return "block(" + ", ".join(self.axes) + ")"


class Shared:
    """State one elaboration shares with the kernels it calls (they are inlined)."""

    def __init__(self, kernels: dict):
        self.kernels = kernels          # name -> ast.Kernel, for calls
        self.buffers: list[Buffer] = []
        self.consts: dict[int, Buffer] = {}
        self.temps = 0


def check_kernel(kernel: ast.Kernel, width: int, height: int, input_shapes: dict, params: dict,
                 kernels: dict | None = None) -> SpatialKernel:
    return Checker(kernel, width, height, Shared(kernels or {kernel.name: kernel})).run(input_shapes, params)


class Checker:
    def __init__(self, kernel: ast.Kernel, width: int, height: int, shared: Shared,
                 ranges: dict | None = None, prefix: str = "", call_stack: tuple = (),
                 call_site: Span | None = None):
        self.k = kernel
        self.W, self.H = width, height
        self.shared = shared
        self.buffers = shared.buffers
        self.consts = shared.consts
        self.scopes: list[dict] = [{"W": Sym("int", width), "H": Sym("int", height),
                                    "tx": Sym("rint", IVar("tx")), "ty": Sym("rint", IVar("ty"))}]
        self.ops: list = []
        self.ranges: dict[str, tuple[int, int]] = ranges if ranges is not None else \
            {"tx": (0, width - 1), "ty": (0, height - 1)}
        self.bindings: dict = {}
        self.prefix = prefix              # names of a called kernel's buffers: "layernorm.mean"
        self.call_stack = call_stack + (kernel.name,)
        # Buffers of an inlined kernel report the top-level call site: plan and SRAM
        # errors are about the program the user compiled, in that file.
        self.call_site = call_site

    def _site(self, span):
        return self.call_site or span

    # ------------------------------------------------------------ entry point
    def run(self, input_shapes: dict, params: dict) -> SpatialKernel:
        k = self.k
        self._bind_scalar_params(params)
        self._bind_sizes(input_shapes, params)
        io = []
        for decl, role in [(p, "input") for p in k.params if isinstance(p, ast.TensorDecl)] + \
                          [(o, "output") for o in k.outputs]:
            io.append(self._place_tensor(decl, role))
        self._block(k.body)
        const_fills = [Fill(b.full_view(), b.value) for b in self.consts.values()]
        self.bindings.update({"W": self.W, "H": self.H})
        return SpatialKernel(k.name, self.W, self.H, self.buffers, const_fills + self.ops, io, self.bindings)

    # ------------------------------------------------------------- binding
    def _bind_scalar_params(self, params: dict):
        for p in self.k.params:
            if not isinstance(p, ast.ScalarParam):
                continue
            self._check_new_name(p.name, p.span)
            if p.name in params:
                value = params[p.name]
            elif p.default is not None:
                value = self._value(p.default)
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise CompileError("a parameter default must be a number known at compile time",
                                       p.default.span)
            else:
                raise CompileError(f"parameter '{p.name}' has no default; give it with --param {p.name}=VALUE",
                                   p.span)
            if p.type == "int":
                if isinstance(value, float) and not float(value).is_integer():
                    raise CompileError(f"parameter '{p.name}' is an int, got {value!r}", p.span)
                self._define(p.name, Sym("int", int(value), p.span))
            else:
                self._define(p.name, Sym("float", float(np.float32(value)), p.span))
            self.bindings[p.name] = self._lookup(p.name).value

    def _bind_sizes(self, input_shapes: dict, params: dict):
        declared = {p.name for p in self.k.params}
        sizes = {n.id for decl in self.k.params + self.k.outputs if isinstance(decl, ast.TensorDecl)
                 for dim in decl.type.shape for n in _names(dim)}
        for name, value in params.items():
            if name in declared:
                continue
            if name not in sizes or name in BUILTINS:
                takes = sorted(sizes - BUILTINS) + [p.name for p in self.k.params if isinstance(p, ast.ScalarParam)]
                raise CompileError(f"unknown parameter '{name}' for kernel '{self.k.name}' "
                                   f"(it takes {', '.join(takes) if takes else 'none'})")
            if isinstance(value, float) and not float(value).is_integer():
                raise CompileError(f"size '{name}' must be an integer, got {value!r}")
            self._define(name, Sym("int", int(value)))
            self.bindings[name] = int(value)
        origin: dict[str, str] = {n: "--param" for n in params if n not in declared}
        for p in self.k.params:
            if not isinstance(p, ast.TensorDecl):
                continue
            actual = input_shapes.get(p.name)
            dims = p.type.shape
            if actual is not None and len(actual) != len(dims):
                raise CompileError(f"input '{p.name}' has {len(actual)} dimensions, the kernel declares "
                                   f"{len(dims)}", p.type.span)
            for i, dim in enumerate(dims):
                if isinstance(dim, ast.Name) and self._find(dim.id) is None:
                    if actual is None:
                        raise CompileError(f"size '{dim.id}' is unknown: give input '{p.name}' or "
                                           f"--param {dim.id}=N", dim.span)
                    self._define(dim.id, Sym("int", int(actual[i]), dim.span))
                    self.bindings[dim.id] = int(actual[i])
                    origin[dim.id] = f"'{p.name}' dimension {i}"
                    continue
                want = self._const(dim, "a tensor dimension")
                if actual is not None and int(actual[i]) != want:
                    what = dim.id if isinstance(dim, ast.Name) else "this dimension"
                    source = f" (set by {origin[dim.id]})" if isinstance(dim, ast.Name) and dim.id in origin else ""
                    raise CompileError(f"shape mismatch: '{p.name}' dimension {i} is {int(actual[i])}, but "
                                       f"{what} = {want}{source}", dim.span)

    def _place_tensor(self, decl: ast.TensorDecl, role: str) -> TensorPlacement:
        self._check_new_name(decl.name, decl.span)
        shape, axes, block = self._layout(decl)
        buf = Buffer(self.prefix + decl.name, block, role if not self.prefix else "local", decl.span)
        self.buffers.append(buf)
        self._define(decl.name, Sym("tensor", buf.full_view(), decl.span, Dist(shape, axes, buf.full_view())))
        return TensorPlacement(decl.name, role, shape, axes, buf)

    def _layout(self, decl: ast.TensorDecl) -> tuple[tuple, tuple, tuple]:
        """(global shape, grid axis per dim, block shape), with the divisibility checks."""
        shape = self._shape(decl.type)
        if decl.dist.kind == "replicated":
            axes = ("_",) * len(shape)
        else:
            axes = tuple(a for a, _ in decl.dist.axes)
            if len(axes) != len(shape):
                raise CompileError(f"block(...) names {len(axes)} grid axes but '{decl.name}' has "
                                   f"{len(shape)} dimensions", decl.dist.span)
            for a, span in decl.dist.axes:
                if a not in ("x", "y", "_"):
                    raise CompileError(f"unknown grid axis '{a}': use x, y or _", span)
            for a in ("x", "y"):
                if axes.count(a) > 1:
                    raise CompileError(f"grid axis '{a}' is used twice in the distribution of '{decl.name}'",
                                       decl.dist.span)
        block = []
        for i, (size, a) in enumerate(zip(shape, axes)):
            parts = self.W if a == "x" else self.H if a == "y" else 1
            if size % parts:
                grid_axis = f"W = {self.W} tile columns" if a == "x" else f"H = {self.H} tile rows"
                raise CompileError(f"'{decl.name}' dimension {i} has size {size}, which its distribution splits "
                                   f"over {grid_axis}: it must be divisible by {parts}",
                                   decl.type.shape[i].span)
            block.append(size // parts)
        return shape, axes, tuple(block)

    def _shape(self, ttype: ast.TensorType) -> tuple:
        if ttype.dtype != "f32":
            raise CompileError(f"unsupported element type {ttype.dtype}", ttype.span)
        if not 1 <= len(ttype.shape) <= MAX_RANK:
            raise CompileError(f"tensors have 1 to {MAX_RANK} dimensions", ttype.span)
        shape = []
        for dim in ttype.shape:
            n = self._const(dim, "a tensor dimension")
            if n < 1:
                raise CompileError(f"tensor dimensions must be positive, this one is {n}", dim.span)
            shape.append(n)
        return tuple(shape)

    # -------------------------------------------------------------- scopes
    def _find(self, name: str):
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return None

    def _lookup(self, name: str, span: Span | None = None) -> Sym:
        sym = self._find(name)
        if sym is None:
            raise CompileError(f"unknown name '{name}'", span)
        return sym

    def _check_new_name(self, name: str, span: Span):
        if name in BUILTINS:
            raise CompileError(f"'{name}' is a built-in name (W, H: grid size; tx, ty: tile coordinates)", span)
        if self._find(name) is not None:
            raise CompileError(f"'{name}' is already defined", span)

    def _define(self, name: str, sym: Sym):
        self.scopes[-1][name] = sym

    # ---------------------------------------------------------- statements
    def _block(self, stmts: list):
        for s in stmts:
            self._stmt(s)

    def _emit(self, op, span):
        op.span = self._site(span)  # later passes report errors at the user's own source
        self.ops.append(op)

    def _stmt(self, s):
        if isinstance(s, ast.LocalDecl):
            self._check_new_name(s.name, s.span)
            buf = Buffer(self.prefix + s.name, self._shape(s.type), "local", self._site(s.span))
            self.buffers.append(buf)
            self._define(s.name, Sym("tensor", buf.full_view(), s.span))
        elif isinstance(s, ast.TensorLocal):
            self._check_new_name(s.decl.name, s.decl.span)
            shape, axes, block = self._layout(s.decl)
            buf = Buffer(self.prefix + s.decl.name, block, "local", self._site(s.decl.span))
            self.buffers.append(buf)
            self._define(s.decl.name, Sym("tensor", buf.full_view(), s.decl.span, Dist(shape, axes, buf.full_view())))
        elif isinstance(s, ast.ConstDecl):
            self._check_new_name(s.name, s.span)
            v = self._value(s.value)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise CompileError("a const must be a number known at compile time", s.value.span)
            self._define(s.name, Sym("int" if isinstance(v, int) else "float", v, s.span))
        elif isinstance(s, ast.Require):
            ok = self._cond(s.cond)
            if not isinstance(ok, bool):
                raise CompileError("require needs a condition known at compile time", s.cond.span)
            if not ok:
                names = sorted({n.id for n in _names(s.cond) if self._find(n.id) is not None
                                and self._find(n.id).kind in ("int", "float")})
                values = ", ".join(f"{n} = {self._find(n).value}" for n in names)
                what = s.message or "requirement failed"
                raise CompileError(f"{what}" + (f" ({values})" if values else ""), s.span)
        elif isinstance(s, ast.Assign):
            if isinstance(s.value, ast.Call) and s.value.func in self.shared.kernels:
                self._call(self._dist_value(s.target), s.value, s.span)
            elif self._needs_redistribution(s.target, s.value):
                self._redistribute(self._dist_value(s.target), self._dist_value(s.value), s.span)
            else:
                self._assign(self._target(s.target), s.value, s.span)
        elif isinstance(s, ast.Accumulate):
            dst = self._target(s.target)
            self._accumulate(dst, s.value, s.span)
        elif isinstance(s, ast.For):
            self._for(s)
        elif isinstance(s, ast.If):
            self._if(s)
        else:  # pragma: no cover - the parser produces nothing else
            raise CompileError(f"unsupported statement {type(s).__name__}", s.span)

    def _for(self, s: ast.For):
        lo = self._const(s.lo, "a loop bound")
        hi = self._const(s.hi, "a loop bound")
        self._check_new_name(s.var, s.var_span)
        outer = self.ops
        self.ops = []
        var = self.prefix + s.var  # unique across inlined kernels, whose loops nest in the caller's
        self.scopes.append({s.var: Sym("rint", IVar(var), s.var_span)})
        self.ranges[var] = (lo, max(lo, hi - 1))
        try:
            self._block(s.body)
        finally:
            self.scopes.pop()
            del self.ranges[var]
            body, self.ops = self.ops, outer
        if hi > lo:
            self._emit(Loop(var, lo, hi, body), s.span)

    def _if(self, s: ast.If):
        cond = self._cond(s.cond)
        if isinstance(cond, bool):  # decided at compile time: only the live branch is elaborated
            self.scopes.append({})
            try:
                self._block(s.then if cond else s.orelse)
            finally:
                self.scopes.pop()
            return
        branches = []
        for stmts in (s.then, s.orelse):
            outer = self.ops
            self.ops = []
            self.scopes.append({})
            try:
                self._block(stmts)
            finally:
                self.scopes.pop()
                branches.append(self.ops)
                self.ops = outer
        self._emit(IfTile(cond, branches[0], branches[1]), s.span)

    # ---------------------------------------------------------- assignment
    def _target(self, lv: ast.LValue) -> View:
        sym = self._lookup(lv.name, lv.span)
        if sym.kind != "tensor":
            raise CompileError(f"cannot assign to '{lv.name}': it is not a tensor", lv.span)
        view = sym.value
        if lv.indices:
            view = self._index(view, lv.indices, lv.name, lv.span)
        return view

    def _assign(self, dst: View, e, span):
        if isinstance(e, ast.Call) and e.func in COLLECTIVES:
            self._collective(dst, e, span)
            return
        result = self._compute(e, dst)
        if isinstance(result, float):
            self._emit(Fill(dst, result), span)
        elif not result.same_as(dst):
            self._emit(Copy(dst, self._broadcast(result, dst.shape, e.span)), span)

    def _accumulate(self, dst: View, e, span):
        if isinstance(e, ast.BinOp) and e.op == "@":
            a, b = self._operand_view(e.lhs), self._operand_view(e.rhs)
            for v in (a, b):
                if v.buffer is dst.buffer:
                    raise CompileError("the accumulation target is also an operand of '@'", e.span)
            self._emit(self._matmac(dst, a, b, e), span)
            return
        if isinstance(e, ast.BinOp) and e.op == "*":
            a, b = self._compute(e.lhs), self._compute(e.rhs)
            if isinstance(a, View) and isinstance(b, View):
                self._emit(Fmac(dst, self._broadcast(a, dst.shape, e.lhs.span),
                                self._broadcast(b, dst.shape, e.rhs.span)), span)
                return
        v = self._compute(e)
        other = self._const_view(v) if isinstance(v, float) else v
        self._emit(Elementwise("add", dst, dst, self._broadcast(other, dst.shape, e.span)), span)

    # ------------------------------------------------------- tensor values
    def _compute(self, e, dst: View | None = None):
        """Evaluate a tensor expression; returns a float constant or a View.

        With dst given, the result is written into dst where that is natural
        (the caller copies otherwise)."""
        if isinstance(e, (ast.Name, ast.Subscript)):
            sym = self._find(e.id) if isinstance(e, ast.Name) else None
            if isinstance(e, ast.Name) and sym is not None and sym.kind != "tensor":
                return self._float_const(e)
            return self._view(e)
        if isinstance(e, ast.Number):
            return float(np.float32(e.value))
        if isinstance(e, ast.Neg):
            v = self._compute(e.operand)
            if isinstance(v, float):
                return float(-np.float32(v))
            out = dst if dst is not None and dst.shape == v.shape else self._temp(v.shape, e.span)
            self._emit(Scale(out, v, -1.0), e.span)
            return out
        if isinstance(e, ast.BinOp) and e.op == "@":
            a, b = self._operand_view(e.lhs), self._operand_view(e.rhs)
            shape = self._matmul_shape(a, b, e)
            out = dst
            if out is None or out.shape != shape or out.buffer in (a.buffer, b.buffer):
                out = self._temp(shape, e.span)
            self._emit(Fill(out, 0.0), e.span)
            self._emit(self._matmac(out, a, b, e), e.span)
            return out
        if isinstance(e, ast.BinOp) and e.op in ELEMENTWISE:
            a, b = self._compute(e.lhs), self._compute(e.rhs)
            return self._binary(ELEMENTWISE[e.op], a, b, e, dst)
        if isinstance(e, ast.Call) and e.func in ("max", "min"):
            if len(e.args) != 2 or e.kwargs:
                raise CompileError(f"{e.func}() takes two arguments", e.span)
            a, b = self._compute(e.args[0]), self._compute(e.args[1])
            return self._binary(e.func, a, b, e, dst)
        if isinstance(e, ast.Call) and e.func in UNARY_FUNCS | set(LOCAL_REDUCTIONS) | {"transpose"}:
            if len(e.args) != 1 or e.kwargs:
                raise CompileError(f"{e.func}() takes one tensor", e.span)
            v = self._compute(e.args[0])
            if isinstance(v, float):
                if e.func in UNARY_FUNCS:  # folded with the machine's own definitions
                    return float(SCALAR_UNARY[e.func](np.float32(v)))
                raise CompileError(f"{e.func}() needs a tensor", e.args[0].span)
            if e.func == "transpose":
                if len(v.dims) != 2:
                    raise CompileError(f"transpose() takes a matrix, got shape {_fmt(v.shape)}", e.span)
                return View(v.buffer, v.offset, tuple(reversed(v.dims)))
            if e.func in LOCAL_REDUCTIONS:
                return self._local_reduce(e.func, v, e, dst)
            out = dst if dst is not None and dst.shape == v.shape else self._temp(v.shape, e.span)
            self._emit(Unary(e.func, out, v), e.span)
            return out
        if isinstance(e, ast.Call) and e.func in COLLECTIVES:
            raise CompileError(f"{e.func}(...) must be the whole right-hand side of an assignment", e.span)
        if isinstance(e, ast.Call) and e.func == "causal_mask":
            return self._causal_mask(e, dst)
        if isinstance(e, ast.Call):
            v = self._value(e)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return float(np.float32(v))
            raise CompileError(f"{e.func}() does not give a tensor", e.span)
        if isinstance(e, ast.BinOp):
            raise CompileError(f"operator '{e.op}' does not apply to tensors", e.span)
        raise CompileError("expected a tensor expression", e.span)

    def _causal_mask(self, e: ast.Call, dst: View | None) -> View:
        """causal_mask(s, q0, k0): s[i, j] = -1e30 where key k0 + j comes after query q0 + i."""
        if len(e.args) != 3 or e.kwargs:
            raise CompileError("use causal_mask(scores, first_query_row, first_key_row)", e.span)
        v = self._compute(e.args[0])
        if isinstance(v, float) or len(v.shape) != 2:
            raise CompileError("causal_mask() takes a matrix of scores", e.args[0].span)
        q0, k0 = self._int(e.args[1]), self._int(e.args[2])
        offset = ibin("-", _to_iexpr(q0), _to_iexpr(k0))
        out = dst if dst is not None and dst.shape == v.shape else self._temp(v.shape, e.span)
        if not out.same_as(v):
            self._emit(Copy(out, v), e.span)
        self._emit(Mask(out, offset, MASK_VALUE), e.span)
        return out

    def _local_reduce(self, func: str, v: View, e, dst: View | None) -> View:
        """Reduce the last axis in ascending order into a size-1 axis (kept, so it broadcasts back)."""
        op, start = LOCAL_REDUCTIONS[func]
        shape = v.shape[:-1] + (1,)
        out = dst if dst is not None and dst.shape == shape and dst.buffer is not v.buffer \
            else self._temp(shape, e.span)
        self._emit(Fill(out, start), e.span)
        # the target repeats (stride 0) along the reduced axis: dst = dst op v[..., j] for j in order
        acc = View(out.buffer, out.offset, out.dims[:-1] + ((v.shape[-1], 0),))
        self._emit(Elementwise(op, acc, acc, v), e.span)
        return out

    def _float_const(self, e) -> float:
        v = self._value(e)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise CompileError(f"'{e.id}' is not a tensor or a number known at compile time", e.span)
        return float(np.float32(v))

    def _binary(self, op: str, a, b, e, dst: View | None):
        if isinstance(a, float) and isinstance(b, float):
            fa, fb = np.float32(a), np.float32(b)
            if op == "div" and fb == 0:
                raise CompileError("division by zero", e.span)
            r = {"add": fa + fb, "sub": fa - fb, "mul": fa * fb, "div": fa / fb,
                 "max": np.maximum(fa, fb), "min": np.minimum(fa, fb)}[op]
            return float(np.float32(r))
        shape = _broadcast_shapes(a.shape if isinstance(a, View) else (),
                                  b.shape if isinstance(b, View) else (), e)
        out = dst if dst is not None and dst.shape == shape else self._temp(shape, e.span)
        if op == "mul" and isinstance(b, float):
            self._emit(Scale(out, self._broadcast(a, shape, e.span), b), e.span)
        elif op == "mul" and isinstance(a, float):
            self._emit(Scale(out, self._broadcast(b, shape, e.span), a), e.span)
        else:
            va = self._const_view(a) if isinstance(a, float) else a
            vb = self._const_view(b) if isinstance(b, float) else b
            self._emit(Elementwise(op, out, self._broadcast(va, shape, e.span),
                                   self._broadcast(vb, shape, e.span)), e.span)
        return out

    def _operand_view(self, e) -> View:
        v = self._compute(e)
        if isinstance(v, float):
            raise CompileError("'@' needs tensor operands", e.span)
        return v

    def _matmul_shape(self, a: View, b: View, e) -> tuple:
        if len(a.shape) not in (1, 2) or len(b.shape) not in (1, 2) or (len(a.shape) == len(b.shape) == 1):
            raise CompileError(f"'@' takes matrices or a matrix and a vector, got shapes "
                               f"{_fmt(a.shape)} and {_fmt(b.shape)}", e.span)
        k_a = a.shape[-1]
        k_b = b.shape[0]
        if k_a != k_b:
            raise CompileError(f"shape mismatch in '@': {_fmt(a.shape)} @ {_fmt(b.shape)} "
                               f"(inner sizes {k_a} and {k_b})", e.span)
        return tuple(a.shape[:-1]) + tuple(b.shape[1:])

    def _matmac(self, c: View, a: View, b: View, e) -> MatMac:
        shape = self._matmul_shape(a, b, e)
        if c.shape != shape:
            raise CompileError(f"shape mismatch: {_fmt(a.shape)} @ {_fmt(b.shape)} gives {_fmt(shape)}, "
                               f"the target is {_fmt(c.shape)}", e.span)
        # Everything becomes [rows, cols]: a vector is a 1-row or 1-column matrix.
        a2 = a if len(a.shape) == 2 else View(a.buffer, a.offset, ((1, 0),) + a.dims)
        b2 = b if len(b.shape) == 2 else View(b.buffer, b.offset, b.dims + ((1, 0),))
        if len(c.shape) == 2:
            c2 = c
        elif len(a.shape) == 2:
            c2 = View(c.buffer, c.offset, c.dims + ((1, 0),))
        else:
            c2 = View(c.buffer, c.offset, ((1, 0),) + c.dims)
        return MatMac(c2, a2, b2)

    def _temp(self, shape: tuple, span) -> View:
        self.shared.temps += 1
        buf = Buffer(f"{self.prefix}%t{self.shared.temps}", tuple(shape), "temp", self._site(span))
        self.buffers.append(buf)
        return buf.full_view()

    def _const_view(self, value: float) -> View:
        bits = int(np.float32(value).view(np.uint32))
        if bits not in self.consts:
            buf = Buffer(f"%c{len(self.consts)}", (1,), "const", None, float(np.float32(value)))
            self.consts[bits] = buf
            self.buffers.append(buf)
        return View(self.consts[bits], IConst(0), ())

    def _broadcast(self, v: View, shape: tuple, span) -> View:
        """v as a view of `shape`, size-1 and missing leading dims repeated (stride 0)."""
        if v.shape == tuple(shape):
            return v
        if len(v.dims) > len(shape):
            raise CompileError(f"shape mismatch: {_fmt(v.shape)} does not fit {_fmt(shape)}", span)
        dims = [(1, 0)] * (len(shape) - len(v.dims)) + list(v.dims)
        out = []
        for (extent, stride), want in zip(dims, shape):
            if extent == want:
                out.append((extent, stride))
            elif extent == 1:
                out.append((want, 0))
            else:
                raise CompileError(f"shape mismatch: {_fmt(v.shape)} does not broadcast to {_fmt(shape)}", span)
        return View(v.buffer, v.offset, tuple(out))

    # ------------------------------------------------------------- views
    def _view(self, e) -> View:
        if isinstance(e, ast.Name):
            sym = self._lookup(e.id, e.span)
            if sym.kind != "tensor":
                raise CompileError(f"'{e.id}' is not a tensor", e.span)
            return sym.value
        base = self._view(e.base) if isinstance(e.base, (ast.Name, ast.Subscript)) else None
        if base is None:
            raise CompileError("only tensors can be indexed", e.span)
        name = e.base.id if isinstance(e.base, ast.Name) else "tensor"
        return self._index(base, e.indices, name, e.span)

    def _index(self, view: View, indices: list, name: str, span) -> View:
        if len(indices) > len(view.dims):
            raise CompileError(f"'{name}' has {len(view.dims)} dimensions, indexed with {len(indices)}", span)
        offset = view.offset if not isinstance(view.offset, IConst) else view.offset.value
        dims = []
        for i, (extent, stride) in enumerate(view.dims):
            if i >= len(indices):
                dims.append((extent, stride))
                continue
            idx = indices[i]
            if isinstance(idx, ast.Point):
                at = self._int(idx.index)
                self._check_range(at, 0, extent - 1, f"index into dimension {i} of '{name}'", idx.span)
                offset = _iadd(offset, _imul(at, stride))
            elif isinstance(idx, ast.Range):
                lo = 0 if idx.lo is None else self._const(idx.lo, "a slice bound (use start +: length "
                                                                   "for a start known only at run time)")
                hi = extent if idx.hi is None else self._const(idx.hi, "a slice bound")
                if not 0 <= lo < hi <= extent:
                    raise CompileError(f"slice {lo}:{hi} is outside dimension {i} of '{name}' (size {extent})",
                                       idx.span)
                offset = _iadd(offset, lo * stride)
                dims.append((hi - lo, stride))
            else:
                length = self._const(idx.length, "a slice length")
                if not 1 <= length <= extent:
                    raise CompileError(f"slice length {length} does not fit dimension {i} of '{name}' "
                                       f"(size {extent})", idx.length.span)
                start = self._int(idx.start)
                self._check_range(start, 0, extent - length,
                                  f"slice start in dimension {i} of '{name}' (size {extent}, length {length})",
                                  idx.start.span)
                offset = _iadd(offset, _imul(start, stride))
                dims.append((length, stride))
        return View(view.buffer, _to_iexpr(offset), tuple(dims))

    def _check_range(self, value, lo: int, hi: int, what: str, span):
        vlo, vhi = (value, value) if isinstance(value, int) else self._interval(value)
        if vlo < lo or vhi > hi:
            shown = str(value) if isinstance(value, int) else f"values from {vlo} to {vhi}"
            raise CompileError(f"{what} can take {shown}, outside {lo}..{hi}", span)

    def _interval(self, e) -> tuple[int, int]:
        if isinstance(e, IConst):
            return e.value, e.value
        if isinstance(e, IVar):
            return self.ranges[e.name]
        a, b = self._interval(e.lhs), self._interval(e.rhs)
        if e.op == "+":
            return a[0] + b[0], a[1] + b[1]
        if e.op == "-":
            return a[0] - b[1], a[1] - b[0]
        if e.op == "*":
            p = [x * y for x in a for y in b]
            return min(p), max(p)
        if e.op == "//" and b[0] == b[1] and b[0] > 0:
            return a[0] // b[0], a[1] // b[0]
        if e.op == "%" and b[0] == b[1] and b[0] > 0:
            if a[0] >= 0 and a[1] < b[0]:
                return a
            return 0, b[0] - 1
        if e.op == "min":
            return min(a[0], b[0]), min(a[1], b[1])
        if e.op == "max":
            return max(a[0], b[0]), max(a[1], b[1])
        return -(1 << 31), (1 << 31) - 1

    # ------------------------------------------- kernel calls, redistribution
    def _dist_value(self, node) -> Dist:
        """A distributed tensor named by a Name, LValue or Subscript (slices only of whole dims)."""
        name = node.name if isinstance(node, ast.LValue) else node.id if isinstance(node, ast.Name) else \
            node.base.id if isinstance(node, ast.Subscript) and isinstance(node.base, ast.Name) else None
        indices = node.indices if isinstance(node, (ast.LValue, ast.Subscript)) else []
        sym = self._lookup(name, node.span) if name else None
        if sym is None or sym.kind != "tensor" or sym.dist is None:
            raise CompileError("a distributed tensor is needed here (a kernel parameter, output or `tensor` "
                               "declaration), not a local block", node.span)
        d = sym.dist
        if not indices:
            return d
        view = self._index(d.view, indices, name, node.span)
        shape, axes = [], []
        for i, (size, axis) in enumerate(zip(d.shape, d.axes)):
            idx = indices[i] if i < len(indices) else None
            whole = idx is None or (isinstance(idx, ast.Range) and idx.lo is None and idx.hi is None)
            if axis != "_" and not whole:
                raise CompileError(f"dimension {i} of '{name}' is split over the grid ({d.describe()}); "
                                   "only dimensions that are not split can be sliced here", idx.span)
            if isinstance(idx, ast.Point):
                continue
            shape.append(size if whole else view.dims[len(shape)][0])
            axes.append(axis)
        return Dist(tuple(shape), tuple(axes), view)

    def _needs_redistribution(self, target: ast.LValue, value) -> bool:
        if not isinstance(value, (ast.Name, ast.Subscript)) or target.indices:
            return False
        t = self._find(target.name)
        src = self._find(value.id if isinstance(value, ast.Name) else getattr(value.base, "id", ""))
        if t is None or src is None or t.dist is None or src.dist is None or isinstance(value, ast.Subscript):
            return False
        return t.dist.axes != src.dist.axes

    def _temp_dist(self, shape: tuple, axes: tuple, span) -> Dist:
        block = []
        for i, (size, a) in enumerate(zip(shape, axes)):
            parts = self.W if a == "x" else self.H if a == "y" else 1
            if size % parts:
                raise CompileError(f"cannot lay out a tensor of shape {_fmt(shape)} as block({', '.join(axes)}): "
                                   f"dimension {i} ({size}) is not divisible by {parts}", span)
            block.append(size // parts)
        view = self._temp(tuple(block), span)
        return Dist(shape, axes, view)

    def _redistribute(self, dst: Dist, src: Dist, span):
        """Move src into dst's distribution, one dimension at a time: first every
        dimension that changes is gathered whole (an all-gather by broadcasts along
        its grid axis), then each is cut to its new axis (every tile keeps its own
        block, no communication). A transpose across the mesh, block(y, x) to
        block(x, y), passes through block(_, _): simple, and an SRAM error says so
        when the whole tensor does not fit on a tile."""
        if dst.shape != src.shape:
            raise CompileError(f"shape mismatch: {_fmt(src.shape)} into {_fmt(dst.shape)}", span)
        if dst.axes == src.axes:
            if not dst.view.same_as(src.view):
                self._emit(Copy(dst.view, src.view), span)
            return
        for i, size in enumerate(dst.shape):  # can the target layout exist at all?
            parts = self.W if dst.axes[i] == "x" else self.H if dst.axes[i] == "y" else 1
            if size % parts:
                raise CompileError(f"cannot redistribute {src.describe()} to {dst.describe()}: dimension {i} "
                                   f"({size}) is not divisible by the {parts} tiles along grid axis {dst.axes[i]}",
                                   span)
        changing = [i for i, (a, b) in enumerate(zip(src.axes, dst.axes)) if a != b]
        steps = [(i, "_") for i in changing if src.axes[i] != "_"] + \
                [(i, dst.axes[i]) for i in changing if dst.axes[i] != "_"]
        cur = src
        for n, (i, b) in enumerate(steps):
            axes = cur.axes[:i] + (b,) + cur.axes[i + 1:]
            nxt = dst if n == len(steps) - 1 else self._temp_dist(cur.shape, axes, span)
            if b == "_":
                self._all_gather(nxt, cur, i, cur.axes[i], span)
            else:
                tile = IVar("tx" if b == "x" else "ty")
                self._emit(Copy(nxt.view, _slice(cur.view, i, tile, nxt.view.dims[i][0])), span)
            cur = nxt

    def _all_gather(self, dst: Dist, src: Dist, dim: int, axis: str, span):
        """dst (dim whole) = the blocks of src (dim split over `axis`) from every tile along it."""
        n = self.W if axis == "x" else self.H
        self.shared.temps += 1
        var = f"%gather{self.shared.temps}"
        self.ranges[var] = (0, n - 1)
        piece = _slice(dst.view, dim, IVar(var), src.view.dims[dim][0])
        bcast = Broadcast("row" if axis == "x" else "col", piece, src.view, IVar(var))
        self._emit(Loop(var, 0, n, [bcast]), span)

    def _call(self, target: Dist, e: ast.Call, span):
        """Inline kernel e.func: its params bind to the caller's tensors (redistributed
        if the layouts differ) and its output to the target."""
        callee = self.shared.kernels[e.func]
        if callee.name in self.call_stack:
            raise CompileError(f"kernel '{callee.name}' calls itself", e.span)
        tparams = [p for p in callee.params if isinstance(p, ast.TensorDecl)]
        sparams = {p.name for p in callee.params if isinstance(p, ast.ScalarParam)}
        if len(e.args) != len(tparams):
            raise CompileError(f"kernel '{callee.name}' takes {len(tparams)} tensors "
                               f"({', '.join(p.name for p in tparams)}), got {len(e.args)}", e.span)
        if len(callee.outputs) != 1:
            raise CompileError(f"kernel '{callee.name}' has {len(callee.outputs)} outputs; calls take kernels "
                               "with one output", e.span)
        params = {}
        for name, expr in e.kwargs.items():
            if name not in sparams:
                raise CompileError(f"kernel '{callee.name}' has no parameter '{name}'", expr.span)
            value = self._value(expr)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise CompileError(f"'{name}' must be a number known at compile time", expr.span)
            params[name] = value
        args = [self._dist_value(a) for a in e.args]
        child = Checker(callee, self.W, self.H, self.shared, self.ranges, f"{self.prefix}{callee.name}.",
                        self.call_stack, self.call_site or e.span)
        try:
            child._bind_scalar_params(params)
            child._bind_sizes({p.name: arg.shape for p, arg in zip(tparams, args)}, {})
            layouts = [child._layout(p) for p in tparams]
            out_shape, out_axes, _ = child._layout(callee.outputs[0])
        except CompileError as err:
            raise CompileError(f"in the call to '{callee.name}': {err.message}", e.span) from None
        for p, arg, (shape, axes, _) in zip(tparams, args, layouts):
            view = arg.view
            if axes != arg.axes:  # the caller's layout is not the callee's: redistribute a copy
                tmp = self._temp_dist(shape, axes, e.span)
                self._redistribute(tmp, arg, e.span)
                view = tmp.view
            child._define(p.name, Sym("tensor", view, p.span, Dist(shape, axes, view)))
        if out_shape != target.shape:
            raise CompileError(f"shape mismatch: '{callee.name}' returns {_fmt(out_shape)}, the target is "
                               f"{_fmt(target.shape)}", span)
        reads = {a.view.buffer for a in args}
        direct = out_axes == target.axes and target.view.buffer not in reads
        out = target if direct else self._temp_dist(out_shape, out_axes, e.span)
        child._define(callee.outputs[0].name, Sym("tensor", out.view, callee.outputs[0].span,
                                                  Dist(out_shape, out_axes, out.view)))
        try:
            child._block(callee.body)
        except CompileError as err:
            where = f"{self.k.path}:{e.span.line}:{e.span.column}"
            err.message += f" (in '{callee.name}' called from {where})"
            err.args = (err.message,)
            raise err.attach(callee.path, callee.source)
        self.ops.extend(child.ops)
        if not direct:
            self._redistribute(target, out, span)

    # -------------------------------------------------------- collectives
    def _collective(self, dst: View, e: ast.Call, span):
        f = e.func
        if len(e.args) < 1:
            raise CompileError(f"{f}() needs the tensor to send as its first argument", e.span)
        src = self._compute(e.args[0])
        if isinstance(src, float):
            raise CompileError(f"{f}() sends a tensor, not a number", e.args[0].span)
        if src.shape != dst.shape:
            raise CompileError(f"shape mismatch: {f}() sends {_fmt(src.shape)} into a target of shape "
                               f"{_fmt(dst.shape)}", e.span)
        if src.buffer is dst.buffer and not src.same_as(dst):
            raise CompileError(f"{f}(): source and target overlap in '{dst.buffer.name}'", e.span)
        if f in ("broadcast_row", "broadcast_col"):
            extra = set(e.kwargs) - {"from"}
            if len(e.args) != 1 or "from" not in e.kwargs or extra:
                raise CompileError(f"use {f}(tensor, from = tile)", e.span)
            root = self._int(e.kwargs["from"])
            n = self.W if f == "broadcast_row" else self.H
            self._check_range(root, 0, n - 1, f"{f} root", e.kwargs["from"].span)
            self._emit(Broadcast(f[len("broadcast_"):], dst, src, _to_iexpr(root)), span)
        elif f in ("shift", "rotate"):
            word = self._word_arg(e, DIRECTIONS, "direction")
            self._emit(Shift(word, dst, src, wrap=(f == "rotate")), span)
        else:
            word = self._word_arg(e, REDUCE_OPS, "operation")
            self._emit(Reduce(f[len("reduce_"):], word, dst, src), span)

    def _word_arg(self, e: ast.Call, words: tuple, what: str) -> str:
        if len(e.args) != 2 or e.kwargs or not isinstance(e.args[1], ast.Name) or e.args[1].id not in words:
            span = e.args[1].span if len(e.args) > 1 else e.span
            raise CompileError(f"{e.func}() takes a tensor and a {what}: " + ", ".join(words), span)
        return e.args[1].id

    # ------------------------------------------------------ scalar values
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
                if _known(a) and _known(b):
                    return {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b,
                            ">": a > b, ">=": a >= b}[e.op]
                return ICmp(e.op, self._as_iexpr(a, e.lhs), self._as_iexpr(b, e.rhs))
            if e.op == "@":
                raise CompileError("'@' needs tensors", e.span)
            if _known(a) and _known(b):
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
            return a + b
        if e.op == "-":
            return a - b
        if e.op == "*":
            return a * b
        if e.op == "/":
            if isinstance(a, int) and isinstance(b, int):
                if a % b:
                    raise CompileError(f"{_src(e.lhs)} / {_src(e.rhs)}: {a} is not divisible by {b}", e.span)
                return a // b
            return a / b
        if e.op == "//":
            return a // b
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
            if _known(a) and _known(b):
                if e.func == "lcm":
                    return math.lcm(int(a), int(b))
                if e.func == "gcd":
                    return math.gcd(int(a), int(b))
                return min(a, b) if e.func == "min" else max(a, b)
            if e.func in ("min", "max"):
                return ibin(e.func, self._as_iexpr(a, e.args[0]), self._as_iexpr(b, e.args[1]))
            raise CompileError(f"{e.func}() needs values known at compile time", e.span)
        if e.func in ("lcm", "gcd", "min", "max"):
            raise CompileError(f"{e.func}() takes two arguments", e.span)
        if e.func in COLLECTIVES:
            raise CompileError(f"{e.func}(...) must be the whole right-hand side of an assignment", e.span)
        if e.func in UNARY_FUNCS and len(args) == 1 and _known(args[0]) and not isinstance(args[0], bool):
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


# --------------------------------------------------------------- helpers
def _known(v) -> bool:
    return isinstance(v, (int, float))


def _iadd(a, b):
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    return ibin("+", _to_iexpr(a), _to_iexpr(b))


def _imul(a, c: int):
    if isinstance(a, int):
        return a * c
    return ibin("*", a, IConst(c))


def _to_iexpr(v):
    return IConst(v) if isinstance(v, int) else v


def _slice(view: View, dim: int, index, length: int) -> View:
    """view with dimension `dim` cut to [index * length, (index + 1) * length)."""
    extent, stride = view.dims[dim]
    offset = ibin("+", view.offset, ibin("*", _to_iexpr(index), IConst(length * stride)))
    dims = view.dims[:dim] + ((length, stride),) + view.dims[dim + 1:]
    return View(view.buffer, offset, dims)


def _broadcast_shapes(a: tuple, b: tuple, e) -> tuple:
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x != y and 1 not in (x, y):
            raise CompileError(f"shape mismatch: {_fmt(a)} and {_fmt(b)} do not broadcast", e.span)
        out.append(max(x, y))
    return tuple(reversed(out))


def _fmt(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _names(e):
    if isinstance(e, ast.Name):
        yield e
    for v in vars(e).values() if isinstance(e, ast.Node) else ():
        if isinstance(v, ast.Node):
            yield from _names(v)
        elif isinstance(v, list):
            for item in v:
                if isinstance(item, ast.Node):
                    yield from _names(item)


def _src(e) -> str:
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.Number):
        return str(e.value)
    return "(...)"
