"""The emulator's state arrays: everything a tile, router and link holds.

T = tiles (index y * width + x), C = colors the program uses, Q = queue depth,
R = registers, S = SRAM words the program's plan uses.

Per tile
  mem        float32 [T, S]   SRAM contents (only the planned words exist)
  regs       int32   [T, R]   integer registers; r0 = x, r1 = y at start
  pc         int32   [T]      next instruction (absolute index into code)
  status     int8    [T]      RUN, SEND / RECV (blocked in a transfer), HALT, FAULT
  fault      int32   [T]      fault code when status is FAULT
  xfer       int64   [T]      wavelets of the current send/recv already moved
  clock      int64   [T]      the tile's time in cycles (timing model)
  busy       int64   [T]      cycles spent in vector / mmac work
  icount     int64   [T]      instructions retired
  sent       int64   [T]      wavelets injected into the fabric
Per (tile, color): the input queue at the tile's ramp
  fifo       float32 [T, C, Q] ring buffer of wavelet payloads
  fifo_head  int32   [T, C]    ring position of the oldest wavelet
  fifo_count int32   [T, C]    wavelets queued
  fifo_ready int64   [T, C]    time the last queued wavelet arrives
  owner      int32   [T, C]    sender whose message is partly delivered here (-1 none);
                               a second sender meanwhile is a color conflict
Fabric scratch
  route_scratch int64 [8, 4T + 8] destinations, links and the walk stack of one route trace
Per (tile, direction N/E/S/W): the outgoing link
  link_wavelets int64 [T, 4]   wavelets carried (traffic)
  link_free     int64 [T, 4]   time the link is next free (timing model)
"""
from __future__ import annotations

import numpy as np

from .isa import REG_TX, REG_TY

ST_RUN, ST_SEND, ST_RECV, ST_HALT, ST_FAULT = 0, 1, 2, 3, 4

FAULT_ADDRESS, FAULT_LIMIT, FAULT_DIVIDE, FAULT_PC, FAULT_CYCLES = 1, 2, 3, 4, 5
FAULT_NAMES = {FAULT_ADDRESS: "descriptor outside the tile's SRAM plan",
               FAULT_LIMIT: "instruction budget used up",
               FAULT_DIVIDE: "integer division by zero",
               FAULT_PC: "program counter left the code (missing halt?)",
               FAULT_CYCLES: "cycle budget used up"}
BUDGET_FAULTS = (FAULT_LIMIT, FAULT_CYCLES)  # reported as BudgetError, not as a program fault


class FabricState:
    """Allocates and owns the state arrays for one program run."""

    @staticmethod
    def estimate_bytes(program) -> int:
        """What __init__ will allocate, computed before allocating any of it."""
        cfg = program.config
        T, C, Q = cfg.tiles, max(program.routes.shape[1], 1), cfg.queue_depth
        S = max(program.sram_words, 1)
        per_tile = (4 * S + 4 * cfg.registers + 4 + 1 + 4 + 5 * 8      # mem, regs, pc, status, fault, counters
                    + C * (4 * Q + 4 + 4 + 8 + 4 + 5)                   # queues, owner, routes
                    + 4 * 8 * 2 + 8 * 4 * 8 + 9 * 8 * 4)                # links, route scratch, copy tasks
        return T * per_tile

    def __init__(self, program):
        cfg = program.config
        T, C, Q = cfg.tiles, program.routes.shape[1], cfg.queue_depth
        # At least one word / color so the numba signatures never see empty axes.
        S, Cq = max(program.sram_words, 1), max(C, 1)
        self.mem = np.zeros((T, S), dtype=np.float32)
        self.regs = np.zeros((T, cfg.registers), dtype=np.int32)
        tiles = np.arange(T)
        self.regs[:, REG_TX] = tiles % cfg.width
        self.regs[:, REG_TY] = tiles // cfg.width
        self.pc = np.zeros(T, dtype=np.int32)
        self.status = np.full(T, ST_HALT, dtype=np.int8)  # tiles outside every region stay idle
        for r in program.regions:
            grid = np.zeros((cfg.height, cfg.width), dtype=bool)
            grid[r.y0:r.y1, r.x0:r.x1] = True
            sel = grid.reshape(-1)
            self.pc[sel] = r.start
            self.status[sel] = ST_RUN
        self.fault = np.zeros(T, dtype=np.int32)
        self.xfer = np.zeros(T, dtype=np.int64)
        self.clock = np.zeros(T, dtype=np.int64)
        self.busy = np.zeros(T, dtype=np.int64)
        self.icount = np.zeros(T, dtype=np.int64)
        self.sent = np.zeros(T, dtype=np.int64)
        self.fifo = np.zeros((T, Cq, Q), dtype=np.float32)
        self.fifo_head = np.zeros((T, Cq), dtype=np.int32)
        self.fifo_count = np.zeros((T, Cq), dtype=np.int32)
        self.fifo_ready = np.zeros((T, Cq), dtype=np.int64)
        self.owner = np.full((T, Cq), -1, dtype=np.int32)
        self.link_wavelets = np.zeros((T, 4), dtype=np.int64)
        self.link_free = np.zeros((T, 4), dtype=np.int64)
        self.route_scratch = np.empty((8, 4 * T + 8), dtype=np.int64)
        routes = program.routes
        if C == 0:
            routes = np.zeros((T, 1, 5), dtype=np.uint8)
        self.routes = np.ascontiguousarray(routes)

    def nbytes(self) -> int:
        return sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray))
