import math

import numpy as np
import pytest
import torch

from dqnrun.replay import PrioritizedSampler, make_replay, replay_bytes


def filled(n, capacity, prioritized=False, alpha=0.5, seed=0, obs_dim=3):
    memory = make_replay(capacity, obs_dim, np.random.default_rng(seed), "cpu", prioritized=prioritized, alpha=alpha)
    for i in range(n):
        memory.add(np.full(obs_dim, i, np.float32), i % 2, float(i), np.full(obs_dim, i + 1, np.float32), i % 7 == 0)
    return memory


def test_circular_storage_overwrites_the_oldest():
    memory = filled(13, capacity=10)
    assert len(memory) == 10 and memory.cursor == 3
    np.testing.assert_array_equal(memory.rewards, [10, 11, 12, 3, 4, 5, 6, 7, 8, 9])
    np.testing.assert_array_equal(memory.obs[:, 0], memory.rewards)
    np.testing.assert_array_equal(memory.next_obs[:, 0], memory.rewards + 1)


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


def test_replay_bytes_counts_the_arrays():
    memory = filled(0, capacity=1000, obs_dim=4)
    arrays = memory.obs.nbytes + memory.next_obs.nbytes + memory.actions.nbytes + memory.rewards.nbytes
    arrays += memory.terminated.nbytes
    assert replay_bytes(1000, 4, prioritized=False) == arrays
    per = filled(0, capacity=1000, obs_dim=4, prioritized=True).sampler
    trees = sum(level.nbytes for tree in (per.sums, per.mins) for level in tree.levels)
    assert replay_bytes(1000, 4, prioritized=True) == arrays + trees
