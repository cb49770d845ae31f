"""End-to-end: tiny `dqnrun train` runs through the CLI, and user mistakes."""


import joblib
import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from dqnrun.cli import app

runner = CliRunner()


def train(*args: str):
    return runner.invoke(app, ["train", *args], env={"COLUMNS": "120"})


@pytest.mark.parametrize("variant", ["dqn", "ddqn", "per", "dueling"])
def test_tiny_train_per_variant_writes_the_run_directory(tiny_config, tmp_path, variant):
    out = tmp_path / "results"
    result = train(str(tiny_config(variant, variant=variant)), "--out", str(out), "--jobs", "1")
    assert result.exit_code == 0, result.output
    run = out / variant
    data = joblib.load(run / "results.joblib")
    assert data["variant"] == variant and data["env_id"] == "CartPole-v1" and data["seeds"] == [3, 4]
    assert data["scores"].shape == (2, 6) and data["smoothed"].shape == (2, 4)
    assert data["mean_score"].shape == (4,)
    np.testing.assert_allclose(data["mean_score"], data["smoothed"].mean(axis=0))
    np.testing.assert_allclose(data["max_score"], data["smoothed"].max(axis=0))
    np.testing.assert_allclose(data["min_score"], data["smoothed"].min(axis=0))
    for i in range(2):
        kernel = np.ones(3) / 3
        np.testing.assert_allclose(data["smoothed"][i], np.convolve(data["scores"][i], kernel, "valid"))
        assert data["best_score"][i] == data["scores"][i].max()
        assert data["best_episode"][i] == int(np.argmax(data["scores"][i])) + 1
        assert (np.diff(data["steps"][i]) > 0).all()
    assert data["config"]["agent"]["double"] == (variant != "dqn")
    assert data["config"]["agent"]["prioritized"] == (variant == "per")
    assert data["config"]["agent"]["dueling"] == (variant == "dueling")
    assert set(data["versions"]) >= {"torch", "gymnasium", "numpy", "dqnrun"}
    assert data["machine"]["cpu"] and "PyTorch built with" in data["machine"]["torch_build"]
    assert set(data["machine"]) >= {"torch_cpu_capability", "numpy_blas", "arch"}
    model = torch.load(run / "models" / "seed-3.pt", weights_only=True)
    assert model["network"]["dueling"] == (variant == "dueling") and model["env_id"] == "CartPole-v1"
    assert model["score"] == data["best_score"][0]
    assert model["switches"] == {k: data["config"]["agent"][k] for k in ("double", "dueling", "prioritized", "tau")}
    csv = (run / "metrics" / "seed-4.csv").read_text().splitlines()
    assert len(csv) == 7 and csv[0].startswith("episode,env_steps")
    assert yaml.safe_load((run / "config.yaml").read_text()) == data["config"]
    assert not (run / "checkpoints").exists() or not any((run / "checkpoints").iterdir())
    assert "saved" in result.output


def test_combination_of_switches_trains(tiny_config, tmp_path):
    path = tiny_config("combo", variant="dueling", agent={"prioritized": True, "memory_size": 500,
                                                          "memory_start_size": 40, "batch_size": 16})
    result = train(str(path), "--out", str(tmp_path), "--jobs", "1")
    assert result.exit_code == 0, result.output
    data = joblib.load(tmp_path / "combo" / "results.joblib")
    assert data["config"]["agent"]["prioritized"] and data["config"]["agent"]["dueling"]


def test_same_numbers_with_one_or_two_jobs(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setattr("dqnrun.workers.SPAWN_AFTER", 0.0)
    monkeypatch.setattr("dqnrun.workers.SPAWN_WORTH", 0.0)
    path = str(tiny_config("det", variant="per"))
    a = train(path, "--out", str(tmp_path), "--name", "one", "--jobs", "1")
    b = train(path, "--out", str(tmp_path), "--name", "two", "--jobs", "2")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    one = joblib.load(tmp_path / "one" / "results.joblib")
    two = joblib.load(tmp_path / "two" / "results.joblib")
    for key in ("scores", "train_returns", "steps", "losses", "smoothed", "mean_score"):
        np.testing.assert_array_equal(one[key], two[key])
    for seed in (3, 4):
        w1 = torch.load(tmp_path / "one" / "models" / f"seed-{seed}.pt", weights_only=True)["state_dict"]
        w2 = torch.load(tmp_path / "two" / "models" / f"seed-{seed}.pt", weights_only=True)["state_dict"]
        assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_a_seed_is_a_function_of_config_and_seed_only(tiny_config, tmp_path):
    path = str(tiny_config("iso"))
    train(path, "--out", str(tmp_path), "--name", "both", "--jobs", "1")
    train(path, "--out", str(tmp_path), "--name", "alone", "--jobs", "1", "--seeds", "4")
    both = joblib.load(tmp_path / "both" / "results.joblib")
    alone = joblib.load(tmp_path / "alone" / "results.joblib")
    np.testing.assert_array_equal(both["scores"][1], alone["scores"][0])


def test_an_existing_run_is_never_overwritten(tiny_config, tmp_path):
    path = str(tiny_config("keep"))
    assert train(path, "--out", str(tmp_path), "--seeds", "3", "--jobs", "1").exit_code == 0
    first = (tmp_path / "keep" / "results.joblib").read_bytes()
    again = train(path, "--out", str(tmp_path), "--seeds", "3", "--jobs", "1")
    assert again.exit_code == 0 and "already holds a run" in again.output
    assert (tmp_path / "keep-2" / "results.joblib").exists()
    assert (tmp_path / "keep" / "results.joblib").read_bytes() == first
    forced = train(path, "--out", str(tmp_path), "--seeds", "4", "--jobs", "1", "--force")
    assert forced.exit_code == 0
    assert joblib.load(tmp_path / "keep" / "results.joblib")["seeds"] == [4]


def test_max_steps_stops_a_seed_early(tiny_config, tmp_path):
    path = str(tiny_config("short", max_steps=60, eval_episodes=0, episodes=50))
    result = train(path, "--out", str(tmp_path), "--jobs", "1")
    assert result.exit_code == 0, result.output
    data = joblib.load(tmp_path / "short" / "results.joblib")
    for i in range(2):
        n = data["episodes"][i]
        assert n < 50 and data["steps"][i][n - 1] == 60
        # with eval_episodes 0 the curve is the training return
        np.testing.assert_array_equal(data["scores"][i][:n], data["train_returns"][i][:n])


def test_seeds_and_episodes_options_override_the_file(tiny_config, tmp_path):
    result = train(str(tiny_config()), "--out", str(tmp_path), "--seeds", "7", "--episodes", "4", "--jobs", "1")
    assert result.exit_code == 0, result.output
    data = joblib.load(tmp_path / "tiny" / "results.joblib")
    assert data["seeds"] == [7] and data["scores"].shape == (1, 4)


def test_a_run_shorter_than_its_window_is_smoothed_over_the_whole_run(tiny_config, tmp_path):
    result = train(str(tiny_config()), "--out", str(tmp_path), "--seeds", "7", "--episodes", "2", "--jobs", "1")
    assert result.exit_code == 0, result.output
    assert "window 3 is longer than 2 episodes; curves are smoothed over 2" in result.output
    data = joblib.load(tmp_path / "tiny" / "results.joblib")
    assert data["window"] == 2 and data["config"]["window"] == 3
    np.testing.assert_allclose(data["mean_score"], [data["scores"][0].mean()])
    rows = (tmp_path / "tiny" / "metrics" / "seed-7.csv").read_text().splitlines()
    assert rows[1].split(",")[4] == "" and float(rows[2].split(",")[4]) == pytest.approx(data["mean_score"][0], rel=1e-5)


def test_config_show_prints_the_resolved_config(tiny_config):
    result = runner.invoke(app, ["config", "show", str(tiny_config()), "--set", "agent.tau=0.5"])
    assert result.exit_code == 0
    shown = yaml.safe_load(result.output)
    assert shown["agent"]["tau"] == 0.5 and shown["agent"]["double"] is True and shown["name"] == "tiny"


def test_version():
    from dqnrun import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"dqnrun {__version__}"


def test_python_dash_m_dqnrun_is_the_command():
    import subprocess
    import sys

    from dqnrun import __version__

    done = subprocess.run([sys.executable, "-m", "dqnrun", "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == f"dqnrun {__version__}"
    done = subprocess.run([sys.executable, "-m", "dqnrun", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Usage: dqnrun [OPTIONS] COMMAND" in done.stdout
    done = subprocess.run([sys.executable, "-m", "dqnrun", "train", "/nonexistent/config.yaml"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip() == "error: config file not found: /nonexistent/config.yaml"


def test_list_shows_runs_in_progress_and_interrupted_ones(tiny_config, tmp_path):
    import os
    import socket

    from dqnrun.results import MetricsFile, RunDir

    for name, pid, budget in (("live", os.getpid(), {}), ("stopped", 2**22 + 12345, {}),  # no process has that pid
                              ("steps", 2**22 + 12345, {"max_steps": 100, "variant": "per"})):  # env-step budget
        run = RunDir(tmp_path / name)
        run.path.mkdir()
        run.config_file.write_text(tiny_config(**budget).read_text())
        for seed, episodes in ((3, 4), (4, 2)):
            f = MetricsFile(run.metrics(seed))
            f.start()
            for i in range(1, episodes + 1):
                f.append({"episode": i, "env_steps": 10 * i, "score": 1.0})
            f.close()
        run.training_marker.write_text(f"{pid} {socket.gethostname()}\n")
    result = runner.invoke(app, ["list", str(tmp_path)], env={"COLUMNS": "400"})  # rows unwrapped
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    assert "training: 0/2 seeds done, 6/12 episodes" in rows["live"] and "--resume" not in rows["live"]
    assert "interrupted: 0/2 seeds done, 6/12 episodes (dqnrun train --resume" in rows["stopped"]
    # The config's episode cap is not the run's length: the column says nothing, the status the count.
    assert rows["steps"].split()[4] == "-" and rows["stopped"].split()[4] == "6"
    # An unfinished run's variant is its switches, as a finished run's is.
    assert rows["steps"].split()[1] == "ddqn+per"
    # ... and the env steps done of the budget: the last metrics rows (40 and 20, under the 100 a seed).
    assert "interrupted: 0/2 seeds done, 6 episodes, 60/200 env steps (dqnrun train --resume" in rows["steps"]


def test_rainbow_run_records_step_evaluations_and_warns_once_about_epsilon(tiny_config, tmp_path):
    """A tiny Rainbow run with epsilon still on: one warning line, step-scheduled curves, a model
    that `evaluate` plays greedily with the noise off."""
    out = tmp_path / "results"
    path = tiny_config("rb", variant="rainbow", eval_every_steps=50,
                       agent={"v_min": 0.0, "v_max": 50.0, "atoms": 11})
    result = train(str(path), "--out", str(out), "--jobs", "1", "--seeds", "3")
    assert result.exit_code == 0, result.output
    assert result.output.count("warning: agent.noisy explores by itself") == 1
    data = joblib.load(out / "rb" / "results.joblib")
    steps = data["eval_steps"][0]
    assert data["variant"] == "rainbow" and len(steps) == data["steps"][0][-1] // 50
    np.testing.assert_array_equal(steps, 50 * np.arange(1, len(steps) + 1))
    assert data["eval_scores"].shape == data["eval_steps"].shape
    assert data["best_score"][0] == np.nanmax(data["eval_scores"][0])
    from dqnrun.results import load_run

    run = load_run(out / "rb")
    np.testing.assert_array_equal(run.eval_steps, data["eval_steps"])
    np.testing.assert_array_equal(run.eval_scores, data["eval_scores"])
    model = torch.load(out / "rb" / "models" / "seed-3.pt", weights_only=True)
    assert model["network"]["noisy"] and model["network"]["atoms"] == 11
    evaluated = runner.invoke(app, ["evaluate", str(out / "rb"), "--episodes", "2"], env={"COLUMNS": "120"})
    assert evaluated.exit_code == 0, evaluated.output


HEAVY_MODULES = ("torch", "gymnasium", "matplotlib", "numpy", "yaml", "pandas", "scipy", "joblib")


@pytest.mark.parametrize("argv", [[], ["--help"], ["train", "--help"], ["compare", "--help"]])
def test_help_and_the_package_import_nothing_heavy(argv):
    """`dqnrun --help` answers in a fraction of a second: neither the package nor the CLI module
    loads torch, the environments, plotting or numpy until a command needs them."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        f"sys.argv = ['dqnrun', *{argv!r}]\n"
        "import dqnrun, dqnrun.cli\n"
        "if len(sys.argv) > 1:\n"
        "    try:\n"
        "        dqnrun.cli.app()\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print(' '.join(m for m in {HEAVY_MODULES!r} if m in sys.modules), file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr.strip() == ""
    if argv:
        assert "Usage" in out.stdout


def test_list_shows_a_sweep_directory_as_one_row(tmp_path):
    from dqnrun.sweep import MANIFEST, SWEEP_FORMAT

    (tmp_path / "study").mkdir()
    points = [{"name": f"lr{i}", "values": {"agent.learning_rate": i}, "seeds": [1]} for i in (1, 2)]
    (tmp_path / "study" / MANIFEST).write_text(yaml.safe_dump({"format": SWEEP_FORMAT, "points": points}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / MANIFEST).write_text("format: [")
    result = runner.invoke(app, ["list", str(tmp_path)], env={"COLUMNS": "400"})  # rows unwrapped
    assert result.exit_code == 0, result.output  # only sweeps here: still a listing, not "no runs"
    rows = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    assert rows["study/"].split()[1:] == ["sweep", "-", "-", "-", "-", "-", "2", "points"]
    assert f"(a sweep's or folder's runs: dqnrun list {tmp_path / '<name>'})" in result.output
    assert "unreadable" in rows["broken/"]


def test_final_model_of_a_step_evaluated_run_keeps_its_last_evaluation_score(tiny_config, tmp_path):
    """Evaluated every N env steps, the final model's score when saved is the last evaluation's
    (not the last, possibly cut-off, episode's training return), with the episode it ran in; a
    seed that never evaluated saves nan, shown as "-" with no gap."""
    out = tmp_path / "results"
    path = tiny_config("stepped", eval_every_steps=30, max_steps=100, episodes=50, seeds=[3])
    assert train(str(path), "--out", str(out), "--jobs", "1").exit_code == 0
    data = joblib.load(out / "stepped" / "results.joblib")
    model = torch.load(out / "stepped" / "models" / "seed-3-final.pt", weights_only=True)
    ends = data["steps"][0]
    assert list(data["eval_steps"][0][~np.isnan(data["eval_steps"][0])]) == [30, 60, 90]
    assert model["score"] == data["eval_scores"][0][2]
    # the episode in which env step 90 was taken: the first ending at or after it
    assert model["episode"] == 1 + int(np.argmax(ends >= 90))

    never = tiny_config("never", eval_every_steps=1000, max_steps=60, episodes=50, seeds=[3])
    assert train(str(never), "--out", str(out), "--jobs", "1").exit_code == 0
    model = torch.load(out / "never" / "models" / "seed-3-final.pt", weights_only=True)
    assert np.isnan(model["score"]) and model["episode"] == 0
    evaluated = runner.invoke(app, ["evaluate", str(out / "never"), "--model", "final", "--episodes", "1"],
                              env={"COLUMNS": "120"})
    assert evaluated.exit_code == 0, evaluated.output
    row = next(line.split() for line in evaluated.output.splitlines() if line.split()[:1] == ["3"])
    assert row[1] == "-" and row[3] == "-" and "nan" not in evaluated.output


def test_the_first_line_gives_each_seeds_budget_in_episodes_or_env_steps(tiny_config, tmp_path):
    config = tiny_config()
    episodes = runner.invoke(app, ["train", str(config), "--seeds", "3", "--out", str(tmp_path), "--jobs", "1"],
                             env={"COLUMNS": "200"})
    assert episodes.exit_code == 0 and "seeds [3], 6 episodes each, device cpu" in episodes.output
    steps = runner.invoke(app, ["train", str(config), "--seeds", "3", "--out", str(tmp_path), "--name", "s",
                                "--set", "max_steps=50", "--jobs", "1"], env={"COLUMNS": "200"})
    assert steps.exit_code == 0 and "seeds [3], 50 env steps each, device cpu" in steps.output  # max_steps binds


def test_train_goes_on_when_its_standard_output_is_closed(tiny_config, tmp_path):
    """`dqnrun train ... | head -1`: once the reader has gone, the run still trains to the end and
    is saved; one line on stderr says that standard output was closed."""
    import subprocess
    import sys

    from dqnrun.results import load_run

    child = subprocess.Popen([sys.executable, "-m", "dqnrun", "train", str(tiny_config()), "--out", str(tmp_path),
                              "--seeds", "1,2", "--jobs", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child.stdout.close()  # the reader is gone before the first line
    stderr = child.stderr.read()
    assert child.wait(timeout=300) == 0, stderr
    assert stderr.strip() == "dqnrun: standard output was closed; going on without printing to it"
    run = load_run(tmp_path / "tiny")
    assert run.seeds == (1, 2) and run.scores.shape[0] == 2


def test_console_output_to_a_closed_pipe_is_dropped_after_one_note(monkeypatch, capsys):
    from dqnrun.console import _Stdout

    class ClosedPipe:
        writes = 0

        def write(self, text):
            ClosedPipe.writes += 1
            raise BrokenPipeError

        def flush(self):
            raise BrokenPipeError

    stream = _Stdout()
    stream.tell_when_gone = True  # as train and sweep set it
    monkeypatch.setattr("sys.stdout", ClosedPipe())
    assert stream.write("first line\n") == len("first line\n")
    stream.write("second line\n")
    stream.flush()
    assert ClosedPipe.writes == 1 and stream.reader_gone
    assert capsys.readouterr().err == "dqnrun: standard output was closed; going on without printing to it\n"


@pytest.mark.parametrize("delay", [0.005, 0.05])
def test_ctrl_c_after_the_run_is_saved_is_no_traceback_and_no_death_by_signal(tiny_config, tmp_path, delay):
    import os
    import signal
    import subprocess
    import sys
    import time

    child = subprocess.Popen([sys.executable, "-m", "dqnrun", "train", str(tiny_config()), "--out", str(tmp_path),
                              "--seeds", "1", "--jobs", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"},
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in child.stdout:
        if line.startswith("saved"):
            break
    time.sleep(delay)  # the interpreter is shutting down: torch's and matplotlib's exit hooks
    child.send_signal(signal.SIGINT)
    child.stdout.read()
    stderr = child.stderr.read()
    code = child.wait(timeout=120)
    assert "Traceback" not in stderr and code != -signal.SIGINT, (code, stderr)
    assert code == 0 or (code == 130 and stderr.strip() == "interrupted"), (code, stderr)
    assert (tmp_path / "tiny" / "results.joblib").is_file()


def test_train_goes_on_when_stdout_and_stderr_are_one_closed_pipe(tiny_config, tmp_path):
    """`dqnrun train ... 2>&1 | head -1`: the note about the closed output cannot be told either,
    and must not stop the run."""
    import subprocess
    import sys

    from dqnrun.results import load_run

    child = subprocess.Popen([sys.executable, "-m", "dqnrun", "train", str(tiny_config()), "--out", str(tmp_path),
                              "--seeds", "1", "--jobs", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    child.stdout.close()
    assert child.wait(timeout=300) == 0
    assert load_run(tmp_path / "tiny").seeds == (1,)


def test_a_short_command_whose_output_is_cut_says_nothing_about_it():
    """`dqnrun config keys | head -1`: the rest goes unread, as with any command; no note."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-m", "dqnrun", "config", "keys"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    child.stdout.close()
    stderr = child.stderr.read()
    assert child.wait(timeout=120) == 0 and stderr == ""
