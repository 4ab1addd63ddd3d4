"""The attribute classifier: labels, training smoke run, file round trip and errors, the shipped model."""

from __future__ import annotations

import argparse
import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from ganbrush_core.images import uint8_to_float
from manipulate import attributes
from manipulate.attributes import (
    AGE,
    CELEBA_ATTRIBUTES,
    DEFAULT_CLASSIFIER,
    SCORE_NAMES,
    AttributeClassifier,
    AttributeClassifierError,
    ClassifierConfig,
    attribute_scores,
    augment,
    binary_metrics,
    evaluate_classifier,
    load_attribute_data,
    load_classifier,
    parse_utkface_name,
    read_celeba_labels,
    save_classifier,
    train_classifier,
)
from manipulate.cli import register_train

needs_shipped = pytest.mark.skipif(not DEFAULT_CLASSIFIER.is_file(), reason="no shipped attribute classifier yet")


def tiny_classifier(seed: int = 0, res: int = 16) -> AttributeClassifier:
    torch.manual_seed(seed)
    return AttributeClassifier(ClassifierConfig(resolution=res, channels=(8, 16))).eval()


def test_score_names_and_output_shapes():
    assert CELEBA_ATTRIBUTES[:2] == ("Smiling", "Male") and len(CELEBA_ATTRIBUTES) == 10
    assert SCORE_NAMES[-2:] == ("gender", "age") and "wearing_hat" in SCORE_NAMES
    clf = tiny_classifier()
    out = clf(torch.rand(5, 3, 16, 16) * 2 - 1)
    assert tuple(out) == SCORE_NAMES and all(v.shape == (5,) for v in out.values())
    with pytest.raises(ValueError, match="attribute_scores"):
        clf(torch.zeros(1, 3, 32, 32))


def test_scores_resize_with_area_averaging():
    clf = tiny_classifier()
    big = torch.rand(4, 3, 64, 64) * 2 - 1
    direct = clf(F.avg_pool2d(big, 4))
    resized = attribute_scores(clf, big, batch=3)
    for name in SCORE_NAMES:
        assert torch.allclose(resized[name], direct[name], atol=1e-5)
    assert attribute_scores(clf, torch.zeros(2, 3, 8, 8))["age"].shape == (2,)  # upsampled


def test_utkface_names_give_age_and_male_as_one():
    assert parse_utkface_name("26_0_1_20170116171048641.jpg.chip.jpg") == (26.0, 1.0)  # 0 = male
    assert parse_utkface_name("61_1_20170109142408075.jpg.chip.jpg") == (61.0, 0.0)  # race missing: fine
    assert parse_utkface_name("39_3_2_2017.jpg.chip.jpg") is None
    assert parse_utkface_name("x.jpg") is None


def test_binary_metrics_by_hand():
    m = binary_metrics(np.array([2.0, -1.0, -3.0, 0.5, -0.2]), np.array([1.0, 1.0, 0.0, 0.0, 0.0]))
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m["majority_baseline"] == pytest.approx(3 / 5) and m["count"] == 5


def test_augment_is_seeded_and_stays_in_range():
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    a = augment(x, torch.Generator().manual_seed(1))
    b = augment(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape and a.min() >= -1 and a.max() <= 1
    assert not torch.equal(a, augment(x, torch.Generator().manual_seed(2)))


def test_celeba_labels_and_loaded_data_agree(face_data_root):
    labels = read_celeba_labels(face_data_root)
    assert len(labels) == 10_000 and set(np.unique(np.stack(list(labels.values())))) == {0.0, 1.0}
    male_share = np.mean([v[CELEBA_ATTRIBUTES.index("Male")] for v in labels.values()])
    assert 0.3 < male_share < 0.55  # CelebA is ~42% male
    data = load_attribute_data("heldout", 16, face_data_root, limit=3)
    assert data.images.shape == (6, 16, 16, 3) and data.images.dtype == np.uint8
    assert data.sources == ["celeba"] * 3 + ["utkface"] * 3
    celeba, utk = data.labels[:3], data.labels[3:]
    assert np.array_equal(celeba[:, :10], np.stack([labels[f"00{9001 + i}.jpg"] for i in range(3)]))
    assert np.isnan(celeba[:, 10:]).all() and np.isnan(utk[:, :10]).all() and not np.isnan(utk[:, 10:]).any()


def test_tiny_training_run_learns_saves_and_resumes_deterministically(tmp_path, face_data_root, monkeypatch):
    kwargs = dict(res=16, steps=40, batch=16, channels=(8, 16), data_root=face_data_root, limit=24, progress=False,
                  lr=5e-3)
    clf = train_classifier(tmp_path / "a", **kwargs)
    for name in ("attributes.safetensors", "metrics.json", "config.json", "checkpoint.pt", "log.jsonl",
                 "losses.png"):
        assert (tmp_path / "a" / name).is_file(), name
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [h["step"] for h in log] == list(range(1, 41))
    losses = [h["total"] for h in log]
    assert np.mean(losses[-8:]) < np.mean(losses[:8])
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert set(metrics["heldout"]) == set(SCORE_NAMES) and metrics["steps"] == 40
    assert metrics["heldout"][AGE]["count"] == 24 and "mae" in metrics["heldout"][AGE]

    # A run killed at step 25 (checkpoints every 16 steps) and resumed ends bit-identical.
    monkeypatch.setattr(attributes, "CHECKPOINT_EVERY", 16)
    step = attributes.ClassifierTrainer.train_step

    def killed_at_25(self):
        if self.step == 25:
            raise KeyboardInterrupt
        return step(self)

    monkeypatch.setattr(attributes.ClassifierTrainer, "train_step", killed_at_25)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(tmp_path / "b", evaluate=False, **kwargs)
    monkeypatch.setattr(attributes.ClassifierTrainer, "train_step", step)
    with pytest.raises(FileExistsError, match="--resume"):
        train_classifier(tmp_path / "b", evaluate=False, **kwargs)
    again = train_classifier(tmp_path / "b", evaluate=False, resume_from=tmp_path / "b", **{**kwargs, "lr": 1.0})
    for (k, v), v2 in zip(clf.state_dict().items(), again.state_dict().values()):
        assert torch.equal(v, v2), k
    log_b = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [(h["step"], h["total"]) for h in log_b] == [(h["step"], h["total"]) for h in log]
    with pytest.raises(FileExistsError, match="--force"):
        train_classifier(tmp_path / "a", **kwargs)


def test_save_load_round_trip_and_fp16(tmp_path):
    clf = tiny_classifier()
    with torch.no_grad():  # non-trivial BN statistics, so they must round-trip too
        for m in clf.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    path = save_classifier(clf, tmp_path / "c.safetensors", meta={"note": "test"})
    back = load_classifier(path)
    assert back.names == clf.names and back.resolution == 16 and not back.training
    for name, v in attribute_scores(clf, x).items():
        assert torch.equal(v, attribute_scores(back, x)[name])
    with pytest.raises(FileExistsError, match="force"):
        save_classifier(clf, path)
    half = load_classifier(save_classifier(clf, tmp_path / "h.safetensors", dtype=torch.float16))
    assert torch.allclose(attribute_scores(half, x)["smiling"], attribute_scores(clf, x)["smiling"], atol=0.05)


def test_bad_classifier_files_give_one_line_errors(tmp_path):
    with pytest.raises(AttributeClassifierError, match="no such classifier"):
        load_classifier(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 40)
    with pytest.raises(AttributeClassifierError, match="corrupt"):
        load_classifier(junk)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"format": "ganbrush.generator"})
    with pytest.raises(AttributeClassifierError, match="not a ganbrush attribute classifier"):
        load_classifier(other)
    good = save_classifier(tiny_classifier(), tmp_path / "good.safetensors")
    data = good.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(AttributeClassifierError, match="corrupt"):
        load_classifier(truncated)
    # Weights of another architecture under this config.
    from safetensors import safe_open

    with safe_open(str(good), framework="pt") as f:
        meta = f.metadata()
    cfg = json.loads(meta["config"])
    cfg["channels"] = [8, 8]
    state = {k: v.contiguous() for k, v in tiny_classifier().state_dict().items()}
    save_file(state, str(tmp_path / "mism.safetensors"), metadata={**meta, "config": json.dumps(cfg)})
    with pytest.raises(AttributeClassifierError, match="do not match"):
        load_classifier(tmp_path / "mism.safetensors")
    with pytest.raises(AttributeClassifierError, match=".safetensors"):
        save_classifier(tiny_classifier(), tmp_path / "c.pt")


@pytest.mark.usefixtures("face_data_root")  # the command reads the default data root
def test_cli_train_attributes(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="ganbrush")
    train_sub = parser.add_subparsers(dest="command", required=True).add_parser("train").add_subparsers(
        dest="train_command", required=True)
    register_train(train_sub)
    out = tmp_path / "run"
    argv = ["train", "attributes", "--out", str(out), "--res", "16", "--steps", "2", "--batch", "4", "--limit", "4"]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "male: accuracy" in printed and "age: MAE" in printed and (out / "attributes.safetensors").is_file()
    with pytest.raises(FileExistsError, match="--force"):
        args.func(parser.parse_args(argv))
    forced = parser.parse_args([*argv, "--force"])
    assert forced.func(forced) == 0


@needs_shipped
def test_shipped_classifier_loads_and_its_card_states_its_facts(card_table):
    clf = load_classifier()
    assert clf.names == SCORE_NAMES and clf.resolution == 64
    assert DEFAULT_CLASSIFIER.stat().st_size < 16 * 2**20
    table = card_table(DEFAULT_CLASSIFIER.with_suffix(".md").read_text())
    size_mb = float(re.search(r"([0-9.]+) MB", table["file"]).group(1))
    assert abs(DEFAULT_CLASSIFIER.stat().st_size / 1e6 - size_mb) <= 0.05 and "float16" in table["file"]
    with safe_open(str(DEFAULT_CLASSIFIER), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys() if "num_batches" not in k} <= {"F16", "I64"}
    arch = table["architecture"]
    assert f"{len(clf.cfg.channels)} blocks" in arch and "/".join(map(str, clf.cfg.channels)) + " channels" in arch
    assert f"{sum(p.numel() for p in clf.parameters()):,} parameters" in arch
    assert list(dict.fromkeys(re.findall(r"`(\w+)`", table["outputs"]))) == list(clf.names)  # "`male`" twice
    steps, images = re.search(r"\*\*([\d,]+) steps\*\* \((\d+)k images", table["training"]).groups()
    batch = int(re.search(r"batch (\d+)", table["training"]).group(1))
    assert int(steps.replace(",", "")) * batch == int(images) * 1000


@needs_shipped
def test_shipped_classifier_beats_the_baselines_on_held_out_faces(face_data_root):
    clf = load_classifier()
    data = load_attribute_data("heldout", 64, face_data_root, limit=150)
    metrics = evaluate_classifier(clf, data)
    for name in ("male", "smiling", "gender"):
        assert metrics[name]["accuracy"] > metrics[name]["majority_baseline"] + 0.15, (name, metrics[name])
    assert metrics[AGE]["mae"] < metrics[AGE]["median_baseline_mae"] - 2
    # Same sign for both gender heads: CelebA men score high on "gender", UTKFace men on "male".
    scores = attribute_scores(clf, uint8_to_float(data.images))
    celeba_male = data.labels[:150, SCORE_NAMES.index("male")] > 0.5
    assert scores["gender"][:150][celeba_male].mean() > scores["gender"][:150][~celeba_male].mean()
    utk_male = data.labels[150:, SCORE_NAMES.index("gender")] > 0.5
    assert scores["male"][150:][utk_male].mean() > scores["male"][150:][~utk_male].mean()
