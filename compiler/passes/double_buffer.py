"""Double buffering: a loop's broadcast panels arrive while the previous ones are used.

A loop whose body starts with broadcasts into local buffers and then only
computes on them (SUMMA: `a = broadcast_row(..); b = broadcast_col(..);
C += a @ b`) waits for every panel before it can compute. This pass gives
each such buffer a second half and software-pipelines the loop:

    start panel lo into half 0
    for p in lo .. hi:
        finish panel p (half (p - lo) % 2)
        if p < hi - 1: start panel p + 1 into the other half
        compute on half (p - lo) % 2

It is unrolled by two, with the last iteration peeled, so that each copy's
halves are constants and no instruction picks a half or tests for the last
iteration; where the three copies of the body do not fit the SRAM, the
driver takes the loop as above.

A loop that computes on blocks and then rotates them in place (Cannon:
`C += a @ b; a = rotate(a, west); b = rotate(b, north)`) starts the rotations
before the compute instead: the blocks stream out to the neighbours and the
neighbours' blocks land in temporaries while the compute reads the old ones,
and the temporaries are copied in after it.

Two broadcasts in a row along different axes (a row and a column all-gather
staged together) run at the same time: both start, then both finish.

Values are unchanged: the compute reads the same blocks it read before, in
the same order. The driver compiles without this pass when the extra buffers
do not fit the SRAM.
"""
from __future__ import annotations

import copy

from ..spatial_ir import (Broadcast, BroadcastFinish, BroadcastStart, Buffer, IBin, ICmp, IConst, IfTile, INot,
                          IBool, IVar, Loop, Op, Reduce, Shift, ShiftFinish, ShiftStart, SpatialKernel, View, ibin,
                          walk)
from .allocate_sram import op_views

PANEL_SLOTS = (2, 3)  # stream slots for the panels in flight (lower_collectives uses 0 and 1 in-line)
SELF_SLOTS = (0, 1)   # a panel's root receiving its own send (the loop body has no other collectives)
ROTATION_SLOTS = ((0, 1), (2, 3))  # (send, receive) slots of up to two rotations in flight


def double_buffer(k: SpatialKernel, panels: bool = True, rotations: bool = True, unroll: bool = True) -> SpatialKernel:
    """panels: pipeline broadcast loops (SUMMA); rotations: start in-place rotations early (Cannon);
    unroll: unroll pipelined loops by two (constant halves, about three times the code)."""
    k.body = _rewrite(k.body, k, panels and ("unrolled" if unroll else "rolled"), rotations)
    if panels:
        k.body = _pair_all(k.body)
    return k


def _views(op) -> list[View]:
    if isinstance(op, (Broadcast, Shift, Reduce)):
        return [op.dst, op.src]
    return op_views(op)


def _writes(op) -> set:
    """Buffers an op (or any op nested in it) writes."""
    out = set()
    for o in walk([op]):
        if isinstance(o, (Broadcast, Shift, Reduce)):
            out.add(o.dst.buffer)
        elif not isinstance(o, (Loop, IfTile)):
            views = op_views(o)
            if views:
                out.add(views[0].buffer)  # the destination is always the first view
    return out


def _rewrite(ops, k, panels, rotations):
    """panels: False, "rolled" or "unrolled"."""
    out = []
    for op in ops:
        if isinstance(op, Loop):
            op.body = _rewrite(op.body, k, panels, rotations)
            out.extend((panels and _pipeline(op, k, panels == "unrolled"))
                       or [(rotations and _rotate_ahead(op, k)) or op])
        elif isinstance(op, IfTile):
            op.then = _rewrite(op.then, k, panels, rotations)
            op.orelse = _rewrite(op.orelse, k, panels, rotations)
            out.append(op)
        else:
            out.append(op)
    return out


def _pair_all(ops):
    """_overlap_pairs on every op list, after the loops have been pipelined."""
    for op in ops:
        if isinstance(op, Loop):
            op.body = _pair_all(op.body)
        elif isinstance(op, IfTile):
            op.then = _pair_all(op.then)
            op.orelse = _pair_all(op.orelse)
    return _overlap_pairs(ops)


def _overlap_pairs(ops):
    """[row broadcast, column broadcast] with nothing in common -> start both, finish both."""
    out, i = [], 0
    while i < len(ops):
        a, b = ops[i], ops[i + 1] if i + 1 < len(ops) else None
        if isinstance(a, Broadcast) and isinstance(b, Broadcast) and a.axis != b.axis:
            buffers = [a.dst.buffer, a.src.buffer, b.dst.buffer, b.src.buffer]
            if a.dst.buffer not in buffers[1:] and b.dst.buffer not in (a.src.buffer, b.src.buffer):
                pair = list(zip((a, b), PANEL_SLOTS, SELF_SLOTS))
                out += [BroadcastStart(o.axis, o.dst, o.src, o.root, slot, self_slot, span=o.span)
                        for o, slot, self_slot in pair]
                out += [BroadcastFinish(o.axis, o.dst, o.src, slot, self_slot, span=o.span)
                        for o, slot, self_slot in pair]
                i += 2
                continue
        out.append(a)
        i += 1
    return out


def _pipeline(loop: Loop, k, unroll: bool):
    """The pipelined form of loop, or None when it does not have the shape above.
    unroll: two iterations per trip with the last one peeled (constant halves)."""
    n = 0
    while n < len(loop.body) and isinstance(loop.body[n], Broadcast):
        n += 1
    panels, rest = loop.body[:n], loop.body[n:]
    if not 1 <= n <= len(PANEL_SLOTS) or loop.hi - loop.lo < 2 or not rest:
        return None
    if len({b.axis for b in panels}) != n:
        return None  # two panels on one stream would serialise anyway
    targets = [b.dst.buffer for b in panels]
    for b in panels:
        if b.dst.buffer.kind not in ("local", "temp") or not b.dst.same_as(b.dst.buffer.full_view()):
            return None
    written = set().union(*(_writes(o) for o in rest))
    if any(isinstance(o, (Broadcast, Shift, Reduce, Loop)) for o in walk(rest)):
        return None
    if written & (set(targets) | {b.src.buffer for b in panels}):
        return None
    # the panel buffers must not be used anywhere outside this loop
    inside = {id(o) for o in walk(loop.body)}
    for o in walk(k.body):
        if id(o) not in inside and not isinstance(o, (Loop, IfTile)) and \
                any(v.buffer in targets for v in _views(o)):
            return None

    doubled = {}
    for b in panels:
        buf = b.dst.buffer
        twin = Buffer(f"{buf.name}%2", (2,) + tuple(buf.shape), buf.kind, buf.span)
        k.buffers.append(twin)
        doubled[buf] = twin
    k.buffers = [b for b in k.buffers if b not in doubled]  # only the twins are used now

    def half(view: View, which) -> View:
        twin = doubled[view.buffer]
        return View(twin, ibin("+", view.offset, ibin("*", which, IConst(view.buffer.words))), view.dims)

    def start(b: Broadcast, p, which, slot):
        return BroadcastStart(b.axis, half(b.dst, which), _subst_view(b.src, loop.var, p),
                              _subst(b.root, loop.var, p), slot, SELF_SLOTS[PANEL_SLOTS.index(slot)], span=b.span)

    def iteration(p, cur, nxt, ahead_if) -> list:
        """Iteration p (an IExpr) on half cur, starting iteration p + 1 into half nxt
        when ahead_if (True, False or a condition) holds."""
        finish = [BroadcastFinish(b.axis, half(b.dst, cur), b.src, slot, self_slot, span=b.span)
                  for b, slot, self_slot in zip(panels, PANEL_SLOTS, SELF_SLOTS)]
        ahead = [start(b, ibin("+", p, IConst(1)), nxt, slot) for b, slot in zip(panels, PANEL_SLOTS)]
        if ahead_if is False:
            ahead = []
        elif ahead_if is not True:
            ahead = [IfTile(ahead_if, ahead, [], span=loop.span)]
        body = [_replace(_subst_op(o, loop.var, p), lambda v: half(v, cur) if v.buffer in doubled else v)
                for o in rest]
        return finish + ahead + body

    out = [start(b, IConst(loop.lo), IConst(0), slot) for b, slot in zip(panels, PANEL_SLOTS)]
    if not unroll:
        var, step = IVar(loop.var), ibin("-", IVar(loop.var), IConst(loop.lo))
        loop.body = iteration(var, ibin("%", step, IConst(2)), ibin("%", ibin("+", step, IConst(1)), IConst(2)),
                              ICmp("<", var, IConst(loop.hi - 1)))
        return out + [loop]
    # Unrolled by two, so each copy's halves are constants: no per-iteration
    # arithmetic picks the half or tests for the last iteration, which is peeled.
    n, pair = loop.hi - loop.lo, IVar(f"{loop.var}/2")
    pairs = (n - 1) // 2                    # iterations lo + 2q (half 0) and lo + 2q + 1 (half 1)
    first = ibin("+", IConst(loop.lo), ibin("*", pair, IConst(2)))
    zero, one = IConst(0), IConst(1)
    if pairs:
        body = iteration(first, zero, one, True) + iteration(ibin("+", first, one), one, zero, True)
        out.append(Loop(pair.name, 0, pairs, body, span=loop.span))
    if n - 2 * pairs == 2:
        out += iteration(IConst(loop.hi - 2), zero, one, True)
    last = IConst((n - 1) % 2)
    return out + iteration(IConst(loop.hi - 1), last, last, False)


def _rotate_ahead(loop: Loop, k):
    """loop with its trailing in-place shifts started before the compute, or None."""
    if len(loop.body) < 2:
        return None
    tail, compute = loop.body[-1], loop.body[:-1]
    cond, shifts = (tail.cond, tail.then) if isinstance(tail, IfTile) and not tail.orelse else (None, [tail])
    if not 1 <= len(shifts) <= len(ROTATION_SLOTS) or not all(isinstance(o, Shift) for o in shifts):
        return None
    moved = [o.dst.buffer for o in shifts]
    if len(set(moved)) != len(moved) or not all(o.dst.same_as(o.src) for o in shifts):
        return None
    if any(isinstance(o, (Broadcast, Shift, Reduce, Loop)) for o in walk(compute)):
        return None
    if set().union(*(_writes(o) for o in compute)) & set(moved):
        return None
    starts, finishes = [], []
    for o, (send_slot, recv_slot) in zip(shifts, ROTATION_SLOTS):
        landing = Buffer(f"%ahead{len(k.buffers)}", tuple(o.src.shape), "temp", o.span)
        k.buffers.append(landing)
        args = (o.direction, o.dst, o.src, o.wrap, landing.full_view(), send_slot, recv_slot)
        starts.append(ShiftStart(*args, span=o.span))
        finishes.append(ShiftFinish(*args, span=o.span))

    def guarded(ops):
        return ops if cond is None else [IfTile(cond, ops, [], span=tail.span)]
    loop.body = guarded(starts) + compute + guarded(finishes)
    return loop


def _subst(e, var: str, value):
    if isinstance(e, IVar):
        return value if e.name == var else e
    if isinstance(e, IBin):
        return ibin(e.op, _subst(e.lhs, var, value), _subst(e.rhs, var, value))
    if isinstance(e, ICmp):
        return ICmp(e.op, _subst(e.lhs, var, value), _subst(e.rhs, var, value))
    if isinstance(e, IBool):
        return IBool(e.op, _subst(e.lhs, var, value), _subst(e.rhs, var, value))
    if isinstance(e, INot):
        return INot(_subst(e.operand, var, value))
    return e


def _subst_view(v: View, var: str, value) -> View:
    return View(v.buffer, _subst(v.offset, var, value), v.dims)


def _subst_op(op, var: str, value):
    """A copy of op (and the ops nested in it) with the loop variable replaced;
    its views still name the same buffers."""
    new = copy.copy(op)
    for name, field in vars(op).items():
        if isinstance(field, View):
            setattr(new, name, _subst_view(field, var, value))
        elif isinstance(field, (IConst, IVar, IBin, ICmp, IBool, INot)):
            setattr(new, name, _subst(field, var, value))
        elif isinstance(field, list) and field and isinstance(field[0], Op):
            setattr(new, name, [_subst_op(o, var, value) for o in field])
    return new


def _replace(op, fix):
    """op with every View field passed through fix (ops in rest hold views directly)."""
    if isinstance(op, IfTile):
        op.then = [_replace(o, fix) for o in op.then]
        op.orelse = [_replace(o, fix) for o in op.orelse]
        return op
    for name, value in list(vars(op).items()):
        if isinstance(value, View):
            setattr(op, name, fix(value))
    return op
