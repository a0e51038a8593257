"""Trim and retrain (the paper's protocol): train the same recipe on the data before and after the review's
decisions and compare accuracy on a held-out part that is never cleaned.

:class:`VerifyReport` is light to import (a project reads saved reports without torch); :func:`verify_cleaning`
imports the training engine when it runs."""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd

from ogaudit.data import Dataset, stratified_split
from ogaudit.errors import SettingsError
from ogaudit.progress import ProgressCallback, report
from ogaudit.review.exports import apply_decisions
from ogaudit.settings import AuditSettings


@dataclass(frozen=True)
class VerifyReport:
    """Held-out accuracy of the model trained on the data as given vs as cleaned."""

    accuracy_before: float
    accuracy_after: float
    train_before: int
    train_after: int
    removed: int
    relabelled: int
    held_out: int
    evaluated_on: str
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        change = self.accuracy_after - self.accuracy_before
        text = (
            f"held-out accuracy {self.accuracy_before:.3f} -> {self.accuracy_after:.3f} ({change:+.3f}) on "
            f"{self.held_out} samples ({self.evaluated_on}); trained on {self.train_before} -> {self.train_after} "
            f"samples ({self.removed} removed, {self.relabelled} relabelled)"
        )
        return "; ".join([text, *self.notes])

    def to_dict(self) -> dict:
        return asdict(self)


def verify_cleaning(
    dataset: Dataset,
    decisions: pd.DataFrame,
    settings: AuditSettings,
    *,
    holdout: float = 0.2,
    flagged_ids=None,
    drop_undecided_flagged: bool = False,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> VerifyReport:
    """Retrain before/after cleaning and score both on the same held-out samples.

    The held-out part (``holdout`` of the data, stratified, seeded by ``settings.seed``; classes of one or two
    samples stay whole in the training part, and ``notes`` names them) is never cleaned:
    decisions on it are ignored. It is scored against the true labels when noise was planted (the truth is
    known), else against the given labels. ``decisions`` is :meth:`Ledger.state`.
    """
    import torch

    from ogaudit.models import build_model, choose_model
    from ogaudit.training import batched_features, train_model

    if not 0.05 <= holdout <= 0.5:
        raise SettingsError(f"holdout must be between 0.05 and 0.5; got {holdout}.")
    n_test = math.ceil(holdout * len(dataset))
    train_index, test_index = stratified_split(
        dataset.y, len(dataset) - n_test, seed=settings.seed, names=dataset.class_names, what=f"holdout={holdout}"
    )
    train_before = dataset.subset(train_index)
    held_out = dataset.subset(test_index)
    counts = np.bincount(dataset.y, minlength=dataset.n_classes)
    unmeasured = sorted(set(np.flatnonzero(counts).tolist()) - set(held_out.y.tolist()))
    notes = tuple(
        f"class {dataset.class_names[c]!r} ({counts[c]} sample(s)) is too rare to hold out: it is only trained on, "
        "so the accuracy does not measure it"
        for c in unmeasured
    )
    train_after, counts = apply_decisions(
        train_before, decisions, flagged_ids=flagged_ids, drop_undecided_flagged=drop_undecided_flagged
    )
    truth = held_out.true_y if held_out.true_y is not None else held_out.y
    kind = choose_model(dataset, settings.model).kind
    recipe = settings.train_settings
    recipe = replace(recipe, epochs=recipe.resolved_epochs(len(train_before)))  # same epochs for both
    accuracies = []
    for step, train_set in enumerate((train_before, train_after)):
        stage_progress = None
        if progress is not None:

            def stage_progress(stage, fraction, message, step=step):
                report(progress, "verify", (step + fraction) / 2, f"{('before', 'after')[step]}: {message}")

        model = build_model(kind, train_set, seed=settings.seed)
        train_model(model, train_set, recipe, progress=stage_progress, cancel=cancel)
        features = batched_features(model, held_out.x)
        with torch.no_grad():
            predicted = model.head(torch.as_tensor(features)).argmax(1).numpy()
        accuracies.append(float((predicted == truth).mean()))
    return VerifyReport(
        accuracy_before=accuracies[0],
        accuracy_after=accuracies[1],
        train_before=len(train_before),
        train_after=len(train_after),
        removed=counts["removed"] + counts["dropped_undecided_flagged"],
        relabelled=counts["relabelled"],
        held_out=len(held_out),
        evaluated_on="true labels of the planted noise" if held_out.true_y is not None else "given labels",
        notes=notes,
    )
