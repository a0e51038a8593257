"""Training-dynamics detectors: what they read, what they refuse, and that the pipeline feeds them one training."""

import numpy as np
import pytest

from ogaudit.detectors.dynamics import DynamicsPosteriorDetector, EarlyNeighbourDetector
from ogaudit.detectors.outliers import counterfactual_scores, make_detector
from ogaudit.errors import SettingsError
from ogaudit.gradients import HeadEvidence
from ogaudit.settings import DYNAMICS_DETECTORS, AuditSettings
from tests.detectors.test_detectors import trajectory_of


def _evidence(n=120, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    features = np.eye(3, dtype=np.float32)[labels] + rng.normal(0, 0.05, (n, 3)).astype(np.float32)
    logits = 3.0 * np.eye(3, dtype=np.float32)[labels]
    return HeadEvidence.from_head(features, logits, labels), logits, features


@pytest.mark.parametrize("name", DYNAMICS_DETECTORS)
def test_a_model_without_a_trajectory_is_refused_with_the_fix(name):
    evidence, _, _ = _evidence()
    with pytest.raises(SettingsError, match="posterior"):
        make_detector(name).fit(evidence)


def test_a_trajectory_of_other_samples_is_refused():
    evidence, logits, features = _evidence()
    other = trajectory_of(logits[:50], evidence.labels[:50], features[:50])
    with pytest.raises(SettingsError, match="holds 50 samples"):
        make_detector("aum", trajectory=other).fit(evidence)


def test_checkpoint_settings_refuse_a_dynamics_detector(tmp_path):
    with pytest.raises(SettingsError, match="trajectory"):
        AuditSettings(model=str(tmp_path / "model.pt"), detector="dynamics")


def test_early_neighbours_vote_and_the_fused_posterior_is_their_product():
    evidence, logits, features = _evidence()
    labels = evidence.labels.copy()
    labels[3] = (labels[3] + 1) % 3  # a wrong label among neighbours of its true class
    evidence = HeadEvidence(evidence.features, evidence.probs, labels)
    trajectory = trajectory_of(logits, labels, features)
    voting = EarlyNeighbourDetector(k=10, trajectory=trajectory).fit(evidence)
    q = voting.posterior(evidence)
    assert q[3].argmax() != labels[3] and np.argmax(voting.outlier_scores(evidence)) == 3
    fused = DynamicsPosteriorDetector(k=10, trajectory=trajectory).fit(evidence)
    expected = q * trajectory.mean_probs()
    np.testing.assert_allclose(fused.posterior(evidence), expected / expected.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(counterfactual_scores(fused, evidence), -np.log(fused.posterior(evidence)), rtol=1e-6)


def test_the_audit_feeds_dynamics_detectors_its_own_training_and_caches_it(digits, tmp_path):
    from ogaudit.pipeline.run import audit

    settings = AuditSettings(
        model="mlp", detector="dynamics", epochs=8, noise_rate=0.15, noise_kind="pairs", map_method="none", limit=600
    )
    first = audit("digits", settings, cache_dir=tmp_path)
    assert first.record["metrics"]["precision_at_budget"] >= 0.8
    again = audit("digits", settings, cache_dir=tmp_path)
    assert again.record["model"]["cached"]
    np.testing.assert_array_equal(first.scores["score"], again.scores["score"])
    other = audit("digits", AuditSettings(**{**settings.to_dict(), "detector": "aum"}), cache_dir=tmp_path)
    assert other.record["model"]["cached"] and other.record["metrics"]["average_precision"] > 0.5
