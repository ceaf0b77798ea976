"""A grid sharded into bands of rows (emulator/sharding.py) gives the one-process run's
bits, cycles and counters. The in-process backend runs the same algorithm as the Ray
actors; the Ray test runs when Ray is installed (pip install -e '.[distributed]')."""
import numpy as np
import pytest

import tilegrid
from tilegrid import api, kernels
from tilegrid.cli import main
from tilegrid.emulator import CodeRegion, DeadlockError, Emulator, MachineConfig, Program
from tilegrid.emulator.defects import DefectMap, SpareLayout
from tilegrid.emulator.isa import HALT, RECV, descriptor, instr
from tilegrid.emulator.repair import repair
from tilegrid.emulator.sharding import BandWorker, bands

CASES = [
    ("matmul", (4, 4), {"M": 32, "K": 32, "N": 32}, {}, 2),
    ("gemv", (4, 6), {"M": 24, "N": 16}, {}, 4),          # bands of unequal height
    ("transformer_block", (4, 4), {"S": 16, "Dm": 16, "Dff": 32}, {"heads": 2, "causal": 1}, 3),
    ("block_pipelined", (4, 4), {"B": 2, "S": 16, "Dm": 16, "Dff": 32}, {"heads": 2}, 2),
    ("matmul_cannon", (4, 4), {"M": 16, "K": 16, "N": 16}, {}, 4),  # rotations wrap across every band
]


def run(program, inputs, **kw):
    emu = Emulator(program, trace_tiles=range(program.config.tiles), **kw)
    emu.load_inputs(inputs)
    stats = emu.run()
    return emu.read_outputs(), stats


def assert_same_run(a, b):
    (out_a, sa), (out_b, sb) = a, b
    for name in out_a:
        assert np.array_equal(out_a[name].view(np.uint32), out_b[name].view(np.uint32)), name
    for field in ("cycles", "instructions", "wavelets", "wavelet_hops", "rounds", "undelivered_wavelets",
                  "phases", "regions"):
        assert getattr(sa, field) == getattr(sb, field), field
    for field in ("per_tile_cycles", "per_tile_busy", "per_tile_blocked", "per_tile_instructions", "link_wavelets"):
        assert np.array_equal(getattr(sa, field), getattr(sb, field)), field
    assert np.array_equal(sa.events, sb.events)


@pytest.mark.parametrize("name, grid, sizes, params, workers", CASES, ids=[c[0] for c in CASES])
def test_bands_in_process_give_the_one_process_bits_cycles_and_traces(name, grid, sizes, params, workers):
    spec = kernels.BUNDLED[name]
    inputs = spec.make_inputs(np.random.default_rng(4), sizes)
    program = tilegrid.compile_kernel(name, grid, {k: v.shape for k, v in inputs.items()}, params).program
    one = run(program, inputs)
    sharded = run(program, inputs, workers=workers, backend="local")
    assert_same_run(one, sharded)
    # and the outputs are the reference's, with a float64 check beside it
    result = api.run_program_checked(program, inputs, params, check=True, workers=workers, backend="local")
    assert result.check.ok, result.check.summary()


def test_bands_on_a_defective_wafer_match_one_process():
    spec = kernels.BUNDLED["matmul"]
    inputs = spec.make_inputs(np.random.default_rng(1), {"M": 64, "K": 64, "N": 64})
    program = tilegrid.compile_kernel("matmul", (16, 16), {k: v.shape for k, v in inputs.items()}).program
    layout = SpareLayout()
    fabric = repair(16, 16, DefectMap.random(layout.physical_width(16), 16, 0.01, seed=5), layout)
    assert_same_run(run(program, inputs, fabric=fabric),
                    run(program, inputs, fabric=fabric, workers=3, backend="local"))


def test_a_band_holds_only_its_own_rows_sram():
    spec = kernels.BUNDLED["gemv"]
    inputs = spec.make_inputs(np.random.default_rng(0), {"M": 32, "N": 32})
    program = tilegrid.compile_kernel("gemv", (4, 8), {k: v.shape for k, v in inputs.items()}).program
    assert bands(8, 3) == [(0, 2), (2, 5), (5, 8)]
    worker = BandWorker(program, (2, 5), {}, np.zeros(8, np.int64), np.zeros(16, np.int64))
    assert worker.state.tiles.mem.size == 3 * 4 * program.sram_words
    emu = Emulator(program, workers=2, backend="local")
    assert emu.state.tiles.mem.size == 1      # the coordinator holds no SRAM


def test_a_deadlock_is_found_and_reported_as_in_one_process():
    cfg = MachineConfig(width=1, height=2)
    r = np.zeros((2, 1, 5), np.uint8)
    code = [instr(RECV, 0, 0), instr(HALT)]  # both tiles receive first; nobody sends
    prog = Program(cfg, np.array(code, np.int32), np.array([descriptor(0, [(4, 1)])], np.int32),
                   np.zeros(1, np.float32), [CodeRegion("both", 0, 2, 0, 0, 1, 2)], r, 4)
    with pytest.raises(DeadlockError) as one:
        Emulator(prog).run()
    with pytest.raises(DeadlockError) as sharded:
        Emulator(prog, workers=2, backend="local").run()
    assert str(one.value) == str(sharded.value)


def test_workers_are_checked_and_need_ray(monkeypatch, capsys, tmp_path):
    inputs = kernels.BUNDLED["gemv"].make_inputs(np.random.default_rng(0), {"M": 8, "N": 8})
    np.savez(tmp_path / "in.npz", **inputs)
    rc = main(["run", "gemv", "--grid", "2x2", "--inputs", str(tmp_path / "in.npz"), "--workers", "3"])
    err = capsys.readouterr().err
    if rc == 2 and "Ray, which is not installed" in err:
        pytest.skip("Ray is not installed; the bounds check needs it to get that far")
    assert rc == 2 and "between 1 and the grid's 2 rows" in err and len(err.strip().splitlines()) == 1

    import builtins
    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_ray)
    rc = main(["run", "gemv", "--grid", "2x2", "--inputs", str(tmp_path / "in.npz"), "--workers", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "pip install -e '.[distributed]'" in err and len(err.strip().splitlines()) == 1


def test_two_ray_workers_give_the_one_process_run(tmp_path, capsys):
    pytest.importorskip("ray")
    spec = kernels.BUNDLED["transformer_block"]
    inputs = spec.make_inputs(np.random.default_rng(6), {"S": 16, "Dm": 16, "Dff": 32})
    program = tilegrid.compile_kernel("transformer_block", (4, 4), {k: v.shape for k, v in inputs.items()},
                                      {"heads": 2, "causal": 1}).program
    assert_same_run(run(program, inputs), run(program, inputs, workers=2, backend="ray"))
    np.savez(tmp_path / "in.npz", **inputs)
    rc = main(["run", "transformer_block", "--grid", "4x4", "--inputs", str(tmp_path / "in.npz"), "--param",
               "heads=2", "--param", "causal=1", "--check", "--workers", "2"])
    out = capsys.readouterr().out
    assert rc == 0 and "bit-exact" in out
