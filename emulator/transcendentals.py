"""tilegrid's f32 transcendentals: the one definition of exp and tanh.

Hardware like this has no exact exp; it runs a fixed f32 routine. tilegrid
defines that routine here, once. The emulator's vector loops call the scalar
functions, and the NumPy references call the same functions through the
`exp` / `tanh` ufuncs built from them, so the two agree bit for bit by
construction. Every operation below is one binary32 rounding (constants are
float32, numba never fuses without fastmath).

exp(x): Cody-Waite range reduction x = k ln2 + r, |r| <= ln2/2, with ln2
split in a 9-bit high part (k * LN2_HI is exact) and a low part; then
p = 1 + (r + r^2 q(r)), q the degree-5 Taylor tail (1/2 .. 1/7! ) in Horner
form; then the exact scaling p * 2^k (a single rounding only when the result
is subnormal). Inputs above 88.72 give inf, below -103.98 give 0, NaN stays NaN.

tanh(x): for |x| < 0.55, x + x^3 P(x^2) with P a degree-4 fit (relative
approximation error 0.02 ulp); otherwise 1 - 2 / (exp(2|x|) + 1), with the
sign of x. Measured errors against float64 are in docs/transcendentals.md
(tests/test_transcendentals.py recomputes them).

sqrt and division are IEEE operations (correctly rounded), so they need no
definition here: numba and NumPy give the same bits.
"""
import math

import numpy as np
from numba import njit, vectorize

F = np.float32
LOG2E = F(1.4426950408889634)
LN2_HI = F(0.693359375)              # 355/512: 9 significant bits
LN2_LO = F(-2.1219444005469057e-4)   # ln 2 - LN2_HI
EXP_OVERFLOW = F(88.72283935546875)  # largest x with exp(x) finite in f32
EXP_UNDERFLOW = F(-103.97208)        # below this exp(x) rounds to 0
C2, C3, C4, C5, C6, C7 = F(1 / 2), F(1 / 6), F(1 / 24), F(1 / 120), F(1 / 720), F(1 / 5040)
ONE, TWO, HALF = F(1.0), F(2.0), F(0.5)
INF = F(np.inf)

TANH_SMALL = F(0.55)
T1, T2, T3, T4, T5 = (F(-0.33333319425582886), F(0.13332617282867432), F(-0.05385512113571167),
                      F(0.021082058548927307), F(-0.006287662778049707))


@njit(cache=True)
def exp_f32(x):
    x = F(x)
    if x != x:
        return x
    if x > EXP_OVERFLOW:
        return INF
    if x < EXP_UNDERFLOW:
        return F(0.0)
    k = np.floor(x * LOG2E + HALF)
    r = (x - k * LN2_HI) - k * LN2_LO
    q = C2 + r * (C3 + r * (C4 + r * (C5 + r * (C6 + r * C7))))
    p = ONE + (r + (r * r) * q)
    return F(math.ldexp(float(p), int(k)))


@njit(cache=True, error_model="numpy")
def tanh_f32(x):
    x = F(x)
    if x != x:
        return x
    ax = abs(x)
    if ax == 0:
        return x  # keeps the sign of -0
    if ax < TANH_SMALL:
        u = x * x
        return x + (x * u) * (T1 + u * (T2 + u * (T3 + u * (T4 + u * T5))))
    t = ONE - TWO / (exp_f32(TWO * ax) + ONE)
    return t if x > 0 else -t


@vectorize(["float32(float32)"], cache=True)
def exp(x):
    """NumPy ufunc of exp_f32, for references."""
    return exp_f32(x)


@vectorize(["float32(float32)"], cache=True)
def tanh(x):
    """NumPy ufunc of tanh_f32, for references."""
    return tanh_f32(x)
