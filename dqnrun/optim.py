"""The optimizer step: torch's RMSprop and Adam updates without their per-step Python overhead.

`FastStep` wraps a `torch.optim.RMSprop` or `torch.optim.Adam` (foreach, default options but
the learning rate and Adam's betas/eps) and performs its `step` with the same `torch._foreach_*`
operations in the same order as torch's multi-tensor implementation, so every parameter and
every state tensor is bitwise the one torch would compute. What it saves is torch's bookkeeping
around those operations (hooks, profiler records, grouping tensors by device, rebuilding the
lists of state tensors), about half of the step's time for a small MLP. State lives in the
wrapped optimizer, so `state_dict`/`load_state_dict` are torch's own and checkpoints written
with either one load into the other.

Any case it does not cover (a parameter without a gradient, a non-default option) falls back
to torch's own `step`, which also creates the state on the first step.
"""

from __future__ import annotations

from typing import Any

import torch

# Options that must keep torch's defaults for the fast path (it implements only that case).
_DEFAULTS = {
    torch.optim.RMSprop: {"weight_decay": 0, "momentum": 0, "centered": False, "maximize": False,
                          "differentiable": False, "capturable": False},
    torch.optim.Adam: {"weight_decay": 0, "amsgrad": False, "maximize": False, "differentiable": False,
                       "capturable": False, "decoupled_weight_decay": False},
}


class FastStep:
    """`step`, `zero_grad`, `state_dict`, `load_state_dict` of a wrapped RMSprop or Adam."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        if type(optimizer) not in _DEFAULTS:
            raise TypeError(f"FastStep wraps RMSprop or Adam, not {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.param_groups = optimizer.param_groups
        self._adam = isinstance(optimizer, torch.optim.Adam)
        (group,) = optimizer.param_groups
        self._params: list[torch.Tensor] = list(group["params"])
        self._supported = all(group.get(k, v) == v for k, v in _DEFAULTS[type(optimizer)].items()) and all(
            not torch.is_complex(p) for p in self._params
        ) and len({(p.device, p.dtype) for p in self._params}) == 1
        self._state: list[list[torch.Tensor]] | None = None  # step tensors, then the moments
        self._one = torch.tensor(1.0)

    def zero_grad(self) -> None:
        """Gradients to None (what `zero_grad(set_to_none=True)` does, without its loop's hooks)."""
        for p in self._params:
            p.grad = None

    def _cached_state(self) -> list[list[torch.Tensor]] | None:
        if self._state is None:
            state = self.optimizer.state
            if not all(p in state and state[p] for p in self._params):
                return None  # the first step: torch creates the state
            keys = ("step", "exp_avg", "exp_avg_sq") if self._adam else ("step", "square_avg")
            cached = [[state[p][k] for p in self._params] for k in keys]
            if self._adam and len({float(t) for t in cached[0]}) > 1:
                return None  # a parameter missed a step: Adam's bias correction differs per parameter
            self._state = cached
        return self._state

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad for p in self._params]
        state = self._cached_state() if self._supported else None
        if state is None or any(g is None or g.is_sparse for g in grads):
            self._state = None
            self.optimizer.step()
            return
        group = self.param_groups[0]
        if self._adam:
            self._adam_step(group, grads, *state)
        else:
            self._rmsprop_step(group, grads, *state)

    def _rmsprop_step(self, group: dict[str, Any], grads: list[torch.Tensor], steps: list[torch.Tensor],
                      square_avgs: list[torch.Tensor]) -> None:
        """Tieleman & Hinton (2012), as torch's `_multi_tensor_rmsprop` computes it:
        v <- alpha v + (1 - alpha) g^2;  theta <- theta - lr g / (sqrt(v) + eps)."""
        alpha = group["alpha"]
        torch._foreach_add_(steps, self._one, alpha=1.0)
        torch._foreach_mul_(square_avgs, alpha)
        torch._foreach_addcmul_(square_avgs, grads, grads, value=1 - alpha)
        avg = torch._foreach_sqrt(square_avgs)
        torch._foreach_add_(avg, group["eps"])
        torch._foreach_addcdiv_(self._params, grads, avg, value=-group["lr"])

    def _adam_step(self, group: dict[str, Any], grads: list[torch.Tensor], steps: list[torch.Tensor],
                   exp_avgs: list[torch.Tensor], exp_avg_sqs: list[torch.Tensor]) -> None:
        """Kingma & Ba (2015), Algorithm 1, as torch's `_multi_tensor_adam` computes it:
        m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
        theta <- theta - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""
        beta1, beta2 = group["betas"]
        lr = group["lr"]
        torch._foreach_add_(steps, self._one, alpha=1.0)
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
        # Every parameter's step count is the same; torch reads each one as a Python float.
        t = steps[0].item()
        n = len(steps)
        step_size = [(lr / (1 - beta1**t)) * -1] * n
        bias_correction2_sqrt = [(1 - beta2**t) ** 0.5] * n
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, bias_correction2_sqrt)
        torch._foreach_add_(denom, group["eps"])
        torch._foreach_addcdiv_(self._params, exp_avgs, denom, step_size)

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)
        self._state = None  # torch replaced the state tensors
