"""The fast path of MMAC: an ordered, unfused f32 block matmul-accumulate.

c[M, N] += a[M, K] @ b[K, N] with every c[i, j] updated for k = 0, 1, ...
in order as round(c + round(a[i, k] * b[k, j])): exactly the plain loop's
result, bit for bit. Plain numba loops over one SRAM array do not vectorize
well (every store may alias every load), so the inner block is written as
LLVM vector IR through numba intrinsics: a 16-row x 16-column tile of c is
held in registers across the whole k loop, each step multiplies a broadcast
a[i, k] by one 16-wide row of b and adds. The IR carries no fast-math flags,
so LLVM may not fuse the multiply and the add (tests/test_isa.py checks the
machine code has no FMA).

Preconditions (checked by the caller, vector_ops.matmac): unit column stride
for c, a and b, and c not overlapping a or b.
"""
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 16
_f32 = ir.FloatType()
_i32 = ir.IntType(32)
_i64 = ir.IntType(64)
_vec = ir.VectorType(_f32, LANES)
_mask_t = ir.VectorType(ir.IntType(1), LANES)
_splat0 = ir.Constant(ir.VectorType(_i32, LANES), [0] * LANES)


def _block_intrinsic(rows: int, masked: bool):
    """intrinsic(m, c, ldc, a, lda, b, ldb, K, width):
    c[0:rows, 0:width] += a[0:rows, 0:K] @ b[0:K, 0:width], offsets into m.
    Unmasked blocks take width == 16; masked ones any width below 16."""

    @intrinsic
    def block(typingctx, m, c, ldc, a, lda, b, ldb, K, width):
        sig = types.void(m, c, ldc, a, lda, b, ldb, K, width)

        def codegen(context, builder, signature, args):
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            c, ldc, a, lda, b, ldb, K, width = args[1:]

            def at(ptr, offset):
                return builder.gep(ptr, [offset], inbounds=True, source_etype=_f32)

            if masked:
                load_fn = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(_vec, [data.type, _i32, _mask_t, _vec]),
                    "llvm.masked.load.v16f32.p0")
                store_fn = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(ir.VoidType(), [_vec, data.type, _i32, _mask_t]),
                    "llvm.masked.store.v16f32.p0")
                lanes64 = ir.VectorType(_i64, LANES)
                w = builder.insert_element(ir.Constant(lanes64, ir.Undefined), width, _i32(0))
                w = builder.shuffle_vector(w, ir.Constant(lanes64, ir.Undefined), _splat0)
                mask = builder.icmp_signed("<", ir.Constant(lanes64, list(range(LANES))), w)
                zeros = ir.Constant(_vec, [0.0] * LANES)

                def vload(ptr):
                    return builder.call(load_fn, [ptr, _i32(4), mask, zeros])

                def vstore(value, ptr):
                    builder.call(store_fn, [value, ptr, _i32(4), mask])
            else:
                def vload(ptr):
                    return builder.load(builder.bitcast(ptr, _vec.as_pointer()), align=4, typ=_vec)

                def vstore(value, ptr):
                    builder.store(value, builder.bitcast(ptr, _vec.as_pointer()), align=4)

            c_rows = [at(at(data, c), builder.mul(ldc, _i64(r))) for r in range(rows)]
            a_rows = [at(at(data, a), builder.mul(lda, _i64(r))) for r in range(rows)]
            b_base = at(data, b)
            start = [vload(p) for p in c_rows]

            entry = builder.block
            head = builder.function.append_basic_block("mmac_k")
            body = builder.function.append_basic_block("mmac_step")
            done = builder.function.append_basic_block("mmac_done")
            builder.branch(head)

            builder.position_at_end(head)
            k = builder.phi(_i64)
            k.add_incoming(_i64(0), entry)
            acc = [builder.phi(_vec) for _ in range(rows)]
            for r in range(rows):
                acc[r].add_incoming(start[r], entry)
            builder.cbranch(builder.icmp_signed("<", k, K), body, done)

            builder.position_at_end(body)
            b_row = vload(at(b_base, builder.mul(k, ldb)))
            nxt = []
            for r in range(rows):
                scalar = builder.load(at(a_rows[r], k), align=4, typ=_f32)
                splat = builder.insert_element(ir.Constant(_vec, ir.Undefined), scalar, _i32(0))
                splat = builder.shuffle_vector(splat, ir.Constant(_vec, ir.Undefined), _splat0)
                nxt.append(builder.fadd(acc[r], builder.fmul(splat, b_row)))  # two roundings
            k.add_incoming(builder.add(k, _i64(1)), builder.block)
            for r in range(rows):
                acc[r].add_incoming(nxt[r], builder.block)
            builder.branch(head)

            builder.position_at_end(done)
            for r in range(rows):
                vstore(acc[r], c_rows[r])
            return context.get_dummy_value()

        return sig, codegen

    return block


_full = {r: _block_intrinsic(r, False) for r in (16, 8, 4, 2, 1)}
_part = {r: _block_intrinsic(r, True) for r in (16, 8, 4, 2, 1)}
_f16, _f8, _f4, _f2, _f1 = (_full[r] for r in (16, 8, 4, 2, 1))
_p16, _p8, _p4, _p2, _p1 = (_part[r] for r in (16, 8, 4, 2, 1))


@njit(cache=True)
def _column_panel(m, c, ldc, a, lda, b, ldb, M, K, width):
    """c[0:M, 0:width] += a @ b[:, 0:width] for one panel of at most 16 columns."""
    i = 0
    if width == LANES:
        while i + 16 <= M:
            _f16(m, c + i * ldc, ldc, a + i * lda, lda, b, ldb, K, width)
            i += 16
        for rows in (8, 4, 2, 1):
            if (M - i) & rows:
                if rows == 8:
                    _f8(m, c + i * ldc, ldc, a + i * lda, lda, b, ldb, K, width)
                elif rows == 4:
                    _f4(m, c + i * ldc, ldc, a + i * lda, lda, b, ldb, K, width)
                elif rows == 2:
                    _f2(m, c + i * ldc, ldc, a + i * lda, lda, b, ldb, K, width)
                else:
                    _f1(m, c + i * ldc, ldc, a + i * lda, lda, b, ldb, K, width)
                i += rows
    else:
        while i + 16 <= M:
            _p16(m, c + i * ldc, ldc, a + i * lda, lda, b, ldb, K, width)
            i += 16
        for rows in (8, 4, 2, 1):
            if (M - i) & rows:
                if rows == 8:
                    _p8(m, c + i * ldc, ldc, a + i * lda, lda, b, ldb, K, width)
                elif rows == 4:
                    _p4(m, c + i * ldc, ldc, a + i * lda, lda, b, ldb, K, width)
                elif rows == 2:
                    _p2(m, c + i * ldc, ldc, a + i * lda, lda, b, ldb, K, width)
                else:
                    _p1(m, c + i * ldc, ldc, a + i * lda, lda, b, ldb, K, width)
                i += rows


@njit(cache=True)
def simd_matmac(m, c, ldc, a, lda, b, ldb, M, N, K):
    """c += a @ b on row-major blocks of the 1-D float32 array m (word offsets)."""
    # The intrinsics are typed for int64 operands.
    c, ldc, a, lda, b, ldb = np.int64(c), np.int64(ldc), np.int64(a), np.int64(lda), np.int64(b), np.int64(ldb)
    M, N, K = np.int64(M), np.int64(N), np.int64(K)
    # No software prefetch: asking for every operand line up front, before the first
    # block, made the compute phase about 4% slower than the hardware prefetchers alone
    # (matmul 512^3 and 1024^3 on 16x16, Cannon 512^3 on 8x8).
    M16 = M - M % 16
    N16 = N - N % 16
    for i in range(0, M16, 16):  # full 16 x 16 tiles, row blocks outermost
        for j in range(0, N16, 16):
            _f16(m, c + i * ldc + j, ldc, a + i * lda, lda, b + j, ldb, K, LANES)
    if M16 < M:                  # leftover rows: 8/4/2/1-row blocks per full panel
        for j in range(0, N16, 16):
            _column_panel(m, c + M16 * ldc + j, ldc, a + M16 * lda, lda, b + j, ldb, M - M16, K, LANES)
    if N16 < N:                  # leftover columns: one masked panel
        _column_panel(m, c + N16, ldc, a, lda, b + N16, ldb, M, K, N - N16)
