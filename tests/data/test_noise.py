"""Planted noise of every kind on real digits: seeded, the truth kept, and each kind shaped as its docstring says."""

import numpy as np
import pytest

from ogaudit.data.dataset import Dataset
from ogaudit.data.noise import (
    annotator_noise,
    class_similarity,
    inject_label_noise,
    weak_features,
    weak_probabilities,
)
from ogaudit.errors import SettingsError
from ogaudit.settings import NOISE_KINDS, AuditSettings


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_every_kind_is_seeded_keeps_the_truth_and_plants_the_rate(digits, kind):
    noisy = inject_label_noise(digits, 0.2, kind=kind, seed=3)
    again = inject_label_noise(digits, 0.2, kind=kind, seed=3)
    other = inject_label_noise(digits, 0.2, kind=kind, seed=4)
    np.testing.assert_array_equal(noisy.y, again.y)
    np.testing.assert_array_equal(noisy.true_y, digits.y)
    assert not np.array_equal(noisy.y, other.y)
    wrong = int((noisy.y != noisy.true_y).sum())
    target = round(0.2 * len(digits))
    assert abs(wrong - target) <= (3 if kind == "annotator" else 0), (kind, wrong, target)
    assert noisy.y.dtype == np.int64 and noisy.y.min() >= 0 and noisy.y.max() < digits.n_classes


def test_noise_on_noise_starts_from_the_clean_labels(digits):
    twice = inject_label_noise(inject_label_noise(digits, 0.3, seed=0), 0.1, kind="instance", seed=1)
    np.testing.assert_array_equal(twice.true_y, digits.y)
    assert (twice.y != twice.true_y).sum() == round(0.1 * len(digits))


def test_instance_noise_follows_the_weak_classifiers_doubt_and_second_choice(digits):
    probs = weak_probabilities(digits.x, digits.y, digits.n_classes, seed=0)
    noisy = inject_label_noise(digits, 0.15, kind="instance", seed=0)
    flipped = noisy.y != noisy.true_y
    rows = np.arange(len(digits))
    doubt = 1.0 - probs[rows, digits.y]
    # drawn where the weak classifier doubts the true class: the flipped are far less sure than the rest
    assert doubt[flipped].mean() > 3 * doubt[~flipped].mean()
    others = probs.copy()
    others[rows, digits.y] = -np.inf
    np.testing.assert_array_equal(noisy.y[flipped], others[flipped].argmax(axis=1))
    # cross-fitted: the weak classifier is weak (it does not see the samples it scores), not a lookup table
    accuracy = (probs.argmax(axis=1) == digits.y).mean()
    assert 0.7 < accuracy < 0.99


def test_instance_and_annotator_noise_concentrate_on_confusable_classes_unlike_symmetric(digits):
    def top_pair_share(noisy: Dataset) -> float:
        wrong = noisy.y != noisy.true_y
        pairs = np.bincount(noisy.true_y[wrong] * 10 + noisy.y[wrong], minlength=100)
        return np.sort(pairs)[::-1][:10].sum() / wrong.sum()

    symmetric = top_pair_share(inject_label_noise(digits, 0.2, kind="symmetric", seed=0))
    assert symmetric < 0.3  # 10 of 90 pairs, uniformly: ~0.11 plus chance
    assert top_pair_share(inject_label_noise(digits, 0.2, kind="instance", seed=0)) > 0.45
    assert top_pair_share(inject_label_noise(digits, 0.2, kind="annotator", seed=0)) > 0.45


def test_annotator_noise_follows_the_class_similarity_and_hits_the_count():
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 4, size=4000)
    similarity = np.array([[0, 0.9, 0.05, 0.05], [0.9, 0, 0.05, 0.05], [0.05, 0.05, 0, 0.9], [0.05, 0.05, 0.9, 0]])
    noisy = annotator_noise(similarity, clean, 800, np.random.default_rng(1))
    wrong = noisy != clean
    assert abs(int(wrong.sum()) - 800) <= 3
    partner = np.array([1, 0, 3, 2])
    assert (noisy[wrong] == partner[clean[wrong]]).mean() > 0.7
    none = annotator_noise(similarity, clean, 0, np.random.default_rng(1))
    np.testing.assert_array_equal(none, clean)


def test_class_similarity_rows_are_class_means():
    probs = np.array([[0.8, 0.2, 0.0], [0.6, 0.4, 0.0], [0.1, 0.8, 0.1]])
    expected = [[0.7, 0.3, 0.0], [0.1, 0.8, 0.1], [1 / 3, 1 / 3, 1 / 3]]  # class 2 has no samples: uniform
    np.testing.assert_allclose(class_similarity(probs, np.array([0, 0, 1]), 3), expected)


def test_weak_features_pool_images_of_any_shape_and_keep_vectors():
    images = np.arange(2 * 40 * 20 * 3, dtype=np.uint8).reshape(2, 40, 20, 3)
    pooled = weak_features(images)
    assert pooled.shape == (2, 13 * 10 * 3)  # 40 → 13 rows of 3 pixels, 20 → 10 columns of 2; channels kept
    np.testing.assert_allclose(pooled[0, 0], images[0, :3, :2, 0].astype(np.float32).mean())
    vectors = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32)
    np.testing.assert_array_equal(weak_features(vectors), vectors)


def test_instance_noise_on_feature_vectors_and_bad_requests():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 100)
    x = (rng.normal(size=(300, 8)) + y[:, None]).astype(np.float32)
    data = Dataset(x=x, y=y, sample_ids=np.arange(300).astype(str), class_names=["a", "b", "c"], kind="npz", source="")
    noisy = inject_label_noise(data, 0.1, kind="instance", seed=0)
    assert (noisy.y != y).sum() == 30
    with pytest.raises(SettingsError, match="noise kind"):
        inject_label_noise(data, 0.1, kind="human")
    with pytest.raises(SettingsError, match="noise rate"):
        inject_label_noise(data, 1.0)
    empty = Dataset(
        x=np.zeros((300, 0), np.float32),
        y=y,
        sample_ids=data.sample_ids,
        class_names=data.class_names,
        kind="npz",
        source="",
    )
    with pytest.raises(SettingsError, match="features or pixels"):
        inject_label_noise(empty, 0.1, kind="annotator")


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_every_kind_is_a_setting(kind):
    assert AuditSettings(noise_rate=0.1, noise_kind=kind).noise_kind == kind
