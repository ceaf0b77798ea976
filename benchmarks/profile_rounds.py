"""Where a run's wall time goes: the compute phase, the fabric phase and the copies, per tile visit.

scheduler.run_rounds keeps the whole round loop in numba, so it cannot time its
own phases. This tool drives the same numba phases one call at a time from
Python and times each, then checks that it ended where a normal run ends (the
same cycles and the same output bits), so that a change to run_rounds that
this loop does not follow shows up as a failed check rather than as wrong
figures.

    python benchmarks/profile_rounds.py --kernel matmul --side 128
    python benchmarks/profile_rounds.py --kernel gemv --side 1024 --timing off
    python benchmarks/profile_rounds.py --kernel matmul --side 256 --perf-map   # then: perf report

--perf-map compiles the numba core afresh (in a temporary cache: code loaded
from numba's cache carries no symbol table) and writes /tmp/perf-PID.map, so
`perf record -D <ms past the compile> python benchmarks/profile_rounds.py ...`
followed by `perf report --sort symbol` names the JIT functions (run_tile,
fabric_phase, trace_route, ...) instead of printing bare addresses.

Cases are bench_scale.py's: gemv M = N = 4 * side, matmul (SUMMA) 2x2 blocks per tile.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time


def write_perf_map(modules) -> int:
    """Write /tmp/perf-<pid>.map for every function the modules' compiled dispatchers
    hold, with the libraries they link (the prange bodies live there). Returns the count."""
    from numba.core.registry import CPUDispatcher
    entries, seen = [], set()
    for mod in modules:
        for value in vars(mod).values():
            if not isinstance(value, CPUDispatcher):
                continue
            stack = [cres.library for cres in value.overloads.values()]
            while stack:
                lib = stack.pop()
                if id(lib) in seen:
                    continue
                seen.add(id(lib))
                stack.extend(getattr(lib, "_linking_libraries", ()))
                for fn in lib._final_module.functions:
                    if not fn.is_declaration:
                        address = lib.get_pointer_to_function(fn.name)
                        if address:
                            entries.append((address, fn.name))
    entries = sorted(set(entries))
    with open(f"/tmp/perf-{os.getpid()}.map", "w") as fh:
        for i, (address, name) in enumerate(entries):
            size = entries[i + 1][0] - address if i + 1 < len(entries) else 4096
            fh.write(f"{address:x} {min(size, 1 << 20):x} {name}\n")
    return len(entries)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernel", default="matmul", choices=["gemv", "matmul"])
    ap.add_argument("--side", type=int, default=128)
    ap.add_argument("--timing", default="fast", choices=["fast", "off"])
    ap.add_argument("--repeat", type=int, default=2, help="runs, each on fresh state (default 2)")
    ap.add_argument("--perf-map", action="store_true", help="compile afresh and write /tmp/perf-PID.map")
    args = ap.parse_args(argv)
    if args.perf_map:  # before numba is imported: the core must compile here to keep its symbols
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="tilegrid-profile-")

    import numpy as np

    from bench_matmul import cpu_name
    from bench_scale import compile_case, make_inputs
    from tilegrid.emulator import Emulator
    from tilegrid.emulator import core, fabric, scheduler, simd_matmac, vector_ops
    from tilegrid.emulator.state import A_HALTED, A_VISITS

    side = args.side
    inputs = make_inputs(args.kernel, side)
    program = compile_case(args.kernel, side, inputs)
    cfg = program.config
    reference = Emulator(program, timing=args.timing)
    reference.load_inputs(inputs)
    expected_stats = reference.run()
    expected = reference.read_outputs()
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; {args.kernel} on {side}x{side} tiles, "
          f"timing {args.timing}")
    print(f"{'run':>4}{'total':>9}{'compute':>9}{'settle':>8}{'fabric':>8}{'copies':>8}{'visits':>14}"
          f"{'ns/visit: compute':>19}{'fabric+copies':>15}")
    for rep in range(args.repeat):
        emu = Emulator(program, timing=args.timing)
        emu.load_inputs(inputs)
        p, s = emu.program, emu.state
        timing = cfg.timing_vector(detail=args.timing != "off")
        budget = emu.budget.vector(cfg.tiles)
        err = np.zeros(3, dtype=np.int64)
        spent = dict(compute=0.0, settle=0.0, fabric=0.0, copies=0.0)
        t_start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            core.compute_phase(p.code, p.descs, p.fimm, s.tiles, s.streams, s.queues, s.recorder, timing,
                               budget, s.active)
            t1 = time.perf_counter()
            _, faulted = scheduler.settle_run_list(s.tiles.status, s.streams.kind, s.active)
            spent["compute"] += t1 - t0
            spent["settle"] += time.perf_counter() - t1
            if faulted:
                raise SystemExit("profile_rounds: a tile faulted")
            if s.active.count[A_HALTED] == cfg.tiles:
                break
            while True:
                t0 = time.perf_counter()
                _, n_tasks, full = fabric.fabric_phase(p.code, p.descs, s.tiles, s.streams, s.queues, s.links,
                                                       s.recorder, s.routes, cfg.width, cfg.height, timing,
                                                       emu._tasks, err, s.active)
                t1 = time.perf_counter()
                if n_tasks:
                    fabric.run_copy_tasks(emu._tasks, n_tasks, p.descs, s.tiles.mem, s.tiles.mem_span,
                                          s.queues.fifo)
                spent["fabric"] += t1 - t0
                spent["copies"] += time.perf_counter() - t1
                if err[0]:
                    raise SystemExit("profile_rounds: a fabric error")
                if not full:
                    break
            scheduler.drop_finished_senders(s.streams.kind, s.active)
        total = time.perf_counter() - t_start
        got = emu.read_outputs()
        same_bits = all(np.array_equal(np.asarray(got[k]).view(np.uint32), np.asarray(v).view(np.uint32))
                        for k, v in expected.items())
        if int(s.tiles.clock.max()) != expected_stats.cycles or not same_bits:
            raise SystemExit("profile_rounds: this loop no longer ends where scheduler.run_rounds does "
                             "(cycles or output bits differ): bring it up to date")
        visits = int(s.active.count[A_VISITS])
        print(f"{rep + 1:>4}{total:>8.2f}s{spent['compute']:>8.2f}s{spent['settle']:>7.2f}s"
              f"{spent['fabric']:>7.2f}s{spent['copies']:>7.2f}s{visits:>14,}"
              f"{spent['compute'] / visits * 1e9:>19.0f}{(spent['fabric'] + spent['copies']) / visits * 1e9:>15.0f}")
    if args.perf_map:
        n = write_perf_map([core, fabric, scheduler, simd_matmac, vector_ops])
        print(f"wrote /tmp/perf-{os.getpid()}.map ({n} functions)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
