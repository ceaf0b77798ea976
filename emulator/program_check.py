"""Validation of programs: the .tgp archive, its JSON header, every array and figure.

A saved program is user input, and the numba core trusts what it is given: it
indexes its arrays with the program's opcodes, operands, descriptors and
routes, without bounds checks. So nothing reaches the core before it passes
here. docs/program-format.md lists the checks, and explains why, together
with the core's own run-time checks, they keep every access inside its array.

Every problem is one ProgramError naming the first thing that is wrong.
"""
from __future__ import annotations

import json
import math
import os
import re
import stat
import struct
import zipfile
import zlib
from dataclasses import fields

import numpy as np
from numpy.lib import format as npy_format

from .config import MachineConfig
from .isa import (ASYNC_SLOTS, DESC_FIELDS, INSTR_FIELDS, MMAC, MNEMONIC, OPERANDS, PORT_NAMES, VWIDEN,
                  format_descriptor)


class ProgramError(Exception):
    """A program that cannot be loaded (malformed file, code, routes or plan)."""


FORMAT = "tilegrid-program-1"
HEADER_KEYS = ("format", "config", "regions", "sram_words", "buffers", "io", "color_names", "labels", "meta")
ARRAYS = ("code", "descs", "fimm", "routes")
MEMBERS = tuple(f"{name}.npy" for name in (*ARRAYS, "header"))
# Size limits, checked before anything is decompressed. Route tables compress
# very well, so even a 4096x4096 program is far below the file limit.
MAX_FILE_BYTES = 64 << 20
MAX_HEADER_BYTES = 16 << 20     # the JSON header, uncompressed
NPY_HEADER_BYTES = 16 << 10     # room for a member's .npy header
BUFFER_KINDS = ("input", "output", "local", "temp", "const", "code")
IO_ROLES = ("input", "output")
IO_AXES = ("x", "y", "_")


# ============================================================== the archive
def read_program_file(path) -> tuple[dict, MachineConfig, dict]:
    """The header (top level checked), its machine and the raw arrays of a .tgp file.

    Members are refused from their directory entries when they claim more
    bytes than a program for the header's machine can need, so a zip bomb is
    never decompressed; arrays are read as plain numbers, never unpickled."""
    size = _regular_file_size(path)
    _check_zip_directory(path, size)
    try:
        with zipfile.ZipFile(path) as zf:
            members = _members(zf)
            header = parse_header(_read_npy(zf, members["header.npy"], MAX_HEADER_BYTES))
            config = machine_config(header["config"])
            limits = array_byte_limits(config)
            arrays = {name: _read_npy(zf, members[f"{name}.npy"], limits[name]) for name in ARRAYS}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, NotImplementedError,
            ValueError, struct.error) as exc:  # whatever a damaged archive makes zipfile raise
        raise ProgramError(f"cannot read program file ({exc or type(exc).__name__})") from None
    return header, config, arrays


def _regular_file_size(path) -> int:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ProgramError("no such program file") from None
    except OSError as exc:
        raise ProgramError(f"cannot read program file ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):  # /dev/zero, a FIFO, a directory: never open them
        raise ProgramError("not a regular file (a program is a .tgp file written by `tilegrid compile -o`)")
    if st.st_size > MAX_FILE_BYTES:
        raise ProgramError(f"the file has {st.st_size} bytes, more than the {MAX_FILE_BYTES} a program file may have")
    return st.st_size


def _check_zip_directory(path, size: int) -> None:
    """Read the member count from the end record, so a directory of a million
    entries is refused before zipfile builds one object per entry."""
    with open(path, "rb") as f:
        f.seek(max(0, size - (22 + 0xFFFF)))  # end record: 22 bytes plus a comment of at most 64 KiB
        tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        raise ProgramError("cannot read program file: it is not a zip archive (a .tgp file is written by "
                           "`tilegrid compile -o`)")
    entries = int.from_bytes(tail[at + 10:at + 12], "little")
    if entries > len(MEMBERS):
        raise ProgramError(f"the archive lists {entries} members; a program has {len(MEMBERS)}")


def _members(zf: zipfile.ZipFile) -> dict:
    infos = zf.infolist()
    names = [info.filename for info in infos]
    for info in infos:
        if info.filename not in MEMBERS:
            raise ProgramError(f"unexpected archive member '{info.filename}' (a program holds {', '.join(MEMBERS)})")
        if names.count(info.filename) > 1:
            raise ProgramError(f"archive member '{info.filename}' appears twice")
        if info.flag_bits & 0x1:
            raise ProgramError(f"archive member '{info.filename}' is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ProgramError(f"archive member '{info.filename}' uses an unsupported compression")
    for name in MEMBERS:
        if name not in names:
            raise ProgramError(f"the archive lacks the member '{name}'")
    return {info.filename: info for info in infos}


def array_byte_limits(config: MachineConfig) -> dict:
    """The most bytes each array can take in a program for this machine: code,
    descriptors and immediates all count against one tile's SRAM."""
    cfg = config
    return {"code": cfg.sram_bytes // cfg.instruction_bytes * INSTR_FIELDS * 4,
            "descs": cfg.sram_bytes // cfg.descriptor_bytes * DESC_FIELDS * 4,
            "fimm": cfg.sram_bytes // cfg.word_bytes * 8,   # room for float64, so its dtype gets the message
            "routes": cfg.tiles * cfg.colors * 5}


def _read_npy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> np.ndarray:
    where = f"archive member '{info.filename}'"
    if info.file_size > limit + NPY_HEADER_BYTES:
        raise ProgramError(f"{where} claims {info.file_size} bytes uncompressed, more than a program for this "
                           f"machine can need (at most {limit + NPY_HEADER_BYTES}); refusing to decompress it")
    with zf.open(info) as f:
        try:
            version = npy_format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = npy_format.read_array_header_1_0(f, max_header_size=NPY_HEADER_BYTES)
            elif version == (2, 0):
                shape, fortran, dtype = npy_format.read_array_header_2_0(f, max_header_size=NPY_HEADER_BYTES)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except (ValueError, SyntaxError, TypeError) as exc:
            raise ProgramError(f"{where} is not a .npy array ({exc})") from None
        if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
            raise ProgramError(f"{where} has dtype {dtype}; program arrays hold plain integers or floats")
        if any(n < 0 for n in shape):
            raise ProgramError(f"{where} has a negative shape {shape}")
        nbytes = math.prod(shape) * dtype.itemsize
        if f.tell() + nbytes != info.file_size:
            raise ProgramError(f"{where}: its .npy header promises {nbytes} bytes for shape {shape}, but the member "
                               f"holds {info.file_size - f.tell()}")
        data = f.read(nbytes)  # reaching the end also checks the member's CRC
    if len(data) != nbytes:
        raise ProgramError(f"{where} is truncated")
    array = np.frombuffer(bytearray(data), dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return np.ascontiguousarray(array)  # writable and C-ordered: the layouts the numba core is compiled for


# =============================================================== the header
def parse_header(raw: np.ndarray) -> dict:
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ProgramError(f"header must be a 1-D uint8 byte string, got {_describe(raw)}")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise ProgramError("header is not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        raise ProgramError(f"header is not valid JSON ({exc})") from None
    header = json_dict(header, "header", HEADER_KEYS)
    if header["format"] != FORMAT:
        raise ProgramError(f"not a tilegrid program (format {_show(header['format'])}, expected {FORMAT!r})")
    return header


def _no_constant(name):
    raise ValueError(f"{name} is not a number a program may hold")


# Timing figures added after the format was first written: a file without them
# was compiled for the same machine, so the defaults apply.
LATER_CONFIG_FIELDS = ("ramp_latency", "router_buffer", "clock_mhz")


def machine_config(value) -> MachineConfig:
    names = [f.name for f in fields(MachineConfig)]
    if isinstance(value, dict):
        value = {**{k: getattr(MachineConfig, k) for k in LATER_CONFIG_FIELDS}, **value}
    try:
        return MachineConfig(**json_dict(value, "config", names))
    except ValueError as exc:
        raise ProgramError(f"config: {exc}") from None


def json_dict(value, where: str, keys=None) -> dict:
    """value must be a dict; with keys, exactly those keys (none missing, none extra)."""
    if not isinstance(value, dict):
        raise ProgramError(f"{where} must be a dict, got {_show(value)}")
    if keys is not None:
        missing = [k for k in keys if k not in value]
        if missing:
            raise ProgramError(f"{where} lacks the field '{missing[0]}'")
        extra = [k for k in value if k not in keys]
        if extra:
            raise ProgramError(f"{where} has an unknown field '{extra[0]}'")
    return value


OPTIONAL_FIELDS = ("region", "dtype")


def entry_fields(value, where: str, cls) -> dict:
    """Keyword arguments for dataclass cls from a JSON entry: exactly its fields,
    with JSON lists turned into the tuples the dataclass holds. Types and
    values are checked by check_program."""
    entry = dict(value) if isinstance(value, dict) else value
    for name in OPTIONAL_FIELDS:  # fields added since the format began: older files lack them
        if isinstance(entry, dict) and name not in entry and name in {f.name for f in fields(cls)}:
            default = next(f.default for f in fields(cls) if f.name == name)
            entry[name] = list(default) if isinstance(default, tuple) else default  # as JSON holds it
    entry = dict(json_dict(entry, where, [f.name for f in fields(cls)]))
    for f in fields(cls):
        if f.type in ("tuple", tuple):
            entry[f.name] = tuple(json_list(entry[f.name], f"{where}.{f.name}"))
    return entry


def json_labels(value) -> dict:
    labels = json_dict(value, "labels")
    for key in labels:
        if not re.fullmatch(r"0|[1-9][0-9]{0,9}", key):
            raise ProgramError(f"labels: key {key!r} is not an instruction index")
    return {int(k): v for k, v in labels.items()}


# ============================================================== the program
def check_program(prog) -> None:
    """Everything the numba core and the host I/O rely on, in dependency order."""
    if not isinstance(prog.config, MachineConfig):
        raise ProgramError(f"config must be a MachineConfig, got {_show(prog.config)}")
    n_colors = _check_arrays(prog)
    _check_regions(prog)
    _check_sram(prog)
    _check_code(prog, n_colors)
    _check_descriptors(prog)
    _check_operand_shapes(prog)
    _check_routes(prog)
    _check_io(prog)
    _check_buffers(prog)
    _check_names(prog, n_colors)


def _check_arrays(prog) -> int:
    """dtypes and shapes, so the jitted signatures see what they were compiled for."""
    cfg = prog.config
    _check_array(prog.code, "code", np.int32, f"[n, {INSTR_FIELDS}]", lambda s: len(s) == 2 and s[1] == INSTR_FIELDS)
    _check_array(prog.descs, "descs", np.int32, f"[n, {DESC_FIELDS}]", lambda s: len(s) == 2 and s[1] == DESC_FIELDS)
    _check_array(prog.fimm, "fimm", np.float32, "[n]", lambda s: len(s) == 1)
    _check_array(prog.routes, "routes", np.uint8, f"[tiles={cfg.tiles}, colors, 5]",
                 lambda s: len(s) == 3 and s[0] == cfg.tiles and s[2] == 5)
    n_colors = prog.routes.shape[1]
    if n_colors > cfg.colors:
        raise ProgramError(f"program uses {n_colors} colors but the machine has {cfg.colors}")
    return n_colors


def _check_array(array, name, dtype, shape_text, shape_ok) -> None:
    if not isinstance(array, np.ndarray) or array.dtype != dtype or not shape_ok(array.shape):
        raise ProgramError(f"{name} must be {np.dtype(dtype)} {shape_text}, got {_describe(array)}")


def _check_sram(prog) -> None:
    cfg = prog.config
    words = _int(prog.sram_words, "sram_words")
    if words < 0:
        raise ProgramError(f"sram_words must be at least 0, got {words}")
    # every tile may hold the whole plan, and its region's code (the buffers only describe the plan)
    needs = max(words * cfg.word_bytes + prog.code_bytes(r) for r in prog.regions)
    if needs > cfg.sram_bytes:
        raise ProgramError(f"program needs {needs} bytes of SRAM per tile (data and code), the machine has "
                           f"{cfg.sram_bytes}")


def _check_regions(prog) -> None:
    cfg = prog.config
    regions = json_list(prog.regions, "regions")
    if not regions:
        raise ProgramError("program has no code region")
    boxes = []
    for k, r in enumerate(regions):
        name = _str(getattr(r, "name", None), f"region {k} name")
        where = f"region {k} ({name})"
        start, end, x0, y0, x1, y1 = (_int(getattr(r, f), f"{where}: {f}")
                                      for f in ("start", "end", "x0", "y0", "x1", "y1"))
        if not (0 <= x0 < x1 <= cfg.width and 0 <= y0 < y1 <= cfg.height):
            raise ProgramError(f"{where}: tiles x[{x0},{x1}) y[{y0},{y1}) lie outside the "
                               f"{cfg.width}x{cfg.height} grid")
        if not 0 <= start < end <= len(prog.code):
            raise ProgramError(f"{where}: code span [{start}, {end}) is empty or outside the {len(prog.code)} "
                               "instructions")
        for other, (ox0, oy0, ox1, oy1) in boxes:
            if x0 < ox1 and ox0 < x1 and y0 < oy1 and oy0 < y1:
                raise ProgramError(f"{where} overlaps region {other}")
        boxes.append((name, (x0, y0, x1, y1)))


# --------------------------------------------------------------------- code
_OPERAND = {  # kind -> (what the operand is, what bounds it)
    "r": ("register operand r{v}", "the machine has {n} registers"),
    "t": ("branch target {v}", "instructions {lo}..{hi} form its code region"),
    "d": ("descriptor operand {v}", "program has {n} descriptors"),
    "f": ("float-immediate operand {v}", "program has {n} float immediates"),
    "c": ("color operand {v}", "program routes {n} colors"),
    "s": ("stream slot {v}", "tiles have {n} async slots"),
}


def _check_code(prog, n_colors: int) -> None:
    """Opcodes and operands, vectorized per opcode; reports the first bad instruction."""
    code = prog.code
    ops = code[:, 0]
    unknown = ~np.isin(ops, list(OPERANDS))
    if unknown.any():
        i = int(np.argmax(unknown))
        raise ProgramError(f"instruction {i}: unknown opcode {int(ops[i])}")
    counts = {"r": prog.config.registers, "d": len(prog.descs), "f": len(prog.fimm), "c": n_colors,
              "s": ASYNC_SLOTS}
    # a branch stays inside its own code region (the whole code for code no region runs)
    lo = np.zeros(len(code), dtype=np.int64)
    hi = np.full(len(code), len(code), dtype=np.int64)
    for r in prog.regions:
        lo[r.start:r.end], hi[r.start:r.end] = r.start, r.end
    problems = []
    for op in np.unique(ops).tolist():
        rows = np.nonzero(ops == op)[0]
        kinds = OPERANDS[op]
        for col in range(1, INSTR_FIELDS):
            values = code[rows, col].astype(np.int64)
            kind = kinds[col - 1] if col <= len(kinds) else None
            if kind is None:
                bad = values != 0
            elif kind == "i":
                continue
            elif kind == "t":
                bad = (values < lo[rows]) | (values >= hi[rows])
            else:
                bad = (values < 0) | (values >= counts[kind])
            if not bad.any():
                continue
            j = int(np.argmax(bad))
            i, v = int(rows[j]), int(values[j])
            if kind is None:
                what = f"unused operand field {col} must be 0, got {v}"
            else:
                operand, bound = _OPERAND[kind]
                what = (f"{operand.format(v=v)} out of range ("
                        f"{bound.format(n=counts.get(kind), lo=int(lo[i]), hi=int(hi[i]) - 1)})")
            problems.append((i, f"instruction {i} ({MNEMONIC[op]}): {what}"))
    if problems:
        raise ProgramError(min(problems)[1])


def _check_descriptors(prog) -> None:
    """Extents, element counts and reachable words, in Python ints (no overflow).

    A static descriptor (no base register) must lie inside the plan. One with
    a base register is bounds-checked by the core before each use
    (vector_ops.desc_in_bounds); its span must still fit in the plan, which
    keeps that check's int64 arithmetic far from overflow."""
    words, registers = prog.sram_words, prog.config.registers
    for j, row in enumerate(prog.descs.tolist()):
        base, reg = row[0], row[1]
        dims = list(zip(row[2::2], row[3::2]))
        where = f"descriptor {j} {format_descriptor(row)}"
        if not -1 <= reg < registers:
            raise ProgramError(f"{where}: base register r{reg} out of range (the machine has {registers} "
                               "registers; -1 means none)")
        for i, (extent, _) in enumerate(dims):
            if extent < 1:
                raise ProgramError(f"{where}: extent {extent} in dimension {i}; extents must be at least 1")
        count = math.prod(extent for extent, _ in dims)
        if count > words:
            raise ProgramError(f"{where} walks {count} elements, more than the {words} words of the SRAM plan")
        reaches = [(extent - 1) * stride for extent, stride in dims]
        low = sum(r for r in reaches if r < 0)
        high = sum(r for r in reaches if r > 0)
        if reg < 0 and (base + low < 0 or base + high >= words):
            raise ProgramError(f"{where} reaches words [{base + low}, {base + high}], outside the {words}-word "
                               "SRAM plan")
        if reg >= 0 and high - low >= words:
            raise ProgramError(f"{where} spans {high - low + 1} words, more than the {words}-word SRAM plan holds")


def _check_operand_shapes(prog) -> None:
    """Elementwise operands share their extents (the loops walk the first
    operand's); mmac's agree as c[M,N] += a[M,K] @ b[K,N] and are 2-D; vwiden's
    destination has twice the elements of its source."""
    code, extents = prog.code, prog.descs[:, 2::2]
    for op in np.unique(code[:, 0]).tolist():
        cols = [1 + k for k, kind in enumerate(OPERANDS[op]) if kind == "d"]
        if len(cols) < 2:
            continue
        rows = np.nonzero(code[:, 0] == op)[0]
        e = [extents[code[rows, col]] for col in cols]
        if op == MMAC:
            c, a, b = e
            bad = ~((c[:, 2] == a[:, 2]) & (c[:, 3] == b[:, 3]) & (a[:, 3] == b[:, 2])
                    & np.all(np.concatenate([c[:, :2], a[:, :2], b[:, :2]], axis=1) == 1, axis=1))
        elif op == VWIDEN:  # two halves per source word; the mode is 0 or 1
            dst, src = e
            bad = (np.prod(dst, axis=1) != 2 * np.prod(src, axis=1)) | ~np.isin(code[rows, 3], (0, 1))
        else:
            bad = np.any([np.any(other != e[0], axis=1) for other in e[1:]], axis=0)
        if bad.any():
            j = int(np.argmax(bad))
            shapes = " ".join(f"d{int(code[rows[j], col])}{tuple(int(v) for v in x[j])}" for col, x in zip(cols, e))
            rule = ("must be 2-D and agree as c[M,N] a[M,K] b[K,N]" if op == MMAC
                    else "must be 2n elements from n words, in mode 0 (bf16) or 1 (f16)" if op == VWIDEN
                    else "must have the same extents")
            raise ProgramError(f"instruction {int(rows[j])} ({MNEMONIC[op]}): operand descriptors {shapes} {rule}")


# ------------------------------------------------------------------- routes
_X_PORTS, _Y_PORTS = (1, 3), (0, 2)      # E, W in-ports carry x travel; N, S carry y travel
_X_BITS, _Y_BITS = 0b1010, 0b0101        # out-bits E|W and N|S


def _check_routes(prog) -> None:
    """Routes the fabric's tracer can follow (fabric.trace_route).

    The tracer's scratch arrays and the fabric phase's task table are sized
    for a send that reaches each (tile, in-port) at most once and each tile
    at most once. Routes that stay on the grid, never turn back, and are
    dimension-ordered per color (x then y, or y then x) guarantee exactly
    that: every send is a tree that moves away from its sender."""
    routes, cfg = prog.routes, prog.config
    if routes.shape[1] == 0:
        return
    tiles = np.arange(cfg.tiles)
    x, y = tiles % cfg.width, tiles // cfg.width
    no_neighbour = [y == 0, x == cfg.width - 1, y == cfg.height - 1, x == 0]  # N, E, S, W
    _first_route(prog, routes > 0x1f, "sets bits beyond the five ports (N=1 E=2 S=4 W=8 RAMP=16)")
    for p in range(4):
        off_grid = (routes & (1 << p)).astype(bool) & no_neighbour[p][:, None, None]
        _first_route(prog, off_grid, f"sends off the grid to the {PORT_NAMES[p]}")
    back = np.zeros(routes.shape, dtype=bool)
    for p in range(4):  # RAMP -> RAMP is allowed: a sender that receives its own send (hop 0)
        back[:, :, p] = (routes[:, :, p] >> p & 1).astype(bool)
    _first_route(prog, back, "sends a wavelet back out the port it came in on")
    x_to_y = np.zeros(routes.shape, dtype=bool)
    y_to_x = np.zeros(routes.shape, dtype=bool)
    for p in _X_PORTS:
        x_to_y[:, :, p] = (routes[:, :, p] & _Y_BITS).astype(bool)
    for p in _Y_PORTS:
        y_to_x[:, :, p] = (routes[:, :, p] & _X_BITS).astype(bool)
    both = x_to_y.any(axis=(0, 2)) & y_to_x.any(axis=(0, 2))
    if both.any():
        c = int(np.argmax(both))
        turns = []
        for turned in (x_to_y[:, c, :], y_to_x[:, c, :]):
            t, p = (int(v) for v in np.unravel_index(np.argmax(turned), turned.shape))
            turns.append(_route_text(prog, t, p, c))
        raise ProgramError(f"routes of color {c}{_color_name(prog, c)} turn both from x to y ({turns[0]}) and "
                           f"from y to x ({turns[1]}); a color's routes must be dimension-ordered so that "
                           "every send is a tree")


def _first_route(prog, bad: np.ndarray, problem: str) -> None:
    if bad.any():
        t, c, p = (int(v) for v in np.unravel_index(np.argmax(bad), bad.shape))
        raise ProgramError(f"routes of color {c}{_color_name(prog, c)}: {_route_text(prog, t, p, c)} {problem}")


def _route_text(prog, t: int, port_in: int, c: int) -> str:
    bits = int(prog.routes[t, c, port_in])
    outs = "+".join(PORT_NAMES[p] for p in range(5) if bits >> p & 1) + (f" (0x{bits:02x})" if bits > 0x1f else "")
    return f"tile ({t % prog.config.width},{t // prog.config.width}) {PORT_NAMES[port_in]}->{outs}"


def _color_name(prog, c: int) -> str:
    names = prog.color_names if isinstance(prog.color_names, list) else []
    return f" ({names[c]})" if c < len(names) and isinstance(names[c], str) else ""


# ---------------------------------------------------------------- host data
def _check_io(prog) -> None:
    """The host scatters and gathers each tensor with numpy slices, which would
    silently truncate a block outside the plan: check every entry here."""
    cfg, words = prog.config, prog.sram_words
    rects = {(r.x0, r.y0, r.x1, r.y1) for r in prog.regions}
    seen = set()
    for k, io in enumerate(json_list(prog.io, "io")):
        name = _str(getattr(io, "name", None), f"io {k} name")
        where = f"io {k} ({name})"
        region = _int_tuple(io.region, f"{where}: region")
        if region and (len(region) != 4 or region not in rects):
            raise ProgramError(f"{where}: region {region} is not the (x0, y0, x1, y1) of a code region")
        x0, y0, x1, y1 = region or (0, 0, cfg.width, cfg.height)
        tiles_along = {"x": x1 - x0, "y": y1 - y0, "_": 1}
        if name in seen:
            raise ProgramError(f"{where}: the name appears twice")
        seen.add(name)
        if io.role not in IO_ROLES:
            raise ProgramError(f"{where}: role must be one of {', '.join(IO_ROLES)}, got {_show(io.role)}")
        shape = _int_tuple(io.shape, f"{where}: shape")
        block = _int_tuple(io.block, f"{where}: block")
        axes = _tuple(io.axes, f"{where}: axes")
        if not len(shape) == len(block) == len(axes):
            raise ProgramError(f"{where}: shape {shape}, block {block} and axes {axes} differ in length")
        if any(n < 1 for n in shape + block):
            raise ProgramError(f"{where}: shape {shape} and block {block} must have sizes of at least 1")
        for i, axis in enumerate(axes):
            if axis not in IO_AXES:
                raise ProgramError(f"{where}: axis {_show(axis)} must be one of {', '.join(IO_AXES)}")
            if axis != "_" and axes.count(axis) > 1:
                raise ProgramError(f"{where}: grid axis {axis} splits two dimensions")
            n = tiles_along[axis]
            if shape[i] != block[i] * n:
                raise ProgramError(f"{where}: block {block} does not divide shape {shape} over axes {axes}: "
                                   f"dimension {i} needs blocks of {shape[i]}/{n} on {n} tiles")
        addr = _int(io.addr, f"{where}: addr")
        size = math.prod(block)
        dtype = _str(io.dtype, f"{where}: dtype")
        if dtype not in ("f32", "bf16", "f16"):
            raise ProgramError(f"{where}: dtype must be f32, bf16 or f16, got {_show(dtype)}")
        if dtype != "f32":  # two halves a word along the block's last dimension
            if io.role != "input" or not block or block[-1] % 2:
                raise ProgramError(f"{where}: a {dtype} tensor is an input whose block has an even last dimension")
            size //= 2
        if addr < 0 or addr + size > words:
            raise ProgramError(f"{where}: its block takes words [{addr}, {addr + size}), outside the {words}-word "
                               "SRAM plan")


def _check_buffers(prog) -> None:
    """Buffers only feed the printed plan, but they must still describe it."""
    for k, b in enumerate(json_list(prog.buffers, "buffers")):
        name = _str(getattr(b, "name", None), f"buffer {k} name")
        where = f"buffer {k} ({name})"
        if b.kind not in BUFFER_KINDS:
            raise ProgramError(f"{where}: kind must be one of {', '.join(BUFFER_KINDS)}, got {_show(b.kind)}")
        addr, size = _int(b.addr, f"{where}: addr"), _int(b.words, f"{where}: words")
        if addr < 0 or size < 0 or addr + size > prog.sram_words:
            raise ProgramError(f"{where}: words [{addr}, {addr + size}) lie outside the {prog.sram_words}-word "
                               "SRAM plan")
        if any(n < 0 for n in _int_tuple(b.shape, f"{where}: shape")):
            raise ProgramError(f"{where}: shape {b.shape} has a negative size")
        if len(_int_tuple(b.live, f"{where}: live")) != 2:
            raise ProgramError(f"{where}: live must be (first, last), got {b.live}")
        _str(b.region, f"{where}: region")


def _check_names(prog, n_colors: int) -> None:
    names = json_list(prog.color_names, "color_names")
    if len(names) > n_colors:
        raise ProgramError(f"color_names lists {len(names)} names for {n_colors} colors")
    for c, name in enumerate(names):
        _str(name, f"color_names[{c}]")
    if not isinstance(prog.labels, dict):
        raise ProgramError(f"labels must be a dict, got {_show(prog.labels)}")
    for at, label in prog.labels.items():
        if not 0 <= _int(at, "a label's instruction index") <= len(prog.code):
            raise ProgramError(f"label {_show(label)} points at instruction {at}, outside the code")
        _str(label, f"label at instruction {at}")
    _check_meta(prog)


def _check_meta(prog) -> None:
    """meta is free-form, but what the CLI and --check read from it must be right."""
    meta, cfg = prog.meta, prog.config
    if not isinstance(meta, dict):
        raise ProgramError(f"meta must be a dict, got {_show(meta)}")
    if "kernel" in meta:
        kernel = _str(meta["kernel"], "meta kernel")
        regions = [r.name for r in prog.regions]
        # --check picks the reference by this name: a code region's, or the kernel
        # whose regions (kernel.region) make up the program
        if kernel not in regions and not all(r.startswith(kernel + ".") for r in regions):
            raise ProgramError(f"meta kernel {kernel!r} names none of the program's code regions "
                               f"({', '.join(regions)})")
    if "source" in meta:
        _str(meta["source"], "meta source")
    if "grid" in meta and (not isinstance(meta["grid"], (list, tuple))
                           or list(meta["grid"]) != [cfg.width, cfg.height]):
        raise ProgramError(f"meta grid {_show(meta['grid'])} does not match the machine's "
                           f"{cfg.width}x{cfg.height} grid")
    for name, value in json_dict(meta.get("bindings", {}), "meta bindings").items():
        if (not isinstance(name, str) or isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value)):
            raise ProgramError(f"meta bindings: {_show(name)} = {_show(value)} is not a name bound to a number")


# ------------------------------------------------------------------ helpers
def _int(value, where: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ProgramError(f"{where} must be an integer, got {_show(value)}")
    return int(value)


def _str(value, where: str) -> str:
    if not isinstance(value, str):
        raise ProgramError(f"{where} must be a string, got {_show(value)}")
    return value


def json_list(value, where: str) -> list:
    if not isinstance(value, list):
        raise ProgramError(f"{where} must be a list, got {_show(value)}")
    return value


def _tuple(value, where: str) -> tuple:
    if not isinstance(value, (tuple, list)):
        raise ProgramError(f"{where} must be a tuple, got {_show(value)}")
    return tuple(value)


def _int_tuple(value, where: str) -> tuple:
    return tuple(_int(v, f"{where}[{i}]") for i, v in enumerate(_tuple(value, where)))


def _show(value) -> str:
    text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{text} ({type(value).__name__})"


def _describe(array) -> str:
    if isinstance(array, np.ndarray):
        return f"{array.dtype} of shape {array.shape}"
    return _show(array)
