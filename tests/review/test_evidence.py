"""The evidence behind a flag (:mod:`ogaudit.review.evidence`), the queue's filters (:mod:`ogaudit.review.queue`),
the bulk and override rules (:mod:`ogaudit.review.actions`) and the small text and colour helpers of the app."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from ogaudit.detectors.outliers import NeighbourPosteriorDetector
from ogaudit.gradients import HeadEvidence
from ogaudit.pipeline.run import AuditSettings
from ogaudit.project import Project
from ogaudit.review.actions import current_progress, others_decisions, plan_bulk, take_back
from ogaudit.review.evidence import (
    Calibration,
    RunEvidence,
    SampleEvidence,
    confirm_labels,
    describe,
    evidence_table,
    expected_calibration_error,
    scoring_text,
)
from ogaudit.review.queue import QueueFilter, confusion, filter_queue, flag_counts
from ogaudit.ui.figure import class_palette, map_figure, natural_key
from ogaudit.ui.text import readable


@pytest.fixture
def scanned(finished_project):
    return finished_project[0]


def _random_head(n=120, d=6, c=4, seed=0):
    rng = np.random.default_rng(seed)
    features = np.hstack([rng.normal(size=(n, d)).astype(np.float32), np.ones((n, 1), np.float32)])
    logits = rng.normal(size=(n, c))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return features, probs.astype(np.float32), rng.integers(0, c, n)


def test_the_fast_posterior_of_a_few_rows_matches_the_detectors_over_all_rows():
    features, probs, labels = _random_head()
    detector = NeighbourPosteriorDetector(k=10)
    head = HeadEvidence(features, probs, labels)
    reference = detector.fit(head).posterior(head)
    evidence = RunEvidence(features, probs, labels, calibration=Calibration((0.0, 1.0), (0.0, 1.0)), k=10)
    rows = np.array([3, 17, 99])
    explained = evidence.explain(rows)
    for row, item in zip(rows, explained, strict=True):
        assert set(item.neighbours) == set(detector.neighbours_.neighbours_[row])
        np.testing.assert_allclose(item.posterior, reference[row], rtol=1e-5)
        assert item.raw_wrong == pytest.approx(1 - reference[row, labels[row]], rel=1e-5)
        assert list(item.cosines) == sorted(item.cosines, reverse=True) and row not in item.neighbours
    np.testing.assert_allclose(evidence.raw_wrong(chunk=7), 1 - reference[np.arange(len(labels)), labels], rtol=1e-5)


def test_given_neighbours_are_read_not_searched_and_give_the_same_evidence(monkeypatch):
    features, probs, labels = _random_head()
    detector = NeighbourPosteriorDetector(k=10)
    head = HeadEvidence(features, probs, labels)
    reference = detector.fit(head).posterior(head)
    found = (detector.neighbours_.neighbours_, detector.neighbours_.cosines_)
    evidence = RunEvidence(
        features, probs, labels, calibration=Calibration((0.0, 1.0), (0.0, 1.0)), k=10, neighbours=found
    )
    monkeypatch.setattr(RunEvidence, "directions", property(lambda self: pytest.fail("searched instead of read")))
    rows = np.array([3, 17, 99])
    for row, item in zip(rows, evidence.explain(rows), strict=True):
        assert list(item.neighbours) == list(found[0][row])
        np.testing.assert_allclose(item.cosines, found[1][row], rtol=1e-6)
        np.testing.assert_allclose(item.posterior, reference[row], rtol=1e-5)
    np.testing.assert_allclose(evidence.raw_wrong(), 1 - reference[np.arange(len(labels)), labels], rtol=1e-5)


def test_a_run_keeps_its_detectors_neighbours_for_the_evidence(scanned):
    from ogaudit.project import Project

    project = Project(scanned)
    assert project.run_files()["neighbours"].is_file()
    evidence = project.open_evidence()
    assert evidence.known is not None and evidence.known[0].shape == (len(evidence.labels), evidence.k)
    searched = RunEvidence(evidence.features, evidence.probs, evidence.labels, calibration=evidence.calibration)
    rows = np.arange(0, len(evidence.labels), 37)
    kept, fresh = evidence.explain(rows), searched.explain(rows)
    for a, b in zip(kept, fresh, strict=True):  # exact search both times: the same neighbours (ties aside)
        assert len(set(a.neighbours) & set(b.neighbours)) >= evidence.k - 1
        assert a.p_wrong == pytest.approx(b.p_wrong, abs=0.05)


def test_a_run_records_what_posterior_auto_read_and_the_evidence_says_it(scanned, finished_project):
    from ogaudit.detectors.outliers import RATIO_RAMP, make_detector, ratio_weight

    run = Project(scanned).open_run()
    state = run.detector_state
    assert run.settings.detector == "posterior-auto" and set(state) == {"concentration", "ratio_weight", "ramp"}
    assert state["ramp"] == list(RATIO_RAMP) and state["ratio_weight"] == ratio_weight(state["concentration"])
    head = finished_project[1].evidence  # the same κ as the detector fitted again on the run's own evidence
    assert state["concentration"] == pytest.approx(make_detector("posterior-auto").fit(head).concentration_)
    line = scoring_text(run.settings.detector, state)
    assert line.startswith("Scored by posterior-auto: the data's wrong labels look ")
    assert f"(κ {state['concentration']:.2f}" in line


@pytest.mark.parametrize(
    "kappa, weight, expected",
    [
        (0.04, 0.0, "look spread over many classes (κ 0.04), so the score is the posterior alone"),
        (0.74, 1.0, "look concentrated on partner classes (κ 0.74), so the score is the counterfactual ratio alone"),
        (
            0.44,
            0.97,
            "look partly concentrated on partner classes (κ 0.44), so the score weighs the counterfactual ratio 97% "
            "and the posterior 3%",
        ),
        (0.2001, 0.0004, "the counterfactual ratio 1% and the posterior 99%"),  # never "0%" for a blend
    ],
)
def test_scoring_text_says_kappa_and_the_weights(kappa, weight, expected):
    line = scoring_text("posterior-auto", {"concentration": kappa, "ratio_weight": weight, "ramp": [0.2, 0.45]})
    assert line.startswith("Scored by posterior-auto: the data's wrong labels ") and expected in line
    same = {"concentration": kappa, "concentration_low": kappa - 0.001, "ratio_weight": weight, "ramp": [0.2, 0.45]}
    assert scoring_text("posterior-auto", same) == line  # a bound next to κ is not worth a word


def test_scoring_text_says_the_bound_when_few_wrong_labels_set_the_weight():
    state = {"concentration": 0.6, "concentration_low": 0.38, "ratio_weight": 0.72, "ramp": [0.2, 0.45]}
    line = scoring_text("posterior-auto", state)
    assert "(κ 0.60; from few wrong labels, at least 0.38 at 90% confidence, which sets the weight)" in line
    assert "weighs the counterfactual ratio 72% and the posterior 28%" in line
    odd = scoring_text("posterior-auto", {**state, "concentration_low": 0.9})  # above κ: an edited run.json
    assert "(κ 0.60)" in odd


@pytest.mark.parametrize(
    "detector, state",
    [
        ("posterior", {"concentration": 0.5, "ratio_weight": 0.5}),  # another detector: nothing to say
        ("posterior-auto", {}),  # a run recorded before the state was kept
        ("posterior-auto", None),
        ("posterior-auto", {"concentration": "0.5", "ratio_weight": 0.5}),  # an edited run.json
        ("posterior-auto", {"concentration": 0.5, "ratio_weight": 1.5}),
        ("posterior-auto", {"concentration": float("nan"), "ratio_weight": 0.5}),
        ("posterior-auto", {"concentration": True, "ratio_weight": 0.5}),
        ("posterior-auto", [0.5, 0.5]),
    ],
)
def test_scoring_text_says_nothing_for_other_detectors_or_a_missing_or_odd_state(detector, state):
    assert scoring_text(detector, state) is None


def test_ranking_and_the_confirm_label_when_the_suggestion_is_the_given_one():
    features, probs, labels = _random_head()
    item = RunEvidence(features, probs, labels, k=5).explain([0])[0]
    ranking = item.ranking()
    assert sorted(ranking) == list(range(4)) and item.posterior[ranking[0]] == item.posterior.max()
    assert item.best_other() != item.given
    labels_out, changes = confirm_labels(np.array(["a", "b"]), np.array(["c", "b"]), np.array(["x", "d"]))
    assert labels_out.tolist() == ["c", "d"] and changes.all()
    _, changes = confirm_labels(np.array(["a"]), np.array(["a"]))
    assert not changes.any()


def test_calibration_is_monotone_and_lowers_the_error_on_its_own_data():
    rng = np.random.default_rng(0)
    raw = rng.uniform(size=4000)
    truth = rng.uniform(size=4000) < raw**3  # the raw score overstates the chance of a wrong label
    fitted = Calibration.fit(raw, truth, source="test")
    assert np.all(np.diff(fitted.calibrated) >= 0) and fitted(0.0) <= fitted(1.0)
    assert expected_calibration_error(fitted(raw), truth) < 0.5 * expected_calibration_error(raw, truth)
    assert expected_calibration_error(np.array([0.0, 1.0]), np.array([0, 1])) == 0
    again = Calibration(**{k: v for k, v in fitted.to_dict().items() if k != "format"})
    np.testing.assert_allclose(again(raw[:10]), fitted(raw[:10]))


def test_the_packaged_calibration_loads_and_says_what_it_was_fitted_on():
    calibration = Calibration.load()
    assert calibration(0.0) <= calibration(0.5) <= calibration(1.0) and np.all(np.diff(calibration.raw) > 0)
    assert "planted noise" in calibration.source and calibration.ece is not None and calibration.ece < 0.05


def test_a_project_reads_its_evidence_files(scanned):
    project = Project(scanned)
    run = project.open_run()
    label_evidence = project.read_label_evidence(run)
    assert list(label_evidence.columns) == run.class_names and len(label_evidence) == len(run.table)
    best = np.asarray(run.class_names)[label_evidence.to_numpy().argmin(axis=1)]
    assert (best == run.table["suggested_label"].to_numpy()).all()
    evidence = project.open_evidence(run)
    rows = [run.position[i] for i in run.flagged_ids[:5]]
    items = evidence.explain(rows)
    assert all(0 <= item.p_wrong <= 1 for item in items)
    table = evidence_table(items[0], run.class_names)
    assert {"class", "model", "neighbours", "combined", "counterfactual"} <= set(table.columns)
    assert "likely that the label" in describe(items[0], run.class_names)

    for calibrated in (True, False):  # "Why is this flagged?" gives the card's headline number, never another
        item = replace(items[0], calibrated=calibrated, p_wrong=0.62, p_wrong_low=0.004, p_wrong_high=0.95)
        headline, why = item.wrong_text(run.class_names), describe(item, run.class_names)
        assert ("62%" in why) == ("62%" in headline) == calibrated and ("not yet calibrated" in why) != calibrated
    noisy = run.table["is_noisy"].to_numpy()
    raw = evidence.raw_wrong()
    assert raw[noisy].mean() > raw[~noisy].mean() + 0.3  # the evidence separates the planted wrong labels


def test_a_project_without_head_evidence_has_no_evidence(tmp_path):
    scores = pd.DataFrame(
        {
            "sample_id": ["a", "b"],
            "given_label": ["x", "y"],
            "predicted_label": ["x", "y"],
            "suggested_label": ["x", "y"],
            "score": [0.1, 0.2],
            "rank": [2, 1],
            "flagged": [False, True],
            "confidence": [0.9, 0.8],
        }
    )
    record = {
        "fingerprint": "f",
        "settings": AuditSettings().to_dict(),
        "model": {"kind": "x"},
        "dataset": {"spec": "s", "fingerprint": "d", "class_names": ["x", "y"], "samples": 2},
    }
    Project(tmp_path).write_run(scores, pd.DataFrame({"sample_id": ["a", "b"], "x": [0, 1], "y": [0, 1]}), record)
    assert Project(tmp_path).open_evidence() is None and Project(tmp_path).read_label_evidence() is None


# ---------------------------------------------------------------- queue, bulk, overrides, progress


def _state(rows):
    return pd.DataFrame(rows, columns=["sample_id", "action", "final_label", "annotator", "decided_at", "batch_id"])


def test_filter_queue_filters_sorts_and_searches(scanned):
    run = Project(scanned).open_run()
    table = run.table
    state = _state([(run.flagged_ids[0], "keep", "1", "ann", "t", "b1")])
    everything = filter_queue(table, state, QueueFilter())
    assert everything == run.flagged_ids
    assert filter_queue(table, state, QueueFilter(hide_decided=True)) == run.flagged_ids[1:]
    kept_in = filter_queue(table, state, QueueFilter(hide_decided=True), still_shown={run.flagged_ids[0]})
    assert kept_in == run.flagged_ids  # just decided in a one-by-one pass: still in, in its place
    assert filter_queue(table, state, QueueFilter(decisions=("keep",))) == run.flagged_ids[:1]
    assert filter_queue(table, state, QueueFilter(annotators=("ann",))) == run.flagged_ids[:1]
    assert filter_queue(table, state, QueueFilter(decisions=("undecided",))) == run.flagged_ids[1:]
    nobody = state.iloc[:0]
    assert filter_queue(table, nobody, QueueFilter(hide_decided=True)) == run.flagged_ids
    assert filter_queue(table, nobody, QueueFilter(annotators=("ann",))) == []
    cls = table.loc[table["flagged"], "given_label"].iloc[0]
    given = filter_queue(table, state, QueueFilter(given=(cls,)))
    assert given and all(run.by_id.loc[i, "given_label"] == cls for i in given)
    target = run.flagged_ids[2]
    assert target in filter_queue(table, state, QueueFilter(search=target.upper()))
    assert len(filter_queue(table, state, QueueFilter(flagged_only=False))) == len(table)
    low = filter_queue(table, state, QueueFilter(flagged_only=False, sort="least suspicious first"))
    assert run.by_id.loc[low[0], "rank"] == len(table)
    top = table["score"].max()
    assert filter_queue(table, state, QueueFilter(score=(top, top))) == run.flagged_ids[:1]
    with pytest.raises(ValueError, match="sort"):
        QueueFilter(sort="random")


def test_flag_counts_and_the_confusion_table_add_up(scanned):
    run = Project(scanned).open_run()
    counts = flag_counts(run.table)
    assert counts["flagged"].sum() == len(run.flagged_ids) and counts["samples"].sum() == len(run.table)
    table = confusion(run.table, run.class_names)
    assert table.to_numpy().sum() == len(run.flagged_ids) and list(table.index) == run.class_names


def test_plan_bulk_scopes_and_leaves_out_confirms_that_keep_the_label(scanned):
    run = Project(scanned).open_run()
    flagged = run.flagged_ids[:3]
    unflagged = run.table.loc[~run.table["flagged"], "sample_id"].iloc[:2].tolist()
    plan = plan_bulk(run, flagged + unflagged, "keep")
    assert list(plan.ids) == flagged and plan.skipped["not flagged"] == 2 and "2 not flagged" in plan.describe()
    assert len(plan_bulk(run, flagged + unflagged, "keep", scope="all").ids) == 5
    same = run.table.loc[run.table["suggested_label"] == run.table["given_label"], "sample_id"].iloc[:2].tolist()
    plan = plan_bulk(run, flagged + same, "confirm", scope="all")
    assert not set(same) & set(plan.ids) and plan.skipped["whose suggestion is their given label"] >= 2
    plan = plan_bulk(run, flagged, "remove", decided={flagged[0], "not-selected"})
    assert list(plan.ids) == flagged[1:] and "1 already decided" in plan.describe()  # left as it is
    assert list(plan_bulk(run, flagged, "remove", decided={flagged[0]}, replace_decided=True).ids) == flagged
    later = plan.at_apply([flagged[1]])  # decided in another view after the preview
    assert list(later.ids) == flagged[2:] and "1 decided since the preview" in later.describe()


def test_others_decisions_and_current_progress():
    state = _state([("a", "keep", "x", "ann", "t1", "b1"), ("b", "remove", None, "bob", "t2", "b2")])
    assert others_decisions(state, ["a", "b"], "ann")["sample_id"].tolist() == ["b"]
    progress = current_progress(state, ["a"]).set_index("annotator")
    assert progress.loc["ann", "flagged_decided"] == 1 and progress.loc["bob", "flagged_decided"] == 0
    assert progress.loc["bob", "remove"] == 1 and progress["decided"].sum() == 2


def test_take_back_lists_only_the_samples_it_changed(scanned, tmp_path):
    import shutil

    folder = shutil.copytree(scanned, tmp_path / "p")
    ledger = Project(folder).open_ledger()
    run = Project(folder).open_run()
    a, b = run.flagged_ids[:2]
    ledger.decide([a, b], "keep", annotator="ann")
    ledger.decide(a, "remove", annotator="bob")
    batch, changed = take_back(ledger, "ann", "undo")
    assert set(batch.sample_ids) == {a, b} and changed == [b]
    batch, changed = take_back(ledger, "ann", "redo")
    assert changed == [b]
    assert take_back(ledger, "nobody", "undo") == (None, [])


# ---------------------------------------------------------------- text and colours


def test_readable_errors_drop_python_lists_and_server_paths():
    text = "given labels ['a', 'b'] are not in class_names ['x']; see '/srv/home/proj/run.json' and '/etc/data/x.npz'"
    shown = readable(text, home="/srv/home")
    assert "['" not in shown and "a, b" in shown and "'proj/run.json'" in shown and "'…/data/x.npz'" in shown
    assert "/srv" not in shown and "/etc" not in shown


def test_the_legend_is_sorted_and_its_colours_are_distinct():
    assert sorted(["10", "2", "1", "b", "A"], key=natural_key) == ["1", "2", "10", "A", "b"]
    for n in (3, 10, 20):
        colours = class_palette(n)
        rgb = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in colours], dtype=float)
        distance = np.linalg.norm(rgb[:, None] - rgb[None], axis=2) + np.eye(n) * 1e9
        assert distance.min() > (60 if n <= 10 else 25), (n, colours)  # Kelly's set is spaced perceptually
    table = pd.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(12)],
            "x": np.arange(12.0),
            "y": np.arange(12.0),
            "given_label": [str(i % 12) for i in range(12)],
            "predicted_label": ["0"] * 12,
            "suggested_label": ["0"] * 12,
            "score": np.linspace(0, 1, 12),
            "rank": np.arange(12, 0, -1),
            "flagged": [False] * 11 + [True],
        }
    )
    names = [t.name for t in map_figure(table, "given label").data if t.name != "flagged (ring)"]
    assert names == [str(i) for i in range(12)]


def test_the_evidence_table_always_has_the_given_labels_row():
    """A confident flag's given label is far down the ranking; the table still shows it (it showed the five most
    likely classes only, so the row a reviewer weighs against the suggestion was missing on the demo's top card)."""
    probs = np.array([0.0001, 0.0002, 0.0011, 0.0083, 0.0003, 0.0002, 0.0001, 0.9816, 0.0001, 0.0032])
    votes = np.array([7] * 19 + [2])
    item = SampleEvidence(
        **dict(position=0, given=8, probs=probs, posterior=probs, counterfactual=-np.log(probs + 1e-3)),
        **dict(neighbours=np.arange(20), cosines=np.ones(20), neighbour_labels=votes),
        **dict(raw_wrong=1 - probs[8], p_wrong=0.99),
    )
    names = [str(c) for c in range(10)]
    table = evidence_table(item, names)
    assert len(table) == 5 and table["class"].tolist() == ["7", "3", "9", "2", "8 (given)"]
    assert table["model"].iloc[-1] == pytest.approx(1e-4) and table["neighbours"].iloc[-1] == "0/20"
    assert table["neighbours"].iloc[0] == "19/20"
    likely = replace(item, given=7)  # the given label among the most likely: the plain top five
    assert evidence_table(likely, names)["class"].tolist() == ["7 (given)", "3", "9", "2", "4"]
