"""Env steps per second of dqnrun's training loops next to SB3, a plain DQN loop and the lecture's code.

    pip install "dqnrun[bench]"                      # Stable-Baselines3, for the SB3 row
    python benchmarks/side_by_side.py                # 12,000 env steps per seed, 3 rounds
    python benchmarks/side_by_side.py --steps 300 --rounds 1 --warmup-steps 0    # does it run?
    python benchmarks/side_by_side.py --rows ddqn,sb3,plain --k 1 5

Every row learns CartPole-v1 for --steps env steps per seed with the lecture's hyperparameters
(configs/ddqn.yaml: MLP 4-512-128-2 with ReLU, RMSprop at lr 0.001 with torch's alpha 0.99 and
eps 1e-8, batch 64, replay 50,000, updates once the replay holds more than 320, one update per
env step, gamma 1.0, hard target copy every 15 env steps, epsilon 1.0 -> 0.3 over 20,000 env
steps), seed 12 (seeds 12, 13, ... for K vectorised seeds), on one torch thread, on the CPU.
The rows run interleaved: one untimed warm-up run of every row (--warmup-steps; it pays lazy
imports and first allocations), then --rounds rounds of every row, each round starting one row
later than the one before, so a drift in the machine's speed reaches every row alike. The
table gives the median over the rounds of env steps per second (training env steps; the
evaluation's steps are not counted) and the ratios to SB3 and to dqnrun's DDQN row. Run it on
an otherwise idle machine: the load average is printed at the start and the end.

The rows (--rows takes their keys):
  ddqn          dqnrun DDQN, one process, one seed: `train_seed` as `dqnrun train` runs it
                (act, env step, store, sample 64, Double DQN update, target sync, per-episode
                metrics), no evaluation (eval_episodes 0), no checkpoints.
  dqn           the same with `variant: dqn` (DQN target: one forward pass fewer per update).
  flush         the ddqn row with `speed.flush_denormal: true`.
  vec           `speed.vectorize: K` for each K of --k: `group.train_group` trains K seeds in
                one process (stacked networks, one batched forward to act, one batched update);
                each seed takes --steps env steps. Total and per-seed env steps per second.
  sb3           Stable-Baselines3's DQN with the same hyperparameters as far as SB3 allows.
                Where it differs (none removable through its options): the plain DQN target
                (compare with the dqn row), the Huber loss, a gradient-norm clip (here at 1e9:
                it changes nothing but its cost stays), a linear epsilon decay.
  plain         benchmarks/plain_dqn.py: a single-file DQN loop in the style of CleanRL's
                dqn.py (numpy replay, torch MLP, torch.optim.RMSprop, DQN target, MSE loss).
  lecture       the lecture's own code (its DDQN `optimize`, lr 0.001), read from the lecture's
                text at run time (--lecture; see benchmarks/lecture_code.py): its `experiment`
                for one seed, stopped after --steps training steps, with its `evaluate`
                replaced by a stub returning 0.0, so no evaluation. Its progress prints go to
                os.devnull. Its uniform sampling permutes the replay (np.random.choice,
                replace=False), so its cost per step grows with the replay.
  ddqn-eval     the ddqn row with the config's evaluation: 5 greedy episodes after every
                training episode, played as one batch.
  lecture-eval  the lecture row with its own evaluation: 5 greedy episodes after every
                training episode, one state at a time (as the lecture trains).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's dqnrun, not an installed one

import torch  # noqa: E402

from dqnrun.config import apply_overrides, config_from_dict, load_config  # noqa: E402
from dqnrun.errors import UserError  # noqa: E402
from dqnrun.experiment import plan  # noqa: E402
from dqnrun.trainer import train_seed  # noqa: E402

import lecture_code  # noqa: E402  (benchmarks/, the script's own directory)

ENV = "CartPole-v1"
ROW_KEYS = ("ddqn", "dqn", "flush", "vec", "sb3", "plain", "lecture", "ddqn-eval", "lecture-eval")


@dataclass
class Row:
    key: str
    name: str
    evaluation: str
    seeds: int
    run: Callable[[int], int] | None  # steps per seed -> env steps taken (all seeds)
    unavailable: str = ""  # why the row cannot run in this checkout
    rates: list[float] = field(default_factory=list)  # env steps per second, all seeds, per round
    failed: str = ""


def dqnrun_config(config_path: str, steps: int, overrides: list[str]):
    raw = apply_overrides(load_config(config_path).to_dict(),
                          [f"max_steps={steps}", "checkpoint_every=0", f"env={ENV}", *overrides])
    if any(o.startswith("variant=") for o in overrides):
        raw["agent"].pop("double", None)  # let the variant's preset decide
    return config_from_dict(raw)


def dqnrun_row(key: str, name: str, evaluation: str, config_path: str, seed: int, overrides: list[str]) -> Row:
    def run(steps: int) -> int:
        config = dqnrun_config(config_path, steps, overrides)
        return train_seed(config, seed, plan(config)).steps[-1]

    return Row(key, name, evaluation, 1, run)


def vectorised_row(config_path: str, seed: int, k: int) -> Row:
    name = f"dqnrun DDQN, vectorised, K={k}"
    try:
        from dqnrun.group import train_group
        dqnrun_config(config_path, 10, ["speed.vectorize=1"])
    except (ImportError, UserError) as error:
        return Row("vec", name, "none", k, None, f"vectorised seeds: not available in this version ({error})")
    seeds = [seed + i for i in range(k)]

    def run(steps: int) -> int:
        config = dqnrun_config(config_path, steps, [f"speed.vectorize={k}", f"seeds={seeds}", "eval_episodes=0"])
        results = train_group(config, seeds, plan(config))
        return sum(result.steps[-1] for result in results.values())

    return Row("vec", name, "none", k, run)


def sb3_row(seed: int, decay_steps: int) -> Row:
    name = "Stable-Baselines3 DQN"
    try:
        from stable_baselines3 import DQN
    except ImportError:
        return Row("sb3", name, "none", 1, None, 'SB3: not installed (pip install "dqnrun[bench]")')

    def run(steps: int) -> int:
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

    return Row("sb3", name, "none", 1, run)


def plain_row(seed: int) -> Row:
    import plain_dqn

    return Row("plain", "plain DQN loop (CleanRL style)", "none", 1,
               lambda steps: plain_dqn.train(plain_dqn.Args(seed=seed, total_timesteps=steps)))


def lecture_rows(path: str, seed: int) -> list[Row]:
    names = {"lecture": ("lecture's code, DDQN", "none (evaluate stubbed)", False),
             "lecture-eval": ("lecture's code, DDQN", "5 episodes after every episode, one state at a time", True)}
    try:
        lecture = lecture_code.load(path, "ddqn")
    except lecture_code.LectureError as error:
        return [Row(key, name, ev, 1, None, f"lecture's code: {error}") for key, (name, ev, _) in names.items()]

    def runner(evaluation: bool) -> Callable[[int], int]:
        return lambda steps: lecture.run_seed(seed, steps=steps, evaluation=evaluation)["steps"]

    return [Row(key, name, ev, 1, runner(evaluation)) for key, (name, ev, evaluation) in names.items()]


def build_rows(args: argparse.Namespace) -> list[Row]:
    wanted = set(args.rows)
    decay_steps = load_config(args.config).epsilon.decay_steps
    rows: list[Row] = []
    if "ddqn" in wanted:
        rows.append(dqnrun_row("ddqn", "dqnrun DDQN (1 process, 1 seed)", "none", args.config, args.seed,
                               ["eval_episodes=0"]))
    if "dqn" in wanted:
        rows.append(dqnrun_row("dqn", "dqnrun DQN (1 process, 1 seed)", "none", args.config, args.seed,
                               ["variant=dqn", "eval_episodes=0"]))
    if "flush" in wanted:
        rows.append(dqnrun_row("flush", "dqnrun DDQN, flush_denormal", "none", args.config, args.seed,
                               ["eval_episodes=0", "speed.flush_denormal=true"]))
    if "vec" in wanted:
        rows += [vectorised_row(args.config, args.seed, k) for k in args.k]
    if "sb3" in wanted:
        rows.append(sb3_row(args.seed, decay_steps))
    if "plain" in wanted:
        rows.append(plain_row(args.seed))
    lecture = lecture_rows(args.lecture, args.seed) if wanted & {"lecture", "lecture-eval"} else []
    if "lecture" in wanted:
        rows.append(lecture[0])
    if "ddqn-eval" in wanted:
        evaluation = load_config(args.config).eval_episodes
        rows.append(dqnrun_row("ddqn-eval", "dqnrun DDQN (1 process, 1 seed)",
                               f"{evaluation} episodes after every episode, as one batch", args.config, args.seed, []))
    if "lecture-eval" in wanted:
        rows.append(lecture[1])
    return rows


def timed(row: Row, steps: int) -> float:
    """One run of the row: env steps per second, all seeds together."""
    gc.collect()
    start = time.perf_counter()
    taken = row.run(steps)
    return taken / (time.perf_counter() - start)


def attempt(row: Row, steps: int) -> float | None:
    """Run the row; a failure marks it failed with one line instead of stopping the benchmark."""
    try:
        with contextlib.redirect_stdout(sys.stderr):  # nothing a loop prints mixes with the table
            return timed(row, steps)
    except KeyboardInterrupt:
        raise
    except Exception as error:  # noqa: BLE001  (any failure of one row is reported, the others go on)
        row.failed = f"{type(error).__name__}: {error}".splitlines()[0][:200]
        return None


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} logical CPUs"


def versions() -> str:
    import gymnasium
    import numpy

    parts = [f"Python {platform.python_version()}", f"torch {torch.__version__}", f"numpy {numpy.__version__}",
             f"gymnasium {gymnasium.__version__}"]
    with contextlib.suppress(ImportError):
        import stable_baselines3

        parts.append(f"stable-baselines3 {stable_baselines3.__version__}")
    return ", ".join(parts)


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def shown(path: str) -> str:
    """A path under the checkout as the user types it."""
    with contextlib.suppress(ValueError):
        return str(Path(path).resolve().relative_to(REPO))
    return path


def table(rows: list[Row], args: argparse.Namespace, done_rounds: int, load_start: str) -> str:
    def median(row: Row) -> float | None:
        return statistics.median(row.rates) if row.rates else None

    medians = {id(row): median(row) for row in rows}
    sb3 = next((medians[id(r)] for r in rows if r.key == "sb3" and medians[id(r)]), None)
    ddqn = next((medians[id(r)] for r in rows if r.key == "ddqn" and medians[id(r)]), None)
    lines = [
        f"CartPole-v1, lecture hyperparameters ({shown(args.config)}), {args.steps:,} env steps per seed, one torch "
        f"thread, CPU; median of {done_rounds} round(s), interleaved, after an untimed warm-up of "
        f"{args.warmup_steps:,} steps per row.",
        f"Machine: {machine()}; load average (1, 5, 15 min) {load_start} at the start, {load()} at the end; "
        f"{versions()}.",
        "",
        "| loop | evaluation | seeds | env steps/s, total | env steps/s, per seed | ÷ SB3 | ÷ dqnrun DDQN |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for row in rows:
        value = medians[id(row)]
        if value is None:
            why = row.unavailable or (f"failed ({row.failed})" if row.failed else "not run (interrupted)")
            notes.append(f"- {row.name} ({row.evaluation}): {why}")
            continue
        ratio_sb3 = f"{value / sb3:.2f}x" if sb3 else "n/a"
        ratio_ddqn = f"{value / ddqn:.2f}x" if ddqn else "n/a"
        lines.append(f"| {row.name} | {row.evaluation} | {row.seeds} | {value:,.0f} | {value / row.seeds:,.0f} | "
                     f"{ratio_sb3} | {ratio_ddqn} |")
        if row.failed:
            notes.append(f"- {row.name}: failed in a later round ({row.failed}); the median is of "
                         f"{len(row.rates)} round(s)")
    if notes:
        lines += ["", "Notes:", *notes]
    lines += ["", "Ratios compare total env steps per second. Rows are described in "
              "`python benchmarks/side_by_side.py --help`."]
    return "\n".join(lines)


def save_json(path: str, rows: list[Row], args: argparse.Namespace) -> None:
    data = {"settings": {k: v for k, v in vars(args).items()},
            "rows": [{"key": r.key, "name": r.name, "evaluation": r.evaluation, "seeds": r.seeds,
                      "steps_per_s_total": r.rates, "unavailable": r.unavailable, "failed": r.failed} for r in rows]}
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/ddqn.yaml", help="dqnrun's config (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=12_000, help="env steps per seed per run (default 12,000)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--warmup-steps", type=int, default=2_000, help="env steps of the untimed warm-up run of every row (0: none)")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 5, 10], help="vectorised seeds per process (default 1 5 10)")
    parser.add_argument("--rows", default=",".join(ROW_KEYS), help=f"comma-separated row keys (default: all: {','.join(ROW_KEYS)})")
    parser.add_argument("--lecture", default=str(lecture_code.DEFAULT_LECTURE), help="the lecture's text (default: %(default)s)")
    parser.add_argument("--json", help="also write every round's figures to this JSON file (after each round)")
    args = parser.parse_args()
    args.rows = [key.strip() for key in args.rows.split(",") if key.strip()]
    unknown = sorted(set(args.rows) - set(ROW_KEYS))
    if unknown or args.steps < 1 or args.rounds < 1 or args.warmup_steps < 0 or min(args.k) < 1:
        problem = f"unknown row key(s) {', '.join(unknown)}; choose from {', '.join(ROW_KEYS)}" if unknown else \
            "--steps, --rounds and --k must be >= 1, --warmup-steps >= 0"
        print(f"side_by_side.py: {problem}", file=sys.stderr)
        return 2
    if not Path(args.config).exists() and (REPO / args.config).exists():  # run from outside the checkout
        args.config = str(REPO / args.config)
    torch.set_num_threads(1)
    load_start = load()
    try:
        rows = build_rows(args)
    except UserError as error:
        print(f"side_by_side.py: {error}", file=sys.stderr)
        return 2
    runnable = [row for row in rows if row.run is not None]
    done_rounds = 0
    try:
        if args.warmup_steps:
            for row in runnable:
                print(f"warm-up: {row.name} ({row.evaluation})", file=sys.stderr, flush=True)
                attempt(row, args.warmup_steps)
        for round_ in range(args.rounds):
            order = runnable[round_ % len(runnable):] + runnable[:round_ % len(runnable)] if runnable else []
            for row in order:
                if row.failed:
                    continue
                rate = attempt(row, args.steps)
                if rate is None:
                    print(f"round {round_ + 1}: {row.name}: failed ({row.failed})", file=sys.stderr, flush=True)
                    continue
                row.rates.append(rate)
                print(f"round {round_ + 1}: {row.name} ({row.evaluation}, {row.seeds} seed(s)): "
                      f"{rate:,.0f} env steps/s", file=sys.stderr, flush=True)
            done_rounds += 1
            if args.json:
                save_json(args.json, rows, args)
    except KeyboardInterrupt:
        print(f"\ninterrupted after {done_rounds} complete round(s); the table holds the runs done so far",
              file=sys.stderr)
        print(table(rows, args, done_rounds, load_start))
        return 130
    print(table(rows, args, done_rounds, load_start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
