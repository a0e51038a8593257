"""Project folders: one owner for every run file, read back by the CLI and the app alike, old formats included."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from ogaudit import results as results_module
from ogaudit.cli import main
from ogaudit.data.arrays import dataset_from_arrays
from ogaudit.errors import DataError, LedgerError, SettingsError, StorageError
from ogaudit.pipeline.run import AuditSettings, audit
from ogaudit.project import Project, list_projects, slugify, workspace_root
from ogaudit.review.actions import decide
from ogaudit.review.thumbnails import thumbnail

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
FIXTURE_V1 = REPO / "tests" / "fixtures" / "project-v1"
FAST = AuditSettings(epochs=1, map_method="pca", noise_rate=0.1, limit=300)


@pytest.fixture
def finished(finished_project):
    """The suite's shared finished project (conftest): 300 digits, 10% planted noise."""
    return finished_project


def open_in_app(home: Path, name: str, monkeypatch, **params) -> AppTest:
    """The app on workspace ``home`` showing project ``name`` (a fresh server: no cached resources)."""
    monkeypatch.setenv("OGAUDIT_HOME", str(home))
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=90)
    at.query_params["project"] = name
    at.query_params["annotator"] = params.pop("annotator", "alice")
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


def shown(at: AppTest) -> str:
    parts = [at.error, at.warning, at.info, at.caption, at.markdown, at.exception]
    return "\n".join(str(getattr(e, "value", e)) for group in parts for e in group)


# ---------------------------------------------------------------- reading a run back


def test_open_run_reads_the_audit_back(finished):
    folder, result = finished
    run = Project(folder).open_run()
    assert run.name == "digits" and run.record["fingerprint"] == result.record["fingerprint"]
    assert run.table["sample_id"].tolist() == result.scores["sample_id"].tolist()
    np.testing.assert_allclose(run.table["x"], result.map["x"], rtol=1e-6)
    np.testing.assert_allclose(run.table["score"], result.scores["score"], rtol=1e-6)
    assert run.table["flagged"].dtype == bool and run.table["flagged"].sum() == result.scores["flagged"].sum()
    ranks = run.by_id.loc[run.flagged_ids, "rank"].tolist()
    assert ranks == sorted(ranks) and ranks[0] == 1
    assert run.position[run.table["sample_id"][7]] == 7
    assert run.class_names == result.dataset.class_names
    assert run.settings == FAST
    assert "300 samples" in run.describe() and "10% planted noise" in run.describe()


def test_the_binary_table_copy_equals_the_csvs_and_gives_way_when_they_change(finished, copy_of):
    from ogaudit.results import TABLE_COPY

    folder = copy_of(finished[0])
    copy = Project(folder).run_files()["scores"].parent / TABLE_COPY
    assert copy.is_file()
    from_copy = Project(folder).open_run().table
    copy.rename(copy.with_suffix(".moved"))
    from_csv = Project(folder).open_run().table
    pd.testing.assert_frame_equal(from_copy, from_csv, check_dtype=False)
    assert from_copy["flagged"].dtype == bool and from_copy["sample_id"].tolist() == from_csv["sample_id"].tolist()
    copy.with_suffix(".moved").rename(copy)
    scores_csv = Project(folder).run_files()["scores"]
    edited = pd.read_csv(scores_csv, dtype={"sample_id": str})
    edited.loc[0, "score"] = 123.0  # someone changed the CSV: the copy is stale and the CSV is read
    edited.to_csv(scores_csv, index=False)
    assert Project(folder).open_run().table.loc[0, "score"] == 123.0
    copy.write_bytes(b"PAR1 damaged")
    assert Project(folder).open_run().table.loc[0, "score"] == 123.0  # a damaged copy: the CSVs, no error


def test_the_ledger_opens_without_loading_the_data(finished, copy_of):
    folder, result = finished
    folder = copy_of(folder)
    ledger = Project(folder).open_ledger()
    assert ledger.path == folder / "ledger.sqlite"
    assert ledger.dataset_fingerprint == result.dataset.fingerprint() and not ledger.dataset_mismatch
    sample = result.dataset.sample_ids[0]
    ledger.decide(sample, "keep", annotator="ann")
    assert ledger.state()["sample_id"].tolist() == [sample]


def test_the_dataset_is_rebuilt_with_the_same_subset_and_noise(finished):
    folder, result = finished
    dataset = Project(folder).load_dataset()
    assert dataset.fingerprint() == result.dataset.fingerprint()
    np.testing.assert_array_equal(dataset.true_y, result.dataset.true_y)


def test_a_changed_dataset_is_refused_naming_the_record(finished, copy_of):
    folder = copy_of(finished[0])
    record = json.loads((folder / "run.json").read_text())
    record["dataset"]["fingerprint"] = "something-else"
    (folder / "run.json").write_text(json.dumps(record))
    with pytest.raises(DataError, match=r"run\.json.*changed since the run"):
        Project(folder).load_dataset()


def test_a_moved_dataset_names_the_record_and_the_option(tmp_path, cache_dir, digit_files):
    data = Path(shutil.copy(digit_files["npz"], tmp_path / "mine.npz"))
    folder = tmp_path / "proj"
    audit(str(data), AuditSettings(epochs=1, map_method="none"), out_dir=folder, cache_dir=cache_dir)
    assert Project(folder).read_record()["dataset"]["spec"] == str(data.resolve())
    moved = data.rename(tmp_path / "moved.npz")
    with pytest.raises(DataError, match=r"mine\.npz.*run\.json.*--data NEW_PATH"):
        Project(folder).load_dataset()
    assert Project(folder).load_dataset(moved).fingerprint() == Project(folder).read_record()["dataset"]["fingerprint"]


def test_an_unfinished_or_damaged_folder_is_explained_by_file(tmp_path):
    assert not Project(tmp_path).is_finished()
    with pytest.raises(DataError, match="no run.json"):
        Project(tmp_path).open_run()
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(DataError, match=r"run\.json.*damaged"):
        Project(tmp_path).open_run()
    (tmp_path / "run.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(DataError, match=r"run\.json.*newer ogaudit \(format 99"):
        Project(tmp_path).read_record()
    (tmp_path / "run.json").write_text(json.dumps({"format": 2, "settings": {}}))
    with pytest.raises(DataError, match=r"lacks dataset, model, fingerprint"):
        Project(tmp_path).read_record()
    assert not Project(tmp_path).is_finished()


def test_settings_from_a_newer_release_are_refused_by_file(tmp_path):
    Project(tmp_path).write_request("digits", FAST)
    saved = json.loads((tmp_path / "request.json").read_text())
    saved["settings"]["learning_schedule"] = "cosine"
    (tmp_path / "request.json").write_text(json.dumps(saved))
    with pytest.raises(SettingsError, match=r"request\.json has settings .* learning_schedule"):
        Project(tmp_path).read_request()


# ---------------------------------------------------------------- writing a run


def test_a_rescan_replaces_the_run_as_one_unit_and_a_failed_one_leaves_the_old(finished, copy_of, monkeypatch):
    folder = copy_of(finished[0])
    _, result = finished
    before = Project(folder).open_run()
    old_tables = Project(folder).run_files()["scores"].parent
    real = results_module._write_table

    def fail_on_map(frame, path):
        if path.name == "map.csv":
            raise StorageError("No space left on device (simulated)")
        real(frame, path)

    monkeypatch.setattr(results_module, "_write_table", fail_on_map)
    with pytest.raises(StorageError):
        Project(folder).write_run(result.scores, result.map, dict(result.record))
    after = Project(folder).open_run()
    assert Project(folder).run_files()["scores"].parent == old_tables
    pd.testing.assert_frame_equal(after.table, before.table)
    assert [p.name for p in (folder / "runs").iterdir()] == [old_tables.name]  # the half run is gone
    monkeypatch.setattr(results_module, "_write_table", real)
    Project(folder).write_run(result.scores, result.map, dict(result.record))
    new_tables = Project(folder).run_files()["scores"].parent
    assert new_tables != old_tables and old_tables.exists()  # the history stays under runs/
    assert (folder / "scores.csv").read_bytes() == (new_tables / "scores.csv").read_bytes()  # the latest, by name


def test_the_tables_beside_run_json_are_the_latest_run_and_the_history_is_bounded(finished, copy_of, monkeypatch):
    folder = copy_of(finished[0])
    _, result = finished
    written = []
    for _ in range(results_module.KEEP_RUNS + 2):
        paths = Project(folder).write_run(
            result.scores, result.map, dict(result.record), head_evidence={"features": np.zeros((2, 2))}
        )
        written.append(paths["scores"].parent)
        for name in ("scores.csv", "map.csv", "head_evidence.npz"):
            assert (folder / name).read_bytes() == (paths["scores"].parent / name).read_bytes(), name
        assert not (folder / "label_evidence.csv").exists()  # not in this run: never an older run's
    assert sorted(p.name for p in (folder / "runs").iterdir()) == sorted(
        p.name for p in written[-results_module.KEEP_RUNS :]
    )
    (folder / "scores.csv").write_text("sample_id\nedited in a spreadsheet\n")  # a copy: the run is untouched
    pd.testing.assert_frame_equal(
        Project(folder).open_run().table["sample_id"].to_frame(), result.scores[["sample_id"]]
    )
    assert Project(folder).owns(folder / "scores.csv")  # no export may replace it


def test_formula_class_names_are_escaped_on_disk_and_read_back_exactly(tmp_path, cache_dir):
    names = ['=HYPERLINK("http://x")', "+cmd|' /C calc'!A0", "NA", "plain"]
    x = np.random.default_rng(0).normal(size=(80, 6)).astype(np.float32)
    y = np.arange(80) % 4
    ids = np.array(["null", "None", "nan", "NA"] + [f"s{i}" for i in range(76)])
    data = dataset_from_arrays(x, y, class_names=names, ids=ids)
    audit(data, AuditSettings(epochs=1, map_method="pca"), out_dir=tmp_path, cache_dir=cache_dir)
    files = Project(tmp_path).run_files()
    for name in ("scores", "map", "label_evidence"):
        text = files[name].read_text()
        assert "\n=" not in text and ",=" not in text and ",+" not in text and '"=' not in text
    run = Project(tmp_path).open_run()
    assert run.class_names == names
    assert set(run.table["given_label"]) == set(names)
    assert run.table["sample_id"].tolist()[:4] == ["null", "None", "nan", "NA"]
    ledger = Project(tmp_path).open_ledger()
    ledger.decide("NA", "relabel", label="NA", annotator="ann")
    assert ledger.state().set_index("sample_id").loc["NA", "final_label"] == "NA"


# ---------------------------------------------------------------- the seam between the CLI and the app


def test_cli_review_commands_then_the_app_opens_the_same_project(finished, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    folder = Path(shutil.copytree(finished[0], home / "P"))
    run = Project(folder).open_run()
    flagged = run.flagged_ids
    changing = run.table[run.table["suggested_label"] != run.table["given_label"]]["sample_id"].tolist()
    project = ["--project", str(folder)]
    assert main(["decisions", "add", "remove", flagged[0], *project, "--annotator", "cli"]) == 0
    assert main(["decisions", "add", "confirm", changing[0], *project, "--annotator", "cli"]) == 0
    assert main(["decisions", "list", *project]) == 0
    assert main(["export", "decisions", *project, "--out", str(tmp_path / "d.csv")]) == 0
    assert main(["decisions", "import", str(tmp_path / "d.csv"), *project, "--annotator", "bob"]) == 0
    assert main(["export", "split", *project, "--out", str(tmp_path / "split")]) == 0
    assert main(["verify", *project]) == 0
    capsys.readouterr()
    at = open_in_app(home, "P", monkeypatch)
    assert not at.exception and not at.error, shown(at)
    assert "Accuracy before" in [m.label for m in at.metric]
    assert "decisions in force then" in shown(at)
    at.tabs[2].run()
    assert not at.exception


def test_decisions_made_in_the_app_core_reach_the_cli_export(finished, tmp_path, monkeypatch):
    home = tmp_path / "home"
    folder = Path(shutil.copytree(finished[0], home / "P"))
    at = open_in_app(home, "P", monkeypatch, annotator="carol")
    assert not at.exception
    run = Project(folder).open_run()
    target = run.flagged_ids[0]
    at.button(key=f"remove-{target}").click().run()
    assert not at.exception
    # The same core call the app's buttons make, as a bulk action:
    decide(Project(folder).open_ledger(), run, run.flagged_ids[1:3], "keep", annotator="carol")
    out = tmp_path / "decisions.csv"
    assert main(["export", "decisions", "--project", str(folder), "--out", str(out)]) == 0
    exported = pd.read_csv(out, dtype=str, keep_default_na=False).set_index("sample_id")
    assert exported.loc[target, "action"] == "remove" and exported.loc[target, "annotator"] == "carol"
    assert set(exported.index) == {target, *run.flagged_ids[1:3]}


def test_confirm_must_change_the_label(finished, copy_of):
    folder = copy_of(finished[0])
    run = Project(folder).open_run()
    ledger = Project(folder).open_ledger()
    same = run.table[run.table["suggested_label"] == run.table["given_label"]]["sample_id"].tolist()
    with pytest.raises(LedgerError, match="Confirm must change the label.*Keep them"):
        decide(ledger, run, same[:3], "confirm", annotator="ann")
    with pytest.raises(LedgerError, match="Confirm must change the label"):
        decide(ledger, run, same[:1], "confirm", label=run.by_id.loc[same[0], "given_label"], annotator="ann")
    assert ledger.state().empty


def test_a_project_from_the_first_release_still_opens(tmp_path, monkeypatch):
    home = tmp_path / "home"
    folder = Path(shutil.copytree(FIXTURE_V1, home / "old"))
    project = Project(folder)
    run = project.open_run()
    assert len(run.table) == 120 and run.settings.limit == 120
    assert project.read_request().data == "digits"
    assert "held-out accuracy" in project.read_verify()["text"]  # the CLI's old verify.json had no text
    assert project.load_dataset().fingerprint() == run.record["dataset"]["fingerprint"]
    assert main(["decisions", "add", "keep", run.flagged_ids[0], "--project", str(folder), "--annotator", "a"]) == 0
    at = open_in_app(home, "old", monkeypatch)
    assert not at.exception and not at.error, shown(at)
    assert "Accuracy before" in [m.label for m in at.metric]


def test_review_commands_import_neither_torch_nor_the_pipeline(finished, tmp_path):
    folder = Path(shutil.copytree(finished[0], tmp_path / "P"))
    probe = (
        "import sys, time; start = time.perf_counter()\n"
        "from ogaudit.cli import main\n"
        "codes = [main(['decisions', 'list', '--project', sys.argv[1]]),\n"
        "         main(['export', 'decisions', '--project', sys.argv[1], '--out', sys.argv[2]])]\n"
        "print('RESULT', codes, 'torch' in sys.modules, 'ogaudit.pipeline.run' in sys.modules,\n"
        "      round(time.perf_counter() - start, 2))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    completed = subprocess.run(
        [sys.executable, "-c", probe, str(folder), str(tmp_path / "d.csv")], capture_output=True, text=True, env=env
    )
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULT"))
    assert line.startswith("RESULT [0, 0] False False"), completed.stdout + completed.stderr
    print(line)  # the start-up time, for the record


# ---------------------------------------------------------------- the workspace


def test_thumbnails_enlarge_small_images_and_skip_vectors(digits):
    image = thumbnail(digits, 3, 96)
    assert image.shape == (96, 96) and image.dtype == np.uint8
    assert np.array_equal(image[::12, ::12], digits.x[3, :, :, 0])  # nearest neighbour keeps the pixels
    rgb = dataset_from_arrays(np.zeros((4, 300, 150, 3), np.uint8), np.array([0, 1, 0, 1]))
    assert thumbnail(rgb, 0, 100).shape == (100, 50, 3)
    vectors = dataset_from_arrays(np.zeros((4, 5), np.float32), np.array([0, 1, 0, 1]))
    assert thumbnail(vectors, 0) is None


def test_projects_are_listed_newest_first(tmp_path, monkeypatch):
    monkeypatch.setenv("OGAUDIT_HOME", str(tmp_path / "home"))
    root = workspace_root()
    assert root == tmp_path / "home" and list_projects(root) == []
    first = Project.create(root, "My data!")
    second = Project.create(root, "My data!")
    assert (first.name, second.name) == ("My-data", "My-data-2")
    (root / "ghost").mkdir()
    (root / "ghost" / "job-audit.lock").touch()  # what a deleted or never started project may leave
    assert list_projects(root) == [] and first.is_empty() and Project(root / "ghost").is_empty()
    first.write_request("digits", FAST)
    time.sleep(0.05)
    second.write_request("mnist5k", FAST)
    listed = list_projects(root)
    assert [p.name for p in listed] == ["My-data-2", "My-data"]
    assert [p.data for p in listed] == ["mnist5k", "digits"] and not listed[0].finished
    assert first.read_request().settings.epochs == 1 and Project(tmp_path).read_request() is None
    assert first.read_verify() is None


def test_slugify_keeps_names_folder_safe():
    assert slugify("../../etc/passwd") == "etc-passwd"
    assert slugify("  ") == "project"
    assert len(slugify("x" * 200)) == 60


def test_a_live_ledger_is_backed_up_from_the_command_line(finished, copy_of, tmp_path):
    folder = copy_of(finished[0])
    run = Project(folder).open_run()
    Project(folder).open_ledger().decide(run.flagged_ids[:2], "remove", annotator="ann")
    copy = tmp_path / "copy.sqlite"
    assert main(["decisions", "backup", "--project", str(folder), "--out", str(copy)]) == 0
    restored = Project(copy_of(folder, "restored"))
    (restored.path / "ledger.sqlite").unlink()
    shutil.copy(copy, restored.path / "ledger.sqlite")
    assert sorted(restored.open_ledger().state()["sample_id"]) == sorted(run.flagged_ids[:2])


def test_a_rescan_of_other_data_says_the_review_may_not_fit(finished, copy_of, cache_dir, capsys):
    folder = copy_of(finished[0])
    Project(folder).open_ledger().decide(Project(folder).open_run().flagged_ids[0], "keep", annotator="ann")
    argv = ["scan", "digits", "--limit", "250", "--epochs", "1", "--map", "none", "--quiet"]
    assert main([*argv, "--out", str(folder), "--cache-dir", str(cache_dir)]) == 0
    assert "holds a review of the data this folder audited before" in capsys.readouterr().err
    assert main(["decisions", "list", "--project", str(folder)]) == 0
    err = capsys.readouterr().err
    assert "ogaudit: warning: The review in" in err and "UserWarning" not in err and "project.py" not in err


# ---------------------------------------------------------------- exports never replace what is not theirs


def test_exports_replace_only_their_own_earlier_output(finished, copy_of, tmp_path):
    project = Project(copy_of(finished[0]))
    project.decide("remove", finished[1].scores["sample_id"].iloc[0], annotator="ann")
    users_data = tmp_path / "mine.npz"
    np.savez(users_data, x=np.zeros((3, 2)), y=np.arange(3))
    before = users_data.read_bytes()
    with pytest.raises(StorageError, match="exists and is not a decisions CSV"):
        project.export_decisions(users_data)
    assert users_data.read_bytes() == before
    for own in ("ledger.sqlite", "run.json", "ledger.sqlite-wal"):
        with pytest.raises((DataError, LedgerError), match="own files"):
            project.backup(project.path / own)
    scores = project.run_files()["scores"]  # a CSV whose header looks like a decisions export
    with pytest.raises(DataError, match="own files"):
        project.export_decisions(scores)
    with pytest.raises(StorageError, match="a folder"):
        project.export_decisions(tmp_path)
    first = project.export_decisions(tmp_path / "decisions.csv")
    again = project.export_decisions(first)  # its own earlier output is replaced
    assert again == first and pd.read_csv(again)["action"].tolist() == ["remove"]
    backup = project.backup(tmp_path / "copy.sqlite")
    assert project.backup(backup) == backup
    with pytest.raises(StorageError, match="not an SQLite backup"):
        project.backup(first)


def test_a_split_of_data_with_planted_noise_writes_the_users_own_labels(finished, copy_of, tmp_path, digits):
    project = Project(copy_of(finished[0]))
    manifest = project.export_split(tmp_path / "clean")
    assert manifest["counts"]["relabelled"] == 0 and manifest["counts"]["kept"] == 300
    dataset = project.load_dataset()
    assert (dataset.y != dataset.true_y).sum() == 30  # the audit read 30 planted flips
    with np.load(tmp_path / "clean" / manifest["data"]) as cleaned:
        assert np.array_equal(cleaned["y"], dataset.true_y)  # none of them is written


def test_ids_are_one_id_or_an_iterable_of_ids(finished, copy_of):
    project = Project(copy_of(finished[0]))
    first = finished[1].scores["sample_id"].iloc[0]
    project.decide("remove", first, annotator="ann")
    assert project.decisions(ids=first)["sample_id"].tolist() == [first]  # one id, not its characters
    with pytest.raises(TypeError, match="ids must be"):
        project.decide("remove", first.encode(), annotator="ann")
    with pytest.raises(TypeError, match="ids must be"):
        project.decisions(ids=[1.5])


def test_exports_never_replace_a_users_file_that_only_looks_like_one(finished, copy_of, tmp_path):
    """A slip of the path must not replace the user's own Parquet table, SQLite database, CSV with a
    ``sample_id`` first column, cleanlab result, or another project's ledger: each looked like "an earlier
    export of the same kind" from its first bytes alone and was replaced."""
    import sqlite3

    project = Project(copy_of(finished[0]))
    project.decide("remove", finished[1].scores["sample_id"].iloc[0], annotator="ann")
    other = Project(copy_of(finished[0], "other"))
    other.decide("keep", finished[1].scores["sample_id"].iloc[1], annotator="ann")
    mine = {
        "table.parquet": lambda p: pd.DataFrame({"path": ["a.png"], "label": [1]}).to_parquet(p),
        "labels.csv": lambda p: p.write_text("sample_id,path,label\r\n7,a.png,cat\r\n", encoding="utf-8"),
        "issues.csv": lambda p: p.write_text("is_label_issue,label_score\nTrue,0.1\n", encoding="utf-8"),
        "app.sqlite": lambda p: sqlite3.connect(p).execute("CREATE TABLE users (name TEXT)").connection.commit(),
    }
    for name, make in mine.items():
        make(tmp_path / name)
    before = {name: (tmp_path / name).read_bytes() for name in mine}
    ledger = other.ledger_path()
    ledger_before = ledger.read_bytes()
    attempts = [
        lambda: project.export(tmp_path / "table.parquet", format="parquet"),
        lambda: project.export_decisions(tmp_path / "labels.csv"),
        lambda: project.export(tmp_path / "issues.csv", format="cleanlab"),
        lambda: project.backup(tmp_path / "app.sqlite"),
        lambda: project.backup(ledger),  # another project's ledger (closed: no -wal, but its -saved number)
    ]
    for attempt in attempts:
        with pytest.raises((StorageError, LedgerError), match="not replaced|live ledger"):
            attempt()
    assert {name: (tmp_path / name).read_bytes() for name in mine} == before
    assert ledger.read_bytes() == ledger_before
    for name, kw in {"own.parquet": {"format": "parquet"}, "own.csv": {"format": "cleanlab"}}.items():
        first = project.export(tmp_path / name, **kw)
        assert project.export(first, **kw) == first  # its own earlier output is still replaced
    history = project.export_decisions(tmp_path / "history.csv", history=True)
    assert project.export_decisions(history, history=True) == history


# ---------------------------------------------------------------- an edited scores.csv


EVIDENCE_COLUMNS = ("confidence", "p_wrong", "p_wrong_low", "p_wrong_high", "flag_stability")


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("p_wrong", "inf"),
        ("p_wrong", "-0.5"),
        ("p_wrong", "=1+1"),
        ("p_wrong_low", "-inf"),
        ("p_wrong_low", "0.999"),  # above the sample's p_wrong
        ("p_wrong_high", "7"),
        ("p_wrong_high", "0.0"),  # below the sample's p_wrong
        ("flag_stability", "inf"),
        ("flag_stability", "-3"),
        ("flag_stability", "x" * 100_000),
        ("confidence", "nan"),
        ("confidence", "True"),
    ],
)
def test_an_edited_scores_csv_never_shows_an_impossible_probability(finished, copy_of, column, value):
    """``scores.csv`` is a file people open and may save back from a spreadsheet: a probability that is not a
    number in [0, 1], or an interval that does not hold its estimate, is read as missing (the estimate then
    falls back as for a run that kept none), never shown as "-50%" or "inf", never a traceback in the queue."""
    from ogaudit.review.calibration import reviewed_estimate
    from ogaudit.review.queue import QueueFilter, filter_queue

    project = Project(copy_of(finished[0]))
    scores = project.run_files()["scores"]
    frame = pd.read_csv(scores, dtype=str, keep_default_na=False)
    frame[column] = frame[column].astype(object)
    frame.loc[frame.index[:3], column] = value
    frame.to_csv(scores, index=False)
    run = project.open_run()
    for name in EVIDENCE_COLUMNS:
        numbers = run.table[name]
        assert numbers.dtype == np.float64, name
        assert numbers.dropna().between(0, 1).all(), name
    estimate = reviewed_estimate(run.table, project.ledger().state())
    if estimate is not None:
        assert np.isfinite(estimate.low).all() and np.isfinite(estimate.high).all()
        assert (estimate.low >= 0).all() and (estimate.low <= estimate.p).all()
        assert (estimate.p <= estimate.high).all() and (estimate.high <= 1).all()
    for stability in ("stable", "unstable"):
        filter_queue(run.table, None, QueueFilter(stability=stability))


@pytest.mark.parametrize(
    ("column", "value"), [("score", "abc"), ("score", "inf"), ("rank", "1.5"), ("rank", ""), ("x", "-inf")]
)
def test_an_edited_scores_or_map_csv_without_a_usable_score_rank_or_position_is_refused(
    finished, copy_of, column, value
):
    project = Project(copy_of(finished[0]))
    table = project.run_files()["map" if column in ("x", "y") else "scores"]
    frame = pd.read_csv(table, dtype=str, keep_default_na=False)
    frame.loc[frame.index[1], column] = value
    frame.to_csv(table, index=False)
    with pytest.raises(DataError, match=rf"{column}.*damaged|damaged.*{column}"):
        project.open_run()


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("dataset", "class_names"), 5),
        (("dataset", "class_names"), "abc"),
        (("dataset", "class_names"), [{"a": 1}, {"b": 2}]),
        (("dataset", "samples"), "300"),
        (("run_dir",), 5),
        (("run_dir",), ["runs"]),
    ],
)
def test_a_run_record_with_wrong_types_is_refused_by_name(finished, copy_of, where, value):
    """``run.json`` edited by hand: a field of the wrong type is a DataError naming the file and the field (an
    integer ``class_names`` or ``run_dir`` was a TypeError traceback; a string ``class_names`` was read letter by
    letter as the classes)."""
    project = Project(copy_of(finished[0]))
    path = project.path / "run.json"
    record = json.loads(path.read_text(encoding="utf-8"))
    (record["dataset"] if where[0] == "dataset" else record)[where[-1]] = value
    path.write_text(json.dumps(record), encoding="utf-8")
    with pytest.raises(DataError, match=rf"run\.json.*damaged.*{where[-1]}"):
        project.open_run()


def test_an_export_never_writes_into_the_data_given_with_data(tmp_path, cache_dir, digit_files):
    """The audited data moved, and given again with ``data=`` (``--data``): an export aimed inside it is refused,
    as one inside the recorded path is (the FiftyOne folder went into the user's ImageFolder, where it reads as a
    new class the next time the data is loaded)."""
    mine = Path(shutil.copytree(digit_files["folder"], tmp_path / "mine"))
    (mine / "manifest.csv").unlink()
    folder = tmp_path / "proj"
    audit(str(mine), AuditSettings(epochs=1, map_method="none"), out_dir=folder, cache_dir=cache_dir)
    moved = mine.rename(tmp_path / "moved")
    before = sorted(p.relative_to(moved) for p in moved.rglob("*"))
    project = Project(folder)
    for target, kw in ((moved / "fo", {"format": "fiftyone"}), (moved / "t.parquet", {"format": "parquet"})):
        with pytest.raises(DataError, match="inside the audited data"):
            project.export(target, data=moved, **kw)
    with pytest.raises(DataError, match="inside the audited data"):
        project.export_decisions(moved / "0" / "decisions.csv", data=moved)
    assert sorted(p.relative_to(moved) for p in moved.rglob("*")) == before
    assert project.export(tmp_path / "fo", format="fiftyone", data=moved).is_dir()  # outside it: written
