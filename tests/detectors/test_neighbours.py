"""Neighbour search (exact below the size threshold, approximate above), progress and Cancel in the detect stage,
and the map fitted on a sample with the rest transformed."""

import threading

import numpy as np
import pytest

from ogaudit.detectors import neighbours
from ogaudit.errors import Cancelled, SettingsError
from ogaudit.gradients import HeadEvidence
from ogaudit.map import layout as embedding


def _clusters(n: int, *, dim: int = 16, centres: int = 10, spread: float = 0.35, seed: int = 0):
    """(n, dim) unit rows around ``centres`` random directions, and each row's centre."""
    rng = np.random.default_rng(seed)
    middle = rng.normal(size=(centres, dim))
    which = rng.integers(0, centres, n)
    rows = middle[which] + spread * rng.normal(size=(n, dim))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32), which


def _reference(directions: np.ndarray, k: int) -> np.ndarray:
    """The slow reference: the full (N × N) cosine matrix, self removed, each row sorted."""
    cosines = directions.astype(np.float64) @ directions.T.astype(np.float64)
    np.fill_diagonal(cosines, -np.inf)
    return np.argsort(-cosines, axis=1, kind="stable")[:, :k]


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float((truth[:, :, None] == found[:, None, :]).any(axis=2).mean())


def test_below_the_threshold_the_search_is_exact_and_sorted():
    directions, _ = _clusters(500, seed=1)
    assert len(directions) <= neighbours.APPROXIMATE_ABOVE
    found, cosines = neighbours.nearest_neighbours(directions, 7)
    truth = _reference(directions, 7)
    assert found.shape == (500, 7) and found.dtype == np.int64
    assert _recall(found, truth) == 1.0
    assert (found != np.arange(500)[:, None]).all()
    np.testing.assert_allclose(cosines, np.take_along_axis(directions @ directions.T, found, axis=1), rtol=1e-5)
    assert (np.diff(cosines, axis=1) <= 1e-6).all()  # most similar first


def test_the_exact_backends_find_the_same_neighbours():
    directions, _ = _clusters(1500, dim=24, seed=6)
    by_faiss = neighbours.exact_neighbours(directions, 9, backend="faiss", chunk=400)
    by_torch = neighbours.exact_neighbours(directions, 9, backend="torch", chunk=400)
    truth = _reference(directions, 9)
    assert _recall(by_faiss[0], truth) == 1.0 and _recall(by_torch[0], truth) == 1.0  # near-ties may swap order
    np.testing.assert_allclose(by_faiss[1], by_torch[1], atol=1e-5)
    with pytest.raises(SettingsError, match="backend must be"):
        neighbours.exact_neighbours(directions, 9, backend="sklearn")


def test_above_the_threshold_the_approximate_index_is_used_and_finds_the_neighbours(monkeypatch):
    directions, _ = _clusters(3000, seed=2)
    calls = []
    approximate = neighbours.approximate_neighbours

    def spy(*args, **kwargs):
        calls.append(len(args[0]))
        return approximate(*args, **kwargs)

    monkeypatch.setattr(neighbours, "approximate_neighbours", spy)
    monkeypatch.setattr(neighbours, "APPROXIMATE_ABOVE", 1000)
    found, cosines = neighbours.nearest_neighbours(directions, 20)
    assert calls == [3000]
    assert found.shape == (3000, 20) and (found >= 0).all()
    assert (found != np.arange(3000)[:, None]).all()
    assert all(len(set(row)) == 20 for row in found.tolist())  # no row listed twice
    assert _recall(found, _reference(directions, 20)) >= 0.95
    np.testing.assert_allclose(cosines, np.take_along_axis(directions @ directions.T, found, axis=1), rtol=1e-4)


def test_approximate_search_is_deterministic_and_handles_tiny_inputs():
    directions, _ = _clusters(800, seed=3)
    first = neighbours.approximate_neighbours(directions, 10, seed=0)
    second = neighbours.approximate_neighbours(directions, 10, seed=0)
    np.testing.assert_array_equal(first[0], second[0])
    found, _ = neighbours.approximate_neighbours(directions[:4], 10)
    assert found.shape == (4, 3) and sorted(found[0].tolist()) == [1, 2, 3]


def test_k_below_one_is_refused():
    with pytest.raises(SettingsError, match="k must be at least 1; got 0"):
        neighbours.nearest_neighbours(np.eye(3, dtype=np.float32), 0)


@pytest.mark.parametrize("approximate", [False, True])
def test_search_reports_progress_and_stops_on_cancel(approximate, monkeypatch):
    monkeypatch.setattr(neighbours, "INDEX_BATCH", 500)
    directions, _ = _clusters(2500, seed=4)
    cancel = threading.Event()
    seen = []

    def progress(stage, fraction, message):
        seen.append((stage, fraction))
        if len(seen) == 2:
            cancel.set()

    with pytest.raises(Cancelled):
        neighbours.nearest_neighbours(
            directions, 5, approximate=approximate, progress=progress, cancel=cancel, span=(0.2, 0.6), chunk=500
        )
    assert len(seen) == 2 and all(stage == "detect" and 0.2 <= f <= 0.6 for stage, f in seen)


def test_the_default_detector_scores_alike_with_approximate_neighbours(monkeypatch):
    """Same evidence, exact vs approximate neighbours: the posterior detector's scores barely move."""
    from ogaudit.detectors.outliers import make_detector

    directions, centre = _clusters(3000, seed=5)
    rng = np.random.default_rng(5)
    labels = centre.copy()
    flipped = rng.random(3000) < 0.2
    labels[flipped] = (labels[flipped] + rng.integers(1, 10, flipped.sum())) % 10
    logits = rng.normal(size=(3000, 10)).astype(np.float32)
    evidence = HeadEvidence.from_head(directions, logits, labels)
    exact = make_detector("posterior").fit(evidence).outlier_scores(evidence)
    monkeypatch.setattr(neighbours, "APPROXIMATE_ABOVE", 1000)
    approximate = make_detector("posterior").fit(evidence).outlier_scores(evidence)
    assert np.corrcoef(exact, approximate)[0, 1] > 0.98
    assert np.mean(np.abs(exact - approximate)) < 0.05 * np.mean(np.abs(exact))


def _detect_inputs(n: int = 1500, classes: int = 5):
    from ogaudit.data.dataset import Dataset

    directions, centre = _clusters(n, centres=classes, seed=6)
    labels = centre.astype(np.int64)
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(n, classes)).astype(np.float32)
    head = HeadEvidence.from_head(directions, logits, labels)
    dataset = Dataset(
        x=directions,
        y=labels,
        sample_ids=np.array([f"s{i}" for i in range(n)]),
        class_names=[f"c{c}" for c in range(classes)],
        kind="npz",
        source="test",
    )
    return head, dataset


@pytest.mark.parametrize("detector", ["posterior", "consensus", "iforest"])
def test_detect_reports_progress_from_every_part(detector):
    from ogaudit.pipeline.stages import detect as _detect
    from ogaudit.settings import AuditSettings

    head, dataset = _detect_inputs()
    seen = []
    table, label_evidence, neighbours, state = _detect(
        head, None, dataset, AuditSettings(detector=detector), progress=lambda *a: seen.append(a), cancel=None
    )
    assert len(table) == len(dataset) and label_evidence.shape == (len(dataset), 5)
    assert (neighbours is None) == (detector == "iforest")
    assert state == {}  # only posterior-auto reads something from the data
    if neighbours is not None:
        assert neighbours[0].shape == neighbours[1].shape == (len(dataset), 20)
    fractions = [fraction for stage, fraction, _ in seen]
    assert {stage for stage, _, _ in seen} == {"detect"}
    assert fractions == sorted(fractions) and fractions[-1] >= 0.95
    assert any("flagging" in message for *_, message in seen)
    if detector != "iforest":
        assert any("neighbours" in message for *_, message in seen)


@pytest.mark.parametrize("when", ["neighbours", "label evidence", "flagging"])
def test_detect_stops_with_cancelled_when_the_progress_callback_sets_cancel(when):
    from ogaudit.pipeline.stages import detect as _detect
    from ogaudit.settings import AuditSettings

    head, dataset = _detect_inputs()
    cancel = threading.Event()
    detector = "posterior" if when != "label evidence" else "consensus"

    def progress(stage, fraction, message):
        if when in message:
            cancel.set()

    with pytest.raises(Cancelled):
        _detect(head, None, dataset, AuditSettings(detector=detector), progress=progress, cancel=cancel)
    assert cancel.is_set()


def test_detect_honours_cancel_on_the_approximate_path(monkeypatch):
    from ogaudit.pipeline.stages import detect as _detect
    from ogaudit.settings import AuditSettings

    monkeypatch.setattr(neighbours, "APPROXIMATE_ABOVE", 100)
    monkeypatch.setattr(neighbours, "INDEX_BATCH", 256)
    head, dataset = _detect_inputs()
    cancel = threading.Event()
    messages = []

    def progress(stage, fraction, message):
        messages.append(message)
        if "approximate neighbours" in message:
            cancel.set()

    with pytest.raises(Cancelled):
        _detect(head, None, dataset, AuditSettings(), progress=progress, cancel=cancel)
    assert any("building the neighbour index" in m for m in messages)


@pytest.mark.slow
def test_map_above_the_sample_size_fits_a_sample_and_places_every_other_point(monkeypatch):
    monkeypatch.setattr(embedding, "MAP_SAMPLE", 300)
    monkeypatch.setattr(embedding, "TRANSFORM_CHUNK", 128)
    vectors, centre = _clusters(700, dim=24, centres=4, spread=0.3, seed=7)
    seen = []
    coords = embedding.gradient_map(vectors, method="umap", seed=3, progress=lambda *a: seen.append(a[2]))
    assert coords.shape == (700, 2) and coords.dtype == np.float32 and np.isfinite(coords).all()
    assert sum("placing" in message for message in seen) == 4  # 400 others in chunks of 128
    sample = embedding.map_sample(700, 3)
    assert len(sample) == 300 and len(np.unique(sample)) == 300
    # the fitted sample keeps its own layout whatever the other rows are
    other = vectors.copy()
    rest = np.setdiff1d(np.arange(700), sample)
    other[rest] = _clusters(len(rest), dim=24, centres=4, spread=0.3, seed=8)[0]
    again = embedding.gradient_map(other, method="umap", seed=3)
    np.testing.assert_array_equal(again[sample], coords[sample])
    # a placed point lands among its own cluster's fitted points
    nearest = np.argmin(((coords[rest][:, None, :] - coords[sample][None, :, :]) ** 2).sum(axis=2), axis=1)
    assert (centre[sample][nearest] == centre[rest]).mean() > 0.9
    # deterministic for a seed
    np.testing.assert_array_equal(embedding.gradient_map(vectors, method="umap", seed=3), coords)


def test_map_at_or_below_the_sample_size_is_fitted_whole(monkeypatch):
    vectors, _ = _clusters(200, dim=24, seed=9)
    whole = embedding.gradient_map(vectors, method="pca", seed=0)
    monkeypatch.setattr(embedding, "MAP_SAMPLE", 200)
    np.testing.assert_array_equal(embedding.gradient_map(vectors, method="pca", seed=0), whole)
    monkeypatch.setattr(embedding, "MAP_SAMPLE", 150)
    sampled = embedding.gradient_map(vectors, method="pca", seed=0)
    assert sampled.shape == (200, 2) and not np.array_equal(sampled, whole)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        embedding.gradient_map(vectors, method="pca", seed=0, cancel=cancel)


def test_near_duplicates_and_run_evidence_use_the_index_above_the_threshold(monkeypatch):
    from ogaudit.review.duplicates import near_pairs
    from ogaudit.review.evidence import RunEvidence

    directions, centre = _clusters(2000, dim=32, seed=10)
    copies = np.arange(0, 2000, 50)
    directions[copies + 1] = directions[copies]  # 40 planted near-copies (cosine 1)
    exact_pairs = near_pairs(directions, threshold=0.999)
    rng = np.random.default_rng(10)
    features = np.column_stack([directions, np.ones(2000, dtype=np.float32)])
    probs = rng.dirichlet(np.ones(10), 2000)
    evidence = RunEvidence(features, probs, centre, calibration=None, k=20)
    exact_wrong = evidence.raw_wrong()
    calls = []
    approximate = neighbours.approximate_neighbours
    monkeypatch.setattr(neighbours, "APPROXIMATE_ABOVE", 1000)
    monkeypatch.setattr(neighbours, "approximate_neighbours", lambda *a, **kw: calls.append(1) or approximate(*a, **kw))
    approximate_pairs = near_pairs(directions, threshold=0.999)
    assert len(exact_pairs) >= 40
    np.testing.assert_array_equal(approximate_pairs, exact_pairs[np.lexsort(exact_pairs.T[::-1])])
    approximate_wrong = evidence.raw_wrong()
    assert len(calls) == 2
    assert np.mean(np.abs(approximate_wrong - exact_wrong)) < 0.01
