"""Replay memory for Atari-sized observations (a benchmark, not a test).

    python benchmarks/replay_memory.py              # 1,000,000 transitions of 4 stacked 84x84 frames
    python benchmarks/replay_memory.py --capacity 200000

For each storage scheme, a replay of 3,000 transitions is built and filled from a stream of
FrameStackObservation stacks with episodes of Pong-like lengths; the bytes its arrays hold are
checked against `replay_bytes`, which then gives the figure at the full capacity (nothing that
large is allocated). Also times sampling a batch of 32 from each.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np

from dqnrun.replay import make_replay, replay_bytes

SHAPE = (4, 84, 84)


class Frames(gym.Env):
    """Random 84x84 uint8 frames; episodes of 800-2000 steps (Pong's agent steps)."""

    observation_space = gym.spaces.Box(0, 255, shape=SHAPE[1:], dtype=np.uint8)
    action_space = gym.spaces.Discrete(6)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.left = int(self.np_random.integers(800, 2001))
        return self.np_random.integers(0, 256, SHAPE[1:], dtype=np.uint8), {}

    def step(self, action):
        self.left -= 1
        return self.np_random.integers(0, 256, SHAPE[1:], dtype=np.uint8), 0.0, self.left == 0, False, {}


def fill(memory, n: int) -> None:
    env = gym.wrappers.FrameStackObservation(Frames(), SHAPE[0])
    obs, _ = env.reset(seed=0)
    for _ in range(n):
        nxt, reward, terminated, truncated, _ = env.step(0)
        memory.add(obs, 0, reward, nxt, terminated)
        obs = env.reset()[0] if terminated or truncated else nxt


def allocated(memory) -> int:
    arrays = [*vars(memory).values(), *vars(memory.storage).values()]
    return sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))


def sample_us(memory, repeats: int = 200) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        memory.sample(32)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capacity", type=int, default=1_000_000)
    args = parser.parse_args()
    small = 3_000
    schemes = [
        ("float32 stacks, obs and next obs", np.float32, None),
        ("uint8 stacks, obs and next obs", np.uint8, None),
        ("uint8 frames, each stored once (dqnrun)", np.uint8, "reset"),
    ]
    print(f"{args.capacity:,} transitions of {SHAPE} observations (uniform replay):")
    for name, dtype, padding in schemes:
        memory = make_replay(small, SHAPE, np.random.default_rng(0), "cpu", dtype=dtype, frame_padding=padding)
        assert allocated(memory) == replay_bytes(small, SHAPE, False, dtype, padding is not None)
        fill(memory, small + 1_000)  # wrapped around once
        full = replay_bytes(args.capacity, SHAPE, False, dtype, padding is not None)
        extra = ""
        if padding:
            extra = f", {memory.storage.total / (small + 1_000):.3f} frames written per transition"
        print(f"  {name:42s} {full / 1e9:7.2f} GB ({full / 2**30:6.2f} GiB); "
              f"sample(32) {sample_us(memory):6.0f} us{extra}")


if __name__ == "__main__":
    main()
