from pathlib import Path

import matplotlib.collections as mcoll
import numpy as np
import pytest

from dqnrun.errors import UserError
from dqnrun.plots import learning_curves, save_figure
from dqnrun.results import run_from_data


def fake_run(name, n_episodes=30, window=5, seeds=3, offset=0.0):
    rng = np.random.default_rng(len(name))
    scores = rng.random((seeds, n_episodes)) * 100 + offset
    smoothed = np.stack([np.convolve(s, np.ones(window) / window, "valid") for s in scores])
    steps = np.cumsum(rng.integers(10, 50, (seeds, n_episodes)), axis=1).astype(float)
    data = {"format": "dqnrun-run", "name": name, "scores": scores, "smoothed": smoothed, "steps": steps,
            "window": window, "episodes": np.full(seeds, n_episodes), "max_score": smoothed.max(0),
            "min_score": smoothed.min(0), "mean_score": smoothed.mean(0)}
    return run_from_data(data, Path(name) / "results.joblib")


def lecture_run(name, n=226):
    curve = np.linspace(0, 500, n)
    return run_from_data({"max_score": curve + 10, "min_score": curve - 10, "mean_score": curve}, Path(f"{name}.joblib"))


def test_figure_has_the_lectures_lines_and_bands():
    runs = [fake_run("dqn"), fake_run("ddqn", offset=50)]
    fig, notes = learning_curves(runs)
    ax = fig.axes[0]
    assert notes == []
    assert len(ax.lines) == 6  # mean, max, min per run
    bands = [c for c in ax.collections if isinstance(c, mcoll.PolyCollection)]
    assert len(bands) == 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["dqn", "ddqn"]
    assert ax.get_xlabel() == "Episodes" and ax.get_ylabel() == "Score"
    assert ax.get_title() == "dqn vs ddqn"
    mean, high, low = ax.lines[:3]
    assert mean.get_linewidth() > high.get_linewidth()
    np.testing.assert_allclose(mean.get_ydata(), runs[0].mean_score)
    np.testing.assert_allclose(high.get_ydata(), runs[0].max_score)
    np.testing.assert_allclose(mean.get_xdata(), np.arange(26) + 5)  # episode ending each window
    assert mean.get_color() == high.get_color() != ax.lines[3].get_color()


def test_steps_axis_uses_mean_env_steps_and_skips_lecture_files():
    run = fake_run("dqn")
    fig, notes = learning_curves([run, lecture_run("old")], x="steps")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "Env steps" and len(ax.lines) == 3
    np.testing.assert_allclose(ax.lines[0].get_xdata(), run.steps[:, 4:].mean(axis=0))
    assert "old" in notes[0]


def test_lecture_files_plot_on_the_episode_axis():
    fig, _ = learning_curves([lecture_run("old")])
    assert len(fig.axes[0].lines) == 3


def test_a_shorter_length_recomputes_the_curves():
    run = fake_run("dqn", n_episodes=30)
    fig, _ = learning_curves([run], length=20)
    assert len(fig.axes[0].lines[0].get_ydata()) == 16


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")])
def test_format_follows_the_extension(tmp_path, suffix, magic):
    fig, _ = learning_curves([fake_run("dqn")])
    path = save_figure(fig, tmp_path / f"f{suffix}")
    assert path.read_bytes().startswith(magic)


def test_unknown_extension_is_a_user_error(tmp_path):
    fig, _ = learning_curves([fake_run("dqn")])
    with pytest.raises(UserError, match="use a .png, .svg or .pdf"):
        save_figure(fig, tmp_path / "f.jpg")


def test_plots_and_statistics_never_import_torch():
    import subprocess
    import sys

    code = "import sys, dqnrun.plots, dqnrun.stats; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_shortened_curves_pool_the_same_seeds_as_the_run():
    import dataclasses

    run = fake_run("half", n_episodes=30, seeds=2)
    run.scores[1, 10:] = np.nan  # seed 2 diverged at episode 10
    run = dataclasses.replace(run, seeds=(1, 2), aggregated_seeds=(1,))
    fig, _ = learning_curves([run], length=20)
    mean = fig.axes[0].lines[0].get_ydata()
    np.testing.assert_allclose(mean, np.convolve(run.scores[0, :20], np.ones(5) / 5, "valid"))
