"""Chrome/Perfetto trace output (tilegrid/trace.py) and per-tile heatmaps (tilegrid/heatmap.py),
from synthetic event records in the format of emulator/trace_events.py."""
import json
import struct
from collections import defaultdict

import numpy as np
import pytest

from tilegrid.emulator.isa import MNEMONIC, VADD, VEXP
from tilegrid.emulator.trace_events import (EV_BACKPRESSURE, EV_BLOCKED, EV_MMAC, EV_RECV, EV_SCALAR, EV_SEND,
                                            EV_VECTOR, SLOT_SHIFT)
from tilegrid.heatmap import write_heatmaps
from tilegrid.trace import (CORE_TID, SLOT_TID0, TraceSummary, parse_tile_window, tile_pid,
                            write_chrome_trace)

W, H = 2, 2
CLOCK = 850
CYCLES = [100, 80, 50, 120]          # per tile
CORE_KINDS = (EV_SCALAR, EV_VECTOR, EV_MMAC, EV_BLOCKED)


def sa(slot, color):
    return slot * SLOT_SHIFT + color


def synthetic_events():
    """A 2x2 run: tile 0 sends color 3 to tile 1 over the blocking slot and is held by it once;
    tile 3 sends color 5 to tile 2 on slot 1 and is held by it; every tile's core events tile
    [0, its cycles)."""
    rows = [
        # tile 0: cycles 100
        (0, EV_SCALAR, 0, 10, 0, 10),
        (0, EV_VECTOR, 10, 30, 10, VADD),
        (0, EV_BLOCKED, 30, 50, 4, 1),
        (0, EV_MMAC, 50, 90, 12, 512),
        (0, EV_SCALAR, 90, 100, 13, 10),
        (0, EV_SEND, 30, 50, sa(4, 3), 20),
        (0, EV_BACKPRESSURE, 35, 45, sa(4, 3), 1),
        # tile 1: cycles 80
        (1, EV_SCALAR, 0, 20, 0, 20),
        (1, EV_BLOCKED, 20, 60, 0, -1),
        (1, EV_VECTOR, 60, 80, 30, VEXP),
        (1, EV_RECV, 20, 60, sa(0, 3), 20),
        # tile 2: cycles 50
        (2, EV_SCALAR, 0, 50, 0, 50),
        (2, EV_RECV, 5, 40, sa(2, 5), 16),
        # tile 3: cycles 120
        (3, EV_SCALAR, 0, 4, 0, 4),
        (3, EV_VECTOR, 4, 120, 4, VADD),
        (3, EV_SEND, 2, 30, sa(1, 5), 16),
        (3, EV_BACKPRESSURE, 2, 12, sa(1, 5), 2),      # starts with the send it holds
    ]
    return np.array(rows, dtype=np.int64)


PHASES = [
    {"name": "matmul", "first_cycle": 0, "last_cycle": 90, "compute": 200, "blocked": 60, "scalar": 80,
     "instructions": 120},
    {"name": "softmax", "first_cycle": 60, "last_cycle": 120, "compute": 150, "blocked": 0, "scalar": 30,
     "instructions": 40},                            # overlaps matmul: its own thread
]
LINKS = [[0, 20, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 16]]


def load(path):
    with open(path) as f:
        doc = json.load(f)
    assert isinstance(doc, dict) and isinstance(doc["traceEvents"], list)
    return doc


def us(cycles):
    return cycles / CLOCK


def assert_nested(xs):
    """Slices on one thread nest properly (never overlap partially)."""
    stack = []
    for e in sorted(xs, key=lambda e: (e["ts"], -e["dur"])):
        start, end = round(e["ts"] * 1000), round((e["ts"] + e["dur"]) * 1000)
        while stack and stack[-1] <= start:
            stack.pop()
        assert not stack or end <= stack[-1], f"{e['name']} at {e['ts']} overlaps its parent"
        stack.append(end)


@pytest.fixture
def trace(tmp_path):
    path = tmp_path / "run.json"
    summary = write_chrome_trace(path, synthetic_events(), W, H, CLOCK, phases=PHASES, link_wavelets=LINKS,
                                 per_tile_cycles=CYCLES)
    return path, summary, load(path)


def test_trace_structure(trace):
    path, summary, doc = trace
    evs = doc["traceEvents"]
    assert isinstance(summary, TraceSummary)
    assert summary.dropped == 0 and summary.records_written == len(synthetic_events())
    assert summary.events_written == len(evs) and summary.bytes == path.stat().st_size
    assert doc["otherData"]["dropped_events"] == 0 and doc["otherData"]["clock_mhz"] == CLOCK
    xs = [e for e in evs if e["ph"] == "X"]
    for e in xs:
        for key in ("pid", "tid", "ts", "dur", "name"):
            assert key in e, (key, e)
        assert e["dur"] >= 0
    by_thread = defaultdict(list)
    for e in xs:
        by_thread[e["pid"], e["tid"]].append(e)
    for thread in by_thread.values():
        assert_nested(thread)
    # per tile, the core thread's slices cover the tile's cycles exactly, converted to microseconds
    for t in range(W * H):
        core = by_thread[tile_pid(t), CORE_TID]
        assert sum(e["dur"] for e in core) == pytest.approx(us(CYCLES[t]), abs=1e-3)
        assert min(e["ts"] for e in core) == 0
        assert max(e["ts"] + e["dur"] for e in core) == pytest.approx(us(CYCLES[t]), abs=1e-3)
    # metadata: every tile a named, sorted process; every thread a name
    meta = [e for e in evs if e["ph"] == "M"]
    pname = {e["pid"]: e["args"]["name"] for e in meta if e["name"] == "process_name"}
    psort = {e["pid"]: e["args"]["sort_index"] for e in meta if e["name"] == "process_sort_index"}
    tname = {(e["pid"], e["tid"]): e["args"]["name"] for e in meta if e["name"] == "thread_name"}
    for t in range(W * H):
        assert pname[tile_pid(t)] == f"tile ({t % W},{t // W})"
        assert psort[tile_pid(t)] == t
    assert set(by_thread) <= set(tname)
    assert tname[tile_pid(0), CORE_TID] == "core"
    assert tname[tile_pid(0), SLOT_TID0 + 4] == "blocking slot"
    assert tname[tile_pid(1), SLOT_TID0 + 0] == "slot 0"
    assert tname[tile_pid(3), SLOT_TID0 + 1] == "slot 1"
    kernel_pid = next(p for p, n in pname.items() if n == "kernel calls")
    assert psort[kernel_pid] < 0                      # sorted above the tiles
    assert kernel_pid not in {tile_pid(t) for t in range(W * H)}


def test_trace_event_names_and_args(trace):
    _, _, doc = trace
    xs = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    core0 = sorted((e for e in xs if e["pid"] == tile_pid(0) and e["tid"] == CORE_TID), key=lambda e: e["ts"])
    assert [e["name"] for e in core0] == ["scalar", MNEMONIC[VADD], "blocked on (1,0)", "mmac", "scalar"]
    assert core0[0]["args"] == {"cycle": 0, "cycles": 10, "pc": 0, "instructions": 10}
    assert core0[1]["args"]["opcode"] == "vadd" and core0[1]["args"]["pc"] == 10
    assert core0[2]["args"]["waiting_on"] == "(1,0)" and core0[2]["args"]["slot"] == "blocking slot"
    assert core0[3]["args"]["multiply_adds"] == 512
    assert core0[3]["ts"] == pytest.approx(us(50), abs=1e-3) and core0[3]["dur"] == pytest.approx(us(40), abs=1e-3)
    blocked1 = next(e for e in xs if e["pid"] == tile_pid(1) and e["name"] == "blocked")
    assert "waiting_on" not in blocked1["args"]                    # b = -1: unknown
    assert any(e["name"] == "vexp" for e in xs if e["pid"] == tile_pid(1))
    send = next(e for e in xs if e["pid"] == tile_pid(0) and e["name"] == "send color 3")
    assert send["tid"] == SLOT_TID0 + 4 and send["args"]["wavelets"] == 20 and send["args"]["color"] == 3
    recv = next(e for e in xs if e["pid"] == tile_pid(1) and e["name"] == "recv color 3")
    assert recv["tid"] == SLOT_TID0 + 0
    held = [e for e in xs if e["name"].startswith("held by")]
    assert sorted((e["pid"], e["tid"], e["name"]) for e in held) == [
        (tile_pid(0), SLOT_TID0 + 4, "held by (1,0)"), (tile_pid(3), SLOT_TID0 + 1, "held by (0,1)")]
    # the kernel calls: one span each, the overlapping one on a second thread
    calls = {e["name"]: e for e in xs if e["cat"] == "kernel"}
    assert set(calls) == {"matmul", "softmax"}
    assert calls["matmul"]["tid"] != calls["softmax"]["tid"]
    assert calls["matmul"]["dur"] == pytest.approx(us(90), abs=1e-3)
    assert calls["softmax"]["args"]["compute"] == 150 and calls["softmax"]["args"]["instructions"] == 40


def test_trace_flows_pair_up(trace):
    _, _, doc = trace
    evs = doc["traceEvents"]
    starts = {e["id"]: e for e in evs if e["ph"] == "s"}
    ends = {e["id"]: e for e in evs if e["ph"] == "f"}
    assert len(starts) == 2 and set(starts) == set(ends)
    assert len([e for e in evs if e["ph"] == "s"]) == len(starts)     # ids unique
    held = [e for e in evs if e["ph"] == "X" and e["name"].startswith("held by")]
    for fid, s in starts.items():
        f = ends[fid]
        assert f["bp"] == "e" and f["cat"] == s["cat"] and f["name"] == s["name"]
        assert s["tid"] == CORE_TID                                   # from the holder's core ...
        span = next(h for h in held if h["pid"] == f["pid"] and h["tid"] == f["tid"]
                    and h["ts"] < f["ts"] < h["ts"] + h["dur"])       # ... into the span it held
        holder = int(span["args"]["receiver"].strip("()").split(",")[0]) + W * int(
            span["args"]["receiver"].strip("()").split(",")[1])
        assert s["pid"] == tile_pid(holder)
        assert s["ts"] == f["ts"]


def test_trace_link_counters(trace):
    _, _, doc = trace
    counters = [e for e in doc["traceEvents"] if e["ph"] == "C"]
    assert {e["name"] for e in counters} == {"link wavelets"}
    for t in range(W * H):
        mine = sorted((e for e in counters if e["pid"] == tile_pid(t)), key=lambda e: e["ts"])
        assert len(mine) == 2
        assert mine[0]["ts"] == 0 and mine[1]["ts"] == pytest.approx(us(CYCLES[t]), abs=1e-3)
        for e in mine:
            assert [e["args"][d] for d in "NESW"] == LINKS[t]


def test_trace_tile_window(tmp_path):
    tiles = parse_tile_window("0:1,:", W, H)            # column 0: tiles 0 and 2
    assert tiles == [0, 2]
    path = tmp_path / "part.json"
    summary = write_chrome_trace(path, synthetic_events(), W, H, CLOCK, tiles=tiles)
    evs = load(path)["traceEvents"]
    assert {e["pid"] for e in evs} == {tile_pid(0), tile_pid(2)}
    assert summary.records_written == sum(1 for r in synthetic_events() if r[0] in tiles)
    assert not [e for e in evs if e["ph"] in "sf"]      # both holders are outside the window
    assert [e["name"] for e in evs if e["ph"] == "X" and e["name"].startswith("held")] == ["held by (1,0)"]


def test_trace_size_cap_drops_and_says_so(tmp_path):
    rng = np.random.default_rng(7)
    rows = []
    for t in range(W * H):
        c = 0
        for _ in range(3000):
            n = int(rng.integers(1, 40))
            rows.append((t, EV_SCALAR if rng.random() < 0.5 else EV_VECTOR, c, c + n, c, VADD))
            c += n
    events = np.array(rows, dtype=np.int64)
    cap = 60_000
    path = tmp_path / "capped.json"
    summary = write_chrome_trace(path, events, W, H, CLOCK, max_bytes=cap)
    size = path.stat().st_size
    assert size <= cap and summary.bytes == size
    assert summary.dropped > 0 and summary.records_written + summary.dropped == len(events)
    doc = load(path)                                     # still valid JSON
    evs = doc["traceEvents"]
    notice = [e for e in evs if e["ph"] == "i"]
    assert len(notice) == 1 and notice[0]["s"] == "g"
    assert notice[0]["args"]["dropped_events"] == summary.dropped
    assert f"{summary.dropped} of {len(events)} events dropped" in notice[0]["name"]
    assert doc["otherData"]["dropped_events"] == summary.dropped
    assert doc["otherData"]["truncated_at_cycle"] == summary.truncated_at_cycle
    labels = [e for e in evs if e["ph"] == "M" and e["name"] == "process_labels"]
    assert labels and "dropped" in labels[0]["args"]["labels"]
    # records go out in start order: what is written is everything before the cut, on every tile
    xs = [e for e in evs if e["ph"] == "X"]
    assert len(xs) == summary.records_written
    assert max(e["ts"] for e in xs) <= us(summary.truncated_at_cycle) + 1e-3
    assert {e["pid"] for e in xs} == {tile_pid(t) for t in range(W * H)}
    # every process that has events has its name (names are written with a tile's first event)
    named = {e["pid"] for e in evs if e["ph"] == "M" and e["name"] == "process_name"}
    assert {e["pid"] for e in xs} <= named
    # an uncapped write of the same events drops nothing
    full = write_chrome_trace(tmp_path / "full.json", events, W, H, CLOCK)
    assert full.dropped == 0 and full.bytes > cap


def test_trace_empty_and_bad_input(tmp_path):
    s = write_chrome_trace(tmp_path / "empty.json", np.zeros((0, 6), np.int64), W, H, CLOCK)
    assert s.records_written == 0 and s.dropped == 0
    assert load(tmp_path / "empty.json")["traceEvents"] == []
    s = write_chrome_trace(tmp_path / "none.json", None, W, H, CLOCK, phases=PHASES)
    assert {e["name"] for e in load(tmp_path / "none.json")["traceEvents"] if e["ph"] == "X"} == {"matmul", "softmax"}
    with pytest.raises(ValueError, match="shape"):
        write_chrome_trace(tmp_path / "x.json", np.zeros((3, 5), np.int64), W, H, CLOCK)
    with pytest.raises(ValueError, match="outside"):
        write_chrome_trace(tmp_path / "x.json", [[4, EV_SCALAR, 0, 1, 0, 1]], W, H, CLOCK)
    with pytest.raises(ValueError, match="max_bytes"):
        write_chrome_trace(tmp_path / "x.json", None, W, H, CLOCK, max_bytes=100)
    with pytest.raises(ValueError, match="clock_mhz"):
        write_chrome_trace(tmp_path / "x.json", None, W, H, 0)


def test_trace_names_from_caller(tmp_path):
    names = {0: "root", 3: "tile (1,1) \u2014 sink"}
    write_chrome_trace(tmp_path / "n.json", synthetic_events(), W, H, CLOCK, tile_names=names)
    evs = load(tmp_path / "n.json")["traceEvents"]
    pname = {e["pid"]: e["args"]["name"] for e in evs if e["ph"] == "M" and e["name"] == "process_name"}
    assert pname[tile_pid(0)] == "root" and pname[tile_pid(3)] == names[3] and pname[tile_pid(1)] == "tile (1,0)"


def test_trace_says_what_the_emulator_did_not_keep(tmp_path):
    write_chrome_trace(tmp_path / "d.json", synthetic_events(), W, H, CLOCK, events_dropped=123)
    doc = load(tmp_path / "d.json")
    notes = [e for e in doc["traceEvents"] if e["ph"] == "i"]
    assert len(notes) == 1 and notes[0]["ts"] == 0 and notes[0]["args"]["events_not_recorded"] == 123
    assert doc["otherData"]["events_not_recorded"] == 123 and doc["otherData"]["dropped_events"] == 0


# ------------------------------------------------------------------ parse_tile_window
@pytest.mark.parametrize("text, want", [
    (":4,2:3", [8, 9, 10, 11]),
    ("0:4,0:4", list(range(16))),
    (":,:", list(range(16))),
    ("1:3,1:3", [5, 6, 9, 10]),
    ("2:,3", [14, 15]),
    ("-1,-1", [15]),
    (" 0 : 2 , 1 ", [4, 5]),
    ("::2,::3", [0, 2, 12, 14]),
    ("0:100,3:", [12, 13, 14, 15]),                 # slice ends clamp, as in Python
])
def test_parse_tile_window(text, want):
    assert parse_tile_window(text, 4, 4) == want


@pytest.mark.parametrize("text", ["", "1", "0:2", "0:2,1,3", "a:b,0", "0:1:2:3,0", "0:2;1", "4,0", "0,-5",
                                  "2:2,:", ":,3:1", "::0,:", "1.5,0"])
def test_parse_tile_window_errors(text):
    with pytest.raises(ValueError) as err:
        parse_tile_window(text, 4, 4)
    msg = str(err.value)
    assert "\n" not in msg and repr(text) in msg


# ------------------------------------------------------------------ heatmaps
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def stats_for(w, h):
    T = w * h
    yy, xx = np.divmod(np.arange(T), w)
    cycles = 10_000
    busy = (1000 + 800 * xx + 300 * yy).tolist()
    return {"cycles": cycles, "per_tile_cycles": [cycles] * T, "per_tile_busy": busy,
            "per_tile_blocked": [cycles - b - 500 for b in busy], "per_tile_instructions": (400 + 7 * xx * yy).tolist(),
            "per_tile_sram_bytes": (16384 + 1024 * (xx % 2)).tolist(), "sram_bytes_per_tile": 48 * 1024,
            "link_wavelets": np.stack([yy * 4, (w - 1 - xx) * 16, (h - 1 - yy) * 4, xx * 16], 1).tolist()}


@pytest.mark.parametrize("w, h", [(2, 2), (24, 20)])     # annotated cells, and image only
def test_heatmaps(tmp_path, w, h):
    import matplotlib.image as mpimg

    paths = write_heatmaps(tmp_path / "maps", stats_for(w, h), w, h)
    names = [p.name for p in paths]
    assert names == ["utilization.png", "blocked.png", "sram.png", "instructions.png", "links.png"]
    for p in paths:
        assert p.exists() and p.parent == tmp_path / "maps"
        pw, ph = png_size(p)
        assert 300 <= pw <= 3000 and 300 <= ph <= 3000, (p.name, pw, ph)
    img = mpimg.imread(paths[0])
    assert img.ndim == 3 and img.shape[:2] == tuple(reversed(png_size(paths[0])))
    assert float(img[..., :3].std()) > 0.05                   # not a uniform image


def test_heatmaps_object_defects_and_missing_fields(tmp_path):
    class Stats:                                             # attribute access, as RunStats
        pass

    s = Stats()
    d = stats_for(4, 3)
    for k, v in d.items():
        if k not in ("per_tile_blocked", "per_tile_sram_bytes"):
            setattr(s, k, v)
    defects = np.zeros(12, bool)
    defects[[1, 6]] = True
    paths = write_heatmaps(tmp_path, s, 4, 3, defects=defects)
    assert [p.name for p in paths] == ["utilization.png", "instructions.png", "links.png"]
    for p in paths:
        png_size(p)
    with pytest.raises(ValueError, match="defects"):
        write_heatmaps(tmp_path, s, 4, 3, defects=np.zeros(5, bool))
    with pytest.raises(ValueError, match="per_tile_busy"):
        write_heatmaps(tmp_path, d, 5, 3)
