"""The tile core: runs one tile's instructions until it blocks, halts or faults.

A tile runs straight through scalar and vector instructions. At a SEND it
stops and leaves the transfer to the fabric phase (fabric.py), because a send
writes other tiles' state. A RECV takes what its ramp queue already holds; if
that is not enough it blocks and the fabric phase delivers the rest straight
into the destination descriptor. Tiles only touch their own state here, so
the compute phase runs tiles in parallel.
"""
import numpy as np
from numba import njit, prange

from . import isa
from .budget import B_CYCLES, B_INSTRUCTIONS, B_SLICE_CYCLES, B_SLICE_INSTRUCTIONS
from .state import (FAULT_ADDRESS, FAULT_CYCLES, FAULT_DIVIDE, FAULT_LIMIT, FAULT_PC, ST_FAULT, ST_HALT, ST_RECV,
                    ST_RUN, ST_SEND)
from .timing import T_ISSUE, mmac_cycles, special_cycles, vector_cycles
from .vector_ops import (desc_base, desc_in_bounds, desc_len, matmac, scatter, vec_binary, vec_fill,
                         vec_fmac, vec_mask, vec_unary)

HALT, LI, ADDI, MULI, DIVI, MODI = isa.HALT, isa.LI, isa.ADDI, isa.MULI, isa.DIVI, isa.MODI
ADD, SUB, MUL, DIV, MOD, MINR, MAXR = isa.ADD, isa.SUB, isa.MUL, isa.DIV, isa.MOD, isa.MINR, isa.MAXR
JMP, BEQ, BNE, BLT, BGE, LOOP = isa.JMP, isa.BEQ, isa.BNE, isa.BLT, isa.BGE, isa.LOOP
VFILL, VCOPY, VSCALE, VFMAC, MMAC = isa.VFILL, isa.VCOPY, isa.VSCALE, isa.VFMAC, isa.MMAC
VADD, VMIN, VDIV, VSQRT, VEXP, VTANH = isa.VADD, isa.VMIN, isa.VDIV, isa.VSQRT, isa.VEXP, isa.VTANH
VMASK = isa.VMASK
SEND, RECV = isa.SEND, isa.RECV


@njit(cache=True)
def run_tile(t, code, descs, fimm, mem, regs, pc, status, fault, xfer, fifo, fifo_head, fifo_count,
             fifo_ready, clock, busy, icount, timing, budget):
    """Run tile t from pc[t]; returns the number of instructions retired.

    The tile stops early, still runnable, after a slice of instructions or
    cycles (budget.py), so that the driver sees Ctrl-C; it faults when its
    instruction or cycle budget runs out."""
    m = mem[t]
    r = regs[t]
    words = m.shape[0]
    Q = fifo.shape[2]
    p = pc[t]
    clk = clock[t]
    work = busy[t]
    done_here = 0
    n_code = code.shape[0]
    max_instructions = budget[B_INSTRUCTIONS]
    max_cycles = budget[B_CYCLES]
    slice_end = clk + budget[B_SLICE_CYCLES]
    slice_instructions = budget[B_SLICE_INSTRUCTIONS]
    while True:
        if p < 0 or p >= n_code:
            status[t] = ST_FAULT
            fault[t] = FAULT_PC
            break
        if icount[t] + done_here >= max_instructions:
            status[t] = ST_FAULT
            fault[t] = FAULT_LIMIT
            break
        if clk > max_cycles:
            status[t] = ST_FAULT
            fault[t] = FAULT_CYCLES
            break
        if done_here >= slice_instructions or clk > slice_end:
            break  # still ST_RUN: resumes in the same compute phase
        op = code[p, 0]
        a = code[p, 1]
        b = code[p, 2]
        c = code[p, 3]
        if op == HALT:
            status[t] = ST_HALT
            done_here += 1
            break
        if op < VFILL:  # scalar: integer registers and control flow
            done_here += 1
            clk += timing[T_ISSUE]
            nxt = p + 1
            if op == LI:
                r[a] = b
            elif op == ADDI:
                r[a] = r[b] + c
            elif op == MULI:
                r[a] = r[b] * c
            elif op == DIVI or op == MODI or op == DIV or op == MOD:
                den = c if (op == DIVI or op == MODI) else r[c]
                if den == 0:
                    status[t] = ST_FAULT
                    fault[t] = FAULT_DIVIDE
                    break
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
            p = nxt
            continue
        if op == SEND:
            if not desc_in_bounds(descs, b, desc_base(descs, b, r), words):
                status[t] = ST_FAULT
                fault[t] = FAULT_ADDRESS
                break
            status[t] = ST_SEND
            break
        if op == RECV:
            base = desc_base(descs, b, r)
            if not desc_in_bounds(descs, b, base, words):
                status[t] = ST_FAULT
                fault[t] = FAULT_ADDRESS
                break
            total = desc_len(descs, b)
            got = xfer[t]
            queued = fifo_count[t, a]
            if queued > 0:
                k = min(queued, total - got)
                head = fifo_head[t, a]
                tmp = np.empty(k, dtype=np.float32)
                for j in range(k):
                    tmp[j] = fifo[t, a, (head + j) % Q]
                scatter(m, descs, b, base, got, k, tmp, 0)
                fifo_head[t, a] = (head + k) % Q
                fifo_count[t, a] = queued - k
                clk = max(clk + k, fifo_ready[t, a])
                got += k
            if got < total:
                xfer[t] = got
                status[t] = ST_RECV
                break
            xfer[t] = 0
            done_here += 1
            clk += timing[T_ISSUE]
            p += 1
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
            status[t] = ST_FAULT
            fault[t] = FAULT_ADDRESS
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
        clk += cost
        work += cost - timing[T_ISSUE]
        done_here += 1
        p += 1
    pc[t] = p
    clock[t] = clk
    busy[t] = work
    icount[t] += done_here
    return done_here


@njit(cache=True, parallel=True)
def compute_phase(code, descs, fimm, mem, regs, pc, status, fault, xfer, fifo, fifo_head, fifo_count,
                  fifo_ready, clock, busy, icount, timing, budget):
    """Run every runnable tile until it blocks (or its slice ends).

    Returns (instructions retired, tiles halted, tiles faulted, tiles still
    runnable), so the driver needs no pass of its own over the status array."""
    total = 0
    halted = 0
    faulted = 0
    running = 0
    for t in prange(pc.shape[0]):
        if status[t] == ST_RUN:
            total += run_tile(t, code, descs, fimm, mem, regs, pc, status, fault, xfer, fifo,
                              fifo_head, fifo_count, fifo_ready, clock, busy, icount, timing, budget)
        if status[t] == ST_HALT:
            halted += 1
        elif status[t] == ST_FAULT:
            faulted += 1
        elif status[t] == ST_RUN:
            running += 1
    return total, halted, faulted, running
