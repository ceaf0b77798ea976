"""Runs a Program on the emulated fabric: host I/O, the phase loop, stats.

One run alternates two phases until every tile has halted (the loop itself is
numba, in scheduler.py):
  compute phase (core.py, parallel over tiles): each runnable tile executes
      until it blocks on a transfer, halts or faults;
  fabric phase (fabric.py): blocked senders are matched with receivers and
      queues, then the chosen copies run in parallel.
A round in which no instruction retires and no wavelet moves, with tiles
still blocked, is a deadlock: it is reported with what each tile waits on.
"""
from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field, fields

import ml_dtypes
import numpy as np

from . import fabric, isa, scheduler
from .isa import format_instruction
from .program import Program, TensorIO
from .budget import B_ROUNDS_PER_CALL, B_SLICE_CYCLES, B_SLICE_INSTRUCTIONS, P_ROUNDS, RunBudget
from .state import (A_VISITS, BUDGET_FAULTS, FAULT_LIMIT, FAULT_NAMES, PH_BLOCKED, PH_COMPUTE, PH_INSTRUCTIONS,
                    PH_SCALAR, SL_RECEIVING, SL_SENDING, ST_FAULT, ST_HALT, ST_RUN, ST_WAIT, FabricState)

EVENTS_PER_TILE = 200_000   # trace records kept per traced tile; later ones are counted, not kept
TIMING_MODES = ("fast", "cycle", "off")


class EmulatorError(Exception):
    """A run that cannot finish: deadlock, fault, color conflict, bad host data."""


class DeadlockError(EmulatorError):
    pass


def _no_tiles() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


@dataclass
class RunStats:
    tiles: int
    cycles: int                 # time at which the last tile halted (timing model)
    seconds: float              # cycles at the machine's clock
    clock_mhz: int
    timing: str                 # fast | cycle | off: which model the cycle figures come from
    instructions: int           # retired over all tiles
    wavelets: int               # injected into the fabric
    wavelet_hops: int           # link traversals (one wavelet over one logical link)
    sram_peak_bytes: int        # SRAM the plan uses on the fullest tile
    sram_bytes_per_tile: int    # capacity
    colors_used: int
    utilization: float          # vector/mmac busy cycles / (cycles * tiles)
    rounds: int                 # compute/fabric phase pairs the emulator ran
    tile_visits: int            # tiles the compute phases ran, summed over rounds (the work a round costs)
    undelivered_wavelets: int   # still queued when every tile halted
    wall_seconds: float
    blocked_fraction: float = 0.0  # core cycles waiting on the fabric / (cycles * tiles)
    fast_cycles: int = 0        # the fast model's figure, kept beside the cycle-level one in --timing cycle
    phases: list = field(default_factory=list)  # per source statement (kernel call): see Emulator.phase_table
    fabric: dict = field(default_factory=dict)  # a defective wafer's repair summary (RepairedFabric.summary)
    physical_wavelet_hops: int = 0  # router hops (one wavelet over one physical link); = wavelet_hops when perfect
    regions: list = field(default_factory=list)  # per code region: where its tiles' time went (Emulator.region_table)
    # Per tile, as int64 arrays: a million tiles' figures as Python lists would take
    # seconds to build (and the garbage collector seconds more to scan) on every run.
    per_tile_cycles: np.ndarray = field(default_factory=_no_tiles, repr=False)
    per_tile_busy: np.ndarray = field(default_factory=_no_tiles, repr=False)
    per_tile_blocked: np.ndarray = field(default_factory=_no_tiles, repr=False)
    per_tile_instructions: np.ndarray = field(default_factory=_no_tiles, repr=False)
    per_tile_sram_bytes: np.ndarray = field(default_factory=_no_tiles, repr=False)
    link_wavelets: np.ndarray = field(default_factory=_no_tiles, repr=False)  # [tile, N E S W]
    events: object = field(default=None, repr=False)       # int64 [n, 6] trace records (trace_events.py)
    events_dropped: int = 0

    PER_TILE = ("per_tile_cycles", "per_tile_busy", "per_tile_blocked", "per_tile_instructions",
                "per_tile_sram_bytes", "link_wavelets")

    def to_dict(self, per_tile: bool = False) -> dict:
        """The figures as JSON-ready values; the per-tile arrays (as lists) only if asked."""
        d = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)
             if f.name != "events" and f.name not in self.PER_TILE}
        if per_tile:
            d.update({k: np.asarray(getattr(self, k)).tolist() for k in self.PER_TILE})
        return d


class BudgetError(EmulatorError):
    """A run that used up its instruction, cycle or round budget."""


def program_phases(program: Program) -> tuple[list[str], np.ndarray]:
    """Phase names and the phase of each instruction: one phase per source
    statement (a kernel call in a composed program), in order of first use."""
    lines = program.meta.get("source_lines")
    n = len(program.code)
    if not isinstance(lines, list) or len(lines) != n:
        return ["program"], np.zeros(max(n, 1), dtype=np.int32)
    statements = program.meta.get("statements") or {}
    notes = program.meta.get("phase_notes")
    if not isinstance(notes, list) or len(notes) != n:
        notes = [""] * n
    index: dict[tuple, int] = {}
    names: list[str] = []
    of_pc = np.zeros(max(n, 1), dtype=np.int32)
    for pc, (line, note) in enumerate(zip(lines, notes)):
        key = (int(line) if isinstance(line, int) else 0, note if isinstance(note, str) else "")
        if key not in index:
            index[key] = len(names)
            text = statements.get(str(key[0]), "") if isinstance(statements, dict) else ""
            name = f"line {key[0]}: {text}" if key[0] else "(program)"
            names.append(f"{name} [{key[1]}]" if key[1] else name)
        of_pc[pc] = index[key]
    return names, of_pc


HALF_TYPES = {"bf16": ml_dtypes.bfloat16, "f16": np.float16}  # numpy has no bfloat16


def to_half(values, dtype: str) -> np.ndarray:
    """values rounded to bf16 or f16 (to nearest, ties to even), as f32: what a tile
    holding them as that type widens them back to."""
    return np.asarray(values, np.float32).astype(HALF_TYPES[dtype]).astype(np.float32)


def pack_halves(values: np.ndarray, dtype: str) -> np.ndarray:
    """float32 [..., n] -> the words [..., n / 2] of their bf16 or f16 halves, element 2j
    in word j's low 16 bits and 2j + 1 in its high (the layout vwiden reads)."""
    halves = np.ascontiguousarray(np.asarray(values, np.float32).astype(HALF_TYPES[dtype]))
    bits = halves.view(np.uint16).astype(np.uint32)
    return (bits[..., 0::2] | (bits[..., 1::2] << 16)).view(np.float32)


class Emulator:
    """Runs one program. trace_tiles: tile indices whose timed events are kept
    for a trace (None: none); timing: 'fast', 'cycle' (also run the cycle-level
    model and report its cycles) or 'off' (benchmarks: the same run); fabric: a
    repair.RepairedFabric to run on a defective wafer (None: a perfect grid)."""

    def __init__(self, program: Program, budget: RunBudget | None = None, trace_tiles=None,
                 events_per_tile: int = EVENTS_PER_TILE, timing: str = "fast", fabric=None,
                 workers: int = 1, backend: str = "ray", address: str | None = None):
        """workers > 1: shard the grid into that many bands of rows (sharding.py), on Ray
        actors (backend 'ray': a local Ray, or the cluster at address) or in this
        process (backend 'local'); the bits and cycles are the one-process run's."""
        program.verify()
        if timing not in TIMING_MODES:
            raise EmulatorError(f"timing must be one of {', '.join(TIMING_MODES)}, got {timing!r}")
        cfg = program.config
        if fabric is not None and (fabric.width, fabric.height) != (cfg.width, cfg.height):
            raise EmulatorError(f"the repaired fabric's logical grid is {fabric.width}x{fabric.height}, the program's "
                                f"{cfg.width}x{cfg.height}")
        self.fabric = fabric
        self.program = program
        self.budget = budget or RunBudget()
        self.timing = timing
        self.phase_names, phase_of_pc = program_phases(program)
        traced = [] if trace_tiles is None else sorted(set(int(t) for t in trace_tiles))
        if traced and not 0 <= traced[0] <= traced[-1] < program.config.tiles:
            raise EmulatorError(f"trace tiles must be in 0..{program.config.tiles - 1}")
        per_tile = events_per_tile if traced else 0
        sharded = workers != 1
        if sharded and timing == "cycle":
            raise EmulatorError("--timing cycle runs in one process; drop --workers")
        if timing == "cycle" and np.any(program.code[:, 0] == isa.LDW):
            raise EmulatorError("--timing cycle cannot run this program: the cycle-level model holds no SRAM "
                                "values, so it cannot follow an index read from SRAM (ldw)")
        rows = (0, 0) if sharded else None  # a sharded run's coordinator holds no SRAM
        _require_memory(FabricState.estimate_bytes(program, len(traced), per_tile, len(self.phase_names),
                                                   rows=rows), program.config)
        self.traced = traced
        if timing == "off":  # no per-statement accounting (an empty phase map turns it off)
            phase_of_pc = np.zeros(0, dtype=np.int32)
        state_args = dict(trace_tiles=traced, events_per_tile=per_tile, phase_of_pc=phase_of_pc,
                          phases=len(self.phase_names), link_hops=None if fabric is None else fabric.link_hops)
        self.state = FabricState(program, rows=rows, **state_args)
        self.shards = None
        if sharded:
            from .sharding import Shards
            try:
                self.shards = Shards(program, workers, state_args, self.budget.vector(cfg.tiles),
                                     cfg.timing_vector(detail=timing != "off"), backend, address)
            except ValueError as exc:
                raise EmulatorError(str(exc)) from None
        self._tasks = np.zeros((max(4 * program.config.tiles, 64), 9), dtype=np.int64)

    # ------------------------------------------------------------- host I/O
    def load_inputs(self, inputs: dict) -> None:
        for io in self.program.io:
            if io.role != "input":
                continue
            if io.name not in inputs:
                raise EmulatorError(f"missing input '{io.name}'")
            self._scatter(io, inputs[io.name])

    def _scatter(self, io: TensorIO, value) -> None:
        arr = np.asarray(value)
        if arr.shape != tuple(io.shape):
            raise EmulatorError(f"input '{io.name}' has shape {arr.shape}, expected {tuple(io.shape)}")
        blocks = self._tile_blocks(io, arr.astype(np.float32, copy=False))
        if io.dtype != "f32":  # round to the half type, and pack two halves a word (low half first)
            blocks = pack_halves(blocks, io.dtype)
        words = io.words
        rect = io.rect(self.program.config.width, self.program.config.height)
        blocks = blocks.reshape(*blocks.shape[:2], words)
        if self.shards is not None:
            self.shards.write_blocks(rect, io.addr, blocks)
        else:
            self.state.region_memory(self.program, rect)[0][:, :, io.addr:io.addr + words] = blocks

    def _region_mem(self, io: TensorIO) -> np.ndarray:
        """[rows, columns, words]: the SRAM of the tiles that hold io (a view, or for a
        sharded run a copy gathered from the bands)."""
        rect = io.rect(self.program.config.width, self.program.config.height)
        if self.shards is not None:
            return self.shards.read_blocks(rect)
        return self.state.region_memory(self.program, rect)[0]

    def _tile_blocks(self, io: TensorIO, arr: np.ndarray) -> np.ndarray:
        """Global tensor -> [rows, columns, *block]: each tile's block (of io's region),
        replicas included."""
        cfg = self.program.config
        x0, y0, x1, y1 = io.rect(cfg.width, cfg.height)
        counts = [s // b for s, b in zip(io.shape, io.block)]
        # [d0, d1, ...] -> [n0, b0, n1, b1, ...] -> [n0, n1, ..., b0, b1, ...]
        split = arr.reshape([v for pair in zip(counts, io.block) for v in pair])
        rank = len(io.shape)
        split = split.transpose(list(range(0, 2 * rank, 2)) + list(range(1, 2 * rank, 2)))
        ys, xs = np.meshgrid(np.arange(y1 - y0), np.arange(x1 - x0), indexing="ij")
        index = tuple(xs if a == "x" else ys if a == "y" else np.zeros_like(xs) for a in io.axes)
        return split[index] if rank else np.broadcast_to(arr, (y1 - y0, x1 - x0))

    def read_outputs(self) -> dict:
        return {io.name: self.read_tensor(io) for io in self.program.io if io.role == "output"}

    def read_tensor(self, io: TensorIO) -> np.ndarray:
        """Assemble a distributed tensor from the canonical replica of each block
        (for an axis no dimension is split over, the tiles at coordinate 0 of its region)."""
        words = int(np.prod(io.block, dtype=np.int64))
        mem = self._region_mem(io)
        per_tile = mem[:, :, io.addr:io.addr + words].reshape(*mem.shape[:2], *io.block)
        rank = len(io.shape)
        counts = [s // b for s, b in zip(io.shape, io.block)]
        grids = np.meshgrid(*[np.arange(n) for n in counts], indexing="ij")
        tx = np.zeros(counts, dtype=np.int64)
        ty = np.zeros(counts, dtype=np.int64)
        for i, a in enumerate(io.axes):
            if a == "x":
                tx = grids[i]
            elif a == "y":
                ty = grids[i]
        blocks = per_tile[ty, tx]                       # [n0, n1, ..., b0, b1, ...]
        order = [v for i in range(rank) for v in (i, rank + i)]
        return np.ascontiguousarray(blocks.transpose(order)).reshape(io.shape)

    def replica_mismatch(self, io: TensorIO):
        """First tile whose copy of a replicated block differs from the canonical one."""
        cfg = self.program.config
        x0, y0, _, _ = io.rect(cfg.width, cfg.height)
        words = int(np.prod(io.block, dtype=np.int64))
        mem = self._region_mem(io)
        actual = mem[:, :, io.addr:io.addr + words]
        expected = self._tile_blocks(io, self.read_tensor(io)).reshape(*mem.shape[:2], words)
        diff = np.nonzero(np.any(actual.view(np.uint32) != expected.view(np.uint32), axis=2))
        if len(diff[0]) == 0:
            return None
        return int(diff[1][0]) + x0, int(diff[0][0]) + y0

    # ------------------------------------------------------------------ run
    def run(self, progress=None) -> RunStats:
        """progress, if given, is called now and then with (rounds so far, the latest
        tile clock) while the run goes on (a progress bar)."""
        p, s = self.program, self.state
        cfg = p.config
        timing = cfg.timing_vector(detail=self.timing != "off")
        budget = self.budget.vector(cfg.tiles)
        progress_vector = np.zeros(3, dtype=np.int64)
        err = np.zeros(3, dtype=np.int64)
        t0 = time.perf_counter()
        while self.shards is None:  # the core pauses now and then, so Ctrl-C (KeyboardInterrupt) gets through
            started = time.perf_counter()
            outcome = scheduler.run_rounds(
                p.code, p.descs, p.fimm, s.tiles, s.streams, s.queues, s.links, s.recorder, s.routes,
                cfg.width, cfg.height, timing, self._tasks, err, budget, progress_vector, s.active)
            if outcome != scheduler.PAUSED:
                break
            _pace(budget, time.perf_counter() - started, cfg.tiles)
            if progress is not None:
                progress(int(progress_vector[P_ROUNDS]), int(s.tiles.clock.max(initial=0)))
        if self.shards is not None:
            outcome = self.shards.run(budget, progress_vector, err)
            self.shards.pull_into(s)
        rounds = int(progress_vector[P_ROUNDS])
        if outcome == scheduler.FAULT:
            self._raise_fault()
        if outcome == scheduler.FABRIC_ERROR:
            self._raise_fabric_error(err)
        if outcome == scheduler.DEADLOCK:
            raise DeadlockError(self._deadlock_report())
        if outcome == scheduler.ROUND_BUDGET:
            raise BudgetError(self._budget_report(f"the run used its budget of {self.budget.rounds} rounds "
                                                  "(--max-rounds)"))
        stats = self._stats(rounds, time.perf_counter() - t0)
        if self.timing == "cycle":
            self._cycle_level(stats)
        return stats

    def _cycle_level(self, stats: RunStats) -> None:
        """--timing cycle: the cycles, busy and link figures of the cycle-level model
        (cycle_model.py); the fast model's cycles stay in fast_cycles."""
        from .cycle_model import CycleLevelError, run_cycle_level
        try:
            result = run_cycle_level(self.program, max_cycles=self.budget.cycles,
                                     link_hops=None if self.fabric is None else self.fabric.link_hops)
        except CycleLevelError as exc:
            raise EmulatorError(f"cycle-level timing: {exc}") from None
        cfg = self.program.config
        stats.cycles = int(result.cycles)
        stats.seconds = cfg.seconds(stats.cycles)
        stats.per_tile_cycles = result.per_tile_cycles
        stats.per_tile_busy = result.per_tile_busy
        busy = int(result.per_tile_busy.sum())
        stats.utilization = busy / (stats.cycles * cfg.tiles) if stats.cycles else 0.0
        stats.wall_seconds += result.wall_seconds

    def _stats(self, rounds: int, wall: float) -> RunStats:
        p, s, cfg = self.program, self.state, self.program.config
        tiles = s.tiles
        cycles = int(tiles.clock.max(initial=0))
        busy = int(tiles.busy.sum())
        blocked = int(tiles.blocked.sum())
        events, dropped = self._events()
        sram = np.zeros((cfg.height, cfg.width), dtype=np.int64)  # tiles outside every region hold nothing
        for r in p.regions:
            sram[r.y0:r.y1, r.x0:r.x1] = p.sram_bytes_used(r)
        sram = np.where(tiles.icount > 0, sram.reshape(-1), 0)
        return RunStats(
            tiles=cfg.tiles, cycles=cycles, seconds=cfg.seconds(cycles), clock_mhz=cfg.clock_mhz,
            timing=self.timing, instructions=int(tiles.icount.sum()),
            wavelets=int(tiles.sent.sum()), wavelet_hops=int(s.links.wavelets.sum()),
            sram_peak_bytes=p.sram_bytes_used(), sram_bytes_per_tile=cfg.sram_bytes,
            colors_used=int(p.routes.shape[1]),
            utilization=busy / (cycles * cfg.tiles) if cycles else 0.0,
            blocked_fraction=blocked / (cycles * cfg.tiles) if cycles else 0.0,
            fast_cycles=cycles, rounds=rounds, tile_visits=int(s.active.count[A_VISITS]),
            undelivered_wavelets=int(s.queues.count.sum()), wall_seconds=wall,
            phases=self.phase_table(), regions=self.region_table(cycles),
            fabric={} if self.fabric is None else self.fabric.summary(),
            physical_wavelet_hops=int((s.links.wavelets * s.links.hops).sum()),
            per_tile_cycles=tiles.clock.copy(), per_tile_busy=tiles.busy.copy(),
            per_tile_blocked=tiles.blocked.copy(), per_tile_instructions=tiles.icount.copy(),
            per_tile_sram_bytes=sram.astype(np.int64), link_wavelets=s.links.wavelets.copy(),
            events=events, events_dropped=dropped)

    def region_table(self, cycles: int) -> list[dict]:
        """Per code region, summed over its tiles: cycles computing (vector and mmac),
        waiting on the fabric (for another region's data too), on scalar work, and
        halted while the run went on; with when its last tile halted."""
        p, tiles, cfg = self.program, self.state.tiles, self.program.config
        table = []
        for r in p.regions:
            sel = np.zeros((cfg.height, cfg.width), bool)
            sel[r.y0:r.y1, r.x0:r.x1] = True
            sel = sel.reshape(-1)
            clock, busy, blocked = tiles.clock[sel], tiles.busy[sel], tiles.blocked[sel]
            table.append({"name": r.name, "x0": r.x0, "y0": r.y0, "x1": r.x1, "y1": r.y1, "tiles": int(sel.sum()),
                          "compute": int(busy.sum()), "blocked": int(blocked.sum()),
                          "scalar": int((clock - busy - blocked).sum()), "halted": int((cycles - clock).sum()),
                          "last_cycle": int(clock.max(initial=0)), "sram_bytes": p.sram_bytes_used(r)})
        return table

    def phase_table(self) -> list[dict]:
        """Per phase (source statement): the cycles it spans on the machine and
        its compute, blocked and scalar cycles and instructions summed over tiles."""
        rec = self.state.recorder
        acc = rec.phase_acc.sum(axis=0)
        first = rec.phase_span[:, :, 0].min(axis=0)
        last = rec.phase_span[:, :, 1].max(axis=0)
        table = []
        for i, name in enumerate(self.phase_names):
            if last[i] < 0:
                continue  # no tile ran it
            table.append({"name": name, "first_cycle": int(first[i]), "last_cycle": int(last[i]),
                          "compute": int(acc[i, PH_COMPUTE]), "blocked": int(acc[i, PH_BLOCKED]),
                          "scalar": int(acc[i, PH_SCALAR]), "instructions": int(acc[i, PH_INSTRUCTIONS])})
        return table

    def _events(self):
        """The kept trace records of all traced tiles, in time order per tile."""
        rec = self.state.recorder
        if not self.traced:
            return None, 0
        kept = np.minimum(rec.n_events, rec.events.shape[1])
        parts = [rec.events[i, :kept[i]] for i in range(len(self.traced))]
        events = np.concatenate(parts) if parts else np.zeros((0, 6), dtype=np.int64)
        return events, int((rec.n_events - kept).sum())

    # ------------------------------------------------------------- reports
    def _where(self, t: int) -> str:
        w = self.program.config.width
        return f"({t % w},{t // w})"

    def _instr_text(self, t: int, pc: int | None = None) -> str:
        p = self.program
        pc = int(self.state.pc[t]) if pc is None else pc
        if 0 <= pc < len(p.code):
            return f"pc {pc}: {format_instruction(p.code[pc], p.descs, p.fimm)}"
        return f"pc {pc}"

    def _raise_fault(self):
        s = self.state
        tiles = np.nonzero(s.status == ST_FAULT)[0]
        t = int(tiles[0])
        if int(s.tiles.fault[t]) in BUDGET_FAULTS:
            which = ("instruction", self.budget.instructions, "--max-instructions") \
                if int(s.tiles.fault[t]) == FAULT_LIMIT else ("cycle", self.budget.cycles, "--max-cycles")
            raise BudgetError(self._budget_report(f"tile {self._where(t)} used its {which[0]} budget of "
                                                  f"{which[1]} ({which[2]})"))
        more = f" (and {len(tiles) - 1} more tiles)" if len(tiles) > 1 else ""
        raise EmulatorError(f"tile {self._where(t)} faulted: {FAULT_NAMES.get(int(s.tiles.fault[t]), 'fault')} "
                            f"at {self._instr_text(t)}{more}")

    def _raise_fabric_error(self, err):
        code, t, color = (int(v) for v in err)
        name = self._color_name(color)
        if code == fabric.ERR_CONFLICT:
            raise EmulatorError(f"color conflict on color {color}{name}: tile {self._where(t)} sends while "
                                "another sender's message to the same receiver is still in flight")
        if code == fabric.ERR_ROUTE_LOOP:
            raise EmulatorError(f"routes of color {color}{name} loop (send from tile {self._where(t)})")
        raise EmulatorError(f"send from tile {self._where(t)} on color {color}{name} reaches no receiver "
                            f"({self._instr_text(t)})")

    def _budget_report(self, what: str) -> str:
        """What ran out, then the tiles that had not finished and where they are."""
        s = self.state
        unfinished = np.nonzero(s.status != ST_HALT)[0]
        lines = [f"run stopped: {what}; {len(unfinished)} of {self.program.config.tiles} tiles had not "
                 "finished (a larger budget may help, or the program does not end)"]
        for t in unfinished[:8]:
            t = int(t)
            word, pc = STATUS_WORDS[int(s.status[t])], int(s.pc[t])
            if s.status[t] == ST_WAIT:
                pc = int(s.tiles.wait_pc[t])
                kind = int(s.streams.kind[t, int(s.tiles.wait_slot[t])])
                word = {SL_SENDING: "sending", SL_RECEIVING: "receiving"}.get(kind, word)
            lines.append(f"  tile {self._where(t)} {word} at {self._instr_text(t, pc)}{self._source_line(t, pc)}")
        if len(unfinished) > 8:
            lines.append(f"  ... and {len(unfinished) - 8} more")
        return "\n".join(lines)

    def _source_line(self, t: int, pc: int | None = None) -> str:
        lines = self.program.meta.get("source_lines")
        pc = int(self.state.pc[t]) if pc is None else pc
        if isinstance(lines, list) and 0 <= pc < len(lines) and lines[pc]:
            return f" ({self.program.meta.get('source', 'source')} line {lines[pc]})"
        return ""

    def _color_name(self, color: int) -> str:
        names = self.program.color_names
        return f" ({names[color]})" if color < len(names) else ""

    def _deadlock_report(self) -> str:
        p, s = self.program, self.state
        st = s.streams
        blocked = np.nonzero(s.status == ST_WAIT)[0]
        lines = [f"deadlock: {len(blocked)} tiles are blocked and no wavelet can move"]
        for t in blocked[:12]:
            t = int(t)
            slot = int(s.tiles.wait_slot[t])
            color, d = int(st.color[t, slot]), int(st.desc[t, slot])
            total = int(np.prod(p.descs[d, 2:10:2], dtype=np.int64))
            left = total - int(st.done[t, slot])
            name = f"color {color}{self._color_name(color)}"
            if st.kind[t, slot] == SL_SENDING:
                what = (f"waits to send {left} more wavelets on {name} "
                        f"(queues ahead hold {self._queue_summary(t, color)})")
            elif st.kind[t, slot] == SL_RECEIVING:
                what = f"waits to receive {left} more wavelets on {name} ({int(s.queues.count[t, color])} queued)"
            else:
                what = f"waits for stream slot {slot}"
            lines.append(f"  tile {self._where(t)} {what}; {self._instr_text(t, int(s.tiles.wait_pc[t]))}")
        if len(blocked) > 12:
            lines.append(f"  ... and {len(blocked) - 12} more blocked tiles")
        halted = int(np.sum(s.status == ST_HALT))
        if halted:
            lines.append(f"  {halted} tiles have halted")
        return "\n".join(lines)

    def _queue_summary(self, t: int, color: int) -> str:
        cfg, s = self.program.config, self.state
        scratch = s.links.scratch
        nd, _ = fabric.trace_route(s.routes, s.links.hops, cfg.width, cfg.height, t, color, scratch)
        dest = scratch[fabric.DEST, :max(nd, 0)]
        parts = [f"{self._where(int(e))}: {int(s.queues.count[e, color])}/{cfg.queue_depth}" for e in dest[:4]]
        return ", ".join(parts) + (" ..." if nd > 4 else "")


def available_memory_bytes() -> int | None:
    """Memory the OS can give this process now (Linux MemAvailable), if known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _require_memory(need: int, cfg) -> None:
    have = available_memory_bytes()
    if have is not None and need > 0.9 * have:
        raise EmulatorError(f"the emulator needs about {need / 2**30:.1f} GiB of state for "
                            f"{cfg.width}x{cfg.height} tiles, and this machine has {have / 2**30:.1f} GiB "
                            "available")


STATUS_WORDS = {ST_RUN: "running", ST_WAIT: "waiting on the fabric", ST_HALT: "halted", ST_FAULT: "stopped"}


def _pace(budget: np.ndarray, seconds: float, tiles: int) -> None:
    """Aim each call into the core at about 0.1 s: more rounds and longer slices
    while calls are quick, fewer and shorter when one was slow. Pauses change
    no result (budget.py), so this may follow the wall clock."""
    if seconds < 0.05:
        budget[B_ROUNDS_PER_CALL] = min(budget[B_ROUNDS_PER_CALL] * 2, 1 << 20)
        budget[B_SLICE_INSTRUCTIONS] = min(budget[B_SLICE_INSTRUCTIONS] * 2, max(64, (1 << 26) // tiles))
        budget[B_SLICE_CYCLES] = min(budget[B_SLICE_CYCLES] * 2, max(1 << 16, (1 << 31) // tiles))
    elif seconds > 0.2:
        budget[B_ROUNDS_PER_CALL] = max(budget[B_ROUNDS_PER_CALL] // 2, 1)
        budget[B_SLICE_INSTRUCTIONS] = max(budget[B_SLICE_INSTRUCTIONS] // 2, 64)
        budget[B_SLICE_CYCLES] = max(budget[B_SLICE_CYCLES] // 2, 1 << 10)


def run_program(program: Program, inputs: dict) -> tuple[dict, RunStats]:
    emu = Emulator(program)
    emu.load_inputs(inputs)
    stats = emu.run()
    return emu.read_outputs(), stats


__all__ = ["Emulator", "EmulatorError", "DeadlockError", "BudgetError", "RunBudget", "RunStats", "run_program"]
