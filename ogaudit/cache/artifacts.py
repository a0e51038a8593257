"""The artifact cache: trained models, frozen-backbone features, head evidence, projected layer gradients, gradient
neighbours and maps,
keyed by their inputs.

One scheme for every kind of artifact (kronfluence keeps each stage's arguments beside its artifact the same way).
An entry is a folder ``CACHE/v1/<kind>/<key>/`` holding the artifact's files and ``entry.json``: the cache format,
the kind, the key and the settings it was computed from. ``key`` is a fingerprint of everything that decides the
result (data fingerprint, model key, settings); ``settings`` is the readable part, saved so that a person (and
:meth:`CacheEntry.load`) can tell what an entry is.

* **Atomic.** An entry is built in a hidden folder beside its final place and renamed there when complete, so a
  crash or a full disk never leaves a half entry that counts as a hit. The hidden folder of a save that was killed
  is removed the next day the cache is opened (:data:`STALE_PART_S`).
* **Verified on read.** :meth:`CacheEntry.load` checks ``entry.json`` (format, kind, key, settings) and calls the
  reader; a missing, damaged or mismatched entry is removed and reported through ``notice`` (then recomputed by
  the caller), never raised as a traceback.
* **One writer at a time.** :meth:`CacheEntry.exclusive` holds a lock (``filelock``) on the entry while it
  is computed, so a second scan (another process, or another job of the app) that needs the same entry waits and
  then reads it, instead of writing into the same work folder; a lock dies with its process. Two entries saved
  at once under one key (the same inputs, so the same content) keep the first, without an error.
* **Resumable work in place.** A stage that writes incrementally (a :class:`~ogaudit.cache.store.SampleStore`:
  features and probabilities, projected layer gradients, text embeddings) gets :meth:`CacheEntry.work_dir`, a
  folder that survives an interruption, and :meth:`CacheEntry.commit` marks it complete.

``$OGAUDIT_CACHE`` (default ``~/.cache/ogaudit``) is the root; :func:`default_cache_dir` reads it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from filelock import FileLock, Timeout

from ogaudit.errors import StorageError
from ogaudit.progress import check_cancel
from ogaudit.storage import ensure_writable_dir, read_json, write_json

CACHE_FORMAT = 1
ENTRY_FILE = "entry.json"
KINDS = (
    "model",
    "features",
    "evidence",
    "layer-gradients",
    "neighbours",
    "scores",
    "map",
    "text-embeddings",
    "causal-lm",
    "llm-states",
    "llm-adapters",
)
LEGACY_FILES = re.compile(
    r"(models/[0-9a-f]{16}(\.trajectory\.npy|\.pt)|evidence/[0-9a-f]{16}\.npz|maps/[0-9a-f]{16}\.npy"
    r"|layer-gradients/[0-9a-f]{16}(\.done\.npy|\.npy|\.json))"
)
"""Files of the cache schemes before this one (one file per key, no settings beside it): removed on open.
Only names of exactly that shape are touched, so a ``--cache-dir`` shared with other files loses nothing else."""

STALE_PART_S = 24 * 3600
"""Age (seconds since its last change) after which a hidden ``.<key>.<id>.part`` staging folder is taken for the
leftover of a save that was killed (``kill -9``, a power cut) and removed when the cache is opened. A live save
writes into its folder within seconds to minutes."""
_swept: set[Path] = set()

Notice = Callable[[str], None]
_T = TypeVar("_T")


def default_cache_dir() -> Path:
    """``$OGAUDIT_CACHE`` or ``~/.cache/ogaudit``: trained models, features and maps, keyed by their inputs."""
    return Path(os.environ.get("OGAUDIT_CACHE", Path.home() / ".cache" / "ogaudit"))


class ArtifactCache:
    """The cache under ``root`` (created if needed; must be writable, else :class:`StorageError` at once)."""

    def __init__(self, root: str | Path | None = None):
        self.root = ensure_writable_dir(Path(root) if root is not None else default_cache_dir())
        self._remove_legacy()
        if self.root not in _swept:  # once per process and root: a cache is opened at every stage
            _swept.add(self.root)
            self._remove_stale_parts()

    def entry(self, kind: str, key: str, settings: dict) -> CacheEntry:
        """The entry of ``kind`` for ``key``; ``settings`` (JSON-able) are saved beside it and checked on read."""
        if kind not in KINDS:
            raise ValueError(f"cache kind {kind!r} is not one of {KINDS}")
        return CacheEntry(self.root / f"v{CACHE_FORMAT}" / kind / key, kind, key, settings)

    def _remove_stale_parts(self) -> None:
        """Delete staging folders of killed saves (older than :data:`STALE_PART_S`); links are never followed."""
        now = time.time()
        version = self.root / f"v{CACHE_FORMAT}"
        for kind in KINDS:
            if version.is_symlink() or (version / kind).is_symlink():  # never sweep through a link
                continue
            try:
                found = list(os.scandir(version / kind))
            except OSError:
                continue
            for item in found:
                if not (item.name.startswith(".") and item.name.endswith(".part")):
                    continue
                with contextlib.suppress(OSError):
                    age = now - item.stat(follow_symlinks=False).st_mtime
                    if item.is_dir(follow_symlinks=False) and age > STALE_PART_S:
                        shutil.rmtree(item.path, ignore_errors=True)

    def _remove_legacy(self) -> None:
        """Delete the files of the previous cache schemes: nothing reads them any more."""
        for name in ("models", "evidence", "maps", "layer-gradients"):
            folder = self.root / name
            if not folder.is_dir() or folder.is_symlink():
                continue
            for path in folder.iterdir():
                if LEGACY_FILES.fullmatch(f"{name}/{path.name}") and path.is_file():
                    path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty


class CacheEntry:
    """One cached artifact: a folder of files plus ``entry.json``.

    path : the entry's folder; present only once the entry is complete.
    kind, key, settings : what the entry is (see :class:`ArtifactCache`).
    """

    def __init__(self, path: Path, kind: str, key: str, settings: dict):
        self.path, self.kind, self.key = path, kind, key
        self.settings = json.loads(json.dumps(settings, default=str))

    def _expected(self) -> dict:
        return {"format": CACHE_FORMAT, "kind": self.kind, "key": self.key, "settings": self.settings}

    def load(self, reader: Callable[[Path], _T], *, notice: Notice | None = None) -> _T | None:
        """``reader(folder)`` on a complete, matching entry; None when there is none (a damaged one is removed).

        A damaged entry (unreadable ``entry.json``, other settings under the same key, or a reader that raises
        because a file is truncated or missing) is deleted and ``notice`` says so; the caller then recomputes.
        """
        if self.path.is_symlink() or (self.path.exists() and not self.path.is_dir()):
            return self._discard("it is not a folder of files (a link or a file in its place)", notice)
        if not self.path.is_dir():
            return None
        odd = _not_plain_files(self.path)
        if odd:
            return self._discard(f"{odd!r} in it is not a plain file (a link, a pipe or a device)", notice)
        try:
            saved = read_json(self.path / ENTRY_FILE)
        except (OSError, ValueError) as error:
            return self._discard(f"its {ENTRY_FILE} is unreadable ({type(error).__name__})", notice)
        expected = self._expected()
        if saved != expected:
            changed = sorted(k for k in expected if saved.get(k) != expected[k]) if isinstance(saved, dict) else []
            return self._discard(f"it was saved for other {', '.join(changed) or 'inputs'}", notice)
        try:
            return reader(self.path)
        except Exception as error:  # noqa: BLE001 - any failure to read a cached file means: recompute it
            return self._discard(f"it could not be read ({type(error).__name__}: {str(error)[:120]})", notice)

    def save(self, writer: Callable[[Path], None]) -> None:
        """Build the entry with ``writer(folder)`` in a hidden folder, then move it into place in one rename."""
        _make_folder(self.path.parent)
        staging = self.path.parent / f".{self.path.name}.{uuid.uuid4().hex[:8]}.part"
        try:
            staging.mkdir()
            writer(staging)
            write_json(staging / ENTRY_FILE, self._expected())
            self._replace(staging)
        except OSError as error:
            raise StorageError(
                f"Cannot write the cache entry {str(self.path)!r}: {error.strerror or error}. Free disk space or "
                "point $OGAUDIT_CACHE (--cache-dir) at a writable folder."
            ) from error
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def work_dir(self) -> Path:
        """A folder for work written incrementally (kept across interruptions); :meth:`commit` completes it.

        A link or file in its place, or a work folder holding links, pipes or devices, is removed first (their
        targets untouched): work is never written or read through a link."""
        folder = self.path.parent / f".{self.path.name}.work"
        _make_folder(self.path.parent)
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            folder.unlink()
        elif folder.is_dir() and _not_plain_files(folder):
            shutil.rmtree(folder)
        folder.mkdir(exist_ok=True)
        return folder

    def commit(self) -> None:
        """Turn :meth:`work_dir` into the complete entry (``entry.json`` written, then one rename)."""
        folder = self.work_dir()
        write_json(folder / ENTRY_FILE, self._expected())
        self._replace(folder)

    def exclusive(self, *, cancel: threading.Event | None = None, on_wait: Callable[[], None] | None = None):
        """A context manager holding this entry's lock (``flock`` on ``.<key>.lock`` beside it) while its block
        computes the entry: a second process or thread asking for the same entry waits (``on_wait()`` is called
        once when it has to; ``cancel`` is checked every 0.2 s, raising :class:`~ogaudit.errors.Cancelled`), then
        finds the entry complete. The lock (the ``filelock`` library: ``flock`` on POSIX, ``msvcrt`` locking on
        Windows) is released at the block's end or when the process dies."""
        return _EntryLock(self.path.parent / f".{self.path.name}.lock", cancel, on_wait)

    def _replace(self, folder: Path) -> None:
        self._remove()
        try:
            os.replace(folder, self.path)
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not self.path.is_dir():
                raise
            shutil.rmtree(folder, ignore_errors=True)  # the same key saved meanwhile by another writer: keep it

    def _remove(self) -> None:
        """Delete what stands at the entry's path: a folder, or a link or file in its place (never followed)."""
        if self.path.is_symlink() or (self.path.exists() and not self.path.is_dir()):
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        elif self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)

    def _discard(self, why: str, notice: Notice | None) -> None:
        self._remove()
        if notice is not None:
            notice(f"The cached {self.kind} {self.key} was discarded and is recomputed: {why}.")
        return None


def _make_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents); :class:`StorageError` naming it when a file stands in the way."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # FileExistsError, NotADirectoryError: a file where a folder belongs
        raise StorageError(
            f"Cannot create the cache folder {str(folder)!r}: {error.strerror or error}. Remove the file that "
            "stands in its place, or point $OGAUDIT_CACHE (--cache-dir) at another folder."
        ) from error


def _not_plain_files(folder: Path) -> str | None:
    """The first path under ``folder`` that is neither a plain file nor a folder (a link, a FIFO that would block a
    read, a device), relative to it; None when there is none."""
    for root, folders, files in os.walk(folder):
        for name in folders + files:
            mode = os.lstat(os.path.join(root, name)).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                return os.path.relpath(os.path.join(root, name), folder)
    return None


class _EntryLock:
    """See :meth:`CacheEntry.exclusive`: a ``filelock.FileLock`` taken in steps of :data:`POLL_S`, so that the
    waiter is told once and can be cancelled."""

    POLL_S = 0.2

    def __init__(self, path: Path, cancel: threading.Event | None, on_wait: Callable[[], None] | None):
        self.path, self.cancel, self.on_wait = path, cancel, on_wait
        self.lock = FileLock(path)

    def __enter__(self) -> _EntryLock:
        _make_folder(self.path.parent)
        if self.path.is_symlink() or (self.path.exists() and not self.path.is_file()):
            # a link, FIFO or folder planted as the lock file: removed, never followed or opened
            if self.path.is_dir() and not self.path.is_symlink():
                shutil.rmtree(self.path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
        waited = False
        while True:
            try:
                self.lock.acquire(timeout=self.POLL_S)
                return self
            except Timeout:
                if not waited and self.on_wait is not None:
                    self.on_wait()
                waited = True
                check_cancel(self.cancel)

    def __exit__(self, *exc) -> None:
        self.lock.release()
