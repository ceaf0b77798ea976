"""Positive tests of the `tilegrid` command and the --check path.

References are written here in plain numpy with a fixed summation order;
nothing is compared against values produced by the code under test.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from tilegrid import kernels
import tilegrid
from tilegrid.cli import main

REPO = Path(__file__).resolve().parents[1]
SRAM_BYTES = 48 * 1024  # the default tile SRAM, restated


def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def matmul_ordered(A, B):
    """C = A @ B in float32, each element adding k = 0, 1, ... in order, unfused."""
    C = np.zeros((A.shape[0], B.shape[1]), np.float32)
    for k in range(A.shape[1]):
        C = C + A[:, k, None] * B[None, k, :]
    return C


def gemv_ordered(A, x, width):
    """y = A x: each tile column sums its columns ascending from 0, then the
    column partials are added left to right."""
    nb = A.shape[1] // width
    parts = []
    for c in range(width):
        y = np.zeros(A.shape[0], np.float32)
        for j in range(c * nb, (c + 1) * nb):
            y = y + A[:, j] * x[j]
        parts.append(y)
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return total


def f32_bound(A, B):
    """|fl(A @ B) - A @ B| <= gamma(K + 1) * (|A| @ |B|), gamma(n) = n u / (1 - n u),
    u = 2**-24: the classical bound for any summation order of K rounded products."""
    A64, B64 = A.astype(np.float64), B.astype(np.float64)
    n = A.shape[1] + 1
    u = 2.0 ** -24
    return n * u / (1 - n * u) * (np.abs(A64) @ np.abs(B64))


def bits(a):
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


@pytest.fixture
def matmul_inputs(tmp_path):
    rng = np.random.default_rng(1234)
    A, B = randn(rng, 16, 24), randn(rng, 24, 8)
    path = tmp_path / "mm.npz"
    np.savez(path, A=A, B=B)
    return path, A, B


# ------------------------------------------------------------------ run
def test_run_output_is_bit_exact(tmp_path, capsys, matmul_inputs):
    path, A, B = matmul_inputs
    out_path = tmp_path / "C.npz"
    rc, out, err = cli(capsys, "run", "matmul", "--grid", "4x2", "--inputs", path, "--output", out_path)
    assert rc == 0, err
    assert err == ""
    assert out.startswith("matmul on 4x2 tiles:")
    with np.load(out_path) as z:
        assert z.files == ["C"]
        C = z["C"]
    assert C.shape == (16, 8) and C.dtype == np.float32
    want = matmul_ordered(A, B)
    diff = np.argwhere(bits(C) != bits(want))
    assert diff.size == 0, f"{len(diff)} values differ, first at {diff[0].tolist()}"
    # Sanity against float64 within the classical f32 bound (a few ulps here).
    exact = A.astype(np.float64) @ B.astype(np.float64)
    assert np.all(np.abs(C.astype(np.float64) - exact) <= f32_bound(A, B))
    # ... and the bound is not vacuous: a perturbed result would break it.
    assert np.max(f32_bound(A, B)) < 1e-3


def test_run_gemv_output_is_bit_exact(tmp_path, capsys):
    rng = np.random.default_rng(7)
    A, x = randn(rng, 8, 32), randn(rng, 32)
    path, out_path = tmp_path / "gv.npz", tmp_path / "y.npz"
    np.savez(path, A=A, x=x)
    rc, out, err = cli(capsys, "run", "gemv", "--grid", "4x2", "--inputs", path, "--output", out_path)
    assert rc == 0, err
    with np.load(out_path) as z:
        assert z.files == ["y"]
        y = z["y"]
    assert y.shape == (8,) and y.dtype == np.float32
    assert np.array_equal(bits(y), bits(gemv_ordered(A, x, width=4)))
    exact = A.astype(np.float64) @ x.astype(np.float64)
    assert np.all(np.abs(y - exact) <= f32_bound(A, x[:, None])[:, 0])


def test_run_check_exit_0(capsys, matmul_inputs):
    path, A, B = matmul_inputs
    rc, out, err = cli(capsys, "run", "matmul", "--grid", "4x2", "--inputs", path, "--check")
    assert rc == 0, out + err
    assert f"bit-exact: C matches the ordered reference in all {16 * 8} values" in out
    assert "float64: C within the f32 error bound" in out
    assert "MISMATCH" not in out


def test_run_stats_json(tmp_path, capsys, matmul_inputs):
    path, A, B = matmul_inputs
    stats_path = tmp_path / "stats.json"
    W, H = 4, 2
    rc, out, err = cli(capsys, "run", "matmul", "--grid", f"{W}x{H}", "--inputs", path, "--stats", stats_path)
    assert rc == 0, err
    stats = json.loads(stats_path.read_text())
    for key in ("cycles", "instructions", "wavelets", "sram_peak_bytes", "tiles"):
        assert key in stats, key
        assert isinstance(stats[key], int), (key, stats[key])
    M, K, N = 16, 24, 8
    assert stats["tiles"] == W * H
    assert stats["instructions"] >= W * H  # every tile retires at least its halt
    assert stats["cycles"] > 0
    # Each tile keeps its blocks of A, B and C in SRAM.
    block_bytes = 4 * (M // H * K // W + K // H * N // W + M // H * N // W)
    assert block_bytes <= stats["sram_peak_bytes"] <= SRAM_BYTES
    # SUMMA: over all panels, every column of A is broadcast once per tile row
    # (M rows in all) and every row of B once per tile column (N columns).
    assert stats["wavelets"] == K * (M + N)
    assert stats["wavelets"] > 0


def test_run_stats_single_tile_sends_nothing(tmp_path, capsys):
    rng = np.random.default_rng(3)
    path, stats_path = tmp_path / "mm.npz", tmp_path / "s.json"
    np.savez(path, A=randn(rng, 8, 8), B=randn(rng, 8, 8))
    rc, out, err = cli(capsys, "run", "matmul", "--grid", "1x1", "--inputs", path, "--stats", stats_path)
    assert rc == 0, err
    stats = json.loads(stats_path.read_text())
    assert stats["tiles"] == 1
    assert stats["wavelets"] == 0
    assert 3 * 8 * 8 * 4 <= stats["sram_peak_bytes"] <= SRAM_BYTES


# --------------------------------------------------------------- compile
COMPILE = ("compile", "matmul", "--grid", "2x2", "--param", "M=8", "--param", "K=8", "--param", "N=8")


def test_compile_emit_ir(capsys):
    rc, out, err = cli(capsys, *COMPILE, "--emit", "ir")
    assert rc == 0, err
    assert out.startswith("spatial kernel matmul on 2x2 tiles")
    assert "broadcast_row" in out and "broadcast_col" in out
    assert "C += a @ b" in out
    assert "input  A: f32[4, 4]" in out  # the 4x4 block of the 8x8 A
    assert "send" not in out  # collectives are not lowered yet


def test_compile_emit_lowered(capsys):
    rc, out, err = cli(capsys, *COMPILE, "--emit", "lowered")
    assert rc == 0, err
    assert out.startswith("spatial kernel matmul on 2x2 tiles")
    assert "send row_bcast" in out and "recv row_bcast" in out
    assert "send col_bcast" in out and "recv col_bcast" in out
    assert "broadcast_row" not in out


def test_compile_emit_asm(capsys):
    rc, out, err = cli(capsys, *COMPILE, "--emit", "asm")
    assert rc == 0, err
    assert out.startswith("; tilegrid program matmul on 2x2 tiles")
    assert "region matmul: tiles x[0,2) y[0,2)" in out
    mnemonics = {line.split()[1] for line in out.splitlines() if line[:6].strip().isdigit()}
    assert {"sendx", "recvx", "wait", "mmac", "vfill", "halt"} <= mnemonics


def test_compile_default_emit_is_asm(capsys):
    rc, out, err = cli(capsys, *COMPILE)
    assert rc == 0, err
    assert out.startswith("; tilegrid program matmul")


def test_compile_emit_routes(capsys):
    rc, out, err = cli(capsys, *COMPILE, "--emit", "routes")
    assert rc == 0, err
    assert out.startswith("routes on 2x2 tiles, 2 colors")
    assert "color 0 row_bcast_self:" in out and "color 1 col_bcast_self:" in out  # double-buffered SUMMA
    # On a 2x2 grid the west column's row broadcast goes east (and to the sender itself), and back.
    assert "RAMP->E" in out and "W->RAMP" in out
    assert "RAMP->S" in out and "N->RAMP" in out


def test_compile_emit_plan(capsys):
    rc, out, err = cli(capsys, *COMPILE, "--emit", "plan")
    assert rc == 0, err
    first, _note, _header, *rows = out.strip().splitlines()
    assert first.startswith("SRAM plan per tile:") and f"of {SRAM_BYTES} bytes" in first
    plan = {}
    for row in rows:
        addr, size, _b, live, kind, name, shape = row.split()
        lo, hi = (int(v) for v in live.split("-"))
        plan[name] = (int(addr), int(size), kind, shape, lo, hi)
    block = 4 * 4 * 4  # a 4x4 f32 block
    assert plan["A"][1:4] == (block, "input", "[4x4]")
    assert plan["B"][1:4] == (block, "input", "[4x4]")
    assert plan["C"][1:4] == (block, "output", "[4x4]")
    # Two buffers may share bytes only if their live ranges do not overlap.
    items = list(plan.items())
    for i, (n1, (a1, s1, _, _, lo1, hi1)) in enumerate(items):
        for n2, (a2, s2, _, _, lo2, hi2) in items[i + 1:]:
            if a1 < a2 + s2 and a2 < a1 + s1:
                assert hi1 < lo2 or hi2 < lo1, f"{n1} and {n2} share SRAM while both live"


def test_compile_shapes_from_inputs_file(capsys, matmul_inputs):
    path, A, B = matmul_inputs
    rc, out, err = cli(capsys, "compile", "matmul", "--grid", "4x2", "--inputs", path, "--emit", "ir")
    assert rc == 0, err
    assert "bindings: M=16, K=24, N=8, W=4, H=2" in out


def test_compile_save_then_run_program(tmp_path, capsys, matmul_inputs):
    path, A, B = matmul_inputs
    prog = tmp_path / "prog.tgp"
    rc, out, err = cli(capsys, "compile", "matmul", "--grid", "4x2", "--param", "M=16", "--param", "K=24",
                       "--param", "N=8", "-o", prog)
    assert rc == 0, err
    assert prog.is_file() and prog.stat().st_size > 0
    out_path = tmp_path / "C.npz"
    rc, out, err = cli(capsys, "run", prog, "--inputs", path, "--output", out_path, "--check")
    assert rc == 0, out + err
    assert out.startswith("matmul on 4x2 tiles:")  # the grid comes from the saved program
    assert "bit-exact: C matches" in out
    with np.load(out_path) as z:
        C = z["C"]
    assert np.array_equal(bits(C), bits(matmul_ordered(A, B)))


# ------------------------------------------------------------ kernels, demo
def test_kernels_lists_bundled(capsys):
    rc, out, err = cli(capsys, "kernels")
    assert rc == 0, err
    lines = out.strip().splitlines()
    names = [line.split()[0] for line in lines]
    assert names == list(kernels.BUNDLED)
    assert {"matmul", "gemv", "softmax", "layernorm", "attention", "matmul_cannon"} <= set(names)
    for line, name in zip(lines, names):
        path = Path(line[line.rindex("[") + 1:line.rindex("]")])
        assert path.name == f"{name}.tg" and path.is_file()
    assert "SUMMA" in lines[0]


def test_demo_small(capsys):
    rc, out, err = cli(capsys, "demo", "--grid", "2x2", "--size", "32")
    assert rc == 0, out + err
    assert "32x32x32 f32 on a 2x2 grid" in out
    assert "bit-exact: C matches the ordered reference in all 1024 values" in out
    assert "MISMATCH" not in out


# ------------------------------------------------------ --check mismatch
def _perturbed_matmul(monkeypatch, index):
    spec = kernels.BUNDLED["matmul"]
    original = spec.reference

    def reference(inputs, params, grid):
        out = {k: np.array(v, dtype=np.float32, copy=True) for k, v in original(inputs, params, grid).items()}
        out["C"][index] = np.nextafter(out["C"][index], np.float32(np.inf))
        return out

    monkeypatch.setitem(kernels.BUNDLED, "matmul", dataclasses.replace(spec, reference=reference))


def test_check_mismatch_through_api(monkeypatch):
    rng = np.random.default_rng(5)
    A, B = randn(rng, 8, 8), randn(rng, 8, 8)
    # 8x8 on a 4x2 grid: blocks of 4 rows x 2 columns. C[5, 6] sits on tile
    # (x = 6 // 2, y = 5 // 4) = (3, 1), at local [5 % 4, 6 % 2] = [1, 0].
    _perturbed_matmul(monkeypatch, (5, 6))
    result = tilegrid.run_kernel("matmul", {"A": A, "B": B}, grid=(4, 2), check=True)
    assert np.array_equal(bits(result.outputs["C"]), bits(matmul_ordered(A, B)))  # the run itself is right
    assert not result.check.ok
    assert not result.check.bit_exact
    assert result.check.within_bound  # only the reference was perturbed
    text = result.check.summary()
    assert "MISMATCH C[5, 6] on tile (3, 1) at local [1, 0]" in text
    assert "1 of 64 values differ" in text


def test_check_mismatch_cli_exit_1(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(6)
    path = tmp_path / "mm.npz"
    np.savez(path, A=randn(rng, 8, 8), B=randn(rng, 8, 8))
    _perturbed_matmul(monkeypatch, (2, 7))
    rc, out, err = cli(capsys, "run", "matmul", "--grid", "2x2", "--inputs", path, "--check")
    assert rc == 1, out + err
    # 4x4 blocks: C[2, 7] is on tile (1, 0) at local [2, 3].
    assert "MISMATCH C[2, 7] on tile (1, 0) at local [2, 3]" in out
