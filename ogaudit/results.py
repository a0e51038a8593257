"""What a run wrote: the run record and tables of one audit, read back as a read-only :class:`Run`.

The only module that knows the run's file names. A project folder (:mod:`ogaudit.project`) holds one current run::

    run.json            the run record: settings, fingerprints, timings, metrics; names the run folder
    scores.csv ...      the latest run's tables (copies; the .npz hard links), for scripts
    runs/<run-id>/      scores.csv, map.csv, label_evidence.csv, head_evidence.npz, neighbours.npz, table.parquet

A run is written into a new ``runs/<run-id>/`` folder and ``run.json`` is replaced last, in one rename: a reader
sees the old run or the new one, never a mixture, and a failed re-scan leaves the old run in force. Then the
tables beside ``run.json`` are switched to the new run's, each in one rename (a script reads ``OUT/scores.csv``
without looking up the run), and all but the last :data:`KEEP_RUNS` run folders are removed (the history). Format 1 (the
first release) kept the run files beside ``run.json``; such runs are read as they are. Every JSON file carries
``"format"``; a newer or damaged one is refused with an error naming the file.

The pipeline writes runs through :class:`RunFolder`; review, the project, the server and the app read them as
:class:`Run`. No torch is imported here.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ogaudit.data.dataset import whole_number_names
from ogaudit.errors import DataError, OgauditError
from ogaudit.settings import AuditSettings
from ogaudit.storage import atomic_path, ensure_writable_dir, read_csv, write_csv, write_json

RUN_FORMAT = 2
"""Format of ``run.json``, ``request.json`` and ``verify.json``. 1: the first release (no ``format`` key)."""
RUN_RECORD = "run.json"
RUNS = "runs"
TABLE_COPY = "table.parquet"
"""A binary copy of the run's scores and map (see :func:`_write_table_copy`), beside the CSVs in the run folder."""
RUN_TABLES = {
    "scores": "scores.csv",
    "map": "map.csv",
    "label_evidence": "label_evidence.csv",
    "head_evidence": "head_evidence.npz",
    "neighbours": "neighbours.npz",
    "llm": "llm.npz",
}
KEEP_RUNS = 5
"""How many run folders a project keeps under ``runs/``: the current run and the four before it."""
LLM_ARRAYS = ("train_gradients", "test_gradients", "test_labels", "test_ids", "test_prompts", "test_responses")
"""Arrays of an instruction audit's ``llm.npz`` (:meth:`RunFolder.read_llm`), besides the adapters ``lora/<name>``."""
_REQUIRED_RECORD = {"settings": dict, "dataset": dict, "model": dict, "fingerprint": str}
_REQUIRED_DATASET = ("spec", "fingerprint", "class_names", "samples")


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
    def integer_labels(self) -> bool:
        """Whether the run's labels leave the library as integers (:attr:`Dataset.integer_labels
        <ogaudit.data.dataset.Dataset.integer_labels>`, recorded as ``dataset.label_type``). A run written before
        the record said so keeps what its exports gave then: integers when every class name is a whole number."""
        return record_integer_labels(self.record)

    @property
    def fingerprint(self) -> str:
        """The run's fingerprint (model and settings); changes when the folder is audited again."""
        return self.record["fingerprint"]

    @property
    def detector_state(self) -> dict:
        """What the run's detector read from the data (``run.json``'s ``detector_state``,
        :func:`~ogaudit.detectors.outliers.detector_state`: ``posterior-auto``'s ``concentration`` ``κ``,
        ``ratio_weight`` ``w`` and ``ramp``); {} for other detectors and for runs recorded before it was kept."""
        state = self.record.get("detector_state")
        return dict(state) if isinstance(state, dict) else {}

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

    def describe(self, *, full_paths: bool = True) -> str:
        """One line: the data, its size, the model, the detector and the flags. With ``full_paths=False`` a data
        path is shown by its last part only (what a reviewer without access to the server's files sees)."""
        dataset, settings = self.record["dataset"], self.record["settings"]
        noise = f", {settings['noise_rate']:.0%} planted noise" if settings.get("noise_rate") else ""
        spec = str(dataset["spec"])
        if not full_paths and ("/" in spec or "\\" in spec):
            spec = Path(spec.replace("\\", "/")).name or spec
        return (
            f"{spec}: {dataset['samples']:,} samples, {len(self.class_names)} classes{noise}; "
            f"model {self.record['model']['kind']}, detector {settings['detector']}, "
            f"{self.record.get('flagged', int(self.table['flagged'].sum())):,} flagged"
        )


def record_integer_labels(record: dict) -> bool:
    """Whether a run record's labels leave the library as integers: its ``dataset.label_type`` (``"integer"`` or
    ``"text"``); for a record written before it, what the exports gave then (every class name a whole number)."""
    label_type = record["dataset"].get("label_type")
    if label_type is None:
        return whole_number_names([str(name) for name in record["dataset"]["class_names"]])
    return label_type == "integer"


class RunFolder:
    """The folder ``path`` that holds (or will hold) a run: ``run.json`` and ``runs/<run-id>/``.

    Raises :class:`~ogaudit.errors.DataError` naming the file for anything missing, damaged or written by a newer
    ogaudit.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser().absolute()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def __fspath__(self) -> str:
        """The folder's path: a run folder or project goes wherever a path does (``Path(project)``, ``open``)."""
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    def writable(self) -> RunFolder:
        """Create the folder if needed and prove it takes a file (a long run then fails at its start)."""
        ensure_writable_dir(self.path)
        return self

    def owns(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` is one of this folder's own files (``run.json``, anything under ``runs/``, a format-1
        run's tables), which no export may replace."""
        path = Path(path).expanduser().absolute().resolve()
        root = self.path.resolve()
        own = {root / RUN_RECORD, root / TABLE_COPY, *(root / name for name in RUN_TABLES.values())}
        return path in own or path.is_relative_to(root / RUNS)

    def review_notice(self, dataset_fingerprint: str) -> str | None:
        """What to say before a run of data ``dataset_fingerprint`` replaces this folder's run; None here (a
        :class:`~ogaudit.project.Project` warns when its review was made for other data)."""
        return None

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
        llm: dict[str, np.ndarray] | None = None,
    ) -> dict[str, Path]:
        """Write a run's tables into a new run folder, then switch ``run.json`` to it; return the file paths.

        ``scores`` and ``map_frame`` as in :class:`~ogaudit.pipeline.run.AuditResult`; ``record`` the run record
        (``format``, ``run_dir`` and ``files`` are added, and ``record`` is updated in place); ``label_evidence``
        one row per sample (sample_id, then a column per class); ``head_evidence`` arrays (features, probs,
        labels) from which every last-layer gradient can be rebuilt; ``neighbours`` the detector's gradient
        neighbours ``(positions (N, k), cosines (N, k))``, which the review's evidence reads instead of searching.

        Earlier run folders are removed only after the switch, so a failure (full disk) leaves the previous run
        whole and in force. Text cells a spreadsheet would run as a formula are escaped (see
        :func:`~ogaudit.storage.escape_cell`); :meth:`open_run` undoes it.
        """
        self.writable()
        now = time.time()  # ids sort by time, to the microsecond: the history keeps the newest runs
        run_id = (
            time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f"-{int(now % 1 * 1e6):06d}-{uuid.uuid4().hex[:6]}"
        )
        folder = self.path / RUNS / run_id
        folder.mkdir(parents=True)
        paths = {name: folder / file for name, file in RUN_TABLES.items()}
        if label_evidence is None:
            del paths["label_evidence"]
        if head_evidence is None:
            del paths["head_evidence"]
        if neighbours is None:
            del paths["neighbours"]
        if llm is None:
            del paths["llm"]
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
            if llm is not None:
                with atomic_path(paths["llm"]) as tmp, open(tmp, "wb") as handle:
                    np.savez(handle, **llm)
            _write_table_copy(scores, map_frame, paths["scores"], paths["map"], folder / TABLE_COPY)
            record.update(
                format=RUN_FORMAT, run_dir=f"{RUNS}/{run_id}", files={name: p.name for name, p in paths.items()}
            )
            write_json(self.path / RUN_RECORD, record)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self._link_latest(paths)
        self._remove_old_runs(keep=run_id)
        return {**paths, "run": self.path / RUN_RECORD}

    def latest_files(self) -> dict[str, Path]:
        """The current run's tables beside ``run.json`` (``OUT/scores.csv`` ...), those that exist."""
        files = {name: self.path / file for name, file in RUN_TABLES.items()}
        return {name: path for name, path in files.items() if path.is_file()}

    def _link_latest(self, paths: dict[str, Path]) -> None:
        """Make the tables beside ``run.json`` the current run's (``paths``), each renamed over the old one, so a
        reader of ``OUT/scores.csv`` gets one whole file. CSVs are copies (a spreadsheet or script that saves over
        ``OUT/scores.csv`` leaves the run's own table alone); the ``.npz`` arrays are hard links (copies where
        links are refused). A table this run did not write, or one that cannot be written (a full disk), is
        removed: never an older run's under the latest name (the run itself is in force either way)."""
        for name, file in RUN_TABLES.items():
            top = self.path / file
            tmp = self.path / f".{file}.{uuid.uuid4().hex[:6]}.part"
            try:
                if name not in paths:
                    top.unlink(missing_ok=True)
                    continue
                if file.endswith(".npz"):
                    try:
                        os.link(paths[name], tmp)
                    except OSError:
                        shutil.copyfile(paths[name], tmp)
                else:
                    shutil.copyfile(paths[name], tmp)
                os.replace(tmp, top)
            except OSError:
                tmp.unlink(missing_ok=True)
                top.unlink(missing_ok=True)

    def _remove_old_runs(self, keep: str) -> None:
        """Remove the run folders beyond the :data:`KEEP_RUNS` newest (``keep``, the current one, always stays)."""
        folders = sorted((p for p in (self.path / RUNS).iterdir() if p.is_dir() and p.name != keep), reverse=True)
        for old in folders[KEEP_RUNS - 1 :]:
            shutil.rmtree(old, ignore_errors=True)

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
        record = read_versioned(path, what="the run record", fix="Scan the data again into a new project.")
        if record["format"] == 1:
            record = {**record, "format": RUN_FORMAT, "run_dir": "."}
        missing = [key for key, kind in _REQUIRED_RECORD.items() if not isinstance(record.get(key), kind)]
        missing += [f"dataset.{key}" for key in _REQUIRED_DATASET if key not in record.get("dataset", {})]
        if missing:
            raise DataError(f"{str(path)!r} is damaged: it lacks {', '.join(missing)}. Scan the data again.")
        names, samples = record["dataset"]["class_names"], record["dataset"]["samples"]
        mistyped = [
            what
            for what, wrong in (
                (
                    "dataset.class_names (a list of names)",
                    not isinstance(names, list)
                    or not all(isinstance(n, str | int) and not isinstance(n, bool) for n in names),
                ),
                ("dataset.samples (a count)", not isinstance(samples, int) or isinstance(samples, bool)),
                ("run_dir (a folder name)", not isinstance(record.get("run_dir"), str)),
            )
            if wrong
        ]
        if mistyped:
            raise DataError(
                f"{str(path)!r} is damaged: it has the wrong type of {', '.join(mistyped)}. Scan the data again."
            )
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
            return Run(self.path, record, _checked_numbers(table, files["scores"]))
        scores = _read_table(files["scores"])
        coords = _read_table(files["map"])
        if not scores["sample_id"].equals(coords["sample_id"]):
            raise DataError(f"{str(self.path)!r}: scores.csv and map.csv list different samples. Run the audit again.")
        table = pd.concat([coords[["sample_id", "x", "y"]], scores.drop(columns="sample_id")], axis=1)
        table["flagged"] = _as_bool(table["flagged"])
        for column in ("is_noisy", "rare_class", "ambiguous"):
            if column in table:
                table[column] = _as_bool(table[column])
        return Run(self.path, record, _checked_numbers(table, files["scores"]))

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

    def read_llm(self) -> dict[str, np.ndarray] | None:
        """An instruction audit's arrays (:data:`LLM_ARRAYS`, and ``lora/<name>`` adapter weights), or None."""
        path = self.run_files()["llm"]
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as saved:
                return {name: saved[name] for name in saved.files}
        except (OSError, ValueError) as error:
            raise DataError(f"{str(path)!r} is damaged and cannot be read ({error}). Run the audit again.") from error

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


# ---------------------------------------------------------------- files


def read_versioned(path: Path, *, what: str, fix: str) -> dict:
    """A JSON object file of this package with a ``format`` number: read, checked, or refused with a
    :class:`DataError` naming ``path``, ``what`` it holds and the ``fix``."""
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
        blank = ("score", "confidence", "p_wrong", "p_wrong_low", "p_wrong_high", "flag_stability", "flag_stability_of")
        numeric = ("x", "y", "rank", *blank)
        text = {c: str for c in header if c not in numeric}
        missing = {c: [""] for c in blank}
        frame = read_csv(path, dtype=text, keep_default_na=False, na_values=missing)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise DataError(f"{str(path)!r} is damaged and cannot be read ({error}). Run the audit again.") from error
    if "sample_id" not in frame:
        raise DataError(f"{str(path)!r} is damaged: it has no sample_id column. Run the audit again.")
    return frame


NUMBER_COLUMNS = ("x", "y", "score", "rank")
"""A run table's numbers that the review cannot do without: text or an infinity there is damage (refused)."""
PROBABILITY_COLUMNS = ("confidence", "p_wrong", "p_wrong_low", "p_wrong_high", "flag_stability")
"""A run table's probabilities (optional evidence): a value that is not a number in [0, 1] is read as missing."""


def _checked_numbers(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The run's table with its numbers checked, since ``scores.csv`` is a file people open, edit and save back.

    :data:`NUMBER_COLUMNS` must be numbers (empty allowed, except ``rank``) and finite, else :class:`DataError`
    naming the column, the sample and the fix; :data:`PROBABILITY_COLUMNS` become float64 with anything outside
    [0, 1] (text, an infinity, -0.5, 7) missing, and an interval bound on the wrong side of its ``p_wrong``
    missing too, so no card shows an impossible probability (the estimate falls back where values are missing).
    """
    table = table.copy()
    for column in NUMBER_COLUMNS:
        if column not in table:
            continue
        raw = table[column]
        values = pd.to_numeric(raw, errors="coerce").astype(np.float64)
        given = raw.notna().to_numpy() & (raw.astype(str).str.strip() != "").to_numpy()
        bad = np.isinf(values.to_numpy()) | (values.isna().to_numpy() & (given | (column == "rank")))
        if column == "rank":
            bad |= values.to_numpy() % 1 != 0
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            shown = str(raw.iat[row])
            shown = shown if len(shown) <= 40 else f"{shown[:40]}…"
            raise DataError(
                f"{str(path)!r} is damaged: {column} of sample {str(table['sample_id'].iat[row])[:80]!r} is "
                f"{shown!r}, not a {'whole ' if column == 'rank' else ''}number (an edit saved back?). "
                "Run the audit again."
            )
        table[column] = values.astype(np.int64) if column == "rank" else values
    for column in PROBABILITY_COLUMNS:
        if column in table:
            values = pd.to_numeric(table[column], errors="coerce").astype(np.float64)
            table[column] = values.where((values >= 0) & (values <= 1))
    if {"p_wrong", "p_wrong_low", "p_wrong_high"} <= set(table.columns):
        p = table["p_wrong"]
        table["p_wrong_low"] = table["p_wrong_low"].where(table["p_wrong_low"] <= p)
        table["p_wrong_high"] = table["p_wrong_high"].where(table["p_wrong_high"] >= p)
    return table


def _csv_stamp(*paths: Path) -> str:
    """Size and modification time of each file: a changed CSV no longer matches its binary copy."""
    return json.dumps([[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in paths])


def _write_table_copy(scores: pd.DataFrame, map_frame: pd.DataFrame, scores_csv: Path, map_csv: Path, path: Path):
    """The run's table (as :meth:`RunFolder.open_run` returns it) as Parquet beside its CSVs, stamped with theirs.

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
