"""The run directory's one owner: file names, the results schema, atomic writers, typed readers.

Every other module reaches a run through `RunDir` (where each file lives) and `Run` (what a
finished run holds); none spells a file name or a result key itself.

A run directory `results/<name>/` holds:

    config.yaml               the resolved config (`dqnrun train` reads it back)
    results.joblib            the assembled results: a dict keeping the lecture's keys
    metrics/seed-<s>.csv      one row per episode, appended live while the seed trains
    models/seed-<s>.pt        the best model (by evaluation score) of each seed
    models/seed-<s>-final.pt  the model at the end of training
    seeds/seed-<s>.joblib     a finished seed's raw results (assembled into results.joblib)
    evaluation-<model>.json   what `dqnrun evaluate` measured of every seed's best (or final)
                              model; evaluation-<model>-seed-<s>.json for one seed's
    checkpoints/seed-<s>.pt   an unfinished seed's resumable state
    results.joblib.damaged    a damaged results.joblib that `train --resume` set aside and rebuilt
    tb/seed-<s>/              TensorBoard event files (with `logging.tensorboard`)
"""

from __future__ import annotations

import csv
import glob
import io
import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from dqnrun.errors import UnreadableFile, UserError
from dqnrun.safeio import load_joblib, open_regular

_UMASK = os.umask(0o022)
os.umask(_UMASK)

RESULT_FORMAT = "dqnrun-run"
MODEL_FORMAT = "dqnrun-model"
EVALUATION_FORMAT = "dqnrun-evaluation"
MAX_EVALUATION_BYTES = 16 << 20  # an evaluation file holds a few numbers per seed
# Version of the results.joblib schema. 0: written before the key existed (dqnrun 0.1.0), same keys.
SCHEMA_VERSION = 1
RESULTS_FILE = "results.joblib"
CONFIG_FILE = "config.yaml"
ERRORS_FILE = "errors.log"  # the full tracebacks of chunks that failed (a bug in an env, out of memory)
LECTURE_KEYS = ("max_score", "min_score", "mean_score")
LECTURE_WINDOW = 25  # the lecture's sliding window, assumed for its own result files
MODEL_KINDS = ("best", "final")

# One row per episode in metrics/seed-<s>.csv, in this order.
METRICS_COLUMNS = ("episode", "env_steps", "train_return", "score", "smoothed_score", "epsilon",
                   "mean_loss", "mean_q", "max_q", "beta", "wall_time")


# ---------------------------------------------------------------------------------------------
# Atomic writes: a temporary file in the same directory, flushed, then renamed over the target.
# A crash or Ctrl-C leaves either the old file or the new one, never half of one.


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    # Only the file's own folder is made (models/, seeds/, ...): if the run directory itself has
    # gone (deleted during training), the write fails instead of recreating it half empty.
    path.parent.mkdir(exist_ok=True)
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
    import joblib

    with atomic_path(path) as tmp:
        joblib.dump(obj, tmp)


def write_with(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Atomically write `path` with `writer(tmp_path)` (for torch.save and the like)."""
    with atomic_path(path) as tmp:
        writer(tmp)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def _read_pickle(path: Path) -> Any:
    """Read a joblib file. Every joblib read of dqnrun goes through here.

    No code from the file runs: safeio's allow-list unpickler loads plain containers, numbers,
    strings and numpy arrays only, from regular files only. Raises UserError when the file is
    truncated, not a joblib file, or asks for anything else ("not a dqnrun result file, or
    unsafe").
    """
    return load_joblib(path)


def link_aside(path: Path, name: Callable[[int], Path], first: int = 1) -> Path | None:
    """Give `path` also the first free name `name(k)`, k = first, first + 1, ...; None if `path`
    has gone meanwhile. The name is claimed by a hard link, which fails if the name exists: two
    processes that chose the same k cannot overwrite each other's copy (a rename would,
    silently); the second one takes the next k. `path` itself stays, to be replaced atomically."""
    k = first
    while name(k).exists() or name(k).is_symlink():
        k += 1  # the first free name, as far as can be seen now
    while True:
        kept = name(k)
        try:
            os.link(path, kept, follow_symlinks=False)
            return kept
        except FileExistsError:  # claimed since by another process
            k += 1
        except FileNotFoundError:  # another process kept it aside first
            return None


# ---------------------------------------------------------------------------------------------
# The run directory


@dataclass(frozen=True)
class RunDir:
    """Where every file of one run lives."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def results_file(self) -> Path:
        return self.path / RESULTS_FILE

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def tb_dir(self) -> Path:
        return self.path / "tb"

    @property
    def errors_log(self) -> Path:
        return self.path / ERRORS_FILE

    def log_error(self, text: str) -> Path:
        """Append one error's report to `errors_log` in a single write (O_APPEND): two reports
        never interleave, and an earlier one is never rewritten. Returns the log's path."""
        data = text if text.endswith("\n") else text + "\n"
        fd = os.open(self.errors_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        try:
            os.write(fd, data.encode("utf-8", "backslashreplace"))
        finally:
            os.close(fd)
        return self.errors_log

    def model(self, seed: int, which: str = "best") -> Path:
        if which not in MODEL_KINDS:
            raise UserError(f"--model {which!r}: expected best or final")
        return self.path / "models" / (f"seed-{seed}.pt" if which == "best" else f"seed-{seed}-final.pt")

    def metrics(self, seed: int) -> Path:
        return self.path / "metrics" / f"seed-{seed}.csv"

    def evaluation(self, which: str = "best", seed: int | None = None, copy: int = 1) -> Path:
        """The file of `dqnrun evaluate`'s measurement of the `which` models (of one seed, if
        given); `copy` k > 1 is the k-th earlier measurement kept beside it."""
        self.model(0, which)  # checks `which`
        stem = f"evaluation-{which}" + (f"-seed-{seed}" if seed is not None else "")
        return self.path / (f"{stem}.json" if copy == 1 else f"{stem}-{copy}.json")

    def save_evaluation(self, doc: dict[str, Any], which: str = "best", seed: int | None = None) -> tuple[Path, Path | None]:
        """Write an evaluation atomically as `evaluation(which, seed)`; returns (its path, where
        an earlier, different measurement was kept or None).

        A file that holds the same measurement (every value equal but `created`) is replaced; any
        other (other --episodes or --env-seed, other models, an unreadable file) is first renamed
        to the first free `evaluation-<model>-<k>.json`, so no measurement is ever lost.
        """
        path = self.evaluation(which, seed)
        kept = None
        if (path.exists() or path.is_symlink()) and not _same_measurement(path, doc):
            kept = self._keep_aside(path, which, seed)
        write_text(path, json.dumps(doc, indent=2, allow_nan=False) + "\n")
        return path, kept

    def _keep_aside(self, path: Path, which: str, seed: int | None) -> Path | None:
        """Give `path` also the first free `evaluation-<model>-<k>.json` name (see `link_aside`)."""
        return link_aside(path, lambda k: self.evaluation(which, seed, k), first=2)

    def read_evaluation(self, which: str = "best", seed: int | None = None) -> dict[str, Any] | None:
        """The saved evaluation (None if there is none); a damaged or foreign one is a UserError."""
        path = self.evaluation(which, seed)
        if not path.exists() and not path.is_symlink():
            return None
        return _read_evaluation(path)

    def seed_result(self, seed: int) -> Path:
        return self.path / "seeds" / f"seed-{seed}.joblib"

    def checkpoint(self, seed: int) -> Path:
        return self.checkpoints_dir / f"seed-{seed}.pt"

    def tb(self, seed: int) -> Path:
        return self.tb_dir / f"seed-{seed}"

    def finished_seeds(self) -> list[int]:
        """The seeds with a result file (seeds/seed-<s>.joblib): those that finished training."""
        seeds = []
        for f in (self.path / "seeds").glob("seed-*.joblib"):
            try:
                seeds.append(int(f.stem.removeprefix("seed-")))
            except ValueError:
                continue
        return sorted(seeds)

    def model_gaps(self, which: str = "best") -> ModelGaps:
        """The run's seeds that have no `which` model file, by why (see `ModelGaps`).

        Only the seeds' own files are read, and only for seeds whose model is absent; a folder
        of models alone (no config.yaml, no seeds/) has no gaps that can be known.
        """
        present = self.models(which)
        missing, never = {}, {}
        for seed in self.finished_seeds():
            if seed in present:
                continue
            state = self.read_seed_result(seed)
            diverged = f"it diverged at {state['diverged'] or 'an unknown step'}"
            if which == "best" and state["best_episode"] == 0:
                never[seed] = diverged + ", before its first evaluation" if state["status"] == "diverged" \
                    else "it never evaluated while training"
            elif which == "final" and state["status"] != "complete":
                never[seed] = diverged
            else:
                missing[seed] = self.model(seed, which)
        unfinished: tuple[int, ...] = ()
        if not self.is_finished() and self.config_file.is_file():
            from dqnrun.config import load_config

            unfinished = tuple(self.pending_seeds(load_config(self.config_file).seeds))
        return ModelGaps(missing, unfinished, never)

    def models(self, which: str = "best") -> dict[int, Path]:
        """{seed: model file} of the saved models of one kind."""
        suffix = "-final" if which == "final" else ""
        self.model(0, which)  # checks `which`
        files = {}
        for f in sorted((self.path / "models").glob("seed-*.pt")):
            stem = f.stem.removeprefix("seed-")
            if which == "final" and not stem.endswith(suffix):
                continue
            try:
                files[int(stem.removesuffix(suffix) if suffix else stem)] = f
            except ValueError:  # seed-<s>-final.pt when looking for best models
                continue
        return files

    @property
    def training_marker(self) -> Path:
        """Present while a process trains this run: `<pid> <host>`."""
        return self.path / ".training"

    def _marker(self) -> tuple[int, str] | None:
        """(pid, host) from the training marker; None when there is none or it is not one of
        ours (a run folder from elsewhere may hold anything there, a FIFO included)."""
        try:
            with open_regular(self.training_marker, "training marker", max_bytes=4096) as f:
                pid, host = f.read().decode("utf-8").split()
            return int(pid), host
        except (UserError, OSError, ValueError):
            return None

    def marked_by_me(self) -> bool:
        marker = self._marker()
        return marker is not None and marker[0] == os.getpid()

    def mark_training(self) -> None:
        import socket

        write_text(self.training_marker, f"{os.getpid()} {socket.gethostname()}\n")

    @contextmanager
    def training(self) -> Iterator[None]:
        """Mark the run as being trained by this process while the block runs."""
        self.mark_training()
        try:
            yield
        finally:
            self.training_marker.unlink(missing_ok=True)

    def training_owner(self) -> str:
        """Who trains the run, in words (from the marker)."""
        marker = self._marker()
        return "unknown" if marker is None else f"process {marker[0]} on {marker[1][:60]}"

    def is_training(self) -> bool:
        """True while a live process trains this run (a marker left by a killed one does not count)."""
        import socket

        marker = self._marker()
        if marker is None or marker[0] <= 0:
            return False
        pid, host = marker
        if host != socket.gethostname():
            return True  # another machine's process: assume it lives
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, OverflowError):  # OverflowError: no process has such a pid
            return False
        except PermissionError:
            return True
        return True

    def results_damage(self) -> str | None:
        """What is wrong with results.joblib (truncated, damaged, not a result file), or None
        when it reads; one written by a newer dqnrun is not damaged (`NewerResults` is raised)."""
        try:
            run_from_data(_read_pickle(self.results_file), self.results_file)
        except (NewerResults, UnreadableFile):  # not damaged: newer, or not readable at all
            raise
        except UserError as exc:
            return str(exc)
        return None

    def keep_damaged_results(self) -> Path | None:
        """Give a damaged results.joblib also the first free name results.joblib.damaged(-<k>),
        so that rebuilding it (an atomic replace) loses nothing; returns that name."""
        return link_aside(self.results_file,
                          lambda k: self.path / (f"{RESULTS_FILE}.damaged" + (f"-{k}" if k > 1 else "")))

    def is_finished(self) -> bool:
        return self.results_file.exists()

    def is_run(self) -> bool:
        return self.results_file.exists() or self.config_file.exists()

    def resume_command(self) -> str:
        """The command that continues the run if interrupted (a sweep's point: its sweep)."""
        from dqnrun.sweep import is_sweep_dir

        if is_sweep_dir(self.path.parent):
            return f"dqnrun sweep --resume {self.path.parent}"
        return f"dqnrun train --resume {self.path}"

    def rebuildable(self) -> bool:
        """Every seed of the run's config has its result file: `train --resume` can rebuild a
        damaged results.joblib from them."""
        from dqnrun.config import load_config

        try:
            return not self.pending_seeds(load_config(self.config_file).seeds)
        except UserError:  # no config, or a damaged one
            return False

    def pending_seeds(self, seeds: Sequence[int]) -> list[int]:
        """The seeds without a finished seed result."""
        return [s for s in seeds if not self.seed_result(s).exists()]

    def episodes_done(self, seed: int) -> int:
        """Rows in the seed's live metrics file (0 if none)."""
        return count_metrics_rows(self.metrics(seed))

    def env_steps_done(self, seed: int) -> int:
        """The env-step count of the seed's last metrics row (0 if none)."""
        steps = read_metrics(self.metrics(seed))["env_steps"]
        steps = steps[np.isfinite(steps)]
        return int(steps[-1]) if len(steps) else 0

    def read_seed_result(self, seed: int) -> dict[str, Any]:
        """A finished seed's result, checked: one number per episode in every list, the fields
        of a seed result and nothing else; damage is a one-line "damaged: <what>"."""
        path = self.seed_result(seed)
        state = _read_pickle(path)
        problem = _seed_result_problem(state, seed)
        if problem:
            raise _damaged(path, problem)
        return state


@dataclass(frozen=True)
class ModelGaps:
    """Seeds of a run without a model file of one kind (best or final), by why."""

    missing: dict[int, Path]  #: finished with such a model, but its file is not there (deleted, lost)
    unfinished: tuple[int, ...]  #: not finished training (still training or interrupted): no model yet
    never: dict[int, str]  #: never had one, and why: no evaluation ran (best), the seed diverged (final)


def _read_evaluation(path: Path) -> dict[str, Any]:
    from dqnrun.safeio import read_text

    try:
        doc = json.loads(read_text(path, "dqnrun evaluation", MAX_EVALUATION_BYTES))
    except json.JSONDecodeError:
        raise _damaged(path, "not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != EVALUATION_FORMAT:
        raise UserError(f"{path} is not a dqnrun evaluation file")
    seeds, across = doc.get("seeds"), doc.get("across_seeds")
    if not isinstance(seeds, list) or not all(isinstance(s, dict) for s in seeds) or not isinstance(across, dict):
        raise _damaged(path, "no per-seed or across-seed measurement")
    for key in ("mean", "ci_low", "ci_high"):
        if across.get(key) is not None and type(across[key]) not in (int, float):
            raise _damaged(path, f"across_seeds.{key} is not a number")
    return doc


def _same_measurement(path: Path, doc: dict[str, Any]) -> bool:
    """True if `path` holds `doc`'s measurement: every value but `created` equal."""
    try:
        old = _read_evaluation(path)
    except UserError:
        return False
    strip = lambda d: {k: v for k, v in d.items() if k != "created"}  # noqa: E731
    return strip(old) == strip(json.loads(json.dumps(doc)))


SEED_LISTS = ("scores", "train_returns", "steps", "epsilons", "losses")
SEED_OPTIONAL_LISTS = ("mean_qs", "max_qs", "betas")  # not in dqnrun 0.1.0's files
SEED_SCALARS = {"seed": (int,), "best_score": (int, float), "best_episode": (int,), "wall_time": (int, float),
                "status": (str,), "diverged": (str,)}


def _seed_result_problem(state: Any, seed: int) -> str | None:
    if not isinstance(state, dict):
        return "not a seed result"
    missing = [k for k in (*SEED_LISTS, *SEED_SCALARS) if k not in state]
    if missing:
        return f"no {missing[0]}"
    if not all(isinstance(k, str) for k in state):
        return "a key that is not a string"
    for key, types in SEED_SCALARS.items():
        if type(state[key]) not in types:
            return f"{key} is not {'a string' if types == (str,) else 'a number'}"
    if state["seed"] != seed:
        return f"it holds seed {state['seed']}, not {seed}"
    n = len(state["scores"]) if isinstance(state["scores"], list) else -1
    for key in (*SEED_LISTS, *(k for k in SEED_OPTIONAL_LISTS if k in state)):
        values = state[key]
        if not isinstance(values, list) or not all(type(v) in (int, float) for v in values):
            return f"{key} is not a list of numbers"
        if len(values) != n:
            return f"{key} has {len(values)} entries for {n} episodes"
    if n < 1:
        return "no episodes"
    if state["status"] not in ("complete", "diverged"):
        return f"status {state['status'][:20]!r} is not complete or diverged"
    if not 0 <= state["best_episode"] <= n:
        return "best_episode is not an episode of the seed"
    return None


def claim_run_dir(out: str | Path, name: str, force: bool = False) -> tuple[Path, str | None]:
    """Create the directory for a new run; never reuse an existing one silently.

    Returns (path, note): when `out/name` exists, the run goes to `out/name-2` (or -3, ...) and
    the note says so; with `force` the old directory is deleted first.
    """
    out = Path(out)
    blocker = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise UserError(f"cannot make the results directory {out}: {blocker} is a file; choose another with --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create results directory {out}: {exc.strerror}; choose another with --out") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UserError(f"results directory {out} is not writable; choose another with --out")
    path = out / name
    note = None
    if force and (path.is_symlink() or (path.exists() and not path.is_dir())):
        # --force replaces a run directory; a file or a link there is something else of the user's.
        raise UserError(f"{path} exists and is not a run directory; --force replaces only runs: "
                        "move it away or choose another --name")
    if path.exists() and force:
        if RunDir(path).is_training() and not RunDir(path).marked_by_me():
            raise UserError(f"{path} is being trained by another dqnrun process "
                            f"({RunDir(path).training_owner()}); "
                            "stop it first, or choose another --name")
        shutil.rmtree(path)
        note = f"--force: replaced the earlier run in {path}"
    elif path.exists():
        k = 2
        while (out / f"{name}-{k}").exists():
            k += 1
        note = f"{path} already holds a run; writing to {out / f'{name}-{k}'} (use --force to replace it)"
        path = out / f"{name}-{k}"
    try:
        path.mkdir()
    except FileExistsError:  # another process claimed the same name just now
        raise UserError(f"{path} was created by another process just now; run again to get a new name") from None
    RunDir(path).mark_training()  # from now on a concurrent --force is refused
    return path, note


# ---------------------------------------------------------------------------------------------
# Live metrics files


def _cell(value: float | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return "" if not math.isfinite(value) else f"{value:.6g}"


def metrics_row(row: dict[str, float | int | None]) -> str:
    """One CSV line (with newline) of METRICS_COLUMNS; missing or non-finite values are empty."""
    return ",".join(_cell(row.get(c)) for c in METRICS_COLUMNS) + "\n"


def metrics_header() -> str:
    return ",".join(METRICS_COLUMNS) + "\n"


MAX_METRICS_BYTES = 1 << 30  # a metrics file: about 100 bytes per episode


def count_metrics_rows(path: Path) -> int:
    """Complete rows of a metrics file (0 if there is none); a FIFO or device is a UserError."""
    if not path.exists() and not path.is_symlink():
        return 0
    with open_regular(path, "metrics file", MAX_METRICS_BYTES) as f:
        lines = sum(1 for line in f if line.endswith(b"\n"))
    return max(0, lines - 1)


def _metrics_text(path: Path) -> str:
    with open_regular(path, "metrics file", MAX_METRICS_BYTES) as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: damaged: not a metrics file (not UTF-8 text)") from None


def read_metrics(path: Path) -> dict[str, np.ndarray]:
    """A metrics CSV as {column: float array} (empty cells are NaN); missing file: no rows."""
    columns: dict[str, list[float]] = {}
    if not path.exists() and not path.is_symlink():
        return {c: np.zeros(0) for c in METRICS_COLUMNS}
    text = _metrics_text(path)
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    columns = {c: [] for c in header}
    for cells in reader:
        if len(cells) != len(header):  # a row cut by a crash
            break
        for c, v in zip(header, cells):
            columns[c].append(float(v) if v else math.nan)
    return {c: np.array(v, dtype=float) for c, v in columns.items()}


class MetricsFile:
    """Appends rows to a seed's metrics CSV, flushed after each, so `tail -f` and pandas see them.

    `start(episodes)` keeps the first `episodes` rows of an existing file (the ones a resumed
    checkpoint covers) and drops any later ones, so a resumed seed neither repeats nor skips a row.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._file: io.TextIOWrapper | None = None

    def start(self, episodes: int = 0, rows: Sequence[dict[str, Any]] = ()) -> None:
        """Open for appending after `episodes` rows; `rows` (the checkpoint's) fill any it lacks."""
        self.path.parent.mkdir(exist_ok=True)  # not the run directory: see atomic_path
        kept = [metrics_header()]
        if episodes and (self.path.exists() or self.path.is_symlink()):
            lines = _metrics_text(self.path).splitlines(keepends=True)
            if lines and lines[0] == metrics_header():
                kept += [line for line in lines[1:episodes + 1] if line.endswith("\n")]
        # Rows the file lacks (the client stopped before writing them) come from the checkpoint.
        kept += [metrics_row(r) for r in rows[len(kept) - 1:episodes]]
        write_text(self.path, "".join(kept))
        self._file = open(self.path, "a", buffering=1)

    def append(self, row: dict[str, Any]) -> None:
        assert self._file is not None, "start() first"
        self._file.write(metrics_row(row))
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# ---------------------------------------------------------------------------------------------
# The results schema


def pad(rows: Sequence[Sequence[float]]) -> np.ndarray:
    """Stack rows of possibly different lengths into a 2-D float array, NaN-padded."""
    n = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), n), np.nan)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def results_data(
    *, name: str, config: dict[str, Any], seeds: Sequence[dict[str, Any]], window: int,
    pooled: Sequence[int], curves: tuple[np.ndarray, np.ndarray, np.ndarray], smoothed: Sequence[np.ndarray],
    reward_threshold: float | None, device: str, versions: dict[str, str], machine: dict[str, str], created: str,
) -> dict[str, Any]:
    """The results.joblib dict. `seeds` holds one dict per seed with the keys of a seed result
    (seed, scores, steps, train_returns, epsilons, losses, best_score, best_episode, wall_time,
    status, diverged; optionally mean_qs, max_qs, betas, updates, eval_steps, eval_scores)."""
    max_score, min_score, mean_score = curves

    def per_episode(key: str) -> np.ndarray:
        return pad([s.get(key) or [math.nan] * len(s["scores"]) for s in seeds])

    return {
        # The lecture's keys, so its notebook plots still work.
        "max_score": max_score,
        "min_score": min_score,
        "mean_score": mean_score,
        "format": RESULT_FORMAT,
        "schema": SCHEMA_VERSION,
        "name": name,
        "scores": pad([s["scores"] for s in seeds]),
        "smoothed": pad(list(smoothed)),
        "steps": pad([s["steps"] for s in seeds]),
        "train_returns": pad([s["train_returns"] for s in seeds]),
        "epsilons": pad([s["epsilons"] for s in seeds]),
        "losses": pad([s["losses"] for s in seeds]),
        "mean_qs": per_episode("mean_qs"),
        "max_qs": per_episode("max_qs"),
        "betas": per_episode("betas"),
        # With `eval_every_steps`: per seed, the env step of every evaluation and its score
        # (seeds x evaluations, NaN-padded); seeds x 0 when the run evaluated after every episode.
        "eval_steps": pad([s.get("eval_steps") or [] for s in seeds]),
        "eval_scores": pad([s.get("eval_scores") or [] for s in seeds]),
        "updates": np.array([s.get("updates", -1) for s in seeds]),  # gradient updates; -1: unknown
        "episodes": np.array([len(s["scores"]) for s in seeds]),
        "best_score": np.array([s["best_score"] for s in seeds], dtype=float),
        "best_episode": np.array([s["best_episode"] for s in seeds]),
        "wall_time": np.array([s["wall_time"] for s in seeds], dtype=float),
        "status": [s["status"] for s in seeds],
        "aggregated_seeds": list(pooled),
        "diverged": [s["diverged"] for s in seeds],
        "seeds": [int(s["seed"]) for s in seeds],
        "variant": config["variant"],
        "env_id": config["env"],
        "reward_threshold": reward_threshold,
        "window": window,
        "config": config,
        "device": device,
        "versions": versions,
        "machine": machine,
        "created": created,
    }


def write_results(run_dir: RunDir, data: dict[str, Any]) -> None:
    write_joblib(run_dir.results_file, data)


# ---------------------------------------------------------------------------------------------
# The typed view


@dataclass(frozen=True, eq=False)
class Run:
    """A finished run (or a lecture notebook's result file), read and checked.

    Per-seed arrays have one row per seed (in `seeds` order) and one column per episode, padded
    with NaN after a seed that stopped early (`episodes[i]` says how many are real). A lecture
    file holds only the three curves: its per-seed fields are None and `is_lecture` is True.
    """

    name: str
    path: Path  #: the results.joblib (or lecture .joblib) file
    max_score: np.ndarray  #: the lecture's curves: max/min/mean across seeds of the smoothed scores
    min_score: np.ndarray
    mean_score: np.ndarray
    window: int  #: sliding window of the smoothed curves
    is_lecture: bool = False
    variant: str = "?"
    env_id: str = "?"
    seeds: tuple[int, ...] = ()
    scores: np.ndarray | None = None  #: raw evaluation score per seed and episode
    smoothed: np.ndarray | None = None  #: sliding mean of `scores`, per seed
    steps: np.ndarray | None = None  #: env steps at the end of each episode
    train_returns: np.ndarray | None = None
    epsilons: np.ndarray | None = None
    losses: np.ndarray | None = None  #: mean loss of the episode's updates (NaN: none)
    mean_qs: np.ndarray | None = None  #: mean Q(s, a) of the episode's updates (NaN: unknown)
    max_qs: np.ndarray | None = None  #: largest |Q(s, a)| of the episode's updates
    betas: np.ndarray | None = None  #: PER importance-sampling exponent at the episode's end
    #: With `eval_every_steps`: env step of each evaluation and its score, seeds x evaluations
    #: (NaN-padded). Without it (or in older files) both are seeds x 0.
    eval_steps: np.ndarray | None = None
    eval_scores: np.ndarray | None = None
    episodes: np.ndarray | None = None  #: episodes trained per seed
    best_score: np.ndarray | None = None
    best_episode: np.ndarray | None = None  #: 1-based
    wall_time: np.ndarray | None = None  #: seconds per seed
    status: tuple[str, ...] = ()  #: per seed: complete | diverged
    diverged: tuple[str, ...] = ()  #: per seed: "episode E, step T" where it diverged, else ""
    aggregated_seeds: tuple[int, ...] = ()  #: the seeds pooled into the three curves
    reward_threshold: float | None = None
    config: Any = None  #: the resolved `dqnrun.Config` (None for lecture files)
    device: str = "?"
    versions: dict[str, str] = field(default_factory=dict)
    machine: dict[str, str] = field(default_factory=dict)  #: CPU model and math-library builds
    created: str = ""
    schema: int = 0

    @property
    def run_dir(self) -> Path:
        return self.path.parent

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    def seed_index(self, seed: int) -> int:
        if seed not in self.seeds:
            raise UserError(f"{self.name} has no seed {seed} (seeds: {', '.join(map(str, self.seeds))})")
        return self.seeds.index(seed)

    def metrics(self, seed: int) -> dict[str, np.ndarray]:
        """One seed's per-episode table, the columns of its metrics CSV, as numpy arrays."""
        if self.is_lecture:
            raise UserError(f"{self.path} is a lecture result file: it has no per-seed metrics")
        i = self.seed_index(seed)
        n = int(self.episodes[i])
        smoothed = np.full(n, np.nan)
        points = self.smoothed[i][~np.isnan(self.smoothed[i])]
        smoothed[self.window - 1 : self.window - 1 + len(points)] = points
        return {
            "episode": np.arange(1, n + 1),
            "env_steps": self.steps[i, :n].astype(np.int64),
            "train_return": self.train_returns[i, :n],
            "score": self.scores[i, :n],
            "smoothed_score": smoothed,
            "epsilon": self.epsilons[i, :n],
            "mean_loss": self.losses[i, :n],
            "mean_q": self.mean_qs[i, :n],
            "max_q": self.max_qs[i, :n],
            "beta": self.betas[i, :n],
        }

    def to_records(self) -> list[dict[str, Any]]:
        """One plain dict per seed and episode (for `pandas.DataFrame(run.to_records())`)."""
        records = []
        for seed in self.seeds:
            table = self.metrics(seed)
            for j in range(len(table["episode"])):
                records.append({"run": self.name, "variant": self.variant, "seed": seed,
                                **{k: v[j].item() for k, v in table.items()}})
        return records


class NewerResults(UserError):
    """A result file of a newer results schema than this dqnrun reads: not damaged, but not for
    this version to read (or rebuild)."""


def _damaged(file: Path, what: str) -> UserError:
    return UserError(f"{file}: damaged: {what}")


def _curve(data: dict[str, Any], key: str, file: Path) -> np.ndarray:
    try:
        out = np.asarray(data[key], dtype=float)
    except (TypeError, ValueError):
        raise _damaged(file, f"{key} is not a sequence of numbers") from None
    if out.ndim != 1:
        raise _damaged(file, f"{key} is not a sequence of numbers")
    return out


def _table(data: dict[str, Any], key: str, file: Path, shape: tuple[int, int], required: bool = True) -> np.ndarray:
    if key not in data:
        if required:
            raise _damaged(file, f"no {key}")
        return np.full(shape, np.nan)
    try:
        out = np.asarray(data[key], dtype=float)
    except (TypeError, ValueError):
        raise _damaged(file, f"{key} is not numbers") from None
    if out.shape != shape:
        raise _damaged(file, f"{key} has shape {out.shape}, expected {shape}")
    return out


def _vector(data: dict[str, Any], key: str, file: Path, n: int, default: Any = None, dtype: Any = float) -> np.ndarray:
    if key not in data:
        if default is None:
            raise _damaged(file, f"no {key}")
        return np.full(n, default, dtype=dtype)
    try:
        out = np.asarray(data[key], dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        raise _damaged(file, f"{key} is not numbers") from None
    if out.shape != (n,):
        raise _damaged(file, f"{key} has {out.size} entries for {n} seeds")
    return out


def _strings(data: dict[str, Any], key: str, file: Path, n: int, default: str) -> tuple[str, ...]:
    value = data.get(key, [default] * n)
    if not isinstance(value, (list, tuple)) or len(value) != n or not all(isinstance(v, str) for v in value):
        raise _damaged(file, f"{key} is not {n} strings")
    return tuple(value)


def _evaluations(data: dict[str, Any], file: Path, n_seeds: int) -> dict[str, np.ndarray]:
    """The step-scheduled evaluation tables, checked: both seeds x evaluations, same shape."""
    if "eval_steps" not in data and "eval_scores" not in data:
        return {"eval_steps": np.zeros((n_seeds, 0)), "eval_scores": np.zeros((n_seeds, 0))}
    tables = {}
    for key in ("eval_steps", "eval_scores"):
        try:
            tables[key] = np.asarray(data.get(key), dtype=float)
        except (TypeError, ValueError):
            raise _damaged(file, f"{key} is not numbers") from None
        if tables[key].ndim != 2 or tables[key].shape[0] != n_seeds:
            raise _damaged(file, f"{key} is not one row per seed")
    if tables["eval_steps"].shape != tables["eval_scores"].shape:
        raise _damaged(file, "eval_steps and eval_scores differ in shape")
    return tables


def run_from_data(data: Any, file: Path, name: str | None = None) -> Run:
    """Check a loaded result dict and build its typed view; a UserError names what is wrong."""
    file = Path(file)
    if name is None:
        name = file.parent.name if file.name == RESULTS_FILE else file.stem
    if not isinstance(data, dict) or not all(k in data for k in LECTURE_KEYS):
        raise UserError(
            f"{file} is not a dqnrun or lecture result (it needs the keys {', '.join(LECTURE_KEYS)})"
        )
    curves = [_curve(data, k, file) for k in LECTURE_KEYS]
    if data.get("format") != RESULT_FORMAT:
        if len({len(c) for c in curves}) != 1:
            raise _damaged(file, "max_score, min_score and mean_score differ in length")
        return Run(name, file, *curves, window=LECTURE_WINDOW, is_lecture=True)

    schema = data.get("schema", 0)
    if not isinstance(schema, int) or schema > SCHEMA_VERSION:
        raise NewerResults(f"{file} was written by a newer dqnrun (results schema {schema}); upgrade dqnrun to read it")
    name = data.get("name", name)
    if not isinstance(name, str):
        raise _damaged(file, "name is not a string")
    if not name or len(name) > 255 or any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise _damaged(file, "name is not a run name (empty, over 255 characters or control characters)")
    if "scores" not in data:
        raise _damaged(file, "no scores")
    try:
        scores = np.asarray(data["scores"], dtype=float)
    except (TypeError, ValueError):
        raise _damaged(file, "scores is not numbers") from None
    if scores.ndim != 2 or scores.shape[0] == 0:
        raise _damaged(file, "scores is not a table of seeds by episodes")
    n_seeds, n_episodes = scores.shape
    window = data.get("window", LECTURE_WINDOW)
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise _damaged(file, f"window {str(window)[:20]} is not a positive integer")
    seeds = data.get("seeds", list(range(1, n_seeds + 1)))
    if (not isinstance(seeds, (list, tuple)) or len(seeds) != n_seeds
            or not all(isinstance(s, (int, np.integer)) for s in seeds)):
        raise _damaged(file, f"seeds is not {n_seeds} integers")
    seeds = tuple(int(s) for s in seeds)
    shape = (n_seeds, n_episodes)
    episodes = _vector(data, "episodes", file, n_seeds, dtype=np.int64)
    if (episodes < 0).any() or (episodes > n_episodes).any():
        raise _damaged(file, "episodes out of range")
    if window > n_episodes:
        raise _damaged(file, f"window {window} is longer than the run's {n_episodes} episodes")
    if len({len(c) for c in curves}) != 1 or len(curves[0]) > n_episodes:
        raise _damaged(file, "max_score, min_score and mean_score differ in length or are longer than the run")
    for i, n in enumerate(episodes):
        if not np.isfinite(scores[i, :n]).all():
            raise _damaged(file, f"seed {seeds[i]} has missing or non-finite scores")
    steps = _table(data, "steps", file, shape)
    for i, n in enumerate(episodes):
        if not np.isfinite(steps[i, :n]).all():
            raise _damaged(file, f"seed {seeds[i]} has missing or non-finite env steps")
    smoothed = data.get("smoothed")
    if smoothed is None:
        from dqnrun.smoothing import smooth

        smoothed = pad([smooth(row[:n], int(window)) for row, n in zip(scores, episodes)])
    else:
        smoothed = np.asarray(smoothed, dtype=float)
        if smoothed.ndim != 2 or smoothed.shape[0] != n_seeds:
            raise _damaged(file, "smoothed is not one curve per seed")
    best_score = data.get("best_score")
    best_score = (np.nanmax(scores, axis=1) if best_score is None else _vector(data, "best_score", file, n_seeds))
    best_episode = data.get("best_episode")
    best_episode = (np.nanargmax(scores, axis=1) + 1 if best_episode is None
                    else _vector(data, "best_episode", file, n_seeds, dtype=np.int64))
    status = _strings(data, "status", file, n_seeds, "complete")
    diverged = _strings(data, "diverged", file, n_seeds, "")
    pooled = data.get("aggregated_seeds")
    if pooled is None:
        pooled = [s for s, st in zip(seeds, status) if st == "complete"] or list(seeds)
    if not isinstance(pooled, (list, tuple)) or not set(pooled) <= set(seeds):
        raise _damaged(file, "aggregated_seeds are not seeds of the run")
    threshold = data.get("reward_threshold")
    if threshold is not None and not isinstance(threshold, (int, float)):
        raise _damaged(file, "reward_threshold is not a number")
    config = data.get("config")
    if config is not None:
        from dqnrun.config import config_from_dict

        if not isinstance(config, dict):
            raise _damaged(file, "config is not a mapping")
        try:
            config = config_from_dict(config, source="config")
        except UserError as exc:
            raise _damaged(file, str(exc)) from None
    strings = {}
    for key in ("variant", "env_id", "device", "created"):
        value = data.get(key, "?" if key != "created" else "")
        if not isinstance(value, str):
            raise _damaged(file, f"{key} is not a string")
        strings[key] = value
    versions, machine = data.get("versions", {}), data.get("machine", {})
    if not isinstance(versions, dict) or not isinstance(machine, dict):
        raise _damaged(file, "versions or machine is not a mapping")
    return Run(
        name=name, path=file, max_score=curves[0], min_score=curves[1], mean_score=curves[2],
        window=int(window), is_lecture=False, variant=strings["variant"], env_id=strings["env_id"],
        seeds=seeds, scores=scores, smoothed=smoothed, steps=steps,
        train_returns=_table(data, "train_returns", file, shape, required=False),
        epsilons=_table(data, "epsilons", file, shape, required=False),
        losses=_table(data, "losses", file, shape, required=False),
        mean_qs=_table(data, "mean_qs", file, shape, required=False),
        max_qs=_table(data, "max_qs", file, shape, required=False),
        betas=_table(data, "betas", file, shape, required=False),
        **_evaluations(data, file, n_seeds),
        episodes=episodes, best_score=best_score, best_episode=best_episode,
        wall_time=_vector(data, "wall_time", file, n_seeds, default=math.nan),
        status=status, diverged=diverged, aggregated_seeds=tuple(int(s) for s in pooled),
        reward_threshold=None if threshold is None else float(threshold), config=config,
        device=strings["device"], versions=dict(versions), machine=dict(machine), created=strings["created"], schema=schema,
    )


def load_run(path: str | Path) -> Run:
    """Load a finished run directory or a result file (also a lecture notebook's joblib file).

    A missing, unfinished, foreign, truncated or damaged run raises `UserError` with a one-line
    message naming the problem and the fix.
    """
    path = Path(path)
    if path.is_dir():
        run_dir = RunDir(path)
        file = run_dir.results_file
        if not file.exists():
            if run_dir.config_file.exists() and run_dir.is_training():
                raise UserError(f"{path} is still training ({run_dir.training_owner()}); open it when it finishes "
                                f"(`dqnrun list {path.parent}` shows its progress)")
            if run_dir.config_file.exists():
                raise UserError(f"{path} is an unfinished run (no {RESULTS_FILE} yet); "
                                f"finish it with `{run_dir.resume_command()}`")
            raise UserError(f"{path} is not a dqnrun run: it has no {RESULTS_FILE}")
        try:
            return run_from_data(_read_pickle(file), file)
        except (NewerResults, UnreadableFile):
            raise
        except UserError as exc:
            if run_dir.rebuildable():
                raise UserError(f"{exc}; `dqnrun train --resume {path}` rebuilds it from the per-seed files "
                                "(seeds/seed-<s>.joblib)") from None
            raise
    elif path.is_file():
        file = path
    else:
        raise UserError(f"no such run: {path}")
    return run_from_data(_read_pickle(file), file)


def resolve_runs(args: list[str], root: str | Path = "results") -> list[Path]:
    """Turn RUN arguments (directories, result files, globs) into result paths.

    With no arguments: every finished run under `root`. Missing paths and empty globs are UserErrors.
    """
    if not args:
        found = [p for p in find_runs(root) if p.is_file() or RunDir(p).is_finished()]
        if not found:
            raise UserError(f"no runs under {root}/; train one with `dqnrun train configs/ddqn.yaml`")
        return found
    paths: list[Path] = []
    for arg in args:
        if any(ch in arg for ch in "*?[") and not Path(arg).exists():  # a run named "[x]" is not a glob
            matches = sorted(Path(m) for m in glob.glob(arg))
            if not matches:
                raise UserError(f"no runs match {arg!r}")
            # Runs and result files only: `results/*` also matches the figures saved beside them.
            runs = [m for m in matches if (m.is_file() and m.suffix == ".joblib") or RunDir(m).is_finished()]
            paths += runs or matches
        else:
            p = Path(arg)
            if not p.exists():
                raise UserError(f"no such run: {arg}")
            paths.append(p)
    return paths


def find_runs(root: str | Path) -> list[Path]:
    """Run directories (finished or not) and lecture .joblib files directly under `root`."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and RunDir(entry).is_run():
            found.append(entry)
        elif entry.is_file() and entry.suffix == ".joblib":
            found.append(entry)
    return found


@dataclass(frozen=True)
class Progress:
    """An unfinished run as `dqnrun list` shows it: the config and the episodes done per seed."""

    path: Path
    config: Any  # dqnrun.Config
    episodes_done: dict[int, int]
    env_steps_done: dict[int, int]  # each seed's env steps at its last metrics row
    finished_seeds: tuple[int, ...]
    checkpointed: tuple[int, ...]
    is_live: bool  # a process is training it now (else it was interrupted)


def read_progress(path: str | Path) -> Progress:
    """How far an unfinished run got, from its config, metrics files and per-seed files."""
    from dqnrun.config import load_config

    run_dir = RunDir(Path(path))
    config = load_config(run_dir.config_file)
    done = {s: run_dir.episodes_done(s) for s in config.seeds}
    steps = {s: run_dir.env_steps_done(s) for s in config.seeds}
    finished = tuple(s for s in config.seeds if run_dir.seed_result(s).exists())
    checkpointed = tuple(s for s in config.seeds if run_dir.checkpoint(s).exists())
    return Progress(run_dir.path, config, done, steps, finished, checkpointed, run_dir.is_training())


# ---------------------------------------------------------------------------------------------
# Torch files (models, checkpoints)


def load_torch_file(path: str | Path, fmt: str, what: str) -> dict[str, Any]:
    """Load a torch file of ours whose dict says `format: fmt`; anything else is a UserError.

    torch's weights-only loader builds tensors, containers, numbers and strings only: no code
    from the file runs. Only regular files are opened.
    """
    import torch

    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise UserError(f"no {what} file {path}")
    with open_regular(path, what) as f:
        data = f.read()
    try:
        blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:
        raise UserError(f"{path} is truncated or not a {what} file") from None
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        raise UserError(f"{path} is not a {what} file")
    return blob


def load_model_file(path: str | Path) -> dict[str, Any]:
    """Load a saved model (`weights_only=True`: no code runs); foreign files are a UserError."""
    return load_torch_file(path, MODEL_FORMAT, "dqnrun model")
