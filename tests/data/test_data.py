"""Loaders for every input kind, and the clear error or report for each bad input."""

import numpy as np
import pytest
from PIL import Image

from ogaudit.data.arrays import dataset_from_arrays
from ogaudit.data.builtins import BUILTINS, read_idx
from ogaudit.data.load import load_dataset
from ogaudit.data.noise import inject_label_noise
from ogaudit.errors import DataError


def test_builtin_digits_and_mnist5k_load_offline():
    digits = load_dataset("digits")
    assert digits.x.shape == (1797, 8, 8, 1) and digits.x.dtype == np.uint8 and digits.n_classes == 10
    mnist = load_dataset("mnist5k")
    assert mnist.x.shape == (5000, 28, 28, 1) and set(np.unique(mnist.y)) == set(range(10))
    assert len(set(mnist.sample_ids)) == 5000


def test_fashion_mnist_loads_or_names_the_install_command():
    try:
        fashion = load_dataset("fashion-mnist", limit=1000)
    except DataError as error:
        assert "apt-get install dataset-fashion-mnist" in str(error)
    else:
        assert fashion.x.shape == (1000, 28, 28, 1) and fashion.class_names[0] == "T-shirt/top"
        assert np.bincount(fashion.y).min() == 100  # stratified subset of a balanced set


def test_idx_reader_refuses_a_truncated_file(tmp_path):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") + (2).to_bytes(4, "big") * 2 + b"\x00" * 5)
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_image_folder_manifest_and_npz_agree(digit_files, digits):
    folder = load_dataset(digit_files["folder"])
    manifest = load_dataset(digit_files["manifest"])
    arrays = load_dataset(digit_files["npz"])
    assert len(folder) == len(manifest) == len(arrays) == 300
    assert folder.kind == "imagefolder" and manifest.kind == "csv" and arrays.kind == "npz"
    assert folder.sample_ids[0].endswith(".png") and "/" in folder.sample_ids[0]
    assert arrays.sample_ids[0] == "d0"
    by_id = dict(zip(manifest.sample_ids, manifest.y))
    assert all(by_id[i] == y for i, y in zip(folder.sample_ids, folder.y))
    np.testing.assert_array_equal(np.sort(folder.x.ravel()), np.sort(digits.x[:300].ravel()))


def test_bad_files_are_skipped_and_reported(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "cat" / "empty.png").write_bytes(b"")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    Image.new("RGB", (32, 20)).save(tmp_path / "dog" / "other-size.png")
    Image.new("P", (16, 16)).save(tmp_path / "dog" / "palette.png")
    Image.fromarray(np.full((16, 16), 40000, dtype=np.uint16)).save(tmp_path / "dog" / "deep.png")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.png"
    Image.new("RGB", (16, 16)).save(outside)
    (tmp_path / "cat" / "escape.png").symlink_to(outside)
    dataset = load_dataset(tmp_path)
    reasons = {s.path: s.reason for s in dataset.skipped}
    assert "empty" in reasons["cat/empty.png"]
    assert "not an image" in reasons["cat/notes.txt"]
    assert "corrupt" in reasons["dog/broken.jpg"] or "not a readable" in reasons["dog/broken.jpg"]
    assert "outside the dataset root" in reasons["cat/escape.png"]
    assert len(dataset) == 9  # 6 plain + resized + palette + 16-bit
    assert dataset.x.shape[1:] == (16, 16, 3)
    deep = dataset.x[list(dataset.sample_ids).index("dog/deep.png")]
    assert 150 < deep.mean() < 160  # 40000 / 65535 * 255, not clipped to white


def test_folder_with_only_bad_files_is_a_clear_error(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        (tmp_path / cls / "x.png").write_bytes(b"")
    with pytest.raises(DataError, match="No usable image"):
        load_dataset(tmp_path)


def test_single_class_is_refused(tmp_path):
    (tmp_path / "only").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "only" / "a.png")
    with pytest.raises(DataError, match="at least two classes"):
        load_dataset(tmp_path)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("", "empty"),
        ("where,what\na.png,x\n", "needs an image path column and a label column"),
        ("path,label\n", "no rows"),
        ("path,label\na.png,x\na.png,y\n", "more than once"),
    ],
)
def test_bad_manifests(tmp_path, content, match):
    path = tmp_path / "m.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=match):
        load_dataset(path)


def test_non_utf8_manifest_names_the_byte(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes(b"path,label\nimg\xff.png,a\n")
    with pytest.raises(DataError, match="not UTF-8"):
        load_dataset(path)


def test_manifest_path_escaping_the_root_is_skipped(tmp_path, digit_files):
    lines = digit_files["manifest"].read_text().splitlines()
    manifest = digit_files["folder"] / "escape.csv"
    manifest.write_text("\n".join([*lines, "../../etc/passwd.png,1", "/etc/hosts.png,2"]) + "\n")
    dataset = load_dataset(manifest)
    assert len(dataset) == 300
    assert {s.path for s in dataset.skipped} == {"../../etc/passwd.png", "/etc/hosts.png"}


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "match"),
    [
        (np.zeros((4, 3)), np.array([0, 1, 0]), {}, "4 samples but y"),
        (np.array([[np.nan, 1], [0, 1]]), np.array([0, 1]), {}, "NaN"),
        (np.zeros((2, 3)), np.array([0, 5]), {"class_names": ["a", "b"]}, "outside the 2 classes"),
        (np.zeros((3, 2)), np.array([1, 1, 1]), {"class_names": ["a", "b"]}, "two classes"),
        (np.zeros((2, 2)), np.array([0, 1]), {"ids": np.array(["a", "a"])}, "unique"),
        (np.array([["a", "b"], ["c", "d"]]), np.array([0, 1]), {}, "numeric"),
        (np.zeros((2, 2)), np.array([0.5, 1.0]), {}, "integer"),
    ],
)
def test_bad_arrays(x, y, kwargs, match):
    with pytest.raises(DataError, match=match):
        dataset_from_arrays(x, y, **kwargs)


def test_npz_missing_arrays_and_unknown_names(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, features=np.zeros((3, 2)))
    with pytest.raises(DataError, match="lacks"):
        load_dataset(path)
    with pytest.raises(DataError, match="built-in"):
        load_dataset("no-such-dataset")
    assert "digits" in BUILTINS


def test_string_labels_and_nchw_images_are_normalised():
    x = np.random.default_rng(0).random((6, 1, 10, 12)).astype(np.float32)
    dataset = dataset_from_arrays(x, np.array(["b", "a", "b", "a", "b", "a"]))
    assert dataset.class_names == ["a", "b"] and dataset.x.shape == (6, 10, 12, 1)
    # floats are not quantised (issue 12, item 5: this used to assert uint8, the bug): the values are the input's
    assert dataset.x.dtype == np.float32
    np.testing.assert_array_equal(dataset.x, x.transpose(0, 2, 3, 1))
    assert dataset.image(0).dtype == np.uint8 and dataset.image(0).shape == (10, 12, 1)


def test_noise_injection_is_seeded_and_keeps_truth(digits):
    noisy = inject_label_noise(digits, 0.2, seed=3)
    again = inject_label_noise(digits, 0.2, seed=3)
    np.testing.assert_array_equal(noisy.y, again.y)
    flipped = noisy.y != noisy.true_y
    assert flipped.sum() == round(0.2 * len(digits))
    np.testing.assert_array_equal(noisy.true_y, digits.y)
    pairs = inject_label_noise(digits, 0.1, kind="pairs", seed=0)
    changed = pairs.y != pairs.true_y
    assert np.all(pairs.y[changed] == (pairs.true_y[changed] + 1) % 10)


# ---------------------------------------------------------------- in-memory containers (ogaudit.data.containers)


def test_containers_are_held_to_the_memory_budget_before_anything_is_copied(monkeypatch, tmp_path):
    import pandas as pd
    import torch

    from ogaudit.data.containers import as_dataset

    monkeypatch.setenv("OGAUDIT_MEMORY_BUDGET", "1M")
    huge_view = np.broadcast_to(np.float64(1.0), (100_000, 100))  # 8 bytes in memory, 80 MB once copied
    with pytest.raises(DataError, match=r"Refused the arrays \(x, y\).*\(100000, 100\) float64.*OGAUDIT_MEMORY_BUDGET"):
        as_dataset((huge_view, np.zeros(100_000, dtype=np.int64)))
    sparse = pd.DataFrame({f"c{i}": pd.arrays.SparseArray(np.zeros(200_000)) for i in range(10)})
    with pytest.raises(DataError, match=r"Refused the DataFrame.*200,000 rows x 10 feature columns"):
        as_dataset(sparse.assign(label=np.arange(200_000) % 2))

    class Endless(torch.utils.data.Dataset):
        def __len__(self):
            return 10**12

        def __getitem__(self, index):
            return torch.zeros(3, 32, 32), index % 2

    np.save(tmp_path / "x.npy", np.zeros((20_000, 50)))  # float64 on disk: 8 MB once read, 4 MB as float32
    with pytest.raises(DataError, match=r"Refused the arrays .*\(20000, 50\) float64.*to read it into memory"):
        as_dataset((np.load(tmp_path / "x.npy", mmap_mode="r"), np.zeros(20_000, dtype=np.int64)))
    with pytest.raises(DataError, match=r"Refused the arrays .*\(20000, 50\) bfloat16"):
        as_dataset((torch.zeros(20_000, 50, dtype=torch.bfloat16), torch.zeros(20_000)))
    with pytest.raises(DataError, match=r"Refused the torch Dataset Endless.*1,000,000,000,000 samples"):
        as_dataset(Endless())

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            while True:
                yield torch.zeros(1000), 1

    with pytest.raises(DataError, match=r"Refused the torch Dataset Stream.*samples read so far, stopped there"):
        as_dataset(Stream())


def test_container_labels_are_typed_from_every_value():
    import pandas as pd
    import torch

    from ogaudit.data.containers import as_dataset

    features = pd.DataFrame(np.random.default_rng(0).random((1200, 3)), columns=list("abc"))
    labels = [0, 1] * 600
    for bad, message in (
        (2.7, "non-integer number 2.7 at row 1100"),
        ("cat", "mixes label types.* row 1100"),
        (10**30, "too large for a class index"),
    ):
        column = pd.Series(labels[:1100] + [bad] + labels[1101:], dtype=object)
        with pytest.raises(DataError, match=message):
            as_dataset(features.assign(label=column))
    with pytest.raises(DataError, match=r"non-integer or missing value\(s\), first at row 1100, e.g. \[2.7\]"):
        as_dataset(features.assign(label=np.array(labels[:1100] + [2.7] + labels[1101:])))  # a float column
    indices = as_dataset(features.assign(label=pd.Series(labels, dtype=object)))
    assert indices.class_names == ["0", "1"]
    x = np.random.default_rng(0).random((40, 3))
    for missing in (None, float("nan")):
        with pytest.raises(DataError, match="missing label .* at row 38"):
            as_dataset((x, np.array([0, 1] * 19 + [missing, 1], dtype=object)))
        with pytest.raises(DataError, match="missing label .* at row 38"):
            as_dataset((x, [0, 1] * 19 + [missing, 1]))  # a list, as numpy would read it: 'None' is no class
    with pytest.raises(DataError, match="mixes label types.* row 39"):
        as_dataset((x, [0, 1] * 19 + [0, "cat"]))
    assert as_dataset((x, [0, 1] * 20)).class_names == ["0", "1"]
    assert as_dataset((x, ["a", "b"] * 20)).class_names == ["a", "b"]

    class Mixed(torch.utils.data.Dataset):
        def __len__(self):
            return 300

        def __getitem__(self, index):
            return torch.zeros(2), "cat" if index in (3, 290) else index % 2

    with pytest.raises(DataError, match="Mixed mixes label types: sample 0 has .* but sample 3 has 'cat'"):
        as_dataset(Mixed())


def test_tensors_numpy_cannot_read_are_converted_or_refused_with_the_fix():
    import scipy.sparse
    import torch

    from ogaudit.data.containers import as_dataset

    x, y = np.random.default_rng(0).random((40, 5)), np.arange(40) % 2
    for half in (torch.bfloat16, torch.float16):
        assert as_dataset((torch.tensor(x).to(half), torch.tensor(y))).x.dtype == np.float32
    refused = {
        r"'meta' tensor": torch.empty(40, 5, device="meta"),
        r"sparse tensor \(layout sparse_coo\).*x.to_dense\(\)": torch.tensor(x).to_sparse(),
        r"sparse tensor \(layout sparse_csr\).*x.to_dense\(\)": torch.tensor(x).to_sparse_csr(),
        r"scipy sparse matrix.*x.toarray\(\)": scipy.sparse.csr_matrix(x),
        r"masked array with \d+ masked value.*filled": np.ma.masked_array(x, mask=x > 0.9),
    }
    for message, value in refused.items():
        with pytest.raises(DataError, match=message):
            as_dataset((value, y))
    with pytest.raises(DataError, match="nested tensor.*to_padded_tensor"):
        as_dataset((torch.nested.nested_tensor([torch.rand(3), torch.rand(4)]), y[:2]))
    assert as_dataset((np.ma.masked_array(x), y)).x.shape == (40, 5)  # nothing masked: the values as they are

    class Uneven(torch.utils.data.Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, index):
            if index == 5 and self.fail:
                raise KeyError("no such file")
            return torch.rand(3, 8 + (index == 7), 8), index % 2

    uneven = Uneven()
    uneven.fail = False
    with pytest.raises(DataError, match=r"Sample 7 .* shape \(3, 9, 8\) but sample 0 has \(3, 8, 8\)"):
        as_dataset(uneven)
    uneven.fail = True
    with pytest.raises(DataError, match=r"Reading sample 5 .*KeyError") as raised:
        as_dataset(uneven)
    assert isinstance(raised.value.__cause__, KeyError)

    class Negative(Uneven):
        def __len__(self):
            return -1

    with pytest.raises(DataError, match="torch Dataset Negative"):
        as_dataset(Negative())


def test_a_second_label_column_is_named_or_refused():
    import pandas as pd

    from ogaudit.data.containers import as_dataset

    y = np.arange(40) % 2
    frame = pd.DataFrame(np.random.default_rng(0).random((40, 3)), columns=list("abc"))
    with pytest.raises(DataError, match="column 'y' holds the same values as the label column 'target'"):
        as_dataset(frame.assign(target=y, y=y))
    dataset = as_dataset(frame.assign(target=y, y=(y + 1) * 3))
    assert any("'target' is taken as the labels; ['y']" in note for note in dataset.notes)


def test_images_with_other_channel_counts_are_read_as_rgb_or_refused():
    rng = np.random.default_rng(0)
    y = np.arange(12) % 2
    with pytest.warns(UserWarning, match="alpha channel is dropped"):
        rgba = dataset_from_arrays(rng.integers(0, 255, (12, 8, 8, 4), dtype=np.uint8), y)
    assert rgba.x.shape == (12, 8, 8, 3) and any("RGBA" in note for note in rgba.notes)
    with pytest.warns(UserWarning, match="alpha channel is dropped"):
        assert dataset_from_arrays(rng.random((12, 4, 8, 8)), y).x.shape == (12, 8, 8, 3)
    for shape in ((12, 8, 8, 2), (12, 2, 8, 8), (12, 8, 8, 3, 2), (12, 8, 8, 7)):
        with pytest.raises(DataError, match=r"C = 1 or 3 channels .* x.reshape\(len\(x\), -1\)"):
            dataset_from_arrays(rng.random(shape), y)
    assert dataset_from_arrays(rng.random((12, 2, 3, 2)), y).x.shape == (12, 12)  # small: vectors, as before


def test_an_empty_name_and_an_unreadable_folder_are_refused_by_name(tmp_path, monkeypatch):
    import os

    import ogaudit.data.images as images

    for empty in ("", "  "):
        with pytest.raises(DataError, match="is empty: give a built-in name"):
            load_dataset(empty)
    with pytest.raises(DataError, match="'/' is the root of the file system"):
        load_dataset("/")
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        Image.new("L", (8, 8)).save(tmp_path / label / "0.png")
    real_walk = os.walk

    def walk(top, onerror=None, **options):  # as os.walk does for a folder it may not list (tests run as root)
        onerror(PermissionError(13, "Permission denied", str(tmp_path / "b" / "private")))
        yield from real_walk(top, onerror=onerror, **options)

    monkeypatch.setattr(images.os, "walk", walk)
    with pytest.raises(DataError, match=r"Cannot read '.*b/private' while loading .*: permission denied"):
        load_dataset(str(tmp_path))
