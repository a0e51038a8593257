"""Project folders and finished runs on disk, opened again in seconds without retraining.

A workspace (``$OGAUDIT_HOME``, default ``./ogaudit-projects``) holds one folder per audit: ``request.json``
(what was asked), ``job-audit.json`` (how the job went), the audit's files (``scores.csv``, ``map.csv``,
``run.json`` ...), ``ledger.sqlite`` (the review) and, after a verification, ``verify.json``. :func:`open_run`
reads the tables and the record; :func:`load_run_dataset` rebuilds the exact data (same subset, same planted
noise) for thumbnails and exports.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ogaudit.data import Dataset
from ogaudit.errors import DataError
from ogaudit.review.ledger import LEDGER_FILENAME, Ledger
from ogaudit.storage import read_json, write_json

HOME_ENV = "OGAUDIT_HOME"
DEFAULT_HOME = "ogaudit-projects"
REQUEST_FILE = "request.json"
VERIFY_FILE = "verify.json"
RUN_FILES = ("run.json", "scores.csv", "map.csv")


def workspace_root() -> Path:
    """``$OGAUDIT_HOME`` or ``./ogaudit-projects``: where project folders live."""
    return Path(os.environ.get(HOME_ENV, DEFAULT_HOME)).expanduser().absolute()


def slugify(text: str) -> str:
    """A folder-safe name: letters, digits, ``.``, ``_`` and ``-``; at most 60 characters."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:60]
    return slug or "project"


def new_project(root: str | Path, name: str) -> Path:
    """Create a new empty project folder named after ``name`` (``-2``, ``-3`` ... when taken); return it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    base = slugify(name)
    for number in range(1, 10_000):
        path = root / (base if number == 1 else f"{base}-{number}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise DataError(f"Too many projects named {base!r} in {str(root)!r}; choose another name.")


def is_finished(project: str | Path) -> bool:
    """Whether ``project`` holds a complete audit (its run files are written last, atomically)."""
    return all((Path(project) / name).exists() for name in RUN_FILES)


@dataclass(frozen=True)
class ProjectInfo:
    """A project folder as the project list shows it."""

    name: str
    path: Path
    finished: bool
    data: str | None
    modified: float


def list_projects(root: str | Path) -> list[ProjectInfo]:
    """Project folders under ``root``, most recently changed first (none when ``root`` does not exist)."""
    root = Path(root)
    if not root.is_dir():
        return []
    projects = []
    for path in root.iterdir():
        if not path.is_dir() or path.name.startswith("."):
            continue
        request = read_request(path)
        times = [p.stat().st_mtime for p in path.iterdir() if p.suffix in (".json", ".csv")] or [path.stat().st_mtime]
        projects.append(
            ProjectInfo(path.name, path, is_finished(path), None if request is None else request[0], max(times))
        )
    return sorted(projects, key=lambda p: p.modified, reverse=True)


def write_request(project: str | Path, data: str, settings) -> None:
    """Save what an audit was asked to do (data spec and :class:`~ogaudit.pipeline.AuditSettings`)."""
    write_json(Path(project) / REQUEST_FILE, {"data": str(data), "settings": asdict(settings)})


def read_request(project: str | Path) -> tuple[str, dict] | None:
    """``(data spec, settings dict)`` of the audit asked for in ``project``, or None."""
    path = Path(project) / REQUEST_FILE
    if not path.exists():
        return None
    saved = read_json(path)
    return saved["data"], saved["settings"]


@dataclass
class Run:
    """A finished audit read back from its folder.

    table : one row per sample, in the dataset's order: sample_id, x, y (map), given_label, predicted_label,
        suggested_label, score (higher = more suspicious), rank (1 = most suspicious), flagged, confidence
        (+ true_label, is_noisy with planted noise).
    record : ``run.json``.
    """

    path: Path
    record: dict
    table: pd.DataFrame

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def class_names(self) -> list[str]:
        return list(self.record["dataset"]["class_names"])

    @property
    def fingerprint(self) -> str:
        """The run's fingerprint (model and settings); changes when the folder is audited again."""
        return self.record["fingerprint"]

    @cached_property
    def flagged_ids(self) -> list[str]:
        """Flagged sample ids, most suspicious first."""
        flagged = self.table[self.table["flagged"]]
        return flagged.sort_values("rank")["sample_id"].tolist()

    @cached_property
    def by_id(self) -> pd.DataFrame:
        """``table`` indexed by sample id."""
        return self.table.set_index("sample_id", drop=False)

    @cached_property
    def position(self) -> dict[str, int]:
        """Sample id -> row in the dataset."""
        return {sample_id: i for i, sample_id in enumerate(self.table["sample_id"])}

    def describe(self) -> str:
        dataset, settings = self.record["dataset"], self.record["settings"]
        noise = f", {settings['noise_rate']:.0%} planted noise" if settings.get("noise_rate") else ""
        return (
            f"{dataset['spec']}: {dataset['samples']:,} samples, {len(self.class_names)} classes{noise}; "
            f"model {self.record['model']['kind']}, detector {settings['detector']}, "
            f"{self.record['flagged']:,} flagged"
        )


def open_run(project: str | Path) -> Run:
    """Read a finished audit's ``run.json``, ``scores.csv`` and ``map.csv`` from ``project``."""
    project = Path(project).absolute()
    missing = [name for name in RUN_FILES if not (project / name).exists()]
    if missing:
        raise DataError(f"{str(project)!r} holds no finished audit (missing {', '.join(missing)}). Run the audit.")
    record = read_json(project / "run.json")
    scores = pd.read_csv(project / "scores.csv", dtype={"sample_id": str})
    coords = pd.read_csv(project / "map.csv", dtype={"sample_id": str})
    if not scores["sample_id"].equals(coords["sample_id"]):
        raise DataError(f"{str(project)!r}: scores.csv and map.csv list different samples. Run the audit again.")
    for column in ("given_label", "predicted_label", "suggested_label"):
        scores[column] = scores[column].astype(str)
    table = pd.concat([coords[["sample_id", "x", "y"]], scores.drop(columns="sample_id")], axis=1)
    table["flagged"] = table["flagged"].astype(bool)
    return Run(project, record, table)


def open_ledger(run: Run) -> Ledger:
    """The run's review ledger (``PROJECT/ledger.sqlite``), tied to the audited data's fingerprint.

    Opened from the run's own tables, so the data need not be loaded to review.
    """
    return Ledger.open(
        run.path / LEDGER_FILENAME,
        dataset_fingerprint=run.record["dataset"]["fingerprint"],
        sample_ids=run.table["sample_id"].tolist(),
        given_labels=run.table["given_label"].tolist(),
        class_names=run.class_names,
    )


def load_run_dataset(run: Run) -> Dataset:
    """The exact data the run audited (same subset, same planted noise); refused if the files changed since."""
    from ogaudit.pipeline import load_run_dataset as rebuild

    return rebuild(run.record)


def thumbnail(dataset: Dataset, index: int, size: int = 160) -> np.ndarray | None:
    """Sample ``index`` as an image array whose longer side is ``size`` pixels, or None for feature vectors.

    Small images (8×8 digits, 28×28 MNIST) are enlarged with nearest-neighbour so their pixels stay crisp.
    """
    if not dataset.is_image:
        return None
    pixels = dataset.x[index]
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    scale = size / max(image.size)
    if scale != 1:
        resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BILINEAR
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), resample)
    return np.asarray(image)


def write_verify_report(project: str | Path, report, *, decided: int) -> None:
    """Save a :class:`~ogaudit.review.verify.VerifyReport` as ``verify.json``, with how many decisions it used."""
    payload = {**report.to_dict(), "decided": decided, "text": report.describe(), "at": time.time()}
    write_json(Path(project) / VERIFY_FILE, payload)


def read_verify_report(project: str | Path) -> dict | None:
    """The last verification of ``project`` (``verify.json``), or None."""
    path = Path(project) / VERIFY_FILE
    return read_json(path) if path.exists() else None
