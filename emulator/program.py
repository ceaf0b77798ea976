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
from .isa import OPERANDS, PORT_NAMES, desc_size, format_instruction
from .program_check import (FORMAT, ProgramError, check_program, entry_fields, json_labels, json_list,
                            read_program_file)


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
    region: str = ""      # the code region whose tiles hold it ("" for a single-region program)


@dataclass
class TensorIO:
    """Where a host tensor lives on the fabric.

    Dimension i of the global tensor is split over grid axis axes[i]
    ('x', 'y', or '_' for not split); tiles along an axis no dimension uses
    hold replicas. The tile's block is stored row-major at `addr`. A tensor
    of a program with regions lives on the tiles of `region`, (x0, y0, x1, y1),
    its axes counted from the region's corner; () is the whole grid.
    """
    name: str
    role: str            # input | output
    shape: tuple
    axes: tuple
    block: tuple
    addr: int
    region: tuple = ()
    dtype: str = "f32"   # f32, or bf16 / f16: the block stored two halves a word along its last dim

    @property
    def words(self) -> int:
        """Words of SRAM the tile's block takes."""
        n = int(np.prod(self.block, dtype=np.int64))
        return n if self.dtype == "f32" else n // 2

    def rect(self, width: int, height: int) -> tuple:
        """(x0, y0, x1, y1) of the tiles that hold it."""
        return tuple(self.region) if self.region else (0, 0, width, height)


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

    def code_bytes(self, region: CodeRegion | None = None) -> int:
        """SRAM taken on a tile by the code and descriptor tables: of `region`, whose
        tiles hold only its own code and the descriptors and immediates it uses, or
        of the whole program."""
        cfg = self.config
        if region is None or len(self.regions) == 1:
            return (len(self.code) * cfg.instruction_bytes + len(self.descs) * cfg.descriptor_bytes
                    + len(self.fimm) * cfg.word_bytes)
        descs, fimm = set(), set()
        for row in self.code[region.start:region.end]:
            for i, kind in enumerate(OPERANDS.get(int(row[0]), "")):
                (descs if kind == "d" else fimm if kind == "f" else set()).add(int(row[1 + i]))
        return ((region.end - region.start) * cfg.instruction_bytes + len(descs) * cfg.descriptor_bytes
                + len(fimm) * cfg.word_bytes)

    def data_words(self, region: CodeRegion) -> int:
        """Words of SRAM a region's tiles hold: the plan's, unless the program's buffers
        and host tensors name the region (a compiled program with several regions,
        where each region's plan starts at word 0 and a tile holds only its own):
        then what they reach."""
        rect = (region.x0, region.y0, region.x1, region.y1)
        reach = [b.addr + b.words for b in self.buffers if b.region == region.name] + \
                [t.addr + t.words for t in self.io if tuple(t.region) == rect]
        if len(self.regions) == 1 or not reach:
            return self.sram_words
        return max(reach)

    def sram_bytes_used(self, region: CodeRegion | None = None) -> int:
        """Data and code on a tile of `region`; without one, on the fullest tile."""
        if region is None:
            if len(self.regions) == 1:
                return self.sram_words * self.config.word_bytes + self.code_bytes()
            return max(self.sram_bytes_used(r) for r in self.regions)
        return self.data_words(region) * self.config.word_bytes + self.code_bytes(region)

    # ------------------------------------------------------------------ checks
    def verify(self) -> None:
        """Every check the numba core and the host I/O rely on (program_check.py): a
        program that passes cannot make the core read or write outside its arrays."""
        check_program(self)

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
        lines = []
        for r in self.regions:
            own = [b for b in self.buffers if b.region == r.name or len(self.regions) == 1]
            where = f" of region {r.name} (tiles x[{r.x0},{r.x1}) y[{r.y0},{r.y1}))" if len(self.regions) > 1 else ""
            lines += [f"SRAM plan per tile{where}: {self.sram_bytes_used(r)} of {cfg.sram_bytes} bytes "
                      f"(data {self.data_words(r) * cfg.word_bytes}, code and descriptors {self.code_bytes(r)})",
                      "  buffers whose live ranges (program steps) do not overlap share addresses",
                      "    addr    size  live         kind   name"]
            for b in sorted(own, key=lambda b: (b.addr, b.live, b.name)):
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
            "format": FORMAT,
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
        """Read and validate a .tgp file. Any problem is one ProgramError naming the file."""
        try:
            header, config, arrays = read_program_file(path)
            prog = Program._from_header(header, config, arrays)
            prog.verify()
        except ProgramError as exc:
            raise ProgramError(f"{path}: {exc}") from None
        return prog

    @staticmethod
    def _from_header(header: dict, config: MachineConfig, arrays: dict) -> "Program":
        """The Program a checked header describes; verify() then checks every value."""
        def entries(key, cls):
            return [cls(**entry_fields(e, f"{key}[{i}]", cls)) for i, e in enumerate(json_list(header[key], key))]
        return Program(config=config, **arrays, regions=entries("regions", CodeRegion),
                       sram_words=header["sram_words"], buffers=entries("buffers", BufferPlacement),
                       io=entries("io", TensorIO), color_names=header["color_names"],
                       labels=json_labels(header["labels"]), meta=header["meta"])


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
