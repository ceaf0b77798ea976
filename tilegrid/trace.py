"""A traced run as Chrome trace-event JSON, for ui.perfetto.dev and chrome://tracing.

    summary = write_chrome_trace("run.json", stats.events, width, height, clock_mhz,
                                 phases=stats.phases, link_wavelets=stats.link_wavelets)

The file is the "JSON object format" of the Trace Event Format: ``{"traceEvents": [...],
"otherData": {...}}``. What it holds:

- one process per traced tile, named "tile (x,y)" and sorted in tile-index order
  (pid = tile index + 1: Perfetto treats pid 0 and tid 0 as the kernel's swapper);
- in each tile, a "core" thread with the core events (scalar runs, vector instructions
  by mnemonic, mmac, "blocked on (x,y)"), which tile [0, the tile's cycles), and one
  thread per stream slot that has streams ("slot 0".."slot 3", "blocking slot"): send
  and receive streams, and nested in a send the spans "held by (x,y)" where a
  receiver's full queue held it back;
- for each hold a flow arrow from the holding receiver's core to the held send;
- a counter "link wavelets" per tile with the wavelets sent on its N, E, S and W links
  over the run (the run total, at 0 and at the tile's end);
- the kernel calls (phases) as spans of a process "kernel calls" sorted first.

Times are microseconds at the machine's clock (cycles / clock_mhz). Every boundary is
rounded to a whole nanosecond once and written with three decimals, so slices that
touch in cycles touch exactly in the trace (Perfetto stores integer nanoseconds).
The file stays under max_bytes: records are written in start-time order, so a
truncated trace is complete up to a cycle, and a final global instant event (and
otherData) says how many were dropped.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tilegrid.emulator.isa import BLOCKING_SLOT, MNEMONIC
from tilegrid.emulator.trace_events import (EV_BACKPRESSURE, EV_BLOCKED, EV_MMAC, EV_RECV, EV_SCALAR, EV_SEND,
                                            EV_VECTOR, EVENT_FIELDS, SLOT_SHIFT)

DEFAULT_MAX_BYTES = 200_000_000
MIN_MAX_BYTES = 4096
_TAIL_RESERVE = 2048          # the truncation notice and otherData always fit in this

TILE_PID_OFFSET = 1           # pid of tile t is t + 1
CORE_TID = 1                  # the core's thread
SLOT_TID0 = 2                 # stream slot s is thread SLOT_TID0 + s
_KIND_CAT = {EV_SCALAR: "scalar", EV_VECTOR: "vector", EV_MMAC: "mmac", EV_BLOCKED: "blocked",
             EV_SEND: "send", EV_RECV: "recv", EV_BACKPRESSURE: "backpressure"}


@dataclass(frozen=True)
class TraceSummary:
    events_written: int       # JSON trace events in the file (metadata, counters and flows included)
    records_written: int      # rows of `events` written
    dropped: int              # rows of `events` left out to keep the file under max_bytes
    bytes: int                # size of the file
    truncated_at_cycle: int | None = None   # the start cycle of the first dropped row

    def to_dict(self) -> dict:
        return asdict(self)


def tile_pid(tile: int) -> int:
    return int(tile) + TILE_PID_OFFSET


def slot_tid(slot: int) -> int:
    return SLOT_TID0 + int(slot)


def slot_name(slot: int) -> str:
    return "blocking slot" if slot == BLOCKING_SLOT else f"slot {slot}"


def thread_name(tid: int) -> str:
    return "core" if tid == CORE_TID else slot_name(tid - SLOT_TID0)


def parse_tile_window(text: str, width: int, height: int) -> list[int]:
    """'X0:X1,Y0:Y1' -> the sorted indices (y * width + x) of the tiles in the window.

    Each side is a Python slice over the grid's columns or rows (half-open, either end
    may be omitted, negatives count from the end, a step is allowed: ':4,2:3', '::2,:')
    or a single index ('3,-1'). Raises ValueError with a one-line message on bad input
    or an empty window."""
    width, height = int(width), int(height)
    usage = f"bad tile window {text!r}: expected X0:X1,Y0:Y1 (Python slices over the {width}x{height} grid, e.g. 0:4,2:3)"
    if not isinstance(text, str):
        raise ValueError(usage)
    parts = text.strip().split(",")
    if len(parts) != 2:
        raise ValueError(usage)
    ranges = []
    for part, n, axis in ((parts[0], width, "x"), (parts[1], height, "y")):
        part = part.strip()
        if not part:
            raise ValueError(usage)
        fields = [f.strip() for f in part.split(":")]
        try:
            nums = [int(f) if f else None for f in fields]
        except ValueError:
            raise ValueError(usage) from None
        if len(nums) == 1:
            i = nums[0]
            if not -n <= i < n:
                raise ValueError(f"tile window {text!r}: {axis} = {i} is outside the grid (0..{n - 1})")
            ranges.append(range(n)[i:i + 1] if i >= 0 else range(n)[n + i:n + i + 1])
        elif len(nums) in (2, 3):
            if len(nums) == 3 and nums[2] == 0:
                raise ValueError(f"tile window {text!r}: a step of 0")
            ranges.append(range(n)[slice(*nums)])
        else:
            raise ValueError(usage)
    xs, ys = ranges
    if len(xs) == 0 or len(ys) == 0:
        raise ValueError(f"tile window {text!r} holds no tile of the {width}x{height} grid")
    return sorted(y * width + x for y in ys for x in xs)


# ------------------------------------------------------------------ the writer
def _us(ns: int) -> str:
    """Integer nanoseconds as microseconds with three decimals, exactly."""
    ns = int(ns)
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    return f"{sign}{ns // 1000}.{ns % 1000:03d}"


def _name_of(tile: int, width: int) -> str:
    return f"({tile % width},{tile // width})"


class _Out:
    """The event list with its byte budget: a batch of events is written whole or not at all."""

    def __init__(self, f, max_bytes: int):
        self.f = f
        self.limit = max_bytes - _TAIL_RESERVE
        self.bytes = 0
        self.count = 0
        self.full = False

    def write_raw(self, text: str) -> None:
        self.f.write(text)
        self.bytes += len(text)

    def put(self, batch: list[str], force: bool = False) -> bool:
        if not batch:
            return True
        if self.full and not force:
            return False
        size = sum(len(s) for s in batch) + 2 * len(batch)
        if not force and self.bytes + size > self.limit:
            self.full = True
            return False
        for s in batch:
            self.write_raw((",\n" if self.count else "") + s)
            self.count += 1
        return True


def write_chrome_trace(path, events, width, height, clock_mhz, phases=None, link_wavelets=None, tile_names=None,
                       max_bytes=DEFAULT_MAX_BYTES, *, tiles=None, per_tile_cycles=None,
                       events_dropped=0, regions=None) -> TraceSummary:
    """Write a traced run's events as Chrome trace-event JSON at `path`; see the module docstring.

    events: int64 [n, 6] rows (tile, kind, start_cycle, end_cycle, a, b), emulator/trace_events.py.
    phases: RunStats.phases (dicts with name, first_cycle, last_cycle, compute, blocked, scalar,
    instructions); each becomes a span [first_cycle, last_cycle) of "kernel calls".
    link_wavelets: [T][4] wavelets sent on each tile's N, E, S, W links.
    tile_names: a sequence of T names, or a mapping tile -> name, instead of "tile (x,y)".
    tiles: only these tile indices (e.g. from parse_tile_window); flows to a tile outside are left out.
    per_tile_cycles: where each tile's counters end (default: the end of its last event).
    events_dropped: records the emulator could not keep (RunStats.events_dropped); a nonzero
    count is said in a global instant event at 0 and in otherData.
    regions: RunStats.regions of a program with regions: a "regions" process with a row per
    region, running until its last tile halts (with its compute and wait shares), then halted;
    and each tile is named with its region.
    """
    width, height = int(width), int(height)
    if width < 1 or height < 1:
        raise ValueError(f"grid {width}x{height}: both sides must be at least 1")
    if not clock_mhz or clock_mhz <= 0:
        raise ValueError(f"clock_mhz must be positive, not {clock_mhz!r}")
    max_bytes = int(max_bytes)
    if max_bytes < MIN_MAX_BYTES:
        raise ValueError(f"max_bytes must be at least {MIN_MAX_BYTES}, not {max_bytes}")
    T = width * height
    ev = np.asarray(events if events is not None else np.zeros((0, EVENT_FIELDS)), dtype=np.int64)
    if ev.size == 0:
        ev = ev.reshape(0, EVENT_FIELDS)
    if ev.ndim != 2 or ev.shape[1] != EVENT_FIELDS:
        raise ValueError(f"events must have shape [n, {EVENT_FIELDS}], not {list(ev.shape)}")
    if len(ev) and (ev[:, 0].min() < 0 or ev[:, 0].max() >= T):
        raise ValueError(f"events name tiles outside the {width}x{height} grid")
    selected = None
    if tiles is not None:
        selected = np.zeros(T, dtype=bool)
        selected[np.asarray(list(tiles), dtype=np.int64)] = True
        ev = ev[selected[ev[:, 0]]]

    scale = 1000.0 / float(clock_mhz)

    def ns(cycles):
        return np.rint(np.asarray(cycles, dtype=np.float64) * scale).astype(np.int64)

    tile_col, kind, start, end, a, b = (ev[:, i] for i in range(EVENT_FIELDS))
    end = np.maximum(end, start)
    stream = kind >= EV_SEND
    slot = np.where(stream, a // SLOT_SHIFT, 0)
    color = np.where(stream, a % SLOT_SHIFT, 0)
    tid = np.where(stream, SLOT_TID0 + slot, CORE_TID)
    end = _clamp_holds(tile_col, kind, start, end, a)
    start_ns, end_ns = ns(start), ns(end)
    order = np.lexsort((start - end, tid, tile_col, start))   # by start; a parent before what it holds

    region_of = {}
    for r in regions or []:
        for y in range(r["y0"], r["y1"]):
            for x in range(r["x0"], r["x1"]):
                region_of[y * width + x] = r["name"]

    def tile_name(t: int) -> str:
        if t in region_of and tile_names is None:
            return f"{region_of[t]} tile {_name_of(t, width)}"
        if tile_names is not None:
            try:
                return str(tile_names[t])
            except (KeyError, IndexError, TypeError):
                pass
        return f"tile {_name_of(t, width)}"

    named_pids: set = set()
    named_threads: set = set()

    def meta(t: int, thread: int) -> list[str]:
        """The metadata events a tile's thread needs before its first event (none once written)."""
        out = []
        pid = tile_pid(t)
        if pid not in named_pids:
            named_pids.add(pid)
            out.append(f'{{"ph":"M","pid":{pid},"tid":{CORE_TID},"name":"process_name","args":{{"name":{json.dumps(tile_name(t))}}}}}')
            out.append(f'{{"ph":"M","pid":{pid},"tid":{CORE_TID},"name":"process_sort_index","args":{{"sort_index":{t}}}}}')
            if link_wavelets is not None:
                out.append(_links_counter(pid, 0, link_wavelets[t]))
        if (pid, thread) not in named_threads:
            named_threads.add((pid, thread))
            out.append(f'{{"ph":"M","pid":{pid},"tid":{thread},"name":"thread_name","args":{{"name":"{thread_name(thread)}"}}}}')
            out.append(f'{{"ph":"M","pid":{pid},"tid":{thread},"name":"thread_sort_index","args":{{"sort_index":{thread}}}}}')
        return out

    path = Path(path)
    kernel_pid = T + TILE_PID_OFFSET
    written = 0
    truncated_at = None
    with open(path, "w", encoding="ascii", newline="\n") as f:
        out = _Out(f, max_bytes)
        out.write_raw('{"traceEvents":[\n')
        out.put(_phase_events(phases or [], kernel_pid, ns))
        out.put(_region_events(regions or [], kernel_pid + 1, ns, per_tile_cycles))
        if events_dropped:
            out.put([f'{{"ph":"i","s":"g","pid":{kernel_pid},"tid":{CORE_TID},"ts":0.000,'
                     f'"name":"the emulator did not keep {int(events_dropped)} events (its per-tile buffers were full)",'
                     f'"cat":"tilegrid","args":{{"events_not_recorded":{int(events_dropped)}}}}}'])
        for i in order:
            i = int(i)
            t, k, s_ns, e_ns = int(tile_col[i]), int(kind[i]), int(start_ns[i]), int(end_ns[i])
            th = int(tid[i])
            pid = tile_pid(t)
            cyc, dur = int(start[i]), int(end[i] - start[i])
            ai, bi = int(a[i]), int(b[i])
            head = f'{{"ph":"X","pid":{pid},"tid":{th},"ts":{_us(s_ns)},"dur":{_us(e_ns - s_ns)},'
            common = f'"cycle":{cyc},"cycles":{dur}'
            batch = meta(t, th)
            if k == EV_SCALAR:
                batch.append(f'{head}"name":"scalar","cat":"scalar","args":{{{common},"pc":{ai},"instructions":{bi}}}}}')
            elif k == EV_VECTOR:
                op = MNEMONIC.get(bi, f"op{bi}")
                batch.append(f'{head}"name":"{op}","cat":"vector","args":{{{common},"pc":{ai},"opcode":"{op}"}}}}')
            elif k == EV_MMAC:
                batch.append(f'{head}"name":"mmac","cat":"mmac","args":{{{common},"pc":{ai},"multiply_adds":{bi}}}}}')
            elif k == EV_BLOCKED:
                if 0 <= bi < T:
                    peer = _name_of(bi, width)
                    batch.append(f'{head}"name":"blocked on {peer}","cat":"blocked","args":{{{common},'
                                 f'"slot":"{slot_name(ai)}","waiting_on":"{peer}"}}}}')
                else:
                    batch.append(f'{head}"name":"blocked","cat":"blocked","args":{{{common},"slot":"{slot_name(ai)}"}}}}')
            elif k in (EV_SEND, EV_RECV):
                what = "send" if k == EV_SEND else "recv"
                c = int(color[i])
                batch.append(f'{head}"name":"{what} color {c}","cat":"{what}","args":{{{common},"color":{c},'
                             f'"wavelets":{bi},"slot":"{slot_name(int(slot[i]))}"}}}}')
            elif k == EV_BACKPRESSURE:
                c = int(color[i])
                known = 0 <= bi < T
                peer = _name_of(bi, width) if known else "?"
                batch.append(f'{head}"name":"held by {peer}","cat":"backpressure","args":{{{common},"color":{c},'
                             f'"receiver":"{peer}"}}}}')
                if known and (selected is None or selected[bi]) and bi != t:
                    mid = _us((s_ns + e_ns) // 2)
                    fid = i + 1
                    batch = meta(bi, CORE_TID) + batch
                    batch.append(f'{{"ph":"s","pid":{tile_pid(bi)},"tid":{CORE_TID},"ts":{mid},"id":{fid},'
                                 f'"name":"holds","cat":"backpressure"}}')
                    batch.append(f'{{"ph":"f","bp":"e","pid":{pid},"tid":{th},"ts":{mid},"id":{fid},'
                                 f'"name":"holds","cat":"backpressure"}}')
            else:
                batch.append(f'{head}"name":"kind {k}","cat":"unknown","args":{{{common},"a":{ai},"b":{bi}}}}}')
            if not out.put(batch):
                truncated_at = cyc
                # names that were reserved for the batch were not written
                _forget(batch, named_pids, named_threads)
                break
            written += 1
        dropped = len(order) - written
        if link_wavelets is not None and not dropped:
            ends = _tile_ends(tile_col, end, T, per_tile_cycles)
            for pid in sorted(named_pids):
                t = pid - TILE_PID_OFFSET
                if not out.put([_links_counter(pid, int(ns(ends[t])), link_wavelets[t])]):
                    break
        if dropped:
            at = _us(int(ns(truncated_at)))
            name_it = [] if phases else [
                f'{{"ph":"M","pid":{kernel_pid},"tid":{CORE_TID},"name":"process_name","args":{{"name":"kernel calls"}}}}']
            notice = (f"trace truncated at cycle {truncated_at}: {dropped} of {len(order)} events dropped "
                      f"to stay under {max_bytes} bytes")
            out.put(name_it + [f'{{"ph":"i","s":"g","pid":{kernel_pid},"tid":{CORE_TID},"ts":{at},"name":{json.dumps(notice)},'
                     f'"cat":"tilegrid","args":{{"dropped_events":{dropped},"max_bytes":{max_bytes}}}}}',
                     f'{{"ph":"M","pid":{kernel_pid},"tid":{CORE_TID},"name":"process_labels",'
                     f'"args":{{"labels":{json.dumps(notice)}}}}}'], force=True)
        other = {"generator": "tilegrid", "width": width, "height": height, "clock_mhz": clock_mhz,
                 "time_unit": "microseconds at clock_mhz", "records": int(len(order)),
                 "records_written": written, "dropped_events": int(dropped)}
        if dropped:
            other["truncated_at_cycle"] = int(truncated_at)
        if events_dropped:
            other["events_not_recorded"] = int(events_dropped)
        out.write_raw('\n],\n"otherData":' + json.dumps(other, separators=(",", ":")) + "}\n")
        count, size = out.count, out.bytes
    return TraceSummary(events_written=count, records_written=written, dropped=int(dropped), bytes=size,
                        truncated_at_cycle=None if truncated_at is None else int(truncated_at))


def _forget(batch: list[str], named_pids: set, named_threads: set) -> None:
    for s in batch:
        if s.startswith('{"ph":"M"'):
            d = json.loads(s)
            if d["name"] == "process_name":
                named_pids.discard(d["pid"])
            elif d["name"] == "thread_name":
                named_threads.discard((d["pid"], d["tid"]))


def _links_counter(pid: int, ts_ns: int, links) -> str:
    n, e, s, w = (int(v) for v in links)
    return (f'{{"ph":"C","pid":{pid},"tid":{CORE_TID},"ts":{_us(ts_ns)},"name":"link wavelets",'
            f'"args":{{"N":{n},"E":{e},"S":{s},"W":{w}}}}}')


def _tile_ends(tile_col, end, T: int, per_tile_cycles) -> np.ndarray:
    if per_tile_cycles is not None:
        return np.asarray(per_tile_cycles, dtype=np.int64)
    ends = np.zeros(T, dtype=np.int64)
    if len(tile_col):
        np.maximum.at(ends, tile_col, end)
    return ends


def _clamp_holds(tile_col, kind, start, end, a) -> np.ndarray:
    """A hold ends no later than the send it lies in, so it nests in that send's slice."""
    holds = np.flatnonzero(kind == EV_BACKPRESSURE)
    if not len(holds):
        return end
    end = end.copy()
    sends = np.flatnonzero(kind == EV_SEND)
    by_stream: dict = {}
    for j in sends[np.argsort(start[sends], kind="stable")]:
        by_stream.setdefault((int(tile_col[j]), int(a[j])), []).append(j)
    for key, js in by_stream.items():
        by_stream[key] = (start[js], end[js])
    for i in holds:
        got = by_stream.get((int(tile_col[i]), int(a[i])))
        if got is None:
            continue
        starts, ends = got
        j = int(np.searchsorted(starts, start[i], side="right")) - 1
        if j >= 0 and start[i] < ends[j]:
            end[i] = min(end[i], ends[j])
    return end


def _region_events(regions: list, pid: int, ns, per_tile_cycles) -> list[str]:
    """Each region as a row: running from 0 until its last tile halts, then halted to the end."""
    if len(regions) < 2:
        return []
    end = max(int(np.max(per_tile_cycles, initial=0)) if per_tile_cycles is not None else 0,
              max(int(r["last_cycle"]) for r in regions))
    out = [f'{{"ph":"M","pid":{pid},"tid":{CORE_TID},"name":"process_name","args":{{"name":"regions"}}}}',
           f'{{"ph":"M","pid":{pid},"tid":{CORE_TID},"name":"process_sort_index","args":{{"sort_index":-1}}}}']
    for i, r in enumerate(regions):
        tid = CORE_TID + i
        last = int(r["last_cycle"])
        whole = max(int(r["tiles"]) * end, 1)
        args = {k: f"{int(r[k]) / whole:.1%}" for k in ("compute", "blocked", "scalar", "halted")}
        args["tiles"] = int(r["tiles"])
        out.append(f'{{"ph":"M","pid":{pid},"tid":{tid},"name":"thread_name","args":{{"name":{json.dumps(r["name"])}}}}}')
        out.append(f'{{"ph":"M","pid":{pid},"tid":{tid},"name":"thread_sort_index","args":{{"sort_index":{i}}}}}')
        out.append(f'{{"ph":"X","pid":{pid},"tid":{tid},"ts":0.000,"dur":{_us(int(ns(last)))},"name":"running",'
                   f'"cat":"region","args":{json.dumps(args)}}}')
        if end > last:
            out.append(f'{{"ph":"X","pid":{pid},"tid":{tid},"ts":{_us(int(ns(last)))},'
                       f'"dur":{_us(int(ns(end)) - int(ns(last)))},"name":"halted","cat":"region","args":{{}}}}')
    return out


def _phase_events(phases: list, pid: int, ns) -> list[str]:
    """The kernel calls as spans of their own process; calls that overlap go on further threads."""
    if not phases:
        return []
    out = [f'{{"ph":"M","pid":{pid},"tid":{CORE_TID},"name":"process_name","args":{{"name":"kernel calls"}}}}',
           f'{{"ph":"M","pid":{pid},"tid":{CORE_TID},"name":"process_sort_index","args":{{"sort_index":-1}}}}']
    lanes: list[int] = []       # the end (ns) of the last span on each thread
    rows = sorted(enumerate(phases), key=lambda p: (int(p[1]["first_cycle"]), p[0]))
    for order, (index, ph) in enumerate(rows):
        first, last = int(ph["first_cycle"]), int(ph["last_cycle"])
        last = max(last, first)
        s_ns, e_ns = int(ns(first)), int(ns(last))
        lane = next((k for k, free in enumerate(lanes) if free <= s_ns), len(lanes))
        if lane == len(lanes):
            lanes.append(0)
            tid = CORE_TID + lane
            label = "calls" if lane == 0 else f"calls (overlapping {lane})"
            out.append(f'{{"ph":"M","pid":{pid},"tid":{tid},"name":"thread_name","args":{{"name":"{label}"}}}}')
            out.append(f'{{"ph":"M","pid":{pid},"tid":{tid},"name":"thread_sort_index","args":{{"sort_index":{lane}}}}}')
        lanes[lane] = e_ns
        args = {"index": index, "first_cycle": first, "last_cycle": last, "cycles": last - first}
        for key in ("compute", "blocked", "scalar", "instructions"):
            if key in ph:
                args[key] = int(ph[key])
        name = str(ph.get("name", f"call {index}"))
        out.append(f'{{"ph":"X","pid":{pid},"tid":{CORE_TID + lane},"ts":{_us(s_ns)},"dur":{_us(e_ns - s_ns)},'
                   f'"name":{json.dumps(name)},"cat":"kernel","args":{json.dumps(args)}}}')
    return out
