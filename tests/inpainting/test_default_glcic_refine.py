"""The shipped glcic-refine network: files, model card, and that it improves on the classical
fill it starts from, on held-out faces and unseen masks."""

import re

import pytest
import torch
from safetensors import safe_open

from ganbrush_cli import build_parser
from ganbrush_core.paths import data_root
from inpainting import Method, default_method, glcic_checkpoints, inpaint, load_glcic, ready_methods
from inpainting.glcic_checkpoints import load_discriminator

DATA = data_root()
WEIGHTS = glcic_checkpoints.DEFAULT_GLCIC_REFINE
DISCRIMINATOR = WEIGHTS.with_name("glcic64-refine-discriminator.safetensors")
CARD = WEIGHTS.with_suffix(".md")
MAX_BYTES = 16 * 2**20  # shipped weights: at most 16 MB per file


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def test_shipped_files_are_small_and_the_card_states_their_facts(card_table, card_commands):
    assert Method.GLCIC_REFINE in ready_methods() and default_method() is Method.GLCIC_REFINE
    import ganbrush_pipeline as pipe

    assert pipe.inpaint_method_for(None, None) == "glcic-refine" and pipe.PipelineOptions().inpaint_method is None
    net = load_glcic(prefill="biharmonic")
    assert net.cfg.residual and load_glcic(WEIGHTS).cfg == net.cfg
    text = CARD.read_text()
    table = card_table(text)
    for path in (WEIGHTS, DISCRIMINATOR):
        assert 0 < path.stat().st_size <= MAX_BYTES and f"`inpainting/weights/{path.name}`" in table["files"]
    sizes = [float(x) for x in re.findall(r"([0-9.]+) MB", table["files"])]
    assert [abs(p.stat().st_size / 1e6 - s) <= 0.05 for p, s in zip((WEIGHTS, DISCRIMINATOR), sizes)] == [True] * 2
    with safe_open(str(WEIGHTS), "pt") as f:
        steps = int(f.metadata()["step"])
        assert "recalibrated" in f.metadata()["batch_norm"]
    with safe_open(str(DISCRIMINATOR), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} - {"I64"} == {"F16"}
    assert load_discriminator(DISCRIMINATOR).local_size == 32
    batch = int(re.search(r"batch (\d+)", table["optimiser"]).group(1))
    phases = re.findall(r"phase (\d) [^:]*: ([\d,]+) steps \(([\d,]+) images\)", table["schedule"])
    assert [p[0] for p in phases] == ["1", "2", "3"] and sum(_int(s) for _, s, _ in phases) == steps
    assert all(_int(s) * batch == _int(n) for _, s, n in phases)
    train = [c for c in card_commands(text) if c[:2] == ["train", "glcic"]]
    assert train and _int(train[-1][train[-1].index("--steps") + 1]) == steps
    assert "--prefill" in train[0] and train[0][train[0].index("--prefill") + 1] == "biharmonic"
    for argv in card_commands(text):
        build_parser().parse_args(argv)  # SystemExit (a failure) for an option the CLI does not have


@pytest.mark.skipif(not (DATA / "masks").is_dir(), reason=f"shared masks not found at {DATA}")
@pytest.mark.usefixtures("face_data_root")
def test_it_improves_on_the_biharmonic_fill_of_held_out_faces():
    from ganbrush_compare.inpainting import held_out_images, irregular_pairs
    from ganbrush_core.metrics import lpips_model

    lpips = lpips_model("vgg")
    for label, samples in irregular_pairs(held_out_images(48, 64), [2, 4]).items():
        faces = torch.cat([s.image for s in samples])
        masks = torch.cat([s.mask for s in samples])
        classical = inpaint(faces, masks, method="biharmonic").image
        refined = inpaint(faces, masks, method="glcic-refine").image
        hole = masks.expand_as(faces) > 0
        assert torch.equal(refined[~hole], faces[~hole])
        got, base = float(lpips(refined, faces).mean()), float(lpips(classical, faces).mean())
        assert got < 0.97 * base, (label, got, base)
        assert (refined - faces).abs()[hole].mean() < (classical - faces).abs()[hole].mean(), label
