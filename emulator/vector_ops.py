"""Numba loops behind the vector instructions: one tile's SRAM row at a time.

All f32 arithmetic here is plain IEEE binary32 with one rounding per
operation: numba does not contract a*b+c into a fused multiply-add unless
fastmath is on, and it is never on in this package (tests/test_isa.py checks
the generated code).

Descriptors are rows of the program's int32 descriptor table (see isa.py).
Before looping, adjacent dimensions that every operand walks contiguously are
merged, so a dense block becomes one long unit-stride row.
"""
import numpy as np
from numba import njit

from .isa import VADD, VEXP, VMAX, VMIN, VMUL, VSQRT, VSUB
from .simd_matmac import simd_matmac
from .transcendentals import exp_f32, tanh_f32


@njit(cache=True)
def desc_base(descs, d, regs_t):
    base = descs[d, 0]
    if descs[d, 1] >= 0:
        base += regs_t[descs[d, 1]]
    return base


@njit(cache=True)
def desc_len(descs, d):
    return descs[d, 2] * descs[d, 4] * descs[d, 6] * descs[d, 8]


@njit(cache=True)
def desc_in_bounds(descs, d, base, words):
    """True when every word the descriptor touches lies in [0, words)."""
    lo, hi = desc_span(descs, d, base)
    return lo >= 0 and hi < words


@njit(cache=True)
def merged_dims(descs, ds, n_ops):
    """Extents and per-operand strides with mergeable dims folded together.

    Returns (ext[4], strides[n_ops, 4]) with unused outer dims set to extent 1.
    """
    ext = np.ones(4, dtype=np.int64)
    st = np.zeros((n_ops, 4), dtype=np.int64)
    k = 3  # the dim being built, innermost first
    for i in range(3, -1, -1):
        e = descs[ds[0], 2 + 2 * i]
        if e == 1:
            continue
        if ext[k] == 1:  # nothing built yet at k: take this dim as it is
            ext[k] = e
            for o in range(n_ops):
                st[o, k] = descs[ds[o], 3 + 2 * i]
            continue
        mergeable = True
        for o in range(n_ops):
            if descs[ds[o], 3 + 2 * i] != ext[k] * st[o, k]:
                mergeable = False
        if mergeable:
            ext[k] *= e
        else:
            k -= 1
            ext[k] = e
            for o in range(n_ops):
                st[o, k] = descs[ds[o], 3 + 2 * i]
    return ext, st


@njit(cache=True, error_model="numpy")  # IEEE division: x / 0 is inf or NaN, not an exception
def _binary_row(m, op, pd, sd, pa, sa, pb, sb, n):
    if sd == 1 and sa == 1 and sb == 1:
        if op == VADD:
            for j in range(n):
                m[pd + j] = m[pa + j] + m[pb + j]
        elif op == VSUB:
            for j in range(n):
                m[pd + j] = m[pa + j] - m[pb + j]
        elif op == VMUL:
            for j in range(n):
                m[pd + j] = m[pa + j] * m[pb + j]
        elif op == VMAX:
            for j in range(n):
                m[pd + j] = _fmax(m[pa + j], m[pb + j])
        elif op == VMIN:
            for j in range(n):
                m[pd + j] = _fmin(m[pa + j], m[pb + j])
        else:
            for j in range(n):
                m[pd + j] = m[pa + j] / m[pb + j]
        return
    for j in range(n):
        a = m[pa + j * sa]
        b = m[pb + j * sb]
        if op == VADD:
            r = a + b
        elif op == VSUB:
            r = a - b
        elif op == VMUL:
            r = a * b
        elif op == VMAX:
            r = _fmax(a, b)
        elif op == VMIN:
            r = _fmin(a, b)
        else:
            r = a / b
        m[pd + j * sd] = r


@njit(cache=True)
def _fmax(a, b):
    # As numpy.maximum: a NaN operand wins (the first if both), ties give b (so max(+0, -0) = -0).
    if a != a:
        return a
    if b != b:
        return b
    return a if a > b else b


@njit(cache=True)
def _fmin(a, b):
    if a != a:
        return a
    if b != b:
        return b
    return a if a < b else b


@njit(cache=True)
def _dense_like(descs, d, like):
    """Descriptor d walks consecutive words in the shape of descriptor `like`. When
    every operand does so in the destination's shape, an op is one row of
    desc_len elements: the common case, which then merges no dims (merged_dims
    allocates, and on short vectors that cost more than the arithmetic)."""
    for i in range(4):
        if descs[d, 2 + 2 * i] != descs[like, 2 + 2 * i]:
            return False
    return desc_is_dense(descs, d)


@njit(cache=True, error_model="numpy")
def vec_binary(m, op, descs, dd, da, db, bd, ba, bb):
    if desc_is_dense(descs, dd) and _dense_like(descs, da, dd) and _dense_like(descs, db, dd):
        _binary_row(m, op, bd, 1, ba, 1, bb, 1, desc_len(descs, dd))
        return
    ds = np.array([dd, da, db])
    ext, st = merged_dims(descs, ds, 3)
    for i0 in range(ext[0]):
        for i1 in range(ext[1]):
            for i2 in range(ext[2]):
                pd = bd + i0 * st[0, 0] + i1 * st[0, 1] + i2 * st[0, 2]
                pa = ba + i0 * st[1, 0] + i1 * st[1, 1] + i2 * st[1, 2]
                pb = bb + i0 * st[2, 0] + i1 * st[2, 1] + i2 * st[2, 2]
                _binary_row(m, op, pd, st[0, 3], pa, st[1, 3], pb, st[2, 3], ext[3])


@njit(cache=True, inline="always")
def _fmac_row(m, pd, sd, pa, sa, pb, sb, n):
    if sd == 1 and sa == 1 and sb == 1:
        for j in range(n):
            m[pd + j] = m[pd + j] + m[pa + j] * m[pb + j]
    else:
        for j in range(n):
            m[pd + j * sd] = m[pd + j * sd] + m[pa + j * sa] * m[pb + j * sb]


@njit(cache=True)
def vec_fmac(m, descs, dd, da, db, bd, ba, bb):
    """dst = dst + a * b with two roundings, walking the descriptors in order."""
    if desc_is_dense(descs, dd) and _dense_like(descs, da, dd) and _dense_like(descs, db, dd):
        _fmac_row(m, bd, 1, ba, 1, bb, 1, desc_len(descs, dd))
        return
    ds = np.array([dd, da, db])
    ext, st = merged_dims(descs, ds, 3)
    for i0 in range(ext[0]):
        for i1 in range(ext[1]):
            for i2 in range(ext[2]):
                pd = bd + i0 * st[0, 0] + i1 * st[0, 1] + i2 * st[0, 2]
                pa = ba + i0 * st[1, 0] + i1 * st[1, 1] + i2 * st[1, 2]
                pb = bb + i0 * st[2, 0] + i1 * st[2, 1] + i2 * st[2, 2]
                _fmac_row(m, pd, st[0, 3], pa, st[1, 3], pb, st[2, 3], ext[3])


@njit(cache=True, inline="always")
def _unary_row(m, op, pd, sd, ps, ss, n, scale):
    if op == 0:
        if sd == 1 and ss == 1:
            m[pd:pd + n] = m[ps:ps + n]
        else:
            for j in range(n):
                m[pd + j * sd] = m[ps + j * ss]
    elif op == 1:
        for j in range(n):
            m[pd + j * sd] = m[ps + j * ss] * scale
    elif op == VSQRT:
        for j in range(n):
            m[pd + j * sd] = np.sqrt(m[ps + j * ss])
    elif op == VEXP:
        for j in range(n):
            m[pd + j * sd] = exp_f32(m[ps + j * ss])
    else:
        for j in range(n):
            m[pd + j * sd] = tanh_f32(m[ps + j * ss])


@njit(cache=True)
def vec_unary(m, descs, dd, ds_, bd, bs, scale, op):
    """op 0: dst = src (copy); VSCALE-like 1: dst = src * scale; else VSQRT, VEXP or VTANH."""
    if desc_is_dense(descs, dd) and _dense_like(descs, ds_, dd):
        _unary_row(m, op, bd, 1, bs, 1, desc_len(descs, dd), scale)
        return
    ds = np.array([dd, ds_])
    ext, st = merged_dims(descs, ds, 2)
    for i0 in range(ext[0]):
        for i1 in range(ext[1]):
            for i2 in range(ext[2]):
                pd = bd + i0 * st[0, 0] + i1 * st[0, 1] + i2 * st[0, 2]
                ps = bs + i0 * st[1, 0] + i1 * st[1, 1] + i2 * st[1, 2]
                _unary_row(m, op, pd, st[0, 3], ps, st[1, 3], ext[3], scale)


@njit(cache=True)
def vec_mask(m, descs, dd, bd, value, offset):
    """dst[.., i, j] = value where j - i > offset (i, j: the two innermost dims)."""
    e0, e1, e2, e3 = descs[dd, 2], descs[dd, 4], descs[dd, 6], descs[dd, 8]
    s0, s1, s2, s3 = descs[dd, 3], descs[dd, 5], descs[dd, 7], descs[dd, 9]
    for i0 in range(e0):
        for i1 in range(e1):
            for i in range(e2):
                row = bd + i0 * s0 + i1 * s1 + i * s2
                for j in range(max(0, i + offset + 1), e3):
                    m[row + j * s3] = value


@njit(cache=True)
def vec_fill(m, descs, dd, bd, value):
    if desc_is_dense(descs, dd):
        m[bd:bd + desc_len(descs, dd)] = value
        return
    ds = np.array([dd])
    ext, st = merged_dims(descs, ds, 1)
    for i0 in range(ext[0]):
        for i1 in range(ext[1]):
            for i2 in range(ext[2]):
                pd = bd + i0 * st[0, 0] + i1 * st[0, 1] + i2 * st[0, 2]
                for j in range(ext[3]):
                    m[pd + j * st[0, 3]] = value


@njit(cache=True)
def matmac(m, descs, dc, da, db, bc, ba, bb):
    """c[M,N] += a[M,K] @ b[K,N]: each c[i,j] adds k = 0..K-1 in order, unfused.

    The descriptors' two innermost dims give rows and columns. Row-major
    operands take the blocked kernel; any other strides take the plain loop.
    """
    M, N, K = descs[dc, 6], descs[dc, 8], descs[da, 8]
    c_rs, c_cs = descs[dc, 7], descs[dc, 9]
    a_rs, a_cs = descs[da, 7], descs[da, 9]
    b_rs, b_cs = descs[db, 7], descs[db, 9]
    unit = (c_cs == 1 or N == 1) and (b_cs == 1 or N == 1) and (a_cs == 1 or K == 1)
    if unit and not _overlaps(descs, dc, bc, da, ba) and not _overlaps(descs, dc, bc, db, bb):
        simd_matmac(m, bc, c_rs, ba, a_rs, bb, b_rs, M, N, K)
        return
    for i in range(M):
        for k in range(K):
            av = m[ba + i * a_rs + k * a_cs]
            for j in range(N):
                p = bc + i * c_rs + j * c_cs
                m[p] = m[p] + av * m[bb + k * b_rs + j * b_cs]


@njit(cache=True)
def desc_span(descs, d, base):
    lo = base
    hi = base
    for i in range(4):
        reach = (descs[d, 2 + 2 * i] - 1) * descs[d, 3 + 2 * i]
        if reach < 0:
            lo += reach
        else:
            hi += reach
    return lo, hi


@njit(cache=True)
def _overlaps(descs, d1, b1, d2, b2):
    lo1, hi1 = desc_span(descs, d1, b1)
    lo2, hi2 = desc_span(descs, d2, b2)
    return lo1 <= hi2 and lo2 <= hi1


# --- moving a range of a descriptor's elements ---------------------------------
@njit(cache=True)
def desc_is_dense(descs, d):
    """True when the descriptor walks consecutive words in order."""
    expect = 1
    for i in range(3, -1, -1):
        e = descs[d, 2 + 2 * i]
        if e == 1:
            continue
        if descs[d, 3 + 2 * i] != expect:
            return False
        expect *= e
    return True


@njit(cache=True)
def desc_addresses(descs, d, base, start, n):
    """Word addresses of elements start..start+n-1 of descriptor d, in order."""
    out = np.empty(n, dtype=np.int64)
    e1, e2, e3 = descs[d, 4], descs[d, 6], descs[d, 8]
    s0, s1, s2, s3 = descs[d, 3], descs[d, 5], descs[d, 7], descs[d, 9]
    c3 = start % e3
    c2 = (start // e3) % e2
    c1 = (start // (e3 * e2)) % e1
    c0 = start // (e3 * e2 * e1)
    for j in range(n):
        out[j] = base + c0 * s0 + c1 * s1 + c2 * s2 + c3 * s3
        c3 += 1
        if c3 == e3:
            c3 = 0
            c2 += 1
            if c2 == e2:
                c2 = 0
                c1 += 1
                if c1 == e1:
                    c1 = 0
                    c0 += 1
    return out


@njit(cache=True)
def gather(m, descs, d, base, start, n, out, out_off):
    """out[out_off : out_off+n] = elements start..start+n-1 of descriptor d."""
    if desc_is_dense(descs, d):
        out[out_off:out_off + n] = m[base + start:base + start + n]
        return
    addr = desc_addresses(descs, d, base, start, n)
    for j in range(n):
        out[out_off + j] = m[addr[j]]


@njit(cache=True)
def scatter(m, descs, d, base, start, n, src, src_off):
    """Elements start..start+n-1 of descriptor d = src[src_off : src_off+n]."""
    if desc_is_dense(descs, d):
        m[base + start:base + start + n] = src[src_off:src_off + n]
        return
    addr = desc_addresses(descs, d, base, start, n)
    for j in range(n):
        m[addr[j]] = src[src_off + j]


@njit(cache=True, inline="always")
def _half_bits_to_f32(h):
    """The f32 bits of IEEE binary16 h, exactly (subnormals, infinities and NaN payloads too)."""
    sign = (h >> 15) << 31
    e = (h >> 10) & 0x1F
    mant = h & 0x3FF
    if e == 0x1F:
        return sign | 0x7F800000 | (mant << 13)
    if e != 0:
        return sign | ((e + 112) << 23) | (mant << 13)
    if mant == 0:
        return sign
    shift = 0
    while mant & 0x400 == 0:
        mant <<= 1
        shift += 1
    return sign | ((113 - shift) << 23) | ((mant & 0x3FF) << 13)


@njit(cache=True)
def vec_widen(m, descs, dd, ds_, bd, bs, mode):
    """dst (n elements) = the n halves of src's n / 2 words, low half first, as f32:
    bf16 (mode 0) is the high half of an f32; f16 (mode 1) is IEEE binary16."""
    n = desc_len(descs, dd)
    words = np.empty(n // 2, dtype=np.float32)
    gather(m, descs, ds_, bs, 0, n // 2, words, 0)
    bits = words.view(np.uint32)
    out = np.empty(n, dtype=np.float32)
    ob = out.view(np.uint32)
    for i in range(n // 2):
        lo = bits[i] & np.uint32(0xFFFF)
        hi = bits[i] >> np.uint32(16)
        if mode == 0:
            ob[2 * i] = lo << np.uint32(16)
            ob[2 * i + 1] = hi << np.uint32(16)
        else:
            ob[2 * i] = _half_bits_to_f32(lo)
            ob[2 * i + 1] = _half_bits_to_f32(hi)
    scatter(m, descs, dd, bd, 0, n, out, 0)
