"""Plain data shared by tests (fixtures live in conftest.py)."""

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
