"""P(wrong) estimated on the data at hand and updated by decisions; wrong vs ambiguous; how stable a flag is."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from ogaudit.detectors.scoring import score_table
from ogaudit.project import Project
from ogaudit.review import calibration
from ogaudit.review.calibration import (
    PLATT_MIN,
    RATE_DISAGREEMENT,
    STABLE_AT,
    ambiguous,
    calibration_order,
    checkpoint_epochs,
    checkpoint_stability,
    confident_noise_rate,
    estimate_wrong,
    evidence_columns,
    flag_stability,
    mixture_noise_rate,
    noise_rates,
    prior_estimate,
    rate_bracket,
    reviewed_estimate,
    stability_text,
    true_label_posterior,
    update_with_decisions,
)
from ogaudit.review.evidence import SampleEvidence, expected_calibration_error, interval_coverage, percent
from ogaudit.review.queue import CALIBRATE, QueueFilter, filter_queue


def _noisy_posterior(n=4000, c=5, rate=0.2, seed=0, sharp=4.0):
    """A clean-label posterior (the true class's logit raised by ``sharp``) and labels with ``rate`` symmetric
    noise: (posterior, given, wrong)."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, c, n)
    logits = rng.normal(0, 1, (n, c))
    logits[np.arange(n), true] += sharp
    posterior = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    given = true.copy()
    flip = rng.random(n) < rate
    given[flip] = (true[flip] + rng.integers(1, c, flip.sum())) % c
    return posterior, given, given != true


def test_the_confident_joint_finds_the_noise_rate():
    for rate in (0.1, 0.3):
        posterior, given, wrong = _noisy_posterior(rate=rate)
        assert confident_noise_rate(posterior, given) == pytest.approx(wrong.mean(), abs=0.03)
    clean, given, _ = _noisy_posterior(rate=0.0)
    assert confident_noise_rate(clean, given) < 0.02


def test_the_estimate_keeps_the_order_matches_the_rate_and_brackets_itself():
    posterior, given, wrong = _noisy_posterior()
    base = 1 - posterior[np.arange(len(given)), given]  # any monotone start
    for shape in ("transition", "packaged"):
        estimate = estimate_wrong(base, posterior, given, shape=shape)
        assert estimate.noise_rate == pytest.approx(confident_noise_rate(posterior, given), abs=1e-3)
        order = np.argsort(base if shape == "packaged" else true_label_posterior(posterior, given)[0])
        assert (np.diff(estimate.p[order]) >= -1e-12).all()
        assert (estimate.low <= estimate.p + 1e-12).all() and (estimate.p <= estimate.high + 1e-12).all()
        assert estimate.decisions == 0 and not estimate.reviewed.any()
        assert expected_calibration_error(estimate.p, wrong) < 0.05
    with pytest.raises(ValueError, match="shape must be one of"):
        estimate_wrong(base, posterior, given, shape="isotonic")


def test_the_rate_estimators_find_planted_symmetric_noise_and_agree_there():
    posterior, given, wrong = _noisy_posterior(rate=0.3)
    rates = noise_rates(posterior, given)
    assert set(rates) == set(calibration.RATE_ESTIMATORS)
    assert rates["confident joint"] == pytest.approx(wrong.mean(), abs=0.02)
    assert rates["mixture"] == pytest.approx(wrong.mean(), abs=0.02)
    assert wrong.mean() - 0.1 < rates["transition EM"] < wrong.mean()  # it runs low (docs/BENCHMARKS.md)
    assert mixture_noise_rate(posterior[:1], given[:1]) == 0.0
    estimate = estimate_wrong(1 - posterior[np.arange(len(given)), given], posterior, given)
    lowest, highest = estimate.rate_range
    assert lowest <= min(rates.values()) and highest >= max(rates.values())
    assert estimate.disagreement <= RATE_DISAGREEMENT and estimate.calibrated.mean() > 0.9  # all but the middle
    assert estimate.to_calibrate == 0 or not estimate.calibrated.all()


def _disagreeing():
    """Planted 20% symmetric noise on blurred evidence, whose rate the estimators get wrong and disagree on, as on
    Fashion-MNIST (the confident joint 0.28, the EM 0.07, the mixture 0.23): (estimate, posterior, given, wrong)."""
    posterior, given, wrong = _noisy_posterior(n=6000, seed=1, sharp=2.0)
    estimate = estimate_wrong(1 - posterior[np.arange(len(given)), given], posterior, given)
    return estimate, posterior, given, wrong


def test_intervals_span_the_noise_rate_when_its_estimators_disagree():
    estimate, posterior, given, wrong = _disagreeing()
    prior = prior_estimate(estimate.p, "the band prior alone")  # the intervals before this change
    rates = estimate.noise_rates
    assert rates["confident joint"] > 0.25 and rates["transition EM"] < 0.1  # 0.2 planted
    assert estimate.noise_rate == pytest.approx(rates["confident joint"], abs=1e-3) and np.allclose(estimate.p, prior.p)
    lowest, highest = estimate.rate_range
    assert lowest < min(rates.values()) and highest > max(rates.values())  # with the sampling error
    assert estimate.low.mean() <= lowest + 1e-9 and estimate.high.mean() >= highest - 1e-9
    assert (estimate.low <= prior.low + 1e-12).all() and (estimate.high >= prior.high - 1e-12).all()
    assert interval_coverage(prior.p, prior.low, prior.high, wrong) < 0.8  # too narrow where the level is off
    assert interval_coverage(estimate.p, estimate.low, estimate.high, wrong) >= 0.9
    assert estimate.disagreement > RATE_DISAGREEMENT and not estimate.calibrated.any()
    assert estimate.to_calibrate >= PLATT_MIN * 3

    card = SampleEvidence(
        **dict(position=0, given=0, probs=posterior[0], posterior=posterior[0], counterfactual=None),
        **dict(neighbours=np.zeros(0, int), cosines=np.zeros(0), neighbour_labels=np.zeros(0, int)),
        **dict(raw_wrong=0.9, p_wrong=0.9, p_wrong_low=0.4, p_wrong_high=0.995, calibrated=False),
        to_calibrate=estimate.to_calibrate,
    )
    text = card.wrong_text()
    assert text.startswith("not yet calibrated: between 40% and >99%")
    assert f"decide ~{estimate.to_calibrate} samples in the '{CALIBRATE}' order" in text
    # the decisions behind the range are said with the range, not after the advice on what to decide next
    # ("... to pin it down, from 1 decision on similar scores" read as if the advice came from a decision)
    reviewed = replace(card, reviewed=1).wrong_text()
    assert reviewed.startswith("not yet calibrated: between 40% and >99% likely that the given label is wrong, from 1 ")
    assert reviewed.endswith("order to pin it down")
    settled = replace(card, reviewed=3, calibrated=True).wrong_text()
    assert settled == "90% likely that the given label is wrong (40%–>99%), from 3 decisions on similar scores"


def test_the_bracket_survives_the_table_and_narrows_as_decisions_arrive():
    estimate, _, _, wrong = _disagreeing()
    ids = np.arange(len(wrong)).astype(str)
    table = pd.DataFrame({"sample_id": ids, **estimate.columns()})
    read = reviewed_estimate(table, None)  # what the cards start from: the three columns only
    removed = pd.DataFrame({"sample_id": ids[:8], "action": "remove"})  # "remove": the sample goes, not its label
    assert reviewed_estimate(table, removed).decisions == 0
    confirmed = removed.assign(action="confirm")
    assert reviewed_estimate(table, confirmed).decisions == 8
    assert read.rate_range == pytest.approx(estimate.rate_range, abs=1e-6)
    assert (read.calibrated == estimate.calibrated).all() and read.to_calibrate == estimate.to_calibrate

    top = np.argsort(-estimate.p, kind="stable")[:60]  # the top of the queue: the level stays unknown
    from_top = update_with_decisions(estimate, top, wrong[top])
    assert from_top.disagreement > RATE_DISAGREEMENT and not from_top.calibrated.any()
    assert from_top.to_calibrate < estimate.to_calibrate

    order = np.argsort(calibration_order(estimate.p, ids), kind="stable")
    widths = []
    for count in (10, 40, 150):
        rows = order[:count]
        updated = update_with_decisions(estimate, rows, wrong[rows])
        widths.append(float((updated.high - updated.low).mean()))
    assert widths[0] > widths[1] > widths[2]
    assert updated.disagreement == 0 and updated.calibrated.mean() > 0.9 and updated.to_calibrate == 0
    rest = np.setdiff1d(np.arange(len(wrong)), rows)
    assert expected_calibration_error(updated.p[rest], wrong[rest]) < expected_calibration_error(estimate.p, wrong)


def test_the_rate_bracket_never_collapses_where_the_rate_reads_zero():
    # exact binomial (Clopper-Pearson) ends: 0 of 80 still allows 1 - 0.05^(1/80) = 3.7% at the 90% level
    assert rate_bracket({"a": 0.0, "b": 0.0}, 80)[1] == pytest.approx(1 - 0.05 ** (1 / 80), rel=1e-6)
    assert rate_bracket({"a": 0.0}, 80)[0] == pytest.approx(1e-4)  # the floor, not 0
    lowest, highest = rate_bracket({"a": 0.2, "b": 0.3}, 3000)  # where the normal approximation holds, it agrees
    half = 1.6449 * np.sqrt(0.2 * 0.8 / 3000), 1.6449 * np.sqrt(0.3 * 0.7 / 3000)
    assert lowest == pytest.approx(0.2 - half[0], abs=2e-3) and highest == pytest.approx(0.3 + half[1], abs=2e-3)
    assert rate_bracket({"a": 1.0}, 10)[1] == pytest.approx(1 - 1e-4)


def _memorised(n=80, seed=0):
    """A small two-class set a model memorised: 6 of 80 labels flipped, every given label at 0.97-0.999 (its
    in-sample probabilities), features that still carry the true class: (features, probs, given, wrong)."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 2, n)
    features = rng.normal(0, 1, (n, 32))
    features[:, 0] += 2 * (2 * true - 1)
    given = true.copy()
    flip = rng.choice(n, 6, replace=False)
    given[flip] = 1 - given[flip]
    confidence = rng.uniform(0.97, 0.999, n)
    probs = np.empty((n, 2))
    probs[np.arange(n), given], probs[np.arange(n), 1 - given] = confidence, 1 - confidence
    return features, probs, given, given != true


def test_a_small_memorised_set_reads_not_yet_calibrated_not_under_one_percent():
    import ogaudit

    features, probs, given, _ = _memorised()
    table = ogaudit.score(features, probs, given)  # what an audit writes in scores.csv
    estimate = reviewed_estimate(table, None)  # what the cards read from it
    flagged = table["flagged"].to_numpy()
    lowest, highest = estimate.rate_range
    assert estimate.noise_rate < 0.01 and highest > 0.05  # every estimator reads ~0; the data cannot rule out 5%
    assert estimate.disagreement > RATE_DISAGREEMENT and not estimate.calibrated.any()
    top = int(np.argmin(table["rank"].to_numpy()))
    assert estimate.high[top] > 0.3 > estimate.high[~flagged].min()  # the extra wrong labels sit at the top
    card = SampleEvidence(
        **dict(position=top, given=int(given[top]), probs=probs[top], posterior=probs[top], counterfactual=None),
        **dict(neighbours=np.zeros(0, int), cosines=np.zeros(0), neighbour_labels=np.zeros(0, int)),
        **dict(raw_wrong=0.01, p_wrong=estimate.p[top], p_wrong_low=estimate.low[top]),
        **dict(p_wrong_high=estimate.high[top], calibrated=False, to_calibrate=estimate.to_calibrate),
    )
    assert card.wrong_text().startswith("not yet calibrated: between <1% and ")


def test_decide_never_asks_for_more_samples_than_are_left():
    features, probs, given, wrong = _memorised()
    direct = estimate_wrong(probs[np.arange(len(given)), 1 - given], probs, given)
    ids = np.array([f"s{i}" for i in range(len(given))])
    table = pd.DataFrame({"sample_id": ids, **direct.columns()})
    fresh = reviewed_estimate(table, None)
    # the table's bounds carry the bracket (its upper end shaped by the evidence): the cards read back the same
    assert fresh.rate_range == pytest.approx(direct.rate_range, rel=1e-4) and direct.rate_range[1] > 0.05
    assert (fresh.calibrated == direct.calibrated).all() and fresh.to_calibrate == direct.to_calibrate
    assert 0 < fresh.to_calibrate <= len(ids) and not fresh.too_few_to_calibrate
    removed = pd.DataFrame({"sample_id": ids[:72], "action": "remove"})  # 8 samples left to decide
    late = reviewed_estimate(table, removed)
    assert late.left_to_decide == 8 and late.to_calibrate <= 8 and late.too_few_to_calibrate
    card = SampleEvidence(
        **dict(position=0, given=0, probs=probs[0], posterior=probs[0], counterfactual=None),
        **dict(neighbours=np.zeros(0, int), cosines=np.zeros(0), neighbour_labels=np.zeros(0, int)),
        **dict(raw_wrong=0.5, p_wrong=0.3, p_wrong_low=0.01, p_wrong_high=0.8, calibrated=False),
        to_calibrate=late.to_calibrate,
        too_few_to_calibrate=late.too_few_to_calibrate,
    )
    text = card.wrong_text()
    assert "too few samples to calibrate: the range is what the data allows" in text and "decide ~" not in text
    tiny = prior_estimate(np.linspace(0.1, 0.9, 12), "")  # 12 samples, all of them needed: too few from the start
    tiny = calibration.WrongEstimate(tiny.p, tiny.p * 0, tiny.p * 0 + 1, 0.5, 0, tiny.reviewed, "")
    assert tiny.to_calibrate == 12 and tiny.too_few_to_calibrate


def test_interval_coverage_counts_the_samples_of_bins_whose_rate_is_inside():
    p = np.array([0.05, 0.05, 0.95, 0.95])
    outcome = np.array([0, 0, 1, 0])  # bin of 0.05: 0 observed; bin of 0.95: 0.5 observed
    assert interval_coverage(p, p - 0.05, p + 0.05, outcome) == 0.5
    assert interval_coverage(p, np.zeros(4), np.ones(4), outcome) == 1.0
    assert interval_coverage(p, p, p, outcome) == 0.0


def _pair_noise(n=6000, c=4, rate=0.3, seed=1):
    """Classes 0 and 1 overlap (a clean sample of either may look like both); 0 is mislabelled 1 at ``rate`` and
    nothing else is mislabelled: (posterior, given, wrong, overlap) with ``overlap`` (N,) the samples the evidence
    splits evenly between 0 and 1."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, c, n)
    logits = rng.normal(0, 0.5, (n, c))
    logits[np.arange(n), true] += 5
    overlap = (true < 2) & (rng.random(n) < 0.2)
    logits[overlap, 0] = logits[overlap, 1] = 5.0  # the evidence cannot tell 0 from 1 here
    posterior = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    given = true.copy()
    flip = (true == 0) & (rng.random(n) < rate)
    given[flip] = 1
    return posterior, given, given != true, overlap


def test_the_noise_transition_is_learnt_from_the_data():
    posterior, given, wrong, _ = _pair_noise()
    log_odds, joint = true_label_posterior(posterior, given)
    transition = joint / joint.sum(0, keepdims=True)  # P(given i | true j)
    assert transition[1, 0] == pytest.approx(0.3, abs=0.05)  # 0 → 1 at 30%: the only confusion there is
    assert transition[0, 1] < 0.02 and transition[2, 3] < 0.02 and transition[3, 2] < 0.02
    assert joint.sum() - np.trace(joint) == pytest.approx(wrong.mean(), abs=0.02)
    assert np.isfinite(log_odds).all()


def test_the_transition_em_matches_a_plain_loop():
    posterior, given, _, _ = _pair_noise(n=300, c=4)
    log_odds, joint = true_label_posterior(posterior, given, iterations=5)
    n, c = posterior.shape
    smooth = 1.0 / n  # JOINT_PSEUDOCOUNT
    slow = np.zeros((c, c))  # the confident joint, one sample at a time
    thresholds = [np.mean([posterior[k, j] for k in range(n) if given[k] == j]) for j in range(c)]
    for k in range(n):
        above = [j for j in range(c) if posterior[k, j] >= thresholds[j] - 1e-12]
        if above:
            slow[given[k], max(above, key=lambda j: posterior[k, j])] += 1
    counts = np.bincount(given, minlength=c)
    slow = slow / slow.sum(1, keepdims=True) * counts[:, None] / n
    for _ in range(5):
        transition = (slow + smooth) / (slow + smooth).sum(0, keepdims=True)
        slow = np.zeros((c, c))
        for k in range(n):
            weights = [posterior[k, j] * transition[given[k], j] for j in range(c)]
            for j in range(c):
                slow[given[k], j] += weights[j] / sum(weights) / n
    transition = (slow + smooth) / (slow + smooth).sum(0, keepdims=True)
    for k in range(n):
        weights = [posterior[k, j] * transition[given[k], j] for j in range(c)]
        right = weights[given[k]]
        assert log_odds[k] == pytest.approx(np.log(sum(weights) - right) - np.log(right), abs=1e-6)
    assert np.allclose(joint, slow, atol=1e-12)


def test_an_ambiguous_sample_is_as_likely_wrong_as_the_confusions_of_its_label_say():
    posterior, given, wrong, overlap = _pair_noise()
    estimate = estimate_wrong(1 - posterior[np.arange(len(given)), given], posterior, given)
    # evidence split evenly between 0 and 1: given "0", it is right (0 is never written for a 1); given "1", it is
    # wrong about as often as a true 0 is written "1" among the 1s that look like a 0 (here 0.3·½ / (0.3·½ + ½))
    given_0, given_1 = overlap & (given == 0), overlap & (given == 1)
    assert estimate.p[given_0].mean() < 0.1 and wrong[given_0].mean() == 0
    assert estimate.p[given_1].mean() == pytest.approx(wrong[given_1].mean(), abs=0.1)
    assert 0.1 < estimate.p[given_1].mean() < 0.5  # not "certainly wrong"
    assert expected_calibration_error(estimate.p, wrong) < 0.05


def test_decisions_in_calibration_order_fix_a_miscalibrated_estimate():
    befores, afters = [], []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        n = 3000
        estimate_p = np.clip(rng.beta(0.4, 2.0, n), 1e-3, 1 - 1e-3)
        z = np.log(estimate_p / (1 - estimate_p))
        wrong = rng.random(n) < 1 / (1 + np.exp(-(0.5 * z - 1.0)))  # the estimate is over-confident and too high
        estimate = prior_estimate(estimate_p, "a synthetic estimate")
        rows = np.argsort(calibration_order(estimate.p, np.arange(n).astype(str)), kind="stable")[:100]
        assert len(set(rows)) == 100
        updated = update_with_decisions(estimate, rows, wrong[rows])
        rest = np.setdiff1d(np.arange(n), rows)
        befores.append(expected_calibration_error(estimate.p[rest], wrong[rest]))
        afters.append(expected_calibration_error(updated.p[rest], wrong[rest]))
        assert updated.decisions == 100 and "updated with 100 reviewer decisions" in updated.method
        assert (np.diff(updated.p[np.argsort(estimate.p)]) >= -1e-9).all()  # the order of samples is kept
        assert np.median(updated.high - updated.low) < np.median(estimate.high - estimate.low)
    assert np.mean(afters) < 0.6 * np.mean(befores) and np.mean(afters) < 0.05, (befores, afters)


def test_decisions_from_the_top_move_the_top_band_only():
    p = np.linspace(0.001, 0.999, 1000)
    estimate = prior_estimate(p, "a synthetic estimate")
    top = np.argsort(-estimate.p)[:50]
    kept_right = update_with_decisions(estimate, top, np.zeros(50, dtype=bool))  # every one was right
    assert kept_right.p[top].mean() < estimate.p[top].mean() - 0.3
    low = np.argsort(estimate.p)[:300]
    assert np.allclose(kept_right.p[low], estimate.p[low], atol=0.02)
    # decisions over the upper bands: enough per band for a slope, but none in the lower half to carry it down
    upper = np.flatnonzero(estimate.p > 0.55)[::4]
    half = update_with_decisions(estimate, upper, np.arange(len(upper)) % 2 == 0)
    assert "recalibrated" not in half.method
    assert np.allclose(half.p[low], estimate.p[low], atol=0.02)
    assert update_with_decisions(estimate, [], []) is estimate
    with pytest.raises(ValueError, match="one entry per decision"):
        update_with_decisions(estimate, [1, 2], [True])


def test_wrong_vs_ambiguous():
    probs = np.array(
        [
            [0.50, 0.45, 0.05],  # the model splits between the given 0 and 1
            [0.95, 0.03, 0.02],  # the model is sure of 0, the neighbours all say 1: a memorised wrong label
            [0.90, 0.05, 0.05],  # the model is sure; the neighbours split between 0 and 2
            [0.05, 0.50, 0.45],  # a split that leaves out the given 0: wrong, not ambiguous
        ]
    )
    votes = np.array([[0] * 10, [1] * 10, [0] * 5 + [2] * 5, [1] * 5 + [2] * 5])
    posterior = probs * (np.stack([np.bincount(v, minlength=3) for v in votes]) + 1)
    posterior /= posterior.sum(1, keepdims=True)
    split, other = ambiguous(posterior, probs, np.zeros(4, dtype=np.int64), votes)
    assert split.tolist() == [True, False, True, False]
    assert other[0] == 1 and other[2] == 2


def test_a_split_that_the_other_view_settles_is_wrong_not_ambiguous():
    """A binary text table's weak model splits 30/70 on a flipped review; its neighbours vote 19 of 20 for the other
    class: a wrong label (a new user's trial read every real error there as 'ambiguous'). The mirror case: the
    neighbours split, the model is sure of the other class."""
    probs = np.array([[0.30, 0.70], [0.45, 0.55], [0.10, 0.90], [0.45, 0.55]])
    votes = np.array([[0] + [1] * 19, [0] * 10 + [1] * 10, [0] * 10 + [1] * 10, [0] * 12 + [1] * 8])
    posterior = probs * (np.stack([np.bincount(v, minlength=2) for v in votes]) + 1)
    posterior /= posterior.sum(1, keepdims=True)
    split, other = ambiguous(posterior, probs, np.zeros(4, dtype=np.int64), votes)
    assert split.tolist() == [False, True, False, True]
    assert (other == 1).all()
    alone, _ = ambiguous(posterior, probs, np.zeros(4, dtype=np.int64), None)  # no neighbours: the model decides
    assert alone.tolist() == [True, True, False, True]


def test_a_flag_the_neighbours_back_is_stable_and_one_they_split_on_is_not():
    n, c = 200, 2
    labels = np.zeros(n, dtype=np.int64)
    labels[100:] = 1
    probs = np.full((n, c), 0.5)
    neighbours = np.tile(np.arange(100, 110), (n, 1))  # everyone's neighbours are labelled 1
    neighbours[1] = np.r_[np.arange(2, 7), np.arange(100, 105)]  # sample 1: half 0, half 1
    flagged = np.zeros(n, bool)
    flagged[[0, 1]] = True
    stability = flag_stability(probs, labels, neighbours, flagged, seed=0)
    assert stability[0] == 1.0 and stability[0] >= STABLE_AT
    assert stability[1] < STABLE_AT
    assert np.isnan(stability[2:]).all()


def _margins(epochs=10, n=100, seed=0):
    """(E, N) margins of a training that fits every sample (high, rising), with five flags in the first rows."""
    rng = np.random.default_rng(seed)
    margins = 5.0 + np.linspace(0, 5, epochs)[:, None] + rng.random((epochs, n))
    flagged = np.zeros(n, bool)
    flagged[:5] = True
    return margins, flagged


def test_a_flag_every_checkpoint_backs_is_stable_and_one_only_the_end_backs_is_not():
    margins, flagged = _margins()
    margins[:, [0, 3, 4]] = -5.0  # low at every epoch
    margins[:, 1] += 10.0
    margins[-1, 1] = -5.0  # low at the last epoch only
    margins[:, 2] += 10.0
    margins[:5, 2] = -5.0  # low in the first half only, which is not counted
    stability = checkpoint_stability(margins, flagged)
    assert checkpoint_epochs(10).tolist() == [5, 6, 7, 8, 9]
    assert stability[0] == 1.0 and stability[0] >= STABLE_AT
    assert stability[1] == pytest.approx(1 / 5) and stability[1] < STABLE_AT
    assert stability[2] == 0.0
    assert np.isnan(stability[5:]).all()
    # counting every epoch, the early lows count too; a slack widens what each checkpoint flags
    assert checkpoint_stability(margins, flagged, start=0.0)[2] == pytest.approx(5 / 10)
    assert (checkpoint_stability(margins, flagged, slack=20.0)[:5] == 1.0).all()


def test_checkpoint_stability_matches_a_loop_over_checkpoints_and_checks_its_shapes():
    rng = np.random.default_rng(3)
    margins = rng.normal(size=(12, 500))
    flagged = rng.random(500) < 0.07
    got = checkpoint_stability(margins, flagged)
    m = int(flagged.sum())
    expected = np.zeros(500)
    for e in checkpoint_epochs(12):  # the reference: the m lowest margins at each counted checkpoint
        expected[np.argsort(margins[e], kind="stable")[:m]] += 1
    expected /= len(checkpoint_epochs(12))
    assert np.allclose(got[flagged], expected[flagged]) and np.isnan(got[~flagged]).all()
    assert np.isnan(checkpoint_stability(margins, np.zeros(500, bool))).all()
    assert checkpoint_epochs(1).tolist() == [0] and checkpoint_epochs(0).tolist() == []
    with pytest.raises(ValueError, match="margins have shape"):
        checkpoint_stability(margins[:, :10], flagged)


def test_the_table_says_whether_the_stability_counts_checkpoints_or_neighbours():
    n, c = 100, 2
    rng = np.random.default_rng(0)
    labels = (np.arange(n) >= 50).astype(np.int64)
    probs = np.clip(np.eye(c)[labels] * 0.9 + 0.05 + rng.normal(0, 0.01, (n, c)), 0.01, None)
    probs /= probs.sum(1, keepdims=True)
    neighbours = np.stack([rng.choice(n, 5, replace=False) for _ in range(n)])
    margins, flagged = _margins(n=n)
    args = (probs[:, 1], probs, probs, labels)

    trained = evidence_columns(*args, neighbours, flagged, margins=margins)
    assert trained["flag_stability_basis"][:5].tolist() == ["checkpoints"] * 5
    assert (trained["flag_stability_of"][:5] == 5).all() and set(trained["flag_stability_basis"][5:]) == {""}
    assert np.isnan(trained["flag_stability_of"][5:]).all()
    assert np.allclose(trained["flag_stability"][:5], checkpoint_stability(margins, flagged)[:5])

    for given in (None, margins[:4]):  # a user's model: no trajectory; or too short a training (2 checkpoints)
        users = evidence_columns(*args, neighbours, flagged, margins=given)
        assert users["flag_stability_basis"][:5].tolist() == ["neighbours"] * 5
        assert (users["flag_stability_of"][:5] == calibration.RESAMPLES).all()
        assert np.allclose(users["flag_stability"], flag_stability(probs, labels, neighbours, flagged), equal_nan=True)
    nothing = evidence_columns(*args, None, flagged)
    assert np.isnan(nothing["flag_stability"]).all() and set(nothing["flag_stability_basis"]) == {""}


def test_the_card_line_names_what_the_stability_counted():
    assert stability_text(0.875, "checkpoints", 8.0)[0] == (
        "stable flag: 7 of the last 8 checkpoints of its training would flag it too"
    )
    assert stability_text(0.0, "checkpoints", 5.0)[0] == (
        "unstable flag: none of the last 5 checkpoints of its training would flag it; only the final model and its "
        "neighbours do"
    )
    assert stability_text(0.4, "neighbours", 30.0)[0] == (
        "unstable flag: kept in 12 of 30 resamples of its gradient neighbours"
    )
    assert stability_text(0.5, "", float("nan"))[0].endswith(
        f"of {calibration.RESAMPLES} resamples of its gradient neighbours"
    )
    assert stability_text(float("nan"), "", float("nan")) is None


def test_an_audit_that_trained_its_model_counts_its_checkpoints(tmp_path, cache_dir):
    from ogaudit.pipeline.run import AuditSettings, audit

    settings = AuditSettings(epochs=6, map_method="none", noise_rate=0.1, limit=300)
    result = audit("digits", settings, out_dir=tmp_path / "run", cache_dir=cache_dir)
    table = Project(tmp_path / "run").open_run().table  # scores.csv read back
    flagged = table["flagged"].to_numpy(dtype=bool)
    assert set(table.loc[flagged, "flag_stability_basis"]) == {"checkpoints"}
    assert (table.loc[flagged, "flag_stability_of"] == 3).all()  # epochs 4, 5, 6 of 6
    assert np.allclose(table["flag_stability"], result.scores["flag_stability"], equal_nan=True)
    share = table.loc[flagged, "flag_stability"].to_numpy()
    assert np.allclose(share * 3, np.round(share * 3))  # k of 3 checkpoints
    line = stability_text(share[0], "checkpoints", 3.0)[0]
    assert "of the last 3 checkpoints of its training would flag it" in line
    assert (f"{round(share[0] * 3)} of the last 3" in line) if share[0] > 0 else ("none of the last 3" in line)

    from ogaudit.cache.artifacts import ArtifactCache
    from ogaudit.pipeline.stages import training_margins

    key = result.record["model"]["key"]
    margins = training_margins(result.dataset, settings, ArtifactCache(cache_dir), model_key=key)
    assert margins.shape == (6, 300)
    assert np.allclose(checkpoint_stability(margins, flagged), table["flag_stability"], equal_nan=True)
    assert training_margins(result.dataset, settings, ArtifactCache(cache_dir), model_key="a user's model") is None


def test_percentages_never_read_certain():
    assert percent(0.999) == ">99%" and percent(0.0001) == "<1%" and percent(0.5) == "50%"
    assert "100%" not in percent(0.996)


def test_the_table_the_csv_the_cards_and_the_decisions_agree(finished_project, copy_of):
    folder, result = finished_project
    project = Project(copy_of(folder, "calibration"))
    run = project.open_run()
    for column in ("p_wrong", "p_wrong_low", "p_wrong_high", "ambiguous", "flag_stability"):
        assert column in result.scores and column in run.table, column
    assert np.allclose(run.table["p_wrong"], result.scores["p_wrong"])  # scores.csv read back
    assert run.table["ambiguous"].dtype == bool
    assert run.table.loc[run.table["flagged"], "flag_stability"].between(0, 1).all()
    assert run.table.loc[~run.table["flagged"], "flag_stability"].isna().all()
    # one epoch is too short to compare checkpoints: the neighbours' resampling, and the table says so
    assert set(run.table.loc[run.table["flagged"], "flag_stability_basis"]) == {"neighbours"}
    assert set(run.table.loc[~run.table["flagged"], "flag_stability_basis"]) == {""}
    assert (run.table.loc[run.table["flagged"], "flag_stability_of"] == calibration.RESAMPLES).all()

    before = reviewed_estimate(run.table, None)
    assert np.allclose(before.p, run.table["p_wrong"]) and before.decisions == 0
    rows = [run.position[i] for i in run.flagged_ids[:5]]
    cards = project.open_evidence(run).explain(rows, wrong=before)
    assert np.allclose([c.p_wrong for c in cards], run.table["p_wrong"].to_numpy()[rows])
    assert all("100%" not in c.wrong_text(run.class_names) for c in cards)

    ledger = project.open_ledger()
    ledger.decide(run.flagged_ids[:10], "keep", annotator="ann")
    after = reviewed_estimate(run.table, ledger.state())
    assert after.decisions == 10 and after.p[rows].mean() < before.p[rows].mean()
    card = project.open_evidence(run).explain(rows[:1], wrong=after)[0]
    assert card.reviewed > 0 and "decision" in card.wrong_text(run.class_names)
    # the cards never ask for more decisions than there are samples left to decide (here 3)
    left = set(run.flagged_ids[10:13])
    ledger.decide(
        [i for i in run.table["sample_id"] if i not in left and i not in run.flagged_ids[:10]],
        "remove",
        annotator="ann",
    )
    late = reviewed_estimate(run.table, ledger.state())
    assert late.left_to_decide == 3 and late.to_calibrate <= 3
    for card in project.open_evidence(run).explain(rows, wrong=late):
        assert card.to_calibrate <= 3 and card.too_few_to_calibrate == (
            late.too_few_to_calibrate and not card.calibrated
        )
        if card.too_few_to_calibrate:
            text = card.wrong_text(run.class_names)
            assert "too few samples to calibrate" in text and "decide ~" not in text
    exported = project.export(project.path / "exports" / "issues.csv", format="cleanlab")
    assert exported.is_file()


def test_old_tables_without_the_estimate_read_as_none():
    table = pd.DataFrame({"sample_id": ["a"], "p_wrong": [0.5]})
    assert reviewed_estimate(table, None) is None


def test_the_queue_filters_wrong_ambiguous_stable_and_sorts_to_calibrate():
    n = 40
    score = np.linspace(1, 0, n)
    probs = np.full((n, 2), 0.5)
    labels = np.zeros(n, dtype=np.int64)
    p = np.linspace(0.99, 0.01, n)
    columns = {
        "p_wrong": p,
        "p_wrong_low": p / 2,
        "p_wrong_high": (1 + p) / 2,
        "ambiguous": np.arange(n) % 2 == 0,
        "flag_stability": np.where(np.arange(n) < 10, np.where(np.arange(n) < 5, 1.0, 0.2), np.nan),
    }
    table = score_table(score, -probs, probs, labels, class_names=["a", "b"], budget=10, columns=columns)
    table["sample_id"] = table["sample_id"].astype(str)
    state = pd.DataFrame(columns=["sample_id", "action", "annotator"])
    ambiguous_ids = filter_queue(table, state, QueueFilter(verdict="ambiguous"))
    assert ambiguous_ids == ["0", "2", "4", "6", "8"]
    assert filter_queue(table, state, QueueFilter(verdict="wrong")) == ["1", "3", "5", "7", "9"]
    assert filter_queue(table, state, QueueFilter(stability="stable")) == ["0", "1", "2", "3", "4"]
    assert filter_queue(table, state, QueueFilter(stability="unstable")) == ["5", "6", "7", "8", "9"]
    calibrate = filter_queue(table, state, QueueFilter(sort=CALIBRATE))
    assert len(calibrate) == n  # every sample, flagged or not
    first = np.array([int(i) for i in calibrate[:10]])
    assert first.max() - first.min() > n / 2  # the first decisions span the range of P(wrong)
    with pytest.raises(ValueError, match="verdict"):
        QueueFilter(verdict="maybe")
