"""A face attribute classifier for InterFaceGAN, trained by ganbrush on the shared face data.

One small CNN trunk with one output per attribute (a shared linear layer, one row per head):

- ten CelebA attributes (:data:`CELEBA_ATTRIBUTES`), binary logits, learnt from CelebA's labels;
- ``"gender"``, a binary logit from UTKFace's labels, **positive = male** (same sign as ``"male"``);
- ``"age"`` in years, from UTKFace's labels (Huber loss on standardised years).

A training sample only contributes to the heads its data set labels. Faces are framed exactly as
the generator's training images (:func:`ganbrush_core.faces.frame_face` at the classifier's
resolution), so scores of generated images are meaningful. Images are float32 NCHW RGB in
[-1, 1], as everywhere in ganbrush. Splits follow the data rules (CelebA 009001-010000 and every
20th UTKFace file are held out): only the train split is used for training;
:func:`evaluate_classifier` scores the held-out split.
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganbrush_core import distributed, faces
from ganbrush_core.devices import resolve_device
from ganbrush_core.images import uint8_to_float
from ganbrush_core.io import atomic_path, refuse_overwrite, write_text
from ganbrush_core.training import Trainable, TrainingRun
from ganbrush_core.weights import WeightsFileError, read_metadata, read_safetensors, save_safetensors

CELEBA_ATTRIBUTES: tuple[str, ...] = ("Smiling", "Male", "Young", "Eyeglasses", "Mouth_Slightly_Open", "Blond_Hair",
                                      "Black_Hair", "Bald", "Heavy_Makeup", "Wearing_Hat")
GENDER = "gender"
AGE = "age"
SCORE_NAMES: tuple[str, ...] = tuple(a.lower() for a in CELEBA_ATTRIBUTES) + (GENDER, AGE)

FORMAT_NAME = "ganbrush.attributes"
FORMAT_VERSION = "1"
WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_CLASSIFIER = WEIGHTS_DIR / "attributes64.safetensors"
CELEBA_LABELS_FILE = "list_attr_celeba.txt"
UTK_MALE = 0  # UTKFace file names: age_gender_race_date.jpg with gender 0 = male, 1 = female


class AttributeClassifierError(ValueError):
    """A classifier file that cannot be used, or data the classifier cannot be trained on."""


# --------------------------------------------------------------------------------------------
# Network


@dataclass
class ClassifierConfig:
    """Architecture: ``resolution`` px input, one stride-2 block per channel entry (down to
    ``resolution / 2**len(channels)``), global average pooling, one linear output per name."""

    resolution: int = 64
    channels: tuple[int, ...] = (32, 64, 96, 128)
    names: tuple[str, ...] = SCORE_NAMES
    age_mean: float = 33.0  # years; the age head predicts standardised years
    age_std: float = 20.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ClassifierConfig:
        return cls(resolution=int(d["resolution"]), channels=tuple(int(c) for c in d["channels"]),
                   names=tuple(d["names"]), age_mean=float(d["age_mean"]), age_std=float(d["age_std"]))


def default_channels(res: int) -> tuple[int, ...]:
    """Widths of the stride-2 blocks that take ``res`` px down to 4 px: 32, 64, 96, 128, 128, ..."""
    if res < 8 or res & (res - 1):
        raise AttributeClassifierError(f"classifier resolution must be a power of two >= 8, got {res}")
    return tuple(min(32 * (i + 1), 128) for i in range(int(math.log2(res)) - 2))


class _Block(nn.Module):
    """A stride-2 3x3 conv, then a 3x3 conv, each with BN + ReLU. Downsampling first halves the
    cost against the usual order, which matters for training on one CPU thread."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class AttributeClassifier(nn.Module):
    """Faces ``[N, 3, res, res]`` in [-1, 1] -> ``{name: [N]}``: logits for the binary
    attributes (positive = attribute present; for ``"gender"`` positive = male), years for ``"age"``."""

    def __init__(self, cfg: ClassifierConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or ClassifierConfig()
        blocks, c_in = [], 3
        for c in self.cfg.channels:
            blocks.append(_Block(c_in, c))
            c_in = c
        self.trunk = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(c_in, len(self.cfg.names))

    @property
    def names(self) -> tuple[str, ...]:
        return self.cfg.names

    @property
    def resolution(self) -> int:
        return self.cfg.resolution

    def raw(self, images: Tensor) -> Tensor:
        """Head outputs ``[N, len(names)]`` before the age head is converted to years."""
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[-2:] != (self.resolution, self.resolution):
            res = self.resolution
            raise ValueError(f"expected images [N, 3, {res}, {res}], got {tuple(images.shape)}; "
                             "use attribute_scores() to resize")
        return self.head(self.dropout(self.trunk(images).mean((2, 3))))

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        out = self.raw(images)
        scores = {n: out[:, i] for i, n in enumerate(self.names)}
        if AGE in scores:
            scores[AGE] = scores[AGE] * self.cfg.age_std + self.cfg.age_mean
        return scores


# --------------------------------------------------------------------------------------------
# Files


def save_classifier(clf: AttributeClassifier, path: str | os.PathLike, force: bool = False,
                    meta: dict | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write ``clf`` as ``.safetensors`` (config and ``meta`` as JSON in the metadata), atomically
    with mode 0644. ``dtype=torch.float16`` halves the size. Refuses an existing file unless ``force``."""
    try:
        return save_safetensors(path, clf.state_dict(), format=FORMAT_NAME, version=FORMAT_VERSION,
                                config=clf.cfg.to_dict(), metadata={"meta": json.dumps(meta or {})}, dtype=dtype,
                                force=force)
    except WeightsFileError as e:
        raise AttributeClassifierError(str(e)) from None


def classifier_meta(path: str | os.PathLike | None = None) -> dict:
    """The ``meta`` dict stored by :func:`save_classifier` (e.g. training metrics)."""
    path = _resolve(path)
    try:
        return json.loads(read_metadata(path).get("meta", "{}"))
    except (WeightsFileError, json.JSONDecodeError) as e:
        raise AttributeClassifierError(f"{path}: not a readable classifier file ({e})") from None


def _resolve(path: str | os.PathLike | None) -> Path:
    if path is None or str(path) == "default":
        if not DEFAULT_CLASSIFIER.is_file():
            raise AttributeClassifierError("no default attribute classifier is shipped in this version; "
                                           "train one with `ganbrush train attributes` and pass its path")
        return DEFAULT_CLASSIFIER
    path = Path(path).expanduser()
    if not path.is_file():
        raise AttributeClassifierError(f"{path}: no such classifier file")
    return path


def load_classifier(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> AttributeClassifier:
    """Read a :func:`save_classifier` file (``None`` / ``"default"``: the shipped one) in eval
    mode, float32, on ``device``."""
    path = _resolve(path)
    try:
        f = read_safetensors(path, FORMAT_NAME, what="a ganbrush attribute classifier")
    except WeightsFileError as e:
        raise AttributeClassifierError(f"{path}: {e}") from None
    cfg, state = ClassifierConfig.from_dict(f.config), f.tensors
    clf = AttributeClassifier(cfg)
    try:
        clf.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as e:
        raise AttributeClassifierError(f"{path}: weights do not match the stored config "
                                       f"({str(e).splitlines()[0]})") from None
    return clf.eval().to(resolve_device(device))


@torch.no_grad()
def attribute_scores(clf: AttributeClassifier, images: Tensor, batch: int = 256) -> dict[str, Tensor]:
    """Scores ``{name: [N]}`` (logits; years for age) of images ``[N, 3, H, W]`` in [-1, 1],
    resized to the classifier's resolution (area averaging down, bilinear up) if needed.
    Runs in eval mode on the classifier's device; returns CPU float32 tensors."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [N, 3, H, W] in [-1, 1], got {tuple(images.shape)}")
    was_training = clf.training
    clf.eval()
    device = next(clf.parameters()).device
    res = clf.resolution
    parts: list[dict[str, Tensor]] = []
    for chunk in images.split(batch):
        x = chunk.to(device, torch.float32)
        if x.shape[-2:] != (res, res):
            downsampling = x.shape[-1] >= res and x.shape[-2] >= res
            x = F.interpolate(x, size=(res, res), mode="area") if downsampling else \
                F.interpolate(x, size=(res, res), mode="bilinear", align_corners=False)
        parts.append({k: v.float().cpu() for k, v in clf(x).items()})
    clf.train(was_training)
    return {n: torch.cat([p[n] for p in parts]) for n in clf.names}


# --------------------------------------------------------------------------------------------
# Data


@dataclass
class AttributeData:
    """Framed faces (uint8 ``[N, res, res, 3]``) with labels ``[N, len(SCORE_NAMES)]`` float32:
    1/0 for binary attributes (gender 1 = male), years for age, NaN where the source has no label."""

    images: np.ndarray
    labels: np.ndarray
    sources: list[str] = field(default_factory=list)  # "celeba" / "utkface" per row

    def __len__(self) -> int:
        return len(self.images)


def read_celeba_labels(data_root: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """``{file name: [len(CELEBA_ATTRIBUTES)] float32 of 1/0}`` from ``list_attr_celeba.txt``."""
    path = faces.source_dir("celeba", data_root) / CELEBA_LABELS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: CelebA attribute labels not found")
    lines = path.read_text().split("\n")
    # Line 0 is the image count, line 1 the attribute names, then "name v1 v2 ..." with +1/-1.
    header = lines[1].split()
    columns = [header.index(a) for a in CELEBA_ATTRIBUTES]
    labels = {}
    for line in lines[2:]:
        parts = line.split()
        if parts:
            values = np.array([int(parts[1 + c]) for c in columns], dtype=np.float32)
            labels[parts[0]] = (values > 0).astype(np.float32)
    return labels


def parse_utkface_name(name: str) -> tuple[float, float] | None:
    """``(age in years, 1.0 if male else 0.0)`` from ``age_gender_race_date.jpg``; ``None`` if
    the name does not carry both (a few UTKFace files lack fields)."""
    parts = name.split("_")
    try:
        age, gender = int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None
    if gender not in (0, 1):
        return None
    return float(age), float(gender == UTK_MALE)


def _frame_file(job: tuple[Path, str, int]) -> np.ndarray:
    from PIL import Image

    path, source, res = job
    with Image.open(path) as im:
        return faces.frame_face(im, source, res)


def _load_source(source: str, split: str, res: int, data_root: str | os.PathLike | None,
                 limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    names = faces.split_files(source, split, data_root)
    labels = np.full((len(names), len(SCORE_NAMES)), np.nan, dtype=np.float32)
    if source == "celeba":
        table = read_celeba_labels(data_root)
        keep = [i for i, n in enumerate(names) if n in table]
        for i in keep:
            labels[i, : len(CELEBA_ATTRIBUTES)] = table[names[i]]
    else:
        keep = []
        for i, n in enumerate(names):
            parsed = parse_utkface_name(n)
            if parsed is not None:
                keep.append(i)
                labels[i, SCORE_NAMES.index(AGE)], labels[i, SCORE_NAMES.index(GENDER)] = parsed
    keep = keep[:limit] if limit is not None else keep
    directory = faces.source_dir(source, data_root)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        images = list(pool.map(_frame_file, [(directory / names[i], source, res) for i in keep], chunksize=64))
    if not images:
        raise AttributeClassifierError(f"no labelled {source} faces in the {split} split")
    return np.stack(images), labels[keep]


def load_attribute_data(split: str = "train", res: int = 64, data_root: str | os.PathLike | None = None,
                        cache_dir: str | os.PathLike | None = None, limit: int | None = None) -> AttributeData:
    """CelebA + UTKFace faces of ``split``, framed at ``res`` px, with their labels.

    ``limit`` keeps the first ``limit`` labelled faces of each source (tests). With ``cache_dir``
    the framed arrays are stored there as ``.npz`` and reused (decoding ~19k JPEGs takes a while);
    the cache is keyed by split, resolution and ``limit`` only, so use one folder per data root.
    """
    if res > faces.max_resolution("celeba"):
        limit_px = faces.max_resolution("celeba")
        raise AttributeClassifierError(f"res {res} is above CelebA's {limit_px} px (its face crops are about 50 px), "
                                       f"so its attribute labels cannot be used; train at {limit_px} or less")
    cache = None
    if cache_dir is not None:
        suffix = f"-limit{limit}" if limit is not None else ""
        cache = Path(cache_dir) / f"attributes-{split}-{res}px{suffix}.npz"
        if cache.is_file():
            with np.load(cache, allow_pickle=False) as f:
                return AttributeData(f["images"], f["labels"], [str(s) for s in f["sources"]])
    parts = {s: _load_source(s, split, res, data_root, limit) for s in faces.SOURCES}
    data = AttributeData(np.concatenate([p[0] for p in parts.values()]),
                         np.concatenate([p[1] for p in parts.values()]),
                         [s for s, p in parts.items() for _ in range(len(p[0]))])
    if cache is not None:
        with atomic_path(cache) as tmp:
            np.savez(tmp, images=data.images, labels=data.labels, sources=np.array(data.sources))
    return data


# --------------------------------------------------------------------------------------------
# Training


def augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """Random mirror, shift (up to 1/16 of the side), brightness/contrast/saturation jitter,
    occasional blur and pixel noise, for ``x`` ``[N, 3, H, W]`` in [-1, 1]. The shipped generator
    is weak (blurry, striped textures): the jitter, blur and noise help the classifier transfer."""
    n, _, h, w = x.shape
    rand = lambda *shape: torch.rand(*shape, generator=generator)
    flip = rand(n) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    pad = max(1, h // 16)
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dx, dy = (rand(n) * (2 * pad + 1)).long().tolist(), (rand(n) * (2 * pad + 1)).long().tolist()
    x = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    brightness = (rand(n, 1, 1, 1) - 0.5) * 0.3
    contrast = 1 + (rand(n, 1, 1, 1) - 0.5) * 0.4
    saturation = 1 + (rand(n, 1, 1, 1) - 0.5) * 0.6
    grey = x.mean(1, keepdim=True)
    x = grey + (x - grey) * saturation
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean + brightness
    blur = rand(n) < 0.3
    kernel = torch.tensor([1.0, 2.0, 1.0]) / 4
    kernel2d = (kernel[:, None] * kernel[None, :]).expand(3, 1, 3, 3)
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel2d, groups=3)
    x = torch.where(blur[:, None, None, None], blurred, x)
    noise_std = (rand(n, 1, 1, 1) < 0.3) * rand(n, 1, 1, 1) * 0.08
    x = x + torch.randn(x.shape, generator=generator) * noise_std
    return x.clamp(-1, 1)


def positive_weights(labels: np.ndarray) -> Tensor:
    """Per-head BCE weight of positive samples, ``sqrt(negatives / positives)`` clipped to
    [0.2, 5]: rare attributes (Bald is 2% of CelebA) are not simply predicted absent, without
    fully equalising the classes (which would make the scores noisy)."""
    pos = np.nanmean(labels, axis=0)
    pos = np.where(np.isnan(pos), 0.5, np.clip(pos, 1e-3, 1 - 1e-3))
    return torch.from_numpy(np.clip(np.sqrt((1 - pos) / pos), 0.2, 5.0)).float()


def _losses(clf: AttributeClassifier, raw: Tensor, labels: Tensor,
            pos_weight: Tensor) -> tuple[Tensor, dict[str, float]]:
    """Masked multi-task loss: BCE for the binary heads (positives weighted by ``pos_weight``),
    Huber on standardised years for age; each head's loss is the mean over the samples that
    carry its label."""
    total = raw.new_zeros(())
    parts: dict[str, float] = {}
    for i, name in enumerate(clf.names):
        known = ~torch.isnan(labels[:, i])
        if not known.any():
            continue
        if name == AGE:
            target = (labels[known, i] - clf.cfg.age_mean) / clf.cfg.age_std
            loss = F.smooth_l1_loss(raw[known, i], target, beta=0.25)
        else:
            loss = F.binary_cross_entropy_with_logits(raw[known, i], labels[known, i], pos_weight=pos_weight[i])
        total = total + loss
        parts[name] = float(loss.detach())
    return total, parts


#: Steps between checkpoints of a classifier run (each a few MB; a run is 2500 steps by default).
CHECKPOINT_EVERY = 250


class ClassifierTrainer(Trainable):
    """The classifier, AdamW with a one-cycle schedule, and the seeded batch draws (uniform over
    both sources, augmented by :func:`augment`); :func:`train_classifier` runs it in a run folder.
    Batches are drawn and augmented on the CPU (the same on every device), then moved to ``device``."""

    def __init__(self, cfg: ClassifierConfig, data: AttributeData, steps: int, batch: int, lr: float,
                 seed: int, device: str | torch.device = "cpu") -> None:
        torch.manual_seed(seed)
        self.device = resolve_device(device)
        self.world = distributed.current()
        self.world.split_batch(batch)  # refused before anything is built
        self.clf = AttributeClassifier(cfg).to(self.device)
        self.clf.train()
        self.opt = torch.optim.AdamW(self.clf.parameters(), lr=lr, weight_decay=1e-4)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt, max_lr=lr, total_steps=steps, pct_start=0.15)
        self.gen = torch.Generator().manual_seed(seed)
        self.data, self.batch = data, batch
        self.labels = torch.from_numpy(data.labels)
        self.pos_weight = positive_weights(data.labels[:, [SCORE_NAMES.index(n) for n in cfg.names]]).to(self.device)
        self.step = 0
        self.history: list[dict] = []

    @property
    def images_seen(self) -> int:
        return self.step * self.batch

    def train_step(self) -> dict[str, float]:
        idx = torch.randint(len(self.data), (self.batch,), generator=self.gen)
        x = augment(uint8_to_float(self.data.images[idx.numpy()]), self.gen)
        # Under torchrun every rank draws and augments the global batch (cheap at this size), so
        # the generators stay alike, and trains on its own rows. BatchNorm and each head's mean
        # then cover the rank's rows only: close to one process, not equal to it.
        x, labels = self.world.rows(x).to(self.device), self.world.rows(self.labels[idx]).to(self.device)
        loss, parts = _losses(self.clf, self.clf.raw(x), labels, self.pos_weight)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(self.clf.parameters())
        self.opt.step()
        self.sched.step()
        self.step += 1
        if self.world.size > 1:
            distributed.average_(b for b in self.clf.buffers() if b.is_floating_point())  # BN running stats
            parts = {n: parts.get(n, math.nan) for n in self.clf.names}  # the same keys on every rank
        return {"total": float(loss.detach()), **parts}

    def state_dict(self) -> dict[str, Any]:
        return {"classifier": self.clf.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                "batch_rng": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.clf.load_state_dict(state["classifier"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.gen.set_state(state["batch_rng"])


def train_classifier(out_dir: str | os.PathLike, res: int = 64, steps: int = 2500, batch: int = 64, seed: int = 0,
                     lr: float = 2e-3, channels: tuple[int, ...] | None = None,
                     data_root: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                     limit: int | None = None, evaluate: bool = True, force: bool = False,
                     progress: bool = True, resume_from: str | os.PathLike | None = None,
                     device: str | torch.device = "cpu") -> AttributeClassifier:
    """Train the classifier on the train split (CelebA + UTKFace framed at ``res`` px) in the run
    folder ``out_dir`` (:class:`ganbrush_core.training.TrainingRun`: ``config.json``,
    ``checkpoint.pt`` every :data:`CHECKPOINT_EVERY` steps, ``log.jsonl`` with one record per
    step, ``losses.png``), then write ``metrics.json`` (held-out metrics unless
    ``evaluate=False``) and ``attributes.safetensors``.

    See :class:`ClassifierTrainer`. Deterministic for a given ``seed`` (on one thread), resumed
    or not. ``limit`` keeps that many faces per source (tests). With ``resume_from`` (a run
    folder, usually ``out_dir``) a killed run continues with its saved settings, which win over
    the arguments. Refuses a run folder that already holds a classifier or a run unless
    ``force`` (which starts over). Trains and evaluates on ``device``; returns the classifier on
    the CPU.
    """
    if steps < 1 or batch < 2:
        raise AttributeClassifierError(f"steps must be >= 1 and batch >= 2, got steps={steps}, batch={batch}")
    out_dir = Path(out_dir)
    weights = out_dir / "attributes.safetensors"
    refuse_overwrite(weights, force)
    run = TrainingRun(out_dir, {"res": res, "steps": steps, "batch": batch, "seed": seed, "lr": lr,
                                "channels": list(channels) if channels else None, "limit": limit},
                      resume_from=resume_from, force=force, device=device)
    res, steps, batch, seed, lr, channels, limit = (run.config[k] for k in
                                                    ("res", "steps", "batch", "seed", "lr", "channels", "limit"))
    start = time.perf_counter()
    data = load_attribute_data("train", res, data_root, cache_dir, limit)
    load_seconds = time.perf_counter() - start
    ages = data.labels[:, SCORE_NAMES.index(AGE)]
    ages = ages[~np.isnan(ages)]
    cfg = ClassifierConfig(resolution=res, channels=tuple(channels) if channels else default_channels(res),
                           age_mean=round(float(ages.mean()), 2), age_std=round(float(max(ages.std(), 1.0)), 2))
    trainer = ClassifierTrainer(cfg, data, steps, batch, lr, seed, run.device)
    train_start, cpu_start = time.perf_counter(), time.process_time()
    run.train(trainer, total=steps, interval=CHECKPOINT_EVERY, log_every=1, postfix=("total",),
              desc=f"attributes {res}px", progress=progress)
    train_seconds, cpu_seconds = time.perf_counter() - train_start, time.process_time() - cpu_start
    clf = trainer.clf.eval()
    if not run.world.main:  # rank 0 evaluates and writes
        return clf.cpu()

    meta = {"steps": steps, "batch": batch, "lr": lr, "seed": seed, "train_faces": len(data),
            "train_seconds": round(train_seconds, 1), "train_cpu_seconds": round(cpu_seconds, 1),
            "load_seconds": round(load_seconds, 1),
            "torch_threads": torch.get_num_threads()}
    if evaluate:
        meta["heldout"] = evaluate_classifier(clf, data_root=data_root, cache_dir=cache_dir, limit=limit)
    write_text(out_dir / "metrics.json", json.dumps(meta, indent=1) + "\n")
    clf = clf.cpu()
    save_classifier(clf, weights, force=True, meta=meta)
    return clf


# --------------------------------------------------------------------------------------------
# Evaluation


def binary_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy (threshold 0), balanced accuracy (mean of the per-class recalls), the
    majority-class baseline accuracy and the positive share, for 1/0 ``labels``."""
    pred = logits > 0
    truth = labels > 0.5
    recalls = [float((pred[truth == c] == c).mean()) for c in (True, False) if (truth == c).any()]
    positives = float(truth.mean())
    return {"accuracy": float((pred == truth).mean()), "balanced_accuracy": float(np.mean(recalls)),
            "majority_baseline": max(positives, 1 - positives), "positive_share": positives, "count": int(len(truth))}


def evaluate_classifier(clf: AttributeClassifier, data: AttributeData | None = None,
                        data_root: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                        limit: int | None = None, batch: int = 256) -> dict[str, dict[str, float]]:
    """Held-out metrics per score name (default data: the held-out split at the classifier's
    resolution). Binary heads: see :func:`binary_metrics`. Age: ``mae`` in years and
    ``median_baseline_mae`` (always predicting the held-out median age)."""
    if data is None:
        data = load_attribute_data("heldout", clf.resolution, data_root, cache_dir, limit)
    scores = attribute_scores(clf, uint8_to_float(data.images), batch)
    results: dict[str, dict[str, float]] = {}
    for i, name in enumerate(SCORE_NAMES):
        if name not in scores:
            continue
        known = ~np.isnan(data.labels[:, i])
        if not known.any():
            continue
        pred, truth = scores[name].numpy()[known], data.labels[known, i]
        if name == AGE:
            results[name] = {"mae": float(np.abs(pred - truth).mean()),
                             "median_baseline_mae": float(np.abs(np.median(truth) - truth).mean()),
                             "count": int(known.sum())}
        else:
            results[name] = binary_metrics(pred, truth)
    return results
