"""The cycle-level reference timing model: every wavelet through every router, cycle by cycle.

docs/timing.md ("The machine model") is the specification; this module
implements each of its rules literally and is what the fast closed forms
(timing.py) are checked against. It re-runs a program without computing any
float: control flow depends only on integer registers, so the scalar and
control instructions are executed exactly as core.py executes them, vector
and mmac instructions are charged their cost from timing.py, and transfers
are simulated as streams of wavelets.

Time. ``now`` is the global cycle. A core runs ahead of it through scalar and
vector instructions (nobody else can see them) and stops at the next fabric
instruction (send, recv, sendx, recvx, wait), which issues in its own cycle.
One stepped cycle runs four phases in this order:

1. issue: every core whose next instruction issues at ``now`` issues it; a
   stream starts in its issue cycle and may move a wavelet in it;
2. routers: in ascending tile order, each color's oldest wavelet goes to the
   RAMP output if the queue has room; then each link (N, E, S, W) grants one
   color round-robin, among the colors whose oldest wavelet wants that link
   and has room in the next router;
3. streams: each send stream injects, each receive stream takes, at most one
   wavelet each;
4. end of cycle: a wavelet whose last output took it leaves its router buffer.

Room is reserved the moment it is taken and freed only by step 4 (router
slots) or by step 3, after every RAMP output has been served (queue slots),
so room freed in cycle t is seen from t + 1, and several sources wanting the
last slot of one buffer in one cycle are served in the order above.

A stepped cycle in which nothing moved and nothing issued leaves the state as
it was, so the clock then jumps to the next cycle at which something can
change (a core's next issue, a wavelet or a stream becoming ready); with no
such cycle the run is deadlocked. The numba loop returns to Python every so
often (PAUSED) so that Ctrl-C gets through; pausing changes nothing.

State arrays. T = tiles (index y * width + x), C = colors the program routes
(at least 1), B = router_buffer, Q = queue_depth, S = STREAM_SLOTS (4 async
slots and the blocking slot), R = registers. All times are global cycles.

Per tile: the core (tuple ``core``)
  regs       int32 [T, R]     integer registers; r0 = x, r1 = y at start
  pc         int64 [T]        next instruction (BLOCKED: the blocking instruction)
  status     int64 [T]        RUN, BLOCKED (in a send/recv/wait), HALT, FAULT
  ready      int64 [T]        RUN: cycle pc issues; BLOCKED: cycle the blocking instruction issued
  wait_slot  int64 [T]        BLOCKED: the slot it waits for
  cycles     int64 [T]        cycle the tile's halt completed
  busy       int64 [T]        vector / mmac work cycles (cost - issue_cycles)
  icount     int64 [T]        instructions retired
  fault      int64 [T]        F_* code of a FAULT
Per (tile, slot): the streams (tuple ``streams``)
  st_kind    int64 [T, S]     SEND_STREAM or RECV_STREAM (of the last stream the slot ran)
  st_color   int64 [T, S]
  st_left    int64 [T, S]     wavelets still to move; 0 = complete (the slot is free)
  st_next    int64 [T, S]     first cycle the next wavelet may move: s + i, after wavelet i - 1
  st_done    int64 [T, S]     cycle the stream completed (the cycle after its last move)
  recv_slot  int64 [T, C]     slot of the color's active receive stream, -1 none
Per (tile, color): the router buffer, a FIFO ring (tuple ``routers``)
  rb_ready   int64 [T, C, B]  cycle the wavelet has arrived and may move on
  rb_pend    int64 [T, C, B]  output ports still to take it (bits N, E, S, W, RAMP)
  rb_head    int64 [T, C]     ring position of the oldest wavelet
  rb_count   int64 [T, C]     slots held, wavelets still crossing the link or ramp included
  rb_tile    int64 [T]        wavelets the router holds over all colors (skips idle routers)
  leaving    int64 [T * C, 2] (tile, color) of each head that left this cycle (step 4)
Per (tile, color): the input queue at the ramp, a FIFO ring (tuple ``queues``)
  q_ready    int64 [T, C, Q]  cycle the wavelet is in the queue (after the ramp)
  q_head     int64 [T, C]
  q_count    int64 [T, C]     wavelets queued or on the ramp
Per (tile, direction N, E, S, W): the outgoing link (tuple ``links``)
  rr_last       int64 [T, 4]  color the link granted last (round-robin)
  link_wavelets int64 [T, 4]  wavelets carried
The program (tuple ``prog``)
  code, descs, routes         as in Program (routes padded to one color when it has none)
  nbr        int64 [T, 4]     neighbour tile in each direction, -1 off the grid
  valid      int64 [T]        output-port bits a route may use here (RAMP and on-grid links)
  timing     int64 [8]        MachineConfig.timing_vector() (T_* in timing.py)
Run control
  stack      int64 [2, 4T+8]  the walk of one route check (tile, input port)
  finished   int64 [T * S, 2] (tile, slot) of the streams that completed this cycle
  ctl        int64 [N_CTL]    C_NOW, C_STEPPED, C_RUNNING (tiles not halted), C_ACTIVE
                              (streams not complete), C_WORK (since the last pause),
                              C_LEAVING (entries of `leaving`), C_TILE and C_SLOT (what
                              an outcome is about)
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numba import njit

from . import isa
from .timing import (T_ISSUE, T_LINK, T_QUEUE, T_RAMP, T_ROUTER_BUFFER, mmac_cycles, special_cycles,
                     vector_cycles)
from .vector_ops import desc_base, desc_in_bounds, desc_len

HALT, LI, ADDI, MULI, DIVI, MODI = isa.HALT, isa.LI, isa.ADDI, isa.MULI, isa.DIVI, isa.MODI
ADD, SUB, MUL, DIV, MOD, MINR, MAXR = isa.ADD, isa.SUB, isa.MUL, isa.DIV, isa.MOD, isa.MINR, isa.MAXR
JMP, BEQ, BNE, BLT, BGE, LOOP = isa.JMP, isa.BEQ, isa.BNE, isa.BLT, isa.BGE, isa.LOOP
VFILL, VCOPY, VSCALE, VMASK, MMAC = isa.VFILL, isa.VCOPY, isa.VSCALE, isa.VMASK, isa.MMAC
VDIV, VSQRT, VTANH = isa.VDIV, isa.VSQRT, isa.VTANH
SEND, RECV, SENDX, RECVX, WAIT = isa.SEND, isa.RECV, isa.SENDX, isa.RECVX, isa.WAIT
FIRST_FABRIC_OP = SEND  # SEND..WAIT are the only opcodes from 48 up
BLOCKING_SLOT = isa.BLOCKING_SLOT
PORT_RAMP = isa.PORT_RAMP
RAMP_BIT = 1 << PORT_RAMP

RUN, BLOCKED, HALTED, FAULTED = 0, 1, 2, 3
SEND_STREAM, RECV_STREAM = 1, 2
DONE, PAUSED, DEADLOCK, FAULT, BUDGET = 0, 1, 2, 3, 4
F_PC, F_DIVIDE, F_ADDRESS, F_SLOT_BUSY, F_RECV_TWICE, F_ROUTE_LOOP, F_NO_DESTINATION = 1, 2, 3, 4, 5, 6, 7
FAULT_TEXT = {F_PC: "program counter left the code (missing halt?)",
              F_DIVIDE: "integer division by zero",
              F_ADDRESS: "descriptor outside the tile's SRAM plan",
              F_SLOT_BUSY: "stream started on a slot whose stream is not complete",
              F_RECV_TWICE: "second receive on a color that already has one",
              F_ROUTE_LOOP: "the send's routes loop",
              F_NO_DESTINATION: "the send's routes reach no receiver"}
C_NOW, C_STEPPED, C_RUNNING, C_ACTIVE, C_WORK, C_LEAVING, C_TILE, C_SLOT = range(8)
N_CTL = 8
L_MAX_CYCLES, L_WORK_PER_CALL, L_CORE_CHUNK = range(3)  # the limits vector
NEVER = np.iinfo(np.int64).max
WORK_PER_CALL = 1 << 22  # stepped cycles + instructions per call into numba (about 0.1 s)
CORE_CHUNK = 1 << 20     # instructions a core runs ahead in one go: a long scalar loop still pauses


# ------------------------------------------------------------------ the core
@njit(cache=True)
def _scalar(op, a, b, c, r):
    """One scalar or control instruction, exactly as core.py runs it.
    Returns (next pc offset or target, ok): target -1 means fall through; ok False = division by zero."""
    nxt = -1
    if op == LI:
        r[a] = b
    elif op == ADDI:
        r[a] = r[b] + c
    elif op == MULI:
        r[a] = r[b] * c
    elif op == DIVI or op == MODI or op == DIV or op == MOD:
        den = c if (op == DIVI or op == MODI) else r[c]
        if den == 0:
            return nxt, False
        if op == DIVI or op == DIV:
            r[a] = r[b] // den
        else:
            r[a] = r[b] % den
    elif op == ADD:
        r[a] = r[b] + r[c]
    elif op == SUB:
        r[a] = r[b] - r[c]
    elif op == MUL:
        r[a] = r[b] * r[c]
    elif op == MINR:
        r[a] = min(r[b], r[c])
    elif op == MAXR:
        r[a] = max(r[b], r[c])
    elif op == JMP:
        nxt = a
    elif op == BEQ:
        if r[a] == r[b]:
            nxt = c
    elif op == BNE:
        if r[a] != r[b]:
            nxt = c
    elif op == BLT:
        if r[a] < r[b]:
            nxt = c
    elif op == BGE:
        if r[a] >= r[b]:
            nxt = c
    elif op == LOOP:
        r[a] += 1
        if r[a] < b:
            nxt = c
    return nxt, True


@njit(cache=True)
def _vector_cost(op, a, b, c, descs, r, words, timing):
    """Cycles of a vector or mmac instruction, or -1 when an operand leaves the SRAM plan
    (the operands core.py bounds-checks, in the same cases)."""
    ok = desc_in_bounds(descs, a, desc_base(descs, a, r), words)
    if op != VFILL and op != VMASK:
        ok = ok and desc_in_bounds(descs, b, desc_base(descs, b, r), words)
    if op != VFILL and op != VCOPY and op != VSCALE and op != VMASK and not (op >= VSQRT and op <= VTANH):
        ok = ok and desc_in_bounds(descs, c, desc_base(descs, c, r), words)
    if not ok:
        return -1
    if op == MMAC:
        return mmac_cycles(timing, descs[a, 6], descs[a, 8], descs[b, 8])
    if op >= VDIV and op <= VTANH:
        return special_cycles(timing, desc_len(descs, a))
    return vector_cycles(timing, desc_len(descs, a))


@njit(cache=True)
def _route_check(routes, nbr, valid, src, color, stack):
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
        bits = routes[t, color, stack[1, top]] & valid[t]
        visits += 1
        if visits > 4 * nbr.shape[0] + 1:
            return -1
        if bits & RAMP_BIT:
            found += 1
        for d in range(4):
            if bits >> d & 1:
                if top >= stack.shape[1]:
                    return -1
                stack[0, top] = nbr[t, d]
                stack[1, top] = d ^ 2  # it enters the neighbour from the opposite side
                top += 1
    return found


@njit(cache=True)
def _issue_fabric(i, now, op, a, b, c, prog, core, streams, stack, words, ctl):
    """Issue send / recv / sendx / recvx / wait at cycle now.
    Returns (F_* fault code or 0, slot the core now waits for or -1)."""
    code, descs, routes, nbr, valid, timing = prog
    r = core[0][i]
    st_kind, st_color, st_left, st_next, st_done, recv_slot = streams
    if op == WAIT:
        return 0, (a if st_left[i, a] > 0 else -1)
    if not desc_in_bounds(descs, b, desc_base(descs, b, r), words):
        return F_ADDRESS, -1
    slot = BLOCKING_SLOT if (op == SEND or op == RECV) else c
    if st_left[i, slot] > 0:
        return F_SLOT_BUSY, -1
    receive = op == RECV or op == RECVX
    if receive and recv_slot[i, a] >= 0:
        return F_RECV_TWICE, -1
    if not receive:
        found = _route_check(routes, nbr, valid, i, a, stack)
        if found < 0:
            return F_ROUTE_LOOP, -1
        if found == 0:
            return F_NO_DESTINATION, -1
    n = desc_len(descs, b)
    st_kind[i, slot] = RECV_STREAM if receive else SEND_STREAM
    st_color[i, slot] = a
    st_left[i, slot] = n
    st_next[i, slot] = now
    st_done[i, slot] = now  # an empty stream is complete at once
    if n > 0:
        ctl[C_ACTIVE] += 1
        if receive:
            recv_slot[i, a] = slot
    blocking = op == SEND or op == RECV
    return 0, (slot if blocking and n > 0 else -1)


@njit(cache=True)
def _advance_core(i, now, prog, core, streams, stack, words, limits, ctl):
    """Run tile i's core from its ready cycle: scalar and vector instructions at once (they
    touch nothing shared), a fabric instruction only when it issues at now. Stops at a
    fabric instruction issuing later, a block, a halt or a fault, or after
    limits[L_CORE_CHUNK] instructions. Returns DONE (all well), FAULT or BUDGET; ctl[C_TILE] names the tile."""
    code, descs, routes, nbr, valid, timing = prog
    regs, pc, status, ready, wait_slot, cycles, busy, icount, fault = core
    r = regs[i]
    p = pc[i]
    clk = ready[i]
    issue = timing[T_ISSUE]
    work = 0
    retired = 0
    outcome = DONE
    while True:
        if p < 0 or p >= code.shape[0]:
            status[i] = FAULTED
            fault[i] = F_PC
            outcome = FAULT
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
            failed, waits = _issue_fabric(i, now, op, a, b, c, prog, core, streams, stack, words, ctl)
            if failed:
                status[i] = FAULTED
                fault[i] = failed
                outcome = FAULT
                break
            retired += 1
            if waits >= 0:
                status[i] = BLOCKED
                wait_slot[i] = waits
                break  # pc stays on the blocking instruction; clk = its issue cycle
            clk += issue
            p += 1
            continue
        if op == HALT:
            retired += 1
            clk += issue
            status[i] = HALTED
            cycles[i] = clk
            ctl[C_RUNNING] -= 1
            break
        if op < VFILL:
            target, ok = _scalar(op, a, b, c, r)
            if not ok:
                status[i] = FAULTED
                fault[i] = F_DIVIDE
                outcome = FAULT
                break
            retired += 1
            clk += issue
            p = p + 1 if target < 0 else target
            continue
        cost = _vector_cost(op, a, b, c, descs, r, words, timing)
        if cost < 0:
            status[i] = FAULTED
            fault[i] = F_ADDRESS
            outcome = FAULT
            break
        retired += 1
        clk += cost
        work += cost - issue
        p += 1
    pc[i] = p
    ready[i] = clk
    busy[i] += work
    icount[i] += retired
    ctl[C_WORK] += retired
    if outcome != DONE:
        ctl[C_TILE] = i
    return outcome


# ---------------------------------------------------------- routers and links
# The per-cycle code below never divides: an integer // or % by a variable can raise
# in numba, and a call into code that can raise makes numba keep the reference counts
# of every array argument, which costs more than the whole cycle's work.
@njit(cache=True)
def _wrap(k, n):
    """k mod n for 0 <= k < 2n."""
    return k - n if k >= n else k


@njit(cache=True)
def _push_router(j, color, pend, arrive, routers, B):
    """Append a wavelet to router j's buffer for color (the caller checked for room).
    A wavelet whose route lists no output here goes nowhere, as in fabric.trace_route."""
    rb_ready, rb_pend, rb_head, rb_count, rb_tile, leaving = routers
    if pend == 0:
        return
    k = _wrap(rb_head[j, color] + rb_count[j, color], B)
    rb_ready[j, color, k] = arrive
    rb_pend[j, color, k] = pend
    rb_count[j, color] += 1
    rb_tile[j] += 1


@njit(cache=True)
def _take(i, color, bit, routers, ctl):
    """Output `bit` has taken router i's oldest wavelet of color; after its last output it
    leaves at the end of the cycle (step 4), so its slot is free from the next cycle."""
    rb_ready, rb_pend, rb_head, rb_count, rb_tile, leaving = routers
    h = rb_head[i, color]
    rb_pend[i, color, h] &= ~bit
    if rb_pend[i, color, h] == 0:
        leaving[ctl[C_LEAVING], 0] = i
        leaving[ctl[C_LEAVING], 1] = color
        ctl[C_LEAVING] += 1


@njit(cache=True)
def _wants(i, color, bit, now, routers):
    """Router i's oldest wavelet of color has arrived and has output `bit` still to take."""
    rb_ready, rb_pend, rb_head, rb_count, rb_tile, leaving = routers
    if rb_count[i, color] == 0:
        return False
    h = rb_head[i, color]
    return rb_ready[i, color, h] <= now and (rb_pend[i, color, h] & bit) != 0


@njit(cache=True)
def _ramp_outputs(i, now, routers, queues, Q, ramp, ctl):
    """Each color's oldest wavelet into the tile's queue, where the queue has room."""
    q_ready, q_head, q_count = queues
    moved = 0
    for color in range(q_count.shape[1]):
        if _wants(i, color, RAMP_BIT, now, routers) and q_count[i, color] < Q:
            q_ready[i, color, _wrap(q_head[i, color] + q_count[i, color], Q)] = now + ramp
            q_count[i, color] += 1
            _take(i, color, RAMP_BIT, routers, ctl)
            moved += 1
    return moved


@njit(cache=True)
def _link_outputs(i, now, prog, routers, links, B, link, ctl):
    """Each of router i's links carries one wavelet: round-robin over the colors that want
    it and have room in the next router, starting after the color granted last."""
    code, descs, routes, nbr, valid, timing = prog
    rb_ready, rb_pend, rb_head, rb_count, rb_tile, leaving = routers
    rr_last, link_wavelets = links
    n_colors = rb_count.shape[1]
    moved = 0
    for d in range(4):
        j = nbr[i, d]
        if j < 0:
            continue
        for k in range(n_colors):
            color = _wrap(rr_last[i, d] + 1 + k, n_colors)
            if not _wants(i, color, 1 << d, now, routers) or rb_count[j, color] >= B:
                continue
            port_in = d ^ 2  # it enters the neighbour from the opposite side: N <-> S, E <-> W
            _push_router(j, color, routes[j, color, port_in] & valid[j], now + link, routers, B)
            _take(i, color, 1 << d, routers, ctl)
            rr_last[i, d] = color
            link_wavelets[i, d] += 1
            moved += 1
            break
    return moved


@njit(cache=True)
def _router_phase(now, prog, routers, queues, links, ctl):
    code, descs, routes, nbr, valid, timing = prog
    rb_tile = routers[4]
    B = timing[T_ROUTER_BUFFER]
    moved = 0
    for i in range(rb_tile.shape[0]):
        if rb_tile[i] == 0:
            continue
        moved += _ramp_outputs(i, now, routers, queues, timing[T_QUEUE], timing[T_RAMP], ctl)
        moved += _link_outputs(i, now, prog, routers, links, B, timing[T_LINK], ctl)
    return moved


@njit(cache=True)
def _end_cycle(routers, ctl):
    """Step 4: heads whose last output took them leave; their slots are free next cycle."""
    rb_ready, rb_pend, rb_head, rb_count, rb_tile, leaving = routers
    B = rb_ready.shape[2]
    for k in range(ctl[C_LEAVING]):
        i = leaving[k, 0]
        color = leaving[k, 1]
        rb_head[i, color] = _wrap(rb_head[i, color] + 1, B)
        rb_count[i, color] -= 1
        rb_tile[i] -= 1
    ctl[C_LEAVING] = 0


# ------------------------------------------------------------------ streams
@njit(cache=True)
def _stream_move(i, s, now, prog, streams, routers, queues):
    """Move stream (i, s)'s next wavelet if it can: inject it into the router (held from
    now, there ramp_latency later) or take it from the queue (there by now)."""
    code, descs, routes, nbr, valid, timing = prog
    st_kind, st_color, st_left, st_next, st_done, recv_slot = streams
    q_ready, q_head, q_count = queues
    color = st_color[i, s]
    if st_kind[i, s] == SEND_STREAM:
        if routers[3][i, color] >= timing[T_ROUTER_BUFFER]:
            return False
        _push_router(i, color, routes[i, color, PORT_RAMP] & valid[i], now + timing[T_RAMP], routers,
                     timing[T_ROUTER_BUFFER])
        return True
    if q_count[i, color] == 0 or q_ready[i, color, q_head[i, color]] > now:
        return False
    # freed at once: every RAMP output of this cycle has already been served (step 2)
    q_head[i, color] = _wrap(q_head[i, color] + 1, q_ready.shape[2])
    q_count[i, color] -= 1
    return True


@njit(cache=True)
def _finish_stream(i, s, now, prog, core, streams, stack, words, limits, ctl):
    """Stream (i, s) moved its last wavelet at now: it is complete at now + 1, and a core
    waiting for it goes on at the later of that and its blocking instruction's issue + issue_cycles."""
    st_kind, st_color, st_left, st_next, st_done, recv_slot = streams
    regs, pc, status, ready, wait_slot, cycles, busy, icount, fault = core
    st_done[i, s] = now + 1
    ctl[C_ACTIVE] -= 1
    if st_kind[i, s] == RECV_STREAM:
        recv_slot[i, st_color[i, s]] = -1
    if status[i] != BLOCKED or wait_slot[i] != s:
        return DONE
    status[i] = RUN
    ready[i] = max(now + 1, ready[i] + prog[5][T_ISSUE])
    pc[i] += 1
    return _advance_core(i, now, prog, core, streams, stack, words, limits, ctl)


@njit(cache=True)
def _stream_phase(now, prog, streams, routers, queues, finished):
    """Step 3. Returns (wavelets moved, streams completed); the completed ones are listed
    in finished as (tile, slot) for the caller, whose cores they may resume."""
    st_left, st_next = streams[2], streams[3]
    moved = 0
    n_finished = 0
    for i in range(st_left.shape[0]):
        for s in range(st_left.shape[1]):
            if st_left[i, s] == 0 or st_next[i, s] > now:
                continue
            if not _stream_move(i, s, now, prog, streams, routers, queues):
                continue
            moved += 1
            st_left[i, s] -= 1
            st_next[i, s] = now + 1
            if st_left[i, s] == 0:
                finished[n_finished, 0] = i
                finished[n_finished, 1] = s
                n_finished += 1
    return moved, n_finished


@njit(cache=True)
def _next_event(now, core, streams, routers, queues):
    """After a cycle in which nothing moved or issued: the first later cycle at which
    something can (a core issues, a wavelet arrives, a stream may move); NEVER if none."""
    status, ready = core[2], core[3]
    st_kind, st_color, st_left, st_next = streams[0], streams[1], streams[2], streams[3]
    rb_ready, rb_head, rb_count, rb_tile = routers[0], routers[2], routers[3], routers[4]
    q_ready, q_head, q_count = queues
    nxt = NEVER
    for i in range(status.shape[0]):
        if status[i] == RUN:
            nxt = min(nxt, ready[i])
        if rb_tile[i] > 0:
            for color in range(rb_count.shape[1]):
                if rb_count[i, color] > 0:
                    arrive = rb_ready[i, color, rb_head[i, color]]
                    if arrive > now:  # a head that has arrived and cannot move waits for a move
                        nxt = min(nxt, arrive)
        for s in range(st_left.shape[1]):
            if st_left[i, s] == 0:
                continue
            if st_next[i, s] > now:
                nxt = min(nxt, st_next[i, s])
            color = st_color[i, s]
            if st_kind[i, s] == RECV_STREAM and q_count[i, color] > 0:
                arrive = q_ready[i, color, q_head[i, color]]
                if arrive > now:
                    nxt = min(nxt, arrive)
    return nxt


@njit(cache=True)
def _stuck_tile(core, streams):
    """A tile to name in a deadlock: the first blocked core, else the first live stream's tile."""
    status = core[2]
    st_left = streams[2]
    for i in range(status.shape[0]):
        if status[i] == BLOCKED:
            return i
    for i in range(status.shape[0]):
        for s in range(st_left.shape[1]):
            if st_left[i, s] > 0:
                return i
    return 0


@njit(cache=True)
def simulate(prog, core, streams, routers, queues, links, stack, finished, words, limits, ctl):
    """Step the machine from ctl[C_NOW] until every tile has halted with its streams
    complete (DONE), or DEADLOCK, FAULT, BUDGET, or a pause (PAUSED, call again).

    The cores are run from here, not from a per-cycle helper: a helper that calls into
    the core (which can raise) would pay reference counting on all its arrays every cycle."""
    status, ready = core[2], core[3]
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
        for k in range(n_finished):  # a completed stream may let its core go on
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


class CycleState:
    """Allocates the state arrays of the module docstring for one program."""

    def __init__(self, program):
        cfg = program.config
        T, W, H = cfg.tiles, cfg.width, cfg.height
        C = max(program.routes.shape[1], 1)  # one color at least: numba never sees an empty axis
        B, Q, S = cfg.router_buffer, cfg.queue_depth, isa.STREAM_SLOTS
        routes = np.zeros((T, C, 5), np.uint8)
        routes[:, :program.routes.shape[1]] = program.routes
        tiles = np.arange(T)
        x, y = tiles % W, tiles // W
        nbr = np.full((T, 4), -1, np.int64)
        valid = np.full(T, RAMP_BIT, np.int64)
        for d in range(4):
            nx, ny = x + (0, 1, 0, -1)[d], y + (-1, 0, 1, 0)[d]
            on = (nx >= 0) & (nx < W) & (ny >= 0) & (ny < H)
            nbr[on, d] = (ny * W + nx)[on]
            valid[on] |= 1 << d
        self.prog = (np.ascontiguousarray(program.code, np.int32), np.ascontiguousarray(program.descs, np.int32),
                     routes, nbr, valid, np.asarray(cfg.timing_vector(), np.int64))
        regs = np.zeros((T, cfg.registers), np.int32)
        regs[:, isa.REG_TX] = x
        regs[:, isa.REG_TY] = y
        pc = np.zeros(T, np.int64)
        status = np.full(T, HALTED, np.int64)  # tiles outside every region never run
        for r in program.regions:
            sel = (x >= r.x0) & (x < r.x1) & (y >= r.y0) & (y < r.y1)
            pc[sel] = r.start
            status[sel] = RUN
        z = lambda *shape: np.zeros(shape, np.int64)  # noqa: E731
        self.core = (regs, pc, status, z(T), z(T), z(T), z(T), z(T), z(T))
        self.streams = (z(T, S), z(T, S), z(T, S), z(T, S), z(T, S), np.full((T, C), -1, np.int64))
        self.routers = (z(T, C, B), z(T, C, B), z(T, C), z(T, C), z(T), z(T * C, 2))
        self.queues = (z(T, C, Q), z(T, C), z(T, C))
        self.links = (np.full((T, 4), -1, np.int64), z(T, 4))
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


def run_cycle_level(program, max_cycles: int = 10**10) -> CycleLevelResult:
    """Time `program` with the cycle-level model; raises CycleLevelError on deadlock,
    fault, or a global clock past max_cycles."""
    program.verify()
    return run_state(program, CycleState(program), max_cycles)


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
    regs, pc, status, ready, wait_slot, cycles, busy, icount, fault = state.core
    total = int(cycles.max(initial=0))
    return CycleLevelResult(cycles=total, per_tile_cycles=cycles.copy(), per_tile_busy=busy.copy(),
                            per_tile_instructions=icount.copy(), link_wavelets=state.links[1].copy(),
                            simulated_cycles=max(int(state.ctl[C_NOW]), total),
                            stepped_cycles=int(state.ctl[C_STEPPED]), wall_seconds=wall)


def _outcome_message(program, state, outcome, max_cycles) -> str:
    """One line naming the tile the outcome is about and what it was doing."""
    width = program.config.width
    t = int(state.ctl[C_TILE])
    now = int(state.ctl[C_NOW])
    pc = int(state.core[1][t])
    where = f"tile ({t % width},{t // width})"
    if 0 <= pc < len(program.code):
        where += f" at pc {pc}: {isa.format_instruction(program.code[pc], program.descs, program.fimm).strip()}"
    if outcome == FAULT:
        return f"cycle-level model: {where} faulted: {FAULT_TEXT.get(int(state.core[8][t]), 'fault')}"
    if outcome == BUDGET:
        return (f"cycle-level model: the clock passed the budget of {max_cycles} cycles (max_cycles); "
                f"{where} had not finished")
    st_kind, st_color, st_left = state.streams[0], state.streams[1], state.streams[2]
    live = [f"{'send' if st_kind[t, s] == SEND_STREAM else 'recv'} color {int(st_color[t, s])} slot {s}: "
            f"{int(st_left[t, s])} wavelets left" for s in range(st_left.shape[1]) if st_left[t, s] > 0]
    blocked = int(np.sum(state.core[2] == BLOCKED))
    return (f"cycle-level model: deadlock at cycle {now}: {where} cannot go on "
            f"({'; '.join(live) or 'no stream'}); {blocked} tiles blocked")


__all__ = ["CycleLevelResult", "CycleLevelError", "CycleState", "run_cycle_level", "run_state", "simulate"]
