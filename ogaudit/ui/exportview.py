"""Export: the decisions CSV (all, or exactly the map selection), the cleaned split, and the retrain check."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ogaudit.data import Dataset
from ogaudit.errors import OgauditError
from ogaudit.jobs import job_id, read_status, submit_verify
from ogaudit.project import Project, Run
from ogaudit.review.exports import decisions_csv_bytes, export_split
from ogaudit.review.ledger import Ledger
from ogaudit.ui import state
from ogaudit.ui.auth import Visitor
from ogaudit.ui.common import flash
from ogaudit.ui.files import zip_folder
from ogaudit.ui.jobview import job_progress, show_failure
from ogaudit.ui.text import md

SPLIT_DIR = "ogaudit-split-dir"


def export_panel(
    ledger: Ledger, run: Run, decisions: pd.DataFrame, selected: list[str], dataset: Dataset | None, who: Visitor
) -> None:
    """Decisions CSV for everyone; the cleaned split and the retrain check for admins (they read and copy data)."""
    st.markdown(f"**Decisions** ({len(decisions):,} samples decided)")
    left, right = st.columns(2)
    left.download_button(
        "⬇ Decisions CSV",
        data=decisions_csv_bytes(ledger),
        file_name=f"{run.name}-decisions.csv",
        mime="text/csv",
        key="download-decisions",
    )
    right.download_button(
        f"⬇ Decisions of the {len(selected):,} selected",
        data=decisions_csv_bytes(ledger, ids=selected),
        file_name=f"{run.name}-selection-decisions.csv",
        mime="text/csv",
        key="download-selection",
        disabled=not selected,
        help="Exactly the samples selected on the map (undecided ones have no row).",
    )
    if not who.can("export-split"):
        st.caption("The cleaned split and the retrain check are for admins: they read and copy the data.")
        return
    st.divider()
    _split(ledger, run, dataset)
    st.divider()
    _verify(run, decisions, dataset)


def _split(ledger: Ledger, run: Run, dataset: Dataset | None) -> None:
    st.markdown("**Cleaned split**: removed samples dropped, relabels applied, in the input's own format.")
    drop = st.checkbox("Also drop flagged samples nobody decided on (or marked unsure)", key="split-drop-undecided")
    if st.button("Write the cleaned split", key="write-split", disabled=dataset is None):
        out = Project(run.path).new_export_dir()
        try:
            manifest = export_split(dataset, ledger, out, flagged_ids=run.flagged_ids, drop_undecided_flagged=drop)
        except OgauditError as error:
            st.error(md(error))
        else:
            st.session_state[SPLIT_DIR] = str(out)
            counts = manifest["counts"]
            flash(
                "success",
                f"Kept {counts['kept']:,} of {counts['input']:,} samples ({counts['removed']} removed, "
                f"{counts['relabelled']} relabelled, {counts['dropped_undecided_flagged']} undecided dropped).",
            )
            st.rerun()
    folder = st.session_state.get(SPLIT_DIR)
    if folder:
        st.code(folder, language=None)
        st.download_button(
            "⬇ Cleaned split (zip)",
            data=lambda: zip_folder(folder),
            file_name=f"{run.name}-cleaned.zip",
            mime="application/zip",
            key="download-split",
        )


def _verify(run: Run, decisions: pd.DataFrame, dataset: Dataset | None) -> None:
    st.markdown("**Verify**: train the same recipe before and after the decisions; compare held-out accuracy.")
    registry = state.job_registry()
    job = registry.get(job_id(run.path, "verify"))
    if job is not None and not job.snapshot().finished:
        job_progress(job.job_id, "Verifying")
        return
    if st.button("Run the retrain check", key="verify", disabled=dataset is None or decisions.empty):
        submit_verify(registry, run, dataset, decisions)
        st.rerun()
    last = read_status(run.path, "verify")
    if last is not None and last.status in ("failed", "cancelled"):
        show_failure(last)
    report = Project(run.path).read_verify()
    if report is not None:
        before, after = st.columns(2)
        before.metric("Accuracy before", f"{report['accuracy_before']:.3f}")
        after.metric(
            "Accuracy after",
            f"{report['accuracy_after']:.3f}",
            f"{report['accuracy_after'] - report['accuracy_before']:+.3f}",
        )
        decided = "" if report["decided"] is None else f" · {report['decided']} decisions in force then"
        st.caption(f"{md(report['text'])}{decided}")
