"""Run directories and result files: atomic writes, loading, validation, listing, legacy files."""

from __future__ import annotations

import glob
import os
import pickle
import shutil
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import joblib
import numpy as np

from dqnrun.errors import UserError

_UMASK = os.umask(0o022)
os.umask(_UMASK)

RESULT_FORMAT = "dqnrun-run"
MODEL_FORMAT = "dqnrun-model"
RESULTS_FILE = "results.joblib"
LECTURE_KEYS = ("max_score", "min_score", "mean_score")


# ---------------------------------------------------------------------------------------------
# Atomic writes: a temporary file in the same directory, flushed, then renamed over the target.
# A crash or Ctrl-C leaves either the old file or the new one, never half of one.


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name keeps the real suffix for writers that choose a format by it.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the file should look like any other
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_joblib(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        joblib.dump(obj, tmp)


def write_with(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Atomically write `path` with `writer(tmp_path)` (for torch.save and the like)."""
    with atomic_path(path) as tmp:
        writer(tmp)


# ---------------------------------------------------------------------------------------------
# Run directories


def claim_run_dir(out: str | Path, name: str, force: bool = False) -> tuple[Path, str | None]:
    """Create the directory for a new run; never reuse an existing one silently.

    Returns (path, note): when `out/name` exists, the run goes to `out/name-2` (or -3, ...) and
    the note says so; with `force` the old directory is deleted first.
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create results directory {out}: {exc.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UserError(f"results directory {out} is not writable; choose another with --out")
    path = out / name
    note = None
    if path.exists() and force:
        shutil.rmtree(path)
        note = f"--force: replaced the earlier run in {path}"
    elif path.exists():
        k = 2
        while (out / f"{name}-{k}").exists():
            k += 1
        note = f"{path} already holds a run; writing to {out / f'{name}-{k}'} (use --force to replace it)"
        path = out / f"{name}-{k}"
    path.mkdir(parents=True)
    return path, note


# ---------------------------------------------------------------------------------------------
# Loading


@dataclass
class Run:
    """A loaded result file: a dqnrun run, or a lecture notebook's three-curve file."""

    name: str
    path: Path  # the results.joblib (or lecture .joblib) file
    data: dict[str, Any]

    @property
    def is_lecture(self) -> bool:
        return self.data.get("format") != RESULT_FORMAT

    @property
    def run_dir(self) -> Path:
        return self.path.parent

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


def load_run(path: str | Path) -> Run:
    """Load a run directory or a result file; foreign or corrupt files are a UserError."""
    path = Path(path)
    if path.is_dir():
        file = path / RESULTS_FILE
        if not file.exists():
            if (path / "config.yaml").exists():
                raise UserError(
                    f"{path} is an unfinished run (no {RESULTS_FILE} yet); "
                    f"finish it with `dqnrun train --resume {path}`"
                )
            raise UserError(f"{path} is not a dqnrun run: it has no {RESULTS_FILE}")
        name = path.name
    elif path.is_file():
        file = path
        name = path.parent.name if path.name == RESULTS_FILE else path.stem
    else:
        raise UserError(f"no such run: {path}")
    try:
        data = joblib.load(file)
    except (EOFError, pickle.UnpicklingError, ValueError, KeyError, zipfile.BadZipFile, OSError, IndexError,
            TypeError, AttributeError, ModuleNotFoundError):
        raise UserError(f"{file} is truncated or not a joblib result file") from None
    if not isinstance(data, dict) or not all(k in data for k in LECTURE_KEYS):
        raise UserError(
            f"{file} is not a dqnrun or lecture result (it needs the keys {', '.join(LECTURE_KEYS)})"
        )
    if data.get("format") == RESULT_FORMAT:
        name = data.get("name", name)
    for key in LECTURE_KEYS:
        try:
            data[key] = np.asarray(data[key], dtype=float).reshape(-1)
        except (TypeError, ValueError):
            raise UserError(f"{file}: {key} is not a sequence of numbers") from None
    return Run(name=name, path=file, data=data)


def resolve_runs(args: list[str], root: str | Path = "results") -> list[Path]:
    """Turn RUN arguments (directories, result files, globs) into result paths.

    With no arguments: every run under `root`. Missing paths and empty globs are UserErrors.
    """
    if not args:
        found = [p for p in find_runs(root) if p.is_file() or (p / RESULTS_FILE).exists()]
        if not found:
            raise UserError(f"no runs under {root}/; train one with `dqnrun train configs/ddqn.yaml`")
        return found
    paths: list[Path] = []
    for arg in args:
        if any(ch in arg for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(arg))
            if not matches:
                raise UserError(f"no runs match {arg!r}")
            paths += [m for m in matches if m.is_file() or (m / RESULTS_FILE).exists()] or matches
        else:
            p = Path(arg)
            if not p.exists():
                raise UserError(f"no such run: {arg}")
            paths.append(p)
    return paths


def find_runs(root: str | Path) -> list[Path]:
    """Run directories (with results.joblib) and lecture .joblib files directly under `root`."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and ((entry / RESULTS_FILE).exists() or (entry / "config.yaml").exists()):
            found.append(entry)
        elif entry.is_file() and entry.suffix == ".joblib":
            found.append(entry)
    return found


def load_torch_file(path: str | Path, fmt: str, what: str, weights_only: bool = True) -> dict[str, Any]:
    """Load a torch file of ours whose dict says `format: fmt`; anything else is a UserError."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"no {what} file {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception:
        raise UserError(f"{path} is truncated or not a {what} file") from None
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        raise UserError(f"{path} is not a {what} file")
    return blob


def load_model_file(path: str | Path) -> dict[str, Any]:
    """Load a saved model (`weights_only=True`: no code runs); foreign files are a UserError."""
    return load_torch_file(path, MODEL_FORMAT, "dqnrun model")
