"""Ordered reference for kernels/transformer_block.tg: the block's own kernels'
references, called in the block's order (redistributions move data, never
change a value)."""
import numpy as np

from . import attention_ref, layernorm_ref, mlp_ref
from .ordered import f32, matmul_ordered


def reference(inputs: dict, params: dict, grid: tuple) -> dict:
    x = f32(inputs["x"])
    heads = int(params.get("heads", 4))
    causal = int(params.get("causal", 0))
    S, Dm = x.shape
    dh = Dm // heads

    def ln(t, g, b):
        return layernorm_ref.reference({"X": t, "gamma": inputs[g], "beta": inputs[b]}, {}, grid)["Y"]

    a = ln(x, "ln1_g", "ln1_b")
    q, k, v = (matmul_ordered(a, f32(inputs[w])) for w in ("wq", "wk", "wv"))
    o = np.zeros((S, Dm), np.float32)
    for i in range(heads):
        cols = slice(i * dh, (i + 1) * dh)
        o[:, cols] = attention_ref.reference({"Q": q[:, cols], "K": k[:, cols], "V": v[:, cols]},
                                             {"causal": causal}, grid)["O"]
    h = x + matmul_ordered(o, f32(inputs["wo"]))
    m = mlp_ref.reference({"X": ln(h, "ln2_g", "ln2_b"), **{n: inputs[n] for n in ("w1", "b1", "w2", "b2")}},
                          {}, grid)["Y"]
    return {"y": h + m}
