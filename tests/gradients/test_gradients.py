"""The closed-form last-layer gradients equal the paper's batch-size-1 autograd loop; both kinds of evidence
play the one declared role, and the map's vectors keep the gradients' geometry without building them."""

import numpy as np
import pytest
import torch

from ogaudit.errors import SettingsError
from ogaudit.gradients import GradientEvidence, HeadEvidence, ProjectedEvidence, reference_last_layer_gradients
from ogaudit.models.nets import build_model
from ogaudit.models.training import TrainSettings, batched_features, train_model


def _evidence(model, dataset):
    features = batched_features(model, dataset.x)
    with torch.no_grad():
        logits = model.head(torch.as_tensor(features)).numpy()
    return HeadEvidence.from_head(features, logits, dataset.y)


def test_closed_form_equals_batch_one_autograd(digits):
    small = digits.subset(np.arange(40))
    model = build_model("cnn", small, seed=0)
    train_model(model, small, TrainSettings(epochs=1))
    evidence = _evidence(model, small)
    reference = reference_last_layer_gradients(model, small.x, small.y)
    assert reference.shape == (40, 10 * 129)
    np.testing.assert_allclose(evidence.gradients(), reference, rtol=1e-4, atol=1e-6)


def test_mlp_closed_form_equals_reference_on_vectors(digits):
    from ogaudit.data.arrays import dataset_from_arrays

    vectors = dataset_from_arrays(digits.x[:30].reshape(30, -1).astype(np.float32), digits.y[:30])
    model = build_model("mlp", vectors, seed=1)
    evidence = _evidence(model, vectors)
    reference = reference_last_layer_gradients(model, vectors.x, vectors.y)
    np.testing.assert_allclose(evidence.gradients(), reference, rtol=1e-4, atol=1e-6)


def test_factorised_norms_equal_norms_of_built_gradients():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 4)).astype(np.float32)
    evidence = HeadEvidence.from_head(rng.normal(size=(50, 7)).astype(np.float32), logits, rng.integers(0, 4, 50))
    built = evidence.gradients()
    for order in (1, 2):
        np.testing.assert_allclose(evidence.gradient_norms(order), np.linalg.norm(built, ord=order, axis=1), rtol=1e-5)
    counterfactual = np.full(50, 2)
    np.testing.assert_allclose(
        evidence.gradient_norms(2, counterfactual),
        np.linalg.norm(evidence.gradients(counterfactual), axis=1),
        rtol=1e-5,
    )


# ---------------------------------------------------------------- the evidence interface


def _random_head(n=300, classes=5, width=63, seed=0) -> HeadEvidence:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, width)).astype(np.float32)
    return HeadEvidence.from_head(
        features, rng.normal(size=(n, classes)).astype(np.float32), rng.integers(0, classes, n)
    )


def _cosines(rows: np.ndarray) -> np.ndarray:
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return unit @ unit.T


def test_both_evidence_kinds_implement_the_interface():
    head = _random_head()
    projected = ProjectedEvidence(head.gradients()[:, :40].copy(), head.probs, head.labels)
    for evidence in (head, projected):
        assert isinstance(evidence, GradientEvidence)
    assert head.counterfactual and not projected.counterfactual
    with pytest.raises(SettingsError, match="Counterfactual labels need last-layer evidence"):
        projected.gradients(np.zeros(300, dtype=np.int64))
    np.testing.assert_allclose(np.linalg.norm(projected.directions(), axis=1), 1, rtol=1e-5)


def test_map_vectors_are_the_exact_gradients_when_they_fit():
    head = _random_head(width=15)  # 5 classes x 16 = 80 entries
    np.testing.assert_allclose(head.map_vectors(80), head.gradients(), rtol=1e-6)


def test_map_vectors_keep_gradient_cosines_without_building_the_gradients(monkeypatch):
    head = _random_head(n=200, classes=4, width=2047)  # full gradients: 4 x 2048 = 8192 entries each
    exact = _cosines(head.gradients())

    def refuse(*args, **kwargs):
        raise AssertionError("map_vectors must not build the full gradients")

    monkeypatch.setattr(HeadEvidence, "gradients", refuse)
    vectors = head.map_vectors(512, seed=3)
    assert vectors.shape == (200, 512)
    error = np.abs(_cosines(vectors) - exact)
    # Johnson-Lindenstrauss with k = 512 / 4 = 128 feature dimensions: cosine errors of about 1/sqrt(k) = 0.09 at
    # most (scaled by the residual cosine), unbiased; the 200 x 200 pairs measured 0.033 mean, 0.32 max.
    assert error.mean() < 0.05 and error.max() < 0.5, (error.mean(), error.max())
    assert abs((_cosines(vectors) - exact).mean()) < 0.01


def test_projected_evidence_is_projected_again_only_above_the_map_size():
    head = _random_head()
    matrix = head.gradients()  # (300, 320)
    projected = ProjectedEvidence(matrix, head.probs, head.labels)
    assert projected.map_vectors(512) is not None and projected.map_vectors(512).shape == (300, 320)
    smaller = projected.map_vectors(128, seed=1)
    assert smaller.shape == (300, 128)
    assert np.abs(_cosines(smaller) - _cosines(matrix)).mean() < 0.08


def test_map_vectors_of_some_rows_equal_those_rows_of_all():
    """The map projects a million rows in parts: a part must be the same rows of the whole, for both kinds."""
    head = _random_head(n=300, classes=4, width=200)
    projected = ProjectedEvidence(head.gradients(), head.probs, head.labels)
    rows = np.array([0, 7, 150, 299])
    for evidence, dim in ((head, 64), (head, 4096), (projected, 128), (projected, 4096)):
        whole = evidence.map_vectors(dim, seed=5)
        np.testing.assert_allclose(evidence.map_vectors(dim, seed=5, rows=rows), whole[rows], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            evidence.map_vectors(dim, seed=5, rows=slice(10, 20)), whole[10:20], rtol=1e-5, atol=1e-5
        )
