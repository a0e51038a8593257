"""Exports to the user's tools, each read back by that tool where it installs here: FiftyOne (its own importer
when fiftyone imports, else its documented format), Label Studio (the SDK's label interface), Hugging Face
``datasets``, Parquet (pyarrow and ``datasets``) and cleanlab's label-issues frame."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ogaudit
from ogaudit.errors import DataError, StorageError
from ogaudit.project import Project
from ogaudit.review.exports import (
    CLEANLAB_COLUMNS,
    TABLE_COLUMNS,
    integer_labels,
    label_studio_config,
    reviewed_table,
)


@pytest.fixture
def reviewed_project(finished_project, copy_of):
    """A copy of the shared finished project with a removal, a relabel and a keep in its ledger."""
    folder, result = finished_project
    project = Project(copy_of(folder))
    ids = result.scores["sample_id"].tolist()
    project.decide("remove", ids[:2], annotator="ana")
    project.decide("relabel", ids[2:4], annotator="ana", label="3")
    project.decide("keep", ids[4], annotator="bo")
    return project, result, ids


def test_integer_labels_only_for_plain_whole_numbers():
    assert integer_labels(["0", "1", "10", "-3"])
    assert not integer_labels(["0", "01"]) and not integer_labels(["1.0"]) and not integer_labels(["cat", "1"])
    assert not integer_labels([])


def test_parquet_and_cleanlab_carry_the_review_with_integer_labels(reviewed_project, tmp_path):
    project, result, ids = reviewed_project
    parquet = ogaudit.export(project, tmp_path / "review.parquet", format="parquet")
    table = pd.read_parquet(parquet)
    assert list(table.columns[: len(TABLE_COLUMNS)]) == list(TABLE_COLUMNS)
    assert table["sample_id"].tolist() == ids
    for column in ("given_label", "predicted_label", "suggested_label", "reviewed_label"):
        assert str(table[column].dtype) == "Int64", column  # digits' labels were integers: they stay integers
    assert table["given_label"].tolist() == [int(v) for v in result.scores["given_label"]]
    by_id = table.set_index("sample_id")
    assert by_id.loc[ids[0], "decision"] == "remove" and pd.isna(by_id.loc[ids[0], "reviewed_label"])
    assert by_id.loc[ids[2], "decision"] == "relabel" and by_id.loc[ids[2], "reviewed_label"] == 3
    assert by_id.loc[ids[4], "decision"] == "keep"
    assert by_id.loc[ids[4], "reviewed_label"] == by_id.loc[ids[4], "given_label"]
    undecided = table["decision"].isna()
    assert (table.loc[undecided, "reviewed_label"] == table.loc[undecided, "given_label"]).all()
    assert table["p_wrong"].between(0, 1).all() and table["flagged"].sum() == result.scores["flagged"].sum()
    from ogaudit.review.calibration import reviewed_estimate

    run = project.open_run()
    shown = reviewed_estimate(run.table, project.ledger().state())  # what the review cards show
    np.testing.assert_allclose(table["p_wrong"], shown.p)
    assert {"image", "true_label", "is_noisy"} <= set(table.columns)  # the samples and the planted truth

    issues = pd.read_csv(ogaudit.export(project, tmp_path / "issues.csv", format="cleanlab"))
    assert list(issues.columns[:4]) == list(CLEANLAB_COLUMNS)
    assert issues["given_label"].dtype.kind == "i" and issues["predicted_label"].dtype.kind == "i"
    assert (issues["is_label_issue"] == table["flagged"]).all()
    np.testing.assert_allclose(issues["label_score"], 1 - table["p_wrong"], atol=1e-12)
    # cleanlab's reading: lower label_score = more likely an issue, so the flags have the lowest scores
    assert (
        issues.loc[issues.is_label_issue, "label_score"].max()
        <= issues.loc[~issues.is_label_issue, "label_score"].median()
    )


def test_hf_export_loads_with_datasets(reviewed_project, tmp_path):
    datasets = pytest.importorskip("datasets")
    project, result, ids = reviewed_project
    folder = ogaudit.export(project, tmp_path / "hf", format="hf")
    loaded = datasets.load_from_disk(str(folder))
    assert len(loaded) == len(ids) and loaded["sample_id"] == ids
    names = loaded.features["given_label"].names
    assert names == [str(i) for i in range(10)]
    assert [names[v] for v in loaded["given_label"]] == result.scores["given_label"].tolist()
    row = loaded[ids.index(ids[0])]
    assert row["decision"] == "remove" and row["reviewed_label"] is None
    assert loaded[2]["reviewed_label"] == 3
    image = loaded[0]["image"]
    assert image.size == (8, 8)  # the digit itself, decoded by datasets' Image feature
    parquet = ogaudit.export(project, tmp_path / "review.parquet", format="parquet")
    again = datasets.load_dataset("parquet", data_files=str(parquet), split="train", cache_dir=str(tmp_path / "c"))
    assert type(again.features["image"]).__name__ == "Image" and again[0]["given_label"] == int(
        result.scores["given_label"][0]
    )


def test_label_studio_tasks_validate_with_the_sdk(reviewed_project, tmp_path):
    project, result, ids = reviewed_project
    folder = ogaudit.export(project, tmp_path / "ls", format="label-studio")
    tasks = json.loads((folder / "tasks.json").read_text())
    assert len(tasks) == len(ids)
    assert [t["data"]["rank"] for t in tasks] == sorted(t["data"]["rank"] for t in tasks)  # most suspicious first
    first = tasks[0]
    assert first["data"]["image"].startswith("/data/local-files/?d=images/")
    assert (folder / first["data"]["image"].split("?d=")[1]).is_file()
    assert isinstance(first["data"]["given_label"], int)
    interface_module = pytest.importorskip("label_studio_sdk.label_interface")
    interface = interface_module.LabelInterface((folder / "label_config.xml").read_text())
    assert interface.get_control("label").labels == [str(i) for i in range(10)]
    for task in tasks:
        data = {key: value for key, value in task.items() if key != "predictions"}
        assert interface.validate_task(data)
        for prediction in task["predictions"]:
            assert interface.validate_prediction(prediction, return_errors=True) == []
    wrong = {
        **first["predictions"][0],
        "result": [{**first["predictions"][0]["result"][0], "value": {"choices": ["x"]}}],
    }
    assert interface.validate_prediction(wrong, return_errors=True)  # the check can fail


def test_label_studio_text_template_validates():
    interface_module = pytest.importorskip("label_studio_sdk.label_interface")
    interface = interface_module.LabelInterface(label_studio_config(["neg", "pos", '"quoted" & <odd>'], text=True))
    assert interface.get_control("label").labels == ["neg", "pos", '"quoted" & <odd>']
    task = {"data": {"text": "fine", "sample_id": "3"}}
    assert interface.validate_task(task)
    prediction = {
        "result": [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["pos"]}}]
    }
    assert interface.validate_prediction(prediction, return_errors=True) == []


def read_fiftyone(folder: Path) -> list[tuple[str, str, dict]]:
    """``(image path, label, attributes)`` per sample: with FiftyOne's own importer (the class
    ``fo.Dataset.from_dir`` uses for this type; it needs no database) when fiftyone imports, else by its
    documented format (``data/<uuid>.<ext>`` and ``labels.json`` ``{"classes", "labels": {uuid: target}}``)."""
    try:
        import fiftyone.utils.data as foud
    except ImportError:
        payload = json.loads((folder / "labels.json").read_text())
        files = {p.stem: str(p) for p in (folder / "data").iterdir()}
        rows = []
        for uuid, target in sorted(payload["labels"].items()):
            label = payload["classes"][target["label"]]
            rows.append((files[uuid], label, {"confidence": target["confidence"], **target["attributes"]}))
        return rows
    importer = foud.FiftyOneImageClassificationDatasetImporter(dataset_dir=str(folder))
    with importer:
        samples = list(importer)
    fields = ("confidence", "sample_id", "score", "rank", "flagged", "p_wrong", "suggested_label", "decision")
    fields += ("reviewed_label", "predicted_label")
    return [(path, label.label, {f: getattr(label, f, None) for f in fields}) for path, _, label in samples]


def test_fiftyone_classification_dataset_reads_back(reviewed_project, tmp_path):
    from PIL import Image

    project, result, ids = reviewed_project
    folder = ogaudit.export(project, tmp_path / "fo", format="fiftyone")
    rows = read_fiftyone(folder)
    assert [r[2]["sample_id"] for r in rows] == ids  # data/000000.png ... in the dataset's order
    assert [r[1] for r in rows] == result.scores["given_label"].tolist()
    by_id = {r[2]["sample_id"]: r[2] for r in rows}
    assert by_id[ids[0]]["decision"] == "remove" and by_id[ids[0]]["reviewed_label"] is None
    assert by_id[ids[2]]["reviewed_label"] == 3 and isinstance(by_id[ids[2]]["suggested_label"], int)
    first = rows[0]
    assert abs(first[2]["confidence"] - (1 - first[2]["p_wrong"])) < 1e-5
    assert np.asarray(Image.open(first[0])).shape == (8, 8)
    assert sum(r[2]["flagged"] for r in rows) == int(result.scores["flagged"].sum())


def test_an_audit_result_exports_without_a_project(finished_project, copy_of, tmp_path):
    folder, result = finished_project
    moved = replace(result, out_dir=None)
    table = pd.read_parquet(ogaudit.export(moved, tmp_path / "r.parquet", format="parquet"))
    assert table["decision"].isna().all() and table["p_wrong"].between(0, 1).all()
    assert table["suggested_label"].tolist() == [int(v) for v in result.scores["suggested_label"]]
    with_project = replace(result, out_dir=copy_of(folder))
    rows = read_fiftyone(ogaudit.export(with_project, tmp_path / "fo", format="fiftyone"))
    assert len(rows) == len(result.scores)


def test_score_tables_keep_string_labels_and_need_data_for_images(tmp_path):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 4))
    probs = rng.dirichlet(np.ones(3), size=60)
    labels = np.array(["cat", "dog", "=bird"])[rng.integers(0, 3, 60)]
    scores = ogaudit.score(features, probs, labels, class_names=["=bird", "cat", "dog"])
    table = pd.read_parquet(ogaudit.export(scores, tmp_path / "s.parquet", format="parquet"))
    assert table["given_label"].tolist() == labels.tolist()  # names stay names
    issues = ogaudit.export(scores, tmp_path / "s.csv", format="cleanlab")
    from ogaudit.storage import read_csv

    assert read_csv(issues)["given_label"].tolist() == labels.tolist()  # "=bird" escaped in the file, not here
    with pytest.raises(DataError, match="give data="):
        ogaudit.export(scores, tmp_path / "fo", format="fiftyone")
    with pytest.raises(DataError, match="feature vectors"):
        ogaudit.export(scores, tmp_path / "fo", format="fiftyone", data=(features.astype(np.float32), labels))


def test_exports_write_only_where_told(reviewed_project, tmp_path):
    project, _, _ = reviewed_project
    with pytest.raises(DataError, match="project's own files"):
        ogaudit.export(project, project.path / "run.json", format="cleanlab")
    with pytest.raises(DataError, match=r"\.parquet"):
        ogaudit.export(project, tmp_path / "review.csv", format="parquet")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("the user's")
    with pytest.raises(DataError, match="not an empty folder"):
        ogaudit.export(project, taken, format="label-studio")
    assert [p.name for p in taken.iterdir()] == ["mine.txt"]
    other = tmp_path / "notes.csv"
    other.write_text("the user's own table\n")
    with pytest.raises(StorageError):
        ogaudit.export(project, other, format="cleanlab")
    assert other.read_text() == "the user's own table\n"
    with pytest.raises(DataError, match="Unknown export format"):
        ogaudit.export(project, tmp_path / "x", format="coco")
    assert not list(tmp_path.glob(".*.part"))  # no staging folder left behind


def test_reviewed_table_ignores_decisions_on_other_ids():
    scores = pd.DataFrame(
        {
            "sample_id": ["a", "b"],
            "given_label": ["x", "y"],
            "predicted_label": ["y", "y"],
            "suggested_label": ["y", "y"],
            "score": [2.0, 0.1],
            "rank": [1, 2],
            "flagged": [True, False],
        }
    )
    decisions = pd.DataFrame(
        {
            "sample_id": ["zz", "a"],
            "action": ["remove", "confirm"],
            "final_label": [None, "y"],
            "annotator": ["p", "q"],
            "decided_at": ["t1", "t2"],
        }
    )
    table = reviewed_table(scores, decisions, ["x", "y"], integer=False)
    assert table["reviewed_label"].tolist() == ["y", "y"] and table["decision"].tolist() == ["confirm", None]
    assert table["p_wrong"].isna().all()


def test_the_command_line_exports_each_format(reviewed_project, tmp_path, capsys):
    from ogaudit.cli import main

    project, _, ids = reviewed_project
    for name, out in (("cleanlab", "i.csv"), ("label-studio", "ls"), ("parquet", "bad.csv")):
        code = main(["export", name, "--project", str(project.path), str(tmp_path / out), "--json"])
        said = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        if out == "bad.csv":
            assert code == 3 and said["ok"] is False and ".parquet" in said["error"]
        else:
            assert code == 0 and said == {"ok": True, "path": str(tmp_path / out), "format": name}
    assert len(pd.read_csv(tmp_path / "i.csv")) == len(ids)
    prefix = "https://files.example/audit/"
    assert (
        main(["export", "label-studio", "--project", str(project.path), str(tmp_path / "ls2"), "--url-prefix", prefix])
        == 0
    )
    tasks = json.loads((tmp_path / "ls2" / "tasks.json").read_text())
    assert tasks[0]["data"]["image"].startswith(prefix + "images/")


def test_text_data_goes_to_label_studio_and_parquet_but_not_fiftyone(tmp_path, monkeypatch):
    from ogaudit.data.dataset import Dataset
    from ogaudit.review import exports
    from ogaudit.review.exports import reviewed_table, write_export

    monkeypatch.setattr(exports, "EXPORT_CHUNK", 2)  # several chunks: one has no decision at all
    texts = ["fine film", "=awful", "so-so", "loved it", "meh"]
    names = ["neg", "pos"]
    data = Dataset(
        x=np.zeros((5, 3), np.float32),
        y=np.array([1, 0, 0, 1, 0]),
        sample_ids=np.array([f"t{i}" for i in range(5)]),
        class_names=names,
        kind="text",
        source="reviews.csv",
        texts=np.array(texts, dtype=object),
    )
    scores = pd.DataFrame(
        {
            "sample_id": data.sample_ids,
            "given_label": [names[v] for v in data.y],
            "predicted_label": ["pos", "neg", "pos", "pos", "neg"],
            "suggested_label": ["pos", "neg", "pos", "pos", "neg"],
            "score": [0.1, 0.2, 3.0, 0.3, 0.4],
            "rank": [5, 4, 1, 3, 2],
            "flagged": [False, False, True, False, False],
            "p_wrong": [0.1, 0.2, 0.9, 0.1, 0.3],
        }
    )
    decisions = pd.DataFrame(
        {"sample_id": ["t0"], "action": ["relabel"], "final_label": ["neg"], "annotator": ["a"], "decided_at": ["t"]}
    )
    table = reviewed_table(scores, decisions, names, integer=False)
    folder = write_export(table, tmp_path / "ls", format="label-studio", class_names=names, dataset=data)
    tasks = json.loads((folder / "tasks.json").read_text())
    assert [t["data"]["text"] for t in tasks] == ["so-so", "meh", "loved it", "=awful", "fine film"]  # by rank
    assert not (folder / "images").exists() and "<Text" in (folder / "label_config.xml").read_text()
    interface_module = pytest.importorskip("label_studio_sdk.label_interface")
    interface = interface_module.LabelInterface((folder / "label_config.xml").read_text())
    for task in tasks:
        assert interface.validate_task({"data": task["data"]})
        assert interface.validate_prediction(task["predictions"][0], return_errors=True) == []
    parquet = write_export(table, tmp_path / "t.parquet", format="parquet", class_names=names, dataset=data)
    read = pd.read_parquet(parquet)
    assert read["text"].tolist() == texts and read["reviewed_label"].tolist() == ["neg", "neg", "neg", "pos", "neg"]
    assert read["decision"].fillna("-").tolist() == ["relabel", "-", "-", "-", "-"]
    with pytest.raises(DataError, match="texts"):
        write_export(table, tmp_path / "fo", format="fiftyone", class_names=names, dataset=data)
    datasets = pytest.importorskip("datasets")
    hf = datasets.load_from_disk(
        str(write_export(table, tmp_path / "hf", format="hf", class_names=names, dataset=data))
    )
    assert hf.features["given_label"].names == names and hf["text"] == texts and hf[0]["decision"] == "relabel"
    assert not list(tmp_path.glob("*.scratch"))


def test_the_command_line_and_the_app_offer_every_format():
    from ogaudit.cli.review import TOOL_EXPORTS
    from ogaudit.review.exports import EXPORT_FORMATS
    from ogaudit.ui.exportview import TOOL_FORMATS

    assert list(TOOL_EXPORTS) == list(EXPORT_FORMATS) and set(TOOL_FORMATS) == set(EXPORT_FORMATS)


def test_images_written_by_threads_are_the_same_files_as_written_in_order(
    finished_project, copy_of, tmp_path, monkeypatch
):
    from ogaudit.review import exports

    folder, _ = finished_project
    project = Project(copy_of(folder))  # an export opens the ledger (writes it): never in the shared project
    written = {}
    for threads in (1, 4):
        monkeypatch.setattr(exports, "MEDIA_THREADS", threads)
        for format in ("fiftyone", "label-studio"):
            out = ogaudit.export(project, tmp_path / f"{format}-{threads}", format=format)
            written[format, threads] = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for format in ("fiftyone", "label-studio"):
        assert len(written[format, 1]) == len(project.open_run().table) + (1 if format == "fiftyone" else 2)
        assert written[format, 4] == written[format, 1]
