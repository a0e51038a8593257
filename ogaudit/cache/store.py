"""A sharded on-disk store of per-sample outputs (features, probabilities, projected gradients), filled chunk by
chunk and resumable.

A store is a folder (in practice a cache entry's :meth:`~ogaudit.cache.artifacts.CacheEntry.work_dir`, whose ``entry.json``
holds the settings the outputs were computed from) with:

* ``store.json``: the layout, ``{"format", "n_rows", "chunk_rows", "fields": {name: {"shape", "dtype"}}}``;
* ``<field>-<chunk:05d>.npy``: rows ``chunk * chunk_rows`` up to the next chunk of each field, one plain ``.npy``
  per chunk, written atomically;
* ``done.npy``: (n_chunks,) bool, the chunks whose every field is written.

A run that stops (Cancel, a crash, a full disk) leaves the chunks it finished marked done; the next run with the
same layout computes only the missing ones (TRAK's savers keep a done mask the same way). A store with another
layout is emptied and started over. Reading concatenates the shards, so peak memory is the per-sample outputs
(N × width), never the inputs.

Fields may be stored as ``float16`` where that loses nothing measurable: penultimate features of Fashion-MNIST
(60k) give the same AP to 4 decimals stored as float16 (``benchmarks/bench_scale.py --float16-check``);
probabilities stay ``float32`` (``1 − p`` of a confident sample needs more than float16's 11 bits near 1).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ogaudit.errors import StorageError
from ogaudit.progress import ProgressCallback, check_cancel, report
from ogaudit.storage import atomic_path, read_json, write_json

STORE_FORMAT = 1
LAYOUT_FILE = "store.json"
DONE_FILE = "done.npy"
DEFAULT_CHUNK_ROWS = 8192
STORE_DTYPES = ("float16", "float32", "int64")


class SampleStore:
    """Per-sample arrays of ``n_rows`` rows, kept in shards of ``chunk_rows`` rows under ``folder``.

    Parameters
    ----------
    folder : where the shards live (created if needed).
    n_rows : N, the number of samples.
    fields : name -> ``(shape, dtype)``: the shape of one sample's row (``()`` for a scalar, ``(d,)`` for a
        vector) and one of ``STORE_DTYPES``. Values written are cast to it.
    chunk_rows : rows per shard; progress and Cancel are checked once per shard.

    Opening a folder that holds a store of another layout (other N, fields, dtypes or chunk size) empties it.
    """

    def __init__(
        self, folder: str | Path, n_rows: int, fields: dict[str, tuple[tuple[int, ...], str]], *, chunk_rows: int = 0
    ):
        if n_rows < 0:
            raise ValueError(f"n_rows must be ≥ 0; got {n_rows}.")
        chunk_rows = int(chunk_rows or DEFAULT_CHUNK_ROWS)
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be ≥ 1; got {chunk_rows}.")
        for name, (_shape, dtype) in fields.items():
            if dtype not in STORE_DTYPES:
                raise ValueError(f"field {name!r} has dtype {dtype!r}; use one of {STORE_DTYPES}.")
            if not name.isidentifier():
                raise ValueError(f"field name {name!r} must be an identifier (letters, digits, _).")
        self.folder = Path(folder)
        self.n_rows, self.chunk_rows = int(n_rows), chunk_rows
        self.fields = {name: (tuple(int(s) for s in shape), dtype) for name, (shape, dtype) in fields.items()}
        self.n_chunks = -(-self.n_rows // chunk_rows)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.done = self._open()

    def _layout(self) -> dict:
        return {
            "format": STORE_FORMAT,
            "n_rows": self.n_rows,
            "chunk_rows": self.chunk_rows,
            "fields": {name: {"shape": list(shape), "dtype": dtype} for name, (shape, dtype) in self.fields.items()},
        }

    def _open(self) -> np.ndarray:
        layout = self._layout()
        try:
            saved = read_json(self.folder / LAYOUT_FILE)
            done = np.load(self.folder / DONE_FILE, allow_pickle=False)
            if saved == layout and done.shape == (self.n_chunks,) and done.dtype == bool:
                return done.copy()
        except (OSError, ValueError):
            pass  # no store yet, or a damaged one: start over
        for path in self.folder.glob("*.npy"):
            path.unlink(missing_ok=True)
        write_json(self.folder / LAYOUT_FILE, layout)
        done = np.zeros(self.n_chunks, dtype=bool)
        self._save_done(done)
        return done

    def _save_done(self, done: np.ndarray) -> None:
        with atomic_path(self.folder / DONE_FILE) as tmp, open(tmp, "wb") as handle:
            np.save(handle, done)

    def bounds(self, chunk: int) -> tuple[int, int]:
        """Rows ``(start, stop)`` of ``chunk``."""
        start = chunk * self.chunk_rows
        return start, min(start + self.chunk_rows, self.n_rows)

    def missing(self) -> list[int]:
        """Chunk numbers not written yet, in order."""
        return np.flatnonzero(~self.done).tolist()

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    def _shard(self, name: str, chunk: int) -> Path:
        return self.folder / f"{name}-{chunk:05d}.npy"

    def write(self, chunk: int, **arrays: np.ndarray) -> None:
        """Write every field of ``chunk`` (each ``(stop − start, *shape)``, cast to the field's dtype), then mark
        it done. Raises ``ValueError`` for a missing field or a wrong shape."""
        start, stop = self.bounds(chunk)
        if set(arrays) != set(self.fields):
            raise ValueError(f"write needs the fields {sorted(self.fields)}; got {sorted(arrays)}.")
        for name, (shape, dtype) in self.fields.items():
            array = np.asarray(arrays[name])
            if array.shape != (stop - start, *shape):
                raise ValueError(
                    f"field {name!r} of chunk {chunk} must be {(stop - start, *shape)}; got {array.shape}."
                )
            try:
                with atomic_path(self._shard(name, chunk)) as tmp, open(tmp, "wb") as handle:
                    np.save(handle, array.astype(dtype, copy=False), allow_pickle=False)
            except OSError as error:
                raise StorageError(f"Cannot write {str(self._shard(name, chunk))!r}: {error}.") from error
        self.done[chunk] = True
        self._save_done(self.done)

    def read(self, name: str, dtype: str | None = None, *, out: np.ndarray | None = None) -> np.ndarray:
        """All rows of field ``name``, ``(N, *shape)``, as ``dtype`` (default the stored one).

        ``out``: an array (N, *shape) to read into (e.g. a view of a larger array), returned.
        Raises ``ValueError`` when chunks are missing (fill the store first) or a shard does not fit the layout.
        """
        shape, stored = self.fields[name]
        if not self.complete:
            raise ValueError(
                f"the store {str(self.folder)!r} misses {len(self.missing())} chunk(s) of {self.n_chunks}."
            )
        if out is None:
            out = np.empty((self.n_rows, *shape), dtype=dtype or stored)
        elif out.shape != (self.n_rows, *shape):
            raise ValueError(f"out must be {(self.n_rows, *shape)}; got {out.shape}.")
        for chunk in range(self.n_chunks):
            start, stop = self.bounds(chunk)
            part = np.load(self._shard(name, chunk), mmap_mode="r", allow_pickle=False)
            if part.shape != (stop - start, *shape) or part.dtype != np.dtype(stored):
                raise ValueError(f"{self._shard(name, chunk).name} is {part.shape} {part.dtype}, not the layout's.")
            out[start:stop] = part
        return out

    def fill(
        self,
        compute: Callable[[int, int], dict[str, np.ndarray]],
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        stage: str = "store",
        what: str = "samples",
    ) -> None:
        """Compute and write every missing chunk: ``compute(start, stop)`` returns each field's rows.

        ``cancel`` is checked before each chunk (raising :class:`~ogaudit.errors.Cancelled`; the chunks written
        stay done) and ``progress(stage, fraction, message)`` is called after each.
        """
        finished = int(sum(self.bounds(c)[1] - self.bounds(c)[0] for c in np.flatnonzero(self.done)))
        report(progress, stage, finished / max(self.n_rows, 1), f"{finished:,}/{self.n_rows:,} {what}")
        for chunk in self.missing():
            check_cancel(cancel)
            start, stop = self.bounds(chunk)
            self.write(chunk, **compute(start, stop))
            finished += stop - start
            report(progress, stage, finished / max(self.n_rows, 1), f"{finished:,}/{self.n_rows:,} {what}")

    def describe(self) -> str:
        return json.dumps(self._layout())
