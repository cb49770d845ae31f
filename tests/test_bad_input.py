"""Every user mistake, through the CLI: exit code 2 and one line naming the problem, no traceback."""

import os
from pathlib import Path

import gymnasium as gym
import joblib
import pytest
import torch
import yaml
from tests_helpers import TINY_RAW
from typer.testing import CliRunner

from dqnrun.cli import app
from dqnrun.networks import NetworkSpec, QNetwork

runner = CliRunner()


class BrokenEnv(gym.Env):
    def __init__(self, render_mode=None):
        raise RuntimeError("missing licence file")


if "dqnrun-test/Broken-v0" not in gym.registry:
    gym.register("dqnrun-test/Broken-v0", entry_point=BrokenEnv)


def model_blob(obs_dim=4, env_id="CartPole-v1"):
    spec = NetworkSpec(obs_dim, 2, (4,), False)
    return {"format": "dqnrun-model", "state_dict": QNetwork(spec).state_dict(), "network": spec.to_dict(),
            "env_id": env_id, "variant": "ddqn", "seed": 1, "score": 1.0, "episode": 1}


@pytest.fixture
def ws(tmp_path: Path, trained: Path) -> dict[str, str]:
    """A workspace of broken inputs; returns the names the table uses."""
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(TINY_RAW))
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "list.yaml").write_text("- variant: dqn\n")
    (tmp_path / "malformed.yaml").write_text("variant: dqn\nagent: {gamma: 0.9\n")
    joblib.dump({"weights": [1, 2]}, tmp_path / "foreign.joblib")
    whole = (trained / "dqn" / "results.joblib").read_bytes()
    (tmp_path / "truncated.joblib").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "a-file").write_text("x")
    for name in ("nomodels", "corrupt", "foreign-model", "mismatch"):
        (tmp_path / name / "models").mkdir(parents=True)
    torch.save(model_blob(), tmp_path / "corrupt" / "models" / "seed-1.pt")
    blob = (tmp_path / "corrupt" / "models" / "seed-1.pt").read_bytes()
    (tmp_path / "corrupt" / "models" / "seed-1.pt").write_bytes(blob[:200])
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign-model" / "models" / "seed-1.pt")
    torch.save(model_blob(obs_dim=3), tmp_path / "mismatch" / "models" / "seed-1.pt")
    bomb = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    bomb += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    (tmp_path / "bomb.yaml").write_text("variant: dqn\n" + "\n".join(bomb) + "\n")
    (tmp_path / "dup.yaml").write_text("variant: dqn\nagent:\n  gamma: 0.9\n  gamma: 0.99\n")
    (tmp_path / "latin1.yaml").write_bytes("variant: dqn\nname: caf\xe9\n".encode("latin-1"))
    (tmp_path / "deep.yaml").write_text("variant: " + "[" * 5000 + "]" * 5000 + "\n")
    (tmp_path / "longint.yaml").write_text("variant: dqn\nepisodes: " + "9" * 5000 + "\n")
    os.mkfifo(tmp_path / "fifo.yaml")
    broken = tmp_path / "broken-run"
    (broken / "checkpoints").mkdir(parents=True)
    (broken / "config.yaml").write_text(yaml.safe_dump(TINY_RAW))
    (broken / "checkpoints" / "seed-3.pt").write_bytes(b"PK\x03\x04 not really")
    return {"tmp": str(tmp_path), "good": str(good), "runs": str(trained)}


CASES = [
    # config files
    (["train", "{tmp}/malformed.yaml"], "invalid YAML at line 3"),
    (["train", "{tmp}/empty.yaml"], "the file is empty"),
    (["train", "{tmp}/list.yaml"], "a config is a YAML mapping of keys, not a list"),
    (["train", "{tmp}/missing.yaml"], "config file not found"),
    (["train", "{good}", "--set", "agent.learnig_rate=0.1"], "unknown key 'agent.learnig_rate' (did you mean 'agent.learning_rate'?)"),
    (["train", "{good}", "--set", "episods=3"], "unknown key 'episods' (did you mean 'episodes'?)"),
    (["train", "{good}", "--set", "agent.batch_size=big"], "agent.batch_size must be an integer, got 'big'"),
    (["train", "{good}", "--set", "agent.double=maybe"], "agent.double must be true or false"),
    (["train", "{good}", "--set", "agent.gamma=1.5"], "agent.gamma must be in [0, 1], got 1.5"),
    (["train", "{good}", "--set", "agent.memory_size=-5"], "agent.memory_size must be >= 1, got -5"),
    (["train", "{good}", "--set", "agent.batch_size=1000"], "agent.batch_size (1000) is larger than agent.memory_size (500)"),
    (["train", "{good}", "--set", "variant=rainbo"], "unknown variant 'rainbo' (did you mean 'rainbow'?)"),
    # the Rainbow components and knobs
    (["train", "{good}", "--set", "agent.n_step=0"], "agent.n_step must be >= 1 (1 = one-step targets), got 0"),
    (["train", "{good}", "--set", "agent.atoms=1"], "agent.atoms must be >= 2, got 1"),
    (["train", "{good}", "--set", "agent.v_min=10", "--set", "agent.v_max=10"], "agent.v_min (10.0) must be below agent.v_max (10.0)"),
    (["train", "{good}", "--set", "agent.huber_delta=0"], "agent.huber_delta must be > 0, got 0.0"),
    (["train", "{good}", "--set", "agent.loss=hubber"], "agent.loss 'hubber' is unknown (did you mean 'huber'?)"),
    (["train", "{good}", "--set", "agent.distributional=true", "--set", "agent.loss=huber"], "does not apply with agent.distributional"),
    (["train", "{good}", "--set", "agent.train_freq=0"], "agent.train_freq must be >= 1, got 0"),
    # the optimizer's options
    (["train", "{good}", "--set", "agent.optimizer_eps=0"], "agent.optimizer_eps must be > 0, got 0.0"),
    (["train", "{good}", "--set", "agent.rmsprop_alpha=1"], "agent.rmsprop_alpha must be in (0, 1), got 1.0"),
    (["train", "{good}", "--set", "agent.optimizer=adam", "--set", "agent.rmsprop_centered=true"],
     "agent.rmsprop_centered is RMSprop's, but agent.optimizer is 'adam': remove it or use optimizer: rmsprop"),
    (["train", "{good}", "--set", "agent.optimizer=adam", "--set", "agent.rmsprop_centered=true", "--set",
      "agent.rmsprop_alpha=0.9"],
     "agent.rmsprop_alpha and agent.rmsprop_centered are RMSprop's, but agent.optimizer is 'adam': remove them or use "
     "optimizer: rmsprop"),
    (["train", "{good}", "--set", "agent.gradient_steps=0"], "agent.gradient_steps must be >= 1, got 0"),
    (["train", "{good}", "--set", "agent.gradient_steps=1000000000"], "agent.gradient_steps must be at most 10,000 per update, got 1,000,000,000"),
    (["train", "{good}", "--set", "agent.train_freq=10001"], "agent.train_freq must be at most 10,000 env steps between updates, got 10,001"),
    (["train", "{good}", "--set", "agent.n_step=1001", "--set", "agent.memory_size=5000"], "agent.n_step must be at most 1,000 and at most agent.memory_size (5,000), got 1,001"),
    (["train", "{good}", "--set", "agent.n_step=501"], "agent.n_step must be at most 1,000 and at most agent.memory_size (500), got 501"),
    (["train", "{good}", "--set", "agent.max_grad_norm=-1"], "agent.max_grad_norm must be > 0 or null, got -1.0"),
    (["train", "{good}", "--set", "agent.noisy_sigma0=0"], "agent.noisy_sigma0 must be > 0, got 0.0"),
    (["train", "{good}", "--set", "eval_every_steps=0"], "eval_every_steps must be >= 1 or null, got 0"),
    (["train", "{good}", "--set", "eval_every_steps=100", "--set", "eval_episodes=0"], "eval_every_steps needs eval_episodes >= 1"),
    (["train", "{good}", "--set", "nonsense"], "expected KEY=VALUE"),
    # hostile or damaged config files (bounded work, one line)
    (["train", "{tmp}/bomb.yaml"], "bomb.yaml: invalid YAML at line 3, column 10: YAML aliases (*a0) are not supported in a config"),
    (["train", "{tmp}/dup.yaml"], "invalid YAML at line 4, column 3: duplicate key 'gamma' (first at line 3)"),
    (["train", "{tmp}/latin1.yaml"], "latin1.yaml: not UTF-8 text (byte 22); save it as UTF-8"),
    (["train", "{tmp}/deep.yaml"], "invalid YAML: nested too deeply"),
    (["train", "{tmp}/longint.yaml"], "invalid YAML: a value cannot be read"),
    (["train", "{tmp}/fifo.yaml"], "fifo.yaml is a named pipe; a config file must be a regular file"),
    (["train", "{good}", "--set", "agent.learning_rate=.inf"], "agent.learning_rate must be a finite number, got inf"),
    (["train", "{good}", "--set", "agent.gamma=.nan"], "agent.gamma must be a finite number, got nan"),
    (["train", "{good}", "--set", "per.alpha=1e400"], "per.alpha must be a finite number, got inf"),
    (["train", "{good}", "--set", "x=*a"], "the value is not valid YAML"),
    (["train", "{good}", "--set", "eval_episodes=20000000"], "eval_episodes must be <= 1,000"),
    (["train", "{good}", "--set", "episodes=10000000000"], "episodes must be <= 1,000,000"),
    (["train", "{good}", "--set", "epsilon.decay_steps=10000000000000"], "epsilon.decay_steps must be <= 1e+11"),
    (["train", "{good}", "--set", "network.hidden=[100000000000]"], "network.hidden layers must be at most 65,536"),
    (["train", "{good}", "--set", "network.hidden=[60000, 60000]"], "the network has 3,600,480,002 parameters, more than 100,000,000"),
    (["train", "{good}", "--name", "x" * 300], "name is 300 characters long; keep it to 100"),
    (["train", "{good}", "--name", "../escape"], "must be a plain directory name"),
    (["train", "{good}", "--name", ".hidden"], "must be a plain directory name"),
    (["evaluate", "{runs}/dqn", "-n", "100000000"], "--episodes must be <= 100,000"),
    # environments
    (["train", "{good}", "--set", "env=CartPole-v9"], "unknown environment 'CartPole-v9' (did you mean 'CartPole-v1'?)"),
    (["train", "{good}", "--set", "env=Pendulum-v1"], "has a Box action space; DQN needs a Discrete one"),
    (["train", "{good}", "--set", "env=dqnrun-test/Image-v0", "--set", "network.type=mlp"],
     "has observations of shape (8, 8, 3) (images?) and network.type is mlp: use network.type: cnn (or auto), "
     "or add the FlattenObservation wrapper"),
    (["train", "{good}", "--set", "network.type=cnn"], "network.type cnn needs image observations"),
    (["train", "{good}", "--set", "network.type=cnn", "--set", "network.cnn=nature",
      "--set", "env=dqnrun-test/Image-v0"], "the nature CNN needs images at least 36x36"),
    (["train", "{good}", "--set", "network.type=rnn"], "network.type 'rnn' is unknown"),
    (["train", "{good}", "--set", "wrappers=[FlattenObservaton]"],
     "unknown wrapper 'FlattenObservaton' (did you mean 'FlattenObservation'?)"),
    (["train", "{good}", "--set", "wrappers=[{{name: TransformReward}}]"], "takes a Python function"),
    (["train", "{good}", "--set", "wrappers=[{{name: ClipReward, low: 0}}]"],
     "wrapper 'ClipReward' with {'low': 0} failed: TypeError"),
    (["train", "{good}", "--set", "wrappers=[{{name: FrameStackObservation, stack_size: 0}}]"],
     "wrapper 'FrameStackObservation' with {'stack_size': 0} failed: ValueError"),
    (["train", "{good}", "--set", "wrappers=[{{stack_size: 4}}]"], "wrappers[0] needs a wrapper name"),
    (["train", "{good}", "--set", "env_kwargs={{gravity: 3}}"], "environment 'CartPole-v1' rejects its env_kwargs (gravity)"),
    (["train", "{good}", "--set", "env_kwargs=[1]"], "env_kwargs must be a mapping"),
    (["train", "{good}", "--set", "env=no_such_module_here:Thing-v0"], "cannot import module 'no_such_module_here'"),
    (["train", "{good}", "--set", "env=FakeSuite/Game-v0"], 'needs the fakesuite extra: pip install "dqnrun[fakesuite]"'),
    (["train", "{good}", "--set", "env=dqnrun-test/Broken-v0"], "cannot create environment 'dqnrun-test/Broken-v0': RuntimeError: missing licence file"),
    # resources and options
    (["train", "{good}", "--set", "agent.memory_size=100000000000"], "agent.memory_size must be <= 100,000,000"),
    (["train", "{good}", "--out", "{tmp}/a-file/results"], "a-file is a file; choose another with --out"),
    (["train", "{good}", "--out", "{tmp}/a-file"], "a-file is a file; choose another with --out"),
    (["train", "{good}", "--seeds", "1,x"], "--seeds '1,x': expected integers"),
    (["train", "{good}", "--device", "tpu"], "--device 'tpu'"),
    (["train", "{good}", "--jobs", "0"], "--jobs must be >= 1"),
    (["train"], "missing CONFIG"),
    (["train", "--resume", "{tmp}/nowhere"], "no such directory: "),
    (["train", "--resume", "{good}"], "is not a dqnrun run directory (no config.yaml)"),
    (["train", "{good}", "--resume", "{runs}/dqn"], "--resume takes only the run directory"),
    (["train", "--resume", "{runs}/dqn"], "is already complete"),
    (["train", "--resume", "{tmp}/broken-run"], "seed-3.pt is truncated or not a dqnrun checkpoint file; delete it"),
    # runs that are missing, foreign or damaged, for every command that reads runs
    (["compare", "{tmp}/nowhere"], "no such run"),
    (["compare", "{tmp}/nowhere/*"], "no runs match"),
    (["compare", "{tmp}/foreign.joblib"], "is not a dqnrun or lecture result"),
    (["compare", "{tmp}/truncated.joblib"], "is truncated or not a joblib result file"),
    (["compare", "{tmp}/nomodels"], "is not a dqnrun run: it has no results.joblib"),
    (["compare", "--root", "{tmp}/nomodels"], "no runs under"),
    (["compare", "{runs}/dqn", "--format", "xml"], "--format 'xml'"),
    (["plot", "{tmp}/nowhere"], "no such run"),
    (["plot", "{tmp}/good.yaml"], "good.yaml is not a dqnrun result file: name a run directory or a .joblib"),
    (["plot", "{runs}/dqn", "-o", "{tmp}/fig.jpg"], "use a .png, .svg or .pdf"),
    (["plot", "{runs}/dqn", "--x", "time"], "--x 'time'"),
    (["list", "{tmp}/nowhere"], "no such directory"),
    (["list", "{tmp}/nomodels"], "no runs under"),
    (["watch", "{tmp}/nowhere"], "no such run"),
    (["watch", "{tmp}/nomodels", "--record", "{tmp}/x.gif"], "has no saved models"),
    (["watch", "{tmp}/foreign-model", "--record", "{tmp}/x.gif"], "is not a dqnrun model file"),
    (["watch", "{runs}/dqn", "--record", "{tmp}/x.avi"], "use a .gif or .mp4"),
    (["watch", "{runs}/dqn", "--seed", "99"], "has no model for seed 99 (seeds: 3, 4)"),
    (["evaluate", "{tmp}/nowhere"], "no such run"),
    (["evaluate", "{tmp}/corrupt"], "is truncated or not a dqnrun model file"),
    (["evaluate", "{tmp}/mismatch"], "was trained for 3 observations and 2 actions, but CartPole-v1 has 4 and 2"),
    (["evaluate", "{runs}/dqn", "-n", "0"], "--episodes must be >= 1"),
    (["evaluate", "{runs}/dqn", "--env-seed", "-1"], "--env-seed must be >= 0, got -1"),
    (["watch", "{runs}/dqn", "--record", "{tmp}/x.gif", "--env-seed", "-5"], "--env-seed must be >= 0, got -5"),
]


@pytest.fixture
def fake_suite(monkeypatch):
    """A suite whose package is not installed, as a missing extra looks."""
    from dqnrun import envs

    monkeypatch.setitem(envs.SUITES, "FakeSuite", ("dqnrun_fake_suite_package", None, "fakesuite"))


@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_user_mistake_exits_2_with_one_line(ws, fake_suite, args, message):
    result = runner.invoke(app, [a.format(**ws) for a in args], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
