"""The float64 half of --check on special values: where float64 itself is NaN
or infinite, f32 must give the same special value; elsewhere a NaN or an
infinity is a failure, never 'within the bound'."""
import numpy as np
import pytest

import tilegrid
from tilegrid.checking import check_outputs


@pytest.fixture(scope="module")
def program():
    return tilegrid.compile_kernel("matmul", grid=(1, 1), shapes={"A": (1, 4), "B": (4, 1)}).program


@pytest.mark.parametrize("got, exact, ok", [
    ([1.0, np.nan, np.inf, -np.inf], [1.0, np.nan, np.inf, -np.inf], True),
    ([1.0, np.nan, 2.0, 3.0], [1.0, 5.0, 2.0, 3.0], False),       # NaN where float64 is finite
    ([1.0, np.inf, 2.0, 3.0], [1.0, 5.0, 2.0, 3.0], False),       # inf where float64 is finite
    ([1.0, 7.0, 2.0, 3.0], [1.0, np.nan, 2.0, 3.0], False),       # finite where float64 is NaN
    ([1.0, -np.inf, 2.0, 3.0], [1.0, np.inf, 2.0, 3.0], False),   # the wrong infinity
    ([1.0, 5.5, 2.0, 3.0], [1.0, 5.0, 2.0, 3.0], False),          # finite, outside the bound
])
def test_special_values(program, got, exact, ok):
    got = np.array(got, np.float32).reshape(1, 4)
    exact = np.array(exact, np.float64).reshape(1, 4)
    bound = np.full((1, 4), 0.1)
    with np.errstate(all="ignore"):
        report = check_outputs(program, {"C": got}, {}, {"C": exact}, {"C": bound})
    assert report.within_bound is ok, report.summary()
