"""Trim and retrain (the paper's protocol): train the same recipe on the data before and after the review's
decisions and compare accuracy on a held-out part that is never cleaned.

:class:`VerifyReport` is light to import (a project reads saved reports without torch); :func:`verify_cleaning`
imports the training engine when it runs."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd

from ogaudit.data.dataset import Dataset, stratified_split
from ogaudit.errors import SettingsError
from ogaudit.progress import ProgressCallback, report
from ogaudit.review.ledger import LABELLED_ACTIONS
from ogaudit.review.split import apply_decisions
from ogaudit.settings import AuditSettings

MIN_SCORED = 30
"""Fewer scored held-out samples per split than this read "too little data to tell": one sample is then worth more
than 3 points of accuracy, more than most cleanings change."""

SMALL_HELD_OUT = 200
"""A held-out part smaller than this is small data: with several seeds each seed draws its own held-out split
(repeated held-out splits), so the check does not rest on one small sample."""


def held_out_errors(
    correct_before: Sequence[np.ndarray], correct_after: Sequence[np.ndarray], splits: Sequence[int]
) -> tuple[float, float | None]:
    """Standard errors of the mean held-out accuracy change: held-out sampling and the seeds' spread.

    Parameters
    ----------
    correct_before, correct_after : one (n_s,) bool array per training (seed), whether the model trained before /
        after cleaning predicted each scored held-out sample right; trainings on the same split (``splits``, one
        split id per training) score the same samples in the same order.

    Returns
    -------
    (sampling_error, seed_error) : ``sampling_error`` is the paired standard error over held-out samples (each
    sample's after-minus-before correctness, averaged over the trainings on its split; sd / sqrt(n) per split,
    combined over splits as for a mean of independent means). ``seed_error`` is the standard deviation of the
    per-training change over sqrt(trainings) (None with one training). Adding both in quadrature
    (:attr:`VerifyReport.error`) counts some noise twice when the splits differ, which errs towards "no clear
    change", never towards a verdict.
    """
    if not (len(correct_before) == len(correct_after) == len(splits)) or not splits:
        raise ValueError("one before, one after array and one split id per training are needed.")
    per_split = []
    for split in dict.fromkeys(splits):
        members = [i for i, s in enumerate(splits) if s == split]
        diff = np.mean([np.asarray(correct_after[i], float) - np.asarray(correct_before[i], float) for i in members], 0)
        n = len(diff)
        per_split.append(float(np.std(diff, ddof=1) / np.sqrt(n)) if n > 1 else 1.0)
    sampling = float(np.sqrt(np.sum(np.square(per_split))) / len(per_split))
    changes = [float(np.mean(a) - np.mean(b)) for b, a in zip(correct_before, correct_after, strict=True)]
    seed = float(np.std(changes, ddof=1) / np.sqrt(len(changes))) if len(changes) > 1 else None
    return sampling, seed


@dataclass(frozen=True)
class VerifyReport:
    """Held-out accuracy of the model trained on the data as given vs as cleaned, with the errors that bound it.

    ``sampling_error`` (held-out sampling) and ``seed_error`` (the seeds' spread over sqrt(seeds)) are standard
    errors of :attr:`change`, in accuracy units (see :func:`held_out_errors`); ``scored`` is the number of held-out
    samples scored per split (held-out samples the review removed or marked unsure are left out);
    ``held_out_reviewed`` how many of them were scored against the reviewed label instead of the given one;
    ``splits`` how many distinct held-out splits the seeds used. The counts of what was trained on (``train_*``,
    ``removed``, ``relabelled``, ``decisions_held_out``) are those of the first split. Reports saved before these
    fields existed read with them None and are judged as they were then.
    """

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
    sampling_error: float | None = None
    seed_error: float | None = None
    scored: int | None = None
    held_out_reviewed: int | None = None
    held_out_left_out: int | None = None
    splits: int = 1

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

    @property
    def error(self) -> float | None:
        """The change's standard error: held-out sampling and seeds in quadrature (None for an old report)."""
        if self.sampling_error is None:
            return None
        return float(np.hypot(self.sampling_error, self.seed_error or 0.0))

    def spread(self, which: str) -> float | None:
        """Standard deviation over seeds of the accuracy ``which`` ("before" or "after")."""
        values = self.accuracies_before if which == "before" else self.accuracies_after
        return float(np.std(values, ddof=1)) if len(values) >= 2 else None

    def margin(self) -> float:
        """The smallest change read as one: twice :attr:`error`, and never under one scored sample's worth."""
        per_sample = 1.0 / max(self.scored or self.held_out, 1)
        if self.error is None:  # a report saved before the errors were kept
            spread = self.change_spread
            return 2 * spread if spread else per_sample
        return max(2 * self.error, per_sample)

    def verdict(self) -> str:
        """ "too little data to tell" (fewer than :data:`MIN_SCORED` scored held-out samples per split), "no clear
        change" (within :meth:`margin`), else "better" or "worse"."""
        if self.scored is not None and self.scored < MIN_SCORED:
            return "too little data to tell"
        if abs(self.change) <= self.margin():
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
            if self.splits > 1:
                applied += f" (first of {self.splits} held-out splits)"
        verdict, spread = self.verdict(), self.change_spread
        if verdict == "too little data to tell":
            verdict += f" ({self.scored} held-out samples scored; {MIN_SCORED} or more are needed)"
        elif self.error is not None:
            parts = f"held-out sampling ± {self.sampling_error:.3f}"
            if self.seed_error is not None:
                parts += f", seeds ± {self.seed_error:.3f}"
            within = abs(self.change) <= self.margin()
            verdict += (
                f" ({self.change:+.3f} is {'within' if within else 'beyond'} {self.margin():.3f}, twice the "
                f"combined standard error ({parts}))"
            )
            if spread is None:
                verdict += "; one seed: --seeds 5 measures the training noise too"
        elif spread is None:  # one seed: a retraining's own noise can be that large
            verdict += " (one seed: --seeds 5 tells a change from training noise)"
        else:
            within = abs(self.change) <= 2 * spread
            verdict += (
                f" ({self.change:+.3f} is {'within' if within else 'beyond'} twice the seeds' spread, {2 * spread:.3f})"
            )
        split_text = f", {self.splits} held-out splits" if self.splits > 1 else ""
        text = (
            f"verdict: {verdict}; held-out accuracy {self.accuracy_before:.3f} -> {self.accuracy_after:.3f}{seeds} on "
            f"{self.held_out} samples{split_text} ({self.evaluated_on}); trained on {self.train_before} -> "
            f"{self.train_after} samples ({self.removed} removed, {self.relabelled} relabelled){applied}"
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
    samples stay whole in the training part, and ``notes`` names them) is never cleaned: decisions on it are not
    applied to training. It is scored against the true labels when noise was planted (the truth is known); else
    against the reviewed labels: a held-out sample relabelled (``confirm``/``relabel``) is scored against its new
    label, one kept against its given label, and one removed or marked ``unsure`` is left out of the score.
    ``decisions`` is :meth:`Ledger.state`.

    With ``seeds`` > 1 both models are trained with that many seeds (``settings.seed``, ``+1``, ...); on small
    data (a held-out part under :data:`SMALL_HELD_OUT` samples) each seed also draws its own held-out split. The
    report gives the means, every seed's accuracy, and the change's standard errors from held-out sampling and from
    the seeds (:func:`held_out_errors`); its verdict is "better" or "worse" only beyond twice their combination.
    """
    import torch

    from ogaudit.models.nets import build_model, choose_model
    from ogaudit.models.training import batched_features, train_model

    if not 0.05 <= holdout <= 0.5:
        raise SettingsError(f"holdout must be between 0.05 and 0.5; got {holdout}.")
    if not isinstance(seeds, int) or not 1 <= seeds <= 10:
        raise SettingsError(f"seeds must be a whole number from 1 to 10; got {seeds!r}.")
    n_test = math.ceil(holdout * len(dataset))
    seed_list = tuple(settings.seed + i for i in range(seeds))
    split_seeds = seed_list if n_test < SMALL_HELD_OUT else (settings.seed,) * seeds
    counts = np.bincount(dataset.y, minlength=dataset.n_classes)
    kind = choose_model(dataset, settings.model).kind
    recipe = settings.train_settings
    decided_ids = decisions["sample_id"].astype(str)
    planted = dataset.true_y is not None
    parts: dict[int, dict] = {}
    for split_seed in dict.fromkeys(split_seeds):
        train_index, test_index = stratified_split(
            dataset.y, len(dataset) - n_test, seed=split_seed, names=dataset.class_names, what=f"holdout={holdout}"
        )
        train_before = dataset.subset(train_index)
        held_out = dataset.subset(test_index)
        train_after, applied = apply_decisions(
            train_before, decisions, flagged_ids=flagged_ids, drop_undecided_flagged=drop_undecided_flagged
        )
        parts[split_seed] = {
            "train": (train_before, train_after),
            "applied": applied,
            "held_out": held_out,
            **_held_out_labels(held_out, decisions),
        }
    first = parts[split_seeds[0]]
    first_before, first_after = first["train"]
    unmeasured = sorted(set(np.flatnonzero(counts).tolist()) - set(first["held_out"].y.tolist()))
    notes = tuple(
        f"class {dataset.class_names[c]!r} ({counts[c]} sample(s)) is too rare to hold out: it is only trained on, "
        "so the accuracy does not measure it"
        for c in unmeasured
    )
    recipe = replace(recipe, epochs=recipe.resolved_epochs(len(first_before)))  # same epochs for both
    correct: dict[int, list[np.ndarray]] = {0: [], 1: []}
    steps = 2 * len(seed_list)
    for done_seeds, (seed, split_seed) in enumerate(zip(seed_list, split_seeds, strict=True)):
        part = parts[split_seed]
        for step, train_set in enumerate(part["train"]):
            stage_progress = None
            if progress is not None:
                position = 2 * done_seeds + step

                def stage_progress(stage, fraction, message, step=step, position=position, seed=seed):
                    text = f"seed {seed}, {('before', 'after')[step]}: {message}"
                    report(progress, "verify", (position + fraction) / steps, text)

            model = build_model(kind, train_set, seed=seed)
            train_model(model, train_set, replace(recipe, seed=seed), progress=stage_progress, cancel=cancel)
            features = batched_features(model, part["held_out"].x[part["scored"]])
            with torch.no_grad():
                predicted = model.head(torch.as_tensor(features)).argmax(1).numpy()
            correct[step].append(predicted == part["labels"])
    sampling_error, seed_error = held_out_errors(correct[0], correct[1], split_seeds)
    if planted:
        evaluated_on = "true labels of the planted noise"
    else:
        evaluated_on = (
            f"given labels, or the reviewed label where a held-out sample was decided: {first['reviewed']} scored "
            f"against a reviewed label, {first['left_out']} removed or unsure left out"
        )
    held_ids = set(first["held_out"].sample_ids.tolist())
    return VerifyReport(
        accuracy_before=float(np.mean([c.mean() for c in correct[0]])),
        accuracy_after=float(np.mean([c.mean() for c in correct[1]])),
        train_before=len(first_before),
        train_after=len(first_after),
        removed=first["applied"]["removed"] + first["applied"]["dropped_undecided_flagged"],
        relabelled=first["applied"]["relabelled"],
        held_out=len(first["held_out"]),
        evaluated_on=evaluated_on,
        notes=notes,
        seeds=seed_list,
        accuracies_before=tuple(float(c.mean()) for c in correct[0]),
        accuracies_after=tuple(float(c.mean()) for c in correct[1]),
        decisions=len(decided_ids),
        decisions_held_out=int(decided_ids.isin(held_ids).sum()),
        sampling_error=sampling_error,
        seed_error=seed_error,
        scored=min(int(p["scored"].sum()) for p in parts.values()),
        held_out_reviewed=None if planted else first["reviewed"],
        held_out_left_out=None if planted else first["left_out"],
        splits=len(parts),
    )


def _held_out_labels(held_out: Dataset, decisions: pd.DataFrame) -> dict:
    """What the held-out part is scored against: ``scored`` (bool mask over it), ``labels`` (int, one per scored
    sample), and how many were ``reviewed`` (scored against a reviewer's label) or ``left_out`` (removed/unsure).
    The planted truth when there is one; else the given labels with the review's decisions on held-out samples."""
    n = len(held_out)
    if held_out.true_y is not None:
        return {"scored": np.ones(n, bool), "labels": held_out.true_y, "reviewed": 0, "left_out": 0}
    position = {sample_id: i for i, sample_id in enumerate(held_out.sample_ids.tolist())}
    class_index = {name: i for i, name in enumerate(held_out.class_names)}
    labels, scored = held_out.y.copy(), np.ones(n, bool)
    reviewed = 0
    mine = decisions[decisions["sample_id"].astype(str).isin(position)]
    for sample_id, action, final_label in mine[["sample_id", "action", "final_label"]].itertuples(index=False):
        i = position[str(sample_id)]
        if action in ("remove", "unsure"):
            scored[i] = False
        elif action in LABELLED_ACTIONS and final_label in class_index:
            labels[i] = class_index[final_label]
            reviewed += 1
    return {"scored": scored, "labels": labels[scored], "reviewed": reviewed, "left_out": int((~scored).sum())}
