"""The cycle-level reference timing model: every wavelet through every router, cycle by cycle.

docs/timing.md ("The machine model") is the specification; this module
implements each of its rules literally and is what the fast closed forms
(timing.py) are checked against. It re-runs a program without computing any
float: control flow depends only on integer registers, so the scalar and
control instructions are executed exactly as core.py executes them, vector
and mmac instructions are charged their cost from timing.py, and transfers
are simulated as streams of wavelets.

Time. ``now`` is the global cycle. A core runs ahead of it through scalar and
vector instructions (nothing else can see them) and stops at the next fabric
instruction (send, recv, sendx, recvx, wait), which issues in its own cycle.
One stepped cycle runs four phases in this order:

1. issue: every core whose next instruction issues at ``now`` issues it; a
   stream starts in its issue cycle and may move a wavelet in it. An
   instruction whose slot (or whose color, for a second send or receive on
   it) has a stream still moving stalls until that stream completes, and so
   does a halt while any of the tile's streams moves;
2. routers: in ascending tile order, for each color, the oldest wavelet of
   the first input port's buffer (N, E, S, W, RAMP) that has one for the
   RAMP output goes to the tile's queue if the queue has room (one wavelet
   per color per cycle, as the ramp carries); then each link (N, E, S, W)
   grants one wavelet round-robin over the colors, starting after the color
   it granted last, among the (color, input port) buffers whose oldest
   wavelet wants that link and has room in the next router's buffer for
   that color and the side it comes in from. Two input ports of one color
   wanting one link in one cycle are taken in the order N, E, S, W, RAMP:
   a fixed order inside the color's turn, for two streams of one color
   merging onto one link at once (no run of a bundled kernel measured so
   far does it); the lower port then goes first for as long as it has a
   wavelet for the link, and the queue's one wavelet per color per cycle
   likewise;
3. streams: each send stream injects, each receive stream takes, at most one
   wavelet each; a core waiting for a stream that completes goes on;
4. end of cycle: a wavelet whose last output took it leaves its router buffer.

Buffers. A router holds a FIFO of B wavelets per (color, input port): the
input port is the side a wavelet arrives from (a link going east fills the
neighbour's W buffer), RAMP for the tile's own injections. Only each
buffer's oldest wavelet may move, to every output its route lists for that
input port. Room is reserved the moment it is taken and freed only by step 4
(router slots) or by step 3, after every RAMP output has been served (queue
slots), so room freed in cycle t is seen from t + 1. Every buffer has a
single source (the link from its side, or the tile's one send stream on the
color; a queue, its router's RAMP output), so no two compete for its room.

A stepped cycle in which nothing moved and nothing issued leaves the state as
it was, so the clock then jumps to the next cycle at which something can
change (a core's next issue, a wavelet or a stream becoming ready); with no
such cycle the run is deadlocked. The numba loop returns to Python every so
often (PAUSED) so that Ctrl-C gets through; pausing changes nothing.

State. T = tiles (index y * width + x), C = colors the program routes (at
least 1), B = router_buffer, Q = queue_depth, S = STREAM_SLOTS (four async
slots and the blocking one), R = registers. All times are global cycles. The
numba code takes the arrays as named records (namedtuples), as state.py does.

Program (`Prog`)
  code, descs, routes         as in Program (routes padded to one color when it has none)
  nbr        int64 [T, 4]     neighbour tile in each direction N, E, S, W; -1 off the grid
  valid      int64 [T]        output-port bits a route may use here (RAMP and on-grid links)
  feeds      int64 [TC, 5]    per (tile, color) cell and output port (N, E, S, W, RAMP): bits of
                              the input ports whose route lists that output here (valid ones only)
  links_out  int64 [T]        bits of the links (N, E, S, W) any route of the tile lists (valid ones)
  timing     int64 [8]        MachineConfig.timing_vector() (T_* in timing.py)
Cores (`Core`), per tile
  regs       int32 [T, R]     integer registers; r0 = x, r1 = y at start
  pc         int64 [T]        next instruction (BLOCKED, STALLED: the instruction waiting)
  status     int64 [T]        RUN, BLOCKED (issued a send/recv/wait, waits for its stream),
                              STALLED (waits for a stream before it can issue), HALTED, FAULTED
  ready      int64 [T]        RUN: cycle pc issues; BLOCKED: cycle it issued; STALLED: cycle it tried
  wait_slot  int64 [T]        BLOCKED, STALLED: the slot whose stream it waits for
  cycles     int64 [T]        cycle the tile's halt completed
  busy       int64 [T]        vector / mmac work cycles (cost - issue_cycles)
  icount     int64 [T]        instructions retired
  fault      int64 [T]        F_* code of a FAULTED tile
Streams (`Streams`), per (tile, slot) unless stated
  kind       int64 [T, S]     SEND_STREAM or RECV_STREAM (of the slot's last stream)
  color      int64 [T, S]
  left       int64 [T, S]     wavelets still to move; 0: complete (the slot is free)
  next_move  int64 [T, S]     first cycle the next wavelet may move: s + i, after wavelet i - 1
  recv_slot  int64 [T, C]     slot receiving on each color, -1 none
  send_slot  int64 [T, C]     slot sending on each color, -1 none
Routers (`Routers`): a FIFO ring of B wavelets per (tile, color, input port N, E, S, W, RAMP),
numbered q = (tile * C + color) * 5 + port; cell = tile * C + color numbers a (tile, color)
  arrive     int64 [5TC, B]   cycle the wavelet is in the router and may move on
  pend       int64 [5TC, B]   output ports still to take it (bits N, E, S, W, RAMP)
  head       int64 [5TC]      ring position of the oldest wavelet
  count      int64 [5TC]      slots held, wavelets still crossing the link or ramp included
  ports      int64 [TC]       bits of the input ports whose buffer for the cell holds a wavelet
  tile_of    int64 [TC]       the cell's tile (constant)
  held       int64 [T]        wavelets the router holds over all colors (skips idle routers)
  leaving    int64 [5TC, 2]   (cell, port) of each head that left this cycle (step 4)
Queues (`Queues`), per (tile, color) the input queue at the ramp, a FIFO ring of Q
  arrive     int64 [T, C, Q]  cycle the wavelet is in the queue (after the ramp)
  head       int64 [T, C]
  count      int64 [T, C]     wavelets queued or on the ramp
Links (`Links`), per (tile, direction N, E, S, W): the outgoing link
  rr_last    int64 [T, 4]     color granted last (round-robin); -1 before the first grant
  wavelets   int64 [T, 4]     wavelets carried
Run control
  stack      int64 [2, 4T+8]  the walk of one route check (tile, input port)
  finished   int64 [T * S, 2] (tile, slot) of the streams that completed this cycle
  limits     int64 [3]        L_MAX_CYCLES, L_WORK_PER_CALL, L_CORE_CHUNK
  ctl        int64 [N_CTL]    C_NOW; C_STEPPED; C_RUNNING (tiles not halted); C_ACTIVE (streams
                              moving); C_WORK (since the last pause); C_LEAVING (entries of
                              `leaving`); C_TILE (the tile an outcome is about)
"""
from __future__ import annotations

import time
from collections import namedtuple
from dataclasses import dataclass

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import isa
from .scalar_ops import scalar_step
from .timing import (T_ISSUE, T_LINK, T_QUEUE, T_RAMP, T_ROUTER_BUFFER, mmac_cycles, special_cycles,
                     vector_cycles)
from .vector_ops import desc_base, desc_in_bounds, desc_len

HALT, LI, ADDI, MULI, DIVI, MODI = isa.HALT, isa.LI, isa.ADDI, isa.MULI, isa.DIVI, isa.MODI
ADD, SUB, MUL, DIV, MOD, MINR, MAXR = isa.ADD, isa.SUB, isa.MUL, isa.DIV, isa.MOD, isa.MINR, isa.MAXR
JMP, BEQ, BNE, BLT, BGE, LOOP = isa.JMP, isa.BEQ, isa.BNE, isa.BLT, isa.BGE, isa.LOOP
VFILL, VCOPY, VSCALE, VMASK, VWIDEN, MMAC = isa.VFILL, isa.VCOPY, isa.VSCALE, isa.VMASK, isa.VWIDEN, isa.MMAC
VDIV, VSQRT, VTANH = isa.VDIV, isa.VSQRT, isa.VTANH
SEND, RECV, SENDX, RECVX, WAIT = isa.SEND, isa.RECV, isa.SENDX, isa.RECVX, isa.WAIT
FIRST_FABRIC_OP = SEND  # SEND..WAIT are the only opcodes from 48 up
BLOCKING_SLOT = isa.BLOCKING_SLOT
PORT_RAMP = isa.PORT_RAMP
RAMP_BIT = 1 << PORT_RAMP
N_PORTS = 5  # a router's input ports N, E, S, W, RAMP (isa.PORT_*), one buffer per color on each

Prog = namedtuple("Prog", "code descs routes nbr valid feeds links_out timing")
Core = namedtuple("Core", "regs pc status ready wait_slot cycles busy icount fault")
Streams = namedtuple("Streams", "kind color left next_move recv_slot send_slot")
Routers = namedtuple("Routers", "arrive pend head count ports tile_of held leaving")
Queues = namedtuple("Queues", "arrive head count")
Links = namedtuple("Links", "rr_last wavelets")

RUN, BLOCKED, STALLED, HALTED, FAULTED = 0, 1, 2, 3, 4
SEND_STREAM, RECV_STREAM = 1, 2
DONE, PAUSED, DEADLOCK, FAULT, BUDGET = 0, 1, 2, 3, 4
F_PC, F_DIVIDE, F_ADDRESS, F_ROUTE_LOOP, F_NO_DESTINATION = 1, 2, 3, 4, 5
FAULT_TEXT = {F_PC: "program counter left the code (missing halt?)",
              F_DIVIDE: "integer division by zero",
              F_ADDRESS: "descriptor outside the tile's SRAM plan",
              F_ROUTE_LOOP: "the send's routes loop",
              F_NO_DESTINATION: "the send's routes reach no receiver"}
C_NOW, C_STEPPED, C_RUNNING, C_ACTIVE, C_WORK, C_LEAVING, C_TILE = range(7)
N_CTL = 7
L_MAX_CYCLES, L_WORK_PER_CALL, L_CORE_CHUNK = range(3)
NEVER = np.iinfo(np.int64).max
WORK_PER_CALL = 1 << 22  # stepped cycles + instructions per call into numba (well under a second)
CORE_CHUNK = 1 << 20     # instructions a core runs ahead in one go: a long scalar loop still pauses


# ------------------------------------------------------------- numba plumbing
# Two things make a stepped cycle cheap (together about 40x, measured):
# * simulate() works on borrowed views of the state arrays: the same arrays with no
#   reference count attached. The caller keeps them alive for the whole call; without
#   this, numba counts references with atomic operations whenever an array is taken
#   from a record or handed to a helper, and that was most of the run time;
# * the per-cycle helpers are inlined by numba (@hot): a call would pass every field
#   of every array of its records as a separate argument.
# The per-cycle code also never divides by a variable: in numba that can raise, and
# code that can raise keeps branches and reference counts the cycle does not need.
def _borrow(context, builder, typ, value):
    if isinstance(typ, types.Array):
        ary = cgutils.create_struct_proxy(typ)(context, builder, value=value)
        ary.meminfo = cgutils.get_null_value(ary.meminfo.type)
        ary.parent = cgutils.get_null_value(ary.parent.type)
        return ary._getvalue()
    if isinstance(typ, types.BaseTuple):
        for k, member in enumerate(typ):
            item = _borrow(context, builder, member, builder.extract_value(value, k))
            value = builder.insert_value(value, item, k)
    return value


@intrinsic
def borrowed(typingctx, value):
    """The same array, or record of arrays, with no reference count attached."""
    def codegen(context, builder, sig, args):
        return _borrow(context, builder, sig.args[0], args[0])
    return value(value), codegen


def hot(fn):
    """A per-cycle helper: compiled into its callers (see above)."""
    return njit(cache=True, inline="always")(fn)


@hot
def _wrap(k, n):
    """k mod n for 0 <= k < 2n."""
    return k - n if k >= n else k


# ------------------------------------------------------------------ the core
@njit(cache=True)
def _vector_cost(op, a, b, c, descs, r, words, timing):
    """Cycles of a vector or mmac instruction, or -1 when an operand leaves the SRAM plan
    (the operands core.py bounds-checks, in the same cases)."""
    ok = desc_in_bounds(descs, a, desc_base(descs, a, r), words)
    if op != VFILL and op != VMASK:
        ok = ok and desc_in_bounds(descs, b, desc_base(descs, b, r), words)
    if op != VFILL and op != VCOPY and op != VSCALE and op != VMASK and op != VWIDEN and \
            not (op >= VSQRT and op <= VTANH):
        ok = ok and desc_in_bounds(descs, c, desc_base(descs, c, r), words)
    if not ok:
        return -1
    if op == MMAC:
        return mmac_cycles(timing, descs[a, 6], descs[a, 8], descs[b, 8])
    if op >= VDIV and op <= VTANH:
        return special_cycles(timing, desc_len(descs, a))
    return vector_cycles(timing, desc_len(descs, a))


@njit(cache=True)
def _route_check(prog, src, color, stack):
    """How many tiles a wavelet src injects on color reaches, or -1 when the routes loop
    (the walk of fabric.trace_route, counting only)."""
    stack[0, 0] = src
    stack[1, 0] = PORT_RAMP
    top = 1
    found = 0
    visits = 0
    while top > 0:
        top -= 1
        t = stack[0, top]
        bits = prog.routes[t, color, stack[1, top]] & prog.valid[t]
        visits += 1
        if visits > 4 * prog.nbr.shape[0] + 1:
            return -1
        if bits & RAMP_BIT:
            found += 1
        for d in range(4):
            if bits >> d & 1:
                if top >= stack.shape[1]:
                    return -1
                stack[0, top] = prog.nbr[t, d]
                stack[1, top] = d ^ 2  # it enters the neighbour from the opposite side: N <-> S, E <-> W
                top += 1
    return found


@njit(cache=True)
def _moving_slot(i, streams):
    """A slot of tile i whose stream still moves, or -1."""
    for s in range(streams.left.shape[1]):
        if streams.left[i, s] > 0:
            return s
    return -1


@njit(cache=True)
def _issue_fabric(i, now, op, a, b, c, prog, core, streams, stack, words, ctl):
    """Issue send / recv / sendx / recvx / wait at cycle now. Returns (F_* code or 0,
    issued, slot): issued with slot >= 0 means the core now waits for that slot's
    stream; not issued means a structural hazard: it waits for that slot first."""
    left = streams.left
    if op == WAIT:
        return 0, True, (a if left[i, a] > 0 else -1)
    r = core.regs[i]
    if not desc_in_bounds(prog.descs, b, desc_base(prog.descs, b, r), words):
        return F_ADDRESS, True, -1
    slot = BLOCKING_SLOT if (op == SEND or op == RECV) else c
    receive = op == RECV or op == RECVX
    on_color = streams.recv_slot[i, a] if receive else streams.send_slot[i, a]
    if left[i, slot] > 0:
        return 0, False, slot
    if on_color >= 0:
        return 0, False, on_color
    if not receive:
        found = _route_check(prog, i, a, stack)
        if found <= 0:
            return (F_ROUTE_LOOP if found < 0 else F_NO_DESTINATION), True, -1
    n = desc_len(prog.descs, b)
    streams.kind[i, slot] = RECV_STREAM if receive else SEND_STREAM
    streams.color[i, slot] = a
    streams.left[i, slot] = n
    streams.next_move[i, slot] = now
    if n > 0:  # an empty stream is complete at once
        ctl[C_ACTIVE] += 1
        if receive:
            streams.recv_slot[i, a] = slot
        else:
            streams.send_slot[i, a] = slot
    blocking = op == SEND or op == RECV
    return 0, True, (slot if blocking and n > 0 else -1)


@njit(cache=True)
def _advance_core(i, now, prog, core, streams, stack, words, limits, ctl):
    """Run tile i's core from its ready cycle: scalar and vector instructions at once (they
    touch nothing shared), a fabric instruction only when it issues at now. Stops at a
    fabric instruction issuing later, a block or stall, a halt or a fault, or after
    limits[L_CORE_CHUNK] instructions. Returns DONE (all well), FAULT or BUDGET;
    ctl[C_TILE] names the tile."""
    code, descs, timing = prog.code, prog.descs, prog.timing
    r = core.regs[i]
    p = core.pc[i]
    clk = core.ready[i]
    issue = timing[T_ISSUE]
    work = 0
    retired = 0
    outcome = DONE
    fault = 0
    while True:
        if p < 0 or p >= code.shape[0]:
            fault = F_PC
            break
        if clk > limits[L_MAX_CYCLES]:
            outcome = BUDGET
            break
        if retired >= limits[L_CORE_CHUNK]:
            break  # still RUN; resumes when the clock reaches clk
        op = code[p, 0]
        a = code[p, 1]
        b = code[p, 2]
        c = code[p, 3]
        if op >= FIRST_FABRIC_OP:
            if clk != now:
                break  # it issues in its own cycle, against the fabric as it is then
            fault, issued, slot = _issue_fabric(i, now, op, a, b, c, prog, core, streams, stack, words, ctl)
            if fault:
                break
            if not issued:
                core.status[i] = STALLED
                core.wait_slot[i] = slot
                break  # tries again when that slot's stream completes
            retired += 1
            if slot >= 0:
                core.status[i] = BLOCKED
                core.wait_slot[i] = slot
                break  # pc stays on it; clk = its issue cycle
            clk += issue
            p += 1
            continue
        if op == HALT:
            slot = _moving_slot(i, streams)
            if slot >= 0:  # halt waits for the tile's streams; none can start before clk
                core.status[i] = STALLED
                core.wait_slot[i] = slot
                break
            retired += 1
            clk += issue
            core.status[i] = HALTED
            core.cycles[i] = clk
            ctl[C_RUNNING] -= 1
            break
        if op < VFILL:
            last = r.shape[0] - 1  # a field that names no register reads some register (ignored)
            value, write, target, ok = scalar_step(op, a, b, c, r[min(max(a, 0), last)], r[min(max(b, 0), last)],
                                                   r[min(max(c, 0), last)])
            if not ok:
                fault = F_DIVIDE
                break
            if write:
                r[a] = value
            retired += 1
            clk += issue
            p = p + 1 if target < 0 else target
            continue
        cost = _vector_cost(op, a, b, c, descs, r, words, timing)
        if cost < 0:
            fault = F_ADDRESS
            break
        retired += 1
        clk += cost
        work += cost - issue
        p += 1
    if fault:
        core.status[i] = FAULTED
        core.fault[i] = fault
        outcome = FAULT
    core.pc[i] = p
    core.ready[i] = clk
    core.busy[i] += work
    core.icount[i] += retired
    ctl[C_WORK] += retired
    if outcome != DONE:
        ctl[C_TILE] = i
    return outcome


# ---------------------------------------------------------- routers and links
# Router (color, input port) buffers are numbered q = (tile * C + color) * 5 + port, and
# the pair (tile, color) cell = tile * C + color (so q = cell * 5 + port).
@hot
def _push_router(cell, port, pend, arrive, rt, B):
    """Append a wavelet to the buffer of input `port` of cell (the caller checked for
    room). A wavelet whose route lists no output here goes nowhere, as in
    fabric.trace_route."""
    if pend == 0:
        return
    q = cell * N_PORTS + port
    k = _wrap(rt.head[q] + rt.count[q], B)
    rt.arrive[q, k] = arrive
    rt.pend[q, k] = pend
    rt.count[q] += 1
    rt.ports[cell] |= 1 << port
    rt.held[rt.tile_of[cell]] += 1


@hot
def _take(cell, port, q, bit, rt, ctl):
    """Output `bit` has taken the oldest wavelet of buffer q (input `port` of cell); after
    its last output it leaves at the end of the cycle (step 4), so its slot is free from
    the next cycle."""
    h = rt.head[q]
    rt.pend[q, h] &= ~bit
    if rt.pend[q, h] == 0:
        n = ctl[C_LEAVING]
        rt.leaving[n, 0] = cell
        rt.leaving[n, 1] = port
        ctl[C_LEAVING] = n + 1


@hot
def _wants(q, bit, now, rt):
    """The oldest wavelet of buffer q, which holds one, has arrived and has output `bit`
    still to take."""
    h = rt.head[q]
    return rt.arrive[q, h] <= now and (rt.pend[q, h] & bit) != 0


@hot
def _first_wanting(cell, ports, bit, now, rt):
    """The first input port (N, E, S, W, RAMP) among the bits `ports` of cell whose
    buffer's oldest wavelet wants output `bit` now, or -1."""
    while ports != 0:
        low = ports & -ports
        port = 0 if low == 1 else (1 if low == 2 else (2 if low == 4 else (3 if low == 8 else 4)))
        if _wants(cell * N_PORTS + port, bit, now, rt):
            return port
        ports ^= low
    return -1


@hot
def _ramp_outputs(i, now, feeds, rt, qu, Q, ramp, ctl):
    """Into the tile's queue for each color, where it has room: one wavelet per color, the
    oldest of the first input port (N, E, S, W, RAMP) whose head wants the RAMP output."""
    n_colors = qu.count.shape[1]
    moved = 0
    for color in range(n_colors):
        cell = i * n_colors + color
        held = rt.ports[cell]
        if held == 0:
            continue
        held &= feeds[cell, PORT_RAMP]  # the ports whose route here lists RAMP
        if held == 0 or qu.count[i, color] >= Q:
            continue
        port = _first_wanting(cell, held, RAMP_BIT, now, rt)
        if port >= 0:
            qu.arrive[i, color, _wrap(qu.head[i, color] + qu.count[i, color], Q)] = now + ramp
            qu.count[i, color] += 1
            _take(cell, port, cell * N_PORTS + port, RAMP_BIT, rt, ctl)
            moved += 1
    return moved


@hot
def _link_outputs(i, now, prog, rt, links, B, link, ctl):
    """Each of router i's links carries one wavelet: round-robin over the colors, starting
    after the color granted last; within a color the input ports in the order N, E, S, W,
    RAMP. The first (color, port) buffer whose head wants the link and has room in the
    next router's buffer for that color and the side it comes in from is granted."""
    n_colors = prog.routes.shape[1]
    used = prog.links_out[i]
    moved = 0
    for d in range(4):
        bit = 1 << d
        if used & bit == 0:
            continue
        j = prog.nbr[i, d]
        side = d ^ 2  # it comes in from the opposite side: N <-> S, E <-> W
        for k in range(n_colors):
            color = _wrap(links.rr_last[i, d] + 1 + k, n_colors)
            cell = i * n_colors + color
            held = rt.ports[cell]
            if held == 0:
                continue
            held &= prog.feeds[cell, d]  # the ports whose route here lists this link
            port = _first_wanting(cell, held, bit, now, rt)
            if port < 0:
                continue
            into = j * n_colors + color
            if rt.count[into * N_PORTS + side] >= B:
                continue
            _push_router(into, side, prog.routes[j, color, side] & prog.valid[j], now + link, rt, B)
            _take(cell, port, cell * N_PORTS + port, bit, rt, ctl)
            links.rr_last[i, d] = color
            links.wavelets[i, d] += 1
            moved += 1
            break
    return moved


@hot
def _router_phase(now, prog, rt, qu, links, ctl):
    """Step 2. Returns the outputs that took a wavelet."""
    timing = prog.timing
    moved = 0
    for i in range(rt.held.shape[0]):
        if rt.held[i] == 0:
            continue
        moved += _ramp_outputs(i, now, prog.feeds, rt, qu, timing[T_QUEUE], timing[T_RAMP], ctl)
        moved += _link_outputs(i, now, prog, rt, links, timing[T_ROUTER_BUFFER], timing[T_LINK], ctl)
    return moved


@hot
def _end_cycle(rt, ctl):
    """Step 4: heads whose last output took them leave; their slots are free next cycle."""
    B = rt.arrive.shape[1]
    for k in range(ctl[C_LEAVING]):
        cell = rt.leaving[k, 0]
        port = rt.leaving[k, 1]
        q = cell * N_PORTS + port
        rt.head[q] = _wrap(rt.head[q] + 1, B)
        rt.count[q] -= 1
        if rt.count[q] == 0:
            rt.ports[cell] &= ~(1 << port)
        rt.held[rt.tile_of[cell]] -= 1
    ctl[C_LEAVING] = 0


# ------------------------------------------------------------------ streams
@hot
def _stream_move(i, s, now, prog, st, rt, qu):
    """Move stream (i, s)'s next wavelet if it can: inject it into the router (held from
    now, there ramp_latency later) or take it from the queue (there by now)."""
    timing = prog.timing
    color = st.color[i, s]
    if st.kind[i, s] == SEND_STREAM:
        B = timing[T_ROUTER_BUFFER]
        cell = i * prog.routes.shape[1] + color
        if rt.count[cell * N_PORTS + PORT_RAMP] >= B:
            return False
        _push_router(cell, PORT_RAMP, prog.routes[i, color, PORT_RAMP] & prog.valid[i], now + timing[T_RAMP], rt, B)
        return True
    if qu.count[i, color] == 0 or qu.arrive[i, color, qu.head[i, color]] > now:
        return False
    # freed at once: every RAMP output of this cycle has already been served (step 2)
    qu.head[i, color] = _wrap(qu.head[i, color] + 1, qu.arrive.shape[2])
    qu.count[i, color] -= 1
    return True


@hot
def _stream_phase(now, prog, st, rt, qu, finished):
    """Step 3. Returns (wavelets moved, streams completed); the completed ones are listed
    in finished as (tile, slot) for the caller, whose cores they may let go on."""
    moved = 0
    n_finished = 0
    for i in range(st.left.shape[0]):
        for s in range(st.left.shape[1]):
            if st.left[i, s] == 0 or st.next_move[i, s] > now:
                continue
            if not _stream_move(i, s, now, prog, st, rt, qu):
                continue
            moved += 1
            st.left[i, s] -= 1
            st.next_move[i, s] = now + 1
            if st.left[i, s] == 0:
                finished[n_finished, 0] = i
                finished[n_finished, 1] = s
                n_finished += 1
    return moved, n_finished


@njit(cache=True)
def _finish_stream(i, s, now, prog, core, streams, stack, words, limits, ctl):
    """Stream (i, s) moved its last wavelet at now, so it is complete at now + 1. A core
    blocked on it goes on at the later of that and its issue + issue_cycles; a core
    stalled on it tries its instruction again at the later of that and when it tried."""
    ctl[C_ACTIVE] -= 1
    color = streams.color[i, s]
    if streams.kind[i, s] == RECV_STREAM:
        streams.recv_slot[i, color] = -1
    else:
        streams.send_slot[i, color] = -1
    if core.wait_slot[i] != s or (core.status[i] != BLOCKED and core.status[i] != STALLED):
        return DONE
    if core.status[i] == BLOCKED:
        core.ready[i] = max(now + 1, core.ready[i] + prog.timing[T_ISSUE])
        core.pc[i] += 1
    else:
        core.ready[i] = max(now + 1, core.ready[i])
    core.status[i] = RUN
    return _advance_core(i, now, prog, core, streams, stack, words, limits, ctl)


@njit(cache=True)
def _next_event(now, core, streams, rt, qu):
    """After a cycle in which nothing moved or issued: the first later cycle at which
    something can (a core issues, a wavelet arrives, a stream may move); NEVER if none."""
    nxt = NEVER
    for i in range(core.status.shape[0]):
        if core.status[i] == RUN:
            nxt = min(nxt, core.ready[i])
        if rt.held[i] > 0:
            n_colors = qu.count.shape[1]
            for cell in range(i * n_colors, (i + 1) * n_colors):
                held = rt.ports[cell]
                if held == 0:
                    continue
                for port in range(N_PORTS):
                    if held >> port & 1:
                        q = cell * N_PORTS + port
                        arrive = rt.arrive[q, rt.head[q]]
                        if arrive > now:  # a head that has arrived and cannot move waits for a move
                            nxt = min(nxt, arrive)
        for s in range(streams.left.shape[1]):
            if streams.left[i, s] == 0:
                continue
            if streams.next_move[i, s] > now:
                nxt = min(nxt, streams.next_move[i, s])
            color = streams.color[i, s]
            if streams.kind[i, s] == RECV_STREAM and qu.count[i, color] > 0:
                arrive = qu.arrive[i, color, qu.head[i, color]]
                if arrive > now:
                    nxt = min(nxt, arrive)
    return nxt


@njit(cache=True)
def _stuck_tile(core, streams):
    """A tile to name when the run stops: the first core waiting for a stream, else the
    first tile with a moving stream, else the first tile still running."""
    for i in range(core.status.shape[0]):
        if core.status[i] == BLOCKED or core.status[i] == STALLED:
            return i
    for i in range(core.status.shape[0]):
        if _moving_slot(i, streams) >= 0:
            return i
    for i in range(core.status.shape[0]):
        if core.status[i] == RUN:
            return i
    return 0


@njit(cache=True)
def simulate(prog, core, streams, routers, queues, links, stack, finished, words, limits, ctl):
    """Step the machine from ctl[C_NOW] until every tile has halted (DONE), or DEADLOCK,
    FAULT, BUDGET, or a pause (PAUSED: call again).

    The cores are run from here, not from a per-cycle helper: the core is too large to
    inline, and a call to it from a helper would be paid by that helper every cycle."""
    prog, core, streams, routers, queues, links = (borrowed(prog), borrowed(core), borrowed(streams),
                                                   borrowed(routers), borrowed(queues), borrowed(links))
    stack, finished, limits, ctl = borrowed(stack), borrowed(finished), borrowed(limits), borrowed(ctl)
    status, ready = core.status, core.ready
    now = ctl[C_NOW]
    while True:
        if ctl[C_RUNNING] == 0 and ctl[C_ACTIVE] == 0:
            outcome = DONE
            break
        if now > limits[L_MAX_CYCLES]:
            ctl[C_TILE] = _stuck_tile(core, streams)
            outcome = BUDGET
            break
        if ctl[C_WORK] >= limits[L_WORK_PER_CALL]:
            ctl[C_WORK] = 0
            outcome = PAUSED
            break
        outcome = DONE
        changed = 0
        for i in range(status.shape[0]):  # step 1: the cores whose next instruction issues now
            if status[i] == RUN and ready[i] == now:
                outcome = _advance_core(i, now, prog, core, streams, stack, words, limits, ctl)
                if outcome != DONE:
                    break
                changed += 1
        if outcome != DONE:
            break
        changed += _router_phase(now, prog, routers, queues, links, ctl)  # step 2
        taken, n_finished = _stream_phase(now, prog, streams, routers, queues, finished)  # step 3
        changed += taken
        for k in range(n_finished):
            outcome = _finish_stream(finished[k, 0], finished[k, 1], now, prog, core, streams, stack, words,
                                     limits, ctl)
            if outcome != DONE:
                break
        if outcome != DONE:
            break
        _end_cycle(routers, ctl)  # step 4
        ctl[C_STEPPED] += 1
        ctl[C_WORK] += 1
        if changed:
            now += 1
            continue
        nxt = _next_event(now, core, streams, routers, queues)
        if nxt == NEVER:
            ctl[C_TILE] = _stuck_tile(core, streams)
            outcome = DEADLOCK
            break
        now = nxt
    ctl[C_NOW] = now
    return outcome


# ------------------------------------------------------------------- Python
@dataclass
class CycleLevelResult:
    cycles: int                        # max over tiles
    per_tile_cycles: np.ndarray        # int64 [T] cycle each tile's halt completed (0: no code)
    per_tile_busy: np.ndarray          # int64 [T] vector / mmac work cycles
    per_tile_instructions: np.ndarray  # int64 [T] retired (the functional emulator's icount)
    link_wavelets: np.ndarray          # int64 [T, 4] wavelets over each outgoing link N, E, S, W
    simulated_cycles: int              # global cycles covered, stepped or skipped
    stepped_cycles: int                # cycles stepped one by one
    wall_seconds: float


class CycleLevelError(Exception):
    """A run the cycle-level model cannot finish: deadlock, fault or cycle budget."""


def _add_relays(routes, nbr, valid, link_hops):
    """A logical link of h > 1 physical hops (a repaired fabric, repair.py) becomes a
    chain of h - 1 relay routers: routers with no core that forward, on every color the
    link carries, from the side the link enters to the side it leaves, each with its
    router buffers, as the routers a repaired link passes through do."""
    if link_hops is None or not (link_hops > 1).any():
        return routes, nbr, valid
    T, C = routes.shape[:2]
    chains = [(t, d, int(link_hops[t, d])) for t, d in zip(*np.nonzero(link_hops > 1)) if nbr[t, d] >= 0]
    extra = sum(h - 1 for _, _, h in chains)
    routes = np.concatenate([routes, np.zeros((extra, C, 5), np.uint8)])
    nbr = np.concatenate([nbr, np.full((extra, 4), -1, np.int64)])
    valid = np.concatenate([valid, np.zeros(extra, np.int64)])
    r = T
    for t, d, h in chains:
        colors = (routes[t, :, :] >> d & 1).any(axis=1)  # the colors whose route here lists the link
        target = nbr[t, d]
        nbr[t, d] = r
        for k in range(h - 1):
            routes[r, colors, d ^ 2] = 1 << d
            valid[r] = 1 << d
            nbr[r, d] = r + 1 if k < h - 2 else target
            r += 1
    return routes, nbr, valid


class CycleState:
    """Allocates the state records of the module docstring for one program."""

    def __init__(self, program, link_hops=None):
        cfg = program.config
        T, W, H = cfg.tiles, cfg.width, cfg.height
        C = max(program.routes.shape[1], 1)  # one color at least: numba never sees an empty axis
        B, Q, S = cfg.router_buffer, cfg.queue_depth, isa.STREAM_SLOTS
        tiles = np.arange(T)
        x, y = tiles % W, tiles // W
        nbr = np.full((T, 4), -1, np.int64)
        valid = np.full(T, RAMP_BIT, np.int64)
        for d, (dx, dy) in enumerate(((0, -1), (1, 0), (0, 1), (-1, 0))):  # N, E, S, W
            nx, ny = x + dx, y + dy
            on = (nx >= 0) & (nx < W) & (ny >= 0) & (ny < H)
            nbr[on, d] = (ny * W + nx)[on]
            valid[on] |= 1 << d
        routes = np.zeros((T, C, 5), np.uint8)
        routes[:, :program.routes.shape[1]] = program.routes
        routes, nbr, valid = _add_relays(routes, nbr, valid, link_hops)
        self.tiles = T  # the program's tiles; routers past them are relays (no core)
        T = len(nbr)
        feeds = np.zeros((T, C, N_PORTS), np.int64)
        for port in range(N_PORTS):
            bits = routes[:, :, port].astype(np.int64) & valid[:, None]
            for out in range(N_PORTS):
                feeds[:, :, out] |= (bits >> out & 1) << port
        self.prog = Prog(np.ascontiguousarray(program.code, np.int32), np.ascontiguousarray(program.descs, np.int32),
                         routes, nbr, valid, feeds.reshape(T * C, N_PORTS),
                         np.bitwise_or.reduce(routes.astype(np.int64), axis=(1, 2)) & valid & 0xF,
                         np.asarray(cfg.timing_vector(), np.int64))
        x = np.concatenate([x, np.zeros(T - self.tiles, np.int64)])
        y = np.concatenate([y, np.zeros(T - self.tiles, np.int64)])
        regs = np.zeros((T, cfg.registers), np.int32)
        regs[:, isa.REG_TX] = x
        regs[:, isa.REG_TY] = y
        pc = np.zeros(T, np.int64)
        status = np.full(T, HALTED, np.int64)  # tiles outside every region never run
        for r in program.regions:
            sel = (x >= r.x0) & (x < r.x1) & (y >= r.y0) & (y < r.y1) & (np.arange(T) < self.tiles)
            pc[sel] = r.start
            status[sel] = RUN

        def z(*shape, fill=0):
            return np.full(shape, fill, np.int64)
        self.core = Core(regs, pc, status, ready=z(T), wait_slot=z(T), cycles=z(T), busy=z(T), icount=z(T),
                         fault=z(T))
        self.streams = Streams(kind=z(T, S), color=z(T, S), left=z(T, S), next_move=z(T, S),
                               recv_slot=z(T, C, fill=-1), send_slot=z(T, C, fill=-1))
        P = N_PORTS
        self.routers = Routers(arrive=z(T * C * P, B), pend=z(T * C * P, B), head=z(T * C * P),
                               count=z(T * C * P), ports=z(T * C), tile_of=np.repeat(np.arange(T, dtype=np.int64), C),
                               held=z(T), leaving=z(T * C * P, 2))
        self.queues = Queues(arrive=z(T, C, Q), head=z(T, C), count=z(T, C))
        self.links = Links(rr_last=z(T, 4, fill=-1), wavelets=z(T, 4))
        self.stack = z(2, 4 * T + 8)
        self.finished = z(T * S, 2)
        self.ctl = z(N_CTL)
        self.ctl[C_RUNNING] = int(np.sum(status == RUN))
        self.words = max(int(program.sram_words), 1)  # the functional core's SRAM array length

    def run(self, max_cycles: int, work_per_call: int = WORK_PER_CALL, core_chunk: int = CORE_CHUNK) -> int:
        """One call into numba: DONE, PAUSED (call again), DEADLOCK, FAULT or BUDGET."""
        limits = np.array([max_cycles, work_per_call, core_chunk], np.int64)
        return simulate(self.prog, self.core, self.streams, self.routers, self.queues, self.links, self.stack,
                        self.finished, self.words, limits, self.ctl)


def run_cycle_level(program, max_cycles: int = 10**10, link_hops=None) -> CycleLevelResult:
    """Time `program` with the cycle-level model; raises CycleLevelError on deadlock,
    fault, or a global clock past max_cycles. link_hops: physical hops per link of a
    repaired fabric (repair.py), None for a perfect one."""
    program.verify()
    return run_state(program, CycleState(program, link_hops), max_cycles)


def run_state(program, state: CycleState, max_cycles: int = 10**10, work_per_call: int = WORK_PER_CALL,
              core_chunk: int = CORE_CHUNK) -> CycleLevelResult:
    """Run a fresh CycleState of `program` to the end. The numba loop returns after
    work_per_call stepped cycles and instructions (so that Ctrl-C is seen) and a core
    runs ahead at most core_chunk instructions at a time; neither changes a result."""
    t0 = time.perf_counter()
    while True:
        outcome = state.run(max_cycles, work_per_call, core_chunk)
        if outcome != PAUSED:
            break
    wall = time.perf_counter() - t0
    if outcome != DONE:
        raise CycleLevelError(_outcome_message(program, state, outcome, max_cycles))
    core = state.core
    total = int(core.cycles.max(initial=0))
    T = state.tiles  # relays (cycle_model._add_relays) are not reported
    return CycleLevelResult(cycles=total, per_tile_cycles=core.cycles[:T].copy(), per_tile_busy=core.busy[:T].copy(),
                            per_tile_instructions=core.icount[:T].copy(), link_wavelets=state.links.wavelets[:T].copy(),
                            simulated_cycles=max(int(state.ctl[C_NOW]), total),
                            stepped_cycles=int(state.ctl[C_STEPPED]), wall_seconds=wall)


def _outcome_message(program, state, outcome, max_cycles) -> str:
    """One line naming the tile the outcome is about and what it was doing."""
    width = program.config.width
    t = int(state.ctl[C_TILE])
    now = int(state.ctl[C_NOW])
    pc = int(state.core.pc[t])
    where = f"tile ({t % width},{t // width})"
    if 0 <= pc < len(program.code):
        where += f" at pc {pc}: {isa.format_instruction(program.code[pc], program.descs, program.fimm).strip()}"
    if outcome == FAULT:
        return f"cycle-level model: {where} faulted: {FAULT_TEXT.get(int(state.core.fault[t]), 'fault')}"
    if outcome == BUDGET:
        return (f"cycle-level model: the clock passed the budget of {max_cycles} cycles (max_cycles); "
                f"{where} had not finished")
    st = state.streams
    moving = [f"{'send' if st.kind[t, s] == SEND_STREAM else 'recv'} color {int(st.color[t, s])} slot {s}: "
              f"{int(st.left[t, s])} wavelets left" for s in range(st.left.shape[1]) if st.left[t, s] > 0]
    waiting = int(np.sum((state.core.status == BLOCKED) | (state.core.status == STALLED)))
    return (f"cycle-level model: deadlock at cycle {now}: {where} cannot go on "
            f"({'; '.join(moving) or 'no stream'}); {waiting} tiles wait for streams")


__all__ = ["CycleLevelResult", "CycleLevelError", "CycleState", "run_cycle_level", "run_state", "simulate"]
