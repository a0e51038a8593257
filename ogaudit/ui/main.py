"""The page: sidebar (who, projects, new audit, undo, progress) and the current project's map, review queue and
export tabs.

Who is using the tab comes from the sign-in (:mod:`ogaudit.ui.auth`); what they may do from their role. Which
project is shown lives in ``st.query_params`` (``project``, and ``job`` while its audit runs), so a refreshed page
comes back to the same place; ``project`` is a name inside ``$OGAUDIT_HOME``, never a path. With an empty workspace
the demo audit starts by itself; an audit cut off by a server restart resumes by itself when the server is back.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ogaudit.cache.artifacts import default_cache_dir
from ogaudit.errors import OgauditError
from ogaudit.project import Project, ProjectInfo, list_projects, workspace_root
from ogaudit.results import Run
from ogaudit.review.actions import current_progress
from ogaudit.server.auth import may_delete_project
from ogaudit.server.jobs import JobRegistry, delete_project, job_id, read_status, submit_audit
from ogaudit.server.sandbox import check_project_name
from ogaudit.server.state import server_state
from ogaudit.ui import guard, state
from ogaudit.ui.auth import Visitor, acting_visitor, visitor
from ogaudit.ui.common import flash, show_flash
from ogaudit.ui.config import DemoConfig, map_points_limit
from ogaudit.ui.exportview import export_panel
from ogaudit.ui.hover import map_hover
from ogaudit.ui.jobview import job_progress, retry_button, retry_can_help, run_key, show_failure
from ogaudit.ui.live import mark_seen, watch_ledger
from ogaudit.ui.llmview import is_instruction_run, llm_panel
from ogaudit.ui.mapview import gradient_map, selection_grid
from ogaudit.ui.review import agreement_view, live_sidebar, review_queue
from ogaudit.ui.setup import new_audit_panel
from ogaudit.ui.team import team_panel
from ogaudit.ui.text import md, readable


def main() -> None:
    st.set_page_config(page_title="ogaudit: find wrong labels", page_icon="🔎", layout="wide")
    guard.install()  # once per process: no clear_cache, uploads and media for granted sessions only
    root = workspace_root()
    with st.sidebar:
        st.title("ogaudit")
    try:
        _resume_interrupted(str(root))  # before the sign-in: a restarted server resumes for nobody in particular
    except OgauditError as error:
        st.error(md(error))
    who = visitor(root)
    if who is None:  # the sign-in form is all a signed-out visitor gets
        return
    try:
        demo = DemoConfig.from_env()
        project = _current_project(root, demo, who)
        with st.sidebar:
            _project_picker(root, project)
            if who.can("audit"):
                with st.expander("New audit", key="new-audit-panel"):  # a key: stays open across reruns
                    new_audit_panel(root, by=who.name)
        show_flash()
        if project is not None:
            _show_project(project, demo, who)
    except OgauditError as error:
        st.error(md(readable(error, root)))


def _resume_interrupted(root: str) -> list[str]:
    """Once per server process (:meth:`~ogaudit.server.state.ServerState.resume_once`, outside every cache): run
    again every audit whose status says it was running when the server stopped.

    Trained models, features and maps are cached, so the stages that finished are not redone.
    """
    return server_state().resume_once(root, resume_interrupted)


def resume_interrupted(root: Path, registry: JobRegistry) -> list[str]:
    """Resubmit the audits under ``root`` left "queued" or "running" by a process that is gone; return their names."""
    resumed = []
    for info in list_projects(root):
        if info.status not in ("queued", "running") or registry.get(job_id(info.path, "audit")) is not None:
            continue
        try:
            request = Project(info.path).read_request()
        except OgauditError:
            continue
        if request is None:
            continue
        try:  # JobBusy: another process runs it (its folder lock is held), so it was not interrupted
            submit_audit(
                registry, info.path, request.data, request.settings, cache_dir=default_cache_dir(), by=request.by
            )
        except OgauditError:
            continue
        resumed.append(info.name)
    return resumed


def _current_project(root: Path, demo: DemoConfig, who: Visitor) -> Path | None:
    """The project named in the URL, else the most recent one, else the demo (started now, by an admin)."""
    name = project_param(st.query_params.get("project") or st.query_params.get("job", "").split("/")[0])
    if name:
        try:
            check_project_name(name)
        except OgauditError:
            st.warning(f"{md(name)} is not a project name; showing another.")
        else:
            if (root / name).is_dir():
                if st.query_params.get("project") not in (None, name):
                    st.query_params["project"] = name  # the URL names the project, and nothing else
                return root / name
            st.warning(f"There is no project {md(name)}; showing another.")
    projects = list_projects(root)
    if projects:
        project = projects[0].path
    elif who.can("audit") and demo.enabled:
        project = _start_demo(root, demo, who.name)
    elif who.can("audit"):
        st.info("No audit has been run here yet: open **New audit** in the sidebar to audit your data.")
        return None
    else:
        st.info("No audit has been run on this server yet. An admin starts one from **New audit**.")
        return None
    st.query_params["project"] = project.name
    return project


def project_param(value: str) -> str:
    """The project name in a ``?project=`` value: the name itself, or (from a link written before this was fixed)
    the name followed by a status mark such as " · queued"."""
    value = str(value or "").strip()
    for mark in (*_STATUS_MARK.values(), " · no audit"):
        if value.endswith(mark):
            return value[: -len(mark)]
    return value


def _start_demo(root: Path, demo: DemoConfig, by: str | None = None) -> Path:
    project = root / demo.project_name
    project.mkdir(parents=True, exist_ok=True)
    registry = state.job_registry()
    job = submit_audit(registry, project, demo.data, demo.settings(), cache_dir=default_cache_dir(), by=by)
    st.query_params["job"] = job.job_id
    return project


_STATUS_MARK = {
    "done": " · ready",
    "failed": " · failed",
    "cancelled": " · cancelled",
    "running": " · running",
    "queued": " · queued",
}


def _project_picker(root: Path, project: Path | None) -> None:
    infos = {info.name: info for info in list_projects(root)}
    names = list(infos)
    if project is None:
        return
    if project.name not in names:
        names.insert(0, project.name)

    def label(name: str) -> str:
        return f"{name}{project_status(infos.get(name))}"

    # Streamlit keeps a selectbox's value as its shown text: once a status mark changes (" · queued" to
    # " · running"), a rerun sends the old text, which matches no option and came back as a new value (the URL then
    # read ``?project=posts · queued``). Only a known name is ever put in the URL (:func:`_switch_project`).
    st.session_state["project-picker"] = project.name
    st.selectbox(
        "Project", names, key="project-picker", format_func=label, on_change=_switch_project, args=(set(names),)
    )


def project_status(info: ProjectInfo | None) -> str:
    """ " · ready", " · failed", … as the project list shows it after the name."""
    if info is None:
        return ""
    if info.status in _STATUS_MARK:
        return " · ready" if info.status == "done" and info.finished else _STATUS_MARK[info.status]
    return " · ready" if info.finished else " · no audit"


def _switch_project(names: set[str]) -> None:
    picked = st.session_state.get("project-picker")
    if picked not in names:
        picked = project_param(picked)
    if picked not in names:
        return
    st.query_params["project"] = picked
    if "job" in st.query_params:
        del st.query_params["job"]


def _show_project(project: Path, demo: DemoConfig, who: Visitor) -> None:
    registry = state.job_registry()
    job = registry.get(job_id(project, "audit"))
    snap = job.snapshot() if job is not None else read_status(project, "audit")
    if project.name == demo.project_name:
        st.info(demo.describe())
    if job is not None and not snap.finished:
        st.query_params["job"] = job.job_id
        shown = run_key(project) if Project(project).is_finished() else None
        job_progress(job.job_id, f"Auditing {project.name}", can_cancel=who.can("audit"), project=project, shown=shown)
        st.caption("The audit runs in the background: the sidebar stays usable, and a refreshed page comes back here.")
        if Project(project).is_finished():
            st.info(
                "Meanwhile, here is a **quick first look** (one epoch, PCA map), or the previous run of this project: "
                "review it now. The page switches to the full audit when it finishes; decisions stay in the ledger, "
                "though the full audit may flag other samples."
            )
            _show_run(state.open_run(Project(project)), who)
        return
    if "job" in st.query_params:
        del st.query_params["job"]
    request = _request(project)
    finished = Project(project).is_finished()
    if snap is not None and snap.status in ("failed", "cancelled"):
        show_failure(snap, request, finished=finished)
        if request is not None and who.can("audit") and retry_can_help(snap, project):
            retry_button(project, "Retry")
        elif snap.status == "failed" and who.can("audit"):
            st.info(
                "Running the same audit again would fail the same way: the data or the settings must change. Start "
                "a new audit from **New audit** in the sidebar"
                + (" and delete this project, which holds nothing else." if not finished else ".")
            )
        if not finished:
            _delete_project(project, request, who)
    elif snap is not None and not snap.finished:
        st.warning(
            "This audit was interrupted: the server stopped while it ran. Run it again: trained models, features "
            "and maps are cached, so the stages that finished are not redone."
        )
        if request is not None and who.can("audit"):
            retry_button(project, "Run again")
        return
    if not finished:
        if snap is None:
            st.info(f"{md(project.name)} holds no audit yet.")
            _delete_project(project, request, who)
        return
    _show_run(state.open_run(Project(project)), who)


def _request(project: Path):
    """The project's saved audit request, or None (also when it is unreadable: the page then offers a delete)."""
    try:
        return Project(project).read_request()
    except OgauditError:
        return None


DELETE_ASKED = "delete-asked"


def _delete_project(project: Path, request, who: Visitor) -> None:
    """For an admin or the user who started the audit: remove a project that holds no finished audit (a failed or
    cancelled one, or a folder with no audit), after a second click. Nobody else sees the button, and the click is
    checked again (:func:`_delete`)."""
    if not may_delete_project(who.name, who.role, None if request is None else request.by):
        return
    asking = st.session_state.get(DELETE_ASKED) == project.name
    if not asking:
        st.button(
            "🗑 Delete this project",
            key=f"delete-{project.name}",
            on_click=lambda: st.session_state.__setitem__(DELETE_ASKED, project.name),
            help="It holds no finished audit. Deleting removes its folder (request, status, uploads, ledger).",
        )
        return
    st.warning(f"Delete {md(project.name)} and everything in its folder? This cannot be undone.")
    yes, no = st.columns(2)
    yes.button("Yes, delete", key=f"delete-yes-{project.name}", type="primary", on_click=_delete, args=(project,))
    no.button("Cancel", key=f"delete-no-{project.name}", on_click=lambda: st.session_state.pop(DELETE_ASKED, None))


def _delete(project: Path) -> None:
    """The click on *Yes, delete*: who clicks is read again, the folder is removed under its job lock
    (:func:`~ogaudit.server.jobs.delete_project`), and the URL no longer names it."""
    st.session_state.pop(DELETE_ASKED, None)
    root = workspace_root()
    who = acting_visitor(root)
    request = _request(project)
    if who is None or not may_delete_project(who.name, who.role, None if request is None else request.by):
        flash("error", "Only an admin or the user who started this audit may delete the project.")
        return
    if Project(project).is_finished():
        flash("error", f"{md(project.name)} holds a finished audit now; it was not deleted.")
        return
    try:
        delete_project(root, project.name, state.job_registry())
    except OgauditError as error:
        flash("error", md(readable(error, root)))
        return
    for key in ("project", "job"):
        if key in st.query_params:
            del st.query_params[key]
    flash("success", f"Deleted the project {md(project.name)}.")


def _show_run(run: Run, who: Visitor) -> None:
    ledger = state.open_ledger(run)
    if ledger.dataset_mismatch:
        st.warning(
            f"This project's ledger was made for other data (dataset {ledger.stored_fingerprint}, this run's is "
            f"{ledger.dataset_fingerprint}): its decisions may not fit these samples."
        )
    revision = ledger.revision()  # read before the state: a decision between the two shows on the next look
    decisions = ledger.state()
    mark_seen(ledger, revision)
    notices = st.container()  # the images and the evidence load after the map is drawn; their warnings go here
    st.subheader(md(run.name))
    st.caption(md(run.describe(full_paths=who.can("server-data"))))  # annotators see no server paths
    metrics = run.record.get("metrics", {})
    if "auroc" in metrics:
        cells = st.columns(4)
        cells[0].metric("Planted wrong labels", f"{metrics['noisy']:,}")
        cells[1].metric("AUROC", f"{metrics['auroc']:.3f}")
        cells[2].metric("Average precision", f"{metrics['average_precision']:.3f}")
        cells[3].metric("Precision of the flags", f"{metrics['precision_at_budget']:.3f}")
    annotator = who.name
    with st.sidebar:
        st.divider()
        live_sidebar(ledger, run, annotator)
    llm_run = is_instruction_run(run)  # prompt/response pairs: one more tab
    # fixed labels and a key: the tabs stay the same element when the first look gives way to the full run (or
    # the progress bar above them goes), so the open tab stays open
    tabs = st.tabs(
        ["Gradient map", "Review queue", "Agreement", "Export"] + (["Language model"] if llm_run else []),
        key="project-tabs",
    )
    tab_map, tab_review, tab_agree, tab_export = tabs[:4]
    with tab_map:
        selected = gradient_map(run, decisions)
    try:  # a million samples' images and evidence take seconds to read the first time: after the map
        dataset = state.load_dataset(run)
    except OgauditError as error:
        notices.warning(f"The images cannot be shown: {md(error)}")
        dataset = None
    try:
        evidence = state.open_evidence(run)
    except OgauditError as error:
        notices.warning(f"The evidence behind the flags cannot be shown: {md(readable(error))}")
        evidence = None
    with tab_map:
        map_hover(run, dataset, map_points_limit())
        selection_grid(ledger, run, selected, decisions, annotator, dataset)
    with tab_review:
        st.caption(f"{len(run.flagged_ids):,} flagged samples")
        review_queue(ledger, run, decisions, annotator, dataset, evidence)
    with tab_agree:
        team_panel(ledger, run, who, dataset, selected)
        agreement_view(ledger, current_progress(decisions, run.flagged_ids) if len(decisions) else None)
    with tab_export:
        export_panel(ledger, run, decisions, selected, dataset, who)
    if llm_run:
        with tabs[4]:
            llm_panel(ledger, run, decisions, annotator, dataset, can_verify=who.can("verify"))
    watch_ledger(ledger)  # last: nothing placed above the tabs may change between runs (the open tab would reset)
