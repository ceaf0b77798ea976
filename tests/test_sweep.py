"""`tilegrid sweep`: the spec's product, a real parallel sweep checked point by point
against direct runs, failed points as rows, the outputs, and bad arguments."""
import csv
import importlib.util

import numpy as np
import pytest

import tilegrid
from tilegrid import cli, kernels, sweep
from tilegrid.errors import UserError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_spec_is_the_product_in_order():
    points = sweep.parse_sweep("matmul", "1x1,2x2,4x2", ["M=8,16", "K=16", "N=16,32"])
    assert len(points) == 3 * 2 * 1 * 2
    got = [(p.grid, p.params["M"], p.params["N"]) for p in points]
    want = [(g, m, n) for g in ((1, 1), (2, 2), (4, 2)) for m in (8, 16) for n in (16, 32)]
    assert got == want
    assert points[0].params == {"M": 8, "K": 16, "N": 16}
    assert points[0].sizes == {"M": 8, "K": 16, "N": 16}
    assert sweep.columns_for(points)[:8] == ["kernel", "grid", "width", "height", "tiles", "M", "K", "N"]
    assert sweep.columns_for(points)[-4:] == ["wall_seconds", "emulate_seconds", "check", "error"]


def test_unset_sizes_come_from_the_demo_sizes_and_are_columns():
    (p,) = sweep.parse_sweep("matmul", "2x2", ["M=8"])
    assert p.params == {"M": 8}
    assert p.sizes == {**kernels.BUNDLED["matmul"].demo_sizes, "M": 8}
    assert p.columns() == {"M": 8, "K": 64, "N": 64}


@pytest.mark.parametrize("grid, params, message", [
    ("2x2,", [], "empty value"),
    ("2x2", ["M="], "empty value"),
    ("2y2", [], "WxH"),
    ("2x2,2x2", [], "twice"),
    ("2x2", ["M=8", "M=16"], "given twice"),
    ("2x2", ["M=8,8"], "twice"),
    ("2x2", ["M=eight"], "not a number"),
    ("2x2", ["M"], "NAME=VALUE"),
    ("2x2", ["tiles=4"], "column"),
    ("1x1,2x2", [f"M={','.join(map(str, range(1, 26)))}", f"K={','.join(map(str, range(1, 22)))}"],
     "1050 points"),
])
def test_bad_specs_are_user_errors(grid, params, message):
    with pytest.raises(UserError, match=message):
        sweep.parse_sweep("matmul", grid, params)


def test_a_tg_file_without_a_bundled_spec_needs_inputs(tmp_path):
    path = tmp_path / "add.tg"
    path.write_text("kernel add(A: f32[M, N] block(y, x)) -> C: f32[M, N] block(y, x)\n{\n    C = A + A\n}\n")
    with pytest.raises(UserError, match="--inputs"):
        sweep.parse_sweep(str(path), "1x1")
    np.savez(tmp_path / "in.npz", A=np.ones((4, 4), np.float32))
    with pytest.raises(UserError, match="reference"):
        sweep.parse_sweep(str(path), "1x1", inputs=str(tmp_path / "in.npz"), check=True)
    (p,) = sweep.parse_sweep(str(path), "1x1", inputs=str(tmp_path / "in.npz"))
    assert p.kernel == "add" and p.sizes is None


def test_parallel_sweep_runs_each_point(tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main(["sweep", "matmul", "--grid", "1x1,2x2", "--param", "M=8,16", "--param", "K=16",
                   "--param", "N=16", "--jobs", "2", "--check", "--seed", "3", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    rows = read_csv(out / "results.csv")
    assert [(r["grid"], r["M"], r["K"], r["N"]) for r in rows] == [
        ("1x1", "8", "16", "16"), ("1x1", "16", "16", "16"), ("2x2", "8", "16", "16"), ("2x2", "16", "16", "16")]
    assert list(rows[0]) == sweep.columns_for(sweep.parse_sweep("matmul", "1x1", ["M=8", "K=16", "N=16"]))
    for r in rows:
        assert r["error"] == "" and r["check"] == "ok" and r["kernel"] == "matmul"
        assert int(r["cycles"]) > 0 and int(r["tiles"]) == int(r["width"]) * int(r["height"])
        assert 0 < float(r["utilization"]) <= 1 and int(r["sram_peak_bytes"]) <= int(r["sram_bytes_per_tile"])
        sizes = {"M": int(r["M"]), "K": 16, "N": 16}
        inputs = kernels.BUNDLED["matmul"].make_inputs(np.random.default_rng(3), sizes)
        direct = tilegrid.run_kernel("matmul", inputs, grid=(int(r["width"]), int(r["height"])))
        assert int(r["cycles"]) == direct.stats.cycles
        assert int(r["instructions"]) == direct.stats.instructions
        assert int(r["wavelets"]) == direct.stats.wavelets
    assert (out / "sweep.png").read_bytes()[:8] == PNG_MAGIC
    assert len(text.strip().splitlines()) == 1 + 4 + 1   # header, one line per point, the paths
    if importlib.util.find_spec("pyarrow"):
        import pyarrow.parquet as pq
        table = pq.read_table(out / "results.parquet").to_pylist()
        assert [t["cycles"] for t in table] == [int(r["cycles"]) for r in rows]
        assert "results.parquet and" in text.splitlines()[-1]
    else:
        assert "not results.parquet" in text.splitlines()[-1] and not (out / "results.parquet").exists()


def test_a_failed_point_is_a_row_and_exit_1(tmp_path, capsys):
    out = tmp_path / "out"
    # 1x1 with M=16 needs more than 4 KiB per tile, 3x3 does not divide M: two failures
    rc = cli.main(["sweep", "matmul", "--grid", "1x1,2x2,3x3", "--param", "M=8,16", "--param", "K=16",
                   "--param", "N=16", "--sram-bytes", "4096", "--jobs", "1", "--out", str(out)])
    text = capsys.readouterr()
    assert rc == 1
    rows = {(r["grid"], r["M"]): r for r in read_csv(out / "results.csv")}
    assert len(rows) == 6
    assert "SRAM overflow" in rows["1x1", "16"]["error"] and rows["1x1", "16"]["cycles"] == ""
    assert "divisible by 3" in rows["3x3", "8"]["error"]
    for ok in (("1x1", "8"), ("2x2", "8"), ("2x2", "16")):
        assert rows[ok]["error"] == "" and int(rows[ok]["cycles"]) > 0
    assert "FAILED" in text.out and "3 of 6 points failed" in text.err
    assert (out / "sweep.png").read_bytes()[:8] == PNG_MAGIC


def test_an_unexpected_exception_is_an_internal_error_row(monkeypatch):
    import tilegrid.api

    def boom(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(tilegrid.api, "compile_kernel", boom)
    (p,) = sweep.parse_sweep("matmul", "1x1", ["M=8", "K=16", "N=16"])
    row = sweep.run_point(p)
    assert row["error"] == "internal error: RuntimeError: boom"
    assert row["cycles"] == "" and row["grid"] == "1x1" and row["M"] == 8


def test_fixed_inputs_from_npz(tmp_path, capsys):
    rng = np.random.default_rng(5)
    A, B = rng.standard_normal((8, 16), np.float32), rng.standard_normal((16, 8), np.float32)
    np.savez(tmp_path / "in.npz", A=A, B=B)
    rc = cli.main(["sweep", "matmul", "--grid", "1x1,2x2", "--inputs", str(tmp_path / "in.npz"),
                   "--jobs", "1", "--out", str(tmp_path / "o")])
    capsys.readouterr()
    assert rc == 0
    rows = read_csv(tmp_path / "o" / "results.csv")
    direct = tilegrid.run_kernel("matmul", {"A": A, "B": B}, grid=(2, 2))
    assert int(rows[1]["cycles"]) == direct.stats.cycles
    assert "M" not in rows[0]   # sizes bind from the shapes; no --param, no column


@pytest.mark.parametrize("argv, message", [
    (["--grid", "2x2,,4x4"], "empty value"),
    (["--grid", "4"], "WxH"),
    (["--param", "M=8", "--param", "M=16"], "given twice"),
    (["--grid", "2x2", "--grid", "4x4"], "given twice"),
    (["--jobs", "0"], "--jobs"),
    (["--inputs", "/nonexistent/in.npz"], "does not exist"),
    (["--param", f"M={','.join(map(str, range(1, 1002)))}"], "limit"),
])
def test_bad_arguments_exit_2(argv, message, tmp_path, capsys):
    rc = cli.main(["sweep", "matmul", *argv, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_ray_missing_is_one_line_with_the_install_hint(monkeypatch, capsys, tmp_path):
    import builtins
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    rc = cli.main(["sweep", "matmul", "--ray", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "pip install -e '.[ray]'" in err and len(err.strip().splitlines()) == 1


def test_sweep_on_local_ray(tmp_path, capsys):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    rc = cli.main(["sweep", "matmul", "--ray", "--grid", "1x1,2x2", "--param", "M=8", "--param", "K=16",
                   "--param", "N=16", "--out", str(out)])
    capsys.readouterr()
    assert rc == 0
    rows = read_csv(out / "results.csv")
    assert [r["grid"] for r in rows] == ["1x1", "2x2"]
    inputs = kernels.BUNDLED["matmul"].make_inputs(np.random.default_rng(0), {"M": 8, "K": 16, "N": 16})
    assert int(rows[1]["cycles"]) == tilegrid.run_kernel("matmul", inputs, grid=(2, 2)).stats.cycles
