"""What a user looks at: --stats per statement, --trace, --heatmap, the progress bar."""
import io
import json

import numpy as np
import pytest

from tilegrid.cli import main
from tilegrid.input_files import write_npz
from tilegrid.progress import RunProgress


@pytest.fixture(scope="module")
def matmul_inputs(tmp_path_factory):
    path = tmp_path_factory.mktemp("in") / "in.npz"
    rng = np.random.default_rng(0)
    write_npz(path, {"A": rng.standard_normal((16, 16)).astype(np.float32),
                     "B": rng.standard_normal((16, 16)).astype(np.float32)})
    return path


def test_trace_file_has_a_track_per_tile_and_spans_that_add_up(tmp_path, matmul_inputs, capsys):
    from tilegrid import api
    from tilegrid.input_files import load_npz
    trace = tmp_path / "run.json"
    assert main(["run", "matmul", "--grid", "2x2", "--inputs", str(matmul_inputs), "--trace", str(trace)]) == 0
    assert "open it in ui.perfetto.dev" in capsys.readouterr().out
    events = json.loads(trace.read_text())["traceEvents"]
    names = {e["args"]["name"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"}
    assert {"tile (0,0)", "tile (1,0)", "tile (0,1)", "tile (1,1)", "kernel calls"} <= names
    tile_pids = {e["pid"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"
                 and e["args"]["name"].startswith("tile")}
    core_us = {}
    for e in events:
        if e.get("ph") == "X" and e.get("tid") == 1 and e.get("pid") in tile_pids:
            core_us[e["pid"] - 1] = core_us.get(e["pid"] - 1, 0.0) + e["dur"]
    # the same run again (runs are deterministic) for each tile's cycles
    stats = api.run_kernel("matmul", load_npz(matmul_inputs, 1 << 30, ""), grid=(2, 2)).stats
    assert sorted(core_us) == [0, 1, 2, 3]
    for t, us in core_us.items():
        assert us == pytest.approx(stats.per_tile_cycles[t] / stats.clock_mhz, abs=1e-3)
    kinds = {str(e.get("name", "")).split()[0] for e in events if e.get("ph") == "X"}
    assert {"mmac", "send", "recv"} <= kinds


def test_core_spans_equal_cycles_per_tile(tmp_path, matmul_inputs):
    from tilegrid import api
    from tilegrid.input_files import load_npz
    inputs = load_npz(matmul_inputs, 1 << 30, "")
    result = api.run_kernel("matmul", inputs, grid=(2, 2), trace_tiles=range(4))
    ev = result.stats.events
    for t in range(4):
        core = ev[(ev[:, 0] == t) & (ev[:, 1] <= 3)]
        assert int((core[:, 3] - core[:, 2]).sum()) == result.stats.per_tile_cycles[t]
        # and they follow each other without gaps or overlaps
        order = np.argsort(core[:, 2], kind="stable")
        starts, ends = core[order, 2], core[order, 3]
        assert starts[0] == 0 and (starts[1:] == ends[:-1]).all()


def test_stats_prints_time_per_statement(tmp_path, matmul_inputs, capsys):
    assert main(["run", "matmul", "--grid", "2x2", "--inputs", str(matmul_inputs), "--stats",
                 str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "time per statement" in out and "C += a @ b" in out
    assert " s at 850 MHz" in out or "us at 850 MHz" in out or "ms at 850 MHz" in out
    st = json.loads((tmp_path / "s.json").read_text())
    mm = next(p for p in st["phases"] if "C += a @ b" in p["name"])
    assert mm["compute"] >= 4 * 8 * 8 * 8  # every tile's mmac work: (16/2)^2 * 16 multiply-adds
    assert st["seconds"] == pytest.approx(st["cycles"] / 850e6)


def test_block_phases_name_each_kernel_call(tmp_path):
    from tilegrid import api, kernels
    spec = kernels.BUNDLED["transformer_block"]
    x = spec.make_inputs(np.random.default_rng(0), {"S": 8, "Dm": 16, "Dff": 32})
    r = api.run_kernel("transformer_block", x, grid=(2, 2), params={"heads": 2, "causal": 1})
    names = " ".join(p["name"] for p in r.stats.phases)
    for call in ("layernorm(", "attention(", "mlp(", "matmul("):
        assert call in names
    busy = sum(r.stats.per_tile_busy)
    compute = sum(p["compute"] for p in r.stats.phases)
    assert compute >= busy  # phase compute counts issue cycles of vector instructions too


def test_trace_tiles_window_and_errors(tmp_path, matmul_inputs, capsys):
    trace = tmp_path / "w.json"
    assert main(["run", "matmul", "--grid", "2x2", "--inputs", str(matmul_inputs), "--trace", str(trace),
                 "--trace-tiles", "1:2,0:2"]) == 0
    doc = json.loads(trace.read_text())
    tile_pids = {e["pid"] for e in doc["traceEvents"] if e.get("ph") == "M" and e.get("name") == "process_name"
                 and e["args"]["name"].startswith("tile")}
    pids = {e["pid"] for e in doc["traceEvents"] if e.get("ph") == "X" and e.get("pid") in tile_pids}
    assert pids == {2, 4}, pids  # tiles (1,0) and (1,1): index 1 and 3, pid = tile + 1
    capsys.readouterr()
    assert main(["run", "matmul", "--grid", "2x2", "--inputs", str(matmul_inputs), "--trace", str(trace),
                 "--trace-tiles", "5:9,0:1"]) == 2
    assert "--trace-tiles" in capsys.readouterr().err
    assert main(["run", "matmul", "--grid", "2x2", "--inputs", str(matmul_inputs), "--trace-tiles", "0:1,0:1"]) == 2


def test_heatmaps_are_written(tmp_path, matmul_inputs, capsys):
    out = tmp_path / "hm"
    assert main(["run", "matmul", "--grid", "2x2", "--inputs", str(matmul_inputs), "--heatmap", str(out)]) == 0
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert {"utilization.png", "blocked.png", "sram.png", "instructions.png", "links.png"} <= set(pngs)
    for p in out.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_progress_bar_only_on_a_terminal_after_a_while():
    class Tty(io.StringIO):
        def isatty(self):
            return True
    quiet = io.StringIO()
    bar = RunProgress("x", stream=quiet)
    bar.started -= 10
    bar(5, 100)
    bar.close()
    assert quiet.getvalue() == ""                  # not a terminal: nothing, as in CI logs
    tty = Tty()
    bar = RunProgress("x", stream=tty)
    bar(5, 100)
    assert tty.getvalue() == ""                    # a quick run: nothing
    bar.started -= 10
    bar(7, 1000)
    bar.close()
    assert "x" in tty.getvalue() and "1,000" in tty.getvalue()


def test_bare_stats_prints_the_table_without_a_file(tmp_path, matmul_inputs, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "matmul", "--grid", "2x2", "--inputs", str(matmul_inputs), "--stats"]) == 0
    assert "time per statement" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
