"""Q-networks: an MLP trunk with a plain or dueling head, rebuilt from a small spec."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class NetworkSpec:
    """Everything needed to rebuild a Q-network; saved beside every model's weights."""

    obs_dim: int
    n_actions: int
    hidden: tuple[int, ...]
    dueling: bool

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "NetworkSpec":
        return cls(int(d["obs_dim"]), int(d["n_actions"]), tuple(int(h) for h in d["hidden"]), bool(d["dueling"]))


def dueling_q(value: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """Q = V + (A - mean_a A): Wang et al. (2016), equation 9.

    Subtracting the mean makes V and A identifiable: adding a constant to every advantage
    leaves Q unchanged.
    """
    return value + (advantages - advantages.mean(dim=1, keepdim=True))


class QNetwork(nn.Module):
    """MLP from observations to one Q-value per action; `dueling` splits the last layer in two."""

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        self.spec = spec
        layers: list[nn.Module] = []
        width = spec.obs_dim
        for h in spec.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.trunk = nn.Sequential(*layers)
        if spec.dueling:
            self.value_head = nn.Linear(width, 1)
            self.advantage_head = nn.Linear(width, spec.n_actions)
        else:
            self.head = nn.Linear(width, spec.n_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.trunk(obs)
        if self.spec.dueling:
            return dueling_q(self.value_head(x), self.advantage_head(x))
        return self.head(x)
