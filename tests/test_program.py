"""The program format: shared code, save/load, verification, printing."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tilegrid
from tilegrid.emulator import isa
from conftest import assert_bits_equal, ordered_matmul
from tilegrid.emulator import Emulator, Program, ProgramError


def test_code_is_shared_not_copied_per_tile():
    small = tilegrid.compile_kernel("matmul", grid=(2, 2), shapes={"A": (64, 64), "B": (64, 64)}).program
    big = tilegrid.compile_kernel("matmul", grid=(64, 64), shapes={"A": (64, 64), "B": (64, 64)}).program
    assert len(big.regions) == 1
    # instruction count depends on the loop schedule, not on the number of tiles
    assert big.code.nbytes < 4 * small.code.nbytes
    assert big.code.nbytes < 64 * 64  # far less than one byte per tile
    emu = Emulator(big)
    # per-tile state is SRAM actually planned (a few words here), not a 48 KiB image per tile
    assert emu.state.mem.shape == (64 * 64, big.sram_words)
    assert big.sram_words < 100


def test_save_load_round_trip(tmp_path, rng):
    A = rng.standard_normal((12, 12)).astype(np.float32)
    B = rng.standard_normal((12, 6)).astype(np.float32)
    prog = tilegrid.compile_kernel("matmul", grid=(3, 2), shapes={"A": A.shape, "B": B.shape}).program
    path = tmp_path / "mm.tgp"
    prog.save(path)
    loaded = Program.load(path)
    assert np.array_equal(loaded.code, prog.code) and np.array_equal(loaded.routes, prog.routes)
    assert loaded.format_asm() == prog.format_asm()
    emu = Emulator(loaded)
    emu.load_inputs({"A": A, "B": B})
    emu.run()
    assert_bits_equal(emu.read_outputs()["C"], ordered_matmul(A, B))


def test_load_rejects_garbage(tmp_path):
    bad = tmp_path / "bad.tgp"
    bad.write_text("not a program")
    with pytest.raises(ProgramError, match="cannot read program file"):
        Program.load(bad)


def test_verify_rejects_bad_operands():
    prog = tilegrid.compile_kernel("gemv", grid=(2, 2), shapes={"A": (4, 4), "x": (4,)}).program
    prog.code = prog.code.copy()
    send = int(np.nonzero(np.isin(prog.code[:, 0], [isa.SEND, isa.SENDX]))[0][0])
    prog.code[send, 1] = 7  # color 7 does not exist in a 2-color program
    with pytest.raises(ProgramError, match="out of range"):
        prog.verify()


def test_printers_show_the_program():
    c = tilegrid.compile_kernel("matmul", grid=(2, 2), shapes={"A": (8, 8), "B": (8, 8)})
    assert "broadcast_row" in c.ir and "C += a @ b" in c.ir
    assert "send row_bcast" in c.lowered and "recv col_bcast" in c.lowered
    asm = c.program.format_asm()
    assert "mmac" in asm and "send" in asm and "halt" in asm
    routes = c.program.format_routes()
    assert "color 0 row_bcast" in routes and "RAMP->E" in routes
    plan = c.program.format_plan()
    assert "input  A" in plan and "local  a" in plan


def test_second_process_loads_compiled_code_from_cache():
    """cache=True: a new process runs the emulator without compiling the numba core again."""
    script = textwrap.dedent("""
        import numpy as np, tilegrid
        from tilegrid.emulator import scheduler
        A = np.ones((4, 4), np.float32)
        tilegrid.run_kernel("matmul", {"A": A, "B": A}, grid=(2, 2))
        # the entry point from Python; its cached code links in the phases it calls
        f = scheduler.run_rounds
        print(f.__name__, len(f.stats.cache_misses), len(f.stats.cache_hits))
    """)
    for _ in range(2):  # the first run may compile (fresh checkout); the second must not
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
    for line in out.stdout.strip().splitlines():
        name, misses, hits = line.split()
        assert misses == "0" and int(hits) >= 1, line
