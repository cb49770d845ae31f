"""Training throughput (not a test): env steps per second of one seed, on one torch thread.

    python benchmarks/training.py                         # configs/ddqn.yaml, 10,000 steps
    python benchmarks/training.py configs/per.yaml --steps 20000
    python benchmarks/training.py --full                  # the config's own budget: a whole seed

Measures `train_seed` as `dqnrun train` runs it, from the config's own settings, limited to
--steps env steps. It reports steps per second with the per-episode greedy evaluation (as
configured) and without it (eval_episodes 0), to separate the two costs.
"""

from __future__ import annotations

import argparse
import time

from dqnrun.config import apply_overrides, config_from_dict, load_config
from dqnrun.experiment import plan
from dqnrun.trainer import train_seed


def measure(config, seed: int) -> tuple[float, int, int]:
    spec = plan(config)
    start = time.perf_counter()
    result = train_seed(config, seed, spec)
    seconds = time.perf_counter() - start
    return seconds, result.steps[-1], len(result.scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default="configs/ddqn.yaml")
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--full", action="store_true", help="train the whole seed (the config's budget), not --steps")
    args = parser.parse_args()
    base = load_config(args.config).to_dict()
    budget = [] if args.full else [f"max_steps={args.steps}"]
    for label, extra in (("with evaluation", []), ("without evaluation", ["eval_episodes=0"])):
        config = config_from_dict(apply_overrides(base, [*budget, *extra]))
        seconds, steps, episodes = measure(config, args.seed)
        print(f"{args.config} seed {args.seed}, {label}: {steps:,} env steps in {episodes} episodes, "
              f"{seconds:.1f} s, {steps / seconds:,.0f} steps/s")


if __name__ == "__main__":
    main()
