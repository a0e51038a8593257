"""The command line as scripts drive it: --version, --json, exit codes by kind, progress a log can read."""

from __future__ import annotations

import json

import pytest

import ogaudit
from ogaudit.cli import exit_code, main
from ogaudit.cli.scan import _StageBars
from ogaudit.errors import (
    Cancelled,
    DataError,
    EngineError,
    JobBusy,
    LedgerError,
    ModelError,
    OgauditError,
    SettingsError,
    StorageError,
)

FAST = ["--epochs", "1", "--map", "pca", "--limit", "200"]


def test_version_names_the_package_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"ogaudit {ogaudit.__version__}"


@pytest.mark.parametrize(
    ("error", "code", "kind"),
    [
        (SettingsError("x"), 2, "usage"),
        (DataError("x"), 3, "input"),
        (ModelError("x"), 3, "input"),
        (LedgerError("x"), 3, "input"),
        (StorageError("x"), 4, "environment"),
        (EngineError("x"), 4, "environment"),
        (JobBusy("x"), 4, "environment"),
        (Cancelled("x"), 130, "cancelled"),
        (OgauditError("x"), 3, "input"),
        (RuntimeError("x"), 70, "internal"),
    ],
)
def test_each_kind_of_failure_has_its_exit_code(error, code, kind):
    assert exit_code(error) == (code, kind)


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert all(f"  {code} " in text for code in ("0", "1", "2", "3", "4", "70", "130"))


def test_scan_json_prints_one_summary_on_stdout_and_messages_on_stderr(tmp_path, cache_dir, capsys):
    out = tmp_path / "project"
    argv = ["scan", "digits", *FAST, "--noise-rate", "0.1", "--out", str(out), "--cache-dir", str(cache_dir)]
    assert main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # the whole of stdout is one JSON object
    assert summary["ok"] is True and summary["samples"] == 200 and summary["flagged"] == 10
    assert summary["project"] == str(out) and summary["metrics"]["noisy"] == 20
    assert all(path.startswith(str(out)) for path in summary["files"].values())
    assert "flagged 10 of 200" in captured.err
    state = summary["detector"] == "posterior-auto" and summary["detector_state"]  # what the default read
    assert set(state) == {"concentration", "ratio_weight", "ramp"} and 0.0 <= state["ratio_weight"] <= 1.0
    assert "Scored by posterior-auto: the data's wrong labels look" in captured.err
    assert f"(κ {state['concentration']:.2f}" in captured.err


def test_a_failure_under_json_is_a_json_object_with_its_kind_and_code(tmp_path, capsys):
    assert main(["scan", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--json"]) == 3
    failure = json.loads(capsys.readouterr().out)
    assert failure == {"ok": False, "error": failure["error"], "kind": "input", "exit_code": 3}
    assert "neither a built-in" in failure["error"]


def test_review_commands_speak_json(finished_project, copy_of, capsys):
    folder = copy_of(finished_project[0])
    ids = finished_project[1].scores.sort_values("rank")["sample_id"].head(2).tolist()
    assert main(["decisions", "add", "remove", *ids, "--project", str(folder), "--annotator", "ann", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 2
    assert main(["decisions", "list", "--project", str(folder), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(d["sample_id"] for d in listed["decisions"]) == sorted(ids)
    assert all(d["action"] == "remove" and d["annotator"] == "ann" for d in listed["decisions"])
    target = folder.parent / "decisions.csv"
    assert main(["export", "decisions", "--project", str(folder), "--out", str(target), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True, "path": str(target)}


def test_progress_in_a_log_is_plain_lines_one_per_tenth_of_a_stage(capsys):
    bars = _StageBars(True, terminal=False)
    for step in range(101):
        bars("train", step / 100, f"epoch {step // 10 + 1}/11")
    bars("notice", 0.0, "a cached entry was damaged")
    bars("map", 1.0, "done")
    bars("map", 1.0, "done")  # a stage that reports its end twice (the pipeline does) is one line
    lines = capsys.readouterr().err.splitlines()
    train = [line for line in lines if line.startswith("ogaudit: train ")]
    assert (
        len(train) == 11 and train[0] == "ogaudit: train 0% epoch 1/11" and train[-1].startswith("ogaudit: train 100%")
    )
    assert "ogaudit: note: a cached entry was damaged" in lines and lines[-1] == "ogaudit: map 100% done"
    assert lines.count("ogaudit: map 100% done") == 1
    assert not any("\r" in line or "it/s" in line or "%/s" in line for line in lines)


def test_a_bug_is_exit_code_70_with_its_traceback(tmp_path, monkeypatch, capsys):
    import ogaudit.cli.users

    def boom(args):
        raise ZeroDivisionError("planted")

    monkeypatch.setattr(ogaudit.cli.users, "run_list", boom)
    assert main(["users", "list", "--home", str(tmp_path)]) == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError: planted" in err and "this is a bug in ogaudit" in err


def test_a_scan_into_a_folder_whose_audit_runs_elsewhere_is_refused(tmp_path, capsys):
    from ogaudit.server.jobs import FolderLock

    held = FolderLock(tmp_path / "busy", "audit").acquire()  # the app's job holds it while it runs
    try:
        assert main(["scan", "digits", *FAST, "--out", str(tmp_path / "busy"), "--json"]) == 4
        failure = json.loads(capsys.readouterr().out)
        assert failure["kind"] == "environment" and "already running" in failure["error"]
        assert not (tmp_path / "busy" / "run.json").exists()
    finally:
        held.release()
    assert main(["scan", "digits", *FAST, "--out", str(tmp_path / "busy"), "--quiet"]) == 0  # free again
