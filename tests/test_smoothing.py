import numpy as np

from dqnrun.smoothing import aggregate, smooth


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
