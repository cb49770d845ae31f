import numpy as np
import pytest

from dqnrun.experiment import metrics_csv, pad
from dqnrun.trainer import SeedResult


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
