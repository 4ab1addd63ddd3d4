"""The shipped default face generator: present, small, loadable as "default", produces varied
faces, and its model card describes the file that is actually shipped."""

from __future__ import annotations

import json
import re

import torch
from safetensors import safe_open

from ganbrush_cli import build_parser
from ganbrush_core.images import to_uint8
from stylegan_ops.checkpoints import DEFAULT_GENERATOR, generator_hash, load_generator

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
    # StyleGAN2's raw output overshoots [-1, 1] (pixels are clamped), but only a little and rarely.
    assert img.abs().max() < 5 and (img.abs() > 1.5).float().mean() < 0.1
    # Samples differ from each other (no mode collapse to one picture) and are not flat.
    flat = img.flatten(1)
    pairwise = torch.cdist(flat, flat)[~torch.eye(16, dtype=torch.bool)]
    assert pairwise.min() > 0.05 * flat.norm(dim=1).mean()
    assert to_uint8(img).std() > 20


def test_model_card_states_the_facts_of_the_shipped_file(card_table, card_commands):
    text = CARD.read_text()
    table = card_table(text)
    with safe_open(str(DEFAULT_GENERATOR), "pt") as f:
        config = json.loads(f.metadata()["config"])
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    G = load_generator()
    # File: its precision and size as stated.
    size_mb = float(re.search(r"([0-9.]+) MB", table["file"]).group(1))
    assert abs(DEFAULT_GENERATOR.stat().st_size / 1e6 - size_mb) <= 0.05  # rounded to 0.1 MB
    assert ("float16" in table["file"]) == ("F16" in dtypes)
    assert f"`{generator_hash(G)}`" in table["generator hash"]
    # Architecture: every number quoted is the shipped network's.
    arch = table["architecture"]
    res = config["img_resolution"]
    assert f"{res} x {res}" in arch and f"z_dim {config['z_dim']}" in arch and f"w_dim {config['w_dim']}" in arch
    assert f"{config['mapping_layers']} mapping layers" in arch and f"num_ws {G.num_ws}" in arch
    channels = {int(r): c for r, c in config["channels"].items()}
    assert "channels " + "/".join(str(channels[r]) for r in sorted(channels)) in arch
    assert f"{sum(p.numel() for p in G.parameters()) / 1e6:.2f} M parameters" in arch
    # Length: kimg x 1000 / batch = steps, as stated.
    kimg, steps = re.search(r"\*\*([\d.]+) kimg\*\* \(([\d,]+) steps\)", table["length"]).groups()
    batch = int(re.search(r"batch (\d+)", table["training"]).group(1))
    assert round(float(kimg) * 1000) == int(steps.replace(",", "")) * batch
    # Measured FID in its range, and the commands that reproduce the file all parse.
    fid = re.search(r"FID[^|\n]*\|\s*\*?\*?([0-9.]+)", text)
    assert fid and 0 < float(fid.group(1)) < 300
    commands = card_commands(text)
    assert [c[:2] for c in commands] == [["data", "faces"], ["data", "faces"], ["train", "stylegan"],
                                         ["convert", "runs/f64/generator_ema.safetensors"], ["eval", "fid"]]
    for argv in commands:
        build_parser().parse_args(argv)  # SystemExit (a failure) for an option the CLI does not have
