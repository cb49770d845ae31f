"""K seeds of one config trained together in one process: stacked networks, batched acting and updates.

`train_group` (`speed.vectorize: K`) drives one `trainer.SeedRun` per seed, which keeps that
seed's env, replay (and PER tree, n-step adder), random streams, evaluation, result,
checkpoints and divergence check exactly as in `train_seed`, and one `vector.StackedAgent`
holding every seed's networks. In each pass of the loop every stepping seed takes one env
step: one forward pass gives the greedy actions of all seeds (each seed's exploration draws
come from its own stream), each seed steps its own env, and the seeds whose schedule asks for
an update (replay warm, `train_freq`) get it in one batched update, `gradient_steps` times;
the target sync likewise. The others are masked out and keep their state exactly.

Seeds end episodes at different times. A seed that finished its episodes or `max_steps`,
diverged (its loss or Q not finite, as in `train_seed`), or was asked to stop (a chunk's end,
Ctrl-C; it checkpoints at its episode's end as `train_seed` does) stops stepping, and the
others go on; the group returns when no seed steps.

The stack always has one slot per seed of the group (K consecutive seeds of the config's seed
list), also for seeds that finished earlier (their slots are frozen): its shape, and so the
kernels that compute each seed's numbers, never depend on which seeds are still training. A
seed's arithmetic runs on its own slice, so its numbers are the same whatever the other seeds
do (diverge, pause, finish), after any interruption and with any --jobs. They may differ in
the last bits from `train_seed`'s (batched kernels sum in another order).

Checkpoints stay per seed, in `train_seed`'s format: the same files, and the same checks on
resume.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from dqnrun import seeding
from dqnrun.config import Config
from dqnrun.networks import NetworkSpec
from dqnrun.replay import Batch
from dqnrun.trainer import Event, SeedResult, SeedRun
from dqnrun.vector import StackedAgent, stack_batches


def train_group(
    config: Config,
    seeds: Sequence[int],
    spec: NetworkSpec,
    device: str = "cpu",
    train: Sequence[int] | None = None,
    emit: Callable[[Event], None] = lambda event: None,
    should_stop: Callable[[int], bool] = lambda seed: False,
    save_checkpoint: Callable[[int, dict[str, Any]], None] | None = None,
    resume: dict[int, dict[str, Any]] | None = None,
) -> dict[int, SeedResult]:
    """Train the seeds `train` (default: all) of the group `seeds` together; return their results.

    As `train_seed`, per seed: `should_stop(seed)` is polled after each of its episodes (True:
    it checkpoints through `save_checkpoint(seed, state)` and stops, "interrupted"), and
    `resume[seed]` continues it from its checkpoint.
    """
    torch.set_num_threads(1)
    torch.set_flush_denormal(config.speed.flush_denormal)
    a = config.agent
    resume = resume or {}
    todo = set(seeds if train is None else train)
    streams = [seeding.streams(s) for s in seeds]
    stacked = StackedAgent(spec, a, device, [r.torch_seed for r in streams], [r.noise_seed for r in streams])
    k = len(seeds)
    runs: dict[int, SeedRun] = {}
    results: dict[int, SeedResult] = {}
    stepping = np.zeros(k, dtype=bool)
    try:
        for i, seed in enumerate(seeds):
            if seed not in todo:
                continue
            saver = None if save_checkpoint is None else (lambda state, seed=seed: save_checkpoint(seed, state))
            runs[i] = SeedRun(config, seed, spec, stacked.slot(i), streams[i], device, emit,
                              lambda seed=seed: should_stop(seed), saver, resume.get(seed), replay_device="cpu")
        for i, run in runs.items():
            if run.start_episode():
                stepping[i] = True
            else:
                results[i] = run.complete()
        obs = np.zeros((k, *spec.obs_shape), dtype=np.float32)
        epsilons = np.zeros(k)
        explore = [r.explore for r in streams]
        while stepping.any():
            live = np.flatnonzero(stepping)
            for i in live:
                obs[i] = runs[i].obs
                epsilons[i] = runs[i].epsilon()
            actions = stacked.act(obs, epsilons, explore, stepping)
            for i in live:
                runs[i].observe(int(actions[i]))
            learning = stepping & np.array([i in runs and runs[i].wants_update for i in range(k)])
            if learning.any():
                for _ in range(a.gradient_steps):
                    update(stacked, runs, learning)
            syncing = stepping & np.array([i in runs and runs[i].sync_due for i in range(k)])
            if syncing.any():
                stacked.sync_target(syncing)
            for i in live:
                run = runs[i]
                run.advance()
                if not run.episode_over:
                    continue
                if run.end_episode() != "running":
                    results[i] = run.result
                    stepping[i] = False
                elif not run.start_episode():
                    results[i] = run.complete()
                    stepping[i] = False
    finally:
        if config.speed.flush_denormal:
            torch.set_flush_denormal(False)
        for run in runs.values():
            run.close()
    return {seeds[i]: results[i] for i in sorted(results)}


def update(stacked: StackedAgent, runs: dict[int, SeedRun], learning: np.ndarray) -> None:
    """One batched update for the seeds in `learning`, each on a minibatch of its own replay;
    the other slots get a batch of zeros and are masked out. (The replays sample on the CPU;
    the stacked minibatch goes to the device in one transfer.)"""
    batches: list[Batch | None] = [runs[i].sample() if learning[i] else None for i in range(stacked.k)]
    template = next(b for b in batches if b is not None)
    blank = None
    if not learning.all():
        blank = Batch(*(None if f is None else np.zeros_like(f) if isinstance(f, np.ndarray) else torch.zeros_like(f)
                        for f in template))
    together = stack_batches([blank if b is None else b for b in batches])
    if stacked.device.type != "cpu":  # sampled on the CPU: one transfer for all K minibatches
        together = Batch(*(f.to(stacked.device, non_blocking=True) if isinstance(f, torch.Tensor) else f
                           for f in together))
    learned = stacked.update(together, learning)
    errors: list[np.ndarray] = []

    def td_errors() -> np.ndarray:  # to the CPU once for all seeds, and only for prioritized replay
        if not errors:
            errors.append(learned.td_errors.cpu().numpy())
        return errors[0]

    for i in np.flatnonzero(learning):
        runs[i].learned(batches[i], learned.loss[i], lambda i=i: td_errors()[i], learned.mean_q[i], learned.max_q[i])
