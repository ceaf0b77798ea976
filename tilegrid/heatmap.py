"""Per-tile heatmaps of a run: one PNG per metric, tile (0,0) top-left as on the fabric.

    paths = write_heatmaps("heatmaps/", result.stats, width, height)

Metrics (a PNG is written for each the stats hold):
  utilization.png   vector/mmac busy cycles as a % of the run's cycles
  blocked.png       cycles the core waited on the fabric, as a % of the run's cycles
  sram.png          SRAM the tile's plan uses, KiB
  instructions.png  instructions retired
  links.png         wavelets sent on each outgoing link, N / E / S / W on one shared scale

Grids up to 16x16 get each tile's value written in its cell; larger grids are drawn as
images only. A boolean `defects` mask [T] greys out and hatches the tiles it marks
(their values leave the colour scale). On a repaired wafer, physical_view places each
logical tile's figures at its physical position, so the maps show the whole wafer with
its defects and spare columns.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

ANNOTATE_MAX = 16          # annotate cells when both sides are at most this
_DPI = 100
_MAX_SIDE_PX = 2000        # the long side of a plot, at most; more tiles than pixels are averaged
_MIN_SIDE_PX = 480
LINK_NAMES = ("N", "E", "S", "W")


def _field(stats, name, default=None):
    if isinstance(stats, dict):
        return stats.get(name, default)
    return getattr(stats, name, default)


def _per_tile(stats, name, T):
    v = _field(stats, name)
    if v is None:
        return None
    arr = np.asarray(v, dtype=np.float64)
    if arr.size == 0:
        return None
    if arr.shape[0] != T:
        raise ValueError(f"{name} has {arr.shape[0]} entries, the grid has {T} tiles")
    return arr


def _compact(v: float) -> str:
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.3g}G"
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    if a >= 100 or float(v).is_integer():
        return f"{v:.0f}"
    return f"{v:.3g}"


def write_heatmaps(directory, stats_like, width, height, defects=None, *, prefix="", dpi=_DPI) -> list[Path]:
    """Write the heatmaps of `stats_like` (RunStats, or a dict with the same fields: cycles,
    per_tile_busy, per_tile_blocked, per_tile_instructions, per_tile_sram_bytes, link_wavelets;
    sram_bytes_per_tile if known) into `directory`; returns the paths written. A metric
    whose field is missing or empty is left out."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width, height = int(width), int(height)
    if width < 1 or height < 1:
        raise ValueError(f"grid {width}x{height}: both sides must be at least 1")
    T = width * height
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    mask = None
    if defects is not None:
        mask = np.asarray(defects, dtype=bool).reshape(-1)
        if mask.size != T:
            raise ValueError(f"defects has {mask.size} entries, the grid has {T} tiles")
        if not mask.any():
            mask = None

    cycles = int(_field(stats_like, "cycles", 0) or 0)
    grid = f"{width}x{height} tiles"
    run = f"{grid}, {cycles:,} cycles"
    plots = []   # (file name, data [T] or [T,4], title, colorbar label, cmap, vmin, vmax, fmt)

    busy = _per_tile(stats_like, "per_tile_busy", T)
    if busy is not None and cycles > 0:
        plots.append(("utilization.png", 100.0 * busy / cycles, "Compute utilization (% of run cycles)",
                      "vector/mmac busy cycles, % of run", "viridis", 0.0, 100.0, "{:.0f}%"))
    blocked = _per_tile(stats_like, "per_tile_blocked", T)
    if blocked is not None and cycles > 0:
        plots.append(("blocked.png", 100.0 * blocked / cycles, "Time blocked on the fabric (% of run cycles)",
                      "core cycles waiting on streams, % of run", "inferno", 0.0, 100.0, "{:.0f}%"))
    sram = _per_tile(stats_like, "per_tile_sram_bytes", T)
    if sram is not None:
        capacity = _field(stats_like, "sram_bytes_per_tile")
        cap = f"; capacity {int(capacity) / 1024:g} KiB" if capacity else ""
        plots.append(("sram.png", sram / 1024.0, f"Peak SRAM used (KiB{cap})", "KiB", "cividis", None, None,
                      "{:.1f}"))
    instr = _per_tile(stats_like, "per_tile_instructions", T)
    if instr is not None:
        plots.append(("instructions.png", instr, "Instructions retired (count)", "instructions", "viridis", None,
                      None, None))

    written = []
    for name, data, title, label, cmap, vmin, vmax, fmt in plots:
        fig, ax = _figure(plt, width, height, 1, 1, dpi)
        im = _draw(ax, data, width, height, mask, cmap, vmin, vmax, fmt)
        fig.colorbar(im, ax=ax, label=label, fraction=0.046, pad=0.03)
        ax.set_title(f"{title}\n{_subtitle(data, width, mask, run, fmt)}", fontsize=10)
        written.append(_save(fig, plt, directory / f"{prefix}{name}", dpi))

    links = _field(stats_like, "link_wavelets")
    if links is not None and np.asarray(links).size:
        arr = np.asarray(links, dtype=np.float64)
        if arr.shape != (T, 4):
            raise ValueError(f"link_wavelets has shape {list(arr.shape)}, expected [{T}, 4]")
        valid = arr[~mask] if mask is not None else arr
        top = float(valid.max()) if valid.size else 0.0
        fig, axes = _figure(plt, width, height, 2, 2, dpi)
        im = None
        for d, ax in enumerate(axes.flat):
            im = _draw(ax, arr[:, d], width, height, mask, "plasma", 0.0, max(top, 1.0), None, legend=d == 3)
            total = float(arr[:, d].sum())
            ax.set_title(f"{LINK_NAMES[d]} links: {_compact(total)} wavelets", fontsize=9)
        fig.colorbar(im, ax=axes, label="wavelets sent on the link", fraction=0.046, pad=0.03)
        fig.suptitle(f"Link traffic: wavelets sent per outgoing link (count)\n{run}", fontsize=10)
        written.append(_save(fig, plt, directory / f"{prefix}links.png", dpi))
    return written


PER_TILE_FIELDS = ("per_tile_busy", "per_tile_blocked", "per_tile_instructions", "per_tile_sram_bytes",
                   "link_wavelets")


def physical_view(stats, fabric) -> tuple[dict, np.ndarray]:
    """The per-tile figures of a run on a repaired wafer (emulator/repair.py), placed
    where each logical tile sits on the physical fabric: a stats-like dict for
    write_heatmaps over physical_width x height tiles, and the mask of defective
    tiles. Tiles that host no logical tile (unused spares) show zeros."""
    wp, h = fabric.physical_width, fabric.height
    where = (np.arange(h)[:, None] * wp + fabric.column).reshape(-1)   # physical index of logical tile
    view = {"cycles": _field(stats, "cycles", 0), "sram_bytes_per_tile": _field(stats, "sram_bytes_per_tile")}
    for name in PER_TILE_FIELDS:
        v = _field(stats, name)
        if v is None or not len(v):
            continue
        arr = np.asarray(v, dtype=np.float64)
        out = np.zeros((wp * h,) + arr.shape[1:])
        out[where] = arr
        view[name] = out
    return view, (fabric.defects.kind != 0).reshape(-1)


WAFER_ROLES = (("logical tile on its home column", "#4c9a2a"), ("logical tile displaced", "#a4d36f"),
               ("spare tile in use", "#2f6db5"), ("unused spare or healthy tile", "#e8e8e8"),
               ("dead core (router forwards)", "#f0a030"), ("dead tile (router dead too)", "#c0392b"))


def write_wafer_map(directory, fabric, *, prefix="", dpi=_DPI) -> Path:
    """wafer.png: what each physical tile of a repaired wafer (emulator/repair.py) is."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from tilegrid.emulator.defects import DEAD_CORE, DEAD_TILE

    wp, h, w = fabric.physical_width, fabric.height, fabric.width
    role = np.full((h, wp), 3, dtype=np.int64)   # indices into WAFER_ROLES
    rows = np.arange(h)[:, None]
    home = fabric.layout.home_columns(w)[None, :]
    role[rows, fabric.column] = np.where(fabric.spare_mask()[fabric.column], 2,
                                         np.where(fabric.column == home, 0, 1))
    role[fabric.defects.kind == DEAD_CORE] = 4
    role[fabric.defects.kind == DEAD_TILE] = 5
    fig, ax = _figure(plt, wp, h, 1, 1, dpi)
    ax.imshow(role, cmap=ListedColormap([c for _, c in WAFER_ROLES]), vmin=-0.5, vmax=len(WAFER_ROLES) - 0.5,
              origin="upper", aspect="auto", interpolation="nearest", extent=(-0.5, wp - 0.5, h - 0.5, -0.5))
    ax.set_xlabel("physical x")
    ax.set_ylabel("y")
    s = fabric.summary()
    ax.set_title(f"Wafer: logical {s['logical']} on physical {s['physical']}\n{s['defects']} defects, "
                 f"{s['spares_used']} spares used, {s['displaced_tiles']} tiles displaced, "
                 f"{s['extra_link_hops']} extra link hops", fontsize=10)
    counts = np.bincount(role.reshape(-1), minlength=len(WAFER_ROLES))
    ax.legend(handles=[Patch(facecolor=c, edgecolor="black", label=f"{name}: {n:,}")
                       for (name, c), n in zip(WAFER_ROLES, counts)],
              loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    return _save(fig, plt, Path(directory) / f"{prefix}wafer.png", dpi)


def _figure(plt, width, height, rows, cols, dpi):
    """A figure whose plot areas give each tile about a square cell, at least _MIN_SIDE_PX on
    the long side and at most _MAX_SIDE_PX."""
    long_side = max(width, height)
    side_px = min(_MAX_SIDE_PX, max(_MIN_SIDE_PX, long_side))
    if rows * cols > 1:
        side_px = max(side_px // 2, 300)
    ax_w = max(side_px * width / long_side, 150) / dpi
    ax_h = max(side_px * height / long_side, 150) / dpi
    fig_w = max(cols * (ax_w + 1.0) + 1.6, 6.4 if rows * cols == 1 else 8.0)   # room for the titles
    fig_h = rows * (ax_h + 0.9) + (0.9 if rows * cols > 1 else 0.5)
    fig, axes = plt.subplots(rows, cols, figsize=(fig_w, fig_h), dpi=dpi, squeeze=rows * cols == 1,
                             layout="constrained")
    return fig, axes


def _draw(ax, data, width, height, mask, cmap, vmin, vmax, fmt, legend=True):
    import matplotlib as mpl
    from matplotlib.patches import Patch

    img = np.ma.masked_array(np.asarray(data, dtype=np.float64).reshape(height, width),
                             mask=None if mask is None else mask.reshape(height, width))
    colormap = mpl.colormaps[cmap].with_extremes(bad="#d0d0d0")
    if vmin is None and vmax is None and img.count():
        lo, hi = float(img.min()), float(img.max())
        if lo == hi:                     # a uniform map: centre it so it is not read as "all minimum"
            pad = abs(lo) * 0.05 or 1.0
            vmin, vmax = lo - pad, hi + pad
    im = ax.imshow(img, cmap=colormap, vmin=vmin, vmax=vmax, origin="upper", aspect="auto",
                   interpolation="antialiased" if max(width, height) > _MAX_SIDE_PX else "nearest",
                   extent=(-0.5, width - 0.5, height - 0.5, -0.5))
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    from matplotlib.ticker import MaxNLocator
    if width <= ANNOTATE_MAX:
        ax.set_xticks(range(width))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
    if height <= ANNOTATE_MAX:
        ax.set_yticks(range(height))
    else:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
    ax.tick_params(labelsize=8)
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)      # y grows downward: tile (0,0) top-left
    if mask is not None:
        _hatch_defects(ax, mask.reshape(height, width))
    if mask is not None and legend:
        ax.legend(handles=[Patch(facecolor="#d0d0d0", edgecolor="black", hatch="xx", label="defective tile")],
                  loc="upper right", bbox_to_anchor=(1.0, -0.08), fontsize=7, frameon=False)
    if width <= ANNOTATE_MAX and height <= ANNOTATE_MAX:
        _annotate(ax, img, im, fmt)
    return im


def _hatch_defects(ax, mask2d):
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    ys, xs = np.nonzero(mask2d)
    if len(xs) <= 20000:
        rects = [Rectangle((x - 0.5, y - 0.5), 1, 1) for x, y in zip(xs, ys)]
        ax.add_collection(PatchCollection(rects, facecolor="none", edgecolor="black", hatch="xx", linewidth=0.3))
    else:                                # too many for patches: a marker per tile
        ax.scatter(xs, ys, marker="x", s=2, c="black", linewidths=0.3)


def _annotate(ax, img, im, fmt):
    height, width = img.shape
    cell_px = min(ax.bbox.width / width, ax.bbox.height / height)
    size = max(5.0, min(10.0, cell_px / 5.0))
    for y in range(height):
        for x in range(width):
            if img.mask is not np.ma.nomask and img.mask[y, x]:
                continue
            v = float(img[y, x])
            r, g, b, _ = im.cmap(im.norm(v))
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
            text = fmt.format(v) if fmt else _compact(v)
            ax.text(x, y, text, ha="center", va="center", fontsize=size, color="white" if dark else "black")


def _subtitle(data, width, mask, run, fmt):
    vals = np.asarray(data, dtype=np.float64).copy()
    if mask is not None:
        vals[mask] = np.nan
    if np.isnan(vals).all():
        return run
    i_min, i_max = int(np.nanargmin(vals)), int(np.nanargmax(vals))
    show = (lambda v: fmt.format(v)) if fmt else _compact
    return (f"{run}\nmean {show(float(np.nanmean(vals)))}, min {show(vals[i_min])} at "
            f"({i_min % width},{i_min // width}), max {show(vals[i_max])} at ({i_max % width},{i_max // width})")


def _save(fig, plt, path: Path, dpi) -> Path:
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
