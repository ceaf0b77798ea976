"""numba: the scalar and control instructions, shared by the functional core
(core.py) and the cycle-level model (cycle_model.py), so both run a program's
integer work, and so its control flow, identically."""
import numpy as np
from numba import njit

from .isa import (ADD, ADDI, BEQ, BGE, BLT, BNE, DIV, DIVI, JMP, LI, LOOP, MAXR, MINR, MOD, MODI, MUL, MULI,
                  SUB)


@njit(cache=True, inline="always")
def scalar_step(op, a, b, c, ra, rb, rc):
    """One scalar or control instruction, for both models, on the values of the
    registers its fields a, b, c name (whatever a field that names no register
    reads: the op ignores it). It takes values, not the register array, because
    numba counts references to an array passed to a helper that branches, and
    that per instruction cost more than the instruction (recorder.py).

    Returns (value, write it to register a, branch target or -1 to fall through,
    False on a division by zero)."""
    value = 0
    nxt = -1
    if op == LI:
        value = b
    elif op == ADDI:
        value = rb + c
    elif op == MULI:
        value = rb * c
    elif op == DIVI or op == MODI or op == DIV or op == MOD:
        den = c if (op == DIVI or op == MODI) else rc
        if den == 0:
            return value, False, nxt, False
        if op == DIVI or op == DIV:
            value = rb // den
        else:
            value = rb % den
    elif op == ADD:
        value = rb + rc
    elif op == SUB:
        value = rb - rc
    elif op == MUL:
        value = rb * rc
    elif op == MINR:
        value = min(rb, rc)
    elif op == MAXR:
        value = max(rb, rc)
    elif op == JMP:
        return value, False, a, True
    elif op == BEQ or op == BNE or op == BLT or op == BGE:
        if op == BEQ:
            taken = ra == rb
        elif op == BNE:
            taken = ra != rb
        elif op == BLT:
            taken = ra < rb
        else:
            taken = ra >= rb
        return value, False, c if taken else -1, True
    elif op == LOOP:
        value = np.int32(ra + 1)  # compared as the register holds it (an int32 wraps)
        if value < b:
            nxt = c
    else:
        return value, False, nxt, True
    return value, True, nxt, True
