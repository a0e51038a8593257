"""Review actions as the app offers them, on top of the ledger: one call per click, one batch per call.

"Confirm" means the given label is wrong and the suggested one is right, so in bulk each sample gets its own
suggested label; "relabel" sets one label for all; keep, remove and unsure take no label.
"""

from __future__ import annotations

from collections.abc import Sequence

from ogaudit.project import Run
from ogaudit.review.ledger import Decision, Ledger

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
) -> str:
    """Record ``action`` on ``ids`` as one undoable batch; return the batch id.

    ``confirm`` without ``label`` uses each sample's suggested label; ``relabel`` needs ``label``. Each decision
    stores the sample's score, rank and the run's name. Raises :class:`~ogaudit.errors.LedgerError` for an
    unknown action, a missing label or an unknown id.
    """
    ids = list(dict.fromkeys(ids))
    ledger.check_ids(ids)
    rows = run.by_id.loc[ids]
    own_label = action == "confirm" and label is None
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
    return ledger.record(decisions, annotator=annotator)
