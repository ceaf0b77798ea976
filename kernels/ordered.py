"""Ordered float32 building blocks for the bit-exact references.

No @, np.dot, np.matmul, np.einsum or np.sum: those leave the summation order
to BLAS or to pairwise summation. Every loop here fixes the order, and
vectorizes over all the other axes.
"""
import numpy as np


def f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def matmac_ordered(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """c + a @ b with each element adding k = 0, 1, ... in order, unfused."""
    c = f32(c).copy()
    a, b = f32(a), f32(b)
    for k in range(a.shape[1]):
        c = c + a[:, k, None] * b[None, k, :]
    return c


def matmul_ordered(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b from zero, k ascending, unfused: what `C = a @ b` compiles to."""
    return matmac_ordered(np.zeros((a.shape[0], b.shape[1]), np.float32), a, b)


def matvec_ordered(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """a @ x from zero, adding columns in ascending order."""
    a, x = f32(a), f32(x)
    y = np.zeros(a.shape[0], dtype=np.float32)
    for j in range(a.shape[1]):
        y = y + a[:, j] * x[j]
    return y


def group_size(n: int) -> int:
    """The group of a grouped reduction over n tiles: the largest divisor of n
    that is at most sqrt(n) (1 for a prime n, where grouped is the chain).
    Restated from docs/language.md rather than imported, so that the references
    do not lean on the compiler they check."""
    return max(d for d in range(1, int(n ** 0.5) + 1) if n % d == 0)


def chain_reduce(parts: list, op: str = "add", order: str = "chain") -> np.ndarray:
    """parts[0] op parts[1] op ... left to right, like the fabric's chain reduce.
    order="grouped", reduce_row(..., order = grouped): runs of g = group_size(n)
    parts, h = n / g // 2 of them before the middle. Each run before it is chained
    left to right and those sums left to right (L); each run after it right to
    left, and those sums right to left (R); the result is R op L."""
    g = group_size(len(parts)) if order == "grouped" else 1
    if g > 1:
        h = len(parts) // g // 2
        runs = [parts[i:i + g] for i in range(0, len(parts), g)]
        near = chain_reduce([chain_reduce(r, op) for r in runs[:h]], op)
        far = chain_reduce([chain_reduce(r[::-1], op) for r in runs[h:]][::-1], op)
        return chain_reduce([far, near], op)
    acc = f32(parts[0])
    for p in parts[1:]:
        acc = acc + f32(p) if op == "add" else np.maximum(acc, f32(p))
    return acc


def rowreduce_ordered(x: np.ndarray, op: str) -> np.ndarray:
    """Reduce the last axis in ascending order from 0 (add) or -inf (max), keeping it as size 1."""
    x = f32(x)
    acc = np.full(x.shape[:-1] + (1,), 0.0 if op == "add" else -np.inf, dtype=np.float32)
    for j in range(x.shape[-1]):
        acc = acc + x[..., j:j + 1] if op == "add" else np.maximum(acc, x[..., j:j + 1])
    return acc


def row_blocks_reduce(x: np.ndarray, width: int, op: str, order: str = "chain") -> np.ndarray:
    """rowreduce inside each of `width` column blocks, then reduce_row's order
    (a left-to-right chain, or grouped): what a local reduction followed by
    reduce_row does on a row of tiles."""
    x = f32(x)
    nb = x.shape[-1] // width
    return chain_reduce([rowreduce_ordered(x[..., c * nb:(c + 1) * nb], op) for c in range(width)], op, order)
