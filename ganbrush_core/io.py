"""Writing files safely: atomically, with the mode a plain ``open()`` would give (0644 under the
usual umask 022), never over a file unasked.

Every output ganbrush writes (photos, masks, ``.npz`` latents, weights, checkpoints, caches) goes
through :func:`atomic_write` (or :func:`atomic_path` for writers that want a path): the data is
written to a temporary file beside the target and renamed over it, so a kill or an error never
leaves half a file, and the temporary file is removed whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import IO

#: Mode of every file ganbrush writes, before the umask: what ``open()`` asks for. ``mkstemp``
#: creates 0600 files, which other users (a web server, a second account reading shipped weights)
#: could not read; the user's umask (022 -> 0644, 077 -> 0600) decides instead, as for any tool.
BASE_FILE_MODE = 0o666

_umask_lock = threading.Lock()

#: The temporaries an interrupted write can leave: ganbrush's own (:func:`_temporary`:
#: ``.NAME.XXXXXXXX.tmpSUFFIX``, and ``.NAME.XXXXXXXX.old`` backups) and the one
#: ``safetensors.save_file`` writes before its own rename (``.tmpXXXXXX``).
_TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\.(tmp(\.[^.]+)?|old)|\.tmp[A-Za-z0-9]{6}")


def _temporary(folder: Path, target: Path, suffix: str | None = None) -> Path:
    """A new empty hidden file in ``folder`` named after ``target``, ending in ``suffix`` (default
    ``.tmp`` + ``target``'s suffix, which writers that pick the format from it need)."""
    suffix = f".tmp{target.suffix}" if suffix is None else suffix
    fd, name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=suffix)
    os.close(fd)
    return Path(name)


def current_umask() -> int:
    """The process umask, read without changing it where Linux tells it (``/proc/self/status``);
    elsewhere set and restored at once, under a lock (``os.umask`` has no read-only form)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        mask = os.umask(0o077)  # briefly strict, never permissive, while another thread may create a file
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode given to every file ganbrush writes: ``0o666 & ~umask`` (0644 under umask 022)."""
    return BASE_FILE_MODE & ~current_umask()


def refuse_overwrite(paths: str | os.PathLike | Iterable[str | os.PathLike | None], force: bool = False) -> None:
    """Raise :class:`FileExistsError` naming every path in ``paths`` that exists, unless ``force``.
    ``None`` entries (an optional output that was not asked for) are skipped.

    The one wording for this check everywhere (CLI and API): ``... exists; pass --force
    (force=True) to overwrite``.
    """
    if force:
        return
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    existing = [str(p) for p in items if p is not None and Path(p).exists()]
    if existing:
        verb = "exists" if len(existing) == 1 else "exist"
        raise FileExistsError(f"{', '.join(existing)} {verb}; pass --force (force=True) to overwrite")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, force: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it gets :func:`file_mode` (0644 under
    umask 022) and is renamed to ``path``.

    For writers that take a file name (``safetensors.save_file``, ``torch.save``, ``np.savez``).
    The temporary name keeps ``path``'s suffix (some writers append one otherwise). Parent folders
    are created. With ``force=False`` an existing ``path`` is refused first.
    """
    path = Path(path)
    refuse_overwrite(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _temporary(path.parent, path)
    try:
        yield tmp_path
        os.chmod(tmp_path, file_mode())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", force: bool = True) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success it becomes ``path``
    (mode :func:`file_mode`).

    ``mode`` is ``"wb"`` or ``"w"`` (text, UTF-8). With ``force=False`` an existing ``path`` is
    refused before anything is written.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    with atomic_path(path, force=force) as tmp:
        encoding = None if "b" in mode else "utf-8"
        with open(tmp, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def write_bytes(path: str | os.PathLike, data: bytes, force: bool = True) -> Path:
    """Atomically write ``data`` to ``path`` (mode :func:`file_mode`); returns ``path``."""
    with atomic_write(path, "wb", force=force) as f:
        f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, force: bool = True) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path`` (mode :func:`file_mode`); returns ``path``."""
    with atomic_write(path, "w", force=force) as f:
        f.write(text)
    return Path(path)


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the hidden temporaries that writes interrupted by a kill left in ``folder`` (not in
    its subfolders); returns them. Only for a folder no other process is writing into (a run
    folder being resumed), since a live write's temporary looks the same."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if _TEMPORARY.fullmatch(p.name) and p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (the folder a new file would be created under)."""
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output(path: str | os.PathLike, force: bool = False, suffixes: Collection[str] | None = None,
                 what: str = "output", suffix_hint: str | None = None) -> Path:
    """Check, before any work, that ``path`` can be written; create nothing. Raises (one line):
    :class:`ValueError` when ``suffixes`` (lower case, with the dot) is given and ``path`` ends in
    none of them; :class:`IsADirectoryError` for an existing folder; :class:`FileExistsError` for
    an existing file unless ``force``; :class:`NotADirectoryError` when a file stands where a
    parent folder should be; :class:`PermissionError` when the folder it would be created in is
    not writable. ``what`` names the output in messages (e.g. ``"--save-inversion"``);
    ``suffix_hint`` says which suffixes to use (default: all of ``suffixes``)."""
    path = Path(path)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        hint = suffix_hint or " or ".join(sorted(suffixes))
        raise ValueError(f"{what} {path}: unknown file suffix {path.suffix or '(none)'!r}; use {hint}")
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder; give a file name")
    refuse_overwrite(path, force)
    base = _nearest_existing(path.parent)
    if not base.is_dir():
        raise NotADirectoryError(f"cannot write {what} {path}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {what} {path}: the folder {base} is not writable")
    return path


def _unique(paths: list[Path]) -> None:
    seen: set[Path] = set()
    for p in paths:
        key = p.absolute()
        if key in seen:
            raise ValueError(f"{p} is given as two different outputs; give each output its own file")
        seen.add(key)


@contextlib.contextmanager
def write_all(paths: Iterable[str | os.PathLike], force: bool = False) -> Iterator[list[Path]]:
    """Write several outputs all or none: yields one temporary path per target (same suffix, so
    writers pick the format from it); the caller writes every one (with ``force=True``, the
    temporaries exist). When the block ends without error the temporaries are renamed into place
    (missing parent folders are created only now, once everything is written); on any error they
    are removed and no target, no folder is left behind.

    Each target is re-checked with :func:`check_output` first (call that too, before the work).
    A failure during the final renames puts back what was there before.
    """
    targets = [check_output(p, force) for p in paths]
    _unique(targets)
    temps: list[Path] = []
    try:
        for t in targets:
            # Beside the target's nearest existing folder: the same file system as the target, so
            # the final rename is atomic, and no folder is created before the work is done.
            temps.append(_temporary(_nearest_existing(t.parent), t))
        yield list(temps)
        for t in targets:  # re-check: another process may have created one meanwhile
            refuse_overwrite(t, force)
        _commit(temps, targets)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


def _commit(temps: list[Path], targets: list[Path]) -> None:
    """Rename every temporary onto its target; on a failure undo the renames already made."""
    created: list[Path] = []
    placed: list[tuple[Path, Path | None]] = []  # (target, backup of the file it replaced)
    try:
        for tmp, target in zip(temps, targets):
            missing = []
            p = target.parent.absolute()
            while not p.exists():
                missing.append(p)
                p = p.parent
            target.parent.mkdir(parents=True, exist_ok=True)
            created.extend(reversed(missing))
            os.chmod(tmp, file_mode())
            backup = None
            if target.exists():
                backup = _temporary(target.parent, target, ".old")
                os.replace(target, backup)
            placed.append((target, backup))
            os.replace(tmp, target)
    except BaseException:
        for target, backup in reversed(placed):
            if backup is not None:
                os.replace(backup, target)
            else:
                target.unlink(missing_ok=True)
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    for _, backup in placed:
        if backup is not None:
            backup.unlink(missing_ok=True)
