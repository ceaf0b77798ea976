"""Output-stationary systolic matmul (kernels/matmul_systolic.tg): bit-exact against the
ordered reference (raw uint32 bits) and within the float64 bound, on square and non-square
grids, one fold and many, and through the zero-padding for sizes that do not divide; its fold
loop has the shape compiler/passes/double_buffer.py pipelines, and the pipelined program is
bit-exact too, fits 48 KiB and takes about 2K cycles per fold."""
from __future__ import annotations

from math import gcd

import numpy as np
import pytest

import tilegrid
from tilegrid import api, kernels
from tilegrid.cli import main
from tilegrid.compiler import driver
from tilegrid.compiler.checker import check_kernel
from tilegrid.compiler.passes import double_buffer
from tilegrid.compiler.spatial_ir import format_ir
from tilegrid.emulator import Emulator
from tilegrid.kernels import ground_truth, matmul_systolic_ref
from conftest import assert_bits_equal, assert_close_f64, ordered_matmul

SRAM_BYTES = 48 * 1024  # the default tile SRAM, restated


def bits(x):
    return np.ascontiguousarray(x, np.float32).view(np.uint32)


def randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def check_both_ways(C, A, B):
    """C against an ordered product written here (raw bits) and against float64 within the bound."""
    assert C.dtype == np.float32 and C.shape == (A.shape[0], B.shape[1])
    assert np.array_equal(bits(C), bits(ordered_matmul(A, B)))
    assert_bits_equal(C, kernels.BUNDLED["matmul_systolic"].reference({"A": A, "B": B}, {}, None)["C"])
    A64, B64 = A.astype(np.float64), B.astype(np.float64)
    assert_close_f64(C, A64 @ B64, np.abs(A64) @ np.abs(B64), A.shape[1])


def plan(grid, M, K, N):
    """The kernel's staging sizes, restated: (nc, nblocks, g). B columns are staged nc at a
    time (nblocks blocks, the last one starting at nb - nc), A rows g = mb at once or one at a
    time, as many as fit 11648 floats beside the blocks and the doubled a and b."""
    W, H = grid
    mb, nb = M // H, N // W
    room = 11648 - (mb * (K // W) + (K // H) * nb + mb * nb) - 4 * K
    ncap = max(1, room // K - 1)
    nblocks = -(-nb // ncap)
    nc = -(-nb // nblocks)
    g = max(1, mb * min(1, (room - nc * K) // (mb * K)))
    return nc, nblocks, g


def compile_pipelined(grid, shapes, pipelined=True, unroll=True):
    """The program with double_buffer's rewrite taken (or, pipelined=False, without it), as
    the driver does when it fits. Returns (lowered IR text, program)."""
    source, path = api.read_source("matmul_systolic")
    config = api.machine(grid)
    own, table = driver.load_kernels(source, path)
    spatial = check_kernel(own[-1], config.width, config.height, shapes, {}, table,
                           max_ops=config.sram_bytes // config.instruction_bytes)
    if pipelined:
        spatial = double_buffer(spatial, unroll=unroll)
    spatial, program = driver._lower_and_emit(spatial, config, path)
    return format_ir(spatial), program


def run_program(program, A, B):
    emu = Emulator(program)
    emu.load_inputs({"A": A, "B": B})
    stats = emu.run()
    return emu.read_outputs()["C"], stats


# (W, H) grid, (M, K, N). The kernel needs M % H, N % W, K % W, K % H == 0.
# Folds are mb * nb = (M / H) * (N / W); B columns are staged nc at a time (plan()), so a
# large K makes several blocks, and A rows all at once or, when they do not fit, one at a time.
CASES = [
    ((1, 1), (1, 1, 1)),      # one fold, one tile
    ((1, 1), (5, 7, 3)),      # 15 folds on one tile
    ((2, 2), (2, 4, 2)),      # one fold
    ((2, 2), (8, 16, 8)),     # 16 folds
    ((2, 2), (6, 8, 6)),      # 9 folds
    ((4, 4), (4, 1024, 16)),  # nb = 4, nc = 4: one block
    ((4, 4), (4, 2048, 16)),  # nb = 4, nc = 1: four blocks
    ((4, 4), (4, 1024, 24)),  # nb = 6, nc = 3: two blocks
    ((4, 4), (4, 2048, 12)),  # nb = 3, nc = 1: three blocks
    ((4, 4), (8, 1024, 20)),  # nb = 5, nc = 3: the last block starts at 2 and redoes column 2
    ((4, 4), (16, 1024, 16)), # mb = 4 rows do not fit beside the columns: A one row at a time
    ((4, 4), (16, 1024, 24)), # A one row at a time, two blocks of 3
    ((4, 4), (16, 1024, 20)), # A one row at a time, the last block redoes a column
    ((4, 4), (4, 8, 4)),      # one fold
    ((4, 4), (16, 32, 8)),    # 8 folds
    ((4, 4), (20, 12, 36)),   # 45 folds
    ((4, 2), (2, 4, 4)),      # non-square, one fold
    ((4, 2), (8, 24, 16)),    # non-square, 16 folds
    ((2, 4), (12, 8, 6)),     # tall, 9 folds
    ((3, 2), (6, 12, 9)),     # 9 folds, K over lcm(3, 2) = 6
    ((1, 4), (8, 4, 2)),      # a single column
    ((4, 1), (3, 8, 8)),      # a single row
]


@pytest.mark.parametrize("grid,shape", CASES, ids=[f"{g[0]}x{g[1]}-{s[0]}x{s[1]}x{s[2]}" for g, s in CASES])
def test_bit_exact_and_within_bound(grid, shape):
    M, K, N = shape
    rng = np.random.default_rng(M * 1000 + K * 10 + N + grid[0] * 7 + grid[1])
    A, B = randn(rng, M, K), randn(rng, K, N)
    result = tilegrid.run_kernel("matmul_systolic", {"A": A, "B": B}, grid=grid, check=True)
    assert result.check.bit_exact, result.check.summary()
    assert result.check.within_bound, result.check.summary()
    check_both_ways(result.outputs["C"], A, B)
    assert result.stats.tiles == grid[0] * grid[1]
    assert result.stats.sram_peak_bytes <= SRAM_BYTES


def test_wide_dynamic_range_is_bit_exact():
    """Magnitudes over 12 decades make the rounding of every step visible."""
    rng = np.random.default_rng(5)
    A = (rng.standard_normal((16, 32)) * 10 ** rng.uniform(-6, 6, (16, 32))).astype(np.float32)
    B = (rng.standard_normal((32, 12)) * 10 ** rng.uniform(-6, 6, (32, 12))).astype(np.float32)
    C = tilegrid.run_kernel("matmul_systolic", {"A": A, "B": B}, grid=(4, 2), check=True).outputs["C"]
    check_both_ways(C, A, B)
    # the k order matters at these magnitudes: descending k gives other bits somewhere
    desc = np.zeros_like(C)
    for k in reversed(range(32)):
        desc = desc + A[:, k, None] * B[None, k, :]
    assert not np.array_equal(bits(C), bits(desc))


def test_every_wavelet_is_accounted_for():
    """Per fold done, the injecting tile of each row sends K (the A row) and that of each
    column K (the B column); the rest is the staging, each tile broadcasting its k-slice of
    the A rows along its row (all mb rows once, or each row once per block) and of each block
    of B columns along its column. An axis of one tile sends nothing (a broadcast is a copy)."""
    for (W, H), (M, K, N) in [((2, 2), (8, 16, 8)), ((4, 2), (8, 8, 16)), ((3, 2), (6, 12, 9)),
                              ((2, 3), (6, 6, 4)), ((4, 4), (8, 1024, 20)), ((4, 4), (16, 1024, 20)),
                              ((1, 4), (8, 4, 2)), ((4, 1), (3, 8, 8))]:
        A, B = np.ones((M, K), np.float32), np.ones((K, N), np.float32)
        result = tilegrid.run_kernel("matmul_systolic", {"A": A, "B": B}, grid=(W, H))
        mb, nb = M // H, N // W
        nc, nblocks, g = plan((W, H), M, K, N)
        done = mb * nblocks * nc                 # folds, with the columns a last block redoes
        assert done >= mb * nb == matmul_systolic_ref.folds(M, N, (W, H))
        rows, cols = int(W > 1), int(H > 1)      # whether A, B broadcasts cross the fabric
        injected = done * K * (H * rows + W * cols)
        stage_b = nblocks * W * K * nc * cols
        stage_a = (1 if g == mb else nblocks) * M * K * rows
        assert result.stats.wavelets == injected + stage_b + stage_a, (W, H, M, K, N)
        assert np.all(result.outputs["C"] == K)


# ---------------------------------------------------------------- the pipelined fold loop
def test_the_fold_loop_has_the_pipelined_shape():
    """double_buffer rewrites the fold loop: a and b become two halves each, the first fold's
    vectors are received on stream slots 2 and 3 before the loop, and each fold starts the
    next fold's receives (async) before its dot."""
    for grid, shapes in [((4, 4), {"A": (16, 16), "B": (16, 16)}),          # A rows all at once
                         ((4, 4), {"A": (16, 1024), "B": (1024, 16)})]:      # one row at a time
        lowered, program = compile_pipelined(grid, shapes)
        assert "local  a%2: f32[2, 1, " in lowered and "local  b%2: f32[2, " in lowered
        assert "recv row_bcast_self a%2" in lowered and "recv col_bcast_self b%2" in lowered
        assert lowered.count("async slot2") >= 4 and lowered.count("async slot3") >= 4   # before and in the loop
        assert "wait slot2" in lowered and "wait slot3" in lowered
        assert "send row_bcast_self arows" in lowered and "send col_bcast_self bcols" in lowered


def test_the_compiled_fold_loop_is_pipelined():
    compiled = tilegrid.compile_kernel("matmul_systolic", (4, 4), {"A": (16, 16), "B": (16, 16)})
    assert "a%2" in compiled.lowered and "async slot2" in compiled.lowered


@pytest.mark.parametrize("grid,shape", [((4, 4), (16, 16, 16)), ((4, 4), (16, 1024, 24)),
                                        ((4, 4), (8, 1024, 20)), ((4, 2), (8, 24, 16)), ((2, 4), (12, 8, 6)),
                                        ((3, 2), (6, 12, 9)), ((1, 4), (8, 4, 2)), ((4, 1), (3, 8, 8))],
                         ids=lambda v: "x".join(map(str, v)))
def test_pipelined_program_is_bit_exact(grid, shape):
    M, K, N = shape
    rng = np.random.default_rng(M * 31 + K + N)
    A, B = randn(rng, M, K), randn(rng, K, N)
    _, program = compile_pipelined(grid, {"A": A.shape, "B": B.shape})
    C, stats = run_program(program, A, B)
    check_both_ways(C, A, B)
    assert stats.sram_peak_bytes <= SRAM_BYTES


@pytest.mark.parametrize("grid,shape", [((4, 4), (16, 16, 16)), ((3, 2), (6, 12, 9)), ((4, 4), (8, 1024, 20)),
                                        ((2, 2), (2, 4, 6))], ids=lambda v: "x".join(map(str, v)))
def test_unrolled_fold_loop_agrees_with_the_rolled_one(grid, shape):
    """The fold loop unrolled by two (constant halves, last fold peeled; odd and even fold
    counts) computes the same bits as the rolled loop, with fewer instructions: no fold
    works out which half it uses or whether it is the last."""
    M, K, N = shape
    rng = np.random.default_rng(M + K * 7 + N)
    A, B = randn(rng, M, K), randn(rng, K, N)
    runs = {}
    for unroll in (False, True):
        lowered, program = compile_pipelined(grid, {"A": A.shape, "B": B.shape}, unroll=unroll)
        assert ("/2 in 0 .." in lowered) == (unroll and matmul_systolic_ref.folds(M, N, grid) >= 3), lowered
        C, stats = run_program(program, A, B)
        check_both_ways(C, A, B)
        runs[unroll] = (C, int(np.sum(stats.per_tile_instructions)))
    assert np.array_equal(bits(runs[False][0]), bits(runs[True][0]))
    assert runs[True][1] < runs[False][1]


def test_a_pipelined_fold_takes_about_k():
    """Every tile spends about K per fold on the dot while the next fold's vectors arrive;
    an injecting tile takes its own copy from the fabric too (a route from its ramp back to
    its ramp), so it is not slower: about K + 40 cycles per fold, where the plain loop takes
    about 3K (receive A, receive B, dot)."""
    M = K = N = 256
    rng = np.random.default_rng(7)
    A, B = randn(rng, M, K), randn(rng, K, N)
    _, program = compile_pipelined((16, 16), {"A": A.shape, "B": B.shape})
    C, stats = run_program(program, A, B)
    assert np.array_equal(bits(C), bits(ordered_matmul(A, B)))
    folds = matmul_systolic_ref.folds(M, N, (16, 16))
    staging = 2 * 16 * (16 * 16 + 10)                  # 16 broadcasts of 256 for A, as many for B
    per_fold = (stats.cycles - staging) / folds
    assert K < per_fold < K + 48, per_fold
    _, plain_program = compile_pipelined((16, 16), {"A": A.shape, "B": B.shape}, pipelined=False)
    C_plain, plain = run_program(plain_program, A, B)
    assert np.array_equal(bits(C_plain), bits(C))
    assert 3 * K < (plain.cycles - staging) / folds < 3 * K + 64


# ------------------------------------------------------- sizes that do not divide the grid
PADDED = [
    ((16, 16), (100, 64, 72)),   # the brief's example: 7 * 5 = 35 folds
    ((4, 2), (7, 9, 5)),         # M, K and N all padded (K to lcm(4, 2) = 4)
    ((3, 2), (5, 7, 4)),         # K to a multiple of 6
    ((2, 2), (1, 1, 1)),
]


@pytest.mark.parametrize("grid,shape", PADDED, ids=[f"{g[0]}x{g[1]}-{s[0]}x{s[1]}x{s[2]}" for g, s in PADDED])
def test_padded_sizes_are_bit_exact_with_the_unpadded_product(grid, shape):
    M, K, N = shape
    W, H = grid
    rng = np.random.default_rng(M + K + N)
    A, B = randn(rng, M, K), randn(rng, K, N)
    Mp, Kp, Np = matmul_systolic_ref.padded_sizes(M, K, N, grid)
    assert (Mp % H, Np % W, Kp % W, Kp % H) == (0, 0, 0, 0)
    assert Mp - M < H and Np - N < W and Kp - K < W * H // gcd(W, H)
    C, result = matmul_systolic_ref.run_padded(A, B, grid, check=True)
    assert result.check.ok, result.check.summary()          # the padded run against the padded reference
    check_both_ways(C, A, B)                                 # the crop against the unpadded product
    folds = -(-M // H) * -(-N // W)
    assert matmul_systolic_ref.folds(M, N, grid) == folds == (Mp // H) * (Np // W)
    assert result.stats.sram_peak_bytes <= SRAM_BYTES


def test_padding_keeps_special_values_bit_exact():
    """K is padded at the front: each element adds +0.0 products to +0.0 first, then the real
    k in order, so inf, NaN, -0.0 and subnormals come out as in the unpadded product."""
    rng = np.random.default_rng(9)
    A, B = randn(rng, 6, 5), randn(rng, 5, 3)
    A[0, :] = -0.0
    A[1, 2] = np.inf
    A[2, 0] = np.nan
    A[3, :] = np.float32(1e-40)            # subnormal
    B[:, 1] = -B[:, 1]
    C, result = matmul_systolic_ref.run_padded(A, B, (4, 4))
    assert matmul_systolic_ref.pad_inputs(A, B, (4, 4))[0].shape == (8, 8)
    assert_bits_equal(C, ordered_matmul(A, B))
    assert np.isnan(C[2]).all() and not np.isnan(C[0]).any()


def test_pad_inputs_layout_and_errors():
    A = np.arange(6, dtype=np.float32).reshape(2, 3)
    B = np.arange(6, dtype=np.float32).reshape(3, 2)
    Ap, Bp = matmul_systolic_ref.pad_inputs(A, B, (4, 2))   # W = 4, H = 2: M 2, K 4, N 4
    assert Ap.shape == (2, 4) and Bp.shape == (4, 4)
    assert np.array_equal(Ap[:, 1:], A) and not Ap[:, 0].any()   # K padded at the front
    assert np.array_equal(Bp[1:, :2], B) and not Bp[0].any() and not Bp[:, 2:].any()
    with pytest.raises(ValueError, match="inner sizes differ"):
        matmul_systolic_ref.pad_inputs(A, A, (2, 2))


def test_non_dividing_shape_is_a_clear_compile_error():
    A, B = np.ones((100, 64), np.float32), np.ones((64, 72), np.float32)
    with pytest.raises(tilegrid.CompileError, match="size 100.*divisible by 16"):
        tilegrid.run_kernel("matmul_systolic", {"A": A, "B": B}, grid=(16, 16))


# ------------------------------------------------------------------------ SRAM
@pytest.mark.parametrize("grid,n", [((16, 16), 256), ((32, 32), 512)])
def test_large_cases_fit_the_default_sram(grid, n):
    """Per tile: blocks of A, B, C (mb x K/W, K/H x nb, mb x nb), a and b in two halves each
    (4 K), the staged A rows (g x K) and B columns (K x nc): all nb columns at once at both
    sizes, and all mb rows at 16x16 with 256^3 (37 KiB of data: both edges are staged in one
    loop, after which A's and B's blocks share their space with later buffers) but one row
    at a time at 32x32 with 512^3 (45 KiB).
    Without the pipelining a and b take half as much."""
    mb = nb = n // grid[0]
    nc, nblocks, g = plan(grid, n, n, n)
    assert (nc, nblocks, g) == (nb, 1, mb if n == 256 else 1)
    data_words = 3 * mb * mb + 4 * n + g * n + n * nc
    for pipelined in (True, False):
        _, program = compile_pipelined(grid, {"A": (n, n), "B": (n, n)}, pipelined)
        assert program.config.sram_bytes == SRAM_BYTES
        together = g == mb and nblocks == 1 and grid[0] == grid[1]  # both edges staged in one loop
        words = (data_words - (0 if pipelined else 2 * n) - (mb * mb if g == mb else 0)
                 - (mb * mb if together and not pipelined else 0))  # and, plain, B's block is reused too
        assert program.sram_words == words
        assert program.sram_bytes_used() <= SRAM_BYTES
    compiled = tilegrid.compile_kernel("matmul_systolic", grid, {"A": (n, n), "B": (n, n)})
    assert compiled.program.sram_bytes_used() <= SRAM_BYTES


def test_16x16_256_runs_bit_exact():
    rng = np.random.default_rng(256)
    A, B = randn(rng, 256, 256), randn(rng, 256, 256)
    result = tilegrid.run_kernel("matmul_systolic", {"A": A, "B": B}, grid=(16, 16), check=True)
    assert result.check.ok, result.check.summary()
    assert np.array_equal(bits(result.outputs["C"]), bits(ordered_matmul(A, B)))


# ------------------------------------------------------------------------- CLI
def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_run_check_stats_output(tmp_path, capsys):
    """As the README runs a bundled kernel: tilegrid run NAME --grid --inputs --check --stats --output."""
    import json
    rng = np.random.default_rng(3)
    A, B = randn(rng, 8, 16), randn(rng, 16, 12)
    inputs, out_path, stats_path = tmp_path / "in.npz", tmp_path / "out.npz", tmp_path / "stats.json"
    np.savez(inputs, A=A, B=B)
    rc, out, err = cli(capsys, "run", "matmul_systolic", "--grid", "4x2", "--inputs", inputs, "--check",
                       "--stats", stats_path, "--output", out_path)
    assert rc == 0, out + err
    assert f"bit-exact: C matches the ordered reference in all {8 * 12} values" in out
    assert "float64: C within the f32 error bound" in out
    assert "MISMATCH" not in out
    with np.load(out_path) as z:
        assert z.files == ["C"]
        assert np.array_equal(bits(z["C"]), bits(ordered_matmul(A, B)))
    stats = json.loads(stats_path.read_text())
    assert stats["tiles"] == 8 and stats["cycles"] > 0


def test_cli_run_padded_inputs(tmp_path, capsys):
    """A non-dividing GEMM from the command line: pad with pad_inputs, run, crop."""
    rng = np.random.default_rng(4)
    A, B = randn(rng, 10, 7), randn(rng, 7, 5)
    Ap, Bp = matmul_systolic_ref.pad_inputs(A, B, (4, 4))
    inputs, out_path = tmp_path / "in.npz", tmp_path / "out.npz"
    np.savez(inputs, A=Ap, B=Bp)
    rc, out, err = cli(capsys, "run", "matmul_systolic", "--grid", "4x4", "--inputs", inputs, "--check",
                       "--output", out_path)
    assert rc == 0, out + err
    assert "bit-exact: C matches the ordered reference in all 96 values" in out
    with np.load(out_path) as z:
        assert_bits_equal(z["C"][:10, :5], ordered_matmul(A, B))


def test_cli_lists_the_kernel(capsys):
    rc, out, err = cli(capsys, "kernels")
    assert rc == 0, err
    line = next(line for line in out.splitlines() if line.split()[0] == "matmul_systolic")
    assert "systolic" in line.lower() and line.rstrip().endswith("matmul_systolic.tg]")


def test_bundled_spec():
    spec = kernels.BUNDLED["matmul_systolic"]
    assert spec.ground_truth is ground_truth.matmul_systolic
    assert spec.interface() == ((("A", ("M", "K")), ("B", ("K", "N"))), (("C", ("M", "N")),))
    inputs = spec.make_inputs(np.random.default_rng(0), spec.demo_sizes)
    result = tilegrid.run_kernel("matmul_systolic", inputs, grid=(4, 4), check=True)
    assert result.check.ok, result.check.summary()
    truth, bound = spec.ground_truth(inputs, {})
    assert np.all(np.abs(result.outputs["C"] - truth["C"]) <= bound["C"])


# ------------------------------------------------ operands resident at their injecting tiles
RESIDENT_CASES = [((4, 4), (16, 32, 16)), ((3, 5), (17, 9, 11)), ((1, 1), (3, 4, 5)), ((6, 2), (14, 7, 30)),
                  ((4, 4), (64, 16, 40)), ((5, 3), (1, 1, 1))]


@pytest.mark.parametrize("grid,shape", RESIDENT_CASES,
                         ids=[f"{g[0]}x{g[1]}-{s[0]}x{s[1]}x{s[2]}" for g, s in RESIDENT_CASES])
def test_resident_kernel_is_bit_exact_and_within_bound(grid, shape):
    """Any M, K, N (M and N padded, K as it is; several slots a tile where M / H > W),
    square and oblong grids: the same bits as matmul_systolic's ordered product."""
    M, K, N = shape
    rng = np.random.default_rng(M * 100 + K * 10 + N)
    A, B = randn(rng, M, K), randn(rng, K, N)
    C, result = matmul_systolic_ref.run_resident(A, B, grid, check=True)
    assert result.check.ok, result.check.summary()
    check_both_ways(C, A, B)


def test_resident_layout_puts_each_row_and_column_on_its_injector():
    """The rule of the kernel's header, checked on the arrays: A row ty*mb + fi in tile
    ((fi + ty) % W, ty)'s block of Ar, B column tx*nb + fj in tile (tx, (fj + tx + 1) % H)'s
    block of Bc, and from_resident undoes it."""
    W, H, M, K, N = 3, 2, 10, 5, 9            # M padded to 10 (mb = 5 > W: two slots), N to 9
    rng = np.random.default_rng(0)
    A, B = randn(rng, M - 1, K), randn(rng, K, N - 1)
    inputs, sizes = matmul_systolic_ref.resident_layout(A, B, (W, H))
    assert sizes == {"M": 10, "N": 9}
    Ar, Bc = inputs["Ar"], inputs["Bc"]
    assert Ar.shape == (H * 2, W * K) and Bc.shape == (H * K, W * 2)
    mb, nb = 5, 3
    for ty in range(H):
        for fi in range(mb):
            x, slot = (fi + ty) % W, fi // W
            got = Ar[ty * 2 + slot, x * K:(x + 1) * K]
            want = A[ty * mb + fi] if ty * mb + fi < M - 1 else np.zeros(K, np.float32)
            assert np.array_equal(bits(got), bits(want)), (ty, fi)
    for tx in range(W):
        for fj in range(nb):
            y, slot = (fj + tx + 1) % H, fj // H
            got = Bc[y * K:(y + 1) * K, tx * 2 + slot]
            want = B[:, tx * nb + fj] if tx * nb + fj < N - 1 else np.zeros(K, np.float32)
            assert np.array_equal(bits(got), bits(want)), (tx, fj)
    A2, B2 = matmul_systolic_ref.from_resident(Ar, Bc, 10, 9, (W, H))
    assert np.array_equal(bits(A2[:M - 1]), bits(A)) and np.array_equal(bits(B2[:, :N - 1]), bits(B))


@pytest.mark.parametrize("grid,n", [((16, 16), 256), ((32, 32), 512)])
def test_resident_kernel_is_within_5_percent_of_scalesim(grid, n):
    """The issue's check, on the fast model's cycles (deterministic): SCALE-Sim's
    output-stationary count ceil(M/R) ceil(N/C) (K + R + C - 2) - 1 for the same array and
    GEMM, with both operands already beside the array as in SCALE-Sim."""
    W, H = grid
    rng = np.random.default_rng(n)
    A, B = randn(rng, n, n), randn(rng, n, n)
    C, result = matmul_systolic_ref.run_resident(A, B, grid)
    scalesim = -(-n // H) * -(-n // W) * (n + H + W - 2) - 1
    assert abs(result.stats.cycles / scalesim - 1) <= 0.05, (result.stats.cycles, scalesim)
    assert result.stats.sram_peak_bytes <= SRAM_BYTES
    assert np.array_equal(bits(C), bits(ordered_matmul(A, B)))


def test_resident_kernel_errors_are_messages(capsys, tmp_path):
    A, B = np.ones((8, 4), np.float32), np.ones((4, 8), np.float32)
    inputs, sizes = matmul_systolic_ref.resident_layout(A, B, (4, 4))
    np.savez(tmp_path / "in.npz", **inputs)
    rc, _, err = cli(capsys, "run", "matmul_systolic_resident", "--inputs", tmp_path / "in.npz", "--grid", "4x4")
    assert rc == 2 and "parameter 'M' has no default" in err
    rc, _, err = cli(capsys, "run", "matmul_systolic_resident", "--inputs", tmp_path / "in.npz", "--grid", "4x4",
                     "--param", "M=64", "--param", "N=8")
    assert rc == 2 and "Ar holds fewer A rows per tile row than M / H" in err
    rc, _, err = cli(capsys, "run", "matmul_systolic_resident", "--inputs", tmp_path / "in.npz", "--grid", "2x4",
                     "--param", "M=8", "--param", "N=8")
    assert rc == 2 and "error:" in err and "Traceback" not in err
    rc, out, err = cli(capsys, "run", "matmul_systolic_resident", "--inputs", tmp_path / "in.npz", "--grid", "4x4",
                       "--param", "M=8", "--param", "N=8", "--check")
    assert rc == 0 and "bit-exact" in out, err
