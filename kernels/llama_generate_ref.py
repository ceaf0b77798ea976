"""Ordered references for kernels/llama_step.tg and kernels/llama_generate.tg:
each operation in the kernels' order, each sum in the fabric's order (inside a
tile ascending, then across the tiles in ascending tx or ty)."""
import numpy as np

from tilegrid.emulator.transcendentals import exp

from .llama_layers_ref import silu
from .ordered import chain_reduce, f32, matmac_ordered, matmul_ordered, row_blocks_reduce, rowreduce_ordered

F = np.float32
MASK = F(-1e30)
STEP_WEIGHTS = ("attn_norm", "wq", "wk", "wv", "wo", "mlp_norm", "w_gate", "w_up", "w_down")


def blocked_matmul(x: np.ndarray, w: np.ndarray, parts: int, order: str = "chain") -> np.ndarray:
    """x @ w with the inner dimension cut into `parts` blocks: each block's
    product from zero (k ascending), then the blocks reduced in `order`."""
    kb = x.shape[1] // parts
    return chain_reduce([matmul_ordered(x[:, b * kb:(b + 1) * kb], w[b * kb:(b + 1) * kb]) for b in range(parts)],
                        order=order)


def rmsnorm_cols(X: np.ndarray, g: np.ndarray, eps, grid: tuple) -> np.ndarray:
    ms = row_blocks_reduce(f32(X) * f32(X), grid[1], "add") / F(X.shape[1])
    return X * (F(1.0) / np.sqrt(ms + F(eps))) * f32(g)


def rope_heads(X: np.ndarray, cos: np.ndarray, sin: np.ndarray, pos: int) -> np.ndarray:
    R, D = X.shape
    dh = cos.shape[1]
    half = dh // 2
    c, s = cos[pos:pos + R], sin[pos:pos + R]
    Y = np.empty_like(X)
    for j in range(D // dh):
        a, b = X[:, j * dh:j * dh + half], X[:, j * dh + half:(j + 1) * dh]
        Y[:, j * dh:j * dh + half] = a * c[:, :half] - b * s[:, :half]
        Y[:, j * dh + half:(j + 1) * dh] = b * c[:, half:] + a * s[:, half:]
    return Y


def attend_cache(q, Kc, Vc, pos: int, heads: int, kv_heads: int, grid: tuple) -> np.ndarray:
    """Each head's scores against all P positions, masked after each query's
    position; softmax and the weighted sum per block of P / H positions, chained."""
    R, dq = q.shape
    P, H = Kc.shape[0], grid[1]
    dh, group, rows = dq // heads, heads // kv_heads, Kc.shape[0] // grid[1]
    scale = F(1.0) / np.sqrt(F(dh))
    keys = np.arange(P)[None, :]
    late = keys > (pos + np.arange(R))[:, None]
    o = np.empty((R, dq), np.float32)
    for i in range(heads):
        j = i // group
        k, v = Kc[:, j * dh:(j + 1) * dh], Vc[:, j * dh:(j + 1) * dh]
        sc = matmul_ordered(q[:, i * dh:(i + 1) * dh], np.ascontiguousarray(k.T)) * scale
        sc = np.where(late, MASK, sc)
        blocks = [slice(b * rows, (b + 1) * rows) for b in range(H)]
        m = chain_reduce([rowreduce_ordered(sc[:, b], "max") for b in blocks], "max")
        p = exp(sc - m)
        l = chain_reduce([rowreduce_ordered(p[:, b], "add") for b in blocks])
        acc = chain_reduce([matmul_ordered(p[:, b], v[b]) for b in blocks])
        o[:, i * dh:(i + 1) * dh] = acc / l
    return o


def llama_step(x, weights: dict, Kc, Vc, cos, sin, pos: int, params: dict, grid: tuple) -> np.ndarray:
    """kernels/llama_step.tg; writes rows pos .. pos + R - 1 of the caches Kc, Vc in place."""
    W, H = grid
    heads, kv_heads = int(params.get("heads", 8)), int(params.get("kv_heads", 4))
    eps = params.get("eps", 1e-5)
    w = {n: f32(weights[n]) for n in STEP_WEIGHTS}
    x = f32(x)
    a = rmsnorm_cols(x, w["attn_norm"], eps, grid)
    q, k, v = (blocked_matmul(a, w[n], H) for n in ("wq", "wk", "wv"))
    q, k = rope_heads(q, cos, sin, pos), rope_heads(k, cos, sin, pos)
    Kc[pos:pos + x.shape[0]] = k
    Vc[pos:pos + x.shape[0]] = v
    o = attend_cache(q, Kc, Vc, pos, heads, kv_heads, grid)
    h = x + blocked_matmul(o, w["wo"], W)
    a = rmsnorm_cols(h, w["mlp_norm"], eps, grid)
    gate = silu(blocked_matmul(a, w["w_gate"], H)) * blocked_matmul(a, w["w_up"], H)
    return h + blocked_matmul(gate, w["w_down"], W)


def step_reference(inputs: dict, params: dict, grid: tuple) -> dict:
    """The bundled llama_step kernel's outputs (its cache updates stay inside it)."""
    Kc, Vc = f32(inputs["Kc"]).copy(), f32(inputs["Vc"]).copy()
    y = llama_step(inputs["x"], inputs, Kc, Vc, f32(inputs["cos"]), f32(inputs["sin"]),
                   int(params.get("pos", 0)), params, grid)
    return {"y": y}


def token_of(value: np.float32, vocab: int) -> int:
    """What `index tok = ... in 0 .. V` reads: truncated toward zero, clamped."""
    return int(min(max(np.trunc(np.nan_to_num(value, nan=0.0)), 0), vocab - 1))


def generate(inputs: dict, params: dict, grid: tuple) -> dict:
    """kernels/llama_generate.tg: prefill, then greedy decode steps, with the caches
    of every layer kept between them."""
    W, H = grid
    eps = params.get("eps", 1e-5)
    steps = int(params["T"])
    embed, cos, sin = f32(inputs["embed"]), f32(inputs["cos"]), f32(inputs["sin"])
    vocab, layers = embed.shape[0], inputs["wq"].shape[0]
    P, dkv = cos.shape[0], inputs["wk"].shape[2]
    caches = [(np.zeros((P, dkv), np.float32), np.zeros((P, dkv), np.float32)) for _ in range(layers)]
    idx = f32(inputs["idx"])[0]

    def layer_weights(l):
        return {n: inputs[n][l] for n in STEP_WEIGHTS}

    def head(h):
        h = rmsnorm_cols(h, inputs["final_norm"], eps, grid)
        row = blocked_matmul(h, f32(inputs["lm_head"]), H)
        return row, idx[int(np.argmax(row[0]))]

    prompt = [token_of(t, vocab) for t in f32(inputs["prompt"])[0]]
    x = embed[prompt]
    for l in range(layers):
        x = llama_step(x, layer_weights(l), *caches[l], cos, sin, 0, params, grid)
    tokens = np.zeros((1, steps), np.float32)
    logits = np.zeros((steps, vocab), np.float32)
    logits[0:1], tokens[0, 0] = head(x[-1:])
    for t in range(1, steps):
        h = embed[token_of(tokens[0, t - 1], vocab)][None]
        for l in range(layers):
            h = llama_step(h, layer_weights(l), *caches[l], cos, sin, len(prompt) + t - 1, params, grid)
        logits[t:t + 1], tokens[0, t] = head(h)
    return {"tokens": tokens, "logits": logits}


def _grouped(parts: np.ndarray, op: str = "add") -> np.ndarray:
    """parts[0] op parts[1] op ... along axis 0 in reduce_*(..., order = grouped)'s order."""
    return chain_reduce(list(parts), op, "grouped")


def _col_sum(x: np.ndarray, w: np.ndarray, H: int) -> np.ndarray:
    """x [1, K] @ w [K, N] with K cut into the H tile rows' blocks, then reduce_col (grouped)."""
    return blocked_matmul(x, w, H, "grouped")


def _rotate_chunks(t: np.ndarray, cw: np.ndarray, sw: np.ndarray, W: int) -> np.ndarray:
    """RoPE on [n, W c]: each tile column's c dims are c / 2 firsts, then their partners."""
    n, dk = t.shape
    c = dk // W
    half = c // 2
    t = t.reshape(n, W, c)
    cw, sw = cw.reshape(1, W, half), sw.reshape(1, W, half)
    out = np.empty_like(t)
    out[..., :half] = t[..., :half] * cw - t[..., half:] * sw
    out[..., half:] = t[..., half:] * cw + t[..., :half] * sw
    return out.reshape(n, dk)


def llama_step_wide(inputs: dict, params: dict, grid: tuple) -> dict:
    """kernels/llama_step_wide.tg, tile by tile in the kernel's order."""
    W, H = grid
    f = {k: f32(v) for k, v in inputs.items()}
    pos, kv = int(params.get("pos", 0)), int(params.get("kv_heads", 8))
    eps, hidden, head_dim = F(params.get("eps", 1e-5)), F(int(params.get("hidden", 4096))), params.get("head_dim", 128)
    G, _, dkv = f["wq"].shape
    P = f["Kc"].shape[0]
    c, rows, tph = dkv // W, P // H, W // kv
    scale = F(1.0) / np.sqrt(F(head_dim))

    def norm(t, g):
        ms = row_blocks_reduce(t * t, H, "add", "grouped") / hidden
        return t * (F(1.0) / np.sqrt(ms + eps)) * g

    x = f["x"]
    a = norm(x, f["attn_norm"])
    q = np.concatenate([_col_sum(a, f["wq"][g], H) for g in range(G)])          # [G, Dkv]
    k, v = _col_sum(a, f["wk"], H), _col_sum(a, f["wv"], H)
    cw, sw = f["cos"][pos:pos + 1], f["sin"][pos:pos + 1]
    q, k = _rotate_chunks(q, cw, sw, W), _rotate_chunks(k, cw, sw, W)
    Kc, Vc = f["Kc"].copy(), f["Vc"].copy()
    Kc[pos], Vc[pos] = k[0], v[0]
    # per tile (column tx, row ty): scores over its c dims and its rows' positions
    Kt = Kc.reshape(H, rows, W, c)
    qt = q.reshape(G, W, c)
    part = np.zeros((W, H, G, rows), np.float32)
    for d in range(c):  # q @ transpose(Kc) per tile: from zero, d ascending
        part = part + qt[:, :, d].T[:, None, :, None] * Kt[:, :, :, d].transpose(2, 0, 1)[:, :, None, :]
    heads = [_grouped(part[j * tph:(j + 1) * tph]) for j in range(kv)]           # each [H, G, rows]
    sc = np.stack([heads[tx // tph] for tx in range(W)]) * scale                 # [W, H, G, rows]
    late = (np.arange(H)[:, None] * rows + np.arange(rows)[None, :]) > pos      # [H, rows]
    sc = np.where(late[None, :, None, :], MASK, sc)
    m = _grouped(np.stack([rowreduce_ordered(sc[:, ty], "max") for ty in range(H)]), "max")   # [W, G, 1]
    p = exp(sc - m[:, None])
    l = _grouped(np.stack([rowreduce_ordered(p[:, ty], "add") for ty in range(H)]))
    Vt = Vc.reshape(H, rows, W, c).transpose(2, 0, 1, 3)                        # [W, H, rows, c]
    acc = np.zeros((W, H, G, c), np.float32)
    for r in range(rows):  # sc @ Vc: positions ascending from zero, per tile
        acc = acc + p[:, :, :, r:r + 1] * Vt[:, :, None, r, :]
    acc = _grouped(acc.transpose(1, 0, 2, 3)) / l                                # [W, G, c]
    o = acc.transpose(1, 0, 2).reshape(G, W * c)                                 # [G, Dkv]
    # back += o[g] @ wo[g], per tile column block of the Dkv rows, g ascending; then the row's chain
    blocks = []
    for tx in range(W):
        back = np.zeros((1, f["wo"].shape[2]), np.float32)
        for g in range(G):
            back = matmac_ordered(back, o[g:g + 1, tx * c:(tx + 1) * c], f["wo"][g][tx * c:(tx + 1) * c])
        blocks.append(back)
    h = x + chain_reduce(blocks, order="grouped")
    a = norm(h, f["mlp_norm"])
    gate = silu(_col_sum(a, f["w_gate"], H)) * _col_sum(a, f["w_up"], H)
    return {"y": h + blocked_matmul(gate, f["w_down"], W, "grouped")}
