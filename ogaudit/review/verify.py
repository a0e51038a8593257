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

from ogaudit.data.dataset import Dataset, stratified_split
from ogaudit.errors import SettingsError
from ogaudit.progress import ProgressCallback, report
from ogaudit.review.split import apply_decisions
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
    seeds: tuple[int, ...] = ()
    accuracies_before: tuple[float, ...] = ()
    accuracies_after: tuple[float, ...] = ()
    decisions: int | None = None
    decisions_held_out: int | None = None

    @property
    def change(self) -> float:
        """Mean held-out accuracy after minus before."""
        return self.accuracy_after - self.accuracy_before

    @property
    def change_spread(self) -> float | None:
        """Standard deviation over seeds of the per-seed change (None with fewer than two seeds)."""
        if len(self.accuracies_before) < 2:
            return None
        return float(np.std(np.subtract(self.accuracies_after, self.accuracies_before), ddof=1))

    def spread(self, which: str) -> float | None:
        """Standard deviation over seeds of the accuracy ``which`` ("before" or "after")."""
        values = self.accuracies_before if which == "before" else self.accuracies_after
        return float(np.std(values, ddof=1)) if len(values) >= 2 else None

    def verdict(self) -> str:
        """ "better", "worse" or "no clear change" (a change within two standard deviations of the seeds' spread,
        or under one held-out sample's worth with a single seed)."""
        spread = self.change_spread
        margin = 2 * spread if spread else 1.0 / max(self.held_out, 1)
        if abs(self.change) <= margin:
            return "no clear change"
        return "better" if self.change > 0 else "worse"

    def describe(self) -> str:
        seeds = (
            f" (mean of {len(self.seeds)} seeds, change {self.change:+.3f} ± {self.change_spread:.3f})"
            if (self.change_spread is not None)
            else f" ({self.change:+.3f})"
        )
        applied = ""
        if self.decisions is not None and self.decisions_held_out is not None:
            applied = (
                f"; {self.decisions - self.decisions_held_out} of {self.decisions} decisions applied, "
                f"{self.decisions_held_out} fell in the held-out part and were not applied"
            )
        verdict, spread = self.verdict(), self.change_spread
        if spread is None:  # one seed: a retraining's own noise can be that large
            verdict += " (one seed: --seeds 5 tells a change from training noise)"
        else:
            within = abs(self.change) <= 2 * spread
            verdict += (
                f" ({self.change:+.3f} is {'within' if within else 'beyond'} twice the seeds' spread, {2 * spread:.3f})"
            )
        text = (
            f"verdict: {verdict}; held-out accuracy {self.accuracy_before:.3f} -> {self.accuracy_after:.3f}{seeds} on "
            f"{self.held_out} samples ({self.evaluated_on}); trained on {self.train_before} -> {self.train_after} "
            f"samples ({self.removed} removed, {self.relabelled} relabelled){applied}"
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
    seeds: int = 1,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> VerifyReport:
    """Retrain before/after cleaning and score both on the same held-out samples.

    The held-out part (``holdout`` of the data, stratified, seeded by ``settings.seed``; classes of one or two
    samples stay whole in the training part, and ``notes`` names them) is never cleaned:
    decisions on it are ignored. It is scored against the true labels when noise was planted (the truth is
    known), else against the given labels. ``decisions`` is :meth:`Ledger.state`. With ``seeds`` > 1 both models
    are trained with that many seeds (``settings.seed``, ``+1``, ...) on the same split; the report gives the means
    and every seed's accuracy, so the change can be read against the spread.
    """
    import torch

    from ogaudit.models.nets import build_model, choose_model
    from ogaudit.models.training import batched_features, train_model

    if not 0.05 <= holdout <= 0.5:
        raise SettingsError(f"holdout must be between 0.05 and 0.5; got {holdout}.")
    if not isinstance(seeds, int) or not 1 <= seeds <= 10:
        raise SettingsError(f"seeds must be a whole number from 1 to 10; got {seeds!r}.")
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
    seed_list = tuple(settings.seed + i for i in range(seeds))
    accuracies: dict[int, list[float]] = {0: [], 1: []}
    steps = 2 * len(seed_list)
    for done_seeds, seed in enumerate(seed_list):
        for step, train_set in enumerate((train_before, train_after)):
            stage_progress = None
            if progress is not None:
                position = 2 * done_seeds + step

                def stage_progress(stage, fraction, message, step=step, position=position, seed=seed):
                    text = f"seed {seed}, {('before', 'after')[step]}: {message}"
                    report(progress, "verify", (position + fraction) / steps, text)

            model = build_model(kind, train_set, seed=seed)
            train_model(model, train_set, replace(recipe, seed=seed), progress=stage_progress, cancel=cancel)
            features = batched_features(model, held_out.x)
            with torch.no_grad():
                predicted = model.head(torch.as_tensor(features)).argmax(1).numpy()
            accuracies[step].append(float((predicted == truth).mean()))
    held_ids = set(held_out.sample_ids.tolist())
    decided_ids = decisions["sample_id"].astype(str)
    return VerifyReport(
        accuracy_before=float(np.mean(accuracies[0])),
        accuracy_after=float(np.mean(accuracies[1])),
        train_before=len(train_before),
        train_after=len(train_after),
        removed=counts["removed"] + counts["dropped_undecided_flagged"],
        relabelled=counts["relabelled"],
        held_out=len(held_out),
        evaluated_on="true labels of the planted noise" if held_out.true_y is not None else "given labels",
        notes=notes,
        seeds=seed_list,
        accuracies_before=tuple(accuracies[0]),
        accuracies_after=tuple(accuracies[1]),
        decisions=len(decided_ids),
        decisions_held_out=int(decided_ids.isin(held_ids).sum()),
    )
