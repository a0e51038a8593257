"""The cleaned instruction set: removed pairs dropped, edited responses written in, every other row byte for byte."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ogaudit.data.instructions import load_instructions, responses_of
from ogaudit.errors import DataError
from ogaudit.review.instructions import edit_note, edited_responses, write_instruction_split
from ogaudit.review.ledger import Ledger
from ogaudit.review.split import export_split


def ledger_for(dataset, path) -> Ledger:
    given = np.asarray(dataset.class_names)[dataset.y].tolist()
    return Ledger.open(
        path,
        dataset_fingerprint=dataset.fingerprint(),
        sample_ids=dataset.sample_ids.tolist(),
        given_labels=given,
        class_names=dataset.class_names,
    )


def test_jsonl_export_drops_removed_writes_edits_and_keeps_other_lines_byte_for_byte(tmp_path, small_instructions):
    dataset = load_instructions(small_instructions)
    ids = dataset.sample_ids.tolist()
    ledger = ledger_for(dataset, tmp_path / "ledger.sqlite")
    ledger.decide(ids[:2], "remove", annotator="ana")
    ledger.decide(ids[2], "keep", annotator="ana", note=edit_note("A new, right answer ✓"))
    ledger.decide(ids[3], "keep", annotator="ana")
    assert edited_responses(ledger.state()) == {ids[2]: "A new, right answer ✓"}
    manifest = export_split(dataset, ledger, tmp_path / "out")
    assert manifest["counts"] == {"input": 60, "kept": 58, "removed": 2, "edited": 1}
    written = (tmp_path / "out" / small_instructions.name).read_bytes().splitlines(keepends=True)
    original = small_instructions.read_bytes().splitlines(keepends=True)
    assert len(written) == 58 and written[1:] == original[3:]  # untouched rows as they were
    assert json.loads(written[0]) == {**json.loads(original[2]), "response": "A new, right answer ✓"}
    again = load_instructions(tmp_path / "out" / small_instructions.name)
    assert responses_of(again)[0] == "A new, right answer ✓" and len(again) == 58
    flagged = [ids[0], ids[3], ids[4], ids[5]]  # removed, kept, then two nobody decided on
    manifest = export_split(dataset, ledger, tmp_path / "strict", flagged_ids=flagged, drop_undecided_flagged=True)
    assert manifest["counts"]["dropped_undecided_flagged"] == 2 and manifest["counts"]["kept"] == 56


def test_csv_and_chat_exports(tmp_path):
    frame = pd.DataFrame(
        {"id": ["a", "b", "c"], "prompt": ["p1", "p2,\nsecond line", "p3"], "response": ["r1", "r2", "r3"]}
    )
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    dataset = load_instructions(tmp_path / "pairs.csv")
    ledger = ledger_for(dataset, tmp_path / "l.sqlite")
    ledger.decide("a", "remove", annotator="ana")
    ledger.decide("b", "keep", annotator="ana", note=edit_note('say "hi", twice'))
    export_split(dataset, ledger, tmp_path / "out")
    back = pd.read_csv(tmp_path / "out" / "pairs.csv")
    assert back.to_dict("list") == {
        "id": ["b", "c"],
        "prompt": ["p2,\nsecond line", "p3"],
        "response": ['say "hi", twice', "r3"],
    }
    assert (
        (tmp_path / "out" / "pairs.csv")
        .read_text()
        .endswith(tmp_path.joinpath("pairs.csv").read_text().splitlines(True)[-1])
    )

    chat = tmp_path / "chat.jsonl"
    messages = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}]
    chat.write_text(json.dumps({"id": "x", "messages": messages}) + "\n")
    dataset = load_instructions(chat)
    ledger = ledger_for(dataset, tmp_path / "c.sqlite")
    ledger.decide("x", "keep", annotator="ana", note=edit_note("4"))
    out = tmp_path / "chat-out"
    out.mkdir()
    write_instruction_split(dataset, ledger.state(), out)
    assert json.loads((out / "chat.jsonl").read_text())["messages"][1] == {"role": "assistant", "content": "4"}


def test_an_empty_edit_is_refused():
    with pytest.raises(DataError, match="empty"):
        edit_note("  ")


def test_the_classifier_retrain_check_points_to_the_re_tune_check(tmp_path, small_instructions, monkeypatch):
    """Project.verify (ogaudit verify, the Export tab) retrains a classifier: for pairs it says where to look."""
    from ogaudit.errors import SettingsError
    from ogaudit.project import Project

    project = Project(tmp_path / "p")
    monkeypatch.setattr(Project, "dataset", lambda self, data=None: load_instructions(small_instructions))
    with pytest.raises(SettingsError, match="Language model tab"):
        project.verify()
