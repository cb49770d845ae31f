"""One seed's training run: the episode loop, greedy evaluation, the best model; emits events.

`train_seed` is a function of (config, seed): every random draw comes from the seed's streams,
so the same inputs give the same numbers in any process. It never prints or writes files:
progress goes out as events, checkpoints as dicts handed to a callback.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch

from dqnrun import seeding
from dqnrun.agent import Agent
from dqnrun.config import Config
from dqnrun.envs import config_env, frame_stack_of, storage_dtype
from dqnrun.errors import UserError
from dqnrun.networks import NetworkSpec
from dqnrun.replay import NStepAdder, make_replay
from dqnrun.schedules import epsilon_schedule, per_beta

CHECKPOINT_FORMAT = "dqnrun-checkpoint"


@dataclass(frozen=True)
class EpisodeEnd:
    """Sent after every training episode (and its evaluation).

    It carries everything a row of the seed's metrics file and its TensorBoard log needs, so
    the process that receives events can write them wherever the seed itself runs.
    """

    seed: int
    episode: int  # 1-based
    episodes: int
    steps: int  # env steps so far, this episode included
    score: float
    best_score: float
    best_episode: int
    train_return: float
    epsilon: float
    mean_loss: float = math.nan  # mean loss of the episode's updates (nan: none)
    mean_q: float = math.nan  # mean Q(s, a) over the episode's updates
    max_q: float = math.nan  # largest |Q(s, a)| over the episode's updates
    beta: float = math.nan  # PER importance-sampling exponent (nan: uniform replay)
    wall_time: float = 0.0  # seconds this seed has trained, across resumes
    evaluations: tuple[tuple[int, float], ...] = ()  # (env step, score) of evaluations every N steps in it


@dataclass(frozen=True)
class SeedEnd:
    seed: int
    status: str  # "complete" | "diverged" | "interrupted"
    message: str = ""


Event = EpisodeEnd | SeedEnd


@dataclass
class SeedResult:
    """Everything one seed produced. Lists grow by one entry per finished episode."""

    seed: int
    scores: list[float] = field(default_factory=list)  # evaluation score (or training return)
    train_returns: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)  # env steps at the end of each episode
    epsilons: list[float] = field(default_factory=list)  # epsilon at the end of each episode
    losses: list[float] = field(default_factory=list)  # mean loss of the episode's updates (nan: none)
    mean_qs: list[float] = field(default_factory=list)  # mean Q(s, a) of the episode's updates (nan: none)
    max_qs: list[float] = field(default_factory=list)  # largest |Q(s, a)| of the episode's updates
    betas: list[float] = field(default_factory=list)  # PER beta at the episode's end (nan: uniform)
    updates: int = 0  # gradient updates so far
    # With `eval_every_steps`: one entry per evaluation, at env steps eval_steps[i].
    eval_steps: list[int] = field(default_factory=list)
    eval_scores: list[float] = field(default_factory=list)
    best_score: float = -math.inf
    best_episode: int = 0  # 1-based; 0 = none yet
    best_state: dict[str, torch.Tensor] | None = None
    final_state: dict[str, torch.Tensor] | None = None  # set when the seed completes
    wall_time: float = 0.0
    status: str = "running"  # running | complete | diverged | interrupted
    diverged: str = ""  # "episode E, step T" when status == diverged

    def to_state(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "SeedResult":
        result = cls(**state)
        # Checkpoints of dqnrun 0.1.0 have no Q or beta lists: unknown (nan) for those episodes.
        for name in ("mean_qs", "max_qs", "betas"):
            column = getattr(result, name)
            column[:0] = [math.nan] * (len(result.scores) - len(column))
        return result


def evaluate(policy: Callable[[np.ndarray], np.ndarray], envs: list[gym.Env], seeds: list[int]) -> np.ndarray:
    """Returns of one episode per environment under `policy`, all stepped together.

    `policy` maps a batch of observations to actions (e.g. `Agent.greedy`): one forward pass
    per step serves every still-running episode, instead of one per state.
    """
    n = len(envs)
    obs = np.stack([env.reset(seed=s)[0] for env, s in zip(envs, seeds)]).astype(np.float32)
    returns = np.zeros(n)
    running = np.ones(n, dtype=bool)
    while running.any():
        live = np.flatnonzero(running)
        actions = policy(obs[live])
        for i, action in zip(live, actions):
            next_obs, reward, terminated, truncated, _ = envs[i].step(int(action))
            returns[i] += float(reward)
            obs[i] = next_obs
            if terminated or truncated:
                running[i] = False
    return returns


def train_seed(
    config: Config,
    seed: int,
    spec: NetworkSpec,
    device: str = "cpu",
    emit: Callable[[Event], None] = lambda event: None,
    should_stop: Callable[[], bool] = lambda: False,
    save_checkpoint: Callable[[dict[str, Any]], None] | None = None,
    resume: dict[str, Any] | None = None,
) -> SeedResult:
    """Train one seed for `config.episodes` episodes (or `config.max_steps` env steps).

    `should_stop` is polled after every episode; when it answers True the seed checkpoints and
    returns with status "interrupted". `resume` is a checkpoint dict from `save_checkpoint`:
    training continues from it exactly as if it had never stopped.
    """
    torch.set_num_threads(1)
    # Per thread (the CPU's FTZ/DAZ flags): set for every seed, since a worker thread serves
    # seeds of different configs one after another.
    torch.set_flush_denormal(config.speed.flush_denormal)
    a = config.agent
    rngs = seeding.streams(seed)
    agent = Agent(spec, a, device, rngs.torch_seed, rngs.noise_seed)
    e = config.epsilon
    epsilon = epsilon_schedule(e.schedule, e.max, e.min, e.decay_steps)
    env = config_env(config)
    eval_envs = [config_env(config) for _ in range(config.eval_episodes)]
    stack = frame_stack_of(env)
    replay = make_replay(
        a.memory_size, spec.obs_shape, rngs.replay, device,
        prioritized=a.prioritized, alpha=config.per.alpha, eps=config.per.eps,
        dtype=storage_dtype(spec.obs_dtype), frame_padding=stack.padding if stack else None,
    )
    adder = NStepAdder(replay, a.n_step, a.gamma)

    result = SeedResult(seed=seed)
    step = 0
    if resume is not None:
        result, step = restore(resume, config, seed, agent, replay, adder, rngs)

    def checkpoint() -> dict[str, Any]:
        """A snapshot of the whole state, sharing no object with the running seed."""
        return copy.deepcopy({
            "format": CHECKPOINT_FORMAT,
            "seed": seed,
            "config": config.to_dict(),
            "step": step,
            "episode": len(result.scores),
            "agent": agent.state_dict(),
            "replay": replay.state_dict(),
            "adder": adder.state_dict(),
            "rng": {
                "explore": rngs.explore.bit_generator.state,
                "env": rngs.env.bit_generator.state,
                "evaluation": rngs.evaluation.bit_generator.state,
            },
            "result": result.to_state(),
        })

    def keep_if_best(score: float, number: int) -> None:
        """Keep the online network if `score` beats every evaluation so far (episode `number`)."""
        if score > result.best_score:
            result.best_score = score
            result.best_episode = number
            result.best_state = {k: v.detach().cpu().clone() for k, v in agent.online.state_dict().items()}

    started = time.perf_counter() - result.wall_time
    result.status = "running"
    try:
        for episode in range(len(result.scores), config.episodes):
            if config.max_steps is not None and step >= config.max_steps:
                break
            run_progress = max(episode / config.episodes, step / config.max_steps if config.max_steps else 0.0)
            obs, _ = env.reset(seed=seeding.env_seeds(rngs.env, 1)[0])
            episode_return = 0.0
            loss_sum = torch.zeros((), device=agent.device)
            q_sum = torch.zeros((), device=agent.device)
            max_q = torch.zeros((), device=agent.device)
            beta = math.nan
            updates = 0
            evaluations = []
            while True:
                eps = epsilon(step)
                action = agent.act(obs, eps, rngs.explore)
                next_obs, reward, terminated, truncated, _ = env.step(action)
                out_of_steps = config.max_steps is not None and step + 1 >= config.max_steps
                # A time-limit truncation is not terminal: its target still bootstraps.
                adder.add(obs, action, float(reward), next_obs, bool(terminated),
                          episode_end=bool(terminated or truncated or out_of_steps))
                episode_return += float(reward)
                # Every `train_freq`-th env step, `gradient_steps` updates (1 and 1: the lecture's).
                if len(replay) > a.memory_start_size and (step + 1) % a.train_freq == 0:
                    beta = (per_beta(config.per.beta, config.per.beta_end, step, config.per.beta_steps, run_progress)
                            if a.prioritized else 1.0)  # uniform replay has no importance weights
                    for _ in range(a.gradient_steps):
                        batch = replay.sample(a.batch_size, beta)
                        learned = agent.update(batch)
                        if a.prioritized:
                            replay.update_priorities(batch.indices, learned.td_errors.cpu().numpy())
                        loss_sum += learned.loss
                        q_sum += learned.mean_q
                        max_q = torch.maximum(max_q, learned.max_q)
                        updates += 1
                if step % a.target_update_steps == 0:
                    agent.sync_target()
                step += 1
                obs = next_obs
                if config.eval_every_steps is not None and step % config.eval_every_steps == 0:
                    seeds = seeding.env_seeds(rngs.evaluation, config.eval_episodes)
                    evaluated = float(evaluate(agent.greedy, eval_envs, seeds).mean())
                    result.eval_steps.append(step)
                    result.eval_scores.append(evaluated)
                    evaluations.append((step, evaluated))
                    keep_if_best(evaluated, len(result.scores) + 1)
                if terminated or truncated or out_of_steps:
                    break

            if not a.prioritized:
                beta = math.nan  # uniform replay has no importance weights
            if config.eval_every_steps is not None:
                score = episode_return  # the curve per episode; the evaluations have their own
            elif config.eval_episodes:
                seeds = seeding.env_seeds(rngs.evaluation, config.eval_episodes)
                score = float(evaluate(agent.greedy, eval_envs, seeds).mean())
            else:
                score = episode_return
            mean_loss = float(loss_sum) / updates if updates else math.nan
            mean_q = float(q_sum) / updates if updates else math.nan
            episode_max_q = float(max_q) if updates else math.nan
            result.scores.append(score)
            result.train_returns.append(episode_return)
            result.steps.append(step)
            result.epsilons.append(eps)
            result.losses.append(mean_loss)
            result.mean_qs.append(mean_q)
            result.max_qs.append(episode_max_q)
            result.betas.append(beta)
            number = episode + 1
            result.updates += updates
            if config.eval_every_steps is None:
                keep_if_best(score, number)
            result.wall_time = time.perf_counter() - started
            emit(EpisodeEnd(seed, number, config.episodes, step, score, result.best_score,
                            result.best_episode, episode_return, eps, mean_loss, mean_q, episode_max_q,
                            beta, result.wall_time, tuple(evaluations)))

            if updates and not (math.isfinite(mean_loss) and math.isfinite(float(max_q))):
                result.status = "diverged"
                result.diverged = f"episode {number}, step {step}"
                emit(SeedEnd(seed, "diverged", f"loss or Q-value not finite at episode {number}, step {step}"))
                return result
            last = number == config.episodes or (config.max_steps is not None and step >= config.max_steps)
            if not last and should_stop():
                result.status = "interrupted"
                if save_checkpoint is not None:
                    save_checkpoint(checkpoint())
                emit(SeedEnd(seed, "interrupted", f"stopped after episode {number}"))
                return result
            if save_checkpoint is not None and config.checkpoint_every and not last and (
                number % config.checkpoint_every == 0
            ):
                save_checkpoint(checkpoint())
    finally:
        if config.speed.flush_denormal:
            torch.set_flush_denormal(False)
        env.close()
        for e in eval_envs:
            e.close()
    result.status = "complete"
    result.final_state = {k: v.detach().cpu().clone() for k, v in agent.online.state_dict().items()}
    emit(SeedEnd(seed, "complete"))
    return result


# ---------------------------------------------------------------------------------------------
# Resuming from a checkpoint, checked


def restore(state: Any, config: Config, seed: int, agent: Agent, replay: Any, adder: NStepAdder,
            rngs: seeding.Streams) -> tuple[SeedResult, int]:
    """Load a checkpoint into a fresh seed's agent, replay and generators; return its result so
    far and its env step. A checkpoint of another seed, config or network, or a damaged one,
    is a one-line UserError: nothing from it is trusted before it is checked."""
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError("not a dqnrun checkpoint")
    if state.get("seed") != seed:
        raise UserError(f"the checkpoint is of seed {str(state.get('seed'))[:20]}, not of seed {seed}")
    saved = _with_new_keys(state.get("config"), config.to_dict())
    if saved != config.to_dict():
        where = _first_difference(config.to_dict(), saved) or "config"
        raise UserError(f"the checkpoint was written with another config (it differs in {where})")
    step, result = state.get("step"), state.get("result")
    if type(step) is not int or step < 0:
        raise UserError("the checkpoint is damaged (step)")
    fields = set(SeedResult.__dataclass_fields__)
    if not isinstance(result, dict) or not set(result) <= fields or result.get("seed") != seed:
        raise UserError("the checkpoint is damaged (result)")
    n = len(result.get("scores", ()))
    if state.get("episode") != n or not 0 <= n < config.episodes:
        raise UserError("the checkpoint is damaged (episode)")
    for key in ("scores", "train_returns", "steps", "epsilons", "losses"):
        values = result.get(key)
        if not isinstance(values, list) or len(values) != n or not all(type(v) in (int, float) for v in values):
            raise UserError(f"the checkpoint is damaged (result.{key})")
    try:
        agent.load_state_dict(state["agent"])
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError):
        raise UserError("the checkpoint's network does not match this run's (another size or kind)") from None
    try:
        replay.load_state_dict(state["replay"])
        if "adder" in state:
            adder.load_state_dict(state["adder"])
        rngs.explore.bit_generator.state = state["rng"]["explore"]
        rngs.env.bit_generator.state = state["rng"]["env"]
        rngs.evaluation.bit_generator.state = state["rng"]["evaluation"]
        restored = SeedResult.from_state(result)
    except (KeyError, TypeError, ValueError, IndexError, OverflowError, RuntimeError, AttributeError):
        raise UserError("the checkpoint is damaged (replay, generators or result)") from None
    return restored, step


def check_resume(state: Any, config: Config, seed: int, spec: NetworkSpec) -> None:
    """Restore `state` into a throw-away agent and replay (on the CPU) to check it before any
    worker starts; a UserError says what does not fit. (The replay's arrays are allocated
    lazily by the OS, so only what the checkpoint holds is touched.)"""
    rngs = seeding.streams(seed)
    agent = Agent(spec, config.agent, "cpu", rngs.torch_seed, rngs.noise_seed)
    env = config_env(config)
    try:
        stack = frame_stack_of(env)
    finally:
        env.close()
    replay = make_replay(
        config.agent.memory_size, spec.obs_shape, rngs.replay, "cpu",
        prioritized=config.agent.prioritized, alpha=config.per.alpha, eps=config.per.eps,
        dtype=storage_dtype(spec.obs_dtype), frame_padding=stack.padding if stack else None,
    )
    restore(state, config, seed, agent, replay, NStepAdder(replay, config.agent.n_step, config.agent.gamma), rngs)


def _with_new_keys(saved: Any, current: dict[str, Any]) -> Any:
    """A checkpoint's config with the keys it predates taken from the current one: a key added
    to dqnrun later defaults to the old behaviour, so a run interrupted before an update resumes."""
    if not isinstance(saved, dict):
        return saved
    out = dict(saved)
    for key, value in current.items():
        if key not in out:
            out[key] = value
        elif isinstance(value, dict):
            out[key] = _with_new_keys(out[key], value)
    return out


def _first_difference(a: Any, b: Any, where: str = "") -> str | None:
    """The first dotted key where two config dicts differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            found = _first_difference(a.get(key), b.get(key), f"{where}.{key}" if where else str(key))
            if found:
                return found
        return None
    return None if a == b else (where or "config")
