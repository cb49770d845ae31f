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
    # The live metrics files continued where the checkpoints were: no duplicate or missing row.
    for seed in (3, 4):
        resumed_rows = pd.read_csv(out / "run" / "metrics" / f"seed-{seed}.csv").drop(columns="wall_time")
        straight_rows = pd.read_csv(out / "straight" / "metrics" / f"seed-{seed}.csv").drop(columns="wall_time")
        pd.testing.assert_frame_equal(resumed_rows, straight_rows)
        assert list(resumed_rows["episode"]) == list(range(1, 301))
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
