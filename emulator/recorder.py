"""numba: the run's records - trace events of chosen tiles and time per kernel-call phase.

Both are written by the tile that owns them (the compute phase runs tiles in
parallel, so no two threads write one row); the fabric phase is serial.
Event kinds are in trace_events.py; a tile's core events tile [0, its cycles).
The per-statement accounting (Recorder.phase_acc and phase_span) is written
where the time is spent: core.run_tile for instructions and waits, the fabric
phase for a wait that ends when a stream completes.

Cost. numba counts references to every array an inlined helper takes (an
atomic add on entry and on exit, on a count both threads of the compute phase
share) unless it can prune the pair, which it seldom does once the helper
branches. Per instruction or per wavelet chunk that cost more than the work, so
the loops there call no helper with arrays but `record`, and that only for a
traced tile; the accounting is written in closures over the loops' locals.
"""
from numba import njit


@njit(cache=True, inline="always")
def record(trace_row, events, n_events, t, kind, start, end, a, b):
    """Append one event for tile t if it is traced; n_events counts what did not fit too.
    Callers check trace_row[t] >= 0 first, so an untraced tile pays no call."""
    row = trace_row[t]
    if row < 0:
        return
    n = n_events[row]
    if n < events.shape[1]:
        events[row, n, 0], events[row, n, 1], events[row, n, 2] = t, kind, start
        events[row, n, 3], events[row, n, 4], events[row, n, 5] = end, a, b
    n_events[row] = n + 1
