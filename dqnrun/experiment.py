"""One run (many seeds of one config): claim, resume checks, workers, live files, assembly.

`start_run` then `execute` is the whole lifecycle, shared by `dqnrun train` and `dqnrun.train()`.
Each seed is a chain of chunk tasks that workers.py runs (`run_many`); this process writes
their checkpoints and turns their events into the live metrics rows and TensorBoard scalars.
A finished seed's models and result are saved as soon as it ends, so a crash or Ctrl-C loses at most the unfinished seeds' progress
since their last checkpoint. `results.joblib` is assembled once every seed is done.
"""

from __future__ import annotations

import bisect
import io
import math
import os
import platform
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import joblib
import numpy as np

from dqnrun import __version__
from dqnrun.chunks import ChunkResult, decode_checkpoint
from dqnrun.config import Config, apply_overrides, config_from_dict, config_warnings, load_config
from dqnrun.envs import env_info, storage_dtype
from dqnrun.errors import Fault, UserError
from dqnrun.networks import NetworkSpec, choose_trunk
from dqnrun.replay import replay_bytes
from dqnrun.results import (
    MODEL_FORMAT,
    MetricsFile,
    Run,
    RunDir,
    claim_run_dir,
    results_data,
    run_from_data,
    write_joblib,
    write_results,
    write_text,
    write_bytes,
)
from dqnrun.safeio import open_regular, output_errors
from dqnrun.smoothing import aggregate, smooth
from dqnrun.trainer import EpisodeEnd, Event, SeedEnd, SeedResult, check_resume


def default_jobs(n_seeds: int) -> int:
    return max(1, min(n_seeds, joblib.cpu_count(only_physical_cores=False)))


# ---------------------------------------------------------------------------------------------
# Per-seed files


def final_score(config: Config, result: SeedResult) -> tuple[float, int]:
    """The final model's score when saved, and its episode (1-based). Evaluated every N env
    steps, the per-episode scores are training returns (the last one possibly of a cut-off
    episode): the score is then the last evaluation's, with the episode it ran in, or (nan, 0)
    for a seed that never evaluated."""
    if config.eval_every_steps is None:
        return result.scores[-1], len(result.scores)
    if not result.eval_scores:
        return math.nan, 0
    # An evaluation after env step S ran in the first episode ending at or after step S.
    episode = bisect.bisect_left(result.steps, result.eval_steps[-1]) + 1
    return result.eval_scores[-1], min(episode, len(result.scores))


def save_seed(run_dir: Path, config: Config, spec: NetworkSpec, result: SeedResult) -> None:
    """Write a finished seed's models (best and final) and result; drop its checkpoint.

    A write that fails (full disk, the run directory deleted) is a Fault naming the file and
    the cause; the seed's checkpoint is then kept.
    """
    import torch

    files = RunDir(run_dir)
    check_still_there(files)

    def save_model(path: Path, state: dict[str, Any], score: float, episode: int) -> None:
        blob = {
            "format": MODEL_FORMAT,
            "state_dict": state,
            "network": spec.to_dict(),
            "env_id": config.env,
            "env_kwargs": dict(config.env_kwargs),
            "wrappers": [dict(w) for w in config.wrappers],
            "variant": config.variant,
            "switches": {k: getattr(config.agent, k) for k in ("double", "dueling", "prioritized", "tau")},
            "seed": result.seed,
            "score": score,
            "episode": episode,
            "dqnrun": __version__,
        }
        buf = io.BytesIO()
        torch.save(blob, buf)  # in memory: a full disk is then an OSError, not a torch message
        with run_write(files, path):
            write_bytes(path, buf.getvalue())

    if result.best_state is not None:
        save_model(files.model(result.seed, "best"), result.best_state, result.best_score, result.best_episode)
    if result.final_state is not None and result.scores:
        save_model(files.model(result.seed, "final"), result.final_state, *final_score(config, result))
    state = result.to_state()
    state.pop("best_state")
    state.pop("final_state")
    with run_write(files, files.seed_result(result.seed)):
        write_joblib(files.seed_result(result.seed), state)
    files.checkpoint(result.seed).unlink(missing_ok=True)


def check_still_there(files: RunDir) -> None:
    """A run directory deleted (or emptied) while its run trains stops the run: writing into
    it again would make a run without its config look saved."""
    if not files.config_file.is_file():
        raise Fault(f"{files.path} was deleted or emptied during training (no {files.config_file.name}); "
                    "stopped without writing anything more")


@contextmanager
def run_write(files: RunDir, path: Path) -> Iterator[None]:
    """A write into the run directory; when it fails because the directory went away while it
    wrote, the fault says so (not "no such directory" for a checkpoint's temporary file)."""
    try:
        with output_errors(path, fault=True):
            yield
    except Fault:
        if not Path(path).parent.is_dir():  # its folder went first; the config may follow
            raise Fault(f"{files.path} was deleted or emptied during training (no {files.config_file.name}); "
                        "stopped without writing anything more") from None
        check_still_there(files)
        raise


def read_checkpoint(path: Path) -> bytes | None:
    """A seed's checkpoint bytes (checked to be a checkpoint), or None when it has none."""
    if not path.exists() and not path.is_symlink():
        return None
    try:
        with open_regular(path, "dqnrun checkpoint") as f:
            data = f.read()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    try:
        decode_checkpoint(data, what=str(path))
    except UserError as exc:
        raise UserError(f"{exc}; delete it to restart that seed from scratch") from None
    return data


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """A seed's checkpoint as a dict, or None. Read with torch's weights-only loader."""
    data = read_checkpoint(path)
    return None if data is None else decode_checkpoint(data, what=str(path))


def save_chunk(run_dir: Path, config: Config, spec: NetworkSpec, chunk: ChunkResult) -> None:
    """Write what a chunk produced: the seed's files when it finished, else its checkpoint."""
    if chunk.result is not None:
        save_seed(run_dir, config, spec, chunk.result)
    elif chunk.checkpoint is not None:
        files = RunDir(run_dir)
        check_still_there(files)
        with run_write(files, files.checkpoint(chunk.seed)):  # the previous one stays
            write_bytes(files.checkpoint(chunk.seed), chunk.checkpoint)


# ---------------------------------------------------------------------------------------------
# Workers


@dataclass(frozen=True)
class SeedsToRun:
    """The seeds of one run still to train, with what their chunks need."""

    run_dir: Path
    config: Config
    spec: NetworkSpec
    seeds: tuple[int, ...]


def run_many(
    runs: list[SeedsToRun],
    jobs: int,
    device: str,
    on_event: Callable[[SeedsToRun, Event], None],
    scheduler: str | None = None,
    on_run_done: Callable[[SeedsToRun], None] | None = None,
) -> bool:
    """Train the seeds of every run in one pool of chunk tasks (see workers.py); each run's
    files are written here as its chunks end, and `on_run_done` hears of each run whose seeds
    have all finished (with their files written) while the others train on. False when Ctrl-C
    or SIGTERM stopped it."""
    from dqnrun import workers

    training = {id(run): set(run.seeds) for run in runs}

    chains = []
    for run in runs:
        groups = seed_groups(run.config)
        for seed in run.seeds:
            chain = workers.Chain((run, seed), run.config, run.spec, seed, device,
                                  read_checkpoint(RunDir(run.run_dir).checkpoint(seed)),
                                  group=workers.Group(id(run), groups[seed]) if run.config.speed.vectorize > 1 else None)
            if chain.checkpoint is not None:  # its events so far are in the checkpoint
                chain.delivered = int(decode_checkpoint(chain.checkpoint)["episode"])
            chains.append(chain)

    def on_chunk(chain: workers.Chain, chunk: ChunkResult) -> None:
        run = chain.key[0]
        save_chunk(run.run_dir, run.config, run.spec, chunk)
        if chunk.result is not None and chunk.seed in training[id(run)]:
            training[id(run)].discard(chunk.seed)
            if not training[id(run)] and on_run_done is not None:
                on_run_done(run)

    try:
        return workers.run_chains(chains, lambda chain, event: on_event(chain.key[0], event), on_chunk,
                                  jobs=jobs, scheduler=scheduler)
    except workers.ChunkFailed as exc:  # its run keeps the traceback; the line says where
        files = RunDir(exc.key[0].run_dir)
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with run_write(files, files.errors_log):
            log = files.log_error(f"--- {stamp}: {exc}\n{exc.remote}")
        raise workers.WorkerFault(f"{exc}; the traceback is in {log}; {what_resume_keeps(runs)}") from None


def what_resume_keeps(runs: list[SeedsToRun]) -> str:
    """After a failure, what a resume continues from, in words: every unfinished seed's last
    checkpoint, or the start for seeds that had not saved one yet (`checkpoint_every`)."""
    unfinished = [(run, s) for run in runs for s in RunDir(run.run_dir).pending_seeds(run.seeds)]
    fresh = [(run, s) for run, s in unfinished if not RunDir(run.run_dir).checkpoint(s).exists()]
    if not fresh:
        return "each seed's last checkpoint is kept"
    every = sorted({run.config.checkpoint_every for run, _ in fresh})
    when = "checkpoints are off" if every == [0] else f"checkpoint_every: {', '.join(map(str, every))} episodes"
    if len(fresh) == len(unfinished):
        return f"no unfinished seed had saved a checkpoint yet ({when}), so resuming starts them from the beginning"
    names = [f"seed {s}" if len(runs) == 1 else f"{run.run_dir.name} seed {s}" for run, s in fresh]
    return (f"{', '.join(names)} had saved no checkpoint yet ({when}) and restart{'s' if len(fresh) == 1 else ''} "
            "from the beginning on resume; the other seeds continue from their last checkpoint")


def seed_groups(config: Config) -> dict[int, tuple[int, ...]]:
    """Each seed's group: K (`speed.vectorize`) consecutive seeds of the config's seed list,
    the last group possibly smaller. With K = 1 every seed is its own group."""
    k = config.speed.vectorize
    seeds = list(config.seeds)
    return {s: tuple(seeds[i:i + k]) for i in range(0, len(seeds), k) for s in seeds[i:i + k]}


def work_units(config: Config, seeds: Sequence[int]) -> int:
    """How many tasks can run at once for `seeds` of a run: seeds, or groups of seeds."""
    groups = seed_groups(config)
    return len({groups[s] for s in seeds})


# ---------------------------------------------------------------------------------------------
# The whole run


def plan(config: Config, jobs: int | None = None) -> NetworkSpec:
    """Check the environment and the memory the replays need; return the network spec.

    The replay's size is computed before anything is allocated, for the seeds that will run
    at once (`jobs`, default: as many as cores and seeds allow).
    """
    info = env_info(config.env, config.env_kwargs, config.wrappers)
    trunk = choose_trunk(config.network.type, config.network.cnn, info.obs_shape, config.env)
    need = replay_bytes(config.agent.memory_size, info.obs_shape, config.agent.prioritized,
                        storage_dtype(info.obs_dtype), frame_stack=info.frame_stack is not None)
    units = work_units(config, config.seeds)
    at_once = min(len(config.seeds), (jobs or default_jobs(units)) * config.speed.vectorize)
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on every platform
        available = None
    if available is not None and need * at_once > available:
        raise UserError(
            f"the replay memory needs {need / 2**30:.1f} GiB per seed, {at_once} at once, and only "
            f"{available / 2**30:.1f} GiB is free; lower agent.memory_size or --jobs"
            + (" or speed.vectorize" if config.speed.vectorize > 1 else "")
        )
    spec = NetworkSpec(info.obs_dim, info.n_actions, config.network.hidden, config.agent.dueling,
                       info.obs_shape, info.obs_dtype, trunk).with_head(config.agent)
    params = count_parameters(spec)
    if params > MAX_PARAMETERS:
        raise UserError(f"the network has {params:,} parameters, more than {MAX_PARAMETERS:,} "
                        "(each is stored four times: online, target, gradient, optimizer); lower network.hidden")
    return spec


MAX_PARAMETERS = 100_000_000  # 1.6 GB of float32 per seed across its four copies


def count_parameters(spec: NetworkSpec) -> int:
    """The network's parameter count, from a copy on torch's meta device (nothing allocated)."""
    import torch

    from dqnrun.networks import QNetwork

    with torch.device("meta"):
        return sum(p.numel() for p in QNetwork(spec).parameters())


def versions() -> dict[str, str]:
    import gymnasium
    import torch

    return {
        "dqnrun": __version__, "python": platform.python_version(), "torch": str(torch.__version__),
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


def assemble(run_dir: Path, config: Config, device: str) -> Run:
    """Build `results.joblib` from the per-seed files of a finished run, write it, return its view."""
    files = RunDir(run_dir)
    results = [seed_result(files, s) for s in config.seeds]
    # Normally written once, when the last seed ends. One already there is a damaged one being
    # rebuilt (`start_run`) on another day, maybe another machine: what is not in the seed files
    # (the creation time, device, versions) is not made up.
    rebuilt = files.results_file.exists()
    if rebuilt:
        last = max(files.seed_result(s).stat().st_mtime for s in config.seeds)
        created = datetime.fromtimestamp(last, timezone.utc).isoformat(timespec="seconds")
        device, found_versions, found_machine = "unknown", {}, {}
    else:
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        found_versions, found_machine = versions(), machine()
    # The lecture's max/min/mean curves come from the seeds that trained to the end; a seed
    # that diverged stops early and would cut every curve short. (If all diverged: all of them.)
    pooled = [r for r in results if r.status == "complete"] or results
    # A window longer than the run shrinks to fit (`Config.smoothing_window`); max_steps can
    # also end a seed after fewer episodes than the window. The window used is recorded.
    window = max(1, min([config.smoothing_window, *(len(r.scores) for r in pooled)]))
    smoothed = {r.seed: smooth(np.asarray(r.scores), window) for r in results}
    data = results_data(
        name=files.name, config=config.to_dict(), seeds=[r.to_state() for r in results], window=window,
        pooled=[r.seed for r in pooled], curves=aggregate([smoothed[r.seed] for r in pooled]),
        smoothed=list(smoothed.values()),
        reward_threshold=env_info(config.env, config.env_kwargs, config.wrappers).reward_threshold,
        device=device, versions=found_versions, machine=found_machine, created=created,
    )
    write_results(files, data)
    if files.checkpoints_dir.is_dir() and not any(files.checkpoints_dir.iterdir()):
        files.checkpoints_dir.rmdir()
    return run_from_data(data, files.results_file)


def seed_result(files: RunDir, seed: int) -> SeedResult:
    """A finished seed's result file as a SeedResult (checked by `RunDir.read_seed_result`)."""
    state = files.read_seed_result(seed)
    unknown = sorted(set(state) - set(SeedResult.__dataclass_fields__))
    if unknown:
        raise UserError(f"{files.seed_result(seed)}: damaged: an unknown key {unknown[0][:40]!r}")
    return SeedResult.from_state({**state, "best_state": None, "final_state": None})


def pending_seeds(run_dir: Path, config: Config) -> list[int]:
    return RunDir(run_dir).pending_seeds(config.seeds)


# ---------------------------------------------------------------------------------------------
# The run lifecycle: one code path for `dqnrun train` and `dqnrun.train()`


def resolve_device(name: str) -> str:
    """auto (cuda, then mps, then cpu), cpu, cuda or mps, checked against this machine."""
    import torch

    name = name.lower()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if name == "mps" and not mps:
        raise UserError("--device mps: no Apple MPS device is available here; use --device cpu or auto")
    if name not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device {name!r}: expected auto, cpu, cuda or mps")
    return name


def resolve_config(config: str | Path | dict[str, Any] | Config, overrides: Sequence[str] = (),
                   name: str | None = None) -> Config:
    """A Config from a YAML path, a plain dict or a Config, with `key=value` overrides applied;
    `name` (a plain string, never parsed as YAML) replaces the config's name."""
    if isinstance(config, (Config, dict)):
        raw = apply_overrides(config.to_dict() if isinstance(config, Config) else config, overrides)
        if name is not None:
            raw["name"] = name
        return config_from_dict(raw, source="config")
    if isinstance(config, (str, Path)):
        return load_config(config, overrides, name=name)
    raise UserError(f"config must be a YAML path, a dict or a dqnrun.Config, not {type(config).__name__}")


def sets_vectorize(config: str | Path | dict[str, Any] | Config, overrides: Sequence[str]) -> bool:
    """Whether the user chose `speed.vectorize` (a Config object counts as chosen in full)."""
    if any(o.split("=", 1)[0].strip() in ("speed", "speed.vectorize") for o in overrides):
        return True
    if isinstance(config, Config):
        return True
    if isinstance(config, (str, Path)):
        from dqnrun.config import _yaml
        from dqnrun.safeio import read_text

        config = _yaml(read_text(Path(config), "config file"))  # parsed once already: it is valid
    speed = config.get("speed") if isinstance(config, dict) else None
    return isinstance(speed, dict) and "vectorize" in speed


def stack_on_gpu(cfg: Config, spec: NetworkSpec, jobs: int | None, notes: list[str]) -> tuple[Config, NetworkSpec]:
    """On a GPU, a small network's update costs about as much for K seeds as for one: every
    seed of the run goes into one stack (speed.vectorize = seeds) where the replays fit."""
    k = len(cfg.seeds)
    stacked = config_from_dict(apply_overrides(cfg.to_dict(), [f"speed.vectorize={k}"]), source="config")
    try:
        stacked_spec = plan(stacked, jobs)
    except UserError as exc:
        notes.append(f"note: device cuda: one seed per process, as {k} stacked seeds do not fit ({exc})")
        return cfg, spec
    notes.append(f"note: device cuda: the {k} seeds train stacked in one process (speed.vectorize: {k}, recorded "
                 "in config.yaml); set speed.vectorize: 1 for one seed per process")
    return stacked, stacked_spec


@dataclass
class RunPlan:
    """A run directory claimed and ready to train: what `execute` needs and what to tell the user."""

    run_dir: Path
    config: Config
    spec: NetworkSpec
    device: str
    jobs: int
    todo: list[int]  # seeds still to train
    resumed_from: dict[int, int]  # seed -> episodes its checkpoint already holds
    checkpoints: dict[int, dict[str, Any]]  # seed -> its checkpoint's result state (for the metrics rows)
    notes: list[str] = field(default_factory=list)  # warnings for the user (renamed directory, ...)
    tensorboard: bool = False
    scheduler: str | None = None  # a Dask scheduler's address, or local:N; None: local workers

    @property
    def where(self) -> str:
        """Where the seeds run, in words."""
        k = self.config.speed.vectorize
        stacked = f", {k} seeds stacked per process" if k > 1 else ""
        if self.scheduler:
            return f"Dask scheduler {self.scheduler}{stacked}"
        return f"{self.jobs} job{'s' if self.jobs > 1 else ''}{stacked}"


def start_run(
    config: str | Path | dict[str, Any] | Config | None = None,
    *,
    overrides: Sequence[str] = (),
    out: str | Path = "results",
    force: bool = False,
    resume: str | Path | None = None,
    jobs: int | None = None,
    device: str = "auto",
    tensorboard: bool | None = None,
    scheduler: str | None = None,
    name: str | None = None,
) -> RunPlan:
    """Check everything that can be checked before training, then claim the run directory.

    A new run: resolve the config, check the environment and memory, claim `out/<name>` (never
    reusing a directory silently) and write its config.yaml. `resume`: reopen an interrupted run
    directory with its own config and check its checkpoints.
    """
    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {jobs}")
    if scheduler is not None:
        from dqnrun.workers import check_scheduler

        check_scheduler(scheduler, jobs)
    notes = []
    if resume is not None:
        files = RunDir(Path(resume))
        if not files.config_file.is_file():
            from dqnrun.sweep import is_sweep_dir

            if not files.path.exists() and not files.path.is_symlink():
                raise UserError(f"no such directory: {files.path}")
            if is_sweep_dir(files.path):
                raise UserError(f"{files.path} is a sweep, not a run; continue it with "
                                f"`dqnrun sweep --resume {files.path}`")
            raise UserError(f"{files.path} is not a dqnrun run directory (no config.yaml)")
        cfg = load_config(files.config_file)
        spec = plan(cfg, jobs)
        # A finished run whose results.joblib is damaged is rebuilt from its per-seed files.
        damage = files.results_damage() if files.is_finished() else None
        lost = files.pending_seeds(cfg.seeds) if files.is_finished() else []
        if lost:  # a finished run's seed file has gone: retraining it would replace its models
            raise UserError(f"{files.path} is finished, but {files.seed_result(lost[0])} is missing"
                            + (f" and {damage}" if damage else "")
                            + "; restore it from a copy of the run (resume does not retrain a finished run's seeds)")
        if files.is_finished() and damage is None:
            raise UserError(f"{files.path} is already complete; nothing to resume")
        if files.is_training():
            raise UserError(f"{files.path} is being trained by another process ({files.training_owner()}); "
                            f"stop it first, or wait for it to finish")
    else:
        if config is None:
            raise UserError("missing CONFIG: e.g. `dqnrun train configs/ddqn.yaml` (or --resume RUN_DIR)")
        cfg = resolve_config(config, overrides, name)
        spec = plan(cfg, jobs)
    dev = resolve_device(device)
    if resume is None and dev == "cuda" and cfg.speed.vectorize == 1 and len(cfg.seeds) > 1 \
            and not sets_vectorize(config, overrides):
        cfg, spec = stack_on_gpu(cfg, spec, jobs, notes)
    if dev == "cpu" and cfg.speed.vectorize > 1 and spec.trunk != "mlp":
        notes.append(f"note: {cfg.speed.vectorize} stacked seeds of a convolutional network on the CPU train slower "
                     "than one seed per process (batched convolutions do not pay there); set speed.vectorize: 1 "
                     "and --jobs for speed")
    use_tb = cfg.logging.tensorboard if tensorboard is None else tensorboard
    if use_tb:
        from dqnrun.tblog import require_tensorboard

        require_tensorboard()
    resumed_from, checkpoints = {}, {}
    if resume is not None:
        pending = files.pending_seeds(cfg.seeds)
        for s in cfg.seeds:  # fail here, not inside a worker or after training
            if s not in pending:
                try:
                    seed_result(files, s)
                except UserError as exc:
                    if damage is None:
                        raise
                    raise UserError(f"{damage}, and it cannot be rebuilt: {exc}") from None
                continue
            checkpoint = load_checkpoint(files.checkpoint(s))
            if checkpoint is not None:
                try:
                    check_resume(checkpoint, cfg, s, spec)
                except UserError as exc:
                    raise UserError(f"{files.checkpoint(s)}: {exc}; delete it to restart seed {s} "
                                    "from scratch") from None
                resumed_from[s] = int(checkpoint["episode"])
                checkpoints[s] = checkpoint["result"]
        if damage is not None:  # every seed's file reads: keep a copy of the damaged file, rebuild it
            with output_errors(files.results_file):
                kept = files.keep_damaged_results()
            notes.append(f"{damage}; rebuilding it from the per-seed files (seeds/seed-<s>.joblib)"
                         + (f", a copy of the damaged file kept as {kept.name}" if kept else "")
                         + "; its creation time becomes the last seed file's, device and versions unknown")
    else:
        path, note = claim_run_dir(out, cfg.name, force=force)
        files = RunDir(path)
        if note:
            notes.append(note)
            earlier = RunDir(Path(out) / cfg.name)
            if not force and not earlier.is_finished():
                notes.append(f"{earlier.path} is unfinished: `dqnrun train --resume {earlier.path}` continues it")
        write_text(files.config_file, cfg.to_yaml())
    notes.extend(f"warning: {note}" for note in config_warnings(cfg))
    if cfg.smoothing_window < cfg.window:
        episodes = f"{cfg.episodes} episode{'' if cfg.episodes == 1 else 's'}"
        notes.append(f"note: window {cfg.window} is longer than {episodes}; "
                     f"curves are smoothed over {cfg.smoothing_window} (recorded in the results)")
    todo = files.pending_seeds(cfg.seeds)
    units = work_units(cfg, todo)
    n_jobs = max(1, min(jobs or default_jobs(units), units or 1))
    return RunPlan(files.path, cfg, spec, dev, n_jobs, todo, resumed_from, checkpoints, notes, use_tb, scheduler)


@dataclass
class Outcome:
    """How `execute` ended: the finished run, or the seeds left for `--resume`."""

    run_dir: Path
    run: Run | None  # None when interrupted
    unfinished: list[int]


class Recorder:
    """Writes each seed's live files in this (the client) process as events arrive: a metrics
    row per episode, flushed, and TensorBoard scalars. Workers write none of them."""

    def __init__(self, run_plan: RunPlan):
        files = RunDir(run_plan.run_dir)
        self.window = run_plan.config.smoothing_window
        self.metrics: dict[int, MetricsFile] = {}
        self.scores: dict[int, list[float]] = {}
        self.last: dict[int, tuple[int, float]] = {}  # seed -> (steps, wall time) of its last row
        self.tb = None
        if run_plan.tensorboard:
            from dqnrun.tblog import TensorBoardLog

            self.tb = TensorBoardLog(files)
        for seed in run_plan.todo:
            done = run_plan.resumed_from.get(seed, 0)
            state = run_plan.checkpoints.get(seed)
            past = SeedResult.from_state({**state, "best_state": None}) if state else SeedResult(seed)
            self.scores[seed] = list(past.scores)
            self.last[seed] = (past.steps[-1] if past.steps else 0, past.wall_time)
            self.metrics[seed] = MetricsFile(files.metrics(seed))
            self.metrics[seed].start(done, self._rows(past))
            if self.tb is not None:
                self.tb.start(seed, self.last[seed][0])

    def _rows(self, past: SeedResult) -> list[dict[str, Any]]:
        """Rows for the episodes a checkpoint covers (to rebuild a metrics file that lacks them)."""
        smoothed = smooth(np.asarray(past.scores), self.window)
        return [
            {"episode": i + 1, "env_steps": past.steps[i], "train_return": past.train_returns[i],
             "score": past.scores[i], "smoothed_score": smoothed[i - self.window + 1] if i >= self.window - 1 else None,
             "epsilon": past.epsilons[i], "mean_loss": past.losses[i], "mean_q": past.mean_qs[i],
             "max_q": past.max_qs[i], "beta": past.betas[i], "wall_time": None}
            for i in range(len(past.scores))
        ]

    def handle(self, event: Event) -> None:
        if isinstance(event, EpisodeEnd):
            scores = self.scores[event.seed]
            scores.append(event.score)
            smoothed = float(np.mean(scores[-self.window:])) if len(scores) >= self.window else None
            steps, wall = self.last[event.seed]
            rate = (event.steps - steps) / (event.wall_time - wall) if event.wall_time > wall else math.nan
            self.last[event.seed] = (event.steps, event.wall_time)
            row = {"episode": event.episode, "env_steps": event.steps, "train_return": event.train_return,
                   "score": event.score, "smoothed_score": smoothed, "epsilon": event.epsilon,
                   "mean_loss": event.mean_loss, "mean_q": event.mean_q, "max_q": event.max_q,
                   "beta": event.beta, "wall_time": event.wall_time}
            self.metrics[event.seed].append(row)
            if self.tb is not None:
                self.tb.episode(event.seed, row, rate, event.evaluations)
        elif isinstance(event, SeedEnd):
            self.metrics[event.seed].close()
            if self.tb is not None:
                self.tb.close(event.seed)

    def close(self) -> None:
        for f in self.metrics.values():
            f.close()
        if self.tb is not None:
            self.tb.close_all()


def execute(run_plan: RunPlan, on_event: Callable[[Event], None] | None = None) -> Outcome:
    """Train the plan's seeds (writing their live metrics), then assemble results.joblib.

    Ctrl-C or SIGTERM stops the seeds at the end of their episode with a checkpoint; the outcome
    then lists the unfinished seeds and `start_run(resume=...)` continues them.
    """
    handle = None if on_event is None else (lambda plan, event: on_event(event))
    return execute_many([run_plan], handle)[0]


def execute_many(
    run_plans: Sequence[RunPlan],
    on_event: Callable[[RunPlan, Event], None] | None = None,
    jobs: int | None = None,
) -> list[Outcome]:
    """Train the seeds of several runs in one pool of chunk tasks (a sweep), then assemble each
    run whose seeds all finished. `jobs` defaults to the first plan's; so does the scheduler."""
    if not run_plans:
        return []
    # Any write that fails while seeds train or the results are assembled (a full disk, a
    # read-only remount, a run directory deleted) stops with one line; checkpoints stay.
    with output_errors(run_plans[0].run_dir, fault=True):
        return _execute_many(run_plans, on_event, jobs)


def _execute_many(run_plans: Sequence[RunPlan], on_event: Callable[[RunPlan, Event], None] | None,
                  jobs: int | None) -> list[Outcome]:
    recorders = {id(p): Recorder(p) for p in run_plans}
    todo = [SeedsToRun(p.run_dir, p.config, p.spec, tuple(p.todo)) for p in run_plans]
    by_run = {id(t): p for t, p in zip(todo, run_plans)}

    def handle(run: SeedsToRun, event: Event) -> None:
        plan = by_run[id(run)]
        recorders[id(plan)].handle(event)
        if on_event is not None:
            on_event(plan, event)

    assembled: dict[int, Run] = {}

    def run_done(run: SeedsToRun) -> None:  # a sweep's finished point can be opened while the rest train
        plan = by_run[id(run)]
        if len(run_plans) > 1 and not pending_seeds(plan.run_dir, plan.config):
            recorders[id(plan)].close()
            assembled[id(plan)] = assemble(plan.run_dir, plan.config, plan.device)
            RunDir(plan.run_dir).training_marker.unlink(missing_ok=True)  # nothing trains it any more

    first = run_plans[0]
    try:
        with ExitStack() as stack:
            for p in run_plans:
                stack.enter_context(RunDir(p.run_dir).training())
            run_many(todo, jobs or first.jobs, first.device, handle, first.scheduler, run_done)
    finally:
        for recorder in recorders.values():
            recorder.close()
    outcomes = []
    for p in run_plans:
        unfinished = pending_seeds(p.run_dir, p.config)  # diverged seeds are finished too
        run = None if unfinished else assembled.get(id(p)) or assemble(p.run_dir, p.config, p.device)
        outcomes.append(Outcome(p.run_dir, run, unfinished))
    return outcomes
