"""Composition: kernel calls and redistribution between tensor layouts.

A call is inlined by a child checker that shares the caller's buffers,
constants and op list; its parameters bind to the caller's distributed
tensors, redistributed first where the layouts differ. A mixin of the Checker.
"""
from __future__ import annotations

from . import ast
from .diagnostics import CompileError
from .scalars import to_iexpr
from .symbols import Dist, Sym
from .spatial_ir import Broadcast, Copy, IBool, ICmp, IConst, INot, IVar, Loop, View, fmt_shape, ibin


def slice_dim(view: View, dim: int, index, length: int) -> View:
    """view with dimension `dim` cut to [index * length, (index + 1) * length)."""
    extent, stride = view.dims[dim]
    offset = ibin("+", view.offset, ibin("*", to_iexpr(index), IConst(length * stride)))
    dims = view.dims[:dim] + ((length, stride),) + view.dims[dim + 1:]
    return View(view.buffer, offset, dims)


class Composition:
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
        self._no_half_last_index(d.view, indices, name, node.span)
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
                raise CompileError(f"cannot lay out a tensor of shape {fmt_shape(shape)} as block({', '.join(axes)}): "
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
        first = len(self.ops)
        try:
            self._redistribute_ops(dst, src, span)
        finally:
            for op in self.ops[first:]:  # the time it takes shows as its own row in --stats
                op.note = "redistribution"

    def _redistribute_ops(self, dst: Dist, src: Dist, span):
        if dst.shape != src.shape:
            raise CompileError(f"shape mismatch: {fmt_shape(src.shape)} into {fmt_shape(dst.shape)}", span)
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
                self._emit(Copy(nxt.view, slice_dim(cur.view, i, tile, nxt.view.dims[i][0])), span)
            cur = nxt

    def _all_gather(self, dst: Dist, src: Dist, dim: int, axis: str, span):
        """dst (dim whole) = the blocks of src (dim split over `axis`) from every tile along it."""
        n = self.W if axis == "x" else self.H
        self.shared.temps += 1
        var = f"%gather{self.shared.temps}"
        self.ranges[var] = (0, n - 1)
        piece = slice_dim(dst.view, dim, IVar(var), src.view.dims[dim][0])
        bcast = Broadcast("row" if axis == "x" else "col", piece, src.view, IVar(var))
        self._emit(Loop(var, 0, n, [bcast]), span)

    def _call(self, target: Dist, e: ast.Call, span):
        """Inline kernel e.func: its params bind to the caller's tensors (redistributed
        if the layouts differ) and its output to the target."""
        callee = self.shared.kernels[e.func]
        if callee.name in self.call_stack:
            raise CompileError(f"kernel '{callee.name}' calls itself", e.span)
        tparams = [p for p in callee.params if isinstance(p, ast.TensorDecl)]
        callee_types = {p.name: p.type for p in callee.params if isinstance(p, ast.ScalarParam)}
        sparams = set(callee_types)
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
            run_time_int = callee_types[name] == "int" and not isinstance(value, (bool, int, float, ICmp, IBool, INot))
            if not run_time_int and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise CompileError(f"'{name}' must be a number known at compile time"
                                   + (" (only int parameters take run-time values)" if callee_types[name] != "int"
                                      else ""), expr.span)
            params[name] = value  # a run-time int (a loop variable, a position) binds as itself
        args = [self._widened_dist(self._dist_value(a), a.span) for a in e.args]  # calls compute in f32
        child = type(self)(callee, self.W, self.H, self.shared, self.ranges, f"{self.prefix}{callee.name}.",
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
            raise CompileError(f"shape mismatch: '{callee.name}' returns {fmt_shape(out_shape)}, the target is "
                               f"{fmt_shape(target.shape)}", span)
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
