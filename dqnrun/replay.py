"""Preallocated circular replay memory with a uniform or a prioritized sampler; typed batches."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from dqnrun.sum_tree import MinTree, SumTree, level_sizes


class Batch(NamedTuple):
    """A minibatch of transitions as tensors on the training device."""

    obs: torch.Tensor  # (B, obs_dim) float32
    actions: torch.Tensor  # (B,) int64
    rewards: torch.Tensor  # (B,) float32
    next_obs: torch.Tensor  # (B, obs_dim) float32
    terminated: torch.Tensor  # (B,) float32: 1.0 where the episode ended in a terminal state
    weights: torch.Tensor | None  # (B,) importance-sampling weights; None for uniform replay
    indices: np.ndarray  # (B,) slots in the memory, for priority updates


class UniformSampler:
    """Uniform sampling with replacement: O(batch), whatever the memory's size."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def on_add(self, index: int) -> None:
        pass

    def sample(self, batch_size: int, size: int, beta: float) -> tuple[np.ndarray, np.ndarray | None]:
        return self.rng.integers(0, size, size=batch_size), None

    def update(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        pass

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


class PrioritizedSampler:
    """Proportional prioritized sampling (Schaul et al. 2016, section 3.3) on a sum tree.

    Priority p_i = |delta_i| + eps; P(i) = p_i^alpha / sum_k p_k^alpha. New transitions get the
    largest priority seen so far, so each is replayed at least once with high probability.
    Sampling is stratified: the total mass is cut into `batch_size` equal segments and one
    point is drawn in each, as in the paper's implementation. A transition whose mass spans
    several segments can appear more than once in a batch; that is the sampling distribution,
    and its duplicates get the same new priority, as they have the same TD error.
    """

    def __init__(self, capacity: int, alpha: float, eps: float, rng: np.random.Generator):
        self.alpha = alpha
        self.eps = eps
        self.rng = rng
        self.sums = SumTree(capacity)
        self.mins = MinTree(capacity)
        self.max_priority = 1.0  # the paper's p_1 = 1

    def on_add(self, index: int) -> None:
        idx = np.array([index])
        mass = np.array([self.max_priority**self.alpha])
        self.sums.update(idx, mass)
        self.mins.update(idx, mass)

    def sample(self, batch_size: int, size: int, beta: float) -> tuple[np.ndarray, np.ndarray]:
        total = self.sums.total()
        targets = (np.arange(batch_size) + self.rng.random(batch_size)) * (total / batch_size)
        indices, mass = self.sums.find(targets)
        probs = mass / total
        # w_i = (N P(i))^-beta / max_j w_j, the max over the whole memory, i.e. at the smallest
        # P(j): Schaul et al. (2016), Algorithm 1, line 10.
        min_prob = self.mins.min() / total
        weights = (probs / min_prob) ** (-beta)
        return indices, weights

    def update(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        priorities = np.abs(td_errors).astype(np.float64) + self.eps
        self.max_priority = max(self.max_priority, float(priorities.max()))
        mass = priorities**self.alpha
        path = self.sums.path(indices)
        self.sums.update(indices, mass, path)
        self.mins.update(indices, mass, path)

    def state_dict(self) -> dict:
        return {
            "rng": self.rng.bit_generator.state,
            "sums": [level.copy() for level in self.sums.levels],
            "mins": [level.copy() for level in self.mins.levels],
            "max_priority": self.max_priority,
        }

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        for tree, levels in ((self.sums, state["sums"]), (self.mins, state["mins"])):
            for level, saved in zip(tree.levels, levels):
                level[:] = saved
        self.max_priority = float(state["max_priority"])


Sampler = UniformSampler | PrioritizedSampler


class ReplayMemory:
    """Fixed-capacity circular storage of transitions in preallocated numpy arrays."""

    def __init__(self, capacity: int, obs_dim: int, sampler: Sampler, device: torch.device | str = "cpu"):
        self.capacity = capacity
        self.sampler = sampler
        self.device = torch.device(device)
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.size = 0
        self.cursor = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs, action: int, reward: float, next_obs, terminated: bool) -> None:
        i = self.cursor
        self.obs[i] = obs
        self.actions[i] = action
        self.rewards[i] = reward
        self.next_obs[i] = next_obs
        self.terminated[i] = terminated
        self.sampler.on_add(i)
        self.cursor = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, beta: float = 1.0) -> Batch:
        indices, weights = self.sampler.sample(batch_size, self.size, beta)

        on_cpu = self.device.type == "cpu"

        def tensor(array: np.ndarray) -> torch.Tensor:
            t = torch.from_numpy(array)
            return t if on_cpu else t.to(self.device, non_blocking=True)

        return Batch(
            obs=tensor(self.obs[indices]),
            actions=tensor(self.actions[indices]),
            rewards=tensor(self.rewards[indices]),
            next_obs=tensor(self.next_obs[indices]),
            terminated=tensor(self.terminated[indices]),
            weights=None if weights is None else tensor(weights.astype(np.float32)),
            indices=indices,
        )

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        self.sampler.update(indices, td_errors)

    def state_dict(self) -> dict:
        n = self.size
        return {
            "obs": self.obs[:n].copy(),
            "next_obs": self.next_obs[:n].copy(),
            "actions": self.actions[:n].copy(),
            "rewards": self.rewards[:n].copy(),
            "terminated": self.terminated[:n].copy(),
            "size": n,
            "cursor": self.cursor,
            "sampler": self.sampler.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        n = int(state["size"])
        for key in ("obs", "next_obs", "actions", "rewards", "terminated"):
            getattr(self, key)[:n] = state[key]
        self.size = n
        self.cursor = int(state["cursor"])
        self.sampler.load_state_dict(state["sampler"])


def replay_bytes(capacity: int, obs_dim: int, prioritized: bool) -> int:
    """Memory the replay will allocate, computed before allocating it."""
    per_transition = 2 * obs_dim * 4 + 8 + 4 + 4
    trees = 2 * sum(level_sizes(capacity)) * 8 if prioritized else 0
    return capacity * per_transition + trees


def make_replay(
    capacity: int, obs_dim: int, rng: np.random.Generator, device: torch.device | str,
    prioritized: bool = False, alpha: float = 0.5, eps: float = 1e-6,
) -> ReplayMemory:
    sampler: Sampler = PrioritizedSampler(capacity, alpha, eps, rng) if prioritized else UniformSampler(rng)
    return ReplayMemory(capacity, obs_dim, sampler, device)
