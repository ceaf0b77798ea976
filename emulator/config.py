"""The machine model: every figure of the emulated fabric in one object."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np


# Allowed ranges of the machine figures. They bound every state array the
# emulator allocates from them, so a saved program or a CLI flag cannot ask
# for terabytes. Grids go to 4096 per side (the project aims past 1024x1024).
MAX_GRID_SIDE = 4096
DEFAULT_MAX = 1024                     # latencies, bandwidths, lane counts, cycle costs, byte sizes
LIMITS = {
    "width": (1, MAX_GRID_SIDE),
    "height": (1, MAX_GRID_SIDE),
    "sram_bytes": (1, 16 << 20),       # 16 MiB per tile
    "word_bytes": (4, 4),              # the core's SRAM and wavelets are 32-bit arrays
    "colors": (1, 64),
    "queue_depth": (1, 1024),
    "registers": (2, 256),
    "link_bandwidth": (1, 1),          # the cycle model moves one wavelet per link per cycle
    "clock_mhz": (1, 10_000),
}
LIMIT_REASONS = {
    "word_bytes": " (a word is one f32)",
    "registers": " (r0 and r1 hold the tile's coordinates)",
    "link_bandwidth": " (one 32-bit wavelet per link per cycle, as on the WSE)",
}


@dataclass(frozen=True)
class MachineConfig:
    """Parameters of a W x H tile fabric (defaults follow DESIGN.md).

    Tiles are addressed (x, y): x grows east, y grows south. Tile index is
    y * width + x everywhere in the emulator.
    """

    width: int = 4
    height: int = 4
    sram_bytes: int = 48 * 1024       # per tile; code and data both live here
    word_bytes: int = 4               # one f32 / i32 per word and per wavelet
    colors: int = 24                  # virtual channels per router
    queue_depth: int = 8              # wavelets buffered per (tile, color) at the ramp
    registers: int = 16               # integer registers per tile core
    instruction_bytes: int = 16       # SRAM taken by one instruction
    descriptor_bytes: int = 24        # SRAM taken by one descriptor
    # Timing model: docs/timing.md gives each figure's source; emulator/timing.py the formulas.
    link_latency: int = 1             # cycles for a wavelet to cross one router-to-router link
    link_bandwidth: int = 1           # wavelets per cycle per link direction (fixed at 1)
    ramp_latency: int = 1             # cycles between a core and its own router, each way
    router_buffer: int = 2            # wavelets a router holds per color (link_latency + 1 keeps full rate)
    issue_cycles: int = 1             # fixed cost of any instruction
    vector_lanes: int = 1             # f32 elements per cycle for vector ops
    fmac_lanes: int = 1               # f32 multiply-adds per cycle
    special_cycles: int = 4           # cycles per element of div, sqrt, exp, tanh
    clock_mhz: int = 850              # converts cycles to seconds (the vendor's SDK examples use 0.85 GHz)

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            # bool is an int subclass, but True is no machine figure
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"machine parameter {f.name} must be a positive integer, got {shown}")
            low, high = LIMITS.get(f.name, (1, DEFAULT_MAX))
            if not low <= value <= high:
                allowed = f"be {low}" if low == high else f"be an integer in {low}..{high}"
                raise ValueError(f"machine parameter {f.name} must {allowed}, got {shown}"
                                 + LIMIT_REASONS.get(f.name, ""))
            object.__setattr__(self, f.name, int(value))  # plain ints: JSON-safe, no numpy overflow rules
        if self.sram_bytes % self.word_bytes:
            raise ValueError("sram_bytes must be a multiple of word_bytes")

    @property
    def tiles(self) -> int:
        return self.width * self.height

    @property
    def sram_words(self) -> int:
        return self.sram_bytes // self.word_bytes

    def timing_vector(self, detail: bool = True) -> np.ndarray:
        """The timing parameters, packed for the numba core (T_* indices in timing.py)."""
        return np.array([self.issue_cycles, self.vector_lanes, self.fmac_lanes, self.link_latency,
                         self.ramp_latency, self.special_cycles, self.router_buffer, self.queue_depth,
                         int(detail)], dtype=np.int64)

    def seconds(self, cycles: int) -> float:
        return cycles / (self.clock_mhz * 1e6)

    def to_dict(self) -> dict:
        return asdict(self)


def parse_grid(text: str) -> tuple[int, int]:
    """'16x8' -> (16, 8). Raises ValueError with a user-facing message."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"grid must look like WxH (for example 4x4), got {text!r}")
    w, h = int(parts[0]), int(parts[1])
    if w < 1 or h < 1:
        raise ValueError(f"grid sizes must be at least 1, got {text!r}")
    return w, h
