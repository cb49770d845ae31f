"""The learner: epsilon-greedy acting, the (Double) DQN TD target, the weighted loss, target sync.

The agent does no I/O: `update` returns what it learned and the trainer decides what to do
with it (priority updates, logging, divergence checks).
"""

from __future__ import annotations

import copy
from typing import NamedTuple, Sequence

import numpy as np
import torch

from dqnrun.config import AgentConfig
from dqnrun.networks import NetworkSpec, QNetwork
from dqnrun.replay import Batch


def td_target(
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    gamma: float,
    next_q_target: torch.Tensor,
    next_q_online: torch.Tensor | None = None,
) -> torch.Tensor:
    """r + gamma * (1 - terminal) * Q_target(s', a*).

    DQN (Mnih et al. 2015): a* = argmax_a Q_target(s', a), i.e. the max of the target network.
    Double DQN (van Hasselt et al. 2016, equation 4): a* = argmax_a Q_online(s', a), valued by
    the target network. Pass `next_q_online` for Double DQN.
    Only a real terminal state cuts the bootstrap; a time-limit truncation does not (it is
    stored as not terminated).
    """
    if next_q_online is None:
        next_value = next_q_target.max(dim=1).values
    else:
        best = next_q_online.argmax(dim=1, keepdim=True)
        next_value = next_q_target.gather(1, best).squeeze(1)
    return rewards + gamma * (1.0 - terminated) * next_value


def td_loss(td_errors: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared TD error, each term scaled by its importance weight w_i when given.

    PER (Schaul et al. 2016, Algorithm 1, line 11) accumulates w_i * delta_i * grad Q, the
    gradient of w_i * delta_i^2 / 2: the weight multiplies the squared error once, it is not
    squared with it.
    """
    squared = td_errors.pow(2)
    if weights is not None:
        squared = weights * squared
    return squared.mean()


@torch.no_grad()
def polyak_update(target: Sequence[torch.Tensor], online: Sequence[torch.Tensor], tau: float) -> None:
    """theta_target <- tau * theta_online + (1 - tau) * theta_target; tau = 1 copies exactly."""
    if tau == 1.0:
        torch._foreach_copy_(list(target), list(online))
    else:
        torch._foreach_lerp_(list(target), list(online), tau)


class UpdateResult(NamedTuple):
    loss: torch.Tensor  # scalar, detached
    td_errors: torch.Tensor  # (B,), detached
    max_q: torch.Tensor  # scalar: largest |Q(s, a)| in the batch, detached, to catch divergence
    mean_q: torch.Tensor  # scalar: mean Q(s, a) of the batch, detached (for logging)


class Agent:
    """Online and target Q-networks with their optimizer."""

    def __init__(self, spec: NetworkSpec, config: AgentConfig, device: torch.device | str, torch_seed: int):
        self.config = config
        self.device = torch.device(device)
        self.n_actions = spec.n_actions
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(torch_seed)
            self.online = QNetwork(spec).to(self.device)
        self.target = copy.deepcopy(self.online)
        self.target.requires_grad_(False)
        params = self.online.parameters()
        if config.optimizer == "adam":
            self.optimizer = torch.optim.Adam(params, lr=config.learning_rate, foreach=True)
        else:
            self.optimizer = torch.optim.RMSprop(params, lr=config.learning_rate, foreach=True)
        self._online_params = list(self.online.parameters())
        self._target_params = list(self.target.parameters())

    @torch.no_grad()
    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """Greedy actions for a batch of observations (B, obs_dim)."""
        x = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        return self.online(x).argmax(dim=1).cpu().numpy()

    def act(self, obs: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
        """Epsilon-greedy: a uniformly random action with probability epsilon, else greedy."""
        if rng.random() < epsilon:
            return int(rng.integers(self.n_actions))
        return int(self.greedy(obs[None])[0])

    def update(self, batch: Batch) -> UpdateResult:
        """One gradient step on the batch."""
        with torch.no_grad():
            next_q_target = self.target(batch.next_obs)
            next_q_online = self.online(batch.next_obs) if self.config.double else None
            target = td_target(batch.rewards, batch.terminated, self.config.gamma, next_q_target, next_q_online)
        q = self.online(batch.obs).gather(1, batch.actions.unsqueeze(1)).squeeze(1)
        td_errors = target - q
        loss = td_loss(td_errors, batch.weights)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        q = q.detach()
        return UpdateResult(loss.detach(), td_errors.detach(), q.abs().max(), q.mean())

    def sync_target(self) -> None:
        polyak_update(self._target_params, self._online_params, self.config.tau)

    def state_dict(self) -> dict:
        return {
            "online": self.online.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
