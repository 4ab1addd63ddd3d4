"""Fixtures of the inpainting tests."""

import json

import numpy as np
import pytest

#: Side of the packed test faces.
FACES_RES = 32


@pytest.fixture(scope="session")
def faces_dir(tmp_path_factory):
    """A packed train folder (as `ganbrush data faces` writes it) of 12 smooth random 32 px images."""
    out = tmp_path_factory.mktemp("packed") / "faces"
    out.mkdir()
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (12, 4, 4, 3)).astype(np.float32)
    images = np.stack([np.kron(c, np.ones((FACES_RES // 4, FACES_RES // 4, 1))) for c in coarse]).astype(np.uint8)
    np.save(out / "images.npy", images)
    (out / "meta.json").write_text(json.dumps({"format": "ganbrush-faces", "res": FACES_RES, "split": "train"}))
    return out
