"""Float64 ground truths and their error bounds (these may use BLAS freely).

Each bound is the classical one for a sum of n rounded products in binary32:
|computed - exact| <= gamma(n) * (|A| @ |B|), gamma(n) = n u / (1 - n u),
u = 2**-24, with n one more than the summation length to cover the products.
It holds for any summation order, so it checks the kernel and its ordered
reference independently of the order they share.
"""
import numpy as np

U = 2.0 ** -24


def gamma(n: int) -> float:
    return n * U / (1 - n * U)


def matmul(inputs: dict, params: dict) -> tuple[dict, dict]:
    A, B = (np.asarray(inputs[k], np.float64) for k in ("A", "B"))
    bound = gamma(A.shape[1] + 1) * (np.abs(A) @ np.abs(B))
    return {"C": A @ B}, {"C": bound}


def gemv(inputs: dict, params: dict) -> tuple[dict, dict]:
    A, x = np.asarray(inputs["A"], np.float64), np.asarray(inputs["x"], np.float64)
    bound = gamma(A.shape[1] + 1) * (np.abs(A) @ np.abs(x))
    return {"y": A @ x}, {"y": bound}
