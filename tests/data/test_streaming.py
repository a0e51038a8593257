"""Data read where it lives: memory-mapped .npy folders (good and hostile), and a frozen backbone's features
extracted once per audit."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ogaudit.data.arrays import dataset_from_arrays
from ogaudit.data.load import load_dataset
from ogaudit.errors import DataError
from ogaudit.pipeline.run import AuditSettings, audit


def npy_folder(root, x, y, **extra):
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "x.npy", x)
    np.save(root / "y.npy", y)
    for name, value in extra.items():
        np.save(root / f"{name}.npy", value)
    return root


def mapped(array: np.ndarray) -> bool:
    """Whether ``array`` is a view of a memory map (no copy in memory)."""
    while array is not None:
        if isinstance(array, np.memmap):
            return True
        array = array.base if isinstance(array, np.ndarray) else None
    return False


@pytest.fixture
def digit_arrays(digits):
    index = np.arange(0, len(digits), 6)
    return digits.x[index], digits.y[index]


def test_an_npy_folder_is_memory_mapped_and_reads_as_the_same_arrays(tmp_path, digit_arrays):
    x, y = digit_arrays
    folder = npy_folder(tmp_path / "data", x, y, ids=np.array([f"s{i}" for i in range(len(y))]))
    (folder / "class_names.txt").write_text("\n".join(f"digit {c}" for c in range(10)) + "\n", encoding="utf-8")
    dataset = load_dataset(folder)
    assert dataset.kind == "npy" and dataset.source == str(folder.resolve())
    assert not dataset.x.flags.writeable and mapped(dataset.x) and mapped(dataset.origin.arrays["x"])
    np.testing.assert_array_equal(dataset.x, x)
    np.testing.assert_array_equal(dataset.y, y)
    assert dataset.class_names[3] == "digit 3" and dataset.sample_ids[2] == "s2"
    np.testing.assert_array_equal(dataset.image(5), x[5])
    assert load_dataset(folder).fingerprint() == dataset.fingerprint()
    small = load_dataset(folder, limit=60)
    assert len(small) == 60 and small.x.flags.writeable


def test_the_fingerprint_of_an_npy_folder_changes_when_one_value_does(tmp_path, digit_arrays):
    x, y = digit_arrays
    folder = npy_folder(tmp_path / "data", x, y)
    before = load_dataset(folder).fingerprint()
    changed = x.copy()
    changed[-1, -1, -1, 0] ^= 1
    np.save(folder / "x.npy", changed)
    assert load_dataset(folder).fingerprint() != before


def test_a_scan_of_an_npy_folder_equals_the_scan_of_the_same_arrays_in_memory(tmp_path, digit_arrays, cache_dir):
    x, y = digit_arrays
    folder = npy_folder(tmp_path / "data", x, y)
    settings = AuditSettings(epochs=2, map_method="pca", noise_rate=0.1)
    streamed = audit(folder, settings, cache_dir=tmp_path / "cache-a")
    in_memory = audit(dataset_from_arrays(x, y), settings, cache_dir=tmp_path / "cache-b")
    np.testing.assert_allclose(streamed.scores["score"], in_memory.scores["score"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(streamed.evidence.probs, in_memory.evidence.probs, rtol=1e-5, atol=1e-7)


def test_an_npy_folder_exports_the_users_own_arrays_back(tmp_path, digit_arrays):
    from ogaudit.review.ledger import Ledger
    from ogaudit.review.split import export_split

    x, y = digit_arrays
    folder = npy_folder(tmp_path / "data", x.astype(np.float32) / 7, y.astype(np.int16))
    dataset = load_dataset(folder)
    names = np.asarray(dataset.class_names)
    ledger = Ledger.open(
        tmp_path / "ledger.sqlite",
        dataset_fingerprint=dataset.fingerprint(),
        sample_ids=dataset.sample_ids.tolist(),
        given_labels=names[dataset.y].tolist(),
        class_names=dataset.class_names,
    )
    ledger.decide(dataset.sample_ids[0], "remove", annotator="test")
    manifest = export_split(dataset, ledger, tmp_path / "out")
    back = tmp_path / "out" / manifest["data"]
    assert manifest["format"] == "npy"
    np.testing.assert_array_equal(np.load(back / "x.npy"), x[1:].astype(np.float32) / 7)
    assert np.load(back / "y.npy").dtype == np.int16
    assert len(load_dataset(back)) == len(y) - 1


def write_header(path, header: bytes, data: bytes = b"") -> None:
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + data)


def test_hostile_npy_folders_are_refused_by_name_before_their_data_are_read(tmp_path):
    y = np.arange(8) % 2
    pickled = npy_folder(tmp_path / "pickled", np.zeros((8, 3)), y)
    np.save(pickled / "x.npy", np.array([{"a": 1}] * 8, dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="x.npy' holds dtype object.*refused"):
        load_dataset(pickled)

    mismatched = npy_folder(tmp_path / "mismatched", np.zeros((8, 3)), np.arange(7) % 2)
    with pytest.raises(DataError, match=r"x.npy has 8 samples but y.npy has shape \(7,\)"):
        load_dataset(mismatched)

    huge = npy_folder(tmp_path / "huge", np.zeros((8, 3)), y)
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (8, 3), }" + b" " * 20000 + b"\n"
    huge_bytes = b"\x93NUMPY\x02\x00" + len(header).to_bytes(4, "little") + header + np.zeros(24).tobytes()
    (huge / "x.npy").write_bytes(huge_bytes)
    with pytest.raises(DataError, match="not a readable .npy array"):
        load_dataset(huge)

    truncated = npy_folder(tmp_path / "truncated", np.zeros((8, 3)), y)
    (truncated / "x.npy").write_bytes((truncated / "x.npy").read_bytes()[:-8])
    with pytest.raises(DataError, match="truncated"):
        load_dataset(truncated)

    claims = npy_folder(tmp_path / "claims", np.zeros((8, 3)), y)
    write_header(
        claims / "x.npy", b"{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000, 3), }".ljust(118) + b"\n"
    )
    with pytest.raises(DataError, match="truncated"):
        load_dataset(claims)

    not_npy = npy_folder(tmp_path / "not-npy", np.zeros((8, 3)), y)
    (not_npy / "y.npy").write_bytes(b"\x80\x04K\x01.")  # a pickle
    with pytest.raises(DataError, match="y.npy' is not a readable .npy"):
        load_dataset(not_npy)

    outside = npy_folder(tmp_path / "outside", np.zeros((8, 3)), y)
    np.save(tmp_path / "elsewhere.npy", np.zeros((8, 3)))
    (outside / "x.npy").unlink()
    os.symlink(tmp_path / "elsewhere.npy", outside / "x.npy")
    with pytest.raises(DataError, match="not a regular file inside"):
        load_dataset(outside)

    no_labels = npy_folder(tmp_path / "no-labels", np.zeros((8, 3)), y)
    (no_labels / "y.npy").unlink()
    with pytest.raises(DataError, match="no y.npy"):
        load_dataset(no_labels)

    names = npy_folder(tmp_path / "names", np.zeros((8, 3)), y)
    (names / "class_names.json").write_text(json.dumps({"a": 1}), encoding="utf-8")
    with pytest.raises(DataError, match="JSON list of strings"):
        load_dataset(names)


def test_nan_in_a_memory_mapped_x_is_found_block_by_block(tmp_path, monkeypatch):
    import ogaudit.data.arrays
    import ogaudit.data.images

    monkeypatch.setattr(ogaudit.data.arrays, "ROW_BLOCK_BYTES", 64)  # many blocks
    x = np.ones((50, 6), np.float32)
    x[37, 2] = np.nan
    with pytest.raises(DataError, match="first at row 37"):
        load_dataset(npy_folder(tmp_path / "nan", x, np.arange(50) % 2))


def test_a_frozen_backbone_runs_once_per_audit_and_not_again_for_another_head(tmp_path, monkeypatch):
    from ogaudit.models.nets import EfficientNetFeatures, build_model

    rng = np.random.default_rng(0)
    photos = dataset_from_arrays(rng.integers(0, 255, (24, 40, 40, 3), dtype=np.uint8), np.arange(24) % 3)
    seen = []
    forward = EfficientNetFeatures.forward

    def counted(self, x):
        seen.append(len(x))
        return forward(self, x)

    monkeypatch.setattr(EfficientNetFeatures, "forward", counted)
    settings = AuditSettings(model="efficientnet", epochs=2, map_method="pca")
    first = audit(photos, settings, cache_dir=tmp_path / "cache")
    assert sum(seen) == len(photos), f"the backbone saw {sum(seen)} samples for {len(photos)}"
    seen.clear()
    other_head = audit(
        photos, AuditSettings(model="efficientnet", epochs=3, map_method="pca"), cache_dir=tmp_path / "cache"
    )
    assert seen == [] and other_head.record["model"]["cached"] is False
    assert first.evidence.features.shape == (24, 1281)
    np.testing.assert_array_equal(first.evidence.features, other_head.evidence.features)
    model = build_model("efficientnet", photos)
    with torch.no_grad():  # the cached features are the backbone's own
        direct = model.features(torch.as_tensor(photos.x[:5])).numpy()
    np.testing.assert_allclose(first.evidence.features[:5, :-1], direct, rtol=1e-4, atol=1e-5)


def photo_folder(root, digits):
    """60 digit images as PNG files in class folders, one EXIF-rotated JPEG, and one file that is no image."""
    from PIL import Image

    for i in range(60):
        (root / str(digits.y[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(digits.x[i, ..., 0]).save(root / str(digits.y[i]) / f"{i:03d}.png")
    turned = Image.fromarray(np.tile(np.arange(10, dtype=np.uint8) * 25, (8, 1)))  # 10 wide, 8 high
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter: 8 wide, 10 high
    turned.convert("RGB").save(root / "3" / "turned.jpg", exif=exif.tobytes())
    (root / "4" / "broken.png").write_bytes(b"\x89PNG not really")
    return root


def test_image_files_are_streamed_and_give_the_in_memory_pixels_and_scores(tmp_path, digits, monkeypatch):
    import ogaudit.data.arrays
    import ogaudit.data.images
    from ogaudit.data.imagefiles import ImageFiles

    root = photo_folder(tmp_path / "photos", digits)
    in_memory = load_dataset(root)
    monkeypatch.setattr(ogaudit.data.images, "STREAM_ABOVE_BYTES", 0)
    streamed = load_dataset(root)
    assert isinstance(streamed.x, ImageFiles) and not isinstance(in_memory.x, ImageFiles)
    assert streamed.x.shape == in_memory.x.shape == (61, 8, 8, 3)
    np.testing.assert_array_equal(np.asarray(streamed.x), in_memory.x)
    np.testing.assert_array_equal(np.concatenate(list(streamed.x.batches(16, workers=2))), in_memory.x)
    np.testing.assert_array_equal(streamed.image(7), in_memory.image(7))
    np.testing.assert_array_equal(np.asarray(streamed.subset(np.arange(5, 9)).x), in_memory.x[5:9])
    assert [s.path for s in streamed.skipped] == [s.path for s in in_memory.skipped] == ["4/broken.png"]
    assert streamed.fingerprint() == load_dataset(root).fingerprint()
    settings = AuditSettings(model="cnn", epochs=2, map_method="pca", noise_rate=0.1)
    a = audit(streamed, settings, cache_dir=tmp_path / "cache-a")
    b = audit(in_memory, settings, cache_dir=tmp_path / "cache-b")
    np.testing.assert_allclose(a.scores["score"], b.scores["score"], rtol=1e-5, atol=1e-7)


def test_a_streamed_file_that_breaks_after_listing_stops_with_its_name(tmp_path, digits, monkeypatch):
    import ogaudit.data.arrays
    import ogaudit.data.images

    root = photo_folder(tmp_path / "photos", digits)
    monkeypatch.setattr(ogaudit.data.images, "STREAM_ABOVE_BYTES", 0)
    streamed = load_dataset(root)
    first = root / streamed.x.paths[0]
    first.write_bytes(first.read_bytes()[:40])  # truncated after it was listed
    with pytest.raises(DataError, match=f"{streamed.x.paths[0]}.*cannot be decoded"):
        np.asarray(streamed.x)


def test_a_cancelled_forward_pass_resumes_from_its_written_chunks(tmp_path, digits, monkeypatch):
    import threading

    import ogaudit.pipeline.stages as pipeline
    from ogaudit.errors import Cancelled

    monkeypatch.setattr(pipeline, "EVIDENCE_CHUNK_ROWS", 64)
    data = digits.subset(np.arange(300))
    cancel, seen = threading.Event(), []
    forward = pipeline.batched_features

    def counted(model, x, **kwargs):
        seen.append(len(x))
        if len(seen) == 2:
            cancel.set()  # Cancel pressed while the second chunk is computed: it is finished, the third is not
        return forward(model, x, **kwargs)

    monkeypatch.setattr(pipeline, "batched_features", counted)
    settings = AuditSettings(epochs=1, map_method="pca")
    with pytest.raises(Cancelled):
        audit(data, settings, cache_dir=tmp_path / "cache", cancel=cancel)
    assert seen == [64, 64]
    seen.clear()
    resumed = audit(data, settings, cache_dir=tmp_path / "cache")
    assert seen == [64, 64, 44] and resumed.record["model"]["cached"] is True
    fresh = audit(data, settings, cache_dir=tmp_path / "fresh")
    np.testing.assert_array_equal(resumed.evidence.features, fresh.evidence.features)
    np.testing.assert_array_equal(resumed.scores["score"], fresh.scores["score"])


def _rss_file_mb() -> float:
    lines = Path("/proc/self/status").read_text().splitlines()
    status = dict(line.split(":", 1) for line in lines if ":" in line)
    return int(status["RssFile"].split()[0]) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc/self/status")
def test_a_pass_over_a_memory_map_leaves_its_pages_out_of_the_resident_memory(tmp_path):
    """A fingerprint (a full pass over x.npy) must not leave the file's pages counted in the process's RSS."""
    from ogaudit.storage import fingerprint, release_pages

    np.save(tmp_path / "x.npy", np.arange(48 << 20, dtype=np.uint8).reshape(-1, 1024))  # 48 MB
    x = np.load(tmp_path / "x.npy", mmap_mode="r")
    before = _rss_file_mb()
    assert int(x[:, 0].astype(np.int64).sum()) >= 0  # touches every page
    touched = _rss_file_mb()
    assert touched - before > 30, (before, touched)
    release_pages(x)
    assert _rss_file_mb() - before < 10
    view = x.reshape(-1, 2048)[:100]  # what load_dataset and the chunked passes hand around: views of the map
    assert type(view) is np.ndarray or view.base is not None
    x[:, 0].astype(np.int64).sum()
    release_pages(view)
    assert _rss_file_mb() - before < 10, "a view's release left the map's pages resident"
    x[:, 0].astype(np.int64).sum()  # read again: still there, from the page cache
    fingerprint(np.asarray(x).reshape(-1, 512))
    assert _rss_file_mb() - before < 10, "fingerprint left the map's pages resident"
    copy = np.array(x[:10])
    release_pages(copy)  # not a map: nothing happens
    assert copy[3, 5] == x[3, 5]
