"""Defective wafers: defect maps, repair onto the spares, and what it costs.

The repair keeps the program's logical grid, so values must not change; what
changes is the physical length of the links, which both timing models charge.
"""
import numpy as np
import pytest

from tilegrid import api, kernels
from tilegrid.cli import main
from tilegrid.emulator import Emulator, MachineConfig
from tilegrid.emulator.cycle_model import run_cycle_level
from tilegrid.emulator.defects import DEAD_CORE, DEAD_TILE, DefectError, DefectMap, SpareLayout
from tilegrid.emulator.isa import PORT_E, PORT_N, PORT_S, PORT_W
from tilegrid.emulator.repair import repair
from tilegrid.input_files import write_npz
from tilegrid.timing_cases import micro_cases


def fabric_with(width, height, dead, every=4):
    """A fabric whose physical tiles `dead` {(x, y): kind} are defective."""
    layout = SpareLayout(every)
    d = DefectMap.perfect(layout.physical_width(width), height)
    for (x, y), kind in dead.items():
        d.kind[y, x] = kind
    return repair(width, height, d, layout)


# ----------------------------------------------------------------- the map
def test_spare_columns_sit_after_each_group():
    layout = SpareLayout(4)
    assert layout.physical_width(8) == 10
    assert list(layout.home_columns(8)) == [0, 1, 2, 3, 5, 6, 7, 8]
    assert list(layout.spare_columns(8)) == [4, 9]
    assert SpareLayout(4).physical_width(3) == 4  # a partial group has its spare too


def test_a_dead_core_displaces_tiles_toward_the_nearest_spare():
    # spares at physical 4 and 9; a defect at 3 moves only logical 3 (to spare 4)
    f = fabric_with(8, 2, {(3, 0): DEAD_CORE})
    assert list(f.column[0]) == [0, 1, 2, 4, 5, 6, 7, 8]
    assert list(f.column[1]) == [0, 1, 2, 3, 5, 6, 7, 8]
    # a defect at 5 (logical 4's home) moves logical 4 west onto spare 4
    f = fabric_with(8, 2, {(5, 0): DEAD_TILE})
    assert list(f.column[0]) == [0, 1, 2, 3, 4, 6, 7, 8]
    assert f.displaced() == 1 and f.spares_used() == 1


def test_the_mapping_avoids_every_defect_and_keeps_row_order():
    layout = SpareLayout(8)
    d = DefectMap.random(layout.physical_width(64), 64, 0.02, seed=11)
    f = repair(64, 64, d, layout)
    rows = np.arange(64)[:, None]
    assert (d.kind[rows, f.column] == 0).all()
    assert (np.diff(f.column, axis=1) > 0).all()
    # every logical link's physical path has as many steps as the hops the timing models charge
    for t, dirn in np.argwhere(f.link_hops > 1):
        assert len(f.physical_path(int(t), int(dirn))) - 1 == f.link_hops[t, dirn]


def test_link_lengths_closed_forms():
    f = fabric_with(8, 2, {(3, 0): DEAD_CORE})
    hops = f.link_hops.reshape(2, 8, 4)
    # row 0: logical 2 on 2, logical 3 on 4 (over the dead core at 3), logical 4 on 5
    assert hops[0, 2, PORT_E] == 2 and hops[0, 3, PORT_W] == 2
    assert hops[0, 3, PORT_E] == 1
    # row 1 is not displaced: logical 3 sits at 3, logical 4 at 5 (over the unused spare at 4)
    assert hops[1, 3, PORT_E] == 2
    # vertical: logical 3 is at 4 in row 0 and at 3 in row 1, a diagonal link of one hop
    assert hops[0, 3, PORT_S] == 1 and hops[1, 3, PORT_N] == 1


def test_two_defects_in_a_row_with_enough_spares_displace_by_two():
    # physical 0 and 1 dead: the eight logical tiles take the eight healthy columns 2..9
    f = fabric_with(8, 2, {(0, 0): DEAD_CORE, (1, 0): DEAD_TILE}, every=4)
    assert list(f.column[0]) == [2, 3, 4, 5, 6, 7, 8, 9]
    assert list(f.column[1]) == [0, 1, 2, 3, 5, 6, 7, 8]
    hops = f.link_hops.reshape(2, 8, 4)
    # the vertical links jog by the difference: max(1, |dx|) hops
    assert [int(h) for h in hops[0, :, PORT_S]] == [2, 2, 2, 2, 1, 1, 1, 1]
    assert (hops[1, :, PORT_N] == hops[0, :, PORT_S]).all()
    assert f.detours == []  # the dead router lies west of every used tile of its row


def test_a_row_with_too_many_defects_names_the_row():
    with pytest.raises(DefectError, match=r"cannot repair row 1: it has 2 defective tiles \(physical columns 0, 2\)"):
        fabric_with(4, 2, {(0, 1): DEAD_CORE, (2, 1): DEAD_CORE})


def test_physical_paths_name_the_routers_a_link_passes():
    f = fabric_with(8, 3, {(6, 0): DEAD_TILE, (0, 2): DEAD_CORE, (1, 2): DEAD_CORE})
    t = lambda x, y: y * 8 + x  # noqa: E731
    # row 0: logical 5 at 5, logical 6 at 7; the dead router at 6 is passed through (6, 1)
    assert f.physical_path(t(5, 0), PORT_E) == ["(5, 0)", "(6, 1) round the dead tile (6, 0)", "(7, 0)"]
    # row 2 moved two columns east: logical 0's north link jogs, a diagonal then the row
    assert f.column[2, 0] == 2
    assert f.physical_path(t(0, 2), PORT_N) == ["(2, 2)", "(1, 1) diagonal", "(0, 1)"]
    assert f.physical_path(t(0, 1), PORT_S) == ["(0, 1)", "(1, 2) diagonal", "(2, 2)"]
    assert len(f.physical_path(t(0, 1), PORT_S)) - 1 == f.link_hops[t(0, 1), PORT_S]
    assert f.physical_path(t(7, 0), PORT_E) == []  # off the grid


def test_a_dead_router_walled_in_above_and_below_cannot_be_bypassed():
    # the first of them, (1, 0), has only a dead router below it
    with pytest.raises(DefectError, match=r"dead tile at physical \(1, 0\) has no live router above or below"):
        fabric_with(8, 3, {(1, 0): DEAD_TILE, (1, 1): DEAD_TILE, (1, 2): DEAD_TILE})
    # dead cores above and below forward, so the same column of dead cores around it repairs
    f = fabric_with(8, 3, {(1, 0): DEAD_CORE, (1, 1): DEAD_TILE, (1, 2): DEAD_CORE})
    assert (1, 1) in f.detours


def test_random_maps_are_reproducible_and_exact_in_count():
    a = DefectMap.random(100, 50, 0.01, seed=3)
    b = DefectMap.random(100, 50, 0.01, seed=3)
    c = DefectMap.random(100, 50, 0.01, seed=4)
    assert (a.kind == b.kind).all() and (a.kind != c.kind).any()
    counts = a.counts()
    assert counts["dead_cores"] + counts["dead_tiles"] == 50
    assert counts["dead_cores"] > 0 and counts["dead_tiles"] > 0


def test_a_perfect_fabric_of_one_group_changes_nothing():
    f = fabric_with(16, 4, {}, every=16)
    assert (f.link_hops == 1).all() and f.displaced() == 0


def test_a_million_tiles_repair(tmp_path):
    layout = SpareLayout()
    d = DefectMap.random(layout.physical_width(1024), 1024, 0.01, seed=1)
    f = repair(1024, 1024, d, layout)
    s = f.summary()
    assert s["defects"] == round(0.01 * 1088 * 1024)
    assert s["spares_used"] > 0 and s["longest_link_hops"] >= 2


# ----------------------------------------------------------------- the file
def test_defect_file_round_trip(tmp_path):
    d = DefectMap.random(17, 16, 0.05, seed=2)
    path = tmp_path / "d.txt"
    d.save(str(path))
    e = DefectMap.load(str(path), 17, 16)
    assert (d.kind == e.kind).all()


@pytest.mark.parametrize("text,where,what", [
    ("0 0 core\n1 x tile\n", "2:3", "y must be an integer, got 'x'"),
    ("0 0\n", "1:4", "expected 'x y kind'"),
    ("0 0 core extra\n", "1:10", "expected 'x y kind'"),
    ("# comment\n  5 0 core\n", "2:3", r"x = 5 is off the physical fabric \(0..4"),
    ("0 0 broken\n", "1:5", "kind must be 'core'"),
    ("1 1 core\n1 1 tile\n", "2:1", r"tile \(1, 1\) is listed twice"),
])
def test_malformed_defect_files_point_at_the_field(tmp_path, text, where, what):
    path = tmp_path / "d.txt"
    path.write_text(text)
    with pytest.raises(DefectError, match=f"^{path}:{where}: error: {what}"):
        DefectMap.load(str(path), 5, 4)


def test_unreadable_defect_files(tmp_path):
    with pytest.raises(DefectError, match="does not exist"):
        DefectMap.load(str(tmp_path / "none.txt"), 5, 4)
    with pytest.raises(DefectError, match="is a directory"):
        DefectMap.load(str(tmp_path), 5, 4)
    (tmp_path / "bin").write_bytes(b"\xff\xfe0 0 core")
    with pytest.raises(DefectError, match="not UTF-8"):
        DefectMap.load(str(tmp_path / "bin"), 5, 4)


# ----------------------------------------------------------------- timing
def _micro_program(tmp_path, source, grid, n):
    path = tmp_path / "k.tg"
    path.write_text(source)
    return api.compile_kernel(str(path), grid, {"A": (n,)}).program


def _run(program, inputs, fabric):
    emu = Emulator(program, fabric=fabric)
    emu.load_inputs(inputs)
    return emu.run(), emu.read_outputs()


@pytest.mark.parametrize("label,source,grid,n", micro_cases(), ids=[c[0] for c in micro_cases()])
def test_micro_benchmarks_on_a_defective_fabric_agree_in_both_models(tmp_path, label, source, grid, n):
    """A dead core in the line: the fast model must give the cycle-level model's cycles
    exactly, as on a perfect fabric, and the values must not change."""
    W, H = grid
    dead = {(1, 0): DEAD_CORE} if H == 1 else {(0, 1): DEAD_CORE, (1, 2): DEAD_TILE}
    fabric = fabric_with(W, H, dead)
    program = _micro_program(tmp_path, source, grid, n)
    inputs = {"A": np.arange(n, dtype=np.float32)}
    stats, out = _run(program, inputs, fabric)
    perfect, out0 = _run(program, inputs, None)
    assert run_cycle_level(program, link_hops=fabric.link_hops).cycles == stats.cycles, label
    assert out["B"].view(np.uint32).tobytes() == out0["B"].view(np.uint32).tobytes()
    np.testing.assert_allclose(out["B"].astype(np.float64), out0["B"].astype(np.float64))
    assert stats.cycles >= perfect.cycles


@pytest.mark.parametrize("W,L", [(4, 64), (8, 256)])
def test_a_shift_over_a_dead_core_pays_one_link_latency(tmp_path, W, L):
    """shift east costs L + 9 on a perfect row; one link twice as long adds the link
    latency once (the last wavelet lands one hop later), in both models."""
    cfg = MachineConfig(width=W, height=1, link_latency=3, router_buffer=4)  # buffer > latency: full rate
    path = tmp_path / "k.tg"
    path.write_text("kernel k(A: f32[N] block(x)) -> B: f32[N] block(x) { B = shift(A, east) }")
    program = api.compile_kernel(str(path), (W, 1), {"A": (W * L,)}, config=cfg).program
    inputs = {"A": np.arange(W * L, dtype=np.float32)}
    perfect, _ = _run(program, inputs, None)
    fabric = fabric_with(W, 1, {(1, 0): DEAD_CORE})
    stats, _ = _run(program, inputs, fabric)
    assert stats.cycles == perfect.cycles + cfg.link_latency
    assert run_cycle_level(program, link_hops=fabric.link_hops).cycles == stats.cycles
    assert stats.physical_wavelet_hops == stats.wavelet_hops + L  # one link carries L wavelets one hop more


# ----------------------------------------------------------------- every kernel
KERNELS_16x16 = [
    ("matmul", {"M": 64, "K": 64, "N": 64}, {}),
    ("gemv", {"M": 64, "N": 64}, {}),
    ("matmul_cannon", {"M": 64, "K": 64, "N": 64}, {}),
    ("matmul_systolic", {"M": 32, "K": 32, "N": 32}, {}),
    # the same arrays on 16x16 (K = 16, two slots a tile) and 32x32 (K = 8, one slot)
    ("matmul_systolic_resident", {"AR": 32, "AK": 256, "BK": 256, "BC": 32}, {"M": 64, "N": 64}),
    ("softmax", {"R": 64, "C": 64}, {}),
    ("layernorm", {"R": 64, "C": 64}, {}),
    ("attention", {"S": 256, "D": 16}, {}),
    ("mlp", {"S": 32, "Dm": 32, "Dff": 64}, {}),
    ("transformer_block", {"S": 256, "Dm": 32, "Dff": 64}, {"heads": 2, "causal": 1}),
    ("rmsnorm", {"R": 64, "C": 64}, {}),
    ("swiglu", {"S": 32, "Dm": 32, "Dff": 64}, {}),
    ("rope", {"R": 32, "D": 16, "P": 48}, {"pos": 9}),
    ("llama_layer", {"S": 256, "Dm": 32, "Dh": 8, "Dq": 64, "Dkv": 32, "Dff": 64}, {"heads": 8, "kv_heads": 4}),
    ("argmax", {"N": 256}, {}),
    ("llama_model", {"L": 2, "S": 256, "Dm": 32, "Dh": 8, "Dq": 32, "Dkv": 32, "Dff": 64},
     {"heads": 4, "kv_heads": 4}),
    # one head per tile column (32 of width 2), so the same model fits 16 and 32 columns
    ("llama_step", {"R": 1, "P": 32, "Dm": 32, "Dh": 2, "Dq": 64, "Dkv": 64, "Dff": 64},
     {"heads": 32, "kv_heads": 32, "pos": 5}),
    ("llama_step_wide", {"G": 2, "P": 32, "Dm": 32, "Dkv": 64, "A": 32, "Dff": 64},
     {"kv_heads": 16, "head_dim": 4, "hidden": 30, "pos": 20}),
    ("llama_generate", {"L": 1, "S": 4, "T": 3, "P": 32, "V": 64, "Dm": 32, "Dh": 2, "Dq": 64, "Dkv": 64,
                        "Dff": 64}, {"heads": 32, "kv_heads": 32, "T": 3}),
    # on regions of 8x16 tiles: attention needs S a multiple of a region's tiles
    ("block_pipelined", {"B": 2, "S": 128, "Dm": 32, "Dff": 64}, {"heads": 2, "causal": 1}),
    ("two_blocks_pipelined", {"B": 2, "S": 128, "Dm": 32, "Dff": 64}, {"heads": 2, "causal": 1}),
]


def test_the_table_covers_every_bundled_kernel():
    assert {c[0] for c in KERNELS_16x16} == set(kernels.BUNDLED)


def sizes_for(name, sizes, side):
    """KERNELS_16x16's sizes for a side x side grid: split dimensions grow with the side
    (attention's S with the tile count), model widths stay."""
    f = side // 16
    out = {k: v * f * (f if name in ("attention", "transformer_block", "block_pipelined",
                                     "two_blocks_pipelined", "llama_layer", "llama_model") else 1) if k == "S"
           else v * f if k in ("M", "K", "N", "R", "C", "P") else v for k, v in sizes.items()}
    return out


@pytest.mark.parametrize("side", [16, 32])
@pytest.mark.parametrize("name,sizes,params", KERNELS_16x16, ids=[c[0] for c in KERNELS_16x16])
def test_every_bundled_kernel_is_bit_exact_with_one_percent_defects(name, sizes, params, side):
    sizes = sizes_for(name, sizes, side)
    inputs = kernels.BUNDLED[name].make_inputs(np.random.default_rng(2), sizes)
    program = api.compile_kernel(name, (side, side), {k: v.shape for k, v in inputs.items()}, params).program
    layout = SpareLayout()
    defects = DefectMap.random(layout.physical_width(side), side, 0.01, seed=5)
    fabric = repair(side, side, defects, layout)
    assert fabric.summary()["defects"] == round(0.01 * layout.physical_width(side) * side)
    result = api.run_program_checked(program, inputs, params, check=True, fabric=fabric)
    assert result.check.ok, result.check.summary()   # bit-exact against the ordered reference, and float64
    perfect = api.run_program_checked(program, inputs, params, check=False)
    if len(program.regions) == 1:
        assert result.stats.cycles >= perfect.stats.cycles
    else:  # regions that wait on each other: a later arrival can line two stages up better, by a hair
        assert result.stats.cycles >= 0.999 * perfect.stats.cycles
    assert result.stats.fabric["spares_used"] == fabric.spares_used()


def test_the_cycle_level_model_agrees_within_five_percent_on_a_defective_fabric():
    inputs = kernels.BUNDLED["transformer_block"].make_inputs(np.random.default_rng(1), {"S": 8, "Dm": 16, "Dff": 32})
    params = {"heads": 2, "causal": 1}
    program = api.compile_kernel("transformer_block", (2, 2), {k: v.shape for k, v in inputs.items()},
                                 params).program
    fabric = fabric_with(2, 2, {(0, 0): DEAD_CORE, (1, 1): DEAD_TILE}, every=2)
    emu = Emulator(program, timing="cycle", fabric=fabric)
    emu.load_inputs(inputs)
    stats = emu.run()
    assert abs(stats.fast_cycles - stats.cycles) <= 0.05 * stats.cycles


# ----------------------------------------------------------------- the CLI
def test_cli_reports_the_repair_and_its_cost(tmp_path, capsys):
    rng = np.random.default_rng(0)
    write_npz(tmp_path / "in.npz", {"A": rng.standard_normal((64, 64)).astype(np.float32),
                                    "B": rng.standard_normal((64, 64)).astype(np.float32)})
    args = ["run", "matmul", "--grid", "16x16", "--inputs", str(tmp_path / "in.npz"), "--check",
            "--defects", "0.01", "--defect-seed", "5", "--heatmap", str(tmp_path / "hm"),
            "--stats", str(tmp_path / "s.json")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "fabric: logical 16x16 on physical 17x16" in out
    assert "outputs bit-identical to the perfect fabric's: yes" in out
    assert "bit-exact: C matches" in out
    import json
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["fabric"]["defects"] == 3 and "cycle_overhead" in stats["fabric"]
    assert (tmp_path / "hm" / "utilization.png").exists()
    from matplotlib.image import imread
    wafer = imread(tmp_path / "hm" / "wafer.png")        # the physical wafer's map of roles
    assert wafer.shape[0] > 300 and wafer.shape[1] > 300


def test_cli_emit_routes_shows_the_map(tmp_path, capsys):
    path = tmp_path / "d.txt"
    path.write_text("3 0 core\n")
    assert main(["compile", "matmul", "--grid", "4x2", "--param", "M=8", "--param", "K=8", "--param", "N=8",
                 "--emit", "routes", "--defect-map", str(path), "--spare-every", "4"]) == 0
    out = capsys.readouterr().out
    assert "row 0: dead at physical 3(core); moved 3: 3->4" in out
    assert "(2, 0) E: 2 hops: (2, 0) -> (3, 0) dead core, forwards -> (4, 0)" in out


@pytest.mark.parametrize("flags,message", [
    (["--defects", "1.5"], "the defect rate must be a fraction in [0, 1)"),
    (["--defects", "0.01", "--defect-map", "x.txt"], "--defects and --defect-map both give the defects"),
    (["--defect-map", "missing.txt"], "defect map 'missing.txt' does not exist"),
    (["--defects", "0.6", "--defect-seed", "1"], "cannot repair row"),
    (["--defects", "0.01", "--spare-every", "0"], "1..4096 logical columns per spare column"),
])
def test_cli_defect_errors_are_one_line(tmp_path, capsys, monkeypatch, flags, message):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--grid", "4x4", "--size", "32"] + flags) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err and "Traceback" not in err


def test_demo_wafer_runs_a_million_tiles_with_one_percent_defects(capsys):
    assert main(["demo", "--model", "wafer"]) == 0
    out = capsys.readouterr().out
    assert "on a 1024x1024 grid" in out
    assert "fabric: logical 1024x1024 on physical 1088x1024 (64 spare columns, one per 16); defects: 11141" in out
    assert "outputs bit-identical to the perfect fabric's: yes" in out
    assert "bit-exact: y matches the ordered reference in all 4096 values" in out


def test_demo_wafer_takes_a_smaller_grid_and_a_defect_map(tmp_path, capsys):
    path = tmp_path / "d.txt"
    path.write_text("5 3 tile\n")
    assert main(["demo", "--model", "wafer", "--grid", "32x16", "--defect-map", str(path)]) == 0
    out = capsys.readouterr().out
    assert "y = A x, A 64x128 f32" in out and "defects: 1 (0 dead cores, 1 dead tiles; file" in out


def test_cli_saves_the_random_map_and_reads_it_back(tmp_path, capsys):
    saved = tmp_path / "map.txt"
    args = ["demo", "--grid", "16x16", "--size", "64", "--defects", "0.01", "--defect-seed", "7"]
    assert main(args + ["--save-defect-map", str(saved)]) == 0
    first = capsys.readouterr().out
    again = DefectMap.load(str(saved), 17, 16)
    assert (again.kind == DefectMap.random(17, 16, 0.01, 7).kind).all()
    assert main(["demo", "--grid", "16x16", "--size", "64", "--defect-map", str(saved)]) == 0
    second = capsys.readouterr().out
    # the same defects give the same repair and the same cycles
    pick = [line.split("(", 1)[0] for line in first.splitlines() if line.startswith("matmul on")]
    assert pick == [line.split("(", 1)[0] for line in second.splitlines() if line.startswith("matmul on")]
    repair_of = [line.split("repair:", 1)[1] for line in first.splitlines() if "repair:" in line]
    assert repair_of and repair_of == [line.split("repair:", 1)[1] for line in second.splitlines() if "repair:" in line]
    assert main(["demo", "--grid", "4x4", "--size", "32", "--save-defect-map", str(saved)]) == 2
