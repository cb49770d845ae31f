"""Wall time of the lecture's whole DDQN experiment: `dqnrun train` against the lecture's own code.

    python benchmarks/whole_experiment.py                         # 5 seeds x 250 episodes, both
    python benchmarks/whole_experiment.py --episodes 3 --seeds 12 # a quick check that it runs
    python benchmarks/whole_experiment.py --only lecture --json lecture.json

First `dqnrun train configs/ddqn.yaml --jobs 2 --device cpu` runs as a user types it (this
checkout's code, in a fresh Python process; the wall time includes start-up, workers, per-episode
evaluation, checkpoints and result files), into a temporary directory (--keep keeps it). Then the
lecture's own `experiment` (its DDQN listings, learning_rate = 0.001 as the lecture runs it; read
from the lecture's text at run time, see benchmarks/lecture_code.py) trains the same seeds one
after another in this process, as the lecture does: evaluation of 5 greedy episodes after every
episode, torch's default number of threads (--lecture-threads to change it), progress prints to
os.devnull, its model and result files to a temporary directory. Both use the config's settings
(seeds 12 34 56 78 90, 250 episodes, replay 50,000, batch 64, ...); --episodes and --seeds
scale both down.

After every step (dqnrun's run, each lecture seed) the timings so far go to the JSON file
(--json, written atomically), so an interrupted run still tells something; the printed table
gives the lecture's 5-seed time projected from its finished seeds when it did not finish.
Run it on an otherwise idle machine (the load average is recorded).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import lecture_code  # noqa: E402  (benchmarks/, the script's own directory)


def load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    import torch

    return f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, torch {torch.__version__}"


def save(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def run_dqnrun(args: argparse.Namespace, out: Path, log: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "dqnrun.cli", "train", args.config, "--seeds", args.seeds,
               "--episodes", str(args.episodes), "--jobs", str(args.jobs), "--device", args.device,
               "--out", str(out), "--name", "whole-experiment", *sum((["--set", s] for s in args.set), [])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    print("dqnrun: " + " ".join(command[1:]), file=sys.stderr, flush=True)
    start = time.perf_counter()
    with open(log, "w") as f:
        code = subprocess.run(command, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - start
    shown = ["dqnrun", "train", os.path.relpath(args.config, REPO), *command[5:command.index("--out")],
             *command[command.index("--name") + 2:]]  # as a user types it (the output directory is temporary)
    result: dict[str, Any] = {"command": " ".join(shown), "wall_s": round(seconds, 2),
                              "exit_code": code}
    if code != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        result["error"] = tail[0][:300]
        return result
    with contextlib.suppress(Exception):  # the run's own figures: nice to have, not needed for the timing
        import numpy as np

        from dqnrun import load_run

        run = load_run(out / "whole-experiment")
        result["seed_wall_s"] = [round(float(x), 2) for x in run.wall_time]
        result["env_steps"] = [int(np.nanmax(row)) for row in run.steps]
    return result


def run_lecture(args: argparse.Namespace, data: dict[str, Any], json_path: Path, workdir: str) -> None:
    import torch

    if args.lecture_threads:
        torch.set_num_threads(args.lecture_threads)
    lecture = lecture_code.load(args.lecture, "ddqn")
    part = data["lecture"] = {"what": "the lecture's experiment(), DDQN listings, learning_rate 0.001, "
                                      "seeds one after another, evaluation after every episode",
                              "torch_threads": torch.get_num_threads(), "seeds": {}}
    for seed in args.seed_list:
        print(f"lecture: seed {seed} ...", file=sys.stderr, flush=True)
        timing = lecture.run_seed(seed, episodes=args.episodes, workdir=workdir)
        entry = {"wall_s": round(timing["seconds"], 2), "env_steps": timing["steps"]}
        if args.episodes >= 25 and "final_smoothed_score" in timing:  # the lecture's window
            entry["final_smoothed_score"] = round(timing["final_smoothed_score"], 1)
        part["seeds"][str(seed)] = entry
        part["wall_s"] = round(sum(s["wall_s"] for s in part["seeds"].values()), 2)
        print(f"lecture: seed {seed}: {entry['wall_s']:.1f} s, {entry['env_steps']:,} env steps", file=sys.stderr,
              flush=True)
        save(json_path, data)
    part["complete"] = True


def report(data: dict[str, Any], n_seeds: int) -> str:
    s = data["settings"]
    lines = [f"Whole experiment: {s['config']}, seeds {s['seeds']}, {s['episodes']} episodes, evaluation after every "
             f"episode. Machine: {data['machine']}; load average {data['load_start']} at the start, "
             f"{data.get('load_end')} at the end.", "",
             "| what | wall time | per seed |", "|---|---:|---:|"]
    dq = data.get("dqnrun")
    if dq and dq.get("exit_code") == 0:
        lines.append(f"| `{dq['command']}` | {dq['wall_s']:,.1f} s | |")
    lec = data.get("lecture")
    done = len(lec["seeds"]) if lec else 0
    lecture_total = None
    if lec and done:
        mean = lec["wall_s"] / done
        per_seed = ", ".join(f"{k}: {v['wall_s']:,.1f} s" for k, v in lec["seeds"].items())
        if done == n_seeds:
            lecture_total = lec["wall_s"]
            lines.append(f"| the lecture's `experiment`, seeds one after another ({lec['torch_threads']} torch "
                         f"thread(s)) | {lec['wall_s']:,.1f} s | {per_seed} |")
        else:
            lecture_total = mean * n_seeds
            lines.append(f"| the lecture's `experiment`: {done} of {n_seeds} seeds | {lec['wall_s']:,.1f} s | {per_seed} |")
            lines.append(f"| the lecture's `experiment`, {n_seeds} seeds projected (mean per finished seed x {n_seeds}) "
                         f"| {lecture_total:,.0f} s (projected) | |")
    if dq and dq.get("exit_code") == 0 and lecture_total:
        label = "" if lec and done == n_seeds else " (projected)"
        lines.append(f"| **dqnrun faster by** | **{lecture_total / dq['wall_s']:.1f}x**{label} | |")
    notes = []
    if dq and dq.get("exit_code") != 0:
        notes.append(f"- dqnrun failed (exit code {dq['exit_code']}): {dq.get('error', '')}")
    if data.get("lecture_error"):
        notes.append(f"- the lecture's code: {data['lecture_error']}")
    if data.get("interrupted"):
        notes.append("- interrupted: the figures above are what finished before")
    return "\n".join(lines + ([""] + notes if notes else []))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/ddqn.yaml", help="dqnrun's config (default: %(default)s)")
    parser.add_argument("--episodes", type=int, help="episodes per seed (default: the config's, 250)")
    parser.add_argument("--seeds", help="comma-separated seeds (default: the config's, 12,34,56,78,90)")
    parser.add_argument("--jobs", type=int, default=2, help="dqnrun's --jobs (default 2)")
    parser.add_argument("--device", default="cpu", help="dqnrun's --device (default cpu)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="passed to dqnrun train as --set (repeatable), e.g. speed.flush_denormal=true")
    parser.add_argument("--only", choices=["dqnrun", "lecture"], help="run only one of the two")
    parser.add_argument("--lecture", default=str(lecture_code.DEFAULT_LECTURE), help="the lecture's text (default: %(default)s)")
    parser.add_argument("--lecture-threads", type=int, default=0, help="torch threads for the lecture's code (0: torch's default)")
    parser.add_argument("--json", default="whole-experiment.json", help="timings so far, rewritten after each step (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep dqnrun's run directory and log (printed at the end)")
    args = parser.parse_args()

    config_path = Path(args.config) if Path(args.config).exists() else REPO / args.config
    try:
        from dqnrun.config import load_config, parse_seeds

        config = load_config(config_path)
        args.seed_list = parse_seeds(args.seeds) if args.seeds else list(config.seeds)
    except Exception as error:  # noqa: BLE001  (a bad config or seed list: one line)
        print(f"whole_experiment.py: {error}", file=sys.stderr)
        return 2
    args.config = str(config_path.resolve())
    args.seeds = ",".join(map(str, args.seed_list))
    args.episodes = args.episodes if args.episodes is not None else config.episodes
    if args.episodes < 1 or args.jobs < 1:
        print("whole_experiment.py: --episodes and --jobs must be >= 1", file=sys.stderr)
        return 2
    json_path = Path(args.json)
    data: dict[str, Any] = {
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_start": load(),
        "settings": {"config": os.path.relpath(args.config, REPO) if args.config.startswith(str(REPO)) else args.config,
                     "seeds": args.seeds, "episodes": args.episodes, "jobs": args.jobs, "device": args.device,
                     "set": args.set, "lecture": args.lecture, "lecture_threads": args.lecture_threads or "torch default"},
    }
    workdir = tempfile.mkdtemp(prefix="dqnrun-whole-experiment-")
    code = 0
    try:
        save(json_path, data)
        if args.only in (None, "dqnrun"):
            data["dqnrun"] = run_dqnrun(args, Path(workdir) / "runs", Path(workdir) / "dqnrun.log")
            save(json_path, data)
            dq = data["dqnrun"]
            print(f"dqnrun: {dq['wall_s']:.1f} s, exit code {dq['exit_code']}" +
                  (f": {dq['error']}" if "error" in dq else ""), file=sys.stderr, flush=True)
        if args.only in (None, "lecture"):
            try:
                run_lecture(args, data, json_path, workdir)
            except lecture_code.LectureError as error:
                data["lecture_error"] = str(error)
    except KeyboardInterrupt:
        data["interrupted"] = True
        code = 130
    finally:
        data["load_end"] = load()
        save(json_path, data)
        if args.keep:
            print(f"kept: {workdir} (dqnrun's run directory under runs/, its output in dqnrun.log)", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report(data, len(args.seed_list)))
    print(f"\ntimings: {json_path}", file=sys.stderr)
    if code == 0 and (data.get("lecture_error") or data.get("dqnrun", {}).get("exit_code", 0) != 0):
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
