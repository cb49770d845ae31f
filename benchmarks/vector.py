"""K seeds' updates and acting, stacked (dqnrun.vector) against K separate agents (not a test).

    python benchmarks/vector.py                    # K = 1, 5, 10; the lecture's DDQN network
    python benchmarks/vector.py --k 1 5 20 100 --device cuda

Prints the time of one DDQN update (batch 64, MLP 4-512-128-2, RMSprop) and of one epsilon-free
acting step, per seed, for K separate `Agent`s and for one `StackedAgent` of K seeds, on one
torch thread (CPU). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from dqnrun.agent import Agent
from dqnrun.config import AgentConfig
from dqnrun.networks import NetworkSpec
from dqnrun.replay import Batch
from dqnrun.vector import StackedAgent, stack_batches


def batch(rng: np.random.Generator, device: str, size: int = 64) -> Batch:
    def t(a, dtype=torch.float32):
        return torch.as_tensor(a, dtype=dtype, device=device)

    return Batch(t(rng.normal(size=(size, 4))), t(rng.integers(0, 2, size), torch.int64), t(np.ones(size)),
                 t(rng.normal(size=(size, 4))), t(rng.random(size) < 0.05), None, np.arange(size))


def per_call(fn, repeat: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = NetworkSpec(4, 2, (512, 128), False)
    config = AgentConfig()
    rng = np.random.default_rng(0)
    print(f"DDQN update, batch 64, MLP 4-512-128-2, RMSprop, {args.device}; microseconds per seed")
    for k in args.k:
        seeds = list(range(k))
        agents = [Agent(spec, config, args.device, s) for s in seeds]
        stacked = StackedAgent(spec, config, args.device, seeds)
        batches = [batch(rng, args.device) for _ in seeds]
        together = stack_batches(batches)
        obs = rng.normal(size=(k, 4)).astype(np.float32)
        rngs = [np.random.default_rng(s) for s in seeds]
        separate_update = per_call(lambda: [a.update(b) for a, b in zip(agents, batches)], args.repeat) / k
        stacked_update = per_call(lambda: stacked.update(together), args.repeat) / k
        separate_act = per_call(lambda: [a.act(o, 0.0, r) for a, o, r in zip(agents, obs, rngs)], args.repeat) / k
        stacked_act = per_call(lambda: stacked.act(obs, [0.0] * k, rngs), args.repeat) / k
        print(f"K={k:3d}  update: separate {separate_update * 1e6:7.0f}  stacked {stacked_update * 1e6:7.0f} "
              f"({separate_update / stacked_update:.2f}x)   act: separate {separate_act * 1e6:6.0f}  "
              f"stacked {stacked_act * 1e6:6.0f} ({separate_act / stacked_act:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
