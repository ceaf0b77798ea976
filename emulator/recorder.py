"""numba: the run's records - trace events of chosen tiles and time per kernel-call phase.

Both are written by the tile that owns them (the compute phase runs tiles in
parallel, so no two threads write one row); the fabric phase is serial.
Event kinds are in trace_events.py; a tile's core events tile [0, its cycles).
"""
from numba import njit

from .state import PH_BLOCKED, PH_INSTRUCTIONS


@njit(cache=True, inline="always")
def record(rec, t, kind, start, end, a, b):
    """Append one event for tile t if it is traced; n_events counts what did not fit too."""
    row = rec.trace_row[t]
    if row < 0:
        return
    n = rec.n_events[row]
    if n < rec.events.shape[1]:
        e = rec.events[row, n]
        e[0], e[1], e[2], e[3], e[4], e[5] = t, kind, start, end, a, b
    rec.n_events[row] = n + 1


@njit(cache=True, inline="always")
def account(rec, t, pc, column, cycles, start, end):
    """Charge cycles to the kernel-call phase of instruction pc on tile t
    (a phase_of_pc of length 0 turns this off: --timing off)."""
    if rec.phase_of_pc.shape[0] == 0:
        return
    ph = rec.phase_of_pc[pc]
    rec.phase_acc[t, ph, column] += cycles
    if column != PH_BLOCKED:
        rec.phase_acc[t, ph, PH_INSTRUCTIONS] += 1
    span = rec.phase_span[t, ph]
    if start < span[0]:
        span[0] = start
    if end > span[1]:
        span[1] = end
