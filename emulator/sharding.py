"""A run sharded over workers by bands of rows, with the same bits and cycles as one process.

What takes the memory at scale is SRAM: a full wafer's 44 GB of it against
about 3 KB of control state per tile (docs/scaling.md). So each worker holds
the SRAM of its own band of rows only, and a replica of the whole grid's
control state (registers, stream slots, queue counters, links, active sets).

A round is the one-process round (scheduler.run_rounds), in steps:

1. compute: each worker runs the compute phase on its own band's runnable
   tiles. A tile's compute phase touches only its own state, so the bands run
   at once and their results are the one-process results;
2. exchange: each worker sends the control rows of the tiles it ran to the
   others, so every replica is again the same;
3. fabric: every worker runs the same fabric phase on its replica. It is
   deterministic and reads no SRAM, so every replica makes the same decisions
   the one process would, in the same ascending sender order;
4. copies: a worker carries out the copies into its own tiles. The data of a
   copy from another band's tile is sent by that band's worker: these are the
   wavelets that cross band boundaries each round.

Workers are in-process objects (backend "local", for tests and debugging) or
Ray actors (backend "ray": a local Ray, or a cluster at an address).
"""
from __future__ import annotations

import numpy as np

from .budget import B_ROUNDS, P_ROUNDS
from .core import compute_phase
from .fabric import copy_in_many, copy_out_many, fabric_phase, run_copy_tasks
from .scheduler import DEADLOCK, DONE, FABRIC_ERROR, FAULT, ROUND_BUDGET, drop_finished_senders, settle_run_list
from .state import A_HALTED, A_RUN, A_VISITS, ST_RUN, FabricState

TILE_ROWS = ("regs", "pc", "status", "fault", "wait_slot", "wait_pc", "clock", "busy", "blocked", "icount", "sent")
QUEUE_ROWS = ("head", "count", "ready", "owner")  # the fifo's payload stays with its tile's band


def bands(height: int, workers: int) -> list[tuple[int, int]]:
    """Rows [y0, y1) of each worker: as equal as they can be, in order."""
    if not 1 <= workers <= height:
        raise ValueError(f"--workers must be between 1 and the grid's {height} rows, got {workers}")
    cuts = [height * i // workers for i in range(workers + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


class BandWorker:
    """One band of rows: its SRAM, and a replica of the whole grid's control state."""

    def __init__(self, program, rows, state_args: dict, budget, timing):
        self.program = program
        self.rows = tuple(rows)
        self.state = FabricState(program, rows=self.rows, **state_args)
        cfg = program.config
        self.owner = np.zeros(cfg.tiles, dtype=bool)
        self.owner[rows[0] * cfg.width:rows[1] * cfg.width] = True
        self.budget, self.timing = budget, timing
        self.tasks = np.zeros((max(4 * cfg.tiles, 64), 9), dtype=np.int64)
        self.err = np.zeros(3, dtype=np.int64)

    def memory(self) -> dict:
        """Bytes this worker's state takes: its band's SRAM, and the replicated rest."""
        sram = self.state.tiles.mem.nbytes
        return {"sram": sram, "control": self.state.nbytes() - sram}

    # ------------------------------------------------------------- host I/O
    def write_blocks(self, rect, addr, blocks) -> None:
        """blocks [rect's rows, columns, words] at word addr: this band's rows of them."""
        view, first = self.state.region_memory(self.program, rect)
        view[:, :, addr:addr + blocks.shape[2]] = blocks[first - rect[1]:first - rect[1] + view.shape[0]]

    def read_blocks(self, rect):
        view, first = self.state.region_memory(self.program, rect)
        return first, view.copy()

    # --------------------------------------------------------------- a round
    def compute(self, incoming=()):
        """The last round's step 4 for copies from other bands (deliver), then step 1 and
        step 2's first half: run this band's tiles; (instructions retired, tiles run, the
        control rows of the tiles it ran)."""
        self.deliver(incoming)
        s, p = self.state, self.program
        active = s.active
        n = int(active.count[A_RUN])
        everyone = active.run[:n].copy()
        mine = everyone[self.owner[everyone]]
        visits, retired = 0, 0
        todo = mine
        while len(todo):  # a tile whose slice ended (budget.py) goes on in the same phase
            active.run[:len(todo)] = todo
            active.count[A_RUN] = len(todo)
            before = int(active.count[A_VISITS])
            retired += compute_phase(p.code, p.descs, p.fimm, s.tiles, s.streams, s.queues, s.recorder,
                                     self.timing, self.budget, active)
            visits += int(active.count[A_VISITS]) - before
            active.count[A_VISITS] = before
            todo = todo[s.tiles.status[todo] == ST_RUN]
        active.run[:n] = everyone
        active.count[A_RUN] = n
        return retired, visits, self._rows(mine)

    def _rows(self, tiles):
        s = self.state
        return (tiles, [getattr(s.tiles, f)[tiles] for f in TILE_ROWS],
                [a[tiles] for a in s.streams], [getattr(s.queues, f)[tiles] for f in QUEUE_ROWS])

    def apply(self, deltas) -> None:
        """Step 2's second half: the other bands' tiles as their workers left them."""
        s = self.state
        for tiles, tile_rows, stream_rows, queue_rows in deltas:
            for f, rows in zip(TILE_ROWS, tile_rows):
                getattr(s.tiles, f)[tiles] = rows
            for a, rows in zip(s.streams, stream_rows):
                a[tiles] = rows
            for f, rows in zip(QUEUE_ROWS, queue_rows):
                getattr(s.queues, f)[tiles] = rows

    def exchange(self, deltas):
        """Step 2's second half, then steps 3 and 4 unless the run ended: (faulted, done,
        wavelets moved, fabric error, the data this band's tiles send into other bands)."""
        self.apply(deltas)
        s = self.state
        _, faulted = settle_run_list(s.tiles.status, s.streams.kind, s.active)
        done = bool(s.active.count[A_HALTED] == self.program.config.tiles)
        if faulted or done:
            return int(faulted), done, 0, self.err.copy(), []
        return (0, False) + self.fabric()

    def fabric(self):
        """Steps 3 and 4: the fabric phase on the replica, this band's own copies, and the
        data this band's tiles send into other bands: (wavelets moved, error, outgoing)."""
        s, p, cfg = self.state, self.program, self.program.config
        moved, outgoing = 0, []
        while True:
            m, n_tasks, full = fabric_phase(p.code, p.descs, s.tiles, s.streams, s.queues, s.links, s.recorder,
                                            s.routes, cfg.width, cfg.height, self.timing, self.tasks, self.err,
                                            s.active)
            moved += m
            if n_tasks:
                tasks = self.tasks[:n_tasks]
                src_here, dst_here = self.owner[tasks[:, 0]], self.owner[tasks[:, 4]]
                local = np.ascontiguousarray(tasks[src_here & dst_here])
                if len(local):
                    run_copy_tasks(local, len(local), p.descs, s.tiles.mem, s.tiles.mem_span, s.queues.fifo)
                leaving = np.ascontiguousarray(tasks[src_here & ~dst_here])
                if len(leaving):
                    data, offsets = copy_out_many(leaving, p.descs, s.tiles.mem, s.tiles.mem_span)
                    outgoing.append((leaving, data, offsets))
            if self.err[0] or not full:
                break
        drop_finished_senders(s.streams.kind, s.active)
        return moved, self.err.copy(), outgoing

    def deliver(self, incoming=()) -> None:
        """Step 4 for copies from other bands: write their data into this band's tiles."""
        s, p = self.state, self.program
        for tasks, data, offsets in incoming:
            mine = self.owner[tasks[:, 4]]
            if mine.any():
                copy_in_many(np.ascontiguousarray(tasks[mine]), data, np.ascontiguousarray(offsets[:-1][mine]),
                             p.descs, s.tiles.mem, s.tiles.mem_span, s.queues.fifo)

    def control(self, replica: bool):
        """At the end: the replica's control state (if asked), and this band's rows of the recorder."""
        s = self.state
        mine = np.nonzero(self.owner)[0]
        traced = s.recorder.trace_row[mine]
        rows = traced[traced >= 0]
        return (mine, {} if not replica else
                dict(tiles=s.tiles._asdict(), streams=s.streams._asdict(), queues=s.queues._asdict(),
                     links=s.links._asdict(), active=s.active._asdict()),
                {"phase_acc": s.recorder.phase_acc[mine], "phase_span": s.recorder.phase_span[mine],
                 "rows": rows, "events": s.recorder.events[rows], "n_events": s.recorder.n_events[rows]})


class Shards:
    """The workers of one sharded run and the round loop that drives them."""

    def __init__(self, program, workers: int, state_args: dict, budget, timing, backend: str = "ray",
                 address: str | None = None):
        self.program = program
        self.rows = bands(program.config.height, workers)
        self.backend = backend
        if backend == "ray":
            import ray  # the optional extra: pip install -e '.[distributed]'
            if not ray.is_initialized():
                ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                         **({} if address else {"num_cpus": max(workers, 1)}))
            actor = ray.remote(BandWorker)
            self._ray = ray
            self.workers = [actor.remote(program, rows, state_args, budget, timing) for rows in self.rows]
        elif backend == "local":
            self.workers = [BandWorker(program, rows, state_args, budget, timing) for rows in self.rows]
        else:
            raise ValueError(f"unknown backend {backend!r}")
        self.visits = 0

    def _all(self, method: str, args=None):
        """Call method on every worker (args[i] for worker i) and wait for all."""
        args = args or [()] * len(self.workers)
        if self.backend == "ray":
            return self._ray.get([getattr(w, method).remote(*a) for w, a in zip(self.workers, args)])
        return [getattr(w, method)(*a) for w, a in zip(self.workers, args)]

    def write_blocks(self, rect, addr, blocks) -> None:
        self._all("write_blocks", [(rect, addr, blocks)] * len(self.workers))

    def memory(self) -> list[dict]:
        return self._all("memory")

    def read_blocks(self, rect) -> np.ndarray:
        parts = sorted(self._all("read_blocks", [(rect,)] * len(self.workers)), key=lambda part: part[0])
        return np.concatenate([view for _, view in parts if view.shape[0]], axis=0)

    def run(self, budget, progress_vector, err) -> int:
        """Rounds until the run ends; the outcome codes of scheduler.run_rounds. Two calls
        per worker a round: compute (after the last round's incoming copies), and the
        exchange of what it changed, with the fabric phase."""
        sent: list = []
        try:
            while True:
                if progress_vector[P_ROUNDS] >= budget[B_ROUNDS]:
                    return ROUND_BUDGET
                progress_vector[P_ROUNDS] += 1
                results = self._all("compute", [(sent,)] * len(self.workers))
                sent = []
                retired = sum(r[0] for r in results)
                self.visits += sum(r[1] for r in results)
                deltas = [r[2] for r in results]
                ends = self._all("exchange", [([d for j, d in enumerate(deltas) if j != i],)
                                              for i in range(len(deltas))])
                faulted, done, moved, error = ends[0][:4]  # the replicas agree
                sent = [item for e in ends for item in e[4]]
                if faulted:
                    return FAULT
                if done:
                    return DONE
                if error[0]:
                    err[:] = error
                    return FABRIC_ERROR
                if retired == 0 and moved == 0:
                    return DEADLOCK
        finally:
            if sent:  # the copies of the last fabric phase land before anyone reads the SRAM
                self._all("deliver", [(sent,)] * len(self.workers))

    def pull_into(self, state) -> None:
        """Copy the replicas' control state, and each band's recorder rows, into state
        (the coordinator's, which holds no SRAM), for the stats and reports."""
        for mine, control, rec in self._all("control", [(i == 0,) for i in range(len(self.workers))]):
            for record, arrays in control.items():
                target = getattr(state, record)
                for name, value in arrays.items():
                    if name in ("mem", "mem_span", "fifo"):  # SRAM and payloads stay with the bands
                        continue
                    getattr(target, name)[...] = value
            state.recorder.phase_acc[mine] = rec["phase_acc"]
            state.recorder.phase_span[mine] = rec["phase_span"]
            state.recorder.events[rec["rows"]] = rec["events"]
            state.recorder.n_events[rec["rows"]] = rec["n_events"]
        state.active.count[A_VISITS] = self.visits
