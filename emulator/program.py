"""A loadable program: shared code per region, route tables, SRAM plan, host I/O map.

Code is stored once per code region, never per tile: a million-tile grid
running one SPMD kernel holds one copy of the instructions. Per-tile state is
only what the hardware would hold per tile (registers seeded with the tile's
coordinates, SRAM contents, queues).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from .config import MachineConfig
from .isa import (DESC_FIELDS, INSTR_FIELDS, MMAC, OPERANDS, PORT_NAMES, desc_extents, desc_size,
                  format_descriptor, format_instruction)


class ProgramError(Exception):
    """A program that cannot be loaded (malformed code, routes or plan)."""


@dataclass
class CodeRegion:
    """A rectangle of tiles [x0, x1) x [y0, y1) running code[start:end]."""
    name: str
    start: int
    end: int
    x0: int
    y0: int
    x1: int
    y1: int


@dataclass
class BufferPlacement:
    """One buffer in a tile's SRAM (the same on every tile of an SPMD region)."""
    name: str
    kind: str            # input | output | local | temp | const | code
    addr: int            # word address
    words: int
    shape: tuple
    live: tuple = (0, 0)  # first and last statement index that uses it


@dataclass
class TensorIO:
    """Where a host tensor lives on the fabric.

    Dimension i of the global tensor is split over grid axis axes[i]
    ('x', 'y', or '_' for not split); tiles along an axis no dimension uses
    hold replicas. The tile's block is stored row-major at `addr`.
    """
    name: str
    role: str            # input | output
    shape: tuple
    axes: tuple
    block: tuple
    addr: int


@dataclass
class Program:
    config: MachineConfig
    code: np.ndarray                     # int32 [n_instr, INSTR_FIELDS]
    descs: np.ndarray                    # int32 [n_desc, DESC_FIELDS]
    fimm: np.ndarray                     # float32 [n_fimm]
    regions: list[CodeRegion]
    routes: np.ndarray                   # uint8 [tiles, colors_used, 5]: out-port bits per in-port
    sram_words: int                      # words of SRAM the plan uses on every tile
    buffers: list[BufferPlacement] = field(default_factory=list)
    io: list[TensorIO] = field(default_factory=list)
    color_names: list[str] = field(default_factory=list)
    labels: dict = field(default_factory=dict)   # instruction index -> label, for printing
    meta: dict = field(default_factory=dict)

    def code_bytes(self) -> int:
        """SRAM taken on each tile by the code and descriptor tables."""
        cfg = self.config
        return (len(self.code) * cfg.instruction_bytes + len(self.descs) * cfg.descriptor_bytes
                + len(self.fimm) * cfg.word_bytes)

    def sram_bytes_used(self) -> int:
        return self.sram_words * self.config.word_bytes + self.code_bytes()

    # ------------------------------------------------------------------ checks
    def verify(self) -> None:
        """Structural checks, so the numba core can trust its inputs."""
        cfg = self.config
        if self.code.ndim != 2 or self.code.shape[1] != INSTR_FIELDS or self.code.dtype != np.int32:
            raise ProgramError("code must be an int32 array with 6 columns")
        if self.descs.ndim != 2 or self.descs.shape[1] != DESC_FIELDS or self.descs.dtype != np.int32:
            raise ProgramError("descriptors must be an int32 array with 10 columns")
        n_colors = self.routes.shape[1] if self.routes.ndim == 3 else -1
        if self.routes.shape != (cfg.tiles, max(n_colors, 0), 5) or self.routes.dtype != np.uint8:
            raise ProgramError(f"routes must be uint8 [tiles={cfg.tiles}, colors, 5], got {self.routes.shape}")
        if n_colors > cfg.colors:
            raise ProgramError(f"program uses {n_colors} colors but the machine has {cfg.colors}")
        if self.sram_bytes_used() > cfg.sram_bytes:
            raise ProgramError(f"program needs {self.sram_bytes_used()} bytes of SRAM per tile (data and "
                               f"code), the machine has {cfg.sram_bytes}")
        covered = np.zeros((cfg.height, cfg.width), dtype=np.int32)
        for r in self.regions:
            if not (0 <= r.x0 < r.x1 <= cfg.width and 0 <= r.y0 < r.y1 <= cfg.height):
                raise ProgramError(f"region {r.name} lies outside the {cfg.width}x{cfg.height} grid")
            if not (0 <= r.start < r.end <= len(self.code)):
                raise ProgramError(f"region {r.name} has an empty or out-of-range code span")
            covered[r.y0:r.y1, r.x0:r.x1] += 1
        if covered.max(initial=0) > 1:
            raise ProgramError("code regions overlap")
        for i, row in enumerate(self.code):
            kinds = OPERANDS.get(int(row[0]))
            if kinds is None:
                raise ProgramError(f"instruction {i}: unknown opcode {int(row[0])}")
            for kind, v in zip(kinds, row[1:]):
                bad = ((kind == "r" and not 0 <= v < cfg.registers)
                       or (kind == "t" and not 0 <= v < len(self.code))
                       or (kind == "d" and not 0 <= v < len(self.descs))
                       or (kind == "f" and not 0 <= v < len(self.fimm))
                       or (kind == "c" and not 0 <= v < max(n_colors, 0)))
                if bad:
                    raise ProgramError(f"instruction {i} ({format_instruction(row, self.descs, self.fimm)}): "
                                       f"operand {kind}={int(v)} out of range")
            self._verify_vector_shapes(i, row)
        for j, d in enumerate(self.descs):
            if d[1] >= cfg.registers or d[1] < -1:
                raise ProgramError(f"descriptor {j} uses register r{int(d[1])}")
            if min(desc_extents(d)) < 1:
                raise ProgramError(f"descriptor {j} {format_descriptor(d)} has an empty dimension")
            if d[1] < 0:  # static address: check it stays inside the plan
                lo, hi = descriptor_span(d)
                if lo < 0 or hi >= self.sram_words:
                    raise ProgramError(f"descriptor {j} {format_descriptor(d)} reaches words [{lo}, {hi}] "
                                       f"outside the {self.sram_words}-word SRAM plan")

    def _verify_vector_shapes(self, i: int, row) -> None:
        op, kinds = int(row[0]), OPERANDS[int(row[0])]
        ds = [self.descs[v] for k, v in zip(kinds, row[1:]) if k == "d"]
        if len(ds) < 2:
            return
        if op == MMAC:
            c, a, b = (desc_extents(d)[2:] for d in ds)
            if not (c[0] == a[0] and c[1] == b[1] and a[1] == b[0]):
                raise ProgramError(f"instruction {i}: mmac shapes c{c} a{a} b{b} do not agree")
        elif len({desc_extents(d) for d in ds}) != 1:
            raise ProgramError(f"instruction {i} ({format_instruction(row, self.descs, self.fimm)}): "
                               "operand descriptors have different extents")

    # ---------------------------------------------------------------- printing
    def format_asm(self) -> str:
        lines = [f"; tilegrid program {self.meta.get('kernel', '')} on "
                 f"{self.config.width}x{self.config.height} tiles"]
        for r in self.regions:
            lines.append(f"region {r.name}: tiles x[{r.x0},{r.x1}) y[{r.y0},{r.y1}), "
                         f"{r.end - r.start} instructions")
            for i in range(r.start, r.end):
                if i in self.labels:
                    lines.append(f"{self.labels[i]}:")
                lines.append(f"  {i:4d}  " + format_instruction(self.code[i], self.descs, self.fimm, self.labels))
        return "\n".join(lines)

    def format_plan(self) -> str:
        cfg = self.config
        lines = [f"SRAM plan per tile: {self.sram_bytes_used()} of {cfg.sram_bytes} bytes "
                 f"(data {self.sram_words * cfg.word_bytes}, code and descriptors {self.code_bytes()})",
                 "  buffers whose live ranges (program steps) do not overlap share addresses",
                 "    addr    size  live         kind   name"]
        for b in sorted(self.buffers, key=lambda b: (b.addr, b.live, b.name)):
            shape = "x".join(map(str, b.shape)) if b.shape else "-"
            live = f"{b.live[0]}-{b.live[1]}"
            lines.append(f"  {b.addr * cfg.word_bytes:6d}  {b.words * cfg.word_bytes:6d} B  {live:<11}  "
                         f"{b.kind:<6} {b.name} [{shape}]")
        return "\n".join(lines)

    def format_routes(self) -> str:
        cfg = self.config
        lines = [f"routes on {cfg.width}x{cfg.height} tiles, {self.routes.shape[1]} colors "
                 "(in-port -> out-ports)"]
        for c in range(self.routes.shape[1]):
            name = self.color_names[c] if c < len(self.color_names) else ""
            lines.append(f"color {c} {name}:")
            table = self.routes[:, c, :]
            # Group tiles with identical tables: a readable summary for any grid size.
            groups: dict[tuple, list[int]] = {}
            for t in range(cfg.tiles):
                groups.setdefault(tuple(int(v) for v in table[t]), []).append(t)
            for entry, tiles in groups.items():
                if not any(entry):
                    continue
                rules = []
                for port_in, bits in enumerate(entry):
                    if bits:
                        outs = "+".join(PORT_NAMES[p] for p in range(5) if bits >> p & 1)
                        rules.append(f"{PORT_NAMES[port_in]}->{outs}")
                where = _format_tiles(tiles, cfg.width)
                lines.append(f"  {where}: " + "  ".join(rules))
        return "\n".join(lines)

    # ----------------------------------------------------------------- save/load
    def save(self, path) -> None:
        header = {
            "format": "tilegrid-program-1",
            "config": self.config.to_dict(),
            "regions": [asdict(r) for r in self.regions],
            "sram_words": self.sram_words,
            "buffers": [asdict(b) for b in self.buffers],
            "io": [asdict(t) for t in self.io],
            "color_names": self.color_names,
            "labels": {str(k): v for k, v in self.labels.items()},
            "meta": self.meta,
        }
        with open(path, "wb") as f:
            np.savez_compressed(f, code=self.code, descs=self.descs, fimm=self.fimm, routes=self.routes,
                                header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))

    @staticmethod
    def load(path) -> "Program":
        try:
            with np.load(path) as z:
                header = json.loads(bytes(z["header"]).decode())
                if header.get("format") != "tilegrid-program-1":
                    raise ProgramError(f"{path}: not a tilegrid program")
                prog = Program(
                    config=MachineConfig(**header["config"]),
                    code=z["code"], descs=z["descs"], fimm=z["fimm"], routes=z["routes"],
                    regions=[CodeRegion(**r) for r in header["regions"]],
                    sram_words=header["sram_words"],
                    buffers=[BufferPlacement(**{**b, "shape": tuple(b["shape"]), "live": tuple(b["live"])})
                             for b in header["buffers"]],
                    io=[TensorIO(**{**t, "shape": tuple(t["shape"]), "axes": tuple(t["axes"]),
                                    "block": tuple(t["block"])}) for t in header["io"]],
                    color_names=header["color_names"],
                    labels={int(k): v for k, v in header["labels"].items()},
                    meta=header["meta"],
                )
        except ProgramError:
            raise
        except Exception as exc:  # zip, key or JSON trouble: one message for the user
            raise ProgramError(f"{path}: cannot read program file ({exc})") from None
        prog.verify()
        return prog


def descriptor_span(d) -> tuple[int, int]:
    """Lowest and highest word a static descriptor touches."""
    lo = hi = int(d[0])
    for i in range(4):
        extent, stride = int(d[2 + 2 * i]), int(d[3 + 2 * i])
        reach = (extent - 1) * stride
        if reach < 0:
            lo += reach
        else:
            hi += reach
    return lo, hi


def _format_tiles(tiles: list[int], width: int) -> str:
    if len(tiles) == 1:
        t = tiles[0]
        return f"({t % width},{t // width})"
    xs = sorted({t % width for t in tiles})
    ys = sorted({t // width for t in tiles})
    if len(xs) * len(ys) == len(tiles):
        fx = f"{xs[0]}" if len(xs) == 1 else f"{xs[0]}..{xs[-1]}"
        fy = f"{ys[0]}" if len(ys) == 1 else f"{ys[0]}..{ys[-1]}"
        if xs == list(range(xs[0], xs[-1] + 1)) and ys == list(range(ys[0], ys[-1] + 1)):
            return f"x={fx} y={fy}"
    return f"{len(tiles)} tiles"


__all__ = ["Program", "ProgramError", "CodeRegion", "BufferPlacement", "TensorIO", "desc_size"]
