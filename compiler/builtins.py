"""The language's built-in names: grid names, collectives, functions, constants."""
import numpy as np

from tilegrid.emulator.transcendentals import exp_f32, tanh_f32

BUILTINS = {"W", "H", "tx", "ty"}
DIRECTIONS = ("east", "west", "south", "north")
REDUCE_OPS = ("add", "max")
REDUCE_ORDERS = ("chain", "grouped")  # reduce_row(x, add, order = grouped): see lower_collectives.py
COLLECTIVES = {"broadcast_row", "broadcast_col", "shift", "rotate", "reduce_row", "reduce_col"}
ELEMENTWISE = {"+": "add", "-": "sub", "*": "mul", "/": "div"}
UNARY_FUNCS = {"exp", "tanh", "sqrt"}
LOCAL_REDUCTIONS = {"rowsum": ("add", 0.0), "rowmax": ("max", float("-inf"))}
SCALAR_UNARY = {"exp": exp_f32, "tanh": tanh_f32, "sqrt": np.sqrt}
TENSOR_FUNCS = UNARY_FUNCS | set(LOCAL_REDUCTIONS) | {"transpose", "max", "min", "causal_mask"}
# Masked scores get a large finite negative value, not -inf: an online softmax whose first
# block is fully masked then computes exp(0) for them instead of exp(-inf - -inf) = NaN,
# and the later rescale by exp(-1e30 - m) = 0 removes them exactly.
MASK_VALUE = -1e30
MAX_RANK = 4


def group_size(n: int) -> int:
    """order = grouped over n tiles sums inside groups of this many tiles, then over
    the groups (docs/language.md): the largest divisor of n that is at most sqrt(n)
    (1, the plain chain, for a prime n). The order decides the result's bits, so it
    is part of the language."""
    return max(d for d in range(1, int(n ** 0.5) + 1) if n % d == 0)
