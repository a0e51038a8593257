"""A sharded on-disk store of per-sample outputs (features, probabilities, projected gradients, text embeddings),
filled chunk by chunk and resumable.

One store format for every resumable per-sample output: the forward pass's features and probabilities
(``ogaudit.pipeline.stages``), the projected layer gradients (:func:`~ogaudit.gradients.layers.layer_store`, filled
by the local engine and the Ray engine alike) and the text embeddings (:func:`~ogaudit.models.encoders.embed_texts`).

A store is a folder (in practice a cache entry's :meth:`~ogaudit.cache.artifacts.CacheEntry.work_dir`, whose ``entry.json``
holds the settings the outputs were computed from) with:

* ``store.json``: the layout, ``{"format", "n_rows", "chunk_rows", "fields": {name: {"shape", "dtype"}}}`` and,
  when given, ``"source"``: a fingerprint of what the rows are computed from beyond the layout (model weights,
  inputs, settings), so that rows computed from another source are never mixed in;
* ``<field>-<chunk:05d>.npy``: rows ``chunk * chunk_rows`` up to the next chunk of each field, one plain ``.npy``
  per chunk, written atomically;
* ``done.npy``: (n_chunks,) bool, the chunks whose every field is written.

A run that stops (Cancel, a crash, a full disk) leaves the chunks it finished marked done; the next run with the
same layout computes only the missing ones (TRAK's savers keep a done mask the same way). A store with another
layout is emptied and started over. Chunks may be written in any order (:meth:`SampleStore.write`), and rows may
land in any order and size (:meth:`SampleStore.write_rows`, for results that come back from a cluster). Reading
concatenates the shards, so peak memory is the per-sample outputs (N × width), never the inputs;
:meth:`SampleStore.rows` reads nothing up front (its shards are memory-mapped).

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

Fields = dict[str, tuple[tuple[int, ...], str]]


class SampleStore:
    """Per-sample arrays of ``n_rows`` rows, kept in shards of ``chunk_rows`` rows under ``folder``.

    Parameters
    ----------
    folder : where the shards live (created if needed).
    n_rows : N, the number of samples.
    fields : name -> ``(shape, dtype)``: the shape of one sample's row (``()`` for a scalar, ``(d,)`` for a
        vector) and one of ``STORE_DTYPES``. Values written are cast to it.
    chunk_rows : rows per shard; progress and Cancel are checked once per shard.
    source : what the rows are computed from beyond the layout (a fingerprint of model, inputs and settings); part
        of the layout. Empty by default, and then left out of ``store.json``.

    Opening a folder that holds a store of another layout (other N, fields, dtypes, chunk size or source) empties
    it. :meth:`open` opens a store as it is laid out and empties nothing (to read a complete one).
    """

    def __init__(self, folder: str | Path, n_rows: int, fields: Fields, *, chunk_rows: int = 0, source: str = ""):
        self._set_layout(folder, n_rows, fields, int(chunk_rows or DEFAULT_CHUNK_ROWS), source)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.done = self._open()

    @classmethod
    def open(
        cls,
        folder: str | Path,
        *,
        n_rows: int | None = None,
        fields: Fields | None = None,
        chunk_rows: int | None = None,
        source: str | None = None,
    ) -> SampleStore:
        """The store in ``folder`` as its ``store.json`` lays it out, emptying nothing.

        For reading a store that is complete (a committed cache entry), then :meth:`read` or :meth:`rows`. Each
        layout argument given must be the store's (as the constructor takes it). Raises ``ValueError`` (``OSError``
        when a file is missing) for a folder without a store, a damaged layout or done mask, or another layout.
        """
        folder = Path(folder)
        saved = read_json(folder / LAYOUT_FILE)
        store = cls.__new__(cls)
        try:
            saved_fields = {name: (tuple(spec["shape"]), spec["dtype"]) for name, spec in saved["fields"].items()}
            store._set_layout(folder, saved["n_rows"], saved_fields, saved["chunk_rows"], saved.get("source", ""))
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"{str(folder / LAYOUT_FILE)!r} is not a store layout ({error!r}).") from error
        if store.layout() != saved:
            raise ValueError(f"{str(folder / LAYOUT_FILE)!r} is not a store layout of format {STORE_FORMAT}.")
        done = np.load(folder / DONE_FILE, allow_pickle=False)
        if done.shape != (store.n_chunks,) or done.dtype != bool:
            raise ValueError(f"{str(folder / DONE_FILE)!r} does not fit the store's {store.n_chunks} chunks.")
        store.done = done.copy()
        expected = cls.__new__(cls)
        expected._set_layout(
            folder,
            store.n_rows if n_rows is None else n_rows,
            store.fields if fields is None else fields,
            store.chunk_rows if chunk_rows is None else int(chunk_rows or DEFAULT_CHUNK_ROWS),
            store.source if source is None else source,
        )
        if expected.layout() != store.layout():
            raise ValueError(f"the store {str(folder)!r} is laid out for other rows, fields or source.")
        return store

    def _set_layout(self, folder, n_rows, fields: Fields, chunk_rows, source) -> None:
        for name, value in (("n_rows", n_rows), ("chunk_rows", chunk_rows)):
            if not isinstance(value, int | np.integer) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer; got {value!r}.")
        if n_rows < 0:
            raise ValueError(f"n_rows must be ≥ 0; got {n_rows}.")
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be ≥ 1; got {chunk_rows}.")
        for name, (_shape, dtype) in fields.items():
            if dtype not in STORE_DTYPES:
                raise ValueError(f"field {name!r} has dtype {dtype!r}; use one of {STORE_DTYPES}.")
            if not name.isidentifier():
                raise ValueError(f"field name {name!r} must be an identifier (letters, digits, _).")
        self.folder = Path(folder)
        self.n_rows, self.chunk_rows = int(n_rows), int(chunk_rows)
        self.fields = {name: (tuple(int(s) for s in shape), dtype) for name, (shape, dtype) in fields.items()}
        self.source = str(source)
        self.n_chunks = -(-self.n_rows // self.chunk_rows)
        self._pending: dict[int, tuple[np.ndarray, dict[str, np.ndarray]]] = {}

    def layout(self) -> dict:
        """What ``store.json`` holds: the format, N, the chunk rows, the fields and (when given) the source."""
        layout = {
            "format": STORE_FORMAT,
            "n_rows": self.n_rows,
            "chunk_rows": self.chunk_rows,
            "fields": {name: {"shape": list(shape), "dtype": dtype} for name, (shape, dtype) in self.fields.items()},
        }
        if self.source:
            layout["source"] = self.source
        return layout

    def _open(self) -> np.ndarray:
        layout = self.layout()
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

    def rows_done(self) -> int:
        """How many rows lie in chunks marked done."""
        return int(sum(self.bounds(c)[1] - self.bounds(c)[0] for c in np.flatnonzero(self.done)))

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
            except StorageError:
                raise
            except OSError as error:
                raise StorageError(f"Cannot write {str(self._shard(name, chunk))!r}: {error}.") from error
        self.done[chunk] = True
        self._pending.pop(chunk, None)
        self._save_done(self.done)

    def write_rows(self, index: np.ndarray, **arrays: np.ndarray) -> list[int]:
        """Write rows ``index`` (1-D, any rows in any order) of every field; returns the chunks this completed.

        For results that land out of order and in pieces that need not be whole chunks (ranges computed by Ray
        actors): the rows are held in memory until every row of their chunk has come, then the chunk is written
        with :meth:`write` and marked done. Rows of chunks already done are ignored. What is held is lost when the
        process stops (those chunks are not done, so they are computed again). Raises ``ValueError`` for a
        missing field, a wrong shape or a row out of range.
        """
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        if set(arrays) != set(self.fields):
            raise ValueError(f"write_rows needs the fields {sorted(self.fields)}; got {sorted(arrays)}.")
        if len(index) and (index.min() < 0 or index.max() >= self.n_rows):
            raise ValueError(f"rows must lie in 0..{self.n_rows - 1}; got {index.min()}..{index.max()}.")
        values = {}
        for name, (shape, _dtype) in self.fields.items():
            values[name] = np.asarray(arrays[name])
            if values[name].shape != (len(index), *shape):
                raise ValueError(f"field {name!r} must be {(len(index), *shape)}; got {values[name].shape}.")
        written: list[int] = []
        if not len(index):
            return written
        chunks = index // self.chunk_rows
        order = np.argsort(chunks, kind="stable")
        starts = np.searchsorted(chunks[order], np.unique(chunks), side="left")
        for at, end in zip(starts, [*starts[1:], len(order)], strict=True):
            chosen = order[at:end]
            chunk = int(chunks[chosen[0]])
            if self.done[chunk]:
                continue
            start, stop = self.bounds(chunk)
            if chunk not in self._pending:
                self._pending[chunk] = (
                    np.zeros(stop - start, dtype=bool),
                    {name: np.empty((stop - start, *shape), dtype) for name, (shape, dtype) in self.fields.items()},
                )
            received, buffers = self._pending[chunk]
            local = index[chosen] - start
            for name in self.fields:
                buffers[name][local] = values[name][chosen]
            received[local] = True
            if received.all():
                self.write(chunk, **buffers)
                written.append(chunk)
        return written

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
            out[start:stop] = self._load_shard(name, chunk)
        return out

    def read_chunk(self, name: str, chunk: int) -> np.ndarray:
        """The rows of field ``name`` in one done ``chunk``, ``(stop − start, *shape)``, as stored (in memory).

        Raises ``ValueError`` when the chunk is not done or its shard does not fit the layout.
        """
        if not self.done[chunk]:
            raise ValueError(f"chunk {chunk} of the store {str(self.folder)!r} is not written yet.")
        return np.array(self._load_shard(name, chunk))

    def rows(self, name: str) -> StoredRows:
        """A read-only (N, *shape) view of field ``name`` that reads rows from the memory-mapped shards only when
        indexed (as a memory-mapped ``.npy`` would): holding it costs no memory. The store must be complete
        (``ValueError`` otherwise, or when a shard does not fit the layout)."""
        if not self.complete:
            raise ValueError(
                f"the store {str(self.folder)!r} misses {len(self.missing())} chunk(s) of {self.n_chunks}."
            )
        return StoredRows([self._load_shard(name, chunk) for chunk in range(self.n_chunks)], self, name)

    def _load_shard(self, name: str, chunk: int) -> np.ndarray:
        """The memory-mapped shard of ``name`` in ``chunk``, checked against the layout."""
        shape, stored = self.fields[name]
        start, stop = self.bounds(chunk)
        part = np.load(self._shard(name, chunk), mmap_mode="r", allow_pickle=False)
        if part.shape != (stop - start, *shape) or part.dtype != np.dtype(stored):
            raise ValueError(f"{self._shard(name, chunk).name} is {part.shape} {part.dtype}, not the layout's.")
        return part

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
        finished = self.rows_done()
        report(progress, stage, finished / max(self.n_rows, 1), f"{finished:,}/{self.n_rows:,} {what}")
        for chunk in self.missing():
            check_cancel(cancel)
            start, stop = self.bounds(chunk)
            self.write(chunk, **compute(start, stop))
            finished += stop - start
            report(progress, stage, finished / max(self.n_rows, 1), f"{finished:,}/{self.n_rows:,} {what}")

    def describe(self) -> str:
        return json.dumps(self.layout())


class StoredRows:
    """A read-only (N, *shape) array-like over the memory-mapped shards of one field (:meth:`SampleStore.rows`).

    Supports ``len``, ``shape``, ``dtype``, ``ndim``, ``np.asarray(view, dtype)`` (all rows, concatenated) and
    indexing its rows with an integer, a slice, or an integer or boolean array (giving an in-memory array); only
    the rows asked for are read from disk.
    """

    def __init__(self, shards: list[np.ndarray], store: SampleStore, name: str):
        shape, dtype = store.fields[name]
        self._shards, self._chunk_rows = shards, store.chunk_rows
        self.shape = (store.n_rows, *shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.empty(self.shape, dtype=dtype or self.dtype)
        for chunk, shard in enumerate(self._shards):
            out[chunk * self._chunk_rows : chunk * self._chunk_rows + len(shard)] = shard
        return out

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, tuple):
            return self[index[0]][(slice(None), *index[1:])]
        if isinstance(index, int | np.integer):
            row = range(self.shape[0])[index]  # IndexError past the end, negative rows from the end
            return np.array(self._shards[row // self._chunk_rows][row % self._chunk_rows])
        positions = np.arange(self.shape[0])[index]
        out = np.empty((len(positions), *self.shape[1:]), dtype=self.dtype)
        if not len(positions):
            return out
        chunks = positions // self._chunk_rows
        order = np.argsort(chunks, kind="stable")
        found = np.unique(chunks)
        starts = np.searchsorted(chunks[order], found, side="left")
        for chunk, at, end in zip(found, starts, [*starts[1:], len(order)], strict=True):
            chosen = order[at:end]
            local = positions[chosen] - chunk * self._chunk_rows
            if local[-1] - local[0] == len(local) - 1 and np.all(np.diff(local) == 1):
                out[chosen] = self._shards[chunk][local[0] : local[-1] + 1]  # a run of rows: one slice
            else:
                out[chosen] = self._shards[chunk][local]
        return out
