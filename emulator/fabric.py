"""The fabric: static routes, multicast delivery, bounded queues, back-pressure.

A route at (tile, color) maps each router input port to a set of output ports.
A wavelet a tile injects on color c enters its router at RAMP and follows
those entries hop by hop; every tile whose entry includes RAMP receives it.
The destination set of a send is therefore fixed by the route tables and is
traced at send time (cost: one step per hop, nothing per tile of the grid).

Transfers move whole chunks, not single wavelets. A chunk of a send goes to
all its destinations at once (multicast advances in lockstep, so the slowest
receiver throttles the sender). How much may move is the smallest, over the
destinations, of the free queue space plus, for a destination blocked in a
RECV on that color, what that RECV still needs; the RECV's share is copied
straight into its descriptor and the rest into the queue. This is exactly the
set of states a wavelet-by-wavelet fabric with the same queue depth can reach,
visited in large steps, so deadlocks are the same ones.

The matching is serial and deterministic (ascending tile order); the copies it
decides are recorded as tasks and run in parallel afterwards. No two tasks of
one phase touch the same words: direct copies go to blocked receivers, which
are never senders, and queue copies go to distinct queue slots.
"""
import numpy as np
from numba import njit, prange

from .isa import OPPOSITE, PORT_RAMP
from .state import ST_RECV, ST_RUN, ST_SEND
from .timing import hop_cycles, wire_cycles
from .vector_ops import desc_base, desc_is_dense, desc_len, gather, scatter

ERR_ROUTE_LOOP, ERR_NO_DESTINATION, ERR_CONFLICT = 1, 2, 3  # 0: no error
DX = np.array([0, 1, 0, -1], dtype=np.int64)
DY = np.array([-1, 0, 1, 0], dtype=np.int64)
OPP = np.array(OPPOSITE, dtype=np.int64)


@njit(cache=True)
def trace_route(routes, width, height, src, color, scratch):
    """Follow color's routes from src's ramp.

    scratch is int64 [8, 4 * tiles + 8] (FabricState.route_scratch); rows 0-1
    receive the destinations and their hop counts, rows 2-4 the links used
    (tile, direction, hop index); rows 5-7 are the walk's stack.
    Returns (destinations, links), or (-1, 0) when the routes loop.
    """
    n_tiles = width * height
    dest, dest_hops = scratch[0], scratch[1]
    link_tile, link_dir, link_hop = scratch[2], scratch[3], scratch[4]
    stack_t, stack_p, stack_h = scratch[5], scratch[6], scratch[7]
    stack_t[0] = src
    stack_p[0] = PORT_RAMP
    stack_h[0] = 0
    top = 1
    nd = 0
    nl = 0
    visits = 0
    while top > 0:
        top -= 1
        t = stack_t[top]
        port_in = stack_p[top]
        hops = stack_h[top]
        visits += 1
        if visits > 4 * n_tiles + 1:
            return -1, 0
        bits = routes[t, color, port_in]
        if bits >> PORT_RAMP & 1:
            dest[nd] = t
            dest_hops[nd] = hops
            nd += 1
        x = t % width
        y = t // width
        for p in range(4):
            if bits >> p & 1:
                nx = x + DX[p]
                ny = y + DY[p]
                if nx < 0 or nx >= width or ny < 0 or ny >= height:
                    continue  # the loader rejects such routes; never leave the grid
                link_tile[nl] = t
                link_dir[nl] = p
                link_hop[nl] = hops
                nl += 1
                if top >= stack_t.shape[0]:
                    return -1, 0
                stack_t[top] = ny * width + nx
                stack_p[top] = OPP[p]
                stack_h[top] = hops + 1
                top += 1
    return nd, nl


@njit(cache=True)
def fabric_phase(code, descs, regs, pc, status, xfer, fifo_head, fifo_count, fifo_ready, owner,
                 routes, width, height, Q, clock, icount, sent, link_wavelets, link_free, timing,
                 scratch, tasks, err):
    """Match blocked senders with receivers and queues.

    Returns (wavelets moved, tasks recorded, table full). tasks is an int64
    [capacity, 9] table: (src tile, src desc, src base, src start, dst tile,
    dst desc or -1 for the queue, dst base or color, dst start or slot, count).
    When it fills, the phase stops early; run the tasks and call again.
    On a fabric error, err receives (code, tile, color) and the phase stops.
    """
    n_tiles = width * height
    dest, dest_hops = scratch[0], scratch[1]
    link_tile, link_dir, link_hop = scratch[2], scratch[3], scratch[4]
    moved = 0
    n_tasks = 0
    for t in range(n_tiles):
        if status[t] != ST_SEND:
            continue
        color = code[pc[t], 1]
        d = code[pc[t], 2]
        total = desc_len(descs, d)
        done = xfer[t]
        nd, nl = trace_route(routes, width, height, t, color, scratch)
        if nd < 0:
            err[0], err[1], err[2] = ERR_ROUTE_LOOP, t, color
            return moved, n_tasks, False
        if nd == 0:
            err[0], err[1], err[2] = ERR_NO_DESTINATION, t, color
            return moved, n_tasks, False
        if n_tasks + 2 * nd > tasks.shape[0]:
            return moved, n_tasks, True
        amount = total - done
        for i in range(nd):
            e = dest[i]
            if owner[e, color] != -1 and owner[e, color] != t:
                err[0], err[1], err[2] = ERR_CONFLICT, t, color
                return moved, n_tasks, False
            room = Q - fifo_count[e, color]
            if status[e] == ST_RECV and code[pc[e], 1] == color:
                room += desc_len(descs, code[pc[e], 2]) - xfer[e]
            amount = min(amount, room)
        if amount <= 0:
            continue
        # timing: the chunk starts when sender, waiting receivers and links are free
        start = clock[t]
        for i in range(nd):
            e = dest[i]
            if status[e] == ST_RECV and code[pc[e], 1] == color:
                start = max(start, clock[e])
        for i in range(nl):
            start = max(start, link_free[link_tile[i], link_dir[i]] - hop_cycles(timing, link_hop[i]))
        wire = wire_cycles(timing, amount)
        src_base = desc_base(descs, d, regs[t])
        for i in range(nd):
            e = dest[i]
            arrive = start + hop_cycles(timing, dest_hops[i]) + wire
            direct = 0
            if status[e] == ST_RECV and code[pc[e], 1] == color:
                rd = code[pc[e], 2]
                need = desc_len(descs, rd) - xfer[e]
                direct = min(amount, need)
                row = tasks[n_tasks]
                row[0], row[1], row[2], row[3] = t, d, src_base, done
                row[4], row[5], row[6], row[7], row[8] = e, rd, desc_base(descs, rd, regs[e]), xfer[e], direct
                n_tasks += 1
                xfer[e] += direct
                clock[e] = max(clock[e], arrive)
                if direct == need:
                    xfer[e] = 0
                    pc[e] += 1
                    icount[e] += 1
                    status[e] = ST_RUN
            rest = amount - direct
            if rest > 0:
                slot = (fifo_head[e, color] + fifo_count[e, color]) % Q
                row = tasks[n_tasks]
                row[0], row[1], row[2], row[3] = t, d, src_base, done + direct
                row[4], row[5], row[6], row[7], row[8] = e, -1, color, slot, rest
                n_tasks += 1
                fifo_count[e, color] += rest
                fifo_ready[e, color] = max(fifo_ready[e, color], arrive)
            owner[e, color] = t if done + amount < total else -1
        for i in range(nl):
            link_wavelets[link_tile[i], link_dir[i]] += amount
            link_free[link_tile[i], link_dir[i]] = start + hop_cycles(timing, link_hop[i]) + wire
        clock[t] = start + wire
        sent[t] += amount
        moved += amount
        done += amount
        if done == total:
            xfer[t] = 0
            pc[t] += 1
            icount[t] += 1
            status[t] = ST_RUN
        else:
            xfer[t] = done
    return moved, n_tasks, False


@njit(cache=True, parallel=True)
def run_copy_tasks(tasks, n_tasks, descs, mem, fifo):
    """Carry out the copies a fabric phase decided, in parallel."""
    Q = fifo.shape[2]
    for i in prange(n_tasks):
        src, sd, sbase, sstart = tasks[i, 0], tasks[i, 1], tasks[i, 2], tasks[i, 3]
        dst, dd, dbase, dstart, n = tasks[i, 4], tasks[i, 5], tasks[i, 6], tasks[i, 7], tasks[i, 8]
        if dd >= 0 and desc_is_dense(descs, sd) and desc_is_dense(descs, dd):
            mem[dst, dbase + dstart:dbase + dstart + n] = mem[src, sbase + sstart:sbase + sstart + n]
            continue
        tmp = np.empty(n, dtype=np.float32)
        gather(mem[src], descs, sd, sbase, sstart, n, tmp, 0)
        if dd >= 0:
            scatter(mem[dst], descs, dd, dbase, dstart, n, tmp, 0)
        else:
            for j in range(n):
                fifo[dst, dbase, (dstart + j) % Q] = tmp[j]
