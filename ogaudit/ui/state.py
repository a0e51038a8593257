"""What the app keeps between reruns and across sessions: resources cached per server process.

Everything here is keyed by what it was built from (a folder, a fingerprint, a colouring), so a run that is
audited again gets fresh objects, and a cached object is never mutated after it is built: every session shares
it. The job registry is the one shared mutable object, and it is thread-safe; it is not cached here but lives in
:func:`ogaudit.server.state.server_state` (one per process), so no ``clear_cache`` message can make the server forget
its running jobs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from ogaudit.data.dataset import Dataset
from ogaudit.map.density import MARKER_LIMIT
from ogaudit.project import Project
from ogaudit.results import Run
from ogaudit.review.duplicates import duplicate_inputs, find_duplicates
from ogaudit.review.evidence import RunEvidence
from ogaudit.review.ledger import Ledger
from ogaudit.review.thumbnails import hover_rows
from ogaudit.review.thumbnails import hover_thumbnails as _thumbnails_of
from ogaudit.server.jobs import JobRegistry
from ogaudit.server.state import server_state
from ogaudit.ui.config import map_points_limit
from ogaudit.ui.figure import map_figure


def job_registry() -> JobRegistry:
    """The live jobs of this server, shared by every browser session (a refreshed page finds its job here); held by
    the process's :class:`~ogaudit.server.state.ServerState`, outside every cache."""
    return server_state().jobs


@st.cache_resource(max_entries=8, show_spinner="Opening the run…")
def _open_run(path: str, fingerprint: str) -> Run:
    return Project(path).open_run()


def open_run(project: Project) -> Run:
    """The finished run in ``project``, read from disk once per run (its record's fingerprint and time)."""
    record = project.read_record()
    return _open_run(str(project.path), f"{record['fingerprint']}-{record.get('created_at')}-{record['run_dir']}")


@st.cache_resource(max_entries=8)
def _open_ledger(path: str, fingerprint: str, _run: Run) -> Ledger:
    return Project(path).open_ledger(run=_run)


def open_ledger(run: Run) -> Ledger:
    """The run's ledger. The object holds no connection, so sharing it is safe; its state is read per call."""
    return _open_ledger(str(run.path), run.fingerprint, run)


@st.cache_resource(max_entries=4, show_spinner="Loading the images…")
def _load_dataset(path: str, fingerprint: str) -> Dataset:
    return Project(path).load_dataset()


def load_dataset(run: Run) -> Dataset:
    """The audited data (for thumbnails and exports), loaded once per run."""
    return _load_dataset(str(run.path), run.fingerprint)


@st.cache_resource(max_entries=16, show_spinner="Drawing the map…")
def _figure(
    path: str, fingerprint: str, colour: str, decisions_key: str, density_above: int, _run, _decisions
) -> go.Figure:
    return map_figure(_with_text_snippets(_run), colour, _decisions, density_above=density_above)


def _with_text_snippets(run: Run) -> pd.DataFrame:
    """The run's table, plus a ``snippet`` column (the start of each text, as shown) for text data's map hover."""
    if not run.record.get("dataset", {}).get("text"):
        return run.table
    from ogaudit.errors import OgauditError
    from ogaudit.review.texts import hover_snippets

    try:
        dataset = load_dataset(run)
    except OgauditError:
        return run.table
    return run.table.assign(snippet=hover_snippets(dataset))


def figure(run: Run, colour: str, decisions: pd.DataFrame) -> go.Figure:
    """The gradient map, built once per run and colouring: the same object on every rerun keeps the
    selection and zoom. Only ``colour="decision"`` depends on the decisions, so only it is rebuilt by one."""
    key = ""
    if colour == "decision":
        key = str(pd.util.hash_pandas_object(decisions[["sample_id", "action"]], index=False).sum())
    return _figure(str(run.path), run.fingerprint, colour, key, map_points_limit(), run, decisions)


@st.cache_resource(max_entries=4, show_spinner=False)
def _hover_thumbnails(path: str, fingerprint: str, density: bool, _run: Run, _dataset: Dataset) -> dict[str, str]:
    table = _run.table
    rows = hover_rows(table["rank"].to_numpy(), table["flagged"].to_numpy(dtype=bool), others=not density)
    if density:  # only the flagged samples drawn as points can be hovered
        rows = rows[:MARKER_LIMIT]
    position = _run.position
    ids = table["sample_id"].to_numpy(dtype=str)[rows]
    return _thumbnails_of(_dataset, np.fromiter((position[i] for i in ids), dtype=np.int64, count=len(ids)))


def hover_thumbnails(run: Run, dataset: Dataset, density: bool) -> dict[str, str]:
    """``{sample_id: data URI}``: the map's hover pictures (:func:`~ogaudit.review.thumbnails.hover_thumbnails`),
    made once per run: the flagged samples by rank, then (not on a ``density`` map, which draws only flagged
    samples as points) a sample of the rest, within the byte budget."""
    return _hover_thumbnails(str(run.path), run.fingerprint, density, run, dataset)


@st.cache_resource(max_entries=4, show_spinner="Reading the evidence…")
def _open_evidence(path: str, fingerprint: str, _run: Run) -> RunEvidence | None:
    return Project(path).open_evidence(_run)


def open_evidence(run: Run) -> RunEvidence | None:
    """Why each sample is flagged (read once per run), or None for a run without head evidence."""
    return _open_evidence(str(run.path), f"{run.fingerprint}-{run.record.get('run_dir')}", run)


NEAR_DUPLICATE_LIMIT = 20_000
"""Above this many samples only exact duplicates are searched: the near search is an N × N product."""


@st.cache_resource(max_entries=4, show_spinner="Looking for duplicates…")
def _duplicates(path: str, fingerprint: str, _run: Run, _dataset: Dataset) -> pd.DataFrame:
    x, near = duplicate_inputs(_dataset, near_limit=NEAR_DUPLICATE_LIMIT)
    return find_duplicates(_run.table["sample_id"], _run.table["given_label"], x=x, directions=near)


def duplicates(run: Run, dataset: Dataset | None) -> pd.DataFrame:
    """The run's duplicate groups (:func:`~ogaudit.review.duplicates.find_duplicates`), found once per run."""
    if dataset is None:
        return pd.DataFrame(columns=["group", "kind", "sample_id", "given_label", "conflict", "size"])
    return _duplicates(str(run.path), run.fingerprint, run, dataset)
