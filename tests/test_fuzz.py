"""Grammar-aware fuzzing of the promise: any .tg source and inputs either run (bit-exact)
or give one clear user error; never a traceback, a hang, a crash or a RuntimeWarning.

Hypothesis draws kernels from tools/fuzzgen.py (generated from the language, and
token mutations of the bundled kernels); each runs in a worker process with a hard
timeout (tools/fuzz.py CaseRunner), and tools/fuzzoracle.py, an independent
interpreter of the language, checks the outputs bit for bit where it can tell what
the kernel computes. derandomize=True: CI runs the same cases every time.

The long fuzz is `python tools/fuzz.py` (docs/fuzzing.md). Failures it found are in
tests/fuzz_regressions/; the ones still open are xfail(strict=True) below.

Environment: TILEGRID_FUZZ_EXAMPLES scales the number of cases (default 1.0),
TILEGRID_FUZZ_SHRINK=1 lets hypothesis shrink a failure (slower, smaller example).
"""
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import hypothesis  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402

# hypothesis keeps nothing in the repository
hypothesis.configuration.set_hypothesis_home_dir(tempfile.mkdtemp(prefix="tilegrid-hypothesis-"))

import fuzz  # noqa: E402
import fuzzgen  # noqa: E402

SCALE = float(os.environ.get("TILEGRID_FUZZ_EXAMPLES", "1"))
PHASES = [Phase.explicit, Phase.generate] + ([Phase.shrink] if os.environ.get("TILEGRID_FUZZ_SHRINK") else [])
REGRESSIONS = Path(__file__).resolve().parent / "fuzz_regressions"


def fuzz_settings(n):
    return settings(max_examples=max(1, int(n * SCALE)), deadline=None, derandomize=True, database=None,
                    phases=PHASES, suppress_health_check=list(HealthCheck), print_blob=False)


@pytest.fixture(scope="module")
def runner():
    r = fuzz.CaseRunner(timeout=20)
    yield r
    r.close()


_passed = {}


def already_passed(case, test) -> bool:
    """hypothesis repeats simple examples: a distinct case that passed once is not run again
    (one that failed is, so hypothesis can replay it)."""
    return case.key() in _passed.setdefault(test, set())


def passed(case, test):
    _passed.setdefault(test, set()).add(case.key())


def assert_promise(case, outcome):
    if outcome.failed:
        saved = Path(tempfile.mkdtemp(prefix="tilegrid-fuzz-failure-"))
        fuzz._write_repro(saved, {**case.to_wire(), "batch": "test", "index": 0}, outcome)
        info = json.loads((saved / "info.json").read_text())
        pytest.fail(f"{outcome.summary()}\n\n{case!r}\n\noracle: {outcome.oracle}\n"
                    f"{outcome.traceback[-4000:]}\n{outcome.detail}\n"
                    f"warnings: {outcome.warnings}\n"
                    f"saved in {saved} (case.tg, inputs.npz, info.json); reproduce with\n"
                    f"  python tools/fuzz.py --replay {saved}\n  {info['run']}",
                    pytrace=False)


@fuzz_settings(1200)
@given(case=fuzzgen.generated_cases())
def test_generated_kernels_keep_the_promise(runner, case):
    if already_passed(case, "generated"):
        return
    outcome = runner.run(case.source, case.grid, case.inputs, case.params, case.check, config=case.config)
    assert_promise(case, outcome)
    passed(case, "generated")


@fuzz_settings(800)
@given(case=fuzzgen.mutated_cases())
def test_mutated_bundled_kernels_keep_the_promise(runner, case):
    if already_passed(case, "mutated"):
        return
    outcome = runner.run(case.source, case.grid, case.inputs, case.params, case.check, config=case.config)
    assert_promise(case, outcome)
    passed(case, "mutated")


@fuzz_settings(160)
@given(case=fuzzgen.cases("both"))
def test_the_cli_keeps_the_promise(runner, case):
    """Through tilegrid.cli.main: exit 0 or 1, or exit 2 with one `path:line:col: error:` or
    `tilegrid: error:` message on stderr."""
    if already_passed(case, "cli"):
        return
    outcome = runner.run(case.source, case.grid, case.inputs, case.params, case.check, via="cli", config=case.config)
    assert_promise(case, outcome)
    passed(case, "cli")


def test_the_generator_mostly_makes_valid_kernels(runner):
    """Most generated kernels must reach the emulator, or the fuzz only tests the parser."""
    from hypothesis import seed
    seen = {"ran": 0, "all": 0}

    @seed(20261201)
    @settings(max_examples=60, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=fuzzgen.generated_cases())
    def sample(case):
        o = runner.run(case.source, case.grid, case.inputs, case.params, case.check, expected=None,
                       config=case.config)
        seen["all"] += 1
        seen["ran"] += o.kind == "ran"

    sample()
    assert seen["ran"] >= 0.3 * seen["all"], seen


# ---------------------------------------------------------------- regressions
def _regressions():
    if not REGRESSIONS.is_dir():
        return []
    index = json.loads((REGRESSIONS / "index.json").read_text()) if (REGRESSIONS / "index.json").exists() else {}
    out = []
    for tg in sorted(REGRESSIONS.glob("*.tg")):
        meta = index.get(tg.name, {})
        marks = []
        if meta.get("open"):
            marks.append(pytest.mark.xfail(strict=True, reason=meta.get("reason", "known bug")))
        out.append(pytest.param(tg, meta, id=tg.stem, marks=marks))
    return out


@pytest.mark.parametrize("path,meta", _regressions())
def test_fuzz_regression(runner, path, meta):
    """Each reproducer the fuzzer found: the promise holds for it (xfail while the bug is open)."""
    npz = path.with_suffix(".npz")
    inputs = {}
    if npz.exists():
        with np.load(npz) as data:
            inputs = {k: data[k] for k in data.files}
    case = fuzzgen.Case(path.read_text(encoding="utf-8", errors="surrogatepass"), tuple(meta.get("grid", (2, 2))),
                        inputs, meta.get("params", {}), meta.get("check", False), origin=f"regression {path.name}",
                        config=meta.get("config", {}))
    outcome = runner.run(case.source, case.grid, case.inputs, case.params, case.check, via=meta.get("via", "api"),
                         config=case.config or None)
    assert_promise(case, outcome)
