"""The tile core: runs one tile's instructions until it blocks, halts or faults.

A tile runs straight through scalar and vector instructions. A send or
receive starts a stream on one of the tile's stream slots (state.py):
`sendx`/`recvx` and the core goes on, `send`/`recv`/`wait` and it blocks
until the fabric phase (fabric.py) completes the stream and wakes it, because
moving wavelets writes other tiles' state. A receive first takes what its
ramp queue already holds. Tiles only touch their own state here, so the
compute phase runs tiles in parallel.
"""
import numpy as np
from numba import njit, prange

from . import isa
from .budget import B_CYCLES, B_INSTRUCTIONS, B_SLICE_CYCLES, B_SLICE_INSTRUCTIONS
from .recorder import record
from .scalar_ops import scalar_step
from .state import (A_RUN, A_VISITS, FAULT_ADDRESS, FAULT_CYCLES, FAULT_DIVIDE, FAULT_LIMIT, FAULT_PC,
                    PH_BLOCKED, PH_COMPUTE, PH_INSTRUCTIONS, PH_SCALAR,
                    SL_COMPLETE, SL_IDLE, SL_RECEIVING, SL_SENDING, ST_FAULT, ST_HALT, ST_WAIT)
from .timing import T_ISSUE, mmac_cycles, special_cycles, vector_cycles
from .trace_events import EV_BLOCKED, EV_MMAC, EV_SCALAR, EV_VECTOR
from .vector_ops import (desc_base, desc_in_bounds, desc_is_dense, desc_len, matmac, scatter, vec_binary, vec_fill,
                         vec_fmac, vec_mask, vec_unary, vec_widen)

HALT = isa.HALT
VFILL, VCOPY, VSCALE, VFMAC, MMAC = isa.VFILL, isa.VCOPY, isa.VSCALE, isa.VFMAC, isa.MMAC
VADD, VMIN, VDIV, VSQRT, VEXP, VTANH = isa.VADD, isa.VMIN, isa.VDIV, isa.VSQRT, isa.VEXP, isa.VTANH
VMASK, VWIDEN, LDW = isa.VMASK, isa.VWIDEN, isa.LDW
INT32_MAX, INT32_MIN = 2147483647, -2147483648
SEND, RECV, SENDX, RECVX, WAIT = isa.SEND, isa.RECV, isa.SENDX, isa.RECVX, isa.WAIT
BLOCKING_SLOT, STREAM_SLOTS = isa.BLOCKING_SLOT, isa.STREAM_SLOTS


@njit(cache=True)
def run_tile(t, code, descs, fimm, tiles, streams, queues, rec, timing, budget):
    """Run tile t from pc[t]; returns the number of instructions retired and the
    status the tile stopped in.

    The tile stops early, still runnable, after a slice of instructions or
    cycles (budget.py), so that the driver sees Ctrl-C; it faults when its
    instruction or cycle budget runs out. A run of scalar instructions is one
    trace event, so that tracing a loop costs one record per vector op.

    The records' arrays are taken into locals, and per instruction no helper
    that branches is passed an array (the accounting is a closure over the
    locals): numba would count references to such an array atomically on every
    call, on a count both threads share (recorder.py)."""
    m = tiles.mem[tiles.mem_span[t, 0]:tiles.mem_span[t, 1]]
    r = tiles.regs[t]
    last_reg = r.shape[0] - 1
    status, wait_slot, wait_pc, blocked = tiles.status, tiles.wait_slot, tiles.wait_pc, tiles.blocked
    kind, slot_color, slot_desc, slot_base = streams.kind, streams.color, streams.desc, streams.base
    slot_done, slot_time, slot_start = streams.done, streams.time, streams.start
    recv_slot, send_slot = streams.recv_slot, streams.send_slot
    fifo, q_head, q_count, q_ready = queues.fifo, queues.head, queues.count, queues.ready
    trace_row, events, n_events = rec.trace_row, rec.events, rec.n_events
    phase_of_pc, phase_acc, phase_span = rec.phase_of_pc, rec.phase_acc, rec.phase_span
    traced = trace_row[t] >= 0             # record is called for traced tiles only
    accounting = phase_of_pc.shape[0] > 0  # --timing off: no per-statement accounting
    words = m.shape[0]
    Q = fifo.shape[2]
    issue = timing[T_ISSUE]
    p = tiles.pc[t]
    clk = tiles.clock[t]
    work = tiles.busy[t]
    done_here = 0
    n_code = code.shape[0]
    instructions_left = budget[B_INSTRUCTIONS] - tiles.icount[t]
    max_cycles = budget[B_CYCLES]
    slice_end = clk + budget[B_SLICE_CYCLES]
    slice_instructions = budget[B_SLICE_INSTRUCTIONS]
    run_start = clk        # the current run of scalar instructions: first cycle, pc, count before it
    run_pc = p
    run_n0 = 0

    def charge(pc, column, cycles, start):
        # one instruction and its cycles (PH_COMPUTE or PH_SCALAR) to instruction pc's phase
        if accounting:
            ph = phase_of_pc[pc]
            phase_acc[t, ph, column] += cycles
            phase_acc[t, ph, PH_INSTRUCTIONS] += 1
            phase_span[t, ph, 0] = min(phase_span[t, ph, 0], start)
            phase_span[t, ph, 1] = max(phase_span[t, ph, 1], start + cycles)

    def resumed(slot, clk, when, pc):
        # The core, stopped at clk, goes on at `when` if that is later: the gap is time
        # blocked on the fabric, charged to instruction pc's phase. Returns the new clock.
        if when > clk:
            if traced:
                record(trace_row, events, n_events, t, EV_BLOCKED, clk, when, slot, -1)
            blocked[t] += when - clk
            if accounting:
                ph = phase_of_pc[pc]
                phase_acc[t, ph, PH_BLOCKED] += when - clk
                phase_span[t, ph, 1] = max(phase_span[t, ph, 1], when)
        return max(clk, when)

    while True:
        if p < 0 or p >= n_code:
            status[t] = ST_FAULT
            tiles.fault[t] = FAULT_PC
            break
        if done_here >= instructions_left:
            status[t] = ST_FAULT
            tiles.fault[t] = FAULT_LIMIT
            break
        if clk > max_cycles:
            status[t] = ST_FAULT
            tiles.fault[t] = FAULT_CYCLES
            break
        if done_here >= slice_instructions or clk > slice_end:
            break  # still ST_RUN: resumes in the same compute phase
        op = code[p, 0]
        a = code[p, 1]
        b = code[p, 2]
        c = code[p, 3]
        if op == HALT:
            busy_slot = -1  # a slot still moving wavelets: halt waits for the tile's streams
            for s in range(STREAM_SLOTS):
                if busy_slot < 0 and (kind[t, s] == SL_SENDING or kind[t, s] == SL_RECEIVING):
                    busy_slot = s
            if busy_slot >= 0:
                status[t] = ST_WAIT
                wait_slot[t] = busy_slot
                wait_pc[t] = p
                break
            charge(p, PH_SCALAR, issue, clk)
            clk += issue
            status[t] = ST_HALT
            done_here += 1
            break
        if op == LDW:  # a value read from SRAM into a register (a token id, a position)
            bd = desc_base(descs, b, r)
            if not desc_in_bounds(descs, b, bd, words):
                status[t] = ST_FAULT
                tiles.fault[t] = FAULT_ADDRESS
                break
            done_here += 1
            charge(p, PH_SCALAR, issue, clk)
            clk += issue
            v = m[bd]
            if v != v:
                r[a] = 0
            elif v >= INT32_MAX:
                r[a] = INT32_MAX
            elif v <= INT32_MIN:
                r[a] = INT32_MIN
            else:
                r[a] = int(v)  # toward zero
            p += 1
            continue
        if op < VFILL:  # scalar: integer registers and control flow
            done_here += 1
            charge(p, PH_SCALAR, issue, clk)
            clk += issue
            # a field that names no register reads some register, which the op ignores
            value, write, target, ok = scalar_step(op, a, b, c, r[min(max(a, 0), last_reg)],
                                                   r[min(max(b, 0), last_reg)], r[min(max(c, 0), last_reg)])
            if not ok:
                status[t] = ST_FAULT
                tiles.fault[t] = FAULT_DIVIDE
                break
            if write:
                r[a] = value
            p = target if target >= 0 else p + 1
            continue
        if op >= SEND:  # streams: the issue cycle counts as scalar work
            if op == WAIT:
                now = kind[t, a]
                charge(p, PH_SCALAR, issue, clk)
                clk += issue
                done_here += 1
                if now == SL_SENDING or now == SL_RECEIVING:
                    status[t] = ST_WAIT
                    wait_slot[t] = a
                    wait_pc[t] = p
                    p += 1
                    break
                if now == SL_COMPLETE:
                    if traced and clk > run_start:
                        record(trace_row, events, n_events, t, EV_SCALAR, run_start, clk, run_pc, done_here - run_n0)
                    clk = resumed(a, clk, slot_time[t, a], p)
                    run_start = clk
                    run_pc = p + 1
                    run_n0 = done_here
                kind[t, a] = SL_IDLE
                p += 1
                continue
            slot = BLOCKING_SLOT if (op == SEND or op == RECV) else c
            base = desc_base(descs, b, r)
            if not desc_in_bounds(descs, b, base, words):
                status[t] = ST_FAULT
                tiles.fault[t] = FAULT_ADDRESS
                break
            sending = op == SEND or op == SENDX
            holder = send_slot[t, a] if sending else recv_slot[t, a]
            now = kind[t, slot]
            if now == SL_SENDING or now == SL_RECEIVING or holder >= 0:
                # a structural hazard, not an error: issue once the earlier stream is done
                status[t] = ST_WAIT
                wait_slot[t] = slot if (now == SL_SENDING or now == SL_RECEIVING) else holder
                wait_pc[t] = p
                break
            if now == SL_COMPLETE and slot_time[t, slot] > clk:
                # the slot's last stream finished after this cycle: the new one issues then
                if traced and clk > run_start:
                    record(trace_row, events, n_events, t, EV_SCALAR, run_start, clk, run_pc, done_here - run_n0)
                clk = resumed(slot, clk, slot_time[t, slot], p)
                run_start = clk
                run_pc = p
                run_n0 = done_here
            charge(p, PH_SCALAR, issue, clk)
            slot_color[t, slot] = a
            slot_desc[t, slot] = b
            slot_base[t, slot] = base
            slot_start[t, slot] = clk
            slot_done[t, slot] = 0
            done_here += 1
            if sending:
                kind[t, slot] = SL_SENDING
                slot_time[t, slot] = clk
                send_slot[t, a] = slot
            else:
                total = desc_len(descs, b)
                got = 0
                take = clk  # the cycle the next wavelet can be taken
                queued = q_count[t, a]
                if queued > 0:
                    k = min(queued, total)
                    head = q_head[t, a]
                    if desc_is_dense(descs, b):  # straight from the ring: no buffer to allocate
                        for j in range(k):
                            m[base + j] = fifo[t, a, (head + j) % Q]
                    else:
                        tmp = np.empty(k, dtype=np.float32)
                        for j in range(k):
                            tmp[j] = fifo[t, a, (head + j) % Q]
                        scatter(m, descs, b, base, 0, k, tmp, 0)
                    q_head[t, a] = (head + k) % Q
                    q_count[t, a] = queued - k
                    # queued wavelets land at most one per cycle, the last at ready
                    take = max(clk + k, q_ready[t, a] + 1 - (queued - k))
                    got = k
                slot_done[t, slot] = got
                slot_time[t, slot] = take
                if got == total:
                    kind[t, slot] = SL_COMPLETE
                else:
                    kind[t, slot] = SL_RECEIVING
                    recv_slot[t, a] = slot
            clk += issue
            p += 1
            if slot == BLOCKING_SLOT:
                if kind[t, slot] == SL_COMPLETE:  # a recv the queue satisfied
                    if traced and clk > run_start:
                        record(trace_row, events, n_events, t, EV_SCALAR, run_start, clk, run_pc, done_here - run_n0)
                    clk = resumed(slot, clk, slot_time[t, slot], p - 1)
                    kind[t, slot] = SL_IDLE
                    run_start = clk
                    run_pc = p
                    run_n0 = done_here
                    continue
                status[t] = ST_WAIT
                wait_slot[t] = slot
                wait_pc[t] = p - 1
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
        if op != VFILL and op != VCOPY and op != VSCALE and op != VMASK and op != VWIDEN and \
                not (op >= VSQRT and op <= VTANH):
            bb = desc_base(descs, c, r)
            ok = ok and desc_in_bounds(descs, c, bb, words)
        if not ok:
            status[t] = ST_FAULT
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
            elif op == VWIDEN:
                vec_widen(m, descs, a, b, bd, ba, c)
            elif op == VCOPY:
                vec_unary(m, descs, a, b, bd, ba, np.float32(0), 0)
            elif op == VSCALE:
                vec_unary(m, descs, a, b, bd, ba, fimm[c], 1)
            elif op == VFMAC:
                vec_fmac(m, descs, a, b, c, bd, ba, bb)
            elif op >= VADD and op <= VMIN:
                vec_binary(m, op, descs, a, b, c, bd, ba, bb)
        if traced and clk > run_start:
            record(trace_row, events, n_events, t, EV_SCALAR, run_start, clk, run_pc, done_here - run_n0)
        if traced and op == MMAC:
            record(trace_row, events, n_events, t, EV_MMAC, clk, clk + cost, p, descs[a, 6] * descs[a, 8] * descs[b, 8])
        elif traced:
            record(trace_row, events, n_events, t, EV_VECTOR, clk, clk + cost, p, op)
        charge(p, PH_COMPUTE, cost, clk)
        clk += cost
        work += cost - issue
        done_here += 1
        p += 1
        run_start = clk
        run_pc = p
        run_n0 = done_here
    if traced and clk > run_start:
        record(trace_row, events, n_events, t, EV_SCALAR, run_start, clk, run_pc, done_here - run_n0)
    tiles.pc[t] = p
    tiles.clock[t] = clk
    tiles.busy[t] = work
    tiles.icount[t] += done_here
    return done_here, status[t]


@njit(cache=True, parallel=True)
def compute_phase(code, descs, fimm, tiles, streams, queues, rec, timing, budget, active):
    """Run every tile of the run list (active.run) until it blocks, halts or its slice
    ends; returns the instructions retired. scheduler.settle_run_list then sorts out
    which tiles stopped how: a tile's status is read there, not here, because numba
    compiles this body with its arrays marked noalias and may reuse a read of it."""
    total = 0
    run = active.run
    active.count[A_VISITS] += active.count[A_RUN]
    for i in prange(active.count[A_RUN]):
        retired, _ = run_tile(run[i], code, descs, fimm, tiles, streams, queues, rec, timing, budget)
        total += retired
    return total
