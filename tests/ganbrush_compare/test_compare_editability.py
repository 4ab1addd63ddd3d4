"""Editability in ``compare inversion``: the score shift of named edits on each method's latent,
relative to w+; and several equal-wall-time budgets in one run."""

from __future__ import annotations

import math

import pytest

from ganbrush_compare.inversion import compare_inversion, held_out
from stylegan_ops.checkpoints import load_generator


@pytest.fixture(scope="module")
def shipped_G():
    return load_generator("default")


def test_edit_shifts_are_relative_to_w_plus(shipped_G, face_data_root):
    faces = held_out(1, shipped_G.img_resolution)
    report = compare_inversion(shipped_G, faces, ["w+", "encoder"], budgets=["steps"], steps=3,
                               edits=["smiling", "age"], edit_strength=3.0, log=lambda line: None)
    rows = {r["method"]: r for r in report.rows}
    assert rows["w+"]["edit_smiling"] == 1.0 and rows["w+"]["edit_age"] == 1.0
    # A smile of +3 raises the classifier's smile logit on both latents; the ratio is finite.
    assert rows["w+"]["shift_smiling"] > 0 and rows["encoder"]["shift_smiling"] > 0
    assert math.isfinite(rows["encoder"]["edit_smiling"])
    assert rows["encoder"]["edit_smiling"] == pytest.approx(
        rows["encoder"]["shift_smiling"] / rows["w+"]["shift_smiling"])
    headers = [c.header for c in report.columns]
    assert "smiling +3 (x w+)" in headers and "age +3 (x w+)" in headers


def test_several_seconds_budgets_give_a_set_of_rows_each(shipped_G, face_data_root):
    faces = held_out(1, shipped_G.img_resolution)
    report = compare_inversion(shipped_G, faces, ["w+", "encoder"], budgets=["seconds"], seconds=[0.5, 2],
                               probe_steps=2, log=lambda line: None)
    assert [(r["budget_label"], r["method"]) for r in report.rows] == [
        ("0.5 s", "w+"), ("0.5 s", "encoder"), ("2 s", "w+"), ("2 s", "encoder")]
    by = {(r["budget_label"], r["method"]): r for r in report.rows}
    assert by[("2 s", "w+")]["steps"] > by[("0.5 s", "w+")]["steps"]
    assert by[("2 s", "encoder")]["steps"] == 0  # one pass under every budget


def test_unknown_edit_is_one_clear_error(shipped_G, face_data_root):
    faces = held_out(1, shipped_G.img_resolution)
    with pytest.raises(ValueError, match="no direction named frown"):
        compare_inversion(shipped_G, faces, ["w+"], budgets=["steps"], steps=1, edits=["frown"],
                          log=lambda line: None)
