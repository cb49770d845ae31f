"""Every random stream of a run from its seed; a new stream moves none of the old ones."""

import numpy as np

from dqnrun import seeding


def test_adding_the_noise_stream_left_the_first_five_unchanged():
    # The streams as they were derived before NoisyNet's stream existed: SeedSequence(seed).spawn(5).
    seed = 12
    explore, replay, env, evaluation, init = np.random.SeedSequence(seed).spawn(5)
    s = seeding.streams(seed)
    for ours, theirs in ((s.explore, explore), (s.replay, replay), (s.env, env), (s.evaluation, evaluation)):
        np.testing.assert_array_equal(ours.integers(0, 2**31, 8), np.random.default_rng(theirs).integers(0, 2**31, 8))
    assert s.torch_seed == int(init.generate_state(1, dtype=np.uint64)[0] % (2**63))
    assert s.noise_seed != s.torch_seed and s.noise_seed == seeding.streams(seed).noise_seed
