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

A run is written into a new ``runs/<run-id>/`` folder and ``run.json`` is replaced last, in one rename: a reader
sees the old run or the new one, never a mixture, and a failed re-scan leaves the old run in force. Format 1 (the
first release) kept the run files beside ``run.json``; such projects are read as they are. Every JSON file
carries ``"format"``; a newer or damaged one is refused with an error naming the file.

This module imports neither torch nor the pipeline, so review commands that only read a project start quickly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ogaudit.data.dataset import Dataset, load_dataset
from ogaudit.errors import DataError, OgauditError
from ogaudit.review.ledger import Ledger
from ogaudit.settings import AuditSettings
from ogaudit.storage import atomic_path, ensure_writable_dir, read_csv, read_json, write_csv, write_json

if TYPE_CHECKING:
    from ogaudit.review.evidence import RunEvidence
    from ogaudit.review.verify import VerifyReport

HOME_ENV = "OGAUDIT_HOME"
DEFAULT_HOME = "ogaudit-projects"
RUN_FORMAT = 2
"""Format of ``run.json``, ``request.json`` and ``verify.json``. 1: the first release (no ``format`` key)."""
RUN_RECORD = "run.json"
REQUEST = "request.json"
VERIFY = "verify.json"
LEDGER = "ledger.sqlite"
RUNS = "runs"
EXPORTS = "exports"
UPLOAD = "upload"
TABLE_COPY = "table.parquet"
"""A binary copy of the run's scores and map (see :func:`_write_table_copy`), beside the CSVs in the run folder."""
RUN_TABLES = {
    "scores": "scores.csv",
    "map": "map.csv",
    "label_evidence": "label_evidence.csv",
    "head_evidence": "head_evidence.npz",
    "neighbours": "neighbours.npz",
}
_REQUIRED_RECORD = {"settings": dict, "dataset": dict, "model": dict, "fingerprint": str}
_REQUIRED_DATASET = ("spec", "fingerprint", "class_names", "samples")


def workspace_root() -> Path:
    """``$OGAUDIT_HOME`` or ``./ogaudit-projects``: where the app's project folders live."""
    return Path(os.environ.get(HOME_ENV, DEFAULT_HOME)).expanduser().absolute()


def slugify(text: str) -> str:
    """A folder-safe name: letters, digits, ``.``, ``_`` and ``-``; at most 60 characters."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:60]
    return slug or "project"


def prepare_dataset(data: str | os.PathLike | Dataset, settings: AuditSettings, **text_options) -> Dataset:
    """The data an audit with ``settings`` reads: ``data`` loaded, its ``limit`` subset taken, its noise planted.

    Deterministic in ``settings.seed``, so the exact samples and labels of a run can be rebuilt from its record.
    ``text_options`` (``cache_dir``, ``progress``, ``cancel``) reach the text encoder for text data.
    """
    from ogaudit.data.noise import inject_label_noise

    dataset = (
        data
        if isinstance(data, Dataset)
        else load_dataset(
            data,
            limit=settings.limit,
            seed=settings.seed,
            fold_label_case=settings.fold_labels,
            text_options={**settings.text_options, **text_options},
        )
    )
    if settings.noise_rate > 0:
        dataset = inject_label_noise(dataset, settings.noise_rate, kind=settings.noise_kind, seed=settings.seed)
    return dataset


@dataclass(frozen=True)
class Request:
    """What an audit was asked to do: ``data`` (a built-in name or a path) and its settings."""

    data: str
    settings: AuditSettings


@dataclass
class Run:
    """A finished audit read back from its project.

    table : one row per sample, in the dataset's order: sample_id, x, y (map), given_label, predicted_label,
        suggested_label, score (higher = more suspicious), rank (1 = most suspicious), flagged, confidence
        (+ true_label, is_noisy with planted noise). Ids and labels are strings, whatever they look like.
    record : ``run.json``, migrated to the current format.
    """

    path: Path
    record: dict
    table: pd.DataFrame

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def class_names(self) -> list[str]:
        return [str(name) for name in self.record["dataset"]["class_names"]]

    @property
    def fingerprint(self) -> str:
        """The run's fingerprint (model and settings); changes when the folder is audited again."""
        return self.record["fingerprint"]

    @cached_property
    def settings(self) -> AuditSettings:
        return AuditSettings.from_dict(self.record["settings"], source=str(self.path / RUN_RECORD))

    @cached_property
    def flagged_ids(self) -> list[str]:
        """Flagged sample ids, most suspicious first."""
        flagged = self.table[self.table["flagged"]]
        return flagged.sort_values("rank", kind="stable")["sample_id"].tolist()

    @cached_property
    def by_id(self) -> pd.DataFrame:
        """``table`` indexed by sample id."""
        return self.table.set_index("sample_id", drop=False)

    @cached_property
    def position(self) -> dict[str, int]:
        """Sample id -> row in the dataset."""
        return dict(zip(self.table["sample_id"].tolist(), range(len(self.table)), strict=True))

    def describe(self) -> str:
        dataset, settings = self.record["dataset"], self.record["settings"]
        noise = f", {settings['noise_rate']:.0%} planted noise" if settings.get("noise_rate") else ""
        return (
            f"{dataset['spec']}: {dataset['samples']:,} samples, {len(self.class_names)} classes{noise}; "
            f"model {self.record['model']['kind']}, detector {settings['detector']}, "
            f"{self.record.get('flagged', int(self.table['flagged'].sum())):,} flagged"
        )


@dataclass(frozen=True)
class ProjectInfo:
    """A project folder as a project list shows it. ``status``: the audit job's last status, if any."""

    name: str
    path: Path
    finished: bool
    data: str | None
    modified: float
    status: str | None


class Project:
    """The project folder ``path`` (it need not exist yet: :meth:`writable` creates it).

    Raises :class:`~ogaudit.errors.DataError` naming the file for anything missing, damaged or written by a newer
    ogaudit.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser().absolute()

    def __repr__(self) -> str:
        return f"Project({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

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

    def writable(self) -> Project:
        """Create the folder if needed and prove it takes a file (a long run then fails at its start)."""
        ensure_writable_dir(self.path)
        return self

    def delete(self) -> None:
        """Remove the project folder and everything in it (ledger included)."""
        shutil.rmtree(self.path)

    # ------------------------------------------------------------ the run

    def write_run(
        self,
        scores: pd.DataFrame,
        map_frame: pd.DataFrame,
        record: dict,
        *,
        label_evidence: pd.DataFrame | None = None,
        head_evidence: dict[str, np.ndarray] | None = None,
        neighbours: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> dict[str, Path]:
        """Write a run's tables into a new run folder, then switch ``run.json`` to it; return the file paths.

        ``scores`` and ``map_frame`` as in :class:`~ogaudit.pipeline.run.AuditResult`; ``record`` the run record
        (``format``, ``run_dir`` and ``files`` are added, and ``record`` is updated in place); ``label_evidence``
        one row per sample (sample_id, then a column per class); ``head_evidence`` arrays (features, probs,
        labels) from which every last-layer gradient can be rebuilt; ``neighbours`` the detector's gradient
        neighbours ``(positions (N, k), cosines (N, k))``, which the review's evidence reads instead of searching.

        Earlier run folders are removed only after the switch, so a failure (full disk) leaves the previous run
        whole and in force. Text cells a spreadsheet would run as a formula are escaped (see
        :func:`~ogaudit.review.exports.escape_cell`); :meth:`open_run` undoes it.
        """
        self.writable()
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        folder = self.path / RUNS / run_id
        folder.mkdir(parents=True)
        paths = {name: folder / file for name, file in RUN_TABLES.items()}
        if label_evidence is None:
            del paths["label_evidence"]
        if head_evidence is None:
            del paths["head_evidence"]
        if neighbours is None:
            del paths["neighbours"]
        try:
            _write_table(scores, paths["scores"])
            _write_table(map_frame, paths["map"])
            if label_evidence is not None:
                _write_table(label_evidence, paths["label_evidence"])
            if head_evidence is not None:
                with atomic_path(paths["head_evidence"]) as tmp, open(tmp, "wb") as handle:
                    np.savez(handle, **head_evidence)
            if neighbours is not None:  # int32 positions, float16 cosines: 120 B a sample at k = 20
                with atomic_path(paths["neighbours"]) as tmp, open(tmp, "wb") as handle:
                    np.savez(
                        handle, neighbours=neighbours[0].astype(np.int32), cosines=neighbours[1].astype(np.float16)
                    )
            _write_table_copy(scores, map_frame, paths["scores"], paths["map"], folder / TABLE_COPY)
            record.update(
                format=RUN_FORMAT, run_dir=f"{RUNS}/{run_id}", files={name: p.name for name, p in paths.items()}
            )
            write_json(self.path / RUN_RECORD, record)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self._remove_old_runs(keep=run_id)
        return {**paths, "run": self.path / RUN_RECORD}

    def _remove_old_runs(self, keep: str) -> None:
        for old in (self.path / RUNS).iterdir():
            if old.name != keep:
                shutil.rmtree(old, ignore_errors=True)
        for file in RUN_TABLES.values():  # a format-1 run's tables beside run.json
            (self.path / file).unlink(missing_ok=True)

    def has_run(self) -> bool:
        """Whether a run record exists (it may still be damaged: :meth:`read_record` says)."""
        return (self.path / RUN_RECORD).is_file()

    def is_finished(self) -> bool:
        """Whether the folder holds a readable audit (its record, scores and map; the rest is optional)."""
        try:
            files = self.run_files()
            return files["scores"].is_file() and files["map"].is_file()
        except OgauditError:
            return False

    def read_record(self) -> dict:
        """``run.json``, migrated to the current format (``run_dir`` says where the tables are)."""
        path = self.path / RUN_RECORD
        record = _read_versioned(path, what="the run record", fix="Scan the data again into a new project.")
        if record["format"] == 1:
            record = {**record, "format": RUN_FORMAT, "run_dir": "."}
        missing = [key for key, kind in _REQUIRED_RECORD.items() if not isinstance(record.get(key), kind)]
        missing += [f"dataset.{key}" for key in _REQUIRED_DATASET if key not in record.get("dataset", {})]
        if missing:
            raise DataError(f"{str(path)!r} is damaged: it lacks {', '.join(missing)}. Scan the data again.")
        return record

    def settings(self) -> AuditSettings:
        """The settings the run used (checked as when they were given)."""
        return AuditSettings.from_dict(self.read_record()["settings"], source=str(self.path / RUN_RECORD))

    def run_files(self) -> dict[str, Path]:
        """Where the current run's tables are; raises :class:`DataError` if there is no complete run."""
        if not self.has_run():
            raise DataError(f"{str(self.path)!r} holds no finished audit (no {RUN_RECORD}). Run the audit first.")
        record = self.read_record()
        folder = (self.path / record["run_dir"]).resolve()
        if not folder.is_relative_to(self.path.resolve()):
            raise DataError(f"{str(self.path / RUN_RECORD)!r} is damaged: its run_dir leaves the project folder.")
        return {name: folder / file for name, file in RUN_TABLES.items()}

    def open_run(self) -> Run:
        """Read the finished audit: the record and one table of scores and map coordinates."""
        files = self.run_files()
        record = self.read_record()
        missing = [files[name].name for name in ("scores", "map") if not files[name].is_file()]
        if missing:
            raise DataError(
                f"{str(self.path)!r} holds no finished audit (missing {', '.join(missing)}). Run the audit again."
            )
        table = _read_table_copy(files["scores"], files["map"], files["scores"].parent / TABLE_COPY)
        if table is not None:
            return Run(self.path, record, table)
        scores = _read_table(files["scores"])
        coords = _read_table(files["map"])
        if not scores["sample_id"].equals(coords["sample_id"]):
            raise DataError(f"{str(self.path)!r}: scores.csv and map.csv list different samples. Run the audit again.")
        table = pd.concat([coords[["sample_id", "x", "y"]], scores.drop(columns="sample_id")], axis=1)
        table["flagged"] = _as_bool(table["flagged"])
        for column in ("is_noisy", "rare_class"):
            if column in table:
                table[column] = _as_bool(table[column])
        return Run(self.path, record, table)

    def flagged_ids(self) -> list[str]:
        """The run's flagged sample ids, most suspicious first."""
        return self.open_run().flagged_ids

    def read_head_evidence(self) -> dict[str, np.ndarray] | None:
        """The run's ``features`` (N, d + 1), ``probs`` (N, C) and ``labels`` (N,), or None when it has none."""
        path = self.run_files()["head_evidence"]
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as saved:
                arrays = {name: saved[name] for name in ("features", "probs", "labels")}
        except (OSError, ValueError, KeyError) as error:
            raise DataError(f"{str(path)!r} is damaged and cannot be read ({error}). Run the audit again.") from error
        return arrays

    def read_label_evidence(self, run: Run | None = None) -> pd.DataFrame | None:
        """The per-class counterfactual scores, (N, C) floats indexed like the run's table with the class names as
        columns, or None when the run has none. Refused when its samples or classes are not the run's."""
        run = run or self.open_run()
        path = self.run_files()["label_evidence"]
        if not path.is_file():
            return None
        frame = _read_table(path)
        if not frame["sample_id"].equals(run.table["sample_id"]) or list(frame.columns[1:]) != run.class_names:
            raise DataError(f"{str(path)!r} does not match the run's samples and classes. Run the audit again.")
        try:
            return frame[run.class_names].astype(np.float64)
        except ValueError as error:
            raise DataError(f"{str(path)!r} is damaged ({error}). Run the audit again.") from error

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

    def _read_neighbours(self, n: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The detector's gradient neighbours of the open run, or None when it kept none (an older run, a detector
        without a search) or the file does not fit its ``n`` samples (then the evidence searches as before)."""
        path = self.run_files().get("neighbours")
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as saved:
                found, cosines = saved["neighbours"].astype(np.int64), saved["cosines"].astype(np.float32)
        except (OSError, ValueError, KeyError):
            return None
        if (
            found.ndim != 2
            or found.shape != cosines.shape
            or len(found) != n
            or (found.size and not (found.min() >= 0 and found.max() < n))
        ):
            return None
        return found, cosines

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
        saved = _read_versioned(path, what="the audit request", fix="Start a new audit.")
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
        saved = _read_versioned(path, what="the verification", fix="Run the retrain check again.")
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


# ---------------------------------------------------------------- files


def _read_versioned(path: Path, *, what: str, fix: str) -> dict:
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{str(path)!r} does not exist. {fix}") from None
    except (OSError, ValueError) as error:
        raise DataError(f"{str(path)!r} ({what}) is damaged and cannot be read ({error}). {fix}") from error
    if not isinstance(saved, dict):
        raise DataError(f"{str(path)!r} ({what}) is damaged: it is not a JSON object. {fix}")
    version = saved.get("format", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DataError(f"{str(path)!r} ({what}) is damaged: format {version!r} is not a version number. {fix}")
    if version > RUN_FORMAT:
        raise DataError(
            f"{str(path)!r} ({what}) was written by a newer ogaudit (format {version}; this one reads up to "
            f"{RUN_FORMAT}). Upgrade ogaudit to open it."
        )
    return {**saved, "format": version}


def _write_table(frame: pd.DataFrame, path: Path) -> None:
    """CSV with formula-looking text cells and headers escaped (:func:`~ogaudit.storage.write_csv`)."""
    write_csv(frame, path)


def _read_table(path: Path) -> pd.DataFrame:
    """A table written by :func:`_write_table`: ids and labels as strings (``NA`` stays ``"NA"``)."""
    try:
        header = pd.read_csv(path, nrows=0).columns
        numeric = ("x", "y", "score", "rank", "confidence")
        text = {c: str for c in header if c not in numeric}
        frame = read_csv(path, dtype=text, keep_default_na=False, na_values={"score": [""], "confidence": [""]})
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise DataError(f"{str(path)!r} is damaged and cannot be read ({error}). Run the audit again.") from error
    if "sample_id" not in frame:
        raise DataError(f"{str(path)!r} is damaged: it has no sample_id column. Run the audit again.")
    return frame


def _csv_stamp(*paths: Path) -> str:
    """Size and modification time of each file: a changed CSV no longer matches its binary copy."""
    return json.dumps([[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in paths])


def _write_table_copy(scores: pd.DataFrame, map_frame: pd.DataFrame, scores_csv: Path, map_csv: Path, path: Path):
    """The run's table (as :meth:`Project.open_run` returns it) as Parquet beside its CSVs, stamped with theirs.

    A derived copy for speed: reading two CSVs of 10⁶ rows takes ~10-20 s, this file ~1 s. The CSVs stay the
    record a person or a spreadsheet reads; when they change (or the copy is missing or unreadable) they are read.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pd.concat([map_frame[["sample_id", "x", "y"]], scores.drop(columns="sample_id")], axis=1)
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    arrow = arrow.replace_schema_metadata(
        {**(arrow.schema.metadata or {}), b"ogaudit-csv": _csv_stamp(scores_csv, map_csv)}
    )
    with atomic_path(path) as tmp:
        pq.write_table(arrow, tmp)


def _read_table_copy(scores_csv: Path, map_csv: Path, path: Path) -> pd.DataFrame | None:
    """The Parquet copy of the run's table, or None when it is missing, unreadable or older than the CSVs."""
    if not path.is_file():
        return None
    try:
        import pyarrow.parquet as pq

        arrow = pq.read_table(path)
        if (arrow.schema.metadata or {}).get(b"ogaudit-csv", b"").decode() != _csv_stamp(scores_csv, map_csv):
            return None
        table = arrow.to_pandas()
    except Exception:  # noqa: BLE001 - a derived copy: any failure means reading the CSVs instead
        return None
    if not {"sample_id", "x", "y", "flagged"} <= set(table.columns) or table["flagged"].dtype != bool:
        return None
    return table


def _as_bool(column: pd.Series) -> pd.Series:
    return column.astype(str).str.strip().str.lower().isin(("true", "1"))


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or "/" in spec or Path(spec).suffix != ""


__all__ = [
    "Project",
    "ProjectInfo",
    "Request",
    "Run",
    "list_projects",
    "prepare_dataset",
    "slugify",
    "workspace_root",
]
