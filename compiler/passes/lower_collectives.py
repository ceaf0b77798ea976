"""Collectives -> point-to-point Send/Recv on named streams.

Each stream name stands for one route pattern (see route_streams.py), so a
pattern used by many statements needs one color. Statements sharing a stream
are ordered: every tile of a row (column) runs them in the same program order,
each tile finishes receiving one before it sends the next, and multicast moves
in lockstep, so messages never overtake each other on a link.

Sends run asynchronously on stream slot 0 (Send(slot=0) ... Wait(0)), so a
tile sends, receives and computes in the same cycles, as the hardware does:

  broadcast_row(src, from=r)  tile x == r starts sending on 'row_bcast' (multicast
                              both ways along the row, cut-through) and copies
                              locally meanwhile; the rest receive.
  shift(src, east)            each tile starts sending to x+1 on 'east', receives
                              from x-1, then waits for its send: about L cycles.
  rotate(src, east)           as shift, on 'east_ring', whose routes carry the
                              last tile's message back west to tile 0.
  reduce_row(src, op)         a chain along 'east' in ascending x,
                              acc(x) = acc(x-1) op src(x), in chunks of about
                              REDUCE_CHUNK elements: a tile passes chunk j on
                              while it works on chunk j + 1, so the chain is
                              pipelined. The last tile broadcasts each result
                              chunk on 'row_bcast' as soon as it has it. Each element is still summed in
                              ascending tile order; the other tiles receive
                              the result while the chain still runs.
  reduce_row(src, op, order = grouped)
                              the row cut into groups of g = group_size(W)
                              tiles and rooted in the middle: the groups
                              before it chain east inside each group, then
                              over their last tiles on 'east_every<g>' (a
                              route passing the tiles between); the groups
                              after it do the same westward ('west',
                              'west_every<g>'); the first of those hands its
                              sum to the root, which broadcasts R op L both
                              ways: 38 hops in a row on 720 tiles, not 719.
  reduce_row(src, op, segment = n)
                              each run of n tiles (n divides W) reduces on its
                              own, the result broadcast on 'row_bcast_seg<n>',
                              whose routes stop at the runs' edges.
Columns work the same way with y, 'col_bcast', 'south' and 'south_ring'.
"""
from __future__ import annotations

from ..builtins import group_size
from ..composition import slice_dim
from ..spatial_ir import (Broadcast, BroadcastFinish, BroadcastStart, Buffer, Copy, Elementwise, IBool, ICmp, IConst, IfTile, IVar, IBin, Loop,
                          Overwrite, Recv, Reduce, Send, Shift, ShiftFinish, ShiftStart, SpatialKernel, Wait)

AXIS = {"row": ("tx", "width"), "col": ("ty", "height")}
FORWARD = {"row": "east", "col": "south"}
BACKWARD = {"row": "west", "col": "north"}
AXIS_OF_DIRECTION = {"east": "row", "west": "row", "south": "col", "north": "col"}
SEND_SLOT, RECV_SLOT, RESULT_SLOT = 0, 1, 2
REDUCE_CHUNK = 64  # elements per pipelined step of a reduce chain


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
        elif isinstance(op, BroadcastStart):
            out.extend(_broadcast_start(op, k))
        elif isinstance(op, BroadcastFinish):
            if _size(k, op.axis) > 1:
                out += [Wait(op.slot, [op.src, op.dst], span=op.span), Wait(op.self_slot, [op.dst], span=op.span)]
        elif isinstance(op, Shift):
            out.extend(_shift(op, k, temps))
        elif isinstance(op, (ShiftStart, ShiftFinish)):
            out.extend(_shift_part(op, k))
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
    root = ([Send(stream, op.src, slot=SEND_SLOT, span=op.span)] + _copy_unless_same(op.dst, op.src, op.span)
            + [Wait(SEND_SLOT, [op.src], span=op.span)])
    return [IfTile(ICmp("==", _coord(op.axis), op.root), root, [Recv(stream, op.dst, span=op.span)],
                   span=op.span)]


def _broadcast_start(op: BroadcastStart, k):
    """A broadcast whose receive (or, at the root, send) runs on op.slot until its
    BroadcastFinish. The root takes its own copy from the fabric on op.self_slot
    (a route from its RAMP back to its RAMP), so its core does not spend L cycles
    copying while the others' panels arrive."""
    if _size(k, op.axis) == 1:
        return _copy_unless_same(op.dst, op.src, op.span)
    stream = f"{op.axis}_bcast_self"
    root = [Send(stream, op.src, slot=op.slot, span=op.span),
            Recv(stream, op.dst, slot=op.self_slot, span=op.span)]
    return [IfTile(ICmp("==", _coord(op.axis), op.root), root, [Recv(stream, op.dst, slot=op.slot, span=op.span)],
                   span=op.span)]


def _shift(op: Shift, k, temps):
    axis = AXIS_OF_DIRECTION[op.direction]
    n = _size(k, axis)
    c = _coord(axis)
    forward = op.direction in ("east", "south")
    if n == 1:
        return _copy_unless_same(op.dst, op.src, op.span) if op.wrap else []
    stream = op.direction + ("_ring" if op.wrap else "")
    send = Send(stream, op.src, slot=SEND_SLOT, span=op.span)
    wait = Wait(SEND_SLOT, [op.src], span=op.span)
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
        wait = IfTile(ICmp("!=", c, IConst(last)), [wait], [], span=op.span)
        recv = IfTile(ICmp("!=", c, IConst(first)), [recv], [], span=op.span)
        after = [IfTile(ICmp("!=", c, IConst(first)), after, [], span=op.span)] if after else []
    # the send streams out while the receive comes in; the copy waits for both
    return [send, recv, wait] + after


def _shift_part(op, k):
    """The first (streams start) or second half (streams end, landing copied) of a split shift."""
    axis = AXIS_OF_DIRECTION[op.direction]
    n = _size(k, axis)
    c = _coord(axis)
    s = op.span
    if n == 1:
        return _copy_unless_same(op.dst, op.src, s) if op.wrap and isinstance(op, ShiftFinish) else []
    stream = op.direction + ("_ring" if op.wrap else "")
    if isinstance(op, ShiftStart):
        send = [Send(stream, op.src, slot=op.send_slot, span=s)]
        recv = [Recv(stream, op.landing, slot=op.recv_slot, span=s)]
    else:
        send = [Wait(op.send_slot, [op.src], span=s)]
        recv = [Wait(op.recv_slot, [op.landing], span=s)] + _copy_unless_same(op.dst, op.landing, s)
    if op.wrap:
        return send + recv
    last, first = (n - 1, 0) if op.direction in ("east", "south") else (0, n - 1)
    return [IfTile(ICmp("!=", c, IConst(last)), send, [], span=s),
            IfTile(ICmp("!=", c, IConst(first)), recv, [], span=s)]


def _chunking(view):
    """(dim, length, count): cut the view's outermost dimension longer than 1
    into `count` pieces of `length` with about REDUCE_CHUNK elements each."""
    dims = view.dims
    dim = next((i for i, (e, _) in enumerate(dims) if e > 1), 0)
    inner = 1
    for e, _ in dims[dim + 1:]:
        inner *= e
    extent = dims[dim][0]
    length = max([d for d in range(1, extent + 1) if extent % d == 0 and d * inner <= REDUCE_CHUNK] or [1])
    return dim, length, extent // length


def _reduce(op: Reduce, k, temps):
    n = op.segment or _size(k, op.axis)   # each segment of n tiles reduces on its own
    if n == 1:
        return _copy_unless_same(op.dst, op.src, op.span)
    c = _coord(op.axis)
    at = c if n == _size(k, op.axis) else IBin("%", c, IConst(n))  # the place in the segment
    s = op.span

    def temp(name):
        buf = Buffer(f"%{name}{len(temps)}", op.src.shape, "temp", s)
        temps.append(buf)
        return buf.full_view()
    accv = temp("acc")
    dim, length, count = _chunking(accv)
    var = f"%chunk{len(temps)}"
    chunks = (var, dim, length, count)
    bcast = f"{op.axis}_bcast" if n == _size(k, op.axis) else f"{op.axis}_bcast_seg{n}"
    last = ICmp("==", at, IConst(n - 1))
    # The last tile broadcasts each finished chunk at once; the others take the
    # whole result on RESULT_SLOT, posted up front unless it would overwrite src.
    early = op.dst.buffer is not op.src.buffer
    # (chunk by chunk only when the others listen from the start: otherwise they would still be
    # passing their own chunks on, the last tile could not take them, and the chain would deadlock)
    tell = (lambda view: [Send(bcast, view, slot=SEND_SLOT, span=s)]) if early else (lambda view: [])
    g = group_size(n) if op.order == "grouped" else 1
    fresh = [Overwrite(accv, span=s)]
    if g == 1:
        # the last tile combines straight into dst when that cannot disturb src
        into_dst = op.dst.same_as(op.src) or op.dst.buffer is not op.src.buffer
        out = op.dst if into_dst else accv
        chain = _chain(op.op, FORWARD[op.axis], op.src, accv, ICmp("==", at, IConst(0)), last, out, tell, chunks, s)
    else:
        # Rooted in the middle, so that the sums and the result's broadcast each cross
        # half the line. The h groups on the near side chain towards the root, inside
        # each group and then over the groups' far-end tiles on a route that passes the
        # others; the groups beyond do the same the other way. Each side's sum lands in
        # `total` at the tile beside the middle; the far one hands its sum to the root,
        # the near side's last tile, which combines them. src is no longer read then,
        # so the root writes dst.
        h = n // g // 2
        root = h * g - 1
        last = ICmp("==", at, IConst(root))
        into_dst, out = True, op.dst
        total, given = temp("total"), temp("given")
        fresh += [Overwrite(total, span=s), Overwrite(given, span=s)]
        mod_g = IBin("%", c, IConst(g))

        def side(stream, group_first, group_lead, first_lead, last_lead):
            """one side's chains: inside the groups, then over the groups' leads into total"""
            lead = ICmp("==", mod_g, IConst(group_lead))
            groups = _chain(op.op, stream, op.src, accv, ICmp("==", mod_g, IConst(group_first)), lead, accv,
                            lambda view: [], chunks, s)
            if first_lead == last_lead:   # one group: its sum is the side's
                return groups + [IfTile(ICmp("==", at, IConst(last_lead)), [Copy(total, accv, span=s)], [], span=s)]
            leads = _chain(op.op, f"{stream}_every{g}", accv, total, ICmp("==", at, IConst(first_lead)),
                           ICmp("==", at, IConst(last_lead)), total, lambda view: [], chunks, s)
            return groups + [IfTile(lead, leads, [], span=s)]
        back_stream = BACKWARD[op.axis]
        sides = IfTile(ICmp("<=", at, IConst(root)), side(FORWARD[op.axis], 0, g - 1, g - 1, root),
                       side(back_stream, g - 1, 0, n - g, root + 1), span=s)
        # the hand-over, a chain of two tiles: the root's own part is its side's total
        pair = IBool("or", ICmp("==", at, IConst(root)), ICmp("==", at, IConst(root + 1)))
        hand = _chain(op.op, back_stream, total, given, ICmp("==", at, IConst(root + 1)), last, out, tell, chunks, s)
        chain = [sides, IfTile(pair, hand, [], span=s)]
    result = [Recv(bcast, op.dst, slot=RESULT_SLOT, span=s)]
    before = [IfTile(last, [], result, span=s)] if early else []
    take = [Wait(RESULT_SLOT, [op.dst], span=s)] if early else [Recv(bcast, op.dst, span=s)]
    result_view = op.dst if into_dst else accv
    told = [] if early else [Send(bcast, result_view, span=s)]
    back = IfTile(last, told + ([] if into_dst else _copy_unless_same(op.dst, accv, s)), take, span=s)
    # every tile writes all of its temporaries, and of dst when it is not src, before reading them
    fresh += [Overwrite(op.dst, span=s)] if early else []
    return fresh + before + chain + [back]


def _chain(op_name, stream, src, accv, first, last, out, tell, chunks, s):
    """One pipelined chain on `stream`: the tile where `first` holds sends src; each
    other tile receives the running result into accv, chunk by chunk, combines it
    with its own src (running op own) and passes it on, except where `last` holds:
    there the chunk goes to out, then `tell(out's chunk)` runs."""
    var, dim, length, count = chunks

    def piece(view):
        return slice_dim(view, dim, IVar(var), length) if count > 1 else view

    def chunked(body):
        return [Loop(var, 0, count, body, span=s)] if count > 1 else body
    own, part, end = piece(src), piece(accv), piece(out)
    start = chunked([Send(stream, own, slot=SEND_SLOT, span=s)]) + [Wait(SEND_SLOT, [src], span=s)]
    combine = IfTile(last, [Elementwise(op_name, end, part, own, span=s)] + tell(end),
                     [Elementwise(op_name, part, part, own, span=s), Send(stream, part, slot=SEND_SLOT, span=s)],
                     span=s)
    if count > 1:
        # chunk j + 1 comes in (slot RECV_SLOT) while chunk j is combined and passed on
        following = slice_dim(accv, dim, IBin("+", IVar(var), IConst(1)), length)
        prefetch = IfTile(ICmp("<", IVar(var), IConst(count - 1)),
                          [Recv(stream, following, slot=RECV_SLOT, span=s)], [], span=s)
        middle = [Recv(stream, slice_dim(accv, dim, IConst(0), length), slot=RECV_SLOT, span=s),
                  Loop(var, 0, count, [Wait(RECV_SLOT, [accv], span=s), prefetch, combine], span=s)]
    else:
        middle = [Recv(stream, part, span=s), combine]
    middle += [Wait(SEND_SLOT, [accv, out], span=s)]
    return [IfTile(first, start, middle, span=s)]
