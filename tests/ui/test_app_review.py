"""The review workbench in AppTest: one test per defect of issue 15, the evidence panel, filters and the keyboard
view's actions (the keys themselves are pressed in ``test_browser_review.py``)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import test_app
from appserver import REPO, held_audit, wait_for_job
from test_app import DEMO, select, start, texts

from ogaudit.project import Project
from ogaudit.review.evidence import scoring_text
from ogaudit.review.keys import class_keys
from ogaudit.review.ledger import Ledger
from ogaudit.review.split import export_split
from ogaudit.ui.text import md

demo_audit, home, project = test_app.demo_audit, test_app.home, test_app.project  # the app tests' fixtures


def _open(project: Path):
    run = Project(project).open_run()
    return run, Project(project).open_ledger()


def _make_suggestion_the_given_label(project: Path, sample_id: str) -> None:
    """Rewrite the run so that ``sample_id``'s suggested label is its given label (what a pretrained model does)."""
    path = Project(project).run_files()["scores"]
    scores = pd.read_csv(path, dtype={"sample_id": str, "given_label": str, "suggested_label": str})
    scores.loc[scores["sample_id"] == sample_id, "suggested_label"] = scores.loc[
        scores["sample_id"] == sample_id, "given_label"
    ]
    scores.to_csv(path, index=False)


# ---------------------------------------------------------------- defect 1: a confirm changes the label


def test_confirm_offers_the_next_likely_class_when_the_suggestion_is_the_given_label(project):
    first = Project(project).open_run().flagged_ids[0]
    _make_suggestion_the_given_label(project, first)
    run, ledger = _open(project)
    given = run.by_id.loc[first, "given_label"]
    item = Project(project).open_evidence(run).explain([run.position[first]])[0]
    other = run.class_names[item.best_other()]
    assert other != given
    at = start()
    button = at.button(key=f"confirm-{first}")
    assert button.label == f"✓ Confirm → {other}" and not button.disabled
    button.click().run()
    decision = ledger.state().set_index("sample_id").loc[first]
    assert decision["action"] == "confirm" and decision["final_label"] == other != given


def test_bulk_confirm_leaves_out_samples_whose_suggestion_is_their_given_label(project):
    run = Project(project).open_run()
    ids = run.flagged_ids[:3]
    _make_suggestion_the_given_label(project, ids[0])
    run, ledger = _open(project)
    unflagged = run.table.loc[~run.table["flagged"], "sample_id"].iloc[0]
    at = select(start(), [*ids, unflagged])
    at.pills(key="bulk-action").set_value("confirm").run()
    preview = texts(at.caption).replace("\\", "")
    assert "on 2 of the 4 selected" in preview and "1 not flagged" in preview
    assert "1 whose suggestion is their given label" in preview
    at.button(key="bulk-apply").click().run()
    at.button(key="bulk-yes").click().run()
    saved = ledger.state().set_index("sample_id")
    assert sorted(saved.index) == sorted(ids[1:])
    assert (saved["final_label"] != saved["given_label"]).all()


# ---------------------------------------------------------------- defect 2: no silent overwrites


def test_a_card_shows_who_decided_and_overriding_asks_first(project):
    run, ledger = _open(project)
    sample = run.flagged_ids[0]
    ledger.decide(sample, "keep", annotator="alice")
    bob = start("bob")
    bob.toggle(key="queue-hide-decided").set_value(False).run()
    card = texts(bob.markdown)
    assert "**keep** by alice" in card and "UTC" in card
    bob.button(key=f"remove-{sample}").click().run()
    assert ledger.state().set_index("sample_id").loc[sample, "annotator"] == "alice"  # nothing written yet
    assert "would override another annotator's decision" in texts(bob.warning)
    assert "**alice** decided **keep**" in texts(bob.warning)
    bob.button(key="override-yes-queue").click().run()
    decision = ledger.state().set_index("sample_id").loc[sample]
    assert (decision["annotator"], decision["action"]) == ("bob", "remove")
    assert "**remove** by bob" in texts(bob.markdown)
    assert len(ledger.disagreements()) == 2


def test_own_decisions_change_without_asking_and_cancel_writes_nothing(project):
    run, ledger = _open(project)
    sample = run.flagged_ids[0]
    ledger.decide(sample, "keep", annotator="alice")
    at = start("alice")
    at.toggle(key="queue-hide-decided").set_value(False).run()
    at.button(key=f"unsure-{sample}").click().run()
    assert ledger.state().set_index("sample_id").loc[sample, "action"] == "unsure" and not at.warning
    bob = start("bob")
    bob.toggle(key="queue-hide-decided").set_value(False).run()
    bob.button(key=f"keep-{sample}").click().run()
    bob.button(key="override-no-queue").click().run()
    assert ledger.state().set_index("sample_id").loc[sample, "annotator"] == "alice"
    assert not bob.warning


def test_the_agreement_tab_lists_disagreements(project):
    run, ledger = _open(project)
    sample = run.flagged_ids[0]
    ledger.decide(sample, "keep", annotator="alice")
    ledger.decide(sample, "remove", annotator="bob")
    at = start()
    shown = texts(at.tabs[2].markdown)
    assert "1 sample(s) with disagreeing decisions" in shown
    assert f"`{sample}`" in shown and "alice: **keep**" in shown and "← in force" in shown


# ---------------------------------------------------------------- defect 3: bulk actions cannot surprise


def test_bulk_action_defaults_to_nothing_and_flagged_only_with_one_confirmation(project):
    run, ledger = _open(project)
    unflagged = run.table.loc[~run.table["flagged"], "sample_id"].head(5).tolist()
    ids = run.flagged_ids[:2] + unflagged
    at = select(start(), ids)
    assert at.pills(key="bulk-action").value is None
    apply = at.button(key="bulk-apply")
    assert apply.disabled and "Choose an action first." in texts(at.caption).replace("\\", "")
    assert at.radio(key="bulk-scope").value == "flagged" and apply.label == "Apply to 2"  # the scope counts already
    at.pills(key="bulk-action").set_value("remove").run()
    assert at.button(key="bulk-apply").label == "Apply to 2"
    at.button(key="bulk-apply").click().run()
    assert "to **2** sample(s)? It is one step" in texts(at.warning)
    at.button(key="bulk-no").click().run()
    assert ledger.state().empty
    at.radio(key="bulk-scope").set_value("all").run()
    at.button(key="bulk-apply").click().run()
    at.button(key="bulk-yes").click().run()
    assert sorted(ledger.state()["sample_id"]) == sorted(ids) and ledger.state()["batch_id"].nunique() == 1
    at.sidebar.button(key="undo").click().run()
    assert ledger.state().empty
    ledger.decide(ids[0], "relabel", label=run.class_names[0], annotator="alice")  # decided one by one
    at.run()
    assert at.button(key="bulk-apply").label == f"Apply to {len(ids) - 1}"  # a decision taken is left as it is
    assert "1 already decided" in texts(at.caption)
    at.checkbox(key="bulk-replace-decided").check().run()
    assert at.button(key="bulk-apply").label == f"Apply to {len(ids)}"


# ---------------------------------------------------------------- defect 4: a stale split says so


def test_a_cleaned_split_is_marked_out_of_date_after_more_decisions(project):
    run, ledger = _open(project)
    ledger.decide(run.flagged_ids[0], "remove", annotator="alice")
    at = start()
    at.button(key="write-split").click().run()
    assert not at.get("download_button")[-1].proto.disabled and "out of date" not in texts(at.warning)
    at.button(key=f"keep-{run.flagged_ids[1]}").click().run()
    assert "out of date" in texts(at.warning)
    split = [b for b in at.get("download_button") if "Cleaned split" in b.proto.label][0]
    assert split.proto.disabled and "out of date" in split.proto.label


def test_a_split_downloaded_after_a_decision_this_tab_did_not_see_is_written_again(project):
    """A keyboard decision reruns only the keyboard view: the Export tab still offers the split written before.
    What the button serves is made at the click, from the ledger as it is then."""
    import io
    import json
    import zipfile

    from ogaudit.ui.exportview import _current_split_zip, decisions_key

    run, ledger = _open(project)
    dataset = Project(project).load_dataset()
    ledger.decide(run.flagged_ids[0], "remove", annotator="alice")
    folder = Project(run.path).new_export_dir()
    export_split(dataset, ledger, folder, flagged_ids=run.flagged_ids)
    written = {"folder": str(folder), "decisions": decisions_key(ledger.state()), "drop": False}

    def removed(data: bytes) -> int:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            name = next(n for n in archive.namelist() if n.endswith("split.json"))
            return json.loads(archive.read(name))["counts"]["removed"]

    assert removed(_current_split_zip(ledger, run, dataset, written)) == 1
    ledger.decide(run.flagged_ids[1], "remove", annotator="alice")  # as the keyboard view does, unseen here
    assert removed(_current_split_zip(ledger, run, dataset, written)) == 2


# ---------------------------------------------------------------- defect 5: colouring keeps the selection


def test_changing_the_colouring_keeps_the_selection(project):
    run = Project(project).open_run()
    ids = run.flagged_ids[:3]
    at = select(start(), ids)
    at.radio(key=f"colour-{DEMO.project_name}").set_value("score").run()
    assert f"{len(ids)} selected" in texts(at.subheader)
    assert "still selected from the previous colouring" in texts(at.caption)
    at.radio(key=f"colour-{DEMO.project_name}").set_value("given label").run()
    assert f"{len(ids)} selected" in texts(at.subheader)


def test_an_empty_lasso_redraws_the_map_instead_of_greying_it(project):
    at = start()
    key = f"map-{DEMO.project_name}-flagged"
    at.session_state[key] = {"selection": {"points": [], "point_indices": [], "box": [], "lasso": [{"x": [0, 1]}]}}
    at.run()
    assert [c.key for c in at.get("plotly_chart")] == [f"{key}-1"]  # a fresh chart, nothing greyed
    assert "Drag a box" in texts(at.caption)


# ---------------------------------------------------------------- defect 6: enlarge, messages, broken projects


def test_enlarge_shows_the_sample_large_with_its_evidence(project):
    run = Project(project).open_run()
    first = run.flagged_ids[0]
    at = start()
    before = len(at.get("image"))
    at.button(key=f"enlarge-{first}").click().run()
    assert at.slider(key="zoom").value == 448
    assert len(at.get("image")) >= before + 2  # the sample, large, and its 20 neighbours
    assert texts(at.markdown).count("likely that the given label is wrong") == min(12, len(run.flagged_ids)) + 1


def test_a_decision_message_appears_in_the_queue_and_as_a_toast(project):
    run = Project(project).open_run()
    first = run.flagged_ids[0]
    at = start()
    at.button(key=f"keep-{first}").click().run()
    assert f"keep: 1 sample(s) ({first})" in texts(at.tabs[1].success).replace("\\", "")
    assert any("keep: 1 sample(s)" in str(t.value) for t in at.toast)


def test_a_failed_audit_is_marked_in_the_list_and_an_admin_deletes_it(home, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "broken.npz").write_text("not an archive")
    monkeypatch.setenv("OGAUDIT_DATA_ROOTS", str(data))
    at = start()
    at.sidebar.radio(key="setup-source").set_value("Path").run()
    at.sidebar.text_input(key="setup-path").input("broken.npz")
    at.sidebar.text_input(key="setup-name").input("broken")
    next(b for b in at.sidebar.button if b.label == "Start audit").click().run()
    wait_for_job(home / "broken")
    at.run()
    message = texts(at.error)
    assert str(data) not in message.replace("\\", "")  # no server path
    picker = at.sidebar.selectbox(key="project-picker")
    assert picker.format_func("broken").endswith("· failed")
    at.button(key="delete-broken").click().run()
    assert "Delete broken" in texts(at.warning).replace("\\", "")
    at.button(key="delete-yes-broken").click().run()
    assert not (home / "broken").exists() and "Deleted the project broken" in texts(at.success).replace("\\", "")


# ---------------------------------------------------------------- defect 7: verify that can be read


def test_verify_shows_the_spread_the_held_out_size_and_what_was_applied(project):
    run, ledger = _open(project)
    ledger.decide(run.table["sample_id"].tolist()[:60], "remove", annotator="alice")
    at = start()
    at.button(key="verify").click().run()
    wait_for_job(project, "verify", timeout=300)
    at.run()
    assert not at.exception and not at.error
    metrics = {m.label: m for m in at.metric}
    assert "±" in metrics["Accuracy before"].value and metrics["Change"].value in (
        "better",
        "worse",
        "no clear change",
        "too little data to tell",
    )
    caption = texts(at.caption)
    saved = Project(project).read_verify()
    assert saved["decisions"] == 60 and 0 < saved["decisions_held_out"] < 60
    assert f"Held-out part: **{saved['held_out']}** samples" in caption
    assert f"**{60 - saved['decisions_held_out']}** of 60 decisions applied" in caption
    assert f"**{saved['decisions_held_out']}** fell in the held-out part and were not applied" in caption
    assert "trained with 3 seed(s)" in caption and "Per seed:" in caption
    assert "held-out sampling ±" in caption


# ---------------------------------------------------------------- defect 8: smaller ones


def test_progress_counts_current_decisions_only_and_undo_names_what_it_changed(project):
    run, ledger = _open(project)
    first, second = run.flagged_ids[:2]
    at = start("alice")
    at.button(key=f"keep-{first}").click().run()
    at.button(key=f"keep-{second}").click().run()
    Ledger.decide(ledger, first, "remove", annotator="bob")
    at.run()
    table = at.sidebar.dataframe[0].value.set_index("annotator")
    assert table.loc["alice", "decided"] == 1 and table.loc["bob", "decided"] == 1
    # four narrow columns fit the 300 px sidebar (eight scrolled at 1400 px); every action in the Agreement tab
    assert list(table.columns) == ["flagged_decided", "decided", "wrong"]
    full = next(frame.value for frame in at.dataframe if "unsure" in getattr(frame.value, "columns", []))
    full = full.set_index("annotator")
    assert full.loc["alice", "keep"] == 1 and full.loc["bob", "remove"] == 1 and full.loc["bob", "keep"] == 0
    ledger.decide([first, second], "unsure", annotator="alice")
    ledger.decide(first, "keep", annotator="bob")
    at.sidebar.button(key="undo").click().run()
    message = texts(at.sidebar.info)
    assert f"Undid the decision on 1 sample(s): {second}" in message.replace("\\", "")


def test_apply_says_why_it_is_disabled(project):
    run = Project(project).open_run()
    at = select(start(annotator=None), run.flagged_ids[:2])
    assert at.button(key="bulk-apply").disabled
    assert "Enter your name in the sidebar first" in texts(at.caption)


def test_app_sh_turns_the_file_watcher_off():
    assert "--server.fileWatcherType none" in (REPO / "scripts" / "app.sh").read_text()


# ---------------------------------------------------------------- evidence, filters, keyboard view


def test_every_card_shows_its_evidence(project):
    run = Project(project).open_run()
    at = start()
    shown = texts(at.markdown)
    assert shown.count("likely that the given label is wrong") == min(12, len(run.flagged_ids))
    assert re.search("nearest gradient neighbours (is|are) labelled", texts(at.caption))
    scored = scoring_text(run.settings.detector, run.detector_state)  # the demo scores with posterior-auto
    assert scored.startswith("Scored by posterior-auto") and texts(at.caption).count(md(scored)) == min(
        12, len(run.flagged_ids)
    )
    strips = [c for image in at.get("image") for c in image.proto.imgs if "gradient neighbours" in c.caption]
    assert len(strips) == min(12, len(run.flagged_ids))
    tables = [frame.value for frame in at.dataframe if "combined" in getattr(frame.value, "columns", [])]
    assert len(tables) == min(12, len(run.flagged_ids)) and {"model", "neighbours", "counterfactual"} <= set(
        tables[0].columns
    )


def test_a_class_filter_an_id_search_and_a_confusion_cell(project):
    run = Project(project).open_run()
    flagged = run.by_id.loc[run.flagged_ids]
    cls = flagged["given_label"].value_counts().index[0]
    at = start()
    at.multiselect(key="queue-given").set_value([cls]).run()
    shown = {k.split("confirm-", 1)[1] for k in (b.key for b in at.button) if k and k.startswith("confirm-")}
    assert shown == set(flagged.index[flagged["given_label"] == cls][:12])
    at.multiselect(key="queue-given").set_value([]).run()
    target = run.flagged_ids[3]
    at.text_input(key="queue-search").input(target).run()
    shown = {k.split("confirm-", 1)[1] for k in (b.key for b in at.button) if k and k.startswith("confirm-")}
    assert shown == {i for i in run.flagged_ids if target in i}
    at.text_input(key="queue-search").input("").run()
    row = flagged.iloc[0]
    i = run.class_names.index(row["given_label"])
    at.session_state["confusion"] = {"selection": {"rows": [], "columns": [], "cells": [[i, row["suggested_label"]]]}}
    at.run()
    assert at.multiselect(key="queue-given").value == [row["given_label"]]
    assert at.multiselect(key="queue-suggested").value == [row["suggested_label"]]


def _keyboard_view(project):
    """The run, its ledger, the flagged queue and the app showing it one sample at a time."""
    run, ledger = _open(project)
    at = start()
    at.session_state["queue-view"] = "One at a time (keyboard)"
    return run, ledger, run.flagged_ids, at.run()


def test_the_keyboard_view_decides_and_moves_on(project):
    run, ledger, queue, at = _keyboard_view(project)
    assert ":blue-badge[A] accept the suggestion" in texts(at.markdown)
    keys = class_keys(run.class_names)
    shown = [f":blue-badge[{k}]" + ("" if k == n else f" {n}") for k, n in zip(keys, run.class_names)]
    assert "**Relabel to** · " + " · ".join(shown) in texts(at.markdown)  # every class in full, a digit once
    digits = [i for i, name in enumerate(run.class_names) if name in "0123456789"]
    assert digits, "the demo's classes are digits"
    for i in digits:  # a class named by a digit is relabelled by that digit's key
        assert at.button(key=f"kb-label-{i}").proto.shortcut == run.class_names[i]
    assert at.button(key="kb-keep").proto.shortcut
    at.button(key="kb-keep").click().run()
    at.button(key="kb-unsure").click().run()
    at.button(key="kb-next").click().run()
    at.button(key="kb-remove").click().run()
    names = run.class_names
    given = run.by_id.loc[queue[4], "given_label"]
    other = next(i for i, c in enumerate(names[:10]) if c != given)
    at.button(key=f"kb-label-{other}").click().run()
    saved = ledger.state().set_index("sample_id")
    assert saved.loc[queue[0], "action"] == "keep" and saved.loc[queue[1], "action"] == "unsure"
    assert queue[2] not in saved.index and saved.loc[queue[3], "action"] == "remove"
    assert saved.loc[queue[4], "action"] == "relabel" and saved.loc[queue[4], "final_label"] == names[other]
    assert at.button(key="undo-keyboard").proto.shortcut and at.button(key="redo-keyboard").disabled
    at.button(key="undo-keyboard").click().run()
    assert queue[4] not in ledger.state()["sample_id"].tolist()
    assert f"`{queue[4]}`" in texts(at.markdown)  # undo brings the undone sample back into view


def test_previous_returns_to_the_sample_just_decided_while_decided_samples_are_hidden(project):
    run, ledger, queue, at = _keyboard_view(project)
    assert at.toggle(key="queue-hide-decided").value  # the default
    at.button(key="kb-keep").click().run()
    assert f"`{queue[1]}`" in texts(at.markdown) and f"`{queue[0]}`" not in texts(at.markdown)
    at.button(key="kb-previous").click().run()
    assert f"`{queue[0]}`" in texts(at.markdown)  # back to the decided sample, to change its decision
    at.button(key="kb-remove").click().run()
    assert ledger.state().set_index("sample_id").loc[queue[0], "action"] == "remove"
    at.toggle(key="queue-hide-decided").set_value(False).run()
    at.toggle(key="queue-hide-decided").set_value(True).run()  # another filter: a new pass hides it again
    at.session_state["ogaudit-focus"] = queue[0]
    at.run()
    assert f"`{queue[0]}`" not in texts(at.markdown)


def test_a_key_on_a_sample_someone_else_just_decided_asks_before_overriding(project):
    run, ledger, queue, at = _keyboard_view(project)
    ledger.decide(queue[0], "keep", annotator="bob")  # in bob's session, unseen by this page
    at.button(key="kb-remove").click().run()
    assert "would override another annotator's decision" in texts(at.warning)  # asked, on the same sample
    assert f"`{queue[0]}`" in texts(at.markdown)
    assert ledger.state().set_index("sample_id").loc[queue[0], "annotator"] == "bob"  # nothing written yet
    at.button(key="override-yes-keyboard").click().run()
    assert ledger.state().set_index("sample_id").loc[queue[0], "action"] == "remove"


def test_the_duplicate_queue_lists_duplicate_groups_flagged_or_not(project, monkeypatch):
    run = Project(project).open_run()
    a, b = run.table["sample_id"].iloc[-1], run.flagged_ids[0]  # an unflagged sample and a flagged one
    planted = pd.DataFrame(
        {
            "group": [1, 1],
            "kind": ["exact", "exact"],
            "sample_id": [a, b],
            "given_label": ["x", "y"],
            "conflict": [True, True],
            "size": [2, 2],
        }
    )
    import ogaudit.ui.state

    monkeypatch.setattr(ogaudit.ui.state, "duplicates", lambda run, dataset: planted)
    at = start()
    at.selectbox(key="queue-duplicates").set_value("conflicts").run()
    shown = {k.split("confirm-", 1)[1] for k in (b.key for b in at.button) if k and k.startswith("confirm-")}
    assert shown == {a, b}
    assert f"⚠ labels differ: exact duplicate of `{b}` (y)" in texts(at.markdown)


def test_while_an_audit_runs_its_first_look_is_shown_and_can_be_reviewed(project):
    with held_audit(project, "train", 0.3, "epoch 3/10") as job:
        at = start(project=project.name, job=job.job_id)
        assert "train: epoch 3/10" in at.get("progress")[0].proto.text
        assert "quick first look" in texts(at.info)
        assert [c.key for c in at.get("plotly_chart")] == [f"map-{DEMO.project_name}-flagged"]
        first = Project(project).open_run().flagged_ids[0]
        at.button(key=f"keep-{first}").click().run()
        assert Project(project).open_ledger().state()["sample_id"].tolist() == [first]


def test_a_reviewer_remaps_a_key_and_it_is_kept_for_their_name(project):
    run, ledger, queue, at = _keyboard_view(project)
    at.text_input(key="key-keep").set_value("j")
    at.button(key="FormSubmitter:ogaudit-keys-form-Save my keys").click().run()
    assert at.button(key="kb-keep").proto.shortcut == "j"
    assert ":blue-badge[J] keep the given label" in texts(at.markdown)
    again = start()  # a new tab of the same reviewer: the keys come from the server
    again.session_state["queue-view"] = "One at a time (keyboard)"
    assert again.run().button(key="kb-keep").proto.shortcut == "j"
    at.text_input(key="key-keep").set_value("3")
    at.button(key="FormSubmitter:ogaudit-keys-form-Save my keys").click().run()
    assert "digits relabel" in texts(at.error)
    assert at.button(key="kb-keep").proto.shortcut == "j"


def test_the_card_grid_has_keys_on_the_focused_card(project):
    run, ledger = _open(project)
    at = start()
    first, second = run.flagged_ids[:2]
    assert f"Keyboard on card 1 of 12: `{first}`" in texts(at.markdown)
    assert at.button(key="grid-keep").proto.shortcut == "k" and at.button(key="grid-previous").disabled
    at.button(key="grid-keep").click().run()
    assert ledger.state().set_index("sample_id").loc[first, "action"] == "keep"
    assert f"Keyboard on card 1 of 12: `{second}`" in texts(at.markdown)  # the decided card left the page
    at.button(key="grid-next").click().run()
    assert "Keyboard on card 2 of 12" in texts(at.markdown)


def test_a_link_with_a_status_mark_opens_that_project_and_the_url_keeps_its_name(project):
    from ogaudit.ui.main import project_param

    assert project_param("posts · queued") == "posts" and project_param("posts") == "posts"
    at = start(project=f"{project.name} · queued")
    assert not at.exception and not at.warning
    assert at.query_params["project"] in ([project.name], project.name)


def test_annotators_see_no_server_path_in_the_run_line(project):
    run = Project(project).open_run()
    record = dict(run.record, dataset={**run.record["dataset"], "spec": "/srv/data/secret/cats"})
    run.record = record
    assert "/srv/data" in run.describe() and run.describe(full_paths=False).startswith("cats:")


# ---------------------------------------------------------------- the team (issue 26)


def test_my_queue_a_note_shown_as_text_and_settling_a_dispute(project):
    run, ledger = _open(project)
    first, second = run.flagged_ids[:2]
    Project(project).assign("alice,bob", overlap=2, by="lead")
    ledger.decide(first, "remove", annotator="bob")
    ledger.annotate(second, note="[x](http://evil) blurry", tags=["ambiguous"], annotator="bob")
    at = start()
    assert at.toggle(key="team-my-queue").value
    assert f"My queue: 0 of {len(run.flagged_ids)} decided by me" in [bar.proto.text for bar in at.get("progress")]
    labels = [e.proto.label for e in at.get("expander")]
    assert "📝 ambiguous · \\[x\\]\\(http\\://evil\\) blurry" in labels  # the note is text, not a link
    at.button(key=f"keep-{first}").click().run()  # bob decided it too: no override question in my queue
    assert ledger.state().set_index("sample_id").loc[first, "annotator"] == "alice"
    assert Project(project).team_status().set_index("sample_id").loc[first, "status"] == "disputed"
    at.button(key=f"settle-{first}-keep-None").click().run()  # on a local server, its one person is the admin
    state = ledger.state().set_index("sample_id").loc[first]
    assert (state["action"], state["annotator"], state["settled"]) == ("keep", "alice", True)


def test_the_per_class_view_shows_every_sample_of_one_class(project):
    run, ledger = _open(project)
    name = run.class_names[3]
    members = run.table.loc[run.table["given_label"] == name, "sample_id"].tolist()
    ledger.decide(members[:1], "keep", annotator="bob")  # decided ones are shown too
    at = start()
    at.selectbox(key="queue-one-class").set_value(name).run()
    assert not at.exception
    assert f"{len(members):,} in the queue" in texts(at.caption)
    assert not at.toggle(key="queue-flagged-only").value and not at.toggle(key="queue-hide-decided").value


def test_class_names_sit_on_their_clusters(project):
    import pandas as pd

    from ogaudit.ui.figure import class_annotations

    table = pd.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(7)],
            "given_label": ["cat", "cat", "cat", "dog", "dog", "dog", "cat"],  # one "cat" far away: a wrong label
            "x": [0.0, 0.1, 0.2, 5.0, 5.1, 5.2, 5.05],
            "y": [0.0, 0.1, 0.0, 5.0, 5.1, 5.0, 5.05],
            "score": [0.1] * 7,
            "flagged": [False] * 6 + [True],
            "rank": range(1, 8),
        }
    )
    notes = {a["text"]: (a["x"], a["y"]) for a in class_annotations(table)}
    assert notes["<b>cat</b>"][0] < 1 and notes["<b>dog</b>"][0] > 4  # the median, not pulled by the stray one
    many = table.assign(given_label=[f"c{i}" for i in range(7)])
    assert class_annotations(many, limit=5) == []
    from ogaudit.ui.figure import map_figure

    run = Project(project).open_run()
    assert len(map_figure(run.table).layout.annotations) == len(run.class_names)


def test_the_keyboard_view_has_the_note_and_tags_box(project):
    run, ledger, queue, at = _keyboard_view(project)
    focus = queue[0]
    assert any(e.proto.label == "📝 Note / tags" for e in at.get("expander"))
    at.text_area(key=f"note-text-{focus}").input("kxu: blurry, maybe a 7")
    at.multiselect(key=f"note-tags-{focus}").select("ambiguous")
    next(b for b in at.button if b.label == "Save note").click().run()
    notes = ledger.notes().set_index("sample_id")
    assert notes.loc[focus, "note"] == "kxu: blurry, maybe a 7" and list(notes.loc[focus, "tags"]) == ["ambiguous"]
    assert ledger.state().empty  # a note decides nothing
    assert f"Saved the note on `{focus}`" in texts(at.success)  # shown in the keyboard view
    assert f"`{focus}`" in texts(at.markdown)  # still on the same sample
    assert any(e.proto.label.startswith("📝 ambiguous · kxu") for e in at.get("expander"))
