"""One seed's training: exact resume from any checkpoint, divergence, evaluation batching."""

import math

import numpy as np
import pytest
import torch
from chain_env import register
from tests_helpers import TINY_RAW

from dqnrun.config import config_from_dict
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
