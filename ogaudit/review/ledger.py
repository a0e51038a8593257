"""The review ledger: an append-only SQLite log of annotators' decisions, one file per project.

Nothing is ever updated or deleted (triggers refuse it); everything a reviewer sees is derived from the log:

* **Current state.** A sample's state is its latest decision (in commit order) that has not been undone,
  whoever made it. When two annotators disagree, the later one wins; :meth:`Ledger.disagreements` lists every
  such conflict so that a lead can settle it with one more decision.
* **Undo and redo.** Each call to :meth:`Ledger.decide` is one batch (a bulk decision on many ids is one
  batch, one undo step). Undo and redo append an event naming a batch, so they survive a page refresh and a
  restart. Undo is per annotator: it takes back that annotator's own latest batch still in force, never
  someone else's; redo puts back the batch they undid last. A new decision by the annotator clears their redo
  stack, as in an editor. Undoing a batch uncovers whatever was decided before it on those samples.
* **Durability and concurrency.** Every write is one ``BEGIN IMMEDIATE`` transaction in WAL mode with
  ``synchronous=FULL``: when a call returns, the decision is on disk. Writers from many threads and processes
  queue on SQLite's lock (``busy_timeout``) and retry with backoff, so "database is locked" never escapes
  before ``lock_timeout`` seconds; after that a :class:`LedgerError` says so.

* **Integrity.** A new ledger is built beside its final name and linked into place, so its file is never
  seen half made. An existing file that is not an SQLite database (an empty one included) is refused and
  kept, never replaced by a new, empty ledger; so is a database that fails ``PRAGMA quick_check``. SQLite
  replays a write-ahead log up to its first damaged frame and silently drops the rest, saved transactions
  included, so damage there is found by what was saved rather than by reading SQLite's formats: after each
  write commits, the number of its batch goes into ``ledger.sqlite-saved`` beside the ledger, and a ledger
  that SQLite opens with fewer batches than that (a damaged, lost or older log or database) is refused, its
  files kept. :meth:`Ledger.backup` writes a consistent copy while others keep writing.

A :class:`Ledger` holds no connection: each call opens and closes its own, so one object may be shared by
threads (Streamlit reruns, ``st.cache_resource``). The ledger remembers the dataset fingerprint and class
names it was created for; opening it for other data warns and sets :attr:`Ledger.dataset_mismatch`.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import pandas as pd

from ogaudit.errors import LedgerError
from ogaudit.storage import atomic_path, check_replaceable, current_umask

try:
    import fcntl
except ImportError:  # Windows: no lock; a writer racing another can only leave the -saved number behind
    fcntl = None

if TYPE_CHECKING:
    from ogaudit.data.dataset import Dataset

ACTIONS = ("confirm", "relabel", "keep", "remove", "unsure")
LABELLED_ACTIONS = ("confirm", "relabel")
SCHEMA_VERSION = 2
"""1: decisions, undo and redo. 2 adds assignments, settlements and notes/tags (tables only: a version-1 ledger is
upgraded in place when opened; an older ogaudit refuses a version-2 one, which it would misread)."""
MAX_NOTE_CHARS = 10_000
MAX_TAGS = 12
MAX_TAG_CHARS = 40
SQLITE_MAGIC = b"SQLite format 3\x00"
SAVED_SUFFIX = "-saved"
"""Beside ``ledger.sqlite``, ``ledger.sqlite-saved`` holds the number of the last batch whose call returned."""
_SAVED_WIDTH = 21
_RESTORE = (
    "Restore it from a backup (`ogaudit decisions backup` or Ledger.backup make one), or recover what is "
    "readable with `sqlite3 {path} .recover | sqlite3 recovered.sqlite`"
)
STATE_COLUMNS = [
    "sample_id",
    "given_label",
    "action",
    "final_label",
    "annotator",
    "decided_at",
    "score",
    "rank",
    "note",
    "run",
    "batch_id",
    "settled",
]

_T = TypeVar("_T")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('decide', 'undo', 'redo')),
    target TEXT REFERENCES batches (batch_id),
    annotator TEXT NOT NULL,
    at TEXT NOT NULL
)""",
    """CREATE INDEX IF NOT EXISTS batches_target ON batches (target)""",
    """CREATE INDEX IF NOT EXISTS batches_annotator ON batches (annotator)""",
    """CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id TEXT NOT NULL REFERENCES batches (batch_id),
    sample_id TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('confirm', 'relabel', 'keep', 'remove', 'unsure')),
    label TEXT,
    annotator TEXT NOT NULL,
    decided_at TEXT NOT NULL,
    note TEXT,
    score REAL,
    rank INTEGER,
    run TEXT
)""",
    """CREATE INDEX IF NOT EXISTS decisions_batch ON decisions (batch_id)""",
    """CREATE TABLE IF NOT EXISTS plans (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    plan_id TEXT NOT NULL UNIQUE,
    assigned_by TEXT NOT NULL,
    at TEXT NOT NULL,
    overlap INTEGER NOT NULL,
    annotators TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS assignments (
    plan_id TEXT NOT NULL REFERENCES plans (plan_id),
    sample_id TEXT NOT NULL,
    annotator TEXT NOT NULL,
    PRIMARY KEY (plan_id, sample_id, annotator)
)""",
    """CREATE TABLE IF NOT EXISTS settlements (
    batch_id TEXT PRIMARY KEY REFERENCES batches (batch_id)
)""",
    """CREATE TABLE IF NOT EXISTS notes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sample_id TEXT NOT NULL,
    note TEXT,
    tags TEXT NOT NULL,
    annotator TEXT NOT NULL,
    at TEXT NOT NULL
)""",
    """CREATE INDEX IF NOT EXISTS notes_sample ON notes (sample_id)""",
    """CREATE TRIGGER IF NOT EXISTS batches_append_only_u BEFORE UPDATE ON batches
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS batches_append_only_d BEFORE DELETE ON batches
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS decisions_append_only_u BEFORE UPDATE ON decisions
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS decisions_append_only_d BEFORE DELETE ON decisions
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END""",
    *(
        f"""CREATE TRIGGER IF NOT EXISTS {table}_append_only_{op[0].lower()} BEFORE {op} ON {table}
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END"""
        for table in ("plans", "assignments", "settlements", "notes")
        for op in ("UPDATE", "DELETE")
    ),
)
_SAVED_TABLES = ("batches", "plans", "notes")
"""Tables whose AUTOINCREMENT numbers, summed, number the writes for ``ledger.sqlite-saved`` (every write adds a row
to one of them: a decision, undo or redo a batch, an assignment a plan, a note a note)."""
_WRITE_NUMBER = (
    "SELECT COALESCE(SUM(seq), 0) FROM sqlite_sequence WHERE name IN ("
    + ", ".join(f"'{t}'" for t in _SAVED_TABLES)
    + ")"
)
_SETTLED = "(d.batch_id IN (SELECT batch_id FROM settlements))"

# Decide batches not undone: undo and redo alternate on a batch, so it is in force when they are equally many.
_ACTIVE_DECISIONS = """
SELECT d.* FROM decisions d JOIN batches b ON b.batch_id = d.batch_id
WHERE (SELECT COALESCE(SUM(CASE t.kind WHEN 'undo' THEN 1 ELSE -1 END), 0)
       FROM batches t WHERE t.target = b.batch_id) = 0
"""


@dataclass(frozen=True)
class Batch:
    """One step an annotator can undo: the decisions of a single :meth:`Ledger.decide` call or import."""

    batch_id: str
    annotator: str
    sample_ids: tuple[str, ...]


@dataclass(frozen=True)
class Decision:
    """One decision to record; :meth:`Ledger.record` stores a list of them as one batch."""

    sample_id: str
    action: str
    label: str | None = None
    annotator: str | None = None
    decided_at: str | None = None
    note: str | None = None
    score: float | None = None
    rank: int | None = None
    run: str | None = None


def _is_ledger_file(path: Path) -> bool:
    """Whether ``path`` is an SQLite file holding an ogaudit ledger (its ``meta`` table names a schema version
    and a dataset fingerprint); opened read-only and immutable, so nothing is written to it."""
    from urllib.parse import quote

    try:
        with closing(sqlite3.connect(f"file:{quote(str(path.absolute()))}?mode=ro&immutable=1", uri=True)) as conn:
            keys = {row[0] for row in conn.execute("SELECT key FROM meta")}
    except sqlite3.Error:
        return False
    return {"schema_version", "dataset_fingerprint"} <= keys


class Ledger:
    """Review decisions on one dataset, stored in the SQLite file ``path``.

    Create one with :meth:`open` or :meth:`for_dataset`.

    Attributes
    ----------
    path : the SQLite file.
    class_names : the current dataset's classes; labels of ``confirm``/``relabel`` must be one of them.
    given_labels : sample id -> given label (a class name), for every sample that decisions may name.
    dataset_fingerprint : the current dataset's fingerprint.
    stored_fingerprint : the fingerprint of the dataset the ledger was created for.
    dataset_mismatch : True when the two differ (a warning was issued on opening).
    lock_timeout : seconds a write keeps retrying while other writers hold the lock.
    """

    def __init__(
        self,
        path: Path,
        *,
        given_labels: dict[str, str],
        class_names: list[str],
        dataset_fingerprint: str,
        lock_timeout: float,
    ) -> None:
        self.path = path
        self.class_names = class_names
        self.given_labels = given_labels
        self.dataset_fingerprint = dataset_fingerprint
        self.stored_fingerprint = dataset_fingerprint
        self.dataset_mismatch = False
        self.lock_timeout = lock_timeout

    # ------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        dataset_fingerprint: str,
        sample_ids: Sequence[str],
        given_labels: Sequence[str],
        class_names: Sequence[str],
        lock_timeout: float = 60.0,
    ) -> Ledger:
        """Open the ledger at ``path``, creating it (and its folder) for this dataset if it does not exist.

        Parameters
        ----------
        path : the SQLite file, by convention ``PROJECT/ledger.sqlite``.
        dataset_fingerprint : :meth:`Dataset.fingerprint` of the data being reviewed.
        sample_ids : (N,) ids that decisions may name.
        given_labels : (N,) the given label of each sample, as class names (for ``final_label``).
        class_names : the classes a sample may be relabelled to.
        lock_timeout : seconds to keep retrying a write while other writers hold the database.
        """
        sample_ids = [str(i) for i in sample_ids]
        given = [str(label) for label in given_labels]
        class_names = [str(c) for c in class_names]
        if len(given) != len(sample_ids):
            raise LedgerError(
                f"given_labels has {len(given)} entries but sample_ids has {len(sample_ids)}; give one "
                "given label (a class name) per sample."
            )
        unknown = sorted(set(given) - set(class_names))
        if unknown:
            raise LedgerError(f"given labels {unknown[:5]} are not in class_names {class_names}.")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        ledger = cls(
            path,
            given_labels=dict(zip(sample_ids, given, strict=True)),
            class_names=class_names,
            dataset_fingerprint=dataset_fingerprint,
            lock_timeout=lock_timeout,
        )
        if not path.exists():
            ledger._refuse_a_lost_ledger()
            ledger._create_file(class_names)
        ledger._check_integrity()
        meta = ledger._create(class_names)
        ledger._note_saved(ledger._last_batch())  # a ledger from before the -saved file gets one now
        ledger.stored_fingerprint = meta["dataset_fingerprint"]
        ledger.dataset_mismatch = ledger.stored_fingerprint != dataset_fingerprint
        if ledger.dataset_mismatch:
            warnings.warn(
                f"The ledger {str(path)!r} was created for dataset {ledger.stored_fingerprint} "
                f"(classes {json.loads(meta['class_names'])}), but it is being opened for dataset "
                f"{dataset_fingerprint} (classes {class_names}). Its decisions may not fit these samples: "
                "open the data the review was made on, or start a new project folder for this data.",
                UserWarning,
                stacklevel=2,
            )
        return ledger

    @classmethod
    def for_dataset(cls, path: str | Path, dataset: Dataset, *, lock_timeout: float = 60.0) -> Ledger:
        """Open the ledger at ``path`` for a loaded :class:`~ogaudit.data.dataset.Dataset`."""
        names = np.asarray(dataset.class_names, dtype=object)
        return cls.open(
            path,
            dataset_fingerprint=dataset.fingerprint(),
            sample_ids=dataset.sample_ids.tolist(),
            given_labels=names[dataset.y].tolist(),
            class_names=dataset.class_names,
            lock_timeout=lock_timeout,
        )

    def _initialise(self, conn: sqlite3.Connection, class_names: list[str]) -> dict[str, str]:
        """Create the schema and meta rows if missing, in the caller's transaction; return the meta."""
        for statement in _SCHEMA:
            conn.execute(statement)
        defaults = {
            "schema_version": str(SCHEMA_VERSION),
            "dataset_fingerprint": self.dataset_fingerprint,
            "class_names": json.dumps(class_names, ensure_ascii=False),
            "created_at": _now(),
        }
        conn.executemany("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", defaults.items())
        conn.execute(  # a version-1 ledger now has the version-2 tables
            "UPDATE meta SET value = ? WHERE key = 'schema_version' AND CAST(value AS INTEGER) < ?",
            (str(SCHEMA_VERSION), SCHEMA_VERSION),
        )
        return dict(conn.execute("SELECT key, value FROM meta"))

    def _create_file(self, class_names: list[str]) -> None:
        """Build a complete new ledger in a temporary file and hard-link it to :attr:`path`.

        The link fails if another process created the ledger first; then theirs is kept. Either way the
        name only ever points at a complete database, so an empty or half-made file at :attr:`path` is
        always damage, never a ledger being created.
        """
        try:
            handle, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".new", dir=self.path.parent)
        except OSError as error:
            raise LedgerError(f"Cannot create the ledger {str(self.path)!r}: {error.strerror or error}.") from error
        os.close(handle)
        tmp_path = Path(tmp)
        try:
            with closing(sqlite3.connect(tmp_path, isolation_level=None)) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("BEGIN IMMEDIATE")
                self._initialise(conn, class_names)
                conn.execute("COMMIT")
            with open(tmp_path, "rb") as written:
                os.fsync(written.fileno())
            os.chmod(tmp_path, 0o666 & ~current_umask())  # the -wal and -shm files SQLite makes follow it
            try:
                os.link(tmp_path, self.path)
            except FileExistsError:
                pass  # another process created it first
            except OSError:  # a file system without hard links: a rename, which could replace a racing twin
                if not self.path.exists():
                    os.replace(tmp_path, self.path)
            _fsync_dir(self.path.parent)
        except (OSError, sqlite3.Error) as error:
            raise LedgerError(f"Cannot create the ledger {str(self.path)!r}: {error}.") from error
        finally:
            for leftover in (tmp_path, Path(f"{tmp_path}-wal"), Path(f"{tmp_path}-shm")):
                leftover.unlink(missing_ok=True)

    def _check_integrity(self) -> None:
        """Refuse a ledger file that is not an SQLite database, whose write-ahead log would silently drop
        committed transactions, that fails ``PRAGMA quick_check``, or that is another program's database.
        Nothing is written to the file before these checks pass."""
        path, name = self.path, repr(str(self.path))
        restore = _RESTORE.format(path=path)
        try:
            with open(path, "rb") as handle:
                head = handle.read(len(SQLITE_MAGIC))
        except OSError as error:
            raise LedgerError(f"Cannot read the ledger {name}: {error.strerror or error}.") from error
        if not head:
            wal = Path(f"{path}-wal")
            beside = f" Its write-ahead log {wal.name} may still hold decisions: keep it." if wal.exists() else ""
            raise LedgerError(
                f"The ledger {name} is empty (0 bytes): it is not a readable ogaudit ledger, and it is not replaced "
                f"by a new, empty one, which would hide the loss of its decisions.{beside} {restore}; or, if it "
                f"never held decisions, delete it (and any {path.name}{SAVED_SUFFIX}) to start a new ledger."
            )
        if head != SQLITE_MAGIC:
            raise LedgerError(
                f"{name} is not a readable ogaudit ledger: it is not an SQLite database (it starts with "
                f"{head[:16]!r}). It was left as it is. {restore}, or move it away to start a new ledger."
            )
        saved = self._saved()  # read before the ledger: a batch saved meanwhile is in both, never in the mark only
        found = self._last_batch(read_only=True)
        if found is not None and saved > found:
            mark = self.saved_path.name
            raise LedgerError(
                f"The ledger {name} holds batches up to number {found}, but batches up to {saved} were saved "
                f"(every write that returned is numbered in {mark}): {saved - found} saved batch(es) of decisions "
                f"are missing. Its write-ahead log {path.name}-wal is damaged or missing, or the ledger was "
                "replaced by an older copy; SQLite alone would open it without them. It was not opened, and its "
                f"files were left as they are. {restore} (keep {path.name}-wal beside it while recovering). If you "
                f"put an older copy in place on purpose (a restored backup), delete {mark} to accept it."
            )
        rows = self._read(lambda conn: conn.execute("PRAGMA quick_check(5)").fetchall())
        if [tuple(row) for row in rows] != [("ok",)]:
            problems = "; ".join(" ".join(str(row[0]).split()) for row in rows[:3])
            raise LedgerError(f"The ledger {name} is damaged (SQLite quick_check: {problems}). {restore}.")
        tables = self._read(lambda conn: {row[0] for row in conn.execute("SELECT name FROM sqlite_master")})
        if "meta" not in tables:
            raise LedgerError(
                f"{name} is an SQLite database but not an ogaudit ledger (it has no meta table; tables "
                f"{sorted(tables)[:5]}). It was left as it is: choose another project folder, or move it away."
            )

    @property
    def saved_path(self) -> Path:
        """The file beside the ledger that numbers the last batch saved (see :meth:`_note_saved`)."""
        return Path(f"{self.path}{SAVED_SUFFIX}")

    def revision(self) -> int:
        """A number that grows with every batch saved (a decision, a bulk action, an undo, a redo), by any process;
        0 before the first. Cheap enough to poll every second: it reads the few bytes of :attr:`saved_path`, no
        SQLite. A page compares it with the revision it last drew to know whether anyone changed anything."""
        return self._saved()

    def _saved(self) -> int:
        """The number of the last batch saved, from :attr:`saved_path`; 0 when there is none (or it is garbled:
        then nothing can be checked, and nothing is lost by that)."""
        try:
            text = self.saved_path.read_bytes()[:_SAVED_WIDTH].decode("ascii").strip()
        except (OSError, UnicodeDecodeError):
            return 0
        return int(text) if text.isdigit() else 0

    def _note_saved(self, seq: int | None) -> None:
        """Record that batch ``seq`` is saved: called after its transaction commits (and is fsynced), so the
        number never runs ahead of the ledger, and kept the largest under concurrent writers (a file lock).
        Not fsynced itself: after a power cut the number can only be behind, which loses no check of what
        reached the disk. Best effort: the decision is saved whatever happens here."""
        if not seq:
            return
        try:
            handle = os.open(self.saved_path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            return
        try:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_EX)  # released when the handle closes
            text = os.read(handle, _SAVED_WIDTH).decode("ascii", "replace").strip()
            if not text.isdigit() or int(text) < seq:
                os.lseek(handle, 0, os.SEEK_SET)
                os.write(handle, f"{seq:0{_SAVED_WIDTH - 1}d}\n".encode())
        except OSError:
            pass
        finally:
            os.close(handle)

    def _last_batch(self, *, read_only: bool = False) -> int | None:
        """The number of the last write SQLite finds in the ledger (0 for none; the sum of the numbers of
        :data:`_SAVED_TABLES`, which is the last batch's number in a ledger of decisions only); None when it has no batches
        table (then it is not a ledger, which the checks after say). ``read_only``: through a read-only
        connection, which never checkpoints the log into the database or removes it, so a refused ledger's
        files stay as they were."""
        query = _WRITE_NUMBER
        if not read_only:
            rows = self._read(lambda conn: conn.execute(query).fetchall())
            return int(rows[0][0]) if rows else 0
        uri = f"file:{_uri_path(self.path)}?mode=ro"
        try:
            with closing(sqlite3.connect(uri, uri=True, timeout=min(self.lock_timeout, 5.0))) as conn:
                tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
                if "batches" not in tables or "sqlite_sequence" not in tables:
                    return None
                rows = conn.execute(query).fetchall()
        except sqlite3.DatabaseError:
            return None  # unreadable: quick_check, next, says how
        return int(rows[0][0]) if rows else 0

    def _refuse_a_lost_ledger(self) -> None:
        """Refuse to create a new, empty ledger where one with saved decisions was (its -saved file is left)."""
        saved = self._saved()
        if saved:
            raise LedgerError(
                f"The ledger {str(self.path)!r} is missing, but {self.saved_path.name} beside it records {saved} "
                "saved batch(es) of decisions. A new, empty ledger was not created in its place. "
                f"{_RESTORE.format(path=self.path)}; or, to start a new ledger, delete {self.saved_path.name} "
                f"(and any {self.path.name}-wal)."
            )

    def _create(self, class_names: list[str]) -> dict[str, str]:
        """Create the schema and meta rows if missing (safe when many processes race), return the meta."""
        self._retry(lambda conn: conn.execute("PRAGMA journal_mode=WAL"))
        meta = self._transaction(lambda conn: self._initialise(conn, class_names))
        if int(meta["schema_version"]) > SCHEMA_VERSION:
            raise LedgerError(
                f"{str(self.path)!r} was written by a newer ogaudit (ledger schema {meta['schema_version']}, "
                f"this one reads {SCHEMA_VERSION}). Upgrade ogaudit."
            )
        return meta

    # ------------------------------------------------------------ writing

    def decide(
        self,
        ids: str | Iterable[str],
        action: str,
        *,
        label: str | None = None,
        annotator: str,
        note: str | None = None,
        context: Mapping[str, Mapping] | pd.DataFrame | None = None,
        _settle: bool = False,
    ) -> str:
        """Record one decision on every sample in ``ids`` as one batch (one transaction, one undo step).

        Parameters
        ----------
        ids : a sample id or ids; repeats are recorded once.
        action : ``confirm`` (the given label is wrong; ``label`` is the right one), ``relabel`` (to
            ``label``), ``keep`` (the flag was a false alarm), ``remove`` (drop from the data) or ``unsure``.
        label : a class name, required by confirm/relabel and refused by the others.
        annotator : who decides; undo and progress are per annotator.
        note : free text kept with each decision.
        context : what each sample looked like when decided: sample id -> ``{"score", "rank", "run"}``, or a
            DataFrame indexed by sample id with those columns (others are ignored).

        Returns
        -------
        The batch id.
        """
        ids = [ids] if isinstance(ids, str) else [str(i) for i in ids]
        if isinstance(context, pd.DataFrame):
            context = context.to_dict(orient="index")
        context = context or {}
        decisions = [
            Decision(
                sample_id,
                action,
                label,
                note=note,
                score=context.get(sample_id, {}).get("score"),
                rank=context.get(sample_id, {}).get("rank"),
                run=context.get(sample_id, {}).get("run"),
            )
            for sample_id in dict.fromkeys(ids)
        ]
        return self.record(decisions, annotator=annotator, settle=_settle)

    def record(self, decisions: Sequence[Decision], *, annotator: str, settle: bool = False) -> str:
        """Store several decisions, each with its own action and label, as one batch owned by ``annotator``.

        A decision's own ``annotator`` and ``decided_at`` (kept when importing another ledger's export)
        default to the batch's. Everything is validated before anything is written. ``settle``: the batch is a
        settlement (see :meth:`settle`), written in the same transaction.
        """
        owner = _check_annotator(annotator)
        if not decisions:
            raise LedgerError("No sample ids given: select at least one sample to decide on.")
        self.check_ids([d.sample_id for d in decisions])
        for decision in decisions:
            self.check_decision(decision.action, decision.label)
        now = _now()
        batch_id = uuid.uuid4().hex
        rows = [
            (
                batch_id,
                d.sample_id,
                d.action,
                d.label,
                _check_annotator(d.annotator) if d.annotator is not None else owner,
                d.decided_at or now,
                d.note or None,
                _optional(d.score, float),
                _optional(d.rank, int),
                None if d.run is None else str(d.run),
            )
            for d in decisions
        ]

        def write(conn: sqlite3.Connection) -> str:
            conn.execute(
                "INSERT INTO batches (batch_id, kind, annotator, at) VALUES (?, 'decide', ?, ?)",
                (batch_id, owner, now),
            )
            conn.executemany(
                "INSERT INTO decisions (batch_id, sample_id, action, label, annotator, decided_at, note, "
                "score, rank, run) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            if settle:
                conn.execute("INSERT INTO settlements (batch_id) VALUES (?)", (batch_id,))
            return batch_id

        return self._transaction(write)

    def settle(
        self,
        ids: str | Iterable[str],
        action: str,
        *,
        label: str | None = None,
        reviewer: str,
        note: str | None = None,
        context: Mapping[str, Mapping] | pd.DataFrame | None = None,
    ) -> str:
        """Settle ``ids`` with one decision that outranks every annotator's: the sample's state (and so every
        export) is the latest settlement in force, whatever annotators decide after it. One batch, one undo step
        of ``reviewer`` (undoing it unsettles). Who may settle is the caller's rule (the app and CLI: reviewers
        and admins, :func:`ogaudit.server.auth.can` ``"settle"``). Arguments as :meth:`decide`; returns the batch id.
        """
        return self.decide(ids, action, label=label, annotator=reviewer, note=note, context=context, _settle=True)

    def assign(self, pairs: Iterable[tuple[str, str]], *, by: str, overlap: int, annotators: Sequence[str]) -> str:
        """Store an assignment plan: ``pairs`` of (sample id, annotator), written as one transaction.

        A sample's assignees are those of the latest plan that names it; samples a plan leaves out keep the
        assignees of earlier plans. Decisions are never touched. Plan the pairs with
        :func:`ogaudit.review.team.plan_assignment`. ``overlap`` and ``annotators`` are kept with the plan (what
        was asked). Returns the plan id; :class:`LedgerError` for unknown ids, an empty plan or a bad name.
        """
        by = _check_annotator(by)
        rows = list(dict.fromkeys((str(sample), _check_annotator(name)) for sample, name in pairs))
        if not rows:
            raise LedgerError("The assignment names no sample: choose at least one sample and one annotator.")
        self.check_ids(dict.fromkeys(sample for sample, _ in rows))
        names = [_check_annotator(name) for name in annotators]
        plan_id = uuid.uuid4().hex

        def write(conn: sqlite3.Connection) -> str:
            conn.execute(
                "INSERT INTO plans (plan_id, assigned_by, at, overlap, annotators) VALUES (?, ?, ?, ?, ?)",
                (plan_id, by, _now(), int(overlap), json.dumps(names, ensure_ascii=False)),
            )
            conn.executemany(
                "INSERT INTO assignments (plan_id, sample_id, annotator) VALUES (?, ?, ?)",
                [(plan_id, sample, name) for sample, name in rows],
            )
            return plan_id

        return self._transaction(write)

    def assignments(self) -> pd.DataFrame:
        """Each sample's current assignees: one row per (sample, annotator) of the latest plan naming the sample.

        Columns: sample_id, annotator, plan_id, assigned_by, assigned_at, overlap; in plan order, then as assigned.
        """
        query = """
            SELECT sample_id, annotator, plan_id, assigned_by, assigned_at, overlap FROM (
                SELECT a.sample_id, a.annotator, p.plan_id, p.assigned_by, p.at AS assigned_at, p.overlap,
                       p.seq, a.rowid AS row, MAX(p.seq) OVER (PARTITION BY a.sample_id) AS newest
                FROM assignments a JOIN plans p ON p.plan_id = a.plan_id
            ) WHERE seq = newest ORDER BY seq, row
        """
        return self._read(lambda conn: _frame(conn, query))

    def plans(self) -> pd.DataFrame:
        """Every assignment plan, oldest first: plan_id, assigned_by, at, overlap, annotators (a list), samples."""
        query = """
            SELECT p.plan_id, p.assigned_by, p.at, p.overlap, p.annotators,
                   (SELECT COUNT(DISTINCT sample_id) FROM assignments a WHERE a.plan_id = p.plan_id) AS samples
            FROM plans p ORDER BY p.seq
        """
        frame = self._read(lambda conn: _frame(conn, query))
        frame["annotators"] = [
            self._text_list(text, what="annotators", of=f"plan {plan}")
            for text, plan in zip(frame["annotators"], frame["plan_id"], strict=True)
        ]
        return frame

    def annotate(self, ids: str | Iterable[str], *, note: str | None, tags: Iterable[str] = (), annotator: str) -> None:
        """Set the note (free text) and tags of ``ids``: they replace the samples' earlier note and tags, whoever
        wrote them (the log keeps every version). An empty note and no tags clear them. Tags are stripped, kept
        in order without repeats; at most :data:`MAX_TAGS` of :data:`MAX_TAG_CHARS` characters, no commas (the
        CSV joins them with ``, ``); a note at most :data:`MAX_NOTE_CHARS`. Raises :class:`LedgerError`.
        """
        annotator = _check_annotator(annotator)
        ids = [ids] if isinstance(ids, str) else [str(i) for i in ids]
        if not ids:
            raise LedgerError("No sample ids given: choose at least one sample to note.")
        self.check_ids(ids)
        text = (note or "").strip() or None
        if text is not None and len(text) > MAX_NOTE_CHARS:
            raise LedgerError(f"The note has {len(text):,} characters; the limit is {MAX_NOTE_CHARS:,}: shorten it.")
        clean = check_tags(tags)
        now = _now()
        rows = [(sample, text, json.dumps(clean, ensure_ascii=False), annotator, now) for sample in dict.fromkeys(ids)]
        self._transaction(
            lambda conn: conn.executemany(
                "INSERT INTO notes (sample_id, note, tags, annotator, at) VALUES (?, ?, ?, ?, ?)", rows
            )
        )

    def notes(self) -> pd.DataFrame:
        """Each sample's current note and tags (the latest written; cleared ones left out).

        Columns: sample_id, note (str or None), tags (a list of str), noted_by, noted_at.
        """
        query = """
            SELECT sample_id, note, tags, annotator AS noted_by, at AS noted_at FROM notes
            WHERE seq IN (SELECT MAX(seq) FROM notes GROUP BY sample_id) ORDER BY seq
        """
        frame = self._read(lambda conn: _frame(conn, query))
        frame["tags"] = [
            self._text_list(text, what="tags", of=f"sample {sample}")
            for text, sample in zip(frame["tags"], frame["sample_id"], strict=True)
        ]
        keep = frame["note"].notna() | frame["tags"].map(bool)
        return frame[keep].reset_index(drop=True)

    def _text_list(self, text: object, *, what: str, of: str) -> list[str]:
        """A stored JSON list of texts (tags, a plan's annotators); :class:`LedgerError` naming the file, the
        row and the fix when it is not one (a ledger edited by hand)."""
        try:
            values = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            values = None
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            shown = str(text) if len(str(text)) <= 40 else f"{str(text)[:40]}…"
            raise LedgerError(
                f"The ledger {str(self.path)!r} is damaged: the {what} of {str(of)[:80]} are {shown!r}, not a list "
                f"of texts. {_RESTORE.format(path=self.path)}."
            )
        return values

    def check_ids(self, ids: Iterable[str]) -> None:
        """Raise :class:`LedgerError` naming the ids that are not samples of the current dataset."""
        unknown = [i for i in ids if i not in self.given_labels]
        if unknown:
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise LedgerError(
                f"Unknown sample id(s) {', '.join(map(repr, unknown[:5]))}{more}: they are not in the dataset "
                "this ledger was opened for. Check the ids, or open the ledger with the data they come from."
            )

    def check_decision(self, action: str, label: str | None) -> None:
        """Raise :class:`LedgerError` unless ``action`` is known and ``label`` fits it."""
        if action not in ACTIONS:
            raise LedgerError(f"Unknown action {action!r}; use one of {', '.join(ACTIONS)}.")
        if action in LABELLED_ACTIONS:
            if label not in self.class_names:
                raise LedgerError(
                    f"{action!r} needs the right label, one of the classes {self.class_names}; got {label!r}."
                )
        elif label is not None:
            raise LedgerError(
                f"{action!r} takes no label (got {label!r}); only {' and '.join(LABELLED_ACTIONS)} set one."
            )

    def undo(self, annotator: str) -> Batch | None:
        """Take back ``annotator``'s latest batch still in force; None when there is nothing to undo."""
        return self._toggle(annotator, "undo")

    def redo(self, annotator: str) -> Batch | None:
        """Put back the batch ``annotator`` undid last; None when there is nothing to redo."""
        return self._toggle(annotator, "redo")

    def undo_depth(self, annotator: str) -> tuple[int, int]:
        """How many batches ``annotator`` can undo and redo now (to enable or disable buttons)."""
        done, undone = self._read(lambda conn: _undo_stacks(conn, _check_annotator(annotator)))
        return len(done), len(undone)

    def _toggle(self, annotator: str, kind: str) -> Batch | None:
        annotator = _check_annotator(annotator)

        def write(conn: sqlite3.Connection) -> Batch | None:
            done, undone = _undo_stacks(conn, annotator)
            stack = done if kind == "undo" else undone
            if not stack:
                return None
            target = stack[-1]
            conn.execute(
                "INSERT INTO batches (batch_id, kind, target, annotator, at) VALUES (?, ?, ?, ?, ?)",
                (uuid.uuid4().hex, kind, target, annotator, _now()),
            )
            ids = [row[0] for row in conn.execute("SELECT sample_id FROM decisions WHERE batch_id = ?", (target,))]
            return Batch(target, annotator, tuple(ids))

        return self._transaction(write)

    # ------------------------------------------------------------ reading

    def state(self) -> pd.DataFrame:
        """The current decision on every decided sample, in the order they were decided.

        Columns: ``STATE_COLUMNS``. ``final_label`` is the new label for confirm/relabel, the given label for
        keep/unsure, and None for remove. ``given_label`` is None for ids not in the current dataset. A sample
        with a settlement in force (:meth:`settle`) has the latest settlement as its state, else its latest
        decision; ``settled`` says which.
        """
        query = f"""
            SELECT * FROM (
                SELECT a.*, ROW_NUMBER() OVER (PARTITION BY sample_id ORDER BY settled DESC, seq DESC) AS newest
                FROM (SELECT d.*, {_SETTLED} AS settled FROM ({_ACTIVE_DECISIONS}) d) a
            ) WHERE newest = 1 ORDER BY seq
        """
        frame = self._read(lambda conn: _frame(conn, query))
        frame["given_label"] = [self.given_labels.get(sample_id) for sample_id in frame["sample_id"]]
        final = frame["label"].where(frame["action"].isin(LABELLED_ACTIONS), frame["given_label"])
        frame["final_label"] = final.where(frame["action"] != "remove", None)
        frame["settled"] = frame["settled"].astype(bool)
        return _typed(frame[STATE_COLUMNS])

    def history(self) -> pd.DataFrame:
        """Every event in the log, in order: one row per decision and one per undo or redo.

        Columns: ``seq``, ``event`` (decide, undo, redo), ``batch_id``, ``by`` and ``at`` (who wrote the
        batch, when), ``sample_id``, ``action``, ``label``, ``annotator``, ``decided_at``, ``note``,
        ``score``, ``rank``, ``run``, ``target`` (the batch an undo/redo acts on), ``undone`` (whether
        the decision is currently undone) and ``settles`` (whether it is a reviewer's settlement).
        """
        query = f"""
            SELECT b.seq AS batch_seq, b.kind AS event, b.batch_id, b.annotator AS by, b.at, d.sample_id,
                   d.action, d.label, d.annotator, d.decided_at, d.note, d.score, d.rank, d.run, b.target,
                   CASE WHEN b.kind = 'decide' THEN d.seq NOT IN (SELECT seq FROM ({_ACTIVE_DECISIONS})) END
                       AS undone,
                   CASE WHEN b.kind = 'decide' THEN b.batch_id IN (SELECT batch_id FROM settlements) END AS settles
            FROM batches b LEFT JOIN decisions d ON d.batch_id = b.batch_id
            ORDER BY b.seq, d.seq
        """
        frame = self._read(lambda conn: _frame(conn, query)).drop(columns="batch_seq")
        frame.insert(0, "seq", np.arange(1, len(frame) + 1))
        frame["undone"] = [None if v is None else bool(v) for v in frame["undone"]]
        frame["settles"] = [None if v is None else bool(v) for v in frame["settles"]]
        return _typed(frame)

    def progress(self, flagged_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """Decisions in force per annotator: one row each, with ``decided`` and a count per action.

        A sample counts for every annotator whose latest decision on it is in force, even when a later
        decision by someone else overrode it; ``unsure`` counts as decided here. With ``flagged_ids``, adds
        ``flagged_decided``, ``flagged`` (how many are flagged) and ``flagged_fraction``.
        """
        latest = self._latest_per_annotator()
        table = pd.crosstab(latest["annotator"], latest["action"]).reindex(columns=list(ACTIONS), fill_value=0)
        table.insert(0, "decided", table.sum(axis=1))
        if flagged_ids is not None:
            flagged = {str(i) for i in flagged_ids}
            on_flagged = latest[latest["sample_id"].isin(flagged)].groupby("annotator").size()
            table["flagged_decided"] = on_flagged.reindex(table.index, fill_value=0)
            table["flagged"] = len(flagged)
            table["flagged_fraction"] = table["flagged_decided"] / max(len(flagged), 1)
        table.columns.name = None
        return table.reset_index()

    def disagreements(self, *, include_settled: bool = False) -> pd.DataFrame:
        """Samples where annotators' decisions in force differ: one row per (sample, annotator).

        Two decisions agree when they give the same outcome: confirm and relabel to the same class agree;
        keep, remove and unsure agree only with themselves. ``in_force`` marks the decision that is the
        sample's current state (the latest; none when a settlement is). Samples settled by a reviewer
        (:meth:`settle`) are left out unless ``include_settled``. Columns: sample_id, annotator, action, label,
        decided_at, note, in_force.
        """
        latest = self._latest_per_annotator()
        n_outcomes = latest.groupby("sample_id")["outcome"].transform("nunique")
        disputed = latest[n_outcomes > 1].copy()
        settled = set(self.settled_ids())
        if not include_settled:
            disputed = disputed[~disputed["sample_id"].isin(settled)]
        newest = disputed.groupby("sample_id")["seq"].transform("max")
        disputed["in_force"] = (disputed["seq"] == newest) & ~disputed["sample_id"].isin(settled)
        columns = ["sample_id", "annotator", "action", "label", "decided_at", "note", "in_force"]
        return disputed.sort_values(["sample_id", "seq"])[columns].reset_index(drop=True)

    def agreement(self) -> pd.DataFrame:
        """Pairwise agreement: for each pair of annotators, samples both decided and how many they agree on.

        Columns: annotator_a, annotator_b, both_decided, agreed, agreement (fraction).
        """
        latest = self._latest_per_annotator()[["sample_id", "annotator", "outcome"]]
        pairs = latest.merge(latest, on="sample_id", suffixes=("_a", "_b"))
        pairs = pairs[pairs["annotator_a"] < pairs["annotator_b"]]
        pairs = pairs.assign(agreed=pairs["outcome_a"] == pairs["outcome_b"])
        table = pairs.groupby(["annotator_a", "annotator_b"], as_index=False).agg(
            both_decided=("agreed", "size"), agreed=("agreed", "sum")
        )
        table["agreement"] = table["agreed"] / table["both_decided"]
        return table

    def settled_ids(self) -> list[str]:
        """Samples with a settlement in force."""
        query = f"SELECT DISTINCT d.sample_id FROM ({_ACTIVE_DECISIONS}) d WHERE {_SETTLED}"
        return [row[0] for row in self._read(lambda conn: conn.execute(query).fetchall())]

    def latest_per_annotator(self) -> pd.DataFrame:
        """Each annotator's latest decision in force on each sample (settlements left out), with ``outcome``: a
        key equal for decisions that agree (``label:<class>`` for confirm/relabel, else the action)."""
        return self._latest_per_annotator().reset_index(drop=True)

    def _latest_per_annotator(self) -> pd.DataFrame:
        """Each annotator's latest decision in force on each sample, with an ``outcome`` key to compare.
        Settlements are left out: they end a disagreement, they do not take part in it."""
        query = f"SELECT * FROM ({_ACTIVE_DECISIONS}) d WHERE NOT {_SETTLED} ORDER BY d.seq"
        active = self._read(lambda conn: _frame(conn, query))
        latest = active.drop_duplicates(["annotator", "sample_id"], keep="last")
        labelled = latest["action"].isin(LABELLED_ACTIONS)
        return latest.assign(outcome=np.where(labelled, "label:" + latest["label"].fillna(""), latest["action"]))

    # ------------------------------------------------------------ backup

    def backup(self, dest: str | Path) -> Path:
        """Copy the ledger to ``dest`` with SQLite's online backup API; return ``dest``.

        The copy is one consistent snapshot even while other annotators keep deciding, is checked with
        ``PRAGMA quick_check``, is a single self-contained file (rollback journal, no ``-wal``), and appears
        at ``dest`` only when complete. To restore, stop the server and copy it over ``ledger.sqlite``
        (with the old ``-wal``, ``-shm`` and ``-saved`` files moved away: ``-saved`` numbers the batches saved
        since, and a ledger with fewer is refused).
        """
        dest = Path(dest).expanduser()
        own = [Path(f"{self.path}{suffix}").resolve() for suffix in ("", "-wal", "-shm", "-journal")]
        if dest.resolve() in own:
            raise LedgerError(f"The backup {str(dest)!r} would overwrite the ledger's own files; choose another path.")
        if any(Path(f"{dest}{suffix}").exists() for suffix in ("-wal", "-shm", SAVED_SUFFIX)):
            raise LedgerError(
                f"{str(dest)!r} is a live ledger or database (it has -wal, -shm or {SAVED_SUFFIX} files beside it); "
                "it is not replaced: choose another path."
            )
        check_replaceable(
            dest, ours=lambda head: head.startswith(SQLITE_MAGIC) and _is_ledger_file(dest), what="an SQLite backup"
        )
        with atomic_path(dest) as tmp:

            def copy(conn: sqlite3.Connection) -> list:
                with closing(sqlite3.connect(tmp, isolation_level=None)) as target:
                    conn.backup(target)
                    target.execute("PRAGMA journal_mode=DELETE")
                    return target.execute("PRAGMA quick_check").fetchall()

            rows = self._retry(copy)
            if [tuple(row) for row in rows] != [("ok",)]:
                raise LedgerError(f"The backup of {str(self.path)!r} failed its integrity check: {rows[:3]}.")
        return dest

    # ------------------------------------------------------------ connections

    def _transaction(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` in one write transaction, committed (durably) before this returns."""

        last: list[int] = []

        def run(conn: sqlite3.Connection) -> _T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
                last[:] = [row[0] for row in conn.execute(_WRITE_NUMBER)]
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        result = self._retry(run)
        self._note_saved(last[0] if last else None)
        return result

    def _read(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` in one read transaction, so that its queries see one snapshot."""

        def run(conn: sqlite3.Connection) -> _T:
            conn.execute("BEGIN")
            try:
                return work(conn)
            finally:
                conn.execute("COMMIT")

        return self._retry(run)

    def _retry(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` on a fresh connection, retrying with jittered backoff while the database is busy."""
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.005
        while True:
            try:
                with closing(
                    sqlite3.connect(self.path, timeout=min(self.lock_timeout, 5.0), isolation_level=None)
                ) as conn:
                    conn.execute("PRAGMA synchronous=FULL")
                    conn.execute("PRAGMA foreign_keys=ON")
                    return work(conn)
            except sqlite3.OperationalError as error:
                busy = "locked" in str(error) or "busy" in str(error)
                if not busy:
                    raise LedgerError(f"The ledger {str(self.path)!r} failed: {error}.") from error
                if time.monotonic() > deadline:
                    raise LedgerError(
                        f"The ledger {str(self.path)!r} stayed locked by other writers for "
                        f"{self.lock_timeout:g} s. Try again, or raise lock_timeout."
                    ) from error
            except sqlite3.DatabaseError as error:
                raise LedgerError(
                    f"{str(self.path)!r} is not a readable ogaudit ledger ({error}). It was left as it is. "
                    f"{_RESTORE.format(path=self.path)}, or choose another project folder."
                ) from error
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 0.25)


def _uri_path(path: Path) -> str:
    """``path`` for an SQLite ``file:`` URI (``?``, ``#`` and ``%`` escaped)."""
    from urllib.parse import quote

    return quote(str(path.resolve()), safe="/")


def _fsync_dir(folder: Path) -> None:
    """Make a new name in ``folder`` durable (best effort: not every system can open a folder)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def _undo_stacks(conn: sqlite3.Connection, annotator: str) -> tuple[list[str], list[str]]:
    """Replay ``annotator``'s batches: (batches in force, oldest first; batches undone, redo order last)."""
    done: list[str] = []
    undone: list[str] = []
    rows = conn.execute("SELECT batch_id, kind, target FROM batches WHERE annotator = ? ORDER BY seq", (annotator,))
    for batch_id, kind, target in rows:
        if kind == "decide":
            done.append(batch_id)
            undone.clear()
        elif kind == "undo":
            done.remove(target)
            undone.append(target)
        else:
            undone.remove(target)
            done.append(target)
    return done, undone


def _frame(conn: sqlite3.Connection, query: str) -> pd.DataFrame:
    cursor = conn.execute(query)
    return pd.DataFrame(cursor.fetchall(), columns=[c[0] for c in cursor.description], dtype=object)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Nullable numbers for score and rank (what is not a number, in a ledger edited by hand, is missing: they
    are the context a decision was made in, not the decision); None (not NaN) for missing text."""
    frame = frame.reset_index(drop=True)
    frame["score"] = pd.to_numeric(frame["score"], errors="coerce").astype("float64")  # edited text: missing
    rank = pd.to_numeric(frame["rank"], errors="coerce").astype("float64")
    frame["rank"] = rank.where((rank % 1 == 0) & (rank.abs() < 2**53)).astype("Int64")
    return frame


def check_tags(tags: Iterable[str]) -> list[str]:
    """``tags`` stripped, in order, without repeats or empty ones; :class:`LedgerError` for too many, too long
    or a comma (the CSV joins tags with ``, ``)."""
    if isinstance(tags, str):
        tags = [tags]
    clean = list(dict.fromkeys(str(tag).strip() for tag in tags if str(tag).strip()))
    if len(clean) > MAX_TAGS:
        raise LedgerError(f"{len(clean)} tags given; at most {MAX_TAGS} per sample.")
    for tag in clean:
        if "," in tag or len(tag) > MAX_TAG_CHARS:
            raise LedgerError(
                f"Tag {tag[:60]!r} is not usable: a tag has at most {MAX_TAG_CHARS} characters and no comma."
            )
    return clean


def _check_annotator(annotator: str) -> str:
    name = annotator.strip() if isinstance(annotator, str) else ""
    if not name:
        raise LedgerError(f"annotator must be a non-empty name; got {annotator!r}.")
    return name


def _optional(value: object, kind: type) -> object:
    """``value`` as ``kind``, or None for None, NaN and pandas' NA."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return kind(value)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
