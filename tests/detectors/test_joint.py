"""The confident joint, its concentration, and ``posterior-auto``'s choice between ``posterior`` and its ratio."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from ogaudit.detectors.joint import confident_joint, confusion_concentration
from ogaudit.detectors.outliers import RATIO_RAMP, AutoPosteriorDetector, make_detector, ratio_weight
from ogaudit.errors import SettingsError
from ogaudit.gradients import HeadEvidence

CLASSES = 6


def _noisy_set(kind: str, seed: int = 0, n: int = 600):
    """``n`` samples of ``CLASSES`` classes, 20% of them flipped ``kind`` = ``pairs`` (0↔1, 2↔3, 4↔5) or
    ``symmetric`` (to any other class); returns ``(evidence, is_wrong)``.

    Clean samples sit near their class's centre and the model is confident in their class, except a quarter of them
    that are hard: their features are anywhere and the model spreads its probability evenly. The model has partly
    memorised the flipped samples: their given label is nearly as likely as their true one."""
    rng = np.random.default_rng(seed)
    true = np.arange(n) % CLASSES
    centres = rng.normal(size=(CLASSES, 16)) * 3.0
    features = centres[true] + rng.normal(size=(n, 16))
    logits = rng.normal(0.0, 0.3, size=(n, CLASSES))
    logits[np.arange(n), true] += 4.0
    given = true.copy()
    wrong = rng.random(n) < 0.2
    if kind == "pairs":
        given[wrong] = true[wrong] ^ 1
    else:
        given[wrong] = (true[wrong] + rng.integers(1, CLASSES, int(wrong.sum()))) % CLASSES
    logits[wrong, given[wrong]] += 3.5
    hard = ~wrong & (rng.random(n) < 0.25)
    logits[hard] = rng.normal(0.0, 0.3, size=(int(hard.sum()), CLASSES))
    features[hard] = rng.normal(size=(int(hard.sum()), 16)) * 3.0
    return HeadEvidence.from_head(features.astype(np.float32), logits.astype(np.float32), given), wrong


def test_confident_joint_rows_sum_to_the_given_counts_and_find_the_planted_pairs():
    evidence, _ = _noisy_set("pairs")
    detector = make_detector("posterior").fit(evidence)
    joint = confident_joint(detector.posterior(evidence), evidence.labels)
    counts = np.bincount(evidence.labels, minlength=CLASSES)
    np.testing.assert_allclose(joint.sum(axis=1), counts)
    off = joint - np.diag(np.diag(joint))
    assert (off.argmax(axis=1) == np.arange(CLASSES) ^ 1).all()  # each class's wrong labels come from its partner


def test_concentration_is_zero_for_uniform_and_one_for_one_partner_per_class():
    uniform = np.full((5, 5), 10.0)
    assert confusion_concentration(uniform) == pytest.approx(0.0, abs=1e-12)
    partner = np.eye(5) * 100 + np.roll(np.eye(5), 1, axis=1) * 7
    assert confusion_concentration(partner) == pytest.approx(1.0)
    half = np.eye(4) * 50 + np.roll(np.eye(4), 1, axis=1) * 8 + 1.0  # mostly one partner, a little elsewhere
    assert 0.0 < confusion_concentration(half) < 1.0
    assert confusion_concentration(np.eye(3) * 5) == 0.0  # no confusions at all
    assert confusion_concentration(np.array([[5.0, 2.0], [1.0, 5.0]])) == 0.0  # two classes: one alternative


@pytest.mark.parametrize("kind, chosen", [("pairs", "posterior-ratio"), ("symmetric", "posterior")])
def test_auto_takes_the_ratio_for_pair_noise_and_the_posterior_for_symmetric_noise(kind, chosen):
    evidence, wrong = _noisy_set(kind)
    auto = make_detector("posterior-auto").fit(evidence)
    assert auto.weight_ == (1.0 if kind == "pairs" else 0.0)
    assert (auto.concentration_ > RATIO_RAMP[1]) if kind == "pairs" else (auto.concentration_ < RATIO_RAMP[0])
    scores = auto.outlier_scores(evidence)
    np.testing.assert_array_equal(scores, make_detector(chosen).fit(evidence).outlier_scores(evidence))
    if kind == "pairs":  # hard, correctly labelled samples (π spread evenly) outrank the flips under −log π(y) only
        ap = {
            name: average_precision_score(wrong, make_detector(name).fit(evidence).outlier_scores(evidence))
            for name in ("posterior", "posterior-ratio")
        }
        assert average_precision_score(wrong, scores) == ap["posterior-ratio"] > ap["posterior"] + 0.3
    # the suggestions are the posterior's either way: argmax π
    np.testing.assert_array_equal(
        auto.outlier_scores(evidence, np.full(len(wrong), 0)),
        make_detector(chosen).fit(evidence).outlier_scores(evidence, np.full(len(wrong), 0)),
    )


def test_auto_blends_in_between_and_checks_its_ramp():
    evidence, _ = _noisy_set("symmetric", n=120)
    with pytest.raises(SettingsError, match="ramp"):
        AutoPosteriorDetector(ramp=(0.6, 0.4)).fit(evidence)
    kappa = make_detector("posterior-auto").fit(evidence).concentration_
    auto = AutoPosteriorDetector(ramp=(kappa - 0.1, kappa + 0.1), bounded=False).fit(evidence)  # w read at κ
    assert auto.weight_ == pytest.approx(0.5)
    halves = [
        0.5 * make_detector(name).fit(evidence).outlier_scores(evidence) for name in ("posterior", "posterior-ratio")
    ]
    np.testing.assert_allclose(auto.outlier_scores(evidence), halves[0] + halves[1], rtol=1e-9, atol=1e-12)


def test_the_ramp_gives_each_measured_kind_its_best_score():
    """The concentrations measured on Fashion-MNIST 20k (docs/BENCHMARKS.md): symmetric 0.03-0.04 and the tweets
    0.13-0.19 get ``posterior`` alone, confusion-following 0.49-0.54 and class pairs 0.73-0.74 the ratio alone."""
    for kappa in (0.03, 0.04, 0.13, 0.19):
        assert ratio_weight(kappa) == 0.0
    for kappa in (0.49, 0.54, 0.73, 0.74):
        assert ratio_weight(kappa) == 1.0
    assert ratio_weight(sum(RATIO_RAMP) / 2) == pytest.approx(0.5)
    assert ratio_weight(0.5, (0.25, 0.75)) == pytest.approx(0.5)
    with pytest.raises(SettingsError, match="ramp"):
        ratio_weight(0.5, (0.5, 0.5))


def test_uniform_entropy_matches_draws_and_tends_to_log_k():
    from ogaudit.detectors.joint import uniform_entropy

    rng = np.random.default_rng(0)
    for n, k in ((4, 9), (30, 9), (12, 2)):
        draws = rng.integers(0, k, size=(20000, n))
        shares = np.stack([(draws == c).mean(axis=1) for c in range(k)], axis=1)
        empirical = -np.where(shares > 0, shares * np.log(np.maximum(shares, 1e-300)), 0.0).sum(axis=1).mean()
        assert uniform_entropy(np.array([n]), k)[0] == pytest.approx(empirical, abs=0.01)
    large = uniform_entropy(np.array([0, 1, 4000, 6000, 10**6]), 9)
    assert large[0] == large[1] == 0.0 and large[1] < large[2] < large[3] < large[4] < np.log(9)
    assert large[4] == pytest.approx(np.log(9), abs=1e-5)


def test_few_wrong_labels_spread_uniformly_do_not_read_as_concentrated():
    """300 samples with 10% symmetric noise leave about 3 wrong labels a class: by chance they fall on few classes,
    which the uncorrected measure read as concentration (0.5-0.7 on digits); the corrected one stays near 0."""
    rng = np.random.default_rng(1)
    readings = {True: [], False: []}
    for _ in range(50):
        joint = np.eye(10) * 27.0
        for given in range(10):
            for true in rng.choice([c for c in range(10) if c != given], size=3):
                joint[given, true] += 1.0
        for corrected in readings:
            readings[corrected].append(confusion_concentration(joint, chance_corrected=corrected))
    assert np.mean(readings[False]) > 0.4 and np.mean(readings[True]) < 0.1
    partner = np.eye(10) * 27.0 + np.roll(np.eye(10), 1, axis=1) * 3.0  # three wrong labels a class, one partner
    assert confusion_concentration(partner) == pytest.approx(1.0)


def test_the_vectorised_concentrations_match_one_joint_at_a_time():
    from ogaudit.detectors.joint import _concentrations

    rng = np.random.default_rng(2)
    joints = rng.poisson(rng.uniform(0.0, 6.0, size=(40, 7, 7))).astype(float)
    joints[3] = 0.0  # no confusions at all
    joints[5, 2] = 0.0  # an empty row
    for corrected in (True, False):
        one_by_one = [confusion_concentration(joint, chance_corrected=corrected) for joint in joints]
        np.testing.assert_allclose(_concentrations(joints, corrected), one_by_one, rtol=0, atol=1e-12)


def test_the_bound_is_wide_on_few_wrong_labels_and_tight_on_many():
    """One partner class with most of each row's wrong labels, the rest spread: 10 wrong labels a class (1,000
    samples, 10% noise) leave κ's bound far below κ; 400 a class (Fashion-MNIST 20k) within 0.03 of it."""
    from ogaudit.detectors.joint import concentration_bound

    shape = np.roll(np.eye(10), 1, axis=1) * 0.8 + (1 - np.eye(10) - np.roll(np.eye(10), 1, axis=1)) * 0.2 / 8
    for per_class, gap in ((10, (0.1, 0.5)), (400, (0.0, 0.03))):
        joint = np.eye(10) * per_class * 9 + shape * per_class
        kappa, low = concentration_bound(joint)
        assert kappa == pytest.approx(confusion_concentration(joint))
        assert gap[0] <= kappa - low <= gap[1], (per_class, kappa, low)
        assert concentration_bound(joint) == (kappa, low)  # seeded: the same joint, the same bound
    assert concentration_bound(np.eye(4) * 9) == (0.0, 0.0)  # no confusions: nothing to bound
    with pytest.raises(ValueError, match="level"):
        concentration_bound(np.eye(3), level=0.3)
    with pytest.raises(ValueError, match="joint"):
        concentration_bound(np.ones((3, 4)))


def test_the_bound_lies_below_the_true_concentration_about_nine_times_in_ten():
    """Coverage: joints drawn with few wrong labels a class from a known, partly concentrated noise; the 90% lower
    bound is under the noise's own κ (its concentration at unlimited counts) in about 9 draws of 10 (0.91 in 300),
    while κ itself reads high: under it in fewer than half (0.28 in 300)."""
    from ogaudit.detectors.joint import concentration_bound

    rng = np.random.default_rng(3)
    noise = np.roll(np.eye(8), 1, axis=1) * 0.6 + (1 - np.eye(8) - np.roll(np.eye(8), 1, axis=1)) * 0.4 / 6
    truth = confusion_concentration(noise * 1e7)
    under_bound = under_point = 0
    for draw in range(100):
        joint = np.eye(8) * 40.0
        for given in range(8):
            joint[given] += rng.multinomial(8, noise[given])
        kappa, low = concentration_bound(joint, seed=draw)
        under_bound += low <= truth
        under_point += kappa <= truth
    assert under_bound / 100 >= 0.8 and under_point / 100 < 0.5


@pytest.mark.parametrize("scale, weight", [(1.0, "below one"), (40.0, 1.0)])
def test_the_bound_keeps_few_pair_flips_from_taking_the_ratio_alone(scale, weight):
    """300 samples with class-pair noise give a high κ from a few wrong labels a class (here 3 of 4 on one partner):
    the point κ gives ``w`` = 1 (where ``posterior`` was up to 0.085 AP better on 300 digits); the bound
    (``bounded=True``) gives a blend. The same proportions with
    40 times the counts keep ``w`` = 1."""
    from ogaudit.detectors.joint import concentration_bound

    joint = np.eye(10) * 26.0 + np.roll(np.eye(10), 1, axis=1) * 3.0 + np.roll(np.eye(10), 3, axis=1) * 1.0
    kappa, low = concentration_bound(joint * scale)
    assert kappa > RATIO_RAMP[1] and ratio_weight(kappa) == 1.0
    assert (0.0 < ratio_weight(low) < 1.0) if weight == "below one" else ratio_weight(low) == 1.0


def test_the_bounded_auto_keeps_kappa_and_its_bound_and_the_default_reads_kappa():
    from ogaudit.detectors.outliers import detector_state

    evidence, _ = _noisy_set("pairs", n=120)
    bounded = AutoPosteriorDetector(bounded=True).fit(evidence)
    point = make_detector("posterior-auto").fit(evidence)  # the default reads w at κ itself
    assert point.concentration_ == point.concentration_low_ == bounded.concentration_
    assert set(detector_state(point)) == {"concentration", "ratio_weight", "ramp"}
    assert bounded.concentration_low_ < bounded.concentration_
    assert bounded.weight_ == ratio_weight(bounded.concentration_low_) <= point.weight_
    state = detector_state(bounded)
    assert state["concentration_low"] == bounded.concentration_low_ and state["ratio_weight"] == bounded.weight_
