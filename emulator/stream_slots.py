"""numba: stream slots finishing, and cores that waited for them going on.

A slot's stream is started by the core (core.py) and moved by the fabric
phase (fabric.py), which closes the slot when the stream finishes and wakes
the tile if its core waits for that slot.
"""
from numba import njit

from .recorder import record
from .state import PH_BLOCKED, SL_COMPLETE, SL_SENDING
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


@njit(cache=True, inline="always")
def close_slot(kind, color, time, recv_slot, send_slot, t, slot, when):
    """Slot `slot` of tile t finished at cycle `when` (the cycle after its last
    wavelet); returns whether it was a send. The caller records the stream and
    wakes the core if it waits for this slot (few arguments: see recorder.py)."""
    c = color[t, slot]
    sending = kind[t, slot] == SL_SENDING
    if sending:
        send_slot[t, c] = -1
    else:
        recv_slot[t, c] = -1
    kind[t, slot] = SL_COMPLETE
    time[t, slot] = when
    return sending
