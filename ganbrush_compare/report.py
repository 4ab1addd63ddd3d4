"""A comparison's results: a markdown table (printed and written), CSV, JSON and an image grid.

Every comparison writes four files into its output folder, all or none, atomically, refusing to
replace existing ones unless ``force`` (:func:`ganbrush_core.io.write_all`): ``NAME.md`` (what is
printed), ``NAME.csv`` (one line per row, full precision), ``NAME.json`` (settings + rows +
what the grid shows) and ``NAME_grid.png``. Grid tiles are float ``[3, H, W]`` images in [-1, 1]
of any size: each is fitted into a square tile (long side scaled to the tile, white margins).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ganbrush_core.images import image_grid, save_pil
from ganbrush_core.io import check_output, write_all, write_text

#: Largest grid tile side: a grid of 1024 px faces stays a picture one can open.
MAX_TILE = 256
SUFFIXES = (".md", ".csv", ".json")


@dataclass(frozen=True)
class Column:
    """A table column: ``key`` in each row dict, ``header`` in the markdown table, ``fmt`` the
    format spec of its values there (``""``: as text); ``left`` aligns it left."""

    key: str
    header: str
    fmt: str = ""
    left: bool = False


@dataclass
class Report:
    """One comparison's results. ``rows``: dicts with every column's key (CSV and JSON keep them
    all, unformatted); ``title``: the line above the table; ``notes``: lines below it; ``meta``:
    settings for the JSON file; ``tiles``: the grid, row by row, ``grid_cols`` tiles a row, with
    ``grid_legend`` saying what each grid row shows."""

    name: str
    title: str
    columns: list[Column]
    rows: list[dict]
    notes: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    tiles: list[torch.Tensor] = field(default_factory=list)
    grid_cols: int = 1
    grid_legend: list[str] = field(default_factory=list)


def _cell(value: object, fmt: str) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    return format(value, fmt) if fmt else str(value)


def markdown_table(columns: Sequence[Column], rows: Sequence[dict]) -> str:
    """The rows as a GitHub markdown table (numbers right-aligned; NaN and infinities as ``-``)."""
    lines = ["| " + " | ".join(c.header for c in columns) + " |",
             "|" + "|".join("---" if c.left or not c.fmt else "---:" for c in columns) + "|"]
    lines += ["| " + " | ".join(_cell(r[c.key], c.fmt) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def render(report: Report) -> str:
    """What the command prints and writes to ``NAME.md``: title, table, notes, grid legend."""
    parts = [report.title, "", markdown_table(report.columns, report.rows)]
    if report.notes:
        parts += ["", *report.notes]
    if report.grid_legend:
        parts += ["", f"{report.name}_grid.png rows: " + "; ".join(report.grid_legend)]
    return "\n".join(parts) + "\n"


def to_csv(report: Report) -> str:
    """One header line of column keys, then one line per row (values unformatted)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([c.key for c in report.columns])
    writer.writerows([[r[c.key] for c in report.columns] for r in report.rows])
    return buf.getvalue()


def _json_safe(value: object) -> object:
    """NaN / infinities as ``null`` (JSON has no such numbers), paths as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def to_json(report: Report) -> str:
    data = {"comparison": report.name, "title": report.title, **report.meta, "rows": report.rows,
            "notes": report.notes, "grid": {"file": f"{report.name}_grid.png", "rows": report.grid_legend}}
    return json.dumps(_json_safe(data), indent=1) + "\n"


def output_paths(out_dir: str | os.PathLike, name: str) -> list[Path]:
    """The four files a report named ``name`` writes into ``out_dir``."""
    out = Path(out_dir)
    return [out / f"{name}{s}" for s in SUFFIXES] + [out / f"{name}_grid.png"]


def check_outputs(out_dir: str | os.PathLike, name: str, force: bool = False) -> list[Path]:
    """Check, before any work, that the report's files can be written (one-line errors: an
    existing file without ``force``, a file where the folder should be, no permission)."""
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise NotADirectoryError(f"--out {out_dir} is a file; give a folder")
    return [check_output(p, force, what="--out") for p in output_paths(out_dir, name)]


def fit_tile(image: torch.Tensor, side: int) -> torch.Tensor:
    """``[3, H, W]`` in [-1, 1] scaled so its long side is ``side`` (area averaging when it
    shrinks, bilinear when it grows) and centred on a white ``[3, side, side]`` square."""
    h, w = image.shape[-2:]
    scale = side / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    x = image[None].float()
    if (nh, nw) != (h, w):
        mode = "area" if scale < 1 else "bilinear"
        x = F.interpolate(x, size=(nh, nw), mode=mode, **({} if mode == "area" else {"align_corners": False}))
    canvas = torch.ones(1, 3, side, side)
    top, left = (side - nh) // 2, (side - nw) // 2
    canvas[:, :, top : top + nh, left : left + nw] = x.clamp(-1, 1)
    return canvas[0]


def grid_picture(tiles: Sequence[torch.Tensor], ncols: int, max_tile: int = MAX_TILE):
    """The tiles (``[3, H, W]`` in [-1, 1], any sizes) as one PIL picture, ``ncols`` a row; the
    tile side is the largest tile's long side, at most ``max_tile``."""
    if not tiles:
        raise ValueError("no images for the grid")
    side = min(max_tile, max(max(t.shape[-2:]) for t in tiles))
    return image_grid(torch.stack([fit_tile(t.detach().cpu(), side) for t in tiles]), ncols=ncols)


def write_report(report: Report, out_dir: str | os.PathLike, force: bool = False) -> list[Path]:
    """Write ``NAME.md``, ``NAME.csv``, ``NAME.json`` and ``NAME_grid.png`` into ``out_dir``:
    all four or none (the folder is created only once all are written). Returns their paths."""
    targets = check_outputs(out_dir, report.name, force)
    grid = grid_picture(report.tiles, report.grid_cols)
    with write_all(targets, force) as tmp:
        for path, text in zip(tmp, (render(report), to_csv(report), to_json(report))):
            write_text(path, text)
        save_pil(grid, tmp[3])
    return targets
