"""The closed-form last-layer gradients equal the paper's batch-size-1 autograd loop."""

import numpy as np
import torch

from ogaudit.gradients import HeadEvidence, reference_last_layer_gradients
from ogaudit.models import build_model
from ogaudit.training import TrainSettings, batched_features, train_model


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
    from ogaudit.data import dataset_from_arrays

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
