"""A small, independent syntax tree for tilegrid kernels: the fuzzer's own.

The generator (fuzzgen.py) builds these nodes and renders them to source
text; the oracle (fuzzoracle.py) interprets them. `parse_source` turns any
.tg text back into these nodes (with lark and compiler/grammar.lark, the
language's one grammar), so the oracle also works on mutated kernels and on
saved reproducers. None of this imports tilegrid's compiler: the point is to
have a second implementation to compare with.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def grammar_path() -> Path:
    """The language's grammar: the one of the tilegrid being tested (else this checkout's)."""
    try:
        import tilegrid.compiler
        p = Path(tilegrid.compiler.__file__).resolve().parent / "grammar.lark"
        if p.exists():
            return p
    except ImportError:
        pass
    return ROOT / "compiler" / "grammar.lark"


# ----------------------------------------------------------------- expressions
@dataclass
class Num:
    text: str

    @property
    def value(self):
        """What the language makes of the literal: a float if it has . e E, else an int."""
        if any(ch in self.text for ch in ".eE"):
            return float(self.text)
        return int(self.text)


@dataclass
class Name:
    id: str


@dataclass
class Bin:
    op: str            # + - * / // % @ == != < <= > >= and or
    a: object
    b: object


@dataclass
class Neg:
    a: object


@dataclass
class Not:
    a: object


@dataclass
class Call:
    func: str
    args: list
    kwargs: list = field(default_factory=list)   # [(name, expr)]


@dataclass
class Point:
    e: object


@dataclass
class Rng:
    lo: object = None
    hi: object = None


@dataclass
class Len:
    start: object
    length: object


@dataclass
class Sub:
    base: object       # Name or Sub
    idx: list


@dataclass
class Paren:           # explicit parentheses the renderer would not need
    a: object


@dataclass
class Raw:             # source text spliced in as is (nasty values, deep nesting)
    text: str


# ------------------------------------------------------------------ statements
@dataclass
class TType:
    dims: list                     # of expr


@dataclass
class DistSpec:
    axes: list | None              # None: replicated; else ["y", "x", "_", ...]


@dataclass
class TParam:
    name: str
    type: TType
    dist: DistSpec


@dataclass
class SParam:
    name: str
    type: str                      # int | float
    default: object = None


@dataclass
class Local:
    name: str
    type: TType


@dataclass
class TensorLocal:
    decl: TParam


@dataclass
class Const:
    name: str
    e: object


@dataclass
class Require:
    cond: object
    msg: str | None = None


@dataclass
class LV:
    name: str
    idx: list | None = None


@dataclass
class Assign:
    lv: LV
    e: object


@dataclass
class Acc:
    lv: LV
    e: object


@dataclass
class For:
    var: str
    lo: object
    hi: object
    body: list


@dataclass
class If:
    cond: object
    then: list
    orelse: list = field(default_factory=list)   # a list of statements; [If] renders as else if


@dataclass
class RawStmt:
    text: str


@dataclass
class Kernel:
    name: str
    params: list
    outputs: list
    body: list


@dataclass
class Import:
    items: list                    # [(text, is_path)]


@dataclass
class Module:
    items: list                    # Import and Kernel, in order

    @property
    def kernels(self):
        return [k for k in self.items if isinstance(k, Kernel)]


# ------------------------------------------------------------------- rendering
_LEVEL = {"or": 1, "and": 2, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4,
          "+": 5, "-": 5, "*": 6, "/": 6, "//": 6, "%": 6, "@": 6}


def render_expr(e) -> str:
    return _r(e)[0]


def _r(e):
    """(text, precedence level): 1 or, 2 and, 3 not, 4 compare, 5 sum, 6 product, 7 unary, 9 atom."""
    if isinstance(e, Num):
        return e.text, 9
    if isinstance(e, Name):
        return e.id, 9
    if isinstance(e, Raw):
        return e.text, 9
    if isinstance(e, Paren):
        return "(" + _r(e.a)[0] + ")", 9
    if isinstance(e, Bin):
        p = _LEVEL[e.op]
        at, ap = _r(e.a)
        bt, bp = _r(e.b)
        if ap < p or (p == 4 and ap <= p):
            at = f"({at})"
        if bp <= p:
            bt = f"({bt})"
        return f"{at} {e.op} {bt}", p
    if isinstance(e, Neg):
        t, p = _r(e.a)
        return "-" + (t if p >= 7 else f"({t})"), 7
    if isinstance(e, Not):
        t, p = _r(e.a)
        return "not " + (t if p >= 3 else f"({t})"), 3
    if isinstance(e, Call):
        parts = [render_expr(a) for a in e.args] + [f"{k} = {render_expr(v)}" for k, v in e.kwargs]
        return f"{e.func}({', '.join(parts)})", 9
    if isinstance(e, Sub):
        bt, bp = _r(e.base)
        if bp < 9:
            bt = f"({bt})"
        return f"{bt}[{', '.join(render_index(i) for i in e.idx)}]", 9
    raise TypeError(f"cannot render {e!r}")


def render_index(i) -> str:
    if isinstance(i, Point):
        return render_expr(i.e)
    if isinstance(i, Rng):
        lo = "" if i.lo is None else render_expr(i.lo)
        hi = "" if i.hi is None else render_expr(i.hi)
        return f"{lo}:{hi}"
    if isinstance(i, Len):
        return f"{render_expr(i.start)} +: {render_expr(i.length)}"
    raise TypeError(f"cannot render index {i!r}")


def render_ttype(t: TType) -> str:
    return "f32[" + ", ".join(render_expr(d) for d in t.dims) + "]"


def render_dist(d: DistSpec) -> str:
    return "replicated" if d.axes is None else "block(" + ", ".join(d.axes) + ")"


def render_tdecl(p: TParam) -> str:
    return f"{p.name}: {render_ttype(p.type)} {render_dist(p.dist)}"


def render_lv(lv: LV) -> str:
    if not lv.idx:
        return lv.name
    return f"{lv.name}[{', '.join(render_index(i) for i in lv.idx)}]"


def render_block(stmts: list, indent: int) -> list[str]:
    out = []
    pad = "    " * indent
    for s in stmts:
        if isinstance(s, Local):
            out.append(f"{pad}local {s.name}: {render_ttype(s.type)}")
        elif isinstance(s, TensorLocal):
            out.append(f"{pad}tensor {render_tdecl(s.decl)}")
        elif isinstance(s, Const):
            out.append(f"{pad}const {s.name} = {render_expr(s.e)}")
        elif isinstance(s, Require):
            msg = "" if s.msg is None else f', "{s.msg}"'
            out.append(f"{pad}require {render_expr(s.cond)}{msg}")
        elif isinstance(s, Assign):
            out.append(f"{pad}{render_lv(s.lv)} = {render_expr(s.e)}")
        elif isinstance(s, Acc):
            out.append(f"{pad}{render_lv(s.lv)} += {render_expr(s.e)}")
        elif isinstance(s, For):
            out.append(f"{pad}for {s.var} in {render_expr(s.lo)} .. {render_expr(s.hi)} {{")
            out += render_block(s.body, indent + 1)
            out.append(pad + "}")
        elif isinstance(s, If):
            out += _render_if(s, indent, pad)
        elif isinstance(s, RawStmt):
            out += [pad + line for line in s.text.split("\n")]
        else:
            raise TypeError(f"cannot render statement {s!r}")
    return out


def _render_if(s: If, indent: int, pad: str, head: str = "if") -> list[str]:
    out = [f"{pad}{head} {render_expr(s.cond)} {{"]
    out += render_block(s.then, indent + 1)
    if s.orelse and len(s.orelse) == 1 and isinstance(s.orelse[0], If):
        inner = _render_if(s.orelse[0], indent, pad, "} else if")
        out += inner
        return out
    if s.orelse:
        out.append(pad + "} else {")
        out += render_block(s.orelse, indent + 1)
    out.append(pad + "}")
    return out


def render_kernel(k: Kernel) -> str:
    params = []
    for p in k.params:
        if isinstance(p, TParam):
            params.append(render_tdecl(p))
        else:
            d = "" if p.default is None else f" = {render_expr(p.default)}"
            params.append(f"{p.name}: {p.type}{d}")
    outs = [render_tdecl(o) for o in k.outputs]
    outs_text = outs[0] if len(outs) == 1 else "(" + ", ".join(outs) + ")"
    head = f"kernel {k.name}({', '.join(params)}) -> {outs_text}"
    return "\n".join([head, "{"] + render_block(k.body, 1) + ["}"]) + "\n"


def render_module(m: Module) -> str:
    parts = []
    for item in m.items:
        if isinstance(item, Import):
            parts.append("import " + ", ".join(f'"{t}"' if is_path else t for t, is_path in item.items) + "\n")
        else:
            parts.append(render_kernel(item))
    return "\n".join(parts)


# --------------------------------------------------------------------- parsing
class ParseFailure(Exception):
    """The text is not a kernel this module can read back (the compiler decides what it means)."""


_LARK = None


def _lark():
    global _LARK
    if _LARK is None:
        from lark import Lark
        _LARK = Lark(grammar_path().read_text(), parser="lalr", maybe_placeholders=True)
    return _LARK


def parse_source(text: str) -> Module:
    """Source text -> Module. Raises ParseFailure for anything unreadable or too deep."""
    from lark import Tree, Token
    from lark.exceptions import LarkError

    old = sys.getrecursionlimit()
    try:
        tree = _lark().parse(text)
        return _Build(Tree, Token).module(tree)
    except (LarkError, RecursionError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise ParseFailure(f"{type(exc).__name__}: {str(exc)[:200]}") from None
    finally:
        sys.setrecursionlimit(old)


class _Build:
    def __init__(self, Tree, Token):
        self.Tree, self.Token = Tree, Token

    def module(self, t):
        items = []
        for c in t.children:
            if c.data == "import_stmt":
                its = []
                for it in c.children:
                    tok = it.children[0]
                    its.append((str(tok)[1:-1], True) if tok.type == "STRING" else (str(tok), False))
                items.append(Import(its))
            else:
                items.append(self.kernel(c))
        return Module(items)

    def kernel(self, t):
        name, *rest = t.children
        outputs, body = rest[-2], rest[-1]
        params = [self.param(p) for p in rest[:-2] if p is not None]
        outs = [self.tdecl(o) for o in outputs.children]
        return Kernel(str(name), params, outs, self.block(body))

    def param(self, p):
        if p.data == "scalar_param":
            name, stype, default = p.children
            return SParam(str(name), str(stype), None if default is None else self.expr(default))
        return self.tdecl(p)

    def tdecl(self, t):
        name, ttype, dist = t.children
        return TParam(str(name), self.ttype(ttype), self.dist(dist))

    def ttype(self, t):
        return TType([self.expr(d) for d in t.children[1:]])

    def dist(self, d):
        if d.data == "dist_replicated":
            return DistSpec(None)
        return DistSpec([str(a.children[0]) for a in d.children])

    def block(self, t):
        return [self.stmt(s) for s in t.children]

    def stmt(self, s):
        d, c = s.data, s.children
        if d == "local_decl":
            return Local(str(c[0]), self.ttype(c[1]))
        if d == "tensor_local":
            return TensorLocal(TParam(str(c[0]), self.ttype(c[1]), self.dist(c[2])))
        if d == "const_decl":
            return Const(str(c[0]), self.expr(c[1]))
        if d == "require":
            return Require(self.expr(c[0]), None if c[1] is None else str(c[1])[1:-1])
        if d == "assign":
            return Assign(self.lv(c[0]), self.expr(c[1]))
        if d == "accumulate":
            return Acc(self.lv(c[0]), self.expr(c[1]))
        if d == "for_stmt":
            return For(str(c[0]), self.expr(c[1]), self.expr(c[2]), self.block(c[3]))
        if d == "if_stmt":
            return self.if_(s)
        raise ValueError(f"unknown statement {d}")

    def if_(self, s):
        cond, then, orelse = s.children
        if orelse is None:
            els = []
        elif orelse.data == "if_stmt":
            els = [self.if_(orelse)]
        else:
            els = self.block(orelse)
        return If(self.expr(cond), self.block(then), els)

    def lv(self, t):
        name, *idx = t.children
        idx = [self.index(i) for i in idx if i is not None]
        return LV(str(name), idx or None)

    def index(self, i):
        if i.data == "index_point":
            return Point(self.expr(i.children[0]))
        if i.data == "index_range":
            lo, hi = i.children
            return Rng(None if lo is None else self.expr(lo), None if hi is None else self.expr(hi))
        if i.data == "index_length":
            return Len(self.expr(i.children[0]), self.expr(i.children[1]))
        # a bare expression inlined by ?index
        return Point(self.expr(i))

    def expr(self, e):
        if isinstance(e, self.Token):
            raise ValueError(f"unexpected token {e!r}")
        d, c = e.data, e.children
        if d == "number":
            return Num(str(c[0]))
        if d == "name":
            return Name(str(c[0]))
        if d in ("sum", "product", "comparison"):
            node = self.expr(c[0])
            for i in range(1, len(c), 2):
                node = Bin(str(c[i]), node, self.expr(c[i + 1]))
            return node
        if d in ("or_expr", "and_expr"):
            op = "or" if d == "or_expr" else "and"
            node = self.expr(c[0])
            for rhs in c[1:]:
                node = Bin(op, node, self.expr(rhs))
            return node
        if d == "not_op":
            return Not(self.expr(c[0]))
        if d == "neg":
            return Neg(self.expr(c[0]))
        if d == "subscript":
            base, *idx = c
            return Sub(self.expr(base), [self.index(i) for i in idx if i is not None])
        if d == "call":
            func, *args = c
            pos, kw = [], []
            for a in args:
                if a is None:
                    continue
                if isinstance(a, self.Tree) and a.data == "keyword_arg":
                    kw.append((str(a.children[0]), self.expr(a.children[1])))
                else:
                    pos.append(self.expr(a))
            return Call(str(func), pos, kw)
        raise ValueError(f"unknown expression {d}")
