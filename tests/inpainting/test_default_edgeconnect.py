"""The shipped default EdgeConnect model: files, model card, and that it really fills faces."""

from pathlib import Path

import pytest
import torch

from inpainting import checkpoints, inpaint, load_edgeconnect
from inpainting.masks import irregular_mask_indices, load_irregular_mask

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CARD = checkpoints.WEIGHTS_DIR / "edgeconnect.md"
MAX_BYTES = 16 * 2**20  # DESIGN.md section 5: at most 16 MB per file


def test_shipped_files_are_small_and_described_by_the_card():
    text = CARD.read_text()
    for path in (checkpoints.DEFAULT_EDGE, checkpoints.DEFAULT_INPAINT):
        assert 0 < path.stat().st_size <= MAX_BYTES
        assert path.name in text
    for needle in ("VGG16", "benchmarks/inpainting.py", "ganbrush train edgeconnect", "GPU"):
        assert needle in text


@pytest.mark.skipif(not (DATA / "faces").is_dir() or not (DATA / "masks").is_dir(),
                    reason=f"shared faces/masks not found at {DATA}")
def test_default_model_fills_held_out_faces_better_than_their_mean_colour():
    from stylegan_ops.faces import held_out_faces

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
