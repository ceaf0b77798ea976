"""numba's cache across processes: a sharded run, then ordinary runs, in a cold cache.

A cached function that calls a parallel=True one crashes when loaded if it was
compiled in a process that took the parallel callee from the cache (numba
issues 4807, 8578). A sharded run calls the parallel phases directly, so a
cold cache used first by a sharded run, then by two ordinary runs, crashed the
third process. jit_cache.refresh_stale_cache drops such a half-built cache.
Each step runs in its own process, on a cache of its own (NUMBA_CACHE_DIR).
"""
import os
import subprocess
import sys
import textwrap

RUN = textwrap.dedent("""
    import sys
    import numpy as np
    from tilegrid import api, kernels
    from tilegrid.emulator import Emulator, MachineConfig
    from tilegrid.kernels.ordered import matmul_ordered
    cfg = MachineConfig(width=2, height=2)
    inputs = kernels.BUNDLED["matmul"].make_inputs(np.random.default_rng(0), {"M": 4, "K": 4, "N": 4})
    program = api.compile_kernel("matmul", (2, 2), {k: v.shape for k, v in inputs.items()}, {}, cfg).program
    sharded = sys.argv[1] == "sharded"
    emu = Emulator(program, workers=2, backend="local") if sharded else Emulator(program)
    emu.load_inputs(inputs)
    emu.run()
    C = emu.read_outputs()["C"]
    A, B = inputs["A"], inputs["B"]
    want = matmul_ordered(A, B)  # SUMMA's order: k ascending, one unfused multiply-add at a time
    assert np.array_equal(C.view(np.uint32), want.view(np.uint32)), "bits differ"
    assert np.allclose(C, A.astype(np.float64) @ B.astype(np.float64), rtol=1e-5, atol=1e-5)
    print("ok")
""")


def test_a_sharded_run_in_a_cold_cache_leaves_a_cache_later_runs_can_load(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    for step, mode in enumerate(["sharded", "plain", "plain"]):
        proc = subprocess.run([sys.executable, "-c", RUN, mode], env=env, capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0 and proc.stdout.strip() == "ok", \
            f"step {step} ({mode}) exited {proc.returncode}: {proc.stderr[-2000:]}"
