#!/usr/bin/env python3
"""Fuzz tilegrid: generated and mutated kernels, run in worker processes.

    python tools/fuzz.py --cases 20000 --jobs 2 --out fuzz-out/ --seed 1 --timeout 20 [--mode both]
    python tools/fuzz.py --replay fuzz-out/bugs/<id>        # run one saved reproducer again
    python tools/fuzz.py --minimize fuzz-out/bugs/<id>      # shrink it, keeping its signature

The promise under test: for any .tg source and inputs, tilegrid either runs
the kernel (bit-exact) or raises one clear user error (tilegrid.errors.USER_ERRORS);
never another exception, a hang, a crash or a printed RuntimeWarning. Where
the fuzzer's own interpreter (fuzzoracle.py) can tell what a kernel computes,
the outputs are compared with it bit for bit as well.

Outcomes: ran, user-error, bug, hang, crash, warning and wrong-result;
docs/fuzzing.md explains them and what the fuzzer generates.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import hashlib
import inspect
import io
import json
import multiprocessing as mp
import os
import re
import signal
import sys
import tempfile
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from multiprocessing.connection import wait as mp_wait
from pathlib import Path

import numpy as np

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

DRAWS_PER_CASE = 4   # hypothesis examples drawn per distinct case at most (duplicates are skipped)
OUTCOMES = ("ran", "user-error", "bug", "hang", "crash", "warning", "wrong-result")
FAILURES = ("bug", "hang", "crash", "warning", "wrong-result")

# Budgets handed to the emulator when it takes them (see budget_kwargs). A generated kernel
# retires a few thousand instructions per tile; a runaway loop is stopped by these.
DEFAULT_BUDGET = {"instructions": 2_000_000, "rounds": 2_000_000, "cycles": 1 << 36, "seconds": None}

_SHOWN_WARNINGS_EXEMPT = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)
# what a run-time failure (not a compile or input error) says, for the CLI's exit status 2
_RUNTIME_WORDS = ("faulted", "deadlock", "color conflict", "routes of color", "reaches no receiver")
_MESSAGE_RE = re.compile(r"^(?:tilegrid: error: \S|.+?:\d+:\d+: error: \S|.+?: error: \S)")


# ================================================================ outcomes
@dataclass
class Outcome:
    kind: str                           # one of OUTCOMES
    message: str = ""                   # the user-error message, or the exception text
    exc_type: str = ""
    frame: str = ""                     # last traceback frame: path:line:function
    traceback: str = ""
    warnings: list = field(default_factory=list)
    stage: str = ""                     # compile | run | check | oracle: where it was when it ended
    seconds: float = 0.0
    detail: str = ""                    # wrong-result: what differs; hang/crash: how it ended
    oracle: str = ""                    # the oracle's verdict: expected | invalid: ... | unknown: ...
    printed: str = ""                   # anything the API printed to stdout/stderr
    category: str = ""                  # wrong-result: which kind (for grouping)

    @property
    def failed(self) -> bool:
        return self.kind in FAILURES

    def signature(self) -> str:
        """What makes two failures the same failure: for dedup of reproducers."""
        if self.kind == "bug":
            return f"bug {self.exc_type} at {self.frame}"
        if self.kind == "hang":
            return f"hang in {self.stage or '?'}"
        if self.kind == "crash":
            return f"crash ({self.detail}) in {self.stage or '?'}"
        if self.kind == "warning":
            w = self.warnings[0] if self.warnings else "?"
            return f"warning {_normalize(w)}"
        if self.kind == "wrong-result":
            return f"wrong-result {self.category or _normalize(self.detail.split(':')[0])}"
        return self.kind

    def summary(self) -> str:
        head = f"{self.kind}"
        if self.kind == "bug":
            head += f": {self.exc_type}: {self.message.splitlines()[0] if self.message else ''} [{self.frame}]"
        elif self.kind in ("user-error",):
            head += f": {self.message.splitlines()[0] if self.message else ''}"
        elif self.kind == "warning":
            head += f": {'; '.join(self.warnings[:3])}"
        elif self.kind in ("hang", "crash", "wrong-result"):
            head += f" ({self.stage}): {self.detail}"
        return head

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "Outcome":
        return Outcome(**{k: v for k, v in d.items() if k in {f.name for f in dataclasses.fields(Outcome)}})


def _normalize(text: str) -> str:
    """A message with its numbers and quoted names taken out, for grouping."""
    text = re.sub(r"'[^']*'", "'_'", text)
    text = re.sub(r"0x[0-9a-fA-F]+|\d+(\.\d+)?(e[-+]?\d+)?", "N", text)
    return text[:160]


def _frame_of(tb_exc: BaseException) -> str:
    tb = traceback.extract_tb(tb_exc.__traceback__)
    if not tb:
        return "?"
    if isinstance(tb_exc, RecursionError):
        # the function that recursed: the frame repeated most often
        counts = collections.Counter((f.filename, f.name) for f in tb)
        (fname, name), _ = counts.most_common(1)[0]
        return f"{_rel(fname)}:{name} (recursion)"
    f = tb[-1]
    return f"{_rel(f.filename)}:{f.lineno}:{f.name}"


def _rel(path: str) -> str:
    p = Path(path)
    for base in (ROOT,) + tuple(Path(x) for x in sys.path if x):
        try:
            return str(p.resolve().relative_to(base.resolve()))
        except (ValueError, OSError):
            continue
    parts = p.parts
    return "/".join(parts[-3:]) if len(parts) > 3 else path


def _unwrap(exc: BaseException) -> BaseException:
    """lark wraps exceptions raised in transformers: report the real one."""
    inner = getattr(exc, "orig_exc", None)
    return inner if isinstance(inner, BaseException) else exc


# ================================================================ budgets
def budget_kwargs(func, budget: dict) -> dict:
    """The budget parameters `func` accepts, by name (so this works before and after the
    emulator grows instruction / round / cycle budgets)."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return {}
    out = {}
    for name, param in params.items():
        low = name.lower()
        if not any(w in low for w in ("max_", "budget", "limit")):
            continue
        obj = _budget_object(param, budget)
        if obj is not None:
            out[name] = obj
            continue
        if "instruction" in low and budget.get("instructions"):
            out[name] = budget["instructions"]
        elif "round" in low and budget.get("rounds"):
            out[name] = budget["rounds"]
        elif "cycle" in low and budget.get("cycles"):
            out[name] = budget["cycles"]
        elif ("second" in low or "time" in low or "wall" in low) and budget.get("seconds"):
            out[name] = budget["seconds"]
    return out


def _budget_object(param, budget: dict):
    """A budget passed as one object (tilegrid.emulator.budget.RunBudget): build it from the
    figures it has fields for."""
    ann = param.annotation
    text = ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann))
    if "Budget" not in str(text) and param.name != "budget":
        return None
    try:
        from tilegrid.emulator import budget as budget_mod
        cls = getattr(budget_mod, "RunBudget")
    except (ImportError, AttributeError):
        return None
    names = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    kw = {}
    for field_name in names:
        for key in ("instructions", "rounds", "cycles"):
            if key in field_name and budget.get(key):
                kw[field_name] = budget[key]
    try:
        return cls(**kw)
    except Exception:
        return None


def cli_budget_args(budget: dict) -> list:
    """--max-instructions and the like, if `tilegrid run` has them."""
    try:
        from tilegrid.cli import build_parser
        parser = build_parser()
        run = next(a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith("run"))
    except Exception:
        return []
    args = []
    for action in run._actions:
        for opt in action.option_strings:
            low = opt.lower()
            if not opt.startswith("--") or not any(w in low for w in ("max-", "budget", "limit")):
                continue
            if "instruction" in low and budget.get("instructions"):
                args += [opt, str(budget["instructions"])]
            elif "round" in low and budget.get("rounds"):
                args += [opt, str(budget["rounds"])]
            elif "cycle" in low and budget.get("cycles"):
                args += [opt, str(budget["cycles"])]
            break
    return args


class _Timeout(BaseException):
    """The in-process wall-clock limit (a BaseException, so `except Exception` lets it through)."""


@contextlib.contextmanager
def _alarm(seconds):
    if not seconds or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def fire(signum, frame):
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ================================================================ run_case
def run_case(source: str, grid, inputs: dict, max_seconds: float | None = 20.0, params: dict | None = None,
             check: bool = False, expected="auto", via: str = "api", budget: dict | None = None,
             on_stage=None, classify: bool = True, config: dict | None = None) -> Outcome:
    """Compile and run one kernel in this process and say how it went.

    expected: "auto" asks fuzzoracle for a verdict; None skips it; or a verdict
    computed before (fuzzoracle.Expected / Invalid / Unknown).
    config: MachineConfig fields other than the grid (queue_depth, colors, sram_bytes).
    via: "api" (tilegrid.api: compile_kernel, run_program_checked) or "cli"
    (tilegrid.cli.main, in this process, with stdout and stderr captured).
    max_seconds: a wall-clock limit for the Python parts (compile, I/O); the emulator's
    numba loop cannot be interrupted in process, so its budgets and the worker's hard
    timeout (CaseRunner, the fuzzer) cover it.
    """
    budget = {**DEFAULT_BUDGET, **(budget or {})}
    params = dict(params or {})
    stage = {"now": "setup"}

    def mark(s):
        stage["now"] = s
        if on_stage is not None:
            on_stage(s)

    verdict = None
    oracle_text = ""
    if isinstance(expected, str) and expected == "auto":
        mark("oracle")
        verdict = _oracle(source, grid, inputs, params)
    elif expected is not None:
        verdict = expected
    if verdict is not None:
        oracle_text = _verdict_text(verdict)

    t0 = time.perf_counter()
    out = io.StringIO()
    got_outputs = None
    with tempfile.TemporaryDirectory(prefix="tgfuzz-") as tmp:
        path = os.path.join(tmp, "case.tg")
        with open(path, "w", encoding="utf-8", errors="surrogatepass", newline="") as f:
            f.write(source)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with _alarm(max_seconds), contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                    if via == "cli":
                        got_outputs, failure = _run_cli(path, tmp, grid, inputs, params, check, budget, mark,
                                                        config)
                    else:
                        got_outputs, failure = _run_api(path, grid, inputs, params, check, budget, mark, config)
            except _Timeout:
                failure = Outcome("hang", detail=f"over {max_seconds} s (in-process limit)")
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - the point is to catch anything
                failure = _classify_exception(exc)
        shown = [w for w in caught if not issubclass(w.category, _SHOWN_WARNINGS_EXEMPT)]
    result = failure if failure is not None else Outcome("ran")
    result.stage = result.stage or stage["now"]
    result.seconds = time.perf_counter() - t0
    result.warnings = [f"{w.category.__name__}: {w.message} ({_rel(w.filename)}:{w.lineno})" for w in shown]
    result.printed = out.getvalue()[-2000:]
    result.oracle = oracle_text
    if result.kind in ("ran", "user-error") and result.warnings:
        result.kind = "warning"
        result.detail = result.detail or f"after {('a run' if got_outputs is not None else 'a user error')}"
    _judge(result, verdict, got_outputs)
    if classify and result.kind == "wrong-result" and result.detail.startswith("mismatch"):
        _classify_mismatch(result, source, grid, inputs, params, max_seconds, via, budget, verdict, config)
    return result


def _classify_mismatch(result, source, grid, inputs, params, max_seconds, via, budget, verdict, config=None):
    """Is it an assignment computed in place although it reads its own target? Rerun with
    each such assignment computed into a fresh local first (expressions, then collectives
    whose source is their target): if that run matches the oracle, say which."""
    import fuzzoracle
    for which, what in (("expr", "an assignment that reads its own target is computed in place"),
                        ("collective", "a collective whose source is its own target")):
        tag = {"expr": "in-place expression", "collective": "in-place collective"}[which]
        try:
            rewritten = fuzzoracle.dealias(source, grid, inputs, params, which)
        except Exception:
            rewritten = None
        if rewritten is None:
            continue
        text, n = rewritten
        again = run_case(text, grid, inputs, max_seconds, params, False, verdict, via, budget, classify=False,
                         config=config)
        if again.kind == "ran":
            result.detail = result.detail.replace(
                "mismatch", f"mismatch (in place: {what}; a temporary fixes it, {n} rewritten)", 1)
            result.category += f"/{tag}"
            return


def _oracle(source, grid, inputs, params):
    try:
        import fuzzoracle
        return fuzzoracle.evaluate(source, grid, inputs, params)
    except Exception as exc:  # the oracle's own failure is no verdict on tilegrid
        import fuzzoracle
        return fuzzoracle.Unknown(f"oracle failed: {type(exc).__name__}: {exc}")


def _verdict_text(v) -> str:
    import fuzzoracle
    if isinstance(v, fuzzoracle.Expected):
        return "expected" + (f" ({', '.join(v.notes)})" if v.notes else "")
    if isinstance(v, fuzzoracle.Invalid):
        return f"invalid: {v.reason}"
    return f"unknown: {getattr(v, 'reason', v)}"


def _judge(result: Outcome, verdict, got_outputs):
    """Compare with the oracle: wrong values, a valid program failing, an invalid one running."""
    if verdict is None:
        return
    import fuzzoracle
    if isinstance(verdict, fuzzoracle.Expected):
        int32 = " (a run-time integer leaves int32)" if "int32" in verdict.notes else ""
        if result.kind == "ran" and got_outputs is not None:
            diff = fuzzoracle.compare(verdict.outputs, got_outputs)
            if diff:
                result.kind = "wrong-result"
                result.detail = f"mismatch{int32}: {diff}"
                result.category = "mismatch" + ("/int32" if int32 else "")
        elif result.kind == "user-error" and result.exc_type not in ("CompileError", "UserError", "BudgetError",
                                                                     "ProgramError", "exit 2"):
            result.kind = "wrong-result"
            first = result.message.splitlines()[0]
            result.detail = f"valid program failed at run time{int32}: {first}"
            result.category = "run-time error on a valid program" + ("/int32" if int32 else "") + \
                f": {_normalize(first.split(' at ')[0])}"
    elif isinstance(verdict, fuzzoracle.Invalid) and result.kind == "ran":
        result.kind = "wrong-result"
        result.detail = f"ran although {verdict.reason}"
        result.category = f"ran although {_normalize(verdict.reason.split(',')[0])}"


def _classify_exception(exc: BaseException) -> Outcome:
    from tilegrid.errors import USER_ERRORS
    if isinstance(exc, USER_ERRORS):
        return _user_error(exc)
    real = _unwrap(exc)
    name = type(real).__name__
    if real is not exc:
        name = f"{type(exc).__name__}({name})"
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if len(text) > 20000:
        text = text[:4000] + "\n...\n" + text[-12000:]
    msg = str(real)
    return Outcome("bug", message=msg[:2000], exc_type=name, frame=_frame_of(real), traceback=text)


def _user_error(exc) -> Outcome:
    from tilegrid.cli import _one_message
    try:
        text = _one_message(exc)
    except Exception as inner:  # formatting the message itself broke
        return _classify_exception(inner)
    kind = type(exc).__name__
    if not _MESSAGE_RE.match(text.split("\n")[0]) or "Traceback (most recent call last)" in text:
        return Outcome("bug", message=text[:2000], exc_type=f"BadMessage({kind})",
                       frame=_frame_of(exc), traceback="".join(traceback.format_exception(exc)))
    return Outcome("user-error", message=text[:4000], exc_type=kind)


def _run_api(path, grid, inputs, params, check, budget, mark, config=None):
    from tilegrid import api
    mark("compile")
    machine = None
    if config:
        from tilegrid.emulator.config import MachineConfig
        machine = MachineConfig(**config)
    checked = api.validate_inputs(inputs)
    compiled = api.compile_kernel(path, grid, {k: v.shape for k, v in checked.items()}, params, machine)
    mark("run")
    direct = budget_kwargs(api.run_program_checked, budget)
    if direct:
        result = api.run_program_checked(compiled.program, checked, params, check, **direct)
    else:
        real = api.Emulator
        extra = budget_kwargs(real.__init__, budget)
        if extra:
            class Budgeted(real):
                def __init__(self, program, *a, **kw):
                    for k, v in extra.items():
                        kw.setdefault(k, v)
                    super().__init__(program, *a, **kw)
            api.Emulator = Budgeted
        try:
            result = api.run_program_checked(compiled.program, checked, params, check)
        finally:
            api.Emulator = real
    mark("done")
    return result.outputs, None


def _run_cli(path, tmp, grid, inputs, params, check, budget, mark, config=None):
    from tilegrid import cli
    npz = os.path.join(tmp, "inputs.npz")
    np.savez(npz, **inputs)
    out_npz = os.path.join(tmp, "out.npz")
    argv = ["run", path, "--grid", f"{grid[0]}x{grid[1]}", "--inputs", npz, "--output", out_npz]
    for k, v in params.items():
        argv += ["--param", f"{k}={v}"]
    if check:
        argv.append("--check")
    for k, v in (config or {}).items():
        argv += ["--" + k.replace("_", "-"), str(v)]
    argv += cli_budget_args(budget)
    err = io.StringIO()
    mark("cli")
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = cli.main(argv)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 2
    text = err.getvalue()
    if rc in (0, 1):
        with np.load(out_npz) as data:
            return {k: data[k] for k in data.files}, None
    if rc == 2:
        first = text.split("\n")[0]
        if not _MESSAGE_RE.match(first) or "Traceback" in text:
            return None, Outcome("bug", message=text[:2000], exc_type="BadMessage(cli)", frame="tilegrid/cli.py")
        runtime = any(w in first for w in _RUNTIME_WORDS)
        return None, Outcome("user-error", message=text.strip()[:4000],
                             exc_type="exit 2 (run time)" if runtime else "exit 2")
    return None, Outcome("bug", message=f"exit status {rc}: {text[:1000]}", exc_type=f"exit {rc}",
                         frame="tilegrid/cli.py")


# ================================================================ isolation
def _child_main(conn, sys_path):
    """A case executor: receives cases, answers with outcomes (and stage notes)."""
    sys.path[:0] = [p for p in sys_path if p not in sys.path]
    _quiet_child()
    _warm_up()
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        case = msg
        outcome = run_case(case["source"], tuple(case["grid"]), case["inputs"], case.get("max_seconds"),
                           case.get("params"), case.get("check", False), case.get("expected", "auto"),
                           case.get("via", "api"), case.get("budget"),
                           on_stage=lambda s: conn.send(("stage", s)), config=case.get("config"))
        conn.send(("done", outcome.to_dict()))


def _quiet_child():
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent handles Ctrl-C and stops us


def _warm_up():
    """Load (or compile, the first time) the numba core before the first timed case."""
    import tilegrid
    A = np.ones((2, 2), np.float32)
    tilegrid.run_kernel("matmul", {"A": A, "B": A}, grid=(1, 1))


class CaseRunner:
    """Runs cases in one child process, with a hard wall-clock timeout per case: a child
    that exceeds it is killed (a hang); one that dies by a signal is a crash. The child
    is started again as needed."""

    def __init__(self, timeout: float = 20.0, startup_timeout: float = 600.0):
        self.timeout = timeout
        self.startup_timeout = startup_timeout
        self.ctx = mp.get_context("spawn")
        self.proc = None
        self.conn = None

    def _start(self):
        parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_child_main, args=(child, list(sys.path)), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent
        try:
            if not parent.poll(self.startup_timeout):
                raise EOFError
            kind, _ = parent.recv()
        except (EOFError, OSError):
            self.close()
            raise RuntimeError("the fuzz case worker did not start (see its stderr above)") from None
        assert kind == "ready"

    def close(self):
        if self.proc is not None:
            with contextlib.suppress(Exception):
                self.conn.send(None)
            self.proc.join(2)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()
        self.proc = self.conn = None

    def run(self, source, grid, inputs, params=None, check=False, expected="auto", via="api",
            budget=None, config=None) -> Outcome:
        if self.proc is None or not self.proc.is_alive():
            self._start()
        case = {"source": source, "grid": tuple(grid), "inputs": inputs, "params": params or {}, "check": check,
                "expected": expected, "via": via, "budget": budget, "max_seconds": self.timeout, "config": config}
        t0 = time.perf_counter()
        self.conn.send(case)
        stage = "setup"
        deadline = t0 + self.timeout
        while True:
            left = deadline - time.perf_counter()
            if left <= 0 or not self.conn.poll(left):
                if self.proc.is_alive() and not self.conn.poll(0):
                    self.proc.kill()
                    self.proc.join()
                    self.proc = None
                    return Outcome("hang", stage=stage, seconds=time.perf_counter() - t0,
                                   detail=f"killed after {self.timeout} s")
            try:
                kind, payload = self.conn.recv()
            except (EOFError, OSError):
                self.proc.join(5)
                code = self.proc.exitcode
                self.proc = None
                return _death(code, stage, time.perf_counter() - t0)
            if kind == "stage":
                stage = payload
            elif kind == "done":
                return Outcome.from_dict(payload)


def _death(code, stage, seconds) -> Outcome:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return Outcome("crash", stage=stage, seconds=seconds, detail=f"killed by {name}")
    return Outcome("crash", stage=stage, seconds=seconds, detail=f"worker exited with status {code}")


# ================================================================ fuzzing worker
def _fuzz_worker(conn, sys_path, home):
    """Runs hypothesis itself: for each task (a batch) it draws cases from the strategies
    with the batch's seed and runs them, telling the parent about each case before it runs."""
    sys.path[:0] = [p for p in sys_path if p not in sys.path]
    _quiet_child()
    import hypothesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    hypothesis.configuration.set_hypothesis_home_dir(home)   # nothing lands in the repository
    import fuzzgen
    _warm_up()
    conn.send(("ready", os.getpid()))
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        batch, bseed, mode, start, count, opts = (task["batch"], task["seed"], task["mode"], task["start"],
                                                  task["count"], task["opts"])
        strategy = fuzzgen.cases(mode)
        counter = {"i": 0}
        seen = set()   # hypothesis repeats simple examples: run each distinct case once per batch

        @hseed(bseed)
        @settings(max_examples=DRAWS_PER_CASE * count, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck), derandomize=False, print_blob=False,
                  verbosity=hypothesis.Verbosity.quiet)
        @given(strategy)
        def one(case):
            key = case.key()
            if key in seen or counter["i"] >= count:
                return
            seen.add(key)
            i = counter["i"]
            counter["i"] += 1
            if i < start:
                return
            conn.send(("start", {"batch": batch, "index": i, **case.to_wire()}))
            outcome = run_case(case.source, case.grid, case.inputs, opts["timeout"], case.params, case.check,
                               "auto" if opts["oracle"] else None, opts["via"], opts.get("budget"),
                               on_stage=lambda s: conn.send(("stage", s)), config=case.config)
            conn.send(("done", outcome.to_dict()))

        try:
            one()
        except Exception as exc:  # a failure of the generator itself: report, carry on
            conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-3000:]}"))
        conn.send(("batch-done", {"batch": batch, "generated": counter["i"]}))


# ================================================================ the fuzzer
class Fuzzer:
    def __init__(self, args):
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "bugs").mkdir(exist_ok=True)
        self.state_path = self.out / "state.json"
        self.ctx = mp.get_context("spawn")
        self.home = tempfile.mkdtemp(prefix="tgfuzz-hypothesis-")
        self.batch_size = args.batch
        self.n_batches = -(-args.cases // self.batch_size)
        self.state = self._load_state()
        self.sigs = self.state.setdefault("signatures", {})
        self.workers = []
        self.t0 = time.time()
        self.last_print = 0.0
        self.last_save = time.time()
        self.done_cases = sum(b["next"] for b in self.state["batches"].values())
        self.start_cases = self.done_cases
        self.wall_before = float(self.state.get("wall_seconds", 0.0))

    # -- state
    def _load_state(self):
        args = self.args
        if self.state_path.exists():
            st = json.loads(self.state_path.read_text())
            if (st["seed"], st["mode"], st["batch"]) != (args.seed, args.mode, args.batch):
                sys.exit(f"fuzz.py: {self.state_path} is for --seed {st['seed']} --mode {st['mode']} "
                         f"--batch {st['batch']}; use another --out or the same options")
            print(f"resuming: {sum(b['next'] for b in st['batches'].values())} cases already run", flush=True)
            return st
        info = _describe_tilegrid()
        if args.label:
            info["label"] = args.label
        return {"seed": args.seed, "mode": args.mode, "batch": args.batch, "batches": {}, "signatures": {},
                "wall_seconds": 0.0, "tilegrid": info}

    def _save(self):
        self.state["wall_seconds"] = self.wall_before + time.time() - self.t0
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1))
        tmp.replace(self.state_path)
        self.last_save = time.time()

    def counts(self):
        total = collections.Counter()
        for b in self.state["batches"].values():
            total.update(b["counts"])
        return total

    # -- tasks
    def _batch_seed(self, b: int) -> int:
        return int(hashlib.sha256(f"{self.args.seed}:{b}".encode()).hexdigest()[:12], 16)

    def _batch_mode(self, b: int) -> str:
        if self.args.mode != "both":
            return self.args.mode
        return "generate" if b % 2 == 0 else "mutate"

    def _pending(self):
        for b in range(self.n_batches):
            size = min(self.batch_size, self.args.cases - b * self.batch_size)
            st = self.state["batches"].get(str(b))
            if st is None or st["next"] < size:
                yield b, size

    def _task(self, b, size):
        st = self.state["batches"].setdefault(str(b), {"next": 0, "counts": {}})
        return {"batch": b, "seed": self._batch_seed(b), "mode": self._batch_mode(b), "start": st["next"],
                "count": size, "opts": {"timeout": self.args.timeout, "oracle": not self.args.no_oracle,
                                        "via": self.args.via, "budget": None}}

    # -- workers
    def _spawn(self):
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(target=_fuzz_worker, args=(child, list(sys.path), self.home), daemon=True)
        p.start()
        child.close()
        return {"proc": p, "conn": parent, "task": None, "case": None, "stage": "", "started": None,
                "ready": False, "born": time.time()}

    def run(self):
        def stop(signum, frame):   # SIGTERM (and SIGINT where a background shell ignores it)
            raise KeyboardInterrupt
        signal.signal(signal.SIGTERM, stop)
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            signal.signal(signal.SIGINT, stop)
        pending = list(self._pending())
        todo = collections.deque(pending)
        self.workers = [self._spawn() for _ in range(min(self.args.jobs, max(1, len(todo))))]
        try:
            while todo or any(w["task"] is not None for w in self.workers):
                for w in self.workers:
                    if w["ready"] and w["task"] is None and todo:
                        b, size = todo.popleft()
                        w["task"] = self._task(b, size)
                        w["size"] = size
                        w["conn"].send(w["task"])
                self._step(todo)
                self._progress()
                if time.time() - self.last_save > 5:
                    self._save()
        except KeyboardInterrupt:
            print("\ninterrupted: state saved; run the same command again to resume", flush=True)
        finally:
            for w in self.workers:
                with contextlib.suppress(Exception):
                    w["conn"].send(None)
            for w in self.workers:
                w["proc"].join(2)
                if w["proc"].is_alive():
                    w["proc"].kill()
            self._save()
            self._progress(final=True)
            (self.out / "summary.json").write_text(json.dumps(self._summary(), indent=1))

    def _step(self, todo):
        conns = {w["conn"]: w for w in self.workers}
        sentinels = {w["proc"].sentinel: w for w in self.workers}
        timeout = 1.0
        now = time.time()
        for w in self.workers:
            if w["case"] is not None and w["started"] is not None:
                timeout = min(timeout, max(0.0, w["started"] + self.args.timeout - now))
        ready = mp_wait(list(conns) + list(sentinels), timeout)
        for r in ready:
            w = conns.get(r) or sentinels.get(r)
            if r in conns:
                try:
                    while w["conn"].poll():
                        self._message(w, *w["conn"].recv())
                except (EOFError, OSError):
                    self._died(w, todo)
            elif not w["proc"].is_alive():
                # drain what it said before dying
                with contextlib.suppress(EOFError, OSError):
                    while w["conn"].poll():
                        self._message(w, *w["conn"].recv())
                self._died(w, todo)
        now = time.time()
        for w in list(self.workers):
            if w["case"] is not None and w["started"] is not None and now - w["started"] > self.args.timeout:
                w["proc"].kill()
                w["proc"].join()
                self._record(w, Outcome("hang", stage=w["stage"], seconds=now - w["started"],
                                        detail=f"killed after {self.args.timeout} s"))
                self._restart(w, todo)
            elif not w["ready"] and now - w["born"] > 900:
                w["proc"].kill()
                w["proc"].join()
                self._restart(w, todo)

    def _message(self, w, kind, payload):
        if kind == "ready":
            w["ready"] = True
        elif kind == "start":
            w["case"] = payload
            w["stage"] = "setup"
            w["started"] = time.time()
        elif kind == "stage":
            w["stage"] = payload
            if payload == "oracle":
                w["started"] = time.time()   # the oracle's time is the fuzzer's, not tilegrid's
        elif kind == "done":
            self._record(w, Outcome.from_dict(payload))
        elif kind == "error":
            print(f"\nworker error (generator): {payload}", file=sys.stderr, flush=True)
            (self.out / "generator-errors.txt").open("a").write(payload + "\n\n")
        elif kind == "batch-done":
            t = w["task"]
            st = self.state["batches"][str(t["batch"])]
            st["next"] = max(st["next"], w["size"])   # a batch that generated fewer is finished too
            w["task"] = None

    def _died(self, w, todo):
        code = w["proc"].exitcode
        w["proc"].join()
        if w["case"] is not None:
            self._record(w, _death(code, w["stage"], time.time() - (w["started"] or time.time())))
        self._restart(w, todo)

    def _restart(self, w, todo):
        task = w["task"]
        idx = self.workers.index(w)
        with contextlib.suppress(Exception):
            w["conn"].close()
        new = self._spawn()
        self.workers[idx] = new
        if task is not None:
            todo.appendleft((task["batch"], w["size"]))

    def _record(self, w, outcome: Outcome):
        case = w["case"]
        w["case"] = None
        w["started"] = None
        if case is None:
            return
        st = self.state["batches"][str(case["batch"])]
        st["next"] = max(st["next"], case["index"] + 1)
        st["counts"][outcome.kind] = st["counts"].get(outcome.kind, 0) + 1
        if outcome.oracle.startswith("expected"):
            st["counts"]["oracle-checked"] = st["counts"].get("oracle-checked", 0) + 1
        self.done_cases += 1
        if outcome.failed:
            self._save_failure(case, outcome)

    def _save_failure(self, case, outcome: Outcome):
        sig = outcome.signature()
        key = hashlib.sha1(sig.encode()).hexdigest()[:10]
        entry = self.sigs.get(key)
        d = self.out / "bugs" / f"{outcome.kind}-{key}"
        smaller = entry is not None and len(case["source"]) < entry["source_chars"]
        if entry is None or smaller:
            d.mkdir(parents=True, exist_ok=True)
            _write_repro(d, case, outcome)
        if entry is None:
            entry = self.sigs[key] = {"signature": sig, "kind": outcome.kind, "count": 0, "dir": str(d),
                                      "first_case": f"{case['batch']}/{case['index']}",
                                      "source_chars": len(case["source"]), "summary": outcome.summary()[:300]}
            print(f"\nNEW {sig}\n    -> {d}", flush=True)
        entry["count"] += 1
        if smaller:
            entry["source_chars"] = len(case["source"])

    def _progress(self, final=False):
        now = time.time()
        if not final and now - self.last_print < self.args.progress:
            return
        self.last_print = now
        c = self.counts()
        el = now - self.t0
        rate = (self.done_cases - self.start_cases) / el if el > 0 else 0
        parts = " ".join(f"{k} {c.get(k, 0)}" for k in OUTCOMES)
        print(f"[{self.done_cases}/{self.args.cases}] {el:.0f} s, {rate:.1f} cases/s | {parts} | "
              f"oracle-checked {c.get('oracle-checked', 0)} | distinct failures {len(self.sigs)}", flush=True)

    def _summary(self):
        c = self.counts()
        return {"cases": sum(c[k] for k in OUTCOMES), "counts": {k: c.get(k, 0) for k in OUTCOMES},
                "oracle_checked": c.get("oracle-checked", 0), "wall_seconds": round(self.state["wall_seconds"], 1),
                "seed": self.args.seed, "mode": self.args.mode, "jobs": self.args.jobs,
                "tilegrid": self.state.get("tilegrid"),
                "distinct_failures": sorted(self.sigs.values(), key=lambda e: -e["count"])}


def _describe_tilegrid() -> dict:
    import subprocess
    info = {"python": sys.version.split()[0]}
    try:
        import tilegrid
        src = Path(tilegrid.__file__).resolve().parent.parent
        info["path"] = str(src)
        rev = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        if rev.returncode == 0:
            info["commit"] = rev.stdout.strip()
            dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10)
            info["dirty"] = bool(dirty.stdout.strip())
    except Exception:
        pass
    return info


def _write_repro(d: Path, case: dict, outcome: Outcome):
    (d / "case.tg").write_text(case["source"], encoding="utf-8", errors="surrogatepass")
    np.savez(d / "inputs.npz", **case["inputs"])
    info = {"grid": list(case["grid"]), "params": case.get("params", {}), "check": case.get("check", False),
            "config": case.get("config") or {},
            "origin": case.get("origin", ""), "batch": case["batch"], "index": case["index"],
            "outcome": outcome.to_dict(), "signature": outcome.signature(),
            "run": (f"tilegrid run {d / 'case.tg'} --grid {case['grid'][0]}x{case['grid'][1]} "
                    f"--inputs {d / 'inputs.npz'} --output /tmp/out.npz"
                    + "".join(f" --param {k}={v}" for k, v in case.get("params", {}).items())
                    + (" --check" if case.get("check") else "")
                    + "".join(f" --{k.replace('_', '-')} {v}" for k, v in (case.get("config") or {}).items()))}
    (d / "info.json").write_text(json.dumps(info, indent=1))
    (d / "traceback.txt").write_text(
        f"{outcome.summary()}\n\noracle: {outcome.oracle}\n\n{outcome.traceback}\n{outcome.detail}\n"
        + ("\nwarnings:\n" + "\n".join(outcome.warnings) if outcome.warnings else ""))


# ================================================================ replay / minimize
def load_repro(d: Path) -> dict:
    d = Path(d)
    if d.suffix == ".tg":
        src, grid_path, index = d, d.with_suffix(".json"), d.parent / "index.json"
        if grid_path.exists():
            info = json.loads(grid_path.read_text())
        elif index.exists() and d.name in json.loads(index.read_text()):
            info = json.loads(index.read_text())[d.name]        # tests/fuzz_regressions
        else:
            info = {"grid": [2, 2]}
        npz = d.with_suffix(".npz")
    else:
        src, info, npz = d / "case.tg", json.loads((d / "info.json").read_text()), d / "inputs.npz"
    inputs = {}
    if npz.exists():
        with np.load(npz) as data:
            inputs = {k: data[k] for k in data.files}
    return {"source": src.read_text(encoding="utf-8", errors="surrogatepass"), "grid": tuple(info["grid"]),
            "inputs": inputs, "params": info.get("params", {}), "check": info.get("check", False),
            "config": info.get("config") or None}


def replay(path, timeout, via="api") -> Outcome:
    case = load_repro(Path(path))
    runner = CaseRunner(timeout)
    try:
        return runner.run(case["source"], case["grid"], case["inputs"], case["params"], case["check"], via=via,
                          config=case["config"])
    finally:
        runner.close()


_TOKEN_RE = re.compile(r'"[^"\n]*"|#[^\n]*|\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\d+|'
                       r'[A-Za-z_][A-Za-z_0-9]*|->|\+=|\.\.|\+:|==|!=|<=|>=|//|\s+|.', re.S)


def _tokens_with_space(text):
    """Tokens, each with the white space after it (deleting one never glues two words)."""
    out = []
    for t in _TOKEN_RE.findall(text):
        if t.isspace() and out:
            out[-1] += t
        else:
            out.append(t)
    return out


def minimize(path, timeout, max_runs=400) -> tuple[str, Outcome]:
    """Delta debugging over lines, then tokens: the smallest source with the same signature."""
    case = load_repro(Path(path))
    runner = CaseRunner(timeout)
    runs = {"n": 0}
    try:
        first = runner.run(case["source"], case["grid"], case["inputs"], case["params"], case["check"],
                           config=case["config"])
        want = first.signature()
        if not first.failed:
            return case["source"], first
        print(f"minimizing '{want}'", flush=True)

        def same(text):
            if runs["n"] >= max_runs:
                return False
            runs["n"] += 1
            o = runner.run(text, case["grid"], case["inputs"], case["params"], case["check"], config=case["config"])
            return o.signature() == want

        best = case["source"]
        for split in (lambda s: s.splitlines(keepends=True), _tokens_with_space):
            parts = split(best)
            n = 2
            while len(parts) >= 2 and runs["n"] < max_runs:
                chunk = max(1, len(parts) // n)
                reduced = False
                for i in range(0, len(parts), chunk):
                    trial = parts[:i] + parts[i + chunk:]
                    if trial and same("".join(trial)):
                        parts = trial
                        n = max(n - 1, 2)
                        reduced = True
                        break
                if not reduced:
                    if chunk == 1:
                        break
                    n = min(n * 2, len(parts))
            best = "".join(parts)
        final = runner.run(best, case["grid"], case["inputs"], case["params"], case["check"], config=case["config"])
        return best, final
    finally:
        runner.close()


# ================================================================ main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=1000, help="cases to run in all (default 1000)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--out", default="fuzz-out", help="directory for state, reproducers and the summary")
    p.add_argument("--seed", type=int, default=1, help="seed; the same seed gives the same cases")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds per case before it counts as a hang")
    p.add_argument("--mode", choices=("generate", "mutate", "both"), default="both",
                   help="generate: grammar-aware kernels; mutate: token mutations of the bundled kernels")
    p.add_argument("--batch", type=int, default=500, help="distinct cases per hypothesis run (one seed each)")
    p.add_argument("--via", choices=("api", "cli"), default="api", help="run through tilegrid.api or tilegrid.cli.main")
    p.add_argument("--no-oracle", action="store_true", help="do not compare outputs with fuzzoracle")
    p.add_argument("--progress", type=float, default=15.0, help="seconds between progress lines")
    p.add_argument("--replay", metavar="DIR", help="run one saved reproducer (a bugs/ directory or a .tg) and exit")
    p.add_argument("--label", help="a note on what is fuzzed (e.g. a commit), kept in the state and summary")
    p.add_argument("--report", action="store_true", help="print the counts and failures saved in --out and exit")
    p.add_argument("--minimize", metavar="DIR", help="shrink a saved reproducer; writes case.min.tg beside it")
    args = p.parse_args(argv)
    if args.replay:
        o = replay(args.replay, args.timeout, args.via)
        print(o.summary())
        if o.traceback:
            print(o.traceback[-3000:])
        if o.oracle:
            print("oracle:", o.oracle)
        return 1 if o.failed else 0
    if args.report:
        st = json.loads((Path(args.out) / "state.json").read_text())
        total = collections.Counter()
        for b in st["batches"].values():
            total.update(b["counts"])
        tg = st.get("tilegrid", {})
        print(f"{sum(total[k] for k in OUTCOMES)} cases in {st.get('wall_seconds', 0):.0f} s (tilegrid "
              f"{tg.get('label') or tg.get('commit', '?')}): " + ", ".join(f"{k} {total.get(k, 0)}" for k in OUTCOMES)
              + f"; oracle-checked {total.get('oracle-checked', 0)}")
        for e in sorted(st["signatures"].values(), key=lambda e: -e["count"]):
            print(f"{e['count']:6d}  {e['signature']}\n        {e['dir']}")
        return 0
    if args.minimize:
        text, o = minimize(args.minimize, args.timeout)
        target = Path(args.minimize)
        out = (target / "case.min.tg") if target.is_dir() else target.with_suffix(".min.tg")
        out.write_text(text)
        print(f"{len(text)} characters -> {out}\n{o.summary()}")
        return 0
    Fuzzer(args).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
