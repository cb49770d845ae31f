"""The optimizer step: torch's RMSprop and Adam updates, bitwise, without their per-step overhead.

`RMSprop` and `Adam` perform the update of `torch.optim.RMSprop(params, lr, alpha, eps, centered=...,
foreach=True)` and `torch.optim.Adam(params, lr, eps=..., foreach=True)` (torch's other defaults) with the same
`torch._foreach_*` operations in the same order as torch's multi-tensor implementation, so
every parameter and every state tensor is bitwise the one torch computes. What they leave out is
torch's bookkeeping around those operations (hooks, profiler records, grouping tensors by device,
rebuilding the lists of state tensors each step), about a third of the step for a small MLP, and
torch.optim's import of the compiler stack (torch._dynamo) when an optimizer is created, most
of a second of every process's start. `state_dict` and `load_state_dict` use torch's format, so
checkpoints written by either one load into the other.

One more saving keeps the numbers: both optimizers take the square root of a running average of
squared gradients, which decays into the denormal floats for every weight whose gradient stays
zero (a dead ReLU unit's) and stays there. A square root of a denormal costs an x86 CPU over ten
times a normal one, and after a long run a large share of the average is denormal. The average is
raised to the smallest normal float (2^-126) before the root, which changes the root only where
it is below 2^-63, far under half of eps's last place, so adding eps (1e-8) rounds it away: the
denominator sqrt(v) + eps, and every step, stays bitwise torch's (`denormal_floor_is_exact`; tested on
every denormal). With an eps too small for that, the plain root is taken.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Iterable

import torch


# The smallest normal float32, 2^-126; its square root is 2^-63.
SMALLEST_NORMAL = torch.finfo(torch.float32).tiny


def denormal_floor_is_exact(eps: float, scale: float = 1.0) -> bool:
    """Whether sqrt(max(v, 2^-126)) / scale + eps is bitwise sqrt(v) / scale + eps for every v >= 0.

    The two roots differ only where both are at most 2^-63 (so at most 2^-63 / scale after the
    division); adding eps rounds any such addend away when it is under half of eps's last place,
    2^(e - 25) for eps = m 2^e, 0.5 <= m < 1 (float32: 24 significant bits). A factor 2 of margin
    covers the division's rounding.
    """
    if not eps > 0:
        return False
    _, e = math.frexp(eps)
    return 2.0**-62 / scale <= 2.0 ** (e - 25)


def floored_sqrt(tensors: list[torch.Tensor], exact: bool) -> list[torch.Tensor]:
    """sqrt of each tensor, new tensors; raised to the smallest normal float32 first when `exact`
    allows and the tensors are float32 (the argument above is float32's)."""
    if not exact or tensors[0].dtype != torch.float32:
        return torch._foreach_sqrt(tensors)
    roots = torch._foreach_clamp_min(tensors, SMALLEST_NORMAL)
    torch._foreach_sqrt_(roots)
    return roots


class _Foreach:
    """Parameters, their state (created on a parameter's first gradient, as torch does) and
    torch's `state_dict` format. Subclasses define DEFAULTS (torch's param_group, in its key
    order), STATE (the state tensors besides "step") and `_update`."""

    DEFAULTS: dict[str, Any]
    STATE: tuple[str, ...]

    def __init__(self, params: Iterable[torch.Tensor], lr: float, **options: Any):
        unknown = set(options) - set(self.DEFAULTS)
        if unknown:
            raise TypeError(f"unknown optimizer options: {sorted(unknown)}")
        self.params = list(params)
        self.param_groups = [{**self.DEFAULTS, **options, "lr": lr, "params": self.params}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}
        self._lists: dict[str, list[torch.Tensor]] | None = None  # every parameter's state, by name
        self._one = torch.tensor(1.0)

    def zero_grad(self) -> None:
        """Gradients to None (what `zero_grad(set_to_none=True)` does)."""
        for p in self.params:
            p.grad = None

    def _state_of(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        state = self.state.get(p)
        if state is None:
            state = self.state[p] = {"step": torch.zeros((), dtype=torch.float32)}
            for name in self.STATE:
                state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad for p in self.params]
        if all(g is not None for g in grads):
            if self._lists is None:
                states = [self._state_of(p) for p in self.params]
                self._lists = {name: [s[name] for s in states] for name in ("step", *self.STATE)}
            params, lists = self.params, self._lists
        else:  # torch skips a parameter without a gradient: no update, no step counted
            params = [p for p in self.params if p.grad is not None]
            if not params:
                return
            grads = [p.grad for p in params]
            states = [self._state_of(p) for p in params]
            lists = {name: [s[name] for s in states] for name in ("step", *self.STATE)}
        self._update(self.param_groups[0], params, grads, lists)

    def _update(self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor],
                state: dict[str, list[torch.Tensor]]) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """torch.optim's format: state by parameter index, the group's options and indices."""
        index = {p: i for i, p in enumerate(self.params)}
        (group,) = self.param_groups
        return {
            "state": {index[p]: dict(s) for p, s in self.state.items()},
            "param_groups": [{**{k: v for k, v in group.items() if k != "params"},
                              "params": list(range(len(self.params)))}],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a `state_dict` of this class or of the torch.optim optimizer it mirrors."""
        state_dict = copy.deepcopy(state_dict)
        (saved,) = state_dict["param_groups"]
        if len(saved["params"]) != len(self.params):
            raise ValueError("loaded state dict has a different number of parameters")
        (group,) = self.param_groups
        group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = {}
        for i, p in zip(saved["params"], self.params):
            if i in state_dict["state"]:
                self.state[p] = {
                    name: value.to(dtype=torch.float32, device="cpu") if name == "step"
                    else value.to(dtype=p.dtype, device=p.device)
                    for name, value in state_dict["state"][i].items()
                }
        self._lists = None


class RMSprop(_Foreach):
    DEFAULTS = {"lr": 0.01, "momentum": 0, "alpha": 0.99, "eps": 1e-08, "centered": False, "weight_decay": 0,
                "capturable": False, "foreach": True, "maximize": False, "differentiable": False}

    def __init__(self, params: Iterable[torch.Tensor], lr: float, **options: Any):
        super().__init__(params, lr, **options)
        self._name_state()

    def _name_state(self) -> None:
        # torch's state keys, in torch's order: the centred variant keeps the gradient's average too.
        self.STATE = ("square_avg", "grad_avg") if self.param_groups[0]["centered"] else ("square_avg",)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As torch: the loaded options replace this optimizer's, `centered` included."""
        super().load_state_dict(state_dict)
        self._name_state()

    def _update(self, group, params, grads, state):
        """Tieleman & Hinton (2012), as torch's `_multi_tensor_rmsprop` computes it:
        v <- alpha v + (1 - alpha) g^2;  theta <- theta - lr g / (sqrt(v) + eps).
        Centred, the running variance of Graves (2013, equations 38-40; without his momentum, and eps
        outside the root, as torch has it): also m <- alpha m + (1 - alpha) g, and the denominator
        is sqrt(v - m^2) + eps."""
        alpha = group["alpha"]
        square_avgs = state["square_avg"]
        torch._foreach_add_(state["step"], self._one, alpha=1.0)
        torch._foreach_mul_(square_avgs, alpha)
        torch._foreach_addcmul_(square_avgs, grads, grads, value=1 - alpha)
        if group["centered"]:
            # v - m^2 can round below zero, where torch's root is NaN: no floor, to stay torch's.
            grad_avgs = state["grad_avg"]
            torch._foreach_lerp_(grad_avgs, grads, 1 - alpha)
            avg = torch._foreach_addcmul(square_avgs, grad_avgs, grad_avgs, value=-1)
            torch._foreach_sqrt_(avg)
        else:
            avg = floored_sqrt(square_avgs, denormal_floor_is_exact(group["eps"]))
        torch._foreach_add_(avg, group["eps"])
        torch._foreach_addcdiv_(params, grads, avg, value=-group["lr"])


class Adam(_Foreach):
    DEFAULTS = {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-08, "weight_decay": 0, "amsgrad": False,
                "maximize": False, "foreach": True, "capturable": False, "differentiable": False, "fused": None,
                "decoupled_weight_decay": False}
    STATE = ("exp_avg", "exp_avg_sq")

    def _moments(self, group, grads, state):
        """t <- t + 1;  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2, in place; returns (t, m, v)."""
        beta1, beta2 = group["betas"]
        steps, exp_avgs, exp_avg_sqs = state["step"], state["exp_avg"], state["exp_avg_sq"]
        torch._foreach_add_(steps, self._one, alpha=1.0)
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
        return steps, exp_avgs, exp_avg_sqs

    def _update(self, group, params, grads, state):
        """Kingma & Ba (2015), Algorithm 1, as torch's `_multi_tensor_adam` computes it:
        m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
        theta <- theta - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""
        beta1, beta2 = group["betas"]
        lr = group["lr"]
        steps, exp_avgs, exp_avg_sqs = self._moments(group, grads, state)
        # torch reads each parameter's step count as a Python float.
        t = [s.item() for s in steps]
        step_size = [(lr / (1 - beta1**n)) * -1 for n in t]
        bias_correction2_sqrt = [(1 - beta2**n) ** 0.5 for n in t]
        denom = floored_sqrt(exp_avg_sqs, denormal_floor_is_exact(group["eps"], min(bias_correction2_sqrt)))
        torch._foreach_div_(denom, bias_correction2_sqrt)
        torch._foreach_add_(denom, group["eps"])
        torch._foreach_addcdiv_(params, exp_avgs, denom, step_size)


OPTIMIZERS = {"rmsprop": RMSprop, "adam": Adam}


def optimizer_options(agent: Any) -> dict[str, Any]:
    """torch's options for an `AgentConfig`'s optimizer: eps, and RMSprop's alpha and centred."""
    if agent.optimizer == "rmsprop":
        return {"eps": agent.optimizer_eps, "alpha": agent.rmsprop_alpha, "centered": agent.rmsprop_centered}
    return {"eps": agent.optimizer_eps}
