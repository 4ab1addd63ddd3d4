"""The comparison report: table, CSV, JSON and grid, written all or none, never over files unasked."""

from __future__ import annotations

import csv
import json
import math
import stat

import pytest
import torch
from PIL import Image

from ganbrush_compare.report import Column, Report, check_outputs, fit_tile, markdown_table, render, write_report

COLUMNS = [Column("name", "method", left=True), Column("score", "score", ".2f"), Column("n", "images", "d")]


def report(**kwargs) -> Report:
    rows = [{"name": "a", "score": 0.123, "n": 3, "extra": {"steps": 2}},
            {"name": "b", "score": math.nan, "n": 1, "extra": {}}]
    tiles = [torch.zeros(3, 20, 10), -torch.ones(3, 8, 8), torch.ones(3, 30, 30)]
    return Report("demo", "Demo comparison", COLUMNS, rows, notes=["- best: a"], meta={"seed": 0}, tiles=tiles,
                  grid_cols=3, grid_legend=["first row"], **kwargs)


def test_table_csv_and_json(tmp_path):
    r = report()
    assert markdown_table(COLUMNS, r.rows).splitlines() == [
        "| method | score | images |", "|---|---:|---:|", "| a | 0.12 | 3 |", "| b | - | 1 |"]
    paths = write_report(r, tmp_path / "out")
    assert [p.name for p in paths] == ["demo.md", "demo.csv", "demo.json", "demo_grid.png"]
    assert (tmp_path / "out" / "demo.md").read_text() == render(r)
    assert render(r).startswith("Demo comparison\n\n| method |") and "demo_grid.png rows: first row" in render(r)
    with open(tmp_path / "out" / "demo.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [{"name": "a", "score": "0.123", "n": "3"}, {"name": "b", "score": "nan", "n": "1"}]
    data = json.loads((tmp_path / "out" / "demo.json").read_text())  # strict JSON: NaN is null
    assert data["seed"] == 0 and data["rows"][1]["score"] is None and data["rows"][0]["extra"] == {"steps": 2}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in paths)
    with Image.open(paths[3]) as grid:  # 3 tiles of the largest side, 30 px
        assert grid.size == (3 * 32 + 2, 32 + 2)


def test_refuses_to_overwrite_and_writes_all_or_none(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "demo.csv").write_text("mine")
    with pytest.raises(FileExistsError, match="--force"):
        check_outputs(out, "demo")
    with pytest.raises(FileExistsError, match="--force"):
        write_report(report(), out)
    assert sorted(p.name for p in out.iterdir()) == ["demo.csv"] and (out / "demo.csv").read_text() == "mine"
    write_report(report(), out, force=True)
    assert (out / "demo.csv").read_text() != "mine"
    with pytest.raises(ValueError, match="no images"):  # fails before anything is written
        write_report(Report("empty", "t", COLUMNS, []), tmp_path / "empty")
    assert not (tmp_path / "empty").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        check_outputs(tmp_path / "file", "demo")


def test_fit_tile_keeps_the_aspect_on_white():
    tile = fit_tile(-torch.ones(3, 20, 10), 40)  # black, twice as tall as wide
    assert tile.shape == (3, 40, 40)
    assert torch.equal(tile[:, :, 10:30], -torch.ones(3, 40, 20)) and bool((tile[:, :, :10] == 1).all())
    assert torch.equal(fit_tile(torch.zeros(3, 64, 64), 32), torch.zeros(3, 32, 32))  # area shrink of a flat image
