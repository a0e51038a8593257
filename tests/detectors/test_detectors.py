"""Detectors: one score direction (higher = more suspicious), budgets, ranks and suggested labels."""

import numpy as np
import pytest

from ogaudit.detectors.base import flag_budget
from ogaudit.detectors.outliers import DETECTORS, counterfactual_scores, make_detector
from ogaudit.errors import SettingsError
from ogaudit.gradients import HeadEvidence
from ogaudit.settings import DYNAMICS_DETECTORS


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


def trajectory_of(logits: np.ndarray, labels: np.ndarray, features: np.ndarray, epochs: int = 2):
    """A trajectory in which every epoch saw ``logits`` (N, C), the early features being ``features``."""
    import torch

    from ogaudit.models.training import Trajectory

    trajectory = Trajectory.empty(epochs, len(labels), logits.shape[1])
    for epoch in range(epochs):
        trajectory.record(epoch, np.arange(len(labels)), torch.as_tensor(logits), torch.as_tensor(labels))
    trajectory.early_features = features
    return trajectory


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_mislabelled_sample_scores_highest_and_gets_its_label_back(name):
    evidence = _evidence_with_one_mislabel()
    logits = np.log(evidence.probs).astype(np.float32)
    trajectory = trajectory_of(logits, evidence.labels, evidence.features[:, :-1])
    detector = make_detector(name, seed=0, trajectory=trajectory if name in DYNAMICS_DETECTORS else None)
    detector = detector.fit(evidence)
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


def test_counterfactual_ratio_matches_gradient_norms_built_the_slow_way():
    """The closed form (feature factor cancelled) equals the ratio of materialised gradient norms."""
    from ogaudit.detectors.outliers import counterfactual_log_ratio

    rng = np.random.default_rng(1)
    evidence = HeadEvidence.from_head(rng.normal(size=(30, 4)), rng.normal(size=(30, 5)) * 3, rng.integers(0, 5, 30))
    given = np.linalg.norm(evidence.gradients(), axis=1)
    others = np.stack([np.linalg.norm(evidence.gradients(np.full(30, c)), axis=1) for c in range(5)], axis=1)
    others[np.arange(30), evidence.labels] = np.inf
    expected = np.log(given / others.min(axis=1))
    np.testing.assert_allclose(
        counterfactual_log_ratio(evidence.probs, evidence.labels), expected, rtol=1e-3, atol=1e-3
    )


def _two_clusters_one_wrong_label():
    rng = np.random.default_rng(2)
    features = np.vstack([rng.normal(0, 0.1, (40, 3)) + [5, 0, 0], rng.normal(0, 0.1, (40, 3)) + [0, 5, 0]])
    labels = np.repeat([0, 1], 40)
    labels[3] = 1  # sits in class 0's cluster
    logits = np.zeros((80, 2), dtype=np.float32)  # an uninformative model: only the neighbours can tell
    return HeadEvidence.from_head(features.astype(np.float32), logits, labels)


def test_neighbours_match_a_brute_force_search_and_find_the_odd_label():
    from ogaudit.detectors.outliers import NeighbourDetector

    evidence = _two_clusters_one_wrong_label()
    detector = NeighbourDetector(k=5, chunk=7).fit(evidence)
    directions = evidence.features[:, :-1] / np.linalg.norm(evidence.features[:, :-1], axis=1, keepdims=True)
    cosines = directions @ directions.T
    np.fill_diagonal(cosines, -np.inf)
    for row in range(80):
        expected = set(np.argsort(-cosines[row])[:5])
        assert set(detector.neighbours_[row]) == expected
    scores = detector.outlier_scores(evidence)
    assert int(np.argmax(scores)) == 3 and scores[3] == (5 + 1) / (5 + 2)
    assert counterfactual_scores(detector, evidence).argmin(axis=1)[3] == 0


def test_posterior_is_the_model_times_the_neighbours_label_histogram():
    from ogaudit.detectors.outliers import NeighbourPosteriorDetector

    evidence = _two_clusters_one_wrong_label()
    rng = np.random.default_rng(3)
    evidence.probs = rng.dirichlet([1.0, 1.0], size=80)  # an arbitrary model, so both experts matter
    detector = NeighbourPosteriorDetector(k=5).fit(evidence)
    counts = np.stack([(evidence.labels[detector.neighbours_.neighbours_] == c).sum(axis=1) for c in (0, 1)], axis=1)
    expected = evidence.probs * (counts + 1) / (5 + 2)
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(detector.posterior(evidence), expected)
    scores = detector.outlier_scores(evidence)
    np.testing.assert_allclose(scores, -np.log(expected[np.arange(80), evidence.labels]))
    suggested = counterfactual_scores(detector, evidence).argmin(axis=1)
    assert np.array_equal(suggested, expected.argmax(axis=1))


def test_posterior_finds_a_wrong_label_the_model_cannot_see():
    from ogaudit.detectors.outliers import NeighbourPosteriorDetector

    evidence = _two_clusters_one_wrong_label()  # uniform softmax: the neighbours decide
    detector = NeighbourPosteriorDetector(k=5).fit(evidence)
    assert int(np.argmax(detector.outlier_scores(evidence))) == 3
    assert counterfactual_scores(detector, evidence).argmin(axis=1)[3] == 0
    with pytest.raises(SettingsError, match="fitted on 80"):
        detector.outlier_scores(HeadEvidence(evidence.features[:10], evidence.probs[:10], evidence.labels[:10]))


def test_neighbours_refuse_evidence_they_were_not_fitted_on():
    from ogaudit.detectors.outliers import NeighbourDetector

    evidence = _two_clusters_one_wrong_label()
    detector = NeighbourDetector(k=5).fit(evidence)
    smaller = HeadEvidence(evidence.features[:10], evidence.probs[:10], evidence.labels[:10])
    with pytest.raises(SettingsError, match="fitted on 80"):
        detector.outlier_scores(smaller)


def test_detectors_run_on_projected_gradients():
    from ogaudit.detectors.outliers import GRADIENT_DETECTORS
    from ogaudit.gradients import ProjectedEvidence

    evidence = _two_clusters_one_wrong_label()
    matrix = ProjectedEvidence(evidence.features[:, :-1].copy(), evidence.probs, evidence.labels)
    for name in GRADIENT_DETECTORS:
        scores = make_detector(name).fit(matrix).outlier_scores(matrix)
        assert scores.shape == (80,) and np.isfinite(scores).all()


def test_posterior_ratio_is_the_counterfactual_ratio_of_the_posterior_the_slow_way():
    evidence = _evidence_with_one_mislabel()
    detector = make_detector("posterior-ratio").fit(evidence)
    posterior = detector.posterior(evidence)
    expected = []
    for row, label in zip(posterior, evidence.labels):
        distance = [np.linalg.norm(row - np.eye(len(row))[c]) for c in range(len(row))]
        expected.append(np.log(distance[label] / min(d for c, d in enumerate(distance) if c != label)))
    np.testing.assert_allclose(detector.outlier_scores(evidence), expected, rtol=1e-6, atol=1e-9)
    # a correctly labelled sample whose posterior is split scores below a wrong one with a confident alternative
    assert np.argmax(detector.outlier_scores(evidence)) == 7
