"""Trim and retrain on real digits with planted noise: cleaning as the scan suggests does not hurt."""

import json

import numpy as np

from ogaudit.cli import main
from ogaudit.pipeline import AuditSettings, audit, load_run_dataset
from ogaudit.review.ledger import open_project_ledger
from ogaudit.review.verify import verify_cleaning


def test_relabelling_the_flags_keeps_or_improves_held_out_accuracy(cache_dir, tmp_path):
    settings = AuditSettings(noise_rate=0.3, budget=0.3, map_method="none", epochs=10)
    result = audit("digits", settings, out_dir=tmp_path, cache_dir=cache_dir)
    flagged = result.scores[result.scores["flagged"]]
    assert flagged["is_noisy"].mean() > 0.8
    dataset = load_run_dataset(result.record)
    ledger = open_project_ledger(tmp_path, dataset)
    for label, group in flagged.groupby("suggested_label"):
        ledger.decide(group["sample_id"], "confirm", label=label, annotator="test")

    report = verify_cleaning(dataset, ledger.state(), settings)
    assert report.evaluated_on.startswith("true labels")
    assert report.train_before == report.train_after and report.relabelled > 0.25 * report.train_before
    # 30% wrong labels cost the noisy model accuracy; fixing most of them must not cost more than noise allows
    assert report.accuracy_after >= report.accuracy_before - 0.02, report.describe()

    assert main(["verify", "--project", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "verify.json").read_text())
    assert np.isclose(saved["accuracy_after"], report.accuracy_after)
