"""The review rules, one call per decision, shared by the command line (``ogaudit decisions add``) and the app.

* **Confirm** means "the given label is wrong and the suggested one is right": without an explicit label each
  sample gets its own suggested label. A confirm must change the label, so a sample whose suggestion *is* its
  given label cannot be confirmed (keep it, or relabel it to the class it really is).
* **Relabel** sets one chosen label for every sample; **keep**, **remove** and **unsure** take no label.
* **One call, one batch**: a decision on many samples (a bulk action) is one undo step.

Every decision stores the sample's score, rank and the run's name next to who decided and when.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import pandas as pd

from ogaudit.errors import LedgerError
from ogaudit.results import Run
from ogaudit.review.ledger import ACTIONS, Batch, Decision, Ledger

ACTION_LABELS = {
    "confirm": "Confirm suggested label",
    "relabel": "Relabel to …",
    "keep": "Keep (label is right)",
    "remove": "Remove from data",
    "unsure": "Unsure",
}


def decide(
    ledger: Ledger,
    run: Run,
    ids: Sequence[str],
    action: str,
    *,
    annotator: str,
    label: str | None = None,
    note: str | None = None,
    settle: bool = False,
) -> str:
    """Record ``action`` on ``ids`` as one undoable batch; return the batch id.

    ``confirm`` without ``label`` uses each sample's suggested label; ``relabel`` needs ``label``. ``settle``: a
    reviewer's settlement, which outranks every annotator's decision (:meth:`Ledger.settle`).
    Raises :class:`~ogaudit.errors.LedgerError` for an unknown action or id, a missing label, or a confirm that
    would leave a sample's label as it is (the message counts them and names the fix).
    """
    ids = list(dict.fromkeys(str(i) for i in ids))
    ledger.check_ids(ids)
    rows = run.by_id.loc[ids]
    own_label = action == "confirm" and label is None
    finals = rows["suggested_label"] if own_label else None
    if action == "confirm":
        unchanged = rows.index[(finals if own_label else label) == rows["given_label"]].tolist()
        if unchanged:
            raise LedgerError(
                f"Confirm must change the label, but {len(unchanged)} of the {len(ids)} sample(s) would keep "
                f"theirs ({', '.join(unchanged[:5])}{' …' if len(unchanged) > 5 else ''}: the suggested label is "
                "the given one). Keep them if the label is right, or relabel them to the right class."
            )
    decisions = [
        Decision(
            sample_id,
            action,
            suggested if own_label else label,
            note=note,
            score=float(score),
            rank=int(rank),
            run=run.name,
        )
        for sample_id, suggested, score, rank in rows[["suggested_label", "score", "rank"]].itertuples()
    ]
    return ledger.record(decisions, annotator=annotator, settle=settle)


BULK_SCOPES = {"flagged": "Flagged samples only", "all": "All selected samples"}


@dataclass(frozen=True)
class BulkPlan:
    """What a bulk action would do, before it is done: ``ids`` to decide on and ``skipped`` (reason -> count)."""

    action: str
    label: str | None
    ids: tuple[str, ...]
    skipped: dict[str, int]
    selected: int
    replace_decided: bool = False

    def at_apply(self, decided: Collection[str]) -> BulkPlan:
        """This plan as it stands when applied: unless it replaces decisions, the samples decided since the
        preview (in another view or tab) are left out too, under "decided since the preview"."""
        if self.replace_decided:
            return self
        meanwhile = set(decided)
        ids = tuple(i for i in self.ids if i not in meanwhile)
        skipped = {**self.skipped, "decided since the preview": len(self.ids) - len(ids)}
        return BulkPlan(self.action, self.label, ids, skipped, self.selected, self.replace_decided)

    def describe(self) -> str:
        what = f"{self.action} → {self.label}" if self.label else self.action
        left = "; ".join(f"{count:,} {reason}" for reason, count in self.skipped.items() if count)
        return f"{what} on {len(self.ids):,} of the {self.selected:,} selected" + (
            f" (left out: {left})" if left else ""
        )


def plan_bulk(
    run: Run,
    ids: Sequence[str],
    action: str,
    *,
    scope: str = "flagged",
    label: str | None = None,
    decided: Collection[str] = (),
    replace_decided: bool = False,
) -> BulkPlan:
    """The samples a bulk ``action`` on the selection ``ids`` would decide on.

    ``scope`` "flagged" keeps only flagged samples, "all" every selected one. ``decided``: the samples that have a
    decision in force (anyone's); they are left out unless ``replace_decided``, so that a bulk step never silently
    replaces a decision someone took one by one. A bulk ``confirm`` (each sample's own suggested label) leaves out
    the samples whose suggestion is their given label: confirming them would keep a label while recording that it
    is wrong.
    """
    if scope not in BULK_SCOPES:
        raise LedgerError(f"Unknown scope {scope!r}; use one of {', '.join(BULK_SCOPES)}.")
    ids = list(dict.fromkeys(str(i) for i in ids))
    rows = run.by_id.loc[[i for i in ids if i in run.position]]
    skipped = {"unknown ids": len(ids) - len(rows)}
    if scope == "flagged":
        skipped["not flagged"] = int((~rows["flagged"]).sum())
        rows = rows[rows["flagged"]]
    if not replace_decided and len(decided):
        already = rows.index.isin(list(decided))
        skipped["already decided"] = int(already.sum())
        rows = rows[~already]
    if action == "confirm":
        same = rows["suggested_label"] == rows["given_label"]
        skipped["whose suggestion is their given label"] = int(same.sum())
        rows = rows[~same]
    chosen = label if action == "relabel" else None
    return BulkPlan(action, chosen, tuple(rows.index), skipped, len(ids), replace_decided)


def others_decisions(state: pd.DataFrame, ids: Sequence[str], annotator: str) -> pd.DataFrame:
    """The current decisions on ``ids`` made by someone other than ``annotator`` (``state``: Ledger.state())."""
    current = state[state["sample_id"].isin(set(map(str, ids)))]
    return current[current["annotator"] != annotator]


def current_progress(state: pd.DataFrame, flagged_ids: Sequence[str]) -> pd.DataFrame:
    """Per annotator, the decisions that are samples' current state (an overridden decision no longer counts).

    Columns: annotator, flagged_decided, decided, then one count per action.
    """
    flagged = set(flagged_ids)
    table = pd.crosstab(state["annotator"], state["action"]).reindex(columns=list(ACTIONS), fill_value=0)
    table.insert(0, "decided", table.sum(axis=1))
    on_flagged = state[state["sample_id"].isin(flagged)].groupby("annotator").size()
    table.insert(0, "flagged_decided", on_flagged.reindex(table.index, fill_value=0))
    table.columns.name = None
    return table.reset_index()


def take_back(ledger: Ledger, annotator: str, kind: str) -> tuple[Batch | None, list[str]]:
    """Undo (``kind`` "undo") or redo the annotator's last step; return the batch and the ids whose current
    decision changed (a sample someone else decided on since keeps that decision, so it is not listed)."""
    before = _outcomes(ledger.state())
    batch = ledger.undo(annotator) if kind == "undo" else ledger.redo(annotator)
    if batch is None:
        return None, []
    after = _outcomes(ledger.state())
    changed = [i for i in batch.sample_ids if before.get(i) != after.get(i)]
    return batch, changed


def _outcomes(state: pd.DataFrame) -> dict[str, tuple]:
    return {s: (a, f, b) for s, a, f, b in state[["sample_id", "action", "final_label", "batch_id"]].itertuples(False)}
