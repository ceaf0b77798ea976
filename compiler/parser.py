"""Source text -> AST, with the grammar in grammar.lark and a lark Transformer."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import VisitError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import ast
from .diagnostics import CompileError, Span
from .scalars import MAX_INT

GRAMMAR = Path(__file__).with_name("grammar.lark")

# What a person would call the tokens lark names.
TOKEN_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "LBRACE": "'{'", "RBRACE": "'}'", "LPAR": "'('",
    "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "COMMA": "','", "COLON": "':'", "EQUAL": "'='",
    "MUL_OP": "an operator", "ADD_OP": "'+' or '-'", "COMPARE": "a comparison", "STRING": "a string",
    "TENSOR_TYPE": "a tensor type such as f32", "SCALAR_TYPE": "'int' or 'float'", "$END": "end of file",
    "MINUS": "'-'", "PLUS": "'+'", "_ARROW": "'->'", "_ACCUMULATE": "'+='", "_RANGE": "'..'",
    "_LENGTH": "'+:'", "DOT": "'.'",
}

# Deeper nesting than this (blocks, parentheses, unary minus, or the terms of
# one long sum, which become a left-deep chain) is refused with a message. The
# compiler itself recurses over the tree; deep_stack.py gives it room for this.
MAX_NESTING = 10_000


@lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(GRAMMAR.read_text(), parser="lalr", propagate_positions=True, maybe_placeholders=True)


def _span(meta_or_token) -> Span:
    m = meta_or_token
    if isinstance(m, Token):
        return Span(m.line, m.column, m.end_line, m.end_column)
    return Span(m.line, m.column, m.end_line, m.end_column)


@v_args(meta=True)
class BuildAst(Transformer):
    """Parse tree -> ast dataclasses."""

    def start(self, meta, items):
        kernels = [i for i in items if isinstance(i, ast.Kernel)]
        imports = [imp for i in items if isinstance(i, list) for imp in i]
        return ast.Module(_span(meta), kernels, imports)

    def import_stmt(self, meta, items):
        return list(items)

    def import_item(self, meta, c):
        tok = c[0]
        if tok.type == "STRING":
            return ast.Import(_span(tok), str(tok)[1:-1], True)
        return ast.Import(_span(tok), str(tok), False)

    def tensor_local(self, meta, c):
        name, ttype, dist, placement = c
        return ast.TensorLocal(_span(meta), ast.TensorDecl(_span(meta), str(name), ttype, dist, placement))

    def placement(self, meta, c):
        return ast.Placement(_span(c[0]), str(c[0]))

    def region_tiles(self, meta, c):
        name, *bounds = c
        return ast.RegionDecl(_span(meta), [(str(name), _span(name))], "tiles", bounds)

    def region_split(self, meta, c):
        *names, axis = c
        return ast.RegionDecl(_span(meta), [(str(n), _span(n)) for n in names], "split", [], axis)

    def kernel(self, meta, c):
        name, *rest = c
        outputs, body = rest[-2], rest[-1]
        params = [p for p in rest[:-2] if p is not None]
        return ast.Kernel(_span(meta), str(name), params, outputs, body)

    def outputs(self, meta, c):
        return list(c)

    def tensor_decl(self, meta, c):
        name, ttype, dist, placement = c
        return ast.TensorDecl(_span(meta), str(name), ttype, dist, placement)

    def scalar_param(self, meta, c):
        name, stype, default = c
        return ast.ScalarParam(_span(meta), str(name), str(stype), default)

    def tensor_type(self, meta, c):
        return ast.TensorType(_span(meta), str(c[0]), list(c[1:]))

    def dist_block(self, meta, axes):
        return ast.Dist(_span(meta), "block", axes)

    def dist_replicated(self, meta, c):
        return ast.Dist(_span(meta), "replicated", [])

    def axis(self, meta, c):
        return (str(c[0]), _span(c[0]))

    def block(self, meta, stmts):
        return list(stmts)

    def local_decl(self, meta, c):
        return ast.LocalDecl(_span(meta), str(c[0]), c[1])

    def const_decl(self, meta, c):
        return ast.ConstDecl(_span(meta), str(c[0]), c[1])

    def require(self, meta, c):
        message = str(c[1])[1:-1] if c[1] is not None else None
        return ast.Require(_span(meta), c[0], message)

    def assign(self, meta, c):
        return ast.Assign(_span(meta), c[0], c[1], c[2])

    def accumulate(self, meta, c):
        return ast.Accumulate(_span(meta), c[0], c[1], c[2])

    def index_decl(self, meta, c):
        name, value, lo, hi = c
        return ast.IndexDecl(_span(meta), str(name), _span(name), value, lo, hi)

    def for_stmt(self, meta, c):
        var, lo, hi, body = c
        return ast.For(_span(meta), str(var), _span(var), lo, hi, body)

    def if_stmt(self, meta, c):
        cond, then, orelse = c
        if orelse is None:
            orelse = []
        elif isinstance(orelse, ast.If):
            orelse = [orelse]
        return ast.If(_span(meta), cond, then, orelse)

    def lvalue(self, meta, c):
        name, *indices = c
        return ast.LValue(_span(meta), str(name), [i for i in indices if i is not None])

    def index_point(self, meta, c):
        return ast.Point(_span(meta), c[0])

    def index_range(self, meta, c):
        return ast.Range(_span(meta), c[0], c[1])

    def index_length(self, meta, c):
        return ast.Length(_span(meta), c[0], c[1])

    def _chain(self, meta, c):
        node = c[0]
        for i in range(1, len(c), 2):
            op, rhs = c[i], c[i + 1]
            node = ast.BinOp(Span(node.span.line, node.span.column, rhs.span.end_line, rhs.span.end_column),
                             str(op), node, rhs)
        return node

    sum = product = comparison = _chain

    def or_expr(self, meta, c):
        return self._logic(meta, c, "or")

    def and_expr(self, meta, c):
        return self._logic(meta, c, "and")

    def _logic(self, meta, c, op):
        node = c[0]
        for rhs in c[1:]:
            node = ast.BinOp(_span(meta), op, node, rhs)
        return node

    def not_op(self, meta, c):
        return ast.Not(_span(meta), c[0])

    def neg(self, meta, c):
        return ast.Neg(_span(meta), c[0])

    def subscript(self, meta, c):
        base, *indices = c
        return ast.Subscript(_span(meta), base, indices)

    def number(self, meta, c):
        text = str(c[0])
        if any(ch in text for ch in ".eE"):
            return ast.Number(_span(meta), float(text))  # beyond f32 it is inf, as the machine would round
        value = int(text) if len(text) <= 40 else MAX_INT + 1  # no 5000-digit conversions
        if value > MAX_INT:
            raise CompileError(f"integer {_shorten(text)} is too large: compile-time integers are 64-bit "
                               f"(at most {MAX_INT})", _span(meta))
        return ast.Number(_span(meta), value)

    def name(self, meta, c):
        return ast.Name(_span(meta), str(c[0]))

    def call(self, meta, c):
        func, *args = c
        positional, keywords = [], {}
        for a in args:
            if a is None:
                continue
            if isinstance(a, tuple):
                keywords[a[0]] = a[1]
            else:
                positional.append(a)
        return ast.Call(_span(meta), str(func), positional, keywords)

    def keyword_arg(self, meta, c):
        return (str(c[0]), c[1])


def _shorten(digits: str) -> str:
    return digits if len(digits) <= 24 else f"{digits[:10]}...{digits[-4:]} ({len(digits)} digits)"


def parse(source: str, path: str = "<kernel>") -> ast.Module:
    try:
        tree = _lark().parse(source)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, source).attach(path, source) from None
    _check_nesting(tree)
    try:
        module = BuildAst().transform(tree)
    except VisitError as exc:  # lark wraps what a callback raises
        if isinstance(exc.orig_exc, CompileError):
            raise exc.orig_exc.attach(path, source) from None
        raise

    for k in module.kernels:
        k.path, k.source = path, source
    return module


CHAINS = {"sum", "product", "or_expr", "and_expr", "comparison"}


def _check_nesting(tree) -> None:
    """Refuse trees nested deeper than MAX_NESTING, walking without recursion.
    A chain of n operands (a + b + ... ) counts n levels: it becomes a left-deep
    tree of binary operations."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            meta = node.meta
            raise CompileError(f"nesting deeper than {MAX_NESTING} levels (blocks, parentheses, unary "
                               "operators or the terms of one expression); split it up",
                               Span(meta.line, meta.column, meta.line, meta.column + 1))
        chain = (len(node.children) + 1) // 2 if node.data in CHAINS else 1  # operands, not operators
        for child in node.children:
            if isinstance(child, Tree):
                stack.append((child, depth + chain))


def _end_of(source: str) -> tuple[int, int]:
    """Line and column just past the last character that is not white space."""
    lines = source.rstrip().splitlines() or [""]
    return len(lines), len(lines[-1]) + 1


def _syntax_error(exc: UnexpectedInput, source: str) -> CompileError:
    line, col = getattr(exc, "line", 1) or 1, getattr(exc, "column", 1) or 1
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        if tok.type == "$END":
            line, col = _end_of(source)
            msg = "unexpected end of file"
        else:
            msg = f"unexpected {str(tok)!r}"
        expected = sorted({TOKEN_WORDS.get(t, repr(t.lower()) if t.isupper() else t) for t in exc.expected
                           if not t.startswith("__") or t in TOKEN_WORDS})
        if 0 < len(expected) <= 6:
            msg += "; expected " + ", ".join(expected)
        end = (tok.end_column or col + 1) if tok.type != "$END" else col + 1
        return CompileError(msg, Span(line, col, line, end))
    if isinstance(exc, UnexpectedCharacters):
        return CompileError(f"unexpected character {exc.char!r}", Span(line, col, line, col + 1))
    if isinstance(exc, UnexpectedEOF):
        line, col = _end_of(source)
        return CompileError("unexpected end of file", Span(line, col, line, col + 1))
    return CompileError("syntax error", Span(line, col, line, col + 1))
