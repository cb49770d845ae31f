import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from dqnrun.replay import NStepAdder, PrioritizedSampler, make_replay, replay_bytes


def filled(n, capacity, prioritized=False, alpha=0.5, seed=0, obs_dim=3):
    memory = make_replay(capacity, obs_dim, np.random.default_rng(seed), "cpu", prioritized=prioritized, alpha=alpha)
    for i in range(n):
        memory.add(np.full(obs_dim, i, np.float32), i % 2, float(i), np.full(obs_dim, i + 1, np.float32), i % 7 == 0)
    return memory


def test_circular_storage_overwrites_the_oldest():
    memory = filled(13, capacity=10)
    assert len(memory) == 10 and memory.cursor == 3
    np.testing.assert_array_equal(memory.rewards, [10, 11, 12, 3, 4, 5, 6, 7, 8, 9])
    np.testing.assert_array_equal(memory.storage.obs[:, 0], memory.rewards)
    np.testing.assert_array_equal(memory.storage.next_obs[:, 0], memory.rewards + 1)


def test_batch_is_typed_and_consistent():
    memory = filled(50, capacity=100)
    batch = memory.sample(16)
    assert batch.obs.dtype == torch.float32 and batch.obs.shape == (16, 3)
    assert batch.actions.dtype == torch.int64 and batch.terminated.dtype == torch.float32
    assert batch.weights is None
    np.testing.assert_array_equal(batch.rewards.numpy(), batch.indices.astype(np.float32))
    np.testing.assert_array_equal(batch.terminated.numpy(), (batch.indices % 7 == 0).astype(np.float32))
    assert (batch.indices < 50).all()


def test_uniform_sampling_is_uniform_over_filled_slots():
    memory = filled(20, capacity=1000, seed=1)
    counts = np.bincount(np.concatenate([memory.sample(64).indices for _ in range(2000)]), minlength=20)
    expected = 2000 * 64 / 20
    # binomial standard deviation; 5 sigma
    assert np.abs(counts - expected).max() < 5 * math.sqrt(expected)


def test_sampling_frequencies_follow_p_alpha():
    alpha = 0.6
    memory = filled(8, capacity=8, prioritized=True, alpha=alpha, seed=2)
    td = np.array([0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 0.1, 8.0])
    memory.update_priorities(np.arange(8), td)
    p = (np.abs(td) + memory.sampler.eps) ** alpha
    expected = p / p.sum()
    n = 20_000 * 32
    counts = np.bincount(np.concatenate([memory.sample(32).indices for _ in range(20_000)]), minlength=8)
    # Stratified sampling has lower variance than multinomial; the binomial bound is conservative.
    sigma = np.sqrt(n * expected * (1 - expected))
    assert (np.abs(counts - n * expected) < 5 * sigma).all()


def test_zero_td_error_is_still_sampled():
    memory = filled(4, capacity=4, prioritized=True, alpha=1.0)
    memory.update_priorities(np.arange(4), np.array([0.0, 1.0, 1.0, 1.0]))
    memory.sampler.eps = 0.01
    memory.update_priorities(np.array([0]), np.array([0.0]))
    seen = np.concatenate([memory.sample(4).indices for _ in range(3000)])
    assert (seen == 0).sum() > 0


def test_importance_weights_match_the_paper():
    alpha, beta = 0.5, 0.4
    memory = filled(6, capacity=16, prioritized=True, alpha=alpha)
    td = np.array([0.3, 2.0, 0.0, 1.0, 5.0, 0.7])
    memory.update_priorities(np.arange(6), td)
    batch = memory.sample(64, beta=beta)
    p = (np.abs(td) + memory.sampler.eps) ** alpha
    P = p / p.sum()
    N = 6
    w = (N * P) ** -beta
    expected = w[batch.indices] / w.max()  # normalised by the largest weight in the memory
    np.testing.assert_allclose(batch.weights.numpy(), expected, rtol=1e-6)
    assert batch.weights.max() <= 1.0
    # Over-sampled transitions get the smaller weights (the lecture's listing has it backwards).
    assert w[4] < w[2]


def test_new_transitions_enter_with_the_largest_priority_seen():
    memory = filled(3, capacity=8, prioritized=True, alpha=1.0)
    sampler: PrioritizedSampler = memory.sampler
    assert sampler.sums[np.arange(3)].tolist() == [1.0, 1.0, 1.0]  # p_1 = 1
    memory.update_priorities(np.array([0, 1]), np.array([5.0, -0.5]))
    memory.add(np.zeros(3), 0, 0.0, np.zeros(3), False)
    assert sampler.sums[np.array([3])][0] == pytest.approx(5.0 + sampler.eps)
    memory.update_priorities(np.array([0]), np.array([0.1]))  # max seen stays 5
    memory.add(np.zeros(3), 0, 0.0, np.zeros(3), False)
    assert sampler.sums[np.array([4])][0] == pytest.approx(5.0 + sampler.eps)


def test_priorities_really_change_after_an_update():
    # The lecture's `buffer[idxs]['priority'] = ...` writes into a copy and loses the update.
    memory = filled(10, capacity=10, prioritized=True, alpha=1.0)
    before = memory.sampler.sums.total()
    memory.update_priorities(np.arange(10), np.zeros(10))
    assert memory.sampler.sums.total() == pytest.approx(10 * memory.sampler.eps)
    assert before == 10.0


def test_alpha_zero_is_uniform():
    memory = filled(5, capacity=5, prioritized=True, alpha=0.0)
    memory.update_priorities(np.arange(5), np.array([0.0, 1.0, 10.0, 100.0, 1000.0]))
    batch = memory.sample(5, beta=1.0)
    np.testing.assert_allclose(batch.weights.numpy(), 1.0)
    assert sorted(batch.indices.tolist()) == [0, 1, 2, 3, 4]  # one per stratum of equal mass


def test_state_round_trip_continues_identically():
    a = filled(30, capacity=20, prioritized=True)
    a.update_priorities(np.arange(10), np.linspace(0, 3, 10))
    b = make_replay(20, 3, np.random.default_rng(99), "cpu", prioritized=True)
    b.load_state_dict(a.state_dict())
    for _ in range(5):
        x, y = a.sample(8, 0.5), b.sample(8, 0.5)
        np.testing.assert_array_equal(x.indices, y.indices)
        torch.testing.assert_close(x.weights, y.weights)


def allocated(memory) -> int:
    """Bytes of every numpy array the memory and its storage hold."""
    arrays = [*vars(memory).values(), *vars(memory.storage).values()]
    return sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))


def test_replay_bytes_counts_the_arrays():
    memory = filled(0, capacity=1000, obs_dim=4)
    assert replay_bytes(1000, 4, prioritized=False) == allocated(memory)
    per = filled(0, capacity=1000, obs_dim=4, prioritized=True).sampler
    trees = sum(level.nbytes for tree in (per.sums, per.mins) for level in tree.levels)
    assert replay_bytes(1000, 4, prioritized=True) == allocated(memory) + trees


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_replay_bytes_counts_frame_stacks_and_dtypes(dtype):
    rng = np.random.default_rng(0)
    flat = make_replay(500, (4, 6, 5), rng, "cpu", dtype=dtype)
    assert replay_bytes(500, (4, 6, 5), False, dtype) == allocated(flat)
    stacked = make_replay(500, (4, 6, 5), rng, "cpu", dtype=dtype, frame_padding="reset")
    assert replay_bytes(500, (4, 6, 5), False, dtype, frame_stack=True) == allocated(stacked)
    assert allocated(stacked) < allocated(flat) / 3


class Frames(gym.Env):
    """Random 2x2 frames from only 3 values (so equal stacks happen by chance), random lengths."""

    def __init__(self, max_len: int):
        self.observation_space = gym.spaces.Box(0, 2, shape=(2, 2), dtype=np.uint8)
        self.action_space = gym.spaces.Discrete(2)
        self.max_len = max_len

    def frame(self):
        return self.np_random.integers(0, 3, size=(2, 2)).astype(np.uint8)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.left = int(self.np_random.integers(1, self.max_len + 1))
        return self.frame(), {}

    def step(self, action):
        self.left -= 1
        end = self.left == 0
        terminated = end and bool(self.np_random.random() < 0.5)
        return self.frame(), 0.0, terminated, end and not terminated, {}


def transitions(k, padding, steps, seed, max_len, n_step=1):
    """(obs, action, reward, next_obs, terminated) of a stacked-frame env, as an n-step adder would
    emit them: transition t pairs s_t with s_{t+m}, m = min(n, steps left), emitted once known."""
    env = gym.wrappers.FrameStackObservation(Frames(max_len), k, padding_type=padding)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    episode = [obs]
    out = []
    t = 0
    while t < steps:
        action = int(rng.integers(2))
        nxt, _, terminated, truncated, _ = env.step(action)
        episode.append(nxt)
        t += 1
        done = terminated or truncated
        # Emit every transition whose n-step window is complete (or all, at the episode's end).
        while len(episode) > n_step or (done and len(episode) > 1):
            m = min(n_step, len(episode) - 1)
            out.append((episode[0], len(out) % 2, float(len(out)), episode[m], bool(terminated and m == len(episode) - 1)))
            episode.pop(0)
        if done:
            obs, _ = env.reset(seed=int(rng.integers(1 << 30)))
            episode = [obs]
    return out


def both(capacity, k, padding, stream):
    naive = make_replay(capacity, (k, 2, 2), np.random.default_rng(0), "cpu", dtype=np.uint8)
    dedup = make_replay(capacity, (k, 2, 2), np.random.default_rng(0), "cpu", dtype=np.uint8, frame_padding=padding)
    for obs, action, reward, nxt, terminated in stream:
        naive.add(obs, action, reward, nxt, terminated)
        dedup.add(obs, action, reward, nxt, terminated)
        yield naive, dedup


def assert_same(naive, dedup):
    slots = dedup.live_slots()
    obs, nxt = dedup.storage.get(slots)
    np.testing.assert_array_equal(obs, naive.storage.obs[slots])
    np.testing.assert_array_equal(nxt, naive.storage.next_obs[slots])
    np.testing.assert_array_equal(dedup.rewards[slots], naive.rewards[slots])


@pytest.mark.parametrize("padding", ["reset", "zero"])
@pytest.mark.parametrize("n_step", [1, 3])
@pytest.mark.parametrize("seed", range(6))
def test_frame_dedup_rebuilds_every_stack_like_a_naive_memory(padding, n_step, seed):
    """Episode starts (padding), ends (terminal and truncated next stacks), wrap-around of the
    memory and of the frame ring, short and long episodes, n-step pairs: every live transition
    reads back exactly what a memory storing whole stacks holds."""
    rng = np.random.default_rng(seed)
    k, capacity = int(rng.integers(2, 5)), int(rng.integers(8, 40))
    max_len = int(rng.choice([2, 5, 30]))
    stream = transitions(k, padding, 300, seed, max_len, n_step)
    for step, (naive, dedup) in enumerate(both(capacity, k, padding, stream)):
        if step % 7 == 0 or step > 280:
            assert_same(naive, dedup)
    assert dedup.cursor == naive.cursor and 0 < len(dedup) <= len(naive)


def test_frame_dedup_stores_one_frame_per_step_and_keeps_every_transition():
    k, capacity = 4, 200
    stream = transitions(k, "reset", 1000, seed=1, max_len=40)
    for naive, dedup in both(capacity, k, "reset", stream):
        pass
    assert len(dedup) == len(naive) == capacity  # episodes of >= 16 steps on average: nothing evicted
    assert_same(naive, dedup)
    episodes = sum(1 for *_, t in stream if t) + 1  # a rough lower bound is enough here
    assert dedup.storage.total <= len(stream) + 2 * episodes + 40


def test_frame_dedup_samples_and_checkpoints_like_a_naive_memory():
    k = 3
    stream = transitions(k, "reset", 120, seed=5, max_len=6)
    for naive, dedup in both(50, k, "reset", stream):
        pass
    batch = dedup.sample(32)
    np.testing.assert_array_equal(batch.obs.numpy(), naive.storage.obs[batch.indices])
    np.testing.assert_array_equal(batch.next_obs.numpy(), naive.storage.next_obs[batch.indices])
    assert batch.obs.dtype == torch.uint8 and batch.obs.shape == (32, k, 2, 2)
    assert set(batch.indices) <= set(dedup.live_slots())
    copy = make_replay(50, (k, 2, 2), np.random.default_rng(9), "cpu", dtype=np.uint8, frame_padding="reset")
    copy.load_state_dict(dedup.state_dict())
    a, b = dedup.sample(16), copy.sample(16)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.next_obs.numpy(), b.next_obs.numpy())


def test_evicted_transitions_are_never_sampled_with_priorities():
    k = 3
    stream = transitions(k, "zero", 200, seed=2, max_len=2)  # 2-step episodes: frames run out first
    memory = make_replay(40, (k, 2, 2), np.random.default_rng(0), "cpu", prioritized=True, dtype=np.uint8,
                         frame_padding="zero")
    for t in stream:
        memory.add(*t)
    assert len(memory) < 40
    live = set(memory.live_slots())
    for _ in range(50):
        assert set(memory.sample(8, 0.5).indices) <= live


def test_observations_keep_their_dtype():
    rng = np.random.default_rng(0)
    frames = make_replay(10, (3, 3), rng, "cpu", dtype=np.uint8)
    frames.add(np.full((3, 3), 200, np.uint8), 0, 0.0, np.full((3, 3), 7, np.uint8), False)
    batch = frames.sample(2)
    assert batch.obs.dtype == torch.uint8 and int(batch.obs[0, 0, 0]) == 200 and int(batch.next_obs[0, 0, 0]) == 7


# ---------------------------------------------------------------------------------------------
# n-step returns: hand-made episodes, gamma 0.5 and rewards 1, 2, 4, 8 so every sum is exact.


def play(adder, rewards, terminal_at=None, truncated_at=None, start=0):
    """Feed one episode: states are [t] (t counted from `start`), action t % 2, reward rewards[t]."""
    for t, r in enumerate(rewards):
        s, s_next = np.array([start + t], np.float32), np.array([start + t + 1], np.float32)
        terminated = t == terminal_at
        end = terminated or t == truncated_at or t == len(rewards) - 1
        adder.add(s, (start + t) % 2, float(r), s_next, terminated, episode_end=end)


def stored(memory):
    n = len(memory)
    obs, next_obs = memory.storage.get(np.arange(n))
    return [(float(obs[i, 0]), int(memory.actions[i]), float(memory.rewards[i]), float(next_obs[i, 0]),
             bool(memory.terminated[i]), float(memory.discounts[i])) for i in range(n)]


def nstep_memory(capacity=16):
    return make_replay(capacity, 1, np.random.default_rng(0), "cpu")


def test_nstep_returns_cut_at_a_terminal_state():
    memory = nstep_memory()
    play(NStepAdder(memory, 3, 0.5), [1, 2, 4, 8], terminal_at=3)
    # (s_t, a_t, R = sum_k 0.5^k r_{t+k}, s_{t+m}, terminal, 0.5^m)
    assert stored(memory) == [
        (0, 0, 1 + 1 + 1, 3, False, 0.125),  # a full window: bootstraps from s_3 with gamma^3
        (1, 1, 2 + 2 + 2, 4, True, 0.125),  # the terminal state cuts the rest
        (2, 0, 4 + 4, 4, True, 0.25),
        (3, 1, 8, 4, True, 0.5),
    ]


def test_nstep_returns_bootstrap_from_the_last_state_at_a_truncation():
    memory = nstep_memory()
    play(NStepAdder(memory, 3, 0.5), [1, 2, 4, 8], truncated_at=3)
    assert stored(memory) == [
        (0, 0, 3, 3, False, 0.125),
        (1, 1, 6, 4, False, 0.125),
        (2, 0, 8, 4, False, 0.25),  # two rewards, then gamma^2 Q(s_4, .)
        (3, 1, 8, 4, False, 0.5),
    ]


def test_an_episode_shorter_than_n_and_the_next_episode_start_separately():
    memory = nstep_memory()
    adder = NStepAdder(memory, 4, 0.5)
    play(adder, [1, 2], terminal_at=1)
    play(adder, [4, 8, 4, 8, 4], truncated_at=4, start=10)
    assert stored(memory) == [
        (0, 0, 1 + 1, 2, True, 0.25),
        (1, 1, 2, 2, True, 0.5),
        # The second episode's windows start at its own first state, never reaching back.
        (10, 0, 4 + 4 + 1 + 1, 14, False, 0.0625),
        (11, 1, 8 + 2 + 2 + 0.5, 15, False, 0.0625),  # truncated: all flushed, bootstrapping
        (12, 0, 4 + 4 + 1, 15, False, 0.125),  # from s_15 with m < n
        (13, 1, 8 + 2, 15, False, 0.25),
        (14, 0, 4, 15, False, 0.5),
    ]


def test_nstep_transitions_wrap_around_the_memory():
    memory = nstep_memory(capacity=3)
    play(NStepAdder(memory, 2, 0.5), [1, 2, 4, 8, 4], terminal_at=4)
    # Five transitions into three slots: the last three win, at slots 0, 1, 2 after wrapping.
    assert memory.cursor == 2 and len(memory) == 3
    assert stored(memory) == [
        (3, 1, 8 + 2, 5, True, 0.25),
        (4, 0, 4, 5, True, 0.5),
        (2, 0, 4 + 4, 4, False, 0.25),
    ]


def test_one_step_adder_stores_exactly_what_the_memory_would():
    direct, through = nstep_memory(), nstep_memory()
    adder = NStepAdder(through, 1, 0.9)
    rng = np.random.default_rng(3)
    for t in range(12):
        s, s2, r = rng.random(1).astype(np.float32), rng.random(1).astype(np.float32), float(rng.normal())
        direct.add(s, t % 2, r, s2, t == 5, 0.9)
        adder.add(s, t % 2, r, s2, t == 5, episode_end=t in (5, 9))
    for key in ("actions", "rewards", "terminated", "discounts"):
        np.testing.assert_array_equal(getattr(direct, key), getattr(through, key))
    for a, b in zip(direct.storage.get(np.arange(12)), through.storage.get(np.arange(12))):
        np.testing.assert_array_equal(a, b)


def test_the_pending_window_survives_a_checkpoint():
    straight, resumed = nstep_memory(), nstep_memory()
    a = NStepAdder(straight, 3, 0.5)
    play(a, [1, 2, 4, 8, 4], truncated_at=4)
    b = NStepAdder(resumed, 3, 0.5)
    for t, r in enumerate([1, 2]):  # stop mid-episode with two steps pending
        b.add(np.array([t], np.float32), t % 2, float(r), np.array([t + 1], np.float32), False, episode_end=False)
    state = b.state_dict()
    c = NStepAdder(resumed, 3, 0.5)
    c.load_state_dict(state)
    assert len(resumed) == 0 and len(c.pending) == 2
    for t, r in list(enumerate([1, 2, 4, 8, 4]))[2:]:
        c.add(np.array([t], np.float32), t % 2, float(r), np.array([t + 1], np.float32), False, episode_end=t == 4)
    assert stored(resumed) == stored(straight)
