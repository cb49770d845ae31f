"""`dqnrun compare`, `plot` and `list` through the CLI, on tiny trained runs."""

import csv
import io

import joblib
import matplotlib.image as mpimg
import numpy as np
from typer.testing import CliRunner

from dqnrun.cli import app
from dqnrun.stats import final_scores

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_compare_every_run_under_root(trained):
    result = invoke("compare", "--root", str(trained))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(line for line in lines if "final [95% CI]" in line)
    assert "to 475" in header and "P(>dqn)" in header
    names = [line.split()[0] for line in lines if line.strip().startswith(("dqn ", "per ", "nfq_results"))]
    assert names == ["dqn", "nfq_results", "per"]
    assert "lecture result files hold only smoothed" in result.output


def test_compare_csv_values_match_the_result_files(trained):
    result = runner.invoke(app, ["compare", str(trained / "dqn"), str(trained / "per"), "--format", "csv", "--last", "3"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["run"] for r in rows] == ["dqn", "per"]
    data = joblib.load(trained / "dqn" / "results.joblib")
    expected = final_scores(data["scores"], 3).mean()
    assert rows[0]["final [95% CI]"].startswith(f"{expected:,.1f} [")
    assert rows[0]["seeds"] == "2" and rows[0]["episodes"] == "6"
    assert rows[0]["best"] == f"{np.nanmax(data['scores']):,.1f}"
    assert rows[0]["P(>dqn)"] == "-" and 0.0 <= float(rows[1]["P(>dqn)"]) <= 1.0


def test_compare_markdown_is_a_table(trained):
    result = runner.invoke(app, ["compare", str(trained / "dqn"), "--format", "markdown"])
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("| run | variant |") and lines[1].startswith("|---|---|---:")
    assert lines[2].startswith("| dqn | dqn |")


def test_glob_and_results_file_arguments(trained):
    result = invoke("compare", str(trained / "*"), str(trained / "per" / "results.joblib"), "--format", "csv")
    assert result.exit_code == 0, result.output
    assert [r["run"] for r in csv.DictReader(io.StringIO(result.stdout))] == ["dqn", "nfq_results", "per", "per"]


def test_plot_writes_the_figure(trained, tmp_path):
    out = tmp_path / "fig.png"
    result = invoke("plot", str(trained / "dqn"), str(trained / "per"), "-o", str(out))
    assert result.exit_code == 0, result.output
    image = mpimg.imread(out)
    assert image.shape[0] > 400 and image.shape[1] > 800


def test_plot_without_output_writes_under_root_and_never_overwrites(trained):
    first = invoke("plot", str(trained / "dqn"), "--root", str(trained))
    second = invoke("plot", str(trained / "dqn"), "--root", str(trained))
    assert first.exit_code == 0 and second.exit_code == 0
    assert (trained / "dqn.png").exists() and (trained / "dqn-2.png").exists()
    (trained / "dqn.png").unlink()
    (trained / "dqn-2.png").unlink()


def test_different_lengths_are_aligned_with_a_note(trained):
    result = invoke("compare", str(trained / "dqn"), str(trained / "nfq_results.joblib"))
    assert result.exit_code == 0, result.output
    assert "runs differ in length (dqn 6, nfq_results 28): all compared over the first 6 episodes" in result.output


def test_list_shows_every_run(trained):
    result = invoke("list", str(trained))
    assert result.exit_code == 0, result.output
    assert "dqn" in result.output and "per" in result.output and "lecture file" in result.output
    assert result.output.count("complete") == 2
