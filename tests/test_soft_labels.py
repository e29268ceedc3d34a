"""Soft and weighted preferences, through ``Preference`` and ``RewardModel.fit``."""

from __future__ import annotations

import pytest
from conftest import eid, make_episodes

from robopref.data import Label, Preference, Segment, load_preferences, save_preferences
from robopref.errors import DatasetError
from robopref.rewards import BTEnsemble, EnsembleConfig
from robopref.training import Trainer, TrainerConfig


def fitted_probability(preferences, episodes) -> float:
    config = TrainerConfig(steps=1500, batch_size=256, lr=3e-3, device="cpu", progress=False)
    model = BTEnsemble(5, 2, EnsembleConfig(members=3, hidden_sizes=[32]), Trainer(config))
    model.fit(preferences, episodes)
    pair = (preferences[0].first, preferences[0].second)
    return float(model.preference_probabilities([pair], episodes).mean())


@pytest.fixture
def pair_episodes():
    return make_episodes(2, T=10, seed=5)


def test_contradicting_labels_weighted_3_to_1_fit_three_quarters(pair_episodes):
    a, b = Segment(eid(0), 0, 10), Segment(eid(1), 0, 10)
    prefs = [
        Preference(a, b, Label.FIRST, weight=3.0, annotator="ann1"),
        Preference(a, b, Label.SECOND, weight=1.0, annotator="ann2"),
    ]
    assert fitted_probability(prefs, pair_episodes) == pytest.approx(0.75, abs=0.02)


def test_a_single_soft_label_is_fitted_as_given(pair_episodes):
    a, b = Segment(eid(0), 0, 10), Segment(eid(1), 0, 10)
    prefs = [Preference(a, b, 0.7, source="transfer")]
    assert fitted_probability(prefs, pair_episodes) == pytest.approx(0.70, abs=0.02)


def test_weight_zero_preferences_are_ignored_and_all_zero_is_refused(pair_episodes):
    a, b = Segment(eid(0), 0, 10), Segment(eid(1), 0, 10)
    prefs = [Preference(a, b, 0.7), Preference(a, b, 0.0, weight=0.0)]
    assert fitted_probability(prefs, pair_episodes) == pytest.approx(0.70, abs=0.02)
    config = TrainerConfig(steps=2, batch_size=2, device="cpu", progress=False)
    model = BTEnsemble(5, 2, EnsembleConfig(members=1), Trainer(config))
    with pytest.raises(ValueError, match="weight 0"):
        model.fit([Preference(a, b, 1.0, weight=0.0)], pair_episodes)


def test_preferences_round_trip_through_their_file(tmp_path):
    a, b = Segment("ds:3", 5, 15), Segment("ds:4", 0, 10)
    prefs = [Preference(a, b, 0.7, weight=2.5, source="transfer", annotator="x")]
    path = save_preferences(prefs, tmp_path / "labels.json")
    assert load_preferences(path) == prefs
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left
    path.write_text('{"format_version": 99, "preferences": []}')
    with pytest.raises(DatasetError, match="format version 99"):
        load_preferences(path)
