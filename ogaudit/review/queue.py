"""What the review queue shows: filters, sort and search over a run's samples, and the tables that lead to them.

Plain functions over a run's table (:class:`~ogaudit.project.Run`) and the ledger's state
(:meth:`~ogaudit.review.ledger.Ledger.state`), shared by the app's queue and map; no streamlit here.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd

UNDECIDED = "undecided"
CALIBRATE = "to calibrate P(wrong)"
"""The sort that takes one sample from each band of the estimated P(wrong) in turn
(:func:`~ogaudit.review.calibration.calibration_order`): a hundred decisions in this order calibrate the
probability on this data far better than a hundred from the top (docs/BENCHMARKS.md, "Calibration")."""
SORTS = {
    "most suspicious first": ("rank", True),
    "least suspicious first": ("rank", False),
    "sample id": ("sample_id", True),
    CALIBRATE: ("calibration_order", True),
}

VERDICTS = ("", "wrong", "ambiguous")
STABILITIES = ("", "stable", "unstable")


@dataclass(frozen=True)
class QueueFilter:
    """Which samples the queue holds. Empty tuples mean "any".

    given, suggested : class names. decisions : actions and/or ``"undecided"`` (the current state). annotators :
    who made the current decision. score : (low, high) inclusive, or None. flagged_only : only flagged samples.
    hide_decided : leave out samples with a current decision. search : a case-insensitive substring of the id.
    sort : a key of :data:`SORTS` (:data:`CALIBRATE` ignores ``flagged_only``). only : restrict to these ids (a
    duplicate queue), flagged or not.
    verdict : "wrong" or "ambiguous" (the table's ``ambiguous`` column), "" for both. stability : "stable" or
    "unstable" (flagged samples' ``flag_stability`` at least / under
    :data:`~ogaudit.review.calibration.STABLE_AT`: the share of the training's checkpoints, or of resamples of the
    gradient neighbours, that flag it too; ``flag_stability_basis`` says which), "" for any. Both need a run that has the column; on an older
    run they keep every sample.
    """

    given: tuple[str, ...] = ()
    suggested: tuple[str, ...] = ()
    decisions: tuple[str, ...] = ()
    annotators: tuple[str, ...] = ()
    score: tuple[float, float] | None = None
    flagged_only: bool = True
    hide_decided: bool = False
    search: str = ""
    sort: str = "most suspicious first"
    only: frozenset[str] | None = None
    verdict: str = ""
    stability: str = ""

    def __post_init__(self) -> None:
        if self.sort not in SORTS:
            raise ValueError(f"sort {self.sort!r} is not one of {list(SORTS)}.")
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {list(VERDICTS)}.")
        if self.stability not in STABILITIES:
            raise ValueError(f"stability {self.stability!r} is not one of {list(STABILITIES)}.")


def filter_queue(
    table: pd.DataFrame, state: pd.DataFrame, queue_filter: QueueFilter, *, still_shown: Collection[str] = ()
) -> list[str]:
    """The ids of ``table`` (a run's table) that pass ``queue_filter``, in its sort order.

    ``still_shown``: ids that "hide decided" leaves in (the samples an annotator has just decided in a one-by-one
    pass, so that *previous* returns to them); every other filter still applies to them."""
    f = queue_filter
    keep = np.ones(len(table), dtype=bool)
    if f.only is not None:
        keep &= table["sample_id"].isin(f.only).to_numpy()
    elif f.flagged_only and f.sort != CALIBRATE:  # calibrating needs the whole range of P(wrong)
        keep &= table["flagged"].to_numpy(dtype=bool)
    if f.given:
        keep &= table["given_label"].isin(f.given).to_numpy()
    if f.suggested:
        keep &= table["suggested_label"].isin(f.suggested).to_numpy()
    if f.score is not None:
        score = table["score"].to_numpy(dtype=float)
        keep &= (score >= f.score[0]) & (score <= f.score[1])
    if f.verdict and "ambiguous" in table:
        keep &= table["ambiguous"].to_numpy(dtype=bool) == (f.verdict == "ambiguous")
    if f.stability and "flag_stability" in table:
        from ogaudit.review.calibration import STABLE_AT

        stability = table["flag_stability"].to_numpy(dtype=float)
        keep &= (stability >= STABLE_AT) if f.stability == "stable" else (stability < STABLE_AT)
    if f.search.strip():
        keep &= table["sample_id"].str.contains(f.search.strip(), case=False, regex=False).to_numpy()
    if f.sort == CALIBRATE:
        from ogaudit.review.calibration import calibration_order

        if "p_wrong" in table:
            order = calibration_order(table["p_wrong"].to_numpy(dtype=float), table["sample_id"].astype(str))
        else:  # a run without the estimate: most suspicious first
            order = table["rank"].to_numpy()
        table = table.assign(calibration_order=order)
    table = table[keep]  # the decision filters look up only the samples still in (a hash join, no Python loop)
    if f.hide_decided or f.decisions or f.annotators:
        current = state.drop_duplicates("sample_id", keep="last").set_index("sample_id") if len(state) else None
        ids = table["sample_id"]
        action = (
            ids.map(current["action"]).fillna(UNDECIDED)
            if current is not None
            else pd.Series(UNDECIDED, index=ids.index, dtype=object)
        )
        keep = np.ones(len(table), dtype=bool)
        if f.hide_decided:
            keep &= ((action == UNDECIDED) | ids.isin(list(still_shown))).to_numpy()
        if f.decisions:
            keep &= action.isin(f.decisions).to_numpy()
        if f.annotators:
            annotator = ids.map(current["annotator"]) if current is not None else pd.Series(None, index=ids.index)
            keep &= annotator.isin(f.annotators).to_numpy()
        table = table[keep]
    column, ascending = SORTS[f.sort]
    chosen = table.sort_values(column, ascending=ascending, kind="stable")
    return chosen["sample_id"].tolist()


def flag_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Per given class: samples, flagged, and the flagged share. Columns: class, samples, flagged, share."""
    grouped = table.groupby("given_label", sort=False)["flagged"].agg(["size", "sum"])
    frame = pd.DataFrame(
        {
            "class": grouped.index.astype(str),
            "samples": grouped["size"].to_numpy(),
            "flagged": grouped["sum"].astype(int).to_numpy(),
        }
    )
    frame["share"] = frame["flagged"] / frame["samples"]
    return frame.sort_values("flagged", ascending=False, kind="stable").reset_index(drop=True)


def confusion(table: pd.DataFrame, class_names: list[str], *, flagged_only: bool = True) -> pd.DataFrame:
    """Given (rows) × suggested (columns) counts over the flagged samples (or all), every class in order."""
    rows = table[table["flagged"]] if flagged_only else table
    counts = pd.crosstab(rows["given_label"], rows["suggested_label"])
    counts = counts.reindex(index=class_names, columns=class_names, fill_value=0)
    counts.index.name, counts.columns.name = "given", "suggested"
    return counts.astype(int)
