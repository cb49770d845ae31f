import io

import numpy as np
import pytest
import torch
from tests_helpers import TINY_RAW

from dqnrun.chunks import ChunkTask, chunk_end, decode_checkpoint, encode_checkpoint, run_chunk
from dqnrun.config import config_from_dict
from dqnrun.errors import UserError
from dqnrun.experiment import plan
from dqnrun.trainer import EpisodeEnd, SeedEnd, train_seed

KEYS = ("scores", "train_returns", "steps", "epsilons", "losses", "best_score", "best_episode", "status")


def tiny(**changes):
    config = config_from_dict({**TINY_RAW, "name": "t", **changes})
    return config, plan(config, 1)


def chain(config, spec, seed):
    """Run a seed as a chain of chunks; return the chunks' results."""
    out, checkpoint = [], None
    while True:
        r = run_chunk(ChunkTask(config, seed, spec, "cpu", checkpoint))
        out.append(r)
        if r.status != "checkpoint":
            return out
        checkpoint = r.checkpoint


def test_chunk_ends_on_multiples_of_checkpoint_every():
    config, _ = tiny(episodes=7, checkpoint_every=3)
    assert [chunk_end(config, s) for s in (0, 2, 3, 6)] == [3, 3, 6, 7]
    config, _ = tiny(episodes=7, checkpoint_every=0)
    assert chunk_end(config, 0) == 7


@pytest.mark.parametrize("variant", ["ddqn", "per", "dueling", "rainbow"])
def test_a_chain_of_chunks_gives_the_numbers_of_one_straight_run(variant):
    config, spec = tiny(variant=variant, episodes=7, checkpoint_every=3)
    straight = train_seed(config, 3, spec)
    chunks = chain(config, spec, 3)
    assert [c.status for c in chunks] == ["checkpoint", "checkpoint", "complete"]
    assert [c.episode for c in chunks] == [3, 6, 7]
    result = chunks[-1].result
    for key in KEYS:
        np.testing.assert_array_equal(getattr(result, key), getattr(straight, key))
    assert all(torch.equal(result.best_state[k], straight.best_state[k]) for k in straight.best_state)
    events = [e for c in chunks for e in c.events]
    assert [e.episode for e in events if isinstance(e, EpisodeEnd)] == list(range(1, 8))
    assert [e.status for e in events if isinstance(e, SeedEnd)] == ["complete"]  # chunk ends are silent


def test_a_stopped_chunk_checkpoints_and_says_so():
    config, spec = tiny(episodes=7, checkpoint_every=5)
    r = run_chunk(ChunkTask(config, 3, spec, "cpu", None), should_stop=lambda: True)
    assert r.status == "interrupted" and r.episode == 1 and r.result is None
    assert isinstance(r.events[-1], SeedEnd) and r.events[-1].status == "interrupted"
    rest = run_chunk(ChunkTask(config, 3, spec, "cpu", r.checkpoint))
    assert rest.status == "checkpoint" and rest.episode == 5


def test_checkpoint_bytes_load_with_torch_weights_only():
    config, spec = tiny(variant="per", episodes=4, checkpoint_every=2)
    data = run_chunk(ChunkTask(config, 3, spec, "cpu", None)).checkpoint
    raw = torch.load(io.BytesIO(data), weights_only=True)  # no numpy objects, nothing executable
    assert raw["format"] == "dqnrun-checkpoint" and raw["episode"] == 2
    state = decode_checkpoint(data)
    assert isinstance(state["replay"]["obs"], np.ndarray) and state["replay"]["obs"].dtype == np.float32
    assert decode_checkpoint(encode_checkpoint(state))["replay"]["size"] == state["replay"]["size"]


@pytest.mark.parametrize("data", [b"", b"not a checkpoint", None])
def test_foreign_bytes_are_not_a_checkpoint(data):
    if data is None:
        buf = io.BytesIO()
        torch.save({"format": "something-else"}, buf)
        data = buf.getvalue()
    with pytest.raises(UserError, match="not a dqnrun checkpoint file"):
        decode_checkpoint(data)


def test_a_checkpoint_of_another_seed_is_refused():
    config, spec = tiny(episodes=4, checkpoint_every=2)
    data = run_chunk(ChunkTask(config, 3, spec, "cpu", None)).checkpoint
    with pytest.raises(UserError, match="another seed or config"):
        run_chunk(ChunkTask(config, 4, spec, "cpu", data))


def test_a_chain_of_rainbow_chunks_gives_the_numbers_of_one_straight_run():
    """Every new switch on: the noise generator, the n-step adder and the step-scheduled
    evaluations travel in the checkpoint bytes (read with weights_only)."""
    config, spec = tiny(variant="rainbow", episodes=7, checkpoint_every=2, eval_every_steps=40,
                        agent={**TINY_RAW["agent"], "atoms": 11, "v_max": 50.0, "train_freq": 2, "gradient_steps": 2,
                               "max_grad_norm": 5.0})
    straight = train_seed(config, 3, spec)
    result = chain(config, spec, 3)[-1].result
    for key in (*KEYS, "eval_steps", "eval_scores", "updates"):
        np.testing.assert_array_equal(getattr(result, key), getattr(straight, key))
    assert all(torch.equal(result.best_state[k], straight.best_state[k]) for k in straight.best_state)
