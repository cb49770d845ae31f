"""Preallocated circular replay memory: observation storage (flat, or frame-deduplicating for
stacked frames) plus a uniform or a prioritized sampler; the n-step adder in front of it; typed
batches."""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple

import numpy as np
import torch

from dqnrun.sum_tree import MinTree, SumTree, level_sizes


class Batch(NamedTuple):
    """A minibatch of transitions as tensors on the training device."""

    obs: torch.Tensor  # (B, *obs_shape) in the storage dtype (float32, or uint8 for frames and booleans)
    actions: torch.Tensor  # (B,) int64
    rewards: torch.Tensor  # (B,) float32
    next_obs: torch.Tensor  # (B, *obs_shape), like obs
    terminated: torch.Tensor  # (B,) float32: 1.0 where the episode ended in a terminal state
    weights: torch.Tensor | None  # (B,) importance-sampling weights; None for uniform replay
    indices: np.ndarray  # (B,) slots in the memory, for priority updates
    discounts: torch.Tensor | None = None  # (B,) float32: gamma^m, the bootstrap discount of an m-step return


class UniformSampler:
    """Uniform sampling with replacement: O(batch), whatever the memory's size."""

    def __init__(self, capacity: int, rng: np.random.Generator):
        self.capacity = capacity
        self.rng = rng

    def on_add(self, index: int) -> None:
        pass

    def on_remove(self, index: int) -> None:
        pass

    def sample(self, batch_size: int, size: int, beta: float, start: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
        """Slots of the `size` live transitions, which begin at slot `start` (circularly)."""
        draws = self.rng.integers(0, size, size=batch_size)
        return (draws if start == 0 else (start + draws) % self.capacity), None

    def update(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        pass

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


class PrioritizedSampler:
    """Proportional prioritized sampling (Schaul et al. 2016, section 3.3) on a sum tree.

    Priority p_i = |delta_i| + eps; P(i) = p_i^alpha / sum_k p_k^alpha. New transitions get the
    largest priority seen so far, so each is replayed at least once with high probability.
    Sampling is stratified: the total mass is cut into `batch_size` equal segments and one
    point is drawn in each, as in the paper's implementation. A transition whose mass spans
    several segments can appear more than once in a batch; that is the sampling distribution,
    and its duplicates get the same new priority, as they have the same TD error.
    """

    def __init__(self, capacity: int, alpha: float, eps: float, rng: np.random.Generator):
        self.alpha = alpha
        self.eps = eps
        self.rng = rng
        self.sums = SumTree(capacity)
        self.mins = MinTree(capacity)
        self.max_priority = 1.0  # the paper's p_1 = 1

    def on_add(self, index: int) -> None:
        idx = np.array([index])
        mass = np.array([self.max_priority**self.alpha])
        self.sums.update(idx, mass)
        self.mins.update(idx, mass)

    def on_remove(self, index: int) -> None:
        """An evicted transition is never sampled again (until its slot is written anew)."""
        idx = np.array([index])
        self.sums.update(idx, np.zeros(1))
        self.mins.update(idx, np.full(1, np.inf))

    def sample(self, batch_size: int, size: int, beta: float, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
        total = self.sums.total()
        targets = (np.arange(batch_size) + self.rng.random(batch_size)) * (total / batch_size)
        indices, mass = self.sums.find(targets)
        probs = mass / total
        # w_i = (N P(i))^-beta / max_j w_j, the max over the whole memory, i.e. at the smallest
        # P(j): Schaul et al. (2016), Algorithm 1, line 10.
        min_prob = self.mins.min() / total
        weights = (probs / min_prob) ** (-beta)
        return indices, weights

    def update(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        priorities = np.abs(td_errors).astype(np.float64) + self.eps
        self.max_priority = max(self.max_priority, float(priorities.max()))
        mass = priorities**self.alpha
        path = self.sums.path(indices)
        self.sums.update(indices, mass, path)
        self.mins.update(indices, mass, path)

    def state_dict(self) -> dict:
        return {
            "rng": self.rng.bit_generator.state,
            "sums": [level.copy() for level in self.sums.levels],
            "mins": [level.copy() for level in self.mins.levels],
            "max_priority": self.max_priority,
        }

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        for tree, levels in ((self.sums, state["sums"]), (self.mins, state["mins"])):
            for level, saved in zip(tree.levels, levels):
                level[:] = saved
        self.max_priority = float(state["max_priority"])


Sampler = UniformSampler | PrioritizedSampler


class FlatStorage:
    """Each transition's observation and next observation, in arrays of the storage dtype."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], dtype: np.dtype):
        self.obs = np.zeros((capacity, *obs_shape), dtype=dtype)
        self.next_obs = np.zeros((capacity, *obs_shape), dtype=dtype)

    @staticmethod
    def nbytes(capacity: int, obs_shape: tuple[int, ...], dtype: np.dtype) -> int:
        return 2 * capacity * math.prod(obs_shape) * np.dtype(dtype).itemsize

    def put(self, i: int, obs: np.ndarray, next_obs: np.ndarray) -> None:
        self.obs[i] = obs
        self.next_obs[i] = next_obs

    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.obs[indices], self.next_obs[indices]

    def valid(self, i: int) -> bool:
        return True

    def state_dict(self, slots: np.ndarray) -> dict:
        return {"obs": self.obs[slots], "next_obs": self.next_obs[slots]}

    def load_state_dict(self, state: dict, slots: np.ndarray) -> None:
        self.obs[slots] = state["obs"]
        self.next_obs[slots] = state["next_obs"]


class FrameStackStorage:
    """Stacked observations (FrameStackObservation's, `k` frames on axis 0) stored one frame each.

    Frames go into a ring in the order the environment produced them, flagged where a stack
    starts (an episode's reset frame). A transition keeps two frame counters: the newest frame of
    its observation and of its next observation; a stack is rebuilt from the k frames ending at
    its counter, and frames before a start flag are replaced the way FrameStackObservation pads
    at reset (the first frame repeated, or zeros). Whatever the order of the transitions (one
    step, n steps, episode ends), every stored stack is rebuilt exactly, as each is located by
    content: a stack equal to the ring's newest stack reuses it, one that continues it adds one
    frame, a reset stack adds one flagged frame, anything else adds its k frames. A next
    observation is held aside until a later observation shows where its frame lies (for one-step
    transitions, the very next one), or until the episode ends.

    The ring holds capacity + capacity/16 frames: an episode of L transitions takes L + 1 frames,
    so episodes of 16 steps or more never evict a transition early. Shorter episodes evict the
    oldest transitions a little before the capacity is reached (`valid` answers for each slot).
    """

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], dtype: np.dtype, padding: str):
        self.k = obs_shape[0]
        self.padding = padding
        self.frame_capacity = self.ring_size(capacity, self.k)
        self.frames = np.zeros((self.frame_capacity, *obs_shape[1:]), dtype=dtype)
        self.first = np.zeros(self.frame_capacity, dtype=bool)
        self.obs_ptr = np.zeros(capacity, dtype=np.int64)
        self.next_ptr = np.zeros(capacity, dtype=np.int64)  # -1: still in `pending`
        self.pending: dict[int, np.ndarray] = {}  # slot -> its next observation, oldest first
        self.total = 0  # frames ever written; frame counter c lives at c % frame_capacity
        self.tail: np.ndarray | None = None  # the stack ending at frame total - 1

    @staticmethod
    def ring_size(capacity: int, k: int) -> int:
        return capacity + capacity // 16 + 2 * k

    @classmethod
    def nbytes(cls, capacity: int, obs_shape: tuple[int, ...], dtype: np.dtype) -> int:
        frames = cls.ring_size(capacity, obs_shape[0])
        return frames * (math.prod(obs_shape[1:]) * np.dtype(dtype).itemsize + 1) + capacity * 2 * 8

    def _append(self, frames: np.ndarray, first: bool) -> int:
        for j, frame in enumerate(frames):
            at = self.total % self.frame_capacity
            self.frames[at] = frame
            self.first[at] = first and j == 0
            self.total += 1
        return self.total - 1

    def _starts(self, stack: np.ndarray) -> bool:
        """Is `stack` what FrameStackObservation returns at reset?"""
        older = stack[:-1]
        if self.padding == "zero":
            return not older.any()
        return bool((older == stack[-1]).all())

    def _locate(self, stack: np.ndarray) -> int:
        """The counter of a frame whose rebuilt stack equals `stack`, writing frames if needed."""
        tail = self.tail
        if tail is not None and np.array_equal(stack, tail):
            return self.total - 1
        if tail is not None and np.array_equal(stack[:-1], tail[1:]):
            at = self._append(stack[-1:], first=False)
        elif self._starts(stack):
            at = self._append(stack[-1:], first=True)
        else:
            at = self._append(stack, first=True)
        self.tail = np.array(stack, copy=True)
        return at

    def _flush(self) -> None:
        """Write the frames of every next observation held aside (an episode ended)."""
        for slot, stack in list(self.pending.items()):
            self.next_ptr[slot] = self._locate(stack)
        self.pending.clear()

    def put(self, i: int, obs: np.ndarray, next_obs: np.ndarray) -> None:
        self.pending.pop(i, None)
        obs = np.asarray(obs, dtype=self.frames.dtype)
        tail = self.tail
        continues = tail is not None and (np.array_equal(obs, tail) or np.array_equal(obs[:-1], tail[1:]))
        if not continues:
            self._flush()  # a new episode (or a jump): finish the old one's frames first
        at = self._locate(obs)
        self.obs_ptr[i] = at
        for slot in list(self.pending):  # next observations that turn out to be this one
            if not np.array_equal(self.pending[slot], obs):
                break
            self.next_ptr[slot] = at
            del self.pending[slot]
        self.next_ptr[i] = -1
        self.pending[i] = np.array(next_obs, dtype=self.frames.dtype, copy=True)
        if len(self.pending) > 4 * self.k + 64:  # a stream that never comes back to them
            self._flush()

    def stacks(self, counters: np.ndarray) -> np.ndarray:
        """The stacks ending at frame `counters` (B,), shape (B, k, *frame)."""
        k = self.k
        cols = counters[:, None] - np.arange(k - 1, -1, -1)  # oldest .. newest
        pos = cols % self.frame_capacity
        flagged = self.first[pos]
        flagged[:, 0] = False  # a start in the oldest column pads nothing
        # The newest start flag in the window: frames before it belong to the previous episode.
        start = np.where(flagged.any(axis=1), k - 1 - np.argmax(flagged[:, ::-1], axis=1), 0)
        column = np.arange(k)[None, :]
        if self.padding == "zero":
            out = self.frames[pos]
            out[column < start[:, None]] = 0
            return out
        return self.frames[np.take_along_axis(pos, np.maximum(column, start[:, None]), axis=1)]

    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        obs = self.stacks(self.obs_ptr[indices])
        counters = self.next_ptr[indices]
        next_obs = self.stacks(np.maximum(counters, 0))
        for j in np.flatnonzero(counters < 0):
            next_obs[j] = self.pending[int(indices[j])]
        return obs, next_obs

    def valid(self, i: int) -> bool:
        """False once a frame of slot i's stacks has been overwritten."""
        oldest = self.total - self.frame_capacity
        counters = [self.obs_ptr[i]] + ([self.next_ptr[i]] if self.next_ptr[i] >= 0 else [])
        return min(counters) - (self.k - 1) >= oldest

    def state_dict(self, slots: np.ndarray) -> dict:
        return {
            "frames": self.frames.copy(), "first": self.first.copy(), "obs_ptr": self.obs_ptr.copy(),
            "next_ptr": self.next_ptr.copy(), "pending": {k: v.copy() for k, v in self.pending.items()},
            "total": self.total, "tail": None if self.tail is None else self.tail.copy(),
        }

    def load_state_dict(self, state: dict, slots: np.ndarray) -> None:
        for key in ("frames", "first", "obs_ptr", "next_ptr"):
            getattr(self, key)[:] = state[key]
        self.pending = {int(k): np.array(v) for k, v in state["pending"].items()}
        self.total = int(state["total"])
        self.tail = None if state["tail"] is None else np.array(state["tail"])


Storage = FlatStorage | FrameStackStorage


class ReplayMemory:
    """Fixed-capacity circular memory of transitions: observations in a storage, the rest here.

    The live transitions are the `size` slots before `cursor` (circularly). A frame-stack
    storage may evict the oldest ones early (see FrameStackStorage); a flat storage never does.
    """

    def __init__(self, capacity: int, storage: Storage, sampler: Sampler, device: torch.device | str = "cpu"):
        self.capacity = capacity
        self.storage = storage
        self.sampler = sampler
        self.device = torch.device(device)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.discounts = np.zeros(capacity, dtype=np.float32)
        self.size = 0
        self.cursor = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs, action: int, reward: float, next_obs, terminated: bool, discount: float = 1.0) -> None:
        """Store one transition; `discount` is the bootstrap discount that n-step targets use."""
        i = self.cursor
        self.storage.put(i, obs, next_obs)
        self.actions[i] = action
        self.rewards[i] = reward
        self.terminated[i] = terminated
        self.discounts[i] = discount
        self.sampler.on_add(i)
        self.cursor = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        while self.size and not self.storage.valid(self._start()):
            self.sampler.on_remove(self._start())
            self.size -= 1

    def _start(self) -> int:
        """The oldest live slot."""
        return (self.cursor - self.size) % self.capacity

    def live_slots(self) -> np.ndarray:
        """The live slots, oldest first (a full memory: in slot order, as checkpoints store them)."""
        if self.size == self.capacity:
            return np.arange(self.capacity)
        return (self._start() + np.arange(self.size)) % self.capacity

    def sample(self, batch_size: int, beta: float = 1.0) -> Batch:
        # A full memory samples its slots directly, as does one that has not wrapped around yet.
        start = 0 if self.size == self.capacity else self._start()
        indices, weights = self.sampler.sample(batch_size, self.size, beta, start)
        obs, next_obs = self.storage.get(indices)

        on_cpu = self.device.type == "cpu"

        def tensor(array: np.ndarray) -> torch.Tensor:
            t = torch.from_numpy(array)
            return t if on_cpu else t.to(self.device, non_blocking=True)

        return Batch(
            obs=tensor(obs),
            actions=tensor(self.actions[indices]),
            rewards=tensor(self.rewards[indices]),
            next_obs=tensor(next_obs),
            terminated=tensor(self.terminated[indices]),
            weights=None if weights is None else tensor(weights.astype(np.float32)),
            indices=indices,
            discounts=tensor(self.discounts[indices]),
        )

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        self.sampler.update(indices, td_errors)

    def state_dict(self) -> dict:
        slots = self.live_slots()
        return {
            **self.storage.state_dict(slots),
            "actions": self.actions[slots],
            "rewards": self.rewards[slots],
            "terminated": self.terminated[slots],
            "discounts": self.discounts[slots],
            "size": self.size,
            "cursor": self.cursor,
            "sampler": self.sampler.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.size = int(state["size"])
        self.cursor = int(state["cursor"])
        slots = self.live_slots()
        self.storage.load_state_dict(state, slots)
        for key in ("actions", "rewards", "terminated"):
            getattr(self, key)[slots] = state[key]
        # Checkpoints written before n-step returns hold no discounts; one-step targets ignore them.
        self.discounts[slots] = state.get("discounts", 1.0)
        self.sampler.load_state_dict(state["sampler"])


class NStepAdder:
    """Turns the env's one-step transitions into n-step ones before they reach the memory.

    Stored: (s_t, a_t, R, s_{t+m}, terminated, gamma^m) with R = sum_{k<m} gamma^k r_{t+k} and
    m = n, so the target R + gamma^m max_a Q(s_{t+m}, a) is Sutton's (1988) n-step return as
    Rainbow uses it (Hessel et al. 2018, equation 2). At the end of an episode the windows
    still open are flushed with m < n: after a terminal state they do not bootstrap
    (terminated = 1); after a truncation they bootstrap from the last state with gamma^m.
    With n = 1 every transition passes straight through with R = r.
    """

    def __init__(self, memory: ReplayMemory, n: int, gamma: float):
        self.memory = memory
        self.n = n
        self.gamma = gamma
        self.pending: deque[tuple[np.ndarray, int, float]] = deque()  # (s_t, a_t, r_t), oldest first

    def add(self, obs, action: int, reward: float, next_obs, terminated: bool, episode_end: bool) -> None:
        """One env step. `episode_end`: the episode stops here (terminal, truncated or out of steps)."""
        self.pending.append((obs if self.n == 1 else np.array(obs, copy=True), action, reward))
        if terminated or episode_end:
            while self.pending:
                self._emit(next_obs, terminated)
        elif len(self.pending) == self.n:
            self._emit(next_obs, False)

    def _emit(self, next_obs, terminated: bool) -> None:
        """Store the oldest pending step with the return of every step pending after it."""
        m = len(self.pending)
        ret = sum(self.gamma**k * r for k, (_, _, r) in enumerate(self.pending)) if m > 1 else self.pending[0][2]
        obs, action, _ = self.pending.popleft()
        self.memory.add(obs, action, ret, next_obs, terminated, self.gamma**m)

    def state_dict(self) -> dict:
        return {"pending": [(np.array(o, copy=True), a, r) for o, a, r in self.pending]}

    def load_state_dict(self, state: dict) -> None:
        self.pending = deque((np.array(o, copy=True), int(a), float(r)) for o, a, r in state["pending"])


def replay_bytes(
    capacity: int, obs_shape: int | tuple[int, ...], prioritized: bool,
    dtype: np.dtype | str = np.float32, frame_stack: bool = False,
) -> int:
    """Memory the replay will allocate, computed before allocating it."""
    shape = (obs_shape,) if isinstance(obs_shape, int) else tuple(obs_shape)
    storage = FrameStackStorage if frame_stack else FlatStorage
    per_transition = 8 + 4 + 4 + 4  # action, reward, terminated, discount
    trees = 2 * sum(level_sizes(capacity)) * 8 if prioritized else 0
    return storage.nbytes(capacity, shape, np.dtype(dtype)) + capacity * per_transition + trees


def make_replay(
    capacity: int, obs_shape: int | tuple[int, ...], rng: np.random.Generator, device: torch.device | str,
    prioritized: bool = False, alpha: float = 0.5, eps: float = 1e-6,
    dtype: np.dtype | str = np.float32, frame_padding: str | None = None,
) -> ReplayMemory:
    """A replay of `capacity` transitions. `frame_padding` ("reset" or "zero", the env's
    FrameStackObservation padding) stores stacked observations one frame each."""
    shape = (obs_shape,) if isinstance(obs_shape, int) else tuple(obs_shape)
    storage: Storage = (
        FrameStackStorage(capacity, shape, np.dtype(dtype), frame_padding) if frame_padding
        else FlatStorage(capacity, shape, np.dtype(dtype))
    )
    sampler: Sampler = PrioritizedSampler(capacity, alpha, eps, rng) if prioritized else UniformSampler(capacity, rng)
    return ReplayMemory(capacity, storage, sampler, device)
