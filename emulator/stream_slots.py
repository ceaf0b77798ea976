"""numba: stream slots finishing, and cores that waited for them going on.

A slot's stream is started by the core (core.py) and moved by the fabric
phase (fabric.py); whichever sees it finish calls complete_stream, which also
wakes the tile if its core waits for that slot.
"""
from numba import njit

from .recorder import record
from .state import PH_BLOCKED, SL_COMPLETE, SL_IDLE, SL_SENDING, ST_RUN, ST_WAIT
from .trace_events import EV_BLOCKED, EV_RECV, EV_SEND


@njit(cache=True, inline="always")
def resume_after(tiles, streams, rec, t, slot, clk, when, pc, peer):
    """The core of tile t, stopped at cycle clk, goes on at `when` (if later):
    the gap is time blocked on the fabric, charged to instruction pc's phase."""
    if when <= clk:
        return clk
    record(rec, t, EV_BLOCKED, clk, when, slot, peer)
    tiles.blocked[t] += when - clk
    if rec.phase_of_pc.shape[0] == 0:
        return when
    ph = rec.phase_of_pc[pc]
    rec.phase_acc[t, ph, PH_BLOCKED] += when - clk
    span = rec.phase_span[t, ph]
    if when > span[1]:
        span[1] = when
    return when


@njit(cache=True, inline="always")
def complete_stream(tiles, streams, rec, t, slot, when, peer):
    """Slot `slot` of tile t finished at cycle `when` (the cycle after its last wavelet)."""
    color = streams.color[t, slot]
    sending = streams.kind[t, slot] == SL_SENDING
    record(rec, t, EV_SEND if sending else EV_RECV, streams.start[t, slot], when, slot * 256 + color,
           streams.done[t, slot])
    if sending:
        streams.send_slot[t, color] = -1
    else:
        streams.recv_slot[t, color] = -1
    streams.kind[t, slot] = SL_COMPLETE
    streams.time[t, slot] = when
    if tiles.status[t] == ST_WAIT and tiles.wait_slot[t] == slot:
        tiles.clock[t] = resume_after(tiles, streams, rec, t, slot, tiles.clock[t], when, tiles.wait_pc[t], peer)
        tiles.status[t] = ST_RUN
        streams.kind[t, slot] = SL_IDLE
