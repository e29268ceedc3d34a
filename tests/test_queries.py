"""Query selection (uniform, disagreement, entropy) and segment sampling."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FakeRewardBase, eid, make_episode, make_episodes, named

from robopref.data import Episode, Segment
from robopref.preferences import (
    QUERY_SELECTORS,
    DisagreementSelector,
    EntropySelector,
    UniformSelector,
    sample_pairs,
    sample_segments,
)

SEG_LEN = 4


class FakeRewardModel(FakeRewardBase):
    """Member ``m``'s reward at a step is observation feature ``m`` (obs_dim == members)."""

    def __init__(self, members: int):
        self.obs_dim, self.act_dim, self.members = members, 1, members
        self.fit_calls = 0

    @property
    def num_members(self) -> int:
        return self.members

    def member_rewards(self, obs, act):
        obs = np.asarray(obs, dtype=np.float64)
        assert obs.shape[-1] == self.members and act.shape[:-1] == obs.shape[:-1]
        return np.moveaxis(obs, -1, 0)  # (M, B, T)

    def fit(self, preferences, episodes):
        self.fit_calls += 1
        return {}


def pairs_with_logits(logits) -> tuple[list[tuple[Segment, Segment]], list[Episode]]:
    """Pair ``i``'s member-``m`` return difference (first minus second) is ``logits[i][m]``.

    With :class:`FakeRewardModel`, ``P_m(first) = sigmoid(logits[i][m])``.
    """
    logits = np.asarray(logits, dtype=np.float64)
    n, members = logits.shape
    episodes, pairs = [], []
    for i in range(n):
        first = np.tile(logits[i] / SEG_LEN, (SEG_LEN, 1))
        second = np.zeros((SEG_LEN, members))
        for obs in (first, second):
            episodes.append(
                Episode(obs, np.zeros((SEG_LEN, 1)), np.zeros(SEG_LEN), np.zeros(SEG_LEN, bool))
            )
        pairs.append((Segment(eid(2 * i), 0, SEG_LEN), Segment(eid(2 * i + 1), 0, SEG_LEN)))
    return pairs, named(*episodes)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_fake_model_probabilities_are_the_designed_ones():
    logits = [[-3.0, 0.0, 3.0], [1.0, 1.0, 1.0]]
    pairs, eps = pairs_with_logits(logits)
    probs = FakeRewardModel(3).preference_probabilities(pairs, eps)
    assert probs.shape == (3, 2)
    np.testing.assert_allclose(probs, _sigmoid(np.array(logits).T), rtol=1e-6)


# --------------------------------------------------------------------------- every selector


@pytest.mark.parametrize("name", sorted(QUERY_SELECTORS))
@pytest.mark.parametrize("with_model", [False, True])
@pytest.mark.parametrize("count", [0, 1, 4, 9, 25])
def test_selector_returns_min_count_n_distinct_valid_indices(name, with_model, count):
    config_cls, selector_cls = QUERY_SELECTORS[name]
    selector = selector_cls(config_cls())
    rng = np.random.default_rng(count)
    logits = rng.normal(size=(9, 3)) * 2
    pairs, eps = pairs_with_logits(logits)
    model = FakeRewardModel(3) if with_model else None
    chosen = selector.select(pairs, eps, model, count, np.random.default_rng(0))
    assert len(chosen) == min(count, len(pairs))
    assert len(set(chosen)) == len(chosen)
    assert all(isinstance(i, int) and 0 <= i < len(pairs) for i in chosen)


@pytest.mark.parametrize("name", sorted(QUERY_SELECTORS))
def test_selector_default_config(name):
    _, selector_cls = QUERY_SELECTORS[name]
    pairs, eps = pairs_with_logits(np.zeros((5, 2)))
    assert len(selector_cls().select(pairs, eps, None, 3, np.random.default_rng(0))) == 3


def test_selectors_on_no_candidates_without_model_return_nothing():
    for _, selector_cls in QUERY_SELECTORS.values():
        assert selector_cls().select([], [], None, 3, np.random.default_rng(0)) == []
    assert UniformSelector().select([], [], FakeRewardModel(2), 3, np.random.default_rng(0)) == []


@pytest.mark.parametrize("name", ["disagreement", "entropy"])
def test_scored_selector_on_no_candidates_returns_nothing(name):
    _, selector_cls = QUERY_SELECTORS[name]
    assert selector_cls().select([], [], FakeRewardModel(2), 3, np.random.default_rng(0)) == []


# --------------------------------------------------------------------------- scored selectors

DISAGREEMENT_LOGITS = [
    [0.0, 0.0, 0.0],  # 0: all agree (P = .5)
    [-3.0, 0.0, 3.0],  # 1: strongest disagreement (std of P ~ .37)
    [1.0, 1.0, 1.0],  # 2: agree
    [-1.0, 0.0, 1.0],  # 3: mild disagreement (~ .19)
    [2.0, -2.0, 0.0],  # 4: strong disagreement (~ .31)
    [5.0, 5.0, 5.0],  # 5: agree, confident
]


@pytest.mark.parametrize(("count", "expected"), [(1, [1]), (2, [1, 4]), (3, [1, 3, 4])])
def test_disagreement_picks_largest_member_std(count, expected):
    pairs, eps = pairs_with_logits(DISAGREEMENT_LOGITS)
    probs = _sigmoid(np.array(DISAGREEMENT_LOGITS)).T
    assert sorted(np.argsort(-probs.std(0))[:count].tolist()) == expected  # sanity of the design
    for seed in range(5):
        chosen = DisagreementSelector().select(
            pairs, eps, FakeRewardModel(3), count, np.random.default_rng(seed)
        )
        assert sorted(chosen) == expected


ENTROPY_LOGITS = [
    [4.0, 4.0],  # 0: mean P .98
    [0.1, 0.1],  # 1: mean P .525: closest to .5 after pair 5
    [-2.0, -2.0],  # 2: .12
    [-0.3, -0.3],  # 3: .43
    [1.0, 1.0],  # 4: .73
    [-5.0, 5.0],  # 5: members confident but opposite: mean P exactly .5
]


@pytest.mark.parametrize(("count", "expected"), [(1, [5]), (2, [1, 5]), (3, [1, 3, 5])])
def test_entropy_picks_mean_probability_closest_to_half(count, expected):
    pairs, eps = pairs_with_logits(ENTROPY_LOGITS)
    for seed in range(5):
        chosen = EntropySelector().select(
            pairs, eps, FakeRewardModel(2), count, np.random.default_rng(seed)
        )
        assert sorted(chosen) == expected


def test_disagreement_and_entropy_differ_on_the_same_pairs():
    pairs, eps = pairs_with_logits([[0.0, 0.0], [-4.0, 4.0], [3.0, 3.5]])
    model = FakeRewardModel(2)
    rng = np.random.default_rng(0)
    assert DisagreementSelector().select(pairs, eps, model, 1, rng) == [1]
    # Pairs 0 and 1 both have mean P = .5; the confident-but-split pair 2 loses.
    assert 2 not in EntropySelector().select(pairs, eps, model, 2, rng)


@pytest.mark.parametrize("selector_cls", [DisagreementSelector, EntropySelector])
def test_scored_selectors_break_ties_at_random(selector_cls):
    pairs, eps = pairs_with_logits(np.zeros((12, 3)))  # every pair scores the same
    picks = {
        tuple(selector_cls().select(pairs, eps, FakeRewardModel(3), 3, np.random.default_rng(s)))
        for s in range(10)
    }
    assert len(picks) > 1  # a positional tie-break would always give (0, 1, 2)


@pytest.mark.parametrize("selector_cls", [DisagreementSelector, EntropySelector])
def test_scored_selectors_without_model_fall_back_to_uniform(selector_cls):
    pairs, eps = pairs_with_logits(np.random.default_rng(0).normal(size=(15, 3)))
    for seed in range(4):
        got = selector_cls().select(pairs, eps, None, 5, np.random.default_rng(seed))
        want = UniformSelector().select(pairs, eps, None, 5, np.random.default_rng(seed))
        assert got == want


def test_uniform_selection_covers_all_pairs():
    pairs, eps = pairs_with_logits(np.zeros((10, 1)))
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(50):
        seen.update(UniformSelector().select(pairs, eps, None, 2, rng))
    assert seen == set(range(10))


def test_scored_selectors_do_not_fit_the_model():
    pairs, eps = pairs_with_logits(np.zeros((4, 2)))
    model = FakeRewardModel(2)
    DisagreementSelector().select(pairs, eps, model, 2, np.random.default_rng(0))
    EntropySelector().select(pairs, eps, model, 2, np.random.default_rng(0))
    assert model.fit_calls == 0


# --------------------------------------------------------------------------- segment sampling


def test_sample_segments_respect_length_and_bounds():
    eps = named(*[make_episode(T, seed=T) for T in (5, 12, 20, 9)])
    segs = sample_segments(eps, 8, 300, np.random.default_rng(0))
    assert len(segs) == 300
    by_id = {e.id: e for e in eps}
    for seg in segs:
        assert len(seg) == 8
        assert seg.start >= 0 and seg.end <= len(by_id[seg.episode_id])
        assert isinstance(seg.episode_id, str) and isinstance(seg.start, int)
    # The 5-step episode is never drawn; the others all are.
    assert {s.episode_id for s in segs} == {eid(1), eid(2), eid(3)}


def test_sample_segments_start_steps_cover_the_whole_range():
    eps = named(make_episode(10))
    starts = {s.start for s in sample_segments(eps, 4, 400, np.random.default_rng(0))}
    assert starts == set(range(0, 7))
    full = sample_segments(eps, 10, 5, np.random.default_rng(0))
    assert all((s.start, s.end) == (0, 10) for s in full)


def test_sample_segments_episode_indices_restrict_the_pool():
    eps = make_episodes(5, T=10)
    segs = sample_segments(eps, 3, 100, np.random.default_rng(0), episode_ids=[eid(1), eid(3)])
    assert {s.episode_id for s in segs} == {eid(1), eid(3)}


def test_sample_segments_is_seeded():
    eps = make_episodes(4, T=15)
    a = sample_segments(eps, 5, 20, np.random.default_rng(3))
    b = sample_segments(eps, 5, 20, np.random.default_rng(3))
    assert a == b


def test_sample_segments_raise_when_no_episode_is_long_enough():
    eps = named(make_episode(5), make_episode(7, seed=1), make_episode(30, seed=2))
    with pytest.raises(ValueError, match=">= 31 steps"):
        sample_segments(eps, 31, 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="no episode"):
        sample_segments(eps, 10, 4, np.random.default_rng(0), episode_ids=[eid(0), eid(1)])
    with pytest.raises(ValueError, match="no episode"):
        sample_pairs(eps, 31, 4, np.random.default_rng(0))


def test_sample_pairs_respect_length():
    eps = named(*[make_episode(T, seed=T) for T in (6, 15, 25)])
    pairs = sample_pairs(eps, 10, 40, np.random.default_rng(0))
    assert len(pairs) == 40
    for a, b in pairs:
        assert len(a) == len(b) == 10
        for seg in (a, b):
            assert seg.episode_id in (eid(1), eid(2))
            assert seg.end <= len(eps[int(seg.episode_id.split(":")[1])])
    # Segments are drawn independently: not every pair repeats its first segment.
    assert any(a != b for a, b in pairs)
