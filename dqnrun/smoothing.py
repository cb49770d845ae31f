"""Sliding-window smoothing of score curves and aggregation across seeds (numpy only)."""

from __future__ import annotations

import numpy as np


def smooth(scores: np.ndarray, window: int) -> np.ndarray:
    """The lecture's sliding mean: np.convolve(scores, ones(w) / w, 'valid'), len - w + 1 points."""
    scores = np.asarray(scores, dtype=float)
    if len(scores) < window:
        return np.empty(0)
    return np.convolve(scores, np.ones(window) / window, mode="valid")


def aggregate(curves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Max, min and mean across seeds, point by point, over the shortest curve's length."""
    n = min(len(c) for c in curves)
    stacked = np.stack([np.asarray(c[:n], dtype=float) for c in curves])
    return stacked.max(axis=0), stacked.min(axis=0), stacked.mean(axis=0)
