import numpy as np
import pytest

from dqnrun.experiment import aggregate, metrics_csv, pad, smooth
from dqnrun.trainer import SeedResult


def test_smooth_is_the_lectures_valid_convolution():
    scores = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    np.testing.assert_allclose(smooth(scores, 2), [1.5, 2.5, 3.5, 7.0])
    np.testing.assert_allclose(smooth(scores, 5), [4.0])
    np.testing.assert_array_equal(smooth(scores, 1), scores)
    assert len(smooth(scores, 6)) == 0  # never the swapped 'valid' of a too-short signal


def test_aggregate_is_pointwise_across_seeds_on_the_shortest_length():
    hi, lo, mean = aggregate([np.array([1.0, 5.0, 9.0]), np.array([3.0, 1.0])])
    np.testing.assert_array_equal(hi, [3.0, 5.0])
    np.testing.assert_array_equal(lo, [1.0, 1.0])
    np.testing.assert_array_equal(mean, [2.0, 3.0])


def test_pad_keeps_ragged_rows():
    out = pad([[1, 2, 3], [4]])
    np.testing.assert_array_equal(out[0], [1, 2, 3])
    assert out[1, 0] == 4 and np.isnan(out[1, 1:]).all()


def test_metrics_csv_rows():
    r = SeedResult(seed=1, scores=[10.0, 20.0, 30.0], train_returns=[9.0, 8.0, 7.0], steps=[9, 17, 24],
                   epsilons=[0.9, 0.8, 0.7], losses=[float("nan"), 0.5, 0.25])
    lines = metrics_csv(r, window=2).splitlines()
    assert lines[0] == "episode,env_steps,train_return,score,smoothed_score,epsilon,mean_loss"
    assert lines[1] == "1,9,9,10,,0.9,"
    assert lines[2] == "2,17,8,20,15,0.8,0.5"
    assert lines[3] == "3,24,7,30,25,0.7,0.25"
