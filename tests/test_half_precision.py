"""bf16 and f16 inputs: stored two halves a word (half the SRAM), widened exactly to
f32 where they are used, with the arithmetic f32 and bit-exact against the ordered
references run on the rounded values (ml_dtypes), beside a float64 check."""
import json
import zipfile
import io as _io

import ml_dtypes
import numpy as np
import pytest

import tilegrid
from tilegrid import api, kernels
from tilegrid.compiler.diagnostics import CompileError
from tilegrid.compiler.driver import compile_source
from tilegrid.emulator import MachineConfig
from tilegrid.emulator.program import Program
from tilegrid.kernels.matmul_ref import reference as matmul_ref

HALF = {"bf16": ml_dtypes.bfloat16, "f16": np.float16}
rng = np.random.default_rng(21)


def rounded(x, dtype):
    return np.asarray(x, np.float32).astype(HALF[dtype]).astype(np.float32)


def compile_text(src, grid, shapes, params=None, sram=None):
    cfg = MachineConfig(width=grid[0], height=grid[1], **({"sram_bytes": sram} if sram else {}))
    return compile_source(src, "half.tg", cfg, shapes, params or {})


MATMUL = """
import matmul
kernel mm(A: f32[M, K] block(y, x), B: DTYPE[K, N] block(y, x)) -> C: f32[M, N] block(y, x)
{
    C = matmul(A, B)
}
"""


@pytest.mark.parametrize("dtype", ["bf16", "f16"])
@pytest.mark.parametrize("grid", [(1, 1), (2, 2), (4, 2)])
def test_a_half_weight_is_half_the_sram_and_the_product_is_exact(dtype, grid):
    A = rng.standard_normal((16, 16)).astype(np.float32)
    B = rng.standard_normal((16, 32)).astype(np.float32)
    prog = compile_text(MATMUL.replace("DTYPE", dtype), grid, {"A": A.shape, "B": B.shape}).program
    plan = {b.name: b for b in prog.buffers}
    assert plan["B"].words * 2 == plan["A"].words * 2 == 16 * 32 // (grid[0] * grid[1])  # B: 2 halves a word
    io = {t.name: t for t in prog.io}
    assert io["B"].dtype == dtype and io["B"].words * 2 == int(np.prod(io["B"].block))
    out = api.run_program_checked(prog, {"A": A, "B": B}, {}, check=False).outputs["C"]
    want = matmul_ref({"A": A, "B": rounded(B, dtype)}, {}, grid)["C"]
    assert np.array_equal(out.view(np.uint32), want.view(np.uint32))
    np.testing.assert_allclose(out, A.astype(np.float64) @ rounded(B, dtype), rtol=1e-4, atol=1e-4)


def test_an_input_already_in_bf16_loads_as_it_is():
    A = rng.standard_normal((8, 8)).astype(np.float32)
    B = rng.standard_normal((8, 8)).astype(ml_dtypes.bfloat16)
    prog = compile_text(MATMUL.replace("DTYPE", "bf16"), (2, 2), {"A": A.shape, "B": B.shape}).program
    out = api.run_program_checked(prog, {"A": A, "B": B.astype(np.float32)}, {}, check=False).outputs["C"]
    want = matmul_ref({"A": A, "B": B.astype(np.float32)}, {}, (2, 2))["C"]
    assert np.array_equal(out.view(np.uint32), want.view(np.uint32))


STACK = """
import matmul
kernel deep(x: f32[S, D] block(y, x), w: DTYPE[L, D, D] block(_, y, x)) -> y: f32[S, D] block(y, x)
{
    tensor h: f32[S, D] block(y, x)
    h = x
    for l in 0 .. L {
        h = matmul(h, w[l])
    }
    y = h
}
"""


def test_a_stack_too_big_for_f32_fits_in_bf16_and_stays_exact():
    S, D, L = 8, 64, 12
    sram = 96 * 1024  # one tile: 12 layers of 64x64 are 192 KiB in f32, 96 KiB in bf16
    shapes = {"x": (S, D), "w": (L, D, D)}
    with pytest.raises(CompileError) as err:
        compile_text(STACK.replace("DTYPE", "f32"), (2, 2), shapes, sram=sram // 4 * 2)
    assert "SRAM overflow" in str(err.value)
    prog = compile_text(STACK.replace("DTYPE", "bf16"), (2, 2), shapes, sram=sram // 4 * 2).program
    x = rng.standard_normal((S, D)).astype(np.float32)
    w = (rng.standard_normal((L, D, D)) * D ** -0.5).astype(np.float32)
    out = api.run_program_checked(prog, {"x": x, "w": w}, {}, check=False).outputs["y"]
    h = x
    h64 = x.astype(np.float64)
    for layer in range(L):
        h = matmul_ref({"A": h, "B": rounded(w[layer], "bf16")}, {}, (2, 2))["C"]
        h64 = h64 @ rounded(w[layer], "bf16")
    assert np.array_equal(out.view(np.uint32), h.view(np.uint32))
    np.testing.assert_allclose(out, h64, rtol=1e-3, atol=1e-4)


def test_check_takes_the_rounded_weights_for_a_bundled_kernels_bf16_copy(tmp_path):
    src = kernels.BUNDLED["swiglu"].path.read_text().replace("w_gate: f32", "w_gate: bf16") \
        .replace("w_up: f32", "w_up: bf16").replace("w_down: f32", "w_down: f16")
    path = tmp_path / "swiglu.tg"
    path.write_text(src)
    inputs = kernels.BUNDLED["swiglu"].make_inputs(np.random.default_rng(0), {"S": 16, "Dm": 16, "Dff": 32})
    result = tilegrid.run_kernel(str(path), inputs, grid=(2, 2), check=True)
    assert result.check.ok, result.check.summary()
    assert {t.name: t.dtype for t in result.program.io}["w_down"] == "f16"


BAD = [
    (MATMUL.replace("-> C: f32", "-> C: bf16").replace("DTYPE", "f32"), {"A": (4, 4), "B": (4, 4)},
     "inputs of the kernel being compiled"),
    ("""kernel k(x: bf16[4, 6] block(y, x)) -> y: f32[4, 6] block(y, x) { y = x * 2.0 }""", {"x": (4, 6)},
     "even last dimension"),
    ("""kernel k(x: bf16[4, 8] replicated) -> y: f32[4, 4] replicated { y = x[:, 0 : 4] }""", {"x": (4, 8)},
     "sliced only along its leading"),
    ("""kernel k(x: bf16[4, 8] replicated) -> y: f32[4, 8] replicated { x = x * 2.0
        y = x }""", {"x": (4, 8)}, "read-only"),
    ("""kernel k(x: f32[4, 8] replicated) -> y: f32[4, 8] replicated { tensor t: bf16[4, 8] replicated
        y = x }""", {"x": (4, 8)}, "everything else is f32"),
]


@pytest.mark.parametrize("src, shapes, message", BAD)
def test_half_types_are_refused_where_they_cannot_go(src, shapes, message):
    with pytest.raises(CompileError) as err:
        compile_text(src, (2, 2), shapes)
    assert message in str(err.value), str(err.value)


def test_a_saved_program_keeps_the_dtype_and_old_files_without_it_load(tmp_path):
    A, B = rng.standard_normal((8, 8)).astype(np.float32), rng.standard_normal((8, 8)).astype(np.float32)
    prog = compile_text(MATMUL.replace("DTYPE", "f16"), (2, 2), {"A": A.shape, "B": B.shape}).program
    prog.save(tmp_path / "p.tgp")
    loaded = Program.load(tmp_path / "p.tgp")
    assert {t.name: t.dtype for t in loaded.io} == {"A": "f32", "B": "f16", "C": "f32"}
    a = api.run_program_checked(prog, {"A": A, "B": B}, {}, check=False).outputs["C"]
    b = api.run_program_checked(loaded, {"A": A, "B": B}, {}, check=False).outputs["C"]
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))
    # a program from before dtypes: no dtype field in its io entries
    f32 = tilegrid.compile_kernel("gemv", (2, 2), {"A": (8, 8), "x": (8,)}).program
    f32.save(tmp_path / "old.tgp")
    with zipfile.ZipFile(tmp_path / "old.tgp") as z:
        members = {n: z.read(n) for n in z.namelist()}
    header = json.loads(np.load(_io.BytesIO(members["header.npy"])).tobytes())
    for entry in header["io"]:
        entry.pop("dtype")
    buf = _io.BytesIO()
    np.save(buf, np.frombuffer(json.dumps(header).encode(), np.uint8))
    members["header.npy"] = buf.getvalue()
    with zipfile.ZipFile(tmp_path / "old2.tgp", "w", zipfile.ZIP_DEFLATED) as z:
        for n, data in members.items():
            z.writestr(n, data)
    assert all(t.dtype == "f32" for t in Program.load(tmp_path / "old2.tgp").io)
