import multiprocessing
import os
import signal

import numpy as np
import pytest
import torch
from tests_helpers import TINY_RAW

from dqnrun import workers
from dqnrun.config import config_from_dict
from dqnrun.errors import UserError
from dqnrun.experiment import plan
from dqnrun.trainer import EpisodeEnd, SeedEnd, train_seed

KEYS = ("scores", "train_returns", "steps", "epsilons", "losses", "best_score", "best_episode", "status")


def tiny(**changes):
    config = config_from_dict({**TINY_RAW, "name": "t", **changes})
    return config, plan(config, 1)


def run(chains, **kwargs):
    """run_chains, keeping every delivered event and each chain's finished result."""
    events, finished = [], {}

    def on_chunk(chain, chunk):
        if chunk.result is not None:
            finished[chain.seed] = chunk.result

    stopped = not workers.run_chains(chains, lambda c, e: events.append(e), on_chunk, **kwargs)
    return events, finished, stopped


def assert_same(result, straight):
    for key in KEYS:
        np.testing.assert_array_equal(getattr(result, key), getattr(straight, key))
    assert all(torch.equal(result.best_state[k], straight.best_state[k]) for k in straight.best_state)


def assert_each_event_once_in_order(events, seeds, episodes):
    for seed in seeds:
        mine = [e for e in events if e.seed == seed]
        assert [e.episode for e in mine if isinstance(e, EpisodeEnd)] == list(range(1, episodes + 1))
        assert [e.status for e in mine if isinstance(e, SeedEnd)] == ["complete"]


@pytest.fixture
def spawn_now(monkeypatch):
    monkeypatch.setattr(workers, "SPAWN_AFTER", 0.0)
    monkeypatch.setattr(workers, "SPAWN_WORTH", 0.0)


def test_worker_processes_give_the_numbers_of_a_straight_run_even_when_one_is_killed(spawn_now):
    config, spec = tiny(variant="per", episodes=8, checkpoint_every=4)
    chains = [workers.Chain(s, config, spec, s, "cpu") for s in (3, 4)]
    killed = []

    def kill_once(chain, event):
        if not killed and isinstance(event, EpisodeEnd) and event.episode == 6:
            for child in multiprocessing.active_children():
                if child.name == "dqnrun-worker":
                    os.kill(child.pid, signal.SIGKILL)
                    killed.append(child.pid)

    events, finished = [], {}

    def on_event(chain, event):
        events.append(event)
        kill_once(chain, event)

    def on_chunk(chain, chunk):
        if chunk.result is not None:
            finished[chain.seed] = chunk.result

    assert workers.run_chains(chains, on_event, on_chunk, jobs=2, in_process=False)
    assert killed and sum(c.losses for c in chains) >= 1
    for seed in (3, 4):
        assert_same(finished[seed], train_seed(config, seed, spec))
    assert_each_event_once_in_order(events, (3, 4), 8)


def test_an_error_in_a_worker_reaches_the_client_as_itself():
    config, spec = tiny(episodes=2, window=1)
    chain = workers.Chain(3, config, spec, 3, "cpu", checkpoint=b"garbage")
    with pytest.raises(UserError, match="not a dqnrun checkpoint file"):
        run([chain], jobs=1)


@pytest.mark.parametrize("address, message", [
    ("local:0", "expected local:N with N >= 1"),
    ("local:x", "expected local:N with N >= 1"),
])
def test_bad_local_scheduler(address, message):
    with pytest.raises(UserError, match=message):
        workers.parse_local(address)


def test_worker_processes_start_only_for_work_worth_their_start_up():
    config, spec = tiny(episodes=100)
    ready = __import__("collections").deque([workers.Chain(s, config, spec, s, "cpu") for s in (3, 4)])
    ready[0].delivered = 40
    assert workers.waiting_seconds(ready, {}) is None  # no pace known yet
    assert workers.waiting_seconds(ready, {1: 0.02, 2: 0.04}) == pytest.approx((60 + 100) * 0.03)
    pool = workers.LocalPool(jobs=3)
    pool.slots, pool.started = [], __import__("time").monotonic()
    pool.grow(2, 1.0)  # 1 s of waiting work: not worth a process
    pool.grow(2, None)  # no estimate, and not waited long
    assert pool.slots == []


def test_a_crash_in_a_users_env_is_one_line_with_the_traceback_in_the_run_and_resume_continues(tmp_path, monkeypatch):
    import joblib
    import yaml
    from custom_envs import Crashing
    from typer.testing import CliRunner

    from dqnrun.cli import app

    raw = {**TINY_RAW, "env": "custom_envs:dqnrun-test/Crashing-v0", "env_kwargs": {"length": 5},
           "eval_episodes": 0, "checkpoint_every": 2, "name": "run"}
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(raw))
    runner = CliRunner()

    def train(*args):
        return runner.invoke(app, ["train", *args, "--jobs", "1"], env={"COLUMNS": "400"})

    straight = train(str(config), "--out", str(tmp_path / "straight"))
    assert straight.exit_code == 0, straight.output
    monkeypatch.setattr(Crashing, "steps", 0)
    monkeypatch.setattr(Crashing, "crash_after", 22)  # seed 3 fails in episode 5, after its checkpoint at 4
    failed = train(str(config), "--out", str(tmp_path / "results"))
    run = tmp_path / "results" / "run"
    assert failed.exit_code == 1
    assert " ".join(failed.output.split()).endswith(  # one line, however the terminal wraps it
        f"seed 3 failed: RuntimeError: the simulator exploded; the traceback is in {run / 'errors.log'}; "
        f"seed 4 had saved no checkpoint yet (checkpoint_every: 2 episodes) and restarts from the beginning on "
        f"resume; the other seeds continue from their last checkpoint; continue with `dqnrun train --resume {run}`")
    assert "Traceback" not in failed.output
    log = (run / "errors.log").read_text()
    assert log.startswith("--- ") and ": seed 3 failed: RuntimeError: the simulator exploded\nTraceback" in log
    assert ", in step\n" in log and log.endswith("\nRuntimeError: the simulator exploded\n")
    assert (run / "checkpoints" / "seed-3.pt").exists()

    monkeypatch.setattr(Crashing, "crash_after", None)
    resumed = train("--resume", str(run))
    assert resumed.exit_code == 0, resumed.output
    a, b = joblib.load(run / "results.joblib"), joblib.load(tmp_path / "straight" / "run" / "results.joblib")
    for key in ("scores", "train_returns", "steps", "losses", "epsilons", "best_score", "best_episode"):
        np.testing.assert_array_equal(a[key], b[key])


def test_a_crash_before_any_checkpoint_says_resume_starts_from_the_beginning(tmp_path, monkeypatch):
    """A custom env that raises in `step` before the first checkpoint (checkpoint_every 25):
    the line does not promise checkpoints that were never written."""
    import yaml
    from custom_envs import Crashing
    from typer.testing import CliRunner

    from dqnrun.cli import app

    raw = {**TINY_RAW, "env": "custom_envs:dqnrun-test/Crashing-v0", "env_kwargs": {"length": 5},
           "eval_episodes": 0, "name": "run"}
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(raw))
    monkeypatch.setattr(Crashing, "steps", 0)
    monkeypatch.setattr(Crashing, "crash_after", 3)
    failed = CliRunner().invoke(app, ["train", str(config), "--out", str(tmp_path), "--jobs", "1"],
                                env={"COLUMNS": "400"})
    run = tmp_path / "run"
    assert failed.exit_code == 1
    assert " ".join(failed.output.split()).endswith(
        f"seed 3 failed: RuntimeError: the simulator exploded; the traceback is in {run / 'errors.log'}; "
        "no unfinished seed had saved a checkpoint yet (checkpoint_every: 25 episodes), so resuming starts them "
        f"from the beginning; continue with `dqnrun train --resume {run}`")
    assert not (run / "checkpoints").exists() or not any((run / "checkpoints").iterdir())

def sigint_state(pid="self"):
    """(blocked, ignored) for SIGINT in a process's main thread, from /proc."""
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    return tuple(bool(int(fields[k], 16) & (1 << (signal.SIGINT - 1))) for k in ("SigBlk", "SigIgn"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc")
def test_worker_processes_ignore_ctrl_c_and_the_client_still_hears_it():
    pytest.importorskip("distributed")
    client_state = sigint_state()
    pool = workers.LocalPool(jobs=2, in_process=False)
    with pool:
        while not pool.slots[0].ready:
            pool.poll(0.1)
        assert sigint_state(pool.slots[0].worker.pid) == (False, True)  # ignored, as before
    with workers.DaskPool("local:1") as pool:
        states = pool.client.run(sigint_state)
        assert list(states.values()) == [(False, True)]
    assert sigint_state() == client_state  # the client's own is as it was
