"""Vectorised seeds (speed.vectorize): a group of seeds trained in one process, against separate seeds."""

import math

import gymnasium as gym
import joblib
import numpy as np
import pytest
import torch
from chain_env import register
from tests_helpers import TINY_RAW
from typer.testing import CliRunner

from dqnrun import experiment
from dqnrun.chunks import GroupTask, run_group_chunk
from dqnrun.cli import app
from dqnrun.config import config_from_dict
from dqnrun.experiment import plan, seed_groups
from dqnrun.group import train_group
from dqnrun.trainer import EpisodeEnd, SeedRun, train_seed

TOL = dict(rtol=1e-4, atol=1e-5)  # batched kernels sum in another order: last bits differ


def config(**changes):
    return config_from_dict({**TINY_RAW, "checkpoint_every": 0, **changes})


def chain_config(**changes):
    """The chain environment: every episode 10 steps, so every seed updates at the same steps."""
    agent = {"memory_size": 200, "memory_start_size": 5, "batch_size": 8, **changes.pop("agent", {})}
    return config(env=register(), episodes=6, eval_episodes=2, window=1, agent=agent, **changes)


def exactly_equal(a, b):
    assert a.scores == b.scores and a.train_returns == b.train_returns and a.steps == b.steps
    assert a.epsilons == b.epsilons
    for name in ("losses", "mean_qs", "max_qs", "betas"):  # nan (no update, uniform replay) equals nan
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.updates, a.best_score, a.best_episode, a.status) == (b.updates, b.best_score, b.best_episode, b.status)
    assert (a.eval_steps, a.eval_scores) == (b.eval_steps, b.eval_scores)
    for x, y in ((a.best_state, b.best_state), (a.final_state, b.final_state)):
        assert (x is None) == (y is None)
        if x is not None:
            assert all(torch.equal(x[k], y[k]) for k in x)


SWITCHES = {
    "ddqn": {},
    "dqn-huber-clip": dict(variant="dqn", agent={"loss": "huber", "max_grad_norm": 0.5, "train_freq": 2,
                                                  "gradient_steps": 3}),
    "per-dueling-nstep-adam": dict(variant="per", eval_every_steps=15,
                                   agent={"dueling": True, "n_step": 3, "optimizer": "adam"}),
    "polyak": dict(variant="dueling"),
    "max-steps": dict(max_steps=45),  # ends inside an episode
    "noisy": dict(agent={"noisy": True, "dueling": True}, epsilon={"max": 0.0, "min": 0.0, "decay_steps": 1}),
    "rainbow": dict(variant="rainbow", epsilon={"max": 0.0, "min": 0.0, "decay_steps": 1},
                    agent={"v_min": 0.0, "v_max": 10.0, "atoms": 11, "target_update_steps": 8}),
}


@pytest.mark.parametrize("switches", SWITCHES.values(), ids=SWITCHES.keys())
def test_a_group_learns_what_each_seed_learns_alone(switches):
    # On the chain the episodes, targets and updates are the same math in both modes: every
    # count and return is exact, the learned numbers equal up to the batched kernels' rounding.
    c = chain_config(**switches)
    spec = plan(c, 1)
    seeds = (3, 4, 5)
    together = train_group(c, seeds, spec)
    assert list(together) == list(seeds)
    for seed in seeds:
        alone, ours = train_seed(c, seed, spec), together[seed]
        assert ours.status == alone.status == "complete"
        assert (ours.steps, ours.train_returns, ours.epsilons, ours.updates) == (
            alone.steps, alone.train_returns, alone.epsilons, alone.updates)
        assert ours.scores == alone.scores and ours.eval_scores == alone.eval_scores
        torch.testing.assert_close(torch.tensor(ours.losses), torch.tensor(alone.losses), **TOL, equal_nan=True)
        torch.testing.assert_close(torch.tensor(ours.mean_qs), torch.tensor(alone.mean_qs), **TOL, equal_nan=True)
        for name, value in alone.final_state.items():
            torch.testing.assert_close(ours.final_state[name], value, **TOL)


# CartPole's episodes end at different steps per seed: seeds warm their n-step replay, update,
# pause and finish at different times, so the masks are exercised.
MASKED = dict(variant="per", episodes=6, agent={**TINY_RAW["agent"], "n_step": 3, "optimizer": "adam"})
# Stacked uint8 frames of a grid world: the frame-deduplicating replay and the CNN (vmap's path).
FRAMES = dict(env="custom_envs:dqnrun-test/Grid-v0", env_kwargs={"channels": 1}, episodes=8,
              wrappers=[{"name": "FrameStackObservation", "stack_size": 3}],
              agent={**TINY_RAW["agent"], "memory_size": 300, "memory_start_size": 20, "batch_size": 8, "n_step": 2})


NOISY = dict(MASKED, agent={**MASKED["agent"], "noisy": True}, epsilon={"max": 0.5, "min": 0.0, "decay_steps": 100})


RAINBOW = dict(MASKED, variant="rainbow", agent={**MASKED["agent"], "atoms": 11, "v_min": 0.0, "v_max": 50.0})


@pytest.mark.parametrize("switches", [MASKED, FRAMES, NOISY, RAINBOW],
                         ids=["cartpole-per-nstep-adam", "frames-cnn", "noisy", "rainbow"])
def test_a_seeds_numbers_do_not_depend_on_the_other_seeds_of_its_group(switches):
    c = config(**switches)
    spec = plan(c, 1)
    both = train_group(c, (3, 4), spec)
    only_4 = train_group(c, (3, 4), spec, train=[4])  # seed 3's slot frozen from the start
    assert set(only_4) == {4}
    exactly_equal(only_4[4], both[4])
    assert both[4].updates > 10
    if switches is not FRAMES:
        assert both[3].steps[-1] != both[4].steps[-1]  # they did finish at different times


@pytest.mark.parametrize("switches", [MASKED, NOISY, RAINBOW], ids=["per-nstep-adam", "noisy", "rainbow"])
def test_interrupting_a_group_anywhere_and_resuming_gives_bitwise_the_same_results(switches):
    c = config(**{**switches, "checkpoint_every": 2})
    spec = plan(c, 1)
    straight = train_group(c, (3, 4, 5), spec)
    checkpoints = {3: None, 4: None, 5: None}
    finished, ended, tasks = {}, [], 0
    while checkpoints:
        tasks += 1
        # Ctrl-C once, after the group's fifth episode: each seed stops at its episode's end.
        stop = lambda: len(ended) >= 5 and tasks == 2  # noqa: E731
        results = run_group_chunk(GroupTask(c, (3, 4, 5), spec, "cpu", dict(checkpoints)),
                                  emit=lambda e: ended.append(e) if isinstance(e, EpisodeEnd) else None,
                                  should_stop=stop)
        for r in results:
            if r.result is not None:
                finished[r.seed] = r.result
                del checkpoints[r.seed]
            else:
                assert r.status == ("interrupted" if tasks == 2 else "checkpoint")
                checkpoints[r.seed] = r.checkpoint
    assert tasks > 3
    for seed in (3, 4, 5):
        exactly_equal(finished[seed], straight[seed])


class HugeReward(gym.Wrapper):
    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, 1e38, terminated, truncated, info


def test_a_diverging_seed_stops_alone_and_the_others_are_untouched(monkeypatch):
    c = config(variant="ddqn", episodes=8)
    spec = plan(c, 1)
    healthy = train_group(c, (3, 4, 5), spec)
    init = SeedRun.__init__

    def seed_4_blows_up(self, config, seed, *args, **kwargs):
        init(self, config, seed, *args, **kwargs)
        if seed == 4:
            self.env = HugeReward(self.env)  # its squared TD errors overflow float32

    monkeypatch.setattr(SeedRun, "__init__", seed_4_blows_up)
    sick = train_group(c, (3, 4, 5), spec)
    assert sick[4].status == "diverged" and len(sick[4].scores) < 8
    assert sick[4].diverged == f"episode {len(sick[4].scores)}, step {sick[4].steps[-1]}"
    assert not math.isfinite(sick[4].losses[-1])
    for seed in (3, 5):
        exactly_equal(sick[seed], healthy[seed])


def test_groups_are_consecutive_seeds_of_the_config_the_last_one_smaller():
    c = config(seeds=[9, 3, 7, 1, 5], speed={"vectorize": 2})
    assert seed_groups(c) == {9: (9, 3), 3: (9, 3), 7: (7, 1), 1: (7, 1), 5: (5,)}
    assert seed_groups(config(seeds=[9, 3])) == {9: (9,), 3: (3,)}


runner = CliRunner()


def train(*args):
    return runner.invoke(app, ["train", *args], env={"COLUMNS": "300"})


def same_run(a, b, seeds):
    one, two = joblib.load(a / "results.joblib"), joblib.load(b / "results.joblib")
    for key in ("scores", "train_returns", "steps", "losses", "smoothed", "mean_score"):
        np.testing.assert_array_equal(one[key], two[key])
    for seed in seeds:
        for kind in ("", "-final"):
            w1 = torch.load(a / "models" / f"seed-{seed}{kind}.pt", weights_only=True)["state_dict"]
            w2 = torch.load(b / "models" / f"seed-{seed}{kind}.pt", weights_only=True)["state_dict"]
            assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_a_vectorised_run_gives_the_same_numbers_with_one_or_two_jobs(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setattr("dqnrun.workers.SPAWN_AFTER", 0.0)
    monkeypatch.setattr("dqnrun.workers.SPAWN_WORTH", 0.0)
    path = str(tiny_config("vec", variant="per", seeds=[3, 4, 5, 6], episodes=4))
    a = train(path, "--out", str(tmp_path), "--name", "one", "--jobs", "1", "--vectorize", "2")
    b = train(path, "--out", str(tmp_path), "--name", "two", "--jobs", "2", "--vectorize", "2")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert "2 jobs" in b.output
    assert joblib.load(tmp_path / "one" / "results.joblib")["config"]["speed"]["vectorize"] == 2
    same_run(tmp_path / "one", tmp_path / "two", (3, 4, 5, 6))


def test_sweep_vectorize_applies_to_every_point(tiny_config, tmp_path):
    base = tiny_config("base", episodes=2)
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"name: s\nbase: {base}\ngrid: {{agent.learning_rate: [0.001, 0.0005]}}\n")
    result = runner.invoke(app, ["sweep", str(sweep), "--vectorize", "2", "--out", str(tmp_path), "--jobs", "1"],
                           env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    for point in ("lr0.001", "lr0.0005"):
        assert joblib.load(tmp_path / "s" / point / "results.joblib")["config"]["speed"]["vectorize"] == 2


class Crash(Exception):
    pass


def test_a_vectorised_run_that_crashed_resumes_from_its_seeds_checkpoints(tiny_config, tmp_path, monkeypatch):
    path = str(tiny_config("vec", variant="per", seeds=[3, 4, 5], episodes=6, checkpoint_every=2,
                           agent={**TINY_RAW["agent"], "n_step": 3}))
    assert train(path, "--out", str(tmp_path), "--name", "straight", "--jobs", "1", "--vectorize", "2").exit_code == 0
    real, written = experiment.save_chunk, []

    def crash_after_three_chunks(run_dir, config, spec, chunk):
        real(run_dir, config, spec, chunk)
        written.append(chunk.seed)
        if len(written) == 3:
            raise Crash

    monkeypatch.setattr(experiment, "save_chunk", crash_after_three_chunks)
    crashed = train(path, "--out", str(tmp_path), "--name", "crashed", "--jobs", "1", "--vectorize", "2")
    assert isinstance(crashed.exception, Crash)
    assert sorted(p.name for p in (tmp_path / "crashed" / "checkpoints").iterdir())  # per-seed files
    monkeypatch.setattr(experiment, "save_chunk", real)
    resumed = train("--resume", str(tmp_path / "crashed"), "--jobs", "1")
    assert resumed.exit_code == 0, resumed.output
    same_run(tmp_path / "straight", tmp_path / "crashed", (3, 4, 5))


@pytest.mark.parametrize("args, message", [
    (["--vectorize", "0"], "speed.vectorize must be >= 1 (1 = one seed per process), got 0"),
    (["--vectorize", "1001"], "speed.vectorize must be <= 1,000, got 1,001"),
    (["--vectorize", "two"], "Invalid value for '--vectorize'"),
])
def test_a_bad_vectorize_is_one_line_and_exit_2(tiny_config, tmp_path, args, message):
    result = train(str(tiny_config()), "--out", str(tmp_path), *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "tiny").exists()


def test_resume_keeps_the_runs_own_vectorize(tmp_path):
    result = train("--resume", str(tmp_path), "--vectorize", "2")
    assert result.exit_code == 2 and "--resume takes only the run directory" in result.output


def test_on_a_gpu_the_seeds_stack_unless_the_user_chose_otherwise(tmp_path, monkeypatch):
    import yaml

    from dqnrun import experiment
    from tests_helpers import TINY_RAW

    monkeypatch.setattr(experiment, "resolve_device", lambda name: "cuda" if name == "cuda" else "cpu")
    base = {**TINY_RAW, "seeds": [1, 2, 3]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "one.yaml").write_text(yaml.safe_dump({**base, "speed": {"vectorize": 1}}))

    def stacked(config, device="cuda", overrides=(), name=None):
        plan = experiment.start_run(config, overrides=overrides, out=tmp_path / "out", device=device, name=name)
        assert yaml.safe_load(plan.run_dir.joinpath("config.yaml").read_text())["speed"]["vectorize"] == \
            plan.config.speed.vectorize
        return plan.config.speed.vectorize, plan.notes

    k, notes = stacked(tmp_path / "c.yaml", name="a")
    assert k == 3 and any("the 3 seeds train stacked in one process" in n for n in notes)
    assert stacked(dict(base), name="b")[0] == 3
    assert stacked(tmp_path / "c.yaml", device="cpu", name="c")[0] == 1  # CPU: one seed per process by default
    assert stacked(tmp_path / "one.yaml", name="d")[0] == 1  # chosen in the file
    assert stacked(tmp_path / "c.yaml", overrides=["speed.vectorize=1"], name="e")[0] == 1  # chosen by --set
    assert stacked(tmp_path / "c.yaml", overrides=["seeds=[4]"], name="f")[0] == 1  # one seed: nothing to stack


def test_stacked_convolutional_seeds_on_the_cpu_are_told_they_are_slower(tmp_path):
    from dqnrun import experiment
    from tests_helpers import IMAGE_ENV, TINY_RAW

    def notes(**changes):
        raw = {**TINY_RAW, "seeds": [1, 2], "speed": {"vectorize": 2}, **changes}
        return experiment.start_run(raw, out=tmp_path, device="cpu", name=str(len(list(tmp_path.iterdir())))).notes

    cnn = notes(env=IMAGE_ENV, network={"type": "cnn", "cnn": "minatar"})
    assert any("stacked seeds of a convolutional network on the CPU train slower" in n for n in cnn)
    assert not any("convolutional" in n for n in notes())  # an MLP's stack pays on the CPU
