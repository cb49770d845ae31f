"""Sum tree and min tree over a fixed number of leaves, with batched, vectorised operations.

The trees are k-ary (k = 32 by default) rather than binary: a node holds the sum (or min) of
its k children. Every operation walks the levels with one handful of numpy calls per level,
for the whole batch at once, so its cost is O(batch x k x log_k N) element operations but
only O(log_k N) numpy calls: 4 levels for a million leaves instead of 20. On small batches
the numpy call overhead, not arithmetic, is what costs.

Updates recompute each touched parent from its children (no running deltas, so no
floating-point drift accumulates over millions of updates).
"""

from __future__ import annotations

import numpy as np

BRANCHING = 32


def level_sizes(size: int, k: int = BRANCHING) -> list[int]:
    """Node counts from the root (1) down to the leaves (size rounded up to a multiple of k).

    Every level but the root is a multiple of k long, so it reshapes to (parents, k).
    """
    sizes = []
    n = size
    while True:
        n = -(-n // k) * k
        sizes.append(n)
        n //= k
        if n == 1:
            break
    return [1, *reversed(sizes)]


class SegmentTree:
    """Leaves combined k at a time by `op` (np.add or np.minimum) with identity `neutral`."""

    def __init__(self, size: int, op: np.ufunc, neutral: float, branching: int = BRANCHING):
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size = size
        self.k = k = branching
        self.op = op
        self.neutral = neutral
        # levels[0] is the root (one node); levels[-1] the leaves.
        self.levels = [np.full(n, neutral, dtype=np.float64) for n in level_sizes(size, k)]
        self.depth = len(self.levels) - 1
        self.rows = [level.reshape(-1, k) for level in self.levels[1:]]  # rows[d]: children of levels[d]
        self.leaves = self.levels[-1]

    def path(self, indices: np.ndarray) -> list[np.ndarray]:
        """Ancestors of leaves `indices`, level by level from the leaves' parents up to the root.

        Trees of the same size and branching share paths, so one computation serves both.
        """
        idx = np.asarray(indices, dtype=np.int64)
        out = []
        for _ in range(self.depth):
            idx = idx // self.k  # repeated parents recompute the same value
            out.append(idx)
        return out

    def update(self, indices: np.ndarray, values: np.ndarray, path: list[np.ndarray] | None = None) -> None:
        """Set leaves `indices` to `values`, then refresh their ancestors.

        Repeated indices are allowed: the last value wins (numpy assignment order).
        """
        self.leaves[indices] = values
        for d, idx in zip(range(self.depth - 1, -1, -1), path or self.path(indices)):
            self.levels[d][idx] = self.combine(self.rows[d].take(idx, axis=0))

    def combine(self, children: np.ndarray) -> np.ndarray:
        """Parent values of a (B, k) block of children."""
        return self.op.reduce(children, axis=1)

    def __getitem__(self, indices: np.ndarray) -> np.ndarray:
        return self.leaves[np.asarray(indices, dtype=np.int64)]

    def root(self) -> float:
        return float(self.levels[0][0])

    def rebuild(self) -> None:
        """Recompute every inner node from the leaves (after loading leaves in bulk)."""
        for d in range(self.depth - 1, -1, -1):
            self.levels[d][: len(self.rows[d])] = self.op.reduce(self.rows[d], axis=1)


class SumTree(SegmentTree):
    def __init__(self, size: int, branching: int = BRANCHING):
        super().__init__(size, np.add, 0.0, branching)
        # Running sums of k children as one small matrix product, with a leading zero column:
        # (children @ upper)[:, i] is the mass of children before child i, i = 0 .. k.
        # (np.cumsum along a short axis costs about three times as much.)
        self.upper = np.triu(np.ones((branching, branching + 1)), k=1)

    def total(self) -> float:
        return self.root()

    def find(self, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each target in [0, total), the leaf whose prefix-sum interval contains it.

        Returns (leaf indices, their values). Leaves of zero mass are never returned (while
        the total is positive).
        """
        targets = np.maximum(np.asarray(targets, dtype=np.float64), 0.0)
        rows = np.arange(len(targets))
        idx = np.zeros(len(targets), dtype=np.int64)
        k, upper = self.k, self.upper
        for level in self.rows:
            children = level.take(idx, axis=0)  # (B, k)
            before = children @ upper  # (B, k + 1): mass before each child, then the total
            # Keep each target below this node's total: the first child whose running sum
            # exceeds it then has positive mass, whatever rounding did on the way down.
            targets = np.minimum(targets, before[:, -1] * (1.0 - 1e-12))
            j = (before[:, 1:] > targets[:, None]).argmax(axis=1)
            # The mass before child j is <= the target: the remainder is never negative.
            targets = targets - before[rows, j]
            idx = idx * k + j
        return idx, children[rows, j]


class MinTree(SegmentTree):
    def __init__(self, size: int, branching: int = BRANCHING):
        super().__init__(size, np.minimum, np.inf, branching)

    def combine(self, children: np.ndarray) -> np.ndarray:
        # numpy's min along a short row is slow; along the long axis of the transpose it is
        # vectorised.
        return np.ascontiguousarray(children.T).min(axis=0)

    def min(self) -> float:
        return self.root()
