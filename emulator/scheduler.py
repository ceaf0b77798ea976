"""The round loop in numba: compute phase, fabric phase, copies, until done.

A round visits only the tiles that can make progress (state.ActiveState): the
compute phase runs the run list, the fabric phase matches the streams of the
senders list. Blocked, halted and idle tiles cost nothing per round, so a
wavefront crossing a million tiles costs what the wavefront does.

Kept out of Python so a program of many small steps (the transformer block
runs hundreds of rounds) pays no interpreter cost per round. It returns to the
driver (machine.py) with an outcome code: finished one way or another, or
PAUSED after a slice of work so the driver can see Ctrl-C; calling it again
with the same state and progress vector continues exactly where it stopped
(budget.py explains why a pause changes nothing).
"""
import numpy as np
from numba import njit

from .budget import B_ROUNDS, B_ROUNDS_PER_CALL, P_RESUMING, P_RETIRED, P_ROUNDS
from .core import compute_phase
from .fabric import fabric_phase, run_copy_tasks
from .isa import STREAM_SLOTS
from .state import A_HALTED, A_RUN, A_SENDERS, IN_RUN, IN_SENDERS, SL_SENDING, ST_FAULT, ST_HALT, ST_RUN

DONE, FAULT, FABRIC_ERROR, DEADLOCK, PAUSED, ROUND_BUDGET = 0, 1, 2, 3, 4, 5


@njit(cache=True)
def run_rounds(code, descs, fimm, tiles, streams, queues, links, rec, routes, width, height, timing,
               tasks, err, budget, progress, active):
    """Returns the outcome; progress[P_ROUNDS] counts the rounds run so far."""
    n_tiles = width * height
    pause_at = progress[P_ROUNDS] + budget[B_ROUNDS_PER_CALL]
    while True:
        if progress[P_RESUMING] == 0:  # a new round
            if progress[P_ROUNDS] >= budget[B_ROUNDS]:
                return ROUND_BUDGET
            if progress[P_ROUNDS] >= pause_at:
                return PAUSED
            progress[P_ROUNDS] += 1
        retired = compute_phase(code, descs, fimm, tiles, streams, queues, rec, timing, budget, active)
        running, faulted = settle_run_list(tiles.status, streams.kind, active)
        retired += progress[P_RETIRED]
        if faulted:
            return FAULT
        if running:  # a slice ended inside the compute phase: finish it on the next call
            progress[P_RESUMING] = 1
            progress[P_RETIRED] = retired
            return PAUSED
        progress[P_RESUMING] = 0
        progress[P_RETIRED] = 0
        if active.count[A_HALTED] == n_tiles:  # a tile halts only once its streams are done: nothing is in flight
            return DONE
        moved = 0
        while True:
            m, n_tasks, full = fabric_phase(code, descs, tiles, streams, queues, links, rec, routes, width,
                                            height, timing, tasks, err, active)
            if n_tasks:
                run_copy_tasks(tasks, n_tasks, descs, tiles.mem, tiles.mem_span, queues.fifo)
            moved += m
            if err[0]:
                return FABRIC_ERROR
            if not full:
                break
        drop_finished_senders(streams.kind, active)
        if retired == 0 and moved == 0:
            return DEADLOCK


@njit(cache=True)
def settle_run_list(status, kind, active):
    """After a compute phase: keep the run list's tiles that are still RUN (a slice
    ended), count those that halted, and add the tiles that started sending to the
    senders list, kept ascending. Returns (tiles still running, tiles faulted)."""
    run, member, count, fresh = active.run, active.member, active.count, active.fresh
    keep = 0
    n_fresh = 0
    faulted = 0
    for i in range(count[A_RUN]):
        t = run[i]
        now = status[t]
        if now == ST_RUN:
            run[keep] = t
            keep += 1
        else:
            member[t] &= ~IN_RUN
            if now == ST_HALT:
                count[A_HALTED] += 1
            elif now == ST_FAULT:
                faulted += 1
        if member[t] & IN_SENDERS == 0:
            for s in range(STREAM_SLOTS):
                if kind[t, s] == SL_SENDING:
                    member[t] |= IN_SENDERS
                    fresh[n_fresh] = t
                    n_fresh += 1
                    break
    count[A_RUN] = keep
    if n_fresh:
        _merge_senders(active, np.sort(fresh[:n_fresh]))
    return keep, faulted


@njit(cache=True)
def _merge_senders(active, new):
    senders, merged, count = active.senders, active.merged, active.count
    n_old = count[A_SENDERS]
    i = j = k = 0
    while i < n_old or j < len(new):
        if j >= len(new) or (i < n_old and senders[i] < new[j]):
            merged[k] = senders[i]
            i += 1
        else:
            merged[k] = new[j]
            j += 1
        k += 1
    senders[:k] = merged[:k]
    count[A_SENDERS] = k


@njit(cache=True)
def drop_finished_senders(kind, active):
    """After the fabric phases of a round: drop the tiles with no SENDING slot left."""
    senders, member, count = active.senders, active.member, active.count
    keep = 0
    for i in range(count[A_SENDERS]):
        t = senders[i]
        sending = False
        for s in range(STREAM_SLOTS):
            if kind[t, s] == SL_SENDING:
                sending = True
        if sending:
            senders[keep] = t
            keep += 1
        else:
            member[t] &= ~IN_SENDERS
    count[A_SENDERS] = keep
