"""Streams -> colors and route tables.

One color per stream name (route pattern); streams that share a pattern share
its color, which is how colors are reused across phases of a program. A route
maps each router input port to the set of output ports (multicast) for that
color on that tile. Tables are built with array operations over all tiles, so
a million-tile grid costs a few array passes.
"""
from __future__ import annotations

import numpy as np

from tilegrid.emulator.isa import PORT_E, PORT_N, PORT_RAMP, PORT_S, PORT_W

from ..diagnostics import CompileError
from ..spatial_ir import Recv, Send, SpatialKernel, walk

R = 1 << PORT_RAMP


def route_streams(k: SpatialKernel, colors: int) -> SpatialKernel:
    streams: list[str] = []
    first_use = {}
    for op in walk(k.body):
        if isinstance(op, (Send, Recv)) and op.stream not in streams:
            streams.append(op.stream)
            first_use[op.stream] = op.span
    own = [s for s in streams if not s.startswith("xfer")]  # link_regions counts the transfers' colors
    if len(own) > colors:
        raise CompileError(f"too many colors: the kernel needs {len(own)} ({', '.join(own)}) but the "
                           f"machine has {colors}", first_use[own[colors]])
    k.streams = streams
    tables = [pattern_routes(s, k.width, k.height) for s in streams]
    k.routes = np.stack(tables, axis=1) if tables else np.zeros((k.width * k.height, 0, 5), np.uint8)
    return k


def pattern_routes(name: str, width: int, height: int) -> np.ndarray:
    """uint8 [tiles, 5]: output-port bits for each input port (N, E, S, W, RAMP).
    A transfer's stream (xfer...) leaves the region: link_regions routes it."""
    if name.startswith("xfer"):
        return np.zeros((width * height, 5), np.uint8)
    t = np.arange(width * height)
    x, y = t % width, t // width
    has = {PORT_E: x < width - 1, PORT_W: x > 0, PORT_S: y < height - 1, PORT_N: y > 0}
    bit = {p: np.where(h, 1 << p, 0) for p, h in has.items()}
    table = np.zeros((width * height, 5), dtype=np.int64)
    if name in ("row_bcast", "col_bcast", "row_bcast_self", "col_bcast_self"):
        a, b = (PORT_W, PORT_E) if name.startswith("row") else (PORT_N, PORT_S)
        table[:, a] = bit[b] | R       # arriving from one side: pass on and deliver
        table[:, b] = bit[a] | R
        # _self: the sender gets its own wavelets too (RAMP -> RAMP), so it fills its own
        # copy from the fabric while its core computes, instead of copying
        table[:, PORT_RAMP] = bit[a] | bit[b] | (R if name.endswith("_self") else 0)
    elif name.startswith(("row_bcast_seg", "col_bcast_seg")):
        # as row_bcast, inside each run of n tiles: nothing leaves a run
        a, b = (PORT_W, PORT_E) if name.startswith("row") else (PORT_N, PORT_S)
        n = int(name.rpartition("seg")[2])
        c = x if name.startswith("row") else y
        to_a, to_b = np.where(c % n > 0, bit[a], 0), np.where(c % n < n - 1, bit[b], 0)
        table[:, a] = to_b | R
        table[:, b] = to_a | R
        table[:, PORT_RAMP] = to_a | to_b
    elif name in ("east", "west", "south", "north"):
        out = {"east": PORT_E, "west": PORT_W, "south": PORT_S, "north": PORT_N}[name]
        back = {PORT_E: PORT_W, PORT_W: PORT_E, PORT_S: PORT_N, PORT_N: PORT_S}[out]
        table[:, PORT_RAMP] = bit[out]
        table[:, back] = R
    elif name in ("east_ring", "west_ring", "south_ring", "north_ring"):
        out = {"east_ring": PORT_E, "west_ring": PORT_W, "south_ring": PORT_S, "north_ring": PORT_N}[name]
        back = {PORT_E: PORT_W, PORT_W: PORT_E, PORT_S: PORT_N, PORT_N: PORT_S}[out]
        # normal hop on `out`; the last tile's message runs back along the line to the first tile
        table[:, PORT_RAMP] = np.where(has[out], 1 << out, 1 << back)
        table[:, back] = R
        table[:, out] = np.where(has[back], 1 << back, R)
        table[:, out] = np.where(has[out] | has[back], table[:, out], 0)
    elif name.partition("_every")[0] in ("east", "west", "south", "north") and name.partition("_every")[2].isdigit():
        # a chain over the groups of g tiles: each group's tile at the chain's far end
        # (x % g == g - 1 going east, 0 going west) sends and takes; the rest pass it on
        direction, _, every = name.partition("_every")
        g = int(every)
        out, back, c = {"east": (PORT_E, PORT_W, x), "west": (PORT_W, PORT_E, x),
                        "south": (PORT_S, PORT_N, y), "north": (PORT_N, PORT_S, y)}[direction]
        lead = c % g == (g - 1 if direction in ("east", "south") else 0)
        table[:, PORT_RAMP] = np.where(lead, bit[out], 0)
        table[:, back] = np.where(lead, R, bit[out])
    else:
        raise ValueError(f"unknown stream pattern {name}")
    # never route off the grid, and list no rule for a port with no neighbour behind it
    for p, h in has.items():
        table &= ~np.where(h, 0, 1 << p)[:, None]
        table[:, p] = np.where(h, table[:, p], 0)
    return table.astype(np.uint8)
