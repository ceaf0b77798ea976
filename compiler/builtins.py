"""The language's built-in names: grid names, collectives, functions, constants."""
import numpy as np

from tilegrid.emulator.transcendentals import exp_f32, tanh_f32

BUILTINS = {"W", "H", "tx", "ty"}
DIRECTIONS = ("east", "west", "south", "north")
REDUCE_OPS = ("add", "max")
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
