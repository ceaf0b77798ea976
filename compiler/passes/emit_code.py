"""Spatial IR (placed and routed) -> a Program of dataflow instructions.

Registers: r0 = tx and r1 = ty (set by the loader), the rest hold loop
counters and run-time index arithmetic. A view whose offset depends on run-time
values gets its offset computed into a register just before the instruction
that uses it; descriptors are deduplicated across the program.

Index arithmetic that does not change inside a loop (a tile's root test
`tx == ty % W`, a bound, an outer loop's row offset) is computed once before
the loop into a register held for the loop's duration, as many as the
registers the body needs leave room for: each instruction saved runs once per
iteration, and a fold loop's iterations are only a few hundred cycles long.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from tilegrid.emulator import isa
from tilegrid.emulator.config import MachineConfig
from tilegrid.emulator.isa import descriptor, instr
from tilegrid.emulator.program import BufferPlacement, CodeRegion, Program, TensorIO

from ..diagnostics import CompileError
from .allocate_sram import op_views
from ..spatial_ir import (INT32_MAX, INT32_MIN, IBin, IBool, ICmp, IConst, IfTile, INot, IVar, Copy, Elementwise,
                          Fill, Fmac, LoadIndex, Loop, Mask, MatMac, Recv, Scale, Send, SpatialKernel, Unary, View,
                          Overwrite, Wait, Widen,
                          format_iexpr, interval_of, walk)

BINARY = {"add": isa.VADD, "sub": isa.VSUB, "mul": isa.VMUL, "div": isa.VDIV, "max": isa.VMAX, "min": isa.VMIN}
UNARY = {"exp": isa.VEXP, "tanh": isa.VTANH, "sqrt": isa.VSQRT}
REG_OPS = {"+": isa.ADD, "-": isa.SUB, "*": isa.MUL, "//": isa.DIV, "%": isa.MOD, "min": isa.MINR,
           "max": isa.MAXR}
IMM_OPS = {"+": isa.ADDI, "*": isa.MULI, "//": isa.DIVI, "%": isa.MODI}
# branch taken when the comparison holds: (opcode, swap operands)
BRANCH_TRUE = {"==": (isa.BEQ, False), "!=": (isa.BNE, False), "<": (isa.BLT, False),
               ">=": (isa.BGE, False), ">": (isa.BLT, True), "<=": (isa.BGE, True)}
NEGATE = {"==": "!=", "!=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">"}


def emit_code(k: SpatialKernel, config: MachineConfig, meta: dict | None = None) -> Program:
    em = _Emitter(k, config)
    em.block(k.body)
    em.emit(isa.HALT)
    code = np.array(em.code, dtype=np.int32).reshape(-1, isa.INSTR_FIELDS)
    for at, field, label in em.fixups:  # resolve branch targets
        code[at, field] = em.labels_at[label]
    descs = np.array(em.descs or [descriptor(0, [(1, 0)])], dtype=np.int32).reshape(-1, isa.DESC_FIELDS)
    fimm = np.array(em.fimm or [0.0], dtype=np.float32)
    labels = {at: name for name, at in em.label_names.items()}
    buffers = [BufferPlacement(b.name, b.kind, b.addr, b.words, tuple(b.shape), tuple(getattr(k, "live", {}).get(b, (0, 0))))
               for b in k.buffers if b.addr >= 0]
    io = [TensorIO(t.name, t.role, tuple(t.shape), tuple(t.axes), t.block, t.buffer.addr, dtype=t.buffer.dtype)
          for t in k.io]
    return Program(config=config, code=code, descs=descs, fimm=fimm,
                   regions=[CodeRegion(k.name, 0, len(code), 0, 0, k.width, k.height)],
                   routes=np.ascontiguousarray(k.routes, dtype=np.uint8), sram_words=k.sram_words,
                   buffers=buffers, io=io, color_names=list(k.streams), labels=labels,
                   meta={"kernel": k.name, "bindings": dict(k.bindings), "source_lines": em.lines,
                         "phase_notes": em.notes, **(meta or {})})


class _Emitter:
    def __init__(self, k: SpatialKernel, config: MachineConfig):
        self.k = k
        self.config = config
        self.code: list[list[int]] = []
        self.lines: list[int] = []     # source line of each instruction, for run-time reports
        self.notes: list[str] = []     # and what part of that statement it is ("" or "redistribution")
        self.note = ""
        self.descs: list[list[int]] = []
        self.desc_index: dict[tuple, int] = {}
        self.fimm: list[float] = []
        self.fimm_index: dict[int, int] = {}
        self.free_regs = list(range(config.registers - 1, 1, -1))
        self.var_regs = {"tx": isa.REG_TX, "ty": isa.REG_TY}
        self.ranges = {"tx": (0, k.width - 1), "ty": (0, k.height - 1)}  # of each variable in var_regs
        self.labels_at: dict[int, int] = {}
        self.label_names: dict[str, int] = {}
        self.fixups: list[tuple[int, int, int]] = []
        self.n_labels = 0
        self.span = None
        self.held: dict = {}           # loop-invariant IExpr -> (register, bounds), computed before the loop

    # ---------------------------------------------------------------- helpers
    def new_label(self) -> int:
        self.n_labels += 1
        return self.n_labels

    def place(self, label: int, name: str | None = None):
        self.labels_at[label] = len(self.code)
        if name:
            self.label_names[name] = len(self.code)

    def emit(self, op, *args, target: int | None = None):
        """Append an instruction; a branch names its target label, patched at the end."""
        if target is not None:
            field = 1 + isa.OPERANDS[op].index("t")
            args = args[:field - 1] + (0,) + args[field - 1:]
            self.fixups.append((len(self.code), field, target))
        self.code.append(instr(op, *args))
        self.lines.append(self.span.line if self.span is not None else 0)
        self.notes.append(self.note)

    def alloc(self) -> int:
        if not self.free_regs:
            raise CompileError(f"the kernel needs more than {self.config.registers} integer registers "
                               "(too deeply nested loops or index arithmetic)", self.span)
        return self.free_regs.pop()

    def release(self, reg: int, owned: bool):
        if owned:
            self.free_regs.append(reg)

    def value_reg(self, e) -> tuple[int, bool]:
        """Compute an IExpr into a register; returns (register, owned by caller)."""
        reg, owned, _ = self._compute(e)
        return reg, owned

    def _compute(self, e) -> tuple[int, bool, tuple[int, int]]:
        """value_reg, plus the exact bounds of the value. Every intermediate value
        must fit the int32 registers, so that the tile's wrapping arithmetic
        equals the compiler's exact arithmetic; otherwise the kernel is refused."""
        if e in self.held:
            reg, bounds = self.held[e]
            return reg, False, bounds
        if isinstance(e, IVar):
            return self.var_regs[e.name], False, self.ranges[e.name]
        if isinstance(e, IConst):
            self.require_int32((e.value, e.value), e)
            r = self.alloc()
            self.emit(isa.LI, r, e.value)
            return r, True, (e.value, e.value)
        assert isinstance(e, IBin)
        lhs, lhs_owned, a = self._compute(e.lhs)
        out = lhs if lhs_owned else self.alloc()
        if isinstance(e.rhs, IConst) and (e.op in IMM_OPS or e.op == "-"):
            c = e.rhs.value
            bounds = interval_of(e.op, a, (c, c))
            self.require_int32(bounds, e)
            if e.op == "-":
                self.require_int32((-c, -c), e)
                self.emit(isa.ADDI, out, lhs, -c)
            else:
                self.require_int32((c, c), e)
                self.emit(IMM_OPS[e.op], out, lhs, c)
            return out, True, bounds
        rhs, rhs_owned, b = self._compute(e.rhs)
        bounds = interval_of(e.op, a, b)
        self.require_int32(bounds, e)
        self.emit(REG_OPS[e.op], out, lhs, rhs)
        self.release(rhs, rhs_owned)
        return out, True, bounds

    def require_int32(self, bounds: tuple[int, int], e) -> None:
        lo, hi = bounds
        if lo < INT32_MIN or hi > INT32_MAX:
            worst = lo if lo < INT32_MIN else hi
            what = (f"the constant {worst} is" if isinstance(e, IConst)
                    else f"integer arithmetic {format_iexpr(e)} can reach {worst}, which is")
            raise CompileError(f"{what} outside the tiles' 32-bit registers ({INT32_MIN}..{INT32_MAX})",
                               self.span)

    def desc(self, v: View) -> tuple[int, int, bool]:
        """(descriptor index, base register or -1, register owned)."""
        addr = v.buffer.addr
        if isinstance(v.offset, IConst):
            base, reg, owned = addr + v.offset.value, isa.NO_REG, False
        else:
            reg, owned = self.value_reg(v.offset)
            base = addr
        row = tuple(descriptor(base, v.dims if v.dims else [(1, 0)], reg))
        if row not in self.desc_index:
            self.desc_index[row] = len(self.descs)
            self.descs.append(list(row))
        return self.desc_index[row], reg, owned

    def float_imm(self, value: float) -> int:
        bits = int(np.float32(value).view(np.uint32))
        if bits not in self.fimm_index:
            self.fimm_index[bits] = len(self.fimm)
            self.fimm.append(float(np.float32(value)))
        return self.fimm_index[bits]

    def with_descs(self, op, views, *extra):
        got = [self.desc(v) for v in views]
        self.emit(op, *[d for d, _, _ in got], *extra)
        for _, reg, owned in got:
            self.release(reg, owned)

    # ------------------------------------------------------------- statements
    def block(self, ops):
        outer_span, outer_note = self.span, self.note
        for op in ops:
            # an op made by a pass (a lowered collective's send) reports as the statement around it
            self.span = op.span or outer_span
            self.note = op.note or outer_note
            self.op(op)
        for op in ops:  # an index lives to the end of the block that reads it
            if isinstance(op, LoadIndex):
                self.release(self.var_regs.pop(op.var), True)
                del self.ranges[op.var]
        self.span, self.note = outer_span, outer_note

    def load_index(self, op: LoadIndex):
        """ldw, then clamp to lo .. hi - 1."""
        d, reg, owned = self.desc(op.src)
        out = self.alloc()
        self.emit(isa.LDW, out, d)
        self.release(reg, owned)
        bound = self.alloc()
        for value, clamp in ((op.lo, isa.MAXR), (op.hi - 1, isa.MINR)):
            self.require_int32((value, value), IConst(value))
            self.emit(isa.LI, bound, value)
            self.emit(clamp, out, out, bound)
        self.release(bound, True)
        self.var_regs[op.var] = out
        self.ranges[op.var] = (op.lo, op.hi - 1)

    def op(self, op):
        if isinstance(op, Fill):
            d, reg, owned = self.desc(op.dst)
            self.emit(isa.VFILL, d, self.float_imm(op.value))
            self.release(reg, owned)
        elif isinstance(op, Copy):
            self.with_descs(isa.VCOPY, [op.dst, op.src])
        elif isinstance(op, Scale):
            self.with_descs(isa.VSCALE, [op.dst, op.src], self.float_imm(op.factor))
        elif isinstance(op, Elementwise):
            self.with_descs(BINARY[op.op], [op.dst, op.a, op.b])
        elif isinstance(op, Unary):
            self.with_descs(UNARY[op.op], [op.dst, op.src])
        elif isinstance(op, Widen):
            self.with_descs(isa.VWIDEN, [op.dst, op.src], isa.WIDEN_BF16 if op.dtype == "bf16" else isa.WIDEN_F16)
        elif isinstance(op, Mask):
            d, reg, owned = self.desc(op.dst)
            off, off_owned = self.value_reg(op.offset)
            self.emit(isa.VMASK, d, self.float_imm(op.value), off)
            self.release(off, off_owned)
            self.release(reg, owned)
        elif isinstance(op, Fmac):
            self.with_descs(isa.VFMAC, [op.dst, op.a, op.b])
        elif isinstance(op, MatMac):
            self.with_descs(isa.MMAC, [op.c, op.a, op.b])
        elif isinstance(op, (Send, Recv)):
            # the descriptor's base is fixed when the stream starts, so its register is free after
            d, reg, owned = self.desc(op.src if isinstance(op, Send) else op.dst)
            color = self.k.streams.index(op.stream)
            if op.slot is None:
                self.emit(isa.SEND if isinstance(op, Send) else isa.RECV, color, d)
            else:
                self.emit(isa.SENDX if isinstance(op, Send) else isa.RECVX, color, d, op.slot)
            self.release(reg, owned)
        elif isinstance(op, Wait):
            self.emit(isa.WAIT, op.slot)
        elif isinstance(op, Overwrite):
            pass  # the allocator's note
        elif isinstance(op, LoadIndex):
            self.load_index(op)
        elif isinstance(op, Loop):
            self.loop(op)
        elif isinstance(op, IfTile):
            self.if_tile(op)
        else:
            raise CompileError(f"internal: cannot emit {type(op).__name__}", op.span)

    def loop(self, op: Loop):
        # The counter runs from lo up to hi, where it stops: both must fit a register.
        if op.lo < INT32_MIN or op.hi > INT32_MAX:
            raise CompileError(f"loop bounds {op.lo} .. {op.hi} do not fit the tiles' 32-bit registers "
                               f"({INT32_MIN}..{INT32_MAX})", self.span)
        hoisted = self.hoist_invariants(op)
        reg = self.alloc()
        self.var_regs[op.var] = reg
        self.ranges[op.var] = (op.lo, op.hi - 1)
        self.emit(isa.LI, reg, op.lo)
        top = self.new_label()
        self.place(top, f"loop_{op.var}_{top}")
        repeated = self.hoist_repeated(op)
        self.block(op.body)
        for e in repeated:
            self.release(self.held.pop(e)[0], True)
        self.emit(isa.LOOP, reg, op.hi, target=top)
        del self.var_regs[op.var], self.ranges[op.var]
        self.release(reg, True)
        for e in hoisted:
            self.release(self.held.pop(e)[0], True)

    def hoist_invariants(self, loop: Loop) -> list:
        """Compute the loop body's invariant index expressions into registers now;
        returns the expressions now held, for the caller to release after the loop."""
        inner = {loop.var} | {o.var for o in walk(loop.body) if isinstance(o, (Loop, LoadIndex))}
        uses = Counter()
        for o in walk(loop.body):
            for e, operand in _index_exprs(o):
                for part in _invariant_parts(e, inner, operand):
                    if part not in self.held:
                        uses[part] += _nodes(part)
        # keep room for this loop's counter, the loops inside it and the widest instruction
        return self._hold([e for e, _ in uses.most_common()],
                          1 + _loop_depth(loop.body) + _widest(loop.body) + _indices(loop.body))

    def hoist_repeated(self, loop: Loop) -> list:
        """At the top of each iteration, compute the index expressions that the
        iteration would otherwise compute more than once on its way through the body
        (a fold's buffer half, used by the receives of a and of b)."""
        inner = {o.var for o in walk(loop.body) if isinstance(o, (Loop, LoadIndex))}
        uses = _path_uses(loop.body, inner, set(self.held))
        repeated = [e for e, n in uses.most_common() if n > 1]
        return self._hold(repeated, _loop_depth(loop.body) + _widest(loop.body) + _indices(loop.body))

    def _hold(self, candidates: list, reserve: int) -> list:
        """Compute as many candidates as the free registers allow beyond `reserve` into
        held registers; returns the expressions now held."""
        chosen = candidates[:max(0, len(self.free_regs) - reserve)]
        for e in chosen:  # each an IBin or IConst not yet held, so computed into a register of its own
            reg, _, bounds = self._compute(e)
            self.held[e] = (reg, bounds)
        return chosen

    def if_tile(self, op: IfTile):
        skip = self.new_label()
        self.branch(op.cond, skip, when=False)
        self.block(op.then)
        if op.orelse:
            end = self.new_label()
            self.emit(isa.JMP, target=end)
            self.place(skip, f"else_{skip}")
            self.block(op.orelse)
            self.place(end, f"endif_{end}")
        else:
            self.place(skip, f"endif_{skip}")

    def branch(self, cond, label: int, when: bool):
        """Jump to label when cond evaluates to `when`; fall through otherwise."""
        if isinstance(cond, INot):
            self.branch(cond.operand, label, not when)
        elif isinstance(cond, IBool):
            both = (cond.op == "and") != when  # and/false or or/true: either side decides alone
            if both:
                self.branch(cond.lhs, label, when)
                self.branch(cond.rhs, label, when)
            else:
                skip = self.new_label()
                self.branch(cond.lhs, skip, not when)
                self.branch(cond.rhs, label, when)
                self.place(skip)
        else:
            assert isinstance(cond, ICmp)
            rel = cond.op if when else NEGATE[cond.op]
            opcode, swap = BRANCH_TRUE[rel]
            a, a_owned = self.value_reg(cond.lhs)
            b, b_owned = self.value_reg(cond.rhs)
            if swap:
                a, b = b, a
            self.emit(opcode, a, b, target=label)
            self.release(a, a_owned if not swap else b_owned)
            self.release(b, b_owned if not swap else a_owned)


def _conditions(cond):
    if isinstance(cond, INot):
        yield from _conditions(cond.operand)
    elif isinstance(cond, IBool):
        yield from _conditions(cond.lhs)
        yield from _conditions(cond.rhs)
    else:
        yield cond


def _index_exprs(op) -> list:
    """(expression, is a whole operand) for the integer arithmetic one op's own
    instruction computes: run-time view offsets, compared values, a mask offset."""
    views = [] if isinstance(op, Wait) else op_views(op)   # a wait's views only keep buffers live
    out = [(v.offset, False) for v in views if not isinstance(v.offset, IConst)]
    if isinstance(op, Mask):
        out.append((op.offset, True))
    if isinstance(op, IfTile):
        for c in _conditions(op.cond):
            out += [(c.lhs, True), (c.rhs, True)]
    return out


def _mentions(e, names) -> bool:
    if isinstance(e, IVar):
        return e.name in names
    if isinstance(e, IBin):
        return _mentions(e.lhs, names) or _mentions(e.rhs, names)
    return False


def _invariant_parts(e, inner: set, operand: bool) -> list:
    """The largest parts of e that take instructions to compute and use none of
    the `inner` loop variables. A constant costs an instruction only where it is
    a register operand: a whole compared value, or an operand with no immediate form."""
    if isinstance(e, IVar):
        return []
    if isinstance(e, IConst):
        return [e] if operand else []
    if not _mentions(e, inner):
        return [e]
    immediate = isinstance(e.rhs, IConst) and (e.op in IMM_OPS or e.op == "-")
    return (_invariant_parts(e.lhs, inner, True)
            + ([] if immediate else _invariant_parts(e.rhs, inner, True)))


def _nodes(e) -> int:
    """Instructions (and at most registers) computing e takes."""
    if isinstance(e, IBin):
        return 1 + _nodes(e.lhs) + (0 if isinstance(e.rhs, IConst) and (e.op in IMM_OPS or e.op == "-")
                                    else _nodes(e.rhs))
    return 1 if isinstance(e, IConst) else 0


def _widest(ops) -> int:
    """The most registers one instruction among ops computes its operands in."""
    return max((sum(_nodes(e) for e, _ in _index_exprs(o)) for o in walk(ops)), default=0)


def _path_uses(ops, inner: set, held: set) -> Counter:
    """How often one pass through ops (the costlier branch of each IfTile, loops
    inside counted once) computes each index expression free of `inner` variables."""
    uses = Counter()
    for o in ops:
        for e, operand in _index_exprs(o):
            for part in _invariant_parts(e, inner, operand):
                if part not in held and not isinstance(part, IConst):
                    uses[part] += 1
        if isinstance(o, IfTile):
            then, orelse = _path_uses(o.then, inner, held), _path_uses(o.orelse, inner, held)
            # (keys in first-use order, not a set's: the program must not depend on string hashing)
            uses.update({e: max(then[e], orelse[e]) for e in [*then, *(e for e in orelse if e not in then)]})
        elif isinstance(o, Loop):
            uses.update(_path_uses(o.body, inner, held))
    return uses


def _indices(ops) -> int:
    """Registers the indices read in ops hold (each until the end of its block), and one to clamp."""
    n = sum(isinstance(o, LoadIndex) for o in walk(ops))
    return n + 1 if n else 0


def _loop_depth(ops) -> int:
    depth = 0
    for o in ops:
        if isinstance(o, Loop):
            depth = max(depth, 1 + _loop_depth(o.body))
        elif isinstance(o, IfTile):
            depth = max(depth, _loop_depth(o.then), _loop_depth(o.orelse))
    return depth
