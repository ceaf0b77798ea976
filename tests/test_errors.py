"""Negative tests: every user error gives one clear message and, from the CLI,
exit status 2 with no Python traceback.

Expected messages, line/column numbers and byte counts are written out here
or computed from the kernel sources and shapes in the test; nothing is taken
from the code under test.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tilegrid import compiler
from tilegrid.compiler import CompileError
from tilegrid.emulator import MachineConfig
from tilegrid.cli import main

REPO = Path(__file__).resolve().parents[1]
MATMUL_TG = REPO / "kernels" / "matmul.tg"
QUEUE_DEPTH = 8  # MachineConfig's default, restated (the brief: "8 wavelets")


# ----------------------------------------------------------------- helpers
def cli(capsys, *argv):
    """Run the CLI in-process: (exit status, stdout, stderr)."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse errors exit through parser.exit()
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_user_error(rc, out, err):
    """Exit 2, a message on stderr, nothing on stdout, no traceback."""
    assert rc == 2, f"exit status {rc}, stderr: {err!r}"
    assert err.strip(), "no message on stderr"
    assert "Traceback" not in err
    assert out == ""


def npz(tmp_path, name, **arrays) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def f32(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def compile_error(source: str, shapes: dict, params: dict | None = None, grid=(2, 2)) -> CompileError:
    cfg = MachineConfig(width=grid[0], height=grid[1])
    with pytest.raises(CompileError) as info:
        compiler.compile_source(source, "bad.tg", cfg, shapes, params or {})
    return info.value


def kernel_src(body: str, params="A: f32[M, N] block(y, x)", out="C: f32[M, N] block(y, x)") -> str:
    """A kernel whose body starts on line 3, indented by 4 spaces."""
    lines = "\n".join("    " + line for line in textwrap.dedent(body).strip().splitlines())
    return f"kernel k({params}) -> {out}\n{{\n{lines}\n}}\n"


def parse_diagnostic(text: str):
    """'path:line:col: error: msg' + source line + caret line -> parts."""
    lines = text.split("\n")
    head = lines[0]
    path, line, col, rest = head.split(":", 3)
    assert rest.startswith(" error: "), head
    return path, int(line), int(col), rest[len(" error: "):], lines[1:]


def caret_column(diag_lines) -> int:
    """1-based column the caret points at, relative to the quoted source line."""
    src, caret = diag_lines[0], diag_lines[1]
    # Both lines carry the same fixed indent; measure the caret against it.
    prefix = "    "
    assert src.startswith(prefix) and caret.startswith(prefix), diag_lines
    return caret.index("^") - len(prefix) + 1


def matmul_line_col(needle: str, offset: int = 0) -> tuple[int, int]:
    """(line, column) of needle (+offset chars) in the bundled matmul.tg, 1-based."""
    for n, line in enumerate(MATMUL_TG.read_text().splitlines(), start=1):
        if needle in line:
            return n, line.index(needle) + offset + 1
    raise AssertionError(f"{needle!r} not in matmul.tg")


# ----------------------------------------------------------- syntax errors
@pytest.mark.parametrize("bad_line, bad_token, message", [
    ("C = A +* 2", "*", "unexpected '*'"),
    ("C = = A", "= A", "unexpected '='"),
    ("C = A $ 2", "$", "unexpected character '$'"),
    ("C = A[0 1]", "1", "unexpected '1'"),
])
def test_syntax_error_position_source_line_and_caret(bad_line, bad_token, message):
    # The bad statement sits on line 4 (a good one on line 3) so line counting is tested too.
    source = kernel_src(f"C = A\n{bad_line}")
    err = compile_error(source, {"A": (8, 8)})
    path, line, col, msg, rest = parse_diagnostic(str(err))
    want_col = 4 + bad_line.index(bad_token) + 1  # 4 spaces of indent in kernel_src
    assert (path, line, col) == ("bad.tg", 4, want_col)
    assert msg.startswith(message), msg
    assert rest[0] == "    " + "    " + bad_line  # the offending source line, quoted
    assert caret_column(rest) == want_col
    assert rest[1].strip().startswith("^")


def test_syntax_error_lists_what_was_expected():
    err = compile_error(kernel_src("C = A +* 2"), {"A": (8, 8)})
    msg = parse_diagnostic(str(err))[3]
    assert "expected" in msg and "a name" in msg and "a number" in msg, msg


def test_syntax_error_in_kernel_header():
    source = "kernel k(A: f32[M, N] block(y, x)) -> C f32[M, N] block(y, x)\n{\n    C = A\n}\n"
    err = compile_error(source, {"A": (8, 8)})
    path, line, col, msg, rest = parse_diagnostic(str(err))
    assert (line, col) == (1, source.index("f32[M, N] block(y, x)\n") + 1)
    assert msg.startswith("unexpected 'f32'"), msg
    assert caret_column(rest) == col


def test_unexpected_end_of_file_points_past_the_last_token():
    source = "kernel k(A: f32[M] block(x)) -> C: f32[M] block(x)\n{\n    C = A\n"  # no closing brace
    err = compile_error(source, {"A": (8,)})
    _, line, col, msg, _ = parse_diagnostic(str(err))
    assert msg.startswith("unexpected end of file")
    last_token_end = len("    C = A") + 1  # column just after 'A'
    assert line > 3 or col >= last_token_end, f"caret at {line}:{col}, under the last token"


# ------------------------------------------------------------ unknown names
def test_unknown_tensor_name_in_expression():
    source = kernel_src("C = A + Bogus")
    err = compile_error(source, {"A": (8, 8)})
    path, line, col, msg, rest = parse_diagnostic(str(err))
    assert (path, line, col) == ("bad.tg", 3, 4 + len("C = A + ") + 1)
    assert msg == "unknown name 'Bogus'"
    assert rest[1].strip() == "^" + "~" * (len("Bogus") - 1)  # underlines the whole name
    assert caret_column(rest) == col


def test_unknown_assignment_target():
    err = compile_error(kernel_src("C = A\nD = A"), {"A": (8, 8)})
    _, line, col, msg, _ = parse_diagnostic(str(err))
    assert (line, col) == (4, 5)
    assert msg == "unknown name 'D'"


def test_unknown_name_inside_loop_bound():
    err = compile_error(kernel_src("for i in 0 .. steps {\n    C = A\n}"), {"A": (8, 8)})
    _, line, col, msg, _ = parse_diagnostic(str(err))
    assert (line, col) == (3, 4 + len("for i in 0 .. ") + 1)
    assert msg == "unknown name 'steps'"


def test_unknown_function_with_number_argument():
    err = compile_error(kernel_src("C = foo(2)"), {"A": (8, 8)})
    _, line, col, msg, _ = parse_diagnostic(str(err))
    assert (line, col) == (3, 9)
    assert msg == "unknown function 'foo'"


def test_unknown_function_with_tensor_argument_names_the_function():
    err = compile_error(kernel_src("C = foo(A)"), {"A": (8, 8)})
    _, line, col, msg, _ = parse_diagnostic(str(err))
    assert msg == "unknown function 'foo'", msg
    assert (line, col) == (3, 9)


# ----------------------------------------------------------- shape errors
def test_inputs_disagree_on_a_size_symbol_cli(tmp_path, capsys):
    inputs = npz(tmp_path, "in.npz", A=f32(8, 16), B=f32(12, 8))
    rc, out, err = cli(capsys, "run", "matmul", "--grid", "2x2", "--inputs", inputs)
    assert_user_error(rc, out, err)
    path, line, col, msg, rest = parse_diagnostic(err.rstrip("\n"))
    assert Path(path).resolve() == MATMUL_TG
    # The K of B's declaration, "B: f32[K, N]".
    assert (line, col) == matmul_line_col("B: f32[K, N]", len("B: f32["))
    assert msg == "shape mismatch: 'B' dimension 0 is 12, but K = 16 (set by 'A' dimension 1)"
    assert caret_column(rest) == col


def test_assigning_a_tensor_of_the_wrong_shape():
    # A is 8x8 on 2x2 tiles: C's block is 4x4, t is 3x5.
    source = kernel_src("local t: f32[3, 5]\nC = t")
    err = compile_error(source, {"A": (8, 8)})
    _, line, col, msg, rest = parse_diagnostic(str(err))
    assert (line, col) == (4, 4 + len("C = ") + 1)
    assert msg == "shape mismatch: [3, 5] does not broadcast to [4, 4]"
    assert caret_column(rest) == col


def test_assigning_into_a_smaller_local():
    err = compile_error(kernel_src("local t: f32[2, 3]\nt = A"), {"A": (8, 8)})
    _, line, col, msg, _ = parse_diagnostic(str(err))
    assert (line, col) == (4, 9)
    assert msg == "shape mismatch: [4, 4] does not broadcast to [2, 3]"


def test_collective_into_target_of_other_shape():
    err = compile_error(kernel_src("local t: f32[4]\nt = shift(A, east)"), {"A": (8, 8)})
    _, line, col, msg, _ = parse_diagnostic(str(err))
    assert (line, col) == (4, 9)
    assert msg == "shape mismatch: shift() sends [4, 4] into a target of shape [4]"


def test_matmul_operator_with_mismatched_inner_sizes():
    source = kernel_src("local a: f32[4, 3]\nlocal b: f32[5, 4]\nlocal c: f32[4, 4]\nc = a @ b")
    err = compile_error(source, {"A": (8, 8)})
    _, line, col, msg, rest = parse_diagnostic(str(err))
    assert (line, col) == (6, 9)
    assert msg == "shape mismatch in '@': [4, 3] @ [5, 4] (inner sizes 3 and 5)"
    assert rest[1].strip() == "^~~~~"  # underlines "a @ b"


def test_matmul_accumulate_into_wrong_target():
    source = kernel_src("local a: f32[4, 3]\nlocal b: f32[3, 2]\nC += a @ b")
    err = compile_error(source, {"A": (8, 8)})
    _, line, _, msg, _ = parse_diagnostic(str(err))
    assert line == 5
    assert msg == "shape mismatch: [4, 3] @ [3, 2] gives [4, 2], the target is [4, 4]"


def test_param_contradicts_input_shape(tmp_path, capsys):
    inputs = npz(tmp_path, "in.npz", A=f32(8, 8), B=f32(8, 8))
    rc, out, err = cli(capsys, "run", "matmul", "--grid", "2x2", "--inputs", inputs, "--param", "M=4")
    assert_user_error(rc, out, err)
    assert "shape mismatch: 'A' dimension 0 is 8, but M = 4 (set by --param)" in err


# ------------------------------------------------------ grid divisibility
def test_grid_does_not_divide_a_shape(tmp_path, capsys):
    # matmul M = 10 on a 2x3 grid: A's rows are split over H = 3 tile rows.
    inputs = npz(tmp_path, "in.npz", A=f32(10, 12), B=f32(12, 6))
    rc, out, err = cli(capsys, "run", "matmul", "--grid", "2x3", "--inputs", inputs)
    assert_user_error(rc, out, err)
    _, line, col, msg, rest = parse_diagnostic(err.rstrip("\n"))
    assert (line, col) == matmul_line_col("A: f32[M, K]", len("A: f32["))
    assert msg == ("'A' dimension 0 has size 10, which its distribution splits over H = 3 tile rows: "
                   "it must be divisible by 3")
    assert caret_column(rest) == col


def test_grid_columns_do_not_divide_a_shape():
    # gemv: x has N = 10 entries split over W = 4 tile columns.
    source = (REPO / "kernels" / "gemv.tg").read_text()
    cfg = MachineConfig(width=4, height=2)
    with pytest.raises(CompileError) as info:
        compiler.compile_source(source, "gemv.tg", cfg, {"A": (8, 10), "x": (10,)}, {})
    msg = parse_diagnostic(str(info.value))[3]
    assert msg == ("'A' dimension 1 has size 10, which its distribution splits over W = 4 tile columns: "
                   "it must be divisible by 4")


def test_matmul_require_k_multiple_of_lcm():
    # In the bundled matmul, K is split over W (in A) and over H (in B), so the
    # divisibility checks already imply K % lcm(W, H) == 0. Leave B's K unsplit
    # to reach the kernel's own `require` line.
    original = MATMUL_TG.read_text()
    source = original.replace("B: f32[K, N] block(y, x)", "B: f32[K, N] block(_, x)")
    assert source != original
    cfg = MachineConfig(width=2, height=3)  # lcm = 6, K = 8
    with pytest.raises(CompileError) as info:
        compiler.compile_source(source, "mm.tg", cfg, {"A": (6, 8), "B": (8, 4)}, {})
    _, line, col, msg, rest = parse_diagnostic(str(info.value))
    assert (line, col) == matmul_line_col("require K % P == 0")
    assert msg == "matmul needs K to be a multiple of lcm(W, H) (K = 8, P = 6)"
    assert rest[0].strip().startswith("require K % P == 0")


def test_bundled_matmul_k_not_divisible_on_grid(tmp_path, capsys):
    # The same K = 8 on 2x3 with the bundled kernel: B's K is split over 3 tile rows.
    inputs = npz(tmp_path, "in.npz", A=f32(6, 8), B=f32(8, 4))
    rc, out, err = cli(capsys, "run", "matmul", "--grid", "2x3", "--inputs", inputs)
    assert_user_error(rc, out, err)
    assert ("'B' dimension 0 has size 8, which its distribution splits over H = 3 tile rows: "
            "it must be divisible by 3") in err


# ------------------------------------------------------------ SRAM overflow
def test_sram_overflow_names_tile_buffer_and_bytes(capsys):
    rc, out, err = cli(capsys, "compile", "matmul", "--grid", "1x1",
                       "--param", "M=256", "--param", "K=256", "--param", "N=256")
    assert_user_error(rc, out, err)
    a_bytes = 256 * 256 * 4
    _, line, col, msg, rest = parse_diagnostic(err.rstrip("\n"))
    assert msg.startswith("SRAM overflow on tile (0, 0)"), msg
    assert f"buffer 'A' (f32[256x256], {a_bytes} bytes) does not fit" in msg
    assert f"a tile has {48 * 1024}" in msg
    # The caret marks A's declaration.
    assert (line, col) == matmul_line_col("A: f32[M, K]")
    assert caret_column(rest) == col


def test_sram_overflow_with_small_sram_option(tmp_path, capsys):
    inputs = npz(tmp_path, "in.npz", A=f32(8, 8), B=f32(8, 8))
    rc, out, err = cli(capsys, "run", "matmul", "--grid", "2x2", "--inputs", inputs, "--sram-bytes", "100")
    assert_user_error(rc, out, err)
    assert "SRAM overflow on tile (0, 0)" in err
    assert "a tile has 100" in err
    assert "'A' 64 B" in err  # 4x4 f32 block = 64 bytes, among the largest buffers


# ------------------------------------------------------------- colors
def test_too_many_colors(capsys):
    args = ("compile", "matmul", "--grid", "2x2", "--param", "M=8", "--param", "K=8", "--param", "N=8")
    rc, out, err = cli(capsys, *args, "--colors", "1")
    assert_user_error(rc, out, err)
    _, line, col, msg, _ = parse_diagnostic(err.rstrip("\n"))
    assert msg == "too many colors: the kernel needs 2 (row_bcast, col_bcast) but the machine has 1"
    # Points at the broadcast that needs the second color.
    assert (line, col) == matmul_line_col("b = broadcast_col")
    # Control: two colors are enough.
    rc, out, err = cli(capsys, *args, "--colors", "2", "--emit", "routes")
    assert rc == 0, err


# ---------------------------------------------------------------- deadlock
# Hand-built ISA programs run in a child process with a timeout, so a hang in
# deadlock detection fails the test instead of hanging the suite.
ISA_SCRIPT = r"""
import json, sys, time
import numpy as np
from tilegrid import emulator
from tilegrid.emulator import CodeRegion, Emulator, MachineConfig, Program
from tilegrid.emulator.isa import HALT, PORT_E, PORT_RAMP, PORT_W, RECV, SEND, descriptor, instr

def east_west_routes():
    r = np.zeros((2, 1, 5), np.uint8)
    r[0, 0, PORT_RAMP] = 1 << PORT_E; r[1, 0, PORT_W] = 1 << PORT_RAMP   # (0,0) -> (1,0)
    r[1, 0, PORT_RAMP] = 1 << PORT_W; r[0, 0, PORT_E] = 1 << PORT_RAMP   # (1,0) -> (0,0)
    return r

def program(code, n, regions, depth=8):
    cfg = MachineConfig(width=2, height=1, queue_depth=depth)
    return Program(cfg, np.array(code, np.int32), np.array([descriptor(0, [(n, 1)])], np.int32),
                   np.zeros(1, np.float32), regions, east_west_routes(), n)

def attempt(prog, data=None):
    emu = Emulator(prog)
    if data is not None:
        emu.state.mem[0, :len(data)] = data
    t0 = time.perf_counter()
    try:
        stats = emu.run()
    except emulator.DeadlockError as exc:
        return {"error": type(exc).__name__, "message": str(exc), "seconds": time.perf_counter() - t0}
    return {"error": None, "undelivered": stats.undelivered_wavelets,
            "tile1": emu.state.mem[1].tolist(), "seconds": time.perf_counter() - t0}

both = [CodeRegion("both", 0, 2, 0, 0, 2, 1)]
split = [CodeRegion("west", 0, 2, 0, 0, 1, 1), CodeRegion("east", 2, 4, 1, 0, 2, 1)]
res = {
    # Both tiles RECV first; nobody sends.
    "both_recv": attempt(program([instr(RECV, 0, 0), instr(HALT)], 4, both)),
    # (0,0) sends 20 wavelets to (1,0), which halts without receiving; depth 8.
    "overfill": attempt(program([instr(SEND, 0, 0), instr(HALT), instr(HALT), instr(HALT)], 20, split)),
    # Control: the same program with a queue deep enough for all 20.
    "overfill_deep": attempt(program([instr(SEND, 0, 0), instr(HALT), instr(HALT), instr(HALT)], 20, split,
                                     depth=32)),
    # Control: (1,0) receives what (0,0) sends, over the same routes.
    "matched": attempt(program([instr(SEND, 0, 0), instr(HALT), instr(RECV, 0, 0), instr(HALT)], 20, split),
                       data=np.arange(1, 21, dtype=np.float32)),
}
print(json.dumps(res))
"""


@pytest.fixture(scope="module")
def isa_runs():
    proc = subprocess.run([sys.executable, "-c", ISA_SCRIPT], capture_output=True, text=True,
                          timeout=180, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_isa_deadlock_two_tiles_receive_first(isa_runs):
    r = isa_runs["both_recv"]
    assert r["error"] == "DeadlockError"
    lines = r["message"].splitlines()
    assert lines[0] == "deadlock: 2 tiles are blocked and no wavelet can move"
    for tile in ("(0,0)", "(1,0)"):
        line = next((ln for ln in lines if ln.strip().startswith(f"tile {tile}")), None)
        assert line is not None, r["message"]
        assert "waits to receive 4 more wavelets on color 0 (0 queued)" in line
        assert "pc 0: recv" in line
    assert r["seconds"] < 30


def test_isa_deadlock_sender_overfills_queue(isa_runs):
    r = isa_runs["overfill"]
    assert r["error"] == "DeadlockError"
    lines = r["message"].splitlines()
    assert lines[0] == "deadlock: 1 tiles are blocked and no wavelet can move"
    blocked = [ln.strip() for ln in lines if ln.strip().startswith("tile ")]
    assert len(blocked) == 1 and blocked[0].startswith("tile (0,0) ")
    # 20 to send, the receiver's queue takes QUEUE_DEPTH and nobody drains it.
    assert f"waits to send {20 - QUEUE_DEPTH} more wavelets on color 0" in blocked[0]
    assert f"(1,0): {QUEUE_DEPTH}/{QUEUE_DEPTH}" in blocked[0]
    assert "pc 0: send" in blocked[0]
    assert "1 tiles have halted" in r["message"]
    assert r["seconds"] < 30


def test_isa_controls_without_deadlock(isa_runs):
    deep = isa_runs["overfill_deep"]
    assert deep["error"] is None and deep["undelivered"] == 20
    matched = isa_runs["matched"]
    assert matched["error"] is None and matched["undelivered"] == 0
    assert matched["tile1"][:20] == list(range(1, 21))


DEADLOCK_TG = """\
# Only tile column 0 takes part in the shift: its east neighbour never receives.
kernel lonely_shift(A: f32[M, N] block(y, x)) -> C: f32[M, N] block(y, x)
{
    C = A
    if tx == 0 {
        C = shift(A, east)
    }
}
"""


def test_dsl_deadlock_cli_subprocess(tmp_path):
    kernel = tmp_path / "lonely.tg"
    kernel.write_text(DEADLOCK_TG)
    # 2x1 grid, A is 4x16: each tile's block is 4x8 = 32 wavelets > queue depth 8.
    inputs = npz(tmp_path, "in.npz", A=f32(4, 16))
    proc = subprocess.run([sys.executable, "-m", "tilegrid.cli", "run", str(kernel), "--grid", "2x1",
                           "--inputs", str(inputs)], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[0] == "tilegrid: error: deadlock: 1 tiles are blocked and no wavelet can move"
    assert any(ln.strip().startswith(f"tile (0,0) waits to send {32 - QUEUE_DEPTH} more wavelets")
               and f"(1,0): {QUEUE_DEPTH}/{QUEUE_DEPTH}" in ln for ln in lines), proc.stderr
    assert "1 tiles have halted" in proc.stderr


def test_dsl_lonely_shift_fits_in_queue_is_not_a_deadlock(tmp_path, capsys):
    # Control for the test above: the same kernel runs when the data fits the
    # queue (2x2 block = 4 wavelets) or the queue is deep enough (32).
    kernel = tmp_path / "lonely.tg"
    kernel.write_text(DEADLOCK_TG)
    small = npz(tmp_path, "small.npz", A=f32(2, 4))
    rc, out, err = cli(capsys, "run", kernel, "--grid", "2x1", "--inputs", small)
    assert rc == 0, err
    big = npz(tmp_path, "big.npz", A=f32(4, 16))
    rc, out, err = cli(capsys, "run", kernel, "--grid", "2x1", "--inputs", big, "--queue-depth", "32")
    assert rc == 0, err


# ------------------------------------------------------------------ bad npz
def test_inputs_file_missing(tmp_path, capsys):
    missing = tmp_path / "nope.npz"
    rc, out, err = cli(capsys, "run", "matmul", "--grid", "2x2", "--inputs", missing)
    assert_user_error(rc, out, err)
    assert err == f"tilegrid: error: inputs file '{missing}' does not exist\n"


def test_inputs_file_is_text(tmp_path, capsys):
    text = tmp_path / "inputs.npz"
    text.write_text("A = 1, 2, 3\n")
    rc, out, err = cli(capsys, "run", "matmul", "--grid", "2x2", "--inputs", text)
    assert_user_error(rc, out, err)
    assert err.startswith(f"tilegrid: error: '{text}' is not a readable .npz file")


def test_inputs_file_is_text_message_does_not_advise_unpickling(tmp_path, capsys):
    text = tmp_path / "inputs.npz"
    text.write_text("A = 1, 2, 3\n")
    rc, out, err = cli(capsys, "run", "matmul", "--grid", "2x2", "--inputs", text)
    assert rc == 2
    assert "pickle" not in err.lower(), err


def test_inputs_file_is_corrupt_zip(tmp_path, capsys):
    bad = tmp_path / "inputs.npz"
    bad.write_bytes(b"PK\x03\x04" + b"not really a zip" * 8)
    rc, out, err = cli(capsys, "run", "matmul", "--grid", "2x2", "--inputs", bad)
    assert_user_error(rc, out, err)
    assert err.startswith(f"tilegrid: error: '{bad}' is not a readable .npz file")


def test_inputs_file_is_npy(tmp_path, capsys):
    npy = tmp_path / "A.npy"
    np.save(npy, f32(8, 8))
    rc, out, err = cli(capsys, "run", "matmul", "--grid", "2x2", "--inputs", npy)
    assert_user_error(rc, out, err)
    assert "holds one array" in err and "np.savez" in err


def test_inputs_missing_key_gemv(tmp_path, capsys):
    inputs = npz(tmp_path, "in.npz", A=f32(8, 8))
    rc, out, err = cli(capsys, "run", "gemv", "--grid", "2x2", "--inputs", inputs)
    assert_user_error(rc, out, err)
    assert err == "tilegrid: error: missing input 'x' (kernel gemv takes A, x)\n"


def test_inputs_missing_key_that_defines_a_size(tmp_path, capsys):
    inputs = npz(tmp_path, "in.npz", A=f32(8, 8))
    rc, out, err = cli(capsys, "run", "matmul", "--grid", "2x2", "--inputs", inputs)
    assert_user_error(rc, out, err)
    _, line, col, msg, _ = parse_diagnostic(err.rstrip("\n"))
    assert msg.startswith("size 'N' is unknown: give input 'B'"), msg
    assert (line, col) == matmul_line_col("B: f32[K, N]", len("B: f32[K, "))


def test_inputs_unknown_extra_key(tmp_path, capsys):
    inputs = npz(tmp_path, "in.npz", A=f32(8, 8), B=f32(8, 8), Z=f32(3))
    rc, out, err = cli(capsys, "run", "matmul", "--grid", "2x2", "--inputs", inputs)
    assert_user_error(rc, out, err)
    assert "kernel 'matmul' has no input named 'Z' (inputs: A, B)" in err


def test_inputs_wrong_dtype(tmp_path, capsys):
    inputs = npz(tmp_path, "in.npz", A=np.zeros((8, 8)), B=f32(8, 8))
    rc, out, err = cli(capsys, "run", "matmul", "--grid", "2x2", "--inputs", inputs)
    assert_user_error(rc, out, err)
    assert err == ("tilegrid: error: input 'A' has dtype float64; kernels take float32 "
                   "(convert with .astype(np.float32))\n")


def test_inputs_wrong_rank(tmp_path, capsys):
    inputs = npz(tmp_path, "in.npz", A=f32(8, 8, 2), B=f32(8, 8))
    rc, out, err = cli(capsys, "run", "matmul", "--grid", "2x2", "--inputs", inputs)
    assert_user_error(rc, out, err)
    _, line, col, msg, _ = parse_diagnostic(err.rstrip("\n"))
    assert msg == "input 'A' has 3 dimensions, the kernel declares 2"
    assert (line, col) == matmul_line_col("f32[M, K]")


def test_saved_program_run_with_inputs_of_other_shape(tmp_path, capsys):
    prog = tmp_path / "gemv.tgp"
    rc, out, err = cli(capsys, "compile", "gemv", "--grid", "2x2", "--param", "M=8", "--param", "N=8",
                       "-o", prog)
    assert rc == 0, err
    inputs = npz(tmp_path, "in.npz", A=f32(8, 16), x=f32(16))
    rc, out, err = cli(capsys, "run", prog, "--inputs", inputs)
    assert_user_error(rc, out, err)
    assert err == "tilegrid: error: input 'A' has shape (8, 16), the saved program was compiled for (8, 8)\n"


def test_saved_program_file_is_not_a_program(tmp_path, capsys):
    fake = tmp_path / "fake.tgp"
    fake.write_text("not a program\n")
    inputs = npz(tmp_path, "in.npz", A=f32(8, 8), x=f32(8))
    rc, out, err = cli(capsys, "run", fake, "--inputs", inputs)
    assert_user_error(rc, out, err)
    assert f"{fake}: cannot read program file" in err


# ------------------------------------------------------------- bad CLI args
@pytest.mark.parametrize("grid, message", [
    ("2by2", "grid must look like WxH (for example 4x4), got '2by2'"),
    ("4", "grid must look like WxH (for example 4x4), got '4'"),
    ("2x-1", "grid must look like WxH (for example 4x4), got '2x-1'"),
    ("0x2", "grid sizes must be at least 1, got '0x2'"),
])
def test_bad_grid(tmp_path, capsys, grid, message):
    inputs = npz(tmp_path, "in.npz", A=f32(8, 8), B=f32(8, 8))
    rc, out, err = cli(capsys, "run", "matmul", "--inputs", inputs, "--grid", grid)
    assert_user_error(rc, out, err)
    assert err == f"tilegrid: error: {message}\n"


@pytest.mark.parametrize("param, message", [
    ("M", "--param takes NAME=VALUE, got 'M'"),
    ("=8", "--param takes NAME=VALUE, got '=8'"),
    ("8M=8", "--param takes NAME=VALUE, got '8M=8'"),
    ("M=abc", "--param M: 'abc' is not a number"),
    ("M=8.5", "size 'M' must be an integer, got 8.5"),
])
def test_bad_param(tmp_path, capsys, param, message):
    inputs = npz(tmp_path, "in.npz", A=f32(8, 8), B=f32(8, 8))
    rc, out, err = cli(capsys, "run", "matmul", "--grid", "2x2", "--inputs", inputs, "--param", param)
    assert_user_error(rc, out, err)
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_unknown_param_name_is_rejected(tmp_path, capsys):
    inputs = npz(tmp_path, "in.npz", A=f32(8, 8), B=f32(8, 8))
    rc, out, err = cli(capsys, "run", "matmul", "--grid", "2x2", "--inputs", inputs, "--param", "Q=3")
    assert rc == 2, out
    assert "unknown parameter 'Q'" in err


def test_unknown_kernel_name(tmp_path, capsys):
    inputs = npz(tmp_path, "in.npz", A=f32(8, 8), B=f32(8, 8))
    rc, out, err = cli(capsys, "run", "matmulx", "--grid", "2x2", "--inputs", inputs)
    assert_user_error(rc, out, err)
    from tilegrid import kernels
    assert err == ("tilegrid: error: no kernel 'matmulx': not a file, nor a bundled kernel "
                   f"({', '.join(kernels.BUNDLED)})\n")


@pytest.mark.parametrize("option, value, name", [
    ("--colors", "0", "colors"), ("--queue-depth", "-1", "queue_depth"), ("--sram-bytes", "0", "sram_bytes"),
])
def test_bad_machine_option(capsys, option, value, name):
    rc, out, err = cli(capsys, "compile", "matmul", "--grid", "2x2", "--param", "M=8", "--param", "K=8",
                       "--param", "N=8", option, value)
    assert_user_error(rc, out, err)
    assert err == f"tilegrid: error: machine parameter {name} must be a positive integer, got {value}\n"


def test_argparse_errors_exit_2_with_one_line(capsys):
    rc, out, err = cli(capsys, "bogus")
    assert_user_error(rc, out, err)
    assert "invalid choice: 'bogus'" in err and len(err.strip().splitlines()) == 1
    rc, out, err = cli(capsys, "run", "matmul")
    assert_user_error(rc, out, err)
    assert "the following arguments are required: --inputs" in err
    rc, out, err = cli(capsys, "compile", "matmul", "--emit", "binary")
    assert_user_error(rc, out, err)
    assert "invalid choice: 'binary'" in err


def test_unwritable_output_path(tmp_path, capsys):
    inputs = npz(tmp_path, "in.npz", A=f32(8, 8), B=f32(8, 8))
    target = tmp_path / "no_such_dir" / "out.npz"
    rc, out, err = cli(capsys, "run", "matmul", "--grid", "2x2", "--inputs", inputs, "--output", target)
    assert rc == 2 and "Traceback" not in err
    assert err.startswith(f"tilegrid: error: cannot write '{target}'")


# ------------------------------------------------ real processes: exit 2
def test_console_script_bad_grid_subprocess(tmp_path):
    inputs = npz(tmp_path, "in.npz", A=f32(8, 8), B=f32(8, 8))
    proc = subprocess.run([sys.executable, "-m", "tilegrid.cli", "run", "matmul", "--grid", "two-by-two",
                           "--inputs", str(inputs)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr == "tilegrid: error: grid must look like WxH (for example 4x4), got 'two-by-two'\n"


def test_console_script_compile_error_subprocess(tmp_path):
    kernel = tmp_path / "typo.tg"
    kernel.write_text(kernel_src("C = A +* 2"))
    script = shutil.which("tilegrid") or str(Path(sys.executable).with_name("tilegrid"))
    proc = subprocess.run([script, "compile", str(kernel), "--grid", "2x2", "--param", "M=8",
                           "--param", "N=8"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    head, src, caret = proc.stderr.rstrip("\n").split("\n")
    assert head.startswith(f"{kernel}:3:{4 + len('C = A +') + 1}: error: unexpected '*'")
    assert src == "        C = A +* 2"
    assert caret == "    " + " " * (4 + len("C = A +")) + "^"


def test_a_loop_that_never_runs_is_not_checked_for_bounds(tmp_path):
    # for s in 1 .. H on one tile row has no iteration, so B[s +: 1] (a block
    # of one element) must not be reported out of bounds for an s that never
    # occurs; with three rows s = 1, 2 do occur, and that is an error.
    src = tmp_path / "k.tg"
    src.write_text("kernel k(A: f32[N] block(x)) -> B: f32[N] block(x) {\n"
                   "    B = A\n"
                   "    for s in 1 .. H { B[s +: 1] = A[s - 1 +: 1] }\n"
                   "}\n")
    import tilegrid
    prog = tilegrid.compile_kernel(str(src), grid=(2, 1), shapes={"A": (2,)}).program
    assert len(prog.code) > 0
    with pytest.raises(tilegrid.CompileError, match="out of bounds|outside"):
        tilegrid.compile_kernel(str(src), grid=(2, 3), shapes={"A": (2,)})
