"""Ordered references for kernels/llama_step.tg and kernels/llama_generate.tg:
each operation in the kernels' order, each sum in the fabric's order (inside a
tile ascending, then across the tiles in ascending tx or ty)."""
import numpy as np

from tilegrid.emulator.transcendentals import exp

from .llama_layers_ref import silu
from .ordered import chain_reduce, f32, matmul_ordered, row_blocks_reduce, rowreduce_ordered

F = np.float32
MASK = F(-1e30)
STEP_WEIGHTS = ("attn_norm", "wq", "wk", "wv", "wo", "mlp_norm", "w_gate", "w_up", "w_down")


def blocked_matmul(x: np.ndarray, w: np.ndarray, parts: int) -> np.ndarray:
    """x @ w with the inner dimension cut into `parts` blocks: each block's
    product from zero (k ascending), then the blocks chained in order."""
    kb = x.shape[1] // parts
    return chain_reduce([matmul_ordered(x[:, b * kb:(b + 1) * kb], w[b * kb:(b + 1) * kb]) for b in range(parts)])


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
