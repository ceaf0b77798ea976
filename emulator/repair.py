"""Repair: the logical grid mapped onto the healthy tiles of a defective fabric.

The scheme follows the first wafer's (Hot Chips 31, 2019): a defective core is
replaced by displacing the cores of its row by one position toward the nearest
spare, and the fabric's redundant links carry each logical link between the
displaced cores, diagonally where a row and the next are displaced differently.
So a program keeps its defect-free logical rectangle and its routes; what
changes is how many physical hops each logical link takes.

The mapping, row by row: logical column x of row y goes to physical column
p_y(x), strictly increasing along the row, on a tile whose core works, and
minimising the total displacement sum_x |p_y(x) - home(x)| (home: the column it
takes on a perfect fabric), with no tile moved more than `max_shift` columns.
With one spare per group that is the wafer's displacement by one toward the
nearest spare; with several defects in a group the tiles between them move by
more. A row is solved by dynamic programming over x, all rows at once.

Physical length of each logical link (in router hops):
  east-west    p_y(x+1) - p_y(x): a tile skipped in between forwards through
               its router (dead core), or, when its router is dead too, through
               the router above or below it over two diagonal links; either way
               one hop per column
  north-south  max(1, |p_{y+1}(x) - p_y(x)|): straight, or one diagonal link
               and a jog along the row
The timing models charge a wavelet each hop (latency, and one router buffer per
hop for back-pressure). What they do not model is contention on the redundant
links: two logical links never share one in this model.

Repair fails, naming where, when a row has more defects than the spares within
reach, or a dead router has dead routers both above and below it (nothing can
route around it).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .defects import DEAD_CORE, DEAD_TILE, HEALTHY, DefectError, DefectMap, SpareLayout
from .isa import PORT_E, PORT_N, PORT_S, PORT_W

ROWS_PER_BLOCK = 256   # rows solved together: bounds the back-pointer array to W * 256 * (2D + 1) bytes
INF = np.int64(1) << 40


@dataclass
class RepairedFabric:
    """The logical grid on its physical fabric.

    column     int64 [H, W]  physical column of logical tile (x, y) (rows are not moved)
    link_hops  int64 [W*H, 4] physical hops of each logical tile's outgoing link N, E, S, W
                             (1 on a perfect fabric, and for links off the grid)
    """
    width: int
    height: int
    layout: SpareLayout
    defects: DefectMap
    column: np.ndarray
    link_hops: np.ndarray
    detours: list = field(default_factory=list)   # (x, y) of dead routers passed over through another row

    @property
    def physical_width(self) -> int:
        return self.defects.shape[1]

    @property
    def perfect(self) -> bool:
        return not self.defects.kind.any()

    def displaced(self) -> int:
        """Logical tiles not on their home column."""
        return int(np.count_nonzero(self.column != self.layout.home_columns(self.width)[None, :]))

    def spare_mask(self) -> np.ndarray:
        """bool [physical width]: the spare columns."""
        spare = np.zeros(self.physical_width, dtype=bool)
        spare[self.layout.spare_columns(self.width)] = True
        return spare

    def spares_used(self) -> int:
        """Spare-column tiles that host a logical tile."""
        return int(np.count_nonzero(self.spare_mask()[self.column]))

    def link_extra_hops(self) -> tuple[int, int]:
        """(sum over the grid's directed logical links of hops - 1, the longest link)."""
        on = self._on_grid()
        return int((self.link_hops[on] - 1).sum()), int(self.link_hops[on].max(initial=1))

    def _on_grid(self) -> np.ndarray:
        t = np.arange(self.width * self.height)
        x, y = t % self.width, t // self.width
        return np.stack([y > 0, x < self.width - 1, y < self.height - 1, x > 0], axis=1)

    def summary(self) -> dict:
        counts = self.defects.counts()
        extra, longest = self.link_extra_hops()
        kind = self.defects.kind
        in_use = np.zeros(kind.shape, dtype=bool)
        in_use[np.arange(self.height)[:, None], self.column] = True
        return {"logical": f"{self.width}x{self.height}", "physical": f"{self.physical_width}x{self.height}",
                "spare_columns": self.layout.spares(self.width), "spare_every": self.layout.every,
                "defects": counts["dead_cores"] + counts["dead_tiles"], **counts,
                "defect_source": self.defects.source,
                "healthy_unused": int(np.count_nonzero((kind == HEALTHY) & ~in_use)),
                "spares_used": self.spares_used(), "displaced_tiles": self.displaced(),
                "extra_link_hops": extra, "longest_link_hops": longest, "detours": len(self.detours)}

    def summary_text(self) -> str:
        s = self.summary()
        return (f"fabric: logical {s['logical']} on physical {s['physical']} ({s['spare_columns']} spare columns, "
                f"one per {s['spare_every']}); defects: {s['defects']} ({s['dead_cores']} dead cores, "
                f"{s['dead_tiles']} dead tiles; {s['defect_source']}); repair: {s['displaced_tiles']} tiles "
                f"displaced, {s['spares_used']} spare tiles used, {s['extra_link_hops']} extra link hops "
                f"(longest link {s['longest_link_hops']} hops), {s['detours']} dead routers bypassed")

    def physical_path(self, t: int, d: int) -> list[str]:
        """The routers logical tile t's outgoing link d (N, E, S, W) passes, from its
        physical tile to its neighbour's, as text: straight through a forwarding router,
        round a dead one through the router above or below it, or diagonally."""
        x, y = t % self.width, t // self.width
        dx, dy = ((0, -1), (1, 0), (0, 1), (-1, 0))[d]
        nx, ny = x + dx, y + dy
        if not (0 <= nx < self.width and 0 <= ny < self.height):
            return []
        a, b = int(self.column[y, x]), int(self.column[ny, nx])
        kind = self.defects.kind
        steps = [f"({a}, {y})"]
        if dy == 0:
            step = 1 if b > a else -1
            for c in range(a + step, b, step):
                if kind[y, c] == DEAD_TILE:
                    by = y - 1 if y > 0 and kind[y - 1, c] != DEAD_TILE else y + 1
                    steps.append(f"({c}, {by}) round the dead tile ({c}, {y})")
                else:
                    what = "dead core" if kind[y, c] == DEAD_CORE else "unused tile"
                    steps.append(f"({c}, {y}) {what}, forwards")
        else:
            jog = 1 if b > a else -1
            c = a
            if b != a:
                c = a + jog
                steps.append(f"({c}, {ny}) diagonal")
            while c != b:
                c += jog
                if c != b:
                    steps.append(f"({c}, {ny}) along the row")
        steps.append(f"({b}, {ny})")
        return steps

    def format_map(self, max_rows: int = 32) -> str:
        """The logical-to-physical map of the rows that differ from a perfect fabric,
        and every logical link longer than one hop, with its physical path."""
        home = self.layout.home_columns(self.width)
        lines = [self.summary_text(), "rows that moved (logical x: home column -> physical column):"]
        moved = np.nonzero((self.column != home[None, :]).any(axis=1))[0]
        for y in moved[:max_rows]:
            shifts = []
            for x in np.nonzero(self.column[y] != home)[0]:
                shifts.append(f"{x}: {home[x]}->{self.column[y, x]}")
            dead = np.nonzero(self.defects.kind[y])[0]
            lines.append(f"  row {y}: dead at physical " + ", ".join(
                f"{c}({'core' if self.defects.kind[y, c] == DEAD_CORE else 'tile'})" for c in dead)
                + "; moved " + ", ".join(shifts))
        if len(moved) > max_rows:
            lines.append(f"  ... {len(moved) - max_rows} more rows")
        long_links = np.argwhere(self.link_hops > 1)
        names = "NESW"
        lines.append(f"logical links longer than one hop: {len(long_links)}")
        for t, d in long_links[:4 * max_rows]:
            x, y = t % self.width, t // self.width
            path = " -> ".join(self.physical_path(int(t), int(d)))
            lines.append(f"  ({x}, {y}) {names[d]}: {self.link_hops[t, d]} hops: {path}")
        if len(long_links) > 4 * max_rows:
            lines.append(f"  ... {len(long_links) - 4 * max_rows} more")
        return "\n".join(lines)


def perfect_fabric(width: int, height: int, layout: SpareLayout | None = None) -> RepairedFabric:
    layout = layout or SpareLayout()
    return repair(width, height, DefectMap.perfect(layout.physical_width(width), height), layout)


def repair(width: int, height: int, defects: DefectMap, layout: SpareLayout | None = None,
           max_shift: int | None = None) -> RepairedFabric:
    layout = layout or SpareLayout()
    wp = layout.physical_width(width)
    if defects.shape != (height, wp):
        raise DefectError(f"the defect map is for a {defects.shape[1]}x{defects.shape[0]} fabric, but a "
                          f"{width}x{height} grid with one spare column per {layout.every} needs {wp}x{height}")
    kind = defects.kind
    D = max_shift if max_shift is not None else layout.every + 1
    home = layout.home_columns(width)
    column = np.empty((height, width), dtype=np.int64)
    for y0 in range(0, height, ROWS_PER_BLOCK):
        column[y0:y0 + ROWS_PER_BLOCK] = _map_rows(kind[y0:y0 + ROWS_PER_BLOCK] != HEALTHY, home, D, y0)
    detours = _check_dead_routers(kind, column)
    return RepairedFabric(width, height, layout, defects, column, _link_hops(column), detours)


def _map_rows(bad: np.ndarray, home: np.ndarray, D: int, y0: int) -> np.ndarray:
    """Physical columns [rows, W] of the minimal-displacement monotone assignment."""
    rows, wp = bad.shape
    width = len(home)
    shifts = np.arange(-D, D + 1, dtype=np.int64)
    S = len(shifts)
    back = np.zeros((width, rows, S), dtype=np.int8)   # argmin predecessor state, per (x, row, state)
    r = np.arange(rows)[:, None]

    def allowed(x):
        p = home[x] + shifts
        inside = (p >= 0) & (p < wp)
        ok = np.zeros((rows, S), dtype=bool)
        ok[:, inside] = ~bad[:, p[inside]]
        return ok
    cost = np.where(allowed(0), np.abs(shifts)[None, :], INF)
    for x in range(1, width):
        gap = int(home[x] - home[x - 1])
        # predecessor s' must satisfy home[x-1] + s' < home[x] + s, i.e. s' <= s + gap - 1
        pmin = np.minimum.accumulate(cost, axis=1)
        is_new = np.ones((rows, S), dtype=bool)
        is_new[:, 1:] = cost[:, 1:] < pmin[:, :-1]
        parg = np.maximum.accumulate(np.where(is_new, np.arange(S)[None, :], 0), axis=1)
        j = np.minimum(np.arange(S) + gap - 1, S - 1)
        best, arg = pmin[:, j], parg[:, j]
        cost = np.where(allowed(x) & (best < INF), best + np.abs(shifts)[None, :], INF)
        back[x] = arg
    end = np.argmin(cost, axis=1)
    failed = cost[np.arange(rows), end] >= INF
    if failed.any():
        y = int(np.nonzero(failed)[0][0])
        dead = np.nonzero(bad[y])[0]
        raise DefectError(
            f"cannot repair row {y0 + y}: it has {len(dead)} defective tiles (physical columns "
            f"{', '.join(map(str, dead[:12]))}{', ...' if len(dead) > 12 else ''}) and the spare columns "
            f"within {D} positions cannot take their places; use more spares (--spare-every) or fewer defects")
    state = np.empty((rows, width), dtype=np.int64)
    state[:, -1] = end
    for x in range(width - 1, 0, -1):
        state[:, x - 1] = back[x][r[:, 0], state[:, x]]
    return home[None, :] + shifts[state]


def _check_dead_routers(kind: np.ndarray, column: np.ndarray) -> list:
    """Dead routers that an east-west link passes over, each of which must have a live
    router above or below it to detour through."""
    height, wp = kind.shape
    dead_router = kind == DEAD_TILE
    passed = []
    for y, c in zip(*np.nonzero(dead_router)):
        if not column[y, 0] < c < column[y, -1]:
            continue  # no link of the row crosses it
        up = y > 0 and not dead_router[y - 1, c]
        down = y < height - 1 and not dead_router[y + 1, c]
        if not (up or down):
            raise DefectError(f"cannot repair: the dead tile at physical ({c}, {y}) has no live router above or "
                              "below it, so the links of its row cannot route around it")
        passed.append((int(c), int(y)))
    return passed


def _link_hops(column: np.ndarray) -> np.ndarray:
    height, width = column.shape
    hops = np.ones((height, width, 4), dtype=np.int64)
    east = column[:, 1:] - column[:, :-1]
    hops[:, :-1, PORT_E] = east
    hops[:, 1:, PORT_W] = east
    south = np.maximum(1, np.abs(column[1:, :] - column[:-1, :]))
    hops[:-1, :, PORT_S] = south
    hops[1:, :, PORT_N] = south
    return hops.reshape(height * width, 4)
