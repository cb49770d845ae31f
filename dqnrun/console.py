"""Rich output: the live training display fed by trainer events, and result tables."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from dqnrun.results import Run
from dqnrun.trainer import EpisodeEnd, Event, SeedEnd


def _width(stream) -> int | None:
    """COLUMNS where set; else 200 when piped (wide enough for the compare table, not 80); else
    None: the terminal's own width."""
    import os

    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    piped = not (hasattr(stream, "isatty") and stream.isatty())
    return 200 if piped else None


def _stdout():
    """sys.stdout now (a redirect or a test runner's capture is followed), unwrapped from the
    proxy that rich's live display puts there, as rich's own Console.file does."""
    import sys

    return getattr(sys.stdout, "rich_proxied_file", sys.stdout)


class _Stdout:
    """Standard output that goes quiet when its reader has gone: `dqnrun train ... | head -3`
    goes on training once head exits, says so once on stderr, and writes nothing more to
    standard output, instead of dying on the closed pipe with the run half made."""

    def __init__(self) -> None:
        self.reader_gone = False
        # Said by the commands that go on for long (train, sweep); for the others, whose rest
        # of output just goes unread (`dqnrun config keys | head -1`), the note would be noise.
        self.tell_when_gone = False

    @property
    def encoding(self) -> str:
        return getattr(_stdout(), "encoding", None) or "utf-8"

    def isatty(self) -> bool:
        return bool(getattr(_stdout(), "isatty", lambda: False)())

    def fileno(self) -> int:
        return _stdout().fileno()

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                _stdout().write(text)
            except BrokenPipeError:
                self._gone()
        return len(text)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                _stdout().flush()
            except BrokenPipeError:
                self._gone()

    def _gone(self) -> None:
        import os
        import sys

        self.reader_gone = True
        try:  # what Python flushes at exit goes nowhere instead of failing (Python's signal docs)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, _stdout().fileno())
        except (OSError, ValueError, AttributeError):  # no file descriptor: a captured stream
            pass
        if not self.tell_when_gone:
            return
        try:  # stderr may be the same closed pipe (`2>&1 | head`): then nobody is told
            print("dqnrun: standard output was closed; going on without printing to it", file=sys.stderr)
            sys.stderr.flush()
        except OSError:
            pass


STDOUT = _Stdout()


def _console(stderr: bool = False) -> Console:
    import sys

    if stderr:
        return Console(stderr=True, width=_width(sys.stderr))
    return Console(file=STDOUT, width=_width(sys.stdout))


console = _console()
err_console = _console(stderr=True)


def fit_to_output() -> None:
    """Size both consoles for the command about to run. They outlive a command where dqnrun runs
    in-process (called from Python, or under a test runner), and COLUMNS or the streams may have
    changed since they were made."""
    import sys

    console.width = _width(sys.stdout)
    err_console.width = _width(sys.stderr)


def fmt_score(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.1f}"


def fmt_best(score: float, episode: int, template: str = "best {score} at episode {episode}") -> str:
    """The best evaluation so far, or "best -" before any (no episode to name)."""
    if score is None or not math.isfinite(score):
        return "best -"
    return template.format(score=fmt_score(score), episode=episode)


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
    wall_time: float = 0.0  # seconds trained (across resumes)
    start: tuple[int, float] | None = None  # (steps, wall time) at the first episode this process saw
    steps_per_s: float = math.nan
    finished: bool = False

    def pace(self) -> float:
        """Seconds per episode so far (across resumes; nan: no episode yet)."""
        return self.wall_time / self.episode if self.episode and self.wall_time > 0 else math.nan


def fmt_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    return fmt_seconds(seconds) if seconds < 3600 else f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


@dataclass
class TrainingDisplay:
    """Live table, one row per seed, updated from trainer events.

    `resumed_from` gives the episode each resumed seed continues from; `jobs` how many seeds
    train at once (for the run's ETA).
    """

    title: str
    seeds: list[int]
    episodes: int
    resumed_from: dict[int, int] = field(default_factory=dict)
    jobs: int = 1
    max_steps: int | None = None  # a seed also ends at this many env steps
    rows: dict[int, SeedRow] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rows = {s: SeedRow(s, episodes=self.episodes) for s in self.seeds}
        for s, done in self.resumed_from.items():
            if s in self.rows:
                self.rows[s].episode = done
                self.rows[s].status = f"resumes after episode {done}"

    def handle(self, event: Event) -> None:
        row = self.rows[event.seed]
        if isinstance(event, EpisodeEnd):
            # Speed since this process's first event of the seed (before that: over the whole seed).
            if row.start is None:
                row.start = (event.steps, event.wall_time)
            if event.wall_time > row.start[1]:
                row.steps_per_s = (event.steps - row.start[0]) / (event.wall_time - row.start[1])
            elif event.wall_time > 0:
                row.steps_per_s = event.steps / event.wall_time
            row.episode, row.episodes, row.steps = event.episode, event.episodes, event.steps
            row.score, row.best, row.best_episode = event.score, event.best_score, event.best_episode
            row.epsilon, row.wall_time = event.epsilon, event.wall_time
            row.status = "training"
        elif isinstance(event, SeedEnd):
            if event.status == "interrupted":
                # The run's last line says it was interrupted and how to continue; the row says
                # where its seed stopped (a seed waiting for a worker had not begun).
                row.status = f"stopped after episode {row.episode}" if row.episode else "stopped before episode 1"
            else:
                row.status = event.status if not event.message else f"{event.status}: {event.message}"
            row.finished = True

    def eta(self) -> float:
        """Seconds until every seed is done (nan: unknown yet): the episodes left at each seed's
        pace (a seed not started yet: the others' mean pace), shared by `jobs` workers, and never
        less than the longest single seed's remaining time."""
        paces = {r.seed: r.pace() for r in self.rows.values() if math.isfinite(r.pace())}
        if not paces:
            return math.nan
        mean_pace = sum(paces.values()) / len(paces)
        # With max_steps, a seed ends at whichever limit comes first: its steps left at its pace.
        step_paces = {r.seed: r.wall_time / r.steps for r in self.rows.values() if r.steps and r.wall_time > 0}
        mean_step_pace = sum(step_paces.values()) / len(step_paces) if step_paces else math.nan

        def time_left(r: SeedRow) -> float:
            by_episodes = paces.get(r.seed, mean_pace) * max(0, r.episodes - r.episode)
            if self.max_steps is None:
                return by_episodes
            return min(by_episodes, step_paces.get(r.seed, mean_step_pace) * max(0, self.max_steps - r.steps))

        left = [time_left(r) for r in self.rows.values() if not r.finished]
        return max(sum(left) / max(1, self.jobs), max(left)) if left else 0.0

    def render(self) -> Table:
        eta = self.eta()
        title = self.title + (f"  ETA {fmt_eta(eta)}" if math.isfinite(eta) and eta > 0 else "")
        table = Table(title=title, title_justify="left", expand=False)
        for col in ("seed", "episode", "env steps", "steps/s", "epsilon", "score", "best (episode)", "status"):
            table.add_column(col, justify="right" if col not in ("status",) else "left")
        for row in self.rows.values():
            best = f"{fmt_score(row.best)} ({row.best_episode})" if row.best_episode else "-"
            eps = "-" if math.isnan(row.epsilon) else f"{row.epsilon:.3f}"
            rate = "-" if not math.isfinite(row.steps_per_s) else f"{row.steps_per_s:,.0f}"
            table.add_row(str(row.seed), f"{row.episode}/{row.episodes}", f"{row.steps:,}", rate, eps,
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
        else:
            for seed, done in self.display.resumed_from.items():
                self.out.print(f"seed {seed}: resumes after episode {done}")
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
            if row.start is None:  # stopped before this process trained an episode of it
                where = f"after episode {row.episode}" if row.episode else "before its first episode"
                self.out.print(f"seed {event.seed}: {event.status} {where}")
                return
            self.out.print(f"seed {event.seed}: {event.status} after {row.episode} episode{'' if row.episode == 1 else 's'}, "
                           f"{row.steps:,} env steps, {fmt_best(row.best, row.best_episode)}"
                           # "interrupted after 33 episodes" already says where it stopped
                           + (f" ({event.message})" if event.message and event.status not in ("complete", "interrupted")
                              else ""))
        elif isinstance(event, EpisodeEnd) and (event.episode % 50 == 0 or event.episode == event.episodes):
            row = self.display.rows[event.seed]
            rate = f", {row.steps_per_s:,.0f} steps/s" if math.isfinite(row.steps_per_s) else ""
            eta = self.display.eta()
            self.out.print(f"seed {event.seed}: episode {event.episode}/{event.episodes}, "
                           f"{event.steps:,} steps, score {fmt_score(event.score)}, "
                           f"{fmt_best(event.best_score, event.best_episode, 'best {score} ({episode})')}{rate}"
                           + (f", run ETA {fmt_eta(eta)}" if math.isfinite(eta) and eta > 0 else ""))


def seed_summary(run: Run) -> Table:
    """End-of-run table: per seed, the best score, first episode reaching it, steps, wall time."""
    import numpy as np

    from rich.markup import escape

    table = Table(title=escape(f"{run.name}: {run.variant} on {run.env_id}"), title_justify="left")
    for col in ("seed", "best score", "first at episode", "final smoothed", "env steps", "wall time", "status"):
        table.add_column(col, justify="right" if col != "status" else "left")
    for i, seed in enumerate(run.seeds):
        n = int(run.episodes[i])
        smoothed = run.smoothed[i]
        smoothed = smoothed[~np.isnan(smoothed)]
        status = run.status[i]
        if status == "diverged":
            status = f"diverged at {run.diverged[i]}"
        table.add_row(
            str(seed), fmt_score(float(run.best_score[i])),
            str(int(run.best_episode[i])) if math.isfinite(run.best_score[i]) else "-",
            fmt_score(float(smoothed[-1])) if len(smoothed) else "-",
            f"{int(run.steps[i][n - 1]):,}" if n else "0",
            fmt_seconds(run.wall_time[i]), status,
        )
    return table


def error(message: str) -> None:
    err_console.print(Text(f"error: {message}", style="bold red"), soft_wrap=True)


LIST_COLUMNS = ("run", "variant", "env", "seeds", "episodes", "created", "final", "status")


def runs_table(title: str, rows: list[tuple[str, ...]], width: int) -> tuple[Table, list[str]]:
    """`dqnrun list`'s table of `rows` (plain text, one cell per LIST_COLUMNS) for a terminal
    `width` columns wide, and the columns it left out to fit.

    Nothing is cut short. Where a row is wider than the terminal, the creation time, the
    episodes, the seeds and the variant (the run's config says it) are left out, in that order,
    while the status would get fewer than 18 columns; then the status wraps between words, and
    then the widest of the run name and the environment folds onto more lines, one column at a
    time."""
    from rich import box
    from rich.cells import cell_len

    def table_width(columns: list[int]) -> int:  # a cell's padding (2) and the gap before it (1)
        return sum(widths[i] + 3 for i in columns) + 1

    widths = [max([cell_len(col), *(cell_len(row[i]) for row in rows)]) for i, col in enumerate(LIST_COLUMNS)]
    status = LIST_COLUMNS.index("status")
    min_status = min(widths[status], 18)
    keep = list(range(len(LIST_COLUMNS)))
    hidden = []
    for name in ("created", "episodes", "seeds", "variant"):
        if table_width([i for i in keep if i != status]) + min_status + 3 <= width:
            break
        keep.remove(LIST_COLUMNS.index(name))
        hidden.append(name)
    foldable = [status, *(LIST_COLUMNS.index(c) for c in ("run", "variant", "env") if LIST_COLUMNS.index(c) in keep)]
    floor = {i: min_status if i == status else 8 for i in foldable}
    while table_width(keep) > width:  # the status first, then the widest name: a column at a time
        wide = [i for i in foldable if widths[i] > floor[i]]
        if not wide:
            break
        widths[status if status in wide else max(wide, key=lambda j: widths[j])] -= 1
    table = Table(title=Text(title), title_justify="left", box=box.SIMPLE_HEAD)
    for i in keep:
        col = LIST_COLUMNS[i]
        table.add_column(col, justify="right" if col in ("seeds", "episodes", "final") else "left",
                         width=widths[i], overflow="fold")
    for row in rows:  # names and messages come from files: Text, never markup
        table.add_row(*(Text(row[i]) for i in keep))
    return table, hidden


@dataclass
class PointRow:
    """A sweep point's progress: seeds done, episodes, current and best smoothed score."""

    name: str
    seeds: int
    episodes: int  # per seed
    window: int
    done: int = 0
    progress: dict[int, int] = field(default_factory=dict)  # seed -> episodes done
    scores: dict[int, list[float]] = field(default_factory=dict)  # seed -> scores seen by this display
    best_scores: dict[int, float] = field(default_factory=dict)  # seed -> its best evaluation score
    # seed -> (env step, score) of its last evaluation, for a point evaluated every N env steps
    # (its per-episode score is then the training return, not an evaluation)
    last_evaluations: dict[int, tuple[int, float]] = field(default_factory=dict)
    current: float = math.nan  # the mean over seeds of each one's last-window mean: moves with the schedule
    best: float = math.nan

    def seed_smoothed(self, seed: int) -> float:
        """The seed's last smoothed score (the mean of its last `window` scores), nan before a full window."""
        recent = self.scores.get(seed, [])[-self.window:]
        return sum(recent) / self.window if len(recent) == self.window else math.nan

    def handle(self, event: Event) -> None:
        if isinstance(event, EpisodeEnd):
            self.progress[event.seed] = event.episode
            self.best_scores[event.seed] = event.best_score
            self.scores.setdefault(event.seed, []).append(event.score)
            if event.evaluations:
                self.last_evaluations[event.seed] = event.evaluations[-1]
            if self.last_evaluations:  # evaluated every N env steps: each seed's last evaluation
                recent = [score for _, score in self.last_evaluations.values()]
            else:
                recent = [sum(s[-self.window:]) / len(s[-self.window:]) for s in self.scores.values() if s]
            self.current = sum(recent) / len(recent)
            if not self.best >= self.current:  # also when best is nan
                self.best = self.current
        elif isinstance(event, SeedEnd) and event.status in ("complete", "diverged"):
            self.done += 1


class SweepDisplay:
    """Live table of a sweep, one row per point, updated from the points' trainer events."""

    def __init__(self, title: str, rows: list[PointRow]):
        self.title = title
        self.rows = {r.name: r for r in rows}

    def handle(self, point: str, event: Event) -> None:
        self.rows[point].handle(event)

    def render(self) -> Table:
        table = Table(title=self.title, title_justify="left", expand=False)
        for col in ("point", "seeds done", "episodes trained", "score", "best score"):
            table.add_column(col, justify="left" if col == "point" else "right")
        if any(r.last_evaluations for r in self.rows.values()):
            table.caption = ("score: mean over seeds of the smoothed score, or of the last evaluation "
                             "for points evaluated every N env steps")
        for r in self.rows.values():
            trained = sum(r.progress.values())
            table.add_row(r.name, f"{r.done}/{r.seeds}", f"{trained:,}" if trained else "-",
                          fmt_score(r.current), fmt_score(r.best))
        return table


class LiveSweep:
    """Context manager: a rich Live view of a SweepDisplay (a line per finished seed when not a terminal)."""

    def __init__(self, display: SweepDisplay, out: Console = console):
        self.display = display
        self.out = out
        self.live = Live(display.render(), console=out, refresh_per_second=2, transient=False) \
            if out.is_terminal else None

    def __enter__(self) -> "LiveSweep":
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live:
            self.live.update(self.display.render())
            self.live.__exit__(*exc)

    def handle(self, point: str, event: Event) -> None:
        self.display.handle(point, event)
        if self.live:
            self.live.update(self.display.render())
        elif isinstance(event, SeedEnd) and (event.status != "interrupted" or event.seed in self.display.rows[point].progress):
            row = self.display.rows[point]  # (a seed stopped before it began is not worth a line)
            # The seed's own numbers: they do not depend on which seeds happened to run beside it.
            smoothed = row.seed_smoothed(event.seed)
            last = row.last_evaluations.get(event.seed)
            score = (f", last evaluation {fmt_score(last[1])} at {last[0]:,} env steps" if last is not None
                     else "" if math.isnan(smoothed) else f", smoothed score {fmt_score(smoothed)}")
            self.out.print(f"{point}: seed {event.seed} {event.status} after {row.progress.get(event.seed, 0)} "
                           f"episodes" + score
                           + f", best {fmt_score(row.best_scores.get(event.seed, math.nan))} "
                           f"({row.done}/{row.seeds} seeds done)")
