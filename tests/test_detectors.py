"""Detectors: one score direction (higher = more suspicious), budgets, ranks and suggested labels."""

import numpy as np
import pytest

from ogaudit.detectors import DETECTORS, counterfactual_scores, flag_budget, make_detector
from ogaudit.errors import SettingsError
from ogaudit.gradients import HeadEvidence


def _evidence_with_one_mislabel():
    """200 confident, correctly labelled samples and one confidently predicted as class 1 but labelled 0."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 200)
    logits = np.full((200, 3), -4.0, dtype=np.float32)
    logits[np.arange(200), labels] = 4.0
    features = rng.normal(1.0, 0.1, size=(200, 5)).astype(np.float32)
    logits[7] = [-4.0, 4.0, -4.0]
    labels[7] = 0
    return HeadEvidence.from_head(features, logits, labels)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_mislabelled_sample_scores_highest_and_gets_its_label_back(name):
    evidence = _evidence_with_one_mislabel()
    detector = make_detector(name, seed=0).fit(evidence)
    scores = detector.outlier_scores(evidence)
    assert scores.shape == (200,)
    assert int(np.argmax(scores)) == 7
    suggestions = counterfactual_scores(detector, evidence).argmin(axis=1)
    assert suggestions[7] == 1


def test_flag_budget_fraction_and_count():
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.2, 0.3, 0.0, 0.8, 0.4, 0.6])
    flagged, rank = flag_budget(scores, 0.2)
    assert flagged.sum() == 2 and set(np.flatnonzero(flagged)) == {1, 7}
    assert rank[1] == 1 and rank[6] == 10
    flagged, _ = flag_budget(scores, 3)
    assert set(np.flatnonzero(flagged)) == {1, 7, 3}


@pytest.mark.parametrize("budget", [0, -0.1, 2.5])
def test_bad_budget_is_refused(budget):
    with pytest.raises(SettingsError, match="budget"):
        flag_budget(np.zeros(10), budget)


def test_unknown_detector_lists_choices():
    with pytest.raises(SettingsError, match="iforest"):
        make_detector("magic")
