"""The shipped default GLCIC completion network: file, model card, and that it really fills faces."""

import re

import pytest
import torch
from safetensors import safe_open

from ganbrush_cli import build_parser
from ganbrush_core.paths import data_root
from inpainting import Method, glcic_checkpoints, inpaint, load_glcic, ready_methods
from inpainting.masks import irregular_mask_indices, load_irregular_mask

DATA = data_root()
CARD = glcic_checkpoints.WEIGHTS_DIR / "glcic64.md"
MAX_BYTES = 16 * 2**20  # shipped weights: at most 16 MB per file
BINS = ("10-20%", "20-30%", "30-40%", "40-50%", "50-60%")


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def test_shipped_file_is_small_and_the_card_states_its_facts(card_table, card_commands):
    path = glcic_checkpoints.DEFAULT_GLCIC
    assert Method.GLCIC in ready_methods()
    text = CARD.read_text()
    table = card_table(text)
    net = load_glcic()
    assert 0 < path.stat().st_size <= MAX_BYTES and f"`inpainting/weights/{path.name}`" in table["files"]
    size_mb = float(re.search(r"([0-9.]+) MB", table["files"]).group(1))
    assert abs(path.stat().st_size / 1e6 - size_mb) <= 0.05  # rounded to 0.1 MB
    with safe_open(str(path), "pt") as f:
        floats = {f.get_slice(k).get_dtype() for k in f.keys()} - {"I64"}  # batch norms' step counters
        assert ("float32" in table["files"]) == (floats == {"F32"})
        steps = int(f.metadata()["step"])
    assert f"**{net.cfg.channels}** base channels" in table["architecture"]
    params = sum(p.numel() for p in net.parameters()) / 1e6
    assert f"{params:.2f} M parameters" in table["architecture"]
    # The phases add up to the file's step count, and steps x batch = images shown in each.
    batch = int(re.search(r"batch (\d+)", table["optimiser"]).group(1))
    phases = re.findall(r"phase (\d) [^:]*: ([\d,]+) steps \(([\d,]+) images\)", table["schedule"])
    assert [p[0] for p in phases] == ["1", "2", "3"]
    assert sum(_int(s) for _, s, _ in phases) == steps
    assert all(_int(s) * batch == _int(n) for _, s, n in phases)
    # The measured table: every method of the benchmark in every bin, plausible numbers.
    rows = re.findall(r"^\| (\d+-\d+%) \| ([0-9.]+) \| ([\w-]+) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \|", text, re.M)
    methods = ("edgeconnect", "telea", "ns", "biharmonic", "patchmatch", "glcic", "glcic-no-poisson")
    assert {(r[0], r[2]) for r in rows} == {(b, m) for b in BINS for m in methods}
    assert all(10 < float(r[4]) < 60 and 0 < float(r[5]) <= 1 for r in rows)  # PSNR (dB), SSIM
    # The commands that reproduce the file all parse, and the run's length is the file's.
    commands = card_commands(text)
    train = [c for c in commands if c[:2] == ["train", "glcic"]]
    assert train and _int(train[-1][train[-1].index("--steps") + 1]) == steps
    assert {_int(train[0][train[0].index(o) + 1]) for o in ("--phase1-steps", "--phase2-steps")} == {
        _int(phases[0][1]), _int(phases[1][1])}
    for argv in commands:
        build_parser().parse_args(argv)  # SystemExit (a failure) for an option the CLI does not have


@pytest.mark.skipif(not (DATA / "masks").is_dir(), reason=f"shared masks not found at {DATA}")
@pytest.mark.usefixtures("face_data_root")
def test_default_model_fills_held_out_faces_better_than_their_mean_colour():
    from ganbrush_core.faces import held_out_faces

    faces = held_out_faces(16, 64)
    masks = torch.cat([load_irregular_mask(irregular_mask_indices(3)[i * 97], 64) for i in range(16)])
    hole = masks.expand_as(faces) > 0
    known_mean = (faces * (1 - masks)).sum((2, 3), keepdim=True) / (1 - masks).sum((2, 3), keepdim=True)
    flat_l1 = (torch.where(hole, known_mean, faces) - faces).abs()[hole].mean()
    for poisson in (True, False):
        out = inpaint(faces, masks, method="glcic", poisson=poisson).image
        assert torch.equal(out[~hole], faces[~hole])
        model_l1 = (out - faces).abs()[hole].mean()
        assert model_l1 < 0.8 * flat_l1, (poisson, float(model_l1), float(flat_l1))


@pytest.mark.usefixtures("face_data_root")
def test_pipeline_and_app_offer_it():
    import ganbrush_pipeline as pipe
    from ganbrush_core.faces import held_out_faces

    face = ((held_out_faces(1, 64)[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[30:46, 18:46] = True
    out, edges = pipe.inpaint_face(face, mask.numpy(), method="glcic")
    assert edges is None and (out[~mask.numpy()] == face[~mask.numpy()]).all() and (out != face).any()
    args = build_parser().parse_args(["pipeline", "photo.jpg", "--out", "o.png", "--inpaint-method", "glcic"])
    assert args.inpaint_method == "glcic"
