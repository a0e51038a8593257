"""Why a sample is flagged: the evidence behind its score, for the shown samples only.

Everything comes from the files a run already holds (``head_evidence.npz``, ``label_evidence.csv`` and the
detector's ``neighbours.npz``, read by
:meth:`~ogaudit.project.Project.read_head_evidence` and :meth:`~ogaudit.project.Project.read_label_evidence`):

* the model's class probabilities ``p`` (the factor ``p − e_y`` of the last-layer gradient);
* the ``k`` nearest **gradient neighbours**: the samples whose gradient directions (the feature factor ``h`` of
  ``(p − e_y) ⊗ [h, 1]``) have the highest cosine with the sample's, as the ``posterior`` detector finds them;
* the **counterfactual evidence**: the outlier score the sample's gradient would have under each label (the
  suggested label is the lowest);
* ``π ∝ p ⊙ q`` with ``q`` the neighbours' smoothed label histogram (the ``posterior`` detector's fusion), and
  from it a **calibrated probability that the given label is wrong**: ``1 − π(y)`` mapped through an isotonic
  curve fitted on a planted-noise benchmark (:data:`CALIBRATION_FILE`; ``benchmarks/calibrate_evidence.py``
  fits it and reports its expected calibration error on a held-out seed). The cards show the estimate made on the
  data at hand instead (:mod:`~ogaudit.review.calibration`: ``p_wrong`` with its 90% interval, which carries the
  noise rate's own uncertainty, or "not yet calibrated"); this curve is its fallback for runs written without it.

The neighbour search costs one (b × N) product for b shown samples, so a page of cards costs milliseconds even at
60k samples; the whole run's evidence (:meth:`RunEvidence.raw_wrong` of every sample) goes through
:func:`~ogaudit.detectors.neighbours.nearest_neighbours` above :data:`~ogaudit.detectors.neighbours.APPROXIMATE_ABOVE` samples, as the
detector does. Nothing here imports streamlit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ogaudit.detectors import neighbours as _neighbours
from ogaudit.errors import DataError

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")
CALIBRATION_FORMAT = 1
NEIGHBOURS = 20


@dataclass(frozen=True)
class Calibration:
    """A monotone map from the raw ``1 − π(y)`` to the probability that the given label is wrong.

    ``raw`` and ``calibrated`` (K,) are the knots of the isotonic fit, ``raw`` increasing; values between them
    are interpolated linearly. ``source`` says what it was fitted on, ``ece`` its expected calibration error on a
    held-out run.
    """

    raw: tuple[float, ...]
    calibrated: tuple[float, ...]
    source: str = "identity (not calibrated)"
    ece: float | None = None

    def __call__(self, raw: np.ndarray | float) -> np.ndarray:
        return np.interp(np.asarray(raw, dtype=np.float64), self.raw, self.calibrated)

    @classmethod
    def fit(cls, raw: np.ndarray, is_wrong: np.ndarray, *, source: str) -> Calibration:
        """Isotonic regression of ``is_wrong`` (N,) bool on ``raw`` (N,), kept as at most ~200 knots."""
        from sklearn.isotonic import IsotonicRegression

        raw = np.asarray(raw, dtype=np.float64)
        model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, is_wrong.astype(float))
        knots = np.unique(np.concatenate([[0.0, 1.0], model.X_thresholds_]))
        if len(knots) > 200:
            knots = np.unique(np.quantile(knots, np.linspace(0, 1, 200)))
        return cls(tuple(knots.tolist()), tuple(np.round(model.predict(knots), 6).tolist()), source=source)

    def to_dict(self) -> dict:
        return {
            "format": CALIBRATION_FORMAT,
            "raw": list(self.raw),
            "calibrated": list(self.calibrated),
            "source": self.source,
            "ece": self.ece,
        }

    @classmethod
    def load(cls, path: str | Path = CALIBRATION_FILE) -> Calibration:
        """The saved calibration, or the identity when there is none."""
        path = Path(path)
        if not path.is_file():
            return cls((0.0, 1.0), (0.0, 1.0))
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("format", 0) > CALIBRATION_FORMAT:
            raise DataError(f"{str(path)!r} was written by a newer ogaudit; upgrade ogaudit.")
        return cls(tuple(saved["raw"]), tuple(saved["calibrated"]), saved.get("source", ""), saved.get("ece"))


def percent(p: float) -> str:
    """A probability as a whole percentage that never reads "0%" or "100%" for what is uncertain: "<1%", ">99%"."""
    if p < 0.01:
        return "<1%"
    if p > 0.99:
        return ">99%"
    return f"{p:.0%}"


def expected_calibration_error(probability: np.ndarray, outcome: np.ndarray, *, bins: int = 10) -> float:
    """ECE: the sample-weighted mean |mean predicted − observed rate| over ``bins`` equal-width bins."""
    probability = np.asarray(probability, dtype=np.float64)
    outcome = np.asarray(outcome, dtype=np.float64)
    which = np.minimum((probability * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.sum() * abs(probability[inside].mean() - outcome[inside].mean())
    return float(total / max(len(probability), 1))


def interval_coverage(
    probability: np.ndarray, low: np.ndarray, high: np.ndarray, outcome: np.ndarray, *, bins: int = 10
) -> float:
    """The share of samples whose bin's observed rate lies inside the bin's interval: the samples cut into ``bins``
    equal-width bins of ``probability`` (as :func:`expected_calibration_error`), a bin's interval the means of its
    ``low`` and ``high`` (all (N,) in [0, 1]; ``outcome`` (N,) bool or 0/1). For 90% intervals, about 0.9 or more
    is honest; far below, the intervals claim more than the data bears. The observed rate's own sampling error is
    not allowed for: a bin that observed 0 while its interval starts just above it counts as missed."""
    probability = np.asarray(probability, dtype=np.float64)
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    outcome = np.asarray(outcome, dtype=np.float64)
    which = np.minimum((probability * bins).astype(int), bins - 1)
    size = np.bincount(which, minlength=bins)
    seen = size > 0

    def mean_of(values: np.ndarray) -> np.ndarray:
        return np.bincount(which, weights=values, minlength=bins)[seen] / size[seen]

    observed = mean_of(outcome)
    inside = (mean_of(low) <= observed + 1e-12) & (observed <= mean_of(high) + 1e-12)
    return float(size[seen][inside].sum() / max(len(probability), 1))


@dataclass(frozen=True)
class SampleEvidence:
    """The evidence for one sample (C classes, k neighbours).

    probs : (C,) the model's softmax. posterior : (C,) ``π``. counterfactual : (C,) outlier score under each label
    (lower = the gradient fits that label better), or None when the run has no ``label_evidence.csv``.
    neighbours : (k,) row positions of the nearest gradient neighbours, most similar first; cosines (k,) their
    cosines; neighbour_labels (k,) their given labels (class indices). given : the given label's index.
    p_wrong : calibrated probability that the given label is wrong; raw_wrong : ``1 − π(given)``.
    p_wrong_low, p_wrong_high : its 90% interval; calibrated : False where it reads "not yet calibrated"
    (:attr:`~ogaudit.review.calibration.WrongEstimate.calibrated`); to_calibrate : about how many decisions in the
    queue's "to calibrate P(wrong)" order would pin it down (0 when calibrated or unknown; never more than the
    samples left to decide); too_few_to_calibrate : pinning it down would take every sample left (or more), so
    the card says the range is what the data allows instead of asking for decisions.
    """

    position: int
    given: int
    probs: np.ndarray
    posterior: np.ndarray
    counterfactual: np.ndarray | None
    neighbours: np.ndarray
    cosines: np.ndarray
    neighbour_labels: np.ndarray
    raw_wrong: float
    p_wrong: float
    p_wrong_low: float = 0.0
    p_wrong_high: float = 1.0
    calibrated: bool = False
    reviewed: int = 0
    ambiguous: bool = False
    ambiguous_with: int = -1
    to_calibrate: int = 0
    too_few_to_calibrate: bool = False

    def wrong_text(self, class_names: list[str] | None = None) -> str:
        """How likely the given label is wrong, in words, never "100%": the estimate with its interval, "not yet
        calibrated" where the interval is too wide to mean much, and "ambiguous" where the evidence splits between
        the given label and one other class (:func:`~ogaudit.review.calibration.ambiguous`)."""
        # "from N decisions" goes with the number it qualifies, before any advice on what to decide next
        source = f", from {self.reviewed} decision{'s' if self.reviewed != 1 else ''} on similar scores"
        source = source if self.reviewed else ""
        if not self.calibrated:
            from ogaudit.review.queue import CALIBRATE

            text = (
                f"not yet calibrated: between {percent(self.p_wrong_low)} and {percent(self.p_wrong_high)} "
                f"likely that the given label is wrong{source}"
            )
            if self.too_few_to_calibrate:
                text += "; too few samples to calibrate: the range is what the data allows"
            elif self.to_calibrate:
                text += f"; decide ~{self.to_calibrate} samples in the {CALIBRATE!r} order to pin it down"
        else:
            text = (
                f"{percent(self.p_wrong)} likely that the given label is wrong "
                f"({percent(self.p_wrong_low)}–{percent(self.p_wrong_high)}){source}"
            )
        if self.ambiguous:
            other = class_names[self.ambiguous_with] if class_names and self.ambiguous_with >= 0 else "another class"
            given = class_names[self.given] if class_names else "the given label"
            text = f"ambiguous between {given!r} and {other!r}; " + text
        return text

    def ranking(self) -> np.ndarray:
        """Class indices, most likely first by ``π`` (ties: the counterfactual evidence, then the index)."""
        tie = self.counterfactual if self.counterfactual is not None else np.zeros_like(self.posterior)
        return np.lexsort((np.arange(len(self.posterior)), tie, -self.posterior))

    def best_other(self) -> int:
        """The most likely class other than the given one: what a confirm sets when the suggestion is the given."""
        return int(next(c for c in self.ranking() if c != self.given))

    def neighbour_votes(self, n_classes: int) -> np.ndarray:
        """(C,) how many of the neighbours carry each label."""
        return np.bincount(self.neighbour_labels, minlength=n_classes)


class RunEvidence:
    """The evidence of one run, from its head arrays and counterfactual table.

    Parameters
    ----------
    features : (N, d + 1) penultimate features with the bias column last (``head_evidence.npz``).
    probs : (N, C) softmax. labels : (N,) given labels (class indices).
    label_evidence : (N, C) counterfactual scores or None.
    calibration : the map to a probability (default: the packaged one).
    k : neighbours per sample.
    neighbours : ``(positions (N, k'), cosines (N, k'))`` the detector found (the run's ``neighbours.npz``); when
        given with ``k' ≥ k`` they are read instead of searched, so a card costs a lookup at any N and shows the
        neighbours the score was computed from (above :data:`~ogaudit.detectors.neighbours.APPROXIMATE_ABOVE` samples those
        came from the approximate index).
    """

    def __init__(
        self,
        features: np.ndarray,
        probs: np.ndarray,
        labels: np.ndarray,
        label_evidence: np.ndarray | None = None,
        *,
        calibration: Calibration | None = None,
        k: int = NEIGHBOURS,
        neighbours: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        n = len(labels)
        if len(features) != n or len(probs) != n or (label_evidence is not None and len(label_evidence) != n):
            raise DataError(
                f"The run's evidence files disagree on the number of samples (features {len(features)}, "
                f"probabilities {len(probs)}, labels {n}). Run the audit again."
            )
        self.features = np.asarray(features, dtype=np.float32)
        self.probs = np.asarray(probs, dtype=np.float64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.label_evidence = None if label_evidence is None else np.asarray(label_evidence, dtype=np.float64)
        self.calibration = calibration or Calibration.load()
        self.k = max(0, min(k, n - 1))
        self.known = None
        if neighbours is not None and len(neighbours[0]) == n and neighbours[0].shape[1] >= self.k:
            self.known = (neighbours[0][:, : self.k], neighbours[1][:, : self.k])

    @property
    def n_classes(self) -> int:
        return self.probs.shape[1]

    @cached_property
    def directions(self) -> np.ndarray:
        """(N, d) unit feature rows (the bias column dropped), as :meth:`HeadEvidence.directions`."""
        h = self.features[:, :-1]
        return h / np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-12)

    def nearest(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(b, k) positions and cosines of the nearest gradient neighbours of ``rows`` (b,), self excluded."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.k == 0 or len(rows) == 0:
            return np.zeros((len(rows), 0), dtype=np.int64), np.zeros((len(rows), 0))
        if self.known is not None:
            return self.known[0][rows], self.known[1][rows].astype(np.float64)
        cosines = self.directions[rows] @ self.directions.T  # (b, N)
        cosines[np.arange(len(rows)), rows] = -np.inf
        top = np.argpartition(-cosines, self.k - 1, axis=1)[:, : self.k]
        top_cos = np.take_along_axis(cosines, top, axis=1)
        order = np.argsort(-top_cos, axis=1, kind="stable")
        return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_cos, order, axis=1)

    def posterior(self, rows: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
        """(b, C) ``π ∝ p ⊙ (neighbour label counts + 1)``, rows summing to 1."""
        c = self.n_classes
        flat = np.repeat(np.arange(len(rows)) * c, neighbours.shape[1]) + self.labels[neighbours].ravel()
        counts = np.bincount(flat, minlength=len(rows) * c).reshape(len(rows), c).astype(np.float64)
        fused = self.probs[rows] * (counts + 1.0)
        return fused / np.maximum(fused.sum(axis=1, keepdims=True), 1e-300)

    def raw_wrong(self, rows: np.ndarray | None = None, *, chunk: int = 1024, progress=None, cancel=None) -> np.ndarray:
        """(b,) ``1 − π(given)`` for ``rows`` (all samples when None), searched exactly in chunks of ``chunk`` rows;
        more than ``chunk`` rows of a run above :data:`~ogaudit.detectors.neighbours.APPROXIMATE_ABOVE` samples use
        :func:`~ogaudit.detectors.neighbours.nearest_neighbours` (``progress`` / ``cancel`` as there)."""
        rows = np.arange(len(self.labels)) if rows is None else np.asarray(rows, dtype=np.int64)
        if self.k and self.known is not None:
            return 1.0 - self.posterior(rows, self.known[0][rows])[np.arange(len(rows)), self.labels[rows]]
        if self.k and len(rows) > chunk and len(self.labels) > _neighbours.APPROXIMATE_ABOVE:
            found, _ = _neighbours.nearest_neighbours(
                self.directions, self.k, progress=progress, cancel=cancel, stage="evidence"
            )
            return 1.0 - self.posterior(rows, found[rows])[np.arange(len(rows)), self.labels[rows]]
        out = np.empty(len(rows))
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            neighbours, _ = self.nearest(part)
            out[start : start + chunk] = 1.0 - self.posterior(part, neighbours)[np.arange(len(part)), self.labels[part]]
        return out

    def p_wrong(self, rows: np.ndarray | None = None, *, progress=None, cancel=None) -> np.ndarray:
        """(b,) the calibrated probability that the given label of each of ``rows`` (all samples when None) is
        wrong: :meth:`raw_wrong` through :attr:`calibration`, the number a review card shows."""
        return self.calibration(self.raw_wrong(rows, progress=progress, cancel=cancel))

    def all_neighbours(self, *, progress=None, cancel=None) -> np.ndarray:
        """(N, k) every sample's gradient neighbours: the detector's when the run kept them, else searched (exactly
        in chunks, or with :func:`~ogaudit.detectors.neighbours.nearest_neighbours` above
        :data:`~ogaudit.detectors.neighbours.APPROXIMATE_ABOVE` samples)."""
        n = len(self.labels)
        if self.k == 0:
            return np.zeros((n, 0), dtype=np.int64)
        if self.known is not None:
            return self.known[0]
        if n > _neighbours.APPROXIMATE_ABOVE:
            found, _ = _neighbours.nearest_neighbours(
                self.directions, self.k, progress=progress, cancel=cancel, stage="evidence"
            )
            return np.asarray(found, dtype=np.int64)
        return np.concatenate([self.nearest(np.arange(s, min(s + 1024, n)))[0] for s in range(0, n, 1024)])

    def table_columns(
        self, flagged: np.ndarray, *, seed: int = 0, progress=None, cancel=None, margins: np.ndarray | None = None
    ) -> dict:
        """The score table's evidence columns for every sample (:func:`ogaudit.review.calibration.evidence_columns`):
        ``p_wrong`` estimated on this run's own evidence with its interval, ``ambiguous`` and ``flag_stability``
        (with its ``flag_stability_basis`` and ``flag_stability_of``). ``flagged`` (N,) bool are the run's flags;
        ``margins`` (E, N) the training's per-epoch margins when ogaudit trained the model (the stability is then
        across its checkpoints), else None (across resamples of the gradient neighbours)."""
        from ogaudit.review.calibration import evidence_columns

        rows = np.arange(len(self.labels))
        neighbours = self.all_neighbours(progress=progress, cancel=cancel)
        posterior = self.posterior(rows, neighbours)
        raw = 1.0 - posterior[rows, self.labels]
        return evidence_columns(
            self.calibration(raw),
            posterior,
            self.probs,
            self.labels,
            neighbours if self.k else None,
            flagged,
            seed=seed,
            margins=margins,
        )

    def explain(self, rows: np.ndarray | list[int], wrong=None) -> list[SampleEvidence]:
        """The evidence of each sample in ``rows`` (positions in the run's table), in one vectorised pass.

        ``wrong``: a :class:`~ogaudit.review.calibration.WrongEstimate` of the run (the table's ``p_wrong``, updated
        with the review's decisions: :func:`~ogaudit.review.calibration.reviewed_estimate`); each sample's
        ``p_wrong`` and interval come from it. Without it (a run written before ``p_wrong`` was estimated on the
        data), the packaged curve's value, marked not calibrated on this data."""
        from ogaudit.review.calibration import ambiguous

        rows = np.asarray(rows, dtype=np.int64)
        neighbours, cosines = self.nearest(rows)
        posterior = self.posterior(rows, neighbours)
        given = self.labels[rows]
        raw = 1.0 - posterior[np.arange(len(rows)), given]
        if wrong is not None:
            calibrated, low, high = wrong.p[rows], wrong.low[rows], wrong.high[rows]
            known = wrong.calibrated[rows]
            reviewed = wrong.reviewed[rows]
            to_calibrate, too_few = wrong.to_calibrate, wrong.too_few_to_calibrate
        else:  # the packaged curve, with the intervals of a prior of its own value
            from ogaudit.review.calibration import prior_estimate

            fallback = prior_estimate(self.calibration(raw), "the packaged curve (fitted on planted noise)")
            calibrated, low, high = fallback.p, fallback.low, fallback.high
            known, reviewed, to_calibrate, too_few = fallback.calibrated, fallback.reviewed, 0, False
        split, other = ambiguous(posterior, self.probs[rows], given, self.labels[neighbours])
        return [
            SampleEvidence(
                position=int(row),
                given=int(given[i]),
                probs=self.probs[row],
                posterior=posterior[i],
                counterfactual=None if self.label_evidence is None else self.label_evidence[row],
                neighbours=neighbours[i],
                cosines=cosines[i],
                neighbour_labels=self.labels[neighbours[i]],
                raw_wrong=float(raw[i]),
                p_wrong=float(calibrated[i]),
                p_wrong_low=float(low[i]),
                p_wrong_high=float(high[i]),
                calibrated=bool(known[i]),
                reviewed=int(reviewed[i]),
                ambiguous=bool(split[i]),
                ambiguous_with=int(other[i]),
                to_calibrate=to_calibrate if not known[i] else 0,
                too_few_to_calibrate=too_few and not known[i],
            )
            for i, row in enumerate(rows)
        ]


def evidence_table(item: SampleEvidence, class_names: list[str], *, top: int = 5) -> pd.DataFrame:
    """The ``top`` most likely classes of one sample as a table: class, model probability, neighbours with that
    label, combined ``π``, and the counterfactual score (lower = the gradient fits that label better).

    The given label always has a row (marked "(given)"): where it is not among the ``top`` most likely, it takes
    the last row, since the reviewer weighs exactly the given label against the suggestion."""
    order = item.ranking()[:top]
    if item.given not in order:
        order = np.append(order[: max(top - 1, 0)], item.given)
    votes = item.neighbour_votes(len(class_names))
    frame = pd.DataFrame(
        {
            "class": [class_names[c] + (" (given)" if c == item.given else "") for c in order],
            "model": item.probs[order],
            "neighbours": [f"{votes[c]}/{len(item.neighbours)}" for c in order],
            "combined": item.posterior[order],
        }
    )
    if item.counterfactual is not None:
        frame["counterfactual"] = item.counterfactual[order]
    return frame


def describe(item: SampleEvidence, class_names: list[str]) -> str:
    """One sentence in words: how likely the label is wrong, what the model and the neighbours say (plain text)."""
    best = int(item.ranking()[0])
    votes = item.neighbour_votes(len(class_names))
    given = class_names[item.given]
    model_top = int(np.argmax(item.probs))
    other = class_names[item.ambiguous_with] if item.ambiguous and item.ambiguous_with >= 0 else None
    # the card's headline number (:meth:`SampleEvidence.wrong_text`): a range where it is not yet calibrated
    likely = (
        f"{percent(item.p_wrong)} likely"
        if item.calibrated
        else f"between {percent(item.p_wrong_low)} and {percent(item.p_wrong_high)} likely (not yet calibrated)"
    )
    agree = votes[item.given]
    parts = [
        (f"ambiguous between {given!r} and {other!r}; " if other is not None else "")
        + f"{likely} that the label {given!r} is wrong",
        f"the model gives {given!r} {percent(item.probs[item.given])}"
        + (f" and {class_names[model_top]!r} {percent(item.probs[model_top])}" if model_top != item.given else ""),
        f"{agree} of its {len(item.neighbours)} nearest gradient neighbours {'is' if agree == 1 else 'are'} "
        f"labelled {given!r}" + (f", {votes[best]} {class_names[best]!r}" if best != item.given else ""),
    ]
    return "; ".join(parts) + "."


def scoring_text(detector: str, state: dict | None) -> str | None:
    """One sentence on how the run's detector weighed its score (plain text): for ``posterior-auto``, the
    concentration ``κ`` of the data's estimated wrong labels it read (and its 90% lower bound ``κ_low``, where
    ``w`` is read, when it is 0.005 or more below ``κ``) and the weight ``w`` it gave
    ``posterior-ratio`` (``1 − w`` to ``posterior``), from the run's ``detector_state``
    (:func:`~ogaudit.detectors.outliers.detector_state`). None for another detector, and for a state that is
    missing or not two numbers in [0, 1] (a run recorded before it was kept, or an edited ``run.json``)."""
    if detector != "posterior-auto" or not isinstance(state, dict):
        return None
    kappa, weight = state.get("concentration"), state.get("ratio_weight")
    numbers = (kappa, weight)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and 0.0 <= v <= 1.0 for v in numbers):
        return None
    bound = state.get("concentration_low")  # where w was read (runs before the bound have none)
    if not (isinstance(bound, int | float) and not isinstance(bound, bool) and 0.0 <= bound <= kappa):
        bound = kappa
    ramp = state.get("ramp")
    low, high = ramp if isinstance(ramp, list | tuple) and len(ramp) == 2 else (None, None)
    if weight == 0.0 or (low is not None and kappa <= low):
        look = "spread over many classes"
    elif weight == 1.0 or (high is not None and kappa >= high):
        look = "concentrated on partner classes"
    else:
        look = "partly concentrated on partner classes"
    if weight == 0.0:
        how = "the score is the posterior alone (how unlikely the given label is)"
    elif weight == 1.0:
        how = "the score is the counterfactual ratio alone (how much likelier another label is)"
    else:
        share = min(99, max(1, round(weight * 100)))
        how = f"the score weighs the counterfactual ratio {share}% and the posterior {100 - share}%"
    read = f"κ {kappa:.2f}" + (
        f"; from few wrong labels, at least {bound:.2f} at 90% confidence, which sets the weight"
        if kappa - bound >= 0.005
        else ""
    )
    return f"Scored by posterior-auto: the data's wrong labels look {look} ({read}), so {how}."


def confirm_labels(
    given: np.ndarray, suggested: np.ndarray, best_other: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """What "confirm" sets on each sample (b,): the suggestion where it differs from the given label, else the
    next most likely class (``best_other``, when known). Returns ``(labels, changes)`` with ``changes`` (b,) bool:
    False where confirming would keep the label (no alternative known)."""
    given = np.asarray(given, dtype=object)
    labels = np.asarray(suggested, dtype=object).copy()
    same = labels == given
    if best_other is not None:
        labels[same] = np.asarray(best_other, dtype=object)[same]
    return labels, labels != given
