"""The physical wafer under the logical grid: spare columns and defective tiles.

A program sees a W x H logical grid with no defects, as the vendor's SDK shows
programs a defect-free rectangle. The physical fabric is wider: after every
`every` logical columns it has one spare column (one after the last group too,
so every grid has at least one). A defect map marks physical tiles bad, with
one of two kinds:

  DEAD_CORE   the core is dead but the router forwards wavelets
  DEAD_TILE   core and router both dead: nothing passes through the tile

repair.py maps the logical grid onto the healthy tiles and gives every logical
link its physical length. docs/scaling.md describes the scheme and its sources.

Defect maps come from `DefectMap.random(...)` (a rate and a seed, reproducible)
or from a text file (`DefectMap.load`), one defect per line:

    # x y kind          physical coordinates; kind is `core` or `tile`
    3 0 core
    17 5 tile
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .machine import EmulatorError

HEALTHY, DEAD_CORE, DEAD_TILE = 0, 1, 2
KIND_NAMES = {DEAD_CORE: "core", DEAD_TILE: "tile"}
KIND_OF_NAME = {v: k for k, v in KIND_NAMES.items()}
DEFAULT_SPARE_EVERY = 16        # 1 spare column per 16: 5.9% of the physical tiles spare (WSE-3: 7.2%)
DEFAULT_DEAD_TILE_SHARE = 0.5   # of random defects, the share whose router is dead too (no public figure)
MAX_DEFECT_FILE_BYTES = 64 << 20


class DefectError(EmulatorError):
    """A defect map that cannot be read, or that the spares cannot repair."""


@dataclass(frozen=True)
class SpareLayout:
    """One spare column after every `every` logical columns (and after the last group)."""
    every: int = DEFAULT_SPARE_EVERY

    def __post_init__(self):
        if isinstance(self.every, bool) or not isinstance(self.every, (int, np.integer)) or not 1 <= self.every <= 4096:
            raise DefectError(f"the spare layout needs 1..4096 logical columns per spare column, got {self.every!r}")

    def spares(self, width: int) -> int:
        return -(-width // self.every)

    def physical_width(self, width: int) -> int:
        return width + self.spares(width)

    def home_columns(self, width: int) -> np.ndarray:
        """int64 [width]: the physical column each logical column takes on a perfect fabric."""
        x = np.arange(width, dtype=np.int64)
        return x + x // self.every

    def spare_columns(self, width: int) -> np.ndarray:
        g = np.arange(self.spares(width), dtype=np.int64)
        return np.minimum(g * (self.every + 1) + self.every, self.physical_width(width) - 1)


@dataclass
class DefectMap:
    """kind: int8 [physical height, physical width], HEALTHY, DEAD_CORE or DEAD_TILE."""
    kind: np.ndarray
    source: str = "none"

    @property
    def shape(self) -> tuple[int, int]:
        return self.kind.shape

    @classmethod
    def perfect(cls, width: int, height: int) -> "DefectMap":
        return cls(np.zeros((height, width), dtype=np.int8), "perfect")

    @classmethod
    def random(cls, width: int, height: int, rate: float, seed: int = 0,
               dead_tile_share: float = DEFAULT_DEAD_TILE_SHARE) -> "DefectMap":
        """round(rate * tiles) distinct physical tiles, each a dead tile with probability
        dead_tile_share and a dead core otherwise; the same seed gives the same map."""
        if not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
            raise DefectError(f"the defect rate must be a fraction in [0, 1), got {rate!r}")
        if not 0.0 <= dead_tile_share <= 1.0:
            raise DefectError(f"the dead-tile share must be in [0, 1], got {dead_tile_share!r}")
        tiles = width * height
        rng = np.random.default_rng(seed)
        n = int(round(rate * tiles))
        where = rng.choice(tiles, size=n, replace=False) if n else np.zeros(0, dtype=np.int64)
        kinds = np.where(rng.random(n) < dead_tile_share, DEAD_TILE, DEAD_CORE).astype(np.int8)
        kind = np.zeros(tiles, dtype=np.int8)
        kind[where] = kinds
        return cls(kind.reshape(height, width), f"random: rate {rate:g}, seed {seed}")

    @classmethod
    def load(cls, path: str, width: int, height: int) -> "DefectMap":
        """Read the text format of the module docstring for a width x height physical fabric."""
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_DEFECT_FILE_BYTES + 1)
        except FileNotFoundError:
            raise DefectError(f"defect map '{path}' does not exist") from None
        except IsADirectoryError:
            raise DefectError(f"defect map '{path}' is a directory") from None
        except OSError as exc:
            raise DefectError(f"cannot read defect map '{path}': {exc.strerror}") from None
        if len(data) > MAX_DEFECT_FILE_BYTES:
            raise DefectError(f"defect map '{path}' is larger than {MAX_DEFECT_FILE_BYTES >> 20} MiB")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DefectError(f"defect map '{path}' is not UTF-8 text (byte {exc.start})") from None
        kind = np.zeros((height, width), dtype=np.int8)
        for lineno, line in enumerate(text.splitlines(), 1):
            body = line.split("#", 1)[0]
            fields = body.split()
            if not fields:
                continue

            def fail(i, what):
                col = _field_column(body, i) if i < len(fields) else len(body.rstrip()) + 1
                raise DefectError(f"{path}:{lineno}:{col}: error: {what}")
            if len(fields) != 3:
                fail(min(len(fields), 3), f"expected 'x y kind' (kind: core or tile), got {len(fields)} field(s)")
            coords = []
            for i, (name, limit) in enumerate((("x", width), ("y", height))):
                try:
                    v = int(fields[i])
                except ValueError:
                    fail(i, f"{name} must be an integer, got {fields[i]!r}")
                if not 0 <= v < limit:
                    fail(i, f"{name} = {v} is off the physical fabric (0..{limit - 1}; "
                            f"it is {width}x{height} with its spare columns)")
                coords.append(v)
            if fields[2] not in KIND_OF_NAME:
                fail(2, f"kind must be 'core' (dead core, router forwards) or 'tile' (dead router too), "
                        f"got {fields[2]!r}")
            x, y = coords
            if kind[y, x]:
                fail(0, f"tile ({x}, {y}) is listed twice")
            kind[y, x] = KIND_OF_NAME[fields[2]]
        return cls(kind, f"file {path}")

    def save(self, path: str) -> None:
        ys, xs = np.nonzero(self.kind)
        lines = [f"# tilegrid defect map: physical {self.kind.shape[1]}x{self.kind.shape[0]}, x y kind"]
        lines += [f"{x} {y} {KIND_NAMES[int(self.kind[y, x])]}" for y, x in zip(ys, xs)]
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def counts(self) -> dict:
        return {"dead_cores": int(np.count_nonzero(self.kind == DEAD_CORE)),
                "dead_tiles": int(np.count_nonzero(self.kind == DEAD_TILE))}


def _field_column(body: str, index: int) -> int:
    """1-based column where whitespace-separated field `index` starts."""
    col, seen, inside = 0, -1, False
    for col, ch in enumerate(body):
        if not ch.isspace() and not inside:
            seen += 1
            if seen == index:
                return col + 1
        inside = not ch.isspace()
    return col + 1
