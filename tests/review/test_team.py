"""The team workflow: balanced assignments with overlap, statuses, a reviewer's settlement, notes and tags, in the
ledger, the decisions CSV, the API and the command line."""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import sqlite3
from collections import Counter
from itertools import combinations

import pytest

from ogaudit.cli import main
from ogaudit.errors import LedgerError
from ogaudit.project import Project
from ogaudit.review.decisions import EXPORT_COLUMNS, decisions_csv_bytes, import_decisions
from ogaudit.review.ledger import Ledger
from ogaudit.review.team import annotator_status, assign, my_queue, plan_assignment, sample_status
from ogaudit.server.auth import ROLES, can

CLASSES = ["cat", "dog", "=bird"]
IDS = [f"s{i}" for i in range(30)]


def open_ledger(path) -> Ledger:
    given = [CLASSES[i % 3] for i in range(len(IDS))]
    return Ledger.open(path, dataset_fingerprint="fp", sample_ids=IDS, given_labels=given, class_names=CLASSES)


@pytest.fixture
def ledger(tmp_path) -> Ledger:
    return open_ledger(tmp_path / "ledger.sqlite")


@pytest.mark.parametrize(("n", "m", "k"), [(30, 3, 2), (7, 3, 2), (10, 4, 3), (5, 5, 5), (11, 2, 1), (1, 3, 3)])
def test_the_plan_is_balanced_each_sample_to_k_different_people_and_deterministic(n, m, k):
    names = [f"a{j}" for j in range(m)]
    pairs = plan_assignment(IDS[:n], names, overlap=k)
    assert pairs == plan_assignment(IDS[:n], names, overlap=k)
    per_sample = {s: [a for t, a in pairs if t == s] for s in IDS[:n]}
    assert all(len(people) == k == len(set(people)) for people in per_sample.values())
    load = Counter(a for _, a in pairs)
    assert sum(load.values()) == n * k and max(load.values()) - min(load.get(a, 0) for a in names) <= 1
    if k == 2 and n >= m * 2:  # the pairs rotate: everyone reviews with everyone
        together = {tuple(sorted(p)) for p in per_sample.values()}
        assert together == set(combinations(sorted(names), 2))


@pytest.mark.parametrize(
    ("names", "overlap", "match"),
    [([], 1, "at least one"), (["a", "a"], 1, "named twice"), (["a", "b"], 3, "from 1 to"), (["a"], 0, "from 1 to"),
     (["a", " "], 1, "at least one"), (["a", "b"], True, "whole number")],
)  # fmt: skip
def test_a_bad_plan_is_refused_with_the_fix(names, overlap, match):
    with pytest.raises(LedgerError, match=match):
        plan_assignment(IDS, names, overlap=overlap)


def test_statuses_follow_decisions_and_a_settlement_outranks_everyone(ledger):
    assign(ledger, IDS[:6], ["ana", "ben", "cy"], overlap=2, by="lead")
    status = sample_status(ledger).set_index("sample_id")
    assert status.loc[IDS[:6], "status"].eq("assigned").all()
    assert status.loc["s0", "assigned_to"] == ["ana", "ben"] and status.loc["s1", "assigned_to"] == ["cy", "ana"]

    ledger.decide("s0", "relabel", label="dog", annotator="ana")
    ledger.decide("s0", "confirm", label="dog", annotator="ben")  # the same outcome
    ledger.decide("s1", "keep", annotator="cy")
    ledger.decide("s2", "keep", annotator="ben")
    ledger.decide("s2", "remove", annotator="cy")
    ledger.decide("s29", "unsure", annotator="dee")  # not assigned to anyone
    status = sample_status(ledger).set_index("sample_id")
    assert status["status"].to_dict() == {
        "s0": "agreed", "s1": "decided", "s2": "disputed", "s29": "decided",
        "s3": "assigned", "s4": "assigned", "s5": "assigned",
    }  # fmt: skip
    assert status.loc["s1", "pending"] == ["ana"]
    assert ledger.disagreements()["sample_id"].unique().tolist() == ["s2"]

    ledger.settle("s2", "relabel", label="=bird", reviewer="rita")
    ledger.decide("s2", "keep", annotator="ben")  # an annotator after the settlement does not change the state
    state = ledger.state().set_index("sample_id")
    assert state.loc["s2", ["action", "final_label", "annotator", "settled"]].tolist() == [
        "relabel", "=bird", "rita", True,
    ]  # fmt: skip
    assert sample_status(ledger).set_index("sample_id").loc["s2", "status"] == "settled"
    assert ledger.disagreements().empty and len(ledger.disagreements(include_settled=True)) == 2
    assert "rita" not in set(ledger.agreement()[["annotator_a", "annotator_b"]].values.ravel())

    ledger.undo("rita")  # undoing the settlement reopens the dispute, with ben's later keep in force
    assert sample_status(ledger).set_index("sample_id").loc["s2", "status"] == "disputed"
    assert ledger.state().set_index("sample_id").loc["s2", "annotator"] == "ben"

    people = annotator_status(ledger).set_index("annotator")
    assert people.loc["ana", ["assigned", "done", "remaining"]].tolist() == [4, 1, 3]
    assert people.loc["cy", ["assigned", "done", "disputed"]].tolist() == [4, 2, 1]
    assert people.loc["dee", "assigned"] == 0
    queue = my_queue(ledger, "ana", order=list(reversed(IDS)))
    assert queue["sample_id"].tolist() == ["s4", "s3", "s1", "s0"] and queue["done"].tolist() == [0, 0, 0, 1]


def test_a_new_plan_replaces_the_assignees_of_the_samples_it_names_only(ledger):
    assign(ledger, IDS[:4], ["ana", "ben"], overlap=1, by="lead")
    assign(ledger, IDS[2:3], ["cy"], overlap=1, by="lead")
    to = sample_status(ledger).set_index("sample_id")["assigned_to"].to_dict()
    assert to == {"s0": ["ana"], "s1": ["ben"], "s2": ["cy"], "s3": ["ben"]}
    assert ledger.plans()["samples"].tolist() == [4, 1]
    with pytest.raises(LedgerError, match="Unknown sample id"):
        assign(ledger, ["nope"], ["ana"], overlap=1, by="lead")


def test_notes_and_tags_replace_clear_and_are_checked(ledger):
    ledger.annotate(
        ["s0", "s1"], note="=HYPERLINK(x) blurry", tags=["ambiguous", " bad image ", "ambiguous"], annotator="ana"
    )
    ledger.annotate("s1", note="", tags=[], annotator="ben")
    notes = ledger.notes()
    assert notes[["sample_id", "note", "noted_by"]].values.tolist() == [["s0", "=HYPERLINK(x) blurry", "ana"]]
    assert notes["tags"].tolist() == [["ambiguous", "bad image"]]
    for tags, match in ((["a,b"], "no comma"), (["x" * 41], "at most 40"), ([str(i) for i in range(13)], "at most 12")):
        with pytest.raises(LedgerError, match=match):
            ledger.annotate("s0", note=None, tags=tags, annotator="ana")
    with pytest.raises(LedgerError, match="characters; the limit"):
        ledger.annotate("s0", note="x" * 10_001, annotator="ana")


def test_the_decisions_csv_has_status_assignees_note_and_tags_formula_safe_and_imports_back(ledger, tmp_path):
    assign(ledger, IDS[:3], ["ana", "ben"], overlap=2, by="lead")
    ledger.decide("s0", "keep", annotator="ana", note="decision note")
    ledger.decide("s0", "remove", annotator="ben")
    ledger.settle("s0", "relabel", label="=bird", reviewer="rita")
    ledger.decide("s1", "keep", annotator="ana", note="kept")
    ledger.annotate("s0", note="=1+1 looks odd", tags=["ambiguous", "@bad image"], annotator="ben")
    ledger.annotate("s9", note=None, tags=["bad image"], annotator="ana")  # noted, not assigned nor decided
    header, *rows = list(csv.reader(io.StringIO(decisions_csv_bytes(ledger).decode(), newline="")))
    assert header == EXPORT_COLUMNS
    by_id = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    assert list(by_id) == ["s0", "s1", "s2", "s9"]
    assert by_id["s0"]["final_label"] == "'=bird" and by_id["s0"]["status"] == "settled"
    assert by_id["s0"]["note"] == "'=1+1 looks odd" and by_id["s0"]["tags"] == "ambiguous, @bad image"
    assert by_id["s0"]["assigned_to"] == "ana, ben" and by_id["s0"]["settled"] == "true"
    assert by_id["s1"]["note"] == "kept" and by_id["s1"]["status"] == "decided"
    assert by_id["s2"]["action"] == "" and by_id["s2"]["status"] == "assigned"
    assert by_id["s9"]["tags"] == "bad image" and by_id["s9"]["status"] == ""

    other = open_ledger(tmp_path / "other.sqlite")
    report = import_decisions(other, decisions_csv_bytes(ledger), annotator="importer")
    assert report.rejected == [] and (report.stored, report.undecided) == (2, 2)
    assert other.state().set_index("sample_id").loc["s0", "final_label"] == "=bird"


def test_a_version_1_ledger_is_upgraded_in_place_and_keeps_its_decisions(tmp_path):
    path = tmp_path / "ledger.sqlite"
    ledger = open_ledger(path)
    ledger.decide("s0", "keep", annotator="ana")
    with sqlite3.connect(path) as conn:  # as version 1 left it: no team tables
        for table in ("plans", "assignments", "settlements", "notes"):
            for trigger in [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE tbl_name = ? AND type = 'trigger'", (table,)
                )
            ]:  # noqa: E501
                conn.execute(f"DROP TRIGGER {trigger}")
            conn.execute(f"DROP TABLE {table}")
        conn.execute("DROP TRIGGER IF EXISTS meta_version")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    again = open_ledger(path)
    again.annotate("s0", note="still here", annotator="ana")
    assert again.state()["sample_id"].tolist() == ["s0"] and len(again.notes()) == 1
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("2",)
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM notes")


def test_team_writes_are_numbered_in_the_saved_mark_so_a_lost_one_is_refused(tmp_path):
    path = tmp_path / "ledger.sqlite"
    ledger = open_ledger(path)
    ledger.decide("s0", "keep", annotator="ana")
    assign(ledger, IDS[:2], ["ana"], overlap=1, by="lead")
    ledger.annotate("s0", note="n", annotator="ana")
    assert int((tmp_path / "ledger.sqlite-saved").read_text()) == 3
    (tmp_path / "ledger.sqlite-saved").write_text(f"{4:020d}\n")  # one more write returned than the ledger holds
    with pytest.raises(LedgerError, match="missing"):
        open_ledger(path)


def _write_team(path, who: str, count: int) -> None:
    ledger = open_ledger(path)
    for i in range(count):
        if i % 2:
            ledger.annotate(IDS[i % len(IDS)], note=f"{who} {i}", tags=[who], annotator=who)
        else:
            ledger.assign([(IDS[i % len(IDS)], who)], by=who, overlap=1, annotators=[who])


def test_concurrent_processes_write_plans_and_notes_without_losing_any(tmp_path):
    path = tmp_path / "ledger.sqlite"
    open_ledger(path)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_team, args=(path, f"w{j}", 30)) for j in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    ledger = open_ledger(path)
    assert len(ledger.plans()) == 45
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM notes").fetchone() == (45,)
    assert int((tmp_path / "ledger.sqlite-saved").read_text()) == 90


def test_roles_only_reviewers_and_admins_settle_only_admins_assign():
    assert ROLES == ("admin", "reviewer", "annotator")
    assert [can(r, "settle") for r in ROLES] == [True, True, False]
    assert [can(r, "assign") for r in ROLES] == [True, False, False]
    assert all(can(r, "review") for r in ROLES) and not can("reviewer", "audit") and not can(None, "settle")


def test_the_api_and_the_command_line(finished_project, copy_of, capsys):
    folder = copy_of(finished_project[0])
    project = Project(folder)
    flagged = project.flagged_ids()
    assert main(["assign", "--project", str(folder), "--annotators", "ana,ben,cy", "--overlap", "2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] and sum(p["assigned"] for p in summary["annotators"]) == 2 * len(flagged)
    status = project.team_status().set_index("sample_id")
    assert status.loc[flagged[0], "assigned_to"] == ["ana", "ben"] and set(status["status"]) == {"assigned"}

    first = flagged[0]
    project.decide("keep", first, annotator="ana")
    project.decide("remove", first, annotator="ben")
    assert main(["decisions", "list", "--project", str(folder)]) == 0
    text = capsys.readouterr().out
    assert "1 disputed" in text and f"disputed (1; settle with `ogaudit decisions settle`): {first}" in text
    assert main(["decisions", "settle", "keep", first, "--project", str(folder), "--reviewer", "rita"]) == 0
    capsys.readouterr()
    assert main(["decisions", "note", first, "--project", str(folder), "--annotator", "ana", "--note", "blurry",
                 "--tags", "ambiguous,bad image"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["decisions", "list", "--project", str(folder), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    row = next(r for r in listed["samples"] if r["sample_id"] == first)
    assert row["status"] == "settled" and row["tags"] == ["ambiguous", "bad image"] and row["note"] == "blurry"
    assert listed["decisions"][0]["status"] == "settled"
    assert {p["annotator"] for p in listed["annotators"]} == {"ana", "ben", "cy"}
    assert main(["decisions", "queue", "--project", str(folder), "--annotator", "ana", "--json"]) == 0
    queue = json.loads(capsys.readouterr().out)
    assert queue["done"] == 1 and queue["queue"][0] == {"sample_id": first, "done": True, "status": "settled"}
    exported = project.decisions().set_index("sample_id")
    assert exported.loc[first, ["action", "status", "tags", "note"]].tolist() == [
        "keep", "settled", "ambiguous, bad image", "blurry",
    ]  # fmt: skip
    assert main(["assign", "--project", str(folder), "--annotators", "ana,ana", "--json"]) == 3
    assert "named twice" in json.loads(capsys.readouterr().out)["error"]


def test_an_empty_ledger_has_empty_tables_with_their_columns(ledger):
    assert sample_status(ledger).empty and annotator_status(ledger).empty
    assert my_queue(ledger, "ana", IDS).columns.tolist() == ["sample_id", "done", "status"]
    assert ledger.notes().empty and ledger.plans().empty and ledger.assignments().empty


def test_the_history_marks_settlements(ledger):
    ledger.decide("s0", "keep", annotator="ana")
    ledger.settle("s0", "remove", reviewer="rita")
    ledger.undo("rita")
    history = ledger.history()
    assert history["settles"].tolist() == [False, True, None] and history["event"].tolist()[-1] == "undo"
