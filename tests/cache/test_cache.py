"""The one artifact cache: entries keyed by their inputs, settings beside them, atomic, verified on read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ogaudit.cache.artifacts import ArtifactCache
from ogaudit.errors import StorageError
from ogaudit.pipeline.run import AuditSettings, audit

FAST = AuditSettings(epochs=1, map_method="pca", limit=200)


def write_array(values):
    def writer(folder: Path) -> None:
        np.save(folder / "a.npy", values)

    return writer


def read_array(folder: Path) -> np.ndarray:
    return np.load(folder / "a.npy")


def test_an_entry_round_trips_with_its_settings_beside_it(tmp_path):
    entry = ArtifactCache(tmp_path).entry("map", "k1", {"method": "pca", "seed": 0})
    assert entry.load(read_array) is None
    entry.save(write_array(np.arange(4)))
    assert json.loads((entry.path / "entry.json").read_text())["settings"] == {"method": "pca", "seed": 0}
    np.testing.assert_array_equal(entry.load(read_array), np.arange(4))
    assert [p.name for p in entry.path.parent.iterdir()] == ["k1"]  # no staging folder left behind


def test_damaged_or_mismatched_entries_are_recomputed_with_a_notice(tmp_path):
    cache = ArtifactCache(tmp_path)
    notices: list[str] = []
    entry = cache.entry("map", "k1", {"seed": 0})
    entry.save(write_array(np.arange(4)))
    (entry.path / "a.npy").write_bytes(b"\x93NUMPY truncated")
    assert entry.load(read_array, notice=notices.append) is None and not entry.path.exists()
    assert "could not be read" in notices[-1]

    entry.save(write_array(np.arange(4)))
    other = cache.entry("map", "k1", {"seed": 1})  # same key, other settings: a stale entry
    assert other.load(read_array, notice=notices.append) is None
    assert "saved for other settings" in notices[-1]

    entry.save(write_array(np.arange(4)))
    (entry.path / "entry.json").write_text("{")
    assert entry.load(read_array, notice=notices.append) is None and "unreadable" in notices[-1]


def test_a_failed_write_leaves_no_entry(tmp_path):
    entry = ArtifactCache(tmp_path).entry("model", "k", {})

    def fails(folder: Path) -> None:
        (folder / "half.pt").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(StorageError, match="No space left on device.*OGAUDIT_CACHE"):
        entry.save(fails)
    assert entry.load(read_array) is None and list(entry.path.parent.iterdir()) == []


def test_the_previous_cache_schemes_files_are_removed_and_nothing_else(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "0123456789abcdef.pt").write_bytes(b"x")
    (tmp_path / "models" / "0123456789abcdef.trajectory.npy").write_bytes(b"x")
    (tmp_path / "models" / "my-own-model.pt").write_bytes(b"mine")
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "fedcba9876543210.npy").write_bytes(b"x")
    ArtifactCache(tmp_path)
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["my-own-model.pt"]
    assert not (tmp_path / "maps").exists()


def test_the_staging_folders_of_killed_saves_are_removed_after_a_day_and_live_ones_kept(tmp_path):
    import os
    import time

    from ogaudit.cache.artifacts import STALE_PART_S

    kind = tmp_path / "cache" / "v1" / "scores"
    killed, live, entry = kind / ".0123456789abcdef.1a2b3c4d.part", kind / ".0123456789abcdef.5e6f7a8b.part", kind / "k"
    outside = tmp_path / "outside"
    for folder in (killed, live, entry, outside):
        folder.mkdir(parents=True)
        (folder / "scores.npy").write_bytes(b"x")
    (kind / ".fedcba9876543210.00000000.part").symlink_to(outside, target_is_directory=True)
    day_ago = time.time() - STALE_PART_S - 60
    for path in (killed, entry, kind / ".fedcba9876543210.00000000.part"):
        os.utime(path, (day_ago, day_ago), follow_symlinks=False)
    ArtifactCache(tmp_path / "cache")
    assert not killed.exists() and live.is_dir() and entry.is_dir()  # only hidden staging folders, only old ones
    assert (outside / "scores.npy").is_file()  # a link is not followed


def test_a_damaged_cached_model_is_retrained_with_a_notice_not_a_traceback(tmp_path):
    cache = tmp_path / "cache"
    first = audit("digits", FAST, cache_dir=cache)
    assert first.record["notices"] == [] and first.record["model"]["cached"] is False
    [model_file] = (cache / "v1" / "model").glob("*/model.pt")
    model_file.write_bytes(b"not a model")
    [evidence_file] = (cache / "v1" / "evidence").glob("*/probs-00000.npy")
    evidence_file.write_bytes(b"")
    again = audit("digits", FAST, cache_dir=cache)
    assert again.record["model"]["cached"] is False
    assert len(again.record["notices"]) == 2 and all("recomputed" in n for n in again.record["notices"])
    np.testing.assert_allclose(again.scores["score"], first.scores["score"], rtol=1e-5)
    third = audit("digits", FAST, cache_dir=cache)
    assert third.record["model"]["cached"] is True and third.record["notices"] == []


def test_a_rerun_reads_the_detectors_scores_from_the_cache_and_another_budget_reuses_them(tmp_path, monkeypatch):
    import ogaudit.pipeline.stages as pipeline

    cache = tmp_path / "cache"
    first = audit("digits", FAST, cache_dir=cache)
    assert len(list((cache / "v1" / "scores").iterdir())) == 1

    def no_detector(*args, **kwargs):
        raise AssertionError("the detector ran although its scores were cached")

    monkeypatch.setattr(pipeline, "_outlier_scores", no_detector)
    again = audit("digits", FAST, cache_dir=cache)
    assert np.array_equal(again.scores["score"], first.scores["score"])
    assert np.array_equal(again.label_evidence, first.label_evidence)
    wider = audit("digits", AuditSettings(**{**FAST.to_dict(), "budget": 0.2}), cache_dir=cache)
    assert wider.scores["flagged"].sum() > first.scores["flagged"].sum()
    assert np.array_equal(wider.scores["score"], first.scores["score"])
    monkeypatch.undo()
    other = audit("digits", AuditSettings(**{**FAST.to_dict(), "detector": "loss"}), cache_dir=cache)
    assert len(list((cache / "v1" / "scores").iterdir())) == 2  # another detector: its own entry
    assert not np.array_equal(other.scores["score"], first.scores["score"])


def test_a_second_writer_of_the_same_entry_waits_for_the_first_then_reads_it(tmp_path):
    """Two jobs (threads here; processes alike) that need the same entry: one computes, the other waits, is told
    so, can cancel while waiting, and then finds the entry complete."""
    import threading

    from ogaudit.errors import Cancelled

    entry = ArtifactCache(tmp_path).entry("map", "k", {})
    other = ArtifactCache(tmp_path).entry("map", "k", {})
    inside, release, told = threading.Event(), threading.Event(), []

    def first() -> None:
        with entry.exclusive():
            inside.set()
            release.wait(10)
            entry.save(write_array(np.arange(3)))

    worker = threading.Thread(target=first)
    worker.start()
    assert inside.wait(10)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled), other.exclusive(cancel=cancel, on_wait=lambda: told.append("waiting")):
        pass
    assert told == ["waiting"]
    threading.Timer(0.3, release.set).start()
    with other.exclusive(on_wait=lambda: told.append("waiting again")):
        np.testing.assert_array_equal(other.load(read_array), np.arange(3))
    worker.join()
    assert told == ["waiting", "waiting again"]


def test_an_entry_saved_meanwhile_by_another_writer_is_kept_without_an_error(tmp_path, monkeypatch):
    from ogaudit.cache.artifacts import CacheEntry

    entry = ArtifactCache(tmp_path).entry("map", "k", {})
    remove, raced = CacheEntry._remove, []

    def another_writer_in_between(self) -> None:  # the other process renames its entry into place right here
        remove(self)
        if not raced:
            raced.append(True)
            ArtifactCache(tmp_path).entry("map", "k", {}).save(write_array(np.arange(5)))

    monkeypatch.setattr(CacheEntry, "_remove", another_writer_in_between)
    entry.save(write_array(np.arange(5)))
    monkeypatch.undo()
    np.testing.assert_array_equal(entry.load(read_array), np.arange(5))
    assert [p.name for p in entry.path.parent.iterdir()] == ["k"]


@pytest.mark.parametrize("odd", ["dangling link", "link to a folder", "fifo"])
def test_links_and_pipes_in_the_cache_are_discarded_never_followed_or_read(tmp_path, odd):
    import os

    entry = ArtifactCache(tmp_path).entry("map", "k", {})
    entry.path.parent.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not the cache's")
    if odd == "dangling link":
        entry.path.symlink_to(tmp_path / "missing")
    elif odd == "link to a folder":
        entry.path.symlink_to(elsewhere)
    else:
        entry.save(write_array(np.arange(2)))
        os.mkfifo(entry.path / "a.npy.fifo")
    notices: list[str] = []
    assert entry.load(read_array, notice=notices.append) is None  # a FIFO would block a read forever
    assert len(notices) == 1 and "discarded" in notices[0]
    entry.save(write_array(np.arange(3)))
    np.testing.assert_array_equal(entry.load(read_array), np.arange(3))
    assert (elsewhere / "keep.txt").read_text() == "not the cache's"


def test_links_and_files_planted_in_the_cache_layout_are_never_followed_and_errors_are_clear(tmp_path):
    """A link as a work folder or lock file is removed (its target untouched); a file where a kind's folder belongs
    is a StorageError naming it; the stale-folder sweep does not go through a linked kind folder."""
    import os
    import time

    import ogaudit.cache.artifacts as cache_module
    from ogaudit.cache.artifacts import STALE_PART_S

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "embeddings.npy").write_bytes(b"mine")
    cache = ArtifactCache(tmp_path / "cache")
    entry = cache.entry("map", "0123456789abcdef", {"a": 1})
    entry.path.parent.mkdir(parents=True)
    work = entry.path.parent / ".0123456789abcdef.work"
    work.symlink_to(outside, target_is_directory=True)
    assert entry.work_dir() == work and work.is_dir() and not work.is_symlink()
    lock = entry.path.parent / ".0123456789abcdef.lock"
    lock.symlink_to(outside / "embeddings.npy")
    with entry.exclusive():
        entry.save(lambda folder: (folder / "x.npy").write_bytes(b"x"))
    assert entry.load(lambda folder: (folder / "x.npy").read_bytes()) == b"x"
    assert (outside / "embeddings.npy").read_bytes() == b"mine" and sorted(p.name for p in outside.iterdir()) == [
        "embeddings.npy"
    ]

    (tmp_path / "cache" / "v1" / "scores").write_bytes(b"not a folder")
    with pytest.raises(StorageError, match="scores.*Remove the file"):
        cache.entry("scores", "0123456789abcdef", {}).save(lambda folder: None)

    victim = outside / ".fedcba9876543210.00000000.part"
    victim.mkdir()
    day_ago = time.time() - STALE_PART_S - 60
    os.utime(victim, (day_ago, day_ago))
    (tmp_path / "cache" / "v1" / "evidence").symlink_to(outside, target_is_directory=True)
    cache_module._swept.discard(cache.root)  # swept when first opened: sweep it again
    ArtifactCache(tmp_path / "cache")
    assert victim.is_dir()  # not swept through the linked kind folder
