"""Export: the decisions CSV (all, or exactly the map selection), the flags and decisions for the user's tools
(FiftyOne, Label Studio, Hugging Face, Parquet, cleanlab), the cleaned split, and the retrain check."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from ogaudit.data.dataset import Dataset
from ogaudit.data.uploads import zip_folder
from ogaudit.errors import OgauditError
from ogaudit.project import Project
from ogaudit.results import Run
from ogaudit.review.decisions import decisions_csv_bytes
from ogaudit.review.ledger import Ledger
from ogaudit.review.split import export_split
from ogaudit.review.verify import MIN_SCORED, VerifyReport
from ogaudit.server.jobs import job_id, read_status, submit_verify
from ogaudit.ui import state
from ogaudit.ui.auth import Visitor, made_when_clicked
from ogaudit.ui.common import flash, show_flash
from ogaudit.ui.jobview import job_progress, show_failure
from ogaudit.ui.text import md

SPLIT_DIR = "ogaudit-split-dir"
TOOL_FORMATS = {
    "cleanlab": ("cleanlab label-issues frame (CSV)", "-label-issues.csv", "text/csv"),
    "parquet": ("Parquet table with the samples", ".parquet", "application/octet-stream"),
    "hf": ("Hugging Face dataset (save_to_disk folder, zip)", "-hf.zip", "application/zip"),
    "fiftyone": ("FiftyOne image-classification dataset (zip)", "-fiftyone.zip", "application/zip"),
    "label-studio": ("Label Studio tasks and labeling config (zip)", "-label-studio.zip", "application/zip"),
}
"""Export formats offered for download: label, file name ending, MIME type (:func:`ogaudit.export`)."""
READS_DATA = ("parquet", "hf", "fiftyone", "label-studio")
"""Formats that carry the samples: they copy the data, so only admins download them (as a cleaned split)."""
VERIFY_SEEDS = 3


def decisions_key(decisions: pd.DataFrame) -> str:
    """A fingerprint of the decisions in force: it changes with every decision, undo or redo."""
    if decisions.empty:
        return "none"
    columns = decisions[["sample_id", "action", "final_label", "batch_id"]].astype(str)
    return str(pd.util.hash_pandas_object(columns, index=False).sum())


def export_panel(
    ledger: Ledger, run: Run, decisions: pd.DataFrame, selected: list[str], dataset: Dataset | None, who: Visitor
) -> None:
    """Decisions CSV for everyone; the cleaned split and the retrain check for admins (they read and copy data)."""
    show_flash("export")
    st.markdown(f"**Decisions** ({len(decisions):,} samples decided)")
    left, right = st.columns(2)
    # The files are made when the button is clicked, from the ledger as it is then: a decision taken in the keyboard
    # view reruns only that view, not this tab, so anything prepared at render time could be out of date.
    left.download_button(
        "⬇ Decisions CSV",
        data=made_when_clicked("export-decisions", lambda: decisions_csv_bytes(ledger, run_table=run.table)),
        file_name=f"{run.name}-decisions.csv",
        mime="text/csv",
        on_click="ignore",
        key="download-decisions",
    )
    right.download_button(
        f"⬇ Decisions of the {len(selected):,} selected",
        data=made_when_clicked(
            "export-decisions",
            lambda ids=tuple(selected): decisions_csv_bytes(ledger, ids=list(ids), run_table=run.table),
        ),
        file_name=f"{run.name}-selection-decisions.csv",
        mime="text/csv",
        on_click="ignore",
        key="download-selection",
        disabled=not selected,
        help="Exactly the samples selected on the map (undecided ones have no row).",
    )
    _tools(run, dataset, admin=who.can("export-split"))
    if not who.can("export-split"):
        st.caption("The cleaned split and the retrain check are for admins: they read and copy the data.")
        return
    st.divider()
    _split(ledger, run, dataset)
    st.divider()
    _verify(run, decisions, dataset)


def _tools(run: Run, dataset: Dataset | None, *, admin: bool) -> None:
    """One download per tool's format, made on click from the decisions in force then."""
    st.markdown(
        "**For your tools**: every sample's score, flag, suggested label, P(wrong), decision and reviewed label "
        "(integer labels stay integers), except in cleanlab's label-issues frame, which has cleanlab's own columns "
        "(`is_label_issue`, `label_score`, `given_label`, `predicted_label`, `sample_id`)."
    )
    offered = [name for name in TOOL_FORMATS if admin or name not in READS_DATA]
    left, right = st.columns([2, 1])
    choice = left.selectbox(
        "Format",
        offered,
        format_func=lambda name: TOOL_FORMATS[name][0],
        key="tool-format",
        label_visibility="collapsed",
    )
    needs_samples = choice in ("fiftyone", "label-studio")
    usable = not needs_samples or (
        dataset is not None and (dataset.is_image or (choice == "label-studio" and dataset.is_text))
    )
    label, ending, mime = TOOL_FORMATS[choice]
    right.download_button(
        "⬇ Export",
        data=made_when_clicked(
            "export-split" if choice in READS_DATA else "export-decisions",
            lambda: tool_export_bytes(run, dataset, choice),
        ),
        file_name=f"{run.name}{ending}",
        mime=mime,
        on_click="ignore",
        key="download-tool",
        disabled=not usable,
        help=None if usable else f"{label} holds images (Label Studio: or texts); this data has none to give.",
    )
    if not admin:
        st.caption("The formats that carry the samples (Parquet, Hugging Face, FiftyOne, Label Studio) are for admins.")


def tool_export_bytes(run: Run, dataset: Dataset | None, format: str) -> bytes:
    """The export ``format`` of ``run``'s project as one download: the file, or the folder as a zip."""
    with tempfile.TemporaryDirectory(prefix="ogaudit-export-") as scratch:
        name = {"cleanlab": "label-issues.csv", "parquet": "review.parquet"}.get(format, format)
        written = Project(run.path).export(Path(scratch) / name, format=format, data=dataset)
        return written.read_bytes() if written.is_file() else zip_folder(written)


def _split(ledger: Ledger, run: Run, dataset: Dataset | None) -> None:
    st.markdown("**Cleaned split**: removed samples dropped, relabels applied, in the input's own format.")
    drop = st.checkbox("Also drop flagged samples nobody decided on (or marked unsure)", key="split-drop-undecided")
    decisions = ledger.state()
    if st.button("Write the cleaned split", key="write-split", disabled=dataset is None):
        out = Project(run.path).new_export_dir()
        try:
            manifest = export_split(dataset, ledger, out, flagged_ids=run.flagged_ids, drop_undecided_flagged=drop)
        except OgauditError as error:
            st.error(md(error))
        else:
            st.session_state[SPLIT_DIR] = {"folder": str(out), "decisions": decisions_key(decisions), "drop": drop}
            counts = manifest["counts"]
            flash(
                "success",
                f"Kept {counts['kept']:,} of {counts['input']:,} samples ({counts['removed']} removed, "
                f"{counts['relabelled']} relabelled, {counts['dropped_undecided_flagged']} undecided dropped).",
                "export",
            )
            st.rerun()
    written = st.session_state.get(SPLIT_DIR)
    if written:
        folder = written["folder"]
        stale = written["decisions"] != decisions_key(decisions)
        st.code(folder, language=None)
        if stale:
            st.warning(
                "This cleaned split is **out of date**: decisions were made or undone after it was written. "
                "Write it again to include them."
            )
        st.download_button(
            "⬇ Cleaned split (zip)" + (" — out of date" if stale else ""),
            data=made_when_clicked("export-split", lambda: _current_split_zip(ledger, run, dataset, written)),
            file_name=f"{run.name}-cleaned.zip",
            mime="application/zip",
            on_click="ignore",
            key="download-split",
            disabled=stale,
            help="Out of date: write the split again first." if stale else None,
        )


def _current_split_zip(ledger: Ledger, run: Run, dataset: Dataset, written: dict) -> bytes:
    """The zip of the split written, or, when decisions changed since (in the keyboard view, which does not rerun
    this tab), of a split written again now with the same options: a download always matches the ledger."""
    folder = written["folder"]
    if decisions_key(ledger.state()) != written["decisions"]:
        folder = Project(run.path).new_export_dir()
        export_split(
            dataset, ledger, folder, flagged_ids=run.flagged_ids, drop_undecided_flagged=written.get("drop", False)
        )
    return zip_folder(folder)


def _verify(run: Run, decisions: pd.DataFrame, dataset: Dataset | None) -> None:
    st.markdown(
        f"**Verify**: train the same recipe before and after the decisions ({VERIFY_SEEDS} seeds each); compare "
        "accuracy on a held-out part that is never cleaned."
    )
    registry = state.job_registry()
    job = registry.get(job_id(run.path, "verify"))
    if job is not None and not job.snapshot().finished:
        job_progress(job.job_id, "Verifying")
        return
    if st.button("Run the retrain check", key="verify", disabled=dataset is None or decisions.empty):
        submit_verify(registry, run, dataset, decisions, seeds=VERIFY_SEEDS)
        st.rerun()
    last = read_status(run.path, "verify")
    if last is not None and last.status in ("failed", "cancelled"):
        show_failure(last)
    report = Project(run.path).read_verify()
    if report is not None:
        _verify_report(report)


def _verify_report(saved: dict) -> None:
    """Before and after with the spread over seeds, a verdict that does not call noise a loss, and what was applied."""
    fields = {k: saved[k] for k in VerifyReport.__dataclass_fields__ if k in saved}
    try:
        report = VerifyReport(**fields)
    except TypeError:
        st.caption(md(saved["text"]))
        return
    before, after, change = st.columns(3)
    spread_before, spread_after = report.spread("before"), report.spread("after")
    before.metric(
        "Accuracy before", f"{report.accuracy_before:.3f}" + (f" ± {spread_before:.3f}" if spread_before else "")
    )
    after.metric("Accuracy after", f"{report.accuracy_after:.3f}" + (f" ± {spread_after:.3f}" if spread_after else ""))
    verdict = report.verdict()
    error = report.error if report.error is not None else report.change_spread
    change.metric(
        "Change",
        verdict,
        f"{report.change:+.3f}" + (f" ± {error:.3f}" if error else ""),
        delta_color="normal" if verdict in ("better", "worse") else "off",
        help="Better or worse only beyond twice the change's standard error, which combines the held-out sampling "
        "error and the seeds' spread; within it, no clear change. Too little data to tell: fewer than "
        f"{MIN_SCORED} held-out samples were scored.",
    )
    seeds = len(report.seeds) or 1
    lines = [
        f"Held-out part: **{report.held_out:,}** samples, never cleaned, scored against the {md(report.evaluated_on)}; "
        f"both models trained with {seeds} seed(s)"
        + (f" on {report.splits} held-out splits (small data)." if report.splits > 1 else ".")
    ]
    if report.sampling_error is not None:
        seed_part = f", seeds ± {report.seed_error:.3f}" if report.seed_error is not None else ""
        lines.append(f"Standard error of the change: held-out sampling ± {report.sampling_error:.3f}{seed_part}.")
    if report.decisions is not None and report.decisions_held_out is not None:
        lines.append(
            f"**{report.decisions - report.decisions_held_out:,}** of {report.decisions:,} decisions applied to the "
            f"training part ({report.removed:,} removed, {report.relabelled:,} relabelled); "
            f"**{report.decisions_held_out:,}** fell in the held-out part and were not applied"
            + (" (the first split's counts)." if report.splits > 1 else ".")
        )
    if report.accuracies_before:
        per_seed = ", ".join(
            f"{b:.3f} → {a:.3f}" for b, a in zip(report.accuracies_before, report.accuracies_after, strict=True)
        )
        lines.append(f"Per seed: {per_seed}.")
    if saved.get("decided") is not None:
        lines.append(f"{saved['decided']} decisions in force then.")
    st.caption("  \n".join(lines))
