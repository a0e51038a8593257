"""A review team's workflow on top of the ledger: who reviews which samples, and where each sample stands.

* **Assignments.** :func:`plan_assignment` splits samples among annotators so that each sample goes to
  ``overlap`` different people and everyone gets the same number of samples, give or take one. It deals the
  annotators out in turn (sample ``i`` gets the ``overlap`` names that follow the previous sample's), so the
  same input always gives the same plan, and with three or more annotators every pair reviews samples together
  (the pairs rotate), which is what pairwise agreement needs. :meth:`Ledger.assign` stores the plan.
* **Status.** Every sample that is assigned, decided or settled has one status (:data:`STATUSES`):
  ``assigned`` (nobody decided yet), ``decided`` (someone did, but not all of its assignees, or only one
  person, and nobody disagrees), ``agreed`` (at least two people decided, with the same outcome, and every
  assignee decided), ``disputed`` (decisions in force with different outcomes) and ``settled`` (a reviewer's
  settlement is in force: :meth:`Ledger.settle`; it is the sample's state, so every export uses it).
  :func:`sample_status` gives it per sample, :func:`annotator_status` per annotator, :func:`my_queue` one
  annotator's samples.

All of it is derived from the ledger on every call, so it is as durable and as concurrent as the decisions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from ogaudit.errors import LedgerError
from ogaudit.review.ledger import Ledger

STATUSES = ("assigned", "decided", "agreed", "disputed", "settled")
STATUS_COLUMNS = ["sample_id", "status", "assigned_to", "decided_by", "pending", "note", "tags", "noted_by"]
ANNOTATOR_COLUMNS = ["annotator", "assigned", "done", "remaining", "progress", *STATUSES[1:]]


def plan_assignment(sample_ids: Sequence[str], annotators: Sequence[str], *, overlap: int) -> list[tuple[str, str]]:
    """Deal ``sample_ids`` (in the order given, e.g. most suspicious first) out to ``annotators``, each sample to
    ``overlap`` different ones.

    Sample ``i`` gets annotators ``(i * overlap + j) mod m`` for ``j < overlap`` (``m`` annotators): the
    assignments run through the names in turn, so each annotator gets ``floor`` or ``ceil`` of
    ``len(sample_ids) * overlap / m`` samples, and each stretch of the queue is spread over everyone.

    Returns
    -------
    ``len(sample_ids) * overlap`` pairs ``(sample_id, annotator)``, sample by sample.

    Raises
    ------
    LedgerError
        for no samples, no annotators, a repeated or empty name, or ``overlap`` outside ``1..len(annotators)``.
    """
    names = [str(name).strip() for name in annotators]
    if not names or any(not name for name in names):
        raise LedgerError(f"Give at least one annotator name (got {list(annotators)!r}).")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise LedgerError(f"Annotator(s) {repeated} are named twice; name each once.")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 1 <= overlap <= len(names):
        raise LedgerError(
            f"overlap must be a whole number from 1 to the number of annotators ({len(names)}); got {overlap!r}. "
            "It is how many different annotators review each sample."
        )
    ids = list(dict.fromkeys(str(i) for i in sample_ids))
    if not ids:
        raise LedgerError("No samples to assign: choose at least one (by default, the flagged samples).")
    m = len(names)
    return [(sample, names[(i * overlap + j) % m]) for i, sample in enumerate(ids) for j in range(overlap)]


def assign(
    ledger: Ledger, sample_ids: Sequence[str], annotators: Sequence[str], *, overlap: int, by: str
) -> tuple[str, pd.DataFrame]:
    """Plan (:func:`plan_assignment`) and store (:meth:`Ledger.assign`) an assignment; return the plan id and the
    per-annotator counts (:func:`annotator_status`)."""
    pairs = plan_assignment(sample_ids, annotators, overlap=overlap)
    plan_id = ledger.assign(pairs, by=by, overlap=overlap, annotators=[str(a).strip() for a in annotators])
    return plan_id, annotator_status(ledger)


def sample_status(ledger: Ledger, ids: Iterable[str] | None = None) -> pd.DataFrame:
    """Where each sample stands: one row per sample that is assigned, decided, settled, noted or tagged.

    Columns (:data:`STATUS_COLUMNS`): ``status`` (one of :data:`STATUSES`; None for a sample only noted),
    ``assigned_to``, ``decided_by`` and ``pending`` (assignees who have not decided) as lists of names in a
    stable order, and the card's ``note``, ``tags`` (a list) and ``noted_by``. ``ids`` keeps those samples.
    """
    assigned = ledger.assignments()
    latest = ledger.latest_per_annotator()
    settled = set(ledger.settled_ids())
    notes = ledger.notes()
    order = list(dict.fromkeys([*latest["sample_id"], *assigned["sample_id"], *settled, *notes["sample_id"]]))
    to, by = _lists(assigned["sample_id"], assigned["annotator"]), _lists(latest["sample_id"], latest["annotator"])
    outcomes = {sample: len(set(values)) for sample, values in _lists(latest["sample_id"], latest["outcome"]).items()}
    noted = {row[0]: row[1:] for row in notes[["sample_id", "note", "tags", "noted_by"]].itertuples(index=False)}
    rows = []
    for sample in order:
        mine, done = to.get(sample, []), by.get(sample, [])
        pending = [name for name in mine if name not in done]
        if sample in settled:
            status = "settled"
        elif outcomes.get(sample, 0) > 1:
            status = "disputed"
        elif len(done) >= 2 and not pending:
            status = "agreed"
        elif done:
            status = "decided"
        elif mine:
            status = "assigned"
        else:
            status = None
        note, tags, noted_by = noted.get(sample, (None, [], None))
        rows.append((sample, status, mine, done, pending, note, list(tags), noted_by))
    frame = pd.DataFrame(rows, columns=STATUS_COLUMNS, dtype=object)
    if ids is not None:
        keep = {str(i) for i in ids}
        frame = frame[frame["sample_id"].isin(keep)]
    return frame[STATUS_COLUMNS].reset_index(drop=True)


def annotator_status(ledger: Ledger, status: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per annotator with an assignment or a decision: ``assigned`` samples, ``done`` (of those, decided by them),
    ``remaining``, ``progress`` (done / assigned, 1.0 with nothing assigned), and how many of their assigned
    samples are ``decided``, ``agreed``, ``disputed`` and ``settled`` (:data:`STATUSES`). Columns:
    :data:`ANNOTATOR_COLUMNS`."""
    status = sample_status(ledger) if status is None else status
    rows = []
    names = list(dict.fromkeys([n for names in status["assigned_to"] for n in names]))
    names += [n for n in dict.fromkeys(n for names in status["decided_by"] for n in names) if n not in names]
    for name in names:
        mine = status[_holds(status["assigned_to"], name)]
        done = int(sum(name in names for names in mine["decided_by"]))
        counts = mine["status"].value_counts()
        rows.append(
            {
                "annotator": name,
                "assigned": len(mine),
                "done": done,
                "remaining": len(mine) - done,
                "progress": done / len(mine) if len(mine) else 1.0,
                **{s: int(counts.get(s, 0)) for s in STATUSES[1:]},
            }
        )
    return pd.DataFrame(rows, columns=ANNOTATOR_COLUMNS)


def assigned_ids(ledger: Ledger, annotator: str) -> set[str]:
    """The samples currently assigned to ``annotator``."""
    assigned = ledger.assignments()
    return set(assigned.loc[assigned["annotator"] == annotator, "sample_id"])


def my_queue(ledger: Ledger, annotator: str, order: Sequence[str] | None = None) -> pd.DataFrame:
    """``annotator``'s assigned samples, in ``order`` (e.g. the run's rank order; else as assigned), with
    ``done`` (they decided it) and the sample's ``status``. Columns: sample_id, done, status."""
    status = sample_status(ledger)
    mine = status[_holds(status["assigned_to"], annotator)]
    frame = pd.DataFrame(
        {
            "sample_id": mine["sample_id"].tolist(),
            "done": [annotator in names for names in mine["decided_by"]],
            "status": mine["status"].tolist(),
        }
    )
    if order is not None:
        position = {sample: i for i, sample in enumerate(order)}
        frame = frame.assign(_at=frame["sample_id"].map(position).fillna(len(position)))
        frame = frame.sort_values("_at", kind="stable").drop(columns="_at")
    return frame.reset_index(drop=True)


def _holds(lists: pd.Series, name: str) -> pd.Series:
    """Which of ``lists`` (a Series of lists) hold ``name``, as a boolean Series (also when empty)."""
    return lists.map(lambda names: name in names).astype(bool)


def _lists(keys: pd.Series, values: pd.Series) -> dict[str, list]:
    """``values`` grouped by ``keys`` into lists, in order (a plain loop: pandas' ``agg(list)`` is 100× slower)."""
    grouped: dict[str, list] = {}
    for key, value in zip(keys, values, strict=True):
        grouped.setdefault(key, []).append(value)
    return grouped
