"""Active-tile scheduling: a round visits only the tiles that can make progress.

RunStats.tile_visits counts the tiles the compute phases ran. Where every tile
works every round (SUMMA) it is rounds x tiles; where a wavefront crosses the
grid (gemv's chain reduce) it is a small multiple of the tiles, whatever the
rounds; and the values and cycles are those of every tile being scanned.
"""
import numpy as np
import pytest

from tilegrid import api, kernels
from tilegrid.emulator import Emulator


def run(name, grid, sizes, params=None):
    inputs = kernels.BUNDLED[name].make_inputs(np.random.default_rng(0), sizes)
    program = api.compile_kernel(name, grid, {k: v.shape for k, v in inputs.items()}, params or {}).program
    result = api.run_program_checked(program, inputs, params or {}, check=True)
    assert result.check.ok, result.check.summary()
    return result.stats


def test_summa_visits_every_tile_every_round():
    stats = run("matmul", (8, 8), {"M": 16, "K": 16, "N": 16})
    assert stats.tile_visits == stats.rounds * 64


@pytest.mark.parametrize("side", [16, 64])
def test_a_wavefront_visits_only_its_front(side):
    """gemv: every tile computes its block, then the chain reduce moves one tile east per
    round: each tile runs a few times in all, not once per round."""
    stats = run("gemv", (side, side), {"M": 4 * side, "N": 4 * side})
    tiles = side * side
    assert stats.rounds > side                      # the chain takes a round per tile of a row
    assert tiles <= stats.tile_visits <= 4 * tiles  # not rounds x tiles


def test_idle_tiles_outside_the_program_cost_nothing():
    """A 1x4 program placed on a grid: its code region covers one column; the other
    tiles never run."""
    from conftest import build_program
    from tilegrid.emulator import CodeRegion, isa
    from tilegrid.emulator.isa import descriptor as D, instr as I
    p = build_program(8, 4, [I(isa.LI, 2, 0), I(isa.LOOP, 2, 1000, 1), I(isa.HALT)], [D(0, [(1, 1)])], 8)
    p.regions = [CodeRegion("column", 0, 3, 0, 0, 1, 4)]
    emu = Emulator(p)
    stats = emu.run()
    assert stats.tile_visits == 4 * stats.rounds
    assert int((emu.state.icount > 0).sum()) == 4
