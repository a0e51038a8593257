"""The probability that a given label is wrong, estimated on the data at hand and updated by the review.

A curve fitted once on planted noise (:data:`~ogaudit.review.evidence.CALIBRATION_FILE`) reads the evidence
``1 − π(given)`` the same way on every dataset; on noise of another kind (annotators who confuse similar samples)
it is over-confident. Here the probability is estimated per dataset, in two steps:

1. **Before any decision** (:func:`estimate_wrong`): the dataset's noise rate is estimated from the estimated
   joint of given and true labels (confident learning, Northcutt et al. 2021: a sample counts towards the class
   whose fused probability ``π`` reaches that class's average self-confidence); each sample's share of it comes
   from Bayes' rule with the data's own noise transition (:func:`true_label_posterior`, an EM started at that
   joint), so a sample whose evidence splits between two classes gets about the mass of the other class, weighed
   by how often the two are confused, rather than "certainly wrong"; that shape is moved, in log-odds, until its
   mean equals the rate. Each sample gets a :data:`LEVEL` interval from a Beta prior of :data:`PRIOR_STRENGTH`
   pseudo-decisions centred on its band's estimate, widened by the uncertainty of the noise rate itself: the
   rate estimators (:func:`noise_rates`: the confident joint, the transition EM's own rate, a two-component
   mixture on the scores) err in different directions on different data, so the interval spans the lowest and
   the highest of them, with their exact binomial sampling error (:func:`rate_bracket`: never 0 where a rate reads
   0, as on a small set the model memorised), the upper end shaped by the evidence (the extra wrong labels a higher
   rate allows sit at the top of its ranking: :func:`_bracket_bounds`). Where they disagree by more than :data:`RATE_DISAGREEMENT`,
   every sample is "not yet calibrated", with that bracket and the number of decisions that would pin it down.
2. **As decisions come in** (:func:`update_with_decisions`): confirmed wrong (``confirm``/``relabel``/``remove``)
   vs kept right (``keep``; ``unsure`` counts as neither). Once they cover a few bands of the estimate, one of
   them in its lower half (the queue's "to calibrate P(wrong)" order, :func:`calibration_order`, gives them so), a
   logistic recalibration is fitted to them; then each band (equal-width and decile cuts of the estimate) takes
   the Beta posterior of its prior and its decisions, made monotone across bands. The noise-rate bracket narrows as
   the bands fill with decisions and is gone once the logistic recalibration has fitted the level.

A sample whose interval is wider than :data:`UNKNOWN_WIDTH`, or any sample while the rate estimators disagree, is
"not yet calibrated": shown as that, not as a number. Before any decision the expected calibration error is ≤ 0.03
where the model separates the classes, and 0.10–0.15 where it does not or the noise follows its confusions: there
the level is not identifiable from the evidence (``benchmarks/bench_calibration_level.py``: oracle bounds, a
clean-label floor, the estimators tried), and decisions in the "to calibrate P(wrong)" order are what fix it.
Also here: :func:`ambiguous` (wrong vs ambiguous) and the flags' stability (stable vs unstable):
:func:`checkpoint_stability` across the checkpoints of the training where ogaudit trained the model,
:func:`flag_stability` across resamples of the gradient neighbours otherwise (``benchmarks/bench_stability.py``).
Pure numpy (and scipy): the pipeline writes ``p_wrong``, ``p_wrong_low``, ``p_wrong_high``, ``ambiguous`` and
``flag_stability`` in ``scores.csv`` (:func:`evidence_columns`), :func:`ogaudit.score` returns the same, and the
review cards and exports show step 2 on top of it (:func:`reviewed_estimate`). Measured in
``benchmarks/bench_calibration.py`` (docs/BENCHMARKS.md, "Calibration").
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ogaudit.detectors.joint import confident_joint as counted_joint

BANDS = 10
PRIOR_STRENGTH = 10.0
"""How many reviewer decisions the data-level estimate of a band is worth."""
UNKNOWN_WIDTH = 0.5
"""An interval wider than this (e.g. a band estimated near 50% with no decisions) reads "not yet calibrated"."""
LEVEL = 0.9
"""The intervals' coverage."""
RATE_DISAGREEMENT = 1 / 3
"""The noise-rate estimators disagree (:func:`estimate_wrong`) when, between the lowest and the highest rate, some
sample's P(wrong) or P(right) could be lower by more than this share of itself; every sample then reads "not yet
calibrated" until decisions across the range pin the rate down (:attr:`WrongEstimate.disagreement`). On the 13
audits of docs/BENCHMARKS.md, "Calibration", the estimators' disagreement was 0.23–0.25 on digits / MNIST under
symmetric and annotator-like noise and 0.35–0.98 elsewhere."""
WRONG_ACTIONS = ("confirm", "relabel")
"""Decisions that say the given label is wrong. ``remove`` is not one: it says the sample should go (a bad image,
a duplicate, an unfixable label), not which label is right, and counting it as "wrong" let eight bulk removals in
one class read ">99%" on every card. ``remove`` and ``unsure`` are left out of the update."""
RIGHT_ACTIONS = ("keep",)
_EPS = 1e-4


@dataclass(frozen=True)
class WrongEstimate:
    """Per-sample probability that the given label is wrong, with a :data:`LEVEL` interval.

    p, low, high : (N,) floats in [0, 1], ``low ≤ p ≤ high``.
    noise_rate : the estimated share of wrong labels in the data (the mean of ``p``).
    decisions : how many reviewer decisions (wrong or right) the estimate has been updated with.
    reviewed : (N,) int, the decisions in each sample's band.
    method : what it was estimated from, in words.
    rate_range : (lowest, highest) share of wrong labels the data cannot yet rule out (the noise-rate estimators'
        bracket with its sampling error, narrowed by decisions; :func:`estimate_wrong`), or None where the estimate
        is taken at its rate (``noise_rate``) alone.
    noise_rates : the data's noise rate by each estimator (:func:`noise_rates`), where known.
    unsettled : (N,) bool, where the noise-rate bracket alone could take more than :data:`RATE_DISAGREEMENT` of the
        sample's P(right) away (:func:`_bracket_bounds`: at the top of the evidence's ranking, when the rate could
        be higher), or None (nowhere).
    undecided : how many samples have no decision of any kind (what is left to decide; ``remove`` and ``unsure``
        count as decided), or None: every sample not among the ``decisions``.
    """

    p: np.ndarray
    low: np.ndarray
    high: np.ndarray
    noise_rate: float
    decisions: int
    reviewed: np.ndarray
    method: str
    rate_range: tuple[float, float] | None = None
    noise_rates: dict[str, float] = field(default_factory=dict)
    unsettled: np.ndarray | None = None
    undecided: int | None = None

    @property
    def disagreement(self) -> float:
        """How far the noise rate is from known: the largest share by which a sample's P(wrong) (at the lowest rate
        of ``rate_range``) or P(right) (at the highest) could be lower than the estimate says, or the estimate's
        P(wrong) lower than the highest rate's (``1 − rate / highest``: a rate read as 0.01% that could be 9%, as on
        a small set the model memorised, is not known however little P(right) moves); 0 without a range.
        Above :data:`RATE_DISAGREEMENT`, every sample is "not yet calibrated"."""
        if self.rate_range is None or not 0 < self.noise_rate < 1:
            return 0.0
        lowest, highest = self.rate_range
        rate = self.noise_rate
        return float(max(0.0, 1 - lowest / rate, 1 - (1 - highest) / (1 - rate), 1 - rate / max(highest, rate)))

    @property
    def calibrated(self) -> np.ndarray:
        """(N,) bool: False ("not yet calibrated") where the interval is wider than :data:`UNKNOWN_WIDTH`, where the
        noise rate's bracket alone leaves the sample's P(right) unknown by more than :data:`RATE_DISAGREEMENT`
        (``unsettled``), and everywhere while the noise-rate estimators disagree by more than that."""
        known = (self.high - self.low) <= UNKNOWN_WIDTH
        if self.unsettled is not None:
            known &= ~self.unsettled
        return known & (self.disagreement <= RATE_DISAGREEMENT)

    @property
    def left_to_decide(self) -> int:
        """How many samples have no decision yet (``undecided``, or every sample not among the ``decisions``)."""
        if self.undecided is not None:
            return max(int(self.undecided), 0)
        return max(len(self.p) - int(self.decisions), 0)

    def _wanted(self) -> int:
        """:data:`PLATT_MIN` more decisions in each band that has fewer, or all its samples; 0 when calibrated."""
        if len(self.p) == 0 or self.calibrated.all():
            return 0
        band, bands = _bands(self.p)
        decided = np.zeros(bands)
        decided[band] = self.reviewed
        wanted = np.minimum(PLATT_MIN, np.bincount(band, minlength=bands))  # a band of 2 samples gives 2
        return int(np.maximum(wanted - decided, 0).sum())

    @property
    def to_calibrate(self) -> int:
        """About how many more decisions in the queue's "to calibrate P(wrong)" order (:func:`calibration_order`)
        pin the estimate down: :data:`PLATT_MIN` more in each band that has fewer, or all its samples (what lets
        :func:`update_with_decisions` fit the level and slope), never more than the samples left to decide
        (:attr:`left_to_decide`); 0 when every sample is calibrated."""
        return min(self._wanted(), self.left_to_decide)

    @property
    def too_few_to_calibrate(self) -> bool:
        """True while not calibrated and pinning the estimate down would take every sample left to decide (or
        more): the data is too small for decisions to calibrate P(wrong) on the rest of it, and its interval is what
        the data allows."""
        wanted = self._wanted()
        return wanted > 0 and wanted >= self.left_to_decide

    def columns(self) -> dict[str, np.ndarray]:
        """``p_wrong``, ``p_wrong_low``, ``p_wrong_high``: the columns of the score table."""
        return {"p_wrong": self.p, "p_wrong_low": self.low, "p_wrong_high": self.high}

    def export_columns(self) -> dict[str, np.ndarray]:
        """What every export carries of it, as the review card shows it: :meth:`columns` (floats in [0, 1]) and
        ``p_wrong_calibrated`` ((N,) bool, :attr:`calibrated`: False where the card reads "not yet calibrated:
        between ``p_wrong_low`` and ``p_wrong_high``" instead of the number)."""
        return {**self.columns(), "p_wrong_calibrated": np.asarray(self.calibrated, dtype=bool)}


EXPORT_WRONG_COLUMNS = ("p_wrong", "p_wrong_low", "p_wrong_high", "p_wrong_calibrated")
"""The P(wrong) columns of every export and of the decisions CSV (:meth:`WrongEstimate.export_columns`)."""


def card_wrong_columns(
    table, decisions=None, *, p_wrong: np.ndarray | None = None, wrong: WrongEstimate | None = None
) -> dict[str, np.ndarray]:
    """:data:`EXPORT_WRONG_COLUMNS` for each row of ``table`` (N rows), as the review card shows them.

    ``wrong``: the estimate the card uses, when the caller has it. Otherwise, without ``p_wrong``, the run's table
    updated with the review's ``decisions`` (:func:`reviewed_estimate`, what the card calls); where that is
    unknown (a table without ``p_wrong_low``), or with ``p_wrong`` ((N,) the packaged curve's value, the card's
    fallback for a run written before P(wrong) was estimated on the data), the prior interval of that value,
    as the card's fallback (:func:`prior_estimate`). A row without a number gets NaN and ``False``."""
    n = len(table)
    if wrong is None and p_wrong is None:
        wrong = reviewed_estimate(table, decisions)
        if wrong is None and "p_wrong" in table.columns:
            import pandas as pd

            p_wrong = pd.to_numeric(table["p_wrong"], errors="coerce").to_numpy(dtype=np.float64)
    if wrong is None and p_wrong is not None:
        p_wrong = np.asarray(p_wrong, dtype=np.float64)
        if len(p_wrong) and not np.isnan(p_wrong).any() and ((p_wrong >= 0) & (p_wrong <= 1)).all():
            wrong = prior_estimate(p_wrong, "the packaged curve (fitted on planted noise)")
    if wrong is None:
        nan = np.full(n, np.nan) if p_wrong is None else np.asarray(p_wrong, dtype=np.float64)
        return {
            "p_wrong": nan,
            "p_wrong_low": np.full(n, np.nan),
            "p_wrong_high": np.full(n, np.nan),
            "p_wrong_calibrated": np.zeros(n, dtype=bool),
        }
    return wrong.export_columns()


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def confident_joint(posterior: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The calibrated confident joint of given and true labels, as shares of the samples.

    Parameters
    ----------
    posterior : (N, C) each sample's class probabilities (rows sum to 1), e.g. the fused ``π``.
    labels : (N,) int given labels.

    Returns
    -------
    (C, C) float ``Q[i, j]``: the estimated share of samples given ``i`` whose true class is ``j`` (sums to 1 over
    the classes present). Confident learning (Northcutt et al. 2021, eq. 2-3): a sample counts towards the most
    probable class ``j`` among those whose probability reaches ``t_j``, the mean probability of ``j`` over samples
    labelled ``j``; samples above no threshold are not counted; each given class's row is then scaled to that
    class's count. The counts are :func:`ogaudit.detectors.joint.confident_joint`'s (one implementation).
    """
    return counted_joint(posterior, labels) / max(len(labels), 1)


def confident_noise_rate(posterior: np.ndarray, labels: np.ndarray) -> float:
    """The share of wrong labels: the off-diagonal mass of :func:`confident_joint` (same parameters)."""
    joint = confident_joint(posterior, labels)
    return float(joint.sum() - np.trace(joint))


EM_ITERATIONS = 20
"""At most this many rounds of the noise-transition EM in :func:`true_label_posterior` (each costs a few (N, C)
products)."""
EM_TOLERANCE = 1e-5
"""The EM stops when no cell of the joint (a share of the samples) moves more than this in a round."""
JOINT_PSEUDOCOUNT = 1.0
"""Samples added to every cell of the joint before it becomes a transition (Laplace smoothing): a confusion the
confident joint happened not to count stays possible instead of ruling a class out for good."""


def true_label_posterior(
    posterior: np.ndarray, labels: np.ndarray, *, iterations: int = EM_ITERATIONS
) -> tuple[np.ndarray, np.ndarray]:
    """How much more likely each sample's label is wrong than right, given its evidence *and* its given label
    (Bayes' rule with the data's own noise transition), and that transition's joint.

    Parameters
    ----------
    posterior : (N, C) each sample's class probabilities from the evidence alone (rows sum to 1), e.g. the fused
        ``π``.
    labels : (N,) int given labels.
    iterations : rounds of EM.

    Returns
    -------
    (log_odds (N,), joint (C, C)): ``log_odds[n] = log Σ_{j≠y} π_nj T[y, j] − log π_ny T[y, y]``, the log-odds
    that the given label ``y`` is wrong, with ``T[i, j] = P(given i | true j)`` the noise transition (computed in
    logs, so that samples the evidence is sure of keep their order); ``joint[i, j]`` the share of samples given
    ``i`` and truly ``j``. The joint starts at :func:`confident_joint` and is re-estimated as the mean over each
    given class of ``P(true j | evidence, given) ∝ π_j T[y, j]`` (EM on the one-annotator model of Dawid & Skene
    1979, the evidence as each sample's class prior; Patrini et al. 2017 and Northcutt et al. 2021 estimate the
    same ``T``), each cell smoothed by :data:`JOINT_PSEUDOCOUNT` samples. So a sample whose evidence splits between
    its given class and one the annotators rarely confuse it with stays likely right; one whose evidence splits
    towards a class its given label is often mistaken for does not.
    """
    posterior = np.asarray(posterior, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, c = posterior.shape
    smooth = JOINT_PSEUDOCOUNT / max(n, 1)
    members = [np.flatnonzero(labels == i) for i in range(c)]  # each given class's rows: no (N, C) temporaries
    joint = confident_joint(posterior, labels)

    def transition_of(joint: np.ndarray) -> np.ndarray:
        smoothed = joint + smooth
        return smoothed / smoothed.sum(axis=0, keepdims=True)  # column j: P(given | true j)

    for _ in range(max(1, iterations)):
        transition, before, joint = transition_of(joint), joint, np.zeros((c, c))
        for i, rows in enumerate(members):
            if len(rows):  # Σ over class i of π_n ⊙ T[i] / (π_n · T[i]): two products, no (n_i, C) copy
                block = posterior[rows]
                joint[i] = transition[i] * (block.T @ (1.0 / np.maximum(block @ transition[i], 1e-300)))
        joint /= max(n, 1)
        if np.abs(joint - before).max() < EM_TOLERANCE:
            break
    transition = transition_of(joint)
    log_odds = np.empty(n)
    for i, rows in enumerate(members):
        if len(rows):
            block = posterior[rows]
            right = block[:, i] * transition[i, i]
            other = np.maximum(block @ transition[i] - right, 0.0)
            with np.errstate(divide="ignore"):
                log_odds[rows] = np.log(np.maximum(other, 1e-300)) - np.log(np.maximum(right, 1e-300))
    return log_odds, joint


def mixture_noise_rate(posterior: np.ndarray, labels: np.ndarray, *, iterations: int = 200) -> float:
    """The share of wrong labels as the weight of the upper component of a two-component Gaussian mixture on each
    sample's ``logit(1 − π(given))`` (EM in one dimension; started with the top fifth of the samples as the upper
    component).

    Parameters
    ----------
    posterior : (N, C) class probabilities (rows sum to 1). labels : (N,) int given labels.

    Returns
    -------
    float in [0, 1]. It reads the scores' shape, not the classes' confusions, so it errs in another direction than
    :func:`confident_noise_rate` and the transition EM: high where clean samples of confusable classes form a broad
    upper tail (Fashion-MNIST: 0.50–0.75 for 0.20, the tweets 0.37 for 0.067), close where the two
    groups separate (digits / MNIST, symmetric noise: 0.21–0.24 for 0.20). One of the estimators
    :func:`estimate_wrong` brackets the rate with, not an estimate on its own.
    """
    posterior = np.asarray(posterior, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) < 2:
        return 0.0
    x = _logit(1.0 - posterior[np.arange(len(labels)), labels])
    upper = x >= np.quantile(x, 0.8)
    if upper.all() or not upper.any():
        return 0.0
    weight = np.array([1.0 - upper.mean(), upper.mean()])
    mean = np.array([x[~upper].mean(), x[upper].mean()])
    var = np.maximum(np.array([x[~upper].var(), x[upper].var()]), 1e-6)
    for _ in range(iterations):
        log_density = -0.5 * ((x[:, None] - mean) ** 2 / var + np.log(2 * np.pi * var)) + np.log(weight)
        responsibility = np.exp(log_density - log_density.max(axis=1, keepdims=True))
        responsibility /= responsibility.sum(axis=1, keepdims=True)
        total = np.maximum(responsibility.sum(axis=0), 1e-12)
        before = weight
        weight = total / len(x)
        mean = (responsibility * x[:, None]).sum(axis=0) / total
        var = np.maximum((responsibility * (x[:, None] - mean) ** 2).sum(axis=0) / total, 1e-6)
        if np.abs(weight - before).max() < 1e-7:
            break
    return float(weight[int(np.argmax(mean))])


RATE_ESTIMATORS = ("confident joint", "transition EM", "mixture")
"""The noise-rate estimators :func:`estimate_wrong` brackets the rate with (:func:`noise_rates`)."""


def noise_rates(posterior: np.ndarray, labels: np.ndarray, *, joint: np.ndarray | None = None) -> dict[str, float]:
    """The data's share of wrong labels by each of :data:`RATE_ESTIMATORS`.

    ``confident joint``: :func:`confident_noise_rate`; ``transition EM``: the off-diagonal mass of
    :func:`true_label_posterior`'s joint (pass it as ``joint`` when already computed); ``mixture``:
    :func:`mixture_noise_rate`. Measured on 13 audits (docs/BENCHMARKS.md, "Calibration") each errs somewhere: the
    confident joint high on Fashion-MNIST and the tweets and low under instance noise, the EM low on digits / MNIST,
    the mixture high on Fashion-MNIST and the tweets; the true rate lay between the lowest and the highest on 12
    of the 13 (Fashion-MNIST symmetric: the lowest, the EM, read 0.220 for 0.200).
    None of them, nor their median (the confident joint on all 25 audits of two seeds), an anchor-point transition
    (Patrini et al. 2017), a backward correction or held-out probabilities, can tell the model's own confusions of
    right labels from planted noise: on Fashion-MNIST with no planted noise the confident joint reads 12%
    (``benchmarks/bench_calibration_level.py``; docs/BENCHMARKS.md, "Before any decision: what limits it").
    """
    if joint is None:
        _, joint = true_label_posterior(posterior, labels)
    return {
        "confident joint": confident_noise_rate(posterior, labels),
        "transition EM": float(joint.sum() - np.trace(joint)),
        "mixture": mixture_noise_rate(posterior, labels),
    }


def _shift_to_mean(base: np.ndarray, target: float, *, log_odds: np.ndarray | None = None) -> np.ndarray:
    """``base`` (or the probabilities of ``log_odds``) moved by one log-odds shift so that its mean is ``target``
    (bisection; monotone in the shift)."""
    z = _logit(base) if log_odds is None else np.asarray(log_odds, dtype=np.float64)
    target = float(np.clip(target, _EPS, 1 - _EPS))
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if _sigmoid(z + mid).mean() < target:
            lo = mid
        else:
            hi = mid
    return _sigmoid(z + (lo + hi) / 2)


def _bands(p: np.ndarray) -> tuple[np.ndarray, int]:
    """(band of each sample (N,) int, number of bands): cut at the :data:`BANDS` equal-width edges (the bins of the
    expected calibration error) and at the deciles of ``p`` (so that the bulk of low estimates, often most of the
    data, is split too); at most ``2·BANDS`` bands."""
    p = np.asarray(p, dtype=np.float64)
    inner = np.concatenate([np.linspace(0, 1, BANDS + 1)[1:-1], np.quantile(p, np.linspace(0, 1, BANDS + 1)[1:-1])])
    edges = np.unique(np.round(inner, 12)) if len(p) else np.linspace(0, 1, BANDS + 1)[1:-1]
    return np.searchsorted(edges, p, side="right").astype(np.int64), len(edges) + 1


def _beta_interval(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The central :data:`LEVEL` interval of Beta(a, b) (``betaincinv``: scipy.stats costs seconds to import)."""
    from scipy.special import betaincinv

    tail = (1 - LEVEL) / 2
    return betaincinv(a, b, tail), betaincinv(a, b, 1 - tail)


def _with_intervals(
    p: np.ndarray, a: np.ndarray, b: np.ndarray, band: np.ndarray, method: str, decisions: int, reviewed: np.ndarray
) -> WrongEstimate:
    """Each sample's interval: its band's Beta(a, b) interval moved by the sample's log-odds offset from the band's
    mean (so a sample above its band's mean gets an interval above the band's)."""
    band_mean = a / (a + b)
    low_band, high_band = _beta_interval(a, b)
    offset = _logit(p) - _logit(band_mean[band])
    low = np.minimum(_sigmoid(_logit(low_band[band]) + offset), p)
    high = np.maximum(_sigmoid(_logit(high_band[band]) + offset), p)
    return WrongEstimate(p, low, high, float(p.mean()) if len(p) else 0.0, decisions, reviewed, method)


SHAPES = ("transition", "packaged")
"""Where :func:`estimate_wrong` takes the shape of P(wrong) across samples from (the level is the data's noise rate
either way): ``"transition"`` (default) Bayes' rule with the data's own noise transition
(:func:`true_label_posterior`); ``"packaged"`` the curve fitted once on planted noise (the estimate before issue
24's second round, kept for comparison in ``benchmarks/bench_calibration.py``)."""


def estimate_wrong(
    base: np.ndarray, posterior: np.ndarray, labels: np.ndarray, *, shape: str = "transition"
) -> WrongEstimate:
    """P(wrong) for every sample, estimated on this data alone (no decisions).

    Parameters
    ----------
    base : (N,) the packaged curve's value of each sample's evidence ``1 − π(given)``
        (:meth:`~ogaudit.review.evidence.RunEvidence.p_wrong`): the shape with ``shape="packaged"``, and the
        fallback when the evidence has fewer than two classes.
    posterior : (N, C) the fused ``π``.
    labels : (N,) int given labels.
    shape : one of :data:`SHAPES`.

    Returns
    -------
    :class:`WrongEstimate` with ``decisions == 0``, in two parts:

    * the **level**, the share of wrong labels: :func:`confident_noise_rate` (the confident joint is right where
      the model separates the classes, and measured closer than the EM's own rate there: that EM starts from the
      model's in-sample probabilities, which lean towards the given label, and drifts low). Where the model
      confuses right labels (Fashion-MNIST, the tweets) it counts them as noise, and under instance-dependent
      noise the wrong labels look right to it: no estimator tried reads the level there (an isotonic map of the
      score fitted on the truth would reach ECE ≤ 0.02 on every benchmark audit; the level is what is missing),
      so the interval below, not ``p``, carries what is known;
    * the **shape**, which samples are more likely wrong than others: ``1 − P(true = given | evidence, given)``
      from :func:`true_label_posterior`, so a sample whose evidence splits between its given class and another
      gets about the mass of the other class weighted by how often the annotators confuse the two, not "certainly
      wrong"; moved by one log-odds shift until its mean is the level.

    Each sample's :data:`LEVEL` interval spans what the data cannot yet tell: a Beta prior of :data:`PRIOR_STRENGTH`
    pseudo-decisions per band, taken at the same shape moved to the lowest and to the highest of the noise rates of
    :func:`noise_rates` (each widened by its binomial sampling error). Where those estimators disagree, the
    interval is wide, and beyond :data:`RATE_DISAGREEMENT` every sample reads "not yet calibrated"
    (:attr:`WrongEstimate.calibrated`) until decisions in the "to calibrate" order pin the rate down.
    ``p`` itself stays at the confident joint's rate (the estimator closest on the data where the model separates
    the classes).
    """
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}.")
    base = np.asarray(base, dtype=np.float64)
    if len(base) == 0:
        empty = np.zeros(0)
        return WrongEstimate(empty, empty, empty, 0.0, 0, np.zeros(0, np.int64), "no samples")
    posterior = np.asarray(posterior, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    log_odds, joint = true_label_posterior(posterior, labels) if posterior.shape[1] >= 2 else (None, None)
    rates = noise_rates(posterior, labels, joint=joint) if joint is not None else {}
    rate = confident_noise_rate(posterior, labels)
    if shape == "packaged" or log_odds is None:
        start, how = _logit(base), "the packaged curve's shape moved to it"
    else:
        start = np.clip(log_odds, -60.0, 60.0)
        how = "each sample's share by Bayes' rule with the data's noise transition, moved to it"
    p = _shift_to_mean(base, rate, log_odds=start)
    prior = prior_estimate(
        p, f"estimated on this data: noise rate {rate:.1%} from the confident joint of given and true labels, {how}"
    )
    if not rates:
        return prior
    lowest, highest = rate_bracket(rates, len(p))
    lowest, highest = min(lowest, prior.noise_rate), max(highest, prior.noise_rate)
    low, high = _bracket_bounds(p, prior.low, prior.high, prior.noise_rate, (lowest, highest))
    spread = ", ".join(f"{name} {value:.1%}" for name, value in rates.items())
    method = f"{prior.method}; the rate between {lowest:.1%} and {highest:.1%} ({spread}, with sampling error)"
    return WrongEstimate(
        p,
        low,
        high,
        prior.noise_rate,
        0,
        prior.reviewed,
        method,
        (lowest, highest),
        rates,
        _unsettled(high, prior.high),
    )


def rate_bracket(rates: dict[str, float], n: int) -> tuple[float, float]:
    """The :data:`LEVEL` bracket of the share of wrong labels that ``n`` samples allow, given the noise-rate
    estimators' readings ``rates`` (:func:`noise_rates`).

    Returns ``(lowest, highest)``: the exact (Clopper–Pearson) binomial interval of the lowest reading's count
    ``n · min(rates)`` at its lower end and of the highest reading's count at its upper end (``betaincinv``; real
    counts allowed). Unlike the normal approximation ``r ± z·√(r(1 − r)/n)``, it never collapses where a rate reads
    0: on 80 samples whose every estimator reads 0 (a small set the model memorised, so that its in-sample evidence
    sees no wrong label) the upper end is still 3.7%, i.e. about 3 wrong labels the data cannot rule out, and those
    would be the samples the evidence ranks first (:func:`_bracket_bounds`). Clamped to ``[_EPS, 1 − _EPS]``."""
    from scipy.special import betaincinv

    tail = (1 - LEVEL) / 2
    n = max(int(n), 1)
    low_count = float(np.clip(min(rates.values()), 0.0, 1.0)) * n
    high_count = float(np.clip(max(rates.values()), 0.0, 1.0)) * n
    lowest = float(betaincinv(low_count, n - low_count + 1, tail)) if low_count > 0 else 0.0
    highest = float(betaincinv(high_count + 1, n - high_count, 1 - tail)) if high_count < n else 1.0
    return max(lowest, _EPS), min(highest, 1 - _EPS)


def _bracket_bounds(
    p: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    rate: float,
    rate_range: tuple[float, float],
    open_: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` widened to what a noise rate anywhere in ``rate_range`` allows (:func:`_widen`), and, for the
    samples in ``open_`` ((N,) bool, every sample when None: those whose band lacks the decisions that would pin it),
    ``high`` raised to at least ``p``'s own shape moved to the highest rate (:func:`_shift_to_mean`). Where the rate
    could be higher, the extra wrong labels are the samples the evidence ranks first, not a share of every sample:
    spreading it evenly (``_widen`` alone) left the top of a small memorised set at "<1% (<1%–9%)" when the rate
    might be 9%, and the samples most likely to be those 9% (8 of 80) could be wrong far more often than 9%."""
    low, high = _widen(low, high, rate, rate_range)
    highest = rate_range[1]
    if highest <= rate or len(p) == 0:
        return low, high
    shaped = np.maximum(high, _shift_to_mean(p, highest))
    return low, shaped if open_ is None else np.where(open_, shaped, high)


def _unsettled(high: np.ndarray, band_high: np.ndarray) -> np.ndarray:
    """(N,) bool: where ``high`` (with the noise rate's bracket) leaves less than ``1 −`` :data:`RATE_DISAGREEMENT`
    of the P(right) that ``band_high`` (the band's interval alone) leaves: the per-sample form of
    :attr:`WrongEstimate.disagreement`, which :func:`_widen` alone makes the same for every sample."""
    return (1 - np.asarray(high)) < (1 - RATE_DISAGREEMENT) * (1 - np.asarray(band_high)) - 1e-12


def _widen(low: np.ndarray, high: np.ndarray, rate: float, rate_range: tuple[float, float]):
    """``(low, high)`` widened to what a noise rate anywhere in ``rate_range`` allows, for an estimate whose mean is
    ``rate``: every P(wrong) scaled by ``lowest / rate`` (the lower end), every P(right) by ``(1 − highest) /
    (1 − rate)`` (the upper end). So the bounds' means move by the rate's own uncertainty, the order of samples is
    kept, and :func:`_rate_range_of` reads the range back from the bounds."""
    lowest, highest = rate_range
    down = min(1.0, lowest / rate) if rate > 0 else 1.0
    up = min(1.0, (1 - highest) / (1 - rate)) if rate < 1 else 1.0
    return np.asarray(low) * down, 1 - (1 - np.asarray(high)) * up


def _rate_range_of(p: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[float, float] | None:
    """The noise-rate range that :func:`_widen` put into a table's bounds (``p_wrong_low``, ``p_wrong_high``), read
    back by comparing their means with those of the band prior at ``p`` (:func:`prior_estimate`); None when the
    bounds are the prior's."""
    prior = prior_estimate(p, "")
    rate = float(p.mean())
    base_low, base_high = float(prior.low.mean()), float(prior.high.mean())
    down = float(np.mean(low)) / base_low if base_low > 0 else 1.0
    wanted = float(np.mean(high))
    if down > 1 - 1e-6 and wanted <= base_high + 1e-9:
        return None
    highest = rate
    if wanted > base_high + 1e-9:  # invert _bracket_bounds' upper end: its mean grows with the shift of p's shape
        z = _logit(p)
        lo, hi = 0.0, 40.0
        for _ in range(60):
            mid = (lo + hi) / 2
            shaped = _sigmoid(z + mid)
            _, widened = _widen(prior.low, prior.high, rate, (rate, max(float(shaped.mean()), rate)))
            lo, hi = (mid, hi) if np.maximum(widened, shaped).mean() < wanted else (lo, mid)
        highest = max(float(_sigmoid(z + (lo + hi) / 2).mean()), rate)
    return rate * min(down, 1.0), highest


def prior_estimate(p: np.ndarray, method: str) -> WrongEstimate:
    """``p`` (N,) as a :class:`WrongEstimate` before any decision: each :data:`BANDS` band's interval is that of a
    Beta prior of :data:`PRIOR_STRENGTH` pseudo-decisions at the band's mean."""
    p = np.asarray(p, dtype=np.float64)
    band, bands = _bands(p)
    size = np.bincount(band, minlength=bands)
    mean = np.clip(np.bincount(band, weights=p, minlength=bands) / np.maximum(size, 1), _EPS, 1 - _EPS)
    a, b = PRIOR_STRENGTH * mean, PRIOR_STRENGTH * (1 - mean)
    return _with_intervals(p, a, b, band, method, 0, np.zeros(len(p), np.int64))


def update_with_decisions(estimate: WrongEstimate, rows: np.ndarray, wrong: np.ndarray) -> WrongEstimate:
    """The estimate updated with reviewer decisions.

    Parameters
    ----------
    estimate : a data-level :class:`WrongEstimate` (from :func:`estimate_wrong` or :func:`reviewed_estimate` with no
        decisions; never an updated one: bands are cut on its ``p``).
    rows : (M,) int positions of the decided samples.
    wrong : (M,) bool, True where the reviewer found the label wrong (:data:`WRONG_ACTIONS`), False where kept
        right (:data:`RIGHT_ACTIONS`). Leave ``unsure`` and ``remove`` out.

    Returns
    -------
    A new :class:`WrongEstimate`, in two steps:

    1. When the decisions cover at least :data:`PLATT_BANDS` bands with :data:`PLATT_MIN` decisions each, one of
       them a band whose mean estimate is at most the median one (as the queue's "to calibrate P(wrong)" order
       gives them), a logistic recalibration ``σ(a·logit p + b)`` fitted to them (Platt scaling) with a Gaussian
       prior of :data:`PLATT_PRIOR` on ``(a − 1, b)``: decisions across the range tell the slope as well as the
       level. Decisions from the top of the queue alone do not (they lie in the top few bands, and a slope fitted
       there and carried over the whole range flattened Fashion-MNIST's estimate to ECE 0.25), and skip this step.
    2. Per band, the Beta posterior mean of (a prior of :data:`PRIOR_STRENGTH` pseudo-decisions, three times that
       after step 1, at the band's mean after step 1) + (the band's decisions), made monotone across bands (pool adjacent violators, weighted by
       prior + decisions); each sample's log-odds are interpolated linearly between the bands' (mean, updated
       rate) knots in log-odds, and moved by the end band's shift beyond them, so the order of samples is kept.
    3. Where the estimate carries a noise-rate bracket (:attr:`WrongEstimate.rate_range`), the intervals keep the
       share of it that the bands still short of :data:`PLATT_MIN` decisions (or of all their samples) leave (all of it when no band has
       them, none once step 1 has fitted the level): decisions across the range narrow it, decisions from the top
       of the queue alone hardly do.
    """
    rows = np.asarray(rows, dtype=np.int64)
    wrong = np.asarray(wrong, dtype=bool)
    if len(rows) != len(wrong):
        raise ValueError(f"rows ({len(rows)}) and wrong ({len(wrong)}) must have one entry per decision.")
    if len(rows) == 0:
        return estimate
    band, bands = _bands(estimate.p)
    decided = np.bincount(band[rows], minlength=bands).astype(np.float64)
    p0 = estimate.p
    platt = ""
    covered = decided >= PLATT_MIN
    size = np.bincount(band, minlength=bands)
    below = np.bincount(band, weights=p0, minlength=bands) / np.maximum(size, 1) <= np.median(p0)
    if covered.sum() >= PLATT_BANDS and (covered & below).any():
        a, b = _platt(_logit(p0[rows]), wrong)
        p0 = _sigmoid(a * _logit(p0) + b)
        platt = f", recalibrated as σ({a:.2f}·logit p {b:+.2f})"
    size = np.bincount(band, minlength=bands)
    mean = np.clip(np.bincount(band, weights=p0, minlength=bands) / np.maximum(size, 1), _EPS, 1 - _EPS)
    found = np.bincount(band[rows], weights=wrong.astype(np.float64), minlength=bands)
    strength = PRIOR_STRENGTH * (3 if platt else 1)  # after a fit to these decisions, bands move less
    a_, b_ = strength * mean + found, strength * (1 - mean) + decided - found
    present = size > 0
    posterior = mean.copy()
    posterior[present] = _pool_adjacent((a_ / (a_ + b_))[present], (a_ + b_)[present])
    shift = _logit(posterior) - _logit(mean)
    knots, moved = _logit(mean[present]), _logit(posterior[present])
    z = _logit(p0)
    inside = np.interp(z, knots, moved)  # piecewise linear between monotone knots: the order is kept
    z = np.where(z < knots[0], z + shift[present][0], np.where(z > knots[-1], z + shift[present][-1], inside))
    p = _sigmoid(z)
    weight = a_ + b_
    n = int(len(rows))
    method = f"{estimate.method.split(';')[0]}; updated with {n} reviewer decision{'s' if n != 1 else ''}{platt}"
    updated = _with_intervals(
        p, posterior * weight, (1 - posterior) * weight, band, method, n, decided[band].astype(np.int64)
    )
    if estimate.rate_range is None or platt:  # the level is fitted to decisions across the range
        return updated
    # The noise-rate bracket narrows as the bands fill: what is left of it is the share of bands still short of
    # PLATT_MIN decisions (decisions from the top of the queue alone leave most of it).
    short = decided[present] < np.minimum(PLATT_MIN, size[present])  # a band of 2 samples is full at 2
    left = float(np.mean(short)) if present.any() else 1.0
    rate, (lowest, highest) = estimate.noise_rate, estimate.rate_range
    down = 1 - (1 - (lowest / rate if rate > 0 else 1.0)) * left  # the same shares, around the updated rate
    up = 1 - (1 - ((1 - highest) / (1 - rate) if rate < 1 else 1.0)) * left
    rate = updated.noise_rate
    rate_range = (rate * down, 1 - (1 - rate) * up)
    open_ = (decided < np.minimum(PLATT_MIN, size))[band]  # a band with its decisions keeps its own interval
    low, high = _bracket_bounds(p, updated.low, updated.high, rate, rate_range, open_)
    return WrongEstimate(
        p,
        low,
        high,
        rate,
        n,
        updated.reviewed,
        method,
        rate_range,
        estimate.noise_rates,
        _unsettled(high, updated.high),
    )


PLATT_BANDS = 3
PLATT_MIN = 5
PLATT_PRIOR = 1.0
"""The Gaussian prior's precision on ``(a − 1, b)`` of the logistic recalibration (in log-likelihood units)."""


def _platt(z: np.ndarray, wrong: np.ndarray) -> tuple[float, float]:
    """MAP ``(a, b)`` of ``P(wrong) = σ(a·z + b)`` with the prior :data:`PLATT_PRIOR`; ``a`` kept in [0.05, 5]."""
    from scipy.optimize import minimize

    y = wrong.astype(np.float64)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        a, b = theta
        s = a * z + b
        q = _sigmoid(s)
        value = float(np.sum(np.logaddexp(0.0, s) - y * s) + PLATT_PRIOR * ((a - 1) ** 2 + b**2))
        grad = np.array([np.sum((q - y) * z) + 2 * PLATT_PRIOR * (a - 1), np.sum(q - y) + 2 * PLATT_PRIOR * b])
        return value, grad

    found = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B", bounds=[(0.05, 5.0), (-20.0, 20.0)])
    return float(found.x[0]), float(found.x[1])


def calibration_order(p: np.ndarray, sample_ids) -> np.ndarray:
    """(N,) int position of each sample in the queue's "to calibrate P(wrong)" order: one sample from each band of
    ``p`` in turn (highest band first), in a fixed pseudo-random order within a band (a hash of the sample id), so
    that the first decisions cover the whole range and :func:`update_with_decisions` can fit a slope."""
    import hashlib

    p = np.asarray(p, dtype=np.float64)
    band, bands = _bands(p)
    keys = np.array([int.from_bytes(hashlib.blake2b(str(i).encode(), digest_size=8).digest()) for i in sample_ids])
    within = np.empty(len(p), dtype=np.int64)
    for b in range(bands):
        members = np.flatnonzero(band == b)
        within[members[np.argsort(keys[members], kind="stable")]] = np.arange(len(members))
    order = np.lexsort((bands - 1 - band, within))
    position = np.empty(len(p), dtype=np.int64)
    position[order] = np.arange(len(p))
    return position


def _pool_adjacent(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weighted non-decreasing fit of ``values`` (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [value, weight, count]
    for v, w in zip(values.tolist(), weights.tolist(), strict=True):
        blocks.append([v, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, c2 = blocks.pop()
            v1, w1, c1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    return np.concatenate([np.full(c, v) for v, _, c in blocks])


# ---------------------------------------------------------------- wrong vs ambiguous, and how stable a flag is

AMBIGUOUS_SHARE = 0.25
"""Ambiguous: the model, or the gradient neighbours' votes, give both the given label and one other class at least
this share, and the other view does not give that other class ``1 −`` this share (:func:`ambiguous`)."""
RESAMPLES = 30
STABLE_AT = 0.8
"""A flag is stable when the evidence keeps it in the flagged share in at least this share of the resamples."""


def ambiguous(
    posterior: np.ndarray, probs: np.ndarray, labels: np.ndarray, votes: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Which samples' evidence splits between two plausible classes, one of them the given label.

    Parameters
    ----------
    posterior : (N, C) the fused ``π``; its most likely class other than the given one is the other candidate.
    probs : (N, C) the model's softmax. labels : (N,) int given labels.
    votes : (N, k) int the given labels of each sample's gradient neighbours, or None (the model alone then).

    Returns
    -------
    (is_ambiguous (N,) bool, other (N,) int): ambiguous where one view splits and the other does not contradict
    the split: the model gives both the given label and the other candidate at least :data:`AMBIGUOUS_SHARE` while
    fewer than ``1 − AMBIGUOUS_SHARE`` of the neighbours' votes go to the other candidate, or the neighbours' votes
    split that way (each at least that share) while the model gives the other candidate less than
    ``1 − AMBIGUOUS_SHARE``. Such a sample is shown "ambiguous", not "wrong": the evidence cannot tell the two
    classes apart. A split in one view that the other view settles is not ambiguous: with two classes a weak model
    splits on almost every sample (30% / 70%), and a flag whose neighbours vote 19 of 20 for the other class is a
    wrong label, not an ambiguous one (a new user's trial: every real error of a 100-row binary text table read
    "ambiguous" under the rule without that veto). Neither is a sample the model fits to its given label while all
    its neighbours carry another (a memorised wrong label): each view is sure, they just disagree. Measured on the
    13 cached audits (docs/BENCHMARKS.md, "Calibration"; ``benchmarks/bench_ambiguous.py``): of the flagged, the
    rule without the veto called 22 samples "ambiguous", 21 of them true errors; with it, one (a correct label),
    and the tweets' 5 flagged "ambiguous" are 40% low-agreement against 18% of the others. Without neighbours
    (``votes`` None) the model's split alone decides.
    """
    posterior = np.asarray(posterior, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    rows = np.arange(n)
    if n == 0:
        return np.zeros(0, bool), np.zeros(0, np.int64)
    others = posterior.copy()
    others[rows, labels] = -np.inf
    other = others.argmax(axis=1)
    model_other = probs[rows, other]
    split = (probs[rows, labels] >= AMBIGUOUS_SHARE) & (model_other >= AMBIGUOUS_SHARE)
    if votes is not None and np.asarray(votes).shape[1] > 0:
        votes = np.asarray(votes, dtype=np.int64)
        k = votes.shape[1]
        share_given = (votes == labels[:, None]).sum(axis=1) / k
        share_other = (votes == other[:, None]).sum(axis=1) / k
        sure = 1.0 - AMBIGUOUS_SHARE
        split = (split & (share_other < sure)) | (
            (share_given >= AMBIGUOUS_SHARE) & (share_other >= AMBIGUOUS_SHARE) & (model_other < sure)
        )
    return split, other


def flag_stability(
    probs: np.ndarray,
    labels: np.ndarray,
    neighbours: np.ndarray,
    flagged: np.ndarray,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> np.ndarray:
    """How often the evidence keeps each flagged sample in the flagged share when its neighbours are resampled.

    Parameters
    ----------
    probs : (N, C) softmax. labels : (N,) int given labels.
    neighbours : (N, k) positions of each sample's gradient neighbours.
    flagged : (N,) bool, the flags of the run.

    Returns
    -------
    (N,) float: for a flagged sample, the share of ``resamples`` bootstrap resamples of its ``k`` neighbours (with
    replacement) in which ``1 − π(given)`` stays at or above the cut that puts as many samples in the flagged share
    as the run flagged (the cut taken on the unresampled evidence); NaN for samples not flagged. At least
    :data:`STABLE_AT` reads "stable". A flag the detector raised but the evidence does not back reads unstable too.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    flagged = np.asarray(flagged, dtype=bool)
    n, c = probs.shape
    out = np.full(n, np.nan)
    rows = np.flatnonzero(flagged)
    neighbours = np.asarray(neighbours, dtype=np.int64)
    if len(rows) == 0:
        return out
    k = neighbours.shape[1]
    if k == 0:
        return out

    def raw_of(votes_of: np.ndarray, which: np.ndarray) -> np.ndarray:
        flat = np.repeat(np.arange(len(which)) * c, votes_of.shape[1]) + votes_of.ravel()
        counts = np.bincount(flat, minlength=len(which) * c).reshape(len(which), c).astype(np.float64)
        fused = probs[which] * (counts + 1.0)
        fused /= np.maximum(fused.sum(axis=1, keepdims=True), 1e-300)
        return 1.0 - fused[np.arange(len(which)), labels[which]]

    everyone = raw_of(labels[neighbours], np.arange(n))
    cut = np.sort(everyone)[::-1][len(rows) - 1]
    rng = np.random.default_rng(seed)
    votes = labels[neighbours[rows]]  # (b, k)
    kept = np.zeros(len(rows))
    for _ in range(resamples):
        pick = rng.integers(0, k, size=votes.shape)
        kept += raw_of(np.take_along_axis(votes, pick, axis=1), rows) >= cut - 1e-12
    out[rows] = kept / resamples
    return out


CHECKPOINTS_FROM = 0.5
"""The checkpoints :func:`checkpoint_stability` counts: the epochs from this share of training on (the second
half). Early epochs are left out because every sample's margin is low before the model has learnt the classes:
a flag "kept" there says little about the sample. Chosen in ``benchmarks/bench_stability.py`` (docs/BENCHMARKS.md,
"Calibration"): on 12 planted-noise audits it predicted best whether a training with another seed flags the
sample again (mean AUROC 0.764; every epoch 0.747, the last 20% 0.715). It does not tell right flags from wrong
ones (neither does :func:`flag_stability`): it says whether the verdict may flip."""
MIN_CHECKPOINTS = 3
"""Fewer counted checkpoints than this (a training of under 6 epochs) say too little: the neighbours' resampling is
used instead."""
CHECKPOINT_SLACK = 1.0
"""A checkpoint keeps a flag when the sample is among ``CHECKPOINT_SLACK × m`` samples with the lowest margin at
that checkpoint, ``m`` being the number the run flagged (twice that predicted "flagged again" worse: AUROC
0.63–0.70)."""


def checkpoint_epochs(epochs: int, *, start: float = CHECKPOINTS_FROM) -> np.ndarray:
    """(R,) the 0-based epochs :func:`checkpoint_stability` counts out of ``epochs``: from
    ``floor(start · epochs)`` to the last, at least the last one (R ≥ 1 for ``epochs`` ≥ 1)."""
    if epochs < 1:
        return np.zeros(0, dtype=np.int64)
    return np.arange(min(int(np.floor(start * epochs)), epochs - 1), epochs, dtype=np.int64)


def checkpoint_stability(
    margins: np.ndarray,
    flagged: np.ndarray,
    *,
    start: float = CHECKPOINTS_FROM,
    slack: float = CHECKPOINT_SLACK,
) -> np.ndarray:
    """How often each flagged sample was in the flagged share at the checkpoints of its own training.

    Parameters
    ----------
    margins : (E, N) the logit margin of the given label at each epoch of training, ``z_y − max_{k≠y} z_k``
        (:attr:`ogaudit.models.training.Trajectory.margins`): each checkpoint's own evidence, lower = more suspect.
    flagged : (N,) bool, the flags of the run (``m`` of them).
    start : the share of training from which checkpoints count (:func:`checkpoint_epochs`; default the second
        half, :data:`CHECKPOINTS_FROM`). slack : a checkpoint keeps the flag when the sample is among the
        ``ceil(slack · m)`` lowest margins at that epoch (:data:`CHECKPOINT_SLACK`).

    Returns
    -------
    (N,) float in [0, 1]: for a flagged sample, the share of the counted checkpoints that would have flagged it
    too; NaN for samples not flagged, and everywhere when ``margins`` has no epoch. At least :data:`STABLE_AT` reads
    "stable". One pass over (R, N) arrays (a partition per checkpoint), no loop over samples.
    Raises ValueError when ``margins`` is not (E, N) with N the length of ``flagged``.
    """
    margins = np.asarray(margins, dtype=np.float64)
    flagged = np.asarray(flagged, dtype=bool)
    if margins.ndim != 2 or margins.shape[1] != len(flagged):
        raise ValueError(f"margins have shape {margins.shape}, not (epochs, {len(flagged)})")
    n = len(flagged)
    out = np.full(n, np.nan)
    m = int(flagged.sum())
    epochs = checkpoint_epochs(margins.shape[0], start=start)
    if m == 0 or len(epochs) == 0:
        return out
    counted = margins[epochs]  # (R, N)
    keep = min(n, max(m, int(np.ceil(slack * m))))
    cut = np.partition(counted, keep - 1, axis=1)[:, keep - 1]  # (R,) the keep-th lowest margin per checkpoint
    kept = counted[:, flagged] <= cut[:, None]  # (R, m)
    out[flagged] = kept.mean(axis=0)
    return out


def stability_text(share: float, basis: str, of: float) -> tuple[str, str] | None:
    """The review card's line for a flag's stability and its help, or None when the sample has none (not
    flagged, or an older run's table without a basis and no share).

    ``share`` the table's ``flag_stability``, ``basis`` its ``flag_stability_basis`` (``"checkpoints"``,
    ``"neighbours"``, or ``""`` in a run written before the basis was recorded: its stability came from the
    neighbours), ``of`` its ``flag_stability_of`` (NaN in such a run: :data:`RESAMPLES`).
    E.g. ``"stable flag: 4 of the last 5 checkpoints of its training would flag it too"``; at 0 the line says that
    only the final evidence flags it (a new user read "flagged at 0 of …" on a flagged card as a contradiction)."""
    if share != share:
        return None
    stable = "stable" if share >= STABLE_AT else "unstable"
    if basis == "checkpoints":
        count = int(of) if of == of else 0
        kept = round(share * count)
        said = (
            f"none of the last {count} checkpoints of its training would flag it; only the final model and its "
            "neighbours do"
            if kept == 0
            else f"{kept} of the last {count} checkpoints of its training would flag it too"
        )
        return (
            f"{stable} flag: {said}",
            "At each epoch of the second half of training, was the sample among the lowest margins of its given "
            f"label, as many as the run flagged? {STABLE_AT:.0%} or more of those checkpoints reads stable. It says "
            "whether the verdict may flip, not whether the label is wrong: in the benchmarks 89% of stable flags "
            "were flagged again by a training with another seed, 58% of unstable ones.",
        )
    count = int(of) if of == of else RESAMPLES
    return (
        f"{stable} flag: kept in {round(share * count)} of {count} resamples of its gradient neighbours",
        "How often the evidence still puts the sample in the flagged share when its neighbours are drawn again "
        f"with replacement; {STABLE_AT:.0%} or more reads stable. It says whether the verdict may flip, not "
        "whether the label is wrong. (The model was not trained here, or too briefly, so there are no "
        "checkpoints to compare.)",
    )


def evidence_columns(
    base: np.ndarray,
    posterior: np.ndarray,
    probs: np.ndarray,
    labels: np.ndarray,
    neighbours: np.ndarray | None,
    flagged: np.ndarray,
    *,
    seed: int = 0,
    margins: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The score table's columns from the evidence: ``p_wrong``, ``p_wrong_low``, ``p_wrong_high``
    (:func:`estimate_wrong` from ``base``, the packaged curve's values), ``ambiguous`` (:func:`ambiguous`), and the
    flags' stability:

    * ``flag_stability`` (N,) float in [0, 1], NaN where not flagged: with ``margins`` ((E, N), the training's
      per-epoch margins of the given label, when ogaudit trained the model, and at least :data:`MIN_CHECKPOINTS`
      of them counted), the share of the checkpoints of the second half of training that flag the sample too
      (:func:`checkpoint_stability`); without them (a user's model, predictions only, or too short a training)
      the share of :data:`RESAMPLES` resamples of its gradient neighbours that keep it flagged
      (:func:`flag_stability`); NaN everywhere with neither.
    * ``flag_stability_basis`` (N,) str: ``"checkpoints"`` or ``"neighbours"`` where flagged, ``""`` elsewhere.
    * ``flag_stability_of`` (N,) float: how many checkpoints or resamples the share counts, NaN where not flagged.
    """
    estimate = estimate_wrong(base, posterior, labels)
    votes = None if neighbours is None else np.asarray(labels)[np.asarray(neighbours, dtype=np.int64)]
    is_ambiguous, _ = ambiguous(posterior, probs, labels, votes)
    n = len(labels)
    flagged = np.asarray(flagged, dtype=bool)
    margins = None if margins is None or np.asarray(margins).ndim != 2 else np.asarray(margins)
    counted = 0 if margins is None else len(checkpoint_epochs(margins.shape[0]))
    if margins is not None and counted >= MIN_CHECKPOINTS:
        stability = checkpoint_stability(margins, flagged)
        basis, count = "checkpoints", counted
    elif neighbours is not None:
        stability = flag_stability(probs, labels, neighbours, flagged, seed=seed)
        basis, count = "neighbours", RESAMPLES
    else:
        stability, basis, count = np.full(n, np.nan), "", 0
    known = ~np.isnan(stability)
    return {
        **estimate.columns(),
        "ambiguous": is_ambiguous,
        "flag_stability": stability,
        "flag_stability_basis": np.where(known, basis, ""),
        "flag_stability_of": np.where(known, float(count), np.nan),
    }


def reviewed_estimate(table, decisions) -> WrongEstimate | None:
    """The data-level estimate in a run's table (its ``p_wrong`` columns) updated with the review's decisions.

    ``table`` is the run's score table (``sample_id``, ``p_wrong``, ``p_wrong_low``, ``p_wrong_high``), ``decisions``
    :meth:`~ogaudit.review.ledger.Ledger.state` (``sample_id``, ``action``). None when the table has no
    ``p_wrong`` (a run written before it was estimated on the data)."""
    if "p_wrong" not in table.columns or "p_wrong_low" not in table.columns:
        return None
    import pandas as pd

    read = {c: pd.to_numeric(table[c], errors="coerce").to_numpy(np.float64) for c in ("p_wrong_low", "p_wrong_high")}
    p = pd.to_numeric(table["p_wrong"], errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(p).any() or not ((p >= 0) & (p <= 1)).all():  # an edited or damaged table: no estimate
        return None
    prior = prior_estimate(p, "estimated on this data")
    low = np.where(np.isnan(read["p_wrong_low"]), prior.low, read["p_wrong_low"])
    high = np.where(np.isnan(read["p_wrong_high"]), prior.high, read["p_wrong_high"])
    rate_range = _rate_range_of(p, low, high)
    unsettled = _unsettled(high, prior.high) if rate_range is not None else None
    prior = WrongEstimate(
        p, low, high, prior.noise_rate, 0, prior.reviewed, prior.method, rate_range, unsettled=unsettled
    )
    if decisions is None or len(decisions) == 0:
        return prior
    position = {sample_id: i for i, sample_id in enumerate(table["sample_id"].astype(str).tolist())}
    decided = decisions[decisions["action"].isin(WRONG_ACTIONS + RIGHT_ACTIONS)]
    decided = decided[decided["sample_id"].astype(str).isin(position)]
    rows = np.array([position[str(i)] for i in decided["sample_id"]], dtype=np.int64)
    wrong = decided["action"].isin(WRONG_ACTIONS).to_numpy()
    undecided = int((~table["sample_id"].astype(str).isin(set(decisions["sample_id"].astype(str)))).sum())
    return replace(update_with_decisions(prior, rows, wrong), undecided=undecided)
