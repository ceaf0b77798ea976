"""A progress bar on stderr for runs longer than a couple of seconds.

tqdm draws it: it is small, handles terminal widths and rates, and keeps its
output off a stream that is not a terminal. The bar appears only when stderr
is a terminal and the run has already taken SHOW_AFTER seconds, so quick runs
and CI logs stay clean.
"""
from __future__ import annotations

import sys
import time

SHOW_AFTER = 2.0  # seconds


class RunProgress:
    """A callable for Emulator.run(progress=...): (rounds, latest tile clock)."""

    def __init__(self, what: str, stream=None):
        self.what = what
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.perf_counter()
        self.bar = None
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, rounds: int, clock: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            if time.perf_counter() - self.started < SHOW_AFTER:
                return
            from tqdm import tqdm
            self.bar = tqdm(desc=self.what, unit=" rounds", file=self.stream, leave=False, dynamic_ncols=True)
        self.bar.n = rounds
        self.bar.set_postfix_str(f"machine cycle {clock:,}")  # redraws

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
