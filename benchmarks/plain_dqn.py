"""A plain single-file DQN on CartPole-v1, the reference loop of the side-by-side benchmark.

    python benchmarks/plain_dqn.py --total-timesteps 12000      # prints env steps per second

Written in the style of CleanRL's dqn.py (Huang et al. 2022, "CleanRL: High-quality Single-file
Implementations of Deep Reinforcement Learning Algorithms", JMLR 23(274);
https://github.com/vwxyzjn/cleanrl): the whole algorithm top to bottom in one function, a
settings dataclass whose fields carry their own docstrings, nothing else. It is not CleanRL's
code, and differs from its dqn.py in what the benchmark needs: the lecture's hyperparameters
(MLP 4-512-128-2, RMSprop at lr 0.001, batch 64, replay 50,000, updates once the replay holds
more than 320, gamma 1.0, hard target copy every 15 env steps, epsilon 1.0 -> 0.3 over 20,000
steps in the lecture's log space), numpy arrays for the replay (CleanRL uses SB3's
ReplayBuffer), one Gymnasium env without a vector-env wrapper, no logging.

The target is DQN's (Mnih et al. 2015): y = r + gamma * (1 - terminated) * max_a' Q_target(s', a');
a time-limit truncation is bootstrapped, not treated as terminal. Uniform sampling with
replacement, as SB3's buffer does.
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass, fields

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Args:
    env_id: str = "CartPole-v1"
    """the Gymnasium environment"""
    seed: int = 12
    """seed of random, numpy, torch and the environment"""
    total_timesteps: int = 12_000
    """env steps to train for"""
    learning_rate: float = 0.001
    """RMSprop's learning rate (torch's alpha 0.99 and eps 1e-8)"""
    buffer_size: int = 50_000
    """replay memory size"""
    gamma: float = 1.0
    """discount factor"""
    target_network_frequency: int = 15
    """env steps between hard copies of the online network into the target network"""
    batch_size: int = 64
    """transitions per update"""
    start_e: float = 1.0
    """first epsilon"""
    end_e: float = 0.3
    """last epsilon"""
    exploration_steps: int = 20_000
    """env steps of the epsilon decay (log-spaced, as the lecture's create_epsilons)"""
    learning_starts: int = 320
    """updates start once the replay holds more than this many transitions"""


class QNetwork(nn.Module):
    def __init__(self, n_obs: int, n_actions: int):
        super().__init__()
        self.network = nn.Sequential(nn.Linear(n_obs, 512), nn.ReLU(), nn.Linear(512, 128), nn.ReLU(),
                                     nn.Linear(128, n_actions))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)


def train(args: Args) -> int:
    """Train for `args.total_timesteps` env steps; return the env steps taken."""
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    env = gym.make(args.env_id)
    n_obs, n_actions = env.observation_space.shape[0], int(env.action_space.n)
    q_network = QNetwork(n_obs, n_actions)
    optimizer = torch.optim.RMSprop(q_network.parameters(), lr=args.learning_rate)
    target_network = QNetwork(n_obs, n_actions)
    target_network.load_state_dict(q_network.state_dict())

    observations = np.zeros((args.buffer_size, n_obs), dtype=np.float32)
    next_observations = np.zeros((args.buffer_size, n_obs), dtype=np.float32)
    actions = np.zeros(args.buffer_size, dtype=np.int64)
    rewards = np.zeros(args.buffer_size, dtype=np.float32)
    terminations = np.zeros(args.buffer_size, dtype=np.float32)
    position = size = 0

    log_space = np.logspace(0, -2, args.exploration_steps)
    epsilons = args.end_e + (args.start_e - args.end_e) * (log_space - log_space.min()) / np.ptp(log_space)

    obs, _ = env.reset(seed=args.seed)
    for global_step in range(args.total_timesteps):
        epsilon = epsilons[global_step] if global_step < args.exploration_steps else args.end_e
        if rng.random() < epsilon:
            action = int(rng.integers(n_actions))
        else:
            with torch.no_grad():
                action = int(q_network(torch.from_numpy(obs).unsqueeze(0)).argmax(1))
        next_obs, reward, terminated, truncated, _ = env.step(action)

        observations[position], next_observations[position] = obs, next_obs
        actions[position], rewards[position], terminations[position] = action, reward, terminated
        position, size = (position + 1) % args.buffer_size, min(size + 1, args.buffer_size)
        obs = next_obs if not (terminated or truncated) else env.reset()[0]

        if size > args.learning_starts:
            idx = rng.integers(0, size, args.batch_size)
            b_obs, b_next = torch.from_numpy(observations[idx]), torch.from_numpy(next_observations[idx])
            b_actions, b_rewards = torch.from_numpy(actions[idx]), torch.from_numpy(rewards[idx])
            b_terminations = torch.from_numpy(terminations[idx])
            with torch.no_grad():
                target_max = target_network(b_next).max(1).values
                td_target = b_rewards + args.gamma * target_max * (1.0 - b_terminations)
            old_val = q_network(b_obs).gather(1, b_actions.unsqueeze(1)).squeeze(1)
            loss = F.mse_loss(old_val, td_target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        if global_step % args.target_network_frequency == 0:
            target_network.load_state_dict(q_network.state_dict())
    env.close()
    return args.total_timesteps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in fields(Args):
        parser.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    args = Args(**{f.name: getattr(parser.parse_args(), f.name) for f in fields(Args)})
    torch.set_num_threads(1)
    start = time.perf_counter()
    steps = train(args)
    seconds = time.perf_counter() - start
    print(f"{steps:,} env steps in {seconds:.1f} s, {steps / seconds:,.0f} steps/s")


if __name__ == "__main__":
    main()
