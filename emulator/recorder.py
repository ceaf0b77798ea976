"""numba: the run's records - trace events of chosen tiles and time per kernel-call phase.

Both are written by the tile that owns them (the compute phase runs tiles in
parallel, so no two threads write one row); the fabric phase is serial.
The helpers here and in stream_slots.py take arrays, not the state records:
numba passes a record of arrays to even an inlined call at a cost of about
half a microsecond, which per wavelet chunk or per instruction adds up.
Event kinds are in trace_events.py; a tile's core events tile [0, its cycles).
"""
from numba import njit

from .state import PH_BLOCKED, PH_INSTRUCTIONS


@njit(cache=True, inline="always")
def record(trace_row, events, n_events, t, kind, start, end, a, b):
    """Append one event for tile t if it is traced; n_events counts what did not fit too."""
    row = trace_row[t]
    if row < 0:
        return
    n = n_events[row]
    if n < events.shape[1]:
        events[row, n, 0], events[row, n, 1], events[row, n, 2] = t, kind, start
        events[row, n, 3], events[row, n, 4], events[row, n, 5] = end, a, b
    n_events[row] = n + 1


@njit(cache=True, inline="always")
def account(phase_of_pc, phase_acc, phase_span, t, pc, column, cycles, start, end):
    """Charge cycles to the kernel-call phase of instruction pc on tile t
    (a phase_of_pc of length 0 turns this off: --timing off)."""
    if phase_of_pc.shape[0] == 0:
        return
    ph = phase_of_pc[pc]
    phase_acc[t, ph, column] += cycles
    if column != PH_BLOCKED:
        phase_acc[t, ph, PH_INSTRUCTIONS] += 1
    if start < phase_span[t, ph, 0]:  # indexed, not a row view (views cost reference counting)
        phase_span[t, ph, 0] = start
    if end > phase_span[t, ph, 1]:
        phase_span[t, ph, 1] = end
