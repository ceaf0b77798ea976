"""Kernel calls: imports, distribution checks, inserted redistributions, errors."""
import numpy as np
import pytest

from tilegrid.compiler import CompileError, compile_source
from conftest import assert_bits_equal, ordered_matmul
from tilegrid.emulator import MachineConfig, run_program


def compile_text(tmp_path, text, grid, shapes, name="prog.tg"):
    path = tmp_path / name
    path.write_text(text)
    return compile_source(text, str(path), MachineConfig(width=grid[0], height=grid[1]), shapes)


def test_call_with_redistribution_both_ways(tmp_path, rng):
    """matmul returns block(y, x); the target wants whole rows (all-gather), then back."""
    text = """
import matmul
kernel twice(A: f32[M, K] block(y, x), B: f32[K, N] block(y, x)) -> C: f32[M, N] block(y, x)
{
    tensor rows: f32[M, N] block(y, _)
    rows = matmul(A, B)
    C = rows
}
"""
    A = rng.standard_normal((8, 12)).astype(np.float32)
    B = rng.standard_normal((12, 8)).astype(np.float32)
    compiled = compile_text(tmp_path, text, (4, 2), {"A": A.shape, "B": B.shape})
    assert "broadcast_row" in compiled.ir  # the all-gather
    out, _ = run_program(compiled.program, {"A": A, "B": B})
    assert_bits_equal(out["C"], ordered_matmul(A, B))


def test_local_file_import_and_slices_of_whole_dims(tmp_path, rng):
    (tmp_path / "scale2.tg").write_text("""
kernel scale2(X: f32[R, C] block(y, _)) -> Y: f32[R, C] block(y, _)
{
    Y = X * 2.0
}
""")
    text = """
import "scale2.tg"
kernel halves(X: f32[R, C] block(y, _)) -> Y: f32[R, C] block(y, _)
{
    Y = X
    Y[:, 0 +: C / 2] = scale2(X[:, 0 +: C / 2])
}
"""
    X = rng.standard_normal((4, 6)).astype(np.float32)
    compiled = compile_text(tmp_path, text, (2, 2), {"X": X.shape})
    out, _ = run_program(compiled.program, {"X": X})
    want = X.copy()
    want[:, :3] *= np.float32(2.0)
    assert_bits_equal(out["Y"], want)


def test_transpose_across_the_mesh(tmp_path, rng):
    """block(y, x) -> block(x, y): tile (x, y) ends up with the block tile (y, x) had."""
    text = """
kernel t(A: f32[M, N] block(y, x)) -> B: f32[M, N] block(x, y)
{
    B = A
}
"""
    A = rng.standard_normal((6, 8)).astype(np.float32)
    compiled = compile_text(tmp_path, text, (2, 2), {"A": A.shape})
    out, _ = run_program(compiled.program, {"A": A})
    assert_bits_equal(out["B"], A)  # same global tensor, new layout
    io = {t.name: t for t in compiled.program.io}
    assert io["B"].axes == ("x", "y") and io["B"].block == (3, 4)


def test_mismatched_distribution_that_cannot_be_redistributed(tmp_path):
    """The caller holds A as block(y, _) (6 rows over 2 tile rows); the callee wants its
    rows split over the 4 tile columns, which 6 rows cannot be."""
    (tmp_path / "cols.tg").write_text(
        "kernel cols(X: f32[R, C] block(x, _)) -> Y: f32[R, C] block(x, _)\n{\n    Y = X\n}\n")
    text = ('import "cols.tg"\n'
            "kernel top(A: f32[M, N] block(y, _)) -> B: f32[M, N] block(y, _)\n{\n    B = cols(A)\n}\n")
    with pytest.raises(CompileError) as err:
        compile_text(tmp_path, text, (4, 2), {"A": (6, 4)})
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / 'prog.tg'}:4:9: error: in the call to 'cols': 'X' dimension 0 has size 6")
    assert "must be divisible by 4" in msg


def test_errors_inside_a_called_kernel_point_into_its_file(tmp_path):
    (tmp_path / "broken.tg").write_text("kernel broken(X: f32[R] block(x)) -> Y: f32[R] block(x)\n{\n    Y = X + Z\n}\n")
    text = 'import "broken.tg"\nkernel top(X: f32[R] block(x)) -> Y: f32[R] block(x)\n{\n    Y = broken(X)\n}\n'
    with pytest.raises(CompileError) as err:
        compile_text(tmp_path, text, (2, 1), {"X": (4,)})
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / 'broken.tg'}:3:13: error: unknown name 'Z'")
    assert f"called from {tmp_path / 'prog.tg'}:4:9" in msg


def test_call_argument_errors(tmp_path):
    base = "import matmul\nkernel k(A: f32[M, M] block(y, x)) -> C: f32[M, M] block(y, x)\n{\n    %s\n}\n"
    cases = {
        "C = matmul(A)": "kernel 'matmul' takes 2 tensors (A, B), got 1",
        "C = matmul(A, A, bogus = 1)": "kernel 'matmul' has no parameter 'bogus'",
        "local a: f32[2, 2]\n    C = matmul(a, A)": "a distributed tensor is needed here",
        "C = matmul(A[0:2, :], A)": "dimension 0 of 'A' is split over the grid",
    }
    for stmt, message in cases.items():
        with pytest.raises(CompileError, match=message.replace("(", r"\(").replace(")", r"\)")):
            compile_text(tmp_path, base % stmt, (2, 2), {"A": (4, 4)})


def test_unknown_import(tmp_path):
    with pytest.raises(CompileError, match="no bundled kernel 'nosuch' to import"):
        compile_text(tmp_path, "import nosuch\nkernel k(A: f32[4] block(x)) -> B: f32[4] block(x) { B = A }\n",
                     (1, 1), {"A": (4,)})


def test_an_int_parameter_takes_a_run_time_value(tmp_path, rng):
    """A loop variable passed to a called kernel's int parameter: each call picks its
    own row of the table, at run time (the cache position of a decode step)."""
    (tmp_path / "pick.tg").write_text("""
kernel pick(T: f32[P, C] replicated, at: int = 0) -> Y: f32[1, C] replicated
{
    Y = T[at +: 1, :] * 2.0
}
""")
    text = """
import "pick.tg"
kernel rows(T: f32[P, C] replicated) -> Y: f32[P, C] replicated
{
    for i in 0 .. P {
        Y[P - 1 - i +: 1, :] = pick(T, at = i)
    }
}
"""
    T = rng.standard_normal((5, 3)).astype(np.float32)
    out, _ = run_program(compile_text(tmp_path, text, (2, 1), {"T": T.shape}).program, {"T": T})
    assert_bits_equal(out["Y"], T[::-1] * np.float32(2.0))
    np.testing.assert_array_equal(out["Y"].astype(np.float64), T[::-1].astype(np.float64) * 2)
    # the slice is still checked over the loop's whole range
    with pytest.raises(CompileError, match="outside"):
        compile_text(tmp_path, text.replace("at = i", "at = i + 1"), (2, 1), {"T": T.shape})
    # only int parameters take run-time values
    (tmp_path / "scale.tg").write_text("kernel scale(T: f32[P, C] replicated, s: float = 1.0) -> Y: f32[P, C] "
                                       "replicated { Y = T * s }\n")
    bad = 'import "scale.tg"\nkernel k(T: f32[P, C] replicated) -> Y: f32[P, C] replicated\n' \
          '{\n    for i in 0 .. 2 {\n        Y = scale(T, s = i)\n    }\n}\n'
    with pytest.raises(CompileError, match="only int parameters take run-time values"):
        compile_text(tmp_path, bad, (1, 1), {"T": (2, 2)})


def test_an_all_reduce_in_a_loop_keeps_its_buffers_to_one_iteration(tmp_path):
    """Each iteration writes the reduction's accumulator whole before reading it, so
    the accumulator is dead after the reduction and a later statement of the same
    iteration (t) may take its words: the plan holds X, Y, s and one more block."""
    text = """
kernel k(X: f32[L, R, C] block(_, _, x)) -> Y: f32[L, R, C] block(_, _, x)
{
    tensor s: f32[R, C] block(_, x)
    tensor t: f32[R, C] block(_, x)
    for l in 0 .. L {
        s = reduce_row(X[l], add)
        t = s * 2.0
        Y[l] = t
    }
}
"""
    program = compile_text(tmp_path, text, (4, 1), {"X": (3, 64, 64)}).program
    where = {b.name: b for b in program.buffers}
    assert where["%acc0"].live[1] < where["t"].live[0]
    assert where["%acc0"].addr == where["t"].addr
    assert program.sram_words == 2 * 3 * 64 * 16 + 2 * 64 * 16
    X = np.random.default_rng(0).standard_normal((3, 64, 64)).astype(np.float32)
    out, _ = run_program(program, {"X": X})
    parts = [X[..., c * 16:(c + 1) * 16] for c in range(4)]
    want = ((parts[0] + parts[1]) + parts[2]) + parts[3]
    assert_bits_equal(out["Y"], np.concatenate([want] * 4, axis=-1) * np.float32(2.0))
    np.testing.assert_allclose(out["Y"].astype(np.float64)[..., :16],
                               2 * X.astype(np.float64).reshape(3, 64, 4, 16).sum(axis=2), rtol=1e-5, atol=1e-4)
