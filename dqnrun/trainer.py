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
from typing import Any, Callable, Protocol

import gymnasium as gym
import numpy as np
import torch

from dqnrun import seeding
from dqnrun.agent import Agent
from dqnrun.config import Config
from dqnrun.envs import config_env, frame_stack_of, storage_dtype
from dqnrun.errors import UserError
from dqnrun.networks import NetworkSpec
from dqnrun.replay import Batch, NStepAdder, make_replay
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


class Learner(Protocol):
    """What one seed's run needs of its networks: an `Agent`, or one seed's slot of a
    `vector.StackedAgent`."""

    def greedy(self, obs: np.ndarray) -> np.ndarray: ...

    def online_state_dict(self) -> dict[str, torch.Tensor]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class SeedRun:
    """One seed's state between env steps: its env, replay, n-step adder, random streams,
    result so far, and the episode in progress. The learning itself (acting, updates, target
    sync) is the caller's, so one loop drives one seed (`train_seed`) and another K seeds whose
    networks are stacked (`group.train_group`), with the same per-seed arithmetic.

    A driver calls, per episode: `start_episode`, then per env step `epsilon` (and acts),
    `observe`, `sample` / `learned` `gradient_steps` times when `wants_update`, the target sync
    when `sync_due`, `advance`; and `end_episode` once `episode_over`.
    """

    def __init__(self, config: Config, seed: int, spec: NetworkSpec, learner: Learner, rngs: seeding.Streams,
                 device: str, emit: Callable[[Event], None], should_stop: Callable[[], bool],
                 save_checkpoint: Callable[[dict[str, Any]], None] | None, resume: dict[str, Any] | None,
                 replay_device: str | None = None):
        """`replay_device`: where sampled minibatches go (default `device`; a group samples on
        the CPU and moves its K minibatches to the device at once)."""
        a = config.agent
        self.config, self.seed, self.learner, self.rngs = config, seed, learner, rngs
        self.emit, self.should_stop, self.save_checkpoint = emit, should_stop, save_checkpoint
        self.device = torch.device(device)
        e = config.epsilon
        self._epsilon = epsilon_schedule(e.schedule, e.max, e.min, e.decay_steps)
        self.env = config_env(config)
        self.eval_envs = [config_env(config) for _ in range(config.eval_episodes)]
        stack = frame_stack_of(self.env)
        self.replay = make_replay(
            a.memory_size, spec.obs_shape, rngs.replay, device if replay_device is None else replay_device,
            prioritized=a.prioritized, alpha=config.per.alpha, eps=config.per.eps,
            dtype=storage_dtype(spec.obs_dtype), frame_padding=stack.padding if stack else None,
        )
        self.adder = NStepAdder(self.replay, a.n_step, a.gamma)
        self.result = SeedResult(seed=seed)
        self.step = 0
        if resume is not None:
            self.result, self.step = restore(resume, config, seed, learner, self.replay, self.adder, rngs)
        self.started = time.perf_counter() - self.result.wall_time
        self.result.status = "running"
        self.episode_over = False

    def checkpoint(self) -> dict[str, Any]:
        """A snapshot of the whole state, sharing no object with the running seed."""
        rngs = self.rngs
        return copy.deepcopy({
            "format": CHECKPOINT_FORMAT,
            "seed": self.seed,
            "config": self.config.to_dict(),
            "step": self.step,
            "episode": len(self.result.scores),
            "agent": self.learner.state_dict(),
            "replay": self.replay.state_dict(),
            "adder": self.adder.state_dict(),
            "rng": {
                "explore": rngs.explore.bit_generator.state,
                "env": rngs.env.bit_generator.state,
                "evaluation": rngs.evaluation.bit_generator.state,
            },
            "result": self.result.to_state(),
        })

    def keep_if_best(self, score: float, number: int) -> None:
        """Keep the online network if `score` beats every evaluation so far (episode `number`)."""
        result = self.result
        if score > result.best_score:
            result.best_score = score
            result.best_episode = number
            result.best_state = {k: v.detach().cpu().clone() for k, v in self.learner.online_state_dict().items()}

    def start_episode(self) -> bool:
        """Reset the env for the next episode; False when the seed has none left."""
        config = self.config
        episode = len(self.result.scores)
        if episode >= config.episodes or (config.max_steps is not None and self.step >= config.max_steps):
            return False
        self.run_progress = max(episode / config.episodes,
                                self.step / config.max_steps if config.max_steps else 0.0)
        self.obs, _ = self.env.reset(seed=seeding.env_seeds(self.rngs.env, 1)[0])
        self.episode_return = 0.0
        self.loss_sum = torch.zeros((), device=self.device)
        self.q_sum = torch.zeros((), device=self.device)
        self.max_q = torch.zeros((), device=self.device)
        self.beta = math.nan
        self.updates = 0
        self.evaluations: list[tuple[int, float]] = []
        self.episode_over = False
        return True

    def epsilon(self) -> float:
        self.eps = self._epsilon(self.step)
        return self.eps

    def observe(self, action: int) -> None:
        """Step the env with `action` and store the transition; sets `wants_update`, `sync_due`."""
        config, a, step = self.config, self.config.agent, self.step
        next_obs, reward, terminated, truncated, _ = self.env.step(action)
        out_of_steps = config.max_steps is not None and step + 1 >= config.max_steps
        # A time-limit truncation is not terminal: its target still bootstraps.
        self.adder.add(self.obs, action, float(reward), next_obs, bool(terminated),
                       episode_end=bool(terminated or truncated or out_of_steps))
        self.episode_return += float(reward)
        self.next_obs = next_obs
        self.episode_over = bool(terminated or truncated or out_of_steps)
        # Every `train_freq`-th env step, `gradient_steps` updates (1 and 1: the lecture's).
        self.wants_update = len(self.replay) > a.memory_start_size and (step + 1) % a.train_freq == 0
        if self.wants_update:
            self.beta = (per_beta(config.per.beta, config.per.beta_end, step, config.per.beta_steps,
                                  self.run_progress)
                         if a.prioritized else 1.0)  # uniform replay has no importance weights
        self.sync_due = step % a.target_update_steps == 0

    def sample(self) -> Batch:
        return self.replay.sample(self.config.agent.batch_size, self.beta)

    def learned(self, batch: Batch, loss: torch.Tensor, td_errors: Callable[[], np.ndarray], mean_q: torch.Tensor,
                max_q: torch.Tensor) -> None:
        """What one update on `batch` learned: new priorities (`td_errors` is asked only for
        prioritized replay), the episode's loss and Q sums."""
        if self.config.agent.prioritized:
            self.replay.update_priorities(batch.indices, td_errors())
        self.loss_sum += loss
        self.q_sum += mean_q
        self.max_q = torch.maximum(self.max_q, max_q)
        self.updates += 1

    def advance(self) -> None:
        """The env step is done (after its updates and target sync); evaluate if one is due."""
        config = self.config
        self.step += 1
        self.obs = self.next_obs
        if config.eval_every_steps is not None and self.step % config.eval_every_steps == 0:
            seeds = seeding.env_seeds(self.rngs.evaluation, config.eval_episodes)
            evaluated = float(evaluate(self.learner.greedy, self.eval_envs, seeds).mean())
            self.result.eval_steps.append(self.step)
            self.result.eval_scores.append(evaluated)
            self.evaluations.append((self.step, evaluated))
            self.keep_if_best(evaluated, len(self.result.scores) + 1)

    def end_episode(self) -> str:
        """Evaluate and record the episode that just ended, emit its event; then either go on
        ("running"), or stop: "diverged" or "interrupted" (checkpointed) are final here,
        "complete" once `complete` is called (when `start_episode` says no episode is left)."""
        config, result, step = self.config, self.result, self.step
        if not config.agent.prioritized:
            self.beta = math.nan  # uniform replay has no importance weights
        if config.eval_every_steps is not None:
            score = self.episode_return  # the curve per episode; the evaluations have their own
        elif config.eval_episodes:
            seeds = seeding.env_seeds(self.rngs.evaluation, config.eval_episodes)
            score = float(evaluate(self.learner.greedy, self.eval_envs, seeds).mean())
        else:
            score = self.episode_return
        updates = self.updates
        mean_loss = float(self.loss_sum) / updates if updates else math.nan
        mean_q = float(self.q_sum) / updates if updates else math.nan
        episode_max_q = float(self.max_q) if updates else math.nan
        result.scores.append(score)
        result.train_returns.append(self.episode_return)
        result.steps.append(step)
        result.epsilons.append(self.eps)
        result.losses.append(mean_loss)
        result.mean_qs.append(mean_q)
        result.max_qs.append(episode_max_q)
        result.betas.append(self.beta)
        number = len(result.scores)
        result.updates += updates
        if config.eval_every_steps is None:
            self.keep_if_best(score, number)
        result.wall_time = time.perf_counter() - self.started
        self.emit(EpisodeEnd(self.seed, number, config.episodes, step, score, result.best_score,
                             result.best_episode, self.episode_return, self.eps, mean_loss, mean_q, episode_max_q,
                             self.beta, result.wall_time, tuple(self.evaluations)))

        if updates and not (math.isfinite(mean_loss) and math.isfinite(episode_max_q)):
            result.status = "diverged"
            result.diverged = f"episode {number}, step {step}"
            self.emit(SeedEnd(self.seed, "diverged", f"loss or Q-value not finite at episode {number}, step {step}"))
            return result.status
        last = number == config.episodes or (config.max_steps is not None and step >= config.max_steps)
        if not last and self.should_stop():
            result.status = "interrupted"
            if self.save_checkpoint is not None:
                self.save_checkpoint(self.checkpoint())
            self.emit(SeedEnd(self.seed, "interrupted", f"stopped after episode {number}"))
            return result.status
        if self.save_checkpoint is not None and config.checkpoint_every and not last and (
            number % config.checkpoint_every == 0
        ):
            self.save_checkpoint(self.checkpoint())
        return result.status

    def complete(self) -> SeedResult:
        self.result.status = "complete"
        self.result.final_state = {k: v.detach().cpu().clone() for k, v in self.learner.online_state_dict().items()}
        self.emit(SeedEnd(self.seed, "complete"))
        return self.result

    def close(self) -> None:
        self.env.close()
        for e in self.eval_envs:
            e.close()


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
    run = None
    try:
        run = SeedRun(config, seed, spec, agent, rngs, device, emit, should_stop, save_checkpoint, resume)
        while run.start_episode():
            while not run.episode_over:
                action = agent.act(run.obs, run.epsilon(), rngs.explore)
                run.observe(action)
                if run.wants_update:
                    for _ in range(a.gradient_steps):
                        batch = run.sample()
                        learned = agent.update(batch)
                        run.learned(batch, learned.loss, lambda: learned.td_errors.cpu().numpy(), learned.mean_q,
                                    learned.max_q)
                if run.sync_due:
                    agent.sync_target()
                run.advance()
            if run.end_episode() != "running":
                return run.result
        return run.complete()
    finally:
        if config.speed.flush_denormal:
            torch.set_flush_denormal(False)
        if run is not None:
            run.close()


# ---------------------------------------------------------------------------------------------
# Resuming from a checkpoint, checked


def restore(state: Any, config: Config, seed: int, agent: Learner, replay: Any, adder: NStepAdder,
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
