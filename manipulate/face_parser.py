"""The face parser: background, skin and hair of an aligned face; the full label map with the
landmark parts drawn over it; its training on FASSEG and its evaluation on FASSEG's test set.

The parser is a small U-Net on the aligned face (float ``[N, 3, r, r]`` in [-1, 1]) plus one
channel that says where the face is: the hull of its landmarks (:func:`manipulate.labels.face_hull`,
1 inside). It predicts logits ``[N, 3, r, r]`` over :data:`PARSER_CLASSES`, whose indices are
those of the same classes in :data:`manipulate.labels.CLASSES`. Inner parts (brows, eyes, nose,
lips, mouth) come from the landmarks (:func:`manipulate.labels.landmark_parts`), painted over
the parser's map by :func:`label_face`.

Training data: FASSEG's 20 training faces (``segmentation/fasseg-v2/train``: full labels; FASSEG
labels brows as hair, so hair inside the landmark brows becomes skin here), aligned with
jittered framings, and the packed training faces with partial labels: skin inside the landmark
hull, nothing (ignored) elsewhere. FASSEG's 50 test faces are only for :func:`evaluate_fasseg`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ganbrush_core.paths import data_root
from ganbrush_core.training import Sample, Trainable, TrainError, TrainingRun
from ganbrush_core.weights import WeightsFileError, config_from_dict, read_safetensors, save_safetensors
from manipulate import labels as L

PARSER_CLASSES: tuple[str, ...] = ("background", "skin", "hair")
assert all(L.CLASS_INDEX[c] == i for i, c in enumerate(PARSER_CLASSES))
FORMAT = "ganbrush-face-parser"
VERSION = "1"
DEFAULT_FILE = "face_parser64.safetensors"
IGNORE = 255  # label of pixels a training sample does not supervise

# FASSEG's colour classes (DESIGN.md section 4) and where each of ours goes in them.
FASSEG_CLASSES: tuple[str, ...] = ("background", "hair", "skin", "eyes", "nose", "mouth")
FASSEG_COLORS = np.array([(255, 0, 0), (127, 0, 0), (255, 255, 0), (0, 0, 255), (0, 255, 255), (0, 255, 0)],
                         dtype=np.float32)
TO_FASSEG: np.ndarray = np.array([FASSEG_CLASSES.index(c) for c in (
    "background", "skin", "hair", "hair", "hair", "eyes", "eyes", "nose", "mouth", "mouth", "mouth")], np.uint8)
assert len(TO_FASSEG) == L.NUM_CLASSES


class FaceParserError(ValueError):
    """A parser file that cannot be used."""


# -- the network -----------------------------------------------------------------------------------------
@dataclass
class ParserConfig:
    res: int = 64
    channels: int = 32
    depth: int = 3  # down-sampling steps (64 px -> 8 px at the bottom)

    def validate(self) -> ParserConfig:
        if self.channels < 1 or self.depth < 1 or self.res % (2 ** self.depth):
            raise FaceParserError(f"bad parser config {self}: res must be divisible by 2**depth")
        return self


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


class FaceParser(nn.Module):
    """U-Net: ``forward(image [N, 3, r, r] in [-1, 1], hull [N, 1, r, r] in {0, 1})`` -> logits
    ``[N, 3, r, r]`` over :data:`PARSER_CLASSES`."""

    def __init__(self, cfg: ParserConfig | None = None) -> None:
        super().__init__()
        self.cfg = (cfg or ParserConfig()).validate()
        c = self.cfg.channels
        widths = [c * 2 ** min(i, 2) for i in range(self.cfg.depth + 1)]  # 32, 64, 128, 128
        self.down = nn.ModuleList([_block(4, widths[0])])
        self.down.extend(_block(widths[i], widths[i + 1]) for i in range(self.cfg.depth))
        self.up = nn.ModuleList(_block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(self.cfg.depth)))
        self.head = nn.Conv2d(widths[0], len(PARSER_CLASSES), 1)
        self.source = "untrained"

    def forward(self, image: torch.Tensor, hull: torch.Tensor) -> torch.Tensor:
        x = torch.cat([image, hull * 2 - 1], 1)
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.avg_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = block(torch.cat([F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False), skip], 1))
        return self.head(x)


def default_parser_path() -> Path:
    return Path(__file__).resolve().parent / "weights" / DEFAULT_FILE


def save_parser(net: FaceParser, path: str | os.PathLike, force: bool = False,
                metadata: dict[str, str] | None = None) -> Path:
    return save_safetensors(path, net.state_dict(), format=FORMAT, version=VERSION,
                            config=dataclasses.asdict(net.cfg), metadata=metadata, dtype=torch.float16, force=force)


def load_parser(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> FaceParser:
    """A parser file (``None`` / ``"default"``: the shipped one), in eval mode, frozen."""
    path = default_parser_path() if path in (None, "default") else Path(path)
    if not path.is_file():
        raise FaceParserError(f"{path}: no such face parser file; train one with `ganbrush train parser`")
    try:
        wf = read_safetensors(path, FORMAT, "a ganbrush face parser")
        net = FaceParser(config_from_dict(ParserConfig, wf.config, "parser config"))
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in wf.tensors.items()})
    except (WeightsFileError, ValueError, TypeError, RuntimeError) as e:
        raise FaceParserError(f"{path}: {str(e).splitlines()[0]}") from None
    net.source = path.name
    return net.to(device).eval().requires_grad_(False)


# -- labelling faces -------------------------------------------------------------------------------------
def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2).float() / 127.5 - 1


@torch.no_grad()
def parser_probabilities(net: FaceParser, images: np.ndarray, landmarks: np.ndarray, size: int | None = None
                         ) -> torch.Tensor:
    """Class probabilities ``[N, 3, size, size]`` of uint8 ``[N, r, r, 3]`` aligned faces with
    their landmarks (``[N, 68, 2]`` in px of ``r``); faces are resized to the parser's resolution
    and its logits bilinearly to ``size`` (default ``r``)."""
    images = np.asarray(images)
    n, r = len(images), images.shape[1]
    size = size or r
    p = net.cfg.res
    small = images if r == p else np.stack([cv2.resize(np.asarray(im), (p, p), interpolation=cv2.INTER_AREA)
                                            for im in images])
    hull = torch.from_numpy(np.stack([L.face_hull(lm, p, r) for lm in landmarks]))[:, None]
    device = next(net.parameters()).device
    logits = net(_to_tensor(small).to(device), hull.to(device)).float().cpu()
    if size != p:
        logits = F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
    return logits.softmax(1).reshape(n, len(PARSER_CLASSES), size, size)


def label_face(net: FaceParser, image: np.ndarray, landmarks: np.ndarray, size: int | None = None) -> np.ndarray:
    """The full label map (uint8 ``[size, size]``) of one aligned face (uint8 ``[r, r, 3]``) with
    its landmarks in px of ``r``: the parser's background / skin / hair with the landmark parts
    drawn over it at ``size`` (default ``r``; larger sizes draw the parts sharper)."""
    size = size or image.shape[0]
    base = parser_probabilities(net, image[None], np.asarray(landmarks)[None], size)[0].argmax(0).numpy()
    return L.compose(base.astype(np.uint8), L.landmark_parts(landmarks, size, image.shape[0]))


def label_faces(net: FaceParser, images: np.ndarray, landmarks: np.ndarray, batch: int = 256,
                progress: bool = True) -> np.ndarray:
    """:func:`label_face` of each of uint8 ``[N, r, r, 3]`` at ``r``: uint8 ``[N, r, r]``."""
    out = np.zeros(np.asarray(images).shape[:3], np.uint8)
    r = out.shape[1]
    for i in tqdm(range(0, len(out), batch), desc="label maps", unit="batch", disable=not progress):
        base = parser_probabilities(net, images[i:i + batch], landmarks[i:i + batch]).argmax(1).numpy()
        for j, lm in enumerate(landmarks[i:i + batch]):
            out[i + j] = L.compose(base[j].astype(np.uint8), L.landmark_parts(lm, r))
    return out


# -- FASSEG ---------------------------------------------------------------------------------------------
def fasseg_dir(split: str, root: str | os.PathLike | None = None) -> Path:
    if split not in ("train", "test"):
        raise ValueError(f"FASSEG split must be train or test, got {split!r}")
    d = Path(root) if root is not None else data_root() / "segmentation" / "fasseg-v2"
    return d / split


def read_fasseg(split: str, root: str | os.PathLike | None = None, limit: int | None = None
                ) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, photo uint8 [H, W, 3], labels uint8 [H, W] over FASSEG_CLASSES)`` of a split (the
    first ``limit`` faces in numeric order); the colour labels' anti-aliased edges are snapped to
    the nearest class colour."""
    from inversion.photos import load_photo

    d = fasseg_dir(split, root)
    names = sorted((d / "images").glob("*.png"), key=lambda p: int(p.stem) if p.stem.isdigit() else p.stem)
    if not names:
        raise FileNotFoundError(f"{d}: FASSEG not found (put shared/data beside the repo or set GANBRUSH_DATA)")
    out = []
    for f in names[:limit]:
        colors = load_photo(d / "labels-color" / f.name).astype(np.float32)
        lab = ((colors[..., None, :] - FASSEG_COLORS) ** 2).sum(-1).argmin(-1).astype(np.uint8)
        out.append((f.name, load_photo(f), lab))
    return out


def _jittered_face(face: Any, rng: np.random.Generator, amount: float) -> Any:
    """``face`` with its landmarks moved by a random similarity (scale, turn, shift ~ ``amount``),
    so the framing cut from them varies as detections on other photos do."""
    from inversion.align import Face

    lm = face.landmarks
    c = lm.mean(0)
    s = np.exp(rng.normal(0, amount))
    a = rng.normal(0, amount)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * s
    size = np.ptp(lm, 0).max()
    shift = rng.normal(0, amount / 2, 2) * size
    return Face(face.box, (lm - c) @ rot.T + c + shift, face.score)


def aligned_landmarks(aligned: Any, landmarks: np.ndarray | None = None) -> np.ndarray:
    """Photo-px landmarks (default: those of ``aligned``'s face) in ``aligned``'s pixels."""
    lm = aligned.face.landmarks if landmarks is None else landmarks
    return (aligned.from_photo[:2, :2] @ np.asarray(lm, np.float64).T).T + aligned.from_photo[:2, 2]


def _to_photo_at(aligned: Any, size: int) -> np.ndarray:
    """``[3, 3]`` affine: px of ``aligned``'s square sampled at ``size`` x ``size`` -> photo px."""
    k = aligned.res / size  # aligned px per output px (pixel centres at integers in both)
    return aligned.to_photo @ np.array([[k, 0, 0.5 * k - 0.5], [0, k, 0.5 * k - 0.5], [0, 0, 1]])


def warp_labels_to_aligned(labels: np.ndarray, aligned: Any, size: int) -> np.ndarray:
    """A photo-frame label map cut out along ``aligned``'s square at ``size`` (nearest)."""
    return cv2.warpAffine(labels, _to_photo_at(aligned, size)[:2], (size, size),
                          flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


def fasseg_training_set(res: int, copies: int, seed: int = 0, jitter: float = 0.08,
                        root: str | os.PathLike | None = None, limit: int | None = None) -> dict[str, np.ndarray]:
    """FASSEG's training faces aligned ``copies`` times each with jittered framings:
    ``images`` uint8 ``[M, res, res, 3]``, ``hull`` float32 ``[M, res, res]``, ``labels`` uint8
    ``[M, res, res]`` over :data:`PARSER_CLASSES` (eyes, nose, mouth and the brows are skin)."""
    from inversion.align import align_face, detect_faces

    rng = np.random.default_rng(seed)
    fine = res * L.SUPERSAMPLE
    images, hulls, labels = [], [], []
    to_parser = np.array([L.CLASS_INDEX[c] for c in ("background", "hair", "skin", "skin", "skin", "skin")], np.uint8)
    for _, photo, lab in read_fasseg("train", root, limit):
        face = detect_faces(photo)[0]
        for k in range(copies):
            jittered = face if k == 0 else _jittered_face(face, rng, jitter)
            aligned = align_face(photo, jittered, res)
            lm = aligned_landmarks(aligned, face.landmarks)
            parts = L.landmark_parts(lm, fine, res)
            big = to_parser[warp_labels_to_aligned(lab, aligned, fine)]
            big[(parts == L.CLASS_INDEX["left_brow"]) | (parts == L.CLASS_INDEX["right_brow"])] = L.CLASS_INDEX["skin"]
            images.append(aligned.image)
            hulls.append(L.face_hull(lm, res, res))
            labels.append(L.resize_labels(big, res))
    return {"images": np.stack(images), "hull": np.stack(hulls), "labels": np.stack(labels)}


def hull_training_set(images: np.ndarray, landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Partial labels of packed faces: skin inside the landmark hull, :data:`IGNORE` elsewhere."""
    r = images.shape[1]
    hull = np.stack([L.face_hull(lm, r, r) for lm in landmarks])
    labels = np.where(hull > 0, L.CLASS_INDEX["skin"], IGNORE).astype(np.uint8)
    return {"images": np.ascontiguousarray(images), "hull": hull, "labels": labels}


# -- training -------------------------------------------------------------------------------------------
@dataclass
class ParserTrainConfig:
    res: int = 64
    channels: int = 16
    batch: int = 24
    lr: float = 2e-3
    fasseg_copies: int = 40  # jittered framings per FASSEG training face
    hull_faces: int = 2000  # packed training faces with partial (hull) labels
    hull_fraction: float = 0.25  # share of each batch drawn from them
    fasseg_limit: int | None = None  # only the first N FASSEG training faces (smoke tests)
    steps: int = 1000  # the cosine learning-rate schedule ends here
    steps_per_interval: int = 250
    seed: int = 0


def _augment(images: torch.Tensor, hull: torch.Tensor, labels: torch.Tensor, g: torch.Generator
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random mirror, brightness / contrast / colour / blur: studio FASSEG photos must carry
    over to CelebA and UTKFace faces."""
    n = images.shape[0]
    flip = torch.rand(n, generator=g) < 0.5
    images, hull, labels = (torch.where(flip.view(-1, *[1] * (t.ndim - 1)), t.flip(-1), t)
                            for t in (images, hull, labels))
    gain = 1 + 0.25 * torch.randn(n, 3, 1, 1, generator=g).clamp(-2, 2) * torch.tensor([1, 0.3, 0.3]).view(1, 3, 1, 1)
    gain = gain[:, :1] * (1 + (gain - gain[:, :1]))  # mostly one contrast gain, a little per colour
    bias = 0.2 * torch.randn(n, 1, 1, 1, generator=g).clamp(-2, 2)
    images = (images * gain + bias).clamp(-1, 1)
    blur = torch.rand(n, generator=g) < 0.3
    if blur.any():
        soft = F.avg_pool2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        images = torch.where(blur.view(-1, 1, 1, 1), soft, images)
    return images, hull, labels


class ParserTrainer(Trainable):
    """Cross-entropy on mixed batches of FASSEG faces (full labels) and hull-labelled faces."""

    def __init__(self, cfg: ParserTrainConfig, fasseg: dict[str, np.ndarray], hull: dict[str, np.ndarray] | None,
                 device: torch.device) -> None:
        torch.manual_seed(cfg.seed)
        self.cfg, self.device = cfg, device
        self.net = FaceParser(ParserConfig(res=cfg.res, channels=cfg.channels)).to(device).train()
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.sets = [self._tensors(fasseg)] + ([self._tensors(hull)] if hull is not None else [])
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step, self.history = 0, []
        self.images_seen = None

    @staticmethod
    def _tensors(d: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return _to_tensor(d["images"]), torch.from_numpy(d["hull"])[:, None], torch.from_numpy(d["labels"]).long()

    def _lr(self) -> float:
        # A Python float: the optimiser's state goes into checkpoint.pt, read back tensors-only.
        return float(self.cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, self.step / self.cfg.steps))))

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        n_hull = int(round(cfg.batch * cfg.hull_fraction)) if len(self.sets) > 1 else 0
        parts = []
        for (images, hull, labels), n in zip(self.sets, (cfg.batch - n_hull, n_hull)):
            idx = torch.randint(len(images), (n,), generator=self.gen)
            parts.append((images[idx], hull[idx], labels[idx]))
        images, hull, labels = (torch.cat(t) for t in zip(*parts))
        images, hull, labels = _augment(images, hull, labels, self.gen)
        for group in self.opt.param_groups:
            group["lr"] = self._lr()
        logits = self.net(images.to(self.device), hull.to(self.device))
        loss = F.cross_entropy(logits, labels.to(self.device), ignore_index=IGNORE)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        return {"loss": loss.item()}

    @torch.no_grad()
    def sample(self) -> Sample:
        images, hull, labels = (t[:8] for t in self.sets[-1])
        self.net.eval()
        pred = self.net(images.to(self.device), hull.to(self.device)).argmax(1).cpu().numpy()
        self.net.train()
        colour = torch.from_numpy(np.stack([L.colorize(p.astype(np.uint8)) for p in pred])).permute(0, 3, 1, 2)
        grid = torch.cat([images, colour.float() / 127.5 - 1])
        return Sample(grid, ncols=8, metrics={})

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])

    def save_weights(self, run_dir: Path) -> None:
        save_parser(self.net, run_dir / DEFAULT_FILE, force=True, metadata={"step": str(self.step)})


def train_parser(cfg: ParserTrainConfig, run_dir: str | os.PathLike, labelled_faces: str | None = None,
                 device: str | torch.device = "cpu", resume_from: str | os.PathLike | None = None,
                 force: bool = False, until: int | None = None, progress: bool = True) -> ParserTrainer:
    """Train the parser for ``cfg.steps`` steps in ``run_dir`` (resumable; ``until`` stops
    earlier, at that step, with the schedule of the whole run). ``labelled_faces``: a
    folder holding ``images.npy`` and ``landmarks.npy`` of packed training faces (``ganbrush data
    labels`` writes both); without it only FASSEG is used."""
    run = TrainingRun(run_dir, dataclasses.asdict(cfg), resume_from=resume_from, force=force, device=device)
    if run.world.size > 1:
        raise TrainError("the face parser trains in one process; run it without torchrun")
    cfg = config_from_dict(ParserTrainConfig, run.config, "parser training config")
    fasseg = fasseg_training_set(cfg.res, cfg.fasseg_copies, cfg.seed, limit=cfg.fasseg_limit)
    hull = None
    if labelled_faces is not None:
        folder = Path(labelled_faces)
        try:
            images = np.load(folder / L.IMAGES_FILE, mmap_mode="r")
            landmarks = np.load(folder / "landmarks.npy", mmap_mode="r")
        except OSError as e:
            raise TrainError(f"{folder}: needs images.npy and landmarks.npy ({e.strerror})") from None
        pick = np.random.default_rng(cfg.seed).permutation(len(images))[:cfg.hull_faces]
        pick.sort()
        hull = hull_training_set(np.asarray(images[pick]), np.asarray(landmarks[pick]))
        if hull["images"].shape[1] != cfg.res:
            raise TrainError(f"{folder} holds {hull['images'].shape[1]} px faces; the parser trains at {cfg.res}")
    trainer = ParserTrainer(cfg, fasseg, hull, run.device)
    run.train(trainer, total=min(cfg.steps, until or cfg.steps), interval=cfg.steps_per_interval,
              postfix=("loss",), desc="train face parser", progress=progress)
    return trainer


# -- evaluation -----------------------------------------------------------------------------------------
def fasseg_iou(net: FaceParser, size: int = 256, root: str | os.PathLike | None = None, split: str = "test",
               limit: int | None = None, progress: bool = True) -> dict[str, float]:
    """Per-class IoU on FASSEG (``split``, default the 50 test faces) for the classes FASSEG
    labels, in each photo's own frame: every face is detected and aligned, labelled at ``size``
    (parser + landmarks), mapped to FASSEG's classes and warped back onto the photo (nearest);
    pixels of the photo outside the aligned square are not counted. Intersections and unions are
    summed over all faces (dataset IoU); ``"mean"`` is their mean over the classes."""
    from inversion.align import align_face, detect_faces

    inter = np.zeros(len(FASSEG_CLASSES))
    union = np.zeros(len(FASSEG_CLASSES))
    for _, photo, truth in tqdm(read_fasseg(split, root, limit), desc="FASSEG IoU", disable=not progress):
        face = detect_faces(photo)[0]
        aligned = align_face(photo, face, net.cfg.res)
        lab = label_face(net, aligned.image, aligned_landmarks(aligned), size)
        fass = TO_FASSEG[lab]
        to_photo = _to_photo_at(aligned, size)
        h, w = truth.shape
        flags = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
        pred = cv2.warpAffine(fass, np.linalg.inv(to_photo)[:2], (w, h), flags=flags, borderValue=255)
        inside = pred != 255
        for c in range(len(FASSEG_CLASSES)):
            p, t = (pred == c) & inside, (truth == c) & inside
            inter[c] += (p & t).sum()
            union[c] += (p | t).sum()
    iou = {c: float(inter[i] / max(union[i], 1)) for i, c in enumerate(FASSEG_CLASSES)}
    iou["mean"] = float(np.mean(list(iou.values())))
    return iou
