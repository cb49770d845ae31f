"""Gymnasium environments from a config: creation, space checks, reward thresholds."""

from __future__ import annotations

import difflib
import warnings
from typing import NamedTuple

import gymnasium as gym
import numpy as np

from dqnrun.errors import UserError


class EnvInfo(NamedTuple):
    """What the network needs to know about an environment."""

    obs_dim: int
    n_actions: int
    reward_threshold: float | None
    max_episode_steps: int | None


def make_env(env_id: str, render_mode: str | None = None) -> gym.Env:
    """Create `env_id`, checking that dqnrun can learn on it (Box observation, Discrete actions)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            env = gym.make(env_id, render_mode=render_mode)
    except gym.error.Error as exc:
        if isinstance(exc, (gym.error.NameNotFound, gym.error.NamespaceNotFound, gym.error.VersionNotFound)) or (
            env_id not in gym.registry
        ):
            close = difflib.get_close_matches(env_id, list(gym.registry), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"unknown environment {env_id!r}{hint}") from None
        raise UserError(f"cannot create environment {env_id!r}: {exc}") from None
    except ImportError as exc:
        raise UserError(f"environment {env_id!r} needs a package that is not installed: {exc}") from None
    except Exception as exc:  # the environment's own constructor failed
        raise UserError(f"cannot create environment {env_id!r}: {type(exc).__name__}: {exc}") from None
    try:
        check_spaces(env, env_id)
    except UserError:
        env.close()
        raise
    return env


def check_spaces(env: gym.Env, env_id: str) -> None:
    if not isinstance(env.action_space, gym.spaces.Discrete):
        kind = type(env.action_space).__name__
        raise UserError(
            f"environment {env_id!r} has a {kind} action space; DQN needs a Discrete one "
            "(try CartPole-v1, Acrobot-v1, MountainCar-v0 or LunarLander-v3)"
        )
    obs = env.observation_space
    if not isinstance(obs, gym.spaces.Box) or not np.issubdtype(obs.dtype, np.number):
        raise UserError(
            f"environment {env_id!r} has a {type(obs).__name__} observation space; "
            "dqnrun's MLP needs a flat Box of numbers"
        )
    if len(obs.shape) != 1:
        raise UserError(
            f"environment {env_id!r} has observations of shape {obs.shape} (images?); "
            "dqnrun's MLP needs flat vectors: wrap it with gymnasium's FlattenObservation first"
        )


def env_info(env_id: str) -> EnvInfo:
    """Sizes and thresholds of `env_id` (creates and closes one instance)."""
    env = make_env(env_id)
    try:
        spec = env.spec
        return EnvInfo(
            obs_dim=int(env.observation_space.shape[0]),
            n_actions=int(env.action_space.n),
            reward_threshold=spec.reward_threshold if spec else None,
            max_episode_steps=spec.max_episode_steps if spec else None,
        )
    finally:
        env.close()


def reward_threshold(env_id: str) -> float | None:
    """The registered reward threshold ("solved" score) of `env_id`, if it has one."""
    try:
        spec = gym.spec(env_id)
    except gym.error.Error:
        return None
    return spec.reward_threshold
