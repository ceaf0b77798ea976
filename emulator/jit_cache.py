"""Keeps numba's on-disk cache honest across edits of the numba core.

numba invalidates a cached function only when its own source file changes,
not when a function it calls (and inlined) changes in another file. The
core's modules call each other, so after an edit to one of them the others
could load stale machine code. At import we hash the sources of every module
of the core and, when the hash differs from the one recorded beside the
cache, drop the cache files so everything recompiles once.

A second hazard is numba's own (numba issues 4807, 8578): a cached function
that calls a `parallel=True` one crashes when loaded, if it was compiled in a
process that took the parallel callee from the cache. Here that caller is
scheduler.run_rounds, and the parallel callees are core.compute_phase and
fabric.run_copy_tasks, which a sharded run calls directly. So a sharded run in
a cold cache, then an ordinary run, then a third would segfault. The cache is
therefore dropped too when it holds a parallel callee but not run_rounds: the
next process then compiles them all together.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

def core_modules(here: Path) -> list[Path]:
    """Every module of the package that numba compiles from or that such code reads
    constants from: all of them but the pure-Python layer, so a new module of the
    core cannot be forgotten here."""
    python_only = {"__init__.py", "jit_cache.py", "machine.py", "program.py", "program_check.py", "config.py",
                   "sharding.py"}
    return sorted(p for p in here.glob("*.py") if p.name not in python_only)


PARALLEL_CALLEES = ("core.compute_phase", "fabric.run_copy_tasks")
ROUND_LOOP = "scheduler.run_rounds"


def cache_dir() -> Path:
    """Where numba keeps this package's compiled code: __pycache__ beside the sources,
    or under NUMBA_CACHE_DIR when that is set (numba's own rule decides)."""
    try:
        from numba.core.caching import FunctionCache
        return Path(FunctionCache(cache_dir)._cache_path)
    except Exception:  # a numba without this internal: its default place
        return Path(__file__).parent / "__pycache__"


def _cached(where: Path, qualified_name: str) -> bool:
    return any(where.glob(f"{qualified_name}-*.nbi"))


def cache_is_cold() -> bool:
    """True when the core has no compiled code on disk yet (the next run compiles it)."""
    return not _cached(cache_dir(), "core.compute_phase")


def refresh_stale_cache() -> None:
    here = Path(__file__).parent
    where = cache_dir()
    digest = hashlib.sha256()
    for path in core_modules(here):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    stamp = where / "numba-core.sha256"
    want = digest.hexdigest()
    half_built = not _cached(where, ROUND_LOOP) and any(_cached(where, f) for f in PARALLEL_CALLEES)
    try:
        if stamp.read_text() == want and not half_built:
            return
    except OSError:
        pass
    try:
        where.mkdir(parents=True, exist_ok=True)
        for f in list(where.glob("*.nbi")) + list(where.glob("*.nbc")):
            f.unlink(missing_ok=True)
        stamp.write_text(want)
    except OSError:
        pass  # read-only install: numba falls back to compiling in memory
