"""Trim and retrain on real digits with planted noise: cleaning as the scan suggests does not hurt."""

import numpy as np

from ogaudit.cli import main
from ogaudit.pipeline import AuditSettings, audit
from ogaudit.project import Project
from ogaudit.review.verify import verify_cleaning


def test_relabelling_the_flags_keeps_or_improves_held_out_accuracy(cache_dir, tmp_path):
    settings = AuditSettings(noise_rate=0.3, budget=0.3, map_method="none", epochs=10)
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

    assert main(["verify", "--project", str(tmp_path)]) == 0
    saved = Project(tmp_path).read_verify()
    assert np.isclose(saved["accuracy_after"], report.accuracy_after)
