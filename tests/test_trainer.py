"""One seed's training: exact resume from any checkpoint, divergence, evaluation batching."""

import math

import numpy as np
import pytest
import torch
from chain_env import register
from tests_helpers import TINY_RAW

from dqnrun.config import config_from_dict
from dqnrun.experiment import plan
from dqnrun.networks import NetworkSpec
from dqnrun.trainer import evaluate, train_seed

SPEC = NetworkSpec(4, 2, (32,), False)


def config(**changes):
    raw = {**TINY_RAW, **changes}
    return config_from_dict(raw)


class Crash(Exception):
    pass


def same(a, b):
    assert a.scores == b.scores
    assert a.train_returns == b.train_returns and a.steps == b.steps and a.epsilons == b.epsilons
    np.testing.assert_array_equal(a.losses, b.losses)
    assert (a.best_score, a.best_episode) == (b.best_score, b.best_episode)
    assert all(torch.equal(a.best_state[k], b.best_state[k]) for k in a.best_state)


@pytest.mark.parametrize("variant", ["ddqn", "per", "dueling"])
@pytest.mark.parametrize("stop_after", [1, 4, 9])
def test_stop_and_resume_is_bitwise_identical(variant, stop_after):
    c = config(variant=variant, episodes=12, checkpoint_every=0)
    straight = train_seed(c, 5, SPEC)
    saved, episodes = [], []
    first = train_seed(c, 5, SPEC, emit=lambda e: episodes.append(e) if hasattr(e, "score") else None,
                       should_stop=lambda: len(episodes) >= stop_after, save_checkpoint=saved.append)
    assert first.status == "interrupted" and len(first.scores) == stop_after and len(saved) == 1
    resumed = train_seed(c, 5, SPEC, resume=saved[0])
    assert resumed.status == "complete"
    same(resumed, straight)


# Every new switch on at once, on both kinds of head and loss.
ALL_ON = {
    "rainbow": dict(variant="rainbow", eval_every_steps=60,
                    agent={**TINY_RAW["agent"], "v_min": 0.0, "v_max": 50.0, "atoms": 11, "train_freq": 2,
                           "gradient_steps": 2, "max_grad_norm": 5.0},
                    epsilon={"max": 0.0, "min": 0.0, "decay_steps": 1}),
    "huber-nstep-noisy": dict(variant="per",
                              agent={**TINY_RAW["agent"], "n_step": 4, "noisy": True, "dueling": True,
                                     "loss": "huber", "huber_delta": 2.0, "max_grad_norm": 1.0, "train_freq": 3,
                                     "gradient_steps": 2}),
}


@pytest.mark.parametrize("switches", sorted(ALL_ON))
@pytest.mark.parametrize("stop_after", [2, 7])
def test_stop_and_resume_is_bitwise_identical_with_every_new_switch(switches, stop_after):
    c = config(episodes=10, checkpoint_every=0, **ALL_ON[switches])
    spec = plan(c, 1)
    straight = train_seed(c, 5, spec)
    saved, episodes = [], []
    first = train_seed(c, 5, spec, emit=lambda e: episodes.append(e) if hasattr(e, "score") else None,
                       should_stop=lambda: len(episodes) >= stop_after, save_checkpoint=saved.append)
    assert first.status == "interrupted" and len(saved) == 1
    resumed = train_seed(c, 5, spec, resume=saved[0])
    same(resumed, straight)
    assert (resumed.eval_steps, resumed.eval_scores, resumed.updates) == (
        straight.eval_steps, straight.eval_scores, straight.updates)


def chain_config(**changes):
    env_id = register()
    agent = {"memory_size": 100, "memory_start_size": 5, "batch_size": 4, **changes.pop("agent", {})}
    return config(**{"env": env_id, "episodes": 3, "eval_episodes": 0, "window": 1, "agent": agent, **changes})


@pytest.mark.parametrize("train_freq, gradient_steps, updates", [(1, 1, 25), (3, 2, 18), (4, 3, 18), (1, 2, 50)])
def test_train_freq_and_gradient_steps_set_the_number_of_updates(train_freq, gradient_steps, updates):
    # 3 episodes of 10 steps; the replay holds more than 5 transitions after env step 6, so the
    # env steps that may update are 6..30: every train_freq-th of them, gradient_steps times.
    c = chain_config(agent={"train_freq": train_freq, "gradient_steps": gradient_steps})
    result = train_seed(c, 1, plan(c, 1))
    assert result.updates == updates == gradient_steps * sum(
        1 for s in range(6, 31) if s % train_freq == 0)


def test_evaluation_every_n_env_steps_is_recorded_with_its_step():
    c = chain_config(eval_every_steps=7, eval_episodes=2)
    result = train_seed(c, 1, plan(c, 1))
    assert result.eval_steps == [7, 14, 21, 28]
    assert len(result.eval_scores) == 4 and all(0 <= score <= 10 for score in result.eval_scores)
    assert result.scores == result.train_returns  # the per-episode curve is the training return
    assert result.best_score == max(result.eval_scores)
    assert result.best_episode == [1, 2, 3, 3][result.eval_scores.index(result.best_score)]


def test_crash_between_checkpoints_resumes_from_the_last_one():
    c = config(variant="per", episodes=12, checkpoint_every=3)
    straight = train_seed(c, 6, SPEC)
    saved = []

    def crash_at_episode_8(event):
        if getattr(event, "episode", 0) == 8:
            raise Crash

    with pytest.raises(Crash):
        train_seed(c, 6, SPEC, emit=crash_at_episode_8, save_checkpoint=saved.append)
    assert [s["episode"] for s in saved] == [3, 6]
    resumed = train_seed(c, 6, SPEC, resume=saved[-1])
    same(resumed, straight)


def test_checkpoint_holds_the_whole_state():
    saved = []
    train_seed(config(episodes=6, checkpoint_every=2), 7, SPEC, save_checkpoint=saved.append)
    state = saved[-1]
    assert state["episode"] == 4 and state["step"] == state["result"]["steps"][-1]
    assert set(state["agent"]) == {"online", "target", "optimizer"}
    assert state["replay"]["size"] == state["step"]
    assert set(state["rng"]) == {"explore", "env", "evaluation"} and "rng" in state["replay"]["sampler"]


def test_an_absurd_learning_rate_marks_the_seed_diverged():
    result = train_seed(config(episodes=30, agent={**TINY_RAW["agent"], "learning_rate": 1e30}), 3, SPEC)
    assert result.status == "diverged"
    assert result.diverged == f"episode {len(result.scores)}, step {result.steps[-1]}"
    assert len(result.scores) < 30 and not math.isfinite(result.losses[-1])


def test_evaluation_steps_all_episodes_together():
    env_id = register()
    from dqnrun.envs import make_env

    envs = [make_env(env_id) for _ in range(3)]
    batches = []

    def policy(obs):
        batches.append(len(obs))
        return np.ones(len(obs), dtype=np.int64)

    returns = evaluate(policy, envs, [1, 2, 3])
    np.testing.assert_array_equal(returns, [10.0, 10.0, 10.0])
    assert batches == [3] * 10  # one forward pass per step for all three episodes


# Stacked uint8 frames: the replay's frame store (with n-step transitions held aside) and the CNN.
FRAMES = dict(env="custom_envs:dqnrun-test/Grid-v0", env_kwargs={"channels": 1},
              wrappers=[{"name": "FrameStackObservation", "stack_size": 3}],
              agent={**TINY_RAW["agent"], "memory_size": 300, "memory_start_size": 20, "batch_size": 8})


@pytest.mark.parametrize("switches", [{}, {"variant": "per", "agent": {**FRAMES["agent"], "n_step": 3}}])
def test_frame_store_trains_bitwise_like_whole_stacks_and_resumes_exactly(monkeypatch, switches):
    import dqnrun.trainer

    c = config(episodes=12, checkpoint_every=0, **{**FRAMES, **switches})
    spec = plan(c, 1)
    assert spec.trunk == "minatar" and spec.obs_shape == (3, 6, 6, 1)
    straight = train_seed(c, 5, spec)
    saved, episodes = [], []
    first = train_seed(c, 5, spec, emit=lambda e: episodes.append(e) if hasattr(e, "score") else None,
                       should_stop=lambda: len(episodes) >= 5, save_checkpoint=saved.append)
    assert first.status == "interrupted"
    same(train_seed(c, 5, spec, resume=saved[0]), straight)
    # The same run storing whole stacks (nothing was evicted: 72 steps in a memory of 300).
    monkeypatch.setattr(dqnrun.trainer, "frame_stack_of", lambda env: None)
    same(train_seed(c, 5, spec), straight)


def _flushes_denormals() -> bool:
    return (torch.tensor([1e-40]) * 1.0).item() == 0.0


@pytest.mark.parametrize("flush", [False, True])
def test_speed_flush_denormal_holds_while_the_seed_trains_and_is_undone_after(flush):
    seen = []
    c = config(episodes=2, speed={"flush_denormal": flush})
    train_seed(c, 5, SPEC, emit=lambda event: seen.append(_flushes_denormals()) if hasattr(event, "episode") else None)
    assert len(seen) == 2 and set(seen) == {flush}
    assert not _flushes_denormals()


def test_a_checkpoint_older_than_a_config_key_still_matches_its_config():
    """A key added after the checkpoint was written counts as its default; a key the checkpoint
    has and that differs still differs."""
    from dqnrun.trainer import _first_difference, _with_new_keys

    current = {"episodes": 10, "speed": {"flush_denormal": False}, "agent": {"gamma": 0.99, "n_step": 1}}
    old = {"episodes": 10, "agent": {"gamma": 0.99}}
    assert _with_new_keys(old, current) == current
    changed = {"episodes": 10, "agent": {"gamma": 0.9}}
    assert _first_difference(current, _with_new_keys(changed, current)) == "agent.gamma"
