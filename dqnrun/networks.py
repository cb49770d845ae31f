"""Q-networks: a trunk (MLP or CNN) and a head (plain or dueling; linear or noisy; scalar or C51),
rebuilt from a small spec."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from dqnrun.errors import UserError

# Convolution stacks: (out channels, kernel, stride) per layer, then the fully connected width.
# Nature DQN (Mnih et al. 2015, Methods, "Model architecture"): 32 8x8/4, 64 4x4/2, 64 3x3/1, 512.
# MinAtar (Young and Tian 2019, section 4): one 16 3x3/1 convolution, 128 hidden units.
CNN_STACKS: dict[str, tuple[tuple[tuple[int, int, int], ...], int]] = {
    "nature": (((32, 8, 4), (64, 4, 2), (64, 3, 1)), 512),
    "minatar": (((16, 3, 1),), 128),
}
NATURE_MIN_SIDE = 36  # the smallest image the Nature stack reduces to at least 1x1


@dataclass(frozen=True)
class NetworkSpec:
    """Everything needed to rebuild a Q-network; saved beside every model's weights.

    `obs_dim` is the number of observation values (the MLP's input); `obs_shape` and
    `obs_dtype` describe one observation as the environment gives it (uint8 frames are scaled
    to [0, 1] inside the network). `trunk` is "mlp", "nature" or "minatar". The head: `dueling`,
    `noisy` (NoisyNet layers with `noisy_sigma0`) and `atoms` (1: one Q-value per action; >= 2:
    C51's categorical distribution on `atoms` values from `v_min` to `v_max`).
    """

    obs_dim: int
    n_actions: int
    hidden: tuple[int, ...]
    dueling: bool
    obs_shape: tuple[int, ...] = ()
    obs_dtype: str = "float32"
    trunk: str = "mlp"
    noisy: bool = False
    noisy_sigma0: float = 0.5
    atoms: int = 1
    v_min: float = 0.0
    v_max: float = 0.0

    @property
    def distributional(self) -> bool:
        return self.atoms > 1

    def __post_init__(self) -> None:
        if not self.obs_shape:
            object.__setattr__(self, "obs_shape", (self.obs_dim,))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["obs_shape"] = list(self.obs_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "NetworkSpec":
        # Models saved before image observations hold only obs_dim: a flat float32 MLP.
        return cls(
            int(d["obs_dim"]), int(d["n_actions"]), tuple(int(h) for h in d["hidden"]), bool(d["dueling"]),
            obs_shape=tuple(int(n) for n in d.get("obs_shape") or (int(d["obs_dim"]),)),
            obs_dtype=str(d.get("obs_dtype", "float32")),
            trunk=str(d.get("trunk", "mlp")),
            # Models saved before the noisy and distributional heads: both off.
            noisy=bool(d.get("noisy", False)), noisy_sigma0=float(d.get("noisy_sigma0", 0.5)),
            atoms=int(d.get("atoms", 1)), v_min=float(d.get("v_min", 0.0)), v_max=float(d.get("v_max", 0.0)),
        )

    def with_head(self, agent) -> "NetworkSpec":
        """This spec with the head an `AgentConfig` asks for (noisy, distributional)."""
        return dataclasses.replace(
            self, noisy=agent.noisy, noisy_sigma0=agent.noisy_sigma0,
            atoms=agent.atoms if agent.distributional else 1,
            v_min=agent.v_min if agent.distributional else 0.0, v_max=agent.v_max if agent.distributional else 0.0,
        )


def choose_trunk(kind: str, cnn: str, obs_shape: tuple[int, ...], env_id: str) -> str:
    """The trunk for `network.type` and `network.cnn` on observations of `obs_shape`."""
    flat = len(obs_shape) == 1
    if kind == "auto":
        kind = "mlp" if flat else "cnn"
    if kind == "mlp":
        if not flat:
            raise UserError(
                f"environment {env_id!r} has observations of shape {obs_shape} (images?) and network.type is "
                "mlp: use network.type: cnn (or auto), or add the FlattenObservation wrapper"
            )
        return "mlp"
    if flat or len(obs_shape) > 4:
        raise UserError(
            f"network.type cnn needs image observations (HxW, HxWxC, CxHxW or stacked frames), but environment "
            f"{env_id!r} has shape {obs_shape}: use network.type: mlp (or auto)"
        )
    _, height, width = image_layout(obs_shape)
    if cnn == "auto":
        cnn = "nature" if min(height, width) >= NATURE_MIN_SIDE else "minatar"
    if cnn == "nature" and min(height, width) < NATURE_MIN_SIDE:
        raise UserError(
            f"the nature CNN needs images at least {NATURE_MIN_SIDE}x{NATURE_MIN_SIDE}, environment {env_id!r} "
            f"gives {height}x{width}: use network.cnn: minatar (or auto)"
        )
    return cnn


def _channels_last(shape: tuple[int, ...]) -> bool:
    """Channel axis of a 3-D image: the smaller of the first and the last axis (ties: last).
    (4, 84, 84) stacked Atari frames are channel-first, (10, 10, 4) MinAtar grids channel-last."""
    return not shape[0] < shape[-1]


def image_layout(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(channels, height, width) of an observation of `shape`.

    HxW is one channel; HxWxC and CxHxW are told apart by `_channels_last`; 4-D observations are
    stacked frames (FrameStackObservation's first axis) of 3-D images: their channels multiply.
    """
    if len(shape) == 2:
        return 1, shape[0], shape[1]
    if len(shape) == 3:
        if _channels_last(shape):
            return shape[2], shape[0], shape[1]
        return shape[0], shape[1], shape[2]
    stack, inner = shape[0], shape[1:]
    channels, height, width = image_layout(inner)
    return stack * channels, height, width


def to_nchw(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A batch of observations of `shape` as (batch, channels, height, width)."""
    if len(shape) == 2:
        return x.unsqueeze(1)
    if len(shape) == 3:
        return x.permute(0, 3, 1, 2) if _channels_last(shape) else x
    b, stack = x.shape[0], shape[0]
    inner = shape[1:]
    if _channels_last(inner):
        x = x.permute(0, 1, 4, 2, 3)  # (B, stack, C, H, W)
    return x.reshape(b, stack * x.shape[2], x.shape[3], x.shape[4])


class MLPTrunk(nn.Sequential):
    """Linear + ReLU layers on the flattened observation, uint8 scaled to [0, 1] (a Sequential, so
    that the weights' names, `trunk.0.weight`, are those of the models saved before the CNN)."""

    def __init__(self, spec: NetworkSpec):
        layers: list[nn.Module] = []
        width = spec.obs_dim
        for h in spec.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        super().__init__(*layers)
        self._linears = layers[::2]  # a plain list: the modules stay registered once, by index
        self.scale = 1.0 / 255.0 if spec.obs_dtype == "uint8" else None
        self.out_features = width

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.reshape(obs.shape[0], -1).float()
        if self.scale is not None:
            x = x * self.scale
        # The operations nn.Linear and nn.ReLU run, called directly: the same numbers without a
        # module call per layer (a fifth of the time of a forward pass for one state).
        for layer in self._linears:
            x = F.linear(x, layer.weight, layer.bias).relu_()
        return x


class CNNTrunk(nn.Sequential):
    """Convolutions and one fully connected layer, both ReLU, on channel-first images.

    uint8 observations (Atari frames) are scaled to [0, 1] here, as Mnih et al. (2015) feed the
    network; they can then stay uint8 in the replay and on their way to the device.
    """

    def __init__(self, spec: NetworkSpec):
        convs, hidden = CNN_STACKS[spec.trunk]
        channels, height, width = image_layout(spec.obs_shape)
        layers: list[nn.Module] = []
        for out, kernel, stride in convs:
            layers += [nn.Conv2d(channels, out, kernel, stride), nn.ReLU()]
            channels = out
            height, width = (height - kernel) // stride + 1, (width - kernel) // stride + 1
        layers += [nn.Flatten(), nn.Linear(channels * height * width, hidden), nn.ReLU()]
        super().__init__(*layers)
        self.obs_shape = spec.obs_shape
        self.scale = 1.0 / 255.0 if spec.obs_dtype == "uint8" else None
        self.out_features = hidden

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = to_nchw(obs, self.obs_shape).float()
        if self.scale is not None:
            x = x * self.scale
        return super().forward(x)


def make_trunk(spec: NetworkSpec) -> MLPTrunk | CNNTrunk:
    return MLPTrunk(spec) if spec.trunk == "mlp" else CNNTrunk(spec)


def dueling_q(value: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """Q = V + (A - mean_a A): Wang et al. (2016), equation 9.

    Subtracting the mean makes V and A identifiable: adding a constant to every advantage
    leaves Q unchanged. With C51 the same holds per atom on the logits (Hessel et al. 2018,
    section 3): value (B, 1, atoms), advantages (B, A, atoms), the mean over actions (dim 1).
    """
    return value + (advantages - advantages.mean(dim=1, keepdim=True))


def scale_noise(x: torch.Tensor) -> torch.Tensor:
    """f(x) = sgn(x) sqrt(|x|): Fortunato et al. (2018), section 3 (factorised noise)."""
    return x.sign() * x.abs().sqrt()


class NoisyLinear(nn.Module):
    """y = (mu_w + sigma_w * eps_w) x + mu_b + sigma_b * eps_b, with factorised Gaussian noise.

    Fortunato et al. (2018), equations 10-11: eps_w[i, j] = f(eps_out[i]) f(eps_in[j]) and
    eps_b = f(eps_out), from p + q unit Gaussians instead of p * q. Initialisation (section
    3.2): mu ~ U[-1/sqrt(p), 1/sqrt(p)], sigma = sigma_0 / sqrt(p), p = inputs. The noise lives
    in non-persistent buffers, drawn by `reset_noise` from the caller's generator; `forward`
    with `noise=False` uses the mean weights only (greedy evaluation).
    """

    def __init__(self, in_features: int, out_features: int, sigma0: float):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.weight_sigma = nn.Parameter(torch.full((out_features, in_features), sigma0 * bound))
        self.bias_mu = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        self.bias_sigma = nn.Parameter(torch.full((out_features,), sigma0 * bound))
        self.register_buffer("eps_in", torch.zeros(in_features), persistent=False)
        self.register_buffer("eps_out", torch.zeros(out_features), persistent=False)

    @torch.no_grad()
    def reset_noise(self, generator: torch.Generator) -> None:
        """Draw eps_in (p) and eps_out (q) ~ N(0, 1), already passed through f."""
        eps = torch.randn(self.in_features + self.out_features, generator=generator, device=generator.device)
        eps = scale_noise(eps).to(self.eps_in.device)
        self.eps_in.copy_(eps[: self.in_features])
        self.eps_out.copy_(eps[self.in_features :])

    def forward(self, x: torch.Tensor, noise: bool = False) -> torch.Tensor:
        if not noise:
            return F.linear(x, self.weight_mu, self.bias_mu)
        weight = self.weight_mu + self.weight_sigma * torch.outer(self.eps_out, self.eps_in)
        bias = self.bias_mu + self.bias_sigma * self.eps_out
        return F.linear(x, weight, bias)


class QNetwork(nn.Module):
    """Trunk (observations to features) and head (features to per-action Q-values, or to
    per-action C51 logits whose means are the Q-values); `dueling` splits the head in two.

    The head's layers keep the names of the first dqnrun models (`head`, or `value_head` and
    `advantage_head`), so every saved model still loads.
    """

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        self.spec = spec
        self.trunk = make_trunk(spec)
        width = self.trunk.out_features
        self.atoms = spec.atoms

        def linear(n_in: int, n_out: int) -> nn.Module:
            return NoisyLinear(n_in, n_out, spec.noisy_sigma0) if spec.noisy else nn.Linear(n_in, n_out)

        if spec.dueling:
            self.value_head = linear(width, self.atoms)
            self.advantage_head = linear(width, spec.n_actions * self.atoms)
        else:
            self.head = linear(width, spec.n_actions * self.atoms)
        if spec.distributional:
            # C51's support z_i = v_min + i * delta_z (Bellemare et al. 2017, section 4).
            self.register_buffer("support", torch.linspace(spec.v_min, spec.v_max, spec.atoms), persistent=False)

    def noisy_layers(self) -> list[NoisyLinear]:
        return [m for m in self.modules() if isinstance(m, NoisyLinear)]

    def reset_noise(self, generator: torch.Generator) -> None:
        for layer in self.noisy_layers():
            layer.reset_noise(generator)

    def _apply_head(self, layer: nn.Module, x: torch.Tensor, noise: bool) -> torch.Tensor:
        if self.spec.noisy:
            return layer(x, noise)
        return F.linear(x, layer.weight, layer.bias)  # nn.Linear's operation, without the module call

    def head_output(self, obs: torch.Tensor, noise: bool = False) -> torch.Tensor:
        """Q-values (B, A), or with C51 the logits (B, A, atoms)."""
        x = self.trunk(obs)
        if not self.spec.distributional:
            if self.spec.dueling:
                return dueling_q(self._apply_head(self.value_head, x, noise),
                                 self._apply_head(self.advantage_head, x, noise))
            return self._apply_head(self.head, x, noise)
        shape = (obs.shape[0], self.spec.n_actions, self.atoms)
        if self.spec.dueling:
            value = self._apply_head(self.value_head, x, noise).view(obs.shape[0], 1, self.atoms)
            return dueling_q(value, self._apply_head(self.advantage_head, x, noise).view(shape))
        return self._apply_head(self.head, x, noise).view(shape)

    def log_probs(self, obs: torch.Tensor, noise: bool = False) -> torch.Tensor:
        """C51: log p_i(s, a), a softmax over the atoms of each action (B, A, atoms)."""
        return F.log_softmax(self.head_output(obs, noise), dim=2)

    def q_from_log_probs(self, log_probs: torch.Tensor) -> torch.Tensor:
        """Q(s, a) = sum_i z_i p_i(s, a): the distribution's mean (Bellemare et al. 2017, Algorithm 1)."""
        return (log_probs.exp() * self.support).sum(dim=2)

    def forward(self, obs: torch.Tensor, noise: bool = False) -> torch.Tensor:
        """Q-values (B, A). Noisy heads use their mean weights unless `noise` is set."""
        if self.spec.distributional:
            return self.q_from_log_probs(self.log_probs(obs, noise))
        return self.head_output(obs, noise)
