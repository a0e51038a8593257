"""A project folder: one audit's files, its review ledger and its jobs. The only module that knows their names.

The command line (``ogaudit scan --out DIR``, the review commands) and the app (one folder per audit under
``$OGAUDIT_HOME``) both go through :class:`Project`. Layout of ``PROJECT/`` (run format 2)::

    run.json            the run record: settings, fingerprints, timings, metrics; names the run folder
    runs/<run-id>/      scores.csv, map.csv, label_evidence.csv, head_evidence.npz, neighbours.npz of that run
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ogaudit.data.dataset import Dataset
from ogaudit.errors import DataError, OgauditError
from ogaudit.results import RUN_FORMAT, RUN_RECORD, Run, RunFolder, read_versioned
from ogaudit.review.ledger import Ledger
from ogaudit.settings import AuditSettings
from ogaudit.storage import read_json, write_json

if TYPE_CHECKING:
    from ogaudit.review.evidence import RunEvidence
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


@dataclass(frozen=True)
class Request:
    """What an audit was asked to do: ``data`` (a built-in name or a path) and its settings."""

    data: str
    settings: AuditSettings


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

    Raises :class:`~ogaudit.errors.DataError` naming the file for anything missing, damaged or written by a newer
    ogaudit.
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

    def load_dataset(self, data: str | os.PathLike | None = None) -> Dataset:
        """The exact data the run audited (same subset, same planted noise), read from where the record says.

        ``data`` points to the data's new place when it moved. Refused when the files changed since the run:
        decisions are tied to the data's fingerprint.
        """
        record = self.read_record()
        spec = str(data) if data is not None else str(record["dataset"]["spec"])
        source = f"--data {spec!r}" if data is not None else f"{str(self.path / RUN_RECORD)!r}"
        try:
            from ogaudit.pipeline.load import prepare_dataset

            dataset = prepare_dataset(spec, self.settings())
        except DataError as error:
            if data is None and _looks_like_path(spec):
                raise DataError(
                    f"The data this project audited, {spec!r} (named in {source}), cannot be read: {error} If it "
                    "moved, point to its new place with --data NEW_PATH on the review commands."
                ) from error
            raise
        expected = record["dataset"]["fingerprint"]
        if dataset.fingerprint() != expected:
            raise DataError(
                f"The data at {spec!r} (from {source}) changed since the run (fingerprint {dataset.fingerprint()} != "
                f"{expected}). Scan it again before reviewing, or point --data at the data that was scanned."
            )
        return dataset

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
            "its decisions may not fit these samples: export them and move ledger.sqlite away, or scan into a new "
            "folder."
        )

    # ------------------------------------------------------------ requests, verify, jobs, files

    def write_request(self, data: str, settings: AuditSettings) -> None:
        """Save what an audit is asked to do, before it starts, so it can run again."""
        self.writable()
        write_json(self.path / REQUEST, {"format": RUN_FORMAT, "data": str(data), "settings": settings.to_dict()})

    def read_request(self) -> Request | None:
        """The audit asked for in this folder, or None when nothing was asked."""
        path = self.path / REQUEST
        if not path.is_file():
            return None
        saved = read_versioned(path, what="the audit request", fix="Start a new audit.")
        if not isinstance(saved.get("data"), str):
            raise DataError(f"{str(path)!r} is damaged: it names no data. Start a new audit.")
        return Request(saved["data"], AuditSettings.from_dict(saved.get("settings", {}), source=str(path)))

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


def ledger_mismatch_message(ledger: Ledger) -> str:
    """What to tell a person whose ledger was made for other data than the project's current run."""
    return (
        f"The review in {str(ledger.path)!r} was made for other data (dataset {ledger.stored_fingerprint}; the "
        f"current run audited {ledger.dataset_fingerprint}): its decisions, scores and ranks may not fit these "
        "samples. Export them (ogaudit export decisions), then move ledger.sqlite away, or scan into a new folder."
    )


def list_projects(root: str | os.PathLike) -> list[ProjectInfo]:
    """Project folders under ``root``, most recently changed first (none when ``root`` does not exist)."""
    root = Path(root)
    if not root.is_dir():
        return []
    infos = [Project(path).info() for path in root.iterdir() if path.is_dir() and not path.name.startswith(".")]
    return sorted(infos, key=lambda info: info.modified, reverse=True)


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or "/" in spec or Path(spec).suffix != ""


__all__ = [
    "Project",
    "ProjectInfo",
    "Request",
    "Run",
    "list_projects",
    "slugify",
    "workspace_root",
]
