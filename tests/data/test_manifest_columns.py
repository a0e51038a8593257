"""CSV manifests with any column names (``--path-column``, ``--label-column``, ``path_column=``), absolute paths
only inside the manifest's folder or ``$OGAUDIT_DATA_ROOTS`` (:mod:`ogaudit.data.manifest`), and the ImageFolder's
near misses (split folders, loose images, a table beside them)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ogaudit.cli import main
from ogaudit.data.load import load_dataset
from ogaudit.errors import DataError

N = 20


@pytest.fixture
def images(digits, tmp_path):
    """20 digits as PNGs in ``tmp_path/set/img`` and in ``tmp_path/other`` (another folder); their class names."""
    for folder in ("set/img", "other"):
        (tmp_path / folder).mkdir(parents=True)
        for i in range(N):
            Image.fromarray(digits.x[i, :, :, 0]).save(tmp_path / folder / f"{i}.png")
    return [digits.class_names[y] for y in digits.y[:N]]


def test_any_column_names_by_flag_keyword_or_common_name(images, tmp_path, digits):
    manifest = tmp_path / "set" / "photos.csv"
    manifest.write_text("id;file;species\n" + "".join(f"{i};img/{i}.png;{name}\n" for i, name in enumerate(images)))
    loaded = load_dataset(manifest, path_column="FILE", text_options={"label_column": "species"})
    assert len(loaded) == N and loaded.sample_ids[0] == "img/0.png"
    assert np.array_equal(loaded.x[..., 0], digits.x[:N, :, :, 0])
    found = tmp_path / "set" / "found.csv"  # common names are found without flags
    found.write_text("filepath,class\n" + "".join(f"img/{i}.png,{name}\n" for i, name in enumerate(images)))
    assert np.array_equal(load_dataset(found).y, loaded.y)
    with pytest.raises(DataError, match=r"has no column 'path' \(--path-column\); its columns are \['id', 'file'"):
        load_dataset(manifest, path_column="path")
    with pytest.raises(DataError, match="none is a label column by its name .* --label-column NAME"):
        load_dataset(manifest, path_column="file")


def test_absolute_paths_are_read_inside_the_manifest_folder_or_the_data_roots(images, tmp_path, monkeypatch):
    manifest = tmp_path / "set" / "abs.csv"
    rows = [(tmp_path / "set" / "img" / f"{i}.png", images[i]) for i in range(10)]
    rows += [(tmp_path / "other" / f"{i}.png", images[i]) for i in range(10, N)]
    manifest.write_text("path,label\n" + "".join(f"{p},{name}\n" for p, name in rows))
    loaded = load_dataset(manifest)  # the other folder is not allowed: its rows are skipped, naming the fix
    assert len(loaded) == 10 and loaded.sample_ids[0] == str(tmp_path / "set" / "img" / "0.png")
    assert all("OGAUDIT_DATA_ROOTS" in s.reason for s in loaded.skipped) and len(loaded.skipped) == 10
    assert "list the folder of absolute paths in $OGAUDIT_DATA_ROOTS" in " ".join(loaded.notes)
    monkeypatch.setenv("OGAUDIT_DATA_ROOTS", str(tmp_path / "other"))
    assert len(load_dataset(manifest)) == N
    assert len(load_dataset(manifest, data_roots=[])) == 10  # an explicit list replaces the variable
    (tmp_path / "set" / "img" / "link.png").symlink_to(tmp_path / "elsewhere.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "elsewhere.png")
    manifest.write_text(manifest.read_text() + f"{tmp_path / 'set' / 'img' / 'link.png'},{images[0]}\n")
    skipped = load_dataset(manifest).skipped
    assert [s.path for s in skipped] == [str(tmp_path / "set" / "img" / "link.png")]  # a link leading out


def test_a_cleaned_split_copies_absolute_images_into_itself(images, tmp_path, monkeypatch):
    from ogaudit.review.ledger import Ledger
    from ogaudit.review.split import export_split

    monkeypatch.setenv("OGAUDIT_DATA_ROOTS", str(tmp_path / "other"))
    manifest = tmp_path / "set" / "abs.csv"
    rows = [f"img/{i}.png,{images[i]}" for i in range(10)] + [
        f"{tmp_path}/other/{i}.png,{images[i]}" for i in range(10, N)
    ]
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n")
    dataset = load_dataset(manifest)
    before = sorted(p.name for p in (tmp_path / "other").iterdir())
    export_split(dataset, Ledger.for_dataset(tmp_path / "l.sqlite", dataset), tmp_path / "cleaned")
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == before  # the user's folder is untouched
    monkeypatch.delenv("OGAUDIT_DATA_ROOTS")
    again = load_dataset(tmp_path / "cleaned" / "abs.csv")  # self-contained: no data root needed
    assert np.array_equal(again.x, dataset.x) and f"external{tmp_path}/other/10.png" in set(again.sample_ids)


def test_the_command_line_passes_the_columns(images, tmp_path, capsys):
    manifest = tmp_path / "set" / "photos.csv"
    manifest.write_text("file,species\n" + "".join(f"img/{i}.png,{name}\n" for i, name in enumerate(images)))
    code = main(["scan", str(manifest), "--path-column", "nope", "--out", str(tmp_path / "o"), "--json"])
    assert code == 3
    assert "no column 'nope' (--path-column)" in json.loads(capsys.readouterr().out)["error"]


def test_folders_that_are_almost_an_image_folder_say_what_they_look_like(images, tmp_path, digits):
    with pytest.raises(DataError, match=r"holds 20 image file\(s\) directly, with no labels"):
        load_dataset(tmp_path / "other")
    (tmp_path / "other" / "labels.csv").write_text("path,label\n")
    with pytest.raises(DataError, match=r"It holds 'labels.csv': give the table's path instead"):
        load_dataset(tmp_path / "other")
    (tmp_path / "arrays").mkdir()
    np.save(tmp_path / "arrays" / "images.npy", np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(DataError, match=r"holds the arrays \['images.npy'\], but not x.npy and y.npy"):
        load_dataset(tmp_path / "arrays")
    np.save(tmp_path / "arrays" / "x.npy", np.zeros((2, 8, 8), np.uint8))
    np.save(tmp_path / "arrays" / "labels.npy", np.arange(2))
    with pytest.raises(DataError, match="It holds labels.npy: rename it y.npy"):
        load_dataset(tmp_path / "arrays")
    np.savez(
        tmp_path / "keras.npz", x_train=np.zeros((2, 8, 8)), y_train=[0, 1], x_test=np.zeros((1, 8, 8)), y_test=[0]
    )
    with pytest.raises(DataError, match=r"looks like a train/test split \('x_train', 'y_train'\): audit one split"):
        load_dataset(tmp_path / "keras.npz")
    (tmp_path / "data.zip").write_bytes(b"PK")
    with pytest.raises(DataError, match="is a zip archive: unzip it"):
        load_dataset(tmp_path / "data.zip")
    for split in ("train", "test"):
        for i in range(N):
            folder = tmp_path / "splits" / split / digits.class_names[digits.y[i]]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(digits.x[i, :, :, 0]).save(folder / f"{i}.png")
    with pytest.raises(DataError, match=r"holds the split folders \['test', 'train'\].*Audit one split: give"):
        load_dataset(tmp_path / "splits")
    assert len(load_dataset(tmp_path / "splits" / "train")) == N


def test_the_app_setup_keeps_the_path_column_for_a_server_manifest(images, tmp_path):
    from ogaudit.ui.forms import SetupChoices, prepare_audit

    manifest = tmp_path / "set" / "photos.csv"
    manifest.write_text("file,species\n" + "".join(f"img/{i}.png,{name}\n" for i, name in enumerate(images)))
    choices = SetupChoices(source="Path", path="photos.csv", path_column="file", label_column="species")
    project, data, settings = prepare_audit(choices, tmp_path / "home", data_roots=[tmp_path / "set"])
    assert Path(data) == manifest and settings.path_column == "file" and settings.label_column == "species"
    assert settings.to_dict()["path_column"] == "file"  # kept in request.json / run.json: the review reads it again
    loaded = load_dataset(data, path_column=settings.path_column, text_options=settings.text_options)
    assert len(loaded) == N


@pytest.mark.parametrize("kind", ["absolute", "relative-through-a-link"])
def test_a_cleaned_split_never_writes_outside_its_folder(images, tmp_path, monkeypatch, kind):
    """A listed path whose text climbs with '..' but that resolves inside an allowed folder (an absolute path
    ``/../../<root>/x.png``, or ``link/../../x.png`` through a symlinked folder) is copied inside the split, never
    to where its text leads from the split's folder."""
    from ogaudit.review.ledger import Ledger
    from ogaudit.review.split import export_split

    monkeypatch.setenv("OGAUDIT_DATA_ROOTS", str(tmp_path / "other"))
    (tmp_path / "exports" / "deep").mkdir(parents=True)
    if kind == "absolute":  # from the split's staging folder (exports/deep/.out…part/external/), 3 '..' reach exports/
        sneaky = "/" + "/".join([".."] * 3) + str(tmp_path / "other" / "3.png")
    else:  # set/link -> set/img/a/b: link/../../3.png is set/img/3.png; from the staging folder, exports/deep/3.png
        (tmp_path / "set" / "img" / "a" / "b").mkdir(parents=True)
        (tmp_path / "set" / "link").symlink_to(tmp_path / "set" / "img" / "a" / "b")
        sneaky = "link/../../3.png"
    rows = [f"img/{i}.png,{images[i]}" for i in range(N)] + [f"{sneaky},{images[3]}"]
    (tmp_path / "set" / "m.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    dataset = load_dataset(tmp_path / "set" / "m.csv")
    assert len(dataset) == N + 1 and not dataset.skipped  # the control: the path is read, it resolves inside
    out = tmp_path / "exports" / "deep" / "out"
    export_split(dataset, Ledger.for_dataset(tmp_path / "l.sqlite", dataset), out)
    written = {p for p in (tmp_path / "exports").rglob("*") if p.is_file()}
    assert written and all(p.is_relative_to(out) for p in written), sorted(map(str, written - set(out.rglob("*"))))
    again = load_dataset(out / "m.csv", data_roots=[])  # self-contained, every image inside it
    assert len(again) == N + 1 and not again.skipped and np.array_equal(again.x, dataset.x)
