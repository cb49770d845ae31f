"""The Python API in dqnrun/__init__.py: train, load_run, load_policy, and the README snippet."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from tests_helpers import TINY_RAW

import dqnrun
from dqnrun.trainer import EpisodeEnd, SeedEnd

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_notebook_snippet_runs(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    snippet = re.search(r"<!-- notebook-snippet.*?-->\n```python\n(.*?)```", readme, re.S).group(1)
    assert len(snippet.strip().splitlines()) == 5
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    namespace = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    run, plt = namespace["run"], namespace["plt"]
    assert run.seeds == (1, 2) and run.scores.shape == (2, 20) and run.window == 5
    line = plt.gca().lines[0]
    np.testing.assert_allclose(line.get_ydata(), run.mean_score)
    assert list(line.get_xdata()) == list(range(5, 21))
    plt.close("all")
    exec(compile(snippet, "README.md", "exec"), namespace)  # again: a new run, and the snippet loads it
    assert namespace["run"].path == Path("scratch/tiny-2/results.joblib")
    plt.close("all")


def test_import_is_cheap_and_exports_the_api():
    code = "import sys, dqnrun; print('torch' in sys.modules, 'gymnasium' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "False"]
    assert set(dqnrun.__all__) >= {"train", "load_run", "load_policy", "Config", "load_config", "UserError",
                                   "Run", "Policy"}
    for name in dqnrun.__all__:
        assert getattr(dqnrun, name) is not None
        if name != "__version__":
            assert getattr(dqnrun, name).__doc__, name


def test_train_takes_a_dict_or_a_config_and_reports_events(tmp_path):
    events = []
    run = dqnrun.train({**TINY_RAW, "name": "from-dict"}, seeds=[5], overrides=["episodes=4"], out=tmp_path,
                       jobs=1, on_event=events.append)
    assert run.name == "from-dict" and run.seeds == (5,) and run.scores.shape == (1, 4)
    assert [e.episode for e in events if isinstance(e, EpisodeEnd)] == [1, 2, 3, 4]
    assert isinstance(events[-1], SeedEnd) and events[-1].status == "complete"
    # A Config object gives the same numbers: a seed is a function of (config, seed).
    again = dqnrun.train(run.config, name="from-config", out=tmp_path, jobs=1)
    np.testing.assert_array_equal(again.scores, run.scores)
    assert again.run_dir == tmp_path / "from-config"
    # The metrics CSV and the typed view agree.
    csv = pd.read_csv(run.run_dir / "metrics" / "seed-5.csv")
    table = run.metrics(5)
    for column in ("episode", "env_steps", "train_return", "score", "epsilon", "mean_loss"):
        np.testing.assert_allclose(csv[column], table[column], rtol=1e-5, equal_nan=True)
    frame = pd.DataFrame(run.to_records())
    assert len(frame) == 4 and frame["score"].dtype == float and frame["episode"].dtype == np.int64


def test_train_rejects_what_is_not_a_config(tmp_path):
    with pytest.raises(dqnrun.UserError, match="config must be a YAML path, a dict or a dqnrun.Config"):
        dqnrun.train(42, out=tmp_path)
    with pytest.raises(dqnrun.UserError, match="unknown key 'episods'"):
        dqnrun.train({**TINY_RAW, "episods": 3}, out=tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("seeds, message", [
    ([1, "2"], "seeds: '2' is not an integer"),
    ([1.5], "seeds: 1.5 is not an integer"),
    ("1,x", "seeds '1,x': expected integers and ranges"),
])
def test_train_rejects_bad_seeds_as_a_user_error(tmp_path, seeds, message):
    with pytest.raises(dqnrun.UserError, match=re.escape(message)):
        dqnrun.train(dict(TINY_RAW), seeds=seeds, out=tmp_path)
    assert not list(tmp_path.iterdir())


def test_seeds_may_be_given_as_for_the_command_line():
    assert dqnrun._seed_list("1-3, 7") == [1, 2, 3, 7]
    assert dqnrun._seed_list("3 4") == [3, 4]
    assert dqnrun._seed_list((np.int64(5), 6)) == [5, 6]


def test_load_policy_acts_on_one_observation_or_a_batch(trained):
    policy = dqnrun.load_policy(trained / "dqn", seed=3)
    assert isinstance(policy, dqnrun.Policy) and policy.seed == 3 and policy.which == "best"
    obs = np.array([0.01, -0.02, 0.03, 0.04], dtype=np.float32)
    batch = np.stack([obs, -obs, obs * 2])
    action = policy(obs)
    assert isinstance(action, int) and action in (0, 1)
    actions = policy(batch)
    assert actions.shape == (3,) and actions[0] == action
    q = policy.q_values(obs)
    assert q.shape == (2,) and int(np.argmax(q)) == action
    np.testing.assert_allclose(policy.q_values(batch)[0], q, rtol=1e-6)


def test_load_policy_best_final_and_model_files(trained):
    best = dqnrun.load_policy(trained / "per", seed=4)
    final = dqnrun.load_policy(trained / "per", seed=4, which="final")
    run = dqnrun.load_run(trained / "per")
    i = run.seeds.index(4)
    assert (best.score, best.episode) == (run.best_score[i], run.best_episode[i])
    assert (final.score, final.episode) == (run.scores[i, -1], 6) and final.which == "final"
    from_file = dqnrun.load_policy(trained / "per" / "models" / "seed-4-final.pt")
    assert from_file.episode == 6
    chosen = dqnrun.load_policy(trained / "per")  # no seed: the best-scoring seed's model
    assert chosen.score == run.best_score.max()


@pytest.mark.parametrize("make, call, message", [
    (lambda p: None, "load_run", "no such run"),
    (lambda p: (p / "run").mkdir(), "load_run", "is not a dqnrun run: it has no results.joblib"),
    (lambda p: ((p / "run").mkdir(), (p / "run" / "config.yaml").write_text(yaml.safe_dump(TINY_RAW))),
     "load_run", "is an unfinished run (no results.joblib yet); finish it with `dqnrun train --resume"),
    (lambda p: ((p / "run").mkdir(), (p / "run" / "results.joblib").write_bytes(b"\x80\x04garbage")),
     "load_run", "is truncated or not a joblib result file"),
    (lambda p: None, "load_policy", "no such run"),
    (lambda p: (p / "run").mkdir(), "load_policy", "has no saved models"),
    (lambda p: ((p / "run" / "models").mkdir(parents=True), (p / "run" / "models" / "seed-1.pt").write_bytes(b"PK")),
     "load_policy", "seed-1.pt is truncated or not a dqnrun model file"),
])
def test_bad_runs_raise_user_error_with_the_cli_message(tmp_path, make, call, message):
    make(tmp_path)
    with pytest.raises(dqnrun.UserError) as caught:
        getattr(dqnrun, call)(tmp_path / "run")
    assert message in str(caught.value) and "\n" not in str(caught.value)
    from typer.testing import CliRunner

    from dqnrun.cli import app

    command = ["compare", str(tmp_path / "run")] if call == "load_run" else ["evaluate", str(tmp_path / "run")]
    result = CliRunner().invoke(app, command, env={"COLUMNS": "400"})
    assert result.exit_code == 2 and result.output.strip() == f"error: {caught.value}"


def test_load_policy_final_of_a_first_release_run():
    with pytest.raises(dqnrun.UserError, match="has no final models .* use --model best"):
        dqnrun.load_policy(ROOT / "results" / "ddqn", which="final")
    with pytest.raises(dqnrun.UserError, match="which='worst': expected best or final"):
        dqnrun.load_policy(ROOT / "results" / "ddqn", which="worst")


def test_load_policy_best_of_a_run_with_only_final_models_suggests_final(tmp_path):
    (tmp_path / "run" / "models").mkdir(parents=True)
    (tmp_path / "run" / "models" / "seed-3-final.pt").write_bytes(b"")
    with pytest.raises(dqnrun.UserError, match="has no best models .* use --model final"):
        dqnrun.load_policy(tmp_path / "run")
