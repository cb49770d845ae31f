"""Plain data and test environments shared by tests (fixtures live in conftest.py)."""

import gymnasium as gym
import numpy as np

TINY_RAW = {
    "variant": "ddqn",
    "env": "CartPole-v1",
    "seeds": [3, 4],
    "episodes": 6,
    "eval_episodes": 2,
    "window": 3,
    "agent": {"memory_size": 500, "memory_start_size": 40, "batch_size": 16},
    "epsilon": {"decay_steps": 200},
    "network": {"hidden": [32]},
}


def step_run_data(name="stepped", env="CartPole-v1", threshold=35.0):
    """A hand-made run evaluated every N env steps, as results.joblib holds it: two seeds that
    evaluated at different env steps (seed 1 at 100, 200, 300; seed 2 at 150, 250)."""
    import numpy as np

    nan = np.nan
    scores = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # training returns per episode
    smoothed = scores.copy()  # window 1
    return {
        "format": "dqnrun-run", "name": name, "scores": scores, "smoothed": smoothed,
        "steps": np.array([[120.0, 260.0, 300.0], [90.0, 180.0, 260.0]]), "window": 1,
        "episodes": np.array([3, 3]), "max_score": smoothed.max(0), "min_score": smoothed.min(0),
        "mean_score": smoothed.mean(0), "env_id": env, "reward_threshold": threshold, "seeds": [1, 2],
        "eval_steps": np.array([[100.0, 200.0, 300.0], [150.0, 250.0, nan]]),
        "eval_scores": np.array([[10.0, 20.0, 40.0], [30.0, 50.0, nan]]),
        "wall_time": np.array([1.0, 3.0]),
    }


class ImageEnv(gym.Env):
    """8x8 RGB observations, two actions: enough for the checks made before training."""

    def __init__(self, render_mode=None):
        self.observation_space = gym.spaces.Box(0, 255, shape=(8, 8, 3), dtype=np.uint8)
        self.action_space = gym.spaces.Discrete(2)


IMAGE_ENV = "dqnrun-test/Image-v0"
if IMAGE_ENV not in gym.registry:
    gym.register(IMAGE_ENV, entry_point=ImageEnv)
