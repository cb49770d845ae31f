"""Vectorised training throughput (not a test): K seeds in one process against K seeds one by one.

    python benchmarks/vector_training.py                          # configs/ddqn.yaml, K = 1 5 10
    python benchmarks/vector_training.py --k 1 5 20 100 --steps 5000 --device cuda

For each K, the config's first K seeds (or seeds 1..K when it lists fewer) are trained for
--steps env steps each (`max_steps`), without evaluation, twice: by `group.train_group` (one
stack of K seeds, what `speed.vectorize: K` runs) and by `train_seed` one seed after the other
(what one worker does with `speed.vectorize: 1`), on one torch thread. It prints the wall time
and env steps per second per seed and in total, and the ratio. Run it on an otherwise idle
machine; --skip-separate leaves out the one-by-one runs (for large K on a GPU).
"""

from __future__ import annotations

import argparse
import time

from dqnrun.config import apply_overrides, config_from_dict, load_config
from dqnrun.experiment import plan
from dqnrun.group import train_group
from dqnrun.trainer import train_seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default="configs/ddqn.yaml")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--steps", type=int, default=5_000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-separate", action="store_true")
    args = parser.parse_args()
    base = load_config(args.config).to_dict()
    print(f"{args.config}, {args.steps:,} env steps per seed, no evaluation, {args.device}")
    for k in args.k:
        listed = list(base["seeds"])
        seeds = listed[:k] if len(listed) >= k else list(range(1, k + 1))
        config = config_from_dict(apply_overrides(base, [
            f"max_steps={args.steps}", "eval_episodes=0", f"seeds={seeds}", f"speed.vectorize={k}",
            "checkpoint_every=0"]))
        spec = plan(config, 1)
        start = time.perf_counter()
        results = train_group(config, tuple(seeds), spec, args.device)
        stacked = time.perf_counter() - start
        steps = sum(r.steps[-1] for r in results.values())
        line = (f"K={k:3d}  stacked: {stacked:7.1f} s, {steps / stacked / k:6.0f} steps/s per seed, "
                f"{steps / stacked:7.0f} in total")
        if not args.skip_separate:
            start = time.perf_counter()
            steps_alone = sum(train_seed(config, s, spec, args.device).steps[-1] for s in seeds)
            alone = time.perf_counter() - start
            line += (f"   one by one: {alone:7.1f} s, {steps_alone / alone:6.0f} steps/s"
                     f"   ({alone / stacked:.2f}x)")
        print(line, flush=True)


if __name__ == "__main__":
    main()
