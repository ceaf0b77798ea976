"""Ordered references for the Llama building blocks: kernels/rmsnorm.tg,
kernels/swiglu.tg and kernels/rope.tg, in the kernels' operation order with
tilegrid's f32 exp."""
import numpy as np

from tilegrid.emulator.transcendentals import exp

from .ordered import f32, matmul_ordered, row_blocks_reduce

F = np.float32


def rmsnorm(inputs: dict, params: dict, grid: tuple) -> dict:
    X, g = f32(inputs["X"]), f32(inputs["g"])
    eps = F(params.get("eps", 1e-5))
    ms = row_blocks_reduce(X * X, grid[0], "add") / F(X.shape[1])
    r = F(1.0) / np.sqrt(ms + eps)
    return {"Y": X * r * g}


def silu(z: np.ndarray) -> np.ndarray:
    """z / (1 + exp(-z)), as the kernels compute it."""
    return z / (F(1.0) + exp(z * F(-1.0)))


def swiglu(inputs: dict, params: dict, grid: tuple) -> dict:
    X, wg, wu, wd = (f32(inputs[n]) for n in ("X", "w_gate", "w_up", "w_down"))
    gate = silu(matmul_ordered(X, wg))
    return {"Y": matmul_ordered(gate * matmul_ordered(X, wu), wd)}


def rope(inputs: dict, params: dict, grid: tuple) -> dict:
    X, cos, sin = f32(inputs["X"]), f32(inputs["cos"]), f32(inputs["sin"])
    pos, (R, D) = int(params.get("pos", 0)), X.shape
    h = D // 2
    c, s = cos[pos:pos + R], sin[pos:pos + R]
    Y = np.empty_like(X)
    Y[:, :h] = X[:, :h] * c[:, :h] - X[:, h:] * s[:, :h]
    Y[:, h:] = X[:, h:] * c[:, h:] + X[:, :h] * s[:, h:]
    return {"Y": Y}


def rope_tables(positions: int, head_dim: int, theta: float = 10000.0) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin [positions, head_dim] as Hugging Face's Llama builds them, in f32:
    inv_freq = 1 / theta^(2i / head_dim), each frequency repeated for both halves."""
    inv_freq = F(1.0) / (F(theta) ** (np.arange(0, head_dim, 2, dtype=np.float32) / F(head_dim)))
    freqs = np.arange(positions, dtype=np.float32)[:, None] * inv_freq[None, :]
    emb = np.concatenate([freqs, freqs], axis=1)
    return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)


def llama_layer(inputs: dict, params: dict, grid: tuple) -> dict:
    """kernels/llama_layer.tg: the pieces' references in the layer's order (a
    redistribution moves data and never changes a value)."""
    from . import attention_ref  # noqa: PLC0415  (attention_ref imports nothing of ours)
    x = f32(inputs["x"])
    heads, kv_heads = int(params.get("heads", 4)), int(params.get("kv_heads", 2))
    eps = params.get("eps", 1e-5)
    dh = inputs["cos"].shape[1]  # the tables: positions 0 .. S - 1, rows aligned with x
    group = heads // kv_heads

    def norm(t, g):
        return rmsnorm({"X": t, "g": inputs[g]}, {"eps": eps}, grid)["Y"]

    def rotate(t):
        return rope({"X": t, "cos": inputs["cos"], "sin": inputs["sin"]}, {"pos": 0}, grid)["Y"]

    a = norm(x, "attn_norm")
    q, k, v = (matmul_ordered(a, f32(inputs[w])) for w in ("wq", "wk", "wv"))
    q = np.concatenate([rotate(q[:, i * dh:(i + 1) * dh]) for i in range(heads)], axis=1)
    k = np.concatenate([rotate(k[:, j * dh:(j + 1) * dh]) for j in range(kv_heads)], axis=1)
    o = np.concatenate([attention_ref.reference({"Q": q[:, i * dh:(i + 1) * dh],
                                                 "K": k[:, (i // group) * dh:(i // group + 1) * dh],
                                                 "V": v[:, (i // group) * dh:(i // group + 1) * dh]},
                                                {"causal": 1}, grid)["O"] for i in range(heads)], axis=1)
    h = x + matmul_ordered(o, f32(inputs["wo"]))
    m = swiglu({"X": norm(h, "mlp_norm"), **{n: inputs[n] for n in ("w_gate", "w_up", "w_down")}}, {}, grid)["Y"]
    return {"y": h + m}


LAYER_WEIGHTS = ("attn_norm", "wq", "wk", "wv", "wo", "mlp_norm", "w_gate", "w_up", "w_down")


def llama_model(inputs: dict, params: dict, grid: tuple) -> dict:
    """kernels/llama_model.tg: llama_layer's reference for each layer's slice, then rmsnorm."""
    h = f32(inputs["x"])
    for layer in range(inputs["wq"].shape[0]):
        weights = {n: inputs[n][layer] for n in LAYER_WEIGHTS}
        h = llama_layer({**weights, "x": h, "cos": inputs["cos"], "sin": inputs["sin"]}, params, grid)["y"]
    return {"y": rmsnorm({"X": h, "g": inputs["final_norm"]}, {"eps": params.get("eps", 1e-5)}, grid)["Y"]}


def argmax(inputs: dict, params: dict, grid: tuple) -> dict:
    """kernels/argmax.tg: the lowest index of the largest value (numpy's argmax), as f32.
    (The kernel reads its indices from the idx table: they are what it returns.)"""
    x, idx = f32(inputs["x"])[0], f32(inputs["idx"])[0]
    return {"best": np.array([[idx[int(np.argmax(x))]]], np.float32)}
