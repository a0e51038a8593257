"""The app on an instruction audit (a tiny random causal LM): the Language model tab's cards decide, edit a response,
and answer which training pairs drive a test prompt; the review queue shows the pair as text."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from ogaudit.pipeline.run import AuditSettings, audit
from ogaudit.project import Project
from ogaudit.review.instructions import edited_responses

APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture(scope="module")
def llm_audit(tmp_path_factory, cache_dir, tiny_causal_lm) -> Path:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        folder = tmp_path_factory.mktemp("app-llm") / "pairs"
        settings = AuditSettings(
            model=str(tiny_causal_lm), limit=40, epochs=1, projection_dim=128, map_method="pca", budget=0.2
        )
        audit("instruct-tasks", settings, out_dir=folder, cache_dir=cache_dir)
        Project(folder).write_request("instruct-tasks", settings)
    finally:
        torch.set_num_threads(threads)
    return folder


@pytest.fixture
def project(tmp_path, monkeypatch, cache_dir, llm_audit) -> Path:
    monkeypatch.setenv("OGAUDIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OGAUDIT_CACHE", str(cache_dir))
    monkeypatch.setenv("OGAUDIT_DEMO", "off")
    st.cache_resource.clear()
    return Path(shutil.copytree(llm_audit, tmp_path / "home" / llm_audit.name))


def start(project: Path) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["annotator"] = "alice"
    at.query_params["project"] = project.name
    return at.run()


def test_cards_keep_remove_and_edit_a_response(project):
    run = Project(project).open_run()
    first, second, third = run.flagged_ids[:3]
    at = start(project)
    assert not at.exception
    assert [tab.label for tab in at.tabs][-1] == "Language model"
    shown = "\n".join(str(t.value) for t in at.text)
    dataset = Project(project).load_dataset()
    position = dataset.sample_ids.tolist().index(first)
    assert str(dataset.text_origin.prompts[dataset.rows[position]]) in shown  # the prompt, as plain text
    at.button(key=f"llm-keep-{first}").click().run()
    at.button(key=f"llm-remove-{second}").click().run()
    at.text_area(key=f"llm-edit-{third}").set_value("The right answer.")
    at.button(key=f"llm-save-{third}").click().run()
    assert not at.exception
    state = Project(project).open_ledger().state().set_index("sample_id")
    assert state["action"].to_dict() == {first: "keep", second: "remove", third: "keep"}
    assert edited_responses(state.reset_index()) == {third: "The right answer."}
    assert "The right answer." in "\n".join(str(t.value) for t in at.text)  # the edit is shown on its card


def test_which_training_pairs_drive_a_test_prompt(project):
    at = start(project)
    at.selectbox(key="llm-test").set_value(3).run()
    assert not at.exception
    tables = [frame.value for frame in at.dataframe if "influence" in frame.value.columns]
    drivers, opposers = tables  # the 10 that drive the answer most, then the 5 that push away from it most
    assert len(opposers) == 5 and opposers["influence"].max() <= drivers["influence"].min()
    assert len(drivers) == 10 and drivers["influence"].is_monotonic_decreasing
    assert set(drivers.columns) >= {"influence", "task", "sample_id", "prompt", "response"}


@pytest.mark.usefixtures("one_torch_thread")
def test_verify_retunes_before_and_after_the_decisions(project):
    run = Project(project).open_run()
    at = start(project)
    at.button(key=f"llm-remove-{run.flagged_ids[0]}").click().run()
    at.button(key="llm-verify").click().run()
    assert not at.exception
    table = next(frame.value for frame in at.dataframe if "held-out NLL" in frame.value.columns)
    assert table["pairs"].tolist() == [40, 39] and table["held-out NLL"].notna().all()


@pytest.mark.usefixtures("one_torch_thread")
def test_my_own_prompt_and_answer_are_explained(project):
    at = start(project)
    at.radio(key="llm-explain").set_value("My own prompt and answer").run()
    at.text_area(key="llm-own-prompt").set_value("What is 12 plus 7?")
    at.text_area(key="llm-own-answer").set_value("19")
    at.button(key="llm-own-go").click().run()
    assert not at.exception
    drivers = next(frame.value for frame in at.dataframe if "influence" in frame.value.columns)
    assert len(drivers) == 10 and drivers["influence"].is_monotonic_decreasing


def test_the_setup_panel_offers_the_built_in_pairs(tmp_path):
    from ogaudit.ui.forms import SetupChoices, prepare_audit

    folder, data, settings = prepare_audit(SetupChoices(builtin="instruct-tasks", name="pairs"), tmp_path)
    assert data == "instruct-tasks" and folder.parent == tmp_path and settings.model == "auto"
    from ogaudit.pipeline.instructions import llm_settings

    assert llm_settings(settings).model == "smollm2" and llm_settings(settings).detector == "iforest-per-class"
