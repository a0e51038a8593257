"""Trim and retrain on real digits with planted noise: cleaning as the scan suggests does not hurt."""

import numpy as np
import pytest

from ogaudit.cli import main
from ogaudit.pipeline.run import AuditSettings, audit
from ogaudit.project import Project
from ogaudit.review.verify import verify_cleaning


@pytest.mark.slow
def test_relabelling_the_flags_keeps_or_improves_held_out_accuracy(cache_dir, tmp_path):
    settings = AuditSettings(noise_rate=0.3, budget=0.3, map_method="none", epochs=10, model="mlp")
    result = audit("digits", settings, out_dir=tmp_path, cache_dir=cache_dir)
    flagged = result.scores[result.scores["flagged"]]
    assert flagged["is_noisy"].mean() > 0.8
    dataset = Project(tmp_path).load_dataset()
    ledger = Project(tmp_path).open_ledger()
    for label, group in flagged.groupby("suggested_label"):
        ledger.decide(group["sample_id"], "confirm", label=label, annotator="test")

    report = verify_cleaning(dataset, ledger.state(), settings)
    assert report.evaluated_on.startswith("true labels")
    assert report.train_before == report.train_after and report.relabelled > 0.25 * report.train_before
    # 30% wrong labels cost the noisy model accuracy; fixing most of them must not cost more than noise allows
    assert report.accuracy_after >= report.accuracy_before - 0.02, report.describe()
    assert report.describe().startswith(f"verdict: {report.verdict()} (") and report.seed_error is None
    assert "one seed: --seeds 5" in report.describe() and report.sampling_error > 0

    # the command line checks the same: the project's data, decisions and recipe, one seed. What it hands
    # verify_cleaning is compared with the call above (retraining both models again would only repeat it), and
    # the report it gets back is what it saves
    import ogaudit.review.verify as verify_module

    handed = {}

    def same_call(data, decisions, recipe, **options):
        handed.update(data=data, decisions=decisions, recipe=recipe, **options)
        return report

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(verify_module, "verify_cleaning", same_call)
        assert main(["verify", "--project", str(tmp_path), "--seeds", "1"]) == 0
    assert handed["data"].fingerprint() == dataset.fingerprint() and handed["seeds"] == 1
    assert handed["decisions"].equals(ledger.state()) and handed["recipe"] == settings
    assert handed["holdout"] == 0.2 and list(handed["flagged_ids"]) == flagged.sort_values("rank")["sample_id"].tolist()
    saved = Project(tmp_path).read_verify()
    assert np.isclose(saved["accuracy_after"], report.accuracy_after)


@pytest.mark.slow
def test_several_seeds_give_the_spread_and_count_decisions_applied_and_held_out(cache_dir, tmp_path):
    settings = AuditSettings(noise_rate=0.2, budget=0.2, map_method="none", epochs=2, limit=400)
    result = audit("digits", settings, out_dir=tmp_path, cache_dir=cache_dir)
    ledger = Project(tmp_path).open_ledger()
    ledger.decide(result.scores["sample_id"].iloc[:100], "remove", annotator="test")
    report = verify_cleaning(Project(tmp_path).load_dataset(), ledger.state(), settings, seeds=2)
    assert report.seeds == (settings.seed, settings.seed + 1) and len(report.accuracies_after) == 2
    assert report.accuracy_before == np.mean(report.accuracies_before)
    assert report.decisions == 100 and 0 < report.decisions_held_out < 100
    assert report.removed == 100 - report.decisions_held_out
    assert report.change_spread is not None and report.verdict() in (
        "better",
        "worse",
        "no clear change",
        "too little data to tell",
    )
    assert "fell in the held-out part" in report.describe() and "mean of 2 seeds" in report.describe()
    assert report.describe().startswith(f"verdict: {report.verdict()} ({report.change:+.3f} is ")
    assert "twice the combined standard error" in report.describe() and "were not applied" in report.describe()
    assert report.seed_error is not None and report.error >= report.sampling_error
