"""Every random stream of a run, derived from the run seed alone."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Streams(NamedTuple):
    """Independent random streams for one seed's run.

    Each consumer owns its stream, so adding draws to one (say, more evaluation episodes) never
    shifts the numbers another sees.
    """

    explore: np.random.Generator  # epsilon-greedy coin flips and random actions
    replay: np.random.Generator  # minibatch sampling
    env: np.random.Generator  # reset seeds of the training episodes
    evaluation: np.random.Generator  # reset seeds of the evaluation episodes
    torch_seed: int  # network initialisation
    noise_seed: int  # NoisyNet's noise (a torch.Generator); drawn from only when agent.noisy


def streams(seed: int) -> Streams:
    """Derive the run's streams from `seed` with numpy's SeedSequence (statistically independent)."""
    root = np.random.SeedSequence(seed)
    # spawn(6)'s first five children are spawn(5)'s: the noise stream changes no other stream.
    explore, replay, env, evaluation, init, noise = root.spawn(6)
    return Streams(
        explore=np.random.default_rng(explore),
        replay=np.random.default_rng(replay),
        env=np.random.default_rng(env),
        evaluation=np.random.default_rng(evaluation),
        torch_seed=int(init.generate_state(1, dtype=np.uint64)[0] % (2**63)),
        noise_seed=int(noise.generate_state(1, dtype=np.uint64)[0] % (2**63)),
    )


def env_seeds(rng: np.random.Generator, n: int) -> list[int]:
    """`n` reset seeds for Gymnasium environments, drawn from `rng`."""
    return [int(s) for s in rng.integers(0, 2**31 - 1, size=n)]
