"""TensorBoard event files of a run, written from trainer events (the `tensorboard` extra).

One writer per seed, under `<run>/tb/seed-<s>/`, every scalar against env steps, so
`tensorboard --logdir results` shows every seed of every run side by side.
"""

from __future__ import annotations

import math
from typing import Any

from dqnrun.errors import UserError
from dqnrun.results import RunDir

INSTALL = 'pip install "dqnrun[tensorboard]"'

# metrics column -> TensorBoard tag
TAGS = {
    "score": "eval/score",
    "smoothed_score": "eval/smoothed_score",
    "train_return": "train/return",
    "epsilon": "train/epsilon",
    "mean_loss": "train/mean_loss",
    "mean_q": "q/mean",
    "max_q": "q/max_abs",
    "beta": "per/beta",
}
RATE_TAG = "speed/env_steps_per_s"
PERIODIC_TAG = "eval/score_every_n_steps"  # evaluations every `eval_every_steps` env steps


def require_tensorboard() -> None:
    """A UserError naming the install command when the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise UserError(f"TensorBoard logging needs the tensorboard package: {INSTALL}") from None


class TensorBoardLog:
    """SummaryWriters for the seeds of one run."""

    def __init__(self, run_dir: RunDir):
        require_tensorboard()
        self.run_dir = run_dir
        self.writers: dict[int, Any] = {}

    def start(self, seed: int, resumed_at_step: int = 0) -> None:
        """Open the seed's writer. A resumed seed drops what an earlier attempt logged after its
        checkpoint (`purge_step`), so the curves have no duplicate points."""
        from torch.utils.tensorboard import SummaryWriter

        purge = resumed_at_step + 1 if resumed_at_step else None
        self.writers[seed] = SummaryWriter(log_dir=str(self.run_dir.tb(seed)), purge_step=purge, flush_secs=5)

    def episode(self, seed: int, row: dict[str, Any], steps_per_s: float,
                evaluations: tuple[tuple[int, float], ...] = ()) -> None:
        """Log one metrics row (what is unknown, e.g. the loss before updates start, is skipped)
        and the evaluations every N env steps that happened during the episode."""
        writer = self.writers[seed]
        for at, score in evaluations:
            writer.add_scalar(PERIODIC_TAG, score, at)
        step = int(row["env_steps"])
        for column, tag in TAGS.items():
            value = row.get(column)
            if value is not None and math.isfinite(value):
                writer.add_scalar(tag, value, step)
        if math.isfinite(steps_per_s):
            writer.add_scalar(RATE_TAG, steps_per_s, step)

    def close(self, seed: int) -> None:
        writer = self.writers.pop(seed, None)
        if writer is not None:
            writer.close()

    def close_all(self) -> None:
        for seed in list(self.writers):
            self.close(seed)
