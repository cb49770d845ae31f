"""Rich output: the live training display fed by trainer events, and result tables."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from dqnrun.trainer import EpisodeEnd, Event, SeedEnd


def _console(stderr: bool = False) -> Console:
    """A console that, when piped, is wide enough for the compare table instead of 80 columns."""
    import os
    import sys

    stream = sys.stderr if stderr else sys.stdout
    piped = not (hasattr(stream, "isatty") and stream.isatty())
    width = 200 if piped and "COLUMNS" not in os.environ else None
    return Console(stderr=stderr, width=width)


console = _console()
err_console = _console(stderr=True)


def fmt_score(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.1f}"


def fmt_seconds(s: float) -> str:
    s = float(s)
    return f"{s:.1f}s" if s < 60 else f"{int(s // 60)}m{int(s % 60):02d}s"


@dataclass
class SeedRow:
    seed: int
    episode: int = 0
    episodes: int = 0
    steps: int = 0
    score: float = math.nan
    best: float = math.nan
    best_episode: int = 0
    epsilon: float = math.nan
    status: str = "waiting"


@dataclass
class TrainingDisplay:
    """Live table, one row per seed, updated from trainer events."""

    title: str
    seeds: list[int]
    episodes: int
    rows: dict[int, SeedRow] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rows = {s: SeedRow(s, episodes=self.episodes) for s in self.seeds}

    def handle(self, event: Event) -> None:
        row = self.rows[event.seed]
        if isinstance(event, EpisodeEnd):
            row.episode, row.episodes, row.steps = event.episode, event.episodes, event.steps
            row.score, row.best, row.best_episode = event.score, event.best_score, event.best_episode
            row.epsilon = event.epsilon
            row.status = "training"
        elif isinstance(event, SeedEnd):
            row.status = event.status if not event.message else f"{event.status}: {event.message}"

    def render(self) -> Table:
        table = Table(title=self.title, title_justify="left", expand=False)
        for col in ("seed", "episode", "env steps", "epsilon", "score", "best (episode)", "status"):
            table.add_column(col, justify="right" if col not in ("status",) else "left")
        for row in self.rows.values():
            best = f"{fmt_score(row.best)} ({row.best_episode})" if row.best_episode else "-"
            eps = "-" if math.isnan(row.epsilon) else f"{row.epsilon:.3f}"
            table.add_row(str(row.seed), f"{row.episode}/{row.episodes}", f"{row.steps:,}", eps,
                          fmt_score(row.score), best, row.status)
        return table


class LiveTraining:
    """Context manager: a rich Live view of a TrainingDisplay (plain lines when not a terminal)."""

    def __init__(self, display: TrainingDisplay, out: Console = console):
        self.display = display
        self.out = out
        self.live = Live(display.render(), console=out, refresh_per_second=4, transient=False) \
            if out.is_terminal else None

    def __enter__(self) -> "LiveTraining":
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live:
            self.live.update(self.display.render())
            self.live.__exit__(*exc)

    def handle(self, event: Event) -> None:
        self.display.handle(event)
        if self.live:
            self.live.update(self.display.render())
        elif isinstance(event, SeedEnd):
            row = self.display.rows[event.seed]
            self.out.print(f"seed {event.seed}: {event.status} after {row.episode} episodes, "
                           f"{row.steps:,} env steps, best {fmt_score(row.best)} at episode {row.best_episode}"
                           + (f" ({event.message})" if event.message and event.status != "complete" else ""))
        elif isinstance(event, EpisodeEnd) and (event.episode % 50 == 0 or event.episode == event.episodes):
            self.out.print(f"seed {event.seed}: episode {event.episode}/{event.episodes}, "
                           f"{event.steps:,} steps, score {fmt_score(event.score)}, "
                           f"best {fmt_score(event.best_score)} ({event.best_episode})")


def seed_summary(data: dict) -> Table:
    """End-of-run table: per seed, the best score, first episode reaching it, steps, wall time."""
    import numpy as np

    table = Table(title=f"{data['name']}: {data['variant']} on {data['env_id']}", title_justify="left")
    for col in ("seed", "best score", "first at episode", "final smoothed", "env steps", "wall time", "status"):
        table.add_column(col, justify="right" if col != "status" else "left")
    for i, seed in enumerate(data["seeds"]):
        n = int(data["episodes"][i])
        smoothed = data["smoothed"][i]
        smoothed = smoothed[~np.isnan(smoothed)]
        status = data["status"][i]
        if status == "diverged":
            status = f"diverged at {data['diverged'][i]}"
        table.add_row(
            str(seed), fmt_score(float(data["best_score"][i])), str(int(data["best_episode"][i])),
            fmt_score(float(smoothed[-1])) if len(smoothed) else "-",
            f"{int(data['steps'][i][n - 1]):,}" if n else "0",
            fmt_seconds(data["wall_time"][i]), status,
        )
    return table


def error(message: str) -> None:
    err_console.print(Text(f"error: {message}", style="bold red"), soft_wrap=True)

