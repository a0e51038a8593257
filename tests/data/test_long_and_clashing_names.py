"""Names that used to end in a traceback (issue 25, finding 6): zip entries whose names clash, 300-character
zip names, a 200 KB path in a manifest. Each is a clear refusal or a skip with its reason, and nothing is left."""

from __future__ import annotations

import io
import warnings
import zipfile

import pytest
from PIL import Image

from ogaudit.data.load import load_dataset
from ogaudit.data.uploads import unpack_zip
from ogaudit.errors import DataError


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def _zip(names: list[str]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as archive:
        warnings.simplefilter("ignore", UserWarning)  # zipfile's "Duplicate name": the case being built
        for name in names:
            archive.writestr(name, _png())
    return buffer.getvalue()


@pytest.mark.parametrize(
    "names, message",
    [
        (["a/x", "a/x/1.png", "b/2.png"], r"the entry 'a/x' is a file, and other entries put files inside it"),
        (["a/1.png", "b/2.png", "a/1.png"], r"the entry 'a/1.png' appears more than once"),
        (["a/" + "n" * 300 + ".png", "b/2.png"], r"a file or folder name too long \(304 bytes; the limit is 255\)"),
        (["d" * 300 + "/1.png", "b/2.png"], r"name too long \(300 bytes"),
        (["a/" + "/".join(["p" * 200] * 30) + "/1.png", "b/2.png"], r"path too long \(6,\d\d\d characters"),
    ],
    ids=["file-and-folder", "twice", "300-char-name", "300-char-folder", "long-path"],
)
def test_zip_entries_that_clash_or_are_too_long_are_refused_and_leave_nothing(tmp_path, names, message):
    with pytest.raises(DataError, match=f"Refused the upload: .*{message}") as caught:
        unpack_zip(_zip(names), tmp_path / "unpacked")
    assert len(str(caught.value)) < 1000  # the name is shown cut, not whole
    assert not (tmp_path / "unpacked").exists()


def test_an_unpack_that_the_file_system_refuses_is_a_data_error_and_leaves_nothing(tmp_path, monkeypatch):
    from ogaudit.data import uploads

    def refuse(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "unpacked" / "a" / "1.png"))

    monkeypatch.setattr(uploads, "_extract", refuse)
    with pytest.raises(DataError, match=r"Could not unpack the upload: No space left on device .*Nothing was kept"):
        unpack_zip(_zip(["a/1.png", "b/2.png"]), tmp_path / "unpacked")
    assert not (tmp_path / "unpacked").exists()


def test_a_200_kb_path_in_a_manifest_is_skipped_with_its_reason_and_the_rest_load(tmp_path):
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.new("RGB", (8, 8), (40 * i, 90, 30)).save(tmp_path / label / f"{i}.png")
    rows = [f"{label}/{i}.png,{label}" for label in ("a", "b") for i in range(3)]
    long_name, deep = "x" * 200_000 + ".png", "/".join(["y" * 250] * 30) + ".png"
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label\n" + "\n".join([*rows, f"{long_name},a", f"{deep},b"]) + "\n")
    dataset = load_dataset(manifest)
    assert len(dataset) == 6
    reasons = [s.reason for s in dataset.skipped]
    assert any(r.startswith("path too long (200,004 characters") for r in reasons), reasons
    assert any(r.startswith("path too long (7,") or "name too long" in r for r in reasons), reasons
    assert all(len(s.path) < 400 for s in dataset.skipped)  # shown cut, with the length


def test_a_manifest_of_only_over_long_paths_is_a_short_clear_error(tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label\n" + "x" * 200_000 + ".png,a\n" + "z" * 300 + ".png,b\n")
    with pytest.raises(DataError, match="No usable image") as caught:
        load_dataset(manifest)
    assert "too long" in str(caught.value) and len(str(caught.value)) < 3000
