import numpy as np
import pytest

from dqnrun.sum_tree import MinTree, SumTree


def test_small_binary_tree_by_hand():
    tree = SumTree(4, branching=2)
    tree.update(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]))
    assert tree.total() == 10.0
    assert [level.tolist() for level in tree.levels] == [[10.0], [3.0, 7.0], [1.0, 2.0, 3.0, 4.0]]
    # prefix sums: [0,1) -> 0, [1,3) -> 1, [3,6) -> 2, [6,10) -> 3
    leaves, values = tree.find(np.array([0.0, 0.99, 1.0, 2.99, 3.0, 5.99, 6.0, 9.99]))
    np.testing.assert_array_equal(leaves, [0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(values, [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0])


@pytest.mark.parametrize("branching", [2, 3, 32])
@pytest.mark.parametrize("size", [1, 2, 3, 5, 17, 1000])
def test_against_a_plain_array_after_thousands_of_random_updates(size, branching):
    rng = np.random.default_rng(size)
    sums, mins, plain = SumTree(size, branching), MinTree(size, branching), np.zeros(size)
    mins.update(np.arange(size), np.full(size, np.inf))
    for _ in range(3000):
        idx = rng.integers(0, size, size=rng.integers(1, 8))
        values = rng.random(len(idx)) * 10
        sums.update(idx, values)
        mins.update(idx, values)
        for i, v in zip(idx, values):  # sequential semantics: the last write wins
            plain[i] = v
        np.testing.assert_array_equal(sums[np.arange(size)], plain)
    assert sums.total() == pytest.approx(plain.sum(), rel=1e-12)
    assert mins.min() == plain.min()
    # find() agrees with a search over the plain array's prefix sums
    targets = rng.random(500) * plain.sum()
    expected = np.searchsorted(np.cumsum(plain), targets, side="right")
    np.testing.assert_array_equal(sums.find(targets)[0], np.minimum(expected, size - 1))


@pytest.mark.parametrize("branching", [2, 32])
def test_find_never_lands_on_an_empty_leaf(branching):
    tree = SumTree(5, branching)  # padding leaves beyond the 5th, two more never filled
    tree.update(np.arange(3), np.array([0.1, 0.2, 0.3]))
    leaves, _ = tree.find(np.array([0.6, 0.6 + 1e-9, 1.0, -1e-9]))  # at or past the ends by rounding
    assert leaves.tolist() == [2, 2, 2, 0]


def test_rebuild_matches_incremental_updates():
    rng = np.random.default_rng(0)
    a, b = SumTree(100, 4), SumTree(100, 4)
    values = rng.random(100)
    a.update(np.arange(100), values)
    b.leaves[:100] = values
    b.rebuild()
    for x, y in zip(a.levels, b.levels):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("branching", [2, 32])
def test_zero_mass_leaves_are_skipped(branching):
    tree = SumTree(4, branching)
    tree.update(np.arange(4), np.array([0.0, 1.0, 0.0, 1.0]))
    np.testing.assert_array_equal(tree.find(np.array([0.0, 0.5, 1.0, 1.5]))[0], [1, 1, 3, 3])
