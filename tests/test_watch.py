"""`dqnrun watch` and `dqnrun evaluate`: recording, exact evaluation, errors."""

from pathlib import Path

import pytest
import torch
from chain_env import register
from PIL import Image
from typer.testing import CliRunner

from dqnrun.cli import app
from dqnrun.networks import NetworkSpec, QNetwork

runner = CliRunner()


def save_model(path: Path, env_id: str, seed: int, preferred: int, obs_dim: int = 1, score: float = 10.0):
    spec = NetworkSpec(obs_dim, 2, (4,), False)
    net = QNetwork(spec)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.head.bias[preferred] = 5.0
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "dqnrun-model", "state_dict": net.state_dict(), "network": spec.to_dict(),
                "env_id": env_id, "variant": "ddqn", "seed": seed, "score": score, "episode": 3}, path)


@pytest.fixture
def chain_run(tmp_path):
    env_id = register()
    run = tmp_path / "chain"
    save_model(run / "models" / "seed-1.pt", env_id, 1, preferred=1, score=12.0)
    save_model(run / "models" / "seed-2.pt", env_id, 2, preferred=0, score=0.0)
    return run


def test_evaluate_gives_the_exact_returns_of_a_deterministic_env(chain_run):
    result = runner.invoke(app, ["evaluate", str(chain_run), "--episodes", "7"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:] for line in result.output.splitlines() if line.strip()[:1].isalnum()}
    # seed, score when saved (episode), re-evaluated mean, gap, std, min, max
    assert rows["1"] == ["12.0", "(3)", "10.0", "-2.0", "0.0", "10.0", "10.0"]
    assert rows["2"] == ["0.0", "(3)", "0.0", "+0.0", "0.0", "0.0", "0.0"]
    assert rows["all"] == ["6.0", "5.0", "-1.0", "5.0", "0.0", "10.0"]


def test_evaluate_one_seed(chain_run):
    result = runner.invoke(app, ["evaluate", str(chain_run), "--seed", "2", "-n", "3"])
    assert result.exit_code == 0 and "all" not in result.output


def test_record_a_gif_headless_and_read_it_back(chain_run, tmp_path):
    out = tmp_path / "chain.gif"
    result = runner.invoke(app, ["watch", str(chain_run), "--record", str(out), "--episodes", "2"])
    assert result.exit_code == 0, result.output
    assert "seed 1" in result.output  # the best seed by score
    assert result.output.count("return 10.0, 10 steps") == 2
    gif = Image.open(out)
    assert gif.size == (480, 320)  # the 60x40 frames enlarged 8x, to at least 320 pixels a side
    assert gif.n_frames == 2 * 11  # the reset frame and one per step, per episode


def test_record_a_trained_cartpole_policy_scaled(trained, tmp_path):
    out = tmp_path / "cartpole.gif"
    result = runner.invoke(app, ["watch", str(trained / "dqn"), "--record", str(out), "--scale", "0.25", "--seed", "4"])
    assert result.exit_code == 0, result.output
    steps = int(result.output.split(" steps")[0].split(", ")[-1])
    gif = Image.open(out)
    assert gif.size == (150, 100) and gif.n_frames == steps + 1


def test_watch_without_display_suggests_record(chain_run, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    result = runner.invoke(app, ["watch", str(chain_run)])
    assert result.exit_code == 2
    assert result.output == "error: no display here (DISPLAY is not set); record a file instead: --record policy.gif\n"


def test_record_an_mp4(chain_run, tmp_path):
    imageio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")
    out = tmp_path / "chain.mp4"
    result = runner.invoke(app, ["watch", str(chain_run), "--record", str(out), "--fps", "5"])
    assert result.exit_code == 0, result.output
    reader = imageio.get_reader(out)
    assert reader.get_meta_data()["fps"] == 5 and reader.count_frames() == 11
    assert reader.get_meta_data()["size"] == (480, 320)


def test_mp4_without_the_video_extra_says_how_to_get_it(chain_run, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_imageio(name, *args, **kwargs):
        if name.startswith("imageio"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_imageio)
    result = runner.invoke(app, ["watch", str(chain_run), "--record", str(tmp_path / "x.mp4")])
    assert result.exit_code == 2 and "pip install 'dqnrun[video]'" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.mp4").exists()


def naive_bootstrap_ci(values, reps=10_000, seed=0):
    """The percentile bootstrap by hand: resample the seeds with replacement, take each
    resample's mean, read off the 2.5th and 97.5th percentiles."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(values), (reps, len(values)))
    return np.percentile(values[idx].mean(axis=1), [2.5, 97.5])


def test_evaluate_saves_what_it_printed_with_a_bootstrap_ci_over_seeds(trained, tmp_path):
    import json
    import re
    import shutil

    import numpy as np

    run = tmp_path / "dqn"
    shutil.copytree(trained / "dqn", run)
    result = runner.invoke(app, ["evaluate", str(run), "--episodes", "3", "--env-seed", "5"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    doc = json.loads((run / "evaluation-best.json").read_text())
    rows = {line.split()[0]: line.split() for line in result.output.splitlines() if line.strip()[:1].isalnum()}
    assert doc["format"] == "dqnrun-evaluation" and doc["model"] == "best" and doc["env_id"] == "CartPole-v1"
    assert (doc["episodes"], doc["env_seed"]) == (3, 5)
    assert [s["seed"] for s in doc["seeds"]] == [3, 4]
    for s in doc["seeds"]:
        # seed, score when saved (episode), mean, gap, std, min, max: as printed
        printed = rows[str(s["seed"])]
        assert printed[3] == f"{s['mean']:.1f}" and printed[5] == f"{s['std']:.1f}"
        assert (s["episodes"], s["env_seed"], s["model_file"]) == (3, 5, f"models/seed-{s['seed']}.pt")
        assert s["min"] <= s["mean"] <= s["max"]
    across = doc["across_seeds"]
    means = [s["mean"] for s in doc["seeds"]]
    assert across["n_seeds"] == 2 and across["mean"] == pytest.approx((means[0] + means[1]) / 2, abs=1e-12)
    assert rows["all"][2] == f"{across['mean']:.1f}"
    np.testing.assert_allclose([across["ci_low"], across["ci_high"]], naive_bootstrap_ci(means), rtol=1e-12)
    assert "percentile bootstrap over seeds of the per-seed means" in across["method"]
    text = " ".join(result.output.split())  # the console may wrap lines
    line = re.search(r"mean over 2 seeds (\S+), 95% CI \[(\S+), (\S+)\]: percentile bootstrap over seeds", text)
    assert line.groups() == tuple(f"{v:.1f}" for v in (across["mean"], across["ci_low"], across["ci_high"]))
    from dqnrun import __version__

    assert doc["dqnrun_version"] == __version__ and f"saved {run / 'evaluation-best.json'}" in text


def test_evaluate_never_overwrites_a_different_measurement(chain_run):
    import json

    def evaluate(*args):
        result = runner.invoke(app, ["evaluate", str(chain_run), *args], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        return " ".join(result.output.split())  # the console may wrap lines

    evaluate("-n", "3")
    first = json.loads((chain_run / "evaluation-best.json").read_text())
    # seeds 1 and 2 always return 10 and 0 (a deterministic chain): mean 5, CI from {0, 5, 10}
    assert [s["mean"] for s in first["seeds"]] == [10.0, 0.0] and first["across_seeds"]["mean"] == 5.0
    assert "kept" not in evaluate("-n", "3")  # the same measurement: replaced, nothing to keep
    assert not (chain_run / "evaluation-best-2.json").exists()
    output = evaluate("-n", "4")
    assert "kept as evaluation-best-2.json" in output
    assert json.loads((chain_run / "evaluation-best-2.json").read_text())["episodes"] == 3
    assert json.loads((chain_run / "evaluation-best.json").read_text())["episodes"] == 4
    evaluate("-n", "5")
    assert json.loads((chain_run / "evaluation-best-3.json").read_text())["episodes"] == 4
    # One seed's measurement has its own file, without a CI.
    evaluate("--seed", "2", "-n", "3")
    one = json.loads((chain_run / "evaluation-best-seed-2.json").read_text())
    assert [s["seed"] for s in one["seeds"]] == [2] and one["across_seeds"]["ci_low"] is None
    assert json.loads((chain_run / "evaluation-best.json").read_text())["episodes"] == 5


def test_evaluate_of_a_read_only_run_prints_the_measurement_and_says_it_was_not_saved(chain_run, monkeypatch):
    import errno

    from dqnrun.results import RunDir

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(RunDir, "save_evaluation", read_only)
    result = runner.invoke(app, ["evaluate", str(chain_run), "-n", "2"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # the console may wrap lines
    assert "mean over 2 seeds 5.0" in text
    assert f"note: not saved as {chain_run / 'evaluation-best.json'}: read-only file system" in text
    assert not (chain_run / "evaluation-best.json").exists()


def test_frames_become_rgb_bytes_large_enough_for_their_caption():
    import numpy as np

    from dqnrun.errors import UserError
    from dqnrun.watch import as_rgb8

    grid = np.zeros((10, 10, 3))  # MinAtar: floats in [0, 1]
    grid[2, 3] = (0.5, 1.0, 0.2)
    image = as_rgb8(grid)
    assert image.dtype == np.uint8 and image.shape == (320, 320, 3)  # 10 -> 320: 32x, nearest neighbour
    np.testing.assert_array_equal(image[64:96, 96:128], np.broadcast_to([128, 255, 51], (32, 32, 3)))
    assert image[63, 96].tolist() == [0, 0, 0] and image[96, 96].tolist() == [0, 0, 0]
    grey = as_rgb8(np.full((400, 500), 7, dtype=np.uint8))
    assert grey.shape == (400, 500, 3) and (grey == 7).all()  # large enough: not enlarged
    rgba = np.zeros((320, 330, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 9, 255
    assert as_rgb8(rgba).shape == (320, 330, 3) and (as_rgb8(rgba)[..., 0] == 9).all()
    wide = as_rgb8(np.array([[[300.0, -5.0, 12.4]]]))  # floats beyond [0, 1]: clipped to 0-255, not scaled
    assert wide[0, 0].tolist() == [255, 0, 12] and wide.shape == (320, 320, 3)
    with pytest.raises(UserError, match=r"renders frames of shape \(4, 4, 2\)"):
        as_rgb8(np.zeros((4, 4, 2)))


def copy_run(trained, tmp_path, name="dqn"):
    """A copy of a finished 2-seed run (seeds 3 and 4) of the session's fixture, to damage."""
    import shutil

    return Path(shutil.copytree(trained / name, tmp_path / name))


def test_a_missing_model_is_never_skipped_silently(trained, tmp_path):
    """A finished seed's best model deleted: evaluate refuses (naming the file and --seed) and
    keeps the earlier measurement as it was; watch says which seed it shows instead."""
    run = copy_run(trained, tmp_path)
    first = runner.invoke(app, ["evaluate", str(run), "--episodes", "2"])
    assert first.exit_code == 0, first.output
    measured = (run / "evaluation-best.json").read_text()
    (run / "models" / "seed-4.pt").unlink()

    result = runner.invoke(app, ["evaluate", str(run), "--episodes", "3"], env={"COLUMNS": "400"})
    assert result.exit_code == 2
    assert result.output == (f"error: {run}: {run / 'models' / 'seed-4.pt'} is missing, so the run cannot be "
                             "measured as a whole; restore it from a copy of the run, or measure the other seeds one "
                             "at a time (--seed 3)\n")
    assert (run / "evaluation-best.json").read_text() == measured
    assert sorted(p.name for p in run.glob("evaluation-*")) == ["evaluation-best.json"]
    assert runner.invoke(app, ["evaluate", str(run), "--seed", "3", "-n", "2"]).exit_code == 0  # the fix works

    gif = tmp_path / "x.gif"
    watched = runner.invoke(app, ["watch", str(run), "--record", str(gif)], env={"COLUMNS": "400"})
    assert watched.exit_code == 0, watched.output
    assert watched.output.splitlines()[0] == (f"note: {run / 'models' / 'seed-4.pt'} is missing; showing seed 3, "
                                              "the best of the others")
    assert f"{run}: seed 3 " in watched.output and gif.exists()

    (run / "models" / "seed-3.pt").unlink()  # every model gone: named, not "is it a finished run?"
    gone = runner.invoke(app, ["watch", str(run), "--record", str(tmp_path / "y.gif")], env={"COLUMNS": "400"})
    assert gone.exit_code == 2
    assert gone.output == (f"error: {run} has lost its models: {run / 'models' / 'seed-3.pt'}, "
                           f"{run / 'models' / 'seed-4.pt'} are missing; restore them from a copy of the run\n")


def test_a_seed_that_never_had_a_best_model_is_measured_without_it_with_a_note(trained, tmp_path):
    """A seed that never evaluated (eval_every_steps never reached) has no best model: that is
    not a loss, so evaluate measures the others and says so."""
    import joblib

    run = copy_run(trained, tmp_path)
    state = joblib.load(run / "seeds" / "seed-4.joblib")
    joblib.dump({**state, "best_score": float("-inf"), "best_episode": 0}, run / "seeds" / "seed-4.joblib")
    (run / "models" / "seed-4.pt").unlink()
    result = runner.invoke(app, ["evaluate", str(run), "--episodes", "2"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "note: seed 4 has no best model: it never evaluated while training"
    assert (run / "evaluation-best.json").exists()


def test_compare_says_when_the_evaluation_left_out_seeds_with_a_model(trained, tmp_path):
    """An evaluation-best.json of fewer seeds than have best models (from before evaluate
    refused) is shown with a note naming the seeds it left out."""
    run = copy_run(trained, tmp_path)
    assert runner.invoke(app, ["evaluate", str(run), "--seed", "3", "-n", "2"]).exit_code == 0
    (run / "evaluation-best-seed-3.json").rename(run / "evaluation-best.json")
    result = runner.invoke(app, ["compare", str(run), "--wide"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "note: dqn: evaluated measured 1 of its 2 seeds with a best model (left out: seed 4)" in result.output


def test_a_sweep_folder_is_not_a_run_and_the_message_names_a_point(tmp_path):
    import yaml

    from dqnrun.sweep import MANIFEST, SWEEP_FORMAT

    sweep = tmp_path / "study"
    sweep.mkdir()
    points = [{"name": f"lr{i}", "values": {"agent.learning_rate": i}, "seeds": [1]} for i in (1, 2)]
    (sweep / MANIFEST).write_text(yaml.safe_dump({"format": SWEEP_FORMAT, "points": points}))
    for args in (["watch", str(sweep), "--record", str(tmp_path / "x.gif")], ["evaluate", str(sweep)]):
        result = runner.invoke(app, args, env={"COLUMNS": "400"})
        assert result.exit_code == 2
        assert result.output == (f"error: {sweep} is a sweep; name one of its points, e.g. {sweep / 'lr1'} "
                                 f"(`dqnrun list {sweep}` lists them)\n")


def test_a_run_still_training_says_so_instead_of_no_saved_models(trained, tmp_path):
    import os
    import shutil
    import socket

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(trained / "dqn" / "config.yaml", run / "config.yaml")
    (run / ".training").write_text(f"{os.getpid()} {socket.gethostname()}\n")
    owner = f"process {os.getpid()} on {socket.gethostname()}"
    for args in (["watch", str(run)], ["evaluate", str(run)]):
        result = runner.invoke(app, args, env={"COLUMNS": "400"})
        assert result.exit_code == 2
        assert result.output == (f"error: {run} is still training ({owner}; `dqnrun list {tmp_path}` shows its "
                                 "progress): seeds 3, 4 have not finished, so it has no saved model yet\n")

    # Seed 3 finished, seed 4 interrupted: evaluate does not pass seed 3 off as the run's measurement.
    (run / ".training").unlink()
    for folder in ("models", "seeds"):
        (run / folder).mkdir()
    shutil.copy(trained / "dqn" / "models" / "seed-3.pt", run / "models")
    shutil.copy(trained / "dqn" / "seeds" / "seed-3.joblib", run / "seeds")
    result = runner.invoke(app, ["evaluate", str(run), "-n", "2"], env={"COLUMNS": "400"})
    assert result.exit_code == 2
    assert result.output == (f"error: {run} is unfinished (`dqnrun train --resume {run}` continues it): seed 4 has "
                             "not finished; measure the run when it finishes, or a finished seed now (--seed 3)\n")
    watched = runner.invoke(app, ["watch", str(run), "--record", str(tmp_path / "x.gif")], env={"COLUMNS": "400"})
    assert watched.exit_code == 0, watched.output
    assert watched.output.splitlines()[0] == (f"note: {run} is unfinished (`dqnrun train --resume {run}` continues "
                                              "it): seed 4 has not finished; showing seed 3, the best of the "
                                              "finished seeds")
