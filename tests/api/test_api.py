"""The public face a notebook uses: ``ogaudit.audit`` on data in memory, ``ogaudit.score`` on a model's outputs,
and ``ogaudit.Project`` for the review, each checked against the route the command line takes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import average_precision_score

import ogaudit
from ogaudit.api import SCORE_COLUMNS
from ogaudit.cli import main
from ogaudit.data.containers import as_dataset
from ogaudit.errors import DataError, LedgerError, SettingsError
from ogaudit.project import ReviewMismatchWarning
from ogaudit.review.calibration import reviewed_estimate

REPO = Path(__file__).resolve().parents[2]
FAST = ogaudit.AuditSettings(epochs=2, map_method="pca", noise_rate=0.1)


@pytest.fixture(scope="module")
def vectors():
    """sklearn's 1,797 digits as (N, 64) float vectors and int labels."""
    digits = load_digits()
    return digits.data, digits.target


@pytest.fixture(scope="module")
def audited(vectors, cache_dir, tmp_path_factory):
    """The digits audited from memory with 10% planted noise, written to a project folder."""
    folder = tmp_path_factory.mktemp("api") / "project"
    return ogaudit.audit(vectors, FAST, out_dir=folder, cache_dir=cache_dir)


def planted_flips(n: int = 800, classes: int = 4, rate: float = 0.1, seed: int = 0):
    """Separable synthetic features, probabilities of a model fitted on them, clean and noisy labels."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 2.5, size=(classes, 6))
    clean = rng.integers(0, classes, n)
    features = centers[clean] + rng.normal(size=(n, 6))
    noisy = clean.copy()
    flip = rng.random(n) < rate
    noisy[flip] = (clean[flip] + rng.integers(1, classes, int(flip.sum()))) % classes
    distance = ((features[:, None, :] - centers[None]) ** 2).sum(axis=2)  # a nearest-centre "model"
    logits = -distance / 2
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    return features, probs, logits, clean, noisy


# ---------------------------------------------------------------- the package's face


def test_import_ogaudit_and_its_names_load_no_torch_until_used():
    code = (
        "import sys, ogaudit\n"
        "names = sorted(ogaudit.__all__)\n"
        "light = [ogaudit.audit, ogaudit.score, ogaudit.export, ogaudit.Project, ogaudit.AuditSettings, ogaudit.Dataset,\n"
        "         ogaudit.load_dataset, ogaudit.__version__]\n"
        "print(names, [m for m in ('torch', 'streamlit', 'ogaudit.pipeline.run') if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout.strip()
    expected = sorted(
        ["audit", "score", "export", "Project", "AuditSettings", "AuditResult", "Dataset", "load_dataset"]
    )
    assert out == f"{sorted([*expected, '__version__'])} []"


def test_every_public_name_resolves_and_is_documented():
    for name in ogaudit.__all__:
        value = getattr(ogaudit, name)
        if name != "__version__":
            assert value.__doc__ and name in ogaudit.__doc__, name
    assert ogaudit.load_dataset("digits").n_classes == 10
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        ogaudit.nothing  # noqa: B018


# ---------------------------------------------------------------- score


def test_score_on_arrays_flags_the_planted_flips():
    features, probs, _logits, clean, noisy = planted_flips()
    table = ogaudit.score(features, probs, noisy)
    assert list(table.columns) == list(SCORE_COLUMNS)
    assert len(table) == len(noisy) and table["sample_id"].tolist() == [str(i) for i in range(len(noisy))]
    wrong = noisy != clean
    assert average_precision_score(wrong, table["score"]) > 0.6  # noise rate ~0.1
    assert table["flagged"].sum() == 40 and wrong[table["flagged"]].mean() > 0.8
    assert set(table["rank"]) == set(range(1, len(noisy) + 1))
    suggested = table["suggested_label"].astype(int).to_numpy()
    assert (suggested[wrong] == clean[wrong]).mean() > 0.8
    assert table["p_wrong"].between(0, 1).all()
    assert table["p_wrong"][wrong].mean() > 0.5 > table["p_wrong"][~wrong].mean()
    assert np.allclose(table["confidence"], probs[np.arange(len(noisy)), noisy])


def test_score_takes_names_logits_tensors_ids_and_other_detectors():
    features, probs, logits, _clean, noisy = planted_flips()
    base = ogaudit.score(features, probs, noisy, budget=25)
    names = np.array(["ant", "bee", "cat", "dog"])
    named = ogaudit.score(features, probs, names[noisy], sample_ids=[f"s{i}" for i in range(len(noisy))])
    assert named["given_label"].tolist() == names[noisy].tolist()
    assert named["sample_id"].iloc[0] == "s0" and np.allclose(named["score"], base["score"])
    from_logits = ogaudit.score(torch.tensor(features), labels=torch.tensor(noisy), logits=torch.tensor(logits))
    assert np.allclose(from_logits["score"], base["score"], atol=1e-4)
    assert base["flagged"].sum() == 25
    for detector in ("l2", "iforest", "loss"):
        other = ogaudit.score(features, probs, noisy, detector=detector)
        assert list(other.columns) == list(SCORE_COLUMNS) and other["score"].notna().all()
        assert other.attrs == {"detector": detector, "detector_state": {}}  # they read nothing to report
    assert 0.0 <= base.attrs["detector_state"]["ratio_weight"] <= 1.0


def test_score_reproduces_the_audit_and_the_review_cards(audited):
    evidence = audited.evidence
    from_evidence = ogaudit.score(evidence=evidence, class_names=audited.dataset.class_names)
    assert np.allclose(from_evidence["score"], audited.scores["score"])
    assert (from_evidence["suggested_label"] == audited.scores["suggested_label"].astype(str)).all()  # y: ints
    from_arrays = ogaudit.score(evidence.features[:, :-1], evidence.probs, evidence.labels)
    assert np.allclose(from_arrays["score"], audited.scores["score"])
    # what posterior-auto read (κ, w) is said as the audit's run.json says it
    state = audited.record["detector_state"]
    assert from_arrays.attrs["detector"] == from_evidence.attrs["detector"] == "posterior-auto"
    assert set(state) == {"concentration", "ratio_weight", "ramp"}
    for table in (from_evidence, from_arrays):
        assert table.attrs["detector_state"].keys() == state.keys()
        for key in ("concentration", "ratio_weight"):
            assert table.attrs["detector_state"][key] == pytest.approx(state[key], abs=1e-9)
    rows = np.argsort(audited.scores["rank"].to_numpy())[:20]
    estimate = reviewed_estimate(audited.scores, None)  # no decisions: the table's own p_wrong
    cards = ogaudit.Project(audited.out_dir).open_evidence().explain(rows, wrong=estimate)
    assert np.allclose(from_arrays["p_wrong"].to_numpy()[rows], [card.p_wrong for card in cards])
    assert np.allclose(audited.scores["p_wrong"], from_arrays["p_wrong"])  # audit, score() and cards: one number
    assert from_arrays["sample_id"].map(type).eq(str).all() and audited.scores["sample_id"].map(type).eq(str).all()


def test_score_refuses_bad_input_naming_the_parameter_and_the_fix():
    features, probs, logits, _clean, noisy = planted_flips(n=100)
    cases = [
        (dict(probs=probs, labels=noisy), DataError, "features is missing"),
        (dict(features=features, labels=noisy), DataError, "exactly one of probs= .* or logits="),
        (dict(features=features, probs=logits, labels=noisy), DataError, "pass them as logits="),
        (dict(features=features[:50], probs=probs, labels=noisy), DataError, "probs has 100 rows but features has 50"),
        (dict(features=features, probs=probs, labels=noisy[:10]), DataError, r"labels must be \(N,\) = \(100,\)"),
        (dict(features=features, probs=probs, labels=noisy + 4), DataError, r"class indices 0 … 3"),
        (dict(features=features, probs=probs, labels=noisy, detector="magic"), SettingsError, "'magic' is not one"),
        (dict(features=features, probs=probs, labels=noisy, budget=1.5), SettingsError, "got 1.5. Pass budget="),
        (dict(features=features, probs=probs, labels=noisy, class_names=["a"]), DataError, "1 names but probs has 4"),
        (dict(features=features, probs=probs, labels=noisy, sample_ids=[1] * 100), DataError, "must be unique"),
        (dict(features=features[:, 0], probs=probs, labels=noisy), DataError, r"2-D array .* got shape \(100,\)"),
        (dict(features=features, probs=probs, labels=np.array(["a", "b"] * 50)), DataError, "give class_names="),
        (dict(evidence="head"), TypeError, "evidence must be a GradientEvidence"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            ogaudit.score(**kwargs)
    features[3, 2] = np.nan
    with pytest.raises(DataError, match="features has NaN .* first at row 3"):
        ogaudit.score(features, probs, noisy)


def test_score_checks_seed_budget_evidence_categoricals_and_float32_range():
    from ogaudit.gradients import HeadEvidence

    features, probs, logits, _clean, noisy = planted_flips(n=100)
    for seed in (-1, 1.5, True, "0"):
        with pytest.raises(SettingsError, match=f"seed must be a whole number ≥ 0.*got {seed!r}"):
            ogaudit.score(features, probs, noisy, seed=seed)
    with pytest.raises(SettingsError, match="got True. Pass budget="):
        ogaudit.score(features, probs, noisy, budget=True)
    assert len(ogaudit.score(features, probs, noisy, seed=np.int64(3))) == 100
    with_bias = np.hstack([features, np.ones((100, 1))]).astype(np.float32)
    bad_evidence = {
        r"evidence.labels must be class indices 0 … 3": HeadEvidence(with_bias, probs.astype(np.float32), noisy + 4),
        r"evidence.probs must hold probabilities": HeadEvidence(with_bias, (probs * 2).astype(np.float32), noisy),
        r"evidence.features has NaN .* first at row 0": HeadEvidence(
            np.where(np.arange(7) == 0, np.nan, with_bias).astype(np.float32), probs.astype(np.float32), noisy
        ),
    }
    for message, evidence in bad_evidence.items():
        with pytest.raises(DataError, match=message):
            ogaudit.score(evidence=evidence)
    names = np.array(["d", "c", "b", "a"])[noisy]  # column c of probs is class "dcba"[c]: not the sorted order
    ordered = pd.Categorical(names, categories=["d", "c", "b", "a"])
    table = ogaudit.score(features, probs, ordered)
    assert table["given_label"].tolist() == names.tolist()
    by_names = ogaudit.score(features, probs, names, class_names=["d", "c", "b", "a"])
    np.testing.assert_array_equal(table["score"], by_names["score"])
    np.testing.assert_array_equal(ogaudit.score(features, probs, pd.Series(ordered))["score"], by_names["score"])
    with pytest.raises(DataError, match="Categorical of 5 categories"):
        ogaudit.score(features, probs, ordered.add_categories(["e"]))
    half = ogaudit.score(torch.tensor(features).bfloat16(), torch.tensor(probs).half(), torch.tensor(noisy))
    assert len(half) == 100
    with pytest.raises(DataError, match=r"features is a sparse tensor .*features.to_dense\(\)"):
        ogaudit.score(torch.tensor(features).to_sparse(), probs, noisy)
    with pytest.raises(DataError, match=r"probs is a masked array with 1 masked value"):
        ogaudit.score(features, np.ma.masked_array(probs, mask=np.arange(probs.size).reshape(probs.shape) == 0), noisy)
    huge = features.copy()
    huge[4, 1] = 1e300
    for outputs in (dict(probs=probs), dict(logits=logits)):
        with pytest.raises(DataError, match=r"features has values beyond the float32 range .* first at row 4"):
            ogaudit.score(huge, labels=noisy, **outputs)


# ---------------------------------------------------------------- audit on data in memory


def test_audit_of_arrays_finds_the_planted_noise_as_the_npz_route_does(audited, vectors, tmp_path):
    metrics = audited.record["metrics"]
    assert metrics["noisy"] == 180 and metrics["average_precision"] > 0.6  # 10% noise: chance is 0.1
    assert audited.record["dataset"]["spec"] == "arrays" and audited.scores["is_noisy"].sum() == 180
    x, y = vectors
    np.savez(tmp_path / "digits.npz", x=x, y=y)
    by_path = ogaudit.audit(tmp_path / "digits.npz", FAST, cache_dir=tmp_path / "fresh-cache")  # trained again
    assert by_path.record["dataset"]["fingerprint"] == audited.record["dataset"]["fingerprint"]
    pd.testing.assert_frame_equal(by_path.scores, audited.scores)


def test_a_dataframe_and_a_torch_dataset_give_the_arrays_scores(audited, vectors, cache_dir):
    x, y = vectors
    frame = pd.DataFrame(x, columns=[f"pixel{i}" for i in range(64)]).assign(target=y)
    tensors = torch.utils.data.TensorDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(y))
    for data in (frame, tensors):
        result = ogaudit.audit(data, FAST, cache_dir=cache_dir)
        assert result.record["dataset"]["fingerprint"] == audited.record["dataset"]["fingerprint"]
        assert np.array_equal(result.scores["score"], audited.scores["score"])
    labelled = frame.rename(columns={"target": "digit"}).assign(key=[f"k{i}" for i in range(len(y))])
    dataset = as_dataset(labelled, label_column="digit", id_column="key")
    assert dataset.sample_ids[0] == "k0" and dataset.x.shape == (len(y), 64)
    images = torch.utils.data.TensorDataset(torch.rand(30, 3, 16, 16), torch.arange(30) % 3)
    assert as_dataset(images).x.shape == (30, 16, 16, 3)  # (C, H, W) tensors as (H, W, C) images


def test_audit_refuses_what_it_cannot_read_with_the_accepted_forms(tmp_path, capsys):
    with pytest.raises(TypeError, match="data must be a built-in name or a path .* a pandas DataFrame"):
        ogaudit.audit({"x": [1, 2]})
    with pytest.raises(DataError, match=r"… \(300 characters\) is neither a built-in .* too long to be a file name"):
        ogaudit.audit("3," * 150)
    with pytest.raises(DataError, match=r"'no/such/place' is neither a built-in \(digits.*\) nor an existing path"):
        ogaudit.audit("no/such/place")
    with pytest.raises(TypeError, match="label_column applies only to in-memory data"):
        ogaudit.audit("digits", label_column="y")
    with pytest.raises(TypeError, match="settings must be an AuditSettings"):
        ogaudit.audit("digits", {"epochs": 1})
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "city": list("xyzx"), "label": [0, 1, 0, 1]})
    with pytest.raises(DataError, match=r"feature columns must be numeric; 1 is not: \['city'\]"):
        ogaudit.audit(frame)
    with pytest.raises(DataError, match="no label column: .* label_column='your_column'"):
        ogaudit.audit(frame.drop(columns=["label", "city"]))
    with pytest.raises(DataError, match="x has 3 samples but y has shape"):
        ogaudit.audit((np.zeros((3, 4)), np.array([0, 1])))
    assert main(["scan", "x" * 300, "--out", str(tmp_path / "p"), "--quiet"]) == 3  # the command line too: bad input
    assert "too long to be a file name" in capsys.readouterr().err


# ---------------------------------------------------------------- the review from a notebook


def test_a_project_from_a_notebook_decides_lists_and_exports(audited, vectors, tmp_path):
    project = ogaudit.Project(audited.out_dir)
    run = project.open_run()
    flags = run.table[run.table["flagged"]].sort_values("rank")
    changing = flags[flags["suggested_label"] != flags["given_label"]]
    first, second, third = changing["sample_id"].iloc[:3]
    project.decide("confirm", first, annotator="nb")
    project.decide("remove", [second], annotator="nb", note="smudge")
    project.decide("keep", int(third), annotator="nb")  # an id as a number names the same sample
    assert project.undo("nb").sample_ids == (third,)
    decisions = project.decisions()
    assert decisions["sample_id"].tolist() == [first, second]
    assert decisions["action"].tolist() == ["confirm", "remove"]
    # the arrays' labels were integers: the decisions give them as integers, as audited.scores does (run.table
    # is the folder's text view)
    assert decisions["final_label"].iloc[0] == int(changing["suggested_label"].iloc[0])
    assert audited.scores["given_label"].dtype.kind == "i" and str(decisions["given_label"].dtype) == "Int64"
    assert len(project.decisions(history=True)) == 4  # three decisions and an undo
    given = run.by_id.loc[first, "given_label"]
    with pytest.raises(LedgerError, match="Confirm must change the label"):
        project.decide("confirm", first, annotator="nb", label=given)

    written = project.export_decisions(tmp_path / "d.csv", ids=[second])
    assert pd.read_csv(written, dtype=str)["sample_id"].tolist() == [second]
    with pytest.raises(DataError, match="held in memory .* data=\\(x, y\\)"):
        project.export_split(tmp_path / "no-data")
    manifest = project.export_split(tmp_path / "clean", data=vectors)
    # the planted noise is not the user's: the export starts from their own labels, and the confirm of a planted
    # flip restores the label their data already has (a relabel only where the decision differs from it)
    changed = int(decisions["final_label"].iloc[0] != vectors[1][int(first)])
    assert manifest["counts"] | {"input": 1797, "kept": 1796, "removed": 1, "relabelled": changed} == manifest["counts"]
    with np.load(tmp_path / "clean" / manifest["data"]) as cleaned:
        untouched = np.setdiff1d(np.arange(len(vectors[1])), [int(first), int(second)])
        kept_rows = np.delete(np.arange(len(vectors[1])), int(second))
        assert np.array_equal(cleaned["y"][np.isin(kept_rows, untouched)], vectors[1][untouched])
    with np.load(tmp_path / "clean" / manifest["data"]) as cleaned:  # the arrays given, one row out, one relabelled
        kept = np.delete(np.arange(len(vectors[1])), int(second))
        assert np.array_equal(cleaned["x"], vectors[0][kept])
        assert cleaned["y"][np.searchsorted(kept, int(first))] == decisions["final_label"].iloc[0]
    report = project.verify(seeds=1, data=vectors)
    assert report.describe() == project.read_verify()["text"] and project.read_verify()["decided"] == 2
    # the command line reads the same review
    assert main(["export", "decisions", "--project", str(audited.out_dir), "--out", str(tmp_path / "c.csv")]) == 0
    assert pd.read_csv(tmp_path / "c.csv", dtype=str)["sample_id"].tolist() == [first, second]


def test_a_rescan_of_other_data_into_a_reviewed_project_warns(vectors, cache_dir, tmp_path):
    x, y = vectors
    folder = tmp_path / "project"
    quick = ogaudit.AuditSettings(epochs=1, map_method="pca")
    first = ogaudit.audit((x[:600], y[:600]), quick, out_dir=folder, cache_dir=cache_dir)
    project = ogaudit.Project(folder)
    project.decide("keep", first.scores["sample_id"].iloc[0], annotator="nb")
    with pytest.warns(ogaudit.api.AuditNotice, match="holds a review of the data this folder audited before"):
        again = ogaudit.audit((x[:500], y[:500]), quick, out_dir=folder, cache_dir=cache_dir)
    assert any("holds a review of the data this folder audited before" in n for n in again.record["notices"])
    with pytest.warns(ReviewMismatchWarning, match="was made for other data"):
        assert len(project.decisions()) == 1


def test_a_dataframe_audited_with_its_own_column_names_is_reviewed_and_exported_again(vectors, cache_dir, tmp_path):
    x, y = vectors
    frame = pd.DataFrame(x[:300], columns=[f"px{i}" for i in range(64)])
    frame.insert(0, "image_id", [f"im{i}" for i in range(300)])
    frame["digit"] = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])[y[:300]]
    settings = ogaudit.AuditSettings(epochs=1, map_method="pca")
    result = ogaudit.audit(frame, settings, out_dir=tmp_path / "p", cache_dir=cache_dir, label_column="digit",
                           id_column="image_id")  # fmt: skip
    project = ogaudit.Project(result.out_dir)
    assert project.settings().label_column == "digit" and project.settings().id_column == "image_id"
    project.decide("remove", "im7", annotator="nb")
    manifest = project.export_split(tmp_path / "clean", data=frame)  # the columns come from the run
    assert manifest["counts"]["removed"] == 1 and manifest["counts"]["kept"] == 299


def test_a_failed_audit_leaves_no_empty_project_folder_and_bad_callbacks_are_named(tmp_path):
    with pytest.raises(DataError):
        ogaudit.audit(str(tmp_path / "missing"), out_dir=tmp_path / "project")
    assert not (tmp_path / "project").exists()
    with pytest.raises(TypeError, match="progress must be a function"):
        ogaudit.audit("digits", progress="yes")
    assert ogaudit.errors.DataError is DataError  # reachable after a bare `import ogaudit`
    with pytest.raises(DataError, match="is not a project folder"):
        ogaudit.Project(tmp_path / "nowhere").decisions()
    assert "errors" in dir(ogaudit) and "_EXPORTS" not in dir(ogaudit)
