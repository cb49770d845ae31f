"""Sum tree (and min tree) over a fixed number of leaves, with batched, vectorised operations.

A complete binary tree stored in one array: node i has children 2i and 2i+1, the leaves sit at
[capacity, 2 * capacity) and node 1 is the root. Updates recompute each touched parent from its
two children (no running deltas, so no floating-point drift); sampling descends all queries
together, one numpy operation per level: O(batch x log N).
"""

from __future__ import annotations

import numpy as np


class SegmentTree:
    """Leaves combined pairwise by `op` (np.add or np.minimum) with identity `neutral`."""

    def __init__(self, size: int, op: np.ufunc, neutral: float):
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size = size
        self.capacity = 1 << max(0, (size - 1).bit_length())  # leaves: a power of two >= size
        self.depth = self.capacity.bit_length() - 1
        self.op = op
        self.neutral = neutral
        self.nodes = np.full(2 * self.capacity, neutral, dtype=np.float64)

    def update(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Set leaves `indices` to `values`, then refresh their ancestors.

        Repeated indices are allowed: the last value wins (numpy assignment order).
        """
        idx = np.asarray(indices, dtype=np.int64) + self.capacity
        self.nodes[idx] = values
        for _ in range(self.depth):
            idx >>= 1  # repeated parents recompute the same value
            self.nodes[idx] = self.op(self.nodes[2 * idx], self.nodes[2 * idx + 1])

    def __getitem__(self, indices: np.ndarray) -> np.ndarray:
        return self.nodes[np.asarray(indices, dtype=np.int64) + self.capacity]

    def root(self) -> float:
        return float(self.nodes[1])


class SumTree(SegmentTree):
    def __init__(self, size: int):
        super().__init__(size, np.add, 0.0)

    def total(self) -> float:
        return self.root()

    def find(self, targets: np.ndarray) -> np.ndarray:
        """For each target in [0, total), the leaf whose prefix-sum interval contains it."""
        targets = np.asarray(targets, dtype=np.float64).copy()
        idx = np.ones(len(targets), dtype=np.int64)
        for _ in range(self.depth):
            left = 2 * idx
            left_sum = self.nodes[left]
            # Rounding can carry a target just past the last positive leaf: never step into an
            # empty right subtree, so every query ends on a leaf of positive mass.
            go_right = (targets >= left_sum) & (self.nodes[left + 1] > 0)
            targets -= np.where(go_right, left_sum, 0.0)
            idx = left + go_right
        return idx - self.capacity


class MinTree(SegmentTree):
    def __init__(self, size: int):
        super().__init__(size, np.minimum, np.inf)

    def min(self) -> float:
        return self.root()
