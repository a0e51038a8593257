"""Fingerprints and crash-safe file writes shared by every stage that keeps results on disk.

Files written here replace the old ones atomically and get the permissions a new file from an ordinary
``open`` would get: ``0o666`` less the process's umask (so that a team sharing a group and a ``002`` umask can
read and write a project); folders get ``0o777`` less the umask. CSV files written with :func:`write_csv` are safe to
open in a spreadsheet: text cells that it would run as a formula are escaped; :func:`read_csv` takes the
escapes off again.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import mmap
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ogaudit.errors import StorageError

if TYPE_CHECKING:
    import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


FINGERPRINT_CHUNK_BYTES = 1 << 26
"""Arrays are hashed this many bytes at a time, so a memory-mapped array of any size is never copied whole."""


def fingerprint(*parts: object) -> str:
    """A short stable hash of arrays, strings and JSON-able settings, used as a cache key.

    Every byte of an array is hashed (SHA-256), streamed in blocks of rows of about ``FINGERPRINT_CHUNK_BYTES``:
    the digest is the same as hashing the array's bytes at once, so an array read into memory and the same array
    memory-mapped from a ``.npy`` have one fingerprint, and any change to any value changes it.
    """
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            array = part if part.flags.c_contiguous else np.ascontiguousarray(part)
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            if array.dtype.kind in "OU":
                digest.update("\x1f".join(map(str, array.ravel())).encode())
            elif array.ndim == 0 or array.nbytes <= FINGERPRINT_CHUNK_BYTES:
                digest.update(array.tobytes())
            else:
                step = max(1, FINGERPRINT_CHUNK_BYTES // max(array[0].nbytes, 1))
                for start in range(0, len(array), step):
                    digest.update(memoryview(np.ascontiguousarray(array[start : start + step])).cast("B"))
            release_pages(part)
        elif isinstance(part, bytes):
            digest.update(part)
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()[:16]


def release_pages(array: object) -> None:
    """Stop counting a read-only memory map's pages in this process's resident memory.

    After a pass over a memory-mapped ``x.npy`` (``np.load(..., mmap_mode="r")``) every page read stays mapped, so
    a 10⁶-sample pass leaves the whole file in the process's RSS. ``madvise(MADV_DONTNEED)`` unmaps them: the
    bytes stay in the kernel's page cache and are mapped again, without a disk read, when next touched. Only
    read-only maps (``mode == "r"``) are released (a copy-on-write map would lose its changes), found through
    any chain of views (``load_dataset`` hands out a reshaped view); anything else, or a platform without
    ``madvise``, is left as it is.
    """
    base = array
    while base is not None and getattr(base, "_mmap", None) is None:  # a view (a reshape, a slice) of the map
        base = getattr(base, "base", None)
    if base is None or getattr(base, "mode", None) != "r" or not hasattr(mmap, "MADV_DONTNEED"):
        return
    with suppress(OSError, ValueError, AttributeError):
        base._mmap.madvise(mmap.MADV_DONTNEED)


@contextmanager
def atomic_path(path: str | Path, *, private: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A reader never sees a half-written file: after a crash or a full disk the old file (or none) is there.
    The file gets ``0666`` less the umask, or with ``private`` stays ``0600`` (secrets: the users file).
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
        if not private:
            os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp made it 0600
        os.replace(tmp_path, path)
    except OSError as error:
        raise _storage_error(path, error) from error
    finally:
        tmp_path.unlink(missing_ok=True)


def current_umask() -> int:
    """The process's umask, read without changing it (``/proc/self/status``), so that no thread ever
    creates a file under a temporarily cleared umask; where ``/proc`` lacks it, read once at first use."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return _umask_by_setting()


@functools.cache
def _umask_by_setting() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


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
    if isinstance(error, FileExistsError | NotADirectoryError | IsADirectoryError):
        fix = "a file or folder is in the way: choose another path, or move it away"
    elif error.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free disk space"
    else:
        fix = "free disk space or choose a writable folder"
    return StorageError(
        f"Cannot write {str(path)!r}: {reason}. Nothing partial was left behind; {fix}, then run again."
    )


def check_replaceable(path: str | Path, *, ours: Callable[[bytes], bool], what: str) -> Path:
    """``path`` (``~`` expanded) if writing ``what`` there replaces nothing but a file of that kind.

    An export may replace its own earlier output, never anything else: not a file whose first 4,096 bytes
    ``ours`` does not recognise (the user's data, a project file), not a folder, device, pipe or symbolic link.
    ``ours`` must recognise what only that export writes (its exact header, a mark it leaves), not merely the
    file format: the user's own Parquet table or SQLite database is not an earlier export. Raises
    :class:`StorageError` naming the path and the fix.
    """
    path = Path(path).expanduser()
    if path.is_symlink() or (path.exists() and not path.is_file()):
        kind = "a symbolic link" if path.is_symlink() else "a folder" if path.is_dir() else "not a regular file"
        raise StorageError(f"{str(path)!r} is {kind}; {what} is written only to a new file. Choose another path.")
    if path.exists():
        with open(path, "rb") as handle:
            head = handle.read(4096)
        if not ours(head):
            raise StorageError(
                f"{str(path)!r} exists and is not {what}, so it is not replaced. Choose a new file name, or move "
                "that file away first."
            )
    return path


def write_json(path: str | Path, payload: object) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str), encoding="utf-8")


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


# ---------------------------------------------------------------- CSV that is safe to open in a spreadsheet


def escape_cell(text: str) -> str:
    """Prefix ``'`` to text a spreadsheet would run as a formula (starting with ``= + - @``, a tab or a
    carriage return), and to text that already looks escaped, so that :func:`unescape_cell` is exact."""
    bare = text.lstrip("'")
    return "'" + text if bare[:1] in FORMULA_STARTS else text


def unescape_cell(text: str) -> str:
    """Undo :func:`escape_cell`."""
    bare = text.lstrip("'")
    return text[1:] if text.startswith("'") and bare[:1] in FORMULA_STARTS else text


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` (without its index) as UTF-8 CSV, atomically, safe to open in a spreadsheet.

    Every text cell and column name that a spreadsheet would run as a formula is escaped with
    :func:`escape_cell` (class names and file names are user input: ``=HYPERLINK(...)``, ``+cmd|...``);
    numbers, booleans and missing values are written as pandas writes them. Read it back with
    :func:`read_csv`, which takes the escapes off. Returns ``path``.
    """
    import pandas as pd

    escaped = frame.copy()
    for position, dtype in enumerate(frame.dtypes):
        if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype):
            column = frame.iloc[:, position].astype(object)
            escaped.isetitem(position, column.map(lambda v: escape_cell(v) if isinstance(v, str) else v))
    escaped.columns = [escape_cell(c) if isinstance(c, str) else c for c in frame.columns]
    with atomic_path(path) as tmp:
        escaped.to_csv(tmp, index=False, lineterminator="\r\n")  # RFC 4180; a cell with a lone CR is quoted
    return Path(path)


def read_csv(path: str | Path, **options) -> pd.DataFrame:
    """Read a CSV written by :func:`write_csv`: ``pandas.read_csv(path, **options)``, then every text cell
    and column name unescaped. (``pandas.read_csv`` alone would return ``'=cat`` for a class ``=cat``.)"""
    import pandas as pd

    frame = pd.read_csv(path, **options)
    for position, dtype in enumerate(frame.dtypes):
        if pd.api.types.is_string_dtype(dtype):
            column = frame.iloc[:, position]
            frame.isetitem(position, column.map(lambda v: unescape_cell(v) if isinstance(v, str) else v))
    frame.columns = [unescape_cell(c) if isinstance(c, str) else c for c in frame.columns]
    return frame
