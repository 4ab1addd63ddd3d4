"""The shipped default face generator: present, small, loadable as "default", produces varied
faces, and its model card describes the file that is actually shipped."""

from __future__ import annotations

import json
import re

import torch
from safetensors import safe_open

from stylegan_ops.checkpoints import DEFAULT_GENERATOR, load_generator
from stylegan_ops.images import to_uint8

CARD = DEFAULT_GENERATOR.with_suffix(".md")


def test_default_generator_is_shipped_small_and_loads():
    assert DEFAULT_GENERATOR.is_file(), "the default generator must ship inside the package"
    assert DEFAULT_GENERATOR.stat().st_size <= 16 * 2**20
    G = load_generator()
    assert G.img_resolution == 64 and G.img_channels == 3
    assert torch.equal(load_generator("default").w_avg, G.w_avg)
    with torch.no_grad():
        img = G(torch.randn(16, G.z_dim, generator=torch.Generator().manual_seed(0)))
    assert torch.isfinite(img).all()
    assert img.min() > -3 and img.max() < 3
    # Samples differ from each other (no mode collapse to one picture) and are not flat.
    flat = img.flatten(1)
    pairwise = torch.cdist(flat, flat)[~torch.eye(16, dtype=torch.bool)]
    assert pairwise.min() > 0.05 * flat.norm(dim=1).mean()
    assert to_uint8(img).std() > 20


def test_model_card_matches_the_shipped_file():
    text = CARD.read_text()
    for needed in ("FID", "kimg", "wall", "hardware", "ganbrush train stylegan", "ganbrush eval fid", "train split"):
        assert needed.lower() in text.lower(), f"model card lacks {needed!r}"
    with safe_open(str(DEFAULT_GENERATOR), "pt") as f:
        meta = f.metadata()
    config = json.loads(meta["config"])
    # The card quotes the architecture of the file it ships with.
    assert f"z_dim {config['z_dim']}" in text and f"w_dim {config['w_dim']}" in text
    fid = re.search(r"FID[^|\n]*\|\s*\*?\*?([0-9.]+)", text)
    assert fid, "model card must state a measured FID in its table"
    assert 0 < float(fid.group(1)) < 300
