"""FiftyOne's image-classification exports (:mod:`ogaudit.data.fiftyone`), written here in FiftyOne's on-disk format
(``data/`` + ``labels.json``, as ``FiftyOneImageClassificationDatasetImporter`` reads it; FiftyOne's database does
not start on this machine), and its ``ImageClassificationDirectoryTree`` (an ImageFolder with ``_unlabeled``)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from ogaudit.data.load import load_dataset
from ogaudit.errors import DataError

N = 20


@pytest.fixture(scope="module")
def export(digits, tmp_path_factory):
    """A FiftyOne classification export of 20 digits: class indices into "classes", one sub-folder, one null."""
    root = tmp_path_factory.mktemp("fiftyone") / "export"
    (root / "data" / "batch2").mkdir(parents=True)
    labels = {}
    for i in range(N):
        uuid = f"batch2/{i:024x}" if i >= 15 else f"{i:024x}"
        Image.fromarray(digits.x[i, :, :, 0]).save(root / "data" / f"{uuid}.jpg", quality=95)
        labels[uuid] = int(digits.y[i])
    labels["f" * 24] = None  # an unlabelled sample: left out and listed
    (root / "data" / f"{'f' * 24}.png").write_bytes(b"")
    (root / "labels.json").write_text(json.dumps({"classes": list(digits.class_names), "labels": labels}))
    return root


def test_an_export_loads_with_its_classes_in_order_and_its_uuids_as_ids(export, digits):
    loaded = load_dataset(export)
    assert loaded.kind == "fiftyone" and len(loaded) == N
    assert loaded.class_names == list(digits.class_names)
    assert loaded.sample_ids[0] == f"data/{0:024x}.jpg" and f"data/batch2/{15:024x}.jpg" in set(loaded.sample_ids)
    order = {sid: i for i, sid in enumerate(loaded.sample_ids)}
    assert loaded.y[order[f"data/batch2/{19:024x}.jpg"]] == digits.y[19]
    assert [s.reason for s in loaded.skipped] == ["unlabelled (null target)"]


def test_names_and_classification_dicts_are_targets_too(export, tmp_path, digits):
    names = {
        uuid: {"label": digits.class_names[target], "confidence": 0.9} if i % 2 else digits.class_names[target]
        for i, (uuid, target) in enumerate(json.loads((export / "labels.json").read_text())["labels"].items())
        if target is not None
    }
    copy = tmp_path / "copy"
    shutil.copytree(export / "data", copy / "data")
    (copy / "labels.json").write_text(json.dumps({"labels": names}))
    loaded = load_dataset(copy)
    assert len(loaded) == N and loaded.class_names == sorted(loaded.class_names)


def test_near_misses_are_named_with_the_fix(export, tmp_path):
    with pytest.raises(DataError, match=r"is the data/ folder of a FiftyOne export: give its parent"):
        load_dataset(export / "data")
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "labels.json").write_text((export / "labels.json").read_text())
    with pytest.raises(DataError, match="labels.json like a FiftyOne image-classification export, but no data/"):
        load_dataset(lone)
    detections = tmp_path / "detections"
    (detections / "data").mkdir(parents=True)
    box = {"detections": [{"label": "cat", "bounding_box": [0, 0, 1, 1]}]}
    (detections / "labels.json").write_text(json.dumps({"classes": ["cat"], "labels": {"a": box}}))
    with pytest.raises(DataError, match=r"looks like FiftyOneImageDetectionDataset \(detections\).*ImageClassif"):
        load_dataset(detections)
    multi = tmp_path / "multi"
    (multi / "data").mkdir(parents=True)
    (multi / "labels.json").write_text(json.dumps({"classes": ["a", "b"], "labels": {"x": [0, 1]}}))
    with pytest.raises(DataError, match="multi-label export"):
        load_dataset(multi)


def test_data_json_paths_are_untrusted(export, tmp_path, digits):
    outside = tmp_path / "outside.png"
    Image.fromarray(digits.x[0, :, :, 0]).save(outside)
    folder = tmp_path / "mapped"
    (folder / "images").mkdir(parents=True)
    mapping, labels = {}, {}
    for i in range(N):
        Image.fromarray(digits.x[i, :, :, 0]).save(folder / "images" / f"{i}.png")
        mapping[f"u{i}"], labels[f"u{i}"] = f"images/{i}.png", digits.class_names[digits.y[i]]
    mapping["u0"], mapping["u1"] = str(outside), "../outside.png"
    (folder / "data.json").write_text(json.dumps(mapping))
    (folder / "labels.json").write_text(json.dumps({"labels": labels}))
    loaded = load_dataset(folder)
    assert len(loaded) == N - 2 and all(s.reason.startswith("outside the dataset root") for s in loaded.skipped)


def test_a_directory_tree_export_leaves_its_unlabeled_folder_out(digits, tmp_path):
    for i in range(N):
        folder = tmp_path / "tree" / ("_unlabeled" if i < 3 else digits.class_names[digits.y[i]])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(digits.x[i, :, :, 0]).save(folder / f"{i}.png")
    loaded = load_dataset(tmp_path / "tree")
    assert len(loaded) == N - 3 and "_unlabeled" not in loaded.class_names
    assert loaded.skipped[0].path == "_unlabeled/" and "unlabelled images" in loaded.skipped[0].reason


def test_the_cleaned_split_of_an_export_is_an_export_again(export, tmp_path):
    from ogaudit.review.ledger import Ledger
    from ogaudit.review.split import export_split

    dataset = load_dataset(export)
    ledger = Ledger.for_dataset(tmp_path / "ledger.sqlite", dataset)
    manifest = export_split(dataset, ledger, tmp_path / "cleaned")
    again = load_dataset(tmp_path / "cleaned")
    assert manifest["format"] == "fiftyone" and again.kind == "fiftyone"
    assert np.array_equal(again.x, dataset.x) and list(again.sample_ids) == list(dataset.sample_ids)
    assert again.class_names == dataset.class_names
