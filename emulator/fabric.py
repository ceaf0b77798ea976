"""The fabric: static routes, multicast delivery, bounded queues, back-pressure.

A route at (tile, color) maps each router input port to a set of output ports.
A wavelet a tile injects on color c enters its router at RAMP and follows
those entries hop by hop; every tile whose entry includes RAMP receives it.
The destination set of a send is therefore fixed by the route tables and is
traced at send time (cost: one step per hop, nothing per tile of the grid).

Transfers move whole chunks, not single wavelets. A chunk of a send stream
goes to all its destinations at once (multicast advances in lockstep, so the
slowest receiver throttles the sender). How much may move is the smallest,
over the destinations, of the free queue space plus, for a destination with a
receive stream on that color, what that stream still needs; the stream's
share is copied straight into its descriptor and the rest into the queue.
This is exactly the set of states a wavelet-by-wavelet fabric with the same
queue depth can reach, visited in large steps, so deadlocks are the same ones.

Timing is the fast model of docs/timing.md (formulas in timing.py): a chunk
is injected from the later of the stream's next free cycle, what back-pressure
allows (the receiver's next take minus what the fabric holds) and the links'
reservations; links that several streams of this phase use at overlapping
times are shared round-robin, by color.

The matching is serial and deterministic (ascending tile, then slot); the
copies it decides are recorded as tasks and run in parallel afterwards. No two
tasks of one phase touch the same words: direct copies go to distinct receive
streams, and queue copies go to distinct queue slots.
"""
import numpy as np
from numba import njit, prange

from .isa import OPPOSITE, PORT_RAMP, STREAM_SLOTS
from .recorder import record
from .state import SL_IDLE, SL_SENDING, ST_RUN, ST_WAIT
from .stream_slots import close_slot, resume_after
from .timing import T_DETAIL, backpressure_delay, fabric_capacity, link_offset, stream_latency
from .trace_events import EV_BACKPRESSURE, EV_RECV, EV_SEND
from .vector_ops import desc_is_dense, gather, desc_len, scatter

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


@njit(cache=True, inline="always")
def _popcount(v):
    n = 0
    while v:
        v &= v - 1
        n += 1
    return n


@njit(cache=True)
def _mark_links(streams, links, routes, width, height, descs, timing, mark):
    """mark: note on each link which colors' streams would use it in this phase,
    when the last of them arrives (and which colors arrive then), when the
    first would leave, and the link's reservation before the phase; otherwise
    clear those notes."""
    n_tiles = width * height
    scratch = links.scratch
    link_tile, link_dir, link_hop = scratch[2], scratch[3], scratch[4]
    for t in range(n_tiles):
        for s in range(STREAM_SLOTS):
            if streams.kind[t, s] != SL_SENDING:
                continue
            color = streams.color[t, s]
            nd, nl = trace_route(routes, width, height, t, color, scratch)
            if nd <= 0:
                continue
            bit = np.int64(1) << color
            rest = desc_len(descs, streams.desc[t, s]) - streams.done[t, s]
            for i in range(nl):
                lt, ld = link_tile[i], link_dir[i]
                if not mark:
                    links.users[lt, ld] = 0
                    continue
                arrive = streams.time[t, s] + link_offset(timing, link_hop[i])
                w = links.window[lt, ld]
                if links.users[lt, ld] == 0:
                    w[0], w[1], w[2], w[3] = arrive, arrive + rest, links.free[lt, ld], bit
                else:
                    if arrive > w[0]:
                        w[0], w[3] = arrive, bit
                    elif arrive == w[0]:
                        w[3] |= bit
                    w[1] = min(w[1], arrive + rest)
                links.users[lt, ld] |= bit


@njit(cache=True, inline="always")
def _crossing(idx, alone_from, alone, shared_from, share):
    """Cycle at which wavelet idx of a chunk crosses its busiest link: the first
    `alone` wavelets one per cycle from alone_from, then one every `share`
    cycles from shared_from (round-robin with the other streams)."""
    if idx < alone:
        return alone_from + idx
    return shared_from + share * (idx - alone)


@njit(cache=True, inline="always")
def _finish(tiles, streams, trace_row, events, n_events, phase_of_pc, phase_acc, phase_span, t, slot, when, peer):
    """A stream of tile t completes: close its slot, record it, wake the core if it
    waits for it."""
    start, done = streams.start[t, slot], streams.done[t, slot]
    color = streams.color[t, slot]
    sending = close_slot(streams.kind, streams.color, streams.time, streams.recv_slot, streams.send_slot,
                         t, slot, when)
    if trace_row[t] >= 0:
        record(trace_row, events, n_events, t, EV_SEND if sending else EV_RECV, start, when,
               slot * 256 + color, done)
    if tiles.status[t] == ST_WAIT and tiles.wait_slot[t] == slot:
        tiles.clock[t] = resume_after(tiles.blocked, trace_row, events, n_events, phase_of_pc, phase_acc,
                                      phase_span, t, slot, tiles.clock[t], when, tiles.wait_pc[t], peer)
        tiles.status[t] = ST_RUN
        streams.kind[t, slot] = SL_IDLE


@njit(cache=True)
def fabric_phase(code, descs, tiles, streams, queues, links, rec, routes, width, height, timing, tasks, err):
    """Match sending streams with receive streams and queues.

    Returns (wavelets moved, tasks recorded, table full). tasks is an int64
    [capacity, 9] table: (src tile, src desc, src base, src start, dst tile,
    dst desc or -1 for the queue, dst base or color, dst start or slot, count).
    When it fills, the phase stops early; run the tasks and call again.
    On a fabric error, err receives (code, tile, color) and the phase stops.
    """
    n_tiles = width * height
    Q = queues.fifo.shape[2]
    trace_row, events, n_events = rec.trace_row, rec.events, rec.n_events  # arrays for the helpers
    phase_of_pc, phase_acc, phase_span = rec.phase_of_pc, rec.phase_acc, rec.phase_span
    scratch = links.scratch
    dest, dest_hops = scratch[0], scratch[1]
    link_tile, link_dir, link_hop = scratch[2], scratch[3], scratch[4]
    moved = 0
    n_tasks = 0
    detail = timing[T_DETAIL] != 0
    if detail:
        _mark_links(streams, links, routes, width, height, descs, timing, True)
    full = False
    for t in range(n_tiles):
        if full or err[0]:
            break
        for s in range(STREAM_SLOTS):
            if streams.kind[t, s] != SL_SENDING:
                continue
            color = streams.color[t, s]
            d = streams.desc[t, s]
            total = desc_len(descs, d)
            done = streams.done[t, s]
            nd, nl = trace_route(routes, width, height, t, color, scratch)
            if nd < 0:
                err[0], err[1], err[2] = ERR_ROUTE_LOOP, t, color
                break
            if nd == 0:
                err[0], err[1], err[2] = ERR_NO_DESTINATION, t, color
                break
            if n_tasks + 2 * nd > tasks.shape[0]:
                full = True
                break
            amount = total - done
            for i in range(nd):
                e = dest[i]
                if queues.owner[e, color] != -1 and queues.owner[e, color] != t:
                    err[0], err[1], err[2] = ERR_CONFLICT, t, color
                    break
                room = Q - queues.count[e, color]
                rs = streams.recv_slot[e, color]
                if rs >= 0:
                    room += desc_len(descs, streams.desc[e, rs]) - streams.done[e, rs]
                amount = min(amount, room)
            if err[0]:
                break
            if amount <= 0:
                continue
            # --- timing: when the chunk's first wavelet is injected, and how it shares its links
            q = streams.time[t, s]
            share = 1
            busiest = 0
            for i in range(nl):
                users = links.users[link_tile[i], link_dir[i]]
                w = links.window[link_tile[i], link_dir[i]]
                k = _popcount(users)
                if k > share and w[0] < w[1]:  # streams overlapping in time share it round-robin
                    share = k
                    busiest = i
            inject = q
            for i in range(nl):
                lt, ld = link_tile[i], link_dir[i]
                free = links.window[lt, ld, 2] if share > 1 else links.free[lt, ld]
                inject = max(inject, free - link_offset(timing, link_hop[i]))
            unheld = inject
            holder = -1
            for i in range(nd):
                e = dest[i]
                rs = streams.recv_slot[e, color]
                if rs >= 0:
                    bound = (streams.time[e, rs] - fabric_capacity(timing, dest_hops[i])
                             + backpressure_delay(timing, dest_hops[i]))
                    if bound > inject:
                        inject = bound
                        holder = e
            if holder >= 0 and inject > unheld:
                record(trace_row, events, n_events, t, EV_BACKPRESSURE, unheld, inject, s * 256 + color, holder)
            # crossing times at the busiest link: alone until the last sharer arrives, then
            # round-robin (the one that arrived last goes first; equal arrivals by color)
            hop_b = link_hop[busiest]
            arrive = inject + link_offset(timing, hop_b)
            alone, shared_from = amount, arrive
            if share > 1:
                w = links.window[link_tile[busiest], link_dir[busiest]]
                alone = min(amount, max(w[0] - arrive, 0))
                rank = 1 if alone > 0 else _popcount(w[3] & ((np.int64(1) << color) - 1))
                shared_from = max(w[0], arrive) + rank
            last_cross = _crossing(amount - 1, arrive, alone, shared_from, share)
            last = last_cross - link_offset(timing, hop_b)   # the chunk's last wavelet leaves the tile
            src_base = streams.base[t, s]
            for i in range(nd):
                e = dest[i]
                after = stream_latency(timing, dest_hops[i]) - link_offset(timing, hop_b)  # crossing -> queue
                direct = 0
                rs = streams.recv_slot[e, color]
                if rs >= 0:
                    rd = streams.desc[e, rs]
                    got = streams.done[e, rs]
                    need = desc_len(descs, rd) - got
                    direct = min(amount, need)
                    row = tasks[n_tasks]
                    row[0], row[1], row[2], row[3] = t, d, src_base, done
                    row[4], row[5], row[6], row[7], row[8] = e, rd, streams.base[e, rs], got, direct
                    n_tasks += 1
                    take = streams.time[e, rs]
                    land_last = _crossing(direct - 1, arrive, alone, shared_from, share) + after
                    take_last = max(take + direct - 1, land_last)
                    streams.done[e, rs] = got + direct
                    streams.time[e, rs] = take_last + 1
                    if direct == need:
                        _finish(tiles, streams, trace_row, events, n_events, phase_of_pc, phase_acc,
                                phase_span, e, rs, take_last + 1, t)
                rest = amount - direct
                if rest > 0:
                    slot = (queues.head[e, color] + queues.count[e, color]) % Q
                    row = tasks[n_tasks]
                    row[0], row[1], row[2], row[3] = t, d, src_base, done + direct
                    row[4], row[5], row[6], row[7], row[8] = e, -1, color, slot, rest
                    n_tasks += 1
                    queues.count[e, color] += rest
                    queues.ready[e, color] = max(queues.ready[e, color], last_cross + after)
                queues.owner[e, color] = t if done + amount < total else -1
            for i in range(nl):
                lt, ld = link_tile[i], link_dir[i]
                links.wavelets[lt, ld] += amount
                links.free[lt, ld] = max(links.free[lt, ld], last + link_offset(timing, link_hop[i]) + 1)
            tiles.sent[t] += amount
            moved += amount
            done += amount
            streams.done[t, s] = done
            streams.time[t, s] = last + 1
            if done == total:
                _finish(tiles, streams, trace_row, events, n_events, phase_of_pc, phase_acc, phase_span,
                        t, s, last + 1, holder)
    if detail:
        _mark_links(streams, links, routes, width, height, descs, timing, False)
    return moved, n_tasks, full


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
