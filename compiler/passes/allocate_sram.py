"""Buffers -> SRAM word addresses, reusing space between buffers whose
lifetimes do not overlap.

A buffer is live from its first to its last use in program order; a use
inside a loop keeps it live for the whole loop, since the next iteration may
read it again, unless each iteration writes all of it before reading it (a
call's temporaries in a loop over a batch): then it lives within the
iteration and shares space with the other calls' buffers. Inputs are live from the start
(the host writes them before the run) and outputs to the end (the host reads
them after). Placement is first fit, in order of first use, larger first.
"""
from __future__ import annotations

import bisect
import heapq

from tilegrid.emulator.config import MachineConfig

from ..diagnostics import CompileError
from ..spatial_ir import (Copy, Elementwise, Fill, Fmac, IfTile, LoadIndex, Loop, Mask, MatMac, Overwrite, Recv, Scale,
                          Send, SpatialKernel, Unary, View, Wait, Widen)


def allocate_sram(k: SpatialKernel, config: MachineConfig, reserved_words: int = 0) -> SpatialKernel:
    """reserved_words: SRAM already taken (code and descriptors) on every tile."""
    live = _live_ranges(k)
    order = sorted((b for b in k.buffers if b in live), key=lambda b: (live[b][0], -b.words, b.name))
    capacity = config.sram_words - reserved_words
    top = 0
    # Sweep in order of first use. A placed buffer whose live range ended before
    # this one starts can never overlap a later one either, so its words go back
    # to the free list for good. First fit over the free gaps gives the same
    # plan as first fit over the live buffers, in time near linear in program size.
    free = _FreeList()
    expiry: list = []      # heap of (last use, sequence, buffer)
    for seq, buf in enumerate(order):
        lo, hi = live[buf]
        while expiry and expiry[0][0] < lo:
            gone = heapq.heappop(expiry)[2]
            free.release(gone.addr, gone.words)
        buf.addr = free.take(buf.words)
        heapq.heappush(expiry, (hi, seq, buf))
        top = max(top, buf.addr + buf.words)
        if top > capacity:
            raise _overflow(k, config, buf, top, reserved_words)
    for buf in k.buffers:
        if buf not in live:  # declared but never used: give it no space
            buf.addr = 0
    k.sram_words = top
    k.live = live
    return k


class _FreeList:
    """Free SRAM as sorted, disjoint [start, end) gaps; the last one is unbounded."""

    def __init__(self):
        self.starts = [0]
        self.ends = [float("inf")]

    def take(self, words: int) -> int:
        """The lowest address with `words` free words in a row."""
        for i, (start, end) in enumerate(zip(self.starts, self.ends)):
            if end - start >= words:
                if end - start == words:
                    del self.starts[i], self.ends[i]
                else:
                    self.starts[i] = start + words
                return start
        raise AssertionError("the last gap is unbounded")

    def release(self, addr: int, words: int) -> None:
        i = bisect.bisect_left(self.starts, addr)
        start, end = addr, addr + words
        if i < len(self.starts) and self.starts[i] == end:  # merge with the gap above
            end = self.ends[i]
            del self.starts[i], self.ends[i]
        if i > 0 and self.ends[i - 1] == start:              # and with the gap below
            self.ends[i - 1] = end
        else:
            self.starts.insert(i, start)
            self.ends.insert(i, end)


def _overflow(k, config, buf, top, reserved_words) -> CompileError:
    wb = config.word_bytes
    biggest = sorted((b for b in k.buffers if b.addr >= 0), key=lambda b: -b.words)[:4]
    listing = ", ".join(f"'{b.name}' {b.words * wb} B" for b in biggest)
    code = f", code {reserved_words * wb} B" if reserved_words else ""
    shape = "x".join(map(str, buf.shape))
    return CompileError(
        f"SRAM overflow on tile (0, 0) (and every tile running this kernel): buffer '{buf.name}' "
        f"(f32[{shape}], {buf.words * wb} bytes) does not fit; the kernel needs at least "
        f"{(top + reserved_words) * wb} bytes per tile, a tile has {config.sram_bytes}. "
        f"Largest buffers: {listing}{code}. Use a larger grid or smaller shapes.", buf.span)


def op_views(op) -> list[View]:
    if isinstance(op, (Fill, Mask)):
        return [op.dst]
    if isinstance(op, (Copy, Scale, Unary, Widen)):
        return [op.dst, op.src]
    if isinstance(op, (Elementwise, Fmac)):
        return [op.dst, op.a, op.b]
    if isinstance(op, MatMac):
        return [op.c, op.a, op.b]
    if isinstance(op, Send):
        return [op.src]
    if isinstance(op, Recv):
        return [op.dst]
    if isinstance(op, LoadIndex):
        return [op.src]
    if isinstance(op, Wait):  # an asynchronous stream's buffers stay live until its wait
        return list(op.views)
    if isinstance(op, Overwrite):
        return [op.view]
    return []


def _live_ranges(k: SpatialKernel) -> dict:
    uses: dict = {}        # buffer -> (first, last) use, in program order
    loops: list = []       # (start, end, loop), inner loops before the loops around them
    counter = [0]

    def use(buf, at):
        lo, hi = uses.get(buf, (at, at))
        uses[buf] = (min(lo, at), max(hi, at))

    def visit(ops):
        for op in ops:
            counter[0] += 1
            here = counter[0]
            if isinstance(op, Loop):
                visit(op.body)
                loops.append((here, counter[0], op))
            elif isinstance(op, IfTile):
                visit(op.then)
                visit(op.orelse)
            else:
                for v in op_views(op):
                    use(v.buffer, here)

    visit(k.body)
    io = {t.buffer for t in k.io}
    live = dict(uses)
    for start, end, loop in loops:  # a use in a loop keeps the buffer live for the whole loop, ...
        for buf, (lo, hi) in live.items():
            if hi < start or lo > end:
                continue
            first, last = uses[buf]
            if buf not in io and start <= first and last <= end and _first_access(loop.body, buf) == "def":
                continue  # ... unless each iteration writes all of it before any read: then it is the iteration's own
            live[buf] = (min(lo, start), max(hi, end))
    end = counter[0] + 1
    for t in k.io:
        lo, hi = live.get(t.buffer, (0, 0))
        live[t.buffer] = (0, hi) if t.role == "input" else (min(lo, end) if t.buffer in live else end, end)
    return live


def _first_access(ops, buf) -> str | None:
    """'def' when the first thing `ops` do to buf, on every tile, is to write all of it
    without reading it; 'use' when something else touches it first; None if nothing does."""
    for i, op in enumerate(ops):
        if isinstance(op, Loop):  # a loop runs at least once (empty ones are not emitted)
            found = _first_access(op.body, buf)
        elif isinstance(op, IfTile):
            then, orelse = _first_access(op.then, buf), _first_access(op.orelse, buf)
            if (then is None) != (orelse is None):  # the tiles of the other branch meet buf later, if at all
                rest = _first_access(ops[i + 1:], buf)
                then, orelse = then or rest, orelse or rest
            found = "use" if "use" in (then, orelse) else "def" if "def" in (then, orelse) else None
            if found is not None:
                return found
            continue
        else:
            views = op_views(op)
            if not any(v.buffer is buf for v in views):
                continue
            whole = isinstance(op, (Fill, Copy, Elementwise, Scale, Unary, Recv, Widen, Overwrite)) and \
                views[0].same_as(buf.full_view()) and all(v.buffer is not buf for v in views[1:])
            found = "def" if whole else "use"
        if found is not None:
            return found
    return None
