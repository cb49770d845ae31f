import numpy as np
import pytest

from dqnrun.experiment import metrics_csv, pad
from dqnrun.trainer import SeedResult


def test_pad_keeps_ragged_rows():
    out = pad([[1, 2, 3], [4]])
    np.testing.assert_array_equal(out[0], [1, 2, 3])
    assert out[1, 0] == 4 and np.isnan(out[1, 1:]).all()


def test_metrics_csv_rows():
    r = SeedResult(seed=1, scores=[10.0, 20.0, 30.0], train_returns=[9.0, 8.0, 7.0], steps=[9, 17, 24],
                   epsilons=[0.9, 0.8, 0.7], losses=[float("nan"), 0.5, 0.25])
    lines = metrics_csv(r, window=2).splitlines()
    assert lines[0] == "episode,env_steps,train_return,score,smoothed_score,epsilon,mean_loss"
    assert lines[1] == "1,9,9,10,,0.9,"
    assert lines[2] == "2,17,8,20,15,0.8,0.5"
    assert lines[3] == "3,24,7,30,25,0.7,0.25"


# ---------------------------------------------------------------------------------------------
# Interruption, resume and divergence through the CLI

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import joblib
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


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_signal_then_resume_gives_the_uninterrupted_numbers(tmp_path, how):
    """A real Ctrl-C (SIGINT to the whole process group, as a terminal sends it) or a SIGTERM to
    the main process during a 2-job run, then --resume."""
    config = write_config(tmp_path / "run.yaml", seeds=[3, 4], episodes=300, checkpoint_every=5,
                          eval_episodes=1,
                          agent={**TINY_RAW["agent"], "memory_size": 2000, "memory_start_size": 1000})
    out = tmp_path / "results"
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dqnrun.cli", "train", str(config), "--out", str(out), "--jobs", "2"],
        start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    checkpoint = out / "run" / "checkpoints"
    deadline = time.time() + 120
    while proc.poll() is None and not any(checkpoint.glob("seed-*.pt")) and time.time() < deadline:
        time.sleep(0.05)
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "Traceback" not in output
    assert f"continue with `dqnrun train --resume {out / 'run'}`" in output
    assert not (out / "run" / "results.joblib").exists()
    assert not list((out / "run").rglob("*.tmp*"))  # no half-written file

    resumed = runner.invoke(app, ["train", "--resume", str(out / "run"), "--jobs", "1"])
    assert resumed.exit_code == 0, resumed.output
    straight = runner.invoke(app, ["train", str(config), "--out", str(out), "--name", "straight", "--jobs", "1"])
    assert straight.exit_code == 0, straight.output
    a = joblib.load(out / "run" / "results.joblib")
    b = joblib.load(out / "straight" / "results.joblib")
    for key in ("scores", "train_returns", "steps", "losses", "epsilons", "best_score", "best_episode"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not (out / "run" / "checkpoints").exists()  # removed once every seed finished
    again = runner.invoke(app, ["train", "--resume", str(out / "run")])
    assert again.exit_code == 2 and "already complete" in again.output


def test_one_diverging_seed_is_marked_and_the_run_is_still_saved(tmp_path, monkeypatch):
    import dqnrun.trainer as trainer

    poisoned = seeding.streams(4).torch_seed

    class PoisonedAgent(trainer.Agent):
        def update(self, batch):
            result = super().update(batch)
            if self.torch_seed == poisoned:
                return result._replace(loss=torch.tensor(float("nan")))
            return result

        def __init__(self, spec, config, device, torch_seed):
            super().__init__(spec, config, device, torch_seed)
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
