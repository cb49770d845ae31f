"""Replay benchmarks (not tests): uniform vs prioritized training steps, and PER at 1M capacity.

    python benchmarks/replay.py            # both measurements
    python benchmarks/replay.py --quick    # fewer repetitions

Prints median timings over several repetitions. Single torch thread, CPU, as in training.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from dqnrun.agent import Agent
from dqnrun.config import load_config
from dqnrun.envs import make_env
from dqnrun.networks import NetworkSpec
from dqnrun.replay import make_replay


def fill(memory, n: int, obs_dim: int, rng: np.random.Generator) -> None:
    for _ in range(n):
        memory.add(rng.normal(size=obs_dim).astype(np.float32), int(rng.integers(2)), 1.0,
                   rng.normal(size=obs_dim).astype(np.float32), bool(rng.random() < 0.05))


def training_step_seconds(config_path: str, steps: int, repeats: int) -> float:
    """Median seconds of one full training step (act, env step, store, sample, update, priorities)."""
    config = load_config(config_path)
    a = config.agent
    env = make_env(config.env)
    obs_dim, n_actions = env.observation_space.shape[0], env.action_space.n
    spec = NetworkSpec(obs_dim, n_actions, config.network.hidden, a.dueling)
    agent = Agent(spec, a, "cpu", torch_seed=0)
    rng = np.random.default_rng(0)
    memory = make_replay(a.memory_size, obs_dim, rng, "cpu", a.prioritized, config.per.alpha, config.per.eps)
    fill(memory, a.memory_size, obs_dim, rng)
    obs, _ = env.reset(seed=0)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for step in range(steps):
            action = agent.act(obs, 0.3, rng)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            memory.add(obs, action, float(reward), next_obs, terminated)
            batch = memory.sample(a.batch_size, 0.5)
            learned = agent.update(batch)
            if a.prioritized:
                memory.update_priorities(batch.indices, learned.td_errors.numpy())
            if step % a.target_update_steps == 0:
                agent.sync_target()
            obs = next_obs if not (terminated or truncated) else env.reset()[0]
        times.append((time.perf_counter() - start) / steps)
    return statistics.median(times)


def per_sample_update_seconds(capacity: int, batch: int, iters: int, repeats: int) -> float:
    """Median seconds of sample(batch) + update_priorities at `capacity` filled entries."""
    rng = np.random.default_rng(0)
    memory = make_replay(capacity, 4, rng, "cpu", prioritized=True)
    # Fill the storage arrays in bulk; priorities through the sampler, as add() would.
    memory.storage.obs[:] = rng.normal(size=(capacity, 4))
    memory.storage.next_obs[:] = rng.normal(size=(capacity, 4))
    memory.size, memory.cursor = capacity, 0
    mass = rng.random(capacity) ** memory.sampler.alpha
    for tree in (memory.sampler.sums, memory.sampler.mins):
        tree.leaves[:capacity] = mass
        tree.rebuild()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iters):
            b = memory.sample(batch, 0.4)
            memory.update_priorities(b.indices, rng.random(batch))
        times.append((time.perf_counter() - start) / iters)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps, repeats = (300, 3) if args.quick else (1000, 5)
    uniform = training_step_seconds("configs/ddqn.yaml", steps, repeats)
    prioritized = training_step_seconds("configs/per.yaml", steps, repeats)
    print(f"training step, 50,000 filled, batch 64, MLP 512-128 (median of {repeats} x {steps} steps)")
    print(f"  uniform (ddqn):    {uniform * 1e3:7.3f} ms")
    print(f"  prioritized (per): {prioritized * 1e3:7.3f} ms   ratio {prioritized / uniform:.2f}x (goal <= 1.2x)")
    per = per_sample_update_seconds(1_000_000, 64, 2000 if not args.quick else 500, repeats)
    print(f"sample(64) + update_priorities at 1,000,000 entries: {per * 1e6:7.1f} us (goal < 150 us)")


if __name__ == "__main__":
    main()
