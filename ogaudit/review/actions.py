"""The review rules, one call per decision, shared by the command line (``ogaudit decisions add``) and the app.

* **Confirm** means "the given label is wrong and the suggested one is right": without an explicit label each
  sample gets its own suggested label. A confirm must change the label, so a sample whose suggestion *is* its
  given label cannot be confirmed (keep it, or relabel it to the class it really is).
* **Relabel** sets one chosen label for every sample; **keep**, **remove** and **unsure** take no label.
* **One call, one batch**: a decision on many samples (a bulk action) is one undo step.

Every decision stores the sample's score, rank and the run's name next to who decided and when.
"""

from __future__ import annotations

from collections.abc import Sequence

from ogaudit.errors import LedgerError
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

    ``confirm`` without ``label`` uses each sample's suggested label; ``relabel`` needs ``label``.
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
    return ledger.record(decisions, annotator=annotator)
