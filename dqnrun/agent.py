"""The learner: acting, the (Double, n-step, distributional) TD target, the loss, target sync.

The agent does no I/O: `update` returns what it learned and the trainer decides what to do
with it (priority updates, logging, divergence checks).
"""

from __future__ import annotations

import copy
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from dqnrun.config import AgentConfig
from dqnrun.networks import NetworkSpec, QNetwork
from dqnrun.optim import OPTIMIZERS, optimizer_options
from dqnrun.replay import Batch


def td_target(
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    gamma: float,
    next_q_target: torch.Tensor,
    next_q_online: torch.Tensor | None = None,
    discounts: torch.Tensor | None = None,
) -> torch.Tensor:
    """r + gamma * (1 - terminal) * Q_target(s', a*).

    DQN (Mnih et al. 2015): a* = argmax_a Q_target(s', a), i.e. the max of the target network.
    Double DQN (van Hasselt et al. 2016, equation 4): a* = argmax_a Q_online(s', a), valued by
    the target network. Pass `next_q_online` for Double DQN.
    Only a real terminal state cuts the bootstrap; a time-limit truncation does not (it is
    stored as not terminated).
    n-step returns (Hessel et al. 2018, equation 2): `rewards` hold R = sum_{k<m} gamma^k r_{t+k}
    and `discounts` gamma^m per transition (m < n where the episode ended inside the window);
    the target is R + gamma^m (1 - terminal) Q_target(s_{t+m}, a*).
    """
    if next_q_online is None:
        next_value = next_q_target.max(dim=1).values
    else:
        best = next_q_online.argmax(dim=1, keepdim=True)
        next_value = next_q_target.gather(1, best).squeeze(1)
    if discounts is None:
        return rewards + gamma * (1.0 - terminated) * next_value
    return rewards + discounts * (1.0 - terminated) * next_value


def td_loss(
    td_errors: torch.Tensor, weights: torch.Tensor | None = None, kind: str = "mse", delta: float = 1.0
) -> torch.Tensor:
    """Mean squared (or Huber) TD error, each term scaled by its importance weight w_i when given.

    MSE: mean_i w_i delta_i^2, the squared TD error of DQN's loss L_i(theta_i) (Mnih et al. 2015,
    Methods) with each term weighted once (the weight multiplies the squared error, it is not
    squared with it). Its gradient is 2 w_i delta_i grad Q per term: twice the w_i delta_i grad Q
    that PER accumulates (Schaul et al. 2016, Algorithm 1, line 11), which is the gradient of
    w_i delta_i^2 / 2. The factor 2 doubles SGD's step (Adam's and RMSprop's steps barely change
    with a loss's scale); it stays, as the shipped results were trained with it.
    Huber (Huber 1964; the error clipping of Mnih et al. 2015): 0.5 x^2 for |x| <= delta, else
    delta (|x| - 0.5 delta); its gradient is the TD error clipped to [-delta, delta], so inside
    delta it is half the MSE's (x, not 2x), as in SB3 and Dopamine, and PER's w_i delta_i exactly.
    """
    if kind == "huber":
        per_sample = F.huber_loss(td_errors, torch.zeros_like(td_errors), reduction="none", delta=delta)
    else:
        per_sample = td_errors.pow(2)
    if weights is not None:
        per_sample = weights * per_sample
    return per_sample.mean()


def categorical_projection(
    next_probs: torch.Tensor,
    rewards: torch.Tensor,
    discounts: torch.Tensor,
    terminated: torch.Tensor,
    v_min: float,
    v_max: float,
) -> torch.Tensor:
    """Project the target distribution onto C51's support: Bellemare et al. (2017), Algorithm 1.

    `next_probs` (B, N): p_j(s', a*) on the support z_j = v_min + j dz. Each atom moves to
    T z_j = r + gamma^m (1 - terminal) z_j, clipped to [v_min, v_max]; b_j = (T z_j - v_min) / dz
    splits its mass between the neighbours l = floor(b_j) and u = ceil(b_j) in proportion to
    closeness: u - b_j to l, b_j - l to u. Written as m_i = sum_j p_j max(0, 1 - |b_j - i|),
    which is the same split and, when b_j is an integer (l == u, where the algorithm's two
    shares are both 0), keeps the whole mass on that atom. A dense (B, N, N) product rather than
    a scatter: deterministic on every device.
    """
    n = next_probs.shape[1]
    dz = (v_max - v_min) / (n - 1)
    support = torch.linspace(v_min, v_max, n, device=next_probs.device, dtype=next_probs.dtype)
    tz = (rewards[:, None] + (discounts * (1.0 - terminated))[:, None] * support[None, :]).clamp(v_min, v_max)
    b = ((tz - v_min) / dz).clamp(0, n - 1)  # (B, N_j); rounding must not push b past the last atom
    atoms = torch.arange(n, device=next_probs.device, dtype=next_probs.dtype)
    share = (1.0 - (b[:, None, :] - atoms[None, :, None]).abs()).clamp(min=0.0)  # (B, N_i, N_j)
    return torch.bmm(share, next_probs.unsqueeze(2)).squeeze(2)


@torch.no_grad()
def polyak_update(target: Sequence[torch.Tensor], online: Sequence[torch.Tensor], tau: float) -> None:
    """theta_target <- tau * theta_online + (1 - tau) * theta_target; tau = 1 copies exactly."""
    if tau == 1.0:
        torch._foreach_copy_(list(target), list(online))
    else:
        torch._foreach_lerp_(list(target), list(online), tau)


class UpdateResult(NamedTuple):
    loss: torch.Tensor  # scalar, detached
    # (B,), detached: what prioritized replay ranks by. The TD error; with C51 the KL divergence
    # between the projected target and the predicted distribution (Hessel et al. 2018, section 3).
    td_errors: torch.Tensor
    max_q: torch.Tensor  # scalar: largest |Q(s, a)| in the batch, detached, to catch divergence
    mean_q: torch.Tensor  # scalar: mean Q(s, a) of the batch, detached (for logging)


class Agent:
    """Online and target Q-networks with their optimizer (and NoisyNet's noise generator)."""

    def __init__(
        self, spec: NetworkSpec, config: AgentConfig, device: torch.device | str, torch_seed: int,
        noise_seed: int = 0,
    ):
        self.config = config
        self.device = torch.device(device)
        self.n_actions = spec.n_actions
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(torch_seed)
            self.online = QNetwork(spec).to(self.device)
        self.target = copy.deepcopy(self.online)
        self.target.requires_grad_(False)
        # torch's RMSprop / Adam update, bitwise, in torch's state_dict format (dqnrun.optim).
        self.optimizer = OPTIMIZERS[config.optimizer](self.online.parameters(), lr=config.learning_rate,
                                                      **optimizer_options(config))
        self._online_params = list(self.online.parameters())
        self._target_params = list(self.target.parameters())
        self.noisy = spec.noisy
        # NoisyNet's noise: its own CPU generator, so GPU and CPU runs draw the same noise and
        # no other stream moves. Without noisy layers it is never drawn from.
        self.noise = torch.Generator().manual_seed(noise_seed) if spec.noisy else None
        # n-step targets read each transition's stored discount; one-step targets keep gamma.
        self._n_step = config.n_step > 1

    def _resample(self, net: QNetwork) -> None:
        if self.noise is not None:
            net.reset_noise(self.noise)

    @torch.no_grad()
    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """Greedy actions for a batch of observations (B, obs_dim); noisy heads use their mean weights."""
        x = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        return self.online(x).argmax(dim=1).cpu().numpy()

    def act(self, obs: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
        """Epsilon-greedy: a uniformly random action with probability epsilon, else greedy.

        With a noisy head the greedy action is taken under fresh noise at every acting step
        (Fortunato et al. 2018, Algorithm 1).
        """
        if rng.random() < epsilon:
            return int(rng.integers(self.n_actions))
        if self.noise is None:
            return int(self.greedy(obs[None])[0])
        self._resample(self.online)
        with torch.no_grad():
            x = torch.as_tensor(obs[None], dtype=torch.float32, device=self.device)
            return int(self.online(x, noise=True).argmax(dim=1)[0])

    def update(self, batch: Batch) -> UpdateResult:
        """One gradient step on the batch.

        Noisy heads draw independent noise for the target network, the online network's
        action choice at s' (Double DQN) and the online network being trained
        (Fortunato et al. 2018, Algorithm 1: xi', xi'' and xi). Algorithm 1 writes the draws
        inside its loop over the minibatch's transitions; here, as in Rainbow implementations,
        one draw of each serves the whole minibatch.
        """
        if self.online.spec.distributional:
            return self._update_distributional(batch)
        noisy = self.noisy
        discounts = batch.discounts if self._n_step else None
        with torch.no_grad():
            self._resample(self.target)
            next_q_target = self.target(batch.next_obs, noise=noisy)
            if self.config.double:
                self._resample(self.online)
                next_q_online = self.online(batch.next_obs, noise=noisy)
            else:
                next_q_online = None
            target = td_target(batch.rewards, batch.terminated, self.config.gamma, next_q_target, next_q_online,
                               discounts)
        self._resample(self.online)
        q = self.online(batch.obs, noise=noisy).gather(1, batch.actions.unsqueeze(1)).squeeze(1)
        td_errors = target - q
        loss = td_loss(td_errors, batch.weights, self.config.loss, self.config.huber_delta)
        self._step(loss)
        q = q.detach()
        return UpdateResult(loss.detach(), td_errors.detach(), q.abs().max(), q.mean())

    def _update_distributional(self, batch: Batch) -> UpdateResult:
        """C51 (Bellemare et al. 2017, Algorithm 1) with Double DQN's action choice.

        a* = argmax_a of the online network's mean Q at s' (Double) or the target's (plain);
        the target network's distribution at (s', a*) is projected onto the support and the
        loss is its cross-entropy with the online distribution at (s, a).
        """
        noisy = self.noisy
        spec = self.online.spec
        rows = torch.arange(batch.actions.shape[0], device=batch.actions.device)
        discounts = batch.discounts if self._n_step else torch.full_like(batch.rewards, self.config.gamma)
        with torch.no_grad():
            self._resample(self.target)
            next_log_probs = self.target.log_probs(batch.next_obs, noise=noisy)
            if self.config.double:
                self._resample(self.online)
                next_q = self.online(batch.next_obs, noise=noisy)
            else:
                next_q = self.target.q_from_log_probs(next_log_probs)
            best = next_q.argmax(dim=1)
            m = categorical_projection(next_log_probs[rows, best].exp(), batch.rewards, discounts,
                                       batch.terminated, spec.v_min, spec.v_max)
        self._resample(self.online)
        log_probs = self.online.log_probs(batch.obs, noise=noisy)[rows, batch.actions]
        cross_entropy = -(m * log_probs).sum(dim=1)
        loss = cross_entropy.mean() if batch.weights is None else (batch.weights * cross_entropy).mean()
        self._step(loss)
        with torch.no_grad():
            # KL(m || p) = cross-entropy - entropy(m), with 0 log 0 = 0.
            kl = cross_entropy + torch.special.xlogy(m, m).sum(dim=1)
            q = (log_probs.exp() * self.online.support).sum(dim=1)
        return UpdateResult(loss.detach(), kl, q.abs().max(), q.mean())

    def _step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad()
        loss.backward()
        if self.config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self._online_params, self.config.max_grad_norm, foreach=True)
        self.optimizer.step()

    def sync_target(self) -> None:
        polyak_update(self._target_params, self._online_params, self.config.tau)

    def online_state_dict(self) -> dict[str, torch.Tensor]:
        """The online network's weights (what a saved model holds)."""
        return self.online.state_dict()

    def state_dict(self) -> dict:
        return {
            "online": self.online.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            **({"noise": self.noise.get_state()} if self.noise is not None else {}),
        }

    def load_state_dict(self, state: dict) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.noise is not None:
            self.noise.set_state(state["noise"])
