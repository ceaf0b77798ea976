"""Regions: kernel calls placed on rectangles of the grid, and transfers between them.

The values are checked bit for bit against ordered NumPy references (the
pipelined transformer kernels against transformer_block's reference on a
region-sized grid), with a float64 sanity check beside each."""
import json
import zipfile

import numpy as np
import pytest

import tilegrid
from tilegrid import api
from tilegrid import kernels
from tilegrid.cli import main
from tilegrid.compiler.diagnostics import CompileError
from tilegrid.compiler.driver import compile_source
from tilegrid.emulator import isa
from tilegrid.emulator.config import MachineConfig
from tilegrid.emulator.program import Program

rng = np.random.default_rng(7)


def compile_text(src, grid, shapes, params=None, path="regions.tg"):
    return compile_source(src, path, MachineConfig(width=grid[0], height=grid[1]), shapes, params or {})


def run_text(src, grid, inputs, params=None, tmp_path=None, timing="fast"):
    prog = compile_text(src, grid, {k: v.shape for k, v in inputs.items()}, params).program
    return api.run_program_checked(prog, inputs, params or {}, check=False, timing=timing), prog


def same_bits(a, b) -> bool:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a.shape == b.shape and bool(np.all(a.view(np.uint32) == b.view(np.uint32)))


TWO_STAGES = """
kernel two(x: f32[N, M] block(y, x) on a) -> z: f32[N, M] block(y, x) on b
{
    REGIONS
    tensor h: f32[N, M] block(y, x) on a
    tensor g: f32[N, M] block(y, x) on b
    h = x * 3.0
    g = h
    z = g + 0.5
}
"""


@pytest.mark.parametrize("regions, grid", [
    ("region a, b = split(x)", (4, 2)),                              # side by side, sending east
    ("region b, a = split(x)", (4, 2)),                              # sending west
    ("region a, b = split(y)", (2, 4)),                              # stacked: sending south
    ("region a = tiles(0:2, 0:2)\n    region b = tiles(3:5, 0:2)", (5, 3)),  # a gap column, a spare row
])
def test_transfer_moves_each_block_to_the_same_tile_of_the_other_region(regions, grid):
    x = rng.standard_normal((4, 8)).astype(np.float32)
    result, prog = run_text(TWO_STAGES.replace("REGIONS", regions), grid, {"x": x})
    want = (x * np.float32(3.0)) + np.float32(0.5)      # elementwise f32: one rounding per op
    assert same_bits(result.outputs["z"], want)
    np.testing.assert_allclose(result.outputs["z"], x.astype(np.float64) * 3 + 0.5, rtol=1e-6)
    assert len(prog.regions) == 2
    assert {tuple(io.region) for io in prog.io} == {(r.x0, r.y0, r.x1, r.y1) for r in prog.regions}


def test_the_cycle_level_model_agrees_on_programs_with_regions():
    # a transfer of 4 columns sharing each row's links: the closed forms are exact here
    x = rng.standard_normal((8, 32)).astype(np.float32)
    src = TWO_STAGES.replace("REGIONS", "region a, b = split(x)")
    fast, _ = run_text(src, (8, 4), {"x": x})
    cycle, _ = run_text(src, (8, 4), {"x": x}, timing="cycle")
    assert same_bits(fast.outputs["z"], cycle.outputs["z"])
    assert cycle.stats.timing == "cycle" and cycle.stats.cycles == cycle.stats.fast_cycles == fast.stats.cycles
    # a whole pipeline: within 1% (15,314 against 15,320 when this was written)
    spec = kernels.BUNDLED["block_pipelined"]
    inputs = spec.make_inputs(np.random.default_rng(0), {"B": 2, "S": 8, "Dm": 16, "Dff": 32})
    prog = tilegrid.compile_kernel("block_pipelined", (4, 2), {k: v.shape for k, v in inputs.items()},
                                   {"heads": 2}).program
    result = api.run_program_checked(prog, inputs, {"heads": 2}, check=True, timing="cycle")
    assert result.check.ok
    assert abs(result.stats.fast_cycles / result.stats.cycles - 1) < 0.01


def test_a_transfer_takes_one_color_per_column_and_routes_straight():
    prog = compile_text(TWO_STAGES.replace("REGIONS", "region a, b = split(x)"), (6, 2), {"x": (4, 6)}).program
    text = prog.format_routes()
    # 3 columns per region: three transfer colors, each from column c of a to column c of b
    for c in range(3):
        assert f"xfer0.{c} a->b" in text
    assert prog.routes.shape[1] == 3
    t = lambda x, y: y * 6 + x  # noqa: E731
    # column 1 of a (x=1) sends east through x=2..3 to x=4
    color = next(i for i, n in enumerate(prog.color_names) if "xfer0.1" in n)
    assert prog.routes[t(1, 0), color, 4] == 1 << 1          # RAMP -> E
    assert prog.routes[t(3, 1), color, 3] == 1 << 1          # W -> E
    assert prog.routes[t(4, 1), color, 3] == 1 << 4          # W -> RAMP
    assert not prog.routes[t(5, 0), color].any()


def test_registers_start_at_the_grid_coordinates_and_each_region_counts_from_its_corner():
    prog = compile_text(TWO_STAGES.replace("REGIONS", "region a, b = split(x)"), (4, 2), {"x": (4, 8)}).program
    b = prog.regions[1]
    assert (b.x0, b.y0) == (2, 0)
    first = prog.code[b.start]
    assert first[0] == isa.ADDI and list(first[1:4]) == [0, 0, -2]


# ---------------------------------------------------------------- SRAM
LOOP_TEMPS = """
kernel k(x: f32[8] replicated) -> y: f32[8] replicated
{
    local a: f32[8]
    local b: f32[8]
    local c: f32[8]
    y = x
    c = x * 0.5
    for i in 0 .. 3 {
        a = y * 2.0
        y = a + 1.0
        b = y * 3.0
        y = b - c
        c = y * 0.25
    }
}
"""


def test_a_loop_temporary_written_whole_each_iteration_shares_space_and_a_carried_one_does_not():
    compiled = compile_text(LOOP_TEMPS, (1, 1), {"x": (8,)})
    plan = {b.name: b for b in compiled.program.buffers}
    assert plan["a"].addr == plan["b"].addr            # each lives within one iteration
    carried = set(range(plan["c"].addr, plan["c"].addr + 8))
    for other in ("a", "y", "x"):
        assert carried.isdisjoint(range(plan[other].addr, plan[other].addr + 8)), other
    x = rng.standard_normal(8).astype(np.float32)
    result = api.run_program_checked(compiled.program, {"x": x}, {}, check=False)
    y, c = x.copy(), x * np.float32(0.5)
    for _ in range(3):
        y = (y * np.float32(2.0)) + np.float32(1.0)
        y = (y * np.float32(3.0)) - c
        c = y * np.float32(0.25)
    assert same_bits(result.outputs["y"], y)
    y64, c64 = x.astype(np.float64), x.astype(np.float64) * 0.5
    for _ in range(3):
        y64 = (y64 * 2 + 1) * 3 - c64
        c64 = y64 * 0.25
    np.testing.assert_allclose(result.outputs["y"], y64, rtol=1e-5)


# ---------------------------------------------------------------- the pipelines
PIPELINES = [
    ("block_pipelined", (4, 2), {"B": 3, "S": 16, "Dm": 16, "Dff": 32}, {"heads": 2, "causal": 1}),
    ("block_pipelined", (8, 4), {"B": 2, "S": 16, "Dm": 32, "Dff": 64}, {"heads": 4, "causal": 0}),
    ("two_blocks_pipelined", (4, 2), {"B": 3, "S": 8, "Dm": 16, "Dff": 32}, {"heads": 2, "causal": 1}),
    ("two_blocks_pipelined", (4, 4), {"B": 4, "S": 16, "Dm": 16, "Dff": 32}, {"heads": 1, "causal": 1}),
]


@pytest.mark.parametrize("name, grid, sizes, params", PIPELINES)
def test_pipelines_over_regions_are_bit_exact_and_overlap_their_stages(name, grid, sizes, params):
    spec = kernels.BUNDLED[name]
    inputs = spec.make_inputs(np.random.default_rng(3), sizes)
    result = tilegrid.run_kernel(name, inputs, grid=grid, params=params, check=True)
    assert result.check.bit_exact, result.check.summary()
    assert result.check.within_bound, result.check.summary()
    # the bundled reference is one block's reference per sequence, on a region-sized grid
    region = (grid[0] // 2, grid[1])
    one = {k[:-2] if k.endswith("_a") else k: v for k, v in inputs.items()
           if not (name == "two_blocks_pipelined" and k.endswith("_b"))}
    first = kernels.BUNDLED["transformer_block"].reference({**one, "x": inputs["x"][0]}, params, region)["y"]
    if name == "block_pipelined":
        assert same_bits(result.outputs["y"][0], first)
    # each region's tiles: compute + fabric wait + scalar + halted is the whole run
    assert [r["name"] for r in result.stats.regions] == [f"{name}.{n}" for n in
                                                         (("attn", "ffn") if name == "block_pipelined"
                                                          else ("first", "second"))]
    for r in result.stats.regions:
        assert r["tiles"] == region[0] * region[1]
        assert r["compute"] + r["blocked"] + r["scalar"] + r["halted"] == r["tiles"] * result.stats.cycles
        assert r["compute"] > 0
    # the stages overlap: the run is shorter than B sequences through the stages one after another
    single = tilegrid.run_kernel("transformer_block", {**one, "x": inputs["x"][0]}, grid=region, params=params)
    stages = 2 if name == "two_blocks_pipelined" else 1
    assert result.stats.cycles < sizes["B"] * stages * single.stats.cycles


def test_a_pipelined_program_saves_loads_and_runs_the_same(tmp_path):
    spec = kernels.BUNDLED["two_blocks_pipelined"]
    sizes = {"B": 2, "S": 8, "Dm": 16, "Dff": 32}
    inputs = spec.make_inputs(np.random.default_rng(5), sizes)
    params = {"heads": 2}
    compiled = tilegrid.compile_kernel("two_blocks_pipelined", (4, 2), {k: v.shape for k, v in inputs.items()},
                                       params)
    path = tmp_path / "p.tgp"
    compiled.program.save(path)
    loaded = Program.load(path)
    a = api.run_program_checked(compiled.program, inputs, params, check=False)
    b = api.run_program_checked(loaded, inputs, params, check=True)
    assert same_bits(a.outputs["y"], b.outputs["y"]) and b.check.ok
    assert a.stats.cycles == b.stats.cycles


def test_a_program_file_from_before_regions_still_loads(tmp_path):
    compiled = tilegrid.compile_kernel("gemv", (2, 2), {"A": (8, 8), "x": (8,)})
    path = tmp_path / "old.tgp"
    compiled.program.save(path)
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    header_npy = members["header.npy"]
    import io as _io
    header = json.loads(np.load(_io.BytesIO(header_npy)).tobytes())
    for entry in header["io"] + header["buffers"]:
        entry.pop("region")
    buf = _io.BytesIO()
    np.save(buf, np.frombuffer(json.dumps(header).encode(), np.uint8))
    members["header.npy"] = buf.getvalue()
    old = tmp_path / "old2.tgp"
    with zipfile.ZipFile(old, "w", zipfile.ZIP_DEFLATED) as z:
        for n, data in members.items():
            z.writestr(n, data)
    prog = Program.load(old)
    assert all(io.region == () for io in prog.io)
    A, x = rng.standard_normal((8, 8)).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    result = api.run_program_checked(prog, {"A": A, "x": x}, {}, check=True)
    assert result.check.ok


# ---------------------------------------------------------------- user errors
BAD = [
    ("region a = tiles(0:3, 0:2)\n    region b = tiles(2:4, 0:2)", "overlaps region"),
    ("region a = tiles(0:2, 0:2)\n    region b = tiles(2:5, 0:2)", "inside the 4x2 grid"),
    ("region a, b, c = split(x)", "multiple of 3"),
    ("region a, b = split(z)", "grid axis x or y"),
    ("region a = tiles(0:2, 0:2)\n    region b = tiles(2:4, 0:1)", "regions of one size"),
]


@pytest.mark.parametrize("regions, message", BAD)
def test_bad_regions_are_errors_at_their_source(regions, message):
    with pytest.raises(CompileError) as err:
        compile_text(TWO_STAGES.replace("REGIONS", regions), (4, 2), {"x": (4, 4)})
    assert message in str(err.value)
    assert str(err.value).startswith("regions.tg:")


BAD_BODIES = [
    # a statement on one region reading a tensor of another
    ("""kernel k(x: f32[4, 4] block(y, x) on a) -> z: f32[4, 4] block(y, x) on b {
        region a, b = split(x)
        z = x + 1.0
    }""", "lives on region 'a'"),
    # writing a tensor of another region
    ("""kernel k(x: f32[4, 4] block(y, x) on a) -> z: f32[4, 4] block(y, x) on b {
        region a, b = split(x)
        z = x * 2.0 on a
    }""", "lives on region 'b'"),
    ("""kernel k(x: f32[4, 4] block(y, x) on c) -> z: f32[4, 4] block(y, x) on b {
        region a, b = split(x)
        z = x
    }""", "unknown region 'c'"),
    ("""kernel k(x: f32[4, 4] block(y, x)) -> z: f32[4, 4] block(y, x) on b {
        z = x
    }""", "declares no regions"),
    ("""kernel k(x: f32[4, 4] block(y, x)) -> z: f32[4, 4] block(y, x) {
        region a, b = split(x)
        z = x
    }""", "where does 'x' live?"),
    ("""kernel k(x: f32[4, 4] block(y, x) on a) -> z: f32[4, 4] block(y, x) on b {
        region a, b = split(x)
        for i in 0 .. 2 { region c = tiles(0:1, 0:1) }
        z = x
    }""", "not in a loop"),
    ("""kernel k(x: f32[4, 4] block(y, x) on a) -> z: f32[4, 4] block(y, x) on b {
        region a, b = split(x)
        if tx == 0 { z = x }
    }""", "needs tiles to run on"),
    ("""kernel k(x: f32[4, 4] block(y, x) on a) -> z: f32[4, 4] block(_, x) on b {
        region a, b = split(x)
        z = x
    }""", "a transfer keeps the layout"),
    ("""kernel inner(x: f32[4, 4] block(y, x)) -> z: f32[4, 4] block(y, x) {
        z = x * 2.0 on a
    }
    kernel k(x: f32[4, 4] block(y, x) on a) -> z: f32[4, 4] block(y, x) on a {
        region a, b = split(x)
        z = inner(x)
    }""", "inside its caller's region"),
]


@pytest.mark.parametrize("src, message", BAD_BODIES)
def test_misplaced_statements_are_errors_that_say_where(src, message):
    with pytest.raises(CompileError) as err:
        compile_text(src, (4, 2), {"x": (4, 4)})
    assert message in str(err.value), str(err.value)


def test_too_many_colors_for_a_transfer_is_an_error_naming_the_count():
    src = TWO_STAGES.replace("REGIONS", "region a, b = split(x)")
    with pytest.raises(CompileError) as err:
        compile_source(src, "regions.tg", MachineConfig(width=8, height=2, colors=3), {"x": (4, 8)}, {})
    assert "too many colors" in str(err.value) and "4 more" in str(err.value)


# ---------------------------------------------------------------- the CLI
def test_cli_stats_show_each_region_and_emit_plan_shows_each_plan(tmp_path, capsys):
    spec = kernels.BUNDLED["block_pipelined"]
    inputs = spec.make_inputs(np.random.default_rng(1), {"B": 2, "S": 8, "Dm": 16, "Dff": 32})
    np.savez(tmp_path / "in.npz", **inputs)
    rc = main(["run", "block_pipelined", "--grid", "4x2", "--inputs", str(tmp_path / "in.npz"), "--param",
               "heads=2", "--check", "--stats", "--trace", str(tmp_path / "t.json")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "time per region" in out and "block_pipelined.attn x[0,2) y[0,2)" in out
    assert "bit-exact" in out
    trace = json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    rows = {e["args"]["name"] for e in trace if e.get("name") == "thread_name" and e.get("pid") == 8 + 2}
    assert rows == {"block_pipelined.attn", "block_pipelined.ffn"}
    assert any(e.get("cat") == "region" and e["name"] == "halted" for e in trace)
    rc = main(["compile", "block_pipelined", "--grid", "4x2", "--inputs", str(tmp_path / "in.npz"),
               "--param", "heads=2", "--emit", "plan"])
    out = capsys.readouterr().out
    assert rc == 0 and out.count("SRAM plan per tile of region") == 2


def test_demo_pipeline_runs_both_pipelines_and_checks_them(capsys):
    rc = main(["demo", "--model", "pipeline", "--grid", "4x4"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert out.count("bit-exact: y matches") == 2
    assert out.count("\npipelined: ") == 2


def test_the_language_guide_example_compiles_runs_and_is_exact():
    from pathlib import Path
    text = (Path(__file__).parent.parent / "docs" / "language.md").read_text()
    section = text[text.index("## Regions"):]
    src = section[section.index("```\n") + 4:section.index("\n```", section.index("```\n") + 4)]
    B, S, D = 3, 8, 8
    x = rng.standard_normal((B, S, D)).astype(np.float32)
    w1, w2 = (rng.standard_normal((D, D)).astype(np.float32) for _ in range(2))
    prog = compile_source(src, "guide.tg", MachineConfig(width=4, height=2),
                          {"x": x.shape, "w1": w1.shape, "w2": w2.shape}, {}).program
    result = api.run_program_checked(prog, {"x": x, "w1": w1, "w2": w2}, {}, check=False)
    from tilegrid.kernels.matmul_ref import reference as matmul_ref
    for b in range(B):
        h = matmul_ref({"A": x[b], "B": w1}, {}, (2, 2))["C"]
        want = matmul_ref({"A": h, "B": w2}, {}, (2, 2))["C"]
        assert same_bits(result.outputs["out"][b], want)
        np.testing.assert_allclose(result.outputs["out"][b], x[b].astype(np.float64) @ w1 @ w2, rtol=1e-4,
                                   atol=1e-4)


def test_each_regions_tiles_hold_only_their_own_plan_and_idle_tiles_none():
    from tilegrid.emulator import Emulator
    spec = kernels.BUNDLED["block_pipelined"]
    inputs = spec.make_inputs(np.random.default_rng(2), {"B": 2, "S": 16, "Dm": 16, "Dff": 32})
    prog = tilegrid.compile_kernel("block_pipelined", (4, 2), {k: v.shape for k, v in inputs.items()},
                                   {"heads": 2}).program
    words = [prog.data_words(r) for r in prog.regions]
    assert words[0] != words[1] and max(words) == prog.sram_words
    emu = Emulator(prog)
    assert emu.state.tiles.mem.size == 4 * words[0] + 4 * words[1]   # 4 tiles per region
    # a region program on part of a grid: the tiles of no region hold nothing
    src = TWO_STAGES.replace("REGIONS", "region a = tiles(0:2, 0:2)\n    region b = tiles(2:4, 0:2)")
    small = compile_text(src, (6, 4), {"x": (4, 8)}).program
    emu = Emulator(small)
    assert emu.state.tiles.mem.size == sum(4 * small.data_words(r) for r in small.regions)
    x = rng.standard_normal((4, 8)).astype(np.float32)
    emu.load_inputs({"x": x})
    emu.run()
    assert same_bits(emu.read_outputs()["z"], (x * np.float32(3.0)) + np.float32(0.5))
