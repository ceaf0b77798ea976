"""The kernel language's syntax tree: plain dataclasses carrying source spans."""
from __future__ import annotations

from dataclasses import dataclass, field

from .diagnostics import Span


@dataclass
class Node:
    span: Span = field(repr=False, compare=False)


# --- expressions ---------------------------------------------------------------
@dataclass
class Number(Node):
    value: float | int


@dataclass
class Name(Node):
    id: str


@dataclass
class BinOp(Node):
    op: str          # + - * / // % @ == != < <= > >= and or
    lhs: "Expr"
    rhs: "Expr"


@dataclass
class Neg(Node):
    operand: "Expr"


@dataclass
class Not(Node):
    operand: "Expr"


@dataclass
class Call(Node):
    func: str
    args: list
    kwargs: dict     # name -> Expr


@dataclass
class Point(Node):   # a[i]
    index: "Expr"


@dataclass
class Range(Node):   # a[lo:hi], either bound optional
    lo: "Expr | None"
    hi: "Expr | None"


@dataclass
class Length(Node):  # a[start +: length]
    start: "Expr"
    length: "Expr"


@dataclass
class Subscript(Node):
    base: "Expr"
    indices: list


Expr = Number | Name | BinOp | Neg | Not | Call | Subscript


# --- declarations and statements ---------------------------------------------
@dataclass
class TensorType(Node):
    dtype: str
    shape: list      # of Expr


@dataclass
class Dist(Node):
    kind: str        # block | replicated
    axes: list       # of (name, Span)


@dataclass
class Placement(Node):           # on NAME: the region a tensor lives on or a statement runs on
    region: str


@dataclass
class TensorDecl(Node):
    name: str
    type: TensorType
    dist: Dist
    placement: "Placement | None" = None


@dataclass
class ScalarParam(Node):
    name: str
    type: str        # int | float
    default: "Expr | None"


@dataclass
class LocalDecl(Node):
    name: str
    type: TensorType


@dataclass
class TensorLocal(Node):         # a distributed intermediate: tensor h: f32[S, D] block(y, x)
    decl: "TensorDecl"


@dataclass
class Import(Node):
    target: str      # a bundled kernel name or a path in quotes
    is_path: bool


@dataclass
class ConstDecl(Node):
    name: str
    value: Expr


@dataclass
class Require(Node):
    cond: Expr
    message: str | None


@dataclass
class LValue(Node):
    name: str
    indices: list


@dataclass
class Assign(Node):
    target: LValue
    value: Expr
    placement: "Placement | None" = None


@dataclass
class Accumulate(Node):
    target: LValue
    value: Expr
    placement: "Placement | None" = None


@dataclass
class RegionDecl(Node):
    """region a = tiles(x0:x1, y0:y1), or region a, b = split(x): equal bands of the grid."""
    names: list                  # of (name, Span)
    kind: str                    # tiles | split
    bounds: list                 # tiles: [x0, x1, y0, y1] as Expr
    axis: "tuple | None" = None  # split: (axis name, Span)


@dataclass
class For(Node):
    var: str
    var_span: Span
    lo: Expr
    hi: Expr
    body: list


@dataclass
class IndexDecl(Node):           # index t = ids[i] in lo .. hi: a value read from SRAM, clamped to lo..hi-1
    name: str
    name_span: Span
    value: Expr
    lo: Expr
    hi: Expr


@dataclass
class If(Node):
    cond: Expr
    then: list
    orelse: list


@dataclass
class Kernel(Node):
    name: str
    params: list     # TensorDecl | ScalarParam
    outputs: list    # TensorDecl
    body: list
    path: str = field(default="<kernel>", compare=False)    # the file it came from
    source: str = field(default="", compare=False, repr=False)


@dataclass
class Module(Node):
    kernels: list
    imports: list = field(default_factory=list)
