"""dqnrun's training loop next to Stable-Baselines3's DQN (not a test): env steps per second.

    pip install "dqnrun[bench]"                    # Stable-Baselines3, for this script only
    python benchmarks/sb3_side_by_side.py          # 12,000 env steps each, 3 rounds
    python benchmarks/sb3_side_by_side.py --steps 500 --rounds 1    # a quick check that it runs

Both learn CartPole-v1 for --steps env steps with the lecture's hyperparameters, as far as SB3
allows, on one torch thread, without evaluation. The runs are interleaved (dqnrun DDQN, dqnrun
DQN, SB3 DQN, then again, after one untimed warm-up round) so a drift in the machine's speed reaches every one alike; the medians
over the rounds and the ratios to SB3 are printed. Run it on an otherwise idle machine.

Shared settings (configs/ddqn.yaml): MLP 4-512-128-2 with ReLU, RMSprop (lr 0.001, torch's
alpha 0.99 and eps 1e-8), batch 64, replay 50,000, updates once the replay holds more than 320,
one update per env step, gamma 1.0, hard target copy every 15 env steps, epsilon from 1.0 to 0.3
over 20,000 env steps, seed 12.

Where SB3 differs (each noted, none removable through SB3's options):
- its DQN has the plain DQN target (max of the target network), not Double DQN: one forward
  pass fewer per update. dqnrun's DQN (`variant: dqn`) is the like-for-like row.
- its loss is the Huber loss (smooth L1), not the squared error;
- it clips the gradient's norm (here at 1e9, so the clipping changes nothing but its cost stays);
- its epsilon decays linearly, the lecture's in log space (the same cost per step).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from dqnrun.config import apply_overrides, config_from_dict, load_config
from dqnrun.experiment import plan
from dqnrun.trainer import train_seed

ENV = "CartPole-v1"


def dqnrun_runner(config_path: str, variant: str, steps: int, seed: int) -> Callable[[], int]:
    raw = apply_overrides(load_config(config_path).to_dict(),
                          [f"variant={variant}", f"max_steps={steps}", "eval_episodes=0", "checkpoint_every=0",
                           f"env={ENV}"])
    raw["agent"].pop("double", None)  # let the variant's preset decide
    config = config_from_dict(raw)

    def run() -> int:
        result = train_seed(config, seed, plan(config))
        return result.steps[-1]

    return run


def sb3_runner(steps: int, seed: int, decay_steps: int) -> Callable[[], int]:
    from stable_baselines3 import DQN

    def run() -> int:
        model = DQN(
            "MlpPolicy", ENV, learning_rate=0.001, buffer_size=50_000, learning_starts=320, batch_size=64,
            tau=1.0, gamma=1.0, train_freq=1, gradient_steps=1, target_update_interval=15,
            exploration_initial_eps=1.0, exploration_final_eps=0.3,
            exploration_fraction=min(1.0, decay_steps / steps), max_grad_norm=1e9,
            policy_kwargs={"net_arch": [512, 128], "activation_fn": torch.nn.ReLU,
                           "optimizer_class": torch.optim.RMSprop},
            seed=seed, device="cpu", verbose=0,
        )
        model.learn(total_timesteps=steps, progress_bar=False)
        return model.num_timesteps

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/ddqn.yaml")
    parser.add_argument("--steps", type=int, default=12_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(1)
    decay_steps = load_config(args.config).epsilon.decay_steps
    runners = {
        "dqnrun DDQN": dqnrun_runner(args.config, "ddqn", args.steps, args.seed),
        "dqnrun DQN": dqnrun_runner(args.config, "dqn", args.steps, args.seed),
        "SB3 DQN": sb3_runner(args.steps, args.seed, decay_steps),
    }
    for run in runners.values():  # warm-up: the first run pays lazy imports and allocations
        run()
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for round_ in range(1, args.rounds + 1):
        for name, run in runners.items():
            start = time.perf_counter()
            steps = run()
            seconds = time.perf_counter() - start
            rates[name].append(steps / seconds)
            print(f"round {round_}: {name:12s} {steps:,} env steps in {seconds:.1f} s, {steps / seconds:,.0f} steps/s",
                  flush=True)
    sb3 = statistics.median(rates["SB3 DQN"])
    print(f"\nmedian over {args.rounds} round(s), {args.steps:,} env steps each, {ENV}, one torch thread:")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"  {name:12s} {median:7,.0f} env steps/s   {median / sb3:.2f}x SB3")


if __name__ == "__main__":
    main()
