"""numba: the scalar and control instructions, shared by the functional core
(core.py) and the cycle-level model (cycle_model.py), so both run a program's
integer work, and so its control flow, identically."""
from numba import njit

from .isa import (ADD, ADDI, BEQ, BGE, BLT, BNE, DIV, DIVI, JMP, LI, LOOP, MAXR, MINR, MOD, MODI, MUL, MULI,
                  SUB)


@njit(cache=True, inline="always")
def scalar_step(op, a, b, c, r):
    """One scalar or control instruction, for both models. Returns
    (branch target or -1 to fall through, False on a division by zero)."""
    nxt = -1
    if op == LI:
        r[a] = b
    elif op == ADDI:
        r[a] = r[b] + c
    elif op == MULI:
        r[a] = r[b] * c
    elif op == DIVI or op == MODI or op == DIV or op == MOD:
        den = c if (op == DIVI or op == MODI) else r[c]
        if den == 0:
            return nxt, False
        if op == DIVI or op == DIV:
            r[a] = r[b] // den
        else:
            r[a] = r[b] % den
    elif op == ADD:
        r[a] = r[b] + r[c]
    elif op == SUB:
        r[a] = r[b] - r[c]
    elif op == MUL:
        r[a] = r[b] * r[c]
    elif op == MINR:
        r[a] = min(r[b], r[c])
    elif op == MAXR:
        r[a] = max(r[b], r[c])
    elif op == JMP:
        nxt = a
    elif op == BEQ:
        if r[a] == r[b]:
            nxt = c
    elif op == BNE:
        if r[a] != r[b]:
            nxt = c
    elif op == BLT:
        if r[a] < r[b]:
            nxt = c
    elif op == BGE:
        if r[a] >= r[b]:
            nxt = c
    elif op == LOOP:
        r[a] += 1
        if r[a] < b:
            nxt = c
    return nxt, True


