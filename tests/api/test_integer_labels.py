"""Integer in, integer out: labels given as integers come back as integers from ogaudit.score and ogaudit.audit;
names stay names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits

import ogaudit

LABELS = ("given_label", "predicted_label", "suggested_label")


def test_score_keeps_integer_labels_integers_and_names_names():
    rng = np.random.default_rng(0)
    features, probs, y = rng.normal(size=(60, 3)), rng.dirichlet(np.ones(3), 60), rng.integers(0, 3, 60)
    table = ogaudit.score(features, probs, y)
    assert all(table[c].dtype == np.int64 for c in LABELS) and table["given_label"].tolist() == y.tolist()
    assert ogaudit.score(features, probs, y.tolist())["given_label"].tolist() == y.tolist()
    named = ogaudit.score(features, probs, np.array(["a", "b", "c"])[y])
    assert named["given_label"].tolist() == np.array(["a", "b", "c"])[y].tolist()
    indexed = ogaudit.score(features, probs, y, class_names=["x", "y", "z"])  # indices into named classes
    assert indexed["given_label"].iloc[0] == "xyz"[y[0]]


@pytest.fixture(scope="module")
def small():
    digits = load_digits()
    return digits.data[:240].astype(np.float32), digits.target[:240]


def test_audit_gives_integer_labels_back_for_arrays_and_dataframes(small, cache_dir):
    x, y = small
    quick = ogaudit.AuditSettings(epochs=1, map_method="pca")
    result = ogaudit.audit((x, y + 3), quick, cache_dir=cache_dir, progress=False)  # 3 … 12: values, not indices
    assert all(result.scores[c].dtype == np.int64 for c in LABELS)
    assert result.scores["given_label"].tolist() == (y + 3).tolist()
    frame = pd.DataFrame(x, columns=[f"p{i}" for i in range(x.shape[1])]).assign(label=y)
    assert ogaudit.audit(frame, quick, cache_dir=cache_dir, progress=False).scores["given_label"].dtype == np.int64
    named = frame.assign(label=np.array([f"d{v}" for v in y]))
    assert ogaudit.audit(named, quick, cache_dir=cache_dir, progress=False).scores["given_label"].iloc[0] == f"d{y[0]}"


@pytest.mark.parametrize("kind", ["folder", "npz"])
def test_one_label_type_from_the_scores_to_the_decisions_and_every_export(
    kind, digit_files, cache_dir, tmp_path, capsys
):
    """An ImageFolder whose class folders are named 0 … 9 gives text everywhere (the class names are the folder
    names); the same digits as integer arrays (.npz) give integers everywhere; the decisions CSV is text."""
    import json

    integer = kind == "npz"
    quick = ogaudit.AuditSettings(epochs=1, map_method="pca", limit=100)
    result = ogaudit.audit(digit_files[kind], quick, out_dir=tmp_path / kind, cache_dir=cache_dir, progress=False)
    project = ogaudit.Project(tmp_path / kind)
    ids = result.scores["sample_id"].tolist()
    given = result.scores["given_label"].tolist()
    assert all(isinstance(v, int if integer else str) for v in given)
    project.decide("relabel", ids[0], annotator="ana", label="3" if given[0] != 3 and given[0] != "3" else "4")
    relabelled = 3 if given[0] not in (3, "3") else 4
    decisions = project.decisions()
    assert (str(decisions["given_label"].dtype) == "Int64") == integer
    assert decisions["given_label"].tolist() == [given[0]]
    assert decisions["final_label"].tolist() == [relabelled if integer else str(relabelled)]
    history = project.decisions(history=True)
    assert history["label"].tolist() == decisions["final_label"].tolist()
    from ogaudit.cli import main

    assert main(["decisions", "list", "--project", str(tmp_path / kind), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["decisions"]
    assert [(r["given_label"], r["final_label"]) for r in listed] == [(given[0], decisions["final_label"].iloc[0])]

    table = pd.read_parquet(ogaudit.export(project, tmp_path / f"{kind}.parquet", format="parquet"))
    assert table["given_label"].tolist() == given
    assert table["suggested_label"].tolist() == result.scores["suggested_label"].tolist()
    assert table["reviewed_label"].iloc[0] == decisions["final_label"].iloc[0]
    fiftyone = json.loads(
        (ogaudit.export(project, tmp_path / f"{kind}-fo", format="fiftyone") / "labels.json").read_text()
    )
    first = fiftyone["labels"][min(fiftyone["labels"])]["attributes"]
    assert first["reviewed_label"] == decisions["final_label"].iloc[0]
    tasks = json.loads(
        (ogaudit.export(project, tmp_path / f"{kind}-ls", format="label-studio") / "tasks.json").read_text()
    )
    assert {type(t["data"]["given_label"]) for t in tasks} == {int if integer else str}
    csv = project.export_decisions(tmp_path / f"{kind}.csv").read_text().splitlines()
    assert f",{given[0]},relabel,{relabelled}," in csv[1]  # the CSV is text either way
