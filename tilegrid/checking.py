"""--check: outputs against the ordered reference (raw bits) and a float64 truth."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tilegrid.emulator.program import Program, TensorIO


@dataclass
class CheckReport:
    bit_exact: bool
    within_bound: bool
    lines: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.bit_exact and self.within_bound

    def summary(self) -> str:
        return "\n".join(self.lines)


def tile_of(io: TensorIO, index: tuple, width: int) -> tuple[tuple[int, int], tuple]:
    """The tile holding a global element (its canonical replica) and the local index."""
    tx, ty = tuple(io.region[:2]) if io.region else (0, 0)
    local = []
    for i, axis in enumerate(io.axes):
        blk = io.block[i]
        if axis == "x":
            tx += index[i] // blk
        elif axis == "y":
            ty += index[i] // blk
        local.append(index[i] % blk)
    return (tx, ty), tuple(local)


def _fmt_value(v: np.float32) -> str:
    return f"0x{int(np.float32(v).view(np.uint32)):08x} ({float(v)!r})"


def check_outputs(program: Program, outputs: dict, expected: dict, truth: dict, bounds: dict,
                  replica_mismatch=None) -> CheckReport:
    report = CheckReport(True, True)
    ios = {io.name: io for io in program.io if io.role == "output"}
    for name, want in expected.items():
        got = np.asarray(outputs[name], dtype=np.float32)
        want = np.asarray(want, dtype=np.float32)
        differ = got.view(np.uint32) != want.view(np.uint32)
        if np.any(differ):
            report.bit_exact = False
            idx = tuple(int(i) for i in np.argwhere(differ)[0])
            (tx, ty), local = tile_of(ios[name], idx, program.config.width)
            report.lines.append(
                f"MISMATCH {name}{list(idx)} on tile ({tx}, {ty}) at local {list(local)}: got {_fmt_value(got[idx])}, "
                f"expected {_fmt_value(want[idx])}; {int(differ.sum())} of {differ.size} values differ")
        else:
            report.lines.append(f"bit-exact: {name} matches the ordered reference in all {got.size} values")
        if replica_mismatch is not None:
            tile = replica_mismatch(ios[name])
            if tile is not None:
                report.bit_exact = False
                report.lines.append(f"MISMATCH {name}: the replica on tile {tile} differs from tile (0, 0)'s "
                                    "row/column copy")
    for name, exact in truth.items():
        got = np.asarray(outputs[name], dtype=np.float64)
        exact = np.asarray(exact, dtype=np.float64)
        # Where float64 itself is NaN or infinite (a NaN input, sqrt of a negative, an
        # overflow), f32 must give the same special value; elsewhere it must be finite
        # and within the bound (a NaN or inf there counts as bad).
        special = ~np.isfinite(exact)
        same_special = special & ((np.isnan(exact) & np.isnan(got)) | (exact == got))
        err = np.where(special, 0.0, np.abs(got - np.where(special, 0.0, exact)))
        bound = bounds[name]
        bad = np.where(special, ~same_special, ~(err <= bound))
        ratio = err / np.maximum(bound, np.finfo(np.float64).tiny)
        worst = float(np.max(np.where(special, 0.0, ratio))) if err.size else 0.0
        if np.any(bad):
            report.within_bound = False
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            report.lines.append(f"FLOAT64 CHECK FAILED {name}{list(idx)}: got {float(got[idx])!r}, float64 "
                                f"{float(exact[idx])!r}, error {float(err[idx]):.3g} > bound {float(bound[idx]):.3g}")
        else:
            report.lines.append(f"float64: {name} within the f32 error bound (worst {worst:.3f} of the bound)")
    return report
