"""Project folders and finished runs: reopened from disk in seconds, tied to the same data, without retraining."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ogaudit.data import dataset_from_arrays
from ogaudit.errors import DataError
from ogaudit.pipeline import AuditSettings, audit
from ogaudit.project import (
    is_finished,
    list_projects,
    load_run_dataset,
    new_project,
    open_ledger,
    open_run,
    read_request,
    read_verify_report,
    slugify,
    thumbnail,
    workspace_root,
    write_request,
)

FAST = AuditSettings(epochs=1, map_method="pca", noise_rate=0.1, limit=300)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, cache_dir):
    """A real audit of 300 digits (10% planted noise) written to a project folder, and its in-memory result."""
    project = tmp_path_factory.mktemp("runs") / "digits"
    result = audit("digits", FAST, out_dir=project, cache_dir=cache_dir)
    return project, result


def test_open_run_reads_the_audit_back(finished):
    project, result = finished
    started = time.perf_counter()
    run = open_run(project)
    assert time.perf_counter() - started < 5
    assert run.name == "digits" and run.record["fingerprint"] == result.record["fingerprint"]
    assert run.table["sample_id"].tolist() == result.scores["sample_id"].tolist()
    np.testing.assert_allclose(run.table["x"], result.map["x"], rtol=1e-6)
    np.testing.assert_allclose(run.table["score"], result.scores["score"], rtol=1e-6)
    assert run.table["flagged"].dtype == bool and run.table["flagged"].sum() == result.scores["flagged"].sum()
    ranks = run.by_id.loc[run.flagged_ids, "rank"].tolist()
    assert ranks == sorted(ranks) and ranks[0] == 1
    assert run.position[run.table["sample_id"][7]] == 7
    assert run.class_names == result.dataset.class_names
    assert "300 samples" in run.describe() and "10% planted noise" in run.describe()


def test_the_ledger_opens_without_loading_the_data(finished):
    project, result = finished
    ledger = open_ledger(open_run(project))
    assert ledger.path == project / "ledger.sqlite"
    assert ledger.dataset_fingerprint == result.dataset.fingerprint() and not ledger.dataset_mismatch
    sample = result.dataset.sample_ids[0]
    ledger.decide(sample, "keep", annotator="ann")
    assert ledger.state()["sample_id"].tolist() == [sample]


def test_the_dataset_is_rebuilt_with_the_same_subset_and_noise(finished):
    project, result = finished
    dataset = load_run_dataset(open_run(project))
    assert dataset.fingerprint() == result.dataset.fingerprint()
    np.testing.assert_array_equal(dataset.true_y, result.dataset.true_y)


def test_a_changed_dataset_is_refused(finished, tmp_path):
    project, _ = finished
    run = open_run(project)
    run.record = {**run.record, "dataset": {**run.record["dataset"], "fingerprint": "something-else"}}
    with pytest.raises(DataError, match="changed since the run"):
        load_run_dataset(run)


def test_open_run_explains_an_unfinished_folder(tmp_path):
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(DataError, match="missing scores.csv, map.csv"):
        open_run(tmp_path)
    assert not is_finished(tmp_path)


def test_thumbnails_enlarge_small_images_and_skip_vectors(digits):
    image = thumbnail(digits, 3, 96)
    assert image.shape == (96, 96) and image.dtype == np.uint8
    assert np.array_equal(image[::12, ::12], digits.x[3, :, :, 0])  # nearest neighbour keeps the pixels
    rgb = dataset_from_arrays(np.zeros((4, 300, 150, 3), np.uint8), np.array([0, 1, 0, 1]))
    assert thumbnail(rgb, 0, 100).shape == (100, 50, 3)
    vectors = dataset_from_arrays(np.zeros((4, 5), np.float32), np.array([0, 1, 0, 1]))
    assert thumbnail(vectors, 0) is None


def test_projects_are_listed_newest_first(tmp_path, monkeypatch):
    monkeypatch.setenv("OGAUDIT_HOME", str(tmp_path / "home"))
    root = workspace_root()
    assert root == tmp_path / "home" and list_projects(root) == []
    first = new_project(root, "My data!")
    second = new_project(root, "My data!")
    assert (first.name, second.name) == ("My-data", "My-data-2")
    write_request(first, "digits", FAST)
    time.sleep(0.05)
    write_request(second, "mnist5k", FAST)
    listed = list_projects(root)
    assert [p.name for p in listed] == ["My-data-2", "My-data"]
    assert [p.data for p in listed] == ["mnist5k", "digits"] and not listed[0].finished
    assert read_request(first)[1]["epochs"] == 1 and read_request(tmp_path) is None
    assert read_verify_report(first) is None


def test_slugify_keeps_names_folder_safe():
    assert slugify("../../etc/passwd") == "etc-passwd"
    assert slugify("  ") == "project"
    assert len(slugify("x" * 200)) == 60
