"""Inputs as people really bring them (issue 12): one test per kind, each on a small input built here."""

from __future__ import annotations

import codecs
import io
import json
import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from ogaudit.data.arrays import dataset_from_arrays
from ogaudit.data.dataset import DataNotice, rare_class_mask, stratified_subset
from ogaudit.data.imagefiles import is_tool_junk, read_image_as_shown
from ogaudit.data.load import load_dataset
from ogaudit.errors import DataError
from ogaudit.models.nets import build_model
from ogaudit.review.decisions import decisions_csv_bytes, import_decisions
from ogaudit.review.ledger import Ledger
from ogaudit.review.split import export_split


def png(path, value: int = 90, size=(8, 8), mode="L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)


def reasons(dataset) -> dict[str, str]:
    return {s.path: s.reason for s in dataset.skipped}


# ---------------------------------------------------------------- 1. tool junk


@pytest.mark.parametrize(
    "path",
    [
        "__MACOSX/3/._img.png",
        "cat/._img.png",
        "cat/.DS_Store",
        ".ipynb_checkpoints/img-checkpoint.png",
        "cat/deep/er/.ipynb_checkpoints/x.png",
        "cat/Thumbs.db",
        "cat/THUMBS.DB",
        "cat/desktop.ini",
        "cat/@eaDir/img.png/SYNOFILE_THUMB_M.jpg",
        ".hidden/cat/x.png",
        "cat\\.git\\x.png",
        "cat/~$lock.png",
        "cat/img.png~",
        "$RECYCLE.BIN/x.png",
        "lost+found/x.png",
    ],
)
def test_tool_junk_rule_recognises_what_tools_leave(path):
    assert is_tool_junk(path)


@pytest.mark.parametrize("path", ["cat/img.png", "cat/a~1.png", "my.class/x.png", "../x.png", "./cat/x.png"])
def test_tool_junk_rule_leaves_data_alone(path):
    assert not is_tool_junk(path)


def test_image_folder_never_makes_classes_or_samples_of_tool_junk(tmp_path):
    root = tmp_path / "data"
    for cls in ("3", "7"):
        for i in range(3):
            png(root / cls / f"img{i}.png", 40 * i + 10 * int(cls))
    png(root / "__MACOSX" / "3" / "._img0.png")  # a real PNG even, so only the rule keeps it out
    (root / "3" / "._img0.png").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 78)  # AppleDouble
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "7" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    png(root / ".ipynb_checkpoints" / "img0-checkpoint.png")
    png(root / "7" / "sub" / ".ipynb_checkpoints" / "x-checkpoint.png")
    png(root / "7" / "@eaDir" / "img0.png" / "SYNOFILE_THUMB_M.png")
    png(root / "3" / "a" / "b" / ".cache" / "c.png")
    png(root / "only-junk" / ".thumbnails" / "t.png")

    dataset = load_dataset(root)
    assert dataset.class_names == ["3", "7"] and len(dataset) == 6
    skipped = reasons(dataset)
    for path in [
        "__MACOSX/",
        "3/._img0.png",
        ".DS_Store",
        "7/Thumbs.db",
        ".ipynb_checkpoints/",
        "7/sub/.ipynb_checkpoints/",
        "7/@eaDir/",
        "3/a/b/.cache/",
        "only-junk/.thumbnails/",
    ]:
        assert "left by a tool" in skipped[path], path
    assert any("only-junk" in note and "not classes" in note for note in dataset.notes)

    # the manifest entry point follows the same rule
    manifest = root / "m.csv"
    manifest.write_text("path,label\n3/img0.png,3\n7/img0.png,7\n__MACOSX/3/._img0.png,3\n7/.DS_Store,7\n")
    listed = load_dataset(manifest)
    assert len(listed) == 2 and "left by a tool" in reasons(listed)["__MACOSX/3/._img0.png"]

    # an export never writes an empty class folder (torchvision refuses one)
    ledger = Ledger.for_dataset(tmp_path / "ledger.sqlite", dataset)
    ledger.decide([i for i in dataset.sample_ids if i.startswith("7/")], "remove", annotator="ann")
    ledger.decide("3/img0.png", "relabel", label="7", annotator="ann")
    export_split(dataset, ledger, tmp_path / "clean")
    assert sorted(p.name for p in (tmp_path / "clean").iterdir() if p.is_dir()) == ["3", "7"]
    ledger.undo("ann")
    export_split(dataset, ledger, tmp_path / "clean2")
    assert sorted(p.name for p in (tmp_path / "clean2").iterdir() if p.is_dir()) == ["3"]


# ---------------------------------------------------------------- 2. photos as cameras write them


def sideways_jpeg(path, orientation: int = 6) -> None:
    """A 24x12 (W x H) picture stored sideways: left half black, right half white, EXIF Orientation set."""
    pixels = np.zeros((12, 24), dtype=np.uint8)
    pixels[:, 12:] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).convert("RGB").save(path, "JPEG", exif=exif.tobytes(), quality=95)


def test_photos_are_read_turned_as_their_exif_orientation_says_and_exports_keep_the_file(tmp_path):
    root = tmp_path / "photos"
    for i in range(3):
        sideways_jpeg(root / "phone" / f"{i}.jpg")  # shown as 12 wide x 24 tall, black on top
        upright = np.zeros((24, 12), dtype=np.uint8)
        upright[:12] = 255  # white on top, stored upright
        (root / "camera").mkdir(parents=True, exist_ok=True)
        Image.fromarray(upright).convert("RGB").save(root / "camera" / f"{i}.jpg")
    shown = read_image_as_shown(root / "phone" / "0.jpg")
    assert shown.size == (12, 24)
    dataset = load_dataset(root)
    assert dataset.x.shape[1:] == (24, 12, 3)  # nothing squashed: every picture has its viewer's shape
    phone = dataset.x[list(dataset.sample_ids).index("phone/0.jpg")].mean(axis=(1, 2))
    assert phone[:10].mean() < 30 and phone[-10:].mean() > 225  # black on top, as a viewer shows it
    assert np.array_equal(dataset.image(0), dataset.x[0])  # thumbnails show the same oriented pixels

    ledger = Ledger.for_dataset(tmp_path / "ledger.sqlite", dataset)
    export_split(dataset, ledger, tmp_path / "clean")
    original = (root / "phone" / "0.jpg").read_bytes()
    assert (tmp_path / "clean" / "phone" / "0.jpg").read_bytes() == original  # the file itself, EXIF and all


# ---------------------------------------------------------------- 3. labels written by several people


def variant_manifest(tmp_path) -> object:
    rows = [("Sneaker", 3), ("sneaker", 2), ("SNEAKER", 1), ("Bag", 3), (" Bag ", 1), ("Coat", 2)]
    lines, k = ["path,label"], 0
    for label, count in rows:
        for _ in range(count):
            png(tmp_path / f"{k}.png", 10 * k)
            lines.append(f"{k}.png,{label}")
            k += 1
    manifest = tmp_path / "labels.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def test_label_spellings_that_differ_by_case_or_spaces_are_never_silent(tmp_path):
    manifest = variant_manifest(tmp_path)
    with pytest.raises(DataError) as caught:
        load_dataset(manifest)
    message = str(caught.value)
    for text in ("'Sneaker' (3)", "'sneaker' (2)", "'SNEAKER' (1)", "'Bag' (3)", "' Bag ' (1)", "--fold-labels"):
        assert text in message
    with pytest.warns(DataNotice):
        folded = load_dataset(manifest, fold_label_case=True)
    assert folded.class_names == ["Bag", "Coat", "Sneaker"]  # each the most frequent spelling
    assert np.bincount(folded.y).tolist() == [4, 2, 6]
    assert any("'Sneaker', 'sneaker', 'SNEAKER'" in note and "'Sneaker'" in note for note in folded.notes)


def test_label_variants_in_folders_and_arrays_take_the_same_rule(tmp_path):
    for cls in ("Bag", "bag", "Coat"):
        for i in range(2):
            png(tmp_path / "f" / cls / f"{i}.png", 30 * i)
    with pytest.raises(DataError, match="differ only by case"):
        load_dataset(tmp_path / "f")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataNotice)
        assert load_dataset(tmp_path / "f", fold_label_case=True).class_names == ["Bag", "Coat"]
    x = np.zeros((4, 3), dtype=np.float32)
    with pytest.raises(DataError, match="differ only by case"):
        dataset_from_arrays(x, np.array(["cat", "Cat", "dog", "dog"]))
    with pytest.raises(DataError, match="differ only by case"):
        dataset_from_arrays(x, np.array([0, 1, 2, 2]), class_names=["cat", "CAT ", "dog"])


# ---------------------------------------------------------------- 4. label arrays as libraries produce them


def test_label_arrays_in_every_common_form():
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    column = dataset_from_arrays(x, np.array([[0], [1], [2], [0], [1], [2]]))
    assert column.y.tolist() == [0, 1, 2, 0, 1, 2] and column.class_names == ["0", "1", "2"]

    onehot = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]
    with pytest.warns(DataNotice, match="one-hot"):
        from_rows = dataset_from_arrays(x, onehot, class_names=["a", "b", "c"])
    assert from_rows.y.tolist() == [0, 1, 2, 0, 1, 2] and any("one-hot" in note for note in from_rows.notes)
    soft = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]] * 2)
    with pytest.warns(DataNotice, match="probability"):
        assert dataset_from_arrays(x, soft).y.tolist() == [0, 1, 2, 0, 1, 2]
    with pytest.raises(DataError, match=r"argmax\(axis=1\)"):
        dataset_from_arrays(x, np.full((6, 3), 2.0))  # scores, not probabilities: refused with the fix
    with pytest.raises(DataError, match="tie"):
        dataset_from_arrays(x, np.array([[0.5, 0.5, 0.0]] * 3 + [[0.1, 0.8, 0.1]] * 3))
    with pytest.raises(DataError, match="transposed"):
        dataset_from_arrays(x, np.array([[0, 1, 2, 0, 1, 2]]))

    gaps = dataset_from_arrays(x, np.array([0, 5, 9, 0, 5, 9], dtype=np.uint8))
    assert gaps.class_names == ["0", "5", "9"] and gaps.n_classes == 3  # no invented classes 1-4, 6-8
    signs = dataset_from_arrays(x, np.array([-1, 1, -1, 1, -1, 1]))
    assert signs.class_names == ["-1", "1"]
    named = dataset_from_arrays(x, np.array([0, 1, 0, 1, 0, 1]), class_names=["no", "yes", "maybe"])
    assert named.class_names == ["no", "yes", "maybe"]  # given names are kept as given


# ---------------------------------------------------------------- 5. the user's arrays, never damaged


def _labels(kind: str, n: int):
    base = np.arange(n) % 3
    return {
        "int64": (base.astype(np.int64), None),
        "column": (base.astype(np.int32)[:, None], None),
        "names": (np.array(["a", "bb", "ccc"])[base], None),
        "bytes": (np.array([b"x", b"y", b"z"])[base], None),
        "onehot": (np.eye(3, dtype=np.float32)[base], None),
        "probability": (np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])[base], None),
        "float": (base.astype(np.float32), None),
        "gaps": (np.array([0, 5, 9], dtype=np.uint8)[base], None),
        "given-names": (base.astype(np.int16), np.array(["cat", "dog", "None"])),
    }[kind]


LAYOUTS = [
    ("uint8 NHWC", lambda r, n: r.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8), "int64"),
    ("uint8 NHW", lambda r, n: r.integers(0, 256, (n, 8, 8), dtype=np.uint8), "column"),
    (
        "float32 NCHW normalised",
        lambda r, n: ((r.integers(0, 256, (n, 1, 8, 8)) / 255.0 - 0.1307) / 0.3081).astype(np.float32),
        "given-names",
    ),
    ("float64 NHWC", lambda r, n: r.random((n, 8, 8, 3)), "onehot"),
    ("float16 NHWC", lambda r, n: r.random((n, 6, 6, 1)).astype(np.float16), "gaps"),
    ("int16 NCHW", lambda r, n: r.integers(-300, 300, (n, 3, 8, 8), dtype=np.int16), "bytes"),
    ("float32 vectors", lambda r, n: r.normal(size=(n, 5)).astype(np.float32), "names"),
    ("float64 vectors", lambda r, n: r.normal(size=(n, 5)) * 1e30, "probability"),
    ("bool vectors", lambda r, n: r.random((n, 7)) > 0.5, "float"),
    ("tiny images as vectors", lambda r, n: r.random((n, 2, 3)).astype(np.float32), "int64"),
]


@pytest.mark.parametrize(("layout", "make_x", "label_kind"), LAYOUTS, ids=[layout[0] for layout in LAYOUTS])
def test_export_split_writes_back_the_users_own_arrays_bit_for_bit(tmp_path, layout, make_x, label_kind):
    n = 12
    x = make_x(np.random.default_rng(0), n)
    y, class_names = _labels(label_kind, n)
    arrays = {"x": x, "y": y, "ids": np.array([f"s{i}" for i in range(n)]), "weights": np.linspace(0, 1, n)}
    arrays["meta"] = np.array([3.5, 7.0, 1.0])  # not per sample: written as it was
    if class_names is not None:
        arrays["class_names"] = class_names
    source = tmp_path / "data.npz"
    np.savez(source, **arrays)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataNotice)
        dataset = load_dataset(source)
    ledger = Ledger.for_dataset(tmp_path / "ledger.sqlite", dataset)

    export_split(dataset, ledger, tmp_path / "same")  # no decisions: the very same arrays
    with np.load(tmp_path / "same" / "data.npz") as written:
        assert list(written.files) == list(arrays)
        for key, value in arrays.items():
            assert written[key].dtype == value.dtype and written[key].shape == value.shape, key
            assert written[key].tobytes() == value.tobytes(), key

    ledger.decide(["s2", "s7"], "remove", annotator="ann")
    new_label = dataset.class_names[(dataset.y[4] + 1) % 3]
    ledger.decide("s4", "relabel", label=new_label, annotator="ann")
    export_split(dataset, ledger, tmp_path / "clean")
    keep = np.array([i for i in range(n) if i not in (2, 7)])
    at = int(np.flatnonzero(keep == 4)[0])
    with np.load(tmp_path / "clean" / "data.npz") as written:
        for key in ("x", "ids", "weights"):
            assert written[key].dtype == arrays[key].dtype
            assert written[key].tobytes() == arrays[key][keep].tobytes(), key
        assert written["meta"].tobytes() == arrays["meta"].tobytes()
        out_y = written["y"]
        assert out_y.shape[1:] == y.shape[1:] and out_y.dtype.kind == y.dtype.kind
        assert np.delete(out_y, at, axis=0).tobytes() == np.delete(y[keep], at, axis=0).astype(out_y.dtype).tobytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataNotice)
        cleaned = load_dataset(tmp_path / "clean" / "data.npz")
    assert cleaned.sample_ids.tolist() == [f"s{i}" for i in keep]
    assert cleaned.class_names[cleaned.y[at]] == new_label


def test_normalised_float_images_are_scaled_for_the_model_without_loss_and_shown_as_pictures():
    rng = np.random.default_rng(1)
    picture = rng.integers(0, 256, (20, 1, 12, 12)).astype(np.uint8)
    x = ((picture / 255.0 - 0.1307) / 0.3081).astype(np.float32)  # as torchvision's Normalize leaves them
    dataset = dataset_from_arrays(x, np.arange(20) % 2)
    assert dataset.x.dtype == np.float32 and np.array_equal(dataset.x, x.transpose(0, 2, 3, 1))
    shown = dataset.image(3)
    assert shown.dtype == np.uint8 and np.abs(shown.astype(int) - picture[3].transpose(1, 2, 0)).max() <= 1
    model = build_model("cnn", dataset)
    with torch.no_grad():
        fed = model.preprocess(torch.as_tensor(dataset.x)).numpy()
    assert len(np.unique(fed)) == len(np.unique(x))  # one level per input level: nothing quantised
    assert np.corrcoef(fed.ravel(), x.transpose(0, 2, 3, 1).transpose(0, 3, 1, 2).ravel())[0, 1] > 0.9999
    assert abs(fed.mean()) < 0.05 and abs(fed.std() - 1) < 0.05  # standardised for training


# ---------------------------------------------------------------- 6. Windows paths in manifests


def test_windows_separators_are_read_and_refused_rows_are_shown_with_the_fix(tmp_path):
    for cls in ("Bag", "Coat"):
        for i in range(2):
            png(tmp_path / "images" / cls / f"000{i}.png", 50 * i + (cls == "Bag") * 100)
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,label\n"
        + "".join(f"images\\{c}\\000{i}.png,{c}\n" for c in ("Bag", "Coat") for i in range(2))
        + "C:\\Users\\ann\\images\\Bag\\0009.png,Bag\n"
    )
    dataset = load_dataset(manifest)
    assert len(dataset) == 4 and dataset.sample_ids[0] == "images/Bag/0000.png"
    assert "absolute" in reasons(dataset)["C:\\Users\\ann\\images\\Bag\\0009.png"]

    wrong = tmp_path / "wrong.csv"
    wrong.write_text("path,label\n" + "".join(f"pics\\{c}\\000{i}.png,{c}\n" for c in ("Bag", "Coat") for i in (0, 1)))
    with pytest.raises(DataError) as caught:
        load_dataset(wrong)
    message = str(caught.value)
    assert "pics/Bag/0000.png" in message and "file not found" in message and "relative to" in message


# ---------------------------------------------------------------- 7. paths that still work elsewhere


def test_a_relative_data_path_is_recorded_absolute_and_resolved(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    np.savez(tmp_path / "sub" / "d.npz", x=np.eye(4), y=np.array([0, 1, 0, 1]))
    monkeypatch.chdir(tmp_path / "sub")
    dataset = load_dataset("../sub/./d.npz")
    assert dataset.source == str((tmp_path / "sub" / "d.npz").resolve())


# ---------------------------------------------------------------- 8. rare classes


def rare_dataset():
    counts = {"common": 30, "usual": 30, "solo": 1, "pair": 2}
    y = np.concatenate([np.full(k, name) for name, k in counts.items()])
    x = np.random.default_rng(0).normal(size=(len(y), 4)).astype(np.float32)
    return dataset_from_arrays(x, y)


def test_rare_classes_are_kept_whole_by_subsets_and_named_in_caveats():
    dataset = rare_dataset()
    assert any("'solo' has only 1 sample" in note for note in dataset.notes)
    subset = stratified_subset(dataset, 20, seed=0)
    assert len(subset) == 20
    names = np.array(subset.class_names)[subset.y].tolist()
    assert names.count("solo") == 1 and names.count("pair") == 2 and names.count("common") >= 7
    mask = rare_class_mask(dataset)
    assert mask.sum() == 3 and set(np.array(dataset.class_names)[dataset.y[mask]]) == {"solo", "pair"}
    with pytest.raises(DataError, match="too small"):
        stratified_subset(dataset, 5)


def test_verify_copes_with_rare_classes_and_says_which_it_cannot_measure(tmp_path):
    from ogaudit.pipeline.run import AuditSettings
    from ogaudit.review.verify import verify_cleaning

    dataset = rare_dataset()
    ledger = Ledger.for_dataset(tmp_path / "ledger.sqlite", dataset)
    report = verify_cleaning(dataset, ledger.state(), AuditSettings(epochs=2, map_method="none"))
    assert report.held_out > 0 and "'solo'" in report.describe()


# ---------------------------------------------------------------- 9. tiny data with default settings


@pytest.mark.slow
def test_a_tiny_pilot_set_is_not_memorised_by_the_automatic_recipe(digits, one_torch_thread):
    from ogaudit.models.training import TrainSettings, batched_features, train_model

    rng = np.random.default_rng(0)
    index = np.sort(np.concatenate([rng.choice(np.flatnonzero(digits.y == c), 5, replace=False) for c in range(4)]))
    small = digits.subset(index)
    y = small.y.copy()
    y[3] = (y[3] + 1) % 4  # one wrong label among 20
    pilot = dataset_from_arrays(small.x, y)
    model = build_model("cnn", pilot, seed=0)
    seen = []
    run = train_model(model, pilot, TrainSettings(), progress=lambda stage, fraction, message: seen.append(message))
    assert run.holdout is not None and run.epochs <= 30 and run.notes
    # the bar's messages say which training each epoch count belongs to: the held-out folds, then all samples
    assert seen[0] == "choosing the epochs, held-out fold 1/4: epoch 1/30"
    assert "choosing the epochs, held-out fold 4/4: epoch 30/30" in seen
    assert seen[-1] == f"all samples: epoch {run.epochs}/{run.epochs}"
    with torch.no_grad():
        probs = torch.softmax(model.head(torch.as_tensor(batched_features(model, pilot.x))), 1).numpy()
    assert probs[3, y[3]] < 0.9  # the fixed 30-epoch rule said 0.95 here


# ---------------------------------------------------------------- 10. CSVs as spreadsheets save them


@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        ("utf-8", "path;label\n{rows}"),
        ("utf-8", "sep=;\npath;label\n{rows}"),
        ("utf-8-sig", "path\tlabel\n{rows}"),
        ("utf-16", "path\tlabel\n{rows}"),  # Excel's "Unicode text"
        ("utf-16-le", "path|label\n{rows}"),
    ],
)
def test_manifests_in_other_delimiters_and_encodings_are_read(tmp_path, encoding, text):
    delimiter = text.split("label")[0][-1]
    for i in range(4):
        png(tmp_path / f"{i}.png", 60 * i)
    rows = "".join(f"{i}.png{delimiter}{'ab'[i % 2]}\n" for i in range(4))
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(text.format(rows=rows).encode(encoding))
    dataset = load_dataset(manifest)
    assert len(dataset) == 4 and dataset.class_names == ["a", "b"]


def test_csv_that_cannot_be_read_names_the_delimiter_or_encoding_and_the_fix(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("Pfad;Etikett\nä.png;b\n".encode("cp1252"))
    with pytest.raises(DataError, match="Windows-1252.*CSV UTF-8"):
        load_dataset(manifest)
    manifest.write_text("Pfad;Etikett\na.png;b\n")
    with pytest.raises(DataError, match=r"semicolon \(';'\)"):
        load_dataset(manifest)


def test_decisions_import_sniffs_the_delimiter_too(tmp_path):
    ledger = Ledger.open(
        tmp_path / "l.sqlite", dataset_fingerprint="fp", sample_ids=["a", "b"], given_labels=["x", "y"],
        class_names=["x", "y"],
    )  # fmt: skip
    text = "sample_id;action;final_label;score\na;relabel;y;0,5\nb;keep;;\n"  # comma-decimal locale
    report = import_decisions(ledger, codecs.BOM_UTF8 + text.encode(), annotator="ann")
    assert report.stored == 1 and "score '0,5'" in report.describe()
    assert ledger.state()["sample_id"].tolist() == ["b"]


# ---------------------------------------------------------------- 11. inputs that used to end in a traceback


def test_decisions_import_rejects_bad_rows_and_keeps_the_rest(tmp_path):
    ids = [f"id-{i}" for i in range(5)]
    ledger = Ledger.open(
        tmp_path / "l.sqlite", dataset_fingerprint="fp", sample_ids=ids, given_labels=["x"] * 5, class_names=["x", "y"]
    )
    rows = [
        "sample_id,action,rank,decided_at,note",
        "id-0,keep,99999999999999999999999,,",  # row 2: overflows 64 bits
        "id-1,keep,,9999-12-31T23:59:59-05:00,",  # row 3: past year 9999 in UTC
        "id-2,keep,,0000-01-01T00:00:00,",  # row 4: year 0
        f"id-3,keep,,,{'x' * 140_000}",  # row 5: a 140 KB cell
        "id-4,keep,7,2024-05-01T12:00:00,fine",  # row 6
    ]
    report = import_decisions(ledger, "\n".join(rows).encode(), annotator="ann")
    assert [r.row for r in report.rejected] == [2, 3, 4, 5]
    text = report.describe()
    assert "64 bits" in text and "years 1 and 9999" in text and "140,000 characters" in text
    assert ledger.state()["sample_id"].tolist() == ["id-4"]


def test_odd_files_are_skipped_by_name_and_the_rest_load(tmp_path):
    for cls in ("a", "b"):
        for i in range(3):
            png(tmp_path / cls / f"{i}.png", 50 * i)
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 30).save(buffer, "PNG")
    bad_name = os.fsencode(tmp_path / "a") + b"/caf\xe9.png"  # Latin-1 bytes, not UTF-8
    with open(bad_name, "wb") as handle:
        handle.write(buffer.getvalue())
    png(tmp_path / "b" / "dot.png", size=(1, 1))
    dataset = load_dataset(tmp_path)
    assert len(dataset) == 6
    skipped = reasons(dataset)
    assert "not valid UTF-8" in skipped["a/caf\\xe9.png"] and "too small (1x1" in skipped["b/dot.png"]
    json.dumps(skipped)  # printable: it goes into run.json


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.array([[1e39, 0.0], [0.0, 1.0], [1.0, 2.0]]), "beyond the float32 range"),
        (np.zeros((3, 0)), "no features"),
        (np.zeros((3, 4, 0)), "no features"),
    ],
)
def test_arrays_that_models_cannot_use_are_refused_by_name(x, match):
    with pytest.raises(DataError, match=match):
        dataset_from_arrays(x, np.array([0, 1, 0]))


# ---------------------------------------------------------------- 12. names that pandas reads as missing


def test_names_and_ids_that_look_missing_stay_strings_end_to_end(tmp_path):
    na_like = ["None", "NA", "null", "nan", "N/A", ""]
    ids = np.array(na_like[:5] + ["NaN"])
    names = np.array(["None", "NA", "null"])
    npz = tmp_path / "na.npz"
    np.savez(npz, x=np.eye(6), y=np.array([0, 1, 2, 0, 1, 2]), ids=ids, class_names=names)
    dataset = load_dataset(npz)
    assert dataset.sample_ids.tolist() == ids.tolist() and dataset.class_names == ["None", "NA", "null"]
    for cls in ("NA", "null"):
        png(tmp_path / "folder" / cls / "nan.png", 40 if cls == "NA" else 90)
        png(tmp_path / "folder" / cls / "None.png", 70)
    folder = load_dataset(tmp_path / "folder")
    assert folder.class_names == ["NA", "null"] and "NA/nan.png" in folder.sample_ids.tolist()

    ledger = Ledger.for_dataset(tmp_path / "ledger.sqlite", dataset)
    ledger.decide("NA", "relabel", label="None", annotator="NA")
    ledger.decide("nan", "remove", annotator="null")
    exported = decisions_csv_bytes(ledger)
    again = Ledger.for_dataset(tmp_path / "again.sqlite", dataset)
    report = import_decisions(again, exported, annotator="None")
    assert report.rejected == [] and report.stored == 2
    state = again.state().set_index("sample_id")
    assert state.loc["NA", "final_label"] == "None" and state.loc["nan", "action"] == "remove"
    twice = import_decisions(again, exported, annotator="None")  # the same file again, or the ledger's own export
    assert (twice.stored, twice.already, twice.batch_id) == (0, 2, None)
    assert "already holds" in twice.describe() and len(again.history()) == 2
    assert import_decisions(again, decisions_csv_bytes(again), annotator="x").stored == 0
    export_split(dataset, again, tmp_path / "clean")
    with np.load(tmp_path / "clean" / "na.npz") as written:
        assert written["ids"].tolist() == ["None", "NA", "null", "N/A", "NaN"]
        assert written["y"].tolist() == [0, 0, 2, 1, 2]
