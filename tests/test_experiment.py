import numpy as np
import pytest

from dqnrun.trainer import SeedResult


# ---------------------------------------------------------------------------------------------
# Interruption, resume and divergence through the CLI

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import joblib
import pandas as pd
import torch
import yaml
from tests_helpers import TINY_RAW
from typer.testing import CliRunner

from dqnrun import seeding
from dqnrun.cli import app

runner = CliRunner()


def write_config(path: Path, **changes) -> Path:
    path.write_text(yaml.safe_dump({**TINY_RAW, **changes}))
    return path


# The run under test: both seeds in worker processes from the start (by default small runs stay
# in the main process), so a signal finds two workers in the middle of their chunks.
WORKER_PROCESSES = ("import dqnrun.workers as w; w.SPAWN_AFTER = w.SPAWN_WORTH = 0.0; "
                    "w.run_chains.__defaults__ = w.run_chains.__defaults__[:-1] + (False,); "
                    "from dqnrun.cli import main; main()")
SIGNALLED = dict(seeds=[3, 4], episodes=100, checkpoint_every=2, eval_episodes=1)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """The uninterrupted run that the interrupted ones must match."""
    out = tmp_path_factory.mktemp("straight")
    config = write_config(out / "run.yaml", **SIGNALLED)
    result = runner.invoke(app, ["train", str(config), "--out", str(out), "--name", "straight", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    return out / "straight"


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_signal_then_resume_gives_the_uninterrupted_numbers(tmp_path, how, straight_run):
    """A real Ctrl-C (SIGINT to the whole process group, as a terminal sends it) or a SIGTERM to
    the main process while two worker processes train, then --resume."""
    config = write_config(tmp_path / "run.yaml", **SIGNALLED)
    out = tmp_path / "results"
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER_PROCESSES, "train", str(config), "--out", str(out), "--jobs", "2"],
        start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    checkpoints = [out / "run" / "checkpoints" / f"seed-{s}.pt" for s in (3, 4)]
    deadline = time.time() + 120
    while proc.poll() is None and not all(p.exists() for p in checkpoints) and time.time() < deadline:
        time.sleep(0.02)
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "Traceback" not in output
    assert f"continue with `dqnrun train --resume {out / 'run'}`" in output
    assert output.count(": interrupted after") == 2, output  # both workers checkpointed and said so
    assert not (out / "run" / "results.joblib").exists()
    assert not list((out / "run").rglob("*.tmp*"))  # no half-written file

    resumed = runner.invoke(app, ["train", "--resume", str(out / "run"), "--jobs", "1"])
    assert resumed.exit_code == 0, resumed.output
    a = joblib.load(out / "run" / "results.joblib")
    straight = joblib.load(straight_run / "results.joblib")
    for key in ("scores", "train_returns", "steps", "losses", "epsilons", "best_score", "best_episode"):
        np.testing.assert_array_equal(a[key], straight[key])
    assert not (out / "run" / "checkpoints").exists()  # removed once every seed finished
    # The live metrics files continued where the checkpoints were: no duplicate or missing row.
    for seed in (3, 4):
        resumed_rows = pd.read_csv(out / "run" / "metrics" / f"seed-{seed}.csv").drop(columns="wall_time")
        straight_rows = pd.read_csv(straight_run / "metrics" / f"seed-{seed}.csv").drop(columns="wall_time")
        pd.testing.assert_frame_equal(resumed_rows, straight_rows)
        assert list(resumed_rows["episode"]) == list(range(1, SIGNALLED["episodes"] + 1))
    again = runner.invoke(app, ["train", "--resume", str(out / "run")])
    assert again.exit_code == 2 and "already complete" in again.output


# A Ctrl-C (to the whole process group, as a terminal sends it) from inside the start of the
# worker processes, so that it arrives while they start, every time: the fork server's, and
# Dask's LocalCluster for --scheduler local:1.
CTRL_C_WHILE_WORKERS_START = """
import os, signal, sys
import dqnrun.workers as w
w.SPAWN_WORTH, w.SPAWN_AFTER = 0.0, 0.5  # the main process trains seed 3 meanwhile
if sys.argv[-1] == "forkserver":
    import multiprocessing.forkserver as starts
    name = "ensure_running"
else:
    import distributed as starts
    name = "LocalCluster"
start = getattr(starts, name)
def start_and_ctrl_c(*args, **kwargs):
    started = start(*args, **kwargs)
    os.killpg(0, signal.SIGINT)
    return started
setattr(starts, name, start_and_ctrl_c)
sys.argv.pop()
from dqnrun.cli import main; main()
"""


@pytest.mark.parametrize("workers", ["forkserver", "dask"])
def test_ctrl_c_while_worker_processes_start_stops_the_run(tmp_path, workers, straight_run):
    config = write_config(tmp_path / "run.yaml", **SIGNALLED)
    out = tmp_path / "results"
    how = ["--jobs", "2"] if workers == "forkserver" else ["--scheduler", "local:1"]
    proc = subprocess.run(
        [sys.executable, "-c", CTRL_C_WHILE_WORKERS_START, "train", str(config), "--out", str(out), *how, workers],
        start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "COLUMNS": "200"}, timeout=120,
    )
    assert proc.returncode == 130, proc.stdout
    assert f"continue with `dqnrun train --resume {out / 'run'}`" in proc.stdout
    assert "Traceback" not in proc.stdout and "KeyboardInterrupt" not in proc.stdout  # no worker died of it
    resumed = runner.invoke(app, ["train", "--resume", str(out / "run"), "--jobs", "1"])
    assert resumed.exit_code == 0, resumed.output
    a = joblib.load(out / "run" / "results.joblib")
    straight = joblib.load(straight_run / "results.joblib")
    for key in ("scores", "train_returns", "steps", "losses", "epsilons", "best_score", "best_episode"):
        np.testing.assert_array_equal(a[key], straight[key])


def test_one_diverging_seed_is_marked_and_the_run_is_still_saved(tmp_path, monkeypatch):
    import dqnrun.trainer as trainer

    poisoned = seeding.streams(4).torch_seed

    class PoisonedAgent(trainer.Agent):
        def update(self, batch):
            result = super().update(batch)
            if self.torch_seed == poisoned:
                return result._replace(loss=torch.tensor(float("nan")))
            return result

        def __init__(self, spec, config, device, torch_seed, noise_seed=0):
            super().__init__(spec, config, device, torch_seed, noise_seed)
            self.torch_seed = torch_seed

    monkeypatch.setattr(trainer, "Agent", PoisonedAgent)
    config = write_config(tmp_path / "nan.yaml", episodes=8)
    result = runner.invoke(app, ["train", str(config), "--out", str(tmp_path), "--jobs", "1"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    data = joblib.load(tmp_path / "nan" / "results.joblib")
    assert data["status"] == ["complete", "diverged"]
    n = int(data["episodes"][1])
    assert data["diverged"][1] == f"episode {n}, step {int(data['steps'][1][n - 1])}"
    assert f"diverged at episode {n}" in result.output
    assert data["aggregated_seeds"] == [3]
    np.testing.assert_array_equal(data["mean_score"], data["smoothed"][0])
    listed = runner.invoke(app, ["list", str(tmp_path)], env={"COLUMNS": "200"})
    assert "4: diverged" in listed.output
    compared = runner.invoke(app, ["compare", str(tmp_path / "nan")], env={"COLUMNS": "200"})
    assert compared.exit_code == 0 and "1 diverged" in compared.output


def test_metrics_rows_are_on_disk_when_each_episode_ends(tmp_path):
    """The row of an episode is written, flushed, before anyone hears of the episode."""
    from dqnrun import experiment
    from dqnrun.trainer import EpisodeEnd

    seen = []

    def on_event(event):
        if isinstance(event, EpisodeEnd):
            rows = pd.read_csv(tmp_path / "mid" / "metrics" / f"seed-{event.seed}.csv")
            seen.append((event.episode, len(rows), rows["score"].iloc[-1], event.score))

    run_plan = experiment.start_run({**TINY_RAW, "name": "mid", "seeds": [3]}, out=tmp_path, jobs=1)
    experiment.execute(run_plan, on_event)
    assert [(e, n) for e, n, _, _ in seen] == [(e, e) for e in range(1, 7)]
    assert all(abs(a - b) <= 1e-5 * abs(b) for _, _, a, b in seen)


def test_resume_refuses_a_run_another_process_is_training(tmp_path):
    import os
    import socket

    from dqnrun import experiment
    from dqnrun.errors import UserError
    from dqnrun.results import RunDir

    run_plan = experiment.start_run({**TINY_RAW, "name": "busy"}, out=tmp_path, jobs=1)
    files = RunDir(run_plan.run_dir)
    files.training_marker.write_text(f"{os.getpid()} {socket.gethostname()}\n")
    with pytest.raises(UserError, match=f"is being trained by another process \\(process {os.getpid()} on "):
        experiment.start_run(resume=files.path)
    files.training_marker.write_text(f"{2**22 + 12345} {socket.gethostname()}\n")  # a process that died
    assert experiment.start_run(resume=files.path).todo == [3, 4]


def test_a_run_directory_deleted_while_a_checkpoint_is_written_is_reported_as_deleted(tmp_path, monkeypatch):
    """The directory can vanish between the check before a write and the write itself: the
    fault still names the deletion, not the checkpoint's temporary file."""
    import shutil

    from dqnrun import experiment
    from dqnrun.chunks import ChunkResult
    from dqnrun.errors import Fault

    run_dir = tmp_path / "gone"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("name: gone\n")
    real_write = experiment.write_bytes

    def deleted_then_written(path, data):
        shutil.rmtree(run_dir)
        real_write(path, data)

    monkeypatch.setattr(experiment, "write_bytes", deleted_then_written)
    chunk = ChunkResult(seed=3, status="checkpoint", episode=2, checkpoint=b"x")
    with pytest.raises(Fault, match="was deleted or emptied during training"):
        experiment.save_chunk(run_dir, None, None, chunk)


def test_resume_of_a_sweep_or_a_missing_folder_says_what_it_is(tmp_path):
    """`train --resume` of a sweep points to `sweep --resume` (as `sweep --resume RUN` points to
    `train --resume`); a folder that does not exist is named as such."""
    from dqnrun.sweep import MANIFEST, SWEEP_FORMAT

    sweep = tmp_path / "study"
    sweep.mkdir()
    (sweep / MANIFEST).write_text(yaml.safe_dump({"format": SWEEP_FORMAT, "points": [
        {"name": "lr1", "values": {"agent.learning_rate": 1}, "seeds": [1]}]}))
    result = runner.invoke(app, ["train", "--resume", str(sweep)], env={"COLUMNS": "400"})
    assert result.exit_code == 2
    assert result.output == f"error: {sweep} is a sweep, not a run; continue it with `dqnrun sweep --resume {sweep}`\n"
    for command in ("train", "sweep"):
        nope = runner.invoke(app, [command, "--resume", str(tmp_path / "nope")], env={"COLUMNS": "400"})
        assert nope.exit_code == 2 and nope.output == f"error: no such directory: {tmp_path / 'nope'}\n"


def test_resume_rebuilds_a_damaged_results_file_from_the_seed_files(trained, tmp_path):
    """A truncated results.joblib of a finished run: compare says how to repair it, resume
    rebuilds it from seeds/seed-<s>.joblib (the same numbers) and keeps the damaged file."""
    import shutil

    run = Path(shutil.copytree(trained / "dqn", tmp_path / "dqn"))
    original = joblib.load(run / "results.joblib")
    damaged = (run / "results.joblib").read_bytes()[:500]
    (run / "results.joblib").write_bytes(damaged)

    compared = runner.invoke(app, ["compare", str(run)], env={"COLUMNS": "400"})
    assert compared.exit_code == 2
    assert compared.output == (f"error: {run / 'results.joblib'} is truncated or not a joblib result file; "
                               f"`dqnrun train --resume {run}` rebuilds it from the per-seed files "
                               "(seeds/seed-<s>.joblib)\n")
    resumed = runner.invoke(app, ["train", "--resume", str(run)], env={"COLUMNS": "400"})
    assert resumed.exit_code == 0, resumed.output
    assert resumed.output.splitlines()[0] == (
        f"{run / 'results.joblib'} is truncated or not a joblib result file; rebuilding it from the per-seed files "
        "(seeds/seed-<s>.joblib), a copy of the damaged file kept as results.joblib.damaged; its creation time "
        "becomes the last seed file's, device and versions unknown")
    assert (run / "results.joblib.damaged").read_bytes() == damaged
    rebuilt = joblib.load(run / "results.joblib")
    for key in ("scores", "steps", "losses", "best_score", "best_episode", "mean_score", "seeds", "status"):
        np.testing.assert_array_equal(rebuilt[key], original[key])
    # Not made up: the device and versions of the machine that rebuilt it are not the run's.
    last = max(f.stat().st_mtime for f in (run / "seeds").glob("seed-*.joblib"))
    assert rebuilt["created"] == datetime.fromtimestamp(last, timezone.utc).isoformat(timespec="seconds")
    assert rebuilt["device"] == "unknown" and rebuilt["versions"] == {} and rebuilt["machine"] == {}
    assert runner.invoke(app, ["compare", str(run)]).exit_code == 0
    again = runner.invoke(app, ["train", "--resume", str(run)], env={"COLUMNS": "400"})
    assert again.exit_code == 2 and "is already complete; nothing to resume" in again.output


def test_resume_says_why_a_damaged_results_file_cannot_be_rebuilt(trained, tmp_path):
    import shutil

    run = Path(shutil.copytree(trained / "dqn", tmp_path / "dqn"))
    (run / "results.joblib").write_bytes(b"")
    (run / "seeds" / "seed-4.joblib").write_bytes(b"x")
    result = runner.invoke(app, ["train", "--resume", str(run)], env={"COLUMNS": "400"})
    assert result.exit_code == 2
    assert result.output == (f"error: {run / 'results.joblib'} is truncated or not a joblib result file, and it "
                             f"cannot be rebuilt: {run / 'seeds' / 'seed-4.joblib'} is truncated or not a joblib "
                             "result file\n")
    assert (run / "results.joblib").read_bytes() == b"" and not (run / "results.joblib.damaged").exists()


def test_resume_refuses_a_finished_run_whose_seed_file_is_missing(trained, tmp_path):
    """Retraining the seed would replace its models and the results file that still holds its
    numbers: resume names the missing file instead, and nothing changes."""
    import shutil

    run = Path(shutil.copytree(trained / "dqn", tmp_path / "dqn"))
    (run / "seeds" / "seed-4.joblib").unlink()
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    result = runner.invoke(app, ["train", "--resume", str(run)], env={"COLUMNS": "400"})
    assert result.exit_code == 2
    assert result.output == (f"error: {run} is finished, but {run / 'seeds' / 'seed-4.joblib'} is missing; "
                             "restore it from a copy of the run (resume does not retrain a finished run's seeds)\n")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_resume_of_an_unreadable_results_file_is_not_called_damaged(trained, tmp_path):
    import shutil

    run = Path(shutil.copytree(trained / "dqn", tmp_path / "dqn"))
    (run / "results.joblib").unlink()
    (run / "results.joblib").mkdir()  # not a file at all: nothing to rebuild over
    result = runner.invoke(app, ["train", "--resume", str(run)], env={"COLUMNS": "400"})
    assert result.exit_code == 2
    assert result.output == (f"error: {run / 'results.joblib'} is a directory; a result file must be a regular "
                             "file\n")
    assert not (run / "results.joblib.damaged").exists()


def test_the_rebuild_hint_needs_every_seed_file(trained, tmp_path):
    import shutil

    run = Path(shutil.copytree(trained / "dqn", tmp_path / "dqn"))
    (run / "results.joblib").write_bytes(b"")
    (run / "seeds" / "seed-4.joblib").unlink()
    result = runner.invoke(app, ["compare", str(run)], env={"COLUMNS": "400"})
    assert result.exit_code == 2
    assert result.output == f"error: {run / 'results.joblib'} is truncated or not a joblib result file\n"
