"""Background jobs on the page: a polling progress bar with ETA and cancel, and what to do when one failed.

The job's thread never calls streamlit; the fragment below reads its snapshot every second and reruns the
whole page once the job has ended, so the result appears without a click.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ogaudit.cache.artifacts import default_cache_dir
from ogaudit.errors import OgauditError
from ogaudit.project import Project, workspace_root
from ogaudit.server.jobs import JobSnapshot, submit_audit
from ogaudit.ui import state
from ogaudit.ui.common import flash, format_seconds
from ogaudit.ui.text import code, md, readable


def run_key(project: Path | None) -> str | None:
    """Which run the project folder holds now (its record's fingerprint, time and folder), or None for none: a
    change means a first look or a full run was just written."""
    if project is None:
        return None
    try:
        record = Project(project).read_record()
    except OgauditError:
        return None
    return f"{record.get('fingerprint')}-{record.get('created_at')}-{record.get('run_dir')}"


@st.fragment(run_every=1.0)
def job_progress(
    job_id: str, title: str, can_cancel: bool = True, project: Path | None = None, shown: str | None = None
) -> None:
    """Progress bar, stage, ETA and (for those allowed) a cancel button for the live job ``job_id``.

    With ``project``, the whole page reruns as soon as the folder holds another run than ``shown`` (the
    :func:`run_key` the page drew): the quick first look replaces the progress page in the tab that is open, the
    moment it is written, not only in tabs opened later."""
    job = state.job_registry().get(job_id)
    if job is None:
        return
    snap = job.snapshot()
    if snap.finished or (project is not None and run_key(project) != shown):
        st.rerun()
    stage = f"{snap.stage}: {snap.message}" if snap.stage else "starting"
    eta = "estimating the time left" if snap.eta_s is None else f"about {format_seconds(snap.eta_s)} left"
    st.progress(
        snap.fraction,
        text=f"{md(title)} — {stage} · {snap.fraction:.0%} · {format_seconds(snap.elapsed_s)} elapsed · {eta}",
    )
    if not can_cancel:
        return
    cancelling = job.cancel_event.is_set()
    st.button(
        "Cancelling…" if cancelling else "Cancel",
        key=f"cancel-{job_id}",
        on_click=_cancel,
        args=(job,),
        disabled=cancelling,
        help="Stops at the next chunk of work; cached stages make a later run fast.",
    )


def _cancel(job) -> None:
    from ogaudit.ui.auth import allowed

    if allowed("audit") is None:  # the sign-in or the admin role may have ended since the page drew the button
        flash("error", "Only an admin may cancel an audit: it goes on.")
        return
    job.cancel()


def show_failure(snap: JobSnapshot, request=None, *, finished: bool = True) -> None:
    """What failed, said plainly: which job on which data (``request``, the project's saved
    :class:`~ogaudit.project.Request`; a server path shortened as in error messages, never in full), in which
    stage, with the error in words and its traceback folded away; and, when the project holds no finished audit
    (``finished=False``), that nothing was made for review."""
    what = f"The {snap.kind}"
    if request is not None:
        data = readable(f"'{request.data}'", workspace_root()).strip("'")
        what += f" of {code(data)}"
    if snap.status == "cancelled":
        st.warning(f"{what} was cancelled during the **{md(snap.stage or 'first')}** stage.")
    else:
        message = md(readable(snap.error, workspace_root()))
        st.error(f"{what} failed during the **{md(snap.error_stage or 'first')}** stage: {message}")
    if not finished:
        st.caption(
            "Nothing was made for review: this project holds only the request"
            + (", the status and its error." if snap.status == "failed" else " and the status.")
        )
    if snap.status == "failed" and snap.traceback:
        with st.expander("Details (traceback)"):
            st.code(snap.traceback)


INPUT_ERRORS = frozenset({"DataError", "SettingsError", "ModelError", "LedgerError", "MemoryLimit"})
"""Failures that the same request meets again (the data, the settings or the memory they need must change)."""


def retry_can_help(snap: JobSnapshot, project: Path | None = None) -> bool:
    """Whether running the same request again may succeed: after a cancel, an interruption or a failure that may
    pass (a full disk, an engine crash), and after a data error on a file of the server's (its owner may fix the
    file); not after one the same request meets again (:data:`INPUT_ERRORS`: settings, memory, a built-in or an
    upload kept in the project)."""
    if snap.status != "failed" or snap.error_type not in INPUT_ERRORS:
        return True
    if snap.error_type != "DataError" or project is None:
        return False
    request = Project(project).read_request()
    if request is None:
        return False
    data = Path(str(request.data))
    return data.is_absolute() and not data.resolve().is_relative_to(Path(project).resolve())


def retry_button(project: Path, label: str) -> None:
    """Run the project's audit again from its saved request (cached stages are reused)."""
    if st.button(label, key=f"retry-{project.name}", type="primary"):
        request = Project(project).read_request()
        registry, cache = state.job_registry(), default_cache_dir()
        job = submit_audit(registry, project, request.data, request.settings, cache_dir=cache, by=request.by)
        st.query_params["job"] = job.job_id
        st.rerun()
