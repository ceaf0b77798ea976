"""The emulator's state: everything a tile, its stream slots, router and links hold.

T = tiles (index y * width + x), C = colors the program uses, Q = queue depth,
R = registers, S = SRAM words the program's plan uses, K = STREAM_SLOTS (5:
four for sendx/recvx, one for blocking send/recv). The numba core takes the
arrays as named records (namedtuples), so a function's signature says
which parts of the machine it touches.

Tiles (`TileState`)
  mem        float32 [M]      SRAM contents, every tile's words one after another (only the planned
                              words exist: S per tile for one region; for several, each region's
                              tiles hold their own region's words, region after region)
  mem_span   int64   [T, 2]   the [start, end) of each tile's words in mem (empty off every region)
  regs       int32   [T, R]   integer registers; r0 = x, r1 = y at start
  pc         int32   [T]      next instruction (absolute index into code)
  status     int8    [T]      RUN, WAIT (core blocked on a stream slot), HALT, FAULT
  fault      int32   [T]      fault code when status is FAULT
  wait_slot  int8    [T]      the slot a WAIT-ing core waits for
  wait_pc    int32   [T]      the instruction it waits at (its kernel-call phase gets the time)
  clock      int64   [T]      the core's time in cycles (fast timing model)
  busy       int64   [T]      cycles spent in vector / mmac work
  blocked    int64   [T]      cycles the core waited on the fabric
  icount     int64   [T]      instructions retired
  sent       int64   [T]      wavelets injected into the fabric
Stream slots (`StreamState`), per (tile, slot)
  kind       int8    [T, K]   IDLE, SENDING, RECEIVING, or COMPLETE (done, not yet waited for)
  color      int32   [T, K]
  desc       int32   [T, K]   the descriptor, with its base address fixed at issue in `base`
  base       int64   [T, K]
  done       int64   [T, K]   wavelets moved so far
  time       int64   [T, K]   send: earliest cycle of the next injection; receive: of the next take;
                              COMPLETE: the cycle the stream completed
  start      int64   [T, K]   cycle the stream started (traces)
  recv_slot  int8    [T, C]   the slot receiving on each color, -1 none
  send_slot  int8    [T, C]   the slot sending on each color, -1 none
Queues (`QueueState`), per (tile, color): the input queue at the tile's ramp
  fifo       float32 [T, C, Q] ring buffer of wavelet payloads
  head       int32   [T, C]    ring position of the oldest wavelet
  count      int32   [T, C]    wavelets queued
  ready      int64   [T, C]    cycle the last queued wavelet lands
  owner      int32   [T, C]    sender whose message is partly delivered here (-1 none);
                               a second sender meanwhile is a color conflict
Links (`LinkState`), per (tile, direction N/E/S/W): the outgoing link
  hops       int64   [T, 4]   physical router hops of the link: 1, or more where repair routes it
                              around a defect (repair.py); constant through a run
  wavelets   int64   [T, 4]   wavelets carried (traffic)
  free       int64   [T, 4]   cycle the link is next free (fast timing model)
  users      int64   [T, 4]   fabric-phase scratch: bit set of colors whose streams use the link
  window     int64   [T, 4, 4] fabric-phase scratch: their latest arrival at the link, earliest
                              end, the link's reservation before the phase, the colors arriving last
  touched    int64   [4T]     fabric-phase scratch: the links whose users and window it set, to clear
  scratch    int64   [8, 4T + 8] destinations, links and the walk stack of one route trace
Active sets (`ActiveState`): the tiles a round visits, so that a round costs what its active
tiles do, not what the grid holds (scheduler.py keeps them)
  run        int64   [T]      tiles that are RUN, in no particular order (the compute phase's list)
  senders    int64   [T]      tiles with a SENDING slot, ascending (the fabric's matching order)
  fresh      int64   [T]      scratch: tiles that started sending in this compute phase
  merged     int64   [T]      scratch: the merge of senders and fresh
  member     int8    [T]      bit 1: in run; bit 2: in senders
  count      int64   [4]      A_RUN, A_SENDERS: the lists' lengths; A_HALTED: tiles halted so far;
                              A_VISITS: tiles the compute phases have run, over the whole run
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from .isa import REG_TX, REG_TY, STREAM_SLOTS

ST_RUN, ST_WAIT, ST_HALT, ST_FAULT = 0, 1, 3, 4
SL_IDLE, SL_SENDING, SL_RECEIVING, SL_COMPLETE = 0, 1, 2, 3

FAULT_ADDRESS, FAULT_LIMIT, FAULT_DIVIDE, FAULT_PC, FAULT_CYCLES = 1, 2, 3, 4, 5
FAULT_NAMES = {FAULT_ADDRESS: "descriptor outside the tile's SRAM plan",
               FAULT_LIMIT: "instruction budget used up",
               FAULT_DIVIDE: "integer division by zero",
               FAULT_PC: "program counter left the code (missing halt?)",
               FAULT_CYCLES: "cycle budget used up"}
BUDGET_FAULTS = (FAULT_LIMIT, FAULT_CYCLES)  # reported as BudgetError, not as a program fault

TileState = namedtuple("TileState", "mem mem_span regs pc status fault wait_slot wait_pc clock busy blocked icount "
                                    "sent")
StreamState = namedtuple("StreamState", "kind color desc base done time start recv_slot send_slot")
QueueState = namedtuple("QueueState", "fifo head count ready owner")
LinkState = namedtuple("LinkState", "hops wavelets free users window touched scratch")


ActiveState = namedtuple("ActiveState", "run senders fresh merged member count")
A_RUN, A_SENDERS, A_HALTED, A_VISITS = range(4)
IN_RUN, IN_SENDERS = 1, 2

Recorder = namedtuple("Recorder", "trace_row events n_events phase_of_pc phase_acc phase_span")
# phase_acc columns: compute, blocked, scalar cycles and instructions of each (tile, kernel-call phase)
PH_COMPUTE, PH_BLOCKED, PH_SCALAR, PH_INSTRUCTIONS = range(4)
from .trace_events import EVENT_FIELDS  # noqa: E402  tile, kind, start, end, a, b


class FabricState:
    """Allocates and owns the state arrays for one program run.

    trace_tiles: tile indices whose events are recorded (None: none), at most
    events_per_tile each; phase_of_pc: the kernel-call phase of each instruction;
    link_hops: int64 [T, 4] physical hops per link (None: a perfect fabric)."""

    @staticmethod
    def estimate_bytes(program, traced: int = 0, events_per_tile: int = 0, phases: int | None = None,
                       rows=None) -> int:
        """What __init__ will allocate, computed before allocating any of it."""
        cfg = program.config
        if phases is None:  # one per source statement (machine.program_phases)
            lines = program.meta.get("source_lines")
            phases = len(set(lines)) if isinstance(lines, list) and lines else 1
        T, C, Q, K = cfg.tiles, max(program.routes.shape[1], 1), cfg.queue_depth, STREAM_SLOTS
        per_tile = (2 * 8 + 4 * cfg.registers + 4 + 1 + 4 + 1 + 6 * 8  # mem span, regs, pc, status, fault, counters
                    + K * (1 + 4 + 4 + 4 * 8)                           # stream slots
                    + C * (4 * Q + 4 + 4 + 8 + 4 + 5 + 2)               # queues, owner, routes, slot maps
                    + 5 * 4 * 8 + 4 * 4 * 8 + 8 * 4 * 8 + 9 * 8 * 4                 # links, route scratch, copy tasks
                    + phases * 6 * 8 + 4                                # phase accounting, trace row
                    + 4 * 8 + 1)                                        # active sets
        held = (0, cfg.height) if rows is None else tuple(rows)
        return 4 * _memory_layout(program, held)[0] + T * per_tile + traced * events_per_tile * EVENT_FIELDS * 8

    def __init__(self, program, trace_tiles=None, events_per_tile: int = 0, phase_of_pc=None, phases: int = 1,
                 link_hops=None, rows=None):
        """rows: (y0, y1), only those rows' tiles hold SRAM (a band of a sharded run,
        sharding.py; (0, 0): none, the coordinator's); None: every row."""
        cfg = program.config
        self.rows = (0, cfg.height) if rows is None else tuple(rows)
        self._height = cfg.height
        T, C, Q, K = cfg.tiles, program.routes.shape[1], cfg.queue_depth, STREAM_SLOTS
        # At least one color so the numba signatures never see empty axes.
        Cq = max(C, 1)
        words, span, self._region_offset, self._uniform = _memory_layout(program, self.rows)
        regs = np.zeros((T, cfg.registers), dtype=np.int32)
        tiles = np.arange(T)
        regs[:, REG_TX] = tiles % cfg.width
        regs[:, REG_TY] = tiles // cfg.width
        pc = np.zeros(T, dtype=np.int32)
        status = np.full(T, ST_HALT, dtype=np.int8)  # tiles outside every region stay idle
        for r in program.regions:
            grid = np.zeros((cfg.height, cfg.width), dtype=bool)
            grid[r.y0:r.y1, r.x0:r.x1] = True
            sel = grid.reshape(-1)
            pc[sel] = r.start
            status[sel] = ST_RUN
        z = lambda dtype: np.zeros(T, dtype=dtype)  # noqa: E731
        self.tiles = TileState(mem=np.zeros(max(words, 1), dtype=np.float32), mem_span=span, regs=regs, pc=pc,
                               status=status,
                               fault=z(np.int32), wait_slot=z(np.int8), wait_pc=z(np.int32), clock=z(np.int64), busy=z(np.int64),
                               blocked=z(np.int64), icount=z(np.int64), sent=z(np.int64))
        self.streams = StreamState(
            kind=np.zeros((T, K), dtype=np.int8), color=np.zeros((T, K), dtype=np.int32),
            desc=np.zeros((T, K), dtype=np.int32), base=np.zeros((T, K), dtype=np.int64),
            done=np.zeros((T, K), dtype=np.int64), time=np.zeros((T, K), dtype=np.int64),
            start=np.zeros((T, K), dtype=np.int64), recv_slot=np.full((T, Cq), -1, dtype=np.int8),
            send_slot=np.full((T, Cq), -1, dtype=np.int8))
        self.queues = QueueState(fifo=np.zeros((T, Cq, Q), dtype=np.float32),
                                 head=np.zeros((T, Cq), dtype=np.int32), count=np.zeros((T, Cq), dtype=np.int32),
                                 ready=np.zeros((T, Cq), dtype=np.int64), owner=np.full((T, Cq), -1, dtype=np.int32))
        hops = np.ones((T, 4), dtype=np.int64) if link_hops is None else np.ascontiguousarray(link_hops, np.int64)
        self.links = LinkState(hops=hops, wavelets=np.zeros((T, 4), dtype=np.int64),
                               free=np.zeros((T, 4), dtype=np.int64),
                               users=np.zeros((T, 4), dtype=np.int64), window=np.zeros((T, 4, 4), dtype=np.int64),
                               touched=np.zeros(4 * T, dtype=np.int64),
                               scratch=np.empty((8, 4 * T + 8), dtype=np.int64))
        running = np.nonzero(status == ST_RUN)[0].astype(np.int64)
        run = np.zeros(T, dtype=np.int64)
        run[:len(running)] = running
        member = np.zeros(T, dtype=np.int8)
        member[running] = IN_RUN
        count = np.zeros(4, dtype=np.int64)
        count[A_RUN], count[A_HALTED] = len(running), int(np.count_nonzero(status == ST_HALT))
        self.active = ActiveState(run=run, senders=np.zeros(T, dtype=np.int64), fresh=np.zeros(T, dtype=np.int64),
                                  merged=np.zeros(T, dtype=np.int64), member=member, count=count)
        trace_row = np.full(T, -1, dtype=np.int32)
        traced = [] if trace_tiles is None else list(trace_tiles)
        trace_row[traced] = np.arange(len(traced), dtype=np.int32)
        n_code = max(len(program.code), 1)
        self.recorder = Recorder(
            trace_row=trace_row,
            events=np.zeros((max(len(traced), 1), max(events_per_tile, 1), EVENT_FIELDS), dtype=np.int64),
            n_events=np.zeros(max(len(traced), 1), dtype=np.int64),
            phase_of_pc=(np.zeros(n_code, dtype=np.int32) if phase_of_pc is None
                         else np.ascontiguousarray(phase_of_pc, dtype=np.int32)),  # length 0: no accounting
            phase_acc=np.zeros((T, phases, 4), dtype=np.int64),
            phase_span=np.zeros((T, phases, 2), dtype=np.int64))
        self.recorder.phase_span[:, :, 0] = np.iinfo(np.int64).max
        self.recorder.phase_span[:, :, 1] = -1
        routes = program.routes
        if C == 0:
            routes = np.zeros((T, 1, 5), dtype=np.uint8)
        self.routes = np.ascontiguousarray(routes)

    def region_memory(self, program, rect: tuple) -> tuple[np.ndarray, int]:
        """(float32 [rows, columns, words], first row): the SRAM of the tiles [x0, x1) x
        [y0, y1) of rect, the whole grid or a code region's rectangle, in the rows this
        state holds (all of them, but for a band of a sharded run); a view."""
        cfg = program.config
        x0, y0, x1, y1 = rect
        b0, b1 = max(y0, self.rows[0]), min(y1, self.rows[1])
        b1 = max(b0, b1)
        if self._uniform:
            S = max(program.sram_words, 1)
            held = self.tiles.mem[:(self.rows[1] - self.rows[0]) * cfg.width * S]
            held = held.reshape(self.rows[1] - self.rows[0], cfg.width, S)
            return held[b0 - self.rows[0]:b1 - self.rows[0], x0:x1], b0
        region = next(r for r in program.regions if (r.x0, r.y0, r.x1, r.y1) == tuple(rect))
        start, words = self._region_offset[region.name], program.data_words(region)
        h, w = b1 - b0, x1 - x0
        return self.tiles.mem[start:start + h * w * words].reshape(h, w, words), b0

    @property
    def mem(self) -> np.ndarray:
        """float32 [T, S]: each tile's SRAM, when every tile holds the same plan (a view);
        otherwise the rows are ragged or partial: see region_memory."""
        if not self._uniform or self.rows != (0, self._height):
            raise AttributeError("this state holds ragged or partial SRAM rows: use region_memory")
        return self.tiles.mem.reshape(len(self.tiles.pc), -1)

    # the arrays other modules read most, by their old names
    clock = property(lambda self: self.tiles.clock)
    icount = property(lambda self: self.tiles.icount)
    status = property(lambda self: self.tiles.status)
    pc = property(lambda self: self.tiles.pc)
    regs = property(lambda self: self.tiles.regs)
    link_wavelets = property(lambda self: self.links.wavelets)

    def nbytes(self) -> int:
        records = (self.tiles, self.streams, self.queues, self.links, self.active, self.recorder)
        return self.routes.nbytes + sum(a.nbytes for r in records for a in r)


def _memory_layout(program, rows: tuple) -> tuple[int, np.ndarray, dict, bool]:
    """(words in all, int64 [T, 2] each tile's [start, end) in them, each region's first
    word, whether every tile holds the same words in tile order), for the tiles of rows
    [y0, y1). One plan for all (one region, or regions whose buffers do not say otherwise):
    S words for every tile, in tile order. Else each region's tiles hold their region's
    words, region after region, row-major inside it, and tiles off every region hold none."""
    cfg = program.config
    T = cfg.tiles
    y0, y1 = rows
    span = np.zeros((T, 2), dtype=np.int64)
    if all(program.data_words(r) == program.sram_words for r in program.regions):  # one plan for all
        S = max(program.sram_words, 1)
        held = np.arange(y0 * cfg.width, y1 * cfg.width, dtype=np.int64)
        span[held, 0] = (held - y0 * cfg.width) * S
        span[held, 1] = span[held, 0] + S
        return len(held) * S, span, {}, True
    offset, start = 0, {}
    for r in program.regions:
        words = program.data_words(r)
        ys, xs = np.meshgrid(np.arange(max(r.y0, y0), max(min(r.y1, y1), max(r.y0, y0))), np.arange(r.x0, r.x1),
                             indexing="ij")
        tiles = (ys * cfg.width + xs).reshape(-1)
        span[tiles, 0] = offset + np.arange(len(tiles), dtype=np.int64) * words
        span[tiles, 1] = span[tiles, 0] + words
        start[r.name] = offset
        offset += len(tiles) * words
    return offset, span, start, False
