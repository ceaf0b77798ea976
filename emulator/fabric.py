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
from .state import A_RUN, A_SENDERS, IN_RUN, PH_BLOCKED, SL_COMPLETE, SL_IDLE, SL_SENDING, ST_RUN, ST_WAIT
from .timing import T_DETAIL, backpressure_delay, fabric_capacity, link_offset, stream_latency
from .trace_events import EV_BACKPRESSURE, EV_BLOCKED, EV_RECV, EV_SEND
from .vector_ops import desc_is_dense, gather, desc_len, scatter

ERR_ROUTE_LOOP, ERR_NO_DESTINATION, ERR_CONFLICT = 1, 2, 3  # 0: no error
DX = np.array([0, 1, 0, -1], dtype=np.int64)
DY = np.array([-1, 0, 1, 0], dtype=np.int64)
OPP = np.array(OPPOSITE, dtype=np.int64)


# rows of the route-trace scratch (links.scratch, int64 [8, 4 * tiles + 8])
DEST, DEST_HOPS, LINK_TILE, LINK_DIR, LINK_HOP, STACK_TILE, STACK_PORT, STACK_HOPS = range(8)


@njit(cache=True)
def trace_route(routes, link_hops, width, height, src, color, scratch):
    """Follow color's routes from src's ramp.

    Fills scratch's rows DEST and DEST_HOPS with the destinations and their hop
    counts, LINK_TILE, LINK_DIR and LINK_HOP with the links used (tile,
    direction, hop index); the STACK rows are the walk's. Hops are physical
    router hops: a logical link counts link_hops[tile, direction] of them (1 on
    a perfect fabric; more where repair routes it around a defect). Returns (destinations,
    links), or (-1, 0) when the routes loop. (Rows are indexed, not taken as
    views: a view here costs reference counting on every call.)
    """
    n_tiles = width * height
    scratch[STACK_TILE, 0] = src
    scratch[STACK_PORT, 0] = PORT_RAMP
    scratch[STACK_HOPS, 0] = 0
    top = 1
    nd = 0
    nl = 0
    visits = 0
    while top > 0:
        top -= 1
        t = scratch[STACK_TILE, top]
        port_in = scratch[STACK_PORT, top]
        hops = scratch[STACK_HOPS, top]
        visits += 1
        if visits > 4 * n_tiles + 1:
            return -1, 0
        bits = routes[t, color, port_in]
        if bits >> PORT_RAMP & 1:
            scratch[DEST, nd] = t
            scratch[DEST_HOPS, nd] = hops
            nd += 1
        x = t % width
        y = t // width
        for p in range(4):
            if bits >> p & 1:
                nx = x + DX[p]
                ny = y + DY[p]
                if nx < 0 or nx >= width or ny < 0 or ny >= height:
                    continue  # the loader rejects such routes; never leave the grid
                scratch[LINK_TILE, nl] = t
                scratch[LINK_DIR, nl] = p
                scratch[LINK_HOP, nl] = hops
                nl += 1
                if top >= scratch.shape[1]:
                    return -1, 0
                scratch[STACK_TILE, top] = ny * width + nx
                scratch[STACK_PORT, top] = OPP[p]
                scratch[STACK_HOPS, top] = hops + link_hops[t, p]
                top += 1
    return nd, nl


@njit(cache=True, inline="always")
def _popcount(v):
    n = 0
    while v:
        v &= v - 1
        n += 1
    return n


# links.window columns: of the streams of this phase that use the link, the latest
# arrival, the earliest end, the link's reservation before the phase, the colors arriving last
W_ARRIVE, W_LEAVE, W_FREE, W_LAST = range(4)


@njit(cache=True)
def _mark_links(streams, links, routes, width, height, descs, timing, senders, n_senders):
    """Note on each link which colors' streams would use it in this phase, when the
    last of them arrives (and which colors arrive then), when the first would leave,
    and the link's reservation before the phase. Returns how many links it noted,
    listed in links.touched for _clear_links."""
    kind, slot_color, slot_desc = streams.kind, streams.color, streams.desc
    slot_done, slot_time = streams.done, streams.time
    users, window, free, touched = links.users, links.window, links.free, links.touched  # locals: see fabric_phase
    scratch = links.scratch
    link_tile, link_dir, link_hop = scratch[LINK_TILE], scratch[LINK_DIR], scratch[LINK_HOP]
    n_touched = 0
    for k in range(n_senders):
        t = senders[k]
        for s in range(STREAM_SLOTS):
            if kind[t, s] != SL_SENDING:
                continue
            color = slot_color[t, s]
            nd, nl = trace_route(routes, links.hops, width, height, t, color, scratch)
            if nd <= 0:
                continue
            bit = np.int64(1) << color
            rest = desc_len(descs, slot_desc[t, s]) - slot_done[t, s]
            for i in range(nl):
                lt, ld = link_tile[i], link_dir[i]
                arrive = slot_time[t, s] + link_offset(timing, link_hop[i])
                if users[lt, ld] == 0:
                    touched[n_touched] = lt * 4 + ld
                    n_touched += 1
                    window[lt, ld, W_ARRIVE] = arrive
                    window[lt, ld, W_LEAVE] = arrive + rest
                    window[lt, ld, W_FREE] = free[lt, ld]
                    window[lt, ld, W_LAST] = bit
                else:
                    if arrive > window[lt, ld, W_ARRIVE]:
                        window[lt, ld, W_ARRIVE] = arrive
                        window[lt, ld, W_LAST] = bit
                    elif arrive == window[lt, ld, W_ARRIVE]:
                        window[lt, ld, W_LAST] |= bit
                    window[lt, ld, W_LEAVE] = min(window[lt, ld, W_LEAVE], arrive + rest)
                users[lt, ld] |= bit
    return n_touched


@njit(cache=True)
def _clear_links(links, n_touched):
    """Forget the notes of _mark_links (only the links it touched, not a second walk of every route)."""
    users, touched = links.users, links.touched
    for i in range(n_touched):
        users[touched[i] // 4, touched[i] % 4] = 0


@njit(cache=True, inline="always")
def _crossing(idx, alone_from, alone, shared_from, share):
    """Cycle at which wavelet idx of a chunk crosses its busiest link: the first
    `alone` wavelets one per cycle from alone_from, then one every `share`
    cycles from shared_from (round-robin with the other streams)."""
    if idx < alone:
        return alone_from + idx
    return shared_from + share * (idx - alone)


@njit(cache=True, inline="always")
def _add_task(tasks, n, src, src_desc, src_base, src_start, dst, dst_desc, dst_base, dst_start, count):
    """Row n of the copy table (branch-free, so numba adds no reference counting here)."""
    tasks[n, 0], tasks[n, 1], tasks[n, 2], tasks[n, 3] = src, src_desc, src_base, src_start
    tasks[n, 4], tasks[n, 5], tasks[n, 6], tasks[n, 7], tasks[n, 8] = dst, dst_desc, dst_base, dst_start, count


@njit(cache=True)
def fabric_phase(code, descs, tiles, streams, queues, links, rec, routes, width, height, timing, tasks, err,
                 active):
    """Match sending streams with receive streams and queues: the streams of the tiles
    in active.senders, in ascending tile order; a core woken here joins active.run.

    Returns (wavelets moved, tasks recorded, table full). tasks is an int64
    [capacity, 9] table: (src tile, src desc, src base, src start, dst tile,
    dst desc or -1 for the queue, dst base or color, dst start or slot, count).
    When it fills, the phase stops early; run the tasks and call again.
    On a fabric error, err receives (code, tile, color) and the phase stops.

    The records' arrays are taken into locals once and, per wavelet chunk, no
    helper that branches is passed an array: numba counts references (with
    atomic adds) to a record's field read on one side of a branch and to an
    array passed to such a helper, and that had taken most of this phase's time.
    """
    Q = queues.fifo.shape[2]
    status, wait_slot, wait_pc = tiles.status, tiles.wait_slot, tiles.wait_pc
    clock, blocked, sent = tiles.clock, tiles.blocked, tiles.sent
    kind, slot_color, slot_desc, slot_base = streams.kind, streams.color, streams.desc, streams.base
    slot_done, slot_time, slot_start = streams.done, streams.time, streams.start
    recv_slot, send_slot = streams.recv_slot, streams.send_slot
    q_head, q_count, q_ready, q_owner = queues.head, queues.count, queues.ready, queues.owner
    link_users, link_window, link_free, link_wavelets = links.users, links.window, links.free, links.wavelets
    trace_row, events, n_events = rec.trace_row, rec.events, rec.n_events
    phase_of_pc, phase_acc, phase_span = rec.phase_of_pc, rec.phase_acc, rec.phase_span
    accounting = phase_of_pc.shape[0] > 0
    scratch = links.scratch
    dest, dest_hops = scratch[DEST], scratch[DEST_HOPS]
    link_tile, link_dir, link_hop = scratch[LINK_TILE], scratch[LINK_DIR], scratch[LINK_HOP]
    run, member, count, senders = active.run, active.member, active.count, active.senders
    n_senders = count[A_SENDERS]

    def finish(e, slot, when, peer, sending):
        # A stream of tile e completes at `when`: close its slot (the caller has freed
        # its color), record it, and wake the core if it waits for it. A closure: it
        # uses the locals above without a call.
        c = slot_color[e, slot]
        kind[e, slot] = SL_COMPLETE
        slot_time[e, slot] = when
        if trace_row[e] >= 0:
            record(trace_row, events, n_events, e, EV_SEND if sending else EV_RECV, slot_start[e, slot],
                   when, slot * 256 + c, slot_done[e, slot])
        if status[e] == ST_WAIT and wait_slot[e] == slot:
            clk = clock[e]
            if when > clk:  # the core waited for this stream from clk
                if trace_row[e] >= 0:
                    record(trace_row, events, n_events, e, EV_BLOCKED, clk, when, slot, peer)
                blocked[e] += when - clk
                if accounting:  # as core.run_tile charges a wait
                    ph = phase_of_pc[wait_pc[e]]
                    phase_acc[e, ph, PH_BLOCKED] += when - clk
                    phase_span[e, ph, 1] = max(phase_span[e, ph, 1], when)
                clock[e] = when
            status[e] = ST_RUN
            kind[e, slot] = SL_IDLE
            if member[e] & IN_RUN == 0:
                member[e] |= IN_RUN
                run[count[A_RUN]] = e
                count[A_RUN] += 1

    moved = 0
    n_tasks = 0
    detail = timing[T_DETAIL] != 0
    n_touched = _mark_links(streams, links, routes, width, height, descs, timing, senders, n_senders) if detail else 0
    full = False
    for k in range(n_senders):
        t = senders[k]
        if full or err[0]:
            break
        for s in range(STREAM_SLOTS):
            if kind[t, s] != SL_SENDING:
                continue
            color = slot_color[t, s]
            d = slot_desc[t, s]
            total = desc_len(descs, d)
            done = slot_done[t, s]
            nd, nl = trace_route(routes, links.hops, width, height, t, color, scratch)
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
                owner = q_owner[e, color]
                if owner != -1 and owner != t:
                    err[0], err[1], err[2] = ERR_CONFLICT, t, color
                    break
                room = Q - q_count[e, color]
                rs = recv_slot[e, color]
                if rs >= 0:
                    room += desc_len(descs, slot_desc[e, rs]) - slot_done[e, rs]
                amount = min(amount, room)
            if err[0]:
                break
            if amount <= 0:
                continue
            # --- timing: when the chunk's first wavelet is injected, and how it shares its links
            share = 1
            busiest = 0
            for i in range(nl):
                lt, ld = link_tile[i], link_dir[i]
                k = _popcount(link_users[lt, ld])
                if k > share and link_window[lt, ld, W_ARRIVE] < link_window[lt, ld, W_LEAVE]:
                    share = k  # streams overlapping in time share it round-robin
                    busiest = i
            inject = slot_time[t, s]
            for i in range(nl):
                lt, ld = link_tile[i], link_dir[i]
                free = link_window[lt, ld, W_FREE] if share > 1 else link_free[lt, ld]
                inject = max(inject, free - link_offset(timing, link_hop[i]))
            unheld = inject
            holder = -1
            for i in range(nd):
                e = dest[i]
                rs = recv_slot[e, color]
                if rs >= 0:
                    bound = (slot_time[e, rs] - fabric_capacity(timing, dest_hops[i])
                             + backpressure_delay(timing, dest_hops[i]))
                    if bound > inject:
                        inject = bound
                        holder = e
            if holder >= 0 and inject > unheld and trace_row[t] >= 0:
                record(trace_row, events, n_events, t, EV_BACKPRESSURE, unheld, inject, s * 256 + color, holder)
            # crossing times at the busiest link: alone until the last sharer arrives, then
            # round-robin (the one that arrived last goes first; equal arrivals by color)
            hop_b = link_hop[busiest]
            arrive = inject + link_offset(timing, hop_b)
            alone, shared_from = amount, arrive
            if share > 1:
                bt, bd = link_tile[busiest], link_dir[busiest]
                alone = min(amount, max(link_window[bt, bd, W_ARRIVE] - arrive, 0))
                rank = 1 if alone > 0 else _popcount(link_window[bt, bd, W_LAST] & ((np.int64(1) << color) - 1))
                shared_from = max(link_window[bt, bd, W_ARRIVE], arrive) + rank
            last_cross = _crossing(amount - 1, arrive, alone, shared_from, share)
            last = last_cross - link_offset(timing, hop_b)   # the chunk's last wavelet leaves the tile
            src_base = slot_base[t, s]
            for i in range(nd):
                e = dest[i]
                after = stream_latency(timing, dest_hops[i]) - link_offset(timing, hop_b)  # crossing -> queue
                direct = 0
                rs = recv_slot[e, color]
                if rs >= 0:
                    rd = slot_desc[e, rs]
                    got = slot_done[e, rs]
                    need = desc_len(descs, rd) - got
                    direct = min(amount, need)
                    _add_task(tasks, n_tasks, t, d, src_base, done, e, rd, slot_base[e, rs], got, direct)
                    n_tasks += 1
                    land_last = _crossing(direct - 1, arrive, alone, shared_from, share) + after
                    take_last = max(slot_time[e, rs] + direct - 1, land_last)
                    slot_done[e, rs] = got + direct
                    slot_time[e, rs] = take_last + 1
                    if direct == need:
                        recv_slot[e, color] = -1
                        finish(e, rs, take_last + 1, t, False)
                rest = amount - direct
                if rest > 0:
                    slot = (q_head[e, color] + q_count[e, color]) % Q
                    _add_task(tasks, n_tasks, t, d, src_base, done + direct, e, -1, color, slot, rest)
                    n_tasks += 1
                    q_count[e, color] += rest
                    q_ready[e, color] = max(q_ready[e, color], last_cross + after)
                q_owner[e, color] = t if done + amount < total else -1
            for i in range(nl):
                lt, ld = link_tile[i], link_dir[i]
                link_wavelets[lt, ld] += amount
                link_free[lt, ld] = max(link_free[lt, ld], last + link_offset(timing, link_hop[i]) + 1)
            sent[t] += amount
            moved += amount
            done += amount
            slot_done[t, s] = done
            slot_time[t, s] = last + 1
            if done == total:
                send_slot[t, color] = -1
                finish(t, s, last + 1, holder, True)
    if detail:
        _clear_links(links, n_touched)
    return moved, n_tasks, full


@njit(cache=True, parallel=True)
def run_copy_tasks(tasks, n_tasks, descs, mem, mem_span, fifo):
    """Carry out the copies a fabric phase decided, in parallel (mem, mem_span: TileState's)."""
    Q = fifo.shape[2]
    for i in prange(n_tasks):
        src, sd, sbase, sstart = tasks[i, 0], tasks[i, 1], tasks[i, 2], tasks[i, 3]
        dst, dd, dbase, dstart, n = tasks[i, 4], tasks[i, 5], tasks[i, 6], tasks[i, 7], tasks[i, 8]
        s0, d0 = mem_span[src, 0], mem_span[dst, 0]
        if dd >= 0 and desc_is_dense(descs, sd) and desc_is_dense(descs, dd):
            mem[d0 + dbase + dstart:d0 + dbase + dstart + n] = mem[s0 + sbase + sstart:s0 + sbase + sstart + n]
            continue
        tmp = np.empty(n, dtype=np.float32)
        gather(mem[s0:mem_span[src, 1]], descs, sd, sbase, sstart, n, tmp, 0)
        if dd >= 0:
            scatter(mem[d0:mem_span[dst, 1]], descs, dd, dbase, dstart, n, tmp, 0)
        else:
            for j in range(n):
                fifo[dst, dbase, (dstart + j) % Q] = tmp[j]


@njit(cache=True)
def copy_out_many(tasks, descs, mem, mem_span):
    """The data copy tasks take from their source tiles, one after another, and where
    each task's starts (offsets has one more entry, the end): a sharded run's band
    sends these to the bands that hold the destinations (sharding.py)."""
    offsets = np.zeros(len(tasks) + 1, dtype=np.int64)
    for i in range(len(tasks)):
        offsets[i + 1] = offsets[i] + tasks[i, 8]
    data = np.empty(offsets[-1], dtype=np.float32)
    for i in range(len(tasks)):
        src = tasks[i, 0]
        gather(mem[mem_span[src, 0]:mem_span[src, 1]], descs, tasks[i, 1], tasks[i, 2], tasks[i, 3], tasks[i, 8],
               data, offsets[i])
    return data, offsets


@njit(cache=True)
def copy_in_many(tasks, data, offsets, descs, mem, mem_span, fifo):
    """Write copy_out_many's data (task i's at offsets[i]) into the destination tiles:
    into the receiver's descriptor, or its queue, as run_copy_tasks does."""
    Q = fifo.shape[2]
    for i in range(len(tasks)):
        dst, dd, dbase, dstart, n = tasks[i, 4], tasks[i, 5], tasks[i, 6], tasks[i, 7], tasks[i, 8]
        if dd >= 0:
            scatter(mem[mem_span[dst, 0]:mem_span[dst, 1]], descs, dd, dbase, dstart, n, data, offsets[i])
        else:
            for j in range(n):
                fifo[dst, dbase, (dstart + j) % Q] = data[offsets[i] + j]
