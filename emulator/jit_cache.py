"""Keeps numba's on-disk cache honest across edits of the numba core.

numba invalidates a cached function only when its own source file changes,
not when a function it calls (and inlined) changes in another file. The
core's modules call each other, so after an edit to one of them the others
could load stale machine code. At import we hash the sources of every module
of the core and, when the hash differs from the one recorded beside the
cache, drop the cache files so everything recompiles once.
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


def cache_is_cold() -> bool:
    """True when the core has no compiled code on disk yet (the next run compiles it)."""
    cache_dir = Path(__file__).parent / "__pycache__"
    return not any(cache_dir.glob("core.compute_phase-*.nbi"))


def refresh_stale_cache() -> None:
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for path in core_modules(here):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    stamp = here / "__pycache__" / "numba-core.sha256"
    want = digest.hexdigest()
    try:
        if stamp.read_text() == want:
            return
    except OSError:
        pass
    cache_dir = here / "__pycache__"
    try:
        cache_dir.mkdir(exist_ok=True)
        for f in list(cache_dir.glob("*.nbi")) + list(cache_dir.glob("*.nbc")):
            f.unlink(missing_ok=True)
        stamp.write_text(want)
    except OSError:
        pass  # read-only install: numba falls back to compiling in memory
