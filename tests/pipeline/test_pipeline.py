"""The whole audit on real data: planted noise is found, the CLI works on every input kind, the cache is reused."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from ogaudit.cli import main
from ogaudit.errors import SettingsError
from ogaudit.pipeline.run import AuditSettings, audit
from ogaudit.project import Project

FAST = ["--epochs", "3", "--map", "pca", "--quiet"]


@pytest.mark.slow
def test_planted_noise_on_real_digits_is_flagged(cache_dir, tmp_path):
    settings = AuditSettings(noise_rate=0.1, map_method="pca", epochs=10)  # the demo's epochs; auto would take 30
    result = audit("digits", settings, out_dir=tmp_path, cache_dir=cache_dir)
    flagged = result.scores[result.scores["flagged"]]
    assert len(flagged) == round(0.05 * 1797)
    precision = flagged["is_noisy"].mean()
    assert precision >= 0.85, f"only {precision:.2f} of the flags are planted noise"
    noisy = result.scores[result.scores["is_noisy"]]
    assert (noisy["suggested_label"] == noisy["true_label"]).mean() >= 0.8
    assert result.record["metrics"]["auroc"] >= 0.95
    assert result.label_evidence.shape == (1797, 10)


@pytest.mark.slow
def test_scan_files_and_cache_reuse(cache_dir, tmp_path):
    out = tmp_path / "run"
    assert (
        main(["scan", "digits", "--out", str(out), "--cache-dir", str(cache_dir), *FAST, "--noise-rate", "0.05"]) == 0
    )
    scores = pd.read_csv(Project(out).run_files()["scores"])
    expected = {"sample_id", "given_label", "predicted_label", "suggested_label", "score", "rank", "flagged"}
    assert expected | {"true_label"} <= set(scores.columns)
    assert sorted(scores["rank"]) == list(range(1, 1798))
    assert scores.sort_values("rank")["score"].is_monotonic_decreasing
    map_frame = pd.read_csv(Project(out).run_files()["map"])
    assert list(map_frame.columns) == ["sample_id", "x", "y"] and len(map_frame) == 1797
    record = Project(out).read_record()
    assert record["model"]["cached"] is False and record["dataset"]["samples"] == 1797
    assert {"load", "train", "gradients", "detect", "map"} <= set(record["timings_s"])
    again = tmp_path / "again"
    assert (
        main(["scan", "digits", "--out", str(again), "--cache-dir", str(cache_dir), *FAST, "--noise-rate", "0.05"]) == 0
    )
    assert Project(again).read_record()["model"]["cached"] is True
    pd.testing.assert_frame_equal(pd.read_csv(Project(again).run_files()["scores"]), scores)


@pytest.mark.parametrize("kind", ["folder", "manifest", "npz"])
def test_scan_each_file_kind(kind, digit_files, cache_dir, tmp_path, capsys):
    assert main(["scan", str(digit_files[kind]), "--out", str(tmp_path), "--cache-dir", str(cache_dir), *FAST]) == 0
    scores = pd.read_csv(Project(tmp_path).run_files()["scores"])
    assert len(scores) == 300 and scores["flagged"].sum() == 15
    assert "flagged 15 of 300" in capsys.readouterr().out


def test_console_script_reports_bad_input_without_traceback(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "ogaudit.cli", "scan", str(tmp_path / "missing"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 3  # bad input (exit codes by kind: ogaudit.cli.EXIT_CODES)
    assert "neither a built-in" in completed.stderr and "Traceback" not in completed.stderr


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["scan", "--help"])
    text = capsys.readouterr().out
    for option in ("--model", "--epochs", "--detector", "--budget", "--noise-rate", "--map", "--seed", "--layers"):
        assert option in text


@pytest.mark.slow
def test_umap_map_and_iforest_detector(cache_dir, digits):
    small = digits.subset(np.arange(400))
    settings = AuditSettings(epochs=2, detector="iforest-per-class", budget=20, map_method="umap")
    result = audit(small, settings, cache_dir=cache_dir)
    coords = result.map[["x", "y"]].to_numpy()
    assert coords.shape == (400, 2) and np.isfinite(coords).all() and coords.std(axis=0).min() > 0
    assert result.scores["flagged"].sum() == 20


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"detector": "nope"}, "detector"),
        ({"budget": 0}, "budget"),
        ({"map_method": "tsne"}, "map_method"),
        ({"noise_rate": 1.5}, "noise_rate"),
        ({"epochs": 0}, "epochs"),
        ({"model": "bigmodel"}, "model"),
    ],
)
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(SettingsError, match=match):
        AuditSettings(**kwargs)


def test_scan_with_projected_layer_gradients(cache_dir, digits, tmp_path):
    small = digits.subset(np.arange(300))
    settings = AuditSettings(epochs=2, layers=("body.fc", "head"), projection_dim=256, map_method="pca", budget=15)
    seen = []
    result = audit(
        small, settings, cache_dir=tmp_path / "cache", out_dir=tmp_path, progress=lambda *event: seen.append(event)
    )
    assert result.scores["flagged"].sum() == 15
    bar = [fraction for stage, fraction, _ in seen if stage == "gradients"]
    assert bar == sorted(bar) and bar[-1] == 1.0, "the head's pass and the layers' passes fill one bar, in order"
    assert any(0 < fraction < 0.3 for fraction in bar) and any(0.3 < fraction < 1 for fraction in bar)
    assert list(result.record["settings"]["layers"]) == ["body.fc", "head"]
    with pytest.raises(SettingsError, match="gradient detector"):
        AuditSettings(layers=("head",), detector="loss")


def test_a_layer_name_typo_fails_before_training(digits, tmp_path, monkeypatch):
    import ogaudit.pipeline.stages as pipeline
    from ogaudit.errors import ModelError

    def no_training(*args, **kwargs):
        raise AssertionError("training started before the layer names were checked")

    monkeypatch.setattr(pipeline, "train_model", no_training)
    with pytest.raises(ModelError, match=r"'body\.fc9' is not in the model.*--layers"):
        audit(digits.subset(np.arange(100)), AuditSettings(layers=("body.fc9",)), cache_dir=tmp_path)


def test_the_choice_lists_have_one_source():
    from ogaudit.detectors.outliers import DETECTORS
    from ogaudit.settings import DEFAULT_DETECTOR, DETECTOR_NAMES
    from ogaudit.ui.forms import SetupChoices

    assert set(DETECTORS) == set(DETECTOR_NAMES)
    assert SetupChoices().detector == DEFAULT_DETECTOR == AuditSettings().detector


@pytest.mark.parametrize("bad", [0, -1, 1.5, "lots", float("nan")])
def test_one_budget_rule_everywhere(bad, capsys):
    from ogaudit.detectors.base import flag_budget

    with pytest.raises(SettingsError, match="budget"):
        AuditSettings(budget=bad)
    with pytest.raises(SettingsError, match="budget"):
        flag_budget(np.zeros(10), bad)
    with pytest.raises(SystemExit):
        main(["scan", "digits", "--out", "x", "--budget", str(bad)])
    assert "budget must be a fraction" in capsys.readouterr().err


def test_label_spelling_variants_are_refused_then_folded_on_request(digit_files, cache_dir, tmp_path, capsys):
    lines = digit_files["manifest"].read_text().splitlines()
    variants = ["Zero", "zero", "ZERO "]
    rows = [lines[0]] + [
        f"{row.split(',')[0]},{variants[i % 3] if row.endswith(',0') else row.split(',')[1]}"
        for i, row in enumerate(lines[1:])
    ]
    manifest = digit_files["folder"] / "variants.csv"
    manifest.write_text("\n".join(rows) + "\n")
    argv = ["scan", str(manifest), "--cache-dir", str(cache_dir), *FAST]
    assert main([*argv, "--out", str(tmp_path / "refused")]) == 3
    assert "--fold-labels" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "folded"), "--fold-labels"]) == 0
    out = capsys.readouterr().out
    assert "note:" in out and "Zero" in out
    run = Project(tmp_path / "folded").open_run()
    assert len(run.class_names) == 10 and run.settings.fold_labels
    assert Project(tmp_path / "folded").load_dataset().fingerprint() == run.record["dataset"]["fingerprint"]


@pytest.mark.parametrize("given", [("conv2,fc1",), ("conv2, fc1",), "conv2 fc1", ("conv2", "fc1")])
def test_layer_names_given_in_one_string_are_split(given):
    from ogaudit.cli import build_parser

    assert AuditSettings(layers=given).layers == ("conv2", "fc1")
    args = build_parser().parse_args(["scan", "digits", "--out", "p", "--layers", "conv2,fc1"])
    assert AuditSettings(layers=tuple(args.layers)).layers == ("conv2", "fc1")


@pytest.mark.parametrize("given", [("",), ("fc1", "fc1"), ("fc1", "fc1,conv2")])
def test_empty_or_repeated_layer_names_are_refused(given):
    from ogaudit.errors import SettingsError

    with pytest.raises(SettingsError, match="distinct, non-empty layer names"):
        AuditSettings(layers=given)


def test_automatic_epochs_follow_the_data_size_and_cap_the_sample_visits():
    from ogaudit.settings import MAX_SAMPLE_VISITS, auto_epochs

    assert [auto_epochs(n) for n in (1_000, 10_000, 60_000, 300_000)] == [30, 15, 5, 5]
    big = [auto_epochs(n) for n in (300_001, 400_000, 1_000_000, 2_000_000)]
    assert big == [5, 4, 2, 1]
    assert all(e * n <= MAX_SAMPLE_VISITS + n for e, n in zip(big, (300_001, 400_000, 1_000_000, 2_000_000)))


def _as_vectors(dataset):
    """The images as (N, 64) float32 feature vectors, a table's kind of data."""
    from dataclasses import replace

    return replace(dataset, x=dataset.x.reshape(len(dataset), -1).astype(np.float32), kind="npz", paths=None)


def test_the_neighbour_search_of_fixed_features_is_cached_across_label_changes(tmp_path, digits, monkeypatch):
    """A linear model's last-layer inputs do not depend on the labels: after the labels change (a review round,
    planted noise), the scan reads the gradient neighbours from the cache and scores exactly as a fresh search."""
    from ogaudit.data.noise import inject_label_noise
    from ogaudit.detectors import neighbours

    calls = []
    search = neighbours.nearest_neighbours

    def spy(directions, k, **options):
        calls.append(len(directions))
        return search(directions, k, **options)

    monkeypatch.setattr(neighbours, "nearest_neighbours", spy)
    small = _as_vectors(digits.subset(np.arange(500)))
    settings = AuditSettings(model="linear", epochs=3, map_method="none")
    cache = tmp_path / "cache"
    audit(small, settings, cache_dir=cache)
    assert calls == [500]
    relabelled = inject_label_noise(small, 0.2, seed=3)
    again = audit(relabelled, settings, cache_dir=cache)
    assert calls == [500], "the second scan searched again"
    fresh = audit(relabelled, settings, cache_dir=tmp_path / "fresh")
    assert calls == [500, 500]
    pd.testing.assert_frame_equal(again.scores, fresh.scores)
    np.testing.assert_array_equal(again.neighbours[0], fresh.neighbours[0])

    entry = next((cache / "v1" / "neighbours").iterdir())
    np.savez(entry / "neighbours.npz", neighbours=np.zeros((3, 2), np.int64), cosines=np.zeros((3, 2), np.float32))
    damaged = audit(inject_label_noise(small, 0.2, seed=4), settings, cache_dir=cache)
    assert calls == [500, 500, 500]  # recomputed, and said so
    assert any("neighbours" in notice for notice in damaged.record["notices"])


def test_a_model_that_trains_its_features_caches_no_neighbour_search(tmp_path, digits):
    audit(
        _as_vectors(digits.subset(np.arange(300))),
        AuditSettings(model="mlp", epochs=2, map_method="none"),
        cache_dir=tmp_path,
    )
    assert (tmp_path / "v1" / "scores").is_dir()
    assert not (tmp_path / "v1" / "neighbours").exists()


def test_a_pinned_dataset_keeps_its_fingerprint_and_its_subsets_do_not(digits):
    data = _as_vectors(digits.subset(np.arange(200)))
    pinned = data.pinned()
    assert pinned.fingerprint() == data.fingerprint() and pinned.x is data.x
    assert pinned.subset(np.arange(100)).fingerprint() == data.subset(np.arange(100)).fingerprint()
    data.y[0] = (data.y[0] + 1) % data.n_classes  # the original is hashed anew; the pin is the run's snapshot
    assert data.fingerprint() != pinned.fingerprint()


@pytest.mark.parametrize("forgery", ["bool positions", "itself as neighbour", "all row 0", "another search", "nan"])
def test_a_forged_cached_neighbour_search_is_recomputed_not_trusted(tmp_path, digits, forgery):
    from ogaudit.data.noise import inject_label_noise

    data = _as_vectors(digits.subset(np.arange(400)))
    settings = AuditSettings(model="linear", epochs=2, map_method="none")
    cache = tmp_path / "cache"
    audit(data, settings, cache_dir=cache)
    npz = next((cache / "v1" / "neighbours").iterdir()) / "neighbours.npz"
    with np.load(npz) as saved:
        found, cosines = saved["neighbours"], saved["cosines"]
    if forgery == "bool positions":
        found = found.astype(bool)
    elif forgery == "itself as neighbour":
        found[:, 0] = np.arange(len(found))
    elif forgery == "all row 0":
        found[:] = 1 + (found[:, :1] == 1)  # a real position, the same for every neighbour
    elif forgery == "another search":
        found = np.roll(found, 7, axis=0)  # a well-formed search of other rows
    else:
        cosines[:] = np.nan
    np.savez(npz, neighbours=found, cosines=cosines)
    relabelled = inject_label_noise(data, 0.2, seed=5)
    again = audit(relabelled, settings, cache_dir=cache)
    assert any("neighbours" in notice and "discarded" in notice for notice in again.record["notices"])
    fresh = audit(relabelled, settings, cache_dir=tmp_path / "fresh")
    pd.testing.assert_frame_equal(again.scores, fresh.scores)


def test_rows_with_nan_or_inf_are_refused_by_the_neighbour_search():
    from ogaudit.detectors.neighbours import nearest_neighbours
    from ogaudit.errors import ModelError

    rows = np.eye(5, dtype=np.float32)
    rows[3, 1] = np.nan
    with pytest.raises(ModelError, match=r"1 of 5 rows to search \(the first at position 3\) hold NaN"):
        nearest_neighbours(rows, 2)


def _auto_inputs(n: int = 400, classes: int = 4):
    """A small head evidence and its dataset: clustered features, 15% of the labels moved to a partner class and 5%
    to another class."""
    from ogaudit.data.dataset import Dataset
    from ogaudit.gradients import HeadEvidence

    rng = np.random.default_rng(3)
    true = np.arange(n) % classes
    features = (rng.normal(size=(classes, 8)) * 3.0)[true] + rng.normal(size=(n, 8))
    flip = rng.random(n)
    given = np.where(flip < 0.15, true ^ 1, np.where(flip < 0.2, (true + 2) % classes, true))
    logits = rng.normal(0.0, 0.3, size=(n, classes))
    logits[np.arange(n), true] += 3.0
    head = HeadEvidence.from_head(features.astype(np.float32), logits.astype(np.float32), given)
    ids = np.array([f"s{i}" for i in range(n)])
    dataset = Dataset(x=features, y=given, sample_ids=ids, class_names=list("abcd"), kind="npz", source="test")
    return head, dataset


def test_detect_keeps_posterior_autos_kappa_and_weight_in_its_cache_and_a_new_ramp_is_a_new_entry(
    tmp_path, monkeypatch
):
    import ogaudit.detectors.outliers as outliers
    import ogaudit.pipeline.stages as stages
    from ogaudit.cache.artifacts import ArtifactCache

    head, dataset = _auto_inputs()
    cache = ArtifactCache(tmp_path / "cache")
    settings = AuditSettings(detector="posterior-auto")
    table, _, _, state = stages.detect(head, None, dataset, settings, "model", cache)
    fitted = outliers.make_detector("posterior-auto").fit(head)
    assert state == {
        "concentration": fitted.concentration_,
        "ratio_weight": fitted.weight_,
        "ramp": list(outliers.RATIO_RAMP),
    }
    assert state["ratio_weight"] == 1.0  # planted partner-class flips: the ratio alone

    def no_detector(*args, **kwargs):
        raise AssertionError("the detector ran although its scores were cached")

    with monkeypatch.context() as patch:
        patch.setattr(stages, "_outlier_scores", no_detector)
        again, _, _, cached_state = stages.detect(head, None, dataset, settings, "model", cache)
    assert cached_state == state and np.array_equal(again["score"], table["score"])
    # a changed ramp must not read back scores blended under the old one
    monkeypatch.setattr(outliers, "RATIO_RAMP", (0.0, 1.0))
    _, _, _, moved = stages.detect(head, None, dataset, settings, "model", cache)
    assert moved["ramp"] == [0.0, 1.0] and moved["concentration"] == pytest.approx(state["concentration"])
    assert moved["ratio_weight"] == pytest.approx(state["concentration"]) and moved["ratio_weight"] < 1.0
    assert len(list((tmp_path / "cache" / "v1" / "scores").iterdir())) == 2
    monkeypatch.setattr(outliers, "AUTO_VERSION", outliers.AUTO_VERSION + 1)  # a new κ, the same ramp: a new entry
    stages.detect(head, None, dataset, settings, "model", cache)
    assert len(list((tmp_path / "cache" / "v1" / "scores").iterdir())) == 3
    _, _, _, other = stages.detect(head, None, dataset, AuditSettings(detector="posterior"), "model", cache)
    assert other == {}
