"""Shared test helpers: references written independently of the project code."""
import numpy as np
import pytest

U32 = np.uint32


def ordered_matmul(A, B):
    """The issue's definition: C = 0; for k: C = C + A[:, k, None] * B[None, k, :] in float32."""
    A = np.asarray(A, np.float32)
    B = np.asarray(B, np.float32)
    C = np.zeros((A.shape[0], B.shape[1]), np.float32)
    with np.errstate(all="ignore"):  # inf * 0 in the special-value tests
        for k in range(A.shape[1]):
            C = C + A[:, k, None] * B[None, k, :]
    return C


def ordered_gemv(A, x, width):
    """Per tile column: sum its columns from 0 in order; then add the columns' parts left to right."""
    A = np.asarray(A, np.float32)
    x = np.asarray(x, np.float32)
    nb = A.shape[1] // width
    total = None
    for c in range(width):
        part = np.zeros(A.shape[0], np.float32)
        for j in range(c * nb, (c + 1) * nb):
            part = part + A[:, j] * x[j]
        total = part if total is None else total + part
    return total


def assert_bits_equal(got, want):
    got = np.asarray(got, np.float32)
    want = np.asarray(want, np.float32)
    assert got.shape == want.shape
    diff = got.view(U32) != want.view(U32)
    if diff.any():
        i = tuple(np.argwhere(diff)[0])
        raise AssertionError(f"{int(diff.sum())} values differ; first at {i}: {got[i]!r} vs {want[i]!r}")


def assert_close_f64(got, exact, rel_terms, n):
    """|got - exact| <= (n+1) u * rel_terms elementwise, u = 2^-24 (binary32 dot-product bound)."""
    bound = (n + 1) * 2.0 ** -24 * rel_terms * 1.0001
    err = np.abs(np.asarray(got, np.float64) - exact)
    assert np.all(err <= bound), f"max error/bound = {np.max(err / np.maximum(bound, 1e-300)):.3f}"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def build_program(width, height, code, descs, sram_words, routes=None, fimm=(0.0,), io=(), config=None):
    """A hand-written ISA program covering the whole grid, for emulator-level tests."""
    from tilegrid.emulator import CodeRegion, MachineConfig, Program
    cfg = config or MachineConfig(width=width, height=height)
    if routes is None:
        routes = np.zeros((width * height, 0, 5), np.uint8)
    return Program(config=cfg, code=np.array(code, np.int32), descs=np.array(descs, np.int32),
                   fimm=np.array(fimm, np.float32), regions=[CodeRegion("all", 0, len(code), 0, 0, width, height)],
                   routes=np.asarray(routes, np.uint8), sram_words=sram_words, io=list(io))
