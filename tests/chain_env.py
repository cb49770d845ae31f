"""A deterministic test environment: 10 steps; action 1 earns 1, action 0 earns 0."""

import gymnasium as gym
import numpy as np


class Chain(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode=None):
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.render_mode = render_mode
        self.t = 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t / 10], np.float32), float(action == 1), self.t >= 10, False, {}

    def render(self):
        frame = np.full((40, 60, 3), 255, np.uint8)
        frame[:, : self.t * 6] = 0
        return frame


def register() -> str:
    env_id = "dqnrun-test/Chain-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=Chain)
    return env_id
