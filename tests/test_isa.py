"""Instruction semantics: every vector op against numpy, descriptors, integer ops, no FMA."""
import numpy as np
import pytest

from conftest import assert_bits_equal, build_program
from tilegrid.emulator import Emulator, isa
from tilegrid.emulator.isa import descriptor as D, instr as I

S = 256  # SRAM words in these programs


def run_single_tile(code, descs, fimm=(0.0,), init=None):
    prog = build_program(1, 1, list(code) + [I(isa.HALT)], descs, S, fimm=fimm)
    emu = Emulator(prog)
    if init is not None:
        emu.state.mem[0, :len(init)] = init
    stats = emu.run()
    return emu.state.mem[0].copy(), emu, stats


def data(rng, n=S):
    v = rng.standard_normal(n).astype(np.float32)
    v[::7] *= 1e20
    v[3] = -0.0
    v[5] = np.inf
    return v


@pytest.mark.parametrize("op,fn", [(isa.VADD, np.add), (isa.VSUB, np.subtract), (isa.VMUL, np.multiply),
                                   (isa.VMAX, np.maximum), (isa.VMIN, np.minimum)])
def test_binary_ops_strided(op, fn, rng):
    init = data(rng)
    init[40] = np.nan
    # dst = rows 0..3 of a 4x8 block at 128; a = a transposed 4x8 view at 0; b = a row broadcast (stride 0)
    dst = D(128, [(4, 8), (8, 1)])
    a = D(0, [(4, 1), (8, 4)])
    b = D(40, [(4, 0), (8, 1)])
    mem, _, _ = run_single_tile([I(op, 0, 1, 2)], [dst, a, b], init=init)
    A = init[0:32].reshape(8, 4).T
    Bv = np.broadcast_to(init[40:48], (4, 8))
    with np.errstate(all="ignore"):
        want = fn(A, Bv)
    assert_bits_equal(mem[128:160].reshape(4, 8), want)


def test_max_min_signed_zero_and_nan():
    init = np.array([0.0, -0.0, np.nan, 1.0] + [0.0] * 12, np.float32)
    other = np.array([-0.0, 0.0, 1.0, np.nan] + [0.0] * 12, np.float32)
    mem0 = np.concatenate([init, other])
    d = [D(100, [(4, 1)]), D(0, [(4, 1)]), D(16, [(4, 1)]), D(104, [(4, 1)])]
    mem, _, _ = run_single_tile([I(isa.VMAX, 0, 1, 2), I(isa.VMIN, 3, 1, 2)], d, init=mem0)
    assert_bits_equal(mem[100:104], np.maximum(init[:4], other[:4]))
    assert_bits_equal(mem[104:108], np.minimum(init[:4], other[:4]))


def test_fill_copy_scale_fmac(rng):
    init = data(rng)
    d = [D(100, [(3, 10), (5, 2)]),   # 0: strided 3x5 destination
         D(0, [(3, 5), (5, 1)]),      # 1: dense 3x5 source
         D(20, [(3, 5), (5, 1)]),     # 2: another dense source
         D(200, [(3, 5), (5, 1)])]    # 3: dense 3x5
    code = [I(isa.VCOPY, 3, 1), I(isa.VFMAC, 3, 1, 2), I(isa.VSCALE, 0, 2, 1), I(isa.VFILL, 1, 0)]
    mem, _, _ = run_single_tile(code, d, fimm=(2.5, -0.75), init=init)
    a = init[0:15]
    b = init[20:35]
    with np.errstate(all="ignore"):
        assert_bits_equal(mem[200:215], a + a * b)           # copy then unfused fmac
        scaled = (b * np.float32(-0.75)).reshape(3, 5)
    assert_bits_equal(mem[100:130].reshape(3, 10)[:, 0:10:2], scaled)
    assert_bits_equal(mem[0:15], np.full(15, 2.5, np.float32))


def test_fmac_is_not_fused():
    """a*b + c with two roundings differs from a fused result for these values."""
    a = np.float32(1 + 2 ** -12)
    c = np.float32(-(1 + 2 ** -11))
    init = np.zeros(S, np.float32)
    init[0], init[1], init[2] = c, a, a
    d = [D(0, [(1, 1)]), D(1, [(1, 1)]), D(2, [(1, 1)])]
    mem, _, _ = run_single_tile([I(isa.VFMAC, 0, 1, 2)], d, init=init)
    unfused = np.float32(c + np.float32(a * a))
    fused = np.float32(float(c) + float(a) * float(a))
    assert unfused != fused
    assert mem[0] == unfused


@pytest.mark.parametrize("m,k,n", [(16, 16, 16), (5, 7, 3), (17, 9, 33), (1, 4, 1)])
def test_mmac_fast_and_strided_paths(m, k, n, rng):
    prog_s = 4096
    A = rng.standard_normal((m, k)).astype(np.float32)
    B = rng.standard_normal((k, n)).astype(np.float32)
    C0 = rng.standard_normal((m, n)).astype(np.float32)
    mem0 = np.zeros(prog_s, np.float32)
    mem0[0:m * k] = A.ravel()
    mem0[1024:1024 + k * n] = B.ravel()
    mem0[2048:2048 + m * n] = C0.ravel()
    # fast path: row-major; strided path: A read through its transpose stored column-major
    mem0[3072:3072 + m * k] = A.T.ravel()
    d = [D(2048, [(m, n), (n, 1)]), D(0, [(m, k), (k, 1)]), D(1024, [(k, n), (n, 1)]),
         D(3072, [(m, 1), (k, m)])]
    for a_desc in (1, 3):
        prog = build_program(1, 1, [I(isa.MMAC, 0, a_desc, 2), I(isa.HALT)], d, prog_s)
        emu = Emulator(prog)
        emu.state.mem[0] = mem0
        emu.run()
        want = C0.copy()
        for kk in range(k):
            want = want + A[:, kk, None] * B[None, kk, :]
        assert_bits_equal(emu.state.mem[0, 2048:2048 + m * n].reshape(m, n), want)


def test_mmac_overlapping_operands_follow_sequential_definition():
    """c overlapping a takes the plain loop: c[i,j] += a[i,k]*b[k,j] in (i, k, j) order."""
    m = k = n = 4
    rng = np.random.default_rng(5)
    mem0 = np.zeros(64, np.float32)
    mem0[0:16] = rng.standard_normal(16)
    mem0[32:48] = rng.standard_normal(16)
    d = [D(0, [(4, 4), (4, 1)]), D(32, [(4, 4), (4, 1)])]
    prog = build_program(1, 1, [I(isa.MMAC, 0, 0, 1), I(isa.HALT)], d, 64)
    emu = Emulator(prog)
    emu.state.mem[0] = mem0
    emu.run()
    m_ = mem0.copy()
    for i in range(m):
        for kk in range(k):
            av = m_[i * 4 + kk]
            for j in range(n):
                m_[i * 4 + j] = np.float32(m_[i * 4 + j] + np.float32(av * m_[32 + kk * 4 + j]))
    assert_bits_equal(emu.state.mem[0, :16], m_[:16])


def test_integer_ops_branches_and_loop():
    code = [
        I(isa.LI, 2, 7), I(isa.LI, 3, -3),
        I(isa.DIV, 4, 2, 3), I(isa.MOD, 5, 2, 3),       # floor division and modulo like Python
        I(isa.MULI, 6, 2, 5), I(isa.ADDI, 6, 6, -1),     # 34
        I(isa.MINR, 7, 2, 3), I(isa.MAXR, 8, 2, 3),
        I(isa.LI, 9, 0), I(isa.LI, 10, 0),
        I(isa.ADD, 10, 10, 9),                           # loop body: r10 += r9
        I(isa.LOOP, 9, 5, 10),                           # for r9 in 0..5
        I(isa.LI, 11, 0),
        I(isa.BGE, 3, 2, 15),                            # -3 >= 7? no
        I(isa.ADDI, 11, 11, 1),
        I(isa.BLT, 3, 2, 17),                            # -3 < 7: skip next
        I(isa.ADDI, 11, 11, 100),
        I(isa.SUB, 12, 3, 2),
    ]
    _, emu, stats = run_single_tile(code, [D(0, [(1, 1)])])
    r = emu.state.regs[0]
    assert (r[4], r[5]) == (7 // -3, 7 % -3)
    assert r[6] == 34 and r[7] == -3 and r[8] == 7
    assert r[10] == 0 + 1 + 2 + 3 + 4
    assert r[11] == 1 and r[12] == -10
    assert stats.instructions == 10 + 2 * 5 + 5 + 1  # straight-line, loop body x5, tail


def test_tile_coordinates_preloaded():
    prog = build_program(3, 2, [I(isa.HALT)], [D(0, [(1, 1)])], 1)
    emu = Emulator(prog)
    emu.run()
    assert emu.state.regs[:, 0].tolist() == [0, 1, 2, 0, 1, 2]
    assert emu.state.regs[:, 1].tolist() == [0, 0, 0, 1, 1, 1]


def test_no_fused_multiply_add_in_machine_code():
    """numba must not contract the core's multiply-adds into FMA instructions."""
    from numba import njit
    from tilegrid.emulator import vector_ops, simd_matmac
    import numba
    sig_m = (numba.float32[::1], numba.int32[:, ::1], numba.int64, numba.int64, numba.int64,
             numba.int64, numba.int64, numba.int64)
    fresh = njit(vector_ops.vec_fmac.py_func)
    fresh.compile(sig_m)
    asm = "\n".join(fresh.inspect_asm().values())
    assert "vmul" in asm or "mulss" in asm
    assert "fmadd" not in asm and "fmsub" not in asm
    fresh_mm = njit(simd_matmac.simd_matmac.py_func)
    fresh_mm.compile((numba.float32[::1],) + (numba.int64,) * 9)
    asm = "\n".join(fresh_mm.inspect_asm().values())
    assert "vmulps" in asm and "vaddps" in asm
    assert "fmadd" not in asm and "fmsub" not in asm and "fnmadd" not in asm


@pytest.mark.parametrize("mode", [isa.WIDEN_BF16, isa.WIDEN_F16])
def test_vwiden_turns_every_16_bit_pattern_into_its_exact_f32(mode):
    """All 65,536 halves, packed two to a word (low half first), widened and compared
    as bits with ml_dtypes' bfloat16 and numpy's float16 conversions."""
    import ml_dtypes
    from tilegrid.emulator import MachineConfig
    halves = np.arange(1 << 16, dtype=np.uint32)
    words = (halves[0::2] | (halves[1::2] << 16)).view(np.float32)
    n = len(halves)
    cfg = MachineConfig(width=1, height=1, sram_bytes=4 * (n + n // 2) + 4096)
    # dst: 65,536 f32 at words // 2 .. ; src: the 32,768 packed words at 0, walked as 128 x 256
    prog = build_program(1, 1, [I(isa.VWIDEN, 0, 1, mode), I(isa.HALT)],
                         [D(n // 2, [(256, 256), (256, 1)]), D(0, [(128, 256), (256, 1)])], n + n // 2, config=cfg)
    emu = Emulator(prog)
    emu.state.mem[0, :n // 2] = words
    emu.run()
    got = emu.state.mem[0, n // 2:].view(np.uint32)
    dtype = ml_dtypes.bfloat16 if mode == isa.WIDEN_BF16 else np.float16
    want = halves.astype(np.uint16).view(dtype).astype(np.float32).view(np.uint32)
    finite = np.isfinite(want.view(np.float32))
    assert np.array_equal(got[finite], want[finite])
    # infinities and NaNs stay what they are, with their sign (numpy may quiet a NaN's payload)
    g, w = got[~finite].view(np.float32), want[~finite].view(np.float32)
    assert np.array_equal(np.isinf(g), np.isinf(w)) and np.array_equal(np.isnan(g), np.isnan(w))
    assert np.array_equal(got[~finite] >> 31, want[~finite] >> 31)
