"""`tilegrid sweep`: run one kernel over the Cartesian product of grids and parameters.

    tilegrid sweep matmul --grid 1x1,2x2,4x4 --param M=64,128 --param K=64 --param N=64 --check

The pieces, each usable on its own:
- parse_sweep(...) turns the command's strings into a list of Point, in product order
  (grids outermost, then each --param in the order given), without running anything;
- run_point(point, inputs=None) compiles and runs one point and returns its row; it is a
  top-level function, so it pickles for a process pool or Ray, and it never raises for a
  failed point: the error becomes the row's `error`;
- run_points(points, ...) runs them all on local processes or on Ray, rows in product order;
- write_csv, write_parquet and write_plot write the table.
"""
from __future__ import annotations

import csv
import itertools
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import USER_ERRORS, UserError

MAX_POINTS = 1000
DEFAULT_GRID = "4x4"
RAY_LOCAL = "local"   # the value of a bare `--ray`
STAT_COLUMNS = ("cycles", "instructions", "wavelets", "utilization", "sram_peak_bytes",
                "sram_bytes_per_tile", "rounds")
TAIL_COLUMNS = ("wall_seconds", "emulate_seconds", "check", "error")
RAY_HINT = "pip install -e '.[ray]'"
RESERVED = {"kernel", "grid", "width", "height", "tiles", *STAT_COLUMNS, *TAIL_COLUMNS}


@dataclass(frozen=True)
class Point:
    """One run of a sweep. Everything a worker process needs, and nothing unpicklable."""
    kernel: str                  # the name for reports (bundled name or the file's kernel)
    source: str                  # what compile_kernel takes: a bundled name or a .tg path
    grid: tuple                  # (width, height)
    params: dict                 # passed to the compiler: every --param, swept or fixed
    sizes: dict | None = None    # random inputs: make_inputs(default_rng(seed), sizes); None: inputs given
    inputs_path: str | None = None
    seed: int = 0
    check: bool = False
    machine: dict = field(default_factory=dict)   # MachineConfig overrides: sram_bytes, colors, ...
    threads: int | None = None   # numba threads in the worker (None: leave numba's default)

    def columns(self) -> dict:
        """The parameter columns of this point's row: every --param, then the sizes the
        random inputs were made with that no --param set."""
        cols = dict(self.params)
        for k, v in (self.sizes or {}).items():
            cols.setdefault(k, v)
        return cols


# ------------------------------------------------------------------ parsing
def _number(name: str, text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise UserError(f"--param {name}: {text!r} is not a number") from None


def _split_values(option: str, text: str, example: str = "2,4") -> list[str]:
    values = [v.strip() for v in text.split(",")]
    if not text.strip() or any(not v for v in values):
        raise UserError(f"{option} has an empty value in {text!r}; list values with commas, e.g. {example}")
    dups = sorted({v for v in values if values.count(v) > 1})
    if dups:
        raise UserError(f"{option} lists {dups[0]!r} twice in {text!r}")
    return values


def parse_grids(text: str) -> list[tuple[int, int]]:
    from tilegrid.emulator.config import parse_grid

    grids = []
    for item in _split_values("--grid", text, "2x2,4x4"):
        try:
            grids.append(parse_grid(item))
        except ValueError as exc:
            raise UserError(f"--grid: {exc}") from None
    if len(set(grids)) != len(grids):
        raise UserError(f"--grid lists a grid twice in {text!r}")
    return grids


def parse_param_lists(items: list[str]) -> dict[str, list]:
    """['heads=2,4', 'S=64'] -> {'heads': [2, 4], 'S': [64]}, in the order given."""
    params: dict[str, list] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise UserError(f"--param takes NAME=VALUE[,VALUE...], got {item!r}")
        if name in RESERVED:
            raise UserError(f"--param {name}: '{name}' names a column of the results; rename the parameter")
        if name in params:
            raise UserError(f"--param {name} is given twice; list its values in one --param, "
                            f"e.g. --param {name}=2,4")
        params[name] = [_number(name, v) for v in _split_values(f"--param {name}", value)]
        if len(set(params[name])) != len(params[name]):
            raise UserError(f"--param {name} lists a value twice in {value!r}")
    return params


def kernel_identity(kernel: str):
    """(report name, KernelSpec or None) for a bundled name or a .tg path.
    A .tg file is matched to a bundled spec by its entry kernel's name, as --check does."""
    from tilegrid import kernels
    from tilegrid.compiler.parser import parse

    from .api import read_source

    if kernel in kernels.BUNDLED:
        return kernel, kernels.BUNDLED[kernel]
    source, path = read_source(kernel)          # UserError for a missing file
    module = parse(source, path)                # CompileError for a syntax error
    if not module.kernels:
        return Path(kernel).stem, None
    name = module.kernels[-1].name
    return name, kernels.spec_for(name)


def parse_sweep(kernel: str, grid: str = DEFAULT_GRID, params: list[str] = (), *, inputs: str | None = None,
                seed: int = 0, check: bool = False, machine: dict | None = None,
                max_points: int = MAX_POINTS) -> list[Point]:
    """The sweep's points in product order: grids outermost, then each --param in order."""
    from tilegrid import kernels

    name, spec = kernel_identity(kernel)
    grids = parse_grids(grid)
    lists = parse_param_lists(list(params))
    total = len(grids) * math.prod(len(v) for v in lists.values())
    if total > max_points:
        raise UserError(f"the sweep has {total} points, more than the limit of {max_points}; "
                        "sweep fewer values at once")
    if inputs is None and spec is None:
        raise UserError(f"kernel '{kernel}' has no bundled spec to make random inputs with; "
                        "pass fixed inputs with --inputs FILE.npz")
    if check and spec is None:
        raise UserError(f"--check needs a reference, and kernel '{name}' has none "
                        f"(bundled: {', '.join(kernels.BUNDLED)})")
    source = kernel if kernel in kernels.BUNDLED else str(Path(kernel).resolve())
    points = []
    for g in grids:
        for combo in itertools.product(*lists.values()):
            bound = dict(zip(lists, combo))
            sizes = None if inputs is not None else {**spec.demo_sizes, **bound}
            points.append(Point(kernel=name, source=source, grid=g, params=bound, sizes=sizes,
                                inputs_path=inputs, seed=seed, check=check, machine=dict(machine or {})))
    return points


def _fabric_bytes(point: Point) -> int:
    from tilegrid.emulator.config import MachineConfig

    sram = point.machine.get("sram_bytes", MachineConfig.sram_bytes)
    return point.grid[0] * point.grid[1] * sram


def load_inputs(path: str, points: list[Point]) -> dict:
    """The npz, refused (UserError) when its arrays exceed the SRAM of the points' largest fabric."""
    from .input_files import load_npz   # sizes the archive from its headers before reading it

    big = max(points, key=_fabric_bytes)
    return load_npz(path, _fabric_bytes(big), f"the {big.grid[0]}x{big.grid[1]} fabric has SRAM for")


def point_inputs(point: Point) -> dict:
    """The inputs a point runs on: the npz, or the bundled kernel's random inputs."""
    import numpy as np

    from tilegrid import kernels

    from .api import validate_inputs

    if point.inputs_path is not None:
        return validate_inputs(load_inputs(point.inputs_path, [point]))
    spec = kernels.spec_for(point.kernel)
    return spec.make_inputs(np.random.default_rng(point.seed), dict(point.sizes))


# ------------------------------------------------------------------ one point
def param_columns(points: list[Point]) -> list[str]:
    names: list[str] = []
    for p in points:
        for k in p.columns():
            if k not in names:
                names.append(k)
    return names


def columns_for(points: list[Point]) -> list[str]:
    """The table's columns, in a stable order."""
    return ["kernel", "grid", "width", "height", "tiles", *param_columns(points), *STAT_COLUMNS, *TAIL_COLUMNS]


def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _blank_row(point: Point) -> dict:
    w, h = point.grid
    return {"kernel": point.kernel, "grid": f"{w}x{h}", "width": w, "height": h, "tiles": w * h,
            **point.columns(), **{k: "" for k in STAT_COLUMNS},
            "wall_seconds": "", "emulate_seconds": "", "check": "-", "error": ""}


_warm = False


def _warm_up() -> None:
    """Load the numba core once per process, so the first point's wall_seconds is not the load."""
    global _warm
    if _warm:
        return
    _warm = True
    import numpy as np

    from .api import run_kernel
    try:
        run_kernel("matmul", {"A": np.ones((1, 1), np.float32), "B": np.ones((1, 1), np.float32)}, grid=(1, 1))
    except Exception:  # noqa: BLE001 - only a warm-up; the point itself reports any problem
        pass


def run_point(point: Point, inputs: dict | None = None) -> dict:
    """Compile and run one point; the row. Never raises for a failed point."""
    row = _blank_row(point)
    try:
        if point.threads:
            import numba
            numba.set_num_threads(max(1, min(point.threads, numba.config.NUMBA_NUM_THREADS)))
        from tilegrid.emulator.config import MachineConfig

        from .api import check_against_reference, compile_kernel, machine, run_program_checked

        _warm_up()
        if inputs is None:
            inputs = point_inputs(point)
        cfg = machine(point.grid, MachineConfig(**point.machine))
        t0 = time.perf_counter()
        compiled = compile_kernel(point.source, point.grid, {k: v.shape for k, v in inputs.items()},
                                  point.params, cfg)
        result = run_program_checked(compiled.program, inputs, point.params, check=False)
        row["wall_seconds"] = round(time.perf_counter() - t0, 6)
        stats = result.stats.to_dict()
        row.update({k: stats[k] for k in STAT_COLUMNS})
        row["emulate_seconds"] = round(stats["wall_seconds"], 6)
        if point.check:
            report = check_against_reference(compiled.program, inputs, result.outputs, point.params)
            row["check"] = "ok" if report.ok else "mismatch"
    except USER_ERRORS as err:
        row["error"] = _one_line(err)
    except Exception as err:  # noqa: BLE001 - a bug in one point must not end the sweep
        row["error"] = f"internal error: {type(err).__name__}: {_one_line(err)}"
    return row


def _failed_row(point: Point, message: str) -> dict:
    row = _blank_row(point)
    row["error"] = message
    return row


def failed(row: dict) -> bool:
    return bool(row["error"]) or row["check"] == "mismatch"


# ------------------------------------------------------------------ all points
def run_points(points: list[Point], jobs: int | None = None, ray_address: str | None = None,
               progress=None) -> list[dict]:
    """Run every point; rows in product order. jobs: local processes (1: in this process).
    ray_address: RAY_LOCAL for a local Ray, or a cluster address for ray.init(address=...)."""
    if not points:
        return []
    if ray_address is not None:
        return _run_ray(points, ray_address, progress)
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(points)))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    if jobs == 1:
        rows = []
        for i, p in enumerate(points):
            rows.append(run_point(p))
            if progress:
                progress(i + 1, len(points), rows[-1])
        return rows
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from dataclasses import replace

    # numba's threading layers and fork do not mix: start clean interpreters.
    ctx = multiprocessing.get_context("spawn")
    rows: list = [None] * len(points)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = {pool.submit(run_point, replace(p, threads=threads)): i for i, p in enumerate(points)}
        try:
            for done, fut in enumerate(as_completed(futures), 1):
                i = futures[fut]
                try:
                    rows[i] = fut.result()
                except Exception as err:  # noqa: BLE001 - a worker that died (crash, out of memory)
                    rows[i] = _failed_row(points[i], f"internal error: the worker process failed "
                                                     f"({type(err).__name__}: {_one_line(err)})")
                if progress:
                    progress(done, len(points), rows[i])
        except BaseException:   # Ctrl-C: drop the points not started rather than wait for them
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return rows


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError(f"--ray needs Ray, which is not installed: {RAY_HINT}") from None
    return ray


def _run_ray(points: list[Point], address: str, progress) -> list[dict]:
    ray = import_ray()
    from dataclasses import replace

    started = False
    if not ray.is_initialized():
        import logging
        try:
            # address="local" starts a new local Ray even when a cluster was started on this machine
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        except Exception as err:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError, ...
            where = "start a local Ray" if address == RAY_LOCAL else f"join the Ray cluster at {address}"
            raise UserError(f"cannot {where}: {_one_line(err)}") from None
        started = True
    try:
        remote = ray.remote(num_cpus=1)(run_point)
        shared = {}
        refs = []
        for p in points:
            if p.inputs_path is not None:   # read the npz once, share it through the object store
                if p.inputs_path not in shared:
                    shared[p.inputs_path] = ray.put(point_inputs(p))
                refs.append(remote.remote(replace(p, threads=1), shared[p.inputs_path]))
            else:
                refs.append(remote.remote(replace(p, threads=1)))
        index = {r: i for i, r in enumerate(refs)}
        rows: list = [None] * len(points)
        pending, done = list(refs), 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            i = index[ready[0]]
            try:
                rows[i] = ray.get(ready[0])
            except Exception as err:  # noqa: BLE001 - a task or node that died
                rows[i] = _failed_row(points[i], f"internal error: the Ray task failed "
                                                 f"({type(err).__name__}: {_one_line(err)})")
            done += 1
            if progress:
                progress(done, len(points), rows[i])
        return rows
    finally:
        if started:
            ray.shutdown()


# ------------------------------------------------------------------ output
def write_csv(rows: list[dict], columns: list[str], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def write_parquet(rows: list[dict], columns: list[str], path: Path) -> bool:
    """Writes the table when pyarrow is importable; False when it is not. A failed point's
    missing numbers are nulls."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return False
    table = {}
    for c in columns:
        values = [r.get(c, "") for r in rows]
        if c not in ("kernel", "grid", "check", "error"):
            values = [None if v == "" else v for v in values]
        table[c] = pa.array(values)
    pq.write_table(pa.table(table), path)
    return True


def write_plot(rows: list[dict], points: list[Point], path: Path) -> None:
    """Cycles and utilization against tiles (log2 x), one line per combination of the other
    parameters (those that vary); failed points are left out."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = param_columns(points)
    varying = [k for k in names if len({r.get(k) for r in rows}) > 1]
    fixed = [k for k in names if k not in varying]
    lines: dict = {}
    for r in rows:
        if r["error"]:
            continue
        lines.setdefault(tuple(r[k] for k in varying), []).append(r)
    fig, (ax_c, ax_u) = plt.subplots(1, 2, figsize=(11, 4.2))
    tiles = sorted({r["tiles"] for r in rows})
    grids_at: dict = {}
    for r in rows:
        grids_at.setdefault(r["tiles"], [])
        if r["grid"] not in grids_at[r["tiles"]]:
            grids_at[r["tiles"]].append(r["grid"])
    for key, group in lines.items():
        group = sorted(group, key=lambda r: (r["tiles"], r["width"]))
        label = ", ".join(f"{k}={v}" for k, v in zip(varying, key)) or "all points"
        xs = [r["tiles"] for r in group]
        ax_c.plot(xs, [r["cycles"] for r in group], marker="o", label=label)
        ax_u.plot(xs, [100 * r["utilization"] for r in group], marker="o", label=label)
    for ax in (ax_c, ax_u):
        ax.set_xscale("log", base=2)
        ax.set_xticks(tiles)
        ax.set_xticklabels([f"{t}\n" + "/".join(grids_at[t]) for t in tiles], fontsize=8)
        ax.set_xlabel("tiles (W x H)")
        ax.grid(True, alpha=0.3)
    ax_c.set_yscale("log")
    ax_c.set_ylabel("cycles (timing model)")
    ax_c.set_title("cycles")
    ax_u.set_ylabel("utilization (%)")
    ax_u.set_ylim(0, 105)
    ax_u.set_title("utilization")
    if lines:
        ax_u.legend(fontsize=8)
    kernel = points[0].kernel if points else ""
    fixed_text = ", ".join(f"{k}={rows[0][k]}" for k in fixed) if rows else ""
    fig.suptitle(f"{kernel} sweep" + (f" ({fixed_text})" if fixed_text else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_row(row: dict, param_names: list[str]) -> str:
    params = " ".join(f"{k}={row[k]}" for k in param_names)
    head = f"{row['grid']:>7} {params}"
    if row["error"]:
        return f"{head}  FAILED: {row['error']}"
    return (f"{head}  {row['cycles']:>9} cycles  util {row['utilization']:6.1%}  "
            f"SRAM {row['sram_peak_bytes'] / 1024:6.1f} KiB  {row['wall_seconds']:7.3f} s  check {row['check']}")


# ------------------------------------------------------------------ the command
def add_arguments(sp) -> None:
    from tilegrid.emulator.config import MachineConfig

    sp.add_argument("kernel", help="a bundled kernel name or a .tg file")
    sp.add_argument("--grid", action="append", default=None, metavar="WxH[,WxH...]",
                    help=f"grids to sweep, e.g. 4x4,8x8,16x16 (default {DEFAULT_GRID})")
    sp.add_argument("--param", action="append", default=[], metavar="NAME=V[,V...]",
                    help="a size or kernel parameter; several values are swept, e.g. --param heads=2,4")
    sp.add_argument("--inputs", metavar="FILE.npz",
                    help="fixed inputs for every point (default: the bundled kernel's random inputs, "
                         "with sizes from --param or its demo sizes)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    sp.add_argument("--check", action="store_true",
                    help="check each point bit for bit against the kernel's reference")
    sp.add_argument("--jobs", type=int, default=None, metavar="N",
                    help="local worker processes (default: the number of CPUs; 1 runs in this process)")
    sp.add_argument("--ray", nargs="?", const=RAY_LOCAL, default=None, metavar="ADDRESS",
                    help=f"run the points on Ray: a local Ray, or join the cluster at ADDRESS "
                         f"(ray.init(address=ADDRESS)); give it after KERNEL. Needs the ray extra: {RAY_HINT}")
    sp.add_argument("--out", metavar="DIR",
                    help="where to write results.csv, results.parquet and sweep.png (default sweep-KERNEL)")
    sp.add_argument("--sram-bytes", type=int, default=MachineConfig.sram_bytes, help="SRAM per tile")
    sp.add_argument("--colors", type=int, default=MachineConfig.colors, help="colors per router")
    sp.add_argument("--queue-depth", type=int, default=MachineConfig.queue_depth,
                    help="wavelets buffered per color at a tile's ramp")


DESCRIPTION = ("Run a kernel over the Cartesian product of grids and parameters, in parallel, and write "
               "results.csv (and results.parquet when pyarrow is installed) and a plot, sweep.png. "
               "Exit status: 0 when every point ran (and passed --check), 1 when any point failed "
               "(compile error, SRAM overflow, deadlock, ...) or mismatched, 2 for bad arguments.")


def _processes(n: int) -> str:
    return "this process" if n <= 1 else f"{n} processes"


def cmd_sweep(args) -> int:
    if args.grid and len(args.grid) > 1:
        raise UserError("--grid is given twice; list the grids in one --grid, e.g. --grid 2x2,4x4")
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {args.jobs}")
    if args.ray is not None and args.jobs is not None:
        raise UserError("--ray and --jobs do not go together: Ray schedules the points itself")
    if args.ray is not None:
        import_ray()
    inputs = str(Path(args.inputs).resolve()) if args.inputs else None
    machine = {"sram_bytes": args.sram_bytes, "colors": args.colors, "queue_depth": args.queue_depth}
    try:
        from tilegrid.emulator.config import MachineConfig
        MachineConfig(**machine)
    except (ValueError, TypeError) as exc:
        raise UserError(str(exc)) from None
    points = parse_sweep(args.kernel, args.grid[0] if args.grid else DEFAULT_GRID, args.param, inputs=inputs,
                         seed=args.seed, check=args.check, machine=machine)
    if inputs is not None:
        from .api import validate_inputs
        validate_inputs(load_inputs(args.inputs, points))   # a bad file: one message, before any point runs
    out = Path(args.out or f"sweep-{points[0].kernel}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create '{out}': {exc.strerror}") from None

    where = (f"Ray ({'local' if args.ray == RAY_LOCAL else args.ray})" if args.ray is not None
             else _processes(min(args.jobs or os.cpu_count() or 1, len(points))))
    print(f"tilegrid sweep: {points[0].kernel}, {len(points)} points on {where}", flush=True)
    tty = sys.stderr.isatty()

    def progress(done, total, row):
        if tty:
            print(f"\r  {done}/{total} done", end="" if done < total else "\n", file=sys.stderr, flush=True)

    from tilegrid.emulator.jit_cache import cache_is_cold
    if cache_is_cold():   # compile the numba core once here, not in every worker at the same time
        _warm_up()
    rows = run_points(points, jobs=args.jobs, ray_address=args.ray, progress=progress)
    columns = columns_for(points)
    for row in rows:
        print(format_row(row, param_columns(points)))
    csv_path, pq_path, png_path = out / "results.csv", out / "results.parquet", out / "sweep.png"
    try:
        write_csv(rows, columns, csv_path)
        wrote_parquet = write_parquet(rows, columns, pq_path)
        write_plot(rows, points, png_path)
        if not wrote_parquet:
            pq_path.unlink(missing_ok=True)   # not a stale table from an earlier sweep
    except OSError as exc:
        raise UserError(f"cannot write into '{out}': {exc}") from None
    n_failed = sum(failed(r) for r in rows)
    print(f"wrote {csv_path}, {pq_path} and {png_path}" if wrote_parquet else
          f"wrote {csv_path} and {png_path}; not results.parquet, as pyarrow is not installed")
    if n_failed:
        print(f"{n_failed} of {len(rows)} points failed", file=sys.stderr)
    return 1 if n_failed else 0
