"""The round loop in numba: compute phase, fabric phase, copies, until done.

Kept out of Python so a program of many small steps (the transformer block
runs hundreds of rounds) pays no interpreter cost per round. It returns to the
driver (machine.py) with an outcome code: finished one way or another, or
PAUSED after a slice of work so the driver can see Ctrl-C; calling it again
with the same state and progress vector continues exactly where it stopped
(budget.py explains why a pause changes nothing).
"""
from numba import njit

from .budget import B_ROUNDS, B_ROUNDS_PER_CALL, P_RESUMING, P_RETIRED, P_ROUNDS
from .core import compute_phase
from .fabric import fabric_phase, run_copy_tasks

DONE, FAULT, FABRIC_ERROR, DEADLOCK, PAUSED, ROUND_BUDGET = 0, 1, 2, 3, 4, 5


@njit(cache=True)
def run_rounds(code, descs, fimm, tiles, streams, queues, links, rec, routes, width, height, timing,
               tasks, err, budget, progress):
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
        retired, halted, faulted, running = compute_phase(code, descs, fimm, tiles, streams, queues, rec,
                                                          timing, budget)
        retired += progress[P_RETIRED]
        if faulted:
            return FAULT
        if running:  # a slice ended inside the compute phase: finish it on the next call
            progress[P_RESUMING] = 1
            progress[P_RETIRED] = retired
            return PAUSED
        progress[P_RESUMING] = 0
        progress[P_RETIRED] = 0
        if halted == n_tiles:  # a tile halts only once its streams are done, so nothing is in flight
            return DONE
        moved = 0
        while True:
            m, n_tasks, full = fabric_phase(code, descs, tiles, streams, queues, links, rec, routes, width,
                                            height, timing, tasks, err)
            if n_tasks:
                run_copy_tasks(tasks, n_tasks, descs, tiles.mem, queues.fifo)
            moved += m
            if err[0]:
                return FABRIC_ERROR
            if not full:
                break
        if retired == 0 and moved == 0:
            return DEADLOCK
