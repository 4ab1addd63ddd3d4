"""The one training run loop: a run folder, interval checkpoints, resume, logs, sample grids, plots.

Every ganbrush trainer (StyleGAN, EdgeConnect, the attribute classifier, and those to come) is a
:class:`Trainable`: it owns its networks, optimisers and data, and does one optimisation step per
:meth:`Trainable.train_step`. A :class:`TrainingRun` owns everything else:

- the run folder (:class:`RunFolder`): ``config.json``, ``checkpoint.pt`` (all training state,
  read back with ``torch.load(weights_only=True)``), ``log.jsonl`` (one JSON record per logged
  interval), ``samples_<position>.png`` and ``losses.png``; every file is written atomically with
  mode 0644 through :mod:`ganbrush_core.io`;
- refusing to start over an existing run unless resumed (or forced), and resuming: the trainer's
  state, the step, the logged history and the torch / Python / NumPy random states come back,
  so a resumed run continues as if it had never stopped (bit-exact on CPU when the trainer's own
  state, e.g. its data position through :class:`ResumableBatches`, is complete);
- the interval work, always in this order: sample (its metrics join the log record), the
  trainer's weight files, ``checkpoint.pt``, then the log line, then the sample grid and the loss
  plot. The checkpoint holds the history, and a resumed run rewrites ``log.jsonl`` from it, so a
  run killed between the checkpoint and its log line (or after logging steps past its last
  checkpoint) never logs an interval twice;
- the tqdm progress bar.

Several processes (``torchrun --nproc-per-node N -m ganbrush_cli train ...``): the run starts
the process group from torchrun's environment (:mod:`ganbrush_core.distributed`; nothing changes
in one process). Only rank 0 reads the checkpoint (and sends it to the others), writes files,
calls :meth:`Trainable.sample` and shows progress; the statistics of a step are averaged over the
ranks. The checkpoint holds no per-rank state, so a run resumes under any world size. A trainer
joins in by following the pattern of ``stylegan_ops.train``:

1. ``run = TrainingRun(run_dir, config, resume_from=..., device=device)`` first, then build the
   trainer on ``run.device`` (``cuda`` becomes this rank's GPU) with the seed of the config, the
   same on every rank;
2. data from :func:`ganbrush_core.distributed.sharded_loader` with the *global* batch, wrapped in
   :class:`ResumableBatches` (each rank gets its rows of every global batch);
3. per-sample random numbers from ``randn_rows`` / ``rand_rows`` / ``randint_rows`` (each rank
   its rows of one global draw), never a per-rank seed;
4. ``average_gradients(params)`` before every ``optimizer.step()``, ``average_`` for running
   statistics that the step updates (e.g. BatchNorm's), and losses that are means over the rows;
5. ``images_seen`` and anything that depends on the batch size (EMA half-life, learning-rate
   schedules) counted in global images.

With the same seed and global batch, N ranks then train as one process does, up to float
rounding (``tests/stylegan_ops/test_train.py`` checks it), except for randomness drawn while
loading data (e.g. ``FaceDataset(xflip=True)``), which differs per rank.
"""

from __future__ import annotations

import json
import math
import pickle
import random
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ganbrush_core import distributed
from ganbrush_core.devices import resolve_device
from ganbrush_core.images import save_image_grid
from ganbrush_core.io import atomic_path, refuse_overwrite, remove_temporaries, write_text
from ganbrush_core.safe_pickle import UnsafePickleError, torch_load_tensors

CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = "config.json"
LOG_FILE = "log.jsonl"
PLOT_FILE = "losses.png"
#: A packed checkpoint (:func:`pack_run`): one file per top-level key of the state, half precision.
PACKED_DIR = "checkpoint.packed"
#: Tensors smaller than this stay float32 (running means, w_avg: cheap, and their dtype matters).
PACK_MIN_NUMEL = 4096

#: Checkpoint keys the loop owns; a trainer's ``state_dict`` must not use them.
LOOP_KEYS = frozenset({"step", "history", "config", "torch_rng", "python_rng", "numpy_rng", "cuda_rng",
                       "cuda_rng_device"})
#: Record fields that are bookkeeping, not curves: never plotted by default.
BOOKKEEPING = frozenset({"step", "kimg", "images_seen", "images_per_s", "steps_per_s"})
PLOT_COLUMNS = 4  # panels per row of losses.png
SMOOTH_ABOVE = 100  # curves with more points than this also get a moving average


class TrainError(ValueError):
    """A run cannot start or resume as asked; ``str()`` is one line saying what to do."""


class RunExistsError(TrainError, FileExistsError):
    """The run folder already holds a checkpoint and was not asked to resume it."""


class NothingToResumeError(TrainError, FileNotFoundError):
    """``--resume`` names a folder without a checkpoint."""


@dataclass
class Sample:
    """What a trainer shows at the end of an interval: images ``[N, 3, H, W]`` in [-1, 1], tiled
    ``ncols`` per row into ``samples_<position>.png``, and metrics that join the log record."""

    images: torch.Tensor | None = None
    ncols: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)


class Trainable:
    """What a trainer gives the loop. Subclasses implement the first three methods; the rest
    have defaults.

    ``step`` counts the steps done (``train_step`` increments it; the loop saves it and sets it on
    resume). ``images_seen``, when not ``None``, counts real images shown: it goes into every log
    record and the images/s rate. ``history`` is the loop's list of log records (kept current by
    the loop).
    """

    step: int = 0
    images_seen: int | None = None
    history: list[dict[str, Any]]

    def train_step(self) -> dict[str, float]:
        """One optimisation step; returns scalar statistics (averaged over each logged interval)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """All state the trainer needs to resume (tensors, numbers, strings), without :data:`LOOP_KEYS`."""
        raise NotImplementedError

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (``state`` also holds the loop's keys; ignore them)."""
        raise NotImplementedError

    def sample(self) -> Sample | None:
        """Images and metrics for the end of an interval (``None``: nothing to show). Called before
        the checkpoint is written, so any randomness it draws is part of the saved state."""
        return None

    def save_weights(self, run_dir: Path) -> None:
        """Write the trainer's own deliverables (e.g. ``generator.safetensors``) into ``run_dir``;
        called at every interval just before ``checkpoint.pt``."""

    def log_fields(self) -> dict[str, Any]:
        """Extra fields at the front of each log record (e.g. ``kimg``)."""
        return {}


# ---------------------------------------------------------------------------------------------
# Random state


def rng_state() -> dict[str, Any]:
    """The global torch (CPU and, if initialised, CUDA), Python and NumPy random states, in a form
    ``torch.load(weights_only=True)`` reads back (tensors and JSON strings)."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "torch_rng": torch.get_rng_state(),
        "python_rng": json.dumps(random.getstate()),
        "numpy_rng": json.dumps({**np_state, "state": {**np_state["state"], "key": np_state["state"]["key"].tolist()}}),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
        # A rank of a multi-GPU run draws on its own GPU only: the state every rank restores.
        state["cuda_rng_device"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (keys that are missing, e.g. in older checkpoints, are skipped)."""
    if "torch_rng" in state:
        torch.set_rng_state(state["torch_rng"])
    if "python_rng" in state:
        version, internal, gauss = json.loads(state["python_rng"])
        random.setstate((version, tuple(internal), gauss))
    if "numpy_rng" in state:
        np_state = json.loads(state["numpy_rng"])
        np_state["state"]["key"] = np.array(np_state["state"]["key"], dtype=np.uint32)
        np.random.set_state(np_state)
    cuda = state.get("cuda_rng")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    if "cuda_rng_device" in state and torch.cuda.is_available() and distributed.current().size > 1:
        torch.cuda.set_rng_state(state["cuda_rng_device"])


class _ForkedRng:
    """Context manager that puts the global random states back as they were on exit."""

    def __enter__(self) -> None:
        self._state = rng_state()

    def __exit__(self, *exc: object) -> None:
        set_rng_state(self._state)


# ---------------------------------------------------------------------------------------------
# Data


class ResumableBatches(Iterator[Any]):
    """Endless batches from a shuffling ``DataLoader`` that resume mid-epoch where they stopped.

    The loader's own ``generator`` drives its shuffling; its state at the start of the current
    epoch and the number of batches taken since are the whole data position
    (:meth:`state_dict`). On resume the epoch is replayed from that state and the batches already
    used are drawn and dropped with the global random states put back, so the next batch is the
    one an uninterrupted run would have seen (exactly so with ``num_workers=0``; worker processes
    draw their own random numbers). Without a resumed state the batch order is that of
    ``while True: yield from loader``.
    """

    def __init__(self, loader: torch.utils.data.DataLoader) -> None:
        if loader.generator is None:
            raise ValueError("ResumableBatches needs a DataLoader with its own generator")
        if len(loader) == 0:
            raise ValueError("the data loader yields no batch")
        self.loader = loader
        self._epoch_state = loader.generator.get_state()
        self._taken = 0
        self._skip = 0
        self._it: Iterator[Any] | None = None

    def _start_epoch(self) -> None:
        self._epoch_state = self.loader.generator.get_state()
        self._taken = 0
        self._it = iter(self.loader)

    def __next__(self) -> Any:
        if self._it is None:
            self.loader.generator.set_state(self._epoch_state)
            self._it = iter(self.loader)
            if self._skip:
                with _ForkedRng():  # those batches' random draws are already in the restored state
                    for _ in range(self._skip):
                        next(self._it)
            self._taken, self._skip = self._skip, 0
        try:
            batch = next(self._it)
        except StopIteration:
            self._start_epoch()
            batch = next(self._it)
        self._taken += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        if self._it is not None and self._taken >= len(self.loader):
            # The epoch is used up: end it now (the sampler's last draws happen at StopIteration;
            # nothing else uses the loader's generator, so doing it early changes nothing), so a
            # resume starts the next epoch instead of replaying this one.
            try:
                next(self._it)
            except StopIteration:
                self._it, self._epoch_state, self._taken = None, self.loader.generator.get_state(), 0
            else:
                raise RuntimeError("the data loader yielded more batches than its length")
        taken = self._skip if self._it is None else self._taken  # a loaded position not yet replayed
        return {"epoch_state": self._epoch_state.clone(), "taken": taken, "batches": len(self.loader)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Raises :class:`TrainError` when the data no longer has the epoch length the state was
        saved with (the saved position would point at other batches, or past the end)."""
        now = len(self.loader)
        saved = int(state.get("batches", now))  # states written before it was recorded: unknown
        taken = int(state["taken"])
        if saved != now or taken >= now:
            then = f", {saved} then" if "batches" in state else f", {taken + 1} or more then"
            raise TrainError(f"the training data changed since the checkpoint ({now} batches per epoch now{then}); "
                             "resume with the data the run started from, or start a new run")
        self._epoch_state = state["epoch_state"].clone()
        self._skip = taken
        self._it = None


# ---------------------------------------------------------------------------------------------
# Run folder


def _plottable(keys: Sequence[str] | None) -> Callable[[str, Any], bool]:
    def ok(key: str, value: Any) -> bool:
        if key in BOOKKEEPING or not isinstance(value, (int, float)) or isinstance(value, bool):
            return False
        return keys is None or key.startswith(tuple(keys))

    return ok


def plot_history(history: Sequence[Mapping[str, Any]], path: str | Path, x_key: str = "step",
                 keys: Sequence[str] | None = None) -> Path:
    """One panel per logged curve against ``x_key``, written atomically as a PNG.

    ``keys`` are name prefixes to plot (``None``: every numeric field but :data:`BOOKKEEPING`).
    Long curves (more than :data:`SMOOTH_ABOVE` points) are drawn faint with a moving average on top.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = _plottable(keys)
    names = list(dict.fromkeys(k for h in history for k, v in h.items() if ok(k, v)))
    ncols = max(1, min(len(names), PLOT_COLUMNS))
    nrows = max(1, math.ceil(len(names) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.8 * nrows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        pts = [(h[x_key], h[name]) for h in history if name in h and x_key in h and math.isfinite(h[name])]
        xs, ys = np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float)
        if len(ys) > SMOOTH_ABOVE:
            window = len(ys) // 50
            ax.plot(xs, ys, lw=0.5, alpha=0.3)
            ax.plot(xs[window - 1:], np.convolve(ys, np.ones(window) / window, mode="valid"))
        else:
            ax.plot(xs, ys, marker=".")
        ax.set_title(name)
        ax.set_xlabel(x_key)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


class RunFolder:
    """The files of one training run (see the module docstring); writes are atomic, mode 0644."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def log(self) -> Path:
        return self.path / LOG_FILE

    def samples(self, position: int) -> Path:
        return self.path / f"samples_{position:08d}.png"

    @property
    def packed(self) -> Path:
        return self.path / PACKED_DIR

    def read_checkpoint(self) -> dict[str, Any]:
        """The training state in ``checkpoint.pt`` or, without it, in a packed checkpoint
        (:func:`pack_run`; its half-precision tensors are cast back by the ``load_state_dict``
        they go to). Files are read with ``torch.load(weights_only=True)``."""
        if self.checkpoint.is_file():
            return _load_state_file(self.checkpoint)
        parts = sorted(self.packed.glob("*.pt")) if self.packed.is_dir() else []
        if not parts:
            raise NothingToResumeError(f"{self.checkpoint}: nothing to resume (start without --resume)")
        state: dict[str, Any] = {}
        for part in parts:
            state.update(_load_state_file(part))
        return state

    def has_checkpoint(self) -> bool:
        return self.checkpoint.exists() or self.packed.is_dir()

    def write_checkpoint(self, state: Mapping[str, Any]) -> None:
        with atomic_path(self.checkpoint) as tmp:
            torch.save(dict(state), tmp)

    def write_config(self, config: Mapping[str, Any]) -> None:
        write_text(self.path / CONFIG_FILE, json.dumps(config, indent=2) + "\n")

    def rewrite_log(self, history: Sequence[Mapping[str, Any]]) -> None:
        """``log.jsonl`` holding exactly ``history`` (at the start of every run and resume)."""
        write_text(self.log, "".join(json.dumps(r) + "\n" for r in history))

    def append_log(self, record: Mapping[str, Any]) -> None:
        # Appending (not atomic) keeps per-step logs cheap. The file was created by rewrite_log
        # (atomically, 0644), and a torn last line is rewritten from the checkpoint on resume.
        with open(self.log, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def _load_state_file(path: Path) -> dict[str, Any]:
    try:
        return torch_load_tensors(path)
    except UnsafePickleError as e:  # ganbrush's own one line, never torch's advice
        raise TrainError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile):
        raise TrainError(f"{path}: truncated or corrupt checkpoint; resume from an intact run folder or start "
                         "again") from None


def _is_optimizer_state(value: Any) -> bool:
    return isinstance(value, Mapping) and {"state", "param_groups"} <= value.keys()


def _half(value: Any, dtype: torch.dtype) -> Any:
    """``value`` with every large floating tensor cast to ``dtype``; optimiser states to bfloat16
    (Adam's second moments underflow in float16, and a zero there turns an update into lr / eps)."""
    if _is_optimizer_state(value):
        dtype = torch.bfloat16
    if isinstance(value, torch.Tensor):
        big = value.is_floating_point() and value.numel() >= PACK_MIN_NUMEL
        return value.to(dtype) if big else value
    if isinstance(value, Mapping):
        return {k: _half(v, dtype) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_half(v, dtype) for v in value)
    return value


def pack_run(run_dir: str | Path, dest: str | Path, max_file_mb: float = 16.0, force: bool = False) -> list[Path]:
    """Copy a run's resumable state into ``dest`` small enough to commit: ``config.json``,
    ``log.jsonl`` and :data:`PACKED_DIR`, one ``<key>.pt`` per top-level key of the checkpoint
    (networks in float16, optimiser states in bfloat16, small tensors as they are). ``--resume
    dest`` continues the run from it (the rounding is the only difference from the full
    checkpoint). Each file must stay under ``max_file_mb``; the files written are returned."""
    src, out = RunFolder(run_dir), RunFolder(dest)
    state = src.read_checkpoint()
    if out.path.resolve() == src.path.resolve():
        raise TrainError(f"{dest}: pack into another folder than the run itself")
    refuse_overwrite(out.packed, force)
    parts: dict[str, dict[str, Any]] = {}
    for key, value in state.items():
        name = key if key not in LOOP_KEYS else "loop"
        parts.setdefault(name, {})[key] = _half(value, torch.float16)
    written: list[Path] = []
    for name, part in parts.items():
        path = out.packed / f"{name}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(part, tmp)
        size_mb = path.stat().st_size / 2**20
        if size_mb > max_file_mb:
            raise TrainError(f"{path}: {size_mb:.1f} MB, over the {max_file_mb:g} MB limit; pack a smaller model")
        written.append(path)
    out.write_config(json.loads(state["config"]))
    out.rewrite_log(json.loads(state["history"]))
    return written + [out.path / CONFIG_FILE, out.log]


# ---------------------------------------------------------------------------------------------
# The loop


class TrainingRun:
    """A run folder and the loop that fills it.

    Construct it before the trainer: with ``resume_from`` (a run folder, usually ``run_dir``
    itself) the saved state is read and :attr:`config` is the saved config, which wins over
    ``config`` so the trainer is rebuilt as it was; then :meth:`train` loads the state into the
    trainer and runs. A ``run_dir`` that already holds a checkpoint is refused unless it is the
    one resumed or ``force`` (start over).

    Under ``torchrun`` it starts the process group (:func:`ganbrush_core.distributed.setup` for
    ``device``); :attr:`world` is this process's place and :attr:`device` the device its trainer
    uses. Rank 0 alone checks and reads the run folder and sends the outcome to the others, so
    every rank raises the same error or gets the same state.
    """

    def __init__(self, run_dir: str | Path, config: Mapping[str, Any], resume_from: str | Path | None = None,
                 force: bool = False, device: str | torch.device = "cpu") -> None:
        device = resolve_device(device)  # "auto", "cuda", "cuda:N" as everywhere in ganbrush
        self.world = distributed.setup(device)
        self.device = self.world.device(device)
        self.folder = RunFolder(run_dir)
        self.resume_from = Path(resume_from) if resume_from is not None else None
        error, state = None, None
        if self.world.main:
            try:
                state = self._read(force)
            except TrainError as e:
                error = e
        if self.world.size > 1:
            error, state = distributed.broadcast_object((error, state))
        if error is not None:
            raise error
        self.state = state
        self.config: dict[str, Any] = json.loads(self.state["config"]) if self.state is not None else dict(config)
        self.history: list[dict[str, Any]] = []

    def _read(self, force: bool) -> dict[str, Any] | None:
        same_run = self.resume_from is not None and self.resume_from.resolve() == self.folder.path.resolve()
        if self.folder.has_checkpoint() and not same_run and not force:
            raise RunExistsError(f"{self.folder.path} already holds a run; pass --resume {self.folder.path} "
                                 "to continue it")
        remove_temporaries(self.folder.path)  # the folder is this run's now: clear what a killed run left
        return RunFolder(self.resume_from).read_checkpoint() if self.resume_from is not None else None

    @property
    def resumed(self) -> bool:
        return self.state is not None

    def _restore(self, trainer: Trainable) -> None:
        trainer.history = self.history
        if self.state is None:
            return
        trainer.load_state_dict(self.state)
        trainer.step = int(self.state["step"])
        self.history[:] = json.loads(self.state["history"])
        set_rng_state(self.state)
        self.state = None  # consumed: a second train() call continues from memory

    def checkpoint_state(self, trainer: Trainable) -> dict[str, Any]:
        """The trainer's state plus the loop's (:data:`LOOP_KEYS`)."""
        state = trainer.state_dict()
        clash = LOOP_KEYS & state.keys()
        if clash:
            raise ValueError(f"trainer state uses the loop's keys {sorted(clash)}")
        return {**state, "step": trainer.step, "history": json.dumps(self.history),
                "config": json.dumps(self.config), **rng_state()}

    def _record(self, trainer: Trainable, sums: dict[str, list[float]], rate: float, per_image: bool) -> dict:
        record: dict[str, Any] = {"step": trainer.step, **trainer.log_fields()}
        if trainer.images_seen is not None:
            record["images_seen"] = trainer.images_seen
        record["images_per_s" if per_image else "steps_per_s"] = round(rate, 2)
        # Intervals where a statistic went non-finite drop it rather than poison the plot.
        record.update({k: float(np.mean(v)) for k, v in sums.items() if all(math.isfinite(x) for x in v)})
        return record

    def _sample(self, trainer: Trainable) -> Sample | None:
        if self.world.size == 1:
            return trainer.sample()
        if not self.world.main:
            return None
        with _ForkedRng():  # rank 0 alone draws here: keep its random states in step with the others'
            return trainer.sample()

    def _end_interval(self, trainer: Trainable, record: dict[str, Any], position: int, x_key: str,
                      plot_keys: Sequence[str] | None) -> None:
        sample = self._sample(trainer)
        if sample is not None:
            record.update(sample.metrics)
        self.history.append(record)
        if not self.world.main:
            return
        self.folder.path.mkdir(parents=True, exist_ok=True)
        trainer.save_weights(self.folder.path)
        self.folder.write_checkpoint(self.checkpoint_state(trainer))  # first: see the module docstring
        self.folder.append_log(record)
        if sample is not None and sample.images is not None:
            save_image_grid(sample.images, self.folder.samples(position), ncols=sample.ncols)
        plot_history(self.history, self.folder.path / PLOT_FILE, x_key=x_key, keys=plot_keys)

    def train(self, trainer: Trainable, total: int, interval: int, *, unit: str = "step",
              log_every: int | None = None, x_key: str = "step", plot_keys: Sequence[str] | None = None,
              postfix: Sequence[str] = (), desc: str = "train", progress: bool = True,
              max_seconds: float | None = None) -> Trainable:
        """Run ``trainer`` until its position reaches ``total`` (counted from the run's start), or
        until ``max_seconds`` of wall time (counted from this call, so a resumed run gets a fresh
        budget) have passed: the run then ends at the first step past the budget, that step's
        interval written as at the last step (equal-time comparisons of two trainers).

        The position is ``trainer.step`` (``unit="step"``) or ``trainer.images_seen``
        (``unit="img"``). An interval ends at the first step at or past each multiple of
        ``interval`` and at the last step: its record (statistics averaged over the steps since
        the last record) is logged and the checkpoint, sample grid and plot are written. With
        ``log_every`` a record is also logged every ``log_every`` steps in between. ``x_key`` is
        the plot's x axis, ``plot_keys`` the name prefixes plotted, ``postfix`` the statistics the
        progress bar shows. Under torchrun every rank calls this; rank 0 writes the files.
        """
        if unit not in ("step", "img"):
            raise ValueError(f"unit must be 'step' or 'img', got {unit!r}")
        if interval < 1 or (log_every is not None and log_every < 1):
            raise ValueError(f"interval ({interval}) and log_every ({log_every}) must be >= 1")
        if max_seconds is not None and not max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
        self._restore(trainer)
        main = self.world.main
        if main:
            self.folder.path.mkdir(parents=True, exist_ok=True)
            self.folder.write_config(self.config)
            self.folder.rewrite_log(self.history)  # drops lines logged past the checkpoint before a kill

        def position() -> int:
            return trainer.step if unit == "step" else int(trainer.images_seen)

        per_image = trainer.images_seen is not None
        count = (lambda: trainer.images_seen) if per_image else (lambda: trainer.step)
        pos = position()
        boundary = (pos // interval + 1) * interval
        bar = tqdm(total=total, initial=min(pos, total), unit=unit, disable=not (progress and main), desc=desc)
        sums: dict[str, list[float]] = {}
        t0, count0 = time.perf_counter(), count()
        while pos < total:
            stats = distributed.mean_stats(trainer.train_step())
            for k, v in stats.items():
                sums.setdefault(k, []).append(float(v))
            new = position()
            bar.update(min(new, total) - min(pos, total))
            pos = new
            rate = (count() - count0) / max(time.perf_counter() - t0, 1e-9)
            shown = {k: f"{stats[k]:.3f}" for k in postfix if k in stats}
            bar.set_postfix({"img_s" if per_image else "step_s": f"{rate:.1f}", **shown})
            out_of_time = max_seconds is not None and time.perf_counter() - t0 >= max_seconds
            if max_seconds is not None and self.world.size > 1:
                out_of_time = distributed.broadcast_object(out_of_time)  # rank 0's clock decides for all
            end = pos >= boundary or pos >= total or out_of_time
            if end or (log_every is not None and trainer.step % log_every == 0):
                record = self._record(trainer, sums, rate, per_image)
                sums.clear()
                if end:
                    self._end_interval(trainer, record, pos, x_key, plot_keys)
                    boundary = (pos // interval + 1) * interval
                    if out_of_time:
                        break
                else:
                    self.history.append(record)
                    if main:
                        self.folder.append_log(record)
        bar.close()
        distributed.barrier()  # every rank returns once rank 0 has written the last interval
        return trainer
