"""Every reproducer in ../shared/fuzz-repro/r*.tg (the DSL fuzzing campaign
that found them) now gets one clear message and exit 2, or runs: never a
traceback, a numpy warning, a hang or a silently wrong result.

The saved-program reproducers (t*.tgp) are covered by test_program_files.py.
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from tilegrid.cli import main

REPRO = Path(__file__).resolve().parents[1].parent / "shared" / "fuzz-repro"
pytestmark = pytest.mark.skipif(not REPRO.is_dir(), reason="../shared/fuzz-repro is not beside the checkout")

INT32 = "outside the tiles' 32-bit registers (-2147483648..2147483647)"
# file -> (grid, inputs, the message's distinctive part); None: it must run
CASES = {
    "r01_int32_loop_bound.tg": ("2x2", "a16.npz", "loop bounds 0 .. 3000000000 do not fit the tiles' 32-bit"),
    "r01b_int32_index_multiplier.tg": ("2x2", "a16.npz", f"(tx * 3000000000) can reach 3000000000, which is {INT32}"),
    "r01c_int32_compare_constant.tg": ("2x2", "a16.npz", f"the constant 1000000000000 is {INT32}"),
    "r02_lcm_inf.tg": ("2x2", "a16.npz", "lcm() takes integers, got inf"),
    "r03_lcm_nan.tg": ("2x2", "a16.npz", "lcm() takes integers, got nan"),
    "r04_huge_int_literal.tg": ("2x2", "a16.npz", "(401 digits) is too large: compile-time integers are 64-bit"),
    "r05_deep_unary_minus.tg": ("2x2", "a16.npz", None),
    "r05b_flat_sum_1000_terms.tg": ("2x2", "a16.npz", None),
    "r05c_nested_if_300.tg": ("2x2", "a16.npz", None),
    "r06_f32_overflow_warning.tg": ("2x2", "a16.npz", None),
    "r06b_sqrt_negative_warning.tg": ("2x2", "a16.npz", None),
    "r07_import_binary_file.tg": ("2x2", "a16.npz", "cannot import '/bin/ls': kernel files end in .tg"),
    "r08_check_edited_matmul_renamed_input.tg": ("2x2", "bx16.npz", "takes and gives other tensors: A[16, 16], Bx[16, 16] -> C[16, 16]; the bundled matmul has A[M, K], B[K, N] -> C[M, N]"),
    "r08b_check_gemv_renamed_output.tg": ("2x2", "gemv16.npz", "takes and gives other tensors: A[16, 16], x[16] -> z[16]; the bundled gemv has A[M, N], x[N] -> y[M]"),
    "r08c_check_kernel_named_softmax.tg": ("2x2", "a16.npz", "takes and gives other tensors: A[16, 16] -> Y[16, 16]; the bundled softmax has X[R, C] -> Y[R, C]"),
    "r14_import_dev_zero.tg": ("2x2", "a16.npz", "cannot import '/dev/zero': kernel files end in .tg"),
    "r15_long_loop.tg": ("2x2", "a16.npz", "used its instruction budget of 200000 (--max-instructions)"),
    "r16_int32_wrap_silent.tg": ("4x1", "r16_in.npz", f"((tx * 65536) * 65536) can reach 12884901888, which is {INT32}"),
    "r16b_int32_wrap_fault.tg": ("2x2", "a16.npz", f"((tx * 65536) * 32768) can reach 2147483648, which is {INT32}"),
    "r25_20000_statements.tg": ("2x2", "a16.npz", "the kernel elaborates to more than 3072 operations"),
    "r27_import_etc_passwd.tg": ("2x2", "a16.npz", "cannot import '/etc/passwd': kernel files end in .tg"),
}


def test_every_reproducer_has_a_case():
    assert sorted(p.name for p in REPRO.glob("r*.tg")) == sorted(CASES)


def run_cli(capsys, *argv):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]
    return rc, out, err


@pytest.mark.parametrize("name", sorted(CASES))
def test_reproducer(name, tmp_path, capsys):
    grid, inputs, message = CASES[name]
    # Run from a copy: the file names in messages are then relative and exact.
    kernel = tmp_path / name
    shutil.copy(REPRO / name, kernel)
    argv = ["run", kernel, "--grid", grid, "--inputs", REPRO / inputs, "--output", tmp_path / "out.npz",
            "--max-instructions", "200000"]
    if name.startswith("r08"):
        argv.append("--check")
    rc, out, err = run_cli(capsys, *argv)
    assert "Traceback" not in err and "Warning" not in err, err
    if message is None:
        assert rc == 0, err
        assert err == ""
        return
    assert rc == 2, (out, err)
    first = err.splitlines()[0]
    assert first.startswith(f"{kernel}:") or first.startswith("tilegrid: error: "), first
    assert message in err, err


def test_r06_overflow_is_ieee_inf_and_r06b_is_nan(tmp_path, capsys):
    """Folding follows f32 like the machine: 1e39 is inf, sqrt(-1) is NaN."""
    a = np.load(REPRO / "a16.npz")["A"]
    with np.errstate(all="ignore"):  # numpy's own f32 conversion and sqrt, as IEEE defines them
        factors = (("r06_f32_overflow_warning.tg", np.float32(1e39)),
                   ("r06b_sqrt_negative_warning.tg", np.sqrt(np.float32(-1.0))))
    for name, factor in factors:
        out = tmp_path / f"{name}.npz"
        rc, _, err = run_cli(capsys, "run", REPRO / name, "--grid", "2x2", "--inputs", REPRO / "a16.npz",
                             "--output", out)
        assert rc == 0, err
        got = np.load(out)["C"]
        with np.errstate(all="ignore"):
            want = a * factor
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_r05b_long_sum_adds_left_to_right(tmp_path, capsys):
    """A 1000-term sum compiles and adds in source order, one rounding per add."""
    a = np.load(REPRO / "a16.npz")["A"]
    source = (REPRO / "r05b_flat_sum_1000_terms.tg").read_text()
    terms = source.split("C = A", 1)[1].split("}")[0].count("+ 1.0")
    want = a.copy()
    for _ in range(terms):
        want = want + np.float32(1.0)
    out = tmp_path / "out.npz"
    rc, _, err = run_cli(capsys, "run", REPRO / "r05b_flat_sum_1000_terms.tg", "--grid", "2x2",
                         "--inputs", REPRO / "a16.npz", "--output", out)
    assert rc == 0, err
    assert terms == 1000
    got = np.load(out)["C"]
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    assert np.allclose(got.astype(np.float64), a.astype(np.float64) + 1000.0, rtol=1e-5)
