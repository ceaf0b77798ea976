"""A kernel with regions -> one SPMD kernel per region, verified.

Each region's kernel keeps the ops placed on it, the loops around them and its
own buffers, with the region's size as its grid; the later passes compile it
like any kernel. The verifier here is what makes that safe: an op may only
touch buffers of its own region, since another region's SRAM is on other
tiles.

A Transfer becomes sends on the source region and receives on the
destination. Along a row, every sender's wavelets run the same way over the
same links, and a tile that forwards another's stream cannot also inject its
own on that color (its router would have one in-port to route two ways). So
each column of senders (each row, for regions stacked in y) sends on a stream
of its own, `xfer<n>.<c>`; passes/link_regions.py gives them colors and routes.
"""
from __future__ import annotations

from ..diagnostics import CompileError
from ..spatial_ir import ICmp, IConst, IfTile, IVar, Loop, Recv, Send, SpatialKernel, Transfer, View


def split_regions(k: SpatialKernel) -> list[SpatialKernel]:
    regions = {r.name: r for r in k.regions}
    kernels = []
    for r in k.regions:
        body = _project(k.body, r.name, regions)
        buffers = [b for b in k.buffers if b.region == r.name]
        io = [t for t in k.io if t.buffer.region == r.name]
        rk = SpatialKernel(f"{k.name}.{r.name}", r.width, r.height, buffers, body, io, dict(k.bindings),
                           regions=[r])
        verify_region(rk, r.name)
        kernels.append(rk)
    return kernels


def transfer_axis(op: Transfer, regions: dict) -> str:
    """'x' when the two regions share rows (the transfer runs along them), else 'y'."""
    a, b = regions[op.src_region], regions[op.dst_region]
    return "x" if (a.y0, a.y1) == (b.y0, b.y1) else "y"


def transfer_streams(op: Transfer, regions: dict) -> list[str]:
    a = regions[op.src_region]
    n = a.width if transfer_axis(op, regions) == "x" else a.height
    return [f"xfer{op.index}.{c}" for c in range(n)]


def _project(ops: list, region: str, regions: dict) -> list:
    out = []
    for op in ops:
        if isinstance(op, Transfer):
            if region in (op.src_region, op.dst_region):
                out.extend(_transfer_half(op, region, regions))
        elif op.region == region:
            out.append(op)
        elif op.region is None and isinstance(op, Loop):  # a loop whose body runs on several regions
            body = _project(op.body, region, regions)
            if body:
                out.append(Loop(op.var, op.lo, op.hi, body, span=op.span, note=op.note, region=region))
        elif op.region is None:  # pragma: no cover - the checker places every other op
            raise CompileError("an operation that runs on no region", op.span)
    return out


def _transfer_half(op: Transfer, region: str, regions: dict) -> list:
    sending = region == op.src_region
    coord = IVar("tx" if transfer_axis(op, regions) == "x" else "ty")
    streams = transfer_streams(op, regions)
    out = []
    for c, stream in enumerate(streams):
        move = Send(stream, op.src) if sending else Recv(stream, op.dst)
        move.span, move.note, move.region = op.span, "transfer", region
        out.append(move if len(streams) == 1 else
                   IfTile(ICmp("==", coord, IConst(c)), [move], [], span=op.span, note="transfer", region=region))
    return out


def _views(op) -> list[View]:
    found = []
    for value in vars(op).values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, View):
                found.append(item)
    return found


def verify_region(k: SpatialKernel, region: str) -> None:
    """Every op of a region's kernel touches only that region's buffers."""
    own = {id(b) for b in k.buffers}

    def visit(ops):
        for op in ops:
            for v in _views(op):
                if id(v.buffer) not in own:
                    name = v.buffer.name
                    raise CompileError(f"this runs on region '{region}' but uses '{name}', which "
                                       f"lives on region '{v.buffer.region}': transfer it first "
                                       f"(`t = {name}`, with t a tensor on '{region}')", op.span)
            if isinstance(op, Loop):
                visit(op.body)
            elif isinstance(op, IfTile):
                visit(op.then)
                visit(op.orelse)
    visit(k.body)
