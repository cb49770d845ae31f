"""Figures for papers: learning curves and performance profiles (matplotlib; no torch import).

The default is the lecture's figure: per run a thick mean line, thin min and max lines and a
translucent band between them. Colours are Okabe and Ito's colour-blind-safe palette, each run
also gets its own line style, and sizes are set for a printed page or a single column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; works without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

from dqnrun.errors import UserError  # noqa: E402
from dqnrun.results import Run  # noqa: E402
from dqnrun.stats import (  # noqa: E402
    TRAIN_RETURN,
    curves,
    eval_curve,
    eval_grid,
    eval_interval,
    facets,
    is_step_evaluated,
    per_seed_points,
    per_seed_smoothed,
    pooled_rows,
    profile_band,
    environments,
    run_labels,
    run_window,
    score_distribution,
    score_kind,
    thousands,
    training_view,
)

FORMATS = ("png", "svg", "pdf")
BANDS = ("minmax", "ci", "iqr", "none")
BAND_LABELS = {
    "minmax": "mean, min-max over seeds",
    "ci": "mean, 95% bootstrap CI",
    "iqr": "median, interquartile range",
}
# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision
# deficiency. Yellow comes last: it is faint on white.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (10, 3)), (0, (1, 3)), (0, (10, 2, 2, 2, 2, 2)))
# Width x height per panel in inches and the font size: "column" for one column of a two-column
# paper (3.3 in), "page" for the full text width (6.8 in).
SIZES = {"column": ((3.3, 2.3), 8.0), "page": ((6.8, 3.4), 10.0)}
GRID_POINTS = 200  # points of the common env-step grid of --x steps


def style(i: int) -> dict:
    """Colour and line style of the i-th run: 8 colours x 8 styles, paired so neighbours differ in
    both, and the 9th run on shifts the styles by one so no two of 64 runs look alike."""
    return {"color": PALETTE[i % len(PALETTE)],
            "linestyle": LINESTYLES[(i + i // len(PALETTE)) % len(LINESTYLES)]}


@dataclass
class Curve:
    """What is drawn for one run: x, a centre line and an optional band."""

    x: np.ndarray
    centre: np.ndarray
    low: np.ndarray | None
    high: np.ndarray | None
    n_seeds: int | None


def band_of(per_seed: np.ndarray, band: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(centre, low, high) across seeds (rows), point by point."""
    if band == "iqr":
        q25, median, q75 = np.percentile(per_seed, [25, 50, 75], axis=0)
        return median, q25, q75
    mean = per_seed.mean(axis=0)
    if band == "minmax":
        return mean, per_seed.min(axis=0), per_seed.max(axis=0)
    if band == "ci":
        # Percentile bootstrap of the mean over seeds at every point (2,000 resamples of the seeds).
        rng = np.random.default_rng(0)
        n = len(per_seed)
        idx = rng.integers(0, n, (2_000, n))
        means = per_seed[idx].mean(axis=1)  # (reps, points)
        low, high = np.percentile(means, [2.5, 97.5], axis=0)
        return mean, low, high
    return mean, None, None


def run_curve(run: Run, x: str, band: str, length: int | None,
              grid: np.ndarray | None = None) -> tuple[Curve | None, str | None]:
    """The curve of one run, or None and the reason it cannot be drawn.

    A step-evaluated run (`eval_every_steps`) draws its evaluation curve on env steps: each seed's
    evaluations interpolated onto `grid` (default: the run's own evaluation steps), over the grid
    points every seed covers, never extrapolated; not smoothed.
    """
    if is_step_evaluated(run):
        if x == "episodes":
            return None, "evaluated every N env steps: its curve is drawn with --x steps (or auto)"
        xs, per_seed = eval_curve(run, grid)
        if per_seed.shape[0] == 0 or len(xs) == 0:
            return None, "no evaluation common to its seeds; nothing to draw"
        centre, low, high = band_of(per_seed, band)
        pooled = len(pooled_rows(run))
        why = (f"{pooled - len(per_seed)} of its {pooled} seeds ended before their first evaluation: drawn without them"
               if len(per_seed) < pooled else None)
        return Curve(xs, centre, low, high, len(per_seed)), why
    if run.is_lecture:
        if x == "steps":
            return None, "a lecture result file has no env steps; left out of the --x steps figure"
        hi, lo, mean = curves(run, length)
        if len(mean) == 0:
            return None, f"a lecture file's curves start at episode {run_window(run)}; nothing to draw"
        xs = np.arange(len(mean)) + run_window(run)
        if band not in ("minmax", "none"):
            return Curve(xs, mean, None, None, None), "a lecture result file holds only min/max/mean: drawn without a band"
        return Curve(xs, mean, lo if band == "minmax" else None, hi if band == "minmax" else None, None), None
    window = run_window(run, length)
    if x == "episodes":
        per_seed = per_seed_smoothed(run, length, pooled_only=True)
        if per_seed.shape[1] == 0:
            return None, f"{length or run.scores.shape[1]} episodes, shorter than its window {window}; nothing to draw"
        xs = np.arange(per_seed.shape[1]) + window
    else:
        points = per_seed_points(run, length)
        if min(len(y) for _, y in points) == 0:
            return None, "shorter than its window; nothing to draw"
        # One env-step grid for every seed: each seed's curve is interpolated onto it, over the
        # steps every seed covers, then aggregated point by point.
        start, stop = max(s[0] for s, _ in points), min(s[-1] for s, _ in points)
        if start >= stop:
            return None, "its seeds cover no common env-step range; nothing to draw"
        xs = np.linspace(start, stop, GRID_POINTS)
        per_seed = np.stack([np.interp(xs, s, y) for s, y in points])
    centre, low, high = band_of(per_seed, band)
    return Curve(xs, centre, low, high, len(per_seed)), None


def panel_title(env: str, windows: set[int], intervals: set[int | None] = frozenset()) -> str:
    """The environment, the smoothing window of per-episode curves and the interval of
    step-evaluated ones ("evaluated every 5k steps", not smoothed)."""
    parts = [env]
    if len(windows) == 1:
        parts.append(f"smoothed over {min(windows)} episodes")
    elif windows:
        parts.append(f"smoothed over {min(windows)}-{max(windows)} episodes")
    if intervals:
        known = {i for i in intervals if i}
        every = f"every {thousands(known.pop())} steps" if len(known) == 1 and None not in intervals else "every N steps"
        parts.append(f"{'and ' if windows else ''}evaluated {every}{' (not smoothed)' if windows else ''}")
    return ", ".join(parts)


def new_figure(n_panels: int, size: str) -> tuple[Figure, list]:
    (width, height), font = SIZES[size]
    # A column stacks the panels; a page puts up to three side by side.
    ncols = 1 if size == "column" else min(n_panels, 3)
    nrows = -(-n_panels // ncols)
    fig_height = height * nrows if ncols == 1 else height * nrows * (0.9 if nrows > 1 else 1)
    with plt.rc_context(rc_params(font)):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width, fig_height), layout="constrained", squeeze=False)
    axes = list(axes.flat)
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def rc_params(font: float) -> dict:
    return {
        "font.size": font, "axes.titlesize": font, "axes.labelsize": font, "legend.fontsize": font - 1,
        "xtick.labelsize": font - 1, "ytick.labelsize": font - 1, "lines.linewidth": 1.4,
        "axes.spines.top": False, "axes.spines.right": False,
    }


def learning_curves(runs: Sequence[Run], x: str = "auto", title: str | None = None,
                    length: int | None = None, band: str = "minmax", threshold: float | str | None = None,
                    size: str = "page", labels: Sequence[str] | None = None,
                    lengths: Sequence[int | None] | None = None, facet: str | None = None,
                    y: str = "eval") -> tuple[Figure, list[str]]:
    """Learning curves, one panel per environment (and per value of the config key `facet`, e.g.
    agent.tau: then a run is labelled by the other keys it differs in and keeps its colour
    across panels).

    `band`: minmax (the lecture's thin min and max lines and the band between them), ci (95%
    bootstrap CI of the mean), iqr (median and interquartile range) or none. `x`: episodes,
    steps, or auto (steps when a run is step-evaluated, else episodes); on steps, the
    step-evaluated runs of a panel share one grid: every env step any of their seeds evaluated at. `threshold`: "env"
    draws each environment's reward threshold, a number draws that score. `lengths`: per run, the
    episodes to draw (runs compared over a common length); `length` applies one to all. `y`:
    eval (the score the run is measured by: its evaluations, or its training return where it
    did not evaluate) or train (every run's training return, smoothed over its window).
    Returns the figure and notes about runs that could not be drawn as asked.
    """
    if band not in BANDS:
        raise UserError(f"--band {band!r}: expected one of {', '.join(BANDS)}")
    if size not in SIZES:
        raise UserError(f"--size {size!r}: expected one of {', '.join(SIZES)}")
    if x not in ("auto", "episodes", "steps"):
        raise UserError(f"--x {x!r}: expected auto, episodes or steps")
    if y not in ("eval", "train"):
        raise UserError(f"--y {y!r}: expected eval or train")
    labels = list(labels) if labels is not None else run_labels(runs)
    lengths = list(lengths) if lengths is not None else [length] * len(runs)
    notes = []
    if y == "train":
        views = [training_view(r) for r in runs]
        notes += [f"{label}: no training returns recorded (a lecture result file); left out"
                  for label, v in zip(labels, views) if v is None]
        keep = [i for i, v in enumerate(views) if v is not None]
        if not keep:
            raise UserError("nothing to draw: no run recorded its training returns (lecture result files do not)")
        runs, labels, lengths = [views[i] for i in keep], [labels[i] for i in keep], [lengths[i] for i in keep]
    if x == "auto":  # a run evaluated every N env steps has no per-episode evaluation curve
        x = "steps" if any(is_step_evaluated(r) for r in runs) else "episodes"
    env_of = environments(runs)
    panel_of: list = list(env_of)
    if facet is not None:
        values, facet_labels = facets(runs, facet)
        labels = facet_labels or labels
        panel_of = list(zip(env_of, values))
    panels = list(dict.fromkeys(panel_of))
    per_panel = panel_curves(runs, panel_of, panels, x, band, lengths)
    drawable = [p for p in panels if any(curve is not None for _, curve, _ in per_panel[p])]
    if not drawable:  # an empty figure is not an answer: say why each run has no curve
        whys = notes + [f"{labels[i]}: {why}" for p in panels for i, _, why in per_panel[p]]
        raise UserError("nothing to draw: " + "; ".join(n.removesuffix("; nothing to draw") for n in whys))
    for panel in panels:
        if panel in drawable:
            notes += [f"{labels[i]}: {why}" for i, _, why in per_panel[panel] if why]
        else:  # all its runs are left out: no empty panel, but one note saying which and why
            name = panel if facet is None else f"{panel[0]}, {facet.rsplit('.', 1)[-1]} {panel[1]}"
            notes.append(f"no {name} panel: " + "; ".join(
                f"{labels[i]} left out, {why.removesuffix('; nothing to draw')}" for i, _, why in per_panel[panel]))
    panels = drawable
    colour_of = {label: i for i, label in enumerate(dict.fromkeys(labels))}  # one colour per label
    fig, axes = new_figure(len(panels), size)
    font = SIZES[size][1]
    kinds = {score_kind(runs[i]) for p in panels for i, curve, _ in per_panel[p] if curve is not None}
    if y == "train" or kinds == {TRAIN_RETURN}:
        y_label = "Training return"
    elif TRAIN_RETURN in kinds:
        y_label = "Score (evaluation or training return)"
    else:
        y_label = "Evaluation score"
    headings: list[str] = []
    handles: dict[str, object] = {}
    with plt.rc_context(rc_params(font)):
        for ax, panel in zip(axes, panels):
            env = panel[0] if facet is not None else panel
            windows, intervals, ends = set(), set(), []
            for i, curve, _ in per_panel[panel]:
                if curve is None:
                    continue
                run = runs[i]
                if is_step_evaluated(run):
                    intervals.add(eval_interval(run))
                else:
                    windows.add(run_window(run, lengths[i]))
                st = style(colour_of[labels[i]])
                ends += [curve.x[0], curve.x[-1]]
                # A run as long as its window has one smoothed point: a marker shows it, unclipped
                # where it sits on the axis' end, and a bar its band.
                one_point = len(curve.x) == 1
                (line,) = ax.plot(curve.x, curve.centre, linewidth=1.6 if size == "column" else 2.0, label=labels[i],
                                  marker="o" if one_point else None, clip_on=not one_point, **st)
                handles.setdefault(labels[i], line)
                if curve.low is not None and one_point:
                    ax.plot([curve.x[0]] * 2, [curve.low[0], curve.high[0]], color=st["color"], linewidth=1.0,
                            clip_on=False)
                elif curve.low is not None:
                    ax.fill_between(curve.x, curve.low, curve.high, color=st["color"], alpha=0.2, linewidth=0)
                    if band == "minmax":  # the lecture's thin max and min lines
                        ax.plot(curve.x, curve.high, color=st["color"], linewidth=0.6)
                        ax.plot(curve.x, curve.low, color=st["color"], linewidth=0.6)
            draw_threshold(ax, runs, env_of, env, threshold, handles)
            if facet is not None:  # the environment and window go above all panels
                ax.set_title(f"{facet.rsplit('.', 1)[-1]} {panel[1]}")
                headings.append(panel_title(env, windows, intervals))
            else:
                heading = panel_title(env, windows, intervals)
                if len(panels) > 1 and size != "column":  # side by side: the environment above its details
                    heading = heading.replace(", ", "\n", 1)
                ax.set_title(heading if title is None or len(panels) > 1 else title)
            ax.set_xlabel("Episodes" if x == "episodes" else "Env steps")
            if x == "steps":
                ax.xaxis.set_major_formatter(FuncFormatter(thousands))
            # One y label per row: every panel measures the same score, and the room goes to the curves.
            ax.set_ylabel(y_label if ax.get_subplotspec().colspan.start == 0 else "")
            ax.grid(alpha=0.3, linewidth=0.5)
            ax.margins(x=0)
            if x == "episodes":  # matplotlib's default ticks, but whole episodes
                ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", steps=[1, 2, 2.5, 5, 10], integer=True))
            if min(ends) == max(ends) > 0:  # one point: an axis from 0 to it, not matplotlib's 4.8 to 5.2
                ax.set_xlim(0, max(ends))
        if facet is not None:
            fig.suptitle(title if title is not None else "; ".join(dict.fromkeys(headings)))
            share_y(axes[:len(panels)], [p[0] for p in panels])
        elif title is not None and len(panels) > 1:
            fig.suptitle(title)
        if band != "none" and handles:
            handles[BAND_LABELS[band]] = Patch(facecolor="0.5", alpha=0.35, linewidth=0)
        if handles:
            add_legend(fig, list(handles.values()), list(handles))
        fit_titles(fig, axes)
    return fig, notes


def panel_curves(runs: Sequence[Run], panel_of: list, panels: list, x: str, band: str,
                 lengths: Sequence[int | None]) -> dict[object, list[tuple[int, Curve | None, str | None]]]:
    """Per panel, its runs in order as (index, curve or None, note or None). The step-evaluated
    runs of a panel share one env-step grid."""
    per_panel = {}
    for panel in panels:
        members = [i for i, p in enumerate(panel_of) if p == panel]
        grid = eval_grid([runs[i] for i in members if is_step_evaluated(runs[i])])
        per_panel[panel] = [(i, *run_curve(runs[i], x, band, lengths[i], grid)) for i in members]
    return per_panel


def share_y(axes: list, envs: list[str]) -> None:
    """Panels of one environment on one y scale, labelled once per row: facets compare at a glance."""
    for env in dict.fromkeys(envs):
        group = [ax for ax, e in zip(axes, envs) if e == env]
        low = min(ax.get_ylim()[0] for ax in group)
        high = max(ax.get_ylim()[1] for ax in group)
        for ax in group:
            ax.set_ylim(low, high)
    for ax in axes:
        if ax.get_subplotspec().colspan.start > 0:
            ax.set_ylabel("")


def add_legend(fig: Figure, handles: list, labels: list[str]) -> None:
    """A legend below the panels with as many columns as fit the figure's width (measured)."""
    renderer = fig.canvas.get_renderer()
    for ncols in range(len(labels), 0, -1):
        legend = fig.legend(handles, labels, loc="outside lower center", ncols=ncols, frameon=False,
                            handlelength=2.6)
        if ncols == 1 or legend.get_window_extent(renderer).width <= 0.98 * fig.bbox.width:
            return
        legend.remove()


def fit_titles(fig: Figure, axes: list) -> None:
    """Keep every title inside the figure and clear of its neighbours'.

    Constrained layout makes room for a title's height but not its width (a title may overhang
    its panel), so three panels on a page ran the right panel's title off the figure. A title
    wider than its column is broken at spaces; then, where an outer panel's title still overhangs
    the figure's edge, the panels are laid out in an area narrower by that much.
    """
    renderer = fig.canvas.get_renderer()
    width, pad = fig.bbox.width, fig.dpi * 4 / 72  # 4 points clear of the edge
    for ax in axes:
        wrap_to(ax.title, width / ax.get_subplotspec().get_gridspec().ncols - 2 * pad, renderer)
    if fig._suptitle is not None:
        wrap_to(fig._suptitle, width - 2 * pad, renderer)
    left = right = 0.0
    for _ in range(4):  # narrower panels move an outer title a little further out: settle it
        fig.draw_without_rendering()
        extents = [ax.title.get_window_extent(renderer) for ax in axes if ax.title.get_text()]
        more_left = max([pad - e.x0 for e in extents] + [0.0])
        more_right = max([e.x1 + pad - width for e in extents] + [0.0])
        if more_left < 0.5 and more_right < 0.5:  # within half a pixel
            return
        left, right = left + more_left, right + more_right
        fig.get_layout_engine().set(rect=(left / width, 0, 1 - (left + right) / width, 1))


def wrap_to(text, room: float, renderer) -> None:
    """Break each line of `text` at spaces (never inside a word) so each line is at most `room`
    pixels wide where the words allow it."""
    def fits(line: str) -> bool:
        text.set_text(line)
        return text.get_window_extent(renderer).width <= room

    original, lines = text.get_text(), []
    for line in original.split("\n"):
        words = line.split(" ")
        current = words[0]
        for word in words[1:]:
            if fits(f"{current} {word}"):
                current = f"{current} {word}"
            else:
                lines.append(current)
                current = word
        lines.append(current)
    text.set_text("\n".join(lines))


def draw_threshold(ax, runs: Sequence[Run], panel_of: list[str], env: str, threshold: float | str | None,
                   handles: dict) -> None:
    if threshold is None:
        return
    if threshold == "env":
        values = {r.reward_threshold for r, e in zip(runs, panel_of) if e == env and not r.is_lecture}
        values.discard(None)
        if len(values) != 1:
            return
        value, label = float(values.pop()), "reward threshold"
    else:
        value, label = float(threshold), f"score {float(threshold):g}"
    line = ax.axhline(value, color="0.35", linewidth=0.9, linestyle=(0, (4, 2)), zorder=0)
    handles.setdefault(label, line)


def performance_profile(per_variant: dict[str, Sequence[np.ndarray]], size: str = "page",
                        title: str | None = None) -> Figure:
    """rliable's performance profile (Agarwal et al. 2021, Sec. 4.2): for each normalised score
    tau, the fraction of runs scoring above it, averaged over environments, with a pointwise
    stratified bootstrap 95% band."""
    if size not in SIZES:
        raise UserError(f"--size {size!r}: expected one of {', '.join(SIZES)}")
    everything = np.concatenate([np.concatenate(list(v)) for v in per_variant.values()])
    top = max(1.1, float(np.max(everything)) * 1.05)
    taus = np.linspace(min(0.0, float(np.min(everything))), top, 301)
    fig, (ax,) = new_figure(1, size)
    with plt.rc_context(rc_params(SIZES[size][1])):
        for i, (variant, per_env) in enumerate(per_variant.items()):
            st = style(i)
            ax.plot(taus, score_distribution(per_env, taus), label=variant, linewidth=1.6, **st)
            low, high = profile_band(per_env, taus)
            ax.fill_between(taus, low, high, color=st["color"], alpha=0.2, linewidth=0)
        ax.axvline(1.0, color="0.35", linewidth=0.9, linestyle=(0, (4, 2)), zorder=0)
        ax.set_xlabel("Normalised score $\\tau$ (0: random policy, 1: reward threshold)"
                      if size == "page" else "Normalised score $\\tau$\n(0: random policy, 1: reward threshold)")
        ax.set_ylabel("Fraction of runs > $\\tau$")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3, linewidth=0.5)
        ax.set_title(title or "Performance profile (95% bootstrap CI)")
        add_legend(fig, *ax.get_legend_handles_labels())
        fit_titles(fig, [ax])
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write `fig` atomically in the format of the file extension."""
    from dqnrun.results import write_with

    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise UserError(f"cannot write {path}: use a .png, .svg or .pdf file name")
    try:
        write_with(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=300 if fmt == "png" else None))
    finally:
        plt.close(fig)  # also when the write fails: a long session must not collect open figures
    return path


