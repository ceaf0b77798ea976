"""What a name in a kernel stands for during checking."""
from __future__ import annotations

from .diagnostics import Span
from .spatial_ir import View


class Sym:
    """What a name stands for."""

    def __init__(self, kind: str, value, span: Span | None = None, dist: "Dist | None" = None):
        self.kind = kind       # int | float | rint | tensor
        self.value = value     # python int / float, IExpr, or the tile's View of a tensor
        self.span = span
        self.dist = dist       # for distributed tensors: the global shape and grid axes


class Dist:
    """A distributed tensor: the global shape, the grid axis of each dim, the tile's block."""

    def __init__(self, shape: tuple, axes: tuple, view: View):
        self.shape, self.axes, self.view = tuple(shape), tuple(axes), view

    def describe(self) -> str:
        return "block(" + ", ".join(self.axes) + ")"
