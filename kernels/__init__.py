"""The bundled kernels: DSL sources, ordered references, float64 ground truths."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import (attention_ref, gemv_ref, ground_truth, layernorm_ref, matmul_cannon_ref, matmul_ref,
               softmax_ref)

KERNEL_DIR = Path(__file__).parent


@dataclass(frozen=True)
class KernelSpec:
    name: str
    reference: Callable       # (inputs, params, grid) -> {output: float32 array}, bit-exact
    ground_truth: Callable    # (inputs, params) -> ({output: float64}, {output: error bound})
    make_inputs: Callable     # (rng, sizes) -> {input: float32 array}
    demo_sizes: dict          # sizes for `tilegrid demo` and quick runs

    @property
    def path(self) -> Path:
        return KERNEL_DIR / f"{self.name}.tg"


def _randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


BUNDLED = {
    "matmul": KernelSpec("matmul", matmul_ref.reference, ground_truth.matmul,
                         lambda rng, s: {"A": _randn(rng, s["M"], s["K"]), "B": _randn(rng, s["K"], s["N"])},
                         {"M": 64, "K": 64, "N": 64}),
    "gemv": KernelSpec("gemv", gemv_ref.reference, ground_truth.gemv,
                       lambda rng, s: {"A": _randn(rng, s["M"], s["N"]), "x": _randn(rng, s["N"])},
                       {"M": 64, "N": 64}),
    "matmul_cannon": KernelSpec("matmul_cannon", matmul_cannon_ref.reference, ground_truth.matmul_cannon,
                                lambda rng, s: {"A": _randn(rng, s["M"], s["K"]),
                                                "B": _randn(rng, s["K"], s["N"])},
                                {"M": 64, "K": 64, "N": 64}),
    "softmax": KernelSpec("softmax", softmax_ref.reference, ground_truth.softmax,
                          lambda rng, s: {"X": _randn(rng, s["R"], s["C"]) * 4}, {"R": 64, "C": 64}),
    "layernorm": KernelSpec("layernorm", layernorm_ref.reference, ground_truth.layernorm,
                            lambda rng, s: {"X": _randn(rng, s["R"], s["C"]) + 1,
                                            "gamma": _randn(rng, s["C"]), "beta": _randn(rng, s["C"])},
                            {"R": 64, "C": 64}),
    "attention": KernelSpec("attention", attention_ref.reference, ground_truth.attention,
                            lambda rng, s: {n: _randn(rng, s["S"], s["D"]) for n in ("Q", "K", "V")},
                            {"S": 64, "D": 32}),
}


def source_path(name_or_path: str) -> Path:
    """A bundled kernel's name, or a path to a .tg file."""
    if name_or_path in BUNDLED:
        return BUNDLED[name_or_path].path
    return Path(name_or_path)


def spec_for(kernel_name: str) -> KernelSpec | None:
    """The reference for a kernel, matched by the kernel's name in its source:
    a user's edited copy of matmul.tg is still checked against matmul's reference."""
    return BUNDLED.get(kernel_name)
