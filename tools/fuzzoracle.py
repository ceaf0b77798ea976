"""A reference interpreter of the tilegrid kernel language, for the fuzzer.

It runs a kernel the way docs/language.md describes it, on every tile at once
(lock step, SPMD) with NumPy float32 arithmetic: one rounding per operation,
reductions and `@` in ascending order, collectives and redistribution on
whole blocks. It is written from the language reference and from the
checker's rules for what folds at compile time, not from the compiler's
passes, so the two can be compared.

Semantics the oracle assumes where the reference is silent:
- value semantics: the right-hand side is computed completely, then stored,
  even when target and operands share a buffer (t = transpose(t), shifted slices);
- integers are mathematical integers (the checker bounds indices with
  unbounded integers), so run-time index arithmetic does not wrap;
- a kernel call binds its tensor parameters by value.

`evaluate(source, grid, inputs, params)` returns one of
  Expected(outputs)   the program is valid; these are its outputs (global arrays);
  Invalid(reason)     the language rejects the program (a require fails, an index
                      is out of bounds on some tile, ...): it must not run to completion;
  Unknown(reason)     outside what the oracle models (uninitialized reads, tile-dependent
                      collectives, replicas that differ, huge loops, ...): no verdict.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

import fuzzast as A

F32 = np.float32
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
BUILTINS = {"W", "H", "tx", "ty"}
DIRECTIONS = ("east", "west", "south", "north")
COLLECTIVES = {"broadcast_row", "broadcast_col", "shift", "rotate", "reduce_row", "reduce_col"}
UNARY = {"exp", "tanh", "sqrt"}
TENSOR_FUNCS = UNARY | {"rowsum", "rowmax", "transpose", "max", "min", "causal_mask"}
MASK_VALUE = F32(-1e30)
MAX_LOOP_STEPS = 20000
MAX_ELEMENTS = 1 << 20


# ---------------------------------------------------------------- verdicts
@dataclass
class Expected:
    outputs: dict
    notes: list = field(default_factory=list)   # e.g. "int32" when a run-time integer left int32


@dataclass
class Invalid:
    reason: str
    notes: list = field(default_factory=list)


@dataclass
class Unknown:
    reason: str


class _Reject(Exception):
    """A compile-time error: the compiler must reject the program (or may: we do not judge)."""


class _Invalid(Exception):
    """The program is wrong in a way the language promises to catch (bounds, require)."""


class _Unknown(Exception):
    pass


# ------------------------------------------------------------- f32 helpers
def _exp(x):
    from tilegrid.emulator.transcendentals import exp
    return exp(np.asarray(x, F32))


def _tanh(x):
    from tilegrid.emulator.transcendentals import tanh
    return tanh(np.asarray(x, F32))


def _scalar_unary(func, v):
    from tilegrid.emulator.transcendentals import exp_f32, tanh_f32
    x = F32(v)
    if func == "exp":
        return float(F32(exp_f32(x)))
    if func == "tanh":
        return float(F32(tanh_f32(x)))
    return float(np.sqrt(x))


def fmax(a, b):
    a, b = np.asarray(a, F32), np.asarray(b, F32)
    return np.where(a != a, a, np.where(b != b, b, np.where(a > b, a, b))).astype(F32)


def fmin(a, b):
    a, b = np.asarray(a, F32), np.asarray(b, F32)
    return np.where(a != a, a, np.where(b != b, b, np.where(a < b, a, b))).astype(F32)


def f32_binop(op, a, b):
    if op == "add":
        return np.add(a, b, dtype=F32)
    if op == "sub":
        return np.subtract(a, b, dtype=F32)
    if op == "mul":
        return np.multiply(a, b, dtype=F32)
    if op == "div":
        return np.divide(a, b, dtype=F32)
    if op == "max":
        return fmax(a, b)
    return fmin(a, b)


def to_f32(v) -> float:
    """What the checker does to a compile-time number used as a tensor value."""
    try:
        return float(F32(v))
    except OverflowError:
        raise _Unknown("number too large for float") from None


# ------------------------------------------------------------ values
class RInt:
    """A run-time integer: one Python int per tile (object array [H, W])."""

    def __init__(self, arr):
        self.arr = arr


class RBool:
    def __init__(self, arr):
        self.arr = np.asarray(arr, dtype=bool)


def known(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass
class Sym:
    kind: str                 # int | float | rint | tensor
    value: object
    tensor: "TState | None" = None
    is_param: bool = False


class TState:
    """A tensor: each tile's block, which tiles have it initialized, and its distribution."""

    def __init__(self, name, block, H, W, dist=None):
        if int(np.prod(block, dtype=np.int64)) * H * W > MAX_ELEMENTS:
            raise _Unknown("tensor too large for the oracle")
        self.name = name
        self.arr = np.zeros((H, W) + tuple(block), dtype=F32)
        self.shadow = np.zeros(self.arr.shape, dtype=np.uint32)   # 1 where an element was written
        self.dist = dist       # (global shape, axes) or None for a local block
        self.written = False
        self.is_param_of_callee = False

    @property
    def block(self):
        return self.arr.shape[2:]

    def shadow_of(self, v: np.ndarray) -> np.ndarray:
        """The written-flags of exactly the elements a view of self.arr covers (same strides)."""
        off = v.__array_interface__["data"][0] - self.arr.__array_interface__["data"][0]
        return np.ndarray(v.shape, dtype=np.uint32, buffer=self.shadow, offset=off, strides=v.strides)

    def mark_all(self):
        self.shadow[...] = 1


class TV:
    """A tensor value: arr [H, W, *shape]; a view also knows its tensor and per-tile views."""

    def __init__(self, arr, tensor=None, views=None):
        self.arr = arr
        self.tensor = tensor
        self.views = views     # [[np view per tile]] or None for a computed value

    @property
    def shape(self):
        return self.arr.shape[2:]

    def key(self):
        if self.views is None:
            return None
        return tuple((v.__array_interface__["data"][0], v.shape, v.strides) for row in self.views for v in row)


# -------------------------------------------------------------- layout
def layout(shape, axes, W, H):
    block = []
    for size, a in zip(shape, axes):
        parts = W if a == "x" else H if a == "y" else 1
        if size % parts:
            raise _Reject(f"dimension {size} not divisible by {parts}")
        block.append(size // parts)
    return tuple(block)


def scatter(glob, axes, W, H):
    """Global array -> [H, W, *block] per the axes."""
    block = layout(glob.shape, axes, W, H)
    out = np.empty((H, W) + block, dtype=F32)
    for y in range(H):
        for x in range(W):
            sl = tuple(slice((x if a == "x" else y if a == "y" else 0) * b,
                             (x if a == "x" else y if a == "y" else 0) * b + b) for a, b in zip(axes, block))
            out[y, x] = glob[sl]
    return out


def owner(idx, axes) -> tuple[int, int]:
    """(tx, ty) of the canonical tile holding block idx of a tensor split over axes."""
    tx = ty = 0
    for i, a in enumerate(axes):
        if a == "x":
            tx = idx[i]
        elif a == "y":
            ty = idx[i]
    return tx, ty


def gather(arr, axes, shape, W, H, tiles=None, check=True):
    """[H, W, *block] -> the global array, from the canonical replicas; with check, every
    replica must agree (else the result depends on which copy an implementation reads)."""
    block = arr.shape[2:]
    glob = np.empty(shape, dtype=F32)
    counts = [s // b for s, b in zip(shape, block)]
    for idx in np.ndindex(*counts):
        tx, ty = owner(idx, axes)
        sl = tuple(slice(i * b, i * b + b) for i, b in zip(idx, block))
        glob[sl] = arr[ty, tx]
    if check:
        again = scatter(glob, axes, W, H)
        if (again.view(np.uint32) != arr.view(np.uint32)).any():
            both_nan = np.isnan(again) & np.isnan(arr)
            if ((again.view(np.uint32) != arr.view(np.uint32)) & ~both_nan).any():
                raise _Unknown("replicas of a distributed tensor differ")
    return glob


# ---------------------------------------------------------- interpreter
class Interp:
    def __init__(self, kernel: A.Kernel, W, H, table, call_stack=(), notes=None):
        self.k = kernel
        self.W, self.H = W, H
        self.table = table
        self.call_stack = call_stack + (kernel.name,)
        self.notes = notes if notes is not None else set()
        ty, tx = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
        self.tx = RInt(np.array(tx.tolist(), dtype=object))
        self.ty = RInt(np.array(ty.tolist(), dtype=object))
        self.scopes = [{"W": Sym("int", W), "H": Sym("int", H), "tx": Sym("rint", self.tx),
                        "ty": Sym("rint", self.ty)}]
        self.mask = np.ones((H, W), dtype=bool)
        self.steps = 0
        self.record = None     # {id(statement): shape of its target view}, when asked for

    # ------------------------------------------------------------ scopes
    def find(self, name):
        for s in reversed(self.scopes):
            if name in s:
                return s[name]
        return None

    def lookup(self, name):
        s = self.find(name)
        if s is None:
            raise _Reject(f"unknown name {name}")
        return s

    def new_name(self, name):
        if name in BUILTINS or self.find(name) is not None:
            raise _Reject(f"name {name} taken")

    def define(self, name, sym):
        self.scopes[-1][name] = sym

    # ----------------------------------------------------------- scalars
    def rint(self, v):
        if isinstance(v, RInt):
            return v
        if isinstance(v, int) and not isinstance(v, bool):
            return RInt(np.full((self.H, self.W), v, dtype=object))
        raise _Reject("an integer is needed")

    def _track(self, arr):
        for v in arr.flat:
            if v < INT32_MIN or v > INT32_MAX:
                self.notes.add("int32")
                break
        return RInt(arr)

    def value(self, e):
        if isinstance(e, A.Num):
            try:
                return e.value
            except ValueError:
                raise _Unknown("literal") from None
        if isinstance(e, A.Paren):
            return self.value(e.a)
        if isinstance(e, A.Name):
            s = self.lookup(e.id)
            if s.kind == "tensor":
                raise _Reject("tensor where a number is needed")
            return s.value
        if isinstance(e, A.Neg):
            v = self.value(e.a)
            if known(v):
                return -v
            if isinstance(v, RInt):
                return self._track(-v.arr)
            raise _Unknown("negated condition")
        if isinstance(e, A.Not):
            c = self.cond(e.a)
            return (not c) if isinstance(c, bool) else RBool(~c.arr)
        if isinstance(e, A.Call):
            return self.scalar_call(e)
        if isinstance(e, A.Bin):
            return self.scalar_bin(e)
        if isinstance(e, A.Sub):
            raise _Reject("tensor element as number")
        raise _Unknown(f"expression {type(e).__name__}")

    def scalar_bin(self, e):
        if e.op in ("and", "or"):
            a, b = self.cond(e.a), self.cond(e.b)
            if isinstance(a, bool) and isinstance(b, bool):
                return (a and b) if e.op == "and" else (a or b)
            aa = a.arr if isinstance(a, RBool) else np.full((self.H, self.W), a)
            bb = b.arr if isinstance(b, RBool) else np.full((self.H, self.W), b)
            return RBool(aa & bb if e.op == "and" else aa | bb)
        a, b = self.value(e.a), self.value(e.b)
        if e.op in ("==", "!=", "<", "<=", ">", ">="):
            if known(a) and known(b):
                return {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[e.op]
            if isinstance(a, (bool, float, RBool)) or isinstance(b, (bool, float, RBool)):
                raise _Reject("an integer is needed")
            x, y = self.rint(a).arr, self.rint(b).arr
            r = {"==": x == y, "!=": x != y, "<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[e.op]
            return RBool(np.array(r, dtype=bool))
        if e.op == "@":
            raise _Reject("@ on numbers")
        if known(a) and known(b):
            return self.fold(e.op, a, b)
        if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, RBool) or isinstance(b, RBool):
            raise _Reject("condition as number")
        if e.op == "/":
            raise _Reject("/ needs compile-time values")
        if isinstance(a, float) or isinstance(b, float):
            raise _Reject("an integer is needed")
        x, y = self.rint(a).arr, self.rint(b).arr
        if e.op in ("//", "%"):
            if any(v == 0 for v in y[self.mask].flat):
                # undefined; the compiler may fold it away (x * 0 -> 0) or the tile may fault
                raise _Unknown("integer division by zero at run time")
            y = np.where(y == 0, 1, y)
        r = {"+": lambda: x + y, "-": lambda: x - y, "*": lambda: x * y,
             "//": lambda: x // y, "%": lambda: x % y}[e.op]()
        return self._track(np.array(r, dtype=object))

    def fold(self, op, a, b):
        if op in ("//", "%", "/") and b == 0:
            raise _Reject("division by zero")
        if isinstance(a, float) or isinstance(b, float):
            ops = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}
            if op not in ops:
                raise _Reject("operator needs integers")
            with np.errstate(all="ignore"):
                return float(ops[op](F32(to_f32(a)), F32(to_f32(b))))
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            if abs(a) > 1 << 4096 or abs(b) > 1 << 4096:
                raise _Unknown("huge integer")
            return a * b
        if op == "/":
            if a % b:
                raise _Reject("not divisible")
            return a // b
        if op == "//":
            return a // b
        if op == "%":
            return a % b
        raise _Reject(f"operator {op}")

    def scalar_call(self, e):
        if e.func not in ("lcm", "gcd", "min", "max") and e.func not in COLLECTIVES | TENSOR_FUNCS:
            raise _Reject("unknown function")
        args = [self.value(a) for a in e.args]
        if e.kwargs:
            raise _Reject("keyword arguments")
        if e.func in ("lcm", "gcd", "min", "max") and len(args) == 2:
            a, b = args
            if known(a) and known(b):
                if e.func in ("lcm", "gcd"):
                    for v in (a, b):
                        if isinstance(v, float) and not math.isfinite(v):
                            raise _Unknown("lcm of a non-finite number")
                    return math.lcm(int(a), int(b)) if e.func == "lcm" else math.gcd(int(a), int(b))
                return min(a, b) if e.func == "min" else max(a, b)
            if e.func in ("min", "max"):
                if isinstance(a, (bool, float, RBool)) or isinstance(b, (bool, float, RBool)):
                    raise _Reject("an integer is needed")
                x, y = self.rint(a).arr, self.rint(b).arr
                r = np.where(x < y, x, y) if e.func == "min" else np.where(x > y, x, y)
                return RInt(np.array(r, dtype=object))
            raise _Reject("lcm needs compile-time values")
        if e.func in ("lcm", "gcd", "min", "max"):
            raise _Reject("two arguments")
        if e.func in COLLECTIVES:
            raise _Reject("collective inside an expression")
        if e.func in UNARY and len(args) == 1 and known(args[0]):
            with np.errstate(all="ignore"):
                return _scalar_unary(e.func, to_f32(args[0]))
        raise _Reject("tensor function on numbers")

    def cond(self, e):
        v = self.value(e)
        if isinstance(v, (bool, RBool)):
            return v
        raise _Reject("expected a condition")

    def const(self, e):
        v = self.value(e)
        if isinstance(v, bool) or not isinstance(v, int):
            raise _Reject("a compile-time integer is needed")
        return v

    def int_(self, e):
        v = self.value(e)
        if isinstance(v, (bool, float, RBool)):
            raise _Reject("an integer is needed")
        return v

    def per_tile(self, v):
        """An int or RInt -> object array [H, W]."""
        return self.rint(v).arr

    # ------------------------------------------------------------ tensors
    def tensor_sym(self, name):
        s = self.lookup(name)
        if s.kind != "tensor":
            raise _Reject(f"{name} is not a tensor")
        return s

    def read(self, tv: TV, what="read"):
        t = tv.tensor
        if t is not None and tv.views is not None:
            for y in range(self.H):
                for x in range(self.W):
                    if self.mask[y, x] and not t.shadow_of(tv.views[y][x]).all():
                        raise _Unknown(f"reads tensor '{t.name}' before it is written")
        return tv.arr

    def view(self, e) -> TV:
        if isinstance(e, A.Paren):
            return self.view(e.a)
        if isinstance(e, A.Name):
            s = self.tensor_sym(e.id)
            t = s.tensor
            views = [[t.arr[y, x] for x in range(self.W)] for y in range(self.H)]
            return TV(t.arr, t, views)
        if isinstance(e, A.Sub):
            base = e.base.a if isinstance(e.base, A.Paren) else e.base
            if not isinstance(base, (A.Name, A.Sub)):
                raise _Reject("only tensors can be indexed")
            return self.index(self.view(base), e.idx)
        raise _Reject("not a view")

    def index(self, tv: TV, idx) -> TV:
        shape = tv.shape
        if len(idx) > len(shape):
            raise _Reject("too many indices")
        per_dim = []
        for i, ix in enumerate(idx):
            extent = shape[i]
            if isinstance(ix, A.Point):
                at = self.per_tile(self.int_(ix.e))
                self.check_range(at, 0, extent - 1)
                per_dim.append(("p", at))
            elif isinstance(ix, A.Rng):
                lo = 0 if ix.lo is None else self.const(ix.lo)
                hi = extent if ix.hi is None else self.const(ix.hi)
                if not 0 <= lo < hi <= extent:
                    raise _Reject("slice outside")
                per_dim.append(("r", lo, hi))
            else:
                length = self.const(ix.length)
                if not 1 <= length <= extent:
                    raise _Reject("slice length")
                start = self.per_tile(self.int_(ix.start))
                self.check_range(start, 0, extent - length)
                per_dim.append(("l", start, length))
        views = []
        for y in range(self.H):
            row = []
            for x in range(self.W):
                sl = []
                for d in per_dim:
                    if d[0] == "p":
                        sl.append(int(d[1][y, x]))
                    elif d[0] == "r":
                        sl.append(slice(d[1], d[2]))
                    else:
                        s0 = int(d[1][y, x])
                        sl.append(slice(s0, s0 + d[2]))
                row.append(tv.views[y][x][tuple(sl)])
            views.append(row)
        arr = np.stack([np.stack(r) for r in views])
        return TV(arr, tv.tensor, views)

    def check_range(self, at, lo, hi):
        vals = [v for v in at[self.mask].flat]
        if any(v < lo or v > hi for v in vals):
            raise _Invalid(f"index can take {min(vals)}..{max(vals)}, outside {lo}..{hi}")
        # tiles outside the mask do not execute the access, but the checker bounds every tile
        # over the whole range of its variables; nothing to judge there

    def compute(self, e):
        """A tensor expression: a float (compile-time constant) or a TV."""
        if isinstance(e, A.Paren):
            return self.compute(e.a)
        if isinstance(e, (A.Name, A.Sub)):
            if isinstance(e, A.Name):
                s = self.find(e.id)
                if s is not None and s.kind != "tensor":
                    v = self.value(e)
                    if isinstance(v, bool) or not isinstance(v, (int, float)):
                        raise _Reject("not a tensor or a compile-time number")
                    return to_f32(v)
            tv = self.view(e)
            self.read(tv)
            return tv
        if isinstance(e, A.Num):
            try:
                return to_f32(e.value)
            except ValueError:
                raise _Unknown("literal") from None
        if isinstance(e, A.Neg):
            v = self.compute(e.a)
            if isinstance(v, float):
                return float(-F32(v))
            return TV(np.multiply(v.arr, F32(-1.0), dtype=F32))
        if isinstance(e, A.Bin) and e.op == "@":
            a, b = self.operand(e.a), self.operand(e.b)
            return TV(self.matmac(None, a.arr, b.arr))
        if isinstance(e, A.Bin) and e.op in ("+", "-", "*", "/"):
            a, b = self.compute(e.a), self.compute(e.b)
            return self.binary({"+": "add", "-": "sub", "*": "mul", "/": "div"}[e.op], a, b)
        if isinstance(e, A.Call) and e.func in ("max", "min"):
            if len(e.args) != 2 or e.kwargs:
                raise _Reject("two arguments")
            a, b = self.compute(e.args[0]), self.compute(e.args[1])
            return self.binary(e.func, a, b)
        if isinstance(e, A.Call) and e.func in UNARY | {"rowsum", "rowmax", "transpose"}:
            if len(e.args) != 1 or e.kwargs:
                raise _Reject("one tensor")
            v = self.compute(e.args[0])
            if isinstance(v, float):
                if e.func in UNARY:
                    with np.errstate(all="ignore"):
                        return _scalar_unary(e.func, v)
                raise _Reject("needs a tensor")
            if e.func == "transpose":
                if len(v.shape) != 2:
                    raise _Reject("transpose takes a matrix")
                views = None if v.views is None else [[vv.T for vv in row] for row in v.views]
                return TV(np.swapaxes(v.arr, 2, 3), v.tensor, views)
            if e.func in ("rowsum", "rowmax"):
                x = v.arr
                acc = np.full(x.shape[:-1] + (1,), 0.0 if e.func == "rowsum" else -np.inf, dtype=F32)
                with np.errstate(all="ignore"):
                    for j in range(x.shape[-1]):
                        acc = f32_binop("add" if e.func == "rowsum" else "max", acc, x[..., j:j + 1])
                return TV(acc)
            with np.errstate(all="ignore"):
                if e.func == "exp":
                    return TV(_exp(v.arr))
                if e.func == "tanh":
                    return TV(_tanh(v.arr))
                return TV(np.sqrt(v.arr, dtype=F32))
        if isinstance(e, A.Call) and e.func in COLLECTIVES:
            raise _Reject("collective inside an expression")
        if isinstance(e, A.Call) and e.func == "causal_mask":
            if len(e.args) != 3 or e.kwargs:
                raise _Reject("causal_mask arguments")
            v = self.compute(e.args[0])
            if isinstance(v, float) or len(v.shape) != 2:
                raise _Reject("causal_mask takes a matrix")
            q0 = self.per_tile(self.int_(e.args[1]))
            k0 = self.per_tile(self.int_(e.args[2]))
            off = self._track(np.array(q0 - k0, dtype=object)).arr
            out = v.arr.copy()
            r, c = v.shape
            jj = np.arange(c)[None, :] - np.arange(r)[:, None]
            for y in range(self.H):
                for x in range(self.W):
                    out[y, x][jj > off[y, x]] = MASK_VALUE
            return TV(out)
        if isinstance(e, A.Call):
            if e.func in self.table:
                raise _Reject("kernel call inside an expression")
            v = self.value(e)
            if known(v):
                return to_f32(v)
            raise _Reject("does not give a tensor")
        if isinstance(e, A.Bin):
            raise _Reject("operator does not apply to tensors")
        raise _Reject("expected a tensor expression")

    def operand(self, e) -> TV:
        v = self.compute(e)
        if isinstance(v, float):
            raise _Reject("@ needs tensors")
        if len(v.shape) not in (1, 2) or len(v.shape) == 0:
            raise _Reject("@ rank")
        return v

    def matmac(self, c, a, b):
        """c + a @ b (c None: from zero), k ascending, unfused; a, b, c: [H, W, ...]."""
        ra, rb = a.ndim - 2, b.ndim - 2
        if ra == 1 and rb == 1:
            raise _Reject("@ of two vectors")
        if a.shape[-1] != b.shape[2]:
            raise _Reject("@ inner sizes")
        a2 = a[:, :, None, :] if ra == 1 else a
        b2 = b[:, :, :, None] if rb == 1 else b
        out_shape = a.shape[2:-1] + b.shape[3:]
        acc = np.zeros(a2.shape[:3] + (b2.shape[3],), dtype=F32) if c is None else None
        if c is not None:
            if tuple(c.shape[2:]) != tuple(out_shape):
                raise _Reject("@ target shape")
            acc = c.reshape(a2.shape[:3] + (b2.shape[3],)).astype(F32, copy=True)
        with np.errstate(all="ignore"):
            for k in range(a2.shape[3]):
                acc = np.add(acc, np.multiply(a2[:, :, :, k, None], b2[:, :, None, k, :], dtype=F32), dtype=F32)
        return acc.reshape(a.shape[:2] + tuple(out_shape))

    def binary(self, op, a, b):
        if isinstance(a, float) and isinstance(b, float):
            fa, fb = F32(a), F32(b)
            if op == "div" and fb == 0:
                raise _Reject("division by zero")
            with np.errstate(all="ignore"):
                return float(F32(f32_binop(op, fa, fb)))
        sa = a.shape if isinstance(a, TV) else ()
        sb = b.shape if isinstance(b, TV) else ()
        shape = broadcast_shapes(sa, sb)
        x = self.expand(a, shape)
        y = self.expand(b, shape)
        with np.errstate(all="ignore"):
            return TV(f32_binop(op, x, y))

    def expand(self, v, shape):
        """v broadcast to [H, W, *shape] (numpy-style over the block dims only)."""
        if isinstance(v, float):
            return np.full((self.H, self.W) + tuple(shape), F32(v), dtype=F32)
        arr = v.arr
        s = v.shape
        if len(s) > len(shape):
            raise _Reject("shape mismatch")
        arr = arr.reshape(arr.shape[:2] + (1,) * (len(shape) - len(s)) + tuple(s))
        for have, want in zip(arr.shape[2:], shape):
            if have != want and have != 1:
                raise _Reject("shape mismatch")
        return np.broadcast_to(arr, arr.shape[:2] + tuple(shape))

    # -------------------------------------------------------------- stores
    def store(self, dst: TV, value, full: bool, tiles=None):
        """Write value (float or [H, W, *shape]) into dst on the tiles of the mask (and of
        `tiles`, if given); full: the view is the whole tensor, so those tiles are now written."""
        if dst.tensor is not None and dst.tensor.is_param_of_callee:
            raise _Unknown("a called kernel writes its parameter")
        where = self.mask if tiles is None else self.mask & tiles
        for y in range(self.H):
            for x in range(self.W):
                if where[y, x]:
                    dst.views[y][x][...] = value if isinstance(value, float) else value[y, x]
        if dst.tensor is not None:
            dst.tensor.written = True
            for y in range(self.H):
                for x in range(self.W):
                    if where[y, x]:
                        dst.tensor.shadow_of(dst.views[y][x])[...] = 1

    def target(self, lv: A.LV) -> TV:
        s = self.lookup(lv.name)
        if s.kind != "tensor":
            raise _Reject("assign to a non-tensor")
        tv = self.view(A.Name(lv.name))
        if lv.idx:
            tv = self.index(tv, lv.idx)
        return tv

    def is_full(self, lv: A.LV, tv: TV) -> bool:
        """Does the view cover its whole tensor on every tile?"""
        t = tv.tensor
        if t is None or tv.views is None:
            return False
        whole = TV(t.arr, t, [[t.arr[y, x] for x in range(self.W)] for y in range(self.H)])
        return tv.key() == whole.key()

    # ---------------------------------------------------------- statements
    def block(self, stmts):
        for s in stmts:
            self.stmt(s)

    def tick(self, n=1):
        self.steps += n
        if self.steps > MAX_LOOP_STEPS:
            raise _Unknown("too many steps for the oracle")

    def stmt(self, s):
        self.tick()
        if not self.mask.any():
            return
        if isinstance(s, A.Local):
            self.new_name(s.name)
            shape = self.shape(s.type)
            t = TState(s.name, shape, self.H, self.W)
            self.define(s.name, Sym("tensor", None, t))
        elif isinstance(s, A.TensorLocal):
            self.new_name(s.decl.name)
            t = self.place(s.decl)
            self.define(s.decl.name, Sym("tensor", None, t))
        elif isinstance(s, A.Const):
            self.new_name(s.name)
            v = self.value(s.e)
            if not known(v):
                raise _Reject("const must be known")
            self.define(s.name, Sym("int" if isinstance(v, int) else "float", v))
        elif isinstance(s, A.Require):
            ok = self.cond(s.cond)
            if not isinstance(ok, bool):
                raise _Reject("require needs a compile-time condition")
            if not ok:
                raise _Invalid(f"require fails: {s.msg}")
        elif isinstance(s, A.Assign):
            self.assign(s)
        elif isinstance(s, A.Acc):
            self.accumulate(s)
        elif isinstance(s, A.For):
            lo, hi = self.const(s.lo), self.const(s.hi)
            self.new_name(s.var)
            if hi - lo > MAX_LOOP_STEPS:
                raise _Unknown("loop too long for the oracle")
            if hi <= lo:  # never runs, and the compiler does not elaborate it either
                return
            for i in range(lo, hi):
                self.scopes.append({s.var: Sym("rint", RInt(np.full((self.H, self.W), i, dtype=object)))})
                try:
                    self.block(s.body)
                finally:
                    self.scopes.pop()
        elif isinstance(s, A.If):
            c = self.cond(s.cond)
            if isinstance(c, bool):
                self.scopes.append({})
                try:
                    self.block(s.then if c else s.orelse)
                finally:
                    self.scopes.pop()
                return
            outer = self.mask
            for branch, m in ((s.then, outer & c.arr), (s.orelse, outer & ~c.arr)):
                self.mask = m
                self.scopes.append({})
                try:
                    if m.any():
                        self.block(branch)
                finally:
                    self.scopes.pop()
                    self.mask = outer
        elif isinstance(s, A.RawStmt):
            raise _Unknown("raw statement")
        else:
            raise _Unknown(f"statement {type(s).__name__}")

    def need_all_tiles(self, what):
        if not self.mask.all():
            raise _Unknown(f"{what} under a tile-dependent condition")

    def assign(self, s: A.Assign):
        e = s.e
        if isinstance(e, A.Call) and e.func in self.table:
            return self.call(s.lv, e)
        if self.needs_redistribution(s.lv, e):
            self.need_all_tiles("redistribution")
            dst = self.tensor_sym(s.lv.name).tensor
            src = self.tensor_sym(e.id).tensor
            gshape, gaxes = dst.dist
            sshape, saxes = src.dist
            if tuple(gshape) != tuple(sshape):
                raise _Reject("redistribution shapes")
            layout(gshape, gaxes, self.W, self.H)
            self.read(self.view(e))
            glob = gather(src.arr, saxes, sshape, self.W, self.H)
            new = scatter(glob, gaxes, self.W, self.H)
            self.store(self.view(A.Name(s.lv.name)), new, True)
            return
        dst = self.target(s.lv)
        if self.record is not None:
            self.record[id(s)] = tuple(dst.shape)
        if isinstance(e, A.Call) and e.func in COLLECTIVES:
            return self.collective(dst, e, s.lv)
        v = self.compute(e)
        full = self.is_full(s.lv, dst)
        if isinstance(v, float):
            self.store(dst, v, full)
            return
        val = self.expand(v, dst.shape).copy()
        self.store(dst, val, full)

    def needs_redistribution(self, lv, e):
        if not isinstance(e, A.Name) or lv.idx:
            return False
        t, src = self.find(lv.name), self.find(e.id)
        if t is None or src is None or t.kind != "tensor" or src.kind != "tensor":
            return False
        if t.tensor.dist is None or src.tensor.dist is None:
            return False
        return tuple(t.tensor.dist[1]) != tuple(src.tensor.dist[1])

    def accumulate(self, s: A.Acc):
        dst = self.target(s.lv)
        if self.record is not None:
            self.record[id(s)] = tuple(dst.shape)
        e = s.e
        while isinstance(e, A.Paren):
            e = e.a
        if isinstance(e, A.Bin) and e.op == "@":
            a, b = self.operand(e.a), self.operand(e.b)
            for v in (a, b):
                if v.tensor is not None and v.tensor is dst.tensor:
                    raise _Reject("accumulation target is an operand of @")
            self.read(dst)
            out = self.matmac(dst.arr, a.arr, b.arr)
            self.store(dst, out, False)
            return
        if isinstance(e, A.Bin) and e.op == "*":
            a, b = self.compute(e.a), self.compute(e.b)
            if isinstance(a, TV) and isinstance(b, TV):
                x = self.expand_to(a, dst.shape)
                y = self.expand_to(b, dst.shape)
                self.read(dst)
                with np.errstate(all="ignore"):
                    out = np.add(dst.arr, np.multiply(x, y, dtype=F32), dtype=F32)
                self.store(dst, out, False)
                return
        v = self.compute(e)
        other = self.expand_to(v, dst.shape) if isinstance(v, TV) else F32(v)
        self.read(dst)
        with np.errstate(all="ignore"):
            out = np.add(dst.arr, other, dtype=F32)
        self.store(dst, np.broadcast_to(out, dst.arr.shape).copy(), False)

    def expand_to(self, v: TV, shape):
        """The checker's one-way broadcast of an operand to the target's shape."""
        return self.expand(v, shape)

    def collective(self, dst: TV, e: A.Call, lv):
        f = e.func
        word = e.args[1].id if len(e.args) > 1 and isinstance(e.args[1], A.Name) else None
        along_rows = f in ("broadcast_row", "reduce_row") or word in ("east", "west")
        m = self.mask
        # tiles talk only along their row (or column): every line taking part must do so whole
        if along_rows and not (m.all(axis=1) == m.any(axis=1)).all():
            raise _Unknown(f"{f} under a condition that splits a tile row")
        if not along_rows and not (m.all(axis=0) == m.any(axis=0)).all():
            raise _Unknown(f"{f} under a condition that splits a tile column")
        if len(e.args) < 1:
            raise _Reject("collective needs a tensor")
        src = self.compute(e.args[0])
        if isinstance(src, float):
            raise _Reject("collective sends a tensor")
        if tuple(src.shape) != tuple(dst.shape):
            raise _Reject("collective shapes")
        if src.tensor is not None and src.tensor is dst.tensor and src.key() != dst.key():
            raise _Reject("source and target overlap")
        W, H = self.W, self.H
        s = src.arr
        out = np.array(dst.arr, copy=True)
        if f in ("broadcast_row", "broadcast_col"):
            names = [k for k, _ in e.kwargs]
            if len(e.args) != 1 or names != ["from"]:
                raise _Reject("use broadcast(t, from = r)")
            root = self.per_tile(self.int_(e.kwargs[0][1]))
            n = W if f == "broadcast_row" else H
            self.check_range(root, 0, n - 1)
            for y in range(H):
                for x in range(W):
                    if f == "broadcast_row":
                        line = {int(root[y, xx]) for xx in range(W)}
                        if len(line) != 1:
                            raise _Unknown("broadcast root differs along the row")
                        out[y, x] = s[y, int(root[y, x])]
                    else:
                        line = {int(root[yy, x]) for yy in range(H)}
                        if len(line) != 1:
                            raise _Unknown("broadcast root differs along the column")
                        out[y, x] = s[int(root[y, x]), x]
            self.store(dst, out, self.is_full(lv, dst))
        elif f in ("shift", "rotate"):
            word = self.word(e, DIRECTIONS)
            dx, dy = {"east": (1, 0), "west": (-1, 0), "south": (0, 1), "north": (0, -1)}[word]
            gets = np.ones((H, W), dtype=bool)
            for y in range(H):
                for x in range(W):
                    sx, sy = x - dx, y - dy
                    if f == "rotate":
                        out[y, x] = s[sy % H, sx % W]
                    elif 0 <= sx < W and 0 <= sy < H:
                        out[y, x] = s[sy, sx]
                    else:
                        gets[y, x] = False   # shift: this tile's target is left as it was
            self.store(dst, out, self.is_full(lv, dst), tiles=gets)
        else:
            word = self.word(e, ("add", "max"))
            op = "add" if word == "add" else "max"
            with np.errstate(all="ignore"):
                if f == "reduce_row":
                    for y in range(H):
                        acc = s[y, 0]
                        for x in range(1, W):
                            acc = f32_binop(op, acc, s[y, x])
                        for x in range(W):
                            out[y, x] = acc
                else:
                    for x in range(W):
                        acc = s[0, x]
                        for y in range(1, H):
                            acc = f32_binop(op, acc, s[y, x])
                        for y in range(H):
                            out[y, x] = acc
            self.store(dst, out, self.is_full(lv, dst))

    def word(self, e, words):
        if len(e.args) != 2 or e.kwargs or not isinstance(e.args[1], A.Name) or e.args[1].id not in words:
            raise _Reject("bad collective word")
        return e.args[1].id

    # -------------------------------------------------------------- layout
    def shape(self, ttype: A.TType):
        if not 1 <= len(ttype.dims) <= 4:
            raise _Reject("rank")
        out = []
        for d in ttype.dims:
            n = self.const(d)
            if n < 1:
                raise _Reject("dimension must be positive")
            out.append(n)
        return tuple(out)

    def dist_axes(self, decl: A.TParam, rank):
        if decl.dist.axes is None:
            return ("_",) * rank
        axes = tuple(decl.dist.axes)
        if len(axes) != rank:
            raise _Reject("axes count")
        for a in axes:
            if a not in ("x", "y", "_"):
                raise _Reject("unknown axis")
        for a in ("x", "y"):
            if axes.count(a) > 1:
                raise _Reject("axis twice")
        return axes

    def place(self, decl: A.TParam) -> TState:
        shape = self.shape(decl.type)
        axes = self.dist_axes(decl, len(shape))
        block = layout(shape, axes, self.W, self.H)
        return TState(decl.name, block, self.H, self.W, (shape, axes))

    # -------------------------------------------------------------- entry
    def run(self, inputs: dict, params: dict) -> dict:
        k = self.k
        self.bind_scalars(params)
        self.bind_sizes({n: np.asarray(v).shape for n, v in inputs.items()}, params)
        outs = []
        for p in k.params:
            if isinstance(p, A.TParam):
                self.new_name(p.name)
                t = self.place(p)
                if p.name not in inputs:
                    raise _Reject("missing input")
                glob = np.asarray(inputs[p.name], dtype=F32)
                t.arr[...] = scatter(glob, t.dist[1], self.W, self.H)
                t.mark_all()
                self.define(p.name, Sym("tensor", None, t))
        for o in k.outputs:
            self.new_name(o.name)
            t = self.place(o)
            self.define(o.name, Sym("tensor", None, t))
            outs.append(t)
        self.block(k.body)
        result = {}
        for t in outs:
            shape, axes = t.dist
            canon = np.zeros((self.H, self.W), dtype=bool)
            counts = [s // b for s, b in zip(shape, t.block)]
            for idx in np.ndindex(*counts):
                tx, ty = owner(idx, axes)
                canon[ty, tx] = True
            if any(not t.shadow[y, x].all() for y, x in zip(*np.nonzero(canon))):
                raise _Unknown(f"output '{t.name}' is not fully written")
            result[t.name] = gather(t.arr, axes, shape, self.W, self.H, check=False)
        return result

    def bind_scalars(self, params):
        for p in self.k.params:
            if not isinstance(p, A.SParam):
                continue
            self.new_name(p.name)
            if p.name in params:
                value = params[p.name]
            elif p.default is not None:
                value = self.value(p.default)
                if not known(value):
                    raise _Reject("default must be a number")
            else:
                raise _Reject("parameter without default")
            if p.type == "int":
                if isinstance(value, float) and not float(value).is_integer():
                    raise _Reject("int parameter")
                if isinstance(value, float) and not math.isfinite(value):
                    raise _Unknown("non-finite int parameter")
                self.define(p.name, Sym("int", int(value)))
            else:
                self.define(p.name, Sym("float", to_f32(value)))

    def bind_sizes(self, input_shapes, params):
        declared = {p.name for p in self.k.params}
        for name, value in params.items():
            if name in declared:
                continue
            raise _Unknown("sizes given as parameters")
        for p in self.k.params:
            if not isinstance(p, A.TParam):
                continue
            actual = input_shapes.get(p.name)
            dims = p.type.dims
            if actual is not None and len(actual) != len(dims):
                raise _Reject("input rank")
            for i, d in enumerate(dims):
                if isinstance(d, A.Name) and self.find(d.id) is None:
                    if actual is None:
                        raise _Reject("unknown size")
                    self.define(d.id, Sym("int", int(actual[i])))
                    continue
                want = self.const(d)
                if actual is not None and int(actual[i]) != want:
                    raise _Reject("shape mismatch")
        for name in input_shapes:
            if name not in declared:
                raise _Reject("no such input")

    # --------------------------------------------------------------- calls
    def dist_value(self, node):
        """(TV per tile, global shape, axes) of a distributed tensor or a slice of its whole dims."""
        if isinstance(node, A.LV):
            name, idx = node.name, node.idx or []
        elif isinstance(node, A.Name):
            name, idx = node.id, []
        elif isinstance(node, A.Sub) and isinstance(node.base, A.Name):
            name, idx = node.base.id, node.idx
        else:
            raise _Reject("a distributed tensor is needed")
        s = self.find(name)
        if s is None or s.kind != "tensor" or s.tensor.dist is None:
            raise _Reject("a distributed tensor is needed")
        shape, axes = s.tensor.dist
        tv = self.view(A.Name(name))
        if not idx:
            return tv, tuple(shape), tuple(axes)
        tv = self.index(tv, idx)
        nshape, naxes = [], []
        k = 0
        for i, (size, axis) in enumerate(zip(shape, axes)):
            ix = idx[i] if i < len(idx) else None
            whole = ix is None or (isinstance(ix, A.Rng) and ix.lo is None and ix.hi is None)
            if axis != "_" and not whole:
                raise _Reject("slice of a split dimension")
            if isinstance(ix, A.Point):
                continue
            nshape.append(size if whole else tv.shape[k])
            naxes.append(axis)
            k += 1
        return tv, tuple(nshape), tuple(naxes)

    def call(self, lv: A.LV, e: A.Call):
        self.need_all_tiles("a kernel call")
        target_tv, tshape, taxes = self.dist_value(lv)
        callee = self.table[e.func]
        if callee.name in self.call_stack:
            raise _Reject("recursion")
        tparams = [p for p in callee.params if isinstance(p, A.TParam)]
        sparams = {p.name for p in callee.params if isinstance(p, A.SParam)}
        if len(e.args) != len(tparams) or len(callee.outputs) != 1:
            raise _Reject("call arity")
        params = {}
        for name, expr in e.kwargs:
            if name not in sparams:
                raise _Reject("no such parameter")
            v = self.value(expr)
            if not known(v):
                raise _Reject("parameter must be a number")
            params[name] = v
        args = [self.dist_value(a) for a in e.args]
        child = Interp(callee, self.W, self.H, self.table, self.call_stack, self.notes)
        child.steps = self.steps
        child.record = self.record
        try:
            child.bind_scalars(params)
        except _Reject:
            raise
        shapes = {p.name: a[1] for p, a in zip(tparams, args)}
        child.bind_sizes(shapes, {})
        for p, (tv, shape, axes) in zip(tparams, args):
            child.new_name(p.name)
            t = child.place(p)
            if tuple(t.dist[0]) != tuple(shape):
                raise _Reject("call argument shape")
            self.read(tv)
            glob = gather(tv.arr, axes, shape, self.W, self.H)
            t.arr[...] = scatter(glob, t.dist[1], self.W, self.H)
            t.mark_all()
            t.is_param_of_callee = True
            child.define(p.name, Sym("tensor", None, t))
        o = callee.outputs[0]
        child.new_name(o.name)
        out = child.place(o)
        if tuple(out.dist[0]) != tuple(tshape):
            raise _Reject("call output shape")
        child.define(o.name, Sym("tensor", None, out))
        child.block(callee.body)
        self.steps = child.steps
        if not out.shadow.all():
            raise _Unknown("called kernel leaves its output unwritten")
        glob = gather(out.arr, out.dist[1], out.dist[0], self.W, self.H)
        new = scatter(glob, taxes, self.W, self.H)
        full = not lv.idx
        self.store(target_tv, new, full)


def broadcast_shapes(a, b):
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x != y and 1 not in (x, y):
            raise _Reject("shapes do not broadcast")
        out.append(max(x, y))
    return tuple(reversed(out))


# ------------------------------------------------------------------ entry
def kernel_table(module: A.Module, bundled_dir=None):
    """Every kernel by name: the file's own and the bundled kernels it imports (not paths)."""
    from pathlib import Path
    if bundled_dir is None:
        import tilegrid.kernels
        bundled_dir = Path(tilegrid.kernels.__file__).resolve().parent
    bundled_dir = Path(bundled_dir)
    table = {}
    seen = set()

    def collect(mod, own):
        for item in mod.items:
            if isinstance(item, A.Import):
                for target, is_path in item.items:
                    if is_path:
                        raise _Unknown("import of a path")
                    if target in seen:
                        continue
                    seen.add(target)
                    path = bundled_dir / f"{target}.tg"
                    if not path.exists():
                        raise _Reject("no such bundled kernel")
                    collect(A.parse_source(path.read_text()), False)
        for k in mod.kernels:
            if k.name in table and table[k.name][1] != own:
                raise _Reject("kernel defined twice")
            table[k.name] = (k, own)

    collect(module, True)
    return {n: k for n, (k, _) in table.items()}


def evaluate(source, grid, inputs, params=None, record=None):
    """The oracle's verdict on one case (see the module docstring). record: a dict to fill
    with the shape of each assignment's target view (by id of the statement node)."""
    try:
        module = A.parse_source(source) if isinstance(source, str) else source
    except A.ParseFailure as exc:
        return Unknown(f"parse: {exc}")
    W, H = int(grid[0]), int(grid[1])
    import warnings
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return _evaluate(module, W, H, inputs, params, record)


def _evaluate(module, W, H, inputs, params, record=None):
    try:
        own = module.kernels
        if not own:
            return Unknown("no kernel")
        table = kernel_table(module)
        it = Interp(own[-1], W, H, table)
        it.record = record
        outputs = it.run(inputs, dict(params or {}))
        return Expected(outputs, sorted(it.notes))
    except _Invalid as exc:
        return Invalid(str(exc))
    except _Reject as exc:
        return Unknown(f"compile error expected: {exc}")
    except _Unknown as exc:
        return Unknown(str(exc))
    except A.ParseFailure as exc:
        return Unknown(f"parse of an import: {exc}")
    except RecursionError:
        return Unknown("too deep for the oracle")


def compare(expected: dict, got: dict) -> str | None:
    """None when every output matches bit for bit (any NaN matches any NaN), else a description."""
    for name, want in expected.items():
        if name not in got:
            return f"output '{name}' missing"
        g = np.asarray(got[name], dtype=F32)
        w = np.asarray(want, dtype=F32)
        if g.shape != w.shape:
            return f"output '{name}' has shape {g.shape}, expected {w.shape}"
        nan = np.isnan(g) & np.isnan(w)
        diff = (g.view(np.uint32) != w.view(np.uint32)) & ~nan
        if diff.any():
            i = tuple(int(v) for v in np.argwhere(diff)[0])
            return (f"output '{name}'{list(i)}: got {float(g[i])!r}, expected {float(w[i])!r}; "
                    f"{int(diff.sum())} of {diff.size} values differ")
    return None


# ------------------------------------------------------------- de-aliasing
def _mentions(e, name) -> bool:
    if isinstance(e, A.Name):
        return e.id == name
    if isinstance(e, (A.Num, A.Raw)) or e is None:
        return False
    if isinstance(e, A.Bin):
        return _mentions(e.a, name) or _mentions(e.b, name)
    if isinstance(e, (A.Neg, A.Not, A.Paren)):
        return _mentions(e.a, name)
    if isinstance(e, A.Call):
        return any(_mentions(a, name) for a in e.args) or any(_mentions(v, name) for _, v in e.kwargs)
    if isinstance(e, A.Sub):
        return _mentions(e.base, name) or any(_mentions_index(i, name) for i in e.idx)
    return True


def _mentions_index(i, name):
    if isinstance(i, A.Point):
        return _mentions(i.e, name)
    if isinstance(i, A.Rng):
        return _mentions(i.lo, name) or _mentions(i.hi, name)
    return _mentions(i.start, name) or _mentions(i.length, name)


def dealias(source: str, grid, inputs, params=None, which="expr"):
    """The same program with every assignment that reads its own target computed into a
    fresh local first (`fzt1 = rhs; target = fzt1`). Under value semantics nothing
    changes; if tilegrid's result changes, it computed that assignment in place.
    Returns (new source, how many statements were rewritten) or None."""
    module = A.parse_source(source)
    record = {}
    v = evaluate(module, grid, inputs, params, record)
    if not isinstance(v, Expected):
        return None
    table_names = set(kernel_table(module))
    count = [0]

    def rewrite(stmts, decls):
        out = []
        for s in stmts:
            if isinstance(s, A.For):
                out.append(A.For(s.var, s.lo, s.hi, rewrite(s.body, decls)))
            elif isinstance(s, A.If):
                out.append(A.If(s.cond, rewrite(s.then, decls), rewrite(s.orelse, decls)))
            elif which == "collective" and isinstance(s, A.Assign) and isinstance(s.e, A.Call) \
                    and s.e.func in COLLECTIVES and s.e.args and _mentions(s.e.args[0], s.lv.name) \
                    and id(s) in record:
                count[0] += 1
                tmp = f"fzt{count[0]}"
                decls.append(A.Local(tmp, A.TType([A.Num(str(d)) for d in record[id(s)]] or [A.Num("1")])))
                out.append(A.Assign(A.LV(tmp), s.e.args[0]))
                out.append(A.Assign(s.lv, A.Call(s.e.func, [A.Name(tmp)] + s.e.args[1:], s.e.kwargs)))
            elif which == "expr" and isinstance(s, (A.Assign, A.Acc)) and id(s) in record \
                    and _mentions(s.e, s.lv.name) and not (isinstance(s.e, A.Name)) \
                    and not (isinstance(s.e, A.Call) and (s.e.func in COLLECTIVES or s.e.func in table_names)) \
                    and not (isinstance(s, A.Acc) and isinstance(s.e, A.Bin) and s.e.op == "@"):
                count[0] += 1
                tmp = f"fzt{count[0]}"
                decls.append(A.Local(tmp, A.TType([A.Num(str(d)) for d in record[id(s)]] or [A.Num("1")])))
                out.append(A.Assign(A.LV(tmp), s.e))
                out.append(type(s)(s.lv, A.Name(tmp)))
            else:
                out.append(s)
        return out

    for k in module.kernels:
        decls = []
        body = rewrite(k.body, decls)
        k.body = decls + body
    if not count[0]:
        return None
    return A.render_module(module), count[0]
