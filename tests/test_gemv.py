"""GEMV: y = A x, row-chain reduction across tile columns."""
import numpy as np
import pytest

import tilegrid
from conftest import assert_bits_equal, assert_close_f64, ordered_gemv

CASES = [((1, 1), (7, 5)), ((2, 2), (8, 6)), ((4, 2), (32, 48)), ((3, 2), (10, 9)),
         ((2, 5), (15, 8)), ((8, 8), (64, 128))]


@pytest.mark.parametrize("grid,shape", CASES)
def test_gemv_bit_exact(grid, shape, rng):
    M, N = shape
    A = rng.standard_normal((M, N)).astype(np.float32)
    x = rng.standard_normal(N).astype(np.float32)
    result = tilegrid.run_kernel("gemv", {"A": A, "x": x}, grid=grid, check=True)
    y = result.outputs["y"]
    assert_bits_equal(y, ordered_gemv(A, x, grid[0]))
    A64, x64 = A.astype(np.float64), x.astype(np.float64)
    assert_close_f64(y, A64 @ x64, np.abs(A64) @ np.abs(x64), N)
    assert result.check.ok


def test_gemv_every_replica_agrees(rng):
    """y is replicated along tile rows: every tile of a row must hold the same block."""
    from tilegrid.compiler import compile_source
    from tilegrid.emulator import Emulator, MachineConfig
    from tilegrid import kernels
    src = kernels.BUNDLED["gemv"].path.read_text()
    A = rng.standard_normal((16, 32)).astype(np.float32)
    x = rng.standard_normal(32).astype(np.float32)
    prog = compile_source(src, "gemv.tg", MachineConfig(width=4, height=2), {"A": A.shape, "x": x.shape}).program
    emu = Emulator(prog)
    emu.load_inputs({"A": A, "x": x})
    emu.run()
    y_io = next(io for io in prog.io if io.name == "y")
    blocks = emu.state.mem[:, y_io.addr:y_io.addr + 8].reshape(2, 4, 8)  # [ty, tx, block]
    want = ordered_gemv(A, x, 4).reshape(2, 8)
    for ty in range(2):
        for tx in range(4):
            assert_bits_equal(blocks[ty, tx], want[ty])
