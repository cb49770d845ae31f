import copy
import math

import numpy as np
import pytest
import torch

from dqnrun.agent import Agent, categorical_projection, polyak_update, td_loss, td_target
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


def test_nstep_target_uses_each_transitions_stored_discount():
    discounts = torch.tensor([0.125, 0.125, 0.25])  # gamma^m, m = 3, 3, 2 for gamma 0.5
    target = td_target(REWARDS, TERMINATED, 0.5, Q_TARGET, Q_ONLINE, discounts)
    torch.testing.assert_close(target, torch.tensor([1.0 + 0.125 * 1.0, 1.0, 0.5 + 0.25 * -1.0]), rtol=0, atol=0)


def test_huber_and_mse_gradients():
    td = torch.tensor([0.5, -2.0, 3.0, -0.25], requires_grad=True)
    td_loss(td).backward()
    torch.testing.assert_close(td.grad, 2 * td.detach() / 4)  # d/dx mean(x^2)
    for delta in (1.0, 2.5):
        td.grad = None
        td_loss(td, kind="huber", delta=delta).backward()
        # Huber's gradient is the error clipped to [-delta, delta]: 0.5, -1, 1, -0.25 for delta 1.
        torch.testing.assert_close(td.grad, td.detach().clamp(-delta, delta) / 4)
    w = torch.tensor([1.0, 0.5, 0.25, 2.0])
    expected = torch.tensor([0.5 * 0.25, 0.5 * (2 - 0.5), 0.25 * (3 - 0.5), 2 * 0.5 * 0.0625]).mean()
    torch.testing.assert_close(td_loss(td.detach(), w, "huber", 1.0), expected)
    # Weighted MSE: the gradient of w delta^2 is 2 w delta, twice PER's w delta (Algorithm 1, line 11).
    td.grad = None
    td_loss(td, w).backward()
    torch.testing.assert_close(td.grad, 2 * w * td.detach() / 4)


def capture_gradients(a, batch):
    """Run `update` without the optimizer step; return the gradients it would apply."""
    a.optimizer.step = lambda: None
    a.update(batch)
    return [p.grad.clone() for p in a.online.parameters()]


def test_gradient_clipping_by_global_norm():
    free = capture_gradients(agent(), make_batch())
    norm = torch.sqrt(sum(g.pow(2).sum() for g in free))
    clipped = capture_gradients(agent(max_grad_norm=float(norm) / 10), make_batch())
    # Every gradient scaled by the same factor max_norm / total_norm (torch adds 1e-6 to the norm).
    for g, c in zip(free, clipped):
        torch.testing.assert_close(c, g * (float(norm) / 10) / (norm + 1e-6))
    total = torch.sqrt(sum(c.pow(2).sum() for c in clipped))
    assert total.item() == pytest.approx(float(norm) / 10, rel=1e-5)
    unclipped = capture_gradients(agent(max_grad_norm=float(norm) * 2), make_batch())
    assert all(torch.equal(g, u) for g, u in zip(free, unclipped))  # below the limit: untouched


# ---------------------------------------------------------------------------------------------
# C51


def test_categorical_projection_by_hand():
    # Support 0, 1, 2, 3, 4 (dz = 1).
    p = torch.tensor([[0.1, 0.2, 0.3, 0.2, 0.2]]).repeat(4, 1)
    rewards = torch.tensor([1.0, 3.0, -2.5, 0.25])
    discounts = torch.tensor([0.5, 1.0, 1.0, 2.0])
    terminated = torch.tensor([0.0, 0.0, 1.0, 0.0])
    m = categorical_projection(p, rewards, discounts, terminated, 0.0, 4.0)
    expected = torch.tensor([
        # Tz = 1, 1.5, 2, 2.5, 3: b = 1, 2 and 3 are integers (l == u), their whole mass stays.
        [0.0, 0.1 + 0.1, 0.1 + 0.3 + 0.1, 0.1 + 0.2, 0.0],
        # Tz = 3, 4, 5, 6, 7: the last three fall above v_max and are clipped onto it.
        [0.0, 0.0, 0.0, 0.1, 0.2 + 0.3 + 0.2 + 0.2],
        # terminal: Tz = r = -2.5 for every atom, below v_min: all mass on z_0.
        [1.0, 0.0, 0.0, 0.0, 0.0],
        # Tz = 0.25, 2.25, 4.25, 6.25, 8.25: 0.25 splits 3:1 between z_0 and z_1, 2.25 likewise.
        [0.1 * 0.75, 0.1 * 0.25, 0.2 * 0.75, 0.2 * 0.25, 0.3 + 0.2 + 0.2],
    ])
    torch.testing.assert_close(m, expected)
    torch.testing.assert_close(m.sum(dim=1), torch.ones(4))


def naive_c51_loss(a, batch, gamma):
    """Algorithm 1 of Bellemare et al. (2017), one sample and one atom at a time, in float64."""
    spec = a.online.spec
    z = np.linspace(spec.v_min, spec.v_max, spec.atoms)
    dz = z[1] - z[0]
    with torch.no_grad():
        p_next = a.target.log_probs(batch.next_obs).exp().double().numpy()
        q_online_next = a.online(batch.next_obs).double().numpy()
        log_p = a.online.log_probs(batch.obs).double().numpy()
    losses, kls = [], []
    for i in range(len(batch.rewards)):
        best = int(np.argmax(q_online_next[i]))  # Double DQN: the online mean picks a*
        m = np.zeros(spec.atoms)
        for j in range(spec.atoms):
            tz = float(batch.rewards[i]) + (1 - float(batch.terminated[i])) * gamma * z[j]
            b = (min(max(tz, spec.v_min), spec.v_max) - spec.v_min) / dz
            lo, up = math.floor(b), math.ceil(b)
            if lo == up:
                m[lo] += p_next[i, best, j]
            else:
                m[lo] += p_next[i, best, j] * (up - b)
                m[up] += p_next[i, best, j] * (b - lo)
        lp = log_p[i, int(batch.actions[i])]
        ce = -(m * lp).sum()
        losses.append(ce)
        kls.append(ce + sum(x * math.log(x) for x in m if x > 0))
    return np.mean(losses), np.array(kls)


@pytest.mark.parametrize("dueling", [False, True])
def test_c51_update_matches_algorithm_1(dueling):
    spec = NetworkSpec(4, 2, (16,), dueling, atoms=11, v_min=-2.0, v_max=3.0)
    a = Agent(spec, AgentConfig(double=True, gamma=0.9, distributional=True), "cpu", torch_seed=3)
    batch = make_batch()
    batch = batch._replace(rewards=torch.tensor([0.5, -1.0, 2.0, 0.0, 1.0, 3.0, -3.0, 0.2]),
                           terminated=torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]))
    with torch.no_grad():  # make the target differ from the online network
        for p in a.target.parameters():
            p.mul_(1.5)
    loss, kls = naive_c51_loss(a, batch, 0.9)
    result = a.update(batch)
    assert result.loss.item() == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(result.td_errors.numpy(), kls, rtol=1e-4, atol=1e-6)
    assert (result.td_errors >= -1e-6).all()  # a KL divergence: PER's priority


def test_c51_q_values_are_the_distributions_means():
    spec = NetworkSpec(4, 3, (16,), True, atoms=5, v_min=0.0, v_max=4.0)
    a = Agent(spec, AgentConfig(distributional=True), "cpu", torch_seed=1)
    x = torch.randn(6, 4)
    with torch.no_grad():
        p = a.online.log_probs(x).exp()
        torch.testing.assert_close(p.sum(dim=2), torch.ones(6, 3))
        torch.testing.assert_close(a.online(x), (p * torch.arange(5.0)).sum(dim=2))
    np.testing.assert_array_equal(a.greedy(x.numpy()), a.online(x).argmax(dim=1).numpy())


# ---------------------------------------------------------------------------------------------
# NoisyNet in the agent


def noisy_agent(**changes):
    return Agent(NetworkSpec(4, 3, (16,), False, noisy=True), AgentConfig(noisy=True, **changes), "cpu",
                 torch_seed=7, noise_seed=11)


def test_noisy_acting_draws_fresh_noise_and_evaluation_uses_the_mean_weights():
    a = noisy_agent()
    rng = np.random.default_rng(0)
    obs = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    noise = [a.online.head.eps_out.clone()]
    for o in obs:
        a.act(o, 0.0, rng)
        noise.append(a.online.head.eps_out.clone())
    assert all(not torch.equal(x, y) for x, y in zip(noise, noise[1:]))  # new noise every acting step
    with torch.no_grad():
        mean_q = torch.nn.functional.linear(a.online.trunk(torch.from_numpy(obs)), a.online.head.weight_mu,
                                            a.online.head.bias_mu)
    np.testing.assert_array_equal(a.greedy(obs), mean_q.argmax(dim=1).numpy())


def test_noisy_agent_is_reproducible_from_its_seeds_and_state():
    batch = make_batch()
    batch = batch._replace(actions=batch.actions % 3)
    a, b = noisy_agent(), noisy_agent()
    for _ in range(3):
        a.update(batch)
    for _ in range(3):
        b.update(batch)
    assert all(torch.equal(p, q) for p, q in zip(a.online.parameters(), b.online.parameters()))
    c = noisy_agent()
    c.load_state_dict(a.state_dict())
    ra, rc = a.update(batch), c.update(batch)
    assert torch.equal(ra.td_errors, rc.td_errors)  # the noise generator's state came along
