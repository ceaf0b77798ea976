"""Region programs -> one Program: code regions, one color space, the transfers' routes.

Each region's kernel was compiled on its own, as if its rectangle were the
whole grid. Linking puts its code after the others' (relocating branch
targets, descriptors, float immediates and colors) behind a prologue that
makes r0 and r1 count from the region's corner, its route tables at its
rectangle, and its plan beside the others' (a tile holds only its own
region's buffers, so every region's plan starts at word 0).

Colors: a region's own patterns stay inside its rectangle, so two regions can
use one color for different patterns. The regions' colors are numbered
0, 1, ... in each region; the transfers' streams come after the most any
region uses, one color each, because their routes cross other tiles.
"""
from __future__ import annotations

import numpy as np

from tilegrid.emulator import isa
from tilegrid.emulator.isa import OPPOSITE, PORT_E, PORT_N, PORT_RAMP, PORT_S, PORT_W
from tilegrid.emulator.program import BufferPlacement, CodeRegion, Program, TensorIO

from ..diagnostics import CompileError
from ..spatial_ir import SpatialKernel, Transfer, walk
from .split_regions import transfer_axis, transfer_streams


def link_regions(top: SpatialKernel, parts: list, config) -> Program:
    """parts: (region kernel, its Program) in the order of top.regions."""
    regions = {r.name: r for r in top.regions}
    transfers = [op for op in walk(top.body) if isinstance(op, Transfer)]
    own = [[s for s in k.streams if not s.startswith("xfer")] for k, _ in parts]
    n_own = max((len(s) for s in own), default=0)
    xfer_streams = [s for op in transfers for s in transfer_streams(op, regions)]
    colors = n_own + len(xfer_streams)
    if colors > config.colors:
        raise CompileError(f"too many colors: the regions' kernels need up to {n_own} and the transfers "
                           f"{len(xfer_streams)} more (one per column, or row, of each transfer's region), "
                           f"{colors} in all, but the machine has {config.colors}", transfers[0].span)
    xfer_color = {s: n_own + i for i, s in enumerate(xfer_streams)}

    W, H = config.width, config.height
    routes = np.zeros((H, W, max(colors, 0), 5), np.uint8)
    code, descs, fimm, regions_out, buffers, io, labels = [], [], [], [], [], [], {}
    names: list[set] = [set() for _ in range(colors)]
    source_lines, phase_notes = [], []
    start = n_desc = n_fimm = 0
    for (k, prog), streams in zip(parts, own):
        r = k.regions[0]
        cmap = np.array([xfer_color[s] if s.startswith("xfer") else streams.index(s) for s in k.streams]
                        or [0], np.int32)
        # r0 and r1 hold the tile's grid coordinates; the region's code counts from its corner
        prologue = [isa.instr(isa.ADDI, reg, reg, -origin) for reg, origin in ((isa.REG_TX, r.x0), (isa.REG_TY, r.y0))
                    if origin]
        code.append(np.array(prologue, np.int32).reshape(-1, isa.INSTR_FIELDS))
        source_lines += [0] * len(prologue)
        phase_notes += [""] * len(prologue)
        code.append(_relocate(prog.code, start + len(prologue), n_desc, n_fimm, cmap))
        descs.append(prog.descs)
        fimm.append(prog.fimm)
        table = prog.routes.reshape(r.height, r.width, -1, 5)
        for local, s in enumerate(k.streams):
            if not s.startswith("xfer"):
                routes[r.y0:r.y1, r.x0:r.x1, cmap[local]] = table[:, :, local]
                names[cmap[local]].add(f"{r.name}:{s}")
        end = start + len(prologue) + len(prog.code)
        regions_out.append(CodeRegion(k.name, start, end, r.x0, r.y0, r.x1, r.y1))
        buffers += [BufferPlacement(b.name, b.kind, b.addr, b.words, b.shape, b.live, k.name) for b in prog.buffers]
        io += [TensorIO(t.name, t.role, t.shape, t.axes, t.block, t.addr, (r.x0, r.y0, r.x1, r.y1), t.dtype)
               for t in prog.io]
        labels.update({start + len(prologue) + at: f"{r.name}.{name}" for at, name in prog.labels.items()})
        source_lines += prog.meta["source_lines"]
        phase_notes += prog.meta["phase_notes"]
        start, n_desc, n_fimm = end, n_desc + len(prog.descs), n_fimm + len(prog.fimm)
    for op in transfers:
        for c, s in enumerate(transfer_streams(op, regions)):
            _route_transfer(routes[:, :, xfer_color[s]], regions[op.src_region], regions[op.dst_region],
                            transfer_axis(op, regions), c)
            names[xfer_color[s]].add(f"{s} {op.src_region}->{op.dst_region}")
    first = parts[0][1]
    return Program(config=config, code=np.concatenate(code), descs=np.concatenate(descs),
                   fimm=np.concatenate(fimm), regions=regions_out,
                   routes=np.ascontiguousarray(routes.reshape(W * H, colors, 5)),
                   sram_words=max(p.sram_words for _, p in parts), buffers=buffers, io=io,
                   color_names=[" ".join(sorted(n)) for n in names], labels=labels,
                   meta={**first.meta, "kernel": top.name, "source_lines": source_lines,
                         "phase_notes": phase_notes})


def _relocate(code: np.ndarray, start: int, n_desc: int, n_fimm: int, cmap: np.ndarray) -> np.ndarray:
    """A region's code moved to instruction `start`, its tables after the earlier regions'."""
    code = code.copy()
    for row in code:
        for i, kind in enumerate(isa.OPERANDS[int(row[0])]):
            if kind == "t":
                row[1 + i] += start
            elif kind == "d":
                row[1 + i] += n_desc
            elif kind == "f":
                row[1 + i] += n_fimm
            elif kind == "c":
                row[1 + i] = cmap[row[1 + i]]
    return code


def _route_transfer(table: np.ndarray, a, b, axis: str, c: int) -> None:
    """table [H, W, 5]: the tiles of line c of region a send straight to line c of region b."""
    if axis == "x":
        src, dst = a.x0 + c, b.x0 + c
        out = PORT_E if dst > src else PORT_W
        rows, lo, hi = slice(a.y0, a.y1), min(src, dst), max(src, dst)
        line = table[rows]                       # [rows, W, 5]: along x
        line[:, src, PORT_RAMP] |= 1 << out
        line[:, lo + 1:hi, OPPOSITE[out]] |= 1 << out
        line[:, dst, OPPOSITE[out]] |= 1 << PORT_RAMP
    else:
        src, dst = a.y0 + c, b.y0 + c
        out = PORT_S if dst > src else PORT_N
        cols, lo, hi = slice(a.x0, a.x1), min(src, dst), max(src, dst)
        line = table[:, cols]                    # [H, cols, 5]: along y
        line[src, :, PORT_RAMP] |= 1 << out
        line[lo + 1:hi, :, OPPOSITE[out]] |= 1 << out
        line[dst, :, OPPOSITE[out]] |= 1 << PORT_RAMP
