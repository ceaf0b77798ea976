"""Checks a kernel and elaborates it into spatial IR for one grid.

Checking needs the concrete sizes (shapes bind from the inputs or from
--param, the grid is known), so checking and elaboration are one walk:
names, types, shapes, distributions, divisibility and index bounds are all
checked here, and each statement becomes spatial IR ops. Every error carries
the span of the offending source.
"""
from __future__ import annotations

import numpy as np

from . import ast
from .builtins import (BUILTINS, COLLECTIVES, DIRECTIONS, ELEMENTWISE, LOCAL_REDUCTIONS, MASK_VALUE, MAX_RANK,
                       REDUCE_OPS, REDUCE_ORDERS, SCALAR_UNARY, UNARY_FUNCS)
from .composition import Composition
from .regions import Regions
from .symbols import Dist, Sym
from .diagnostics import CompileError, Span
from .scalars import ScalarEval, exact_int, iadd, imul, to_iexpr
from .spatial_ir import (Broadcast, Buffer, Copy, Elementwise, Fill, Fmac, IConst, IfTile, IVar, Loop, Mask,
                         LoadIndex, MatMac, Reduce, Scale, Shift, SpatialKernel, TensorPlacement, Unary, View, Widen,
                         fmt_shape, ibin)



class Shared:
    """State one elaboration shares with the kernels it calls (they are inlined)."""

    def __init__(self, kernels: dict, max_ops: int | None = None):
        self.kernels = kernels          # name -> ast.Kernel, for calls
        self.buffers: list[Buffer] = []
        self.consts: dict[tuple, Buffer] = {}  # (region, f32 bits) -> buffer
        self.temps = 0
        self.ops = 0                    # operations emitted, inlined calls included
        self.max_ops = max_ops
        self.regions: dict = {}         # name -> Region, when the kernel declares regions (regions.py)
        self.region = None              # the Region being elaborated on, if any
        self.tensor_regions: dict = {}  # tensor name -> region name, where no `on` says
        self.transfers = 0


def check_kernel(kernel: ast.Kernel, width: int, height: int, input_shapes: dict, params: dict,
                 kernels: dict | None = None, max_ops: int | None = None) -> SpatialKernel:
    """max_ops: refuse a kernel that elaborates to more operations (each becomes
    at least one instruction, so more than a tile's SRAM holds can never run)."""
    shared = Shared(kernels or {kernel.name: kernel}, max_ops)
    return Checker(kernel, width, height, shared).run(input_shapes, params)


class Checker(ScalarEval, Composition, Regions):
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
        self._declare_regions(k.body)
        io = []
        for decl, role in [(p, "input") for p in k.params if isinstance(p, ast.TensorDecl)] + \
                          [(o, "output") for o in k.outputs]:
            if self.placing:
                with self._on(self._home(decl)):
                    io.append(self._place_tensor(decl, role))
            else:
                io.append(self._place_tensor(decl, role))
        self._block(k.body)
        const_fills = [Fill(b.full_view(), b.value, region=b.region) for b in self.consts.values()]
        self.bindings.update({"W": self.W, "H": self.H})
        return SpatialKernel(k.name, self.W, self.H, self.buffers, const_fills + self.ops, io, self.bindings,
                             regions=list(self.shared.regions.values()))

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
            if p.type == "int" and not isinstance(value, (int, float)):  # a run-time value from the caller
                self._define(p.name, Sym("rint", value, p.span))
                continue
            if p.type == "int":
                if isinstance(value, float) and not float(value).is_integer():
                    raise CompileError(f"parameter '{p.name}' is an int, got {value!r}", p.span)
                self._define(p.name, Sym("int", exact_int(int(value), p.span, f"parameter '{p.name}'"), p.span))
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
            value = exact_int(int(value), None, f"size '{name}'")
            self._define(name, Sym("int", value))
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
        self._no_placement(decl)
        dtype = decl.type.dtype
        half = dtype != "f32"
        if half and (role != "input" or self.prefix):
            raise CompileError(f"{dtype} is for the inputs of the kernel being compiled (weights); outputs, "
                               "intermediates and a called kernel's parameters are f32", decl.type.span)
        shape, axes, block = self._layout(decl, half_ok=half)
        if half:  # two halves a word, along the block's last dimension
            if block[-1] % 2:
                raise CompileError(f"a {dtype} tensor's block has an even last dimension (two halves a word); "
                                   f"'{decl.name}' has blocks of {fmt_shape(block)}", decl.type.span)
            block = block[:-1] + (block[-1] // 2,)
        buf = Buffer(self.prefix + decl.name, block, role if not self.prefix else "local", decl.span, dtype=dtype)
        self.buffers.append(buf)
        self._define(decl.name, Sym("tensor", buf.full_view(), decl.span, Dist(shape, axes, buf.full_view())))
        return TensorPlacement(decl.name, role, shape, axes, buf)

    def _layout(self, decl: ast.TensorDecl, half_ok: bool = False) -> tuple[tuple, tuple, tuple]:
        """(global shape, grid axis per dim, block shape), with the divisibility checks."""
        shape = self._shape(decl.type, half_ok)
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

    def _shape(self, ttype: ast.TensorType, half_ok: bool = False) -> tuple:
        if ttype.dtype != "f32" and not half_ok:
            raise CompileError(f"{ttype.dtype} is for the inputs of the kernel being compiled (weights); "
                               "everything else is f32", ttype.span)
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
        self.shared.ops += 1
        if self.shared.max_ops is not None and self.shared.ops > self.shared.max_ops:
            raise CompileError(f"the kernel elaborates to more than {self.shared.max_ops} operations, more "
                               "code than a tile's SRAM can hold (kernel calls are inlined, so a chain of "
                               "calls multiplies)", op.span)

    def _no_placement(self, node) -> None:
        """`on` outside the top level of a kernel with regions is an error, not ignored."""
        placement = getattr(node, "placement", None) or getattr(getattr(node, "decl", None), "placement", None)
        if placement is not None and not self.placing:
            where = f"kernel '{self.k.name}' is called, and runs inside its caller's region" if self.prefix \
                else f"kernel '{self.k.name}' declares no regions (region NAME = tiles(x0:x1, y0:y1))"
            raise CompileError(f"`on {placement.region}` places this on a region, but {where}", placement.span)

    def _stmt(self, s):
        if self.placing:
            self._placed_stmt(s)
        else:
            self._unplaced_stmt(s)

    def _unplaced_stmt(self, s):
        self._no_placement(s)
        if isinstance(s, ast.RegionDecl):
            where = f"'{self.k.name}' is called from another kernel" if self.prefix else "this is not the top"
            raise CompileError("regions are declared at the top of the body of the kernel being compiled; "
                               f"{where}", s.span)
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
                self._redistribute(self._dist_value(s.target), self._widened_dist(self._dist_value(s.value), s.span),
                                   s.span)
            else:
                self._assign(self._target(s.target), s.value, s.span)
        elif isinstance(s, ast.Accumulate):
            dst = self._target(s.target)
            self._accumulate(dst, s.value, s.span)
        elif isinstance(s, ast.For):
            self._for(s)
        elif isinstance(s, ast.IndexDecl):
            self._index_decl(s)
        elif isinstance(s, ast.If):
            self._if(s)
        else:  # pragma: no cover - the parser produces nothing else
            raise CompileError(f"unsupported statement {type(s).__name__}", s.span)

    def _for(self, s: ast.For):
        lo = self._const(s.lo, "a loop bound")
        hi = self._const(s.hi, "a loop bound")
        self._check_new_name(s.var, s.var_span)
        if hi <= lo:  # no iteration runs (for s in 1 .. H on one row): like a dead branch, not elaborated
            return
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

    def _index_decl(self, s: ast.IndexDecl):
        """index t = tensor[...] in lo .. hi: a run-time integer read from one element
        of a tensor, truncated toward zero and clamped to lo .. hi - 1, so that every
        index made from it stays in bounds (a token id picking a row of a table)."""
        self._check_new_name(s.name, s.name_span)
        lo, hi = self._const(s.lo, "an index bound"), self._const(s.hi, "an index bound")
        if hi <= lo:
            raise CompileError(f"index bounds {lo} .. {hi} hold no value", s.span)
        if not isinstance(s.value, (ast.Name, ast.Subscript)):
            raise CompileError("an index is read from one element of a tensor, such as ids[i]", s.value.span)
        view = self._view(s.value)
        if view.buffer.dtype != "f32":
            raise CompileError(f"an index is read from an f32 tensor, not {view.buffer.dtype}", s.value.span)
        if any(extent != 1 for extent, _ in view.dims):
            raise CompileError(f"an index is read from one element; this is {fmt_shape(view.shape)}", s.value.span)
        self.shared.temps += 1
        var = f"{self.prefix}{s.name}%{self.shared.temps}"
        self.ranges[var] = (lo, hi - 1)
        self._emit(LoadIndex(var, view, lo, hi), s.span)
        self._define(s.name, Sym("rint", IVar(var), s.name_span))

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
        if sym.value.buffer.dtype != "f32":
            raise CompileError(f"'{lv.name}' is a {sym.value.buffer.dtype} input, which is read-only", lv.span)
        view = sym.value
        if lv.indices:
            view = self._index(view, lv.indices, lv.name, lv.span)
        return view

    def _assign(self, dst: View, e, span):
        if isinstance(e, ast.Call) and e.func in COLLECTIVES:
            self._collective(dst, e, span)
            return
        in_place = not self._reads_unsafely(e, dst)
        result = self._compute(e, dst if in_place else None)
        if isinstance(result, float):
            self._emit(Fill(dst, result), span)
        elif not result.same_as(dst):
            self._emit(Copy(dst, self._broadcast(self._detached(result, dst, span), dst.shape, e.span)), span)

    def _reads_unsafely(self, e, dst: View) -> bool:
        """Whether writing e's value into dst as it is computed could overwrite
        an element of dst's buffer before e reads it: any read of that buffer
        other than dst itself as an operand of elementwise arithmetic (which
        reads each element just before writing the same one)."""
        def unsafe(node, elementwise: bool) -> bool:
            if isinstance(node, ast.Name):
                sym = self._find(node.id)
                if sym is None or sym.kind != "tensor" or sym.value.buffer is not dst.buffer:
                    return False
                return not (elementwise and sym.value.same_as(dst))
            if isinstance(node, ast.BinOp):
                keep = elementwise and node.op in ELEMENTWISE
                return unsafe(node.lhs, keep) or unsafe(node.rhs, keep)
            if isinstance(node, ast.Neg):
                return unsafe(node.operand, elementwise)
            if isinstance(node, ast.Call):
                keep = elementwise and node.func in UNARY_FUNCS | {"max", "min", "causal_mask"}  # position-wise
                return any(unsafe(a, keep) for a in list(node.args) + list(node.kwargs.values()))
            return any(n.id in self._aliases(dst) for n in _names(node))
        return unsafe(e, True)

    def _aliases(self, dst: View) -> set:
        """Names in scope that view dst's buffer."""
        return {name for scope in self.scopes for name, sym in scope.items()
                if sym.kind == "tensor" and sym.value.buffer is dst.buffer}

    def _detached(self, result: View, dst: View, span) -> View:
        """result itself, or a copy of it when it is a view into dst's buffer
        (C = transpose(C), C = C[0]): a copy in place would read what it wrote."""
        if result.buffer is not dst.buffer or result.same_as(dst):
            return result
        tmp = self._temp(result.shape, span)
        self._emit(Copy(tmp, result), span)
        return tmp

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
                a, b = self._detached(a, dst, span), self._detached(b, dst, span)
                self._emit(Fmac(dst, self._broadcast(a, dst.shape, e.lhs.span),
                                self._broadcast(b, dst.shape, e.rhs.span)), span)
                return
        v = self._compute(e)
        other = self._const_view(v) if isinstance(v, float) else self._detached(v, dst, span)
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
            return self._widened(self._view(e), e.span)
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
                    raise CompileError(f"transpose() takes a matrix, got shape {fmt_shape(v.shape)}", e.span)
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
        offset = ibin("-", to_iexpr(q0), to_iexpr(k0))
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
                               f"{fmt_shape(a.shape)} and {fmt_shape(b.shape)}", e.span)
        k_a = a.shape[-1]
        k_b = b.shape[0]
        if k_a != k_b:
            raise CompileError(f"shape mismatch in '@': {fmt_shape(a.shape)} @ {fmt_shape(b.shape)} "
                               f"(inner sizes {k_a} and {k_b})", e.span)
        return tuple(a.shape[:-1]) + tuple(b.shape[1:])

    def _matmac(self, c: View, a: View, b: View, e) -> MatMac:
        shape = self._matmul_shape(a, b, e)
        if c.shape != shape:
            raise CompileError(f"shape mismatch: {fmt_shape(a.shape)} @ {fmt_shape(b.shape)} gives {fmt_shape(shape)}, "
                               f"the target is {fmt_shape(c.shape)}", e.span)
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
        # one constant buffer per value and region: a region's tiles hold only their own
        bits = (self.shared.region.name if self.shared.region else None, int(np.float32(value).view(np.uint32)))
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
            raise CompileError(f"shape mismatch: {fmt_shape(v.shape)} does not fit {fmt_shape(shape)}", span)
        dims = [(1, 0)] * (len(shape) - len(v.dims)) + list(v.dims)
        out = []
        for (extent, stride), want in zip(dims, shape):
            if extent == want:
                out.append((extent, stride))
            elif extent == 1:
                out.append((want, 0))
            else:
                raise CompileError(f"shape mismatch: {fmt_shape(v.shape)} does not broadcast to {fmt_shape(shape)}", span)
        return View(v.buffer, v.offset, tuple(out))

    # ------------------------------------------------------------- views
    def _widened(self, view: View, span) -> View:
        """view itself, or for a bf16 / f16 tensor an f32 copy of it (vwiden): the
        arithmetic is f32, and the halves only save SRAM."""
        buf = view.buffer
        if buf.dtype == "f32":
            return view
        if not view.dims or view.dims[-1] != (buf.shape[-1], 1):
            raise CompileError(f"a {buf.dtype} tensor is sliced only along its leading dimensions (its last one "
                               f"holds two halves a word); '{buf.name}' is sliced along its last", span)
        tmp = self._temp(view.shape[:-1] + (2 * view.shape[-1],), span)
        self._emit(Widen(tmp, view, buf.dtype), span)
        return tmp

    def _widened_dist(self, d, span):
        """A distributed tensor with its block widened to f32 (see _widened)."""
        return d if d.view.buffer.dtype == "f32" else Dist(d.shape, d.axes, self._widened(d.view, span))

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
        self._no_half_last_index(base, e.indices, name, e.span)
        return self._index(base, e.indices, name, e.span)

    def _no_half_last_index(self, view: View, indices: list, name: str, span) -> None:
        """A bf16 / f16 view is indexed only along its leading dims: its last holds two halves a word."""
        if view.buffer.dtype == "f32" or len(indices) < len(view.dims):
            return
        last = indices[len(view.dims) - 1]
        if not (isinstance(last, ast.Range) and last.lo is None and last.hi is None):
            raise CompileError(f"a {view.buffer.dtype} tensor is sliced only along its leading dimensions (its "
                               f"last one holds two halves a word); '{name}' is sliced along its last", span)

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
                offset = iadd(offset, imul(at, stride))
            elif isinstance(idx, ast.Range):
                lo = 0 if idx.lo is None else self._const(idx.lo, "a slice bound (use start +: length "
                                                                   "for a start known only at run time)")
                hi = extent if idx.hi is None else self._const(idx.hi, "a slice bound")
                if not 0 <= lo < hi <= extent:
                    raise CompileError(f"slice {lo}:{hi} is outside dimension {i} of '{name}' (size {extent})",
                                       idx.span)
                offset = iadd(offset, lo * stride)
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
                offset = iadd(offset, imul(start, stride))
                dims.append((length, stride))
        return View(view.buffer, to_iexpr(offset), tuple(dims))

    # -------------------------------------------------------- collectives
    def _collective(self, dst: View, e: ast.Call, span):
        f = e.func
        if len(e.args) < 1:
            raise CompileError(f"{f}() needs the tensor to send as its first argument", e.span)
        src = self._compute(e.args[0])
        if isinstance(src, float):
            raise CompileError(f"{f}() sends a tensor, not a number", e.args[0].span)
        if src.shape != dst.shape:
            raise CompileError(f"shape mismatch: {f}() sends {fmt_shape(src.shape)} into a target of shape "
                               f"{fmt_shape(dst.shape)}", e.span)
        if src.buffer is dst.buffer and not src.same_as(dst):
            raise CompileError(f"{f}(): source and target overlap in '{dst.buffer.name}'", e.span)
        if f in ("broadcast_row", "broadcast_col"):
            extra = set(e.kwargs) - {"from"}
            if len(e.args) != 1 or "from" not in e.kwargs or extra:
                raise CompileError(f"use {f}(tensor, from = tile)", e.span)
            root = self._int(e.kwargs["from"])
            n = self.W if f == "broadcast_row" else self.H
            self._check_range(root, 0, n - 1, f"{f} root", e.kwargs["from"].span)
            self._emit(Broadcast(f[len("broadcast_"):], dst, src, to_iexpr(root)), span)
        elif f in ("shift", "rotate"):
            word = self._word_arg(e, DIRECTIONS, "direction")
            self._emit(Shift(word, dst, src, wrap=(f == "rotate")), span)
        else:
            order = e.kwargs.get("order")
            if order is not None and (not isinstance(order, ast.Name) or order.id not in REDUCE_ORDERS):
                raise CompileError(f"{f}() takes order = " + " or ".join(REDUCE_ORDERS), order.span)
            word = self._word_arg(e, REDUCE_OPS, "operation", allow={"order", "segment"})
            n = self.W if f == "reduce_row" else self.H
            segment = n
            if "segment" in e.kwargs:
                segment = self._const(e.kwargs["segment"], "a reduction's segment")
                if segment < 1 or n % segment:
                    raise CompileError(f"{f}(): segment = {segment} must divide the {n} tiles along the "
                                       f"{'row' if f == 'reduce_row' else 'column'}", e.kwargs["segment"].span)
            self._emit(Reduce(f[len("reduce_"):], word, dst, src, order.id if order else "chain",
                              segment if segment < n else 0), span)

    def _word_arg(self, e: ast.Call, words: tuple, what: str, allow=frozenset()) -> str:
        if (len(e.args) != 2 or set(e.kwargs) - set(allow) or not isinstance(e.args[1], ast.Name)
                or e.args[1].id not in words):
            span = e.args[1].span if len(e.args) > 1 else e.span
            raise CompileError(f"{e.func}() takes a tensor and a {what}: " + ", ".join(words), span)
        return e.args[1].id

# --------------------------------------------------------------- helpers
def _broadcast_shapes(a: tuple, b: tuple, e) -> tuple:
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x != y and 1 not in (x, y):
            raise CompileError(f"shape mismatch: {fmt_shape(a)} and {fmt_shape(b)} do not broadcast", e.span)
        out.append(max(x, y))
    return tuple(reversed(out))


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
