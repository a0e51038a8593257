"""Fingerprints and crash-safe file writes shared by every stage that keeps results on disk."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ogaudit.errors import StorageError


def fingerprint(*parts: object) -> str:
    """A short stable hash of arrays, strings and JSON-able settings, used as a cache key."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            array = np.ascontiguousarray(part)
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            if array.dtype.kind in "OU":
                digest.update("\x1f".join(map(str, array.ravel())).encode())
            else:
                digest.update(array.tobytes())
        elif isinstance(part, bytes):
            digest.update(part)
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()[:16]


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A reader never sees a half-written file: after a crash or a full disk the old file (or none) is there.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as error:
        raise _storage_error(path, error) from error
    os.close(handle)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp_path, path)
    except OSError as error:
        raise _storage_error(path, error) from error
    finally:
        tmp_path.unlink(missing_ok=True)


def ensure_writable_dir(path: str | Path) -> Path:
    """Create ``path`` if needed and prove it takes a file, so a long run fails at its start, not its end."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".write-check.", dir=path)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise _storage_error(path, error) from error
    return path


def _storage_error(path: Path, error: OSError) -> StorageError:
    reason = error.strerror or str(error)
    return StorageError(
        f"Cannot write {str(path)!r}: {reason}. Nothing partial was left behind; free disk space or choose a "
        "writable folder, then run again."
    )


def write_json(path: str | Path, payload: object) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str), encoding="utf-8")


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))
