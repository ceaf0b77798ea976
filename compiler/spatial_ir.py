"""Spatial IR: one SPMD program for a rectangle of tiles, as plain dataclasses.

Every size is a concrete integer here. Index arithmetic that depends on the
tile or a loop variable stays symbolic (IExpr) and is computed by each tile at
run time. Communication starts as named collectives (Broadcast, Shift, Reduce);
passes/lower_collectives.py turns them into point-to-point Send/Recv on named
streams, and passes/route_streams.py gives each stream a color and routes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .diagnostics import Span


# --- integer expressions evaluated per tile ------------------------------------
@dataclass(frozen=True)
class IConst:
    value: int


@dataclass(frozen=True)
class IVar:
    name: str        # 'tx', 'ty' or a loop variable


@dataclass(frozen=True)
class IBin:
    op: str          # + - * // % min max
    lhs: "IExpr"
    rhs: "IExpr"


def ibin(op: str, lhs: "IExpr", rhs: "IExpr") -> "IExpr":
    """IBin with constants folded and identities (x+0, x*1, x//1, x%1, x*0) removed."""
    if isinstance(lhs, IConst) and isinstance(rhs, IConst):
        a, b = lhs.value, rhs.value
        if op in ("//", "%") and b == 0:
            return IBin(op, lhs, rhs)
        return IConst({"+": a + b, "-": a - b, "*": a * b, "//": a // b if b else 0, "%": a % b if b else 0,
                       "min": min(a, b), "max": max(a, b)}[op])
    if isinstance(rhs, IConst):
        if (op in ("+", "-") and rhs.value == 0) or (op in ("*", "//") and rhs.value == 1):
            return lhs
        if (op == "*" and rhs.value == 0) or (op == "%" and rhs.value == 1):
            return IConst(0)
    if op == "+" and isinstance(rhs, IConst) and isinstance(lhs, IBin) and lhs.op == "+" \
            and isinstance(lhs.rhs, IConst):
        return ibin("+", lhs.lhs, IConst(lhs.rhs.value + rhs.value))   # (x + a) + b = x + (a + b)
    if op == "+" and _quotient_and_remainder(lhs, rhs):
        return rhs.lhs   # (x // c) * c + x % c == x for floor division and modulo
    if isinstance(lhs, IConst):
        if op == "+" and lhs.value == 0:
            return rhs
        if op == "*" and lhs.value == 1:
            return rhs
        if op == "*" and lhs.value == 0:
            return IConst(0)
    return IBin(op, lhs, rhs)


def _quotient_and_remainder(lhs, rhs) -> bool:
    """lhs is (x // c) * c and rhs is x % c, for the same x and constant c > 0
    (a fold's [i, j] element at i * c + j, with i = f // c and j = f % c)."""
    return (isinstance(lhs, IBin) and lhs.op == "*" and isinstance(lhs.rhs, IConst)
            and isinstance(lhs.lhs, IBin) and lhs.lhs.op == "//" and lhs.lhs.rhs == lhs.rhs
            and isinstance(rhs, IBin) and rhs.op == "%" and rhs.rhs == lhs.rhs and rhs.lhs == lhs.lhs.lhs
            and lhs.rhs.value > 0)


# The tiles' integer registers are int32. Index arithmetic is exact in the
# compiler; interval() bounds every intermediate value so the emitter can
# prove that int32 arithmetic on the tile gives the same result.
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def interval(e: "IExpr", ranges: dict) -> tuple[int, int]:
    """Exact bounds of an integer expression, given bounds of its variables."""
    if isinstance(e, IConst):
        return e.value, e.value
    if isinstance(e, IVar):
        return ranges[e.name]
    return interval_of(e.op, interval(e.lhs, ranges), interval(e.rhs, ranges))


def interval_of(op: str, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    """Bounds of `a op b` for a in [a0, a1], b in [b0, b1] (floor division and
    modulo with the divisor's sign, as the tiles compute them)."""
    if op == "+":
        return a[0] + b[0], a[1] + b[1]
    if op == "-":
        return a[0] - b[1], a[1] - b[0]
    if op == "*":
        p = [x * y for x in a for y in b]
        return min(p), max(p)
    if op == "min":
        return min(a[0], b[0]), min(a[1], b[1])
    if op == "max":
        return max(a[0], b[0]), max(a[1], b[1])
    divisor_has_zero = b[0] <= 0 <= b[1]
    if op == "//":
        if divisor_has_zero:  # a zero divisor faults at run time; otherwise |a // b| <= |a|
            m = max(abs(a[0]), abs(a[1]))
            return -m, m
        q = [x // y for x in a for y in b]  # floor division is monotone in each argument here
        return min(q), max(q)
    if op == "%":
        if b[0] > 0:
            if a[0] >= 0 and a[1] < b[0]:
                return a
            return 0, b[1] - 1
        if b[1] < 0:
            return b[0] + 1, 0
        m = max(abs(b[0]), abs(b[1]))
        return -(m - 1), m - 1
    raise ValueError(f"unknown integer operator {op!r}")


@dataclass(frozen=True)
class ICmp:
    op: str          # == != < <= > >=
    lhs: "IExpr"
    rhs: "IExpr"


@dataclass(frozen=True)
class IBool:
    op: str          # and | or
    lhs: "ICond"
    rhs: "ICond"


@dataclass(frozen=True)
class INot:
    operand: "ICond"


IExpr = IConst | IVar | IBin
ICond = ICmp | IBool | INot


def format_iexpr(e) -> str:
    if isinstance(e, IConst):
        return str(e.value)
    if isinstance(e, IVar):
        return e.name
    if isinstance(e, IBin):
        if e.op in ("min", "max"):
            return f"{e.op}({format_iexpr(e.lhs)}, {format_iexpr(e.rhs)})"
        return f"({format_iexpr(e.lhs)} {e.op} {format_iexpr(e.rhs)})"
    if isinstance(e, ICmp):
        return f"{format_iexpr(e.lhs)} {e.op} {format_iexpr(e.rhs)}"
    if isinstance(e, IBool):
        return f"({format_iexpr(e.lhs)} {e.op} {format_iexpr(e.rhs)})"
    if isinstance(e, INot):
        return f"not {format_iexpr(e.operand)}"
    return str(e)


# --- buffers and views ---------------------------------------------------------
@dataclass(eq=False)
class Buffer:
    name: str
    shape: tuple
    kind: str                    # input | output | local | temp | const
    span: Span | None = None
    value: float = 0.0           # for const buffers
    addr: int = -1               # word address, set by allocate_sram
    region: str | None = None    # the region whose tiles hold it (kernels with regions)
    dtype: str = "f32"           # f32, or bf16 / f16: two halves a word, along the last dim (shape is in words)

    @property
    def words(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def full_view(self) -> "View":
        dims, stride = [], 1
        for extent in reversed(self.shape):
            dims.append((extent, stride))
            stride *= extent
        return View(self, IConst(0), tuple(reversed(dims)))


@dataclass(frozen=True)
class View:
    """A strided window of a buffer: word offset plus (extent, stride) per dim."""
    buffer: Buffer
    offset: IExpr
    dims: tuple

    @property
    def shape(self) -> tuple:
        return tuple(e for e, _ in self.dims)

    def same_as(self, other: "View") -> bool:
        return self.buffer is other.buffer and self.offset == other.offset and self.dims == other.dims


def fmt_shape(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def format_view(v: View) -> str:
    if v.offset == IConst(0) and v.dims == v.buffer.full_view().dims:
        return v.buffer.name
    dims = " ".join(f"{e}:{s}" for e, s in v.dims)
    return f"{v.buffer.name}[+{format_iexpr(v.offset)} {dims}]"


# --- operations ------------------------------------------------------------------
@dataclass
class Op:
    span: Span | None = field(default=None, repr=False, compare=False, kw_only=True)
    note: str = field(default="", repr=False, compare=False, kw_only=True)  # e.g. "redistribution", for --stats
    region: str | None = field(default=None, repr=False, compare=False, kw_only=True)  # where it runs


@dataclass
class Fill(Op):
    dst: View
    value: float


@dataclass
class Copy(Op):
    dst: View
    src: View


@dataclass
class Elementwise(Op):
    op: str                      # add | sub | mul | div | max | min
    dst: View
    a: View
    b: View


@dataclass
class Unary(Op):
    op: str                      # exp | tanh | sqrt
    dst: View
    src: View


@dataclass
class Mask(Op):                  # dst[i, j] = value where j - i > offset, in place
    dst: View
    offset: IExpr
    value: float


@dataclass
class Scale(Op):
    dst: View
    src: View
    factor: float


@dataclass
class Fmac(Op):                  # dst = dst + a * b, unfused
    dst: View
    a: View
    b: View


@dataclass
class MatMac(Op):                # c += a @ b, k ascending, unfused
    c: View
    a: View
    b: View


@dataclass
class Loop(Op):
    var: str
    lo: int
    hi: int
    body: list


@dataclass
class IfTile(Op):
    cond: ICond
    then: list
    orelse: list


@dataclass
class Broadcast(Op):             # the tile at `root` along the row/column sends src
    axis: str                    # row | col
    dst: View
    src: View
    root: IExpr


@dataclass
class BroadcastStart(Op):        # a Broadcast's transfer begins on a stream slot; the core goes on
    axis: str
    dst: View
    src: View
    root: IExpr
    slot: int                    # the send at the root, the receive elsewhere
    self_slot: int               # the root receiving its own send into dst


@dataclass
class BroadcastFinish(Op):       # ... and is complete once this tile's part in it is done
    axis: str
    dst: View
    src: View
    slot: int
    self_slot: int


@dataclass
class Shift(Op):                 # every tile sends src one tile towards `direction`
    direction: str               # east | west | south | north
    dst: View
    src: View
    wrap: bool                   # rotate around the row/column instead of stopping at the edge


@dataclass
class ShiftStart(Op):            # a Shift's send and receive (into landing) begin on stream slots
    direction: str
    dst: View
    src: View
    wrap: bool
    landing: View                # where the neighbour's block arrives (dst, or a temporary)
    send_slot: int
    recv_slot: int


@dataclass
class ShiftFinish(Op):           # ... and end: both streams done, the landing copied into dst
    direction: str
    dst: View
    src: View
    wrap: bool
    landing: View
    send_slot: int
    recv_slot: int


@dataclass
class Reduce(Op):                # all-reduce along a row/column, in ascending tile order
    axis: str
    op: str                      # add | max
    dst: View
    src: View
    order: str = "chain"         # chain | grouped (a chain in each group of tiles, then over the groups)
    segment: int = 0             # reduce within each run of this many tiles; 0: the whole row or column


@dataclass
class Send(Op):
    stream: str
    src: View
    slot: int | None = None      # a stream slot: the send runs beside the core until Wait(slot)


@dataclass
class Recv(Op):
    stream: str
    dst: View
    slot: int | None = None      # a stream slot: the receive runs beside the core until Wait(slot)


@dataclass
class LoadIndex(Op):             # var = trunc(src's one f32 value), clamped to lo .. hi - 1 (ldw)
    var: str
    src: View
    lo: int
    hi: int


@dataclass
class Widen(Op):                 # dst (f32) = src's bf16 or f16 halves, exactly
    dst: View
    src: View
    dtype: str                   # bf16 | f16


@dataclass
class Transfer(Op):              # each tile of src_region sends its block to the same tile of dst_region
    dst: View
    src: View
    src_region: str
    dst_region: str
    index: int                   # the program's n-th transfer: its streams are xfer<index>.<class>


@dataclass
class Overwrite(Op):             # no code: what follows writes all of view before reading it, on every
    view: View                   # tile (a chunked all-reduce's result), so its old value is dead here


@dataclass
class Wait(Op):                  # block until the slot's stream is done
    slot: int
    views: list                  # what the stream reads or writes: live until here


@dataclass
class TensorPlacement:
    name: str
    role: str                    # input | output
    shape: tuple                 # global
    axes: tuple                  # per dim: 'x', 'y' or '_'
    buffer: Buffer               # the tile's block

    @property
    def block(self) -> tuple:
        """The tile's block in elements (a bf16 or f16 buffer's last dim holds two a word)."""
        shape = tuple(self.buffer.shape)
        return shape if self.buffer.dtype == "f32" else shape[:-1] + (2 * shape[-1],)


@dataclass
class SpatialKernel:
    name: str
    width: int
    height: int
    buffers: list                # every Buffer, in creation order
    body: list                   # ops
    io: list                     # TensorPlacement
    bindings: dict = field(default_factory=dict)   # sizes and params, for reports
    streams: list = field(default_factory=list)    # stream names in color order (route_streams)
    routes: object = None                          # uint8 [tiles, colors, 5] (route_streams)
    sram_words: int = 0                            # data words per tile (allocate_sram)
    regions: list = field(default_factory=list)    # Region, when statements are placed on regions


def walk(ops):
    """Every op, nested ones included, in program order."""
    for op in ops:
        yield op
        if isinstance(op, Loop):
            yield from walk(op.body)
        elif isinstance(op, IfTile):
            yield from walk(op.then)
            yield from walk(op.orelse)


def format_ir(k: SpatialKernel) -> str:
    lines = [f"spatial kernel {k.name} on {k.width}x{k.height} tiles"]
    if k.bindings:
        lines.append("  bindings: " + ", ".join(f"{n}={v}" for n, v in k.bindings.items()))
    for r in k.regions:
        lines.append(f"  region {r.name}: tiles x[{r.x0},{r.x1}) y[{r.y0},{r.y1})")
    for b in k.buffers:
        where = (f" on {b.region}" if b.region and k.regions else "") + (f" @{b.addr}" if b.addr >= 0 else "")
        init = f" = {b.value!r}" if b.kind == "const" else ""
        packed = "" if b.dtype == "f32" else " (words: two halves each)"
        lines.append(f"  {b.kind:<6} {b.name}: {b.dtype}[{', '.join(map(str, b.shape))}]{packed}{where}{init}")
    for t in k.io:
        lines.append(f"  io {t.role} {t.name}: f32[{', '.join(map(str, t.shape))}] "
                     f"split ({', '.join(t.axes)}) -> block {t.buffer.name}")
    _format_ops(k.body, lines, 1)
    return "\n".join(lines)


def _format_ops(ops, lines, depth, region=None):
    pad = "  " * depth
    for op in ops:
        if op.region and op.region != region:  # a kernel with regions: where each statement runs
            lines.append(f"{pad}on {op.region}:")
            _format_ops([op], lines, depth + 1, op.region)
            continue
        if isinstance(op, Loop):
            lines.append(f"{pad}for {op.var} in {op.lo} .. {op.hi}:")
            _format_ops(op.body, lines, depth + 1, region)
        elif isinstance(op, IfTile):
            lines.append(f"{pad}if {format_iexpr(op.cond)}:")
            _format_ops(op.then, lines, depth + 1, region)
            if op.orelse:
                lines.append(f"{pad}else:")
                _format_ops(op.orelse, lines, depth + 1, region)
        elif isinstance(op, Fill):
            lines.append(f"{pad}{format_view(op.dst)} = fill {op.value!r}")
        elif isinstance(op, Copy):
            lines.append(f"{pad}{format_view(op.dst)} = copy {format_view(op.src)}")
        elif isinstance(op, Elementwise):
            lines.append(f"{pad}{format_view(op.dst)} = {op.op} {format_view(op.a)}, {format_view(op.b)}")
        elif isinstance(op, Scale):
            lines.append(f"{pad}{format_view(op.dst)} = scale {format_view(op.src)}, {op.factor!r}")
        elif isinstance(op, Mask):
            lines.append(f"{pad}{format_view(op.dst)} = mask where j - i > {format_iexpr(op.offset)}: {op.value!r}")
        elif isinstance(op, Unary):
            lines.append(f"{pad}{format_view(op.dst)} = {op.op} {format_view(op.src)}")
        elif isinstance(op, Fmac):
            lines.append(f"{pad}{format_view(op.dst)} += {format_view(op.a)} * {format_view(op.b)}")
        elif isinstance(op, MatMac):
            lines.append(f"{pad}{format_view(op.c)} += {format_view(op.a)} @ {format_view(op.b)}")
        elif isinstance(op, Broadcast):
            lines.append(f"{pad}{format_view(op.dst)} = broadcast_{op.axis} {format_view(op.src)} "
                         f"from {format_iexpr(op.root)}")
        elif isinstance(op, BroadcastStart):
            lines.append(f"{pad}{format_view(op.dst)} = broadcast_{op.axis} {format_view(op.src)} "
                         f"from {format_iexpr(op.root)}: start on slot{op.slot}")
        elif isinstance(op, BroadcastFinish):
            lines.append(f"{pad}{format_view(op.dst)}: finish broadcast_{op.axis} on slot{op.slot}")
        elif isinstance(op, Shift):
            verb = "rotate" if op.wrap else "shift"
            lines.append(f"{pad}{format_view(op.dst)} = {verb} {format_view(op.src)} {op.direction}")
        elif isinstance(op, (ShiftStart, ShiftFinish)):
            verb = "rotate" if op.wrap else "shift"
            part = "start" if isinstance(op, ShiftStart) else "finish"
            lines.append(f"{pad}{format_view(op.dst)} = {verb} {format_view(op.src)} {op.direction}: {part} "
                         f"via {format_view(op.landing)} on slot{op.send_slot}/slot{op.recv_slot}")
        elif isinstance(op, Reduce):
            order = ("" if op.order == "chain" else f" order={op.order}") + (f" segment={op.segment}"
                                                                            if op.segment else "")
            lines.append(f"{pad}{format_view(op.dst)} = reduce_{op.axis} {op.op} {format_view(op.src)}{order}")
        elif isinstance(op, Send):
            slot = "" if op.slot is None else f" async slot{op.slot}"
            lines.append(f"{pad}send {op.stream} {format_view(op.src)}{slot}")
        elif isinstance(op, Recv):
            slot = "" if op.slot is None else f" async slot{op.slot}"
            lines.append(f"{pad}recv {op.stream} {format_view(op.dst)}{slot}")
        elif isinstance(op, Wait):
            lines.append(f"{pad}wait slot{op.slot}")
        elif isinstance(op, Overwrite):
            lines.append(f"{pad}overwrite {format_view(op.view)}")
        elif isinstance(op, LoadIndex):
            lines.append(f"{pad}index {op.var} = {format_view(op.src)} in {op.lo} .. {op.hi}")
        elif isinstance(op, Widen):
            lines.append(f"{pad}{format_view(op.dst)} = widen {op.dtype} {format_view(op.src)}")
        elif isinstance(op, Transfer):
            lines.append(f"{pad}{format_view(op.dst)} @{op.dst_region} = transfer {format_view(op.src)} "
                         f"@{op.src_region}")
        else:
            lines.append(f"{pad}{op}")
