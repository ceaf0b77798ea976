"""Collectives -> point-to-point Send/Recv on named streams.

Each stream name stands for one route pattern (see route_streams.py), so a
pattern used by many statements needs one color. Statements sharing a stream
are ordered: every tile of a row (column) runs them in the same program order,
each tile finishes receiving one before it sends the next, and multicast moves
in lockstep, so messages never overtake each other on a link.

  broadcast_row(src, from=r)  tile x == r sends on 'row_bcast' (multicast both
                              ways along the row) and copies locally; the rest receive.
  shift(src, east)            each tile sends to x+1 and receives from x-1 on 'east';
                              even tiles send first, odd tiles receive first.
  rotate(src, east)           as shift, on 'east_ring', whose routes carry the
                              last tile's message back west to tile 0.
  reduce_row(src, op)         a chain along 'east' in ascending x:
                              acc(x) = acc(x-1) op src(x), then the last tile
                              broadcasts the result on 'row_bcast'.
Columns work the same way with y, 'col_bcast', 'south' and 'south_ring'.
"""
from __future__ import annotations

from ..spatial_ir import (Broadcast, Buffer, Copy, Elementwise, ICmp, IConst, IfTile, IVar, IBin, Loop,
                          Recv, Reduce, Send, Shift, SpatialKernel)

AXIS = {"row": ("tx", "width"), "col": ("ty", "height")}
FORWARD = {"row": "east", "col": "south"}
AXIS_OF_DIRECTION = {"east": "row", "west": "row", "south": "col", "north": "col"}


def lower_collectives(k: SpatialKernel) -> SpatialKernel:
    temps: list[Buffer] = []
    k.body = _lower(k.body, k, temps)
    k.buffers.extend(temps)
    return k


def _lower(ops, k, temps):
    out = []
    for op in ops:
        if isinstance(op, Loop):
            op.body = _lower(op.body, k, temps)
            out.append(op)
        elif isinstance(op, IfTile):
            op.then = _lower(op.then, k, temps)
            op.orelse = _lower(op.orelse, k, temps)
            out.append(op)
        elif isinstance(op, Broadcast):
            out.extend(_broadcast(op, k))
        elif isinstance(op, Shift):
            out.extend(_shift(op, k, temps))
        elif isinstance(op, Reduce):
            out.extend(_reduce(op, k, temps))
        else:
            out.append(op)
    return out


def _size(k, axis):
    return k.width if axis == "row" else k.height


def _coord(axis):
    return IVar(AXIS[axis][0])


def _copy_unless_same(dst, src, span):
    return [] if dst.same_as(src) else [Copy(dst, src, span=span)]


def _broadcast(op: Broadcast, k):
    if _size(k, op.axis) == 1:
        return _copy_unless_same(op.dst, op.src, op.span)
    stream = f"{op.axis}_bcast"
    root = [Send(stream, op.src, span=op.span)] + _copy_unless_same(op.dst, op.src, op.span)
    return [IfTile(ICmp("==", _coord(op.axis), op.root), root, [Recv(stream, op.dst, span=op.span)],
                   span=op.span)]


def _shift(op: Shift, k, temps):
    axis = AXIS_OF_DIRECTION[op.direction]
    n = _size(k, axis)
    c = _coord(axis)
    forward = op.direction in ("east", "south")
    if n == 1:
        return _copy_unless_same(op.dst, op.src, op.span) if op.wrap else []
    stream = op.direction + ("_ring" if op.wrap else "")
    send = Send(stream, op.src, span=op.span)
    # In place (d = rotate(d, ...)): a tile that receives first would overwrite what it has
    # yet to send, so it receives into a temporary and copies afterwards.
    landing, after = op.dst, []
    if op.dst.buffer is op.src.buffer:
        tmp = Buffer(f"%shift{len(temps)}", op.src.shape, "temp", op.span)
        temps.append(tmp)
        landing, after = tmp.full_view(), [Copy(op.dst, tmp.full_view(), span=op.span)]
    recv = Recv(stream, landing, span=op.span)
    if not op.wrap:
        # the last tile in the direction of travel has nobody to send to, the first nobody to hear from
        last, first = (n - 1, 0) if forward else (0, n - 1)
        send = IfTile(ICmp("!=", c, IConst(last)), [send], [], span=op.span)
        recv = IfTile(ICmp("!=", c, IConst(first)), [recv], [], span=op.span)
        # after this tile's own send too: a tile that receives first still has to send its old value
        after = [IfTile(ICmp("!=", c, IConst(first)), after, [], span=op.span)] if after else []
    even = ICmp("==", IBin("%", c, IConst(2)), IConst(0))
    return [IfTile(even, [send, recv], [recv, send], span=op.span)] + after


def _reduce(op: Reduce, k, temps):
    n = _size(k, op.axis)
    if n == 1:
        return _copy_unless_same(op.dst, op.src, op.span)
    c = _coord(op.axis)
    chain = FORWARD[op.axis]
    acc = Buffer(f"%acc{len(temps)}", op.src.shape, "temp", op.span)
    temps.append(acc)
    accv = acc.full_view()
    s = op.span
    first = [Send(chain, op.src, span=s)]
    middle = [Recv(chain, accv, span=s), Elementwise(op.op, accv, accv, op.src, span=s),
              IfTile(ICmp("!=", c, IConst(n - 1)), [Send(chain, accv, span=s)], [], span=s)]
    bcast = f"{op.axis}_bcast"
    back = IfTile(ICmp("==", c, IConst(n - 1)),
                  [Send(bcast, accv, span=s)] + _copy_unless_same(op.dst, accv, s),
                  [Recv(bcast, op.dst, span=s)], span=s)
    return [IfTile(ICmp("==", c, IConst(0)), first, middle, span=s), back]
