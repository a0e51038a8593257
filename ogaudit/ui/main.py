"""The page: sidebar (annotator, projects, new audit, undo, progress) and the current project's map, review queue
and export tabs.

Which project is shown lives in ``st.query_params`` (``project``, and ``job`` while its audit runs), and the
annotator's name too, so a refreshed page comes back to the same place. With an empty workspace the demo audit
starts by itself.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ogaudit.cache import default_cache_dir
from ogaudit.errors import OgauditError
from ogaudit.jobs import job_id, read_status, submit_audit
from ogaudit.project import Project, Run, list_projects, workspace_root
from ogaudit.ui import state
from ogaudit.ui.common import show_flash
from ogaudit.ui.config import DemoConfig
from ogaudit.ui.exportview import export_panel
from ogaudit.ui.jobview import job_progress, retry_button, show_failure
from ogaudit.ui.mapview import gradient_map, selection_grid
from ogaudit.ui.review import review_progress, review_queue, undo_redo
from ogaudit.ui.setup import new_audit_panel


def main() -> None:
    st.set_page_config(page_title="ogaudit: find wrong labels", page_icon="🔎", layout="wide")
    root = workspace_root()
    with st.sidebar:
        st.title("ogaudit")
        annotator = _annotator()
    try:
        demo = DemoConfig.from_env()
        project = _current_project(root, demo)
        with st.sidebar:
            _project_picker(root, project)
            with st.expander("New audit"):
                new_audit_panel(root)
        show_flash()
        _show_project(project, demo, annotator)
    except OgauditError as error:
        st.error(str(error))


def _annotator() -> str | None:
    """The reviewer's name, asked once and kept in the URL (``?annotator=``) so a refresh does not ask again."""
    name = st.query_params.get("annotator", "").strip()
    if name:
        left, right = st.columns([3, 1], vertical_alignment="center")
        left.markdown(f"Reviewing as **{name}**")
        if right.button("✎", key="change-annotator", help="Change the name recorded on decisions"):
            del st.query_params["annotator"]
            st.rerun()
        return name
    with st.form("annotator-form", border=False):
        typed = st.text_input("Your name (recorded on every decision)", key="annotator-input")
        if st.form_submit_button("Start reviewing") and typed.strip():
            st.query_params["annotator"] = typed.strip()
            st.rerun()
    return None


def _current_project(root: Path, demo: DemoConfig) -> Path:
    """The project named in the URL, else the most recent one, else the demo (started now)."""
    name = st.query_params.get("project") or st.query_params.get("job", "").split("/")[0]
    if name and (root / name).is_dir():
        return root / name
    if name:
        st.warning(f"There is no project {name!r} in {root}; showing another.")
    projects = list_projects(root)
    project = projects[0].path if projects else _start_demo(root, demo)
    st.query_params["project"] = project.name
    return project


def _start_demo(root: Path, demo: DemoConfig) -> Path:
    project = root / demo.project_name
    project.mkdir(parents=True, exist_ok=True)
    job = submit_audit(state.job_registry(), project, demo.data, demo.settings(), cache_dir=default_cache_dir())
    st.query_params["job"] = job.job_id
    return project


def _project_picker(root: Path, project: Path) -> None:
    names = [p.name for p in list_projects(root)]
    if project.name not in names:
        names.insert(0, project.name)
    st.session_state["project-picker"] = project.name
    st.selectbox("Project", names, key="project-picker", on_change=_switch_project, help=f"Folders in {root}")


def _switch_project() -> None:
    st.query_params["project"] = st.session_state["project-picker"]
    if "job" in st.query_params:
        del st.query_params["job"]


def _show_project(project: Path, demo: DemoConfig, annotator: str | None) -> None:
    registry = state.job_registry()
    job = registry.get(job_id(project, "audit"))
    snap = job.snapshot() if job is not None else read_status(project, "audit")
    if project.name == demo.project_name:
        st.info(demo.describe())
    if job is not None and not snap.finished:
        st.query_params["job"] = job.job_id
        job_progress(job.job_id, f"Auditing {project.name}")
        st.caption("The audit runs in the background: the sidebar stays usable, and a refreshed page comes back here.")
        return
    if "job" in st.query_params:
        del st.query_params["job"]
    has_request = Project(project).read_request() is not None
    if snap is not None and snap.status in ("failed", "cancelled"):
        show_failure(snap)
        if has_request:
            retry_button(project, "Retry")
    elif snap is not None and not snap.finished:
        st.warning(
            "This audit was interrupted: the server stopped while it ran. Run it again: trained models, features "
            "and maps are cached, so the stages that finished are not redone."
        )
        if has_request:
            retry_button(project, "Run again")
        return
    if not Project(project).is_finished():
        if snap is None:
            st.info(f"{project.name} holds no audit yet.")
        return
    _show_run(state.open_run(Project(project)), annotator)


def _show_run(run: Run, annotator: str | None) -> None:
    ledger = state.open_ledger(run)
    if ledger.dataset_mismatch:
        st.warning(
            f"This project's ledger was made for other data (dataset {ledger.stored_fingerprint}, this run's is "
            f"{ledger.dataset_fingerprint}): its decisions may not fit these samples."
        )
    decisions = ledger.state()
    try:
        dataset = state.load_dataset(run)
    except OgauditError as error:
        st.warning(f"The images cannot be shown: {error}")
        dataset = None
    st.subheader(run.name)
    st.caption(run.describe())
    metrics = run.record.get("metrics", {})
    if "auroc" in metrics:
        cells = st.columns(4)
        cells[0].metric("Planted wrong labels", f"{metrics['noisy']:,}")
        cells[1].metric("AUROC", f"{metrics['auroc']:.3f}")
        cells[2].metric("Average precision", f"{metrics['average_precision']:.3f}")
        cells[3].metric("Precision of the flags", f"{metrics['precision_at_budget']:.3f}")
    with st.sidebar:
        st.divider()
        undo_redo(ledger, annotator)
        review_progress(ledger, run, decisions)
    tab_map, tab_review, tab_export = st.tabs(["Gradient map", f"Review queue ({len(run.flagged_ids):,})", "Export"])
    with tab_map:
        selected = gradient_map(run, decisions)
        selection_grid(ledger, run, selected, decisions, annotator, dataset)
    with tab_review:
        review_queue(ledger, run, decisions, annotator, dataset)
    with tab_export:
        export_panel(ledger, run, decisions, selected, dataset)
