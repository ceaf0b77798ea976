"""Ordered reference for kernels/attention.tg: every tile's flash-attention
state, step by step in the kernel's order, then the row merge.

Tile (x, y) owns query rows block y; at step s it sees key/value chunk x of
block (y + s) mod H. See attention.tg for the per-step order."""
import numpy as np

from tilegrid.emulator.transcendentals import exp

from .ordered import chain_reduce, f32, matmul_ordered, rowreduce_ordered

MASK_VALUE = np.float32(-1e30)


def reference(inputs: dict, params: dict, grid: tuple) -> dict:
    Q, K, V = (f32(inputs[n]) for n in ("Q", "K", "V"))
    causal = int(params.get("causal", 0))
    W, H = grid
    S, D = Q.shape
    qb, kc = S // H, S // (H * W)
    scale = np.float32(1.0) / np.sqrt(np.float32(D))
    O = np.zeros((S, D), np.float32)
    for y in range(H):
        q = Q[y * qb:(y + 1) * qb]
        states = []
        for x in range(W):
            m = np.full((qb, 1), MASK_VALUE, np.float32)
            l = np.zeros((qb, 1), np.float32)
            acc = np.zeros((qb, D), np.float32)
            for s in range(H):
                k0 = ((y + s) % H) * qb + x * kc
                sc = matmul_ordered(q, K[k0:k0 + kc].T) * scale
                if causal:
                    later = (k0 + np.arange(kc))[None, :] > (y * qb + np.arange(qb))[:, None]
                    sc = np.where(later, MASK_VALUE, sc)
                mnew = np.maximum(m, rowreduce_ordered(sc, "max"))
                p = exp(sc - mnew)
                alpha = exp(m - mnew)
                l = l * alpha + rowreduce_ordered(p, "add")
                acc = acc * alpha + matmul_ordered(p, V[k0:k0 + kc])
                m = mnew
            states.append((m, l, acc))
        M = chain_reduce([st[0] for st in states], "max")
        alphas = [exp(st[0] - M) for st in states]
        L = chain_reduce([st[1] * a for st, a in zip(states, alphas)], "add")
        acc = chain_reduce([st[2] * a for st, a in zip(states, alphas)], "add")
        O[y * qb:(y + 1) * qb] = acc / L
    return {"O": O}
