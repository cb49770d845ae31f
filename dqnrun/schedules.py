"""Exploration and importance-sampling schedules (pure functions of the step)."""

from __future__ import annotations

import numpy as np


def log_epsilons(eps_max: float, eps_min: float, decay_steps: int) -> np.ndarray:
    """The lecture's epsilon values for steps 0 .. decay_steps - 1.

    `np.logspace(0, -2, decay_steps)` (1 down to 0.01, evenly spaced in log10), rescaled so the
    first value is `eps_max` and the last is `eps_min`: fast decay early, a long tail late.
    """
    if decay_steps == 1:
        return np.array([eps_max], dtype=np.float64)
    values = np.logspace(0, -2, num=decay_steps, base=10)
    values = (values - values.min()) / (values.max() - values.min())
    return (eps_max - eps_min) * values + eps_min


class EpsilonSchedule:
    """epsilon(step): the lecture's log-space decay, then `eps_min` from `decay_steps` on.

    Computed per step in O(1) time and memory, as the same floating-point operations that
    `log_epsilons` does on its whole table, so every value is bitwise the table's: the
    exponent is numpy's linspace point `step * (-2 / (n - 1))` (the last point exactly -2),
    raised by numpy's own power, then min-max rescaled (the table's max is 10^0 = 1, its min
    the last point, 10^-2).
    """

    def __init__(self, eps_max: float, eps_min: float, decay_steps: int):
        self.eps_max = float(eps_max)
        self.eps_min = float(eps_min)
        self.decay_steps = int(decay_steps)
        if self.decay_steps > 1:
            self._step = np.float64(-2.0) / (self.decay_steps - 1)
            self._low = np.power(np.float64(10.0), np.float64(-2.0))

    def __call__(self, step: int) -> float:
        n = self.decay_steps
        if step >= n:
            return self.eps_min
        if n == 1:
            return self.eps_max
        exponent = np.float64(-2.0) if step == n - 1 else np.float64(step) * self._step
        value = (np.power(np.float64(10.0), exponent) - self._low) / (np.float64(1.0) - self._low)
        return float((self.eps_max - self.eps_min) * value + self.eps_min)


def linear(start: float, end: float, progress: float) -> float:
    """Linear interpolation from `start` (progress 0) to `end` (progress >= 1)."""
    return start + (end - start) * min(max(progress, 0.0), 1.0)


def per_beta(beta: float, beta_end: float, step: int, beta_steps: int | None, run_progress: float) -> float:
    """PER's importance-sampling exponent, annealed linearly from `beta` to `beta_end`.

    Schaul et al. (2016), section 3.4: beta reaches 1 at the end of learning. With `beta_steps`
    the horizon is that many env steps; without it, the run's own progress (episodes done over
    episodes planned, or steps over max_steps, whichever is further).
    """
    progress = step / beta_steps if beta_steps is not None else run_progress
    return linear(beta, beta_end, progress)


class LinearEpsilon:
    """epsilon(step) falling linearly from `eps_max` to `eps_min` over `decay_steps`, then flat:
    Stable-Baselines3's DQN exploration (RL Zoo's `exploration_fraction` x `n_timesteps` steps)."""

    def __init__(self, eps_max: float, eps_min: float, decay_steps: int):
        self.eps_max, self.eps_min, self.decay_steps = eps_max, eps_min, decay_steps

    def __call__(self, step: int) -> float:
        if step >= self.decay_steps:
            return self.eps_min
        return linear(self.eps_max, self.eps_min, step / self.decay_steps)


def epsilon_schedule(kind: str, eps_max: float, eps_min: float, decay_steps: int) -> EpsilonSchedule | LinearEpsilon:
    """The exploration schedule `epsilon.schedule` names: "log" (the lecture's) or "linear"."""
    return (LinearEpsilon if kind == "linear" else EpsilonSchedule)(eps_max, eps_min, decay_steps)
