"""A seed's training as a chain of pure chunk tasks, and the checkpoint bytes that link them.

A chunk is `(config, seed, checkpoint or None) -> (checkpoint, events, finished result)`: it
resumes `trainer.train_seed` from the checkpoint, trains up to the next multiple of
`checkpoint_every` episodes and stops there. Its output depends on its inputs only, so a chunk
lost with its worker is simply run again, anywhere, with the same numbers; and it neither reads
nor writes files, so a worker needs no view of the client's disk. Checkpoints travel and are
stored as the bytes of `encode_checkpoint`, which `torch.load(weights_only=True)` reads back.
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


def run_chunk(
    task: ChunkTask,
    emit: Callable[[Event], None] = lambda event: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> ChunkResult:
    """Train one chunk of `task.seed`. `should_stop` is polled after every episode: on True the
    chunk checkpoints early ("interrupted"). Every event is also returned in the result."""
    resume = decode_checkpoint(task.checkpoint) if task.checkpoint is not None else None
    if resume is not None and (resume.get("seed") != task.seed or _with_new_keys(resume.get("config"), task.config.to_dict()) != task.config.to_dict()):
        raise UserError(f"the checkpoint of seed {task.seed} belongs to another seed or config")
    done = int(resume["episode"]) if resume is not None else 0
    end = chunk_end(task.config, done)
    events: list[Event] = []
    saved: list[dict[str, Any]] = []
    reached_end = False

    def stop() -> bool:
        nonlocal reached_end
        reached_end = done >= end
        return reached_end or should_stop()

    def on_event(event: Event) -> None:
        nonlocal done
        if isinstance(event, EpisodeEnd):
            done = event.episode
        elif isinstance(event, SeedEnd) and event.status == "interrupted" and reached_end:
            return  # the end of this chunk, not of the seed
        events.append(event)
        emit(event)

    result = train_seed(task.config, task.seed, task.spec, task.device, emit=on_event, should_stop=stop,
                        save_checkpoint=saved.append, resume=resume)
    if result.status in ("complete", "diverged"):
        return ChunkResult(task.seed, result.status, len(result.scores), result=result, events=events)
    (state,) = saved
    status = "checkpoint" if reached_end else "interrupted"
    return ChunkResult(task.seed, status, len(result.scores), checkpoint=encode_checkpoint(state), events=events)


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
