"""Checkpoint cost (not a test): size and time of one seed's checkpoint with a full replay.

    python benchmarks/checkpoint.py                 # configs/per.yaml: 50,000 transitions
    python benchmarks/checkpoint.py configs/ddqn.yaml

Builds the agent and replay of the config, fills the replay to capacity, then times what the
trainer does at a checkpoint: snapshot the state (deep copy), encode it to the bytes a chunk
sends back, and write them atomically.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dqnrun.agent import Agent
from dqnrun.chunks import encode_checkpoint
from dqnrun.config import load_config
from dqnrun.experiment import load_checkpoint, plan
from dqnrun.replay import make_replay
from dqnrun.results import write_with


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default="configs/per.yaml")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.config)
    spec = plan(config)
    agent = Agent(spec, config.agent, "cpu", torch_seed=0)
    rng = np.random.default_rng(0)
    replay = make_replay(config.agent.memory_size, spec.obs_dim, rng, "cpu", config.agent.prioritized)
    for _ in range(config.agent.memory_size):
        obs = rng.normal(size=spec.obs_dim).astype(np.float32)
        replay.add(obs, int(rng.integers(spec.n_actions)), 1.0, obs, False)
    replay.update_priorities(np.arange(1000), rng.random(1000))
    path = Path(tempfile.mkdtemp()) / "checkpoints" / "seed-0.pt"
    times, loads = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        state = copy.deepcopy({"format": "dqnrun-checkpoint", "agent": agent.state_dict(),
                               "replay": replay.state_dict(), "rng": {"explore": rng.bit_generator.state}})
        data = encode_checkpoint(state)
        write_with(path, lambda tmp: tmp.write_bytes(data))
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
        load_checkpoint(path)
        loads.append(time.perf_counter() - start)
    print(f"{args.config}: replay {len(replay):,} transitions ({'prioritized' if config.agent.prioritized else 'uniform'})")
    print(f"  checkpoint size {path.stat().st_size / 2**20:.1f} MiB")
    print(f"  snapshot + atomic write: {statistics.median(times) * 1e3:.0f} ms (median of {args.repeats})")
    print(f"  load: {statistics.median(loads) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
