"""Run budgets: every run ends, and Ctrl-C is seen within a fraction of a second.

Three budgets bound a run; running out stops it with BudgetError, naming the
tiles still running and where they are:
  instructions  per tile (--max-instructions)
  cycles        per tile clock, in the timing model (--max-cycles)
  rounds        compute/fabric phase pairs of the whole run (--max-rounds)

Separately, the numba loop hands control back to Python about every 0.1 s (a
slice of instructions and cycles per tile, a number of rounds per call, both
paced by the driver from the wall clock) so that a pending Ctrl-C is raised. A slice boundary changes nothing: a tile cut
short resumes in the same compute phase before any transfer is matched, so
values, cycles and stats are those of an uncut run.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

# indices into the packed budget vector the numba core reads
B_INSTRUCTIONS, B_CYCLES, B_ROUNDS, B_SLICE_INSTRUCTIONS, B_SLICE_CYCLES, B_ROUNDS_PER_CALL = range(6)
# indices into the progress vector the scheduler keeps between calls
P_ROUNDS, P_RESUMING, P_RETIRED = range(3)

# The first call into the core returns within about this much work; the
# driver then doubles or halves the slices to keep calls near 0.1 s.
_SLICE_INSTRUCTIONS = 1 << 20
_SLICE_CYCLES = 1 << 25


@dataclass(frozen=True)
class RunBudget:
    instructions: int = 10_000_000        # per tile
    cycles: int = 10_000_000_000          # per tile: 10 s of machine time at 1 GHz
    rounds: int = 10_000_000

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value < 1 << 62:
                raise ValueError(f"run budget {f.name} must be a positive integer below 2^62, got {value!r}")

    def vector(self, tiles: int) -> np.ndarray:
        """The packed form for the numba core; slices shrink as the grid grows."""
        return np.array([self.instructions, self.cycles, self.rounds,
                         max(64, _SLICE_INSTRUCTIONS // tiles), max(1 << 16, _SLICE_CYCLES // tiles), 1],
                        dtype=np.int64)
