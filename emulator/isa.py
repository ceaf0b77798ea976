"""The dataflow instruction set: opcodes, encodings and a disassembler.

An instruction is one row of an int32 array with INSTR_FIELDS columns:
``(opcode, a, b, c, d, e)``. A descriptor is one row of an int32 array with
DESC_FIELDS columns: ``(base, base_reg, e0, s0, e1, s1, e2, s2, e3, s3)`` -
the word address ``base + regs[base_reg]`` (no register when base_reg < 0)
walked by four nested (extent, stride) loops, dim 0 outermost.
docs/isa.md is the reference for the semantics of every opcode.
"""
from __future__ import annotations

import numpy as np

INSTR_FIELDS = 6
DESC_FIELDS = 10
NO_REG = -1

# Router ports. A route maps each input port to a bit set of output ports.
PORT_N, PORT_E, PORT_S, PORT_W, PORT_RAMP = 0, 1, 2, 3, 4
PORT_NAMES = ("N", "E", "S", "W", "RAMP")
OPPOSITE = (PORT_S, PORT_W, PORT_N, PORT_E)

# --- opcodes -----------------------------------------------------------------
# control and integer registers
HALT = 0
LI = 1        # rd, imm             rd = imm
ADDI = 2      # rd, rs, imm         rd = rs + imm
MULI = 3      # rd, rs, imm         rd = rs * imm
DIVI = 4      # rd, rs, imm         rd = floor(rs / imm)
MODI = 5      # rd, rs, imm         rd = rs mod imm (sign of imm)
ADD = 6       # rd, ra, rb
SUB = 7       # rd, ra, rb
MUL = 8       # rd, ra, rb
DIV = 9       # rd, ra, rb          floor division
MOD = 10      # rd, ra, rb
MINR = 11     # rd, ra, rb
MAXR = 12     # rd, ra, rb
JMP = 13      # target
BEQ = 14      # ra, rb, target      branch if ra == rb
BNE = 15
BLT = 16      # ra, rb, target      branch if ra < rb
BGE = 17
LOOP = 18     # r, limit, target    r += 1; branch to target if r < limit
LDW = 19      # rd, src             rd = the f32 at src's first element, truncated toward zero (NaN: 0,
              #                     saturated to int32): a value read from SRAM into a register
# vector instructions over descriptors (f32)
VFILL = 32    # dst, imm#            dst[i] = fimm[imm#]
VCOPY = 33    # dst, src
VADD = 34     # dst, a, b            dst = a + b
VSUB = 35     # dst, a, b
VMUL = 36     # dst, a, b
VMAX = 37     # dst, a, b
VMIN = 38     # dst, a, b
VSCALE = 39   # dst, src, imm#       dst = src * fimm[imm#]
VFMAC = 40    # dst, a, b            dst = dst + a * b, two roundings
MMAC = 41     # c, a, b              c[M,N] += a[M,K] @ b[K,N], k ascending, unfused
VDIV = 42     # dst, a, b            dst = a / b (IEEE, correctly rounded)
VSQRT = 43    # dst, src             dst = sqrt(src) (IEEE, correctly rounded)
VEXP = 44     # dst, src             dst = exp(src), tilegrid's f32 algorithm (transcendentals.py)
VTANH = 45    # dst, src             dst = tanh(src), tilegrid's f32 algorithm
VMASK = 46    # dst, imm#, r         dst[i, j] = fimm[imm#] where j - i > r (the two inner dims)
VWIDEN = 47   # dst, src, mode       dst[i] = half i of src's words (low half first), widened exactly
              #                      to f32: mode WIDEN_BF16 or WIDEN_F16; dst has twice src's elements
WIDEN_BF16, WIDEN_F16 = 0, 1
# fabric
SEND = 48     # color, src           inject a descriptor's worth of wavelets
RECV = 49     # color, dst           take a descriptor's worth of wavelets
# asynchronous fabric transfers: they run beside the core on one of ASYNC_SLOTS
# stream slots (the vendor's microthreads) until a WAIT on that slot
SENDX = 50    # color, src, slot     start sending src; the core goes on
RECVX = 51    # color, dst, slot     start receiving into dst; the core goes on
WAIT = 52     # slot                 block until the slot's transfer is complete
ASYNC_SLOTS = 4                      # slots 0..3 for SENDX/RECVX
BLOCKING_SLOT = ASYNC_SLOTS          # SEND and RECV run on this slot and wait for it
STREAM_SLOTS = ASYNC_SLOTS + 1


MNEMONIC = {
    HALT: "halt", LI: "li", ADDI: "addi", MULI: "muli", DIVI: "divi", MODI: "modi",
    ADD: "add", SUB: "sub", MUL: "mul", DIV: "div", MOD: "mod", MINR: "min", MAXR: "max",
    JMP: "jmp", BEQ: "beq", BNE: "bne", BLT: "blt", BGE: "bge", LOOP: "loop", LDW: "ldw",
    VFILL: "vfill", VCOPY: "vcopy", VADD: "vadd", VSUB: "vsub", VMUL: "vmul",
    VMAX: "vmax", VMIN: "vmin", VSCALE: "vscale", VFMAC: "vfmac", MMAC: "mmac",
    VDIV: "vdiv", VSQRT: "vsqrt", VEXP: "vexp", VTANH: "vtanh", VMASK: "vmask", VWIDEN: "vwiden",
    SEND: "send", RECV: "recv", SENDX: "sendx", RECVX: "recvx", WAIT: "wait",
}

# operand kinds per opcode, for the disassembler and the program verifier:
# r = register, i = immediate, t = branch target, d = descriptor,
# f = float immediate index, c = color, s = async stream slot (0..ASYNC_SLOTS-1)
OPERANDS = {
    HALT: "", LI: "ri", ADDI: "rri", MULI: "rri", DIVI: "rri", MODI: "rri",
    ADD: "rrr", SUB: "rrr", MUL: "rrr", DIV: "rrr", MOD: "rrr", MINR: "rrr", MAXR: "rrr",
    JMP: "t", BEQ: "rrt", BNE: "rrt", BLT: "rrt", BGE: "rrt", LOOP: "rit", LDW: "rd",
    VFILL: "df", VCOPY: "dd", VADD: "ddd", VSUB: "ddd", VMUL: "ddd", VMAX: "ddd",
    VMIN: "ddd", VSCALE: "ddf", VFMAC: "ddd", MMAC: "ddd", SEND: "cd", RECV: "cd",
    VDIV: "ddd", VSQRT: "dd", VEXP: "dd", VTANH: "dd", VMASK: "dfr", VWIDEN: "ddi",
    SENDX: "cds", RECVX: "cds", WAIT: "s",
}
# Registers 0 and 1 hold the tile's own coordinates when a program starts.
REG_TX, REG_TY = 0, 1


def instr(op: int, *args: int) -> list[int]:
    row = [op, *args]
    if len(row) > INSTR_FIELDS:
        raise ValueError(f"{MNEMONIC[op]} takes at most {INSTR_FIELDS - 1} operands")
    return row + [0] * (INSTR_FIELDS - len(row))


def descriptor(base: int, dims, base_reg: int = NO_REG) -> list[int]:
    """A descriptor row; `dims` is up to four (extent, stride) pairs, outermost first."""
    dims = list(dims)
    if len(dims) > 4:
        raise ValueError("a descriptor has at most 4 dimensions")
    dims = [(1, 0)] * (4 - len(dims)) + dims
    row = [base, base_reg]
    for extent, stride in dims:
        row += [extent, stride]
    return row


def desc_extents(d) -> tuple[int, int, int, int]:
    return (int(d[2]), int(d[4]), int(d[6]), int(d[8]))


def desc_size(d) -> int:
    e = desc_extents(d)
    return e[0] * e[1] * e[2] * e[3]


def format_descriptor(d) -> str:
    base = str(int(d[0]))
    if d[1] != NO_REG:
        base = f"r{int(d[1])}+{base}"
    dims = [(int(d[2 + 2 * i]), int(d[3 + 2 * i])) for i in range(4)]
    while len(dims) > 1 and dims[0] == (1, 0):
        dims.pop(0)
    return "[" + base + " " + " ".join(f"{e}:{s}" for e, s in dims) + "]"


def format_instruction(row, descs, fimm, labels: dict | None = None) -> str:
    op = int(row[0])
    name = MNEMONIC.get(op, f"op{op}")
    parts = []
    for kind, value in zip(OPERANDS.get(op, ""), row[1:]):
        value = int(value)
        if kind == "r":
            parts.append(f"r{value}")
        elif kind == "i":
            parts.append(str(value))
        elif kind == "t":
            parts.append(labels.get(value, f"@{value}") if labels else f"@{value}")
        elif kind == "d":
            parts.append(f"d{value}{format_descriptor(descs[value])}")
        elif kind == "f":
            parts.append(repr(float(np.float32(fimm[value]))))
        elif kind == "c":
            parts.append(f"color{value}")
        elif kind == "s":
            parts.append(f"slot{value}")
    return f"{name:<7}" + ", ".join(parts)
