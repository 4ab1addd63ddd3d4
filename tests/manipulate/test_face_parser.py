"""The face parser: network, files, FASSEG data and evaluation, training and resume, the shipped model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from manipulate import face_parser as P
from manipulate import labels as L


def test_parser_shapes_and_the_hull_channel_matters():
    torch.manual_seed(0)
    net = P.FaceParser(P.ParserConfig(res=32, channels=8, depth=2)).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    out = net(x, torch.ones(2, 1, 32, 32))
    assert out.shape == (2, len(P.PARSER_CLASSES), 32, 32)
    assert not torch.allclose(out, net(x, torch.zeros(2, 1, 32, 32)))
    with pytest.raises(P.FaceParserError, match="divisible"):
        P.ParserConfig(res=36, depth=3).validate()


def test_file_round_trip_and_refusals(tmp_path):
    net = P.FaceParser(P.ParserConfig(res=32, channels=8, depth=2)).eval()
    path = P.save_parser(net, tmp_path / "p.safetensors")
    back = P.load_parser(path)
    x, h = torch.rand(1, 3, 32, 32), torch.ones(1, 1, 32, 32)
    assert torch.allclose(net.half().float()(x, h), back(x, h), atol=1e-3)
    with pytest.raises(P.FaceParserError, match="no such face parser"):
        P.load_parser(tmp_path / "missing.safetensors")
    from ganbrush_core.weights import save_safetensors

    save_safetensors(tmp_path / "other.safetensors", {"x": torch.zeros(1)}, format="something-else", version="1",
                     config={})
    with pytest.raises(P.FaceParserError, match="not a ganbrush face parser"):
        P.load_parser(tmp_path / "other.safetensors")


def test_fasseg_training_faces_are_aligned_with_their_labels(data_root):
    d = P.fasseg_training_set(64, copies=2, limit=2)
    assert d["images"].shape == (4, 64, 64, 3) and d["labels"].shape == (4, 64, 64)
    for i in range(4):
        labels, hull = d["labels"][i], d["hull"][i]
        assert set(np.unique(labels)) <= {0, 1, 2}
        assert (labels[hull > 0] == L.CLASS_INDEX["skin"]).mean() > 0.8  # the landmark hull is the face
        assert (labels[:, :4] != L.CLASS_INDEX["skin"]).mean() > 0.6  # the frame's sides: hair or background


def test_training_resumes_exactly(tmp_path, data_root):
    cfg = P.ParserTrainConfig(channels=8, batch=4, fasseg_copies=1, fasseg_limit=2, steps=4, steps_per_interval=2)
    whole = P.train_parser(cfg, tmp_path / "whole", progress=False)
    P.train_parser(cfg, tmp_path / "split", until=2, progress=False)
    resumed = P.train_parser(cfg, tmp_path / "split", resume_from=tmp_path / "split", progress=False)
    assert resumed.step == 4
    for a, b in zip(whole.net.state_dict().values(), resumed.net.state_dict().values()):
        assert torch.equal(a, b)
    more = P.train_parser(cfg, tmp_path / "whole", resume_from=tmp_path / "whole", progress=False)
    assert more.step == 4  # already done: nothing more runs
    assert (tmp_path / "whole" / P.DEFAULT_FILE).is_file() and (tmp_path / "whole" / "losses.png").is_file()


@pytest.fixture(scope="module")
def shipped():
    return P.load_parser()


def test_the_shipped_parser_labels_a_portrait(shipped, photos_dir):
    from inversion import align_face, detect_faces, load_photo

    photo = load_photo(photos_dir / "woman_portrait.jpg")
    aligned = align_face(photo, detect_faces(photo)[0], 64)
    lm = P.aligned_landmarks(aligned)
    labels = P.label_face(shipped, aligned.image, lm, 128)
    assert labels.shape == (128, 128)
    hull = L.face_hull(lm, 128, 64)
    assert (labels[hull > 0] != L.CLASS_INDEX["background"]).mean() > 0.97
    assert (labels == L.CLASS_INDEX["hair"]).mean() > 0.05  # her hair frames the face
    present = {L.CLASSES[i] for i in np.unique(labels)}
    assert present >= {"skin", "hair", "left_eye", "right_eye", "nose", "upper_lip", "lower_lip"}


def test_the_shipped_parser_on_fasseg_test_faces(shipped, data_root):
    iou = P.fasseg_iou(shipped, limit=4, progress=False)
    assert set(iou) == {*P.FASSEG_CLASSES, "mean"}
    assert iou["skin"] > 0.7 and iou["hair"] > 0.4 and iou["mean"] > 0.5


def test_the_card_states_the_shipped_files_facts(shipped, card_table, card_commands):
    from ganbrush_cli import build_parser

    text = P.default_parser_path().with_suffix(".md").read_text()
    table = card_table(text)
    size = P.default_parser_path().stat().st_size
    assert f"{size / 1e6:.1f} MB" in table["file"] and size <= 16 * 2**20
    assert f"**{shipped.cfg.channels}** base channels" in table["architecture"]
    assert f"{sum(p.numel() for p in shipped.parameters()) / 1e6:.2f} M parameters" in table["architecture"]
    for argv in card_commands(text):
        build_parser().parse_args(argv)


def test_data_labels_writes_a_labelled_set(tmp_path, face_data_root):
    from ganbrush_cli import main
    from ganbrush_core.faces import build_face_dataset

    build_face_dataset(tmp_path / "faces", res=64, limit=3, data_root=face_data_root)
    out = tmp_path / "labels"
    assert main(["data", "labels", "--faces", str(tmp_path / "faces"), "--out", str(out)]) == 0
    images, labels = L.read_labelled_faces(out)
    assert images.shape == (6, 64, 64, 3) and labels.shape == (6, 64, 64)
    assert (L.LabelledFaceDataset(out)[0]["labels"] == torch.from_numpy(labels[0]).long()).all()
    assert (out / "labels.png").is_file() and np.load(out / "found.npy").mean() >= 0.5
    assert main(["data", "labels", "--faces", str(tmp_path / "faces"), "--out", str(out)]) == 2  # no --force
    assert main(["data", "labels", "--faces", str(tmp_path / "faces"), "--out", str(out), "--force"]) == 0
