"""Indices read from SRAM: `index t = ids[i] in lo .. hi` (ldw, then a clamp), the
embedding lookup a language model needs, against numpy's gather."""
import numpy as np
import pytest

from conftest import build_program
from tilegrid import api
from tilegrid.compiler.diagnostics import CompileError
from tilegrid.compiler.driver import compile_source
from tilegrid.emulator import Emulator, EmulatorError, MachineConfig, isa
from tilegrid.emulator.isa import descriptor as D, instr as I

EMBED = """
kernel embed(ids: f32[T] replicated, table: f32[V, D] block(_, x)) -> out: f32[T, D] block(_, x)
{
    for i in 0 .. T {
        index t = ids[i] in 0 .. V
        out[i, :] = table[t, :] * SCALE
    }
}
"""


def compile_text(src, grid, shapes):
    return compile_source(src, "index.tg", MachineConfig(width=grid[0], height=grid[1]), shapes, {}).program


def expected_rows(ids, V):
    """ldw's rule: truncate toward zero (NaN: 0), then clamp to 0 .. V - 1."""
    t = np.where(np.isnan(ids), 0, np.trunc(np.nan_to_num(ids, nan=0, posinf=2**31, neginf=-2**31)))
    return np.clip(t, 0, V - 1).astype(np.int64)


@pytest.mark.parametrize("grid", [(1, 1), (4, 2), (2, 3)])
def test_an_embedding_lookup_picks_the_rows_the_ids_name(grid):
    rng = np.random.default_rng(3)
    V, Dm = 11, 12
    ids = np.array([3, 0, 10, 7.9, -2, 1e12, np.nan, -0.5, 5, np.inf], np.float32)
    table = rng.standard_normal((V, Dm)).astype(np.float32)
    prog = compile_text(EMBED.replace("SCALE", "2.0"), grid, {"ids": ids.shape, "table": table.shape})
    out = api.run_program_checked(prog, {"ids": ids, "table": table}, {}, check=False).outputs["out"]
    rows = expected_rows(ids, V)
    want = table[rows] * np.float32(2.0)
    assert np.array_equal(out.view(np.uint32), want.view(np.uint32))
    np.testing.assert_array_equal(out.astype(np.float64), table.astype(np.float64)[rows] * 2)
    # the same program in bands of rows
    sharded = api.run_program_checked(prog, {"ids": ids, "table": table}, {}, check=False, workers=grid[1],
                                      backend="local") if grid[1] > 1 else None
    if sharded is not None:
        assert np.array_equal(sharded.outputs["out"].view(np.uint32), out.view(np.uint32))


def test_ldw_truncates_saturates_and_checks_its_descriptor():
    values = np.array([-2.7, 3e9, -3e9, np.nan, 41.99, -0.0], np.float32)
    code = [I(isa.LDW, 2 + k, k) for k in range(len(values))] + [I(isa.HALT)]
    prog = build_program(1, 1, code, [D(k, [(1, 1)]) for k in range(len(values))], 8)
    emu = Emulator(prog)
    emu.state.mem[0, :len(values)] = values
    emu.run()
    assert emu.state.regs[0, 2:8].tolist() == [-2, 2**31 - 1, -2**31, 0, 41, 0]
    bad = build_program(1, 1, [I(isa.LDW, 2, 0), I(isa.HALT)], [D(0, [(1, 1)], base_reg=3)], 8)
    emu = Emulator(bad)
    emu.state.regs[0, 3] = 100      # the descriptor's base register points outside the plan
    with pytest.raises(EmulatorError, match="descriptor outside"):
        emu.run()


BAD = [
    ("index t = ids in 0 .. V", "one element"),
    ("index t = ids[i] in 4 .. 4", "hold no value"),
    ("index t = 3.0 in 0 .. V", "one element of a tensor"),
]


@pytest.mark.parametrize("stmt, message", BAD)
def test_bad_indices_are_errors(stmt, message):
    src = EMBED.replace("index t = ids[i] in 0 .. V", stmt).replace("SCALE", "1.0")
    with pytest.raises(CompileError) as err:
        compile_text(src, (2, 2), {"ids": (4,), "table": (6, 8)})
    assert message in str(err.value), str(err.value)


def test_the_cycle_level_model_refuses_an_index_read_from_sram():
    prog = compile_text(EMBED.replace("SCALE", "1.0"), (2, 2), {"ids": (4,), "table": (6, 8)})
    with pytest.raises(EmulatorError, match="cannot follow an index read from SRAM"):
        Emulator(prog, timing="cycle")
