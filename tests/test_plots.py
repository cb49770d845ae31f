from pathlib import Path

import matplotlib.collections as mcoll
import numpy as np
import pytest

from dqnrun.errors import UserError
from dqnrun.plots import learning_curves, save_figure
import dataclasses

from dqnrun.results import run_from_data


def fake_run(name, n_episodes=30, window=5, seeds=3, offset=0.0, env="CartPole-v1", root="."):
    data = fake_run_data(name, n_episodes, window, seeds, offset, env)
    return run_from_data(data, Path(root) / name / "results.joblib")


def fake_run_data(name, n_episodes=30, window=5, seeds=3, offset=0.0, env="CartPole-v1"):
    rng = np.random.default_rng(len(name))
    scores = rng.random((seeds, n_episodes)) * 100 + offset
    smoothed = np.stack([np.convolve(s, np.ones(window) / window, "valid") for s in scores])
    steps = np.cumsum(rng.integers(10, 50, (seeds, n_episodes)), axis=1).astype(float)
    data = {"format": "dqnrun-run", "name": name, "scores": scores, "smoothed": smoothed, "steps": steps,
            "window": window, "episodes": np.full(seeds, n_episodes), "max_score": smoothed.max(0),
            "min_score": smoothed.min(0), "mean_score": smoothed.mean(0), "env_id": env,
            "reward_threshold": 475.0}
    return data


def lecture_run(name, n=226):
    curve = np.linspace(0, 500, n)
    return run_from_data({"max_score": curve + 10, "min_score": curve - 10, "mean_score": curve}, Path(f"{name}.joblib"))


def legend_texts(fig):
    return [t.get_text() for t in fig.legends[0].get_texts()]


def bands(ax):
    return [c for c in ax.collections if isinstance(c, mcoll.PolyCollection)]


def test_default_is_the_lectures_figure_mean_min_max_and_band():
    runs = [fake_run("dqn"), fake_run("ddqn", offset=50)]
    fig, notes = learning_curves(runs)
    ax = fig.axes[0]
    assert notes == []
    assert len(ax.lines) == 6  # mean, max, min per run
    assert len(bands(ax)) == 2
    assert legend_texts(fig) == ["dqn", "ddqn", "mean, min-max over seeds"]
    assert ax.get_xlabel() == "Episodes" and ax.get_ylabel() == "Evaluation score"
    assert ax.get_title() == "CartPole-v1, smoothed over 5 episodes"
    mean, high, low = ax.lines[:3]
    assert mean.get_linewidth() > high.get_linewidth()
    np.testing.assert_allclose(mean.get_ydata(), runs[0].mean_score)
    np.testing.assert_allclose(high.get_ydata(), runs[0].max_score)
    np.testing.assert_allclose(low.get_ydata(), runs[0].min_score)
    np.testing.assert_allclose(mean.get_xdata(), np.arange(26) + 5)  # episode ending each window
    assert mean.get_color() == high.get_color() != ax.lines[3].get_color()
    assert mean.get_linestyle() != ax.lines[3].get_linestyle()


def test_eight_runs_differ_in_colour_and_line_style():
    fig, _ = learning_curves([fake_run(f"r{i}") for i in range(8)], band="none")
    lines = fig.axes[0].lines
    assert len({line.get_color() for line in lines}) == 8
    assert len({line.get_linestyle() for line in lines}) >= 4


def test_ci_band_brackets_the_mean_and_iqr_band_is_around_the_median():
    run = fake_run("dqn", seeds=5)
    smoothed = run.smoothed
    fig, _ = learning_curves([run], band="ci")
    ax = fig.axes[0]
    assert legend_texts(fig)[-1] == "mean, 95% bootstrap CI" and len(ax.lines) == 1
    (path,) = bands(ax)[0].get_paths()
    ys = path.vertices[:, 1]
    assert ys.min() >= smoothed.min() and ys.max() <= smoothed.max()
    np.testing.assert_allclose(ax.lines[0].get_ydata(), smoothed.mean(0))
    fig, _ = learning_curves([run], band="iqr")
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), np.median(smoothed, axis=0))
    fig, _ = learning_curves([run], band="none")
    assert bands(fig.axes[0]) == [] and legend_texts(fig) == ["dqn"]


def test_threshold_line_is_the_environments_or_a_given_score():
    fig, _ = learning_curves([fake_run("dqn")], threshold="env")
    assert fig.axes[0].lines[-1].get_ydata()[0] == 475.0 and "reward threshold" in legend_texts(fig)
    fig, _ = learning_curves([fake_run("dqn")], threshold=450.0)
    assert fig.axes[0].lines[-1].get_ydata()[0] == 450.0 and "score 450" in legend_texts(fig)


def test_the_legend_fits_the_figure_and_step_ticks_read_in_thousands():
    from dqnrun.plots import thousands

    for size in ("column", "page"):
        fig, _ = learning_curves([fake_run(f"a-long-run-label-{i}") for i in range(5)], size=size, threshold="env")
        legend = fig.legends[0]
        renderer = fig.canvas.get_renderer()
        assert legend.get_window_extent(renderer).width <= fig.bbox.width
        assert len(legend.get_texts()) == 7
    fig, _ = learning_curves([fake_run("dqn"), fake_run("ddqn")])
    assert fig.legends[0]._ncols == 3  # one row on a page
    assert [thousands(v) for v in (500, 20_000, 1_500_000)] == ["500", "20k", "1.5M"]


def test_column_size_is_one_column_wide():
    fig, _ = learning_curves([fake_run("dqn")], size="column")
    assert fig.get_size_inches()[0] == pytest.approx(3.3)
    assert fig.axes[0].title.get_fontsize() == 8


def test_steps_axis_puts_every_seed_on_one_grid_and_skips_lecture_files():
    run = fake_run("dqn")
    fig, notes = learning_curves([run, lecture_run("old")], x="steps", band="none")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "Env steps" and len(ax.lines) == 1
    steps, smoothed = run.steps[:, 4:], run.smoothed
    grid = ax.lines[0].get_xdata()
    assert grid[0] == steps[:, 0].max() and grid[-1] == steps[:, -1].min()
    expected = np.mean([np.interp(grid, s, y) for s, y in zip(steps, smoothed)], axis=0)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), expected)
    assert "old" in notes[0]


def test_one_panel_per_environment_and_labels_by_path():
    runs = [fake_run("ddqn", root="a"), fake_run("ddqn", root="b", env="Acrobot-v1")]
    fig, _ = learning_curves(runs)
    assert [ax.get_title().split("\n")[0] for ax in fig.axes] == ["CartPole-v1", "Acrobot-v1"]  # details below
    assert legend_texts(fig)[:2] == ["a/ddqn", "b/ddqn"]


def test_lecture_files_plot_on_the_episode_axis():
    fig, _ = learning_curves([lecture_run("old")])
    assert len(fig.axes[0].lines) == 3


def test_a_shorter_length_recomputes_the_curves():
    run = fake_run("dqn", n_episodes=30)
    fig, _ = learning_curves([run], length=20)
    assert len(fig.axes[0].lines[0].get_ydata()) == 16


def test_a_run_as_long_as_its_window_is_one_marked_point():
    run = fake_run("dqn", n_episodes=5)
    fig, notes = learning_curves([run])
    ax = fig.axes[0]
    (mean,) = [line for line in ax.lines if line.get_label() == "dqn"]
    assert notes == [] and len(mean.get_xdata()) == 1 and mean.get_marker() == "o"
    assert not mean.get_clip_on()  # whole, though it sits on the axis' end
    # The axis runs from 0 to the last episode in whole episodes (matplotlib: 4.8 to 5.2).
    assert ax.get_xlim() == (0, 5)
    ticks = [t for t in ax.get_xticks() if 0 <= t <= 5]
    assert ticks == [0, 1, 2, 3, 4, 5]
    # The band of one point is a bar from the seeds' min to their max.
    (bar,) = [line for line in ax.lines if len(line.get_xdata()) == 2]
    np.testing.assert_allclose(bar.get_ydata(), [run.min_score[0], run.max_score[0]])
    np.testing.assert_array_equal(bar.get_xdata(), [5, 5])
    # Longer curves keep matplotlib's ticks, as whole episodes, from the first smoothed point.
    fig, _ = learning_curves([fake_run("dqn", n_episodes=12)])
    ax = fig.axes[0]
    assert ax.get_xlim() == (5, 12) and all(t == int(t) for t in ax.get_xticks())


def test_a_run_shorter_than_its_window_is_reported():
    run = fake_run("short", n_episodes=30)
    run = dataclasses.replace(run, window=40)  # recorded by an older release
    fig, notes = learning_curves([run, fake_run("dqn")])
    assert notes == ["short: 30 episodes, shorter than its window 40; nothing to draw"]
    assert legend_texts(fig)[0] == "dqn"


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
    run = fake_run("half", n_episodes=30, seeds=2)
    run.scores[1, 10:] = np.nan  # seed 2 diverged at episode 10
    run = dataclasses.replace(run, seeds=(1, 2), aggregated_seeds=(1,))
    fig, _ = learning_curves([run], length=20)
    mean = fig.axes[0].lines[0].get_ydata()
    np.testing.assert_allclose(mean, np.convolve(run.scores[0, :20], np.ones(5) / 5, "valid"))


def test_a_figure_with_no_curve_is_a_user_error_naming_why():
    run = dataclasses.replace(fake_run("short", n_episodes=30), window=40)
    with pytest.raises(UserError, match=r"^nothing to draw: short: 30 episodes, shorter than its window 40"):
        learning_curves([run])


def step_run(name="stepped", root=".", **changes):
    from tests_helpers import step_run_data

    return run_from_data({**step_run_data(name), **changes}, Path(root) / name / "results.joblib")


def test_a_step_evaluated_run_draws_the_mean_of_its_seeds_on_env_steps():
    # Seed 1 evaluated at 100, 200, 300 (10, 20, 40); seed 2 at 150, 250 (30, 50). On the grid of
    # every evaluation step, where both seeds have a value: 150 -> (15 + 30) / 2, 200 -> (20 + 40) / 2,
    # 250 -> (30 + 50) / 2. Not smoothed; min and max are the two seeds'.
    fig, notes = learning_curves([step_run()])
    ax = fig.axes[0]
    assert notes == [] and ax.get_xlabel() == "Env steps"
    mean, high, low = ax.lines[:3]
    np.testing.assert_array_equal(mean.get_xdata(), [150, 200, 250])
    np.testing.assert_array_equal(mean.get_ydata(), [22.5, 30.0, 40.0])
    np.testing.assert_array_equal(high.get_ydata(), [30, 40, 50])
    np.testing.assert_array_equal(low.get_ydata(), [15, 20, 30])
    assert ax.get_title() == "CartPole-v1, evaluated every N steps"


def test_a_mixed_figure_puts_both_runs_on_env_steps_one_line_each():
    per_episode, stepped = fake_run("dqn"), step_run()
    fig, notes = learning_curves([per_episode, stepped], band="none")
    ax = fig.axes[0]
    assert notes == [] and ax.get_xlabel() == "Env steps"
    assert [line.get_label() for line in ax.lines] == ["dqn", "stepped"]
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), [22.5, 30.0, 40.0])
    assert ax.get_title() == "CartPole-v1, smoothed over 5 episodes, and evaluated every N steps (not smoothed)"
    # Two step-evaluated runs share one grid: the other run's evaluation steps (175) are points of
    # this one's curve too, interpolated.
    other = step_run("other", eval_steps=np.array([[175.0, 275.0, np.nan], [175.0, 275.0, np.nan]]))
    fig, _ = learning_curves([stepped, other], band="none")
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_xdata(), [150, 175, 200, 250])
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_ydata(), [22.5, (17.5 + 35) / 2, 30.0, 40.0])
    # On the episode axis a step-evaluated run has no curve: left out, saying why.
    fig, notes = learning_curves([per_episode, stepped], x="episodes")
    assert notes == ["stepped: evaluated every N env steps: its curve is drawn with --x steps (or auto)"]
    with pytest.raises(UserError, match="nothing to draw: stepped: evaluated every N env steps"):
        learning_curves([stepped], x="episodes")


def test_a_seed_without_evaluations_is_left_out_of_the_curve_with_a_note():
    nan = np.nan
    run = step_run(eval_steps=np.array([[100.0, 200.0, 300.0], [nan, nan, nan]]),
                   eval_scores=np.array([[10.0, 20.0, 40.0], [nan, nan, nan]]))
    fig, notes = learning_curves([run], band="none")
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_ydata(), [10, 20, 40])
    assert notes == ["stepped: 1 of its 2 seeds ended before their first evaluation: drawn without them"]


def configured(name, lr, tau, offset=0.0):
    from dqnrun.config import config_from_dict

    run = fake_run(name, offset=offset)
    config = config_from_dict({"variant": "dueling", "name": name, "agent": {"learning_rate": lr, "tau": tau}})
    return dataclasses.replace(run, config=config)


def test_facets_give_a_panel_per_value_one_colour_per_label_and_one_y_scale():
    runs = [configured(f"lr{lr}-tau{tau}", lr, tau, offset=100 * (tau == 0.05))
            for lr in (0.0003, 0.0007) for tau in (0.01, 0.05)]
    fig, _ = learning_curves(runs, band="none", facet="agent.tau")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["tau 0.01", "tau 0.05"]
    assert fig._suptitle.get_text() == "CartPole-v1, smoothed over 5 episodes"
    assert legend_texts(fig) == ["learning_rate 0.0003", "learning_rate 0.0007"]
    for ax in axes:  # the same learning rate has the same colour and style in both panels
        assert [line.get_color() for line in ax.lines] == [axes[0].lines[0].get_color(), axes[0].lines[1].get_color()]
        assert ax.get_ylim() == axes[0].get_ylim()
    np.testing.assert_allclose(axes[1].lines[1].get_ydata(), runs[3].mean_score)  # lr 0.0007, tau 0.05
    assert axes[0].get_ylabel() == "Evaluation score" and axes[1].get_ylabel() == ""


def test_a_facet_key_that_is_not_a_config_key_is_one_line_with_the_nearest_key():
    with pytest.raises(UserError, match=r"^--facet tau: not a config key of these runs; did you mean agent.tau\?$"):
        learning_curves([configured("a", 0.001, 0.01)], facet="tau")


def test_the_ninth_run_does_not_repeat_the_first_runs_look():
    from dqnrun.plots import style

    looks = {(style(i)["color"], str(style(i)["linestyle"])) for i in range(64)}
    assert len(looks) == 64 and style(0) != style(8) and style(0)["color"] == style(8)["color"]


def test_a_run_that_never_evaluated_says_nothing_to_draw_once():
    nan = np.full((2, 3), np.nan)
    with pytest.raises(UserError) as caught:
        learning_curves([step_run("never", eval_steps=nan, eval_scores=nan)])
    assert str(caught.value) == "nothing to draw: never: no evaluation common to its seeds"


def test_training_returns_draw_on_episodes_and_env_steps():
    # A step-evaluated run's per-episode scores are its training returns (seed 1: 1, 2, 3 at env
    # steps 120, 260, 300; seed 2: 4, 5, 6 at 90, 180, 260), window 1. On episodes: the seeds' mean.
    fig, notes = learning_curves([step_run()], y="train", x="episodes", band="none")
    ax = fig.axes[0]
    assert notes == [] and ax.get_ylabel() == "Training return" and ax.get_xlabel() == "Episodes"
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [2.5, 3.5, 4.5])
    # On env steps: both seeds interpolated over the range both cover, [120, 260].
    fig, _ = learning_curves([step_run()], y="train", x="steps", band="none")
    xs, ys = fig.axes[0].lines[0].get_xdata(), fig.axes[0].lines[0].get_ydata()
    assert xs[0] == 120 and xs[-1] == 260
    np.testing.assert_allclose(ys, (np.interp(xs, [120, 260, 300], [1, 2, 3]) + np.interp(xs, [90, 180, 260], [4, 5, 6])) / 2)
    # A run evaluated after every episode draws its recorded training returns, smoothed over its window.
    run = fake_run("dqn")
    returns = np.arange(run.scores.size, dtype=float).reshape(run.scores.shape) % 7
    fig, _ = learning_curves([dataclasses.replace(run, train_returns=returns)], y="train", x="episodes", band="none")
    expected = np.mean([np.convolve(r, np.ones(5) / 5, "valid") for r in returns], axis=0)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), expected)
    # Lecture files recorded none: left out with a note, or nothing to draw.
    _, notes = learning_curves([step_run(), lecture_run("old")], y="train", x="episodes")
    assert notes == ["old: no training returns recorded (a lecture result file); left out"]
    with pytest.raises(UserError, match="no run recorded its training returns"):
        learning_curves([lecture_run("old")], y="train")
    with pytest.raises(UserError, match="--y 'loss': expected eval or train"):
        learning_curves([step_run()], y="loss")


def test_on_env_steps_each_seed_keeps_its_own_episodes():
    # Seeds with a max_steps budget end after different numbers of episodes: seed 2's long
    # episodes must not cut seed 1's curve short (both cover env steps up to 400 here).
    nan = np.nan
    data = {"format": "dqnrun-run", "name": "budget", "window": 1, "env_id": "CartPole-v1", "seeds": [1, 2],
            "scores": np.array([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, nan, nan]]),
            "smoothed": np.array([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, nan, nan]]),
            "steps": np.array([[100.0, 200.0, 300.0, 400.0], [200.0, 400.0, nan, nan]]),
            "episodes": np.array([4, 2]), "max_score": np.array([10.0, 20.0]),
            "min_score": np.array([1.0, 2.0]), "mean_score": np.array([5.5, 11.0])}
    fig, _ = learning_curves([run_from_data(data, Path("budget/results.joblib"))], x="steps", band="none")
    xs, ys = fig.axes[0].lines[0].get_xdata(), fig.axes[0].lines[0].get_ydata()
    assert xs[0] == 200 and xs[-1] == 400
    np.testing.assert_allclose(ys, (np.interp(xs, [100, 200, 300, 400], [1, 2, 3, 4]) + np.interp(xs, [200, 400], [10, 20])) / 2)


def saved_run(root, data):
    """`data` written as a run directory's results.joblib, as the CLI reads it."""
    import joblib

    run_dir = Path(root) / data["name"]
    run_dir.mkdir(parents=True)
    joblib.dump(data, run_dir / "results.joblib")
    return run_dir


def invoke_plot(*args):
    from typer.testing import CliRunner

    from dqnrun.cli import app

    return CliRunner().invoke(app, ["plot", *map(str, args)], env={"COLUMNS": "200"})


def test_a_panel_whose_runs_are_all_left_out_is_not_drawn_and_one_note_says_why(tmp_path):
    from tests_helpers import step_run_data

    cartpole, breakout = fake_run("dqn"), step_run("breakout", env_id="MinAtar/Breakout-v1")
    fig, notes = learning_curves([cartpole, breakout], x="episodes")
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["CartPole-v1, smoothed over 5 episodes"]
    assert notes == ["no MinAtar/Breakout-v1 panel: breakout left out, evaluated every N env steps: "
                     "its curve is drawn with --x steps (or auto)"]
    # Through the CLI: the note is one line; with every run left out, exit 2 and no file.
    run = saved_run(tmp_path, step_run_data("breakout", env="MinAtar/Breakout-v1"))
    result = invoke_plot(saved_run(tmp_path, fake_run_data("dqn")), run, "--x", "episodes", "-o", tmp_path / "mix.png")
    assert result.exit_code == 0 and result.output.splitlines()[0] == "note: " + notes[0]
    result = invoke_plot(run, "--x", "episodes", "-o", tmp_path / "f.png")
    assert result.exit_code == 2 and not (tmp_path / "f.png").exists()
    assert result.output.strip().splitlines() == [
        "error: nothing to draw: breakout: evaluated every N env steps: its curve is drawn with --x steps (or auto)"]


def title_extents(fig):
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    return [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.get_visible()]


def test_three_panels_on_a_page_keep_every_title_axis_and_curve_inside_the_figure():
    runs = [fake_run("ddqn", window=25, n_episodes=60, env=env, root=env.split("/")[0])
            for env in ("CartPole-v1", "Acrobot-v1", "MinAtar/Breakout-v1")]
    fig, _ = learning_curves(runs, x="steps")
    extents = title_extents(fig)
    width = fig.bbox.width
    assert all(0 <= e.x0 and e.x1 <= width for e in extents)
    assert all(left.x1 < right.x0 for left, right in zip(extents, extents[1:]))  # clear of each other
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:  # the panel with its tick labels, the curve's last point included
        box = ax.get_tightbbox(renderer)
        assert 0 <= box.x0 and box.x1 <= width
        assert ax.transData.transform((ax.lines[0].get_xdata()[-1], 0))[0] <= width
    # Broken only as far as needed: the environment, then its details on one line.
    assert fig.axes[2].get_title() == "MinAtar/Breakout-v1\nsmoothed over 25 episodes"
    assert [ax.get_ylabel() for ax in fig.axes] == ["Evaluation score", "", ""]  # one per row


def test_a_title_wider_than_its_column_breaks_between_words():
    title = "DQN against Double DQN on CartPole with a deliberately long figure title"
    fig, _ = learning_curves([fake_run("dqn")], size="column", title=title)
    (extent,) = title_extents(fig)
    assert 0 <= extent.x0 and extent.x1 <= fig.bbox.width
    lines = fig.axes[0].get_title().split("\n")
    assert len(lines) > 1 and " ".join(lines) == title


def test_the_default_file_name_names_the_first_runs_and_counts_the_rest(tmp_path):
    from dqnrun.cli import default_plot_path, plot_stem

    assert plot_stem(["ddqn", "lecture/ddqn"]) == "ddqn-vs-lecture_ddqn"  # short: every name, as before
    many = ["api-cfg", "api-dict", "ddqn", "ddqn-2", "dqn", "dueling", "dueling-per", "per"] + [f"r{i}" for i in range(18)]
    assert plot_stem(many) == "api-cfg-vs-api-dict-vs-ddqn-and-23-more"
    long = "dueling-per-lunarlander-lr0.0003-tau0.005-batch128-hidden256x256-huber-grad10-seed-sweep"
    assert plot_stem([long, "dqn"]) == "dueling-per-lunarlander-lr0.0003-tau0.005-batch128-hidden256x256-and-1-more"
    assert plot_stem([long]) == "dueling-per-lunarlander-lr0.0003-tau0.005-batch128-hidden256x256-huber-grad10"
    for stem in (plot_stem(many), plot_stem([long]), plot_stem([long, "dqn"])):
        assert len(stem) <= 80 and stem[-1] not in "-_"
    # Unique: an existing figure of that name gets -2, then -3.
    (tmp_path / "api-cfg-vs-api-dict-vs-ddqn-and-23-more.png").touch()
    assert default_plot_path(tmp_path, many).name == "api-cfg-vs-api-dict-vs-ddqn-and-23-more-2.png"
    (tmp_path / "api-cfg-vs-api-dict-vs-ddqn-and-23-more-2.png").touch()
    assert default_plot_path(tmp_path, many).name == "api-cfg-vs-api-dict-vs-ddqn-and-23-more-3.png"


def test_plot_without_output_in_a_folder_of_many_runs_writes_a_readable_name(tmp_path):
    for i in range(6):
        saved_run(tmp_path, fake_run_data(f"a-rather-long-experiment-name-{i}"))
    result = invoke_plot("--root", tmp_path)
    expected = "a-rather-long-experiment-name-0-vs-a-rather-long-experiment-name-1-and-4-more.png"
    assert result.exit_code == 0 and (tmp_path / expected).is_file(), result.output
    assert result.output.split()[-1] == str(tmp_path / expected)
