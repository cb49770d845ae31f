"""TensorBoard logging: the event files hold the metrics files' numbers, against env steps."""

import builtins

import numpy as np
import pytest
from typer.testing import CliRunner

from dqnrun.cli import app
from dqnrun.errors import UserError
from dqnrun.results import RunDir, read_metrics
from dqnrun.tblog import RATE_TAG, TAGS, require_tensorboard

runner = CliRunner()


def scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


def test_event_files_hold_the_metrics_rows(tiny_config, tmp_path):
    config = tiny_config(variant="per", episodes=8)
    result = runner.invoke(app, ["train", str(config), "--out", str(tmp_path), "--jobs", "1", "--tensorboard"])
    assert result.exit_code == 0, result.output
    run = RunDir(tmp_path / "tiny")
    assert "tensorboard: true" in run.config_file.read_text()  # --tensorboard is kept for --resume
    for seed in (3, 4):
        logged = scalars(run.tb(seed))
        rows = read_metrics(run.metrics(seed))
        assert set(logged) == {*TAGS.values(), RATE_TAG}
        for column, tag in TAGS.items():
            known = ~np.isnan(rows[column])  # e.g. no loss before updates start
            assert [e.step for e in logged[tag]] == rows["env_steps"][known].astype(int).tolist(), tag
            # TensorBoard stores float32; the CSV keeps 6 significant digits.
            np.testing.assert_allclose([e.value for e in logged[tag]], rows[column][known], rtol=1e-5)
        assert len(logged[RATE_TAG]) >= len(rows["episode"]) - 1 and all(e.value > 0 for e in logged[RATE_TAG])


def test_without_the_tensorboard_package_the_option_names_the_install(tiny_config, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard") or name.startswith("tensorboard"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(UserError, match=r'pip install "dqnrun\[tensorboard\]"'):
        require_tensorboard()
    result = runner.invoke(app, ["train", str(tiny_config()), "--out", str(tmp_path), "--tensorboard"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        'error: TensorBoard logging needs the tensorboard package: pip install "dqnrun[tensorboard]"']
    assert not (tmp_path / "tiny").exists()  # checked before the run directory is claimed


def test_evaluations_every_n_steps_are_logged_at_their_steps(tiny_config, tmp_path):
    from dqnrun.results import load_run
    from dqnrun.tblog import PERIODIC_TAG

    config = tiny_config(eval_every_steps=25, episodes=5, seeds=[3])
    result = runner.invoke(app, ["train", str(config), "--out", str(tmp_path), "--jobs", "1", "--tensorboard"])
    assert result.exit_code == 0, result.output
    run = load_run(tmp_path / "tiny")
    logged = scalars(RunDir(run.run_dir).tb(3))[PERIODIC_TAG]
    n = int((~np.isnan(run.eval_steps[0])).sum())
    assert n >= 2
    assert [e.step for e in logged] == run.eval_steps[0, :n].astype(int).tolist()
    np.testing.assert_allclose([e.value for e in logged], run.eval_scores[0, :n], rtol=1e-6)


def test_a_resumed_seed_replaces_what_was_logged_after_its_checkpoint(tmp_path):
    from dqnrun.tblog import TensorBoardLog

    run = RunDir(tmp_path / "run")
    log = TensorBoardLog(run)
    log.start(7)
    for step, score in ((10, 1.0), (20, 2.0), (30, 3.0)):  # step 30 came after the checkpoint
        log.episode(7, {"env_steps": step, "score": score}, float("nan"))
    log.close_all()
    log = TensorBoardLog(run)
    log.start(7, resumed_at_step=20)
    for step, score in ((30, 3.5), (40, 4.0)):
        log.episode(7, {"env_steps": step, "score": score}, float("nan"))
    log.close_all()
    logged = scalars(run.tb(7))[TAGS["score"]]
    assert [(e.step, e.value) for e in logged] == [(10, 1.0), (20, 2.0), (30, 3.5), (40, 4.0)]
