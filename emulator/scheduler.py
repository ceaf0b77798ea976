"""The round loop in numba: compute phase, fabric phase, copies, until done.

Kept out of Python so a program of many small steps (the transformer block
runs hundreds of rounds) pays no interpreter cost per round. The outcome
code tells the driver (machine.py) what to report.
"""
from numba import njit

from .core import compute_phase
from .fabric import fabric_phase, run_copy_tasks

DONE, FAULT, FABRIC_ERROR, DEADLOCK = 0, 1, 2, 3


@njit(cache=True)
def run_rounds(code, descs, fimm, mem, regs, pc, status, fault, xfer, fifo, fifo_head, fifo_count, fifo_ready,
               owner, routes, width, height, clock, busy, icount, sent, link_wavelets, link_free, timing,
               scratch, tasks, err, max_instructions):
    """Returns (outcome, rounds)."""
    n_tiles = width * height
    Q = fifo.shape[2]
    rounds = 0
    while True:
        rounds += 1
        retired, halted, faulted = compute_phase(code, descs, fimm, mem, regs, pc, status, fault, xfer, fifo,
                                                 fifo_head, fifo_count, fifo_ready, clock, busy, icount, timing,
                                                 max_instructions)
        if faulted:
            return FAULT, rounds
        if halted == n_tiles:  # nobody left to send, so nothing is in flight either
            return DONE, rounds
        moved = 0
        while True:
            m, n_tasks, full = fabric_phase(code, descs, regs, pc, status, xfer, fifo_head, fifo_count,
                                            fifo_ready, owner, routes, width, height, Q, clock, icount, sent,
                                            link_wavelets, link_free, timing, scratch, tasks, err)
            if n_tasks:
                run_copy_tasks(tasks, n_tasks, descs, mem, fifo)
            moved += m
            if err[0]:
                return FABRIC_ERROR, rounds
            if not full:
                break
        if retired == 0 and moved == 0:
            return DEADLOCK, rounds
