"""A project folder: one audit's files, its review ledger and its jobs. The only module that knows their names.

The command line (``ogaudit scan --out DIR``, the review commands) and the app (one folder per audit under
``$OGAUDIT_HOME``) both go through :class:`Project`. Layout of ``PROJECT/`` (run format 2)::

    run.json            the run record: settings, fingerprints, timings, metrics; names the run folder
    scores.csv, ...     the latest run's tables (copies), for scripts
    runs/<run-id>/      scores.csv, map.csv, label_evidence.csv, head_evidence.npz, neighbours.npz of each of the
                        last runs (the history)
    request.json        what the audit was asked to do (data spec and settings), so it can run again
    job-<kind>.json     how the last job of a kind ("audit", "verify") went
    verify.json         the last trim-and-retrain check
    ledger.sqlite       the review decisions (:mod:`ogaudit.review.ledger`)
    exports/            cleaned splits written from the app
    upload/             an uploaded image folder; checkpoint.<suffix>, an uploaded checkpoint

The run's own files (``run.json``, ``runs/``) belong to :mod:`ogaudit.results`; this module owns the rest. Every
JSON file carries ``"format"``; a newer or damaged one is refused with an error naming the file.

This module imports no torch (the load stage, :func:`~ogaudit.pipeline.load.prepare_dataset`, is imported when a
dataset is loaded), so review commands that only read a project start quickly.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ogaudit.data.dataset import Dataset
from ogaudit.errors import DataError, OgauditError, SettingsError
from ogaudit.results import RUN_FORMAT, RUN_RECORD, Run, RunFolder, read_versioned, record_integer_labels
from ogaudit.review.ledger import Ledger
from ogaudit.settings import AuditSettings
from ogaudit.storage import read_json, write_json

if TYPE_CHECKING:
    import threading

    import pandas as pd

    from ogaudit.progress import ProgressCallback
    from ogaudit.review.decisions import ImportReport
    from ogaudit.review.evidence import RunEvidence
    from ogaudit.review.ledger import Batch
    from ogaudit.review.verify import VerifyReport

HOME_ENV = "OGAUDIT_HOME"
DEFAULT_HOME = "ogaudit-projects"
REQUEST = "request.json"
VERIFY = "verify.json"
LEDGER = "ledger.sqlite"
EXPORTS = "exports"
UPLOAD = "upload"


def workspace_root() -> Path:
    """``$OGAUDIT_HOME`` or ``./ogaudit-projects``: where the app's project folders live."""
    return Path(os.environ.get(HOME_ENV, DEFAULT_HOME)).expanduser().absolute()


def slugify(text: str) -> str:
    """A folder-safe name: letters, digits, ``.``, ``_`` and ``-``; at most 60 characters."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:60]
    return slug or "project"


class ReviewMismatchWarning(UserWarning):
    """The project's review ledger was made for other data than its current run (a re-scan of other data)."""


@dataclass(frozen=True)
class Request:
    """What an audit was asked to do: ``data`` (a built-in name or a path), its settings, and ``by``: the name of
    the user who asked (None when unknown: the command line, or a request saved before names were kept)."""

    data: str
    settings: AuditSettings
    by: str | None = None


@dataclass(frozen=True)
class ProjectInfo:
    """A project folder as a project list shows it. ``status``: the audit job's last status, if any."""

    name: str
    path: Path
    finished: bool
    data: str | None
    modified: float
    status: str | None


class Project(RunFolder):
    """The project folder ``path`` (it need not exist yet: :meth:`writable` creates it): its run (read and written
    as in :class:`~ogaudit.results.RunFolder`), review ledger, request, jobs and exports.

    The review methods (:meth:`decide`, :meth:`undo`, :meth:`decisions`, :meth:`export_decisions`,
    :meth:`import_decisions`, :meth:`export_split`, :meth:`verify`) are what the review commands and a notebook
    call; the app records through the same ledger.

    Raises :class:`~ogaudit.errors.DataError` naming the file for anything missing, damaged or written by a newer
    ogaudit.

    Examples
    --------
    >>> project = Project("runs/demo")                                      # doctest: +SKIP
    >>> run = project.open_run()                                            # doctest: +SKIP
    >>> project.decide("remove", run.flagged_ids[:3], annotator="ana")      # doctest: +SKIP
    >>> project.export_split("runs/demo-clean")["counts"]                   # doctest: +SKIP
    """

    # ------------------------------------------------------------ creating

    @classmethod
    def create(cls, root: str | os.PathLike, name: str) -> Project:
        """A new, empty project folder under ``root`` named after ``name`` (``-2``, ``-3`` … when taken)."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        base = slugify(name)
        for number in range(1, 10_000):
            path = root / (base if number == 1 else f"{base}-{number}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            return cls(path)
        raise DataError(f"Too many projects named {base!r} in {str(root)!r}; choose another name.")

    def delete(self) -> None:
        """Remove the project folder and everything in it (ledger included)."""
        shutil.rmtree(self.path)

    def open_evidence(self, run: Run | None = None) -> RunEvidence | None:
        """Why each sample is flagged (:class:`~ogaudit.review.evidence.RunEvidence`), or None when the run kept
        no head evidence (written by an older ogaudit)."""
        from ogaudit.review.evidence import RunEvidence

        run = run or self.open_run()
        head = self.read_head_evidence()
        if head is None:
            return None
        label_evidence = self.read_label_evidence(run)
        return RunEvidence(
            head["features"],
            head["probs"],
            head["labels"],
            None if label_evidence is None else label_evidence.to_numpy(),
            neighbours=self._read_neighbours(len(head["labels"])),
        )

    # ------------------------------------------------------------ data and ledger

    def load_dataset(self, data: str | os.PathLike | Dataset | object | None = None) -> Dataset:
        """The exact data the run audited (same subset, same planted noise), read from where the record says.

        ``data`` points to the data's new place when it moved; for data audited from memory (arrays, a DataFrame,
        a torch Dataset: :mod:`ogaudit.data.containers`) it is the same data again, in any of those forms or as a
        :class:`Dataset`. Refused when the data changed since the run: decisions are tied to the data's
        fingerprint.
        """
        from ogaudit.data.containers import IN_MEMORY_SOURCES, is_container

        record = self.read_record()
        recorded = str(record["dataset"]["spec"])
        given = data
        if is_container(data):
            data = self._from_memory(data)
        if isinstance(data, Dataset):
            spec, source = data, "the data given"
        else:
            spec = str(data) if data is not None else recorded
            source = f"--data {spec!r}" if data is not None else f"{str(self.path / RUN_RECORD)!r}"
        if data is None and recorded in IN_MEMORY_SOURCES and not Path(recorded).exists():
            raise DataError(
                f"This project audited {IN_MEMORY_SOURCES[recorded]} held in memory (named {recorded!r} in "
                f"{source}), which cannot be read again from a path. Give the same data: data=(x, y) (or the "
                "DataFrame, torch Dataset or Dataset that was audited)."
            )
        try:
            from ogaudit.pipeline.load import prepare_dataset

            dataset = prepare_dataset(spec, self.settings())
        except DataError as error:
            if data is None and _looks_like_path(spec):
                raise DataError(
                    f"The data this project audited, {spec!r} (named in {source}), cannot be read: {error} If it "
                    "moved, point to its new place with --data NEW_PATH on the review commands (data=NEW_PATH in "
                    "Python)."
                ) from error
            raise
        expected = record["dataset"]["fingerprint"]
        if dataset.fingerprint() != expected and is_container(given) and not _names_itself(given):
            # audited with class_names=...: the run's class names, in their order, read the labels as it did
            again = prepare_dataset(self._from_memory(given, record["dataset"]["class_names"]), self.settings())
            dataset = again if again.fingerprint() == expected else dataset
        if dataset.fingerprint() != expected:
            shown = source if isinstance(spec, Dataset) else f"the data at {spec!r} (from {source})"
            raise DataError(
                f"{shown[0].upper()}{shown[1:]} changed since the run (fingerprint {dataset.fingerprint()} != "
                f"{expected}). Scan it again before reviewing, or point --data (data= in Python) at the data that "
                "was scanned."
            )
        return dataset

    def _from_memory(self, data, class_names: list[str] | None = None) -> Dataset:
        """In-memory data given again (:mod:`ogaudit.data.containers`), read with the run's options: a
        DataFrame's label and id columns come from the run's settings (``audit(label_column=..., id_column=...)``
        keeps them there)."""
        from ogaudit.data.containers import as_dataset

        settings = self.settings()
        from ogaudit.data.hf import is_hf_dataset

        columns = {}
        if type(data).__name__ == "DataFrame":
            columns = {"label_column": settings.label_column, "id_column": settings.id_column}
        elif is_hf_dataset(data):
            columns = {"label_column": settings.label_column, "path_column": settings.path_column}
        return as_dataset(data, class_names=class_names, fold_label_case=settings.fold_labels, **columns)

    def open_ledger(self, dataset: Dataset | None = None, *, run: Run | None = None) -> Ledger:
        """The project's review ledger (``ledger.sqlite``), created on first use.

        When the ledger was made for other data (a re-scan of different data into this folder),
        ``ledger.dataset_mismatch`` is True: :func:`ledger_mismatch_message` says what to do.

        Opened from the run's own table when there is a run (no data needed); otherwise for ``dataset`` (the
        review of data that was never scanned). Raises :class:`DataError` when there is neither. ``run``: this
        project's run already read (:meth:`open_run`), so a big run's tables are not read twice.
        """
        path = self.path / LEDGER
        if run is not None or self.has_run():
            run = run or self.open_run()
            with warnings.catch_warnings():  # callers read ledger.dataset_mismatch and say it their way
                warnings.simplefilter("ignore", UserWarning)
                return Ledger.open(
                    path,
                    dataset_fingerprint=run.record["dataset"]["fingerprint"],
                    sample_ids=run.table["sample_id"].tolist(),
                    given_labels=run.table["given_label"].tolist(),
                    class_names=run.class_names,
                )
        if dataset is None:
            raise DataError(
                f"{str(self.path)!r} has no {RUN_RECORD} naming the dataset; scan it first or pass --data with "
                "the data reviewed."
            )
        return Ledger.for_dataset(path, dataset)

    def ledger_path(self) -> Path:
        return self.path / LEDGER

    # ------------------------------------------------------------ the review, as the command line and the app do it

    def ledger(self, data: str | os.PathLike | Dataset | object | None = None) -> Ledger:
        """The review ledger: the run's (no data read), or for a folder that was never scanned, one for ``data``
        (a path, a :class:`Dataset` or in-memory data as :func:`ogaudit.audit` takes it).

        Warns (:class:`ReviewMismatchWarning`, :func:`ledger_mismatch_message`) when the ledger was made for other
        data than the current run's. Raises :class:`DataError` when there is neither a run nor ``data``.
        """
        if not self.path.is_dir():
            raise DataError(
                f"{str(self.path)!r} is not a project folder (it does not exist). Give the folder that "
                "`ogaudit scan --out` or ogaudit.audit(out_dir=...) wrote, or an app project under $OGAUDIT_HOME."
            )
        if self.has_run() or data is None:
            ledger = self.open_ledger()
        else:
            ledger = self.open_ledger(self._unscanned_dataset(data))
        if ledger.dataset_mismatch:
            warnings.warn(ledger_mismatch_message(ledger), ReviewMismatchWarning, stacklevel=3)
        return ledger

    def dataset(self, data: str | os.PathLike | Dataset | object | None = None) -> Dataset:
        """The data under review: the scanned data (:meth:`load_dataset`; ``data`` when it moved or was audited
        from memory), or ``data`` itself for a folder that was never scanned."""
        if self.has_run():
            return self.load_dataset(data)
        if data is None:
            raise DataError(
                f"{str(self.path)!r} holds no scan naming the data; pass --data (data= in Python) with the data "
                "reviewed."
            )
        return self._unscanned_dataset(data)

    def _unscanned_dataset(self, data) -> Dataset:
        from ogaudit.data.containers import as_dataset, is_container
        from ogaudit.data.load import load_dataset

        if isinstance(data, Dataset):
            return data
        return as_dataset(data) if is_container(data) else load_dataset(data)

    def decide(
        self,
        action: str,
        ids: str | Iterable[str],
        *,
        annotator: str,
        label: str | None = None,
        note: str | None = None,
    ) -> str:
        """Record one decision on the samples ``ids`` as one undoable step, as the app's buttons do.

        Parameters
        ----------
        action : ``"confirm"`` (the given label is wrong; the suggested label, or ``label``, is right; it must
            change the label), ``"relabel"`` (needs ``label``), ``"keep"`` (a false alarm), ``"remove"`` or
            ``"unsure"`` (:data:`~ogaudit.review.ledger.ACTIONS`).
        ids : one sample id or several (as in the run's ``sample_id`` column; compared as strings, so ``5`` is
            ``"5"``).
        annotator : who decides; recorded with each decision.
        label : the right class name, for ``relabel`` (and ``confirm`` instead of the suggestion).
        note : a note stored with each decision.

        Returns
        -------
        str : the batch id (one undo step).

        Raises
        ------
        LedgerError : an unknown action or id, a missing or unknown label, a confirm that keeps a label.
        DataError : the folder holds no finished scan.
        """
        from ogaudit.review.actions import decide

        run = self.open_run()
        ids = _as_ids(ids)
        return decide(self.open_ledger(run=run), run, ids, action, annotator=annotator, label=label, note=note)

    def settle(
        self,
        action: str,
        ids: str | Iterable[str],
        *,
        reviewer: str,
        label: str | None = None,
        note: str | None = None,
    ) -> str:
        """Settle the samples ``ids`` (typically disputed ones: :meth:`team_status`) with one decision that
        outranks every annotator's: it is the samples' state, and so what every export and ``verify`` use, until
        ``reviewer`` undoes it. Arguments and errors as :meth:`decide`; returns the batch id (one undo step).
        Whether ``reviewer`` may settle is the app's and the server's rule (roles ``reviewer`` and ``admin``)."""
        from ogaudit.review.actions import decide

        run = self.open_run()
        ledger = self.open_ledger(run=run)
        return decide(ledger, run, _as_ids(ids), action, annotator=reviewer, label=label, note=note, settle=True)

    def assign(
        self,
        annotators: str | Iterable[str],
        *,
        overlap: int = 1,
        ids: Iterable[str] | None = None,
        by: str,
    ) -> pd.DataFrame:
        """Split the review among ``annotators``, each sample to ``overlap`` different people, balanced and
        deterministic (:func:`~ogaudit.review.team.plan_assignment`), and store it in the ledger.

        Parameters
        ----------
        annotators : names, or one comma-separated string (``"ana,ben,cy"``).
        overlap : how many annotators review each sample (1 to ``len(annotators)``).
        ids : the samples to split, in order; default the flagged samples, most suspicious first. A later
            assignment replaces the assignees of the samples it names; decisions are kept.
        by : who assigns (recorded).

        Returns
        -------
        DataFrame : per annotator, what they are assigned and how far they are
            (:func:`~ogaudit.review.team.annotator_status`).

        Raises
        ------
        LedgerError : no or repeated names, an overlap out of range, no samples, an unknown id.
        """
        from ogaudit.review.team import assign

        if isinstance(annotators, str):
            annotators = [name for name in annotators.split(",") if name.strip()]
        run = self.open_run()
        order = run.flagged_ids if ids is None else _as_ids(ids)
        return assign(self.open_ledger(run=run), order, list(annotators), overlap=overlap, by=by)[1]

    def annotate(
        self, ids: str | Iterable[str], *, note: str | None = None, tags: Iterable[str] = (), annotator: str
    ) -> None:
        """Set the note and tags of the samples ``ids`` (they replace earlier ones; empty clears them): in the
        decisions CSV's ``note`` and ``tags`` columns and the app's cards. Raises LedgerError (see
        :meth:`~ogaudit.review.ledger.Ledger.annotate`)."""
        self.ledger().annotate(_as_ids(ids), note=note, tags=tags, annotator=annotator)

    def team_status(self, *, data=None) -> pd.DataFrame:
        """Where each assigned, decided, settled or noted sample stands: its ``status`` (assigned, decided,
        agreed, disputed, settled), assignees, who decided, who is pending, note and tags
        (:func:`~ogaudit.review.team.sample_status`)."""
        from ogaudit.review.team import sample_status

        return sample_status(self.ledger(data))

    def annotator_status(self, *, data=None) -> pd.DataFrame:
        """Per annotator: assigned, done, remaining, progress and their samples' statuses
        (:func:`~ogaudit.review.team.annotator_status`)."""
        from ogaudit.review.team import annotator_status

        return annotator_status(self.ledger(data))

    def undo(self, annotator: str, *, data=None) -> Batch | None:
        """Take back ``annotator``'s own last step; the step undone, or None when there is nothing to undo."""
        return self.ledger(data).undo(annotator)

    def redo(self, annotator: str, *, data=None) -> Batch | None:
        """Redo ``annotator``'s last undone step; the step, or None when there is nothing to redo."""
        return self.ledger(data).redo(annotator)

    def decisions(self, *, history: bool = False, ids: Iterable[str] | None = None, data=None) -> pd.DataFrame:
        """The review as a table: what ``export_decisions`` writes.

        Without ``history``, one row per decided sample with its decision in force: ``sample_id, given_label,
        action, final_label, annotator, decided_at, score, rank, note, run, settled, p_wrong, p_wrong_low,
        p_wrong_high, p_wrong_calibrated, tags, status, assigned_to`` (``final_label`` None for remove;
        :data:`~ogaudit.review.decisions.EXPORT_COLUMNS`), then one row without an action per sample assigned or
        noted but not decided. ``p_wrong`` … ``p_wrong_calibrated`` are the review card's P(wrong), its 90% interval
        and False where the card reads "not yet calibrated", with the decisions in force applied (as in
        :meth:`export`); None without a finished run.
        With ``history``, every event of the log (decisions, undos, redos) in order. ``ids`` keeps only those
        samples' rows. ``data``: for a folder never scanned (see :meth:`ledger`).
        Labels (``given_label``, ``final_label``; ``label`` in the history) are integers (``Int64``) when the run's
        labels were (:attr:`~ogaudit.results.Run.integer_labels`), as in its scores and exports; else text.
        """
        from ogaudit.review.decisions import decisions_frame, typed_decisions

        frame = decisions_frame(self.ledger(data), ids=_as_ids(ids), history=history, **self._card_wrong(history))
        return typed_decisions(frame, integer=self.has_run() and record_integer_labels(self.read_record()))

    def export_decisions(
        self,
        path: str | os.PathLike,
        *,
        ids: Iterable[str] | None = None,
        history: bool = False,
        data=None,
    ) -> Path:
        """Write :meth:`decisions` to the CSV file ``path`` (atomically; formula-like cells escaped with a
        leading ``'``) and return its path: what ``ogaudit export decisions`` writes."""
        from ogaudit.review.decisions import write_decisions_csv

        target = self._export_target(path, data)
        return write_decisions_csv(
            self.ledger(data), target, ids=_as_ids(ids), history=history, **self._card_wrong(history)
        )

    def _card_wrong(self, history: bool) -> dict:
        """``run_table`` and ``p_wrong`` for :func:`~ogaudit.review.decisions.decisions_frame`: the finished run's
        table, and the packaged curve's P(wrong) where the run predates the data-level estimate (as the card)."""
        if history or not self.has_run():
            return {}
        from ogaudit.review.calibration import reviewed_estimate

        run = self.open_run()
        p_wrong = None
        if reviewed_estimate(run.table, None) is None:
            evidence = self.open_evidence(run)
            p_wrong = evidence.p_wrong() if evidence is not None else None
        return {"run_table": run.table, "p_wrong": p_wrong}

    def import_decisions(self, source: str | os.PathLike | bytes, *, annotator: str, data=None) -> ImportReport:
        """Add the decisions of a decisions CSV (a path or its bytes) made elsewhere, as one undo step of
        ``annotator``; the report says what was stored, already there, or rejected and why."""
        from ogaudit.review.decisions import import_decisions

        return import_decisions(self.ledger(data), source, annotator=annotator)

    def backup(self, path: str | os.PathLike, *, data=None) -> Path:
        """A consistent copy of the ledger at ``path`` (SQLite's online backup), also while others decide."""
        return self.ledger(data).backup(self._export_target(path, data))

    def export_split(self, path: str | os.PathLike, *, drop_undecided_flagged: bool = False, data=None) -> dict:
        """Write the data as cleaned by the decisions in force into the new or empty folder ``path``.

        Removed samples are dropped and confirmed or relabelled ones carry their new label, in the input's own
        kind (an ``.npz`` for arrays and in-memory data, a ``.npy`` folder, a CSV manifest with its images, an
        ImageFolder, a text table), with a ``split.json`` manifest. ``drop_undecided_flagged`` also drops the
        flagged samples nobody decided on (or marked unsure). ``data``: where the scanned data is now, or the
        same in-memory data again (see :meth:`load_dataset`).

        Returns
        -------
        dict : the ``split.json`` manifest; ``["counts"]`` has ``input, kept, removed, relabelled,
        dropped_undecided_flagged``.
        """
        from ogaudit.review.split import export_split

        target = self._export_target(path, data)
        dataset = self.dataset(data)
        flagged = self.flagged_ids() if drop_undecided_flagged else None
        return export_split(
            dataset,
            self.ledger(data),
            target,
            flagged_ids=flagged,
            drop_undecided_flagged=drop_undecided_flagged,
        )

    def export(
        self,
        path: str | os.PathLike,
        *,
        format: str,
        data=None,
        url_prefix: str | None = None,
    ) -> Path:
        """Write the run's flags and the review's decisions in force for another tool; return what was written.

        ``format`` is one of :data:`~ogaudit.review.exports.EXPORT_FORMATS`: ``"fiftyone"`` (a
        ``FiftyOneImageClassificationDataset`` folder), ``"label-studio"`` (a folder with ``tasks.json`` and
        ``label_config.xml``), ``"hf"`` (a ``datasets`` ``save_to_disk`` folder), ``"parquet"`` (a ``.parquet``
        file) or ``"cleanlab"`` (its label-issues frame as a ``.csv`` file); each carries ``score``, ``rank``,
        ``flagged``, ``suggested_label``, ``p_wrong`` with ``p_wrong_low``, ``p_wrong_high`` and
        ``p_wrong_calibrated`` (the review card's numbers, False where it reads "not yet calibrated"), the
        ``decision`` and the ``reviewed_label`` (:func:`~ogaudit.review.exports.reviewed_table`). Integer labels stay integers.

        FiftyOne and Label Studio carry the samples (images; Label Studio also texts) and read the data (``data``
        as for :meth:`export_split`); ``hf`` and ``parquet`` add an ``image`` or ``text`` column when the data can
        be read, and say so with a warning when it cannot; ``cleanlab`` reads no data. ``url_prefix``: Label
        Studio's image URL before each file's path in the export folder (default its local-files URL).

        Raises
        ------
        DataError : no finished run, an unknown format, data a format cannot hold, a path among the project's
            own files or inside the audited data.
        StorageError : a path that is taken (a folder that is not empty, a file of another kind) or not writable.
        """
        from ogaudit.review.exports import LABEL_STUDIO_URL_PREFIX, reviewed_table, write_export

        target = self._export_target(path, data)
        run = self.open_run()
        from ogaudit.review.calibration import reviewed_estimate

        ledger = self.ledger(data)
        state = ledger.state()
        estimate = reviewed_estimate(run.table, state)  # the cards' number: the run's, updated by the decisions
        p_wrong = None
        if estimate is None:  # a run written before p_wrong was estimated on the data: the packaged curve
            evidence = self.open_evidence(run)
            p_wrong = evidence.p_wrong() if evidence is not None else None
        table = reviewed_table(
            run.table, state, run.class_names, integer=run.integer_labels, p_wrong=p_wrong, wrong=estimate
        )
        dataset = None
        if format in ("fiftyone", "label-studio"):
            dataset = self._audited(data)
        elif format in ("hf", "parquet"):
            try:
                dataset = self._audited(data)
            except DataError as error:
                warnings.warn(
                    f"The {format} export holds the table without the samples: the data cannot be read ({error})",
                    UserWarning,
                    stacklevel=2,
                )
        return write_export(
            table,
            target,
            format=format,
            class_names=run.class_names,
            dataset=dataset,
            url_prefix=url_prefix or LABEL_STUDIO_URL_PREFIX,
        )

    def _audited(self, data) -> Dataset:
        """The audited data: ``data`` itself when it is the very :class:`Dataset` the run read (an audit's
        ``result.dataset``, planted noise included), else :meth:`dataset`."""
        if isinstance(data, Dataset) and data.fingerprint() == self.read_record()["dataset"]["fingerprint"]:
            return data
        return self.dataset(data)

    def verify(
        self,
        *,
        seeds: int = 3,
        holdout: float = 0.2,
        drop_undecided_flagged: bool = False,
        data=None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> VerifyReport:
        """The paper's trim-and-retrain check, saved in ``verify.json`` as ``ogaudit verify`` saves it.

        The scan's model recipe is trained on the data as given and as cleaned by the decisions in force, with
        ``seeds`` seeds each, and both are scored on a stratified held-out ``holdout`` fraction that is never
        cleaned (against the true labels when noise was planted). ``data`` as for :meth:`export_split`;
        ``progress(stage, fraction, message)`` and ``cancel`` as for :func:`ogaudit.audit`.

        Returns
        -------
        VerifyReport : accuracies before and after (mean and per seed), the verdict
        (:meth:`~ogaudit.review.verify.VerifyReport.describe`), the held-out size and the decisions applied.
        """
        from ogaudit.review.verify import verify_cleaning

        run = self.open_run() if self.has_run() else None
        dataset = self.dataset(data)
        if dataset.kind == "instructions":
            raise SettingsError(
                "Prompt/response pairs are checked by re-tuning the causal LM, not by this retrain check: use the "
                "app's Language model tab (Verify) or ogaudit.pipeline.instructions.verify_instructions."
            )
        decisions = self.ledger(data).state()
        settings, recipe_note = _verify_recipe(run)
        report = verify_cleaning(
            dataset,
            decisions,
            settings,
            holdout=holdout,
            flagged_ids=run.flagged_ids if run is not None else None,
            drop_undecided_flagged=drop_undecided_flagged,
            seeds=seeds,
            progress=progress,
            cancel=cancel,
        )
        if recipe_note:
            report = replace(report, notes=(*report.notes, recipe_note))
        self.write_verify(report, decided=len(decisions))
        return report

    def owns(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` is one of the project's own files (the run's, the ledger and its ``-wal``/``-shm``,
        the request, verify and job files, uploads), which no export may replace."""
        if super().owns(path):
            return True
        path = Path(path).expanduser().absolute().resolve()
        root = self.path.resolve()
        if path.parent == root and (
            path.name.startswith((LEDGER, "job-", "checkpoint.")) or path.name in (REQUEST, VERIFY)
        ):
            return True
        return path.is_relative_to(root / UPLOAD)

    def _export_target(self, path: str | os.PathLike, data=None) -> Path:
        """``path`` for an export, refused when it is one of the project's files or inside the audited data: the
        path the run recorded, and ``data`` when it names where the data is now (``--data``)."""
        target = Path(path).expanduser()
        if self.owns(target):
            raise DataError(
                f"{str(target)!r} is one of the project's own files; write the export elsewhere (a new file name, "
                f"or a path under {str(self.path / EXPORTS)!r})."
            )
        spec = self.read_record()["dataset"]["spec"] if self.has_run() else None
        places = [str(spec)] if spec and _looks_like_path(str(spec)) else []
        if isinstance(data, str | os.PathLike):  # where the data is now: a path, also one without a slash
            places.append(os.fspath(data))
        inside = target.absolute().resolve()
        for place in places:
            if not Path(place).expanduser().exists():
                continue
            data_path = Path(place).expanduser().resolve()
            if inside == data_path or (data_path.is_dir() and inside.is_relative_to(data_path)):
                raise DataError(
                    f"{str(target)!r} is inside the audited data {str(data_path)!r}, which exports never write to. "
                    "Choose a path outside it."
                )
        return target

    def review_notice(self, dataset_fingerprint: str) -> str | None:
        """A warning when this folder holds a review of other data than ``dataset_fingerprint`` (a re-scan of
        other data into it): the review is kept, never changed, but may not fit the new samples."""
        if not self.ledger_path().exists() or not self.has_run():
            return None
        try:
            previous = self.read_record()["dataset"]["fingerprint"]
        except OgauditError:
            return None
        if previous == dataset_fingerprint:
            return None
        return (
            f"{str(self.ledger_path())!r} holds a review of the data this folder audited before (dataset "
            f"{previous}); this scan audits other data ({dataset_fingerprint}). The review is kept as it is, but "
            "its decisions may not fit these samples: export them and move ledger.sqlite (and ledger.sqlite-saved) "
            "away, or scan into a new folder."
        )

    # ------------------------------------------------------------ requests, verify, jobs, files

    def write_request(self, data: str, settings: AuditSettings, *, by: str | None = None) -> None:
        """Save what an audit is asked to do, before it starts, so it can run again; ``by``: who asked."""
        self.writable()
        saved = {"format": RUN_FORMAT, "data": str(data), "settings": settings.to_dict()}
        write_json(self.path / REQUEST, saved | ({"by": str(by)} if by else {}))

    def read_request(self) -> Request | None:
        """The audit asked for in this folder, or None when nothing was asked."""
        path = self.path / REQUEST
        if not path.is_file():
            return None
        saved = read_versioned(path, what="the audit request", fix="Start a new audit.")
        if not isinstance(saved.get("data"), str):
            raise DataError(f"{str(path)!r} is damaged: it names no data. Start a new audit.")
        by = saved.get("by")
        settings = AuditSettings.from_dict(saved.get("settings", {}), source=str(path))
        return Request(saved["data"], settings, by if isinstance(by, str) and by else None)

    def write_verify(self, report: VerifyReport, *, decided: int) -> dict:
        """Save a trim-and-retrain report with how many decisions were in force; return what was saved."""
        payload = {
            "format": RUN_FORMAT,
            **report.to_dict(),
            "decided": decided,
            "text": report.describe(),
            "at": time.time(),
        }
        write_json(self.path / VERIFY, payload)
        return payload

    def read_verify(self) -> dict | None:
        """The last verification, or None: the report's fields plus ``text``, ``decided`` (None if unknown), ``at``."""
        path = self.path / VERIFY
        if not path.is_file():
            return None
        saved = read_versioned(path, what="the verification", fix="Run the retrain check again.")
        if "text" not in saved:  # format 1 as the command line wrote it
            from ogaudit.review.verify import VerifyReport

            fields = {k: saved[k] for k in VerifyReport.__dataclass_fields__ if k in saved}
            try:
                saved["text"] = VerifyReport(**fields).describe()
            except TypeError as error:
                raise DataError(f"{str(path)!r} is damaged ({error}). Run the retrain check again.") from error
        saved.setdefault("decided", None)
        saved.setdefault("at", path.stat().st_mtime)
        return saved

    def job_file(self, kind: str) -> Path:
        """Where the last job of ``kind`` ("audit", "verify") keeps its status."""
        if not re.fullmatch(r"[a-z][a-z0-9-]*", kind):
            raise ValueError(f"job kind {kind!r} must be lower-case letters, digits and '-'")
        return self.path / f"job-{kind}.json"

    def job_lock_file(self, kind: str) -> Path:
        """The file a live job of ``kind`` holds locked (``flock``) while it runs: one live job per folder."""
        return self.job_file(kind).with_suffix(".lock")

    def job_state(self, kind: str) -> dict | None:
        """The raw status the last job of ``kind`` wrote, or None (also when the file is unreadable)."""
        path = self.job_file(kind)
        try:
            return read_json(path) if path.is_file() else None
        except (OSError, ValueError):
            return None

    def new_export_dir(self) -> Path:
        """A fresh, not yet existing folder under ``exports/`` for a cleaned split."""
        return self.path / EXPORTS / (time.strftime("split-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4])

    def upload_dir(self) -> Path:
        """Where an uploaded image folder is unpacked."""
        return self.path / UPLOAD

    def checkpoint_path(self, suffix: str) -> Path:
        """Where an uploaded checkpoint with ``suffix`` (".pt", ...) is kept."""
        return self.path / f"checkpoint{suffix}"

    def predictions_path(self, suffix: str) -> Path:
        """Where an uploaded predictions file with ``suffix`` (".npz" or ".parquet") is kept."""
        return self.path / f"predictions{suffix}"

    def is_empty(self) -> bool:
        """Whether the folder holds nothing but job locks (or is gone): no request, status, run, ledger or upload.
        A project list leaves such a folder out (a failed start, a deleted project's leftover)."""
        try:
            return all(entry.name.startswith("job-") and entry.suffix == ".lock" for entry in self.path.iterdir())
        except OSError:
            return True

    def modified(self) -> float:
        """When the project last changed (its JSON files, ledger or run), as a POSIX time."""
        names = [RUN_RECORD, REQUEST, VERIFY, LEDGER, "job-audit.json", "job-verify.json"]
        times = [p.stat().st_mtime for p in (self.path / n for n in names) if p.exists()]
        return max(times, default=self.path.stat().st_mtime)

    def info(self) -> ProjectInfo:
        try:
            request = self.read_request()
        except OgauditError:
            request = None
        state = self.job_state("audit") or {}
        return ProjectInfo(
            self.name,
            self.path,
            self.is_finished(),
            None if request is None else request.data,
            self.modified(),
            state.get("status"),
        )


USER_MODEL_REASONS = ("user checkpoint", "your model")
"""How the run record's ``model.reason`` begins when the scan audited the user's model rather than one it trained."""


def _verify_recipe(run: Run | None) -> tuple[AuditSettings, str | None]:
    """The settings the retrain check trains with, and a note when they are not the scan's model.

    ogaudit can only retrain a model it knows how to build: when the scan audited the user's own model (in memory,
    a checkpoint, a Hugging Face folder) or their predictions, the check trains ogaudit's own recipe for the data
    (``model="auto"``) and says so in the report's notes."""
    if run is None:
        return AuditSettings(), None
    settings = run.settings
    model = run.record.get("model", {})
    kind, reason = str(model.get("kind", "")), str(model.get("reason", ""))
    if kind == "predictions" or settings.predictions is not None or reason.startswith(USER_MODEL_REASONS):
        what = "your predictions" if kind == "predictions" or settings.predictions is not None else "your model"
        note = (
            f"the scan audited {what}, which ogaudit cannot retrain: this check retrains ogaudit's own model for "
            "the data (model 'auto') before and after the cleaning"
        )
        return replace(settings, model="auto", predictions=None, arch=None), note
    return settings, None


def ledger_mismatch_message(ledger: Ledger) -> str:
    """What to tell a person whose ledger was made for other data than the project's current run."""
    return (
        f"The review in {str(ledger.path)!r} was made for other data (dataset {ledger.stored_fingerprint}; the "
        f"current run audited {ledger.dataset_fingerprint}): its decisions, scores and ranks may not fit these "
        "samples. Export them (ogaudit export decisions), then move ledger.sqlite (and ledger.sqlite-saved) away, "
        "or scan into a new folder."
    )


def list_projects(root: str | os.PathLike) -> list[ProjectInfo]:
    """Project folders under ``root``, most recently changed first (none when ``root`` does not exist); a folder
    that holds nothing (:meth:`Project.is_empty`) is not a project."""
    root = Path(root)
    if not root.is_dir():
        return []
    folders = [path for path in root.iterdir() if path.is_dir() and not path.name.startswith(".")]
    infos = [Project(path).info() for path in folders if not Project(path).is_empty()]
    return sorted(infos, key=lambda info: info.modified, reverse=True)


def _as_ids(ids) -> list[str] | None:
    """Sample ids as strings: one id (a str or a number) or an iterable of them; None stays None.

    Raises TypeError for bytes (ambiguous: iterated they are numbers) and for anything not an id.
    """
    if ids is None:
        return None
    if isinstance(ids, str | int | np.integer):
        return [str(ids)]
    if isinstance(ids, bytes | bytearray) or not isinstance(ids, Iterable):
        raise TypeError(f"ids must be a sample id (str or int) or an iterable of them; got {type(ids).__name__}.")
    values = list(ids)
    wrong = [value for value in values if not isinstance(value, str | int | np.integer)]
    if wrong:
        raise TypeError(f"ids must be sample ids (str or int); got {type(wrong[0]).__name__} {wrong[0]!r}.")
    return [str(value) for value in values]


def _names_itself(data) -> bool:
    """Whether in-memory ``data`` carries its class names (a three-element tuple)."""
    return isinstance(data, tuple) and len(data) == 3


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or "/" in spec or Path(spec).suffix != ""


__all__ = [
    "Project",
    "ProjectInfo",
    "Request",
    "ReviewMismatchWarning",
    "Run",
    "list_projects",
    "slugify",
    "workspace_root",
]
