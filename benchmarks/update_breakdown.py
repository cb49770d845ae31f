"""Where one network update's time goes (not a test): the matrix products against the rest.

    python benchmarks/update_breakdown.py                     # configs/ddqn.yaml
    python benchmarks/update_breakdown.py configs/lunarlander.yaml --repeats 9

Times, on one torch thread, CPU, with a replay of random transitions:
- `Agent.update` as training calls it (target values, loss, backward, optimizer step);
- its parts, each alone: the forward passes without gradient (target network, and the online
  network at s' for Double DQN), the online forward with the loss and `backward`, the optimizer
  step;
- every matrix product autograd runs for the config's MLP, alone, at the update's shapes: per
  linear layer the forward `addmm`, the input gradient `grad @ W` (all layers but the first)
  and the weight gradient `grad.T @ x` (the layout autograd uses for `nn.Linear`'s weight).

The products' sum is a floor for this arithmetic on this core (the same kernels, nothing
around them); the update's time above it is Python, autograd's bookkeeping and the small
element-wise operations. Medians over --repeats blocks of --n calls each.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np
import torch

from dqnrun.agent import Agent, td_loss
from dqnrun.config import load_config
from dqnrun.envs import config_env
from dqnrun.experiment import plan
from dqnrun.replay import make_replay


def median_us(fn: Callable[[], object], n: int, repeats: int) -> float:
    for _ in range(max(1, n // 10)):
        fn()
    blocks = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        blocks.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(blocks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default="configs/ddqn.yaml")
    parser.add_argument("--n", type=int, default=500, help="calls per timed block")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks; the median is reported")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.config)
    a = config.agent
    env = config_env(config)
    if len(env.observation_space.shape) != 1 or config.network.type == "cnn" or a.distributional or a.dueling \
            or a.noisy:
        raise SystemExit("error: this breakdown covers a plain MLP on vector observations "
                         "(no CNN, dueling, noisy or C51 head)")
    obs_dim, n_actions = int(np.prod(env.observation_space.shape)), int(env.action_space.n)
    spec = plan(config)
    agent = Agent(spec, a, "cpu", torch_seed=0)
    rng = np.random.default_rng(0)
    replay = make_replay(a.memory_size, (obs_dim,), rng, "cpu", a.prioritized, config.per.alpha, config.per.eps)
    for _ in range(min(a.memory_size, 10_000)):
        replay.add(rng.normal(size=obs_dim).astype(np.float32), int(rng.integers(n_actions)), 1.0,
                   rng.normal(size=obs_dim).astype(np.float32), bool(rng.random() < 0.05))
    batch = replay.sample(a.batch_size, 0.5)
    agent.update(batch)  # creates the optimizer's state
    n, r = args.n, args.repeats

    rows: list[tuple[str, float]] = []
    update = median_us(lambda: agent.update(batch), n, r)
    with torch.no_grad():
        target_fwd = median_us(lambda: agent.target(batch.next_obs), n, r)

    def forward_backward() -> None:
        q = agent.online(batch.obs).gather(1, batch.actions.unsqueeze(1)).squeeze(1)
        loss = td_loss(torch.zeros_like(q) - q, batch.weights, a.loss, a.huber_delta)
        agent.optimizer.zero_grad()
        loss.backward()

    fwd_bwd = median_us(forward_backward, n, r)
    optimizer = median_us(agent.optimizer.step, n, r)
    forwards = 2 if a.double else 1
    rows += [(f"forward without gradient (x{forwards}: target{', online at s_next' if a.double else ''})",
              forwards * target_fwd),
             ("online forward + loss + backward (autograd)", fwd_bwd),
             ("optimizer step", optimizer)]

    # The matrix products alone, at the update's shapes and in autograd's layouts.
    b = a.batch_size
    widths = [obs_dim, *config.network.hidden, n_actions]
    gemm_total = 0.0
    gemm_rows = []
    for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:])):
        x, weight, bias = torch.randn(b, w_in), torch.randn(w_out, w_in), torch.randn(w_out)
        grad = torch.randn(b, w_out)
        fwd = median_us(lambda: torch.nn.functional.linear(x, weight, bias), n, r)
        d_w = median_us(lambda: grad.t().mm(x), n, r)
        d_x = median_us(lambda: grad.mm(weight), n, r) if i > 0 else 0.0
        per_update = (forwards + 1) * fwd + d_w + d_x
        gemm_total += per_update
        gemm_rows.append((f"layer {w_in}->{w_out}: forward {fwd:.1f} us (x{forwards + 1}), weight gradient "
                          f"{d_w:.1f} us" + (f", input gradient {d_x:.1f} us" if i > 0 else ""), per_update))

    print(f"{args.config}: batch {b}, MLP {'-'.join(map(str, widths))}, {'Double DQN' if a.double else 'DQN'} "
          f"target, {a.optimizer}, one torch thread; medians of {r} blocks of {n} calls\n")
    print("| part of one update | us | share of the update |")
    print("|---|---:|---:|")
    print(f"| **`Agent.update`, whole** | **{update:.0f}** | 100% |")
    for label, us in rows:
        print(f"| {label} | {us:.0f} | {us / update:.0%} |")
    rest = update - sum(us for _, us in rows)
    print(f"| the rest (TD target, gradient clipping, Q statistics) | {rest:.0f} | {rest / update:.0%} |")
    print(f"| *matrix products alone, the same calls (sum)* | *{gemm_total:.0f}* | *{gemm_total / update:.0%}* |")
    for label, us in gemm_rows:
        print(f"| *- {label}* | *{us:.0f}* | *{us / update:.0%}* |")


if __name__ == "__main__":
    main()
