"""Comparison statistics over seeds and environments: final scores, bootstrap CIs, IQM,
probability of improvement, normalised scores and performance profiles.

The definitions are rliable's (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical
Precipice"): the interquartile mean (scipy's `trim_mean`, 25% cut each side), percentile
bootstrap CIs (`scipy.stats.bootstrap` within one run; a stratified bootstrap across
environments, Sec. 4 and App. A.1), the probability of improvement (the Mann-Whitney U statistic,
Sec. 4.3) and performance profiles (the score distribution's tail, Sec. 4.2). rliable itself is
not used: it requires arch (with statsmodels and pandas), seaborn and absl-py, a heavy footprint
for a few lines of numpy over scipy, which dqnrun already needs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from dqnrun.errors import UserError
from dqnrun.results import LECTURE_WINDOW, Run
from dqnrun.smoothing import smooth

BOOTSTRAP_REPS = 10_000

# What a run's score curve is, in the machine formats' `score_kind`:
STEP_EVAL = "step_eval"  # greedy evaluation every `eval_every_steps` env steps (x: env steps)
EPISODE_EVAL = "episode_eval"  # greedy evaluation after every training episode (the lecture's)
TRAIN_RETURN = "train_return"  # the training episode's return (`eval_episodes: 0`)

# The 0 of the normalised score: the mean return of a uniformly random policy, measured with
# `python benchmarks/random_scores.py` (100 episodes, seeds 0..99; standard error in brackets).
# The 1 is the environment's reward threshold from its Gymnasium spec, or `--norm ENV=LOW:HIGH`.
RANDOM_SCORES = {
    "CartPole-v1": 25.0,  # (1.5)
    "CartPole-v0": 25.0,  # the same dynamics, 200-step limit; random episodes end long before
    "Acrobot-v1": -500.0,  # (0.0): a random policy never swings up within 500 steps
    "MountainCar-v0": -200.0,  # (0.0)
    "LunarLander-v3": -191.0,  # (10.7)
}


def final_scores(scores: np.ndarray, last: int) -> np.ndarray:
    """Per seed, the mean of its last `last` raw scores (NaN padding ignored)."""
    out = []
    for row in np.atleast_2d(scores):
        row = row[~np.isnan(row)]
        out.append(row[-last:].mean() if len(row) else math.nan)
    return np.array(out)


def bootstrap_ci(values: np.ndarray, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean across seeds (10,000 resamples, fixed seed).

    With one value, or all values equal, the interval is that value.
    """
    values = np.asarray(values, dtype=float)
    if len(values) < 2 or np.all(values == values[0]):
        return float(values.mean()), float(values.mean())
    res = sps.bootstrap(
        (values,), np.mean, confidence_level=confidence, n_resamples=10_000,
        method="percentile", rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def iqm(values: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% (scipy's trim_mean, 25% cut each side)."""
    return float(sps.trim_mean(np.asarray(values, dtype=float), 0.25))


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) + P(X = Y) / 2 over all pairs of seeds: the Mann-Whitney U statistic / (n m)."""
    u = sps.mannwhitneyu(np.asarray(x, float), np.asarray(y, float), alternative="two-sided").statistic
    return float(u) / (len(x) * len(y))


def episodes_to_threshold(smoothed: np.ndarray, threshold: float, window: int) -> float:
    """The episode at which a smoothed curve first reaches `threshold` (NaN: never).

    Point i of a 'valid' sliding mean covers episodes i+1 .. i+window, so it is reached at
    episode i + window.
    """
    hits = np.flatnonzero(np.asarray(smoothed) >= threshold)
    return float(hits[0] + window) if len(hits) else math.nan



@dataclass
class Summary:
    """One row of `dqnrun compare`: one run's statistics over its first `episodes` episodes."""

    name: str  # the run's label: the shortest path suffix that tells it from the others
    variant: str  # the agent's switches, e.g. "ddqn+per"
    env_id: str
    n_seeds: int | None
    episodes: int  # episodes compared
    final_mean: float
    final_ci: tuple[float, float] | None
    final_per_seed: np.ndarray | None
    iqm: float
    best: float
    threshold: float | None
    to_threshold: float  # median over the seeds that reached it
    never: int | None  # seeds that never reached it
    auc: float
    env_steps: float
    wall_time: float
    lecture: bool
    diverged: int = 0  # seeds stopped by a non-finite loss or Q-value
    path: str = ""
    run_episodes: int = 0  # episodes of the run's longest seed (more than `episodes` when cut)
    # The fewest and most episodes a seed has within those compared: they differ when the seeds
    # ran to an env-step budget (max_steps), each ending after its own number of episodes.
    seed_episodes: tuple[int, int] = (0, 0)
    window: int = LECTURE_WINDOW  # the smoothing window used
    p_improvement: float = math.nan  # P(this run > the baseline), same environment only
    normalised: float = math.nan  # mean over seeds of the normalised final score
    kind: str = EPISODE_EVAL  # the curve the scores come from: step_eval, episode_eval or train_return
    eval_every: int | None = None  # eval_every_steps of a step-evaluated run
    last: int = 0  # scores (or evaluations) per seed averaged into the final score
    max_step: float | None = None  # a step-evaluated run compared up to this env step
    # `dqnrun evaluate`'s saved measurement of the best models: mean over seeds, its CI, episodes per seed
    evaluated: float = math.nan
    evaluated_ci: tuple[float | None, float | None] = (None, None)
    evaluated_episodes: int | None = None

    @property
    def reached(self) -> int | None:
        return None if self.never is None or self.n_seeds is None else self.n_seeds - self.never


def run_window(run: Run, length: int | None = None) -> int:
    """The run's smoothing window, shrunk to `length` episodes when it is compared over fewer."""
    window = run.window
    if length is not None and not run.is_lecture:
        window = max(1, min(window, length))
    return window


def curves(run: Run, length: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(max, min, mean) smoothed curves, recomputed over the first `length` episodes if given."""
    if run.is_lecture or length is None:
        n = None if length is None else max(length - run_window(run) + 1, 0)
        return run.max_score[:n], run.min_score[:n], run.mean_score[:n]
    smoothed = per_seed_smoothed(run, length, pooled_only=True)
    return smoothed.max(axis=0), smoothed.min(axis=0), smoothed.mean(axis=0)


def pooled_rows(run: Run) -> list[int]:
    """Indices of the seeds the run's own max/min/mean curves pool (those that did not diverge)."""
    keep = set(run.aggregated_seeds or run.seeds)
    return [i for i, seed in enumerate(run.seeds) if seed in keep]


def per_seed_smoothed(run: Run, length: int | None = None, pooled_only: bool = False) -> np.ndarray:
    """Smoothed curves per seed over the first `length` episodes, cut to the shortest.

    `pooled_only`: only the seeds the run's own max/min/mean curves pool (those that did not
    diverge), as `experiment.assemble` does. The window shrinks to `length` if that is shorter.
    """
    window = run_window(run, length)
    scores = run.scores
    if pooled_only:
        scores = scores[pooled_rows(run)]
    rows = []
    for row in scores:
        row = row[~np.isnan(row)]
        rows.append(smooth(row[:length], window))
    n = min(len(r) for r in rows)
    return np.stack([r[:n] for r in rows])


def per_seed_points(run: Run, length: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per pooled seed, (env steps, smoothed score) over its first `length` episodes: each
    smoothed point sits at the env step of the episode that ends its window. Each seed keeps
    its own length (seeds with a `max_steps` budget end after different numbers of episodes)."""
    window = run_window(run, length)
    out = []
    for r in pooled_rows(run):
        scores = run.scores[r][~np.isnan(run.scores[r])][:length]
        smoothed = smooth(scores, window)
        out.append((run.steps[r][window - 1 : window - 1 + len(smoothed)], smoothed))
    return out


# ---------------------------------------------------------------------------------------------
# Curves evaluated every N env steps (`eval_every_steps`)

def score_kind(run: Run) -> str:
    """Which curve a run's final score and figure come from (STEP_EVAL, EPISODE_EVAL or TRAIN_RETURN)."""
    if run.is_lecture:
        return EPISODE_EVAL
    config = run.config
    if config is not None:
        if config.eval_every_steps is not None:
            return STEP_EVAL
        return EPISODE_EVAL if config.eval_episodes else TRAIN_RETURN
    return STEP_EVAL if run.eval_steps is not None and run.eval_steps.shape[1] else EPISODE_EVAL


def is_step_evaluated(run: Run) -> bool:
    return score_kind(run) == STEP_EVAL


def training_view(run: Run) -> Run | None:
    """The run with its training episodes' returns as its scores, so that its curve (smoothed over
    its window, on episodes or env steps) is the return during training: what papers plot that
    report returns while learning, epsilon-greedy (MinAtar, Young and Tian 2019; the Atari
    DQN's training curves). None for a run that did not record them (a lecture file)."""
    if score_kind(run) in (STEP_EVAL, TRAIN_RETURN):  # its per-episode scores are the training returns
        returns = run.scores
    else:
        returns = run.train_returns
        if returns is None or not np.isfinite(returns).any():
            returns = None
    if run.is_lecture or returns is None:
        return None
    config = None if run.config is None else dataclasses.replace(run.config, eval_episodes=0, eval_every_steps=None)
    none = np.empty((returns.shape[0], 0))
    return dataclasses.replace(run, scores=returns, config=config, eval_steps=none, eval_scores=none)


def thousands(value: float, _pos: int = 0) -> str:
    """Env steps in words for tick labels and titles: 500, 20k, 1.5M (`_pos`: matplotlib's)."""
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    return f"{value / 1e3:g}k" if abs(value) >= 1e3 else f"{value:g}"


def eval_interval(run: Run) -> int | None:
    """`eval_every_steps` of a step-evaluated run (None if unknown or not one)."""
    return run.config.eval_every_steps if run.config is not None else None


def eval_points(run: Run, pooled_only: bool = True, max_step: float | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per seed, (env steps, score) of its evaluations (padding dropped; those after `max_step` too).

    `pooled_only`: only the seeds the run's own curves pool (those that did not diverge).
    """
    rows = pooled_rows(run) if pooled_only else range(run.n_seeds)
    out = []
    for i in rows:
        steps, scores = run.eval_steps[i], run.eval_scores[i]
        keep = np.isfinite(steps) & np.isfinite(scores)
        if max_step is not None:
            keep &= steps <= max_step
        out.append((steps[keep], scores[keep]))
    return out


def eval_grid(runs: Sequence[Run]) -> np.ndarray:
    """The common env-step grid of step-evaluated runs: every env step at which any seed of any of
    them evaluated, sorted. Seeds that evaluate at the same steps keep their own values on it."""
    steps = [s for run in runs for s, _ in eval_points(run)]
    return np.unique(np.concatenate(steps)) if steps else np.zeros(0)


def on_grid(points: Sequence[tuple[np.ndarray, np.ndarray]], grid: np.ndarray) -> np.ndarray:
    """Each seed's evaluation curve linearly interpolated onto `grid` (seeds x grid points).

    No extrapolation: before a seed's first and after its last evaluation it is NaN.
    """
    out = np.full((len(points), len(grid)), np.nan)
    for i, (x, y) in enumerate(points):
        if len(x):
            out[i] = np.interp(grid, x, y, left=np.nan, right=np.nan)
    return out


def eval_curve(run: Run, grid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(grid points, seeds x points) of a step-evaluated run, over the grid points that every pooled
    seed with an evaluation covers (between its first and last evaluation). The curves are not
    smoothed: each point is already the mean of `eval_episodes` greedy episodes, and `window`
    counts episodes. A seed that ended before its first evaluation has no curve."""
    points = [(x, y) for x, y in eval_points(run) if len(x)]
    grid = eval_grid([run]) if grid is None else np.asarray(grid, dtype=float)
    per_seed = on_grid(points, grid)
    covered = np.isfinite(per_seed).all(axis=0) if len(per_seed) else np.zeros(len(grid), bool)
    return grid[covered], per_seed[:, covered]


def last_eval_step(run: Run) -> float:
    """The env step up to which every seed of a step-evaluated run has evaluated (NaN: none has)."""
    lasts = [s[-1] if len(s) else math.nan for s, _ in eval_points(run, pooled_only=False)]
    return float(min(lasts)) if lasts and not any(math.isnan(v) for v in lasts) else math.nan


def run_length(run: Run) -> int:
    """Episodes in the run (for lecture files: smoothed points + window - 1)."""
    if run.is_lecture:
        return len(run.mean_score) + LECTURE_WINDOW - 1
    return int(np.min(run.episodes))


def run_env(run: Run) -> str:
    return "?" if run.is_lecture else run.env_id


def flat_config(run: Run) -> dict[str, object]:
    """The run's resolved config as dotted keys (agent.tau: 0.01); empty for a lecture file."""
    def walk(value: object, prefix: str) -> dict[str, object]:
        if isinstance(value, Mapping):
            return {k: v for key, sub in value.items() for k, v in walk(sub, f"{prefix}{key}.").items()}
        return {prefix[:-1]: value}

    return walk(run.config.to_dict(), "") if run.config is not None else {}


def facets(runs: Sequence[Run], key: str) -> tuple[list[str], list[str]]:
    """Per run, its value of the dotted config `key` (as text), and a label from the other keys
    in which the runs differ (e.g. "learning_rate 0.0003"), or its name where none tells it apart."""
    flats = [flat_config(r) for r in runs]
    known = list(dict.fromkeys(k for f in flats for k in f))
    if not any(key in f for f in flats):
        from dqnrun.config import closest_key

        close = [c for c in (closest_key(key, known),) if c] or [k for k in known if k.endswith("." + key)][:1]
        hint = f"; did you mean {close[0]}?" if close else f" (keys: {', '.join(k for k in known if '.' in k)[:200]} ...)"
        raise UserError(f"--facet {key}: not a config key of these runs{hint}")
    values = [str(f.get(key, "?")) for f in flats]
    differ = [k for k in known if k not in (key, "name") and len({repr(f.get(k)) for f in flats}) > 1]
    labels = [", ".join(f"{k.rsplit('.', 1)[-1]} {f.get(k, '-')}" for k in differ) for f in flats]
    return values, labels if differ and len(differ) <= 3 and len(set(zip(values, labels))) == len(runs) else []


def environments(runs: Sequence[Run]) -> list[str]:
    """Each run's environment; a lecture file (which names none) joins the only one, else "?"."""
    known = list(dict.fromkeys(run_env(r) for r in runs if not r.is_lecture))
    return [run_env(r) if not r.is_lecture else (known[0] if len(known) == 1 else "?") for r in runs]


def align(runs: Sequence[Run], labels: Sequence[str]) -> tuple[list[int | None], list[str]]:
    """Per run, the episodes it is compared over (None: all of them) and notes saying what was cut.

    Runs on one environment are cut to the shortest of them; environments are not cut to each other.
    """
    env_of = environments(runs)
    multi = len(set(env_of) - {"?"}) > 1
    lengths = [run_length(r) for r in runs]
    cut: list[int | None] = [None] * len(runs)
    notes = []
    for env in dict.fromkeys(env_of):
        # Step-evaluated runs are compared on env steps (`align_steps`), not cut in episodes.
        members = [i for i, e in enumerate(env_of) if e == env and not is_step_evaluated(runs[i])]
        if len({lengths[i] for i in members}) < 2:
            continue
        shortest = min(lengths[i] for i in members)
        detail = ", ".join(f"{labels[i]} {lengths[i]}" for i in members)
        where = f" on {env}" if multi else ""
        notes.append(f"runs{where} differ in length ({detail}): all compared over the first {shortest} episodes")
        for i in members:
            cut[i] = shortest
    return cut, notes


def align_steps(runs: Sequence[Run], labels: Sequence[str]) -> tuple[list[float | None], list[str]]:
    """Per step-evaluated run, the last env step compared (None: all) and notes saying what was cut.

    Step-evaluated runs of one environment are compared up to the env step every seed of each
    of them has evaluated to; other runs get None.
    """
    env_of = environments(runs)
    multi = len(set(env_of) - {"?"}) > 1
    cut: list[float | None] = [None] * len(runs)
    notes = []
    for env in dict.fromkeys(env_of):
        members = [i for i, e in enumerate(env_of) if e == env and is_step_evaluated(runs[i])]
        lasts = {i: last_eval_step(runs[i]) for i in members}
        lasts = {i: v for i, v in lasts.items() if not math.isnan(v)}
        if len(set(lasts.values())) < 2:
            continue
        shortest = min(lasts.values())
        detail = ", ".join(f"{labels[i]} {v:,.0f}" for i, v in lasts.items())
        where = f" on {env}" if multi else ""
        notes.append(f"step-evaluated runs{where} differ in length (env steps evaluated: {detail}): "
                     f"all compared up to env step {shortest:,.0f}")
        for i in lasts:
            cut[i] = shortest
    return cut, notes


# ---------------------------------------------------------------------------------------------
# Labels


def variant_label(run: Run) -> str:
    """The agent's switches, e.g. "ddqn+per" or "ddqn+dueling+polyak", read from the run's config
    (`agent_label`). A run without a config (the lecture's files) shows its preset name, or "?"."""
    agent = getattr(run.config, "agent", None)
    if dataclasses.is_dataclass(agent) or isinstance(agent, Mapping):
        return agent_label(agent)
    return run.variant


# Boolean agent keys that are the optimizer's options, not switches of the algorithm.
NOT_SWITCHES = {"rmsprop_centered"}


def agent_label(agent: Any) -> str:
    """"ddqn" or "dqn" for the double switch, then every other boolean agent switch that is on
    (prioritized is called "per"), "<n>-step" for n_step > 1 and "polyak" for tau < 1.
    `agent`: an `AgentConfig` or its dict."""
    if dataclasses.is_dataclass(agent):
        agent = dataclasses.asdict(agent)
    parts = ["ddqn" if agent.get("double") else "dqn"]
    for key, value in agent.items():
        if key != "double" and key not in NOT_SWITCHES and value is True:
            parts.append({"prioritized": "per"}.get(key, key))
    n_step = agent.get("n_step")
    if isinstance(n_step, int) and not isinstance(n_step, bool) and n_step > 1:
        parts.append(f"{n_step}-step")
    tau = agent.get("tau")
    if isinstance(tau, (int, float)) and not isinstance(tau, bool) and tau < 1:
        parts.append("polyak")
    return "+".join(parts)


def run_key(run: Run) -> Path:
    """What identifies a run: its directory (or, for a lecture file, the file without suffix)."""
    path = run.path.resolve()
    return path.with_suffix("") if run.is_lecture else path.parent


def run_labels(runs: Sequence[Run]) -> list[str]:
    """For each run, the shortest suffix of its path that no other run shares.

    `results/ddqn` and `other/ddqn` become "results/ddqn" and "other/ddqn"; unique names stay as
    they are ("ddqn").
    """
    parts = [run_key(r).parts for r in runs]
    labels = []
    for i, own in enumerate(parts):
        k = 1
        while k < len(own) and any(j != i and p[-k:] == own[-k:] for j, p in enumerate(parts)):
            k += 1
        labels.append("/".join(own[-k:]))
    return labels


# ---------------------------------------------------------------------------------------------
# One run


def summarize(run: Run, last: int | None, length: int | None = None, threshold: float | None = None,
              label: str | None = None, max_step: float | None = None) -> Summary:
    """Compare-table statistics of one run over its first `length` episodes (a step-evaluated run:
    over its evaluations up to env step `max_step`, see `summarize_evaluations`)."""
    if is_step_evaluated(run):
        return summarize_evaluations(run, last, max_step, threshold, label or run.name)
    window = run_window(run, length)
    last = last or window
    name = label or run.name
    total = run_length(run)
    if run.is_lecture:
        _, _, mean = curves(run, length)
        tail = mean[-max(1, last - window + 1):]
        return Summary(
            name=name, variant="?", env_id="?", n_seeds=None, episodes=len(mean) + window - 1 if len(mean) else 0,
            final_mean=float(tail.mean()) if len(tail) else math.nan, final_ci=None, final_per_seed=None,
            iqm=math.nan, best=float(run.max_score[: len(mean)].max()) if len(mean) else math.nan,
            threshold=threshold,
            to_threshold=episodes_to_threshold(mean, threshold, window) if threshold is not None else math.nan,
            never=None, auc=float(mean.mean()) if len(mean) else math.nan,
            env_steps=math.nan, wall_time=math.nan, lecture=True, path=str(run.path), run_episodes=total,
            window=window, last=last,
        )
    scores = run.scores[:, :length] if length else run.scores
    finals = final_scores(scores, last)
    per_seed = (~np.isnan(scores)).sum(axis=1)
    smoothed = per_seed_smoothed(run, length)
    threshold = threshold if threshold is not None else run.reward_threshold
    reached = (
        np.array([episodes_to_threshold(s, threshold, window) for s in smoothed])
        if threshold is not None else np.full(len(smoothed), math.nan)
    )
    steps = run.steps
    n = int(scores.shape[1])
    end_steps = [row[~np.isnan(row)][: n][-1] for row in steps]
    hit = reached[~np.isnan(reached)]
    return Summary(
        name=name, variant=variant_label(run), env_id=run_env(run),
        n_seeds=len(finals), episodes=n,
        final_mean=float(finals.mean()), final_ci=bootstrap_ci(finals), final_per_seed=finals,
        iqm=iqm(finals), best=float(np.nanmax(scores)), threshold=threshold,
        to_threshold=float(np.median(hit)) if len(hit) else math.nan,
        never=int(np.isnan(reached).sum()) if threshold is not None else None,
        auc=float(smoothed.mean()) if smoothed.size else math.nan,
        env_steps=float(np.mean(end_steps)), wall_time=float(np.mean(run.wall_time)), lecture=False,
        diverged=sum(status == "diverged" for status in run.status),
        path=str(run.run_dir), run_episodes=int(np.max(run.episodes)), window=window, kind=score_kind(run),
        last=last, seed_episodes=(int(per_seed.min()), int(per_seed.max())) if len(per_seed) else (n, n),
    )


def summarize_evaluations(run: Run, last: int | None, max_step: float | None, threshold: float | None,
                          name: str) -> Summary:
    """Compare-table statistics of a step-evaluated run from its evaluation curve, up to `max_step`.

    final: per seed, the mean of its last `last` evaluations (default 1: the last evaluation, as
    RL Zoo and Dopamine report); best: the highest evaluation; AUC: the mean evaluation score;
    to threshold: the episode in which a seed's first evaluation reaching it took place.
    """
    last = last or 1
    points = eval_points(run, pooled_only=False, max_step=max_step)
    finals = np.array([y[-last:].mean() if len(y) else math.nan for _, y in points])
    scored = finals[~np.isnan(finals)]
    threshold = threshold if threshold is not None else run.reward_threshold
    reached = np.full(len(points), math.nan)
    if threshold is not None:
        for i, (x, y) in enumerate(points):
            hits = np.flatnonzero(y >= threshold)
            if len(hits):
                ends = run.steps[i][np.isfinite(run.steps[i])]
                # The evaluation at env step x ran inside the first episode that ended at or after x.
                reached[i] = min(int(np.searchsorted(ends, x[hits[0]], side="left")) + 1, len(ends))
    hit = reached[~np.isnan(reached)]
    every = np.concatenate([y for _, y in points]) if points else np.zeros(0)
    ends = [row[np.isfinite(row)][-1] for row in run.steps]
    if max_step is not None:
        ends = [min(e, max_step) for e in ends]
    total = run_length(run)
    return Summary(
        name=name, variant=variant_label(run), env_id=run_env(run), n_seeds=len(finals), episodes=total,
        final_mean=float(scored.mean()) if len(scored) else math.nan,
        final_ci=bootstrap_ci(scored) if len(scored) else None, final_per_seed=scored if len(scored) else None,
        iqm=iqm(scored) if len(scored) else math.nan, best=float(every.max()) if len(every) else math.nan,
        threshold=threshold, to_threshold=float(np.median(hit)) if len(hit) else math.nan,
        never=int(np.isnan(reached).sum()) if threshold is not None else None,
        auc=float(every.mean()) if len(every) else math.nan,
        env_steps=float(np.mean(ends)), wall_time=float(np.mean(run.wall_time)), lecture=False,
        diverged=sum(status == "diverged" for status in run.status), path=str(run.run_dir),
        run_episodes=total, window=run.window, kind=STEP_EVAL, eval_every=eval_interval(run), last=last,
        max_step=max_step,
    )


# ---------------------------------------------------------------------------------------------
# Across environments


def normalise(scores: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map `low` (a random policy) to 0 and `high` (the reference, e.g. the reward threshold) to 1."""
    return (np.asarray(scores, dtype=float) - low) / (high - low)


def stratified_bootstrap(per_env: Sequence[np.ndarray], statistic, reps: int = BOOTSTRAP_REPS,
                         seed: int = 0) -> np.ndarray:
    """`statistic(pooled, axis=1)` on `reps` stratified resamples: the seeds of each environment
    are resampled with replacement within that environment, then pooled (rliable, App. A.1)."""
    rng = np.random.default_rng(seed)
    draws = [np.asarray(s, float)[rng.integers(0, len(s), (reps, len(s)))] for s in per_env]
    return statistic(np.concatenate(draws, axis=1), axis=1)


def percentile_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    alpha = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [alpha, 100 - alpha])
    return float(low), float(high)


def aggregate_iqm(per_env: Sequence[np.ndarray], confidence: float = 0.95) -> tuple[float, float, float]:
    """IQM of the pooled normalised scores and its stratified bootstrap percentile CI."""
    pooled = np.concatenate([np.asarray(s, float) for s in per_env])
    boot = stratified_bootstrap(per_env, lambda x, axis: sps.trim_mean(x, 0.25, axis=axis))
    return (iqm(pooled), *percentile_interval(boot, confidence))


def score_distribution(per_env: Sequence[np.ndarray], taus: np.ndarray) -> np.ndarray:
    """Performance profile: for each tau, the fraction of runs whose score exceeds it, averaged
    over environments so each counts once however many seeds it has (rliable, Sec. 4.2)."""
    taus = np.asarray(taus, float)
    return np.mean([(np.asarray(s, float)[:, None] > taus).mean(axis=0) for s in per_env], axis=0)


def profile_band(per_env: Sequence[np.ndarray], taus: np.ndarray, reps: int = 2_000,
                 confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise stratified bootstrap percentile band of `score_distribution`."""
    rng = np.random.default_rng(0)
    taus = np.asarray(taus, float)
    fractions = []
    for s in per_env:
        s = np.asarray(s, float)
        draws = s[rng.integers(0, len(s), (reps, len(s)))]  # (reps, seeds)
        fractions.append((draws[:, :, None] > taus).mean(axis=1))  # (reps, taus)
    boot = np.mean(fractions, axis=0)
    alpha = 100 * (1 - confidence) / 2
    low, high = np.percentile(boot, [alpha, 100 - alpha], axis=0)
    return low, high


@dataclass
class Aggregate:
    """One variant across environments, on normalised final scores."""

    variant: str
    envs: list[str]
    n_runs: int  # (environment, seed) pairs
    iqm: float
    iqm_ci: tuple[float, float]
    mean: float
    per_env: list[np.ndarray] = field(repr=False, default_factory=list)


@dataclass
class Comparison:
    """Everything `dqnrun compare` shows: rows, the baseline, the aggregate and notes."""

    rows: list[Summary]
    baseline: int | None  # index of the run P(>) compares against
    aggregates: list[Aggregate]
    normalisation: dict[str, tuple[float, float, str]]  # env -> (score of 0, score of 1, source)
    notes: list[str]

    @property
    def envs(self) -> list[str]:
        return sorted({r.env_id for r in self.rows if not r.lecture})


def compare_runs(runs: Sequence[Run], last: int | None = None, baseline: int = 0,
                 norms: Mapping[str, tuple[float, float]] | None = None) -> Comparison:
    """Summaries of `runs`, aligned to a common length within each environment, the probability
    of improvement over `runs[baseline]` on its environment, and, when the runs cover several
    environments, an aggregate per variant over normalised scores."""
    labels = run_labels(runs)
    env_of = environments(runs)
    cut, notes = align(runs, labels)
    step_cut, step_notes = align_steps(runs, labels)
    notes += step_notes
    known = sorted(set(env_of) - {"?"})
    if len(known) > 1 and any(r.is_lecture for r in runs):
        notes.append("lecture result files name no environment: left out of the aggregate")
    thresholds = {e: {r.reward_threshold for r, e2 in zip(runs, env_of) if e2 == e and not r.is_lecture}
                  for e in set(env_of)}
    rows = []
    for i, run in enumerate(runs):
        ts = thresholds[env_of[i]] - {None}
        threshold = ts.pop() if len(ts) == 1 else None
        length = cut[i]
        if length is not None and length < run_window(run) and not run.is_lecture:
            notes.append(f"{labels[i]}: its window {run_window(run)} is longer than the {length} episodes "
                         f"compared; smoothed over {length}")
        row = summarize(run, last, length, threshold, label=labels[i], max_step=step_cut[i])
        if run.is_lecture and row.episodes == 0:
            notes.append(f"{labels[i]}: a lecture file's curves start at episode {LECTURE_WINDOW}, after the "
                         f"{length} episodes compared; nothing to show")
        if run.is_lecture:
            row.env_id = env_of[i] if len(known) == 1 else "?"
        else:
            add_evaluation(row, run, notes)
        lo, hi = row.seed_episodes
        if row.kind != STEP_EVAL and lo != hi:
            why = (" (an env-step budget)" if flat_config(run).get("max_steps") is not None
                   else " (a diverged seed stops early)" if row.diverged else "")
            notes.append(f"{labels[i]}: its seeds ran {lo} to {hi} episodes{why}; each seed's "
                         f"final is the mean of its own last {row.last} scores")
        rows.append(row)
    if last is not None:
        over = [r.name for r in rows if not r.lecture and r.kind != STEP_EVAL and last > r.episodes]
        if over:
            notes.append(f"--last {last} is more than the episodes compared for {', '.join(over)}: "
                         "their final is the mean of all their scores")
    base = rows[baseline] if rows else None
    if base is not None and base.final_per_seed is not None:
        for row in rows:
            if row is not base and row.final_per_seed is not None and row.env_id == base.env_id:
                row.p_improvement = probability_of_improvement(row.final_per_seed, base.final_per_seed)
    elif len(rows) > 1:
        notes.append(f"the baseline {base.name} has no per-seed scores: no probability of improvement")
    normalisation: dict[str, tuple[float, float, str]] = {}
    aggregates: list[Aggregate] = []
    if len(known) > 1:
        normalisation, aggregates = aggregate_over_envs(rows, runs, norms or {}, notes)
    return Comparison(rows, baseline if base is not None and base.final_per_seed is not None else None,
                      aggregates, normalisation, notes)


def add_evaluation(row: Summary, run: Run, notes: list[str]) -> None:
    """Fill in the run's saved `dqnrun evaluate` measurement of its best models, if it has one."""
    from dqnrun.errors import UserError
    from dqnrun.results import RunDir

    try:
        doc = RunDir(run.run_dir).read_evaluation("best")
    except UserError as exc:
        notes.append(f"{row.name}: its evaluation file is not used: {exc}")
        return
    if doc is None:
        return
    across = doc["across_seeds"]
    episodes = doc.get("episodes")
    row.evaluated = float(across["mean"]) if across.get("mean") is not None else math.nan
    row.evaluated_ci = (across.get("ci_low"), across.get("ci_high"))
    row.evaluated_episodes = episodes if isinstance(episodes, int) and not isinstance(episodes, bool) else None
    # A measurement of fewer seeds than have best models (a model lost before `evaluate` ran)
    # does not stand for the run; say which seeds it covers.
    measured = {s.get("seed") for s in doc["seeds"]}
    with_model = [seed for seed, episode in zip(run.seeds, run.best_episode) if episode > 0]
    left_out = [seed for seed in with_model if seed not in measured]
    if left_out:
        notes.append(f"{row.name}: evaluated measured {len(with_model) - len(left_out)} of its {len(with_model)} seeds "
                     f"with a best model (left out: seed{'s' if len(left_out) > 1 else ''} "
                     f"{', '.join(map(str, left_out))})")


def aggregate_over_envs(rows: list[Summary], runs: Sequence[Run], norms: Mapping[str, tuple[float, float]],
                        notes: list[str]) -> tuple[dict[str, tuple[float, float, str]], list[Aggregate]]:
    normalisation: dict[str, tuple[float, float, str]] = {}
    for env in sorted({r.env_id for r in rows if not r.lecture}):
        if env in norms:
            normalisation[env] = (*norms[env], "--norm")
            continue
        threshold = next((r.threshold for r in rows if r.env_id == env and r.threshold is not None), None)
        if env not in RANDOM_SCORES or threshold is None:
            missing = "random-policy score" if env not in RANDOM_SCORES else "reward threshold"
            notes.append(f"{env} has no {missing}: left out of the aggregate; give --norm {env}=RANDOM:REFERENCE")
            continue
        normalisation[env] = (RANDOM_SCORES[env], float(threshold), "random policy; reward threshold")
    for env, (low, high, _) in list(normalisation.items()):
        if high == low:
            notes.append(f"{env}: the normalisation's two scores are equal ({low:g}); left out of the aggregate")
            del normalisation[env]
    groups: dict[str, dict[str, list[np.ndarray]]] = {}
    for row in rows:
        if row.lecture or row.final_per_seed is None or row.env_id not in normalisation:
            continue
        low, high, _ = normalisation[row.env_id]
        scores = normalise(row.final_per_seed, low, high)
        row.normalised = float(scores.mean())
        groups.setdefault(row.variant, {}).setdefault(row.env_id, []).append(scores)
    aggregates = []
    for variant, by_env in groups.items():
        pooled_twice = [env for env, parts in by_env.items() if len(parts) > 1]
        if pooled_twice:
            notes.append(f"{variant}: several runs on {', '.join(pooled_twice)}; their seeds are pooled in the aggregate")
        per_env = [np.concatenate(parts) for parts in by_env.values()]
        point, low, high = aggregate_iqm(per_env)
        aggregates.append(Aggregate(variant, list(by_env), sum(len(s) for s in per_env), point, (low, high),
                                    float(np.mean(np.concatenate(per_env))), per_env))
    single = [a.variant for a in aggregates if len(a.envs) < 2]
    if single:
        notes.append(f"{', '.join(single)}: on one environment only; its aggregate is that environment's")
    return normalisation, aggregates
