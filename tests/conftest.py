"""Fixtures shared by every test folder: the shared data, small generators, the compiled-op targets.

- ``data_root`` / ``face_data_root`` / ``photos_dir``: the read-only research data
  (:func:`ganbrush_core.paths.data_root`, i.e. ``$GANBRUSH_DATA`` or ``../shared/data``); a test
  that asks for one is skipped where that data is absent.
- ``make_generator(res, ...)``: a small seeded random StyleGAN2 generator (eval mode);
  ``small_generator`` is the 16 px one most tests use.
- ``ops_target``: the compiled op implementations (``cpp`` on the CPU, ``cuda`` on a GPU) that the
  op tests compare with the pure-PyTorch reference; each is skipped where it cannot be built.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from ganbrush_core.paths import data_root as _data_root

DATA_ROOT = _data_root()
FACE_SOURCES = ("celeba-10k", "utkface")


def have_faces() -> bool:
    return all((DATA_ROOT / "faces" / d).is_dir() for d in FACE_SOURCES)


@pytest.fixture(scope="session", autouse=True)
def usual_umask() -> Iterator[None]:
    """Outputs take the umask's mode (``0o666 & ~umask``); the tests that expect 0644 files assume
    the usual umask 022 whatever the runner's (002 is common), and their subprocesses inherit it."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared data folder (skips the test where it is absent)."""
    if not DATA_ROOT.is_dir():
        pytest.skip(f"shared data not found at {DATA_ROOT} (set GANBRUSH_DATA)")
    return DATA_ROOT


@pytest.fixture(scope="session")
def face_data_root(data_root: Path) -> Path:
    """The shared data folder, holding CelebA-10k and UTKFace (skips the test otherwise)."""
    if not have_faces():
        pytest.skip(f"shared face data (CelebA-10k, UTKFace) not found under {data_root / 'faces'}")
    return data_root


@pytest.fixture(scope="session")
def photos_dir(data_root: Path) -> Path:
    """``photos/`` of the shared data: public-domain photos with one or several faces."""
    photos = data_root / "photos"
    if not photos.is_dir():
        pytest.skip(f"shared photos not found at {photos}")
    return photos


@pytest.fixture(scope="session")
def face(face_data_root: Path) -> torch.Tensor:
    """CelebA 000001 cropped to the face and resized to 64 px: ``[1, 3, 64, 64]`` float in [0, 1]."""
    from PIL import Image

    path = face_data_root / "faces" / "celeba-10k" / "000001.jpg"
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB").crop((4, 24, 85, 105)).resize((64, 64), Image.Resampling.LANCZOS))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].float() / 255


def _make_generator(res: int = 16, *, z_dim: int = 16, w_dim: int = 16, channel_base: int = 64,
                    channel_max: int = 16, mapping_layers: int = 2, seed: int = 0):
    from stylegan_ops.networks import Generator, GeneratorConfig, channels_for

    torch.manual_seed(seed)
    cfg = GeneratorConfig(img_resolution=res, z_dim=z_dim, w_dim=w_dim, mapping_layers=mapping_layers,
                          channels=channels_for(res, channel_base, channel_max))
    return Generator(cfg).eval()


@pytest.fixture(scope="session")
def make_generator() -> Callable[..., torch.nn.Module]:
    """``make_generator(res=16, *, z_dim=16, w_dim=16, channel_base=64, channel_max=16,
    mapping_layers=2, seed=0)``: a new random generator (eval mode), seeded so every call with the
    same arguments gives the same weights."""
    return _make_generator


@pytest.fixture(scope="module")
def small_generator() -> torch.nn.Module:
    """The default :func:`make_generator` (16 px, 16-d latents, seed 0), shared within a test module."""
    return _make_generator()


@dataclass(frozen=True)
class OpsTarget:
    """A compiled op implementation under test: ``impl`` on ``device``, compared with ``ref`` at
    relative tolerance ``tol[dtype]``."""

    impl: str
    device: str
    tol: dict


# CUDA is built with --use_fast_math (approximate single-precision exp / tanh / division);
# double precision is unaffected and keeps the tight tolerance.
_TOL = {"cpp": {torch.float64: 1e-10, torch.float32: 1e-5}, "cuda": {torch.float64: 1e-10, torch.float32: 5e-5}}


@pytest.fixture(scope="module", params=["cpp", "cuda"])
def ops_target(request: pytest.FixtureRequest) -> Iterator[OpsTarget]:
    from stylegan_ops.ops import build

    kind = request.param
    if kind == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device available")
    reason = build.missing_prerequisite(kind)
    if reason:
        pytest.skip(f"cannot build the {kind} ops here: {reason}")
    build.load(kind)  # a build failure is a test failure, not a skip
    if kind != "cuda":
        yield OpsTarget(kind, "cpu", _TOL[kind])
        return
    # cuDNN may run the float32 reference convolutions in TF32 (10-bit mantissa) by default.
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield OpsTarget(kind, "cuda", _TOL[kind])
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


# --------------------------------------------------------------------------------------------
# Model cards (``*/weights/*.md``): facts to check against the shipped files, not prose to grep


def _card_table(text: str) -> dict[str, str]:
    """The card's two-column ``| key | value |`` rows (the first table), keys lower-cased."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 2 and cells[0] and not set(cells[0]) <= {"-"}:
            rows.setdefault(cells[0].lower(), cells[1])
    return rows


def _card_commands(text: str) -> list[list[str]]:
    """argv (without the program name) of every ``ganbrush ...`` line in the card's ``sh`` blocks,
    continuation lines joined and leading ``VAR=value`` assignments dropped."""
    import re
    import shlex

    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words = words[1:]
            if words and words[0] == "ganbrush":
                commands.append(words[1:])
    return commands


@pytest.fixture(scope="session")
def card_table() -> Callable[[str], dict[str, str]]:
    return _card_table


@pytest.fixture(scope="session")
def card_commands() -> Callable[[str], list[list[str]]]:
    return _card_commands
