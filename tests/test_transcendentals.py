"""tilegrid's exp and tanh: accuracy against float64, special values, one definition."""
import numpy as np
import pytest

from conftest import assert_bits_equal, build_program
from tilegrid.emulator import Emulator, isa, transcendentals as T
from tilegrid.emulator.isa import descriptor as D, instr as I


def ulp_error(got, exact):
    """|got - exact| in units of the f32 spacing at the exact value."""
    spacing = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    return np.abs(got.astype(np.float64) - exact) / spacing


def sweep(lo, hi, n=2_000_001):
    return np.linspace(lo, hi, n).astype(np.float32)


def test_exp_within_2_ulp_on_its_range():
    x = sweep(-87, 88)
    err = ulp_error(T.exp(x), np.exp(x.astype(np.float64)))
    assert err.max() <= 2.0, err.max()


def test_exp_every_2_to_the_20th_float():
    bits = np.arange(0, 1 << 31, 1 << 11, dtype=np.int64).astype(np.uint32).view(np.float32)
    x = np.concatenate([bits, -bits])
    x = x[(x > -87) & (x < 88)]
    err = ulp_error(T.exp(x), np.exp(x.astype(np.float64)))
    assert err.max() <= 2.0


def test_tanh_within_2_ulp():
    x = sweep(-12, 12)
    x = x[x != 0]
    err = ulp_error(T.tanh(x), np.tanh(x.astype(np.float64)))
    assert err.max() <= 2.0, err.max()


def test_special_values():
    x = np.array([np.nan, np.inf, -np.inf, 89.0, -104.0, 0.0, -0.0], np.float32)
    e = T.exp(x)
    assert np.isnan(e[0]) and e[1] == np.inf and e[2] == 0 and e[3] == np.inf and e[4] == 0
    assert e[5] == 1 and e[6] == 1
    t = T.tanh(x)
    assert np.isnan(t[0]) and t[1] == 1 and t[2] == -1 and t[3] == 1 and t[4] == -1
    assert t[5] == 0 and not np.signbit(t[5]) and np.signbit(t[6])


@pytest.mark.parametrize("op,fn", [(isa.VEXP, T.exp), (isa.VTANH, T.tanh), (isa.VSQRT, np.sqrt)])
def test_emulator_uses_the_same_definition(op, fn, rng):
    """The ISA's vexp / vtanh / vsqrt give exactly the bits the reference ufuncs give."""
    x = (rng.standard_normal(256) * 20).astype(np.float32)
    if op == isa.VSQRT:
        x = np.abs(x)
    prog = build_program(1, 1, [I(op, 1, 0), I(isa.HALT)], [D(0, [(16, 16), (16, 1)]), D(256, [(16, 16), (16, 1)])],
                         512)
    emu = Emulator(prog)
    emu.state.mem[0, :256] = x
    emu.run()
    assert_bits_equal(emu.state.mem[0, 256:], fn(x))


def test_vdiv_is_ieee_division(rng):
    a = rng.standard_normal(64).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    b[0] = 0.0
    prog = build_program(1, 1, [I(isa.VDIV, 2, 0, 1), I(isa.HALT)],
                         [D(0, [(64, 1)]), D(64, [(64, 1)]), D(128, [(64, 1)])], 192)
    emu = Emulator(prog)
    emu.state.mem[0, :64], emu.state.mem[0, 64:128] = a, b
    emu.run()
    with np.errstate(divide="ignore"):
        assert_bits_equal(emu.state.mem[0, 128:], a / b)
