"""A seed's training as a chain of pure chunk tasks, and the checkpoint bytes that link them.

A chunk is `(config, seed, checkpoint or None) -> (checkpoint, events, finished result)`: it
resumes `trainer.train_seed` from the checkpoint, trains up to the next multiple of
`checkpoint_every` episodes and stops there. Its output depends on its inputs only, so a chunk
lost with its worker is simply run again, anywhere, with the same numbers; and it neither reads
nor writes files, so a worker needs no view of the client's disk. Checkpoints travel and are
stored as the bytes of `encode_checkpoint`, which `torch.load(weights_only=True)` reads back.

With `speed.vectorize: K` the unit of work is a group of K consecutive seeds of the config's
seed list (`GroupTask`): one chunk trains them together (group.py) and returns one result per
seed. Each seed keeps its own checkpoint in the same format (so the same per-seed files,
`checkpoints/seed-S.pt`, and the same checks), and its own chunk end: a seed that reaches it
waits, checkpointed, for the others. Since a seed's numbers do not depend on the other seeds
of its stack, a group chunk is as pure as a seed's.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from dqnrun.config import Config
from dqnrun.errors import UserError
from dqnrun.networks import NetworkSpec
from dqnrun.trainer import CHECKPOINT_FORMAT, EpisodeEnd, Event, SeedEnd, SeedResult, _with_new_keys, train_seed


@dataclass(frozen=True)
class ChunkTask:
    """Everything a worker needs to train the next chunk of one seed."""

    config: Config
    seed: int
    spec: NetworkSpec
    device: str
    checkpoint: bytes | None  # None: the seed starts from scratch

    @property
    def label(self) -> str:
        return str(self.seed)


@dataclass(frozen=True)
class GroupTask:
    """The next chunk of the seeds of one vectorised group (`speed.vectorize` > 1, group.py).

    `seeds` is the whole group (its stack's slots, in the config's order); `checkpoints` holds
    the seeds still to train, each with its own checkpoint (None: from scratch). Seeds of the
    group that already finished are not trained; their slots stay in the stack."""

    config: Config
    seeds: tuple[int, ...]
    spec: NetworkSpec
    device: str
    checkpoints: dict[int, bytes | None]

    @property
    def label(self) -> str:
        return "-".join(map(str, self.checkpoints))


@dataclass
class ChunkResult:
    """What a chunk sends back. `status`: "checkpoint" (more chunks follow), "interrupted"
    (stopped on request), "complete" or "diverged" (the seed is finished: `result` is set)."""

    seed: int
    status: str
    episode: int  # episodes done at the end of the chunk
    checkpoint: bytes | None = None  # set unless the seed finished
    result: SeedResult | None = None  # with the best model's state_dict
    events: list[Event] = field(default_factory=list)


def chunk_end(config: Config, start: int) -> int:
    """The episode after which a chunk that starts after episode `start` stops."""
    if not config.checkpoint_every:
        return config.episodes
    return min(config.episodes, (start // config.checkpoint_every + 1) * config.checkpoint_every)


class _SeedChunk:
    """One seed's part of a chunk: where it stops, its events and its checkpoint."""

    def __init__(self, config: Config, seed: int, checkpoint: bytes | None, emit: Callable[[Event], None],
                 should_stop: Callable[[], bool]):
        self.seed, self._emit, self._should_stop = seed, emit, should_stop
        self.resume = decode_checkpoint(checkpoint) if checkpoint is not None else None
        if self.resume is not None and (
            self.resume.get("seed") != seed
            or _with_new_keys(self.resume.get("config"), config.to_dict()) != config.to_dict()
        ):
            raise UserError(f"the checkpoint of seed {seed} belongs to another seed or config")
        self.done = int(self.resume["episode"]) if self.resume is not None else 0
        self.end = chunk_end(config, self.done)
        self.events: list[Event] = []
        self.saved: list[dict[str, Any]] = []
        self.reached_end = False

    def stop(self) -> bool:
        self.reached_end = self.done >= self.end
        return self.reached_end or self._should_stop()

    def on_event(self, event: Event) -> None:
        if isinstance(event, EpisodeEnd):
            self.done = event.episode
        elif isinstance(event, SeedEnd) and event.status == "interrupted" and self.reached_end:
            return  # the end of this chunk, not of the seed
        self.events.append(event)
        self._emit(event)

    def outcome(self, result: SeedResult) -> ChunkResult:
        if result.status in ("complete", "diverged"):
            return ChunkResult(self.seed, result.status, len(result.scores), result=result, events=self.events)
        (state,) = self.saved
        status = "checkpoint" if self.reached_end else "interrupted"
        return ChunkResult(self.seed, status, len(result.scores), checkpoint=encode_checkpoint(state),
                           events=self.events)


def run_chunk(
    task: ChunkTask,
    emit: Callable[[Event], None] = lambda event: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> ChunkResult:
    """Train one chunk of `task.seed`. `should_stop` is polled after every episode: on True the
    chunk checkpoints early ("interrupted"). Every event is also returned in the result."""
    part = _SeedChunk(task.config, task.seed, task.checkpoint, emit, should_stop)
    result = train_seed(task.config, task.seed, task.spec, task.device, emit=part.on_event, should_stop=part.stop,
                        save_checkpoint=part.saved.append, resume=part.resume)
    return part.outcome(result)


def run_group_chunk(
    task: GroupTask,
    emit: Callable[[Event], None] = lambda event: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[ChunkResult]:
    """Train one chunk of each seed of a vectorised group, together: a seed that reaches its
    chunk's end checkpoints and waits while the others catch up. One result per seed."""
    from dqnrun.group import train_group  # torch.func: imported only by runs that stack seeds

    parts = {s: _SeedChunk(task.config, s, c, emit, should_stop) for s, c in task.checkpoints.items()}
    results = train_group(
        task.config, task.seeds, task.spec, task.device, train=list(parts),
        emit=lambda event: parts[event.seed].on_event(event),
        should_stop=lambda seed: parts[seed].stop(),
        save_checkpoint=lambda seed, state: parts[seed].saved.append(state),
        resume={s: p.resume for s, p in parts.items() if p.resume is not None},
    )
    return [part.outcome(results[s]) for s, part in parts.items()]


def run_task(
    task: ChunkTask | GroupTask,
    emit: Callable[[Event], None] = lambda event: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[ChunkResult]:
    """A worker's entry: run a seed's or a group's chunk; one result per seed."""
    if isinstance(task, GroupTask):
        return run_group_chunk(task, emit, should_stop)
    return [run_chunk(task, emit, should_stop)]


# ---------------------------------------------------------------------------------------------
# Checkpoint bytes: tensors and plain Python values only, so that torch's weights-only loader
# (which runs no code from the file) reads them.


def _plain(value: Any) -> Any:
    import torch

    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    return value


def _arrays(value: Any) -> Any:
    """The replay's tensors back to the numpy arrays it stores."""
    import torch

    if isinstance(value, dict):
        return {k: _arrays(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_arrays(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.numpy()
    return value


def encode_checkpoint(state: dict[str, Any]) -> bytes:
    """A checkpoint dict (from `train_seed`) as bytes, numpy arrays stored as tensors."""
    import torch

    buf = io.BytesIO()
    torch.save(_plain(state), buf)
    return buf.getvalue()


def decode_checkpoint(data: bytes, what: str = "checkpoint") -> dict[str, Any]:
    """The checkpoint dict of `encode_checkpoint`'s bytes; anything else is a UserError."""
    import torch

    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:
        raise UserError(f"{what} is truncated or not a dqnrun checkpoint file") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or not isinstance(
        state.get("replay"), dict
    ):
        raise UserError(f"{what} is not a dqnrun checkpoint file")
    state["replay"] = _arrays(state["replay"])
    return state
