"""The shipped default EdgeConnect model: files, model card, and that it really fills faces."""

import re

import pytest
import torch
from safetensors import safe_open

from ganbrush_cli import build_parser
from ganbrush_core.paths import data_root
from inpainting import checkpoints, inpaint, load_edgeconnect
from inpainting.masks import irregular_mask_indices, load_irregular_mask

DATA = data_root()
CARD = checkpoints.WEIGHTS_DIR / "edgeconnect.md"
MAX_BYTES = 16 * 2**20  # shipped weights: at most 16 MB per file


def test_shipped_files_are_small_and_the_card_states_their_facts(card_table, card_commands):
    text = CARD.read_text()
    table = card_table(text)
    model = load_edgeconnect()
    size_mb = float(re.search(r"([0-9.]+) MB each", table["files"]).group(1))
    for path, net in ((checkpoints.DEFAULT_EDGE, model.edge_generator),
                      (checkpoints.DEFAULT_INPAINT, model.inpaint_generator)):
        assert 0 < path.stat().st_size <= MAX_BYTES and f"`inpainting/weights/{path.name}`" in table["files"]
        assert abs(path.stat().st_size / 1e6 - size_mb) <= 0.05  # rounded to 0.1 MB
        with safe_open(str(path), "pt") as f:
            assert ("float32" in table["files"]) == all(f.get_slice(k).get_dtype() == "F32" for k in f.keys())
        # Architecture: the stated residual blocks and base channels are the shipped ones.
        assert f"**{net.cfg.residual_blocks}** residual blocks" in table["architecture"]
        assert f"**{net.cfg.channels}** base channels" in table["architecture"]
    params = [sum(p.numel() for p in net.parameters()) / 1e6 for net in (model.edge_generator, model.inpaint_generator)]
    assert f"{params[0]:.2f} M (G1) and {params[1]:.2f} M (G2) parameters" in table["architecture"]
    # The stages add up: steps x batch = images shown, as stated for each stage.
    batch = int(re.search(r"batch (\d+)", table["optimiser"]).group(1))
    stages = re.findall(r"([\d,]+) steps \(([\d,]+) images\)", table["stages"])
    assert len(stages) == 3
    assert all(int(s.replace(",", "")) * batch == int(n.replace(",", "")) for s, n in stages)
    # The measured table has every method in every mask bin, with plausible numbers.
    rows = re.findall(r"^\| (\d+-\d+%) \| ([0-9.]+) \| (\w+) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \|", text, re.M)
    assert {(r[0], r[2]) for r in rows} == {(b, m) for b in ("10-20%", "20-30%", "30-40%", "40-50%", "50-60%")
                                            for m in ("edgeconnect", "telea", "ns", "biharmonic", "patchmatch")}
    assert all(10 < float(r[4]) < 60 and 0 < float(r[5]) <= 1 for r in rows)  # PSNR (dB), SSIM
    # The commands that reproduce the files all parse (the training steps match the stages).
    commands = card_commands(text)
    train = [c for c in commands if c[:2] == ["train", "edgeconnect"]]
    assert [c[c.index("--steps") + 1] for c in train] == [s.replace(",", "") for s, _ in stages]
    for argv in commands:
        build_parser().parse_args(argv)  # SystemExit (a failure) for an option the CLI does not have


@pytest.mark.skipif(not (DATA / "masks").is_dir(), reason=f"shared masks not found at {DATA}")
@pytest.mark.usefixtures("face_data_root")
def test_default_model_fills_held_out_faces_better_than_their_mean_colour():
    from ganbrush_core.faces import held_out_faces

    model = load_edgeconnect()
    faces = held_out_faces(16, 64)
    masks = torch.cat([load_irregular_mask(irregular_mask_indices(3)[i * 97], 64) for i in range(16)])
    with torch.no_grad():
        result = inpaint(faces, masks, model=model)
    assert torch.equal(result.image[masks.expand_as(faces) == 0], faces[masks.expand_as(faces) == 0])
    assert result.edges is not None and result.edges.shape == masks.shape
    hole = masks.expand_as(faces) > 0
    known_mean = (faces * (1 - masks)).sum((2, 3), keepdim=True) / (1 - masks).sum((2, 3), keepdim=True)
    flat = torch.where(hole, known_mean, faces)
    model_l1 = (result.image - faces).abs()[hole].mean()
    flat_l1 = (flat - faces).abs()[hole].mean()
    assert model_l1 < 0.8 * flat_l1, (float(model_l1), float(flat_l1))
