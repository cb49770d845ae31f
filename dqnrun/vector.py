"""K seeds' learners in one process: their networks stacked, acting and updates batched over seeds.

`StackedAgent` is K `Agent`s of one config whose parameters live side by side along a leading
seed axis. A forward pass is one `torch.func.vmap` over `functional_call` (batched matrix
products), an update is one backward pass of the sum of the K losses (each seed's parameters
get exactly its own loss's gradient) and one optimizer step over the stacked tensors (RMSprop's
and Adam's arithmetic is elementwise, so each seed's state evolves as it would alone). Every
seed keeps its own random streams: the caller passes them, as to `Agent` (NoisyNet heads: each
seed's own noise generator, drawn in `Agent`'s order). C51's update is `Agent`'s with the K
seeds' rows as one batch.

The numbers match K separate agents up to the last bits (batched kernels sum in another order);
the initial weights, the exploration draws and the state dicts are exact, and `state_dicts` /
`load_state_dicts` read and write each seed's state in `Agent.state_dict`'s format, so one
seed's checkpoint is the same kind of thing in either mode. A seed whose numbers blow up does
not touch the others: nothing mixes values across the seed axis.

Seeds of one stack need not act or learn in step: `act`, `update` and `sync_target` take a mask
of the seeds that do, and a seed left out keeps its weights, target and optimizer state (with
its own step count) exactly. The others' numbers do not depend on it: every seed's arithmetic
runs on its own slice, in kernels whose choice depends on the stack's shape only.
`slot(k)` is seed k seen as one `Agent` (greedy actions, state dicts), which is what a
`trainer.SeedRun` needs.
"""

from __future__ import annotations

import copy
from functools import partial
from typing import Any, Sequence

import numpy as np
import torch
from torch.func import functional_call, stack_module_state, vmap

from dqnrun.agent import UpdateResult, categorical_projection, polyak_update, td_loss, td_target
from dqnrun.config import AgentConfig
from dqnrun.networks import NetworkSpec, NoisyLinear, QNetwork, dueling_q, scale_noise
from dqnrun.optim import Adam, RMSprop, denormal_floor_is_exact, floored_sqrt, optimizer_options
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
                 torch_seeds: Sequence[int], noise_seeds: Sequence[int] | None = None):
        if spec.noisy and (noise_seeds is None or len(noise_seeds) != len(torch_seeds)):
            raise ValueError("noisy heads need a noise seed per seed")
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
        if self._state_keys != self._names:  # a persistent buffer would break the state dicts' layout
            raise ValueError("stacked seeds support networks whose state is their parameters only")
        # A weightless copy whose forward `functional_call` runs on the stacked weights.
        self._base = copy.deepcopy(nets[0]).to("meta")
        # MLPs: batched matrix products written out (vmap's dispatch costs more than the
        # arithmetic at these sizes); any other trunk: vmap over functional_call.
        self._q = self._mlp_forward if spec.trunk == "mlp" and not buffers else vmap(self._forward)
        self.noisy = spec.noisy
        # Noisy and distributional heads have buffers (noise, C51's support): vmap over
        # functional_call with each seed's buffers, (K, n), for the online and target networks.
        self._buffered = spec.noisy or spec.distributional
        if self._buffered:
            self._buffer_names = list(buffers)
            self._online_buffers = [buffers[n].clone() for n in self._buffer_names]
            self._target_buffers = [buffers[n].clone() for n in self._buffer_names]
            self._calls = {(method, noise): vmap(partial(self._call, _Method(self._base, method), noise=noise))
                           for method in ("forward", "log_probs") for noise in (False, True)}
        if spec.noisy:
            # NoisyNet (Fortunato et al. 2018): each seed's own CPU generator, as `Agent`'s; the
            # noise is drawn only for the seeds that use it.
            self.noise = [torch.Generator().manual_seed(s) for s in noise_seeds]
            self._noisy_layers = [(name, m.in_features, m.out_features) for name, m in self._base.named_modules()
                                  if isinstance(m, NoisyLinear)]  # `QNetwork.noisy_layers`' order
        if spec.distributional:
            self._support = torch.linspace(spec.v_min, spec.v_max, spec.atoms, device=self.device)
        self._spec = spec
        self.optimizer = STACKED_OPTIMIZERS[config.optimizer](self.online, config.learning_rate, self.k,
                                                              **optimizer_options(config))
        self._n_step = config.n_step > 1
        self._indices: dict[bytes, torch.Tensor] = {}

    def _forward(self, params: tuple[torch.Tensor, ...], obs: torch.Tensor) -> torch.Tensor:
        return functional_call(self._base, ({**dict(zip(self._names, params)), **self._buffers}), (obs,))

    def _call(self, method: "_Method", params: tuple[torch.Tensor, ...], buffers: tuple[torch.Tensor, ...],
              obs: torch.Tensor, noise: bool) -> torch.Tensor:
        state = {f"net.{n}": t for n, t in zip((*self._names, *self._buffer_names), (*params, *buffers))}
        return functional_call(method, state, (obs,), {"noise": noise})

    def _buffered_call(self, method: str, obs: torch.Tensor, target: bool, noise: bool) -> torch.Tensor:
        params = tuple(self.target if target else self.online)
        buffers = tuple(self._target_buffers if target else self._online_buffers)
        return self._calls[method, noise](params, buffers, obs)

    @torch.no_grad()
    def _resample(self, buffers: list[torch.Tensor], seeds: np.ndarray) -> None:
        """New noise for `seeds`, each from its own generator, drawn exactly as
        `QNetwork.reset_noise` draws it (layer by layer, eps_in then eps_out)."""
        by_name = dict(zip(self._buffer_names, buffers))
        for k in seeds:
            generator = self.noise[k]
            for name, n_in, n_out in self._noisy_layers:
                eps = torch.randn(n_in + n_out, generator=generator, device=generator.device)
                eps = scale_noise(eps).to(self.device)
                by_name[f"{name}.eps_in"][k].copy_(eps[:n_in])
                by_name[f"{name}.eps_out"][k].copy_(eps[n_in:])

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

    def q_values(self, obs: torch.Tensor, target: bool = False, noise: bool = False) -> torch.Tensor:
        """Q-values (K, B, A) of observations (K, B, *obs_shape), seed k's batch by seed k's network.
        Noisy heads use their mean weights unless `noise` is set (then the drawn noise)."""
        if self._buffered:
            return self._buffered_call("forward", obs, target, noise)
        return self._q(tuple(self.target if target else self.online), obs)

    @torch.no_grad()
    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """Greedy actions (K, B) for observations (K, B, *obs_shape)."""
        x = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        return self.q_values(x).argmax(dim=2).cpu().numpy()

    @torch.no_grad()
    def greedy_of(self, k: int, obs: np.ndarray) -> np.ndarray:
        """Seed k's greedy actions (B,) for observations (B, *obs_shape), its network alone."""
        x = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        params = tuple(p[k:k + 1] for p in self.online)
        if self._buffered:  # noisy heads: the mean weights, as `Agent.greedy`
            q = self._calls["forward", False](params, tuple(b[k:k + 1] for b in self._online_buffers), x[None])
        else:
            q = self._q(params, x[None])
        return q[0].argmax(dim=1).cpu().numpy()

    def act(self, obs: np.ndarray, epsilons: Sequence[float], rngs: Sequence[np.random.Generator],
            active: np.ndarray | None = None) -> np.ndarray:
        """Epsilon-greedy actions (K,) for one observation per seed (K, *obs_shape).

        Each seed draws from its own `rng` exactly as `Agent.act` does; one forward pass serves
        every seed that acts greedily. Seeds outside `active` draw nothing (their action: -1).
        With a noisy head a greedy seed acts under fresh noise (Fortunato et al. 2018, Algorithm 1).
        """
        actions = np.full(self.k, -1, dtype=np.int64)
        acting = np.ones(self.k, dtype=bool) if active is None else active
        for i in np.flatnonzero(acting):
            if rngs[i].random() < epsilons[i]:
                actions[i] = int(rngs[i].integers(self.n_actions))
        greedy = acting & (actions < 0)
        if greedy.any() and self.noisy:
            self._resample(self._online_buffers, np.flatnonzero(greedy))
            with torch.no_grad():
                x = torch.as_tensor(obs[:, None], dtype=torch.float32, device=self.device)
                actions[greedy] = self.q_values(x, noise=True).argmax(dim=2).cpu().numpy()[greedy, 0]
        elif greedy.any():
            actions[greedy] = self.greedy(obs[:, None])[greedy, 0]
        return actions

    def update(self, batch: Batch, active: np.ndarray | None = None) -> UpdateResult:
        """One gradient step for every seed on its own minibatch (`stack_batches`).

        Seeds outside `active` (a (K,) bool mask) keep their weights and optimizer state; their
        rows of the batch may hold anything (zeros). Returns each seed's loss, max |Q| and mean
        Q as (K,) tensors, its TD errors as (K, B).
        """
        frozen = None if active is None or active.all() else np.flatnonzero(~active)
        kept = self._snapshot(frozen) if frozen is not None else None
        # Noisy heads: independent noise for the target, the online network's choice at s' and
        # the online network trained, drawn in `Agent.update`'s order, by the learning seeds only.
        learning = np.arange(self.k) if active is None else np.flatnonzero(active)
        if self._spec.distributional:
            learned = self._update_distributional(batch, learning)
        else:
            learned = self._update_q(batch, learning)
        if kept is not None:
            self._restore(frozen, kept)
        return learned

    def _update_q(self, batch: Batch, learning: np.ndarray) -> UpdateResult:
        c = self.config
        noisy = self.noisy
        with torch.no_grad():
            if noisy:
                self._resample(self._target_buffers, learning)
            next_q_target = self.q_values(batch.next_obs, target=True, noise=noisy)
            if c.double and noisy:
                self._resample(self._online_buffers, learning)
            next_q_online = self.q_values(batch.next_obs, noise=noisy) if c.double else None
            discounts = batch.discounts if self._n_step else None
            # The target is row by row: the K seeds' rows as one batch of K * B.
            k, b, a = next_q_target.shape
            target = td_target(batch.rewards.reshape(-1), batch.terminated.reshape(-1), c.gamma,
                               next_q_target.reshape(k * b, a),
                               None if next_q_online is None else next_q_online.reshape(k * b, a),
                               None if discounts is None else discounts.reshape(-1)).reshape(k, b)
        if noisy:
            self._resample(self._online_buffers, learning)
        q = self.q_values(batch.obs, noise=noisy).gather(2, batch.actions.unsqueeze(2)).squeeze(2)
        td_errors = target - q

        def loss_of(errors, weights):
            return td_loss(errors, weights, c.loss, c.huber_delta)

        losses = vmap(loss_of, in_dims=(0, 0 if batch.weights is not None else None))(td_errors, batch.weights)
        self._step(losses.sum())  # seed k's parameters: the gradient of seed k's loss alone
        q = q.detach()
        return UpdateResult(losses.detach(), td_errors.detach(), q.abs().amax(dim=1), q.mean(dim=1))

    def _update_distributional(self, batch: Batch, learning: np.ndarray) -> UpdateResult:
        """`Agent._update_distributional` (C51, Bellemare et al. 2017, Algorithm 1, with Double
        DQN's action choice) for every seed: the projection is row by row, so the K seeds' rows
        are one batch of K * B; each seed's loss is the mean of its own rows' cross-entropies."""
        c, spec, noisy = self.config, self._spec, self.noisy
        k, b = batch.rewards.shape
        n = spec.atoms
        discounts = batch.discounts if self._n_step else torch.full_like(batch.rewards, c.gamma)
        with torch.no_grad():
            if noisy:
                self._resample(self._target_buffers, learning)
            next_log_probs = self._buffered_call("log_probs", batch.next_obs, True, noisy)  # (K, B, A, N)
            if c.double:
                if noisy:
                    self._resample(self._online_buffers, learning)
                next_q = self.q_values(batch.next_obs, noise=noisy)
            else:
                next_q = (next_log_probs.exp() * self._support).sum(dim=3)
            best = next_q.argmax(dim=2)
            chosen = next_log_probs.gather(2, best[:, :, None, None].expand(k, b, 1, n)).squeeze(2)
            m = categorical_projection(chosen.exp().reshape(k * b, n), batch.rewards.reshape(-1),
                                       discounts.reshape(-1), batch.terminated.reshape(-1),
                                       spec.v_min, spec.v_max).reshape(k, b, n)
        if noisy:
            self._resample(self._online_buffers, learning)
        log_probs = self._buffered_call("log_probs", batch.obs, False, noisy)
        log_probs = log_probs.gather(2, batch.actions[:, :, None, None].expand(k, b, 1, n)).squeeze(2)
        cross_entropy = -(m * log_probs).sum(dim=2)  # (K, B)
        weighted = cross_entropy if batch.weights is None else batch.weights * cross_entropy
        losses = weighted.mean(dim=1)
        self._step(losses.sum())
        with torch.no_grad():
            # KL(m || p) = cross-entropy - entropy(m), with 0 log 0 = 0.
            kl = cross_entropy + torch.special.xlogy(m, m).sum(dim=2)
            q = (log_probs.exp() * self._support).sum(dim=2)
        return UpdateResult(losses.detach(), kl, q.abs().amax(dim=1), q.mean(dim=1))

    def _per_seed(self) -> list[torch.Tensor]:
        """Every tensor an update changes, each with the seed axis first."""
        return [*self.online, *(t for s in self.optimizer.state_list() for t in s.values())]

    def _index(self, seeds: np.ndarray) -> torch.Tensor:
        """`seeds` as an index tensor on the device, made once per set of seeds (masks repeat
        for long stretches: a finished seed stays masked), so no transfer per step."""
        key = seeds.tobytes()
        index = self._indices.get(key)
        if index is None:
            index = self._indices[key] = torch.as_tensor(seeds, dtype=torch.int64, device=self.device)
        return index

    @torch.no_grad()
    def _snapshot(self, seeds: np.ndarray) -> list[torch.Tensor]:
        index = self._index(seeds)
        return [t.index_select(0, index) for t in self._per_seed()]

    @torch.no_grad()
    def _restore(self, seeds: np.ndarray, kept: list[torch.Tensor]) -> None:
        index = self._index(seeds)
        for t, saved in zip(self._per_seed(), kept):
            t.index_copy_(0, index, saved)

    def _step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad()
        loss.backward()
        if self.config.max_grad_norm is not None:
            clip_grad_norm_per_seed(self.online, self.config.max_grad_norm)
        self.optimizer.step()

    @torch.no_grad()
    def sync_target(self, active: np.ndarray | None = None) -> None:
        """Polyak (or copy) for the seeds in `active` (all by default); the others keep theirs."""
        if active is None or active.all():
            polyak_update(self.target, self.online, self.config.tau)
            return
        index = self._index(np.flatnonzero(active))
        targets = [t.index_select(0, index) for t in self.target]
        polyak_update(targets, [p.index_select(0, index) for p in self.online], self.config.tau)
        for t, new in zip(self.target, targets):
            t.index_copy_(0, index, new)

    # -- each seed's state, in `Agent.state_dict`'s format ------------------------------------

    def slot(self, k: int) -> "Slot":
        return Slot(self, k)

    def state_dict_of(self, k: int) -> dict:
        """Seed k's `Agent.state_dict`: its weights, target and optimizer state (torch's format;
        no optimizer state before its first update, as torch)."""
        return {
            "online": {n: p[k].detach().clone() for n, p in zip(self._state_keys, self.online)},
            "target": {n: p[k].clone() for n, p in zip(self._state_keys, self.target)},
            "optimizer": self.optimizer.state_dict_of(k),
            **({"noise": self.noise[k].get_state()} if self.noisy else {}),
        }

    @torch.no_grad()
    def load_state_dict_of(self, k: int, state: dict) -> None:
        """Load an `Agent.state_dict` (or `state_dict_of`'s) into seed k; a mismatch raises."""
        online, target = state["online"], state["target"]
        if set(online) != set(self._state_keys) or set(target) != set(self._state_keys):
            raise KeyError("the state's parameter names are not this network's")
        for i, name in enumerate(self._state_keys):
            self.online[i][k].copy_(online[name])  # RuntimeError on another shape
            self.target[i][k].copy_(target[name])
        self.optimizer.load_state_dict_of(k, state["optimizer"])
        if self.noisy:
            self.noise[k].set_state(state["noise"])

    def state_dicts(self) -> list[dict]:
        return [self.state_dict_of(k) for k in range(self.k)]

    def load_state_dicts(self, states: Sequence[dict]) -> None:
        """Load K `Agent.state_dict`s (or this class's `state_dicts`), one per seed, in order."""
        if len(states) != self.k:
            raise ValueError(f"{len(states)} states for {self.k} stacked seeds")
        for k, state in enumerate(states):
            self.load_state_dict_of(k, state)


class _Method(torch.nn.Module):
    """`net.<method>(obs, noise=...)` as a module's forward, for `functional_call`."""

    def __init__(self, net: QNetwork, method: str):
        super().__init__()
        self.net, self.method = net, method

    def forward(self, obs: torch.Tensor, noise: bool = False) -> torch.Tensor:
        return getattr(self.net, self.method)(obs, noise=noise)


class Slot:
    """Seed k of a `StackedAgent`, with the methods of an `Agent` a `trainer.SeedRun` uses."""

    def __init__(self, stacked: StackedAgent, k: int):
        self.stacked, self.k = stacked, k

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        return self.stacked.greedy_of(self.k, obs)

    def online_state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p[self.k].detach() for n, p in zip(self.stacked._state_keys, self.stacked.online)}

    def state_dict(self) -> dict:
        return self.stacked.state_dict_of(self.k)

    def load_state_dict(self, state: dict) -> None:
        self.stacked.load_state_dict_of(self.k, state)


# ---------------------------------------------------------------------------------------------
# The optimizers of stacked parameters: dqnrun.optim's arithmetic (elementwise, so each seed's
# slice evolves as it would alone) with a step count per seed, state made up front, and each
# seed's state read and written in torch's one-network format.


class _PerSeed:
    """State for stacked parameters (K, *shape): made at once, "step" a (K,) tensor."""

    STATE: tuple[str, ...]
    params: list[torch.Tensor]
    state: dict[torch.Tensor, dict[str, torch.Tensor]]

    def _make_state(self, k: int) -> None:
        device = self.params[0].device
        self._one = torch.tensor(1.0, device=device)
        for p in self.params:
            self.state[p] = {"step": torch.zeros(k, dtype=torch.float32, device=device),
                             **{name: torch.zeros_like(p) for name in self.STATE}}

    def state_list(self) -> list[dict[str, torch.Tensor]]:
        return [self.state[p] for p in self.params]

    def state_dict_of(self, k: int) -> dict[str, Any]:
        (group,) = self.param_groups  # type: ignore[attr-defined]
        first = self.state[self.params[0]]
        started = bool(first["step"][k] > 0)
        return {
            "state": {i: {name: value[k].clone() for name, value in self.state[p].items()}
                      for i, p in enumerate(self.params)} if started else {},
            "param_groups": [{**{n: v for n, v in group.items() if n != "params"},
                              "params": list(range(len(self.params)))}],
        }

    @torch.no_grad()
    def load_state_dict_of(self, k: int, saved: dict[str, Any]) -> None:
        (group,) = saved["param_groups"]
        if len(group["params"]) != len(self.params):
            raise ValueError("loaded state dict has a different number of parameters")
        mine = self.param_groups[0]  # type: ignore[attr-defined]
        if any(group.get(n) != v for n, v in mine.items() if n != "params"):
            raise ValueError("the optimizer's settings differ from this run's")
        for i, p in enumerate(self.params):
            state = self.state[p]
            values = saved["state"].get(i)
            for name, t in state.items():
                if values is None:
                    t[k].zero_()
                else:
                    t[k].copy_(values[name].reshape(t[k].shape) if name == "step" else values[name])


class StackedRMSprop(_PerSeed, RMSprop):
    def __init__(self, params: Sequence[torch.Tensor], lr: float, k: int, **options: Any):
        RMSprop.__init__(self, params, lr, **options)
        self._make_state(k)


class StackedAdam(_PerSeed, Adam):
    def __init__(self, params: Sequence[torch.Tensor], lr: float, k: int, **options: Any):
        Adam.__init__(self, params, lr, **options)
        self._make_state(k)

    def _update(self, group, params, grads, state):
        """`optim.Adam`'s update with each seed's own step count t_k in the bias corrections
        (Kingma & Ba 2015, Algorithm 1), computed on the device (float64, then float32)."""
        beta1, beta2 = group["betas"]
        lr = group["lr"]
        steps, exp_avgs, exp_avg_sqs = self._moments(group, grads, state)
        # Every parameter of a seed has taken the same steps. (Apple's MPS has no float64.)
        t = steps[0].to(torch.float32 if steps[0].device.type == "mps" else torch.float64)
        step_size = (-lr / (1 - beta1**t)).float()
        bias_correction2_sqrt = ((1 - beta2**t) ** 0.5).float()
        # The smallest correction is the first step's, sqrt(1 - beta2) (dqnrun.optim's denormal floor).
        exact = denormal_floor_is_exact(group["eps"], (1 - beta2) ** 0.5)
        for p, m, v in zip(params, exp_avgs, exp_avg_sqs):
            shape = (-1,) + (1,) * (p.dim() - 1)
            (root,) = floored_sqrt([v], exact)
            denom = (root / bias_correction2_sqrt.view(shape)).add_(group["eps"])
            p.add_((m / denom) * step_size.view(shape))


STACKED_OPTIMIZERS = {"rmsprop": StackedRMSprop, "adam": StackedAdam}


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
