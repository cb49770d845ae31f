"""Test environments that register themselves when imported, for ids like
`custom_envs:dqnrun-test/Recording-v0` (Gymnasium's module:EnvId form)."""

import gymnasium as gym
import numpy as np


class Recording(gym.Env):
    """Records every constructor call's arguments; 5 steps; action 1 earns `bonus`."""

    calls: list[dict] = []
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode=None, bonus=1.0, size=2):
        Recording.calls.append({"render_mode": render_mode, "bonus": bonus, "size": size})
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(size,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.render_mode = render_mode
        self.bonus = bonus

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(self.observation_space.shape, np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.full(self.observation_space.shape, self.t / 5, np.float32)
        return obs, self.bonus * float(action == 1), self.t >= 5, False, {}

    def render(self):
        return np.zeros((8, 8, 3), np.uint8)


class NoRender(gym.Env):
    """A user's class whose constructor takes no render_mode: 8 steps, action 1 earns 1."""

    def __init__(self, length=8):
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.length = length

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t / self.length], np.float32), float(action == 1), self.t >= self.length, False, {}


class Grid(gym.Env):
    """A 6x6 image with C channels of `dtype` (channel-last), 6 steps; action 1 earns 1."""

    def __init__(self, render_mode=None, channels=2, dtype="uint8"):
        high = 1 if dtype == "bool" else 255
        self.observation_space = gym.spaces.Box(0, high, shape=(6, 6, channels), dtype=np.dtype(dtype))
        self.action_space = gym.spaces.Discrete(2)

    def _obs(self):
        return (self.np_random.random(self.observation_space.shape) * self.observation_space.high).astype(
            self.observation_space.dtype)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), float(action == 1), self.t >= 6, False, {}


class Crashing(NoRender):
    """NoRender whose step raises once `Crashing.crash_after` steps were taken by all its
    instances together (None: never), like a bug in a user's simulator."""

    crash_after: int | None = None
    steps = 0

    def step(self, action):
        Crashing.steps += 1
        if Crashing.crash_after is not None and Crashing.steps > Crashing.crash_after:
            raise RuntimeError("the simulator exploded")
        return super().step(action)


for _name, _cls, _steps in (("Recording", Recording, 5), ("NoRender", NoRender, None), ("Grid", Grid, None),
                            ("Crashing", Crashing, None)):
    if f"dqnrun-test/{_name}-v0" not in gym.registry:
        gym.register(f"dqnrun-test/{_name}-v0", entry_point=_cls, max_episode_steps=_steps)
