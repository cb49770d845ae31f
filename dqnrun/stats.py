"""Comparison statistics over seeds: final scores, bootstrap CIs, IQM, probability of improvement.

The estimators are scipy's: `scipy.stats.bootstrap` for confidence intervals, `trim_mean` for
the interquartile mean and the Mann-Whitney U statistic for the probability of improvement,
the definitions used by rliable (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical
Precipice").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from dqnrun.results import LECTURE_WINDOW, Run
from dqnrun.smoothing import smooth

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
    """One row of `dqnrun compare`."""

    name: str
    variant: str
    env_id: str
    n_seeds: int | None
    episodes: int
    final_mean: float
    final_ci: tuple[float, float] | None
    final_per_seed: np.ndarray | None
    iqm: float
    best: float
    threshold: float | None
    to_threshold: float  # median over seeds
    never: int | None  # seeds that never reached it
    auc: float
    env_steps: float
    wall_time: float
    lecture: bool
    diverged: int = 0  # seeds stopped by a non-finite loss or Q-value


def run_window(run: Run) -> int:
    return run.window


def curves(run: Run, length: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(max, min, mean) smoothed curves, recomputed over the first `length` episodes if given."""
    if run.is_lecture or length is None:
        n = None if length is None else max(length - run_window(run) + 1, 0)
        return run.max_score[:n], run.min_score[:n], run.mean_score[:n]
    smoothed = per_seed_smoothed(run, length, pooled_only=True)
    return smoothed.max(axis=0), smoothed.min(axis=0), smoothed.mean(axis=0)


def per_seed_smoothed(run: Run, length: int | None = None, pooled_only: bool = False) -> np.ndarray:
    """Smoothed curves per seed over the first `length` episodes, cut to the shortest.

    `pooled_only`: only the seeds the run's own max/min/mean curves pool (those that did not
    diverge), as `experiment.assemble` does.
    """
    window = run_window(run)
    scores = run.scores
    if pooled_only:
        keep = set(run.aggregated_seeds)
        scores = [row for seed, row in zip(run.seeds, scores) if seed in keep]
    rows = []
    for row in scores:
        row = row[~np.isnan(row)]
        rows.append(smooth(row[:length], window))
    n = min(len(r) for r in rows)
    return np.stack([r[:n] for r in rows])


def run_length(run: Run) -> int:
    """Episodes in the run (for lecture files: smoothed points + window - 1)."""
    if run.is_lecture:
        return len(run.mean_score) + LECTURE_WINDOW - 1
    return int(np.min(run.episodes))


def summarize(run: Run, last: int | None, length: int | None = None, threshold: float | None = None) -> Summary:
    """Compare-table statistics of one run over its first `length` episodes."""
    window = run_window(run)
    last = last or window
    if run.is_lecture:
        _, _, mean = curves(run, length)
        tail = mean[-max(1, last - window + 1):]
        return Summary(
            name=run.name, variant="?", env_id="?", n_seeds=None, episodes=len(mean) + window - 1,
            final_mean=float(tail.mean()) if len(tail) else math.nan, final_ci=None, final_per_seed=None,
            iqm=math.nan, best=float(run.max_score[: len(mean)].max()) if len(mean) else math.nan,
            threshold=threshold,
            to_threshold=episodes_to_threshold(mean, threshold, window) if threshold is not None else math.nan,
            never=None, auc=float(mean.mean()) if len(mean) else math.nan,
            env_steps=math.nan, wall_time=math.nan, lecture=True,
        )
    scores = run.scores[:, :length] if length else run.scores
    finals = final_scores(scores, last)
    smoothed = per_seed_smoothed(run, length)
    threshold = threshold if threshold is not None else run.reward_threshold
    reached = (
        np.array([episodes_to_threshold(s, threshold, window) for s in smoothed])
        if threshold is not None else np.full(len(smoothed), math.nan)
    )
    steps = run.steps
    n = int(scores.shape[1])
    end_steps = [row[~np.isnan(row)][: n][-1] for row in steps]
    return Summary(
        name=run.name, variant=run.variant, env_id=run.env_id,
        n_seeds=len(finals), episodes=n,
        final_mean=float(finals.mean()), final_ci=bootstrap_ci(finals), final_per_seed=finals,
        iqm=iqm(finals), best=float(np.nanmax(scores)), threshold=threshold,
        to_threshold=float(np.median(reached[~np.isnan(reached)])) if (~np.isnan(reached)).any() else math.nan,
        never=int(np.isnan(reached).sum()) if threshold is not None else None,
        auc=float(smoothed.mean(axis=0).mean()),
        env_steps=float(np.mean(end_steps)), wall_time=float(np.mean(run.wall_time)), lecture=False,
        diverged=sum(status == "diverged" for status in run.status),
    )
