"""K seeds' learners in one process: their networks stacked, acting and updates batched over seeds.

`StackedAgent` is K `Agent`s of one config whose parameters live side by side along a leading
seed axis. A forward pass is one `torch.func.vmap` over `functional_call` (batched matrix
products), an update is one backward pass of the sum of the K losses (each seed's parameters
get exactly its own loss's gradient) and one optimizer step over the stacked tensors (RMSprop's
and Adam's arithmetic is elementwise, so each seed's state evolves as it would alone). Every
seed keeps its own random streams: the caller passes them, as to `Agent`.

The numbers match K separate agents up to the last bits (batched kernels sum in another order);
the initial weights, the exploration draws and the state dicts are exact, and `state_dicts` /
`load_state_dicts` read and write each seed's state in `Agent.state_dict`'s format, so one
seed's checkpoint is the same kind of thing in either mode. A seed whose numbers blow up does
not touch the others: nothing mixes values across the seed axis.
"""

from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch
from torch.func import functional_call, stack_module_state, vmap

from dqnrun.agent import UpdateResult, polyak_update, td_loss, td_target
from dqnrun.config import AgentConfig
from dqnrun.networks import NetworkSpec, QNetwork, dueling_q
from dqnrun.optim import OPTIMIZERS
from dqnrun.replay import Batch


def stack_batches(batches: Sequence[Batch]) -> Batch:
    """K seeds' minibatches as one, each field with a leading seed axis (indices: a (K, B) array)."""

    def stacked(name: str) -> torch.Tensor | None:
        values = [getattr(b, name) for b in batches]
        return None if values[0] is None else torch.stack(values)

    return Batch(stacked("obs"), stacked("actions"), stacked("rewards"), stacked("next_obs"),
                 stacked("terminated"), stacked("weights"), np.stack([b.indices for b in batches]),
                 stacked("discounts"))


class StackedAgent:
    """K seeds' online and target Q-networks and their optimizer, as one."""

    def __init__(self, spec: NetworkSpec, config: AgentConfig, device: torch.device | str,
                 torch_seeds: Sequence[int]):
        if spec.noisy or spec.distributional:
            raise ValueError("stacked seeds support plain and dueling heads (not noisy or distributional yet)")
        self.config = config
        self.device = torch.device(device)
        self.n_actions = spec.n_actions
        self.k = len(torch_seeds)
        nets = []
        for seed in torch_seeds:  # each seed's initial weights exactly as `Agent` draws them
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                nets.append(QNetwork(spec).to(self.device))
        params, buffers = stack_module_state(nets)
        self._names = list(params)
        self._buffers = buffers
        self.online = [params[n] for n in self._names]  # leaves, (K, *shape)
        self.target = [p.detach().clone() for p in self.online]
        self._state_keys = list(nets[0].state_dict())
        # A weightless copy whose forward `functional_call` runs on the stacked weights.
        self._base = copy.deepcopy(nets[0]).to("meta")
        # MLPs: batched matrix products written out (vmap's dispatch costs more than the
        # arithmetic at these sizes); any other trunk: vmap over functional_call.
        self._q = self._mlp_forward if spec.trunk == "mlp" and not buffers else vmap(self._forward)
        self._spec = spec
        self.optimizer = OPTIMIZERS[config.optimizer](self.online, lr=config.learning_rate)
        self._n_step = config.n_step > 1

    def _forward(self, params: tuple[torch.Tensor, ...], obs: torch.Tensor) -> torch.Tensor:
        return functional_call(self._base, ({**dict(zip(self._names, params)), **self._buffers}), (obs,))

    def _mlp_forward(self, params: tuple[torch.Tensor, ...], obs: torch.Tensor) -> torch.Tensor:
        """QNetwork's forward (MLP trunk, plain or dueling head) for stacked weights: seed k's
        layer is x_k W_k^T + b_k, one `baddbmm` for all seeds."""
        p = dict(zip(self._names, params))
        k, b = obs.shape[:2]
        x = obs.reshape(k, b, -1).float()
        if self._base.trunk.scale is not None:
            x = x * self._base.trunk.scale

        def linear(name: str, x: torch.Tensor) -> torch.Tensor:
            return torch.baddbmm(p[f"{name}.bias"].unsqueeze(1), x, p[f"{name}.weight"].transpose(1, 2))

        for i, layer in enumerate(self._base.trunk):
            if isinstance(layer, torch.nn.Linear):
                x = linear(f"trunk.{i}", x).relu()
        if not self._spec.dueling:
            return linear("head", x)
        value, advantages = linear("value_head", x), linear("advantage_head", x)
        return dueling_q(value.reshape(k * b, -1), advantages.reshape(k * b, -1)).reshape(k, b, -1)

    def q_values(self, obs: torch.Tensor, target: bool = False) -> torch.Tensor:
        """Q-values (K, B, A) of observations (K, B, *obs_shape), seed k's batch by seed k's network."""
        return self._q(tuple(self.target if target else self.online), obs)

    @torch.no_grad()
    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """Greedy actions (K, B) for observations (K, B, *obs_shape)."""
        x = torch.as_tensor(obs, device=self.device)
        return self.q_values(x).argmax(dim=2).cpu().numpy()

    def act(self, obs: np.ndarray, epsilons: Sequence[float], rngs: Sequence[np.random.Generator]) -> np.ndarray:
        """Epsilon-greedy actions (K,) for one observation per seed (K, *obs_shape).

        Each seed draws from its own `rng` exactly as `Agent.act` does; one forward pass serves
        every seed that acts greedily.
        """
        actions = np.full(self.k, -1, dtype=np.int64)
        for i, (eps, rng) in enumerate(zip(epsilons, rngs)):
            if rng.random() < eps:
                actions[i] = int(rng.integers(self.n_actions))
        greedy = actions < 0
        if greedy.any():
            actions[greedy] = self.greedy(obs[:, None])[greedy, 0]
        return actions

    def update(self, batch: Batch) -> UpdateResult:
        """One gradient step for every seed on its own minibatch (`stack_batches`).

        Returns each seed's loss, max |Q| and mean Q as (K,) tensors, its TD errors as (K, B).
        """
        c = self.config
        with torch.no_grad():
            next_q_target = self.q_values(batch.next_obs, target=True)
            next_q_online = self.q_values(batch.next_obs) if c.double else None
            discounts = batch.discounts if self._n_step else None
            # The target is row by row: the K seeds' rows as one batch of K * B.
            k, b, a = next_q_target.shape
            target = td_target(batch.rewards.reshape(-1), batch.terminated.reshape(-1), c.gamma,
                               next_q_target.reshape(k * b, a),
                               None if next_q_online is None else next_q_online.reshape(k * b, a),
                               None if discounts is None else discounts.reshape(-1)).reshape(k, b)
        q = self.q_values(batch.obs).gather(2, batch.actions.unsqueeze(2)).squeeze(2)
        td_errors = target - q

        def loss_of(errors, weights):
            return td_loss(errors, weights, c.loss, c.huber_delta)

        losses = vmap(loss_of, in_dims=(0, 0 if batch.weights is not None else None))(td_errors, batch.weights)
        self._step(losses.sum())  # seed k's parameters: the gradient of seed k's loss alone
        q = q.detach()
        return UpdateResult(losses.detach(), td_errors.detach(), q.abs().amax(dim=1), q.mean(dim=1))

    def _step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad()
        loss.backward()
        if self.config.max_grad_norm is not None:
            clip_grad_norm_per_seed(self.online, self.config.max_grad_norm)
        self.optimizer.step()

    def sync_target(self) -> None:
        polyak_update(self.target, self.online, self.config.tau)

    # -- each seed's state, in `Agent.state_dict`'s format ------------------------------------

    def state_dicts(self) -> list[dict]:
        optimizer = self.optimizer.state_dict()
        states = []
        for k in range(self.k):
            seed_optimizer = {
                "state": {i: {name: value if name == "step" else value[k].clone() for name, value in s.items()}
                          for i, s in optimizer["state"].items()},
                "param_groups": copy.deepcopy(optimizer["param_groups"]),
            }
            states.append({
                "online": {n: p[k].detach().clone() for n, p in zip(self._state_keys, self.online)},
                "target": {n: p[k].clone() for n, p in zip(self._state_keys, self.target)},
                "optimizer": seed_optimizer,
            })
        return states

    @torch.no_grad()
    def load_state_dicts(self, states: Sequence[dict]) -> None:
        """Load K `Agent.state_dict`s (or this class's `state_dicts`), one per seed, in order.

        The seeds of one group update in step, so their optimizer step counts must agree."""
        if len(states) != self.k:
            raise ValueError(f"{len(states)} states for {self.k} stacked seeds")
        for i, name in enumerate(self._state_keys):
            self.online[i].copy_(torch.stack([s["online"][name] for s in states]))
            self.target[i].copy_(torch.stack([s["target"][name] for s in states]))
        per_seed = [s["optimizer"] for s in states]
        steps = {tuple(float(st["step"]) for st in o["state"].values()) for o in per_seed}
        if len(steps) != 1:
            raise ValueError("the stacked seeds' optimizers have taken different numbers of steps")
        first = per_seed[0]
        stacked = {
            i: {name: value.clone() if name == "step" else torch.stack([o["state"][i][name] for o in per_seed])
                for name, value in first["state"][i].items()}
            for i in first["state"]
        }
        self.optimizer.load_state_dict({"state": stacked, "param_groups": copy.deepcopy(first["param_groups"])})


@torch.no_grad()
def clip_grad_norm_per_seed(params: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """`torch.nn.utils.clip_grad_norm_` for each seed of stacked parameters (K, *shape).

    Seed k's gradient is scaled by min(1, max_norm / (||g_k|| + 1e-6)), ||g_k|| the L2 norm over
    all of seed k's parameters, as torch does for one network. Returns the (K,) norms.
    """
    grads = [p.grad for p in params if p.grad is not None]
    k = grads[0].shape[0]
    per_tensor = torch.stack([torch.linalg.vector_norm(g.reshape(k, -1), dim=1) for g in grads])  # (P, K)
    norms = torch.linalg.vector_norm(per_tensor, dim=0)
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(k, *([1] * (g.dim() - 1))))
    return norms
