"""numba: a core that waited for a stream slot going on.

A slot's stream is started by the core (core.py) and moved by the fabric
phase (fabric.py), which closes the slot when the stream finishes and wakes
the tile if its core waits for that slot (fabric_phase's `finish`).
"""
from numba import njit

from .recorder import record
from .state import PH_BLOCKED
from .trace_events import EV_BLOCKED


@njit(cache=True, inline="always")
def resume_after(blocked, trace_row, events, n_events, phase_of_pc, phase_acc, phase_span,
                 t, slot, clk, when, pc, peer):
    """The core of tile t, stopped at cycle clk, goes on at `when` (if later):
    the gap is time blocked on the fabric, charged to instruction pc's phase."""
    if when <= clk:
        return clk
    record(trace_row, events, n_events, t, EV_BLOCKED, clk, when, slot, peer)
    blocked[t] += when - clk
    if phase_of_pc.shape[0] == 0:
        return when
    ph = phase_of_pc[pc]
    phase_acc[t, ph, PH_BLOCKED] += when - clk
    if when > phase_span[t, ph, 1]:  # indexed, not a row view: a view costs reference counting
        phase_span[t, ph, 1] = when
    return when
