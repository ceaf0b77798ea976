"""Hypothesis strategies that make tilegrid fuzz cases: kernels, grids and inputs.

    cases("generate")   grammar-aware kernels built from the language (fuzzast nodes);
    cases("mutate")     token-level mutations of the bundled kernels/*.tg;
    cases("both")       either.

A case is a Case: source text, grid, inputs (float32 arrays shaped so the
kernel can bind its sizes), scalar params and whether to --check. Generated
kernels are valid most of the time (sizes divide the grid, indices are in
range, every buffer is written before it is read), so the checker, the
passes and the emulator all run; nasty values (int32 boundaries, 1e999,
huge literals, deep nesting, loops near 2**31, odd text) come in at a low
rate. Every draw goes through hypothesis, so it can shrink a failure.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

import fuzzast as A

NASTY_PCT = 12          # cases that get one nasty value or shape
INT_BOUNDARY = ["2147483647", "2147483648", "4294967296", "4294967295", "1073741824", "65536",
                "9223372036854775807", "9223372036854775808", "18446744073709551616", "1000000000000"]
FLOAT_NASTY = ["1e999", "1e39", "3.4028235e38", "3.4028236e38", "1e-46", "1e-38", "16777217.0",
               "0.0", "1e308", "2e-45"]


# ================================================================== cases
@dataclass
class Case:
    source: str
    grid: tuple
    inputs: dict
    params: dict = field(default_factory=dict)
    check: bool = False
    origin: str = "generate"
    notes: list = field(default_factory=list)
    config: dict = field(default_factory=dict)   # MachineConfig fields besides the grid

    def to_wire(self) -> dict:
        return {"source": self.source, "grid": tuple(self.grid), "inputs": self.inputs, "params": self.params,
                "check": self.check, "config": self.config,
                "origin": self.origin + (f" [{', '.join(self.notes)}]" if self.notes else "")}

    def key(self) -> str:
        """What makes two cases the same for the fuzzer (input values aside)."""
        import hashlib
        shapes = sorted((k, str(v.dtype), tuple(v.shape)) for k, v in self.inputs.items())
        text = repr((self.source, tuple(self.grid), shapes, sorted(self.params.items(), key=str), self.check,
                     sorted(self.config.items())))
        return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()

    def __repr__(self):  # what hypothesis prints for a failing example: enough to reproduce it
        shapes = ", ".join(f"{k}: {v.dtype}{list(v.shape)}" for k, v in self.inputs.items())
        return (f"Case(origin={self.origin!r}, grid={tuple(self.grid)!r}, params={self.params!r}, "
                f"config={self.config!r}, "
                f"check={self.check!r}, inputs={{{shapes}}}, notes={self.notes!r})\n"
                f"----- source -----\n{self.source}\n------------------")


class G:
    """Draw helpers; every choice shrinks toward the first / smallest / 'no'."""

    def __init__(self, draw):
        self.draw = draw

    def int(self, lo, hi):
        return self.draw(st.integers(lo, hi))

    def pick(self, seq):
        seq = list(seq)
        return seq[self.int(0, len(seq) - 1)]

    def chance(self, pct):
        return self.int(0, 99) >= 100 - pct

    def weighted(self, options):
        """options: [(weight, value)], first is the simplest."""
        options = [(w, v) for w, v in options if w > 0]
        total = sum(w for w, _ in options)
        r = self.int(0, total - 1)
        for w, v in options:
            if r < w:
                return v
            r -= w
        return options[-1][1]


def machine_config(g: G) -> dict:
    """Mostly the default machine; sometimes queues of one or two wavelets (back-pressure
    everywhere), few colors or little SRAM (errors that must be messages)."""
    if not g.chance(25):
        return {}
    return g.pick([{"queue_depth": 1}, {"queue_depth": 2}, {"colors": g.int(1, 4)}, {"sram_bytes": g.pick([512, 4096])},
                   {"queue_depth": 1, "colors": 3}])


def cases(mode="both"):
    if mode == "generate":
        return generated_cases()
    if mode == "mutate":
        return mutated_cases()
    return st.one_of(generated_cases(), mutated_cases())


# ============================================================ int expressions
@dataclass
class IE:
    """An integer expression with what the checker will know about it."""
    node: object
    known: bool          # compile-time constant
    lo: int
    hi: int
    uses: frozenset = frozenset()   # run-time names it depends on: tx, ty, loop variables


def _ibin(op, a: IE, b: IE) -> IE:
    node = A.Bin(op, a.node, b.node)
    uses = a.uses | b.uses
    if a.known and b.known:
        x = a.lo
        y = b.lo
        if op in ("//", "%") and y == 0:
            return IE(node, False, -(1 << 31), (1 << 31) - 1, uses)
        v = {"+": x + y, "-": x - y, "*": x * y, "//": x // y if y else 0, "%": x % y if y else 0}[op]
        return IE(node, True, v, v, uses)
    if op == "+":
        return IE(node, False, a.lo + b.lo, a.hi + b.hi, uses)
    if op == "-":
        return IE(node, False, a.lo - b.hi, a.hi - b.lo, uses)
    if op == "*":
        p = [x * y for x in (a.lo, a.hi) for y in (b.lo, b.hi)]
        return IE(node, False, min(p), max(p), uses)
    if op == "//" and b.known and b.lo > 0:
        return IE(node, False, a.lo // b.lo, a.hi // b.lo, uses)
    if op == "%" and b.known and b.lo > 0:
        if a.lo >= 0 and a.hi < b.lo:
            return IE(node, False, a.lo, a.hi, uses)
        return IE(node, False, 0, b.lo - 1, uses)
    return IE(node, False, -(1 << 31), (1 << 31) - 1, uses)


def _num(v: int) -> IE:
    node = A.Num(str(v)) if v >= 0 else A.Neg(A.Num(str(-v)))
    return IE(node, True, v, v)


# ================================================================ kernels
@dataclass
class T:
    """A tensor in scope: its block shape on a tile, and its distribution if it has one."""
    name: str
    shape: tuple
    role: str                       # input | output | local | tensor
    dist: tuple | None = None       # (global shape, axes)
    ready: bool = False             # written everywhere, so it may be read


class KernelGen:
    def __init__(self, g: G):
        self.g = g
        self.tensors: list[T] = []
        self.scalars: list[tuple] = []      # (name, kind, value): compile-time numbers
        self.loopvars: list[tuple] = []     # (name, lo, hi) in scope
        self.names = set()
        self.counter = 0
        self.cond_uses = frozenset()        # run-time names of the enclosing tile conditions
        self.target = None                  # the tensor being assigned (operands favour it: aliasing)
        self.avoid = None                   # a tensor operands must not use (a rule the checker enforces)
        self.notes = []
        self.helpers = []                   # helper kernels defined before the main one
        self.imports = []

    def fresh(self, prefix):
        self.counter += 1
        name = f"{prefix}{self.counter}"
        self.names.add(name)
        return name

    # ------------------------------------------------------------ top level
    def build(self) -> Case:
        g = self.g
        wide = g.chance(10)    # wide blocks: the SIMD mmac's 16-lane and masked edges
        if wide:
            self.W = g.weighted([(3, 1), (2, 2)])
            self.H = g.weighted([(3, 1), (2, 2)])
        else:
            self.W = g.weighted([(3, 1), (4, 2), (2, 3), (1, 4), (0 if not g.chance(5) else 1, 6)])
            self.H = g.weighted([(3, 1), (4, 2), (2, 3), (1, 4), (0 if not g.chance(5) else 1, 5)])
        W, H = self.W, self.H
        L = math.lcm(W, H)
        self.sizes = {}
        for name in ["M", "N", "K"][:g.weighted([(3, 1), (4, 2), (2, 3)])]:
            if wide:
                target = g.pick([15, 16, 17, 31, 32, 33, 40, 47, 48])
                v = max(L, target // L * L)
            else:
                m = g.weighted([(5, 1), (4, 2), (1, 3)])
                v = L * m if L * m <= 24 else L
            self.sizes[name] = v
        if wide:
            self.notes.append("wide")
        nasty = g.chance(NASTY_PCT)
        kinds = ["int-boundary", "float", "huge-literal", "deep", "lcm", "huge-local", "loop-2^31", "text",
                 "inputs", "params", "indivisible"]
        self.nasty = g.pick(kinds) if nasty else None
        if self.nasty == "indivisible":
            name = g.pick(sorted(self.sizes))
            self.sizes[name] = self.sizes[name] + g.int(1, 3)
        if self.nasty:
            self.notes.append(f"nasty: {self.nasty}")

        params, body = [], []
        # tensor inputs
        n_in = g.weighted([(3, 1), (4, 2), (2, 3)])
        for i in range(n_in):
            params.append(self.tensor_param(["A", "B", "D"][i], "input"))
        # sizes bind from the inputs only: forget the ones no input names
        used = {n for t in self.tensors for n in t.dims_names}
        if self.nasty != "indivisible" or g.chance(50):
            self.sizes = {n: v for n, v in self.sizes.items() if n in used}
        # scalar parameters
        self.given = {}
        if g.chance(25):
            kind = g.pick(["float", "int", "float-nodefault"])
            if kind == "float":
                lit = g.pick(["0.5", "2.0", "0.125", "3.5", "1e-3"])
                params.append(A.SParam("alpha", "float", A.Num(lit)))
                self.scalars.append(("alpha", "float", float(np.float32(float(lit)))))
            elif kind == "int":
                v = g.int(0, 4)
                params.append(A.SParam("n", "int", A.Num(str(v))))
                self.scalars.append(("n", "int", v))
            else:
                params.append(A.SParam("beta", "float", None))
                if not g.chance(10):
                    self.given["beta"] = g.pick([0.25, 1.5, -2.0, 3])
                    self.scalars.append(("beta", "float", float(np.float32(self.given["beta"]))))
        # outputs
        outputs = []
        for name in ["C", "Z"][:g.weighted([(6, 1), (1, 2)])]:
            outputs.append(self.tensor_param(name, "output", like=True))

        # constants, requirements
        for _ in range(g.weighted([(3, 0), (3, 1), (1, 2)])):
            body.append(self.const_stmt())
        if g.chance(15):
            body.append(self.require_stmt())
        # locals
        for _ in range(g.weighted([(2, 0), (4, 1), (3, 2), (1, 3)])):
            body.append(self.local_decl())
        if g.chance(15):
            body.append(self.tensor_local())
        if g.chance(8):
            self.helper_kernel()
        # every output and local written first, so everything later may read them
        for t in list(self.tensors):
            if not t.ready:
                body.append(self.init_stmt(t))
        body += self.stmts(g.weighted([(1, 1), (3, 2), (4, 4), (2, 7)]), 0)
        name = "k" if not g.chance(5) else g.pick(["matmul", "softmax", "gemv"])
        kernel = A.Kernel(name, params, outputs, body)
        module = A.Module(self.imports + self.helpers + [kernel])
        inputs = self.make_inputs(params)
        source = A.render_module(module)
        params_given = dict(self.given)
        grid = (W, H)
        if self.nasty:
            source, grid, inputs, params_given = self.apply_nasty(source, grid, inputs, params_given, body)
        return Case(source, grid, inputs, params_given, check=(name != "k" and g.chance(50)),
                    origin="generate", notes=self.notes, config=machine_config(g))

    # ---------------------------------------------------------- signature
    def tensor_param(self, name, role, like=False):
        g = self.g
        sizes = sorted(self.sizes)
        ins = [t for t in self.tensors if t.role == "input"]
        if like and ins and g.chance(60):
            src = g.pick(ins)
            gshape_names = src.dims_names
            axes = src.dist[1] if g.chance(70) else self.pick_axes(len(gshape_names))
        else:
            rank = g.weighted([(3, 1), (8, 2), (1, 3), (1 if g.chance(30) else 0, 4)])
            gshape_names = [g.pick(sizes) for _ in range(rank)]
            axes = self.pick_axes(rank)
        gshape = tuple(self.sizes[n] for n in gshape_names)
        dist = A.DistSpec(None) if axes == "replicated" else A.DistSpec(list(axes))
        axes_t = ("_",) * len(gshape) if axes == "replicated" else tuple(axes)
        block = tuple(s // (self.W if a == "x" else self.H if a == "y" else 1) for s, a in zip(gshape, axes_t))
        t = T(name, block, role, (gshape, axes_t), ready=(role == "input"))
        t.dims_names = gshape_names
        self.tensors.append(t)
        self.names.add(name)
        return A.TParam(name, A.TType([A.Name(n) for n in gshape_names]), dist)

    def pick_axes(self, rank):
        g = self.g
        if rank == 1:
            return g.weighted([(4, ("x",)), (2, ("y",)), (1, ("_",)), (3, "replicated")])
        if rank == 2:
            return g.weighted([(10, ("y", "x")), (2, ("y", "_")), (2, ("_", "x")), (2, "replicated"),
                               (1, ("x", "y")), (1, ("_", "_")), (1, ("x", "_")), (1, ("_", "y"))])
        if rank == 4:
            return g.weighted([(2, ("y", "x", "_", "_")), (1, ("_", "_", "y", "x")), (1, "replicated"),
                               (1, ("_", "x", "_", "y"))])
        return g.weighted([(3, ("y", "x", "_")), (1, ("_", "y", "x")), (1, "replicated"), (1, ("x", "_", "y"))])

    def dim_atoms(self):
        """(expr, value) pairs usable as a local's dimension."""
        W, H = self.W, self.H
        out = [(A.Num("1"), 1), (A.Num("2"), 2)]
        for n, v in self.sizes.items():
            out.append((A.Name(n), v))
            for div, text in ((H, "H"), (W, "W")):
                if v % div == 0 and div > 1:
                    out.append((A.Bin("/", A.Name(n), A.Name(text)), v // div))
            if v % (W * H) == 0 and W * H > 1:
                out.append((A.Bin("/", A.Name(n), A.Paren(A.Bin("*", A.Name("W"), A.Name("H")))), v // (W * H)))
        return out

    # ------------------------------------------------------------ decls
    def const_stmt(self):
        g = self.g
        name = self.fresh("c")
        if g.chance(30):
            lit, value = g.pick([("1.0 / sqrt(4.0)", 0.5), ("0.5 * 3.0", 1.5), ("exp(1.0)", None), ("2.5", 2.5)])
            node = A.Raw(lit)
            if value is None:
                from tilegrid.emulator.transcendentals import exp_f32
                value = float(np.float32(exp_f32(np.float32(1.0))))
            self.scalars.append((name, "float", float(np.float32(value))))
            return A.Const(name, node)
        e = self.int_expr(2, runtime=False)
        self.scalars.append((name, "int", e.lo))
        return A.Const(name, e.node)

    def require_stmt(self):
        g = self.g
        n, v = g.pick(sorted(self.sizes.items()))
        if g.chance(10):
            return A.Require(A.Bin(">", A.Name("W"), A.Num("100")), "W must be over 100 (never true here)")
        cond = g.pick([A.Bin("==", A.Bin("%", A.Name(n), A.Name("W")), A.Num(str(v % self.W))),
                       A.Bin(">=", A.Name(n), A.Num("1")),
                       A.Bin("and", A.Bin(">=", A.Name("W"), A.Num("1")), A.Bin("<=", A.Name("H"), A.Num("4")))])
        return A.Require(cond, g.pick([None, "sizes must fit", "needs \\u2014 unicode \u2713"]))

    def local_decl(self):
        g = self.g
        name = self.fresh("t")
        ready = [t for t in self.tensors]
        if ready and g.chance(65):
            src = g.pick(ready)
            shape = src.shape
            dims = self.dims_for(shape)
            if len(shape) == 2 and g.chance(20):
                shape = (shape[1], shape[0])
                dims = self.dims_for(shape)
        else:
            atoms = self.dim_atoms()
            rank = g.weighted([(3, 1), (5, 2), (1, 3)])
            chosen = [g.pick(atoms) for _ in range(rank)]
            if rank >= 2 and g.chance(30):
                chosen[-1] = (A.Num("1"), 1)
            dims = [d for d, _ in chosen]
            shape = tuple(v for _, v in chosen)
        self.tensors.append(T(name, shape, "local"))
        return A.Local(name, A.TType(dims))

    def dims_for(self, shape):
        atoms = self.dim_atoms()
        out = []
        for v in shape:
            options = [d for d, av in atoms if av == v]
            out.append(self.g.pick(options) if options else A.Num(str(v)))
        return out

    def tensor_local(self):
        g = self.g
        name = self.fresh("g")
        dist_src = [t for t in self.tensors if t.dist is not None]
        src = g.pick(dist_src)
        names = src.dims_names
        axes = self.pick_axes(len(names))
        axes_t = ("_",) * len(names) if axes == "replicated" else tuple(axes)
        gshape = src.dist[0]
        block = tuple(s // (self.W if a == "x" else self.H if a == "y" else 1) for s, a in zip(gshape, axes_t))
        t = T(name, block, "tensor", (gshape, axes_t))
        t.dims_names = names
        self.tensors.append(t)
        dist = A.DistSpec(None) if axes == "replicated" else A.DistSpec(list(axes))
        return A.TensorLocal(A.TParam(name, A.TType([A.Name(n) for n in names]), dist))

    def helper_kernel(self):
        """A second kernel the body calls: a bundled one, or a small one defined in the file."""
        g = self.g
        mats = [t for t in self.tensors if t.dist is not None and len(t.dist[0]) == 2 and t.role == "input"]
        if not mats:
            return
        if g.chance(50):
            self.imports = [A.Import([(g.pick(["softmax", "layernorm", "matmul"]), False)])]
            self.notes.append(f"calls {self.imports[0].items[0][0]}")
            return
        axes = g.pick([["y", "x"], ["y", "_"], None])
        dist = A.DistSpec(axes)
        body = [A.Assign(A.LV("Q"), g.pick([A.Bin("+", A.Bin("*", A.Name("P"), A.Num("2.0")), A.Num("1.0")),
                                             A.Call("exp", [A.Bin("*", A.Name("P"), A.Num("0.5"))]),
                                             A.Bin("-", A.Name("P"), A.Call("rowmax", [A.Name("P")]))]))]
        if axes == ["y", "x"] and g.chance(50):
            body.append(A.Assign(A.LV("Q"), A.Call("rotate", [A.Name("Q"), A.Name(g.pick(["east", "north"]))])))
        helper = A.Kernel("helper", [A.TParam("P", A.TType([A.Name("R"), A.Name("S")]), dist)],
                          [A.TParam("Q", A.TType([A.Name("R"), A.Name("S")]), dist)], body)
        self.helpers = [helper]
        self.notes.append("calls helper")

    def init_stmt(self, t: T):
        self.target = t
        e, _ = self.expr(t.shape, 2)
        self.target = None
        t.ready = True
        return A.Assign(A.LV(t.name), self.not_a_redistribution(t, e))

    def not_a_redistribution(self, t: T, e):
        """`a = b` between distributed tensors of other layouts redistributes (whole tensors, so
        the global shapes must agree); keep such an elementwise copy a block copy unless they do."""
        if isinstance(e, A.Name) and t.dist is not None:
            src = next((s for s in self.tensors if s.name == e.id), None)
            if src is not None and src.dist is not None and src.dist[1] != t.dist[1] and src.dist[0] != t.dist[0]:
                return A.Bin("*", e, A.Num("1.0"))
        return e

    # ------------------------------------------------------------ statements
    def stmts(self, n, depth):
        return [self.stmt(depth) for _ in range(n)]

    def stmt(self, depth):
        g = self.g
        kinds = [(20, "assign"), (8, "assign-slice"), (10, "acc"), (14, "collective"),
                 (8 if depth < 2 else 0, "for"), (8 if depth < 2 else 0, "if"), (3, "const"),
                 (3, "redistribute"), (3 if self.imports or self.helpers else 0, "call")]
        kind = g.weighted(kinds)
        if kind == "assign":
            t = self.writable()
            self.target = t
            e, _ = self.expr(t.shape, 3)
            self.target = None
            return A.Assign(A.LV(t.name), self.not_a_redistribution(t, e))
        if kind == "assign-slice":
            t = self.writable()
            idx, shape = self.slice_of(t.shape)
            self.target = t
            e, _ = self.expr(shape, 2)
            self.target = None
            return A.Assign(A.LV(t.name, idx or None), e)
        if kind == "acc":
            return self.acc_stmt()
        if kind == "collective":
            return self.collective_stmt()
        if kind == "for":
            return self.for_stmt(depth)
        if kind == "if":
            return self.if_stmt(depth)
        if kind == "const":
            return self.const_stmt()
        if kind == "redistribute":
            return self.redistribute_stmt()
        return self.call_stmt()

    def writable(self) -> T:
        g = self.g
        ws = [t for t in self.tensors if t.role in ("output", "local", "tensor")]
        if g.chance(5):
            ws = [t for t in self.tensors if t.role == "input"] or ws
        return g.pick(ws)

    def acc_stmt(self):
        g = self.g
        t = self.writable()
        sliced = g.chance(25)
        idx, shape = self.slice_of(t.shape) if sliced else ([], t.shape)
        lv = A.LV(t.name, idx or None)
        form = g.weighted([(3, "plain"), (3 if len(shape) in (1, 2) else 0, "matmul"), (2, "fmac")])
        if form == "matmul":
            e = self.matmul_expr(shape, 1, avoid=t)
            if e is not None:
                return A.Acc(lv, e)
        if form == "fmac":
            a, _ = self.expr(shape, 1)
            b, _ = self.expr(shape, 1)
            return A.Acc(lv, A.Bin("*", a, b))
        self.target = t
        e, _ = self.expr(shape, 2)
        self.target = None
        return A.Acc(lv, e)

    def collective_stmt(self):
        g = self.g
        ok_row = "tx" not in self.cond_uses
        ok_col = "ty" not in self.cond_uses
        if not (ok_row or ok_col) and not g.chance(10):
            t = self.writable()
            e, _ = self.expr(t.shape, 2)
            return A.Assign(A.LV(t.name), e)
        t = self.writable()
        sliced = g.chance(20)
        idx, shape = self.slice_of(t.shape) if sliced else ([], t.shape)
        lv = A.LV(t.name, idx or None)
        same_view = A.Sub(A.Name(t.name), idx) if idx else A.Name(t.name)
        src = same_view
        if g.chance(70):
            self.avoid = t if not g.chance(5) else None
            e, s = self.expr(shape, 2, exact=True)
            self.avoid = None
            if tuple(s) == tuple(shape):
                src = e
        if not (ok_row or ok_col):   # on purpose: a collective some tiles skip (a deadlock to report)
            ok_row = ok_col = True
        f = g.weighted([(3, "rotate"), (3, "shift"), (3 if ok_row else 0, "broadcast_row"),
                        (3 if ok_col else 0, "broadcast_col"), (2 if ok_row else 0, "reduce_row"),
                        (2 if ok_col else 0, "reduce_col")])
        if f in ("rotate", "shift"):
            dirs = (["east", "west"] if ok_row else []) + (["south", "north"] if ok_col else [])
            d = g.pick(dirs)
            return A.Assign(lv, A.Call(f, [src, A.Name(d)]))
        if f.startswith("broadcast"):
            n = self.W if f == "broadcast_row" else self.H
            root = self.root_expr(n, "ty" if f == "broadcast_row" else "tx")
            return A.Assign(lv, A.Call(f, [src], [("from", root)]))
        return A.Assign(lv, A.Call(f, [src, A.Name(g.pick(["add", "max"]))]))

    def root_expr(self, n, other_axis):
        g = self.g
        options = [(3, "const"), (3 if self.loopvars else 0, "loop"), (1, "other"), (1, "expr")]
        kind = g.weighted(options)
        if kind == "const":
            return A.Num(str(g.int(0, n - 1)))
        if kind == "loop":
            v, lo, hi = g.pick(self.loopvars)
            return A.Bin("%", A.Paren(A.Bin("+", A.Name(v), A.Num(str(g.int(0, 2))))), A.Num(str(n)))
        if kind == "other":   # a row's root may depend on the row
            return A.Bin("%", A.Name(other_axis), A.Num(str(n)))
        return self.start_expr(n - 1, runtime_names=[v for v, _, _ in self.loopvars]).node

    def for_stmt(self, depth):
        g = self.g
        var = self.fresh("i")
        lo = g.weighted([(8, 0), (1, 1), (1, 2)])
        hi = lo + g.weighted([(1, 0), (4, 1), (5, 2), (3, 3)])
        self.loopvars.append((var, lo, hi))
        n_scal = len(self.scalars)
        body = self.stmts(g.weighted([(3, 1), (3, 2), (1, 3)]), depth + 1)
        self.loopvars.pop()
        del self.scalars[n_scal:]
        return A.For(var, A.Num(str(lo)), A.Num(str(hi)), body)

    def if_stmt(self, depth):
        g = self.g
        cond, uses = self.cond()
        outer = self.cond_uses
        self.cond_uses = outer | uses
        n_scal = len(self.scalars)
        then = self.stmts(g.weighted([(3, 1), (2, 2)]), depth + 1)
        del self.scalars[n_scal:]
        orelse = []
        if g.chance(35):
            if g.chance(25) and depth < 1:
                orelse = [self.if_stmt(depth + 1)]
            else:
                orelse = self.stmts(g.weighted([(3, 1), (1, 2)]), depth + 1)
                del self.scalars[n_scal:]
        self.cond_uses = outer
        return A.If(cond, then, orelse)

    def redistribute_stmt(self):
        g = self.g
        dists = [t for t in self.tensors if t.dist is not None and t.ready]
        pairs = [(a, b) for a in dists for b in dists if a is not b and a.role != "input"
                 and a.dist[0] == b.dist[0]]
        if not pairs:
            t = self.writable()
            e, _ = self.expr(t.shape, 2)
            return A.Assign(A.LV(t.name), e)
        a, b = g.pick(pairs)
        return A.Assign(A.LV(a.name), A.Name(b.name))

    def call_stmt(self):
        g = self.g
        mats = [t for t in self.tensors if t.dist is not None and len(t.dist[0]) == 2 and t.ready]
        outs = [t for t in self.tensors if t.dist is not None and t.role != "input"]
        if not mats or not outs:
            return self.redistribute_stmt()
        if self.helpers:
            src = g.pick(mats)
            same = [t for t in outs if t.dist[0] == src.dist[0]] or outs
            return A.Assign(A.LV(g.pick(same).name), A.Call("helper", [A.Name(src.name)]))
        kname = self.imports[0].items[0][0]
        src = g.pick(mats)
        if kname == "softmax":
            same = [t for t in outs if t.dist[0] == src.dist[0]] or outs
            return A.Assign(A.LV(g.pick(same).name), A.Call("softmax", [A.Name(src.name)]))
        if kname == "matmul":
            other = g.pick(mats)
            return A.Assign(A.LV(g.pick(outs).name), A.Call("matmul", [A.Name(src.name), A.Name(other.name)]))
        vecs = [t for t in self.tensors if t.dist is not None and len(t.dist[0]) == 1 and t.ready] or mats
        gv = g.pick(vecs)
        bv = g.pick(vecs)
        kw = [("eps", A.Num(g.pick(["1e-5", "0.5", "1e999"])))] if g.chance(30) else []
        return A.Assign(A.LV(g.pick(outs).name), A.Call("layernorm", [A.Name(src.name), A.Name(gv.name),
                                                                       A.Name(bv.name)], kw))

    # ------------------------------------------------------------ conditions
    def cond(self):
        g = self.g
        kind = g.weighted([(5, "tile"), (2 if self.loopvars else 0, "loop"), (2, "static"), (1, "combo")])
        if kind == "static":
            n, v = g.pick(sorted(self.sizes.items()) + [("W", self.W), ("H", self.H)])
            op = g.pick(["==", "!=", "<", ">", "<=", ">="])
            return A.Bin(op, A.Name(n), A.Num(str(g.int(0, 4)))), frozenset()
        if kind == "loop":
            v, lo, hi = g.pick(self.loopvars)
            form = g.pick([A.Bin("<", A.Name(v), A.Num(str(g.int(lo, max(lo, hi - 1))))),
                           A.Bin("==", A.Bin("%", A.Name(v), A.Num("2")), A.Num("0")),
                           A.Bin("<", A.Name(v), A.Name(g.pick(["tx", "ty"])))])
            uses = frozenset({v}) | ({"tx"} if "tx" in A.render_expr(form) else set()) | \
                ({"ty"} if "ty" in A.render_expr(form) else set())
            return form, uses
        if kind == "combo":
            a, ua = self.cond()
            b, ub = self.cond()
            if g.chance(30):
                return A.Not(a), ua
            return A.Bin(g.pick(["and", "or"]), a, b), ua | ub
        e = self.int_expr(2, runtime=True)
        op = g.pick(["<", "==", ">=", "!=", ">", "<="])
        rhs = self.int_expr(1, runtime=False)
        return A.Bin(op, e.node, rhs.node), e.uses

    # ------------------------------------------------------------ integers
    def int_atom(self, runtime):
        g = self.g
        opts = [(3, "lit"), (2, "W"), (2, "H"), (2, "size")]
        ints = [s for s in self.scalars if s[1] == "int"]
        if ints:
            opts.append((2, "const"))
        if runtime:
            opts += [(6, "tx"), (6, "ty")]
            if self.loopvars:
                opts.append((6, "loop"))
        kind = g.weighted(opts)
        if kind == "lit":
            return _num(g.int(0, 5))
        if kind == "W":
            return IE(A.Name("W"), True, self.W, self.W)
        if kind == "H":
            return IE(A.Name("H"), True, self.H, self.H)
        if kind == "size":
            n, v = g.pick(sorted(self.sizes.items()))
            return IE(A.Name(n), True, v, v)
        if kind == "const":
            n, _, v = g.pick(ints)
            return IE(A.Name(n), True, v, v)
        if kind == "tx":
            return IE(A.Name("tx"), False, 0, self.W - 1, frozenset({"tx"}))
        if kind == "ty":
            return IE(A.Name("ty"), False, 0, self.H - 1, frozenset({"ty"}))
        v, lo, hi = g.pick(self.loopvars)
        return IE(A.Name(v), False, lo, max(lo, hi - 1), frozenset({v}))

    def int_expr(self, depth, runtime=True) -> IE:
        g = self.g
        if depth <= 0 or g.chance(40):
            return self.int_atom(runtime)
        kind = g.weighted([(4, "+"), (3, "-"), (3, "*"), (2, "//"), (2, "%"), (1, "min"), (1, "max"), (1, "neg")])
        if kind == "neg":
            a = self.int_expr(depth - 1, runtime)
            node = A.Neg(a.node)
            if a.known:
                return IE(node, True, -a.lo, -a.lo, a.uses)
            return IE(node, False, -a.hi, -a.lo, a.uses)
        if kind in ("min", "max"):
            a, b = self.int_expr(depth - 1, runtime), self.int_expr(depth - 1, runtime)
            node = A.Call(kind, [a.node, b.node])
            f = min if kind == "min" else max
            if a.known and b.known:
                v = f(a.lo, b.lo)
                return IE(node, True, v, v, a.uses | b.uses)
            return IE(node, False, f(a.lo, b.lo), f(a.hi, b.hi), a.uses | b.uses)
        a = self.int_expr(depth - 1, runtime)
        if kind in ("//", "%"):
            b = _num(g.int(1, 4)) if not g.chance(3) else self.int_expr(0, runtime)
        else:
            b = self.int_expr(depth - 1, runtime)
        return _ibin(kind, IE(A.Paren(a.node) if isinstance(a.node, A.Bin) else a.node, a.known, a.lo, a.hi,
                              a.uses), b)

    def start_expr(self, maxstart, runtime_names=None) -> IE:
        """An index in 0..maxstart that the checker can prove (wrapped in % when needed)."""
        g = self.g
        if maxstart <= 0:
            return _num(0) if not g.chance(20) else IE(A.Bin("*", A.Name("tx"), A.Num("0")), False, 0, 0)
        if g.chance(30):
            return _num(g.int(0, maxstart))
        e = self.int_expr(2, runtime=True)
        if e.lo >= 0 and e.hi <= maxstart and not g.chance(5):
            return e
        return _ibin("%", IE(A.Paren(e.node), e.known, e.lo, e.hi, e.uses), _num(maxstart + 1))

    # ------------------------------------------------------------ slices
    def slice_of(self, shape):
        """Indices into a tensor of `shape`, and the shape of the view they give."""
        g = self.g
        idx, out = [], []
        for i, n in enumerate(shape):
            kind = g.weighted([(5, "all"), (3, "range"), (3, "len"), (1, "point" if len(shape) > 1 else "all")])
            if kind == "all":
                idx.append(A.Rng())
                out.append(n)
            elif kind == "range":
                length = g.int(1, n)
                lo = g.int(0, n - length)
                idx.append(A.Rng(A.Num(str(lo)), A.Num(str(lo + length))))
                out.append(length)
            elif kind == "len":
                length = g.int(1, n)
                idx.append(A.Len(self.start_expr(n - length).node, A.Num(str(length))))
                out.append(length)
            else:
                idx.append(A.Point(self.start_expr(n - 1).node))
        while idx and isinstance(idx[-1], A.Rng) and idx[-1].lo is None and g.chance(50):
            idx.pop()
        if all(isinstance(i, A.Rng) and i.lo is None for i in idx):
            idx = []
        if not out:  # every dim picked: keep the last whole
            idx[-1] = A.Rng()
            out.append(shape[-1])
        return idx, tuple(out)

    # ------------------------------------------------------------ tensor expressions
    def compat(self, shape):
        g = self.g
        opts = [(6, tuple(shape)), (2, ())]
        if len(shape) > 1:
            opts.append((2, tuple(shape[1:])))
            ones = tuple(1 if i == len(shape) - 1 else d for i, d in enumerate(shape))
            opts.append((1, ones))
        return g.weighted(opts)

    def expr(self, shape, depth, exact=False):
        """(node, its shape): a shape that broadcasts to `shape` (equal to it with exact)."""
        want = tuple(shape) if exact else self.compat(shape)
        if want == ():
            return self.scalar_expr(), ()
        return self.exact(want, depth)

    def exact(self, shape, depth):
        g = self.g
        shape = tuple(shape)
        opts = [(6 if depth <= 0 else 3, "leaf"), (5 if depth > 0 else 0, "bin"), (1 if depth > 0 else 0, "maxmin"),
                (1 if depth > 0 else 0, "neg"), (2 if depth > 0 else 0, "unary"),
                (1 if depth > 0 and shape[-1] == 1 else 0, "rowreduce"),
                (2 if depth > 0 and len(shape) in (1, 2) else 0, "matmul"),
                (1 if depth > 0 and len(shape) == 2 else 0, "transpose"),
                (1 if depth > 0 and len(shape) == 2 else 0, "mask")]
        kind = g.weighted(opts)
        if kind == "bin":
            op = g.weighted([(3, "+"), (2, "-"), (3, "*"), (1, "/")])
            a, sa = self.exact(shape, depth - 1)
            b, sb = self.expr(shape, depth - 1)
            if g.chance(40):
                a, b = b, a
            return A.Bin(op, a, b), _bshape(sa, sb)
        if kind == "maxmin":
            a, sa = self.exact(shape, depth - 1)
            b, sb = self.expr(shape, depth - 1)
            return A.Call(g.pick(["max", "min"]), [a, b]), _bshape(sa, sb)
        if kind == "neg":
            a, sa = self.exact(shape, depth - 1)
            return A.Neg(a), sa
        if kind == "unary":
            a, sa = self.exact(shape, depth - 1)
            f = g.pick(["exp", "tanh", "sqrt"])
            if f == "exp" and g.chance(60):
                a = A.Bin("*", a, A.Num("0.25"))
            return A.Call(f, [a]), sa
        if kind == "rowreduce":
            c = g.pick(self.extents())
            a, sa = self.exact(shape[:-1] + (c,), depth - 1)
            if sa == shape[:-1] + (c,):
                return A.Call(g.pick(["rowsum", "rowmax"]), [a]), shape[:-1] + (1,)
        if kind == "matmul":
            e = self.matmul_expr(shape, depth - 1)
            if e is not None:
                return e, shape
        if kind == "transpose":
            a, sa = self.exact((shape[1], shape[0]), depth - 1)
            if len(sa) == 2 and sa == (shape[1], shape[0]):
                return A.Call("transpose", [a]), shape
        if kind == "mask":
            a, sa = self.exact(shape, depth - 1)
            if sa == shape:
                q0 = self.int_expr(1, runtime=True).node
                k0 = self.int_expr(1, runtime=True).node
                return A.Call("causal_mask", [a, q0, k0]), shape
        return self.leaf(shape)

    def matmul_expr(self, shape, depth, avoid=None):
        g = self.g
        k = g.pick(self.extents())
        saved, saved_avoid = self.target, self.avoid
        self.target = None
        if avoid is not None and not g.chance(5):
            self.avoid = avoid
        try:
            if len(shape) == 2:
                a, sa = self.exact((shape[0], k), depth)
                b, sb = self.exact((k, shape[1]), depth)
                if sa == (shape[0], k) and sb == (k, shape[1]):
                    return A.Bin("@", a, b)
                return None
            if g.chance(50):
                a, sa = self.exact((shape[0], k), depth)
                b, sb = self.exact((k,), depth)
                if sa == (shape[0], k) and sb == (k,):
                    return A.Bin("@", a, b)
            else:
                a, sa = self.exact((k,), depth)
                b, sb = self.exact((k, shape[0]), depth)
                if sa == (k,) and sb == (k, shape[0]):
                    return A.Bin("@", a, b)
            return None
        finally:
            self.target, self.avoid = saved, saved_avoid

    def extents(self):
        out = sorted({d for t in self.tensors if t.ready for d in t.shape})
        return out or [1]

    def leaf(self, shape):
        """A view of exactly `shape` if one can be had, else something that broadcasts to it."""
        g = self.g
        shape = tuple(shape)
        ready = [t for t in self.tensors if t.ready and t is not self.avoid]
        bonus = lambda t: 4 if self.target is not None and t is self.target else 1  # noqa: E731
        exact = [(3 * bonus(t), ("name", t)) for t in ready if t.shape == shape]
        sliceable = [(2 * bonus(t), ("slice", t)) for t in ready
                     if len(t.shape) == len(shape) and all(a >= b for a, b in zip(t.shape, shape)) and t.shape != shape]
        pointable = [(1, ("point", t)) for t in ready
                     if len(t.shape) == len(shape) + 1 and all(a >= b for a, b in zip(t.shape[1:], shape))]
        transposable = [(1 * bonus(t), ("transpose", t)) for t in ready
                        if len(shape) == 2 and t.shape == (shape[1], shape[0]) and shape[0] != shape[1]]
        opts = exact + sliceable + pointable + transposable
        if not opts:
            # nothing of this shape: a scalar broadcasts anywhere
            return self.scalar_expr(), ()
        kind, t = g.weighted(opts)
        if kind == "name":
            return A.Name(t.name), shape
        if kind == "transpose":
            return A.Call("transpose", [A.Name(t.name)]), shape
        idx = []
        dims = t.shape if kind == "slice" else t.shape[1:]
        if kind == "point":
            idx.append(A.Point(self.start_expr(t.shape[0] - 1).node))
        for have, want in zip(dims, shape):
            if have == want:
                idx.append(A.Rng() if not g.chance(20) else A.Rng(A.Num("0"), A.Num(str(have))))
            elif g.chance(40):
                lo = g.int(0, have - want)
                idx.append(A.Rng(A.Num(str(lo)), A.Num(str(lo + want))))
            else:
                idx.append(A.Len(self.start_expr(have - want).node, A.Num(str(want))))
        while idx and isinstance(idx[-1], A.Rng) and idx[-1].lo is None and len(idx) > 1:
            idx.pop()
        return A.Sub(A.Name(t.name), idx), shape

    def scalar_expr(self):
        g = self.g
        if self.nasty == "float" and g.chance(20):
            return A.Num(g.pick(FLOAT_NASTY))
        kind = g.weighted([(5, "lit"), (2, "int"), (2 if self.scalars else 0, "name"), (1, "size"), (1, "fold")])
        if kind == "lit":
            return A.Num(g.pick(["0.5", "2.0", "1.0", "0.25", "3.0", "1e-3", ".5", "7.", "1e2", "0.1"]))
        if kind == "int":
            return A.Num(str(g.int(0, 9)))
        if kind == "name":
            return A.Name(g.pick(self.scalars)[0])
        if kind == "size":
            return A.Name(g.pick(sorted(self.sizes) + ["W", "H"]))
        return g.pick([A.Call("sqrt", [A.Num("2.0")]), A.Bin("/", A.Num("1.0"), A.Num("3.0")),
                       A.Call("lcm", [A.Name("W"), A.Name("H")]), A.Call("max", [A.Num("2.0"), A.Name("W")]),
                       A.Neg(A.Num("1.5")), A.Call("exp", [A.Num("-1.0")])])

    # ------------------------------------------------------------ inputs
    def make_inputs(self, params):
        g = self.g
        seed = g.int(0, 2 ** 16)
        rng = np.random.default_rng(seed)
        inputs = {}
        special = g.chance(10)
        for p in params:
            if not isinstance(p, A.TParam):
                continue
            t = next(t for t in self.tensors if t.name == p.name)
            a = (rng.standard_normal(t.dist[0]) * g.pick([1.0, 1.0, 3.0, 1e-3, 1e4])).astype(np.float32)
            if special and a.size:
                vals = np.array([np.inf, -np.inf, np.nan, -0.0, 3e38, 1e-40, 0.0], np.float32)
                mask = rng.random(a.shape) < 0.2
                a[mask] = rng.choice(vals, size=int(mask.sum()))
            inputs[p.name] = a
        return inputs

    # ------------------------------------------------------------ nasty
    def apply_nasty(self, source, grid, inputs, params, body):
        g = self.g
        kind = self.nasty
        lines = source.split("\n")
        close = max(i for i, l in enumerate(lines) if l == "}")   # the main kernel's closing brace
        out_name = next((t.name for t in self.tensors if t.role == "output"), "C")
        out = next(t for t in self.tensors if t.role == "output")

        def insert(stmt_lines):
            nonlocal lines
            lines = lines[:close] + ["    " + s for s in stmt_lines] + lines[close:]

        if kind == "int-boundary":
            v = g.pick(INT_BOUNDARY)
            form = g.int(0, 6)
            if form == 0:
                insert([f"const big = {v} + {g.pick(['0', '1', '-1'])}", f"{out_name} = {out_name} * 1.0"])
            elif form == 1:
                insert([f"if ty == {v} {{ {out_name} = {out_name} * 2.0 }}"])
            elif form == 2:
                idx = ", ".join(["0"] * (len(out.shape) - 1))
                sub = f"[(tx * {v}) // {v}{', ' + idx if idx else ''}]"
                insert([f"{out_name}{sub} = {out_name}{sub} + 1.0"])
            elif form == 3:
                m = g.pick(["65536 * 65536", "65536 * 32768", "46341 * 46341", "2147483647"])
                idx = ", ".join(["0"] * (len(out.shape) - 1))
                insert([f"{out_name}[(ty * {m} + tx) % {out.shape[0]}{', ' + idx if idx else ''}] = 1.0"])
            elif form == 4:
                insert([f"for q in {v} .. {v} {{ {out_name} = {out_name} + 1.0 }}"])
            elif form == 5:
                insert([f"{out_name} = {out_name} * {v}"])
            else:
                insert([f"const big = lcm({v}, {g.pick(['3', '7', v])})", f"{out_name} = {out_name} * 1.0"])
        elif kind == "float":
            v = g.pick(FLOAT_NASTY + ["-1.0"])
            form = g.int(0, 4)
            if form == 0:
                insert([f"{out_name} = {out_name} * {v}"])
            elif form == 1:
                insert([f"{out_name} = {out_name} * sqrt(-{v})"])
            elif form == 2:
                insert([f"const f = {v} * 10.0 - {v} * 10.0", f"{out_name} = {out_name} + f"])
            elif form == 3:
                insert([f"{out_name} = {out_name} + exp({g.pick(['100.0', '-200.0', '88.8', v])})"])
            else:
                insert([f"{out_name} = {out_name} / {g.pick(['0.0', '1e-45', v])}"])
        elif kind == "huge-literal":
            n = g.pick([40, 400, 4400, 20000])
            digits = "1" + "0" * n
            form = g.int(0, 3)
            lit = [digits, digits + ".0", "0." + "0" * n + "1", "1e" + "9" * min(n, 50)][form]
            insert([f"{out_name} = {out_name} * {lit}"])
        elif kind == "deep":
            n = g.pick([60, 300, 1200, 5000])
            form = g.int(0, 5)
            if form == 0:
                insert([f"{out_name} = {out_name} * " + "-" * n + "1.0"])
            elif form == 1:
                insert([f"{out_name} = {out_name} * " + "(" * n + "1.0" + ")" * n])
            elif form == 2:
                insert([f"{out_name} = {out_name}" + " + 1.0" * n])
            elif form == 3:
                insert([f"if tx < {i} {{" for i in range(1, n + 1)] + [f"{out_name} = {out_name} + 1.0"] + ["}"] * n)
            elif form == 4:
                insert([f"for q{i} in 0 .. 1 {{" for i in range(n)] + [f"{out_name} = {out_name} + 1.0"] + ["}"] * n)
            else:
                insert([f"{out_name} = {out_name} + {i}.5" for i in range(min(n, 3000))])
        elif kind == "lcm":
            a, b = g.pick([("1e999", "2"), ("1e38 * 10.0 - 1e38 * 10.0", "2"), ("0", "0"), ("0", "W"),
                           ("-4", "6"), ("2.5", "2"), ("1099511627776", "3"), ("W", "1e39")])
            f = g.pick(["lcm", "gcd"])
            insert([f"const P = {f}({a}, {b})", f"{out_name} = {out_name} * P"])
        elif kind == "huge-local":
            dims = g.pick(["2147483648", "4294967296", "65536, 65536", "100000000", "0", "1, 1, 1, 1, 1",
                           "9223372036854775808", "3000000000, 2"])
            insert([f"local big: f32[{dims}]", "big = 1.0", f"{out_name} = {out_name} + 1.0"])
        elif kind == "loop-2^31":
            lo, hi = g.pick([("2147483640", "2147483647"), ("2147483645", "2147483650"), ("0", "2147483647"),
                             ("-2147483649", "-2147483646"), ("0", "100000000"), ("4294967290", "4294967292")])
            insert([f"for q in {lo} .. {hi} {{ {out_name} = {out_name} + 1.0 }}"])
        elif kind == "text":
            form = g.int(0, 7)
            text = "\n".join(lines)
            if form == 0:
                text = text.replace("\n", "\r\n")
            elif form == 1:
                text = "\ufeff" + text
            elif form == 2:
                text = text.replace("    ", "\t")
            elif form == 3:
                text = text.replace("{", "{ # \x00 nul\n", 1)
            elif form == 4:
                text = text.replace(out_name + " =", out_name + "\u00e9 =", 1)
            elif form == 5:
                text = text.rstrip("\n") + "  # no newline at the end"
            elif form == 6:
                long = "v" * g.pick([300, 5000, 100000])
                text = text.replace("{\n", "{\n    const " + long + " = 1\n", 1)
            else:
                text = text + "\x1a\x7f"
            return text, grid, inputs, params
        elif kind == "inputs":
            form = g.int(0, 7)
            name = next(iter(inputs))
            a = inputs[name]
            if form == 0:
                inputs[name] = a.astype(np.float64)
            elif form == 1:
                inputs[name] = np.asfortranarray(a) if a.ndim > 1 else a[::-1]
            elif form == 2:
                inputs[name] = np.zeros((0,) + a.shape[1:], np.float32)
            elif form == 3:
                inputs[name] = a.reshape(-1)[: max(1, a.size - 1)]
            elif form == 4:
                del inputs[name]
            elif form == 5:
                inputs["extra"] = np.ones(3, np.float32)
            elif form == 6:
                inputs[name] = np.float32(1.0) * np.ones((), np.float32)
            else:
                inputs[name] = a.astype(np.float16)
        elif kind == "params":
            form = g.int(0, 6)
            params = dict(params)
            if form == 0:
                params["n"] = 2 ** 70
            elif form == 1:
                params["beta"] = float("inf")
            elif form == 2:
                params["beta"] = float("nan")
            elif form == 3:
                params[next(iter(self.sizes))] = 10 ** 12
            elif form == 4:
                params["n"] = 2.5
            elif form == 5:
                params["unknown"] = 1
            else:
                grid = g.pick([(0, 2), (1, 8), (8, 1), (5, 3), (4096, 1), (2, 2)])
        return "\n".join(lines), grid, inputs, params


def _bshape(a, b):
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        out.append(max(x, y))
    return tuple(reversed(out))


@st.composite
def generated_cases(draw):
    return KernelGen(G(draw)).build()


# ================================================================ mutation
_TOKEN = re.compile(r'(?P<ws>\s+)|(?P<comment>#[^\n]*)|(?P<string>"[^"\n]*")|'
                    r'(?P<num>\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\d+)|'
                    r'(?P<name>[A-Za-z_][A-Za-z_0-9]*)|(?P<op>->|\+=|\.\.|\+:|==|!=|<=|>=|//|[-+*/%@<>=(){}\[\],:.])|'
                    r'(?P<other>.)', re.S)
BOUNDARY_NUMBERS = ["0", "1", "2", "3", "2147483647", "2147483648", "4294967296", "9223372036854775808",
                    "1e999", "1e-50", "3.4028236e38", "16777217", "0.0", "1" + "0" * 400, "65536"]
BUILTIN_WORDS = ["W", "H", "tx", "ty", "exp", "tanh", "sqrt", "rowsum", "rowmax", "transpose", "causal_mask",
                 "broadcast_row", "broadcast_col", "shift", "rotate", "reduce_row", "reduce_col", "east", "west",
                 "north", "south", "add", "max", "min", "lcm", "gcd", "from", "x", "y", "_", "f32", "int",
                 "float", "local", "tensor", "const", "require", "for", "in", "if", "else", "and", "or", "not",
                 "block", "replicated", "kernel", "import"]
OPERATOR_CLASSES = [["+", "-", "*", "/"], ["//", "%", "*", "+", "-"], ["==", "!=", "<", "<=", ">", ">="],
                    ["+:", ":"]]
OPERATORS = ["+", "-", "*", "/", "//", "%", "@", "==", "<", ">=", "and", "or", "not", "+:", "..", "->", "+=",
             "=", ",", ":", "(", ")", "[", "]", "{", "}"]

_BUNDLED_SIZES = {
    "matmul": ("M", "K", "N"), "gemv": ("M", "N"), "matmul_cannon": ("M", "K", "N"), "softmax": ("R", "C"),
    "layernorm": ("R", "C"), "attention": ("S", "D"), "mlp": ("S", "Dm", "Dff"),
    "transformer_block": ("S", "Dm", "Dff"),
}


def tokenize(text):
    return [(m.lastgroup, m.group()) for m in _TOKEN.finditer(text)]


@st.composite
def mutated_cases(draw):
    g = G(draw)
    from tilegrid import kernels as bundled
    name = g.pick(["softmax", "gemv", "matmul", "layernorm", "matmul_cannon", "attention", "mlp",
                   "transformer_block"])
    spec = bundled.BUNDLED[name]
    text = spec.path.read_text()
    W = g.weighted([(3, 1), (4, 2), (2, 3), (1, 4)])
    H = W if name == "matmul_cannon" and g.chance(80) else g.weighted([(3, 1), (4, 2), (2, 3), (1, 4)])
    L = math.lcm(W, H)
    sizes = {}
    for s in _BUNDLED_SIZES[name]:
        m = g.weighted([(4, 1), (3, 2)])
        sizes[s] = L * m
    if name in ("attention", "transformer_block"):
        sizes["S"] = W * H * g.weighted([(3, 1), (2, 2)])
    params = {}
    if name in ("attention", "transformer_block") and g.chance(50):
        params["causal"] = g.int(0, 1)
    if name == "transformer_block":
        params["heads"] = g.pick([1, 2])
        sizes["Dm"] = L * 2 * (params["heads"])
    if name == "layernorm" and g.chance(20):
        params["eps"] = g.pick([1e-5, 0.0, -1.0, 1e30])
    rng = np.random.default_rng(g.int(0, 2 ** 16))
    inputs = spec.make_inputs(rng, sizes)
    tokens = tokenize(text)
    notes = []
    for _ in range(g.weighted([(6, 1), (3, 2), (1, 3), (1, 5)])):
        tokens, what = mutate(g, tokens)
        notes.append(what)
    source = "".join(t for _, t in tokens)
    check = g.chance(30)
    return Case(source, (W, H), inputs, params, check=check, origin=f"mutate {name}", notes=notes,
                config=machine_config(g))


def mutate(g: G, tokens):
    """One random token- or line-level edit; returns (tokens, what was done)."""
    idx = [i for i, (k, _) in enumerate(tokens) if k not in ("ws", "comment")]
    if not idx:
        return tokens, "nothing"
    kind = g.weighted([(2, "delete"), (1, "duplicate"), (1, "swap"), (6, "number"), (5, "name"), (4, "operator"),
                       (1, "insert"), (2, "line-delete"), (2, "line-duplicate"), (1, "line-swap"),
                       (1, "truncate"), (5, "wrap-line")])
    tokens = list(tokens)
    if kind in ("line-delete", "line-duplicate", "line-swap", "wrap-line"):
        text = "".join(t for _, t in tokens)
        lines = text.split("\n")
        i = g.int(0, len(lines) - 1)
        if kind == "line-delete":
            del lines[i]
        elif kind == "line-duplicate":
            lines.insert(i, lines[i])
        elif kind == "line-swap":
            j = g.int(0, len(lines) - 1)
            lines[i], lines[j] = lines[j], lines[i]
        else:
            body = [k for k, l in enumerate(lines) if l.startswith("    ") and "=" in l and not l.strip().startswith("#")
                    and "{" not in l and "}" not in l]
            if body:
                i = g.pick(body)
                head = g.pick(["if tx < 1 {", "if ty == 0 {", "for qq in 0 .. 2 {", "if tx + ty > 0 {",
                               "for qq in 0 .. 1 {", "if W > 1 {", "if (tx * 3) // 2 != 1 {"])
                lines[i] = "    " + head + " " + lines[i].strip() + " }"
        return tokenize("\n".join(lines)), kind
    p = g.pick(idx)
    k, t = tokens[p]
    if kind == "delete":
        del tokens[p]
    elif kind == "duplicate":
        tokens.insert(p, (k, t))
    elif kind == "swap":
        q = g.pick(idx) if g.chance(50) else idx[min(idx.index(p) + 1, len(idx) - 1)]
        tokens[p], tokens[q] = tokens[q], tokens[p]
    elif kind == "number":
        nums = [i for i in idx if tokens[i][0] == "num"]
        if nums:
            p = g.pick(nums)
        tokens[p] = ("num", g.pick(BOUNDARY_NUMBERS))
    elif kind == "name":
        names = [i for i in idx if tokens[i][0] == "name"]
        if names:
            p = g.pick(names)
            in_file = sorted({tokens[i][1] for i in names})
            tokens[p] = ("name", g.pick(in_file + BUILTIN_WORDS) if g.chance(70) else g.pick(BUILTIN_WORDS))
    elif kind == "operator":
        ops = [i for i in idx if tokens[i][0] == "op"]
        if ops:
            p = g.pick(ops)
        same = next((c for c in OPERATOR_CLASSES if tokens[p][1] in c), None)
        tokens[p] = ("op", g.pick(same) if same and g.chance(70) else g.pick(OPERATORS))
    elif kind == "insert":
        what = g.weighted([(3, g.pick(OPERATORS)), (2, g.pick(BUILTIN_WORDS)), (1, g.pick(BOUNDARY_NUMBERS)),
                           (1, '"/etc/passwd"'), (1, '"matmul.tg"')])
        tokens.insert(p, ("op", " " + what + " "))
    else:  # truncate
        tokens = tokens[:p]
    return tokens, kind
