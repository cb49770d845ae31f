import copy

import numpy as np
import pytest
import torch

from dqnrun.agent import Agent, polyak_update, td_loss, td_target
from dqnrun.config import AgentConfig
from dqnrun.networks import NetworkSpec
from dqnrun.replay import Batch

REWARDS = torch.tensor([1.0, 1.0, 0.5])
TERMINATED = torch.tensor([0.0, 1.0, 0.0])
Q_TARGET = torch.tensor([[1.0, 3.0], [2.0, 5.0], [4.0, -1.0]])
Q_ONLINE = torch.tensor([[9.0, 0.0], [0.0, 1.0], [0.0, 7.0]])


def test_dqn_target_takes_the_target_networks_max():
    target = td_target(REWARDS, TERMINATED, 0.9, Q_TARGET)
    torch.testing.assert_close(target, torch.tensor([1.0 + 0.9 * 3.0, 1.0, 0.5 + 0.9 * 4.0]))


def test_double_dqn_target_values_the_online_argmax_with_the_target_network():
    target = td_target(REWARDS, TERMINATED, 0.9, Q_TARGET, Q_ONLINE)
    # online argmax: 0, 1, 1 -> target values 1.0, (terminal), -1.0
    torch.testing.assert_close(target, torch.tensor([1.0 + 0.9 * 1.0, 1.0, 0.5 - 0.9]))


def test_loss_weights_multiply_the_squared_error_once():
    td = torch.tensor([1.0, -2.0, 3.0])
    assert td_loss(td).item() == pytest.approx((1 + 4 + 9) / 3)
    w = torch.tensor([1.0, 0.5, 0.25])
    assert td_loss(td, w).item() == pytest.approx((1 + 0.5 * 4 + 0.25 * 9) / 3)


def test_polyak_update_math_exactly():
    target = [torch.tensor([0.0, 10.0]), torch.tensor([[4.0]])]
    online = [torch.tensor([1.0, 20.0]), torch.tensor([[8.0]])]
    polyak_update(target, online, 0.25)
    torch.testing.assert_close(target[0], torch.tensor([0.25, 12.5]), rtol=0, atol=0)
    torch.testing.assert_close(target[1], torch.tensor([[5.0]]), rtol=0, atol=0)
    polyak_update(target, online, 1.0)
    assert all(torch.equal(t, o) for t, o in zip(target, online))


def agent(**changes):
    return Agent(NetworkSpec(4, 2, (16,), False), AgentConfig(**changes), "cpu", torch_seed=7)


def test_same_seed_same_initial_weights_and_target_starts_equal():
    a, b = agent(), agent()
    for p, q, t in zip(a.online.parameters(), b.online.parameters(), a.target.parameters()):
        assert torch.equal(p, q) and torch.equal(p, t)


def test_act_epsilon_extremes():
    a = agent()
    rng = np.random.default_rng(0)
    obs = np.ones(4, np.float32)
    greedy = int(a.greedy(obs[None])[0])
    assert all(a.act(obs, 0.0, rng) == greedy for _ in range(20))
    actions = {a.act(obs, 1.0, rng) for _ in range(200)}
    assert actions == {0, 1}


def make_batch(n=8, weights=None):
    g = torch.Generator().manual_seed(1)
    return Batch(torch.randn(n, 4, generator=g), torch.randint(0, 2, (n,), generator=g), torch.ones(n),
                 torch.randn(n, 4, generator=g), torch.zeros(n), weights, np.arange(n))


def test_update_returns_the_td_errors_it_trained_on():
    a = agent(double=True, gamma=0.9)
    batch = make_batch()
    before = copy.deepcopy(a.online)
    with torch.no_grad():
        expected_target = td_target(batch.rewards, batch.terminated, 0.9, a.target(batch.next_obs),
                                    before(batch.next_obs))
        expected = expected_target - before(batch.obs).gather(1, batch.actions[:, None]).squeeze(1)
    result = a.update(batch)
    torch.testing.assert_close(result.td_errors, expected)
    assert result.loss.item() == pytest.approx(expected.pow(2).mean().item(), rel=1e-6)
    assert any(not torch.equal(p, q) for p, q in zip(before.parameters(), a.online.parameters()))
    assert all(torch.equal(p, q) for p, q in zip(before.parameters(), a.target.parameters()))


def test_hard_and_soft_target_sync():
    a = agent(tau=1.0)
    a.update(make_batch())
    a.sync_target()
    assert all(torch.equal(p, t) for p, t in zip(a.online.parameters(), a.target.parameters()))
    b = agent(tau=0.1)
    old = [t.clone() for t in b.target.parameters()]
    b.update(make_batch())
    b.sync_target()
    for t, o, p in zip(b.target.parameters(), old, b.online.parameters()):
        torch.testing.assert_close(t, 0.1 * p + 0.9 * o)
