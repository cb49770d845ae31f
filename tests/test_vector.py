"""StackedAgent against K separate Agents on the chain environment's transitions."""

import copy

import numpy as np
import pytest
import torch
from chain_env import Chain

from dqnrun.agent import Agent
from dqnrun.config import AgentConfig
from dqnrun.networks import NetworkSpec
from dqnrun.replay import Batch
from dqnrun.vector import StackedAgent, clip_grad_norm_per_seed, stack_batches

SEEDS = (11, 22, 33)
TOL = dict(rtol=1e-4, atol=1e-5)  # batched kernels sum in another order: last bits differ


def chain_batch(rng: np.random.Generator, size: int, per_weights: bool, n_step: bool) -> Batch:
    """Transitions of the chain environment: from t/10 by a random action to (t+1)/10."""
    env = Chain()
    obs, actions, rewards, next_obs, terminated = [], [], [], [], []
    for t in rng.integers(0, 10, size):
        env.reset()
        env.t = int(t)
        action = int(rng.integers(2))
        nxt, reward, term, _, _ = env.step(action)
        obs.append([t / 10])
        actions.append(action)
        rewards.append(reward)
        next_obs.append(nxt)
        terminated.append(float(term))
    weights = torch.as_tensor(rng.uniform(0.2, 1.0, size), dtype=torch.float32) if per_weights else None
    discounts = torch.as_tensor(rng.choice([0.81, 0.9], size), dtype=torch.float32) if n_step else None
    return Batch(torch.tensor(obs, dtype=torch.float32), torch.tensor(actions), torch.tensor(rewards, dtype=torch.float32),
                 torch.tensor(np.array(next_obs)), torch.tensor(terminated), weights, np.arange(size), discounts)


def pair(dueling=False, **changes):
    spec = NetworkSpec(1, 2, (16, 8), dueling)
    config = AgentConfig(gamma=0.9, learning_rate=0.01, **changes)
    return [Agent(spec, config, "cpu", torch_seed=s) for s in SEEDS], StackedAgent(spec, config, "cpu", SEEDS)


def assert_same_networks(agents, stacked, exact=False):
    for k, (agent, state) in enumerate(zip(agents, stacked.state_dicts())):
        for which in ("online", "target"):
            for name, value in getattr(agent, which).state_dict().items():
                if exact:
                    assert torch.equal(value, state[which][name]), (k, which, name)
                else:
                    torch.testing.assert_close(state[which][name], value, **TOL)


def test_initial_weights_are_each_seeds_agent_exactly():
    agents, stacked = pair(dueling=True)
    assert_same_networks(agents, stacked, exact=True)


@pytest.mark.parametrize("changes", [
    dict(double=True),
    dict(double=False),
    dict(double=True, dueling=True),
    dict(double=True, loss="huber", max_grad_norm=0.5),
    dict(double=True, optimizer="adam", n_step=3),
    dict(double=False, prioritized=True, tau=0.3),
    dict(double=True, rmsprop_alpha=0.95, rmsprop_centered=True, optimizer_eps=0.01),
    dict(double=True, optimizer="adam", optimizer_eps=1.5e-4),
], ids=["ddqn", "dqn", "dueling", "huber-clip", "adam-nstep", "per-polyak", "centred-rmsprop", "adam-eps"])
def test_updates_match_separate_agents(changes):
    dueling = changes.pop("dueling", False)
    agents, stacked = pair(dueling=dueling, **changes)
    rng = np.random.default_rng(0)
    for step in range(30):
        batches = [chain_batch(rng, 16, changes.get("prioritized", False), changes.get("n_step", 1) > 1)
                   for _ in SEEDS]
        separate = [agent.update(b) for agent, b in zip(agents, batches)]
        together = stacked.update(stack_batches(batches))
        for k, learned in enumerate(separate):
            torch.testing.assert_close(together.td_errors[k], learned.td_errors, **TOL)
            torch.testing.assert_close(together.loss[k], learned.loss, **TOL)
            torch.testing.assert_close(together.max_q[k], learned.max_q, **TOL)
            torch.testing.assert_close(together.mean_q[k], learned.mean_q, **TOL)
        if step % 5 == 4:
            for agent in agents:
                agent.sync_target()
            stacked.sync_target()
    assert_same_networks(agents, stacked)
    # The config's optimizer options reached both, in torch's param_group.
    group = {k: v for k, v in agents[0].optimizer.param_groups[0].items() if k != "params"}
    assert group == {k: v for k, v in stacked.optimizer.param_groups[0].items() if k != "params"}
    assert group["eps"] == changes.get("optimizer_eps", 1e-8)
    if changes.get("optimizer", "rmsprop") == "rmsprop":
        assert (group["alpha"], group["centered"]) == (changes.get("rmsprop_alpha", 0.99),
                                                       changes.get("rmsprop_centered", False))


def test_acting_draws_each_seeds_stream_as_a_separate_agent_does():
    agents, stacked = pair()
    obs = np.array([[0.1], [0.5], [0.9]], dtype=np.float32)
    rngs_a = [np.random.default_rng(s) for s in SEEDS]
    rngs_b = [np.random.default_rng(s) for s in SEEDS]
    for eps in (1.0, 0.5, 0.0, 0.3):
        expected = [agent.act(o, eps, r) for agent, o, r in zip(agents, obs, rngs_a)]
        assert stacked.act(obs, [eps] * 3, rngs_b).tolist() == expected
    assert [r.random() for r in rngs_a] == [r.random() for r in rngs_b]
    np.testing.assert_array_equal(stacked.greedy(obs[:, None])[:, 0], [a.greedy(o[None])[0] for a, o in zip(agents, obs)])


def test_state_dicts_are_agent_state_dicts_both_ways():
    agents, stacked = pair()
    rng = np.random.default_rng(1)
    for _ in range(4):
        batches = [chain_batch(rng, 16, False, False) for _ in SEEDS]
        for agent, b in zip(agents, batches):
            agent.update(b)
    # Separate agents' checkpoints into the stacked agent: bitwise the same state out again.
    stacked.load_state_dicts([a.state_dict() for a in agents])
    assert_same_networks(agents, stacked, exact=True)
    for agent, state in zip(agents, stacked.state_dicts()):
        ours, theirs = state["optimizer"], agent.state_dict()["optimizer"]
        assert ours["param_groups"] == theirs["param_groups"]
        for i in theirs["state"]:
            for name in theirs["state"][i]:
                assert torch.equal(ours["state"][i][name], theirs["state"][i][name]), (i, name)
    # ...and a stacked seed's state into a fresh Agent, which then learns as the stacked one does.
    fresh = Agent(NetworkSpec(1, 2, (16, 8), False), agents[0].config, "cpu", torch_seed=0)
    fresh.load_state_dict(copy.deepcopy(stacked.state_dicts()[1]))
    batches = [chain_batch(rng, 16, False, False) for _ in SEEDS]
    torch.testing.assert_close(stacked.update(stack_batches(batches)).loss[1], fresh.update(batches[1]).loss, **TOL)


def test_a_diverging_seed_leaves_the_others_untouched():
    agents, stacked = pair()
    rng = np.random.default_rng(2)
    for _ in range(10):
        batches = [chain_batch(rng, 16, False, False) for _ in SEEDS]
        batches[1] = batches[1]._replace(rewards=torch.full((16,), 1e38))  # its loss overflows
        together = stacked.update(stack_batches(batches))
        for k in (0, 2):
            agents[k].update(batches[k])
    assert not torch.isfinite(together.loss[1])
    assert torch.isfinite(together.loss[[0, 2]]).all()
    states = stacked.state_dicts()
    for k in (0, 2):
        for name, value in agents[k].online.state_dict().items():
            torch.testing.assert_close(states[k]["online"][name], value, **TOL)


def test_per_seed_clipping_is_torchs_clipping_for_each_seed():
    torch.manual_seed(0)
    stacked = [torch.randn(3, 4, 5, requires_grad=True), torch.randn(3, 5, requires_grad=True)]
    for p in stacked:
        p.grad = torch.randn_like(p) * torch.tensor([0.01, 1.0, 100.0]).view(3, *([1] * (p.dim() - 1)))
    separate = [[p.grad[k].clone().requires_grad_() for p in stacked] for k in range(3)]
    norms = clip_grad_norm_per_seed(stacked, 1.0)
    for k, grads in enumerate(separate):
        params = [torch.zeros_like(g, requires_grad=True) for g in grads]
        for p, g in zip(params, grads):
            p.grad = g.detach().clone()
        norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        torch.testing.assert_close(norms[k], norm, **TOL)
        for p, s in zip(params, stacked):
            torch.testing.assert_close(s.grad[k], p.grad, **TOL)


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam"])
def test_masked_seeds_keep_their_state_and_the_others_learn_as_if_alone(optimizer):
    # Seed 0 starts learning two updates after the others, seed 2 stops after four: each seed
    # must end where an Agent that took only its own updates ends (Adam: its own step count).
    agents, stacked = pair(optimizer=optimizer, max_grad_norm=1.0)
    masked_twin = StackedAgent(NetworkSpec(1, 2, (16, 8), False), agents[0].config, "cpu", SEEDS)
    rng = np.random.default_rng(3)
    for step in range(8):
        active = np.array([step >= 2, True, step < 4])
        batches = [chain_batch(rng, 16, False, False) for _ in SEEDS]
        before = stacked.state_dicts()
        together = stacked.update(stack_batches(batches), active)
        for k in np.flatnonzero(active):
            learned = agents[k].update(batches[k])
            torch.testing.assert_close(together.loss[k], learned.loss, **TOL)
        after = stacked.state_dicts()
        for k in np.flatnonzero(~active):  # bitwise untouched, optimizer state included
            for which in ("online", "target"):
                assert all(torch.equal(before[k][which][n], after[k][which][n]) for n in before[k][which])
            for i, state in before[k]["optimizer"]["state"].items():
                assert all(torch.equal(v, after[k]["optimizer"]["state"][i][n]) for n, v in state.items())
            assert before[k]["optimizer"]["state"].keys() == after[k]["optimizer"]["state"].keys()
        stacked.sync_target(active)
        for k in np.flatnonzero(active):
            agents[k].sync_target()
        # An unmasked update of the same stack gives the active seeds bitwise the same numbers.
        masked_twin.load_state_dicts(before)
        masked_twin.update(stack_batches(batches))
        for k in np.flatnonzero(active):
            for n, v in masked_twin.state_dicts()[k]["online"].items():
                assert torch.equal(v, after[k]["online"][n])
    assert_same_networks(agents, stacked)
    for agent, state in zip(agents, stacked.state_dicts()):
        assert state["optimizer"]["state"][0]["step"] == agent.state_dict()["optimizer"]["state"][0]["step"]


def test_a_seed_before_its_first_update_has_no_optimizer_state_like_an_agent():
    agents, stacked = pair()
    assert stacked.state_dict_of(1)["optimizer"] == {**agents[1].state_dict()["optimizer"], "state": {}}
    stacked.update(stack_batches([chain_batch(np.random.default_rng(4), 16, False, False)] * 3),
                   np.array([True, False, True]))
    assert stacked.state_dict_of(1)["optimizer"]["state"] == {} and stacked.state_dict_of(0)["optimizer"]["state"]
    stacked.load_state_dict_of(0, agents[0].state_dict())  # an agent that never learned: state cleared
    assert stacked.state_dict_of(0)["optimizer"]["state"] == {}


def test_a_slot_acts_and_saves_as_its_seeds_agent():
    agents, stacked = pair()
    obs = np.linspace(0, 1, 7, dtype=np.float32)[:, None]
    for k, agent in enumerate(agents):
        slot = stacked.slot(k)
        np.testing.assert_array_equal(slot.greedy(obs), agent.greedy(obs))
        assert all(torch.equal(v, agent.online.state_dict()[n]) for n, v in slot.online_state_dict().items())
    with pytest.raises(RuntimeError):
        wrong = Agent(NetworkSpec(1, 2, (16, 4), False), agents[0].config, "cpu", torch_seed=0)
        stacked.slot(0).load_state_dict(wrong.state_dict())


@pytest.mark.parametrize("dueling", [False, True])
def test_noisy_heads_draw_each_seeds_noise_as_its_agent_does(dueling):
    spec = NetworkSpec(1, 2, (16, 8), dueling, noisy=True)
    config = AgentConfig(gamma=0.9, learning_rate=0.01, double=True, noisy=True)
    noise_seeds = (7, 8, 9)
    agents = [Agent(spec, config, "cpu", torch_seed=s, noise_seed=n) for s, n in zip(SEEDS, noise_seeds)]
    stacked = StackedAgent(spec, config, "cpu", SEEDS, noise_seeds)
    assert_same_networks(agents, stacked, exact=True)
    rng = np.random.default_rng(5)
    rngs_a = [np.random.default_rng(s) for s in SEEDS]
    rngs_b = [np.random.default_rng(s) for s in SEEDS]
    for step in range(20):
        obs = rng.uniform(0, 1, (3, 1)).astype(np.float32)
        expected = [agent.act(o, 0.3, r) for agent, o, r in zip(agents, obs, rngs_a)]
        assert stacked.act(obs, [0.3] * 3, rngs_b).tolist() == expected
        active = np.array([True, step % 3 != 0, True])  # seed 1 skips every third update
        batches = [chain_batch(rng, 16, False, False) for _ in SEEDS]
        together = stacked.update(stack_batches(batches), active)
        for k in np.flatnonzero(active):
            torch.testing.assert_close(together.loss[k], agents[k].update(batches[k]).loss, **TOL)
    assert_same_networks(agents, stacked)
    for agent, state in zip(agents, stacked.state_dicts()):  # the generators drew alike
        assert torch.equal(state["noise"], agent.state_dict()["noise"])
    np.testing.assert_array_equal(stacked.slot(2).greedy(obs), agents[2].greedy(obs))  # mean weights


@pytest.mark.parametrize("changes", [
    dict(double=True, noisy=True, dueling=True, n_step=3, prioritized=True),
    dict(double=False),
], ids=["rainbow", "c51-dqn"])
def test_c51_updates_match_separate_agents(changes):
    dueling, noisy = changes.pop("dueling", False), changes.get("noisy", False)
    spec = NetworkSpec(1, 2, (16, 8), dueling, noisy=noisy, atoms=11, v_min=0.0, v_max=10.0)
    config = AgentConfig(gamma=0.9, learning_rate=0.01, distributional=True, atoms=11, v_min=0.0, v_max=10.0,
                         **changes)
    noise_seeds = (7, 8, 9)
    agents = [Agent(spec, config, "cpu", torch_seed=s, noise_seed=n) for s, n in zip(SEEDS, noise_seeds)]
    stacked = StackedAgent(spec, config, "cpu", SEEDS, noise_seeds)
    rng = np.random.default_rng(6)
    for step in range(20):
        active = np.array([True, step % 4 != 1, True])
        batches = [chain_batch(rng, 16, changes.get("prioritized", False), changes.get("n_step", 1) > 1)
                   for _ in SEEDS]
        together = stacked.update(stack_batches(batches), active)
        for k in np.flatnonzero(active):
            learned = agents[k].update(batches[k])
            torch.testing.assert_close(together.loss[k], learned.loss, **TOL)
            torch.testing.assert_close(together.td_errors[k], learned.td_errors, **TOL)  # the KL
            torch.testing.assert_close(together.max_q[k], learned.max_q, **TOL)
            torch.testing.assert_close(together.mean_q[k], learned.mean_q, **TOL)
        if step % 5 == 4:
            for agent in agents:
                agent.sync_target()
            stacked.sync_target()
    # RMSprop divides by sqrt(v): rounding differences in tiny gradients grow over 20 steps.
    for agent, state in zip(agents, stacked.state_dicts()):
        for name, value in agent.online.state_dict().items():
            torch.testing.assert_close(state["online"][name], value, rtol=1e-3, atol=1e-4)
    obs = np.linspace(0, 1, 5, dtype=np.float32)[:, None]
    np.testing.assert_array_equal(stacked.slot(1).greedy(obs), agents[1].greedy(obs))
