"""Hostile and unusual input, failed writes: a clear error or a report, and nothing partial left behind."""

import errno
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from ogaudit.cli import main
from ogaudit.data.load import load_dataset
from ogaudit.errors import DataError, StorageError
from ogaudit.storage import atomic_path, write_json


def test_every_image_mode_is_normalised_and_bombs_are_skipped(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (16, 16), (200, 10, 10)).save(tmp_path / cls / "rgb.png")
    Image.new("CMYK", (16, 16), (0, 50, 0, 0)).save(tmp_path / "a" / "cmyk.jpg")
    Image.new("RGBA", (16, 16), (0, 50, 0, 128)).save(tmp_path / "a" / "rgba.png")
    Image.new("LA", (16, 16)).save(tmp_path / "a" / "la.png")
    Image.new("1", (16, 16)).save(tmp_path / "b" / "bw.png")
    Image.new("I", (16, 16)).save(tmp_path / "b" / "int32.tif")
    Image.new("F", (16, 16)).save(tmp_path / "b" / "float.tif")
    Image.new("L", (8000, 6000)).save(tmp_path / "b" / "huge.png")
    dataset = load_dataset(tmp_path)
    assert len(dataset) == 8 and dataset.x.shape[1:] == (16, 16, 3) and dataset.x.dtype == np.uint8
    assert [(s.path, s.reason.split(" (")[0]) for s in dataset.skipped] == [("b/huge.png", "image too large")]


def test_grayscale_folder_stays_single_channel(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.new("L", (12, 12), 30).save(tmp_path / cls / "x.png")
        Image.new("P", (12, 12)).convert("L").save(tmp_path / cls / "y.png")
    assert load_dataset(tmp_path).x.shape == (4, 12, 12, 1)


def test_failed_write_leaves_neither_partial_nor_temporary_files(tmp_path, monkeypatch):
    target = tmp_path / "scores.csv"
    target.write_text("old complete content")

    def disk_full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(StorageError, match="No space left on device"), atomic_path(target) as tmp:
        tmp.write_text("new half-written content")
    assert target.read_text() == "old complete content"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]


def test_output_path_blocked_by_a_file_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(StorageError, match="Cannot write"):
        write_json(blocker / "run.json", {"a": 1})


def test_cli_reports_unwritable_output_without_traceback(tmp_path, capsys, cache_dir):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(
        [
            "scan",
            "digits",
            "--limit",
            "200",
            "--epochs",
            "1",
            "--map",
            "none",
            "--quiet",
            "--cache-dir",
            str(cache_dir),
            "--out",
            str(blocker / "out"),
        ]
    )
    assert code == 4  # environment: the result could not be written (exit codes by kind)
    assert "Cannot write" in capsys.readouterr().err


labels = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12).map(str.strip)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a.png", "b.png", "c.png", "d.png"]), labels), min_size=1, max_size=6))
def test_manifest_parser_never_crashes_and_keeps_what_it_can(tmp_path_factory, rows):
    root = tmp_path_factory.mktemp("manifest")
    for name in ("a.png", "b.png", "c.png"):  # d.png is listed but missing
        Image.new("L", (6, 6), 90).save(root / name)
    manifest = root / "m.csv"
    import csv

    with open(manifest, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows(rows)
    try:
        dataset = load_dataset(manifest)
    except DataError as error:
        assert str(error)  # a clear refusal: duplicates, a single class or nothing usable
        return
    usable = {p for p, label in rows if p != "d.png" and label}
    assert set(dataset.sample_ids) == usable
    assert len(dataset.sample_ids) + len(dataset.skipped) == len(rows)
    by_path = dict(rows)
    assert all(dataset.class_names[y] == by_path[i] for i, y in zip(dataset.sample_ids, dataset.y))
