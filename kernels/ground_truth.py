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


def matmul_cannon(inputs: dict, params: dict) -> tuple[dict, dict]:
    return matmul(inputs, params)


def matmul_systolic(inputs: dict, params: dict) -> tuple[dict, dict]:
    """C = A @ B in float64; each element is one length-K sum of rounded products,
    so the bound is matmul's gamma(K + 1) (|A| @ |B|)."""
    return matmul(inputs, params)


def matmul_systolic_resident(inputs: dict, params: dict) -> tuple[dict, dict]:
    """matmul_systolic's, on A and B taken back out of their resident arrangement;
    params carry the grid's W and H (the compiled program's bindings)."""
    from .matmul_systolic_ref import from_resident

    A, B = from_resident(inputs["Ar"], inputs["Bc"], int(params["M"]), int(params["N"]),
                         (int(params["W"]), int(params["H"])))
    return matmul({"A": A, "B": B}, params)


def softmax(inputs: dict, params: dict) -> tuple[dict, dict]:
    """Relative bound per element: u (2 max|x - m| + C + 10). The shift x - m and
    the exp each add about |x - m| u and 2 u (exp is within 1.03 ulp), the row
    sum (C + 1) u, the division u."""
    X = np.asarray(inputs["X"], np.float64)
    z = X - X.max(axis=1, keepdims=True)
    e = np.exp(z)
    Y = e / e.sum(axis=1, keepdims=True)
    rel = U * (2 * np.abs(z).max(axis=1, keepdims=True) + X.shape[1] + 10)
    return {"Y": Y}, {"Y": rel * Y + np.finfo(np.float32).tiny}


def _layernorm64(X, g, b, eps):
    """Layer norm over rows with the biased variance; also returns 1 / sqrt(var + eps)."""
    mu = X.mean(axis=1, keepdims=True)
    r = 1 / np.sqrt(((X - mu) ** 2).mean(axis=1, keepdims=True) + eps)
    return (X - mu) * r * g + b, r


def layernorm(inputs: dict, params: dict) -> tuple[dict, dict]:
    """Bound: u (2C + 20) (max_row|x| r |gamma| + |beta|), r = 1/sqrt(var + eps):
    the mean and variance sums carry up to C u of the row's magnitude into d."""
    X = np.asarray(inputs["X"], np.float64)
    g, b = np.asarray(inputs["gamma"], np.float64), np.asarray(inputs["beta"], np.float64)
    eps = float(np.float32(params.get("eps", 1e-5)))
    Y, r = _layernorm64(X, g, b, eps)
    scale = np.abs(X).max(axis=1, keepdims=True) * r * np.abs(g) + np.abs(b)
    return {"Y": Y}, {"Y": U * (2 * X.shape[1] + 20) * scale + np.finfo(np.float32).tiny}


def attention(inputs: dict, params: dict) -> tuple[dict, dict]:
    """Bound: (2 ds + (2S + 20) u) (P @ |V|), where ds bounds the score error of a
    row (gamma(D+1) (|Q| @ |K|^T) / sqrt(D) + u |s|): a score error ds changes the
    softmax weights by a factor within exp(+-2 ds); the weighted sum adds gamma(S)."""
    Q, K, V = (np.asarray(inputs[n], np.float64) for n in ("Q", "K", "V"))
    S, D = Q.shape
    s = Q @ K.T / np.sqrt(D)
    ds = gamma(D + 1) * (np.abs(Q) @ np.abs(K).T) / np.sqrt(D) + U * np.abs(s)
    if int(params.get("causal", 0)):
        later = np.arange(S)[None, :] > np.arange(S)[:, None]
        s = np.where(later, -np.inf, s)
        ds = np.where(later, 0.0, ds)
    P = np.exp(s - s.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    row_ds = ds.max(axis=1, keepdims=True)
    bound = (2 * row_ds + (2 * S + 20) * U) * (P @ np.abs(V)) + np.finfo(np.float32).tiny
    return {"O": P @ V}, {"O": bound}


def _gelu64(h):
    return 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3)))


def mlp(inputs: dict, params: dict) -> tuple[dict, dict]:
    """Bound: the second product's gamma(Dff + 1) (|G| @ |w2|), plus the hidden
    error propagated through w2: the first product's gamma(Dm + 1) (|X| @ |w1|)
    times the GELU's slope (at most 1.13), plus 10 u |G| for the GELU's own
    roundings and tanh; plus u for each bias add."""
    X, w1, b1, w2, b2 = (np.asarray(inputs[n], np.float64) for n in ("X", "w1", "b1", "w2", "b2"))
    H = X @ w1 + b1
    G = _gelu64(H)
    Y = G @ w2 + b2
    dh = 1.13 * (gamma(X.shape[1] + 1) * (np.abs(X) @ np.abs(w1)) + U * np.abs(H)) + 10 * U * np.abs(G)
    bound = gamma(w2.shape[0] + 1) * (np.abs(G) @ np.abs(w2)) + dh @ np.abs(w2) + U * (np.abs(Y) + np.abs(b2))
    return {"Y": Y}, {"Y": bound + np.finfo(np.float32).tiny}


def transformer_block(inputs: dict, params: dict) -> tuple[dict, dict]:
    """A float64 forward pass of the block. The tolerance is stated, not derived:
    |y - y64| <= 1e-4 (|y64| + rms(y64)); f32 rounding through ~a dozen stages with
    sums of up to Dff terms lands around 1e-6 relative."""
    y = block_forward64(inputs, params)
    rms = np.sqrt(np.mean(y ** 2))
    return {"y": y}, {"y": 1e-4 * (np.abs(y) + rms)}


def block_forward64(inputs: dict, params: dict) -> np.ndarray:
    """The pre-LN block in float64 with BLAS products."""
    f = {k: np.asarray(v, np.float64) for k, v in inputs.items()}
    heads, causal = int(params.get("heads", 4)), int(params.get("causal", 0))
    x = f["x"]
    S, Dm = x.shape
    dh = Dm // heads

    def ln(t, g, b):
        return _layernorm64(t, g, b, float(np.float32(1e-5)))[0]

    a = ln(x, f["ln1_g"], f["ln1_b"])
    q, k, v = a @ f["wq"], a @ f["wk"], a @ f["wv"]
    o = np.zeros_like(x)
    for i in range(heads):
        c = slice(i * dh, (i + 1) * dh)
        s = q[:, c] @ k[:, c].T / np.sqrt(dh)
        if causal:
            s = np.where(np.arange(S)[None, :] > np.arange(S)[:, None], -np.inf, s)
        p = np.exp(s - s.max(axis=1, keepdims=True))
        o[:, c] = (p / p.sum(axis=1, keepdims=True)) @ v[:, c]
    h = x + o @ f["wo"]
    return h + _gelu64(ln(h, f["ln2_g"], f["ln2_b"]) @ f["w1"] + f["b1"]) @ f["w2"] + f["b2"]


def block_pipelined(inputs: dict, params: dict) -> tuple[dict, dict]:
    """The block in float64 for each sequence; the block's bound."""
    y = np.stack([block_forward64({**inputs, "x": x}, params) for x in inputs["x"]])
    rms = np.sqrt(np.mean(y ** 2))
    return {"y": y}, {"y": 1e-4 * (np.abs(y) + rms)}


def two_blocks_pipelined(inputs: dict, params: dict) -> tuple[dict, dict]:
    """Two blocks in float64, the second on the first's float64 output; twice the
    block's bound, for twice the stages of rounding."""
    def weights(suffix):
        return {k[:-2]: v for k, v in inputs.items() if k.endswith(suffix)}
    y = np.stack([block_forward64({**weights("_b"), "x": block_forward64({**weights("_a"), "x": x}, params)}, params)
                  for x in inputs["x"]])
    rms = np.sqrt(np.mean(y ** 2))
    return {"y": y}, {"y": 2e-4 * (np.abs(y) + rms)}


def rmsnorm(inputs: dict, params: dict) -> tuple[dict, dict]:
    """Bound: u (C + 10) |y|: the sum of squares carries up to C u into the mean,
    half of it into the root, and the divide and two products a few u more."""
    X, g = np.asarray(inputs["X"], np.float64), np.asarray(inputs["g"], np.float64)
    eps = float(np.float32(params.get("eps", 1e-5)))
    Y = X / np.sqrt(np.mean(X * X, axis=1, keepdims=True) + eps) * g
    return {"Y": Y}, {"Y": U * (X.shape[1] + 10) * np.abs(Y) + np.finfo(np.float32).tiny}


def swiglu(inputs: dict, params: dict) -> tuple[dict, dict]:
    """Bound: the last product's gamma(Dff + 1) (|G| @ |w_down|), plus the error of
    G = silu(Hg) Hu carried through w_down: silu's slope (at most 1.1) times the gate
    product's gamma(Dm + 1) (|X| @ |w_gate|), times |Hu|; |silu(Hg)| times the up
    product's; and 10 u |G| for the elementwise roundings and exp."""
    X, wg, wu, wd = (np.asarray(inputs[n], np.float64) for n in ("X", "w_gate", "w_up", "w_down"))
    hg, hu = X @ wg, X @ wu
    s = hg / (1 + np.exp(-hg))
    G = s * hu
    Y = G @ wd
    k = gamma(X.shape[1] + 1)
    dG = 1.1 * k * (np.abs(X) @ np.abs(wg)) * np.abs(hu) + np.abs(s) * k * (np.abs(X) @ np.abs(wu)) \
        + 10 * U * np.abs(G)
    bound = gamma(wd.shape[0] + 1) * (np.abs(G) @ np.abs(wd)) + dG @ np.abs(wd)
    return {"Y": Y}, {"Y": bound + np.finfo(np.float32).tiny}


def rope(inputs: dict, params: dict) -> tuple[dict, dict]:
    """Bound: (2 u + u^2) (|a c| + |b s|) for each a c -/+ b s (two products and a sum), as 2.01 u."""
    X, cos, sin = (np.asarray(inputs[n], np.float64) for n in ("X", "cos", "sin"))
    pos, (R, D) = int(params.get("pos", 0)), X.shape
    h = D // 2
    c, s = cos[pos:pos + R], sin[pos:pos + R]
    rotated = np.concatenate([-X[:, h:], X[:, :h]], axis=1)
    Y = X * c + rotated * s
    return {"Y": Y}, {"Y": 2.01 * U * (np.abs(X * c) + np.abs(rotated * s)) + np.finfo(np.float32).tiny}


def _rms_norm64(t, g, eps):
    return t / np.sqrt(np.mean(t * t, axis=1, keepdims=True) + eps) * g


def _rotate_half64(t, cos, sin):
    """Rotate-half RoPE on [rows, dh] with the rows' tables."""
    dh = t.shape[1]
    return t * cos + np.concatenate([-t[:, dh // 2:], t[:, :dh // 2]], axis=1) * sin


def llama_forward64(inputs: dict, params: dict) -> np.ndarray:
    """One Llama decoder layer over a prompt in float64 (Hugging Face's order of
    operations, BLAS products), weights [in, out]."""
    f = {k: np.asarray(v, np.float64) for k, v in inputs.items()}
    heads, kv_heads = int(params.get("heads", 4)), int(params.get("kv_heads", 2))
    eps = float(np.float32(params.get("eps", 1e-5)))
    x = f["x"]
    S = x.shape[0]
    dh = f["cos"].shape[1]
    group = heads // kv_heads
    cos, sin = f["cos"][:S], f["sin"][:S]

    def norm(t, g):
        return _rms_norm64(t, g, eps)

    def rotate(t):
        return _rotate_half64(t, cos, sin)

    a = norm(x, f["attn_norm"])
    q, k, v = a @ f["wq"], a @ f["wk"], a @ f["wv"]
    o = np.zeros_like(q)
    for i in range(heads):
        j = i // group
        qi, kj, vj = rotate(q[:, i * dh:(i + 1) * dh]), rotate(k[:, j * dh:(j + 1) * dh]), v[:, j * dh:(j + 1) * dh]
        s = qi @ kj.T / np.sqrt(dh)
        s = np.where(np.arange(S)[None, :] > np.arange(S)[:, None], -np.inf, s)
        p = np.exp(s - s.max(axis=1, keepdims=True))
        o[:, i * dh:(i + 1) * dh] = (p / p.sum(axis=1, keepdims=True)) @ vj
    h = x + o @ f["wo"]
    a = norm(h, f["mlp_norm"])
    g = a @ f["w_gate"]
    return h + (g / (1 + np.exp(-g)) * (a @ f["w_up"])) @ f["w_down"]


def llama_layer(inputs: dict, params: dict) -> tuple[dict, dict]:
    """The tolerance is stated, as for the transformer block: |y - y64| <= 1e-4 (|y64| + rms(y64))."""
    y = llama_forward64(inputs, params)
    rms = np.sqrt(np.mean(y ** 2))
    return {"y": y}, {"y": 1e-4 * (np.abs(y) + rms)}


def llama_model(inputs: dict, params: dict) -> tuple[dict, dict]:
    """L layers and the final norm in float64; the layer's stated bound, L times."""
    h = np.asarray(inputs["x"], np.float64)
    layers = inputs["wq"].shape[0]
    for layer in range(layers):
        weights = {n: inputs[n][layer] for n in ("attn_norm", "wq", "wk", "wv", "wo", "mlp_norm", "w_gate",
                                                 "w_up", "w_down")}
        h = llama_forward64({**weights, "x": h, "cos": inputs["cos"], "sin": inputs["sin"]}, params)
    eps = float(np.float32(params.get("eps", 1e-5)))
    y = h / np.sqrt(np.mean(h * h, axis=1, keepdims=True) + eps) * np.asarray(inputs["final_norm"], np.float64)
    rms = np.sqrt(np.mean(y ** 2))
    return {"y": y}, {"y": layers * 1e-4 * (np.abs(y) + rms)}


def argmax(inputs: dict, params: dict) -> tuple[dict, dict]:
    """The index of the largest value, in float64: exact, so the bound is 0."""
    x = np.asarray(inputs["x"], np.float64)[0]
    best = np.asarray(inputs["idx"], np.float64)[0][int(np.argmax(x))]
    return {"best": np.array([[best]])}, {"best": np.zeros((1, 1))}


def _llama_generate64(inputs: dict, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """Greedy generation in float64 as Hugging Face's LlamaForCausalLM computes it
    (K/V heads repeated for GQA, BLAS products, no cache: every step attends over
    the whole sequence so far), weights [in, out]. (tokens [1, T], logits [T, V])."""
    f = {k: np.asarray(v, np.float64) for k, v in inputs.items()}
    heads, kv_heads = int(params.get("heads", 8)), int(params.get("kv_heads", 4))
    eps = float(np.float32(params.get("eps", 1e-5)))
    steps, vocab, layers = int(params["T"]), f["embed"].shape[0], f["wq"].shape[0]
    dh = f["cos"].shape[1]
    group = heads // kv_heads

    def norm(t, g):
        return _rms_norm64(t, g, eps)

    def rotate(t, n):
        return _rotate_half64(t, f["cos"][:n], f["sin"][:n])

    def forward(ids):
        x = f["embed"][ids]
        n = len(ids)
        for l in range(layers):
            a = norm(x, f["attn_norm"][l])
            q, k, v = a @ f["wq"][l], a @ f["wk"][l], a @ f["wv"][l]
            o = np.zeros_like(q)
            for i in range(heads):
                j = i // group
                qi, kj = rotate(q[:, i * dh:(i + 1) * dh], n), rotate(k[:, j * dh:(j + 1) * dh], n)
                s = qi @ kj.T / np.sqrt(dh)
                s = np.where(np.arange(n)[None, :] > np.arange(n)[:, None], -np.inf, s)
                p = np.exp(s - s.max(axis=1, keepdims=True))
                o[:, i * dh:(i + 1) * dh] = (p / p.sum(axis=1, keepdims=True)) @ v[:, j * dh:(j + 1) * dh]
            h = x + o @ f["wo"][l]
            a = norm(h, f["mlp_norm"][l])
            g = a @ f["w_gate"][l]
            x = h + (g / (1 + np.exp(-g)) * (a @ f["w_up"][l])) @ f["w_down"][l]
        return norm(x[-1:], f["final_norm"]) @ f["lm_head"]

    ids = [int(min(max(np.trunc(t), 0), vocab - 1)) for t in f["prompt"][0]]
    tokens, logits = np.zeros((1, steps)), np.zeros((steps, vocab))
    for t in range(steps):
        logits[t] = forward(ids)[0]
        tokens[0, t] = f["idx"][0][int(np.argmax(logits[t]))]
        ids.append(int(tokens[0, t]))
    return tokens, logits


def llama_generate(inputs: dict, params: dict) -> tuple[dict, dict]:
    """The tokens exactly (a token the float64 model picks differently is a
    failure), the logits within 1e-4 (L + 1) (|l64| + rms(l64))."""
    tokens, logits = _llama_generate64(inputs, params)
    rms = np.sqrt(np.mean(logits ** 2))
    layers = np.asarray(inputs["wq"]).shape[0]
    return {"tokens": tokens, "logits": logits}, {"tokens": np.zeros_like(tokens),
                                                   "logits": 1e-4 * (layers + 1) * (np.abs(logits) + rms)}


def llama_step(inputs: dict, params: dict) -> tuple[dict, dict]:
    """One layer over R rows at pos .. in float64: keys and values of positions
    before pos come from the cache as given; the layer's stated bound."""
    f = {k: np.asarray(v, np.float64) for k, v in inputs.items()}
    heads, kv_heads = int(params.get("heads", 8)), int(params.get("kv_heads", 4))
    eps = float(np.float32(params.get("eps", 1e-5)))
    pos, x = int(params.get("pos", 0)), f["x"]
    R, dh, group = x.shape[0], f["cos"].shape[1], heads // kv_heads
    at = np.arange(pos, pos + R)
    cos, sin = f["cos"][at], f["sin"][at]

    def norm(t, g):
        return _rms_norm64(t, g, eps)

    def rotate(t):
        return _rotate_half64(t, cos, sin)

    a = norm(x, f["attn_norm"])
    q, k, v = a @ f["wq"], a @ f["wk"], a @ f["wv"]
    K, V = f["Kc"].copy(), f["Vc"].copy()
    n = pos + R
    o = np.zeros_like(q)
    for i in range(heads):
        j = i // group
        K[pos:n, j * dh:(j + 1) * dh] = rotate(k[:, j * dh:(j + 1) * dh])
        V[pos:n, j * dh:(j + 1) * dh] = v[:, j * dh:(j + 1) * dh]
        s = rotate(q[:, i * dh:(i + 1) * dh]) @ K[:n, j * dh:(j + 1) * dh].T / np.sqrt(dh)
        s = np.where(np.arange(n)[None, :] > at[:, None], -np.inf, s)
        p = np.exp(s - s.max(axis=1, keepdims=True))
        o[:, i * dh:(i + 1) * dh] = (p / p.sum(axis=1, keepdims=True)) @ V[:n, j * dh:(j + 1) * dh]
    h = x + o @ f["wo"]
    a = norm(h, f["mlp_norm"])
    g = a @ f["w_gate"]
    y = h + (g / (1 + np.exp(-g)) * (a @ f["w_up"])) @ f["w_down"]
    rms = np.sqrt(np.mean(y ** 2))
    return {"y": y}, {"y": 1e-4 * (np.abs(y) + rms)}


def llama_step_wide(inputs: dict, params: dict) -> tuple[dict, dict]:
    """kernels/llama_step_wide.tg in float64: the same padded, reordered layout, each
    query head (j, g) against key-value head j's Dkv / kv_heads dimensions."""
    f = {k: np.asarray(v, np.float64) for k, v in inputs.items()}
    W, kv, pos = int(params["W"]), int(params.get("kv_heads", 8)), int(params.get("pos", 0))
    hidden, head_dim = int(params.get("hidden", 4096)), int(params.get("head_dim", 128))
    eps = float(np.float32(params.get("eps", 1e-5)))
    G, _, dkv = f["wq"].shape
    c, dhp = dkv // W, dkv // kv

    def norm(t, g):
        return t / np.sqrt(np.sum(t * t, axis=1, keepdims=True) / hidden + eps) * g

    def rope(t):  # each tile column's c dims: c / 2 firsts, then their partners
        t = t.reshape(t.shape[0], W, c)
        cw = f["cos"][pos].reshape(1, W, c // 2)
        sw = f["sin"][pos].reshape(1, W, c // 2)
        a, b = t[..., :c // 2], t[..., c // 2:]
        return np.concatenate([a * cw - b * sw, b * cw + a * sw], axis=-1).reshape(t.shape[0], W * c)

    x = f["x"]
    a = norm(x, f["attn_norm"])
    q = rope(np.concatenate([a @ f["wq"][g] for g in range(G)]))
    K, V = f["Kc"].copy(), f["Vc"].copy()
    K[pos], V[pos] = rope(a @ f["wk"])[0], (a @ f["wv"])[0]
    n = pos + 1
    o = np.zeros_like(q)
    for j in range(kv):
        cols = slice(j * dhp, (j + 1) * dhp)
        s = q[:, cols] @ K[:n, cols].T / np.sqrt(head_dim)
        p = np.exp(s - s.max(axis=1, keepdims=True))
        o[:, cols] = (p / p.sum(axis=1, keepdims=True)) @ V[:n, cols]
    h = x + sum(o[g:g + 1] @ f["wo"][g] for g in range(G))
    a = norm(h, f["mlp_norm"])
    gate = a @ f["w_gate"]
    y = h + (gate / (1 + np.exp(-gate)) * (a @ f["w_up"])) @ f["w_down"]
    rms = np.sqrt(np.mean(y ** 2))
    return {"y": y}, {"y": 1e-4 * (np.abs(y) + rms)}
