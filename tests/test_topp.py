"""Top-p selection: a table of exact cases, and the rule itself as a property."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.topp import top_p_select


@pytest.mark.parametrize("probs, p, cap, expected", [
    ([0.5, 0.3, 0.2], 0.8, None, {0: 0.625, 1: 0.375}),
    ([0.2, 0.3, 0.5], 0.8, None, {2: 0.625, 1: 0.375}),
    ([0.4, 0.4, 0.2], 0.8, None, {0: 0.5, 1: 0.5}),                 # prefix sum lands exactly on p
    ([0.7, 0.1, 0.2], 0.9, None, {0: 0.7 / 0.9, 2: 0.2 / 0.9}),     # 0.7 + 0.2 is 0.8999999999999999 in floats
    ([0.25, 0.25, 0.25, 0.25], 0.5, None, {0: 0.5, 1: 0.5}),        # ties: lower index first
    ([0.1, 0.4, 0.4, 0.1], 0.5, None, {1: 0.5, 2: 0.5}),
    ([0.1, 0.4, 0.4, 0.1], 0.95, None, {1: 0.4, 2: 0.4, 0: 0.1, 3: 0.1}),
    ([0.5, 0.3, 0.2], 1.0, None, {0: 0.5, 1: 0.3, 2: 0.2}),         # p = 1 keeps every adapter with mass
    ([0.5, 0.5, 0.0, 0.0], 1.0, None, {0: 0.5, 1: 0.5}),            # ... but never a zero-probability one
    ([0.5, 0.3, 0.2], 1e-9, None, {0: 1.0}),                        # tiny p: the top adapter alone
    ([0.34, 0.33, 0.33], 1e-9, None, {0: 1.0}),
    ([1.0], 0.8, None, {0: 1.0}),                                   # one adapter
    ([1.0], 1.0, 1, {0: 1.0}),
    ([0.3, 0.3, 0.2, 0.2], 0.9, 2, {0: 0.5, 1: 0.5}),               # max_adapters caps the prefix
    ([0.3, 0.3, 0.2, 0.2], 0.9, 1, {0: 1.0}),
    ([0.6, 0.4], 0.5, 5, {0: 1.0}),                                 # a cap above the prefix changes nothing
    ([2.0, 1.0, 1.0], 0.5, None, {0: 1.0}),                         # unnormalised scores are normalised first
    ([0.0, 0.0, 0.0], 0.5, None, {0: 0.5, 1: 0.5}),                 # no mass at all: treated as uniform
    (np.array([0.6, 0.3, 0.1], np.float32), 0.9, None, {0: 2 / 3, 1: 1 / 3}),
])
def test_table(probs, p, cap, expected):
    got = top_p_select(probs, p, cap)
    assert list(got) == list(expected)  # order: by probability, ties by index
    assert got == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("probs, p, cap", [([0.5, 0.5], 0.0, None), ([0.5, 0.5], 1.5, None),
                                           ([0.5, 0.5], 0.5, 0), ([-0.1, 1.1], 0.5, None),
                                           ([np.nan, 1.0], 0.5, None), ([], 0.5, None)])
def test_invalid_arguments(probs, p, cap):
    with pytest.raises(ValueError):
        top_p_select(probs, p, cap)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12).filter(lambda xs: sum(xs) > 1e-3),
       st.floats(1e-6, 1.0))
def test_shortest_prefix_reaching_p(xs, p):
    probs = np.array(xs) / sum(xs)
    got = top_p_select(probs, p)
    kept = list(got)
    assert sum(got.values()) == pytest.approx(1.0)
    assert all(probs[i] >= probs[j] for i in kept for j in set(range(len(xs))) - set(kept))  # a top set
    mass = probs[kept].sum()
    assert mass >= p - 1e-6 or len(kept) == np.count_nonzero(probs)    # reaches p (or all mass is kept)
    assert len(kept) == 1 or probs[kept[:-1]].sum() < p                 # and is the shortest such prefix
    for i in kept:
        assert got[i] == pytest.approx(probs[i] / mass)
