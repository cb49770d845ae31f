"""Many seeds of one config: parallel workers (joblib), smoothing, aggregation, the run directory.

Each seed runs `trainer.train_seed` in a worker and writes its own files as soon as it ends
(model, metrics, per-seed result), so a crash or Ctrl-C loses at most the unfinished seeds'
progress since their last checkpoint. `results.joblib` is assembled once every seed is done.
"""

from __future__ import annotations

import csv
import io
import math
import multiprocessing
import os
import platform
import queue
import signal
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from multiprocessing.managers import SyncManager
from pathlib import Path
from typing import Any, Callable

import joblib
import numpy as np

from dqnrun import __version__
from dqnrun.config import Config
from dqnrun.envs import env_info
from dqnrun.errors import UserError
from dqnrun.networks import NetworkSpec
from dqnrun.replay import replay_bytes
from dqnrun.results import (
    MODEL_FORMAT,
    RESULT_FORMAT,
    RESULTS_FILE,
    load_torch_file,
    write_joblib,
    write_text,
    write_with,
)
from dqnrun.smoothing import aggregate, smooth
from dqnrun.trainer import CHECKPOINT_FORMAT, Event, SeedResult, train_seed


def pad(rows: list[list[float]] | list[np.ndarray]) -> np.ndarray:
    """Stack rows of possibly different lengths into a 2-D float array, NaN-padded."""
    n = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), n), np.nan)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def default_jobs(n_seeds: int) -> int:
    return max(1, min(n_seeds, joblib.cpu_count(only_physical_cores=False)))


# ---------------------------------------------------------------------------------------------
# Per-seed files


def seed_paths(run_dir: Path, seed: int) -> dict[str, Path]:
    return {
        "result": run_dir / "seeds" / f"seed-{seed}.joblib",
        "model": run_dir / "models" / f"seed-{seed}.pt",
        "metrics": run_dir / "metrics" / f"seed-{seed}.csv",
        "checkpoint": run_dir / "checkpoints" / f"seed-{seed}.pt",
    }


def metrics_csv(result: SeedResult, window: int) -> str:
    smoothed = smooth(np.asarray(result.scores), window)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["episode", "env_steps", "train_return", "score", "smoothed_score", "epsilon", "mean_loss"])
    for i, score in enumerate(result.scores):
        j = i - (window - 1)
        w.writerow([
            i + 1, result.steps[i], f"{result.train_returns[i]:.6g}", f"{score:.6g}",
            f"{smoothed[j]:.6g}" if 0 <= j < len(smoothed) else "",
            f"{result.epsilons[i]:.6g}",
            "" if math.isnan(result.losses[i]) else f"{result.losses[i]:.6g}",
        ])
    return buf.getvalue()


def save_seed(run_dir: Path, config: Config, spec: NetworkSpec, result: SeedResult) -> None:
    """Write a finished seed's model, metrics and result; drop its checkpoint."""
    import torch

    paths = seed_paths(run_dir, result.seed)
    if result.best_state is not None:
        blob = {
            "format": MODEL_FORMAT,
            "state_dict": result.best_state,
            "network": spec.to_dict(),
            "env_id": config.env,
            "variant": config.variant,
            "switches": {k: getattr(config.agent, k) for k in ("double", "dueling", "prioritized", "tau")},
            "seed": result.seed,
            "score": result.best_score,
            "episode": result.best_episode,
            "dqnrun": __version__,
        }
        write_with(paths["model"], lambda tmp: torch.save(blob, tmp))
    write_text(paths["metrics"], metrics_csv(result, config.smoothing_window))
    state = result.to_state()
    state.pop("best_state")
    write_joblib(paths["result"], state)
    paths["checkpoint"].unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """A seed's checkpoint, or None. It holds numpy arrays and generator states, which torch's
    weights-only loader does not take; it is read only from the user's own run directory."""
    if not path.exists():
        return None
    try:
        return load_torch_file(path, CHECKPOINT_FORMAT, "dqnrun checkpoint", weights_only=False)
    except UserError as exc:
        raise UserError(f"{exc}; delete it to restart that seed from scratch") from None


# ---------------------------------------------------------------------------------------------
# Workers


@dataclass
class Channel:
    """How a worker talks to the main process: an event queue and a stop flag."""

    events: Any  # queue.Queue or a manager's Queue proxy
    stop: Any  # threading.Event or a manager's Event proxy
    in_subprocess: bool


def run_seed(config: Config, seed: int, spec: NetworkSpec, device: str, run_dir: Path, channel: Channel) -> str:
    """Worker entry point: train (or resume) one seed and save its files. Returns its status."""
    if channel.stop.is_set():  # stopped before this seed began: it stays as it was
        return "interrupted"
    if channel.in_subprocess:
        # The main process decides when to stop (it owns Ctrl-C and SIGTERM); workers finish
        # their episode, checkpoint and return.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    paths = seed_paths(run_dir, seed)
    resume = load_checkpoint(paths["checkpoint"])

    def save_checkpoint(state: dict[str, Any]) -> None:
        import torch

        write_with(paths["checkpoint"], lambda tmp: torch.save(state, tmp))

    result = train_seed(
        config, seed, spec, device,
        emit=channel.events.put,
        should_stop=channel.stop.is_set,
        save_checkpoint=save_checkpoint,
        resume=resume,
    )
    if result.status in ("complete", "diverged"):
        save_seed(run_dir, config, spec, result)
    return result.status


def channel_stopped(channel: Channel) -> bool:
    try:
        return bool(channel.stop.is_set())
    except (OSError, EOFError):  # the manager is gone
        return True


def run_seeds(
    config: Config,
    seeds: list[int],
    spec: NetworkSpec,
    run_dir: Path,
    jobs: int,
    device: str,
    on_event: Callable[[Event], None],
) -> None:
    """Run `seeds` in `jobs` workers; feed their events to `on_event` in this thread.

    Ctrl-C or SIGTERM sets the stop flag: each worker finishes its episode, checkpoints and
    returns. What finished is on disk (`pending_seeds` tells what did not).
    """
    if not seeds:
        return
    manager: SyncManager | None = None
    if jobs > 1:
        manager = SyncManager(ctx=multiprocessing.get_context("spawn"))
        manager.start(signal.signal, (signal.SIGINT, signal.SIG_IGN))
        channel = Channel(manager.Queue(), manager.Event(), in_subprocess=True)
    else:
        channel = Channel(queue.Queue(), threading.Event(), in_subprocess=False)

    failure: list[BaseException] = []

    def work() -> None:
        try:
            if jobs > 1:
                tasks = (joblib.delayed(run_seed)(config, s, spec, device, run_dir, channel) for s in seeds)
                joblib.Parallel(n_jobs=jobs, backend="loky")(tasks)
            else:
                for s in seeds:
                    run_seed(config, s, spec, device, run_dir, channel)
        except BaseException as exc:  # surfaced in the main thread below
            failure.append(exc)
        finally:
            channel.events.put(None)

    # The handler only flips a local flag: a manager proxy must not be called from a signal
    # handler, which may interrupt this thread in the middle of another proxy call.
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        stop_requested.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C forces it

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        for s in previous:
            signal.signal(s, request_stop)
    worker = threading.Thread(target=work, name="dqnrun-seeds", daemon=True)
    try:
        worker.start()
        forwarded = False
        while True:
            if stop_requested.is_set() and not forwarded:
                channel.stop.set()
                forwarded = True
            try:
                event = channel.events.get(timeout=0.2)
            except queue.Empty:
                continue
            if event is None:
                break
            on_event(event)
        worker.join()
    finally:
        if in_main:
            for s, handler in previous.items():
                signal.signal(s, handler)
        stopped = channel_stopped(channel)
        if manager is not None:
            manager.shutdown()
    if failure and not stopped:
        raise failure[0]


# ---------------------------------------------------------------------------------------------
# The whole run


def plan(config: Config, jobs: int | None = None) -> NetworkSpec:
    """Check the environment and the memory the replays need; return the network spec.

    The replay's size is computed before anything is allocated, for the seeds that will run
    at once (`jobs`, default: as many as cores and seeds allow).
    """
    info = env_info(config.env)
    need = replay_bytes(config.agent.memory_size, info.obs_dim, config.agent.prioritized)
    at_once = min(len(config.seeds), jobs or default_jobs(len(config.seeds)))
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on every platform
        available = None
    if available is not None and need * at_once > available:
        raise UserError(
            f"the replay memory needs {need / 2**30:.1f} GiB per seed, {at_once} at once, and only "
            f"{available / 2**30:.1f} GiB is free; lower agent.memory_size or --jobs"
        )
    return NetworkSpec(info.obs_dim, info.n_actions, config.network.hidden, config.agent.dueling)


def versions() -> dict[str, str]:
    import gymnasium
    import torch

    return {
        "dqnrun": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "gymnasium": gymnasium.__version__, "numpy": np.__version__,
    }


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux; platform's guess elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, str]:
    """What decides the last bits of a float result besides the code: CPU and math libraries.

    Bitwise reproducibility holds on the same hardware and library versions; matrix-multiply
    kernels (MKL, oneDNN, OpenBLAS) pick code paths by CPU instruction set, so another CPU may
    round differently. These fields let a reader tell why two runs differ.
    """
    import torch

    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        numpy_blas = f"{blas.get('name', '?')} {blas.get('version', '?')}"
    except Exception:  # older numpy without mode="dicts"
        numpy_blas = "unknown"
    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "os": platform.platform(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_build": torch.__config__.show(),
        "numpy_blas": numpy_blas,
    }


def assemble(run_dir: Path, config: Config, device: str) -> dict[str, Any]:
    """Build `results.joblib` from the per-seed files of a finished run, and write it."""
    results = [SeedResult.from_state({**joblib.load(seed_paths(run_dir, s)["result"]), "best_state": None})
               for s in config.seeds]
    lengths = [len(r.scores) for r in results]
    # The lecture's max/min/mean curves come from the seeds that trained to the end; a seed
    # that diverged stops early and would cut every curve short. (If all diverged: all of them.)
    pooled = [r for r in results if r.status == "complete"] or results
    # A window longer than the run shrinks to fit (`Config.smoothing_window`); max_steps can
    # also end a seed after fewer episodes than the window. The window used is recorded.
    window = max(1, min([config.smoothing_window, *(len(r.scores) for r in pooled)]))
    smoothed = {r.seed: smooth(np.asarray(r.scores), window) for r in results}
    max_score, min_score, mean_score = aggregate([smoothed[r.seed] for r in pooled])
    info = env_info(config.env)
    data = {
        # The lecture's keys, so its notebook plots still work.
        "max_score": max_score,
        "min_score": min_score,
        "mean_score": mean_score,
        "format": RESULT_FORMAT,
        "name": run_dir.name,
        "scores": pad([r.scores for r in results]),
        "smoothed": pad(list(smoothed.values())),
        "steps": pad([r.steps for r in results]),
        "train_returns": pad([r.train_returns for r in results]),
        "epsilons": pad([r.epsilons for r in results]),
        "losses": pad([r.losses for r in results]),
        "episodes": np.array(lengths),
        "best_score": np.array([r.best_score for r in results]),
        "best_episode": np.array([r.best_episode for r in results]),
        "wall_time": np.array([r.wall_time for r in results]),
        "status": [r.status for r in results],
        "aggregated_seeds": [r.seed for r in pooled],
        "diverged": [r.diverged for r in results],
        "seeds": list(config.seeds),
        "variant": config.variant,
        "env_id": config.env,
        "reward_threshold": info.reward_threshold,
        "window": window,
        "config": config.to_dict(),
        "device": device,
        "versions": versions(),
        "machine": machine(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_joblib(run_dir / RESULTS_FILE, data)
    checkpoints = run_dir / "checkpoints"
    if checkpoints.is_dir() and not any(checkpoints.iterdir()):
        checkpoints.rmdir()
    return data


def pending_seeds(run_dir: Path, config: Config) -> list[int]:
    return [s for s in config.seeds if not seed_paths(run_dir, s)["result"].exists()]
