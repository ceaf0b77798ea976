"""The tile core: runs one tile's instructions until it blocks, halts or faults.

A tile runs straight through scalar and vector instructions. A send or
receive starts a stream on one of the tile's stream slots (stream_slots.py):
`sendx`/`recvx` and the core goes on, `send`/`recv`/`wait` and it blocks
until the fabric phase (fabric.py) completes the stream, because moving
wavelets writes other tiles' state. A receive first takes what its ramp queue
already holds. Tiles only touch their own state here, so the compute phase
runs tiles in parallel.
"""
import numpy as np
from numba import njit, prange

from . import isa
from .budget import B_CYCLES, B_INSTRUCTIONS, B_SLICE_CYCLES, B_SLICE_INSTRUCTIONS
from .recorder import account, record
from .scalar_ops import scalar_step
from .state import (FAULT_ADDRESS, FAULT_CYCLES, FAULT_DIVIDE, FAULT_LIMIT, FAULT_PC, PH_COMPUTE, PH_SCALAR,
                    SL_COMPLETE, SL_IDLE, SL_RECEIVING, SL_SENDING, ST_FAULT, ST_HALT, ST_RUN, ST_WAIT)
from .stream_slots import resume_after
from .timing import T_ISSUE, mmac_cycles, special_cycles, vector_cycles
from .trace_events import EV_MMAC, EV_SCALAR, EV_VECTOR
from .vector_ops import (desc_base, desc_in_bounds, desc_len, matmac, scatter, vec_binary, vec_fill,
                         vec_fmac, vec_mask, vec_unary)

HALT = isa.HALT
VFILL, VCOPY, VSCALE, VFMAC, MMAC = isa.VFILL, isa.VCOPY, isa.VSCALE, isa.VFMAC, isa.MMAC
VADD, VMIN, VDIV, VSQRT, VEXP, VTANH = isa.VADD, isa.VMIN, isa.VDIV, isa.VSQRT, isa.VEXP, isa.VTANH
VMASK = isa.VMASK
SEND, RECV, SENDX, RECVX, WAIT = isa.SEND, isa.RECV, isa.SENDX, isa.RECVX, isa.WAIT
BLOCKING_SLOT, STREAM_SLOTS = isa.BLOCKING_SLOT, isa.STREAM_SLOTS


@njit(cache=True, inline="always")
def _busy_slot(streams, t):
    """A slot still moving wavelets, or -1 (halt waits for the tile's streams)."""
    for s in range(STREAM_SLOTS):
        k = streams.kind[t, s]
        if k == SL_SENDING or k == SL_RECEIVING:
            return s
    return -1


@njit(cache=True)
def run_tile(t, code, descs, fimm, tiles, streams, queues, rec, timing, budget):
    """Run tile t from pc[t]; returns the number of instructions retired and the
    status the tile stopped in.

    The tile stops early, still runnable, after a slice of instructions or
    cycles (budget.py), so that the driver sees Ctrl-C; it faults when its
    instruction or cycle budget runs out. A run of scalar instructions is one
    trace event, so that tracing a loop costs one record per vector op."""
    m = tiles.mem[t]
    r = tiles.regs[t]
    trace_row, events, n_events = rec.trace_row, rec.events, rec.n_events  # arrays for the helpers
    phase_of_pc, phase_acc, phase_span = rec.phase_of_pc, rec.phase_acc, rec.phase_span
    words = m.shape[0]
    fifo = queues.fifo
    Q = fifo.shape[2]
    issue = timing[T_ISSUE]
    p = tiles.pc[t]
    clk = tiles.clock[t]
    work = tiles.busy[t]
    done_here = 0
    n_code = code.shape[0]
    max_instructions = budget[B_INSTRUCTIONS]
    max_cycles = budget[B_CYCLES]
    slice_end = clk + budget[B_SLICE_CYCLES]
    slice_instructions = budget[B_SLICE_INSTRUCTIONS]
    run_start = clk        # the current run of scalar instructions: first cycle, pc, count before it
    run_pc = p
    run_n0 = 0
    while True:
        if p < 0 or p >= n_code:
            tiles.status[t] = ST_FAULT
            tiles.fault[t] = FAULT_PC
            break
        if tiles.icount[t] + done_here >= max_instructions:
            tiles.status[t] = ST_FAULT
            tiles.fault[t] = FAULT_LIMIT
            break
        if clk > max_cycles:
            tiles.status[t] = ST_FAULT
            tiles.fault[t] = FAULT_CYCLES
            break
        if done_here >= slice_instructions or clk > slice_end:
            break  # still ST_RUN: resumes in the same compute phase
        op = code[p, 0]
        a = code[p, 1]
        b = code[p, 2]
        c = code[p, 3]
        if op == HALT:
            busy_slot = _busy_slot(streams, t)
            if busy_slot >= 0:  # wait for the tile's own streams, then halt
                tiles.status[t] = ST_WAIT
                tiles.wait_slot[t] = busy_slot
                tiles.wait_pc[t] = p
                break
            account(phase_of_pc, phase_acc, phase_span, t, p, PH_SCALAR, issue, clk, clk + issue)
            clk += issue
            tiles.status[t] = ST_HALT
            done_here += 1
            break
        if op < VFILL:  # scalar: integer registers and control flow
            done_here += 1
            account(phase_of_pc, phase_acc, phase_span, t, p, PH_SCALAR, issue, clk, clk + issue)
            clk += issue
            target, ok = scalar_step(op, a, b, c, r)
            if not ok:
                tiles.status[t] = ST_FAULT
                tiles.fault[t] = FAULT_DIVIDE
                break
            p = target if target >= 0 else p + 1
            continue
        if op >= SEND:  # streams: the issue cycle counts as scalar work
            if op == WAIT:
                kind = streams.kind[t, a]
                if kind == SL_SENDING or kind == SL_RECEIVING:
                    account(phase_of_pc, phase_acc, phase_span, t, p, PH_SCALAR, issue, clk, clk + issue)
                    clk += issue
                    done_here += 1
                    tiles.status[t] = ST_WAIT
                    tiles.wait_slot[t] = a
                    tiles.wait_pc[t] = p
                    p += 1
                    break
                account(phase_of_pc, phase_acc, phase_span, t, p, PH_SCALAR, issue, clk, clk + issue)
                clk += issue
                done_here += 1
                if kind == SL_COMPLETE:
                    if clk > run_start:
                        record(trace_row, events, n_events, t, EV_SCALAR, run_start, clk, run_pc, done_here - run_n0)
                    clk = resume_after(tiles.blocked, trace_row, events, n_events, phase_of_pc, phase_acc, phase_span,
                                   t, a, clk, streams.time[t, a], p, -1)
                    run_start = clk
                    run_pc = p + 1
                    run_n0 = done_here
                streams.kind[t, a] = SL_IDLE
                p += 1
                continue
            slot = BLOCKING_SLOT if (op == SEND or op == RECV) else c
            base = desc_base(descs, b, r)
            if not desc_in_bounds(descs, b, base, words):
                tiles.status[t] = ST_FAULT
                tiles.fault[t] = FAULT_ADDRESS
                break
            sending = op == SEND or op == SENDX
            holder = streams.send_slot[t, a] if sending else streams.recv_slot[t, a]
            kind = streams.kind[t, slot]
            if kind == SL_SENDING or kind == SL_RECEIVING or holder >= 0:
                # a structural hazard, not an error: issue once the earlier stream is done
                tiles.status[t] = ST_WAIT
                tiles.wait_slot[t] = slot if (kind == SL_SENDING or kind == SL_RECEIVING) else holder
                tiles.wait_pc[t] = p
                break
            if kind == SL_COMPLETE and streams.time[t, slot] > clk:
                # the slot's last stream finished after this cycle: the new one issues then
                if clk > run_start:
                    record(trace_row, events, n_events, t, EV_SCALAR, run_start, clk, run_pc, done_here - run_n0)
                clk = resume_after(tiles.blocked, trace_row, events, n_events, phase_of_pc, phase_acc, phase_span,
                                   t, slot, clk, streams.time[t, slot], p, -1)
                run_start = clk
                run_pc = p
                run_n0 = done_here
            account(phase_of_pc, phase_acc, phase_span, t, p, PH_SCALAR, issue, clk, clk + issue)
            streams.color[t, slot] = a
            streams.desc[t, slot] = b
            streams.base[t, slot] = base
            streams.start[t, slot] = clk
            streams.done[t, slot] = 0
            done_here += 1
            if sending:
                streams.kind[t, slot] = SL_SENDING
                streams.time[t, slot] = clk
                streams.send_slot[t, a] = slot
            else:
                total = desc_len(descs, b)
                got = 0
                take = clk  # the cycle the next wavelet can be taken
                queued = queues.count[t, a]
                if queued > 0:
                    k = min(queued, total)
                    head = queues.head[t, a]
                    tmp = np.empty(k, dtype=np.float32)
                    for j in range(k):
                        tmp[j] = fifo[t, a, (head + j) % Q]
                    scatter(m, descs, b, base, 0, k, tmp, 0)
                    queues.head[t, a] = (head + k) % Q
                    queues.count[t, a] = queued - k
                    # queued wavelets land at most one per cycle, the last at ready
                    take = max(clk + k, queues.ready[t, a] + 1 - (queued - k))
                    got = k
                streams.done[t, slot] = got
                streams.time[t, slot] = take
                if got == total:
                    streams.kind[t, slot] = SL_COMPLETE
                else:
                    streams.kind[t, slot] = SL_RECEIVING
                    streams.recv_slot[t, a] = slot
            clk += issue
            p += 1
            if slot == BLOCKING_SLOT:
                if streams.kind[t, slot] == SL_COMPLETE:  # a recv the queue satisfied
                    if clk > run_start:
                        record(trace_row, events, n_events, t, EV_SCALAR, run_start, clk, run_pc, done_here - run_n0)
                    clk = resume_after(tiles.blocked, trace_row, events, n_events, phase_of_pc, phase_acc, phase_span,
                                   t, slot, clk, streams.time[t, slot], p - 1, -1)
                    streams.kind[t, slot] = SL_IDLE
                    run_start = clk
                    run_pc = p
                    run_n0 = done_here
                    continue
                tiles.status[t] = ST_WAIT
                tiles.wait_slot[t] = slot
                tiles.wait_pc[t] = p - 1
                break
            continue
        # vector instructions: every descriptor operand is bounds-checked first
        bd = desc_base(descs, a, r)
        ok = desc_in_bounds(descs, a, bd, words)
        ba = 0
        bb = 0
        if op != VFILL and op != VMASK:
            ba = desc_base(descs, b, r)
            ok = ok and desc_in_bounds(descs, b, ba, words)
        if op != VFILL and op != VCOPY and op != VSCALE and op != VMASK and not (op >= VSQRT and op <= VTANH):
            bb = desc_base(descs, c, r)
            ok = ok and desc_in_bounds(descs, c, bb, words)
        if not ok:
            tiles.status[t] = ST_FAULT
            tiles.fault[t] = FAULT_ADDRESS
            break
        if op == MMAC:
            cost = mmac_cycles(timing, descs[a, 6], descs[a, 8], descs[b, 8])
            matmac(m, descs, a, b, c, bd, ba, bb)
        elif op >= VDIV and op <= VTANH:
            cost = special_cycles(timing, desc_len(descs, a))
            if op == VDIV:
                vec_binary(m, op, descs, a, b, c, bd, ba, bb)
            else:
                vec_unary(m, descs, a, b, bd, ba, np.float32(0), op)
        else:
            cost = vector_cycles(timing, desc_len(descs, a))
            if op == VFILL:
                vec_fill(m, descs, a, bd, fimm[b])
            elif op == VMASK:
                vec_mask(m, descs, a, bd, fimm[b], r[c])
            elif op == VCOPY:
                vec_unary(m, descs, a, b, bd, ba, np.float32(0), 0)
            elif op == VSCALE:
                vec_unary(m, descs, a, b, bd, ba, fimm[c], 1)
            elif op == VFMAC:
                vec_fmac(m, descs, a, b, c, bd, ba, bb)
            elif op >= VADD and op <= VMIN:
                vec_binary(m, op, descs, a, b, c, bd, ba, bb)
        if clk > run_start:
            record(trace_row, events, n_events, t, EV_SCALAR, run_start, clk, run_pc, done_here - run_n0)
        if op == MMAC:
            record(trace_row, events, n_events, t, EV_MMAC, clk, clk + cost, p, descs[a, 6] * descs[a, 8] * descs[b, 8])
        else:
            record(trace_row, events, n_events, t, EV_VECTOR, clk, clk + cost, p, op)
        account(phase_of_pc, phase_acc, phase_span, t, p, PH_COMPUTE, cost, clk, clk + cost)
        clk += cost
        work += cost - issue
        done_here += 1
        p += 1
        run_start = clk
        run_pc = p
        run_n0 = done_here
    if clk > run_start:
        record(trace_row, events, n_events, t, EV_SCALAR, run_start, clk, run_pc, done_here - run_n0)
    tiles.pc[t] = p
    tiles.clock[t] = clk
    tiles.busy[t] = work
    tiles.icount[t] += done_here
    return done_here, tiles.status[t]


@njit(cache=True, parallel=True)
def compute_phase(code, descs, fimm, tiles, streams, queues, rec, timing, budget):
    """Run every runnable tile until it blocks (or its slice ends).

    Returns (instructions retired, tiles halted, tiles faulted, tiles still
    runnable), so the driver needs no pass of its own over the status array."""
    total = 0
    halted = 0
    faulted = 0
    running = 0
    status = tiles.status
    for t in prange(status.shape[0]):
        now = status[t]
        if now == ST_RUN:
            # the status run_tile returns, not status[t] read again: numba compiles this
            # body with its arrays marked noalias, so the read above was reused, every
            # tile counted as still running and the driver went through Python per round
            retired, now = run_tile(t, code, descs, fimm, tiles, streams, queues, rec, timing, budget)
            total += retired
        if now == ST_HALT:
            halted += 1
        elif now == ST_FAULT:
            faulted += 1
        elif now == ST_RUN:
            running += 1
    return total, halted, faulted, running
