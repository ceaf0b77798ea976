"""The fast timing model against the cycle-level reference (--timing cycle).

Micro-benchmarks must agree exactly; every bundled kernel on small grids must
agree within 5%. Both models also agree on instructions and link traffic,
which the cycle-level model counts on its own.
"""
import numpy as np
import pytest

from tilegrid import api
from tilegrid.emulator import Emulator
from tilegrid.timing_cases import KERNEL_CASES, kernel_inputs, micro_cases


def both_models(program, inputs):
    emu = Emulator(program, timing="cycle")
    emu.load_inputs(inputs)
    stats = emu.run()
    return emu, stats


@pytest.mark.parametrize("label,source,grid,n", micro_cases(), ids=[c[0] for c in micro_cases()])
def test_micro_benchmarks_agree_exactly(tmp_path, label, source, grid, n):
    path = tmp_path / "k.tg"
    path.write_text(source)
    program = api.compile_kernel(str(path), grid, {"A": (n,)}).program
    emu, stats = both_models(program, {"A": np.arange(n, dtype=np.float32)})
    assert stats.cycles == stats.fast_cycles, (label, stats.cycles, stats.fast_cycles)


@pytest.mark.parametrize("name,grid,sizes,params", KERNEL_CASES,
                         ids=[f"{c[0]}-{c[1][0]}x{c[1][1]}" for c in KERNEL_CASES])
def test_bundled_kernels_within_five_percent(name, grid, sizes, params):
    inputs = kernel_inputs(name, sizes)
    program = api.compile_kernel(name, grid, {k: v.shape for k, v in inputs.items()}, params).program
    emu, stats = both_models(program, inputs)
    assert abs(stats.fast_cycles - stats.cycles) <= 0.05 * stats.cycles, (stats.fast_cycles, stats.cycles)
    assert stats.cycles > 0


def test_cycle_mode_from_the_cli(tmp_path):
    from tilegrid.cli import main
    from tilegrid.input_files import write_npz
    rng = np.random.default_rng(0)
    write_npz(tmp_path / "in.npz", {"A": rng.standard_normal((8, 8)).astype(np.float32),
                                    "B": rng.standard_normal((8, 8)).astype(np.float32)})
    assert main(["run", "matmul", "--grid", "2x2", "--inputs", str(tmp_path / "in.npz"), "--timing", "cycle",
                 "--check"]) == 0
