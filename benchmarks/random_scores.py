"""Mean return of a uniformly random policy: the 0 of `dqnrun compare`'s normalised scores.

    python benchmarks/random_scores.py CartPole-v1 Acrobot-v1 MountainCar-v0 LunarLander-v3

100 episodes per environment, reset seeds and action-sampling seeds 0..99. The printed means are
`stats.RANDOM_SCORES`.
"""

from __future__ import annotations

import sys

import gymnasium as gym
import numpy as np


def random_score(env_id: str, episodes: int = 100) -> tuple[float, float]:
    """(mean, standard error) of the return of uniformly random actions."""
    env = gym.make(env_id)
    returns = []
    for i in range(episodes):
        env.reset(seed=i)
        env.action_space.seed(i)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns)), float(np.std(returns) / np.sqrt(episodes))


if __name__ == "__main__":
    for env_id in sys.argv[1:] or ["CartPole-v1", "Acrobot-v1"]:
        mean, se = random_score(env_id)
        print(f"{env_id}: {mean:.1f} +- {se:.1f} (standard error), reward threshold "
              f"{gym.spec(env_id).reward_threshold}")
