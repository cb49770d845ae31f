"""`dqnrun compare`, `plot` and `list` through the CLI, on tiny trained runs."""

import csv
import io
import json
import shutil

import joblib
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dqnrun.cli import app
from dqnrun.stats import RANDOM_SCORES, final_scores

runner = CliRunner()
pytestmark = pytest.mark.filterwarnings("error")  # no numpy or matplotlib warning leaks


def invoke(*args, columns=200):
    return runner.invoke(app, list(args), env={"COLUMNS": str(columns)})


def csv_rows(result):
    return list(csv.DictReader(io.StringIO(result.stdout)))


@pytest.fixture
def acrobot(trained, tmp_path):
    """A copy of the dqn run relabelled as an Acrobot-v1 run with negative scores."""
    path = tmp_path / "acrobot" / "dqn"
    shutil.copytree(trained / "dqn", path)
    data = joblib.load(path / "results.joblib")
    data["env_id"], data["reward_threshold"] = "Acrobot-v1", -100.0
    data["scores"] = -500 + data["scores"]
    joblib.dump(data, path / "results.joblib")
    return path


def test_compare_every_run_under_root(trained):
    result = invoke("compare", "--root", str(trained))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(line for line in lines if "95% CI" in line)
    assert header.split() == ["run", "episodes", "final", "95%", "CI", "IQM", "to", "475", "reached", "P(>dqn)"]
    names = [line.split()[0] for line in lines if line.strip().startswith(("dqn ", "per ", "nfq_results"))]
    assert names == ["dqn", "nfq_results", "per"]
    assert "lecture result files hold only smoothed" in result.output


def test_compare_csv_has_numbers_as_numbers(trained):
    result = invoke("compare", str(trained / "dqn"), str(trained / "per"), str(trained / "nfq_results.joblib"),
                    "--format", "csv", "--last", "3")
    assert result.exit_code == 0, result.output
    rows = csv_rows(result)
    assert [r["run"] for r in rows] == ["dqn", "per", "nfq_results"]
    data = joblib.load(trained / "dqn" / "results.joblib")
    finals = final_scores(data["scores"], 3)
    assert float(rows[0]["final"]) == pytest.approx(finals.mean(), abs=1e-4)
    assert rows[0]["seeds"] == "2" and rows[0]["episodes"] == "6"
    assert float(rows[0]["best"]) == np.nanmax(data["scores"])
    assert float(rows[0]["wall_time_s"]) == pytest.approx(np.mean(data["wall_time"]), abs=1e-4)
    assert float(rows[0]["final_ci_low"]) <= finals.mean() <= float(rows[0]["final_ci_high"])
    assert rows[0]["p_improvement"] == "" and 0.0 <= float(rows[1]["p_improvement"]) <= 1.0
    assert rows[1]["baseline"] == "dqn"
    table = pd.read_csv(io.StringIO(result.stdout))
    text = {"run", "path", "variant", "env", "baseline", "score_kind"}
    for column in table.columns:
        if column in text:
            continue
        assert pd.api.types.is_numeric_dtype(table[column]), (column, table[column].dtype)
    assert table["variant"].tolist() == ["dqn", "ddqn+per", "?"]


def test_compare_json_matches_csv(trained):
    args = ["compare", str(trained / "dqn"), str(trained / "per")]
    doc = json.loads(invoke(*args, "--format", "json").stdout)
    rows = csv_rows(invoke(*args, "--format", "csv"))
    assert [r["run"] for r in doc["runs"]] == ["dqn", "per"]
    assert doc["runs"][1]["final"] == float(rows[1]["final"]) and doc["baseline"] == "dqn"
    assert doc["runs"][0]["p_improvement"] is None and doc["aggregate"] == []


def test_the_table_fits_80_columns_without_cutting_a_value(trained, tmp_path):
    long = tmp_path / "dueling-per-with-a-long-name"
    shutil.copytree(trained / "per", long)
    result = invoke("compare", str(trained / "dqn"), str(long), columns=80)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80, result.output
    rows = csv_rows(invoke("compare", str(trained / "dqn"), str(long), "--format", "csv"))
    for row in rows:
        assert f"{float(row['final']):,.1f}" in result.output
    narrow = invoke("compare", str(trained / "dqn"), str(long), columns=50)
    assert "…" not in narrow.output and max(len(line) for line in narrow.output.splitlines()) <= 50
    assert "hidden at this width" in narrow.output and "--wide shows every column" in narrow.output
    wide = invoke("compare", str(trained / "dqn"), str(long), "--wide", columns=80)
    assert "…" not in wide.output and "env steps" in wide.output and "ddqn+per" in wide.output


def test_compare_markdown_is_a_table(trained):
    result = runner.invoke(app, ["compare", str(trained / "dqn"), "--format", "markdown"])
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("| run | final | 95% CI |") and lines[1].startswith("|---|---:|---:")
    assert lines[2].startswith("| dqn | ")


def test_runs_are_identified_by_path(trained, tmp_path):
    other = tmp_path / "other" / "dqn"
    shutil.copytree(trained / "dqn", other)
    result = invoke("compare", str(trained / "dqn"), str(other), "--format", "csv")
    assert [r["run"] for r in csv_rows(result)] == ["results/dqn", "other/dqn"]
    out = tmp_path / "two.png"
    result = invoke("plot", str(trained / "dqn"), str(other), "-o", str(out))
    assert result.exit_code == 0, result.output


def test_the_same_run_twice_is_shown_once(trained):
    result = invoke("compare", str(trained / "*"), str(trained / "per" / "results.joblib"), "--format", "csv")
    assert result.exit_code == 0, result.output
    assert [r["run"] for r in csv_rows(result)] == ["dqn", "nfq_results", "per"]
    assert "was given twice; shown once" in result.stderr


def test_baseline_chooses_what_p_improvement_compares_against(trained):
    args = ["compare", str(trained / "dqn"), str(trained / "per"), "--format", "csv"]
    default = csv_rows(invoke(*args))
    chosen = csv_rows(invoke(*args, "--baseline", str(trained / "per")))
    assert chosen[0]["baseline"] == "per" and chosen[1]["p_improvement"] == ""
    assert float(chosen[0]["p_improvement"]) == pytest.approx(1 - float(default[1]["p_improvement"]))
    assert csv_rows(invoke(*args, "--baseline", "per"))[0]["baseline"] == "per"
    bad = invoke(*args, "--baseline", "nope")
    assert bad.exit_code == 2 and "--baseline 'nope' is not one of the compared runs (dqn, per)" in bad.output


def test_across_environments_an_aggregate_on_normalised_scores(trained, acrobot, tmp_path):
    profile = tmp_path / "profile.png"
    args = ["compare", str(trained / "dqn"), str(acrobot)]
    result = invoke(*args, "--profile", str(profile))
    assert result.exit_code == 0, result.output
    assert "across environments" in result.output and "Acrobot-v1" in result.output
    assert mpimg.imread(profile).shape[0] > 400
    doc = json.loads(invoke(*args, "--format", "json").stdout)
    cart = final_scores(joblib.load(trained / "dqn" / "results.joblib")["scores"], 3)
    acro = final_scores(joblib.load(acrobot / "results.joblib")["scores"], 3)
    norm_cart = (cart - RANDOM_SCORES["CartPole-v1"]) / (475 - RANDOM_SCORES["CartPole-v1"])
    norm_acro = (acro + 500) / 400
    assert doc["normalisation"]["Acrobot-v1"] == {"zero": -500.0, "one": -100.0, "source": "random policy; reward threshold"}
    assert doc["runs"][0]["normalised"] == pytest.approx(norm_cart.mean(), abs=1e-4)
    assert doc["runs"][1]["normalised"] == pytest.approx(norm_acro.mean(), abs=1e-4)
    (agg,) = doc["aggregate"]
    pooled = np.sort(np.concatenate([norm_cart, norm_acro]))
    assert agg["variant"] == "dqn" and agg["runs"] == 4 and agg["envs"] == ["CartPole-v1", "Acrobot-v1"]
    assert agg["iqm"] == pytest.approx(pooled[1:3].mean(), abs=1e-4)  # 4 values: the middle two
    assert agg["iqm_ci_low"] <= agg["iqm"] <= agg["iqm_ci_high"]
    assert doc["runs"][1]["p_improvement"] is None  # another environment than the baseline's
    norm = json.loads(invoke(*args, "--format", "json", "--norm", "Acrobot-v1=-500:0").stdout)
    assert norm["runs"][1]["normalised"] == pytest.approx(((acro + 500) / 500).mean(), abs=1e-4)


def test_plot_writes_the_figure(trained, tmp_path):
    out = tmp_path / "fig.png"
    result = invoke("plot", str(trained / "dqn"), str(trained / "per"), "-o", str(out), "--band", "ci",
                    "--threshold", "env", "--x", "steps")
    assert result.exit_code == 0, result.output
    image = mpimg.imread(out)
    assert image.shape[0] > 400 and image.shape[1] > 800


def test_plot_without_output_writes_under_root_and_never_overwrites(trained):
    first = invoke("plot", str(trained / "dqn"), "--root", str(trained))
    second = invoke("plot", str(trained / "dqn"), "--root", str(trained))
    assert first.exit_code == 0 and second.exit_code == 0
    assert f"wrote {trained / 'dqn.png'}" in first.output.replace("\n", "")
    assert (trained / "dqn.png").exists() and (trained / "dqn-2.png").exists()
    (trained / "dqn.png").unlink()
    (trained / "dqn-2.png").unlink()


def test_different_lengths_are_aligned_with_a_note(trained):
    result = invoke("compare", str(trained / "dqn"), str(trained / "nfq_results.joblib"))
    assert result.exit_code == 0, result.output
    assert "runs differ in length (dqn 6, nfq_results 28): all compared over the first 6 episodes" in result.output
    assert "nfq_results: a lecture file's curves start at episode 25" in result.output
    rows = csv_rows(invoke("compare", str(trained / "dqn"), str(trained / "nfq_results.joblib"), "--format", "csv"))
    assert rows[1]["episodes"] == "0" and rows[1]["run_episodes"] == "28"


def test_list_shows_every_run(trained):
    result = invoke("list", str(trained))
    assert result.exit_code == 0, result.output
    assert "dqn" in result.output and "per" in result.output and "lecture file" in result.output
    assert result.output.count("complete") == 2


def test_list_names_runs_by_their_folder_and_shows_folders_of_runs(trained, tmp_path):
    shutil.copytree(trained / "dqn", tmp_path / "copy-of-dqn")         # its results file still says "dqn"
    shutil.copytree(trained / "per", tmp_path / "more" / "per")       # a plain folder holding a run
    (tmp_path / "empty").mkdir()
    result = invoke("list", str(tmp_path))
    assert result.exit_code == 0, result.output
    names = [line.split()[0] for line in result.output.splitlines()[4:] if line.strip() and not line.startswith("(")]
    assert names == ["copy-of-dqn", "more/"], result.output
    assert result.output.splitlines()[5].split()[1:] == ["folder", "-", "-", "-", "-", "-", "1", "run"]
    shutil.rmtree(tmp_path / "copy-of-dqn")
    only_folders = invoke("list", str(tmp_path), columns=300)
    assert only_folders.exit_code == 0 and "more/" in only_folders.output, only_folders.output


@pytest.fixture(scope="module")
def stepped(tmp_path_factory):
    """A tiny run evaluated every 20 env steps (2 greedy episodes each), 2 seeds x 6 episodes."""
    import yaml
    from tests_helpers import TINY_RAW

    root = tmp_path_factory.mktemp("stepped")
    path = root / "stepped.yaml"
    path.write_text(yaml.safe_dump({**TINY_RAW, "name": "stepped", "eval_every_steps": 20}))
    result = invoke("train", str(path), "--out", str(root / "results"), "--jobs", "1")
    assert result.exit_code == 0, result.output
    return root / "results" / "stepped"


def test_compare_scores_a_step_evaluated_run_by_its_last_evaluations_and_says_so(stepped, trained):
    data = joblib.load(stepped / "results.joblib")
    assert data["eval_steps"].shape[1] >= 3
    last = [row[~np.isnan(row)][-1] for row in data["eval_scores"]]
    rows = csv_rows(invoke("compare", str(stepped), str(trained / "dqn"), "--format", "csv"))
    assert [r["run"] for r in rows] == ["stepped", "dqn"]
    assert [r["score_kind"] for r in rows] == ["step_eval", "episode_eval"]
    assert [r["eval_every_steps"] for r in rows] == ["20", ""]
    assert [r["final_of"] for r in rows] == ["1", "3"]  # the last evaluation; the last window (3) of scores
    assert float(rows[0]["final"]) == pytest.approx(np.mean(last), abs=1e-4)
    assert float(rows[0]["best"]) == np.nanmax(data["eval_scores"])
    assert float(rows[1]["final"]) == pytest.approx(final_scores(joblib.load(trained / "dqn" / "results.joblib")["scores"], 3).mean(), abs=1e-4)
    doc = json.loads(invoke("compare", str(stepped), str(trained / "dqn"), "--format", "json").stdout)
    assert [(r["score_kind"], r["eval_every_steps"], r["final_of"]) for r in doc["runs"]] == [
        ("step_eval", 20, 1), ("episode_eval", None, 3)]
    two = csv_rows(invoke("compare", str(stepped), "--format", "csv", "--last", "2"))[0]
    assert float(two["final"]) == pytest.approx(np.mean([row[~np.isnan(row)][-2:].mean() for row in data["eval_scores"]]), abs=1e-4)
    table = invoke("compare", str(stepped), str(trained / "dqn"), "--wide")
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert "final = mean of each seed's last 3 scores (per-episode curves), each seed's last evaluation " \
           "(curves evaluated every N env steps)" in " ".join(table.output.split())
    cells = {line.split()[0]: line.split() for line in lines if line.strip().startswith(("stepped ", "dqn "))}
    assert cells["stepped"][2:5] == ["every", "20", "steps"] and cells["dqn"][2:4] == ["per", "episode"]
    # On a narrow terminal a curve column that only repeats the title goes first; the CI stays.
    alone = " ".join(invoke("compare", str(stepped), columns=66).output.split())
    assert "(curve hidden at this width" in alone and "95% CI" in alone and "every 20 steps" not in alone
    mixed = invoke("compare", str(stepped), str(trained / "dqn"), columns=80).output
    assert "every 20 steps" in " ".join(mixed.split())  # two kinds of curve: the column stays


def test_plot_of_mixed_runs_is_on_env_steps_one_line_each(stepped, trained, tmp_path):
    from dqnrun.plots import learning_curves
    from dqnrun.results import load_run

    out = tmp_path / "mixed.png"
    result = invoke("plot", str(stepped), str(trained / "dqn"), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "note" not in result.output and out.exists()
    run = load_run(stepped)
    fig, _ = learning_curves([run, load_run(trained / "dqn")], band="none")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "Env steps" and [line.get_label() for line in ax.lines] == ["stepped", "dqn"]
    # Both seeds evaluated at 20, 40, ...: the grid is those steps and the line their mean.
    n = min(np.isfinite(row).sum() for row in run.eval_steps)
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), run.eval_steps[0, :n])
    np.testing.assert_allclose(ax.lines[0].get_ydata(), run.eval_scores[:, :n].mean(axis=0))


def test_compare_shows_the_saved_evaluation_of_the_best_models(trained, tmp_path):
    run = tmp_path / "dqn"
    shutil.copytree(trained / "dqn", run)
    assert csv_rows(invoke("compare", str(run), "--format", "csv"))[0]["evaluated"] == ""
    assert "evaluated" not in invoke("compare", str(run)).output
    assert invoke("evaluate", str(run), "--episodes", "2").exit_code == 0
    doc = json.loads((run / "evaluation-best.json").read_text())
    row = csv_rows(invoke("compare", str(run), str(trained / "per"), "--format", "csv"))[0]
    across = doc["across_seeds"]
    assert float(row["evaluated"]) == pytest.approx(across["mean"], abs=1e-4)
    assert float(row["evaluated_ci_low"]) == pytest.approx(across["ci_low"], abs=1e-4)
    assert float(row["evaluated_ci_high"]) == pytest.approx(across["ci_high"], abs=1e-4)
    assert row["evaluated_episodes"] == "2"
    table = invoke("compare", str(run), str(trained / "per")).output
    assert "evaluated = `dqnrun evaluate` of the best models (2 greedy episodes per seed)" in " ".join(table.split())
    assert f"{across['mean']:.1f} [{across['ci_low']:.1f}, {across['ci_high']:.1f}]" in table


def test_compare_and_plot_without_runs_name_the_sweeps_they_leave_out(trained, tmp_path):
    import yaml

    from dqnrun.sweep import MANIFEST, SWEEP_FORMAT

    root = tmp_path / "results"
    shutil.copytree(trained / "dqn", root / "dqn")
    study = root / "study"
    shutil.copytree(trained / "per", study / "lr1")
    points = [{"name": "lr1", "values": {"agent.learning_rate": 1}, "seeds": [3, 4]}]
    (study / MANIFEST).write_text(yaml.safe_dump({"format": SWEEP_FORMAT, "points": points}))
    note = f"not included: the sweep {study}/; name one to include its points, e.g. {study}"
    result = invoke("compare", "--root", str(root), "--format", "csv")
    assert result.exit_code == 0, result.output
    assert [row["run"] for row in csv_rows(result)] == ["dqn"]
    assert note in " ".join(result.stderr.split())
    plotted = invoke("plot", "--root", str(root), "-o", str(tmp_path / "f.png"))
    assert plotted.exit_code == 0 and note in " ".join(plotted.output.split())
    named = invoke("compare", str(study), "--format", "csv")  # named, its points are compared
    assert [row["run"] for row in csv_rows(named)] == ["lr1"] and "not included" not in named.output
    shutil.rmtree(root / "dqn")
    only = invoke("compare", "--root", str(root))
    assert only.exit_code == 2
    assert f"no runs directly under {root}/, only the sweep {study}/: name one" in " ".join(only.output.split())


def test_at_80_columns_no_column_of_dashes_and_no_copy_of_the_run_name(trained, acrobot):
    """Runs each on its own environment: no P(>) column (nor its note), every row would be "-"."""
    from pathlib import Path

    result = invoke("compare", str(trained / "dqn"), str(acrobot), columns=80)
    assert result.exit_code == 0, result.output
    assert "P(>" not in result.output and "probability of improvement" not in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80, result.output
    # The shipped study: each point's config is named after it, so no `config` column repeats `run`.
    study = Path(__file__).resolve().parents[1] / "results" / "classic-control"
    result = invoke("compare", str(study), columns=80)
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if line.split()[:1] == ["run"]).split()
    assert "config" not in header and "P(>" not in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80, result.output


def test_a_run_whose_seeds_ended_after_different_episodes_shows_the_range_and_says_so(trained, tmp_path):
    """An env-step budget ends each seed after its own number of episodes (6 and 4 here)."""
    path = tmp_path / "budget"
    shutil.copytree(trained / "dqn", path)
    data = joblib.load(path / "results.joblib")
    for key in ("scores", "steps", "train_returns", "epsilons", "losses"):
        data[key] = np.array(data[key], dtype=float)
        data[key][1, 4:] = np.nan
    data["episodes"] = np.array([6, 4] + list(data["episodes"][2:]))
    data["config"]["max_steps"] = 60
    joblib.dump(data, path / "results.joblib")
    result = invoke("compare", str(path), "--wide")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.strip().startswith("budget"))
    assert " 4-6 " in row and " of " not in row
    assert "budget: its seeds ran 4 to 6 episodes (an env-step budget)" in result.output
    finals = final_scores(data["scores"], 1)
    assert finals[1] == data["scores"][1, 3]  # seed 2's final is its own last score
    rows = csv_rows(invoke("compare", str(path), "--format", "csv", "--last", "1"))
    assert float(rows[0]["final"]) == pytest.approx(finals.mean(), abs=1e-4)
    assert rows[0]["episodes"] == "6" and rows[0]["run_episodes"] == "6"


def test_a_glob_takes_the_runs_and_result_files_not_the_figures_beside_them(trained, tmp_path):
    from dqnrun.results import resolve_runs

    shutil.copytree(trained, tmp_path / "results")
    (tmp_path / "results" / "curves.png").write_bytes(b"\x89PNG")
    (tmp_path / "results" / "notes.md").write_text("# notes")
    found = resolve_runs([str(tmp_path / "results" / "*")])
    assert [p.name for p in found] == ["dqn", "nfq_results.joblib", "per"]
    result = invoke("compare", str(tmp_path / "results" / "*"))
    assert result.exit_code == 0, result.output


def test_a_norm_for_an_environment_not_compared_is_refused(trained):
    result = invoke("compare", str(trained / "dqn"), "--norm", "Cartpole-v1=0:500")
    assert result.exit_code == 2
    assert result.output.strip() == ("error: --norm Cartpole-v1: no compared run is on Cartpole-v1 "
                                     "(their environments: CartPole-v1)")


def test_last_beyond_the_episodes_compared_says_the_final_is_over_all_of_them(trained):
    result = invoke("compare", str(trained / "dqn"), "--last", "1000", "--format", "csv")
    assert result.exit_code == 0
    assert "--last 1000 is more than the episodes compared for dqn: their final is the mean of all" in result.stderr
    scores = joblib.load(trained / "dqn" / "results.joblib")["scores"]
    assert float(csv_rows(result)[0]["final"]) == pytest.approx(np.nanmean(scores, axis=1).mean(), abs=1e-4)


def test_plot_on_env_steps_keeps_every_episode_of_runs_of_different_lengths(trained, tmp_path, monkeypatch):
    """On an episode axis runs are cut to the shortest; on env steps each keeps all it has."""
    import dqnrun.plots

    import yaml
    from tests_helpers import TINY_RAW

    (tmp_path / "short.yaml").write_text(yaml.safe_dump({**TINY_RAW, "name": "short", "episodes": 3, "window": 2}))
    assert invoke("train", str(tmp_path / "short.yaml"), "--out", str(tmp_path), "--jobs", "1").exit_code == 0
    short = tmp_path / "short"
    drawn = []
    monkeypatch.setattr(dqnrun.plots, "save_figure", lambda fig, path: drawn.append(fig) or path)
    result = invoke("plot", str(trained / "per"), str(short), "--x", "steps", "-o", str(tmp_path / "s.png"))
    assert result.exit_code == 0, result.output
    assert "compared over the first" not in result.output
    per = joblib.load(trained / "per" / "results.joblib")
    ends = [line.get_xdata()[-1] for line in drawn[0].axes[0].lines if line.get_label() in ("per", "short")]
    assert max(ends) == np.nanmin(np.nanmax(per["steps"], axis=1))  # per's curve runs to its own end
    episodes = invoke("plot", str(trained / "per"), str(short), "-o", str(tmp_path / "e.png"))
    assert "all compared over the first 3 episodes" in episodes.output
