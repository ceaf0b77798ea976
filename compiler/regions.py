"""Regions: rectangles of the grid that statements run on, and transfers between them.

A kernel that declares regions is MPMD. Each statement runs on one region:
the one its `on NAME` names, else the region of the tensor it writes. Inside a
region, W and H of a called kernel are the region's size and tx, ty count from
its corner, so a kernel compiled for a 4x4 grid runs unchanged on any 4x4
region. Every tensor lives on one region: the one its declaration names with
`on`, else the region of the first placed statement that names it.

`dst = src` between tensors on two regions is a transfer: every tile of src's
region sends its block over the fabric to the tile at the same place in dst's
region. passes/split_regions.py turns the checked kernel into one SPMD kernel
per region; passes/link_regions.py joins their programs into one. A mixin of
the Checker.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from . import ast
from .diagnostics import CompileError
from .spatial_ir import Transfer, fmt_shape


@dataclass(frozen=True)
class Region:
    """Tiles [x0, x1) x [y0, y1) of the grid."""
    name: str
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def describe(self) -> str:
        return f"'{self.name}' (tiles x {self.x0}..{self.x1 - 1}, y {self.y0}..{self.y1 - 1})"


def _statements(stmts):
    """Every statement, those inside loops and ifs included, in source order."""
    for s in stmts:
        yield s
        if isinstance(s, ast.For):
            yield from _statements(s.body)
        elif isinstance(s, ast.If):
            yield from _statements(s.then)
            yield from _statements(s.orelse)


def _names_in(node):
    if isinstance(node, ast.Name):
        yield node.id
    elif isinstance(node, ast.LValue):
        yield node.name
    if isinstance(node, ast.Node):
        for value in vars(node).values():
            for item in value if isinstance(value, list) else value.values() if isinstance(value, dict) else [value]:
                if isinstance(item, ast.Node):
                    yield from _names_in(item)


class Regions:
    # ----------------------------------------------------------- declaring
    def _declare_regions(self, body: list) -> None:
        """Evaluate the kernel's region declarations (they may use sizes and parameters)."""
        regions: dict[str, Region] = {}
        for s in body:
            if not isinstance(s, ast.RegionDecl):
                continue
            for name, span in s.names:
                if name in regions:
                    raise CompileError(f"region '{name}' is declared twice", span)
                self._check_new_name(name, span)
            if s.kind == "tiles":
                x0, x1, y0, y1 = (self._const(e, "a region bound") for e in s.bounds)
                new = [Region(s.names[0][0], x0, y0, x1, y1)]
                if not (0 <= x0 < x1 <= self.W and 0 <= y0 < y1 <= self.H):
                    raise CompileError(f"region '{new[0].name}' is tiles({x0}:{x1}, {y0}:{y1}); it must be a "
                                       f"non-empty rectangle inside the {self.W}x{self.H} grid", s.span)
            else:
                axis, axis_span = s.axis
                if axis not in ("x", "y"):
                    raise CompileError(f"split(...) takes grid axis x or y, not '{axis}'", axis_span)
                n, size = len(s.names), self.W if axis == "x" else self.H
                if size % n:
                    raise CompileError(f"split({axis}) into {n} regions needs the grid's "
                                       f"{'width' if axis == 'x' else 'height'} ({size}) to be a multiple "
                                       f"of {n}", s.span)
                band = size // n
                new = [Region(name, i * band, 0, (i + 1) * band, self.H) if axis == "x" else
                       Region(name, 0, i * band, self.W, (i + 1) * band) for i, (name, _) in enumerate(s.names)]
            for r in new:
                for other in regions.values():
                    if r.x0 < other.x1 and other.x0 < r.x1 and r.y0 < other.y1 and other.y0 < r.y1:
                        raise CompileError(f"region {r.describe()} overlaps region {other.describe()}", s.span)
                regions[r.name] = r
        self.shared.regions = regions
        if regions:
            self._infer_tensor_regions(body)

    def _infer_tensor_regions(self, body: list) -> None:
        """A tensor declared without `on` lives on the region of the first statement
        with an `on` that names it (or on the only region)."""
        k = self.k
        decls = [p for p in k.params + k.outputs if isinstance(p, ast.TensorDecl)] + \
                [s.decl for s in _statements(body) if isinstance(s, ast.TensorLocal)]
        placed = {d.name: d.placement.region for d in decls if d.placement is not None}
        for s in _statements(body):
            if isinstance(s, (ast.Assign, ast.Accumulate)) and s.placement is not None:
                for name in _names_in(s):
                    placed.setdefault(name, s.placement.region)
        only = next(iter(self.shared.regions)) if len(self.shared.regions) == 1 else None
        self.shared.tensor_regions = {d.name: placed.get(d.name, only) for d in decls}

    def _region(self, name: str, span) -> Region:
        region = self.shared.regions.get(name)
        if region is None:
            known = ", ".join(self.shared.regions) or "none are declared"
            raise CompileError(f"unknown region '{name}' ({known})", span)
        return region

    def _home(self, decl: ast.TensorDecl) -> Region:
        """The region a top-level tensor lives on."""
        if decl.placement is not None:
            return self._region(decl.placement.region, decl.placement.span)
        name = self.shared.tensor_regions.get(decl.name)
        if name is None:
            raise CompileError(f"where does '{decl.name}' live? Say `on REGION` in its declaration (regions: "
                               f"{', '.join(self.shared.regions)})", decl.span)
        return self._region(name, decl.span)

    @property
    def placing(self) -> bool:
        """Whether this checker places statements on regions: the top-level kernel of a
        program that declares them (called kernels run inside their caller's region)."""
        return bool(self.shared.regions) and not self.prefix

    # ----------------------------------------------------------- running on one
    @contextmanager
    def _on(self, region: Region):
        """Check and elaborate on `region`: its size is the grid, its corner the origin.
        The ops and buffers this makes are tagged with it."""
        saved = self.W, self.H, self.ranges["tx"], self.ranges["ty"], self.shared.region
        self.W, self.H = region.width, region.height
        self.ranges["tx"], self.ranges["ty"] = (0, region.width - 1), (0, region.height - 1)
        self.shared.region = region
        first_op, first_buffer = len(self.ops), len(self.buffers)
        try:
            yield
        finally:
            self.W, self.H, self.ranges["tx"], self.ranges["ty"], self.shared.region = saved
        for op in self.ops[first_op:]:
            op.region = region.name
        for b in self.buffers[first_buffer:]:
            b.region = b.region or region.name

    def _statement_region(self, s) -> Region:
        if s.placement is not None:
            return self._region(s.placement.region, s.placement.span)
        sym = self._find(s.target.name)
        if sym is not None and sym.kind == "tensor" and sym.value.buffer.region:
            return self.shared.regions[sym.value.buffer.region]
        raise CompileError(f"where does this run? Add `on REGION` (regions: {', '.join(self.shared.regions)})",
                           s.span)

    def _tensor_region(self, node) -> str | None:
        """The region of the distributed tensor a Name, Subscript or LValue names, if any."""
        name = node.name if isinstance(node, ast.LValue) else node.id if isinstance(node, ast.Name) else \
            node.base.id if isinstance(node, ast.Subscript) and isinstance(node.base, ast.Name) else None
        sym = self._find(name) if name else None
        if sym is None or sym.kind != "tensor" or sym.dist is None:
            return None
        return sym.value.buffer.region

    def _placed_stmt(self, s) -> None:
        """One top-level statement of a kernel with regions."""
        if isinstance(s, ast.RegionDecl):
            if not any(s is top for top in self.k.body):
                raise CompileError("regions are declared at the top of the kernel's body, not in a loop", s.span)
            return  # declared before the body
        if isinstance(s, ast.TensorLocal):
            with self._on(self._home(s.decl)):
                self._unplaced_stmt(s)
            return
        if isinstance(s, (ast.Assign, ast.Accumulate)):
            if isinstance(s, ast.Assign) and isinstance(s.value, (ast.Name, ast.Subscript)):
                src, dst = self._tensor_region(s.value), self._tensor_region(s.target)
                if src and dst and src != dst:
                    self._transfer(s)
                    return
            region = self._statement_region(s)
            home = self._tensor_region(s.target)
            if home and home != region.name:
                raise CompileError(f"'{s.target.name}' lives on region '{home}'; a statement on '{region.name}' "
                                   f"cannot write it (compute into a tensor on '{region.name}', then transfer "
                                   f"it with `{s.target.name} = that`)", s.span)
            with self._on(region):
                self._unplaced_stmt(s)
            return
        if isinstance(s, (ast.LocalDecl, ast.If)):
            what = "a `local` block" if isinstance(s, ast.LocalDecl) else "an `if`"
            raise CompileError(f"{what} needs tiles to run on: in a kernel with regions, put it in a kernel "
                               "and call that on a region", s.span)
        self._unplaced_stmt(s)  # const, require, for: no tiles of their own

    def _transfer(self, s: ast.Assign) -> None:
        dst, src = self._dist_value(s.target), self._dist_value(s.value)
        a = self.shared.regions[src.view.buffer.region]
        if src.view.buffer.dtype != "f32":
            with self._on(a):  # widened on the sending region, which holds the halves
                src = self._widened_dist(src, s.span)
        b = self.shared.regions[dst.view.buffer.region]
        if s.placement is not None and s.placement.region not in (a.name, b.name):
            raise CompileError(f"a transfer from '{a.name}' to '{b.name}' runs on both; it cannot be placed on "
                               f"'{s.placement.region}'", s.placement.span)
        if dst.shape != src.shape:
            raise CompileError(f"shape mismatch: {fmt_shape(src.shape)} into {fmt_shape(dst.shape)}", s.span)
        if dst.axes != src.axes:
            raise CompileError(f"a transfer keeps the layout: {src.describe()} on '{a.name}' into "
                               f"{dst.describe()} on '{b.name}'; redistribute on one region first", s.span)
        if (a.width, a.height) != (b.width, b.height):
            raise CompileError(f"a transfer goes tile to tile between regions of one size: {a.describe()} is "
                               f"{a.width}x{a.height}, {b.describe()} is {b.width}x{b.height}", s.span)
        if (a.y0, a.y1) != (b.y0, b.y1) and (a.x0, a.x1) != (b.x0, b.x1):
            raise CompileError(f"a transfer runs straight along rows or columns: {a.describe()} and "
                               f"{b.describe()} share neither their rows nor their columns", s.span)
        if dst.view.shape != src.view.shape:  # pragma: no cover - equal layouts on equal regions
            raise CompileError("the blocks of a transfer differ", s.span)
        self.shared.transfers += 1
        self._emit(Transfer(dst.view, src.view, a.name, b.name, self.shared.transfers - 1), s.span)
