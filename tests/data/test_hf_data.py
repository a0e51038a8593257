"""Hugging Face data (:mod:`ogaudit.data.hf`): a ``datasets.Dataset`` in memory, a ``save_to_disk`` folder and
Parquet / Arrow tables of image bytes or paths give the same samples as the arrays they hold; ``ClassLabel``
names are the class names; near misses are named with their fix; sizes are checked before decoding, nothing is
unpickled and listed paths stay in their folders."""

from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import ogaudit
from ogaudit.data import hf
from ogaudit.data.containers import as_dataset
from ogaudit.data.dataset import DataNotice
from ogaudit.data.load import load_dataset
from ogaudit.errors import DataError

datasets = pytest.importorskip("datasets")

N = 20


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def digits20(digits):
    """20 real 8x8 grey digits, their labels (indices) and the 10 class names."""
    return digits.x[:N, :, :, 0], digits.y[:N], list(digits.class_names)


@pytest.fixture(scope="module")
def hf_digits(digits20):
    """The digits as a datasets.Dataset: an Image feature (PNG bytes) and a ClassLabel named 'zero' … 'nine'."""
    images, labels, _ = digits20
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    return datasets.Dataset.from_dict(
        {"image": [{"bytes": _png(x), "path": None} for x in images], "label": labels.tolist()}, features=features
    )


def test_a_dataset_in_memory_its_folder_and_its_tables_give_the_same_samples(hf_digits, digits20, tmp_path):
    images, labels, _ = digits20
    in_memory = as_dataset(hf_digits)
    assert in_memory.class_names[:3] == ["zero", "one", "two"]  # the ClassLabel's names, in its order
    assert np.array_equal(in_memory.x[..., 0], images) and np.array_equal(in_memory.y, labels)
    assert in_memory.source == hf.HF_SOURCE and in_memory.kind == "hf"
    hf_digits.save_to_disk(tmp_path / "saved")
    hf_digits.to_parquet(tmp_path / "digits.parquet")
    arrow = next((tmp_path / "saved").glob("data-*.arrow"))
    for spec in (tmp_path / "saved", tmp_path / "digits.parquet", arrow):
        loaded = load_dataset(spec)
        assert loaded.class_names == in_memory.class_names, spec
        assert np.array_equal(loaded.x, in_memory.x) and np.array_equal(loaded.y, in_memory.y), spec
        assert loaded.fingerprint() == in_memory.fingerprint(), spec


def test_rows_come_in_the_order_of_a_selected_view_and_missing_labels_are_listed(hf_digits):
    view = hf_digits.select([5, 3, 1, 0, 2, 4, 6, 7, 8, 9, 10, 11])
    loaded = as_dataset(view)
    whole = as_dataset(hf_digits)
    assert np.array_equal(loaded.x, whole.x[[5, 3, 1, 0, 2, 4, 6, 7, 8, 9, 10, 11]])
    unlabelled = hf_digits.map(lambda row, i: {"label": -1 if i < 2 else row["label"]}, with_indices=True)
    loaded = as_dataset(unlabelled)
    assert len(loaded) == N - 2 and [s.path for s in loaded.skipped] == ["row 0", "row 1"]
    assert "no label" in loaded.skipped[0].reason


def test_a_table_of_image_paths_reads_its_files_inside_its_folder_only(digits20, tmp_path, monkeypatch):
    images, labels, names = digits20
    (tmp_path / "table" / "imgs").mkdir(parents=True)
    for i, x in enumerate(images):
        Image.fromarray(x).save(tmp_path / "table" / "imgs" / f"{i}.png")
    pq.write_table(
        pa.table({"file": [f"imgs/{i}.png" for i in range(N)], "class": [names[y] for y in labels]}),
        tmp_path / "table" / "paths.parquet",
    )
    loaded = load_dataset(tmp_path / "table" / "paths.parquet")
    assert loaded.sample_ids[0] == "imgs/0.png" and np.array_equal(loaded.x[..., 0], images)
    # untrusted paths: absolute ones outside the table's folder and '..' are skipped, naming the fix
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Image.fromarray(images[0]).save(elsewhere / "outside.png")
    rows = {"file": ["imgs/1.png", str(elsewhere / "outside.png"), "../elsewhere/outside.png", "/etc/passwd"]}
    rows["file"] += [f"imgs/{i}.png" for i in range(2, N)]
    rows["class"] = [names[labels[i % N]] for i in range(len(rows["file"]))]
    pq.write_table(pa.table(rows), tmp_path / "table" / "hostile.parquet")
    loaded = load_dataset(tmp_path / "table" / "hostile.parquet")
    outside = [s for s in loaded.skipped if s.reason.startswith("outside the dataset root")]
    assert len(outside) == 3 and "OGAUDIT_DATA_ROOTS" in outside[0].reason
    assert len(loaded) == len(rows["file"]) - 3
    monkeypatch.setenv("OGAUDIT_DATA_ROOTS", str(elsewhere))  # the administrator lists that folder
    loaded = load_dataset(tmp_path / "table" / "hostile.parquet")
    assert len(loaded) == len(rows["file"]) - 1 and str(elsewhere / "outside.png") in set(loaded.sample_ids)


def test_near_misses_name_the_layout_they_look_like_and_the_fix(hf_digits, tmp_path):
    datasets.DatasetDict({"train": hf_digits, "test": hf_digits}).save_to_disk(tmp_path / "dict")
    with pytest.raises(DataError, match=r"DatasetDict saved with save_to_disk, with the splits \['train', 'test'\]"):
        load_dataset(tmp_path / "dict")
    with pytest.raises(DataError, match=r"audit one split: data\['train'\]"):
        as_dataset(datasets.DatasetDict({"train": hf_digits}))
    with pytest.raises(DataError, match="Materialise it first"):
        as_dataset(hf_digits.to_iterable_dataset())
    hf_digits.save_to_disk(tmp_path / "saved")
    (tmp_path / "saved" / "state.json").unlink()
    with pytest.raises(DataError, match="looks like a Hugging Face save_to_disk folder .* has no state.json"):
        load_dataset(tmp_path / "saved")
    texts = datasets.Dataset.from_dict({"text": ["good", "bad"] * 5, "stars": [1, 0] * 5})
    with pytest.raises(DataError, match=r"none is a label column by its name .*--label-column NAME"):
        as_dataset(texts)
    unlabelled = hf_digits.remove_columns("label").add_column("note", ["x"] * N)
    with pytest.raises(DataError, match=r"holds images \(column 'image'\) but no label column.*--label-column"):
        as_dataset(unlabelled)
    renamed = hf_digits.rename_column("label", "digit").cast_column("digit", datasets.Value("int64"))
    assert as_dataset(renamed, label_column="digit").class_names[:2] == ["0", "1"]  # named: found, ints as names
    with pytest.raises(DataError, match="no column 'nope' \\(--path-column\\)"):
        as_dataset(hf_digits, path_column="nope")
    with pytest.raises(DataError, match=r"holds Hugging Face save_to_disk folders \(saved\).*Give one of them"):
        load_dataset(tmp_path)
    with pytest.raises(DataError, match="belongs to a Hugging Face save_to_disk folder: give the folder"):
        load_dataset(tmp_path / "saved" / "dataset_info.json")
    pq.write_table(pa.table({"blob": [b"x"] * 4, "stars": [1, 2] * 2}), tmp_path / "neither.parquet")
    with pytest.raises(DataError, match="none is a text column .* image bytes or paths: name it with --path-column"):
        load_dataset(tmp_path / "neither.parquet")
    # a Parquet file of texts is still a text table
    pq.write_table(pa.table({"text": ["good", "bad"] * 5, "label": ["pos", "neg"] * 5}), tmp_path / "t.parquet")
    assert load_dataset(tmp_path / "t.parquet").is_text


def test_sizes_are_checked_before_any_image_is_decoded(hf_digits, tmp_path, monkeypatch):
    bomb = _png(np.zeros((8000, 8000), dtype=np.uint8))  # 64 MP of one colour: ~60 kB as a PNG
    rows = [{"bytes": _png(x), "path": None} for x in np.zeros((N, 8, 8), dtype=np.uint8)]
    rows[3] = {"bytes": bomb, "path": None}
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    data = datasets.Dataset.from_dict({"image": rows, "label": [i % 2 for i in range(N)]}, features=features)
    loaded = as_dataset(data)  # the bomb is over the per-image limit: skipped from its header, never decoded
    assert len(loaded) == N - 1 and "image too large (8000x8000" in loaded.skipped[0].reason
    larger = datasets.Dataset.from_dict(
        {"image": [{"bytes": _png(np.zeros((64, 64), np.uint8)), "path": None}] * N, "label": [0, 1] * (N // 2)},
        features=features,
    )
    monkeypatch.setenv("OGAUDIT_MEMORY_BUDGET", "40K")
    decoded = []
    monkeypatch.setattr("ogaudit.data.imagefiles.read_image", lambda *a: decoded.append(a) or (None, "no"))
    with pytest.raises(DataError, match="Refused the Hugging Face Dataset: loading it would need about"):
        as_dataset(larger)
    assert decoded == []


def test_a_saved_folder_is_read_from_json_and_arrow_only(hf_digits, tmp_path, monkeypatch):
    hf_digits.save_to_disk(tmp_path / "saved")

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling or datasets' own loader was called")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(datasets, "load_from_disk", refuse)
    assert len(load_dataset(tmp_path / "saved")) == N
    state = json.loads((tmp_path / "saved" / "state.json").read_text())
    state["_data_files"] = [{"filename": "../../etc/data.arrow"}]
    (tmp_path / "saved" / "state.json").write_text(json.dumps(state))
    with pytest.raises(DataError, match=r"lists '../../etc/data.arrow' as a data file; only .arrow files inside"):
        load_dataset(tmp_path / "saved")


def test_audit_takes_a_hugging_face_dataset_and_its_review_reads_it_again(digits, cache_dir, tmp_path):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=digits.class_names)})
    data = datasets.Dataset.from_dict(
        {"image": [{"bytes": _png(x[..., 0]), "path": None} for x in digits.x[:200]], "label": digits.y[:200]},
        features=features,
    )
    settings = ogaudit.AuditSettings(epochs=1, map_method="pca", noise_rate=0.1)
    result = ogaudit.audit(data, settings, out_dir=tmp_path / "project", cache_dir=cache_dir)
    assert result.record["dataset"]["spec"] == hf.HF_SOURCE and len(result.scores) == 200
    project = ogaudit.Project(tmp_path / "project")
    assert project.load_dataset(data).fingerprint() == result.record["dataset"]["fingerprint"]
    with pytest.raises(DataError, match="a Hugging Face datasets.Dataset held in memory"):
        project.load_dataset()
    from ogaudit.review.split import export_split

    dataset = project.load_dataset(data)
    project.decide("relabel", "3", annotator="me", label="7")
    project.decide("remove", "4", annotator="me")
    manifest = export_split(dataset, project.ledger(), tmp_path / "cleaned")
    assert manifest["data"] == "hf-dataset.parquet" and manifest["format"] == "parquet"
    cleaned = load_dataset(tmp_path / "cleaned" / "hf-dataset.parquet")  # the user's own table: bytes, ClassLabel
    assert cleaned.class_names == list(digits.class_names) and len(cleaned) == 199
    assert cleaned.class_names[cleaned.y[3]] == "7" and np.array_equal(cleaned.x[4:], dataset.x[5:])
    table = pq.read_table(tmp_path / "cleaned" / "hf-dataset.parquet")
    assert table.column("label").to_pylist()[3] == 7  # the ClassLabel's index
    assert table.column("image").to_pylist()[0]["bytes"] == data.with_format("arrow")[0]["image"][0]["bytes"].as_py()
    # ogaudit's own Hugging Face export is data again: its reviewed labels audited next time
    ogaudit.export(project, tmp_path / "exported", format="hf", data=data)
    with pytest.warns(DataNotice, match="the first ClassLabel"):
        again = load_dataset(tmp_path / "exported")
    assert "the labels are the column 'given_label', the first ClassLabel" in again.notes[0]
    reviewed = load_dataset(tmp_path / "exported", text_options={"label_column": "reviewed_label"})
    assert list(reviewed.sample_ids) == [str(i) for i in range(200) if i != 4]  # the removed sample has no label
    assert reviewed.class_names[reviewed.y[3]] == "7" and np.array_equal(
        reviewed.x, dataset.x[[*range(4), *range(5, 200)]]
    )


def test_a_text_column_takes_the_text_path_with_the_class_label_names(tmp_path):
    from ogaudit.review.ledger import Ledger
    from ogaudit.review.split import export_split

    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["pos", "neg"])}
    )
    rows = {"sentence": [f"review number {i}" for i in range(N)], "label": [i % 2 for i in range(N - 1)] + [-1]}
    data = datasets.Dataset.from_dict(rows, features=features)
    in_memory = as_dataset(data)
    assert in_memory.is_text and in_memory.class_names == ["pos", "neg"]  # the ClassLabel's order
    assert len(in_memory) == N - 1 and in_memory.texts[1] == "review number 1" and in_memory.y[1] == 1
    data.save_to_disk(tmp_path / "saved")
    data.to_parquet(tmp_path / "texts.parquet")
    for spec in (tmp_path / "saved", tmp_path / "texts.parquet"):
        loaded = load_dataset(spec)
        assert loaded.is_text and loaded.class_names == ["pos", "neg"], spec
        assert list(loaded.texts) == list(in_memory.texts) and np.array_equal(loaded.y, in_memory.y), spec
    # the cleaned split of a saved folder is its table as Parquet, ClassLabel and integer labels kept
    saved = load_dataset(tmp_path / "saved")
    manifest = export_split(saved, Ledger.for_dataset(tmp_path / "l.sqlite", saved), tmp_path / "cleaned")
    assert manifest["data"] == "saved.parquet"
    assert pq.read_table(tmp_path / "cleaned" / "saved.parquet").column("label").to_pylist()[:3] == [0, 1, 0]
    assert load_dataset(tmp_path / "cleaned" / "saved.parquet").class_names == ["pos", "neg"]


def test_tables_that_decompress_past_the_budget_are_refused_while_read(tmp_path, monkeypatch):
    """A few kB of Parquet or compressed Arrow IPC can hold megabytes: reading stops at the budget."""
    blob = _png(np.zeros((8, 8), np.uint8)) + b"\0" * 200_000  # compresses to almost nothing
    table = pa.table({"image": [blob] * 64, "label": [0, 1] * 32})
    pq.write_table(table, tmp_path / "bomb.parquet", compression="zstd")
    with pa.OSFile(str(tmp_path / "bomb.arrow"), "wb") as sink:
        options = pa.ipc.IpcWriteOptions(compression="zstd")
        with pa.ipc.new_file(sink, table.schema, options=options) as writer:
            for start in range(0, 64, 8):
                writer.write_table(table.slice(start, 8))
    assert (tmp_path / "bomb.parquet").stat().st_size < 200_000 and (tmp_path / "bomb.arrow").stat().st_size < 200_000
    monkeypatch.setenv("OGAUDIT_MEMORY_BUDGET", "4M")  # 12.8 MB decoded
    for name in ("bomb.parquet", "bomb.arrow"):
        with pytest.raises(
            DataError, match=r"Refused .*bomb\.(parquet|arrow).* (or more decoded|declared by its record batches)"
        ):
            load_dataset(tmp_path / name)


def test_a_hub_snapshot_of_parquet_shards_is_one_split_read_whole(hf_digits, tmp_path):
    snapshot = tmp_path / "snapshot"
    (snapshot / "data").mkdir(parents=True)
    (snapshot / "README.md").write_text("---\nlicense: mit\n---\n")
    hf_digits.select(range(12)).to_parquet(snapshot / "data" / "train-00000-of-00002.parquet")
    hf_digits.select(range(12, N)).to_parquet(snapshot / "data" / "train-00001-of-00002.parquet")
    loaded = load_dataset(snapshot)
    assert loaded.fingerprint() == as_dataset(hf_digits).fingerprint() and loaded.class_names[0] == "zero"
    hf_digits.to_parquet(snapshot / "data" / "test-00000-of-00001.parquet")
    with pytest.raises(DataError, match=r"shards of several splits \['test', 'train'\].*Audit one split"):
        load_dataset(snapshot)


def test_pixels_and_vectors_held_as_lists_of_numbers_are_arrays(digits20, tmp_path):
    images, labels, _ = digits20
    pixels = datasets.Dataset.from_dict({"pixels": images, "label": labels})  # List(List(uint8)): no Image feature
    loaded = as_dataset(pixels)
    assert loaded.x.shape == (N, 8, 8, 1) and np.array_equal(loaded.x[..., 0], images)
    assert np.array_equal(loaded.y, labels) and loaded.sample_ids[0] == "0"
    features = datasets.Features(
        {"embedding": datasets.Sequence(datasets.Value("float32")), "label": datasets.ClassLabel(names=list("abc"))}
    )
    vectors = np.random.default_rng(0).random((N, 5)).astype(np.float32)
    table = datasets.Dataset.from_dict({"embedding": vectors, "label": labels % 3}, features=features)
    table.to_parquet(tmp_path / "vectors.parquet")
    loaded = load_dataset(tmp_path / "vectors.parquet")
    assert loaded.class_names == ["a", "b", "c"] and np.array_equal(loaded.x, vectors)
    ragged = datasets.Dataset.from_dict({"embedding": [[1.0, 2.0], [1.0]] * 5, "label": [0, 1] * 5})
    with pytest.raises(DataError, match="samples differ in shape .* every sample needs one shape"):
        as_dataset(ragged)
    texts = {"text": [f"t{i}" for i in range(N)], "embedding": vectors.tolist(), "label": (labels % 2).tolist()}
    pq.write_table(pa.table(texts), tmp_path / "texts.parquet")
    assert load_dataset(tmp_path / "texts.parquet").is_text  # texts with embeddings beside them stay texts


def test_a_dataset_of_image_files_in_memory_reads_them_where_they_are(digits20, tmp_path):
    images, labels, names = digits20
    paths = []
    for i, x in enumerate(images):
        (tmp_path / "photos" / names[labels[i]]).mkdir(parents=True, exist_ok=True)
        paths.append(str(tmp_path / "photos" / names[labels[i]] / f"{i}.png"))
        Image.fromarray(x).save(paths[-1])
    data = datasets.Dataset.from_dict({"image": paths, "label": labels}).cast_column("image", datasets.Image())
    loaded = as_dataset(data)  # the caller's own object: its files are read where they are
    assert loaded.root == str(tmp_path / "photos") and loaded.sample_ids[0] == f"{names[labels[0]]}/0.png"
    assert np.array_equal(loaded.x[..., 0], images)


def test_a_batch_of_repeated_image_bytes_is_measured_before_it_is_decoded(tmp_path, monkeypatch):
    """One incompressible 270 kB PNG in a Hugging Face image struct, named by 256 rows (one read batch) through a
    dictionary page: a ~300 kB file that decodes to 70 MB in its first batch. The check that stops reading at the
    budget counted a batch after decoding it (a 3.6 MB PNG: 0.9 GB decoded, peak +917 MB at a 256M budget, measured
    by hand; a compressible blob makes it gigabytes). The binary and text leaves are now read as dictionaries
    and measured first: no decoded batch holds more than a few of them."""
    rng = np.random.default_rng(0)
    blob = _png(rng.integers(0, 255, (300, 300, 3), dtype=np.uint8))
    image = pa.array(
        [{"bytes": blob, "path": None}] * 256, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    )
    pq.write_table(pa.table({"image": image, "label": [0, 1] * 128}), tmp_path / "bomb.parquet", compression="zstd")
    assert (tmp_path / "bomb.parquet").stat().st_size < 2 * len(blob) and 256 * len(blob) > 60e6  # the control
    monkeypatch.setenv("OGAUDIT_MEMORY_BUDGET", "16M")
    held = []
    real = pq.ParquetFile.iter_batches

    def iter_batches(self, *args, **kwargs):
        for batch in real(self, *args, **kwargs):
            held.append(batch.nbytes)
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", iter_batches)
    with pytest.raises(DataError, match=r"Refused .*bomb\.parquet.* over the memory budget of 16.0 MiB"):
        load_dataset(tmp_path / "bomb.parquet")
    assert held and max(held) < 4 * len(blob), max(held)


def test_a_table_that_declares_more_classes_than_an_audit_takes_is_refused_before_training(tmp_path):
    """A ClassLabel of 60,000 names in a Parquet schema's metadata (~0.7 MB) on 40 rows: the model's head, the
    probabilities and the counterfactual evidence of every class grow with the class count, not with the file.
    Loading keeps every class (the control); the audit refuses above ``MAX_CLASSES`` before anything is trained."""
    import json

    from ogaudit.data.dataset import MAX_CLASSES
    from ogaudit.pipeline.load import prepare_dataset
    from ogaudit.settings import AuditSettings

    names = [f"c{i}" for i in range(MAX_CLASSES + 10_000)]
    features = {"x": {"feature": {"dtype": "float64", "_type": "Value"}, "_type": "Sequence"}}
    features["label"] = {"names": names, "_type": "ClassLabel"}
    rows = np.random.default_rng(0).random((40, 8)).tolist()
    table = pa.table({"x": rows, "label": pa.array([0, 1] * 20, pa.int64())})
    table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    pq.write_table(table, tmp_path / "classes.parquet")
    assert load_dataset(tmp_path / "classes.parquet").n_classes == len(names)
    with pytest.raises(DataError, match=r"declare 60,000 classes \(2 with samples\); an audit takes at most 50,000"):
        prepare_dataset(tmp_path / "classes.parquet", AuditSettings())


def test_a_compressed_arrow_batch_is_measured_from_its_buffer_lengths_before_it_is_decoded(tmp_path, monkeypatch):
    """One zstd-compressed record batch of 64 rows × 1 MB of zeros: a ~10 kB Arrow IPC file whose one batch
    decodes to 64 MB (256 rows × 2 MB: 17 kB, 512 MB, +253 MB peak at a 64M budget before the refusal, measured
    by hand). Each compressed buffer starts with its decoded length: summed from the IPC messages, the batch is
    refused before it is decompressed; the same data uncompressed are counted the same."""
    from ogaudit.data.limits import arrow_ipc_decoded_bytes

    table = pa.table({"image": [b"\0" * 1_000_000] * 64, "label": [0, 1] * 32})
    for name, compression in (("zstd.arrow", "zstd"), ("plain.arrow", None)):
        with pa.OSFile(str(tmp_path / name), "wb") as sink:
            options = pa.ipc.IpcWriteOptions(compression=compression)
            with pa.ipc.new_file(sink, table.schema, options=options) as writer:
                writer.write_table(table, max_chunksize=64)
    zstd = pa.ipc.IpcWriteOptions(compression="zstd")
    with (
        pa.OSFile(str(tmp_path / "stream.arrow"), "wb") as sink,
        pa.ipc.new_stream(sink, table.schema, options=zstd) as writer,
    ):
        writer.write_table(table)  # the stream format, as datasets writes it
    assert (tmp_path / "zstd.arrow").stat().st_size < 100_000  # the control: a small file, a 64 MB batch
    sizes = {name: arrow_ipc_decoded_bytes(tmp_path / name) for name in ("zstd.arrow", "plain.arrow", "stream.arrow")}
    assert all(64_000_000 <= size < 64_100_000 for size in sizes.values()), sizes
    monkeypatch.setenv("OGAUDIT_MEMORY_BUDGET", "16M")
    for name in ("zstd.arrow", "stream.arrow"):
        with pytest.raises(DataError, match=r"Refused .* \(61.0 MiB declared by its record batches, before decoding"):
            load_dataset(tmp_path / name)
