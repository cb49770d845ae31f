"""The lecture's learning-curve figure for any number of runs (matplotlib; no torch import)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; works without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dqnrun.errors import UserError  # noqa: E402
from dqnrun.results import Run  # noqa: E402
from dqnrun.stats import curves, run_window  # noqa: E402

FORMATS = ("png", "svg", "pdf")


def x_values(run: Run, n: int, x: str) -> np.ndarray | None:
    """x coordinates of a run's n smoothed points: the episode (or mean env step) ending each window."""
    window = run_window(run)
    if x == "episodes":
        return np.arange(n) + window
    if run.is_lecture:
        return None
    steps = run.steps[:, window - 1 : window - 1 + n]
    return np.nanmean(steps, axis=0)


def learning_curves(runs: list[Run], x: str = "episodes", title: str | None = None,
                    length: int | None = None) -> tuple[Figure, list[str]]:
    """Per run: a thick mean line, thin min and max lines, a translucent band between them.

    Returns the figure and notes about runs that could not be drawn as asked.
    """
    fig, ax = plt.subplots(figsize=(12, 6), layout="constrained")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    notes = []
    drawn = 0
    for i, run in enumerate(runs):
        hi, lo, mean = curves(run, length)
        xs = x_values(run, len(mean), x)
        if xs is None:
            notes.append(f"{run.name}: a lecture result file has no env steps; left out of the --x steps figure")
            continue
        color = colors[drawn % len(colors)]
        drawn += 1
        ax.plot(xs, mean, color=color, linewidth=2, label=run.name)
        ax.plot(xs, hi, color=color, linewidth=0.8)
        ax.plot(xs, lo, color=color, linewidth=0.8)
        ax.fill_between(xs, lo, hi, color=color, alpha=0.25, linewidth=0)
    ax.set_title(title or " vs ".join(r.name for r in runs))
    ax.set_xlabel("Episodes" if x == "episodes" else "Env steps")
    ax.set_ylabel("Score")
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend()
    return fig, notes


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write `fig` atomically in the format of the file extension."""
    from dqnrun.results import write_with

    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise UserError(f"cannot write {path}: use a .png, .svg or .pdf file name")
    write_with(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=120))
    plt.close(fig)
    return path
