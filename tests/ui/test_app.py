"""The app's flows with Streamlit's AppTest (no browser), and the plain functions the app is built from.

AppTest runs the script in this process but cannot fire ``run_every`` timers: the tests wait for the job's status
file and rerun, as the polling fragment would. Real rendering, mouse selection and downloads are in
``test_browser.py``.
"""

from __future__ import annotations

import io
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import streamlit as st
from appserver import held_audit, wait_for_job
from streamlit.testing.v1 import AppTest

from ogaudit.data.uploads import unpack_zip, zip_folder
from ogaudit.errors import DataError, LedgerError, ModelError, SettingsError
from ogaudit.map.density import DENSITY_ABOVE
from ogaudit.pipeline.run import audit
from ogaudit.project import Project
from ogaudit.results import Run
from ogaudit.review.actions import decide
from ogaudit.server.jobs import read_status
from ogaudit.ui.config import DemoConfig
from ogaudit.ui.figure import COLOUR_MODES, hover_data, map_figure
from ogaudit.ui.forms import SetupChoices, prepare_audit
from ogaudit.ui.selection import selected_ids

APP = str(Path(__file__).resolve().parents[2] / "app.py")
DEMO_ENV = {
    "OGAUDIT_DEMO": "digits",
    "OGAUDIT_DEMO_EPOCHS": "1",
    "OGAUDIT_DEMO_MAP": "pca",
    "OGAUDIT_DEMO_LIMIT": "300",
}
DEMO = DemoConfig.from_env(DEMO_ENV)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def demo_audit(tmp_path_factory, cache_dir) -> Path:
    """The demo's audit, run once: a finished project folder to copy into each test's workspace."""
    project = tmp_path_factory.mktemp("app") / DEMO.project_name
    audit(DEMO.data, DEMO.settings(), out_dir=project, cache_dir=cache_dir)
    Project(project).write_request(DEMO.data, DEMO.settings())
    return project


@pytest.fixture
def home(tmp_path, monkeypatch, cache_dir) -> Path:
    """An empty workspace, the shared model cache and the fast demo; no resources left from other tests."""
    monkeypatch.setenv("OGAUDIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OGAUDIT_CACHE", str(cache_dir))
    for name, value in DEMO_ENV.items():
        monkeypatch.setenv(name, value)
    st.cache_resource.clear()
    return tmp_path / "home"


@pytest.fixture
def project(home, demo_audit) -> Path:
    """The finished demo audit in the workspace, with an empty ledger."""
    return Path(shutil.copytree(demo_audit, home / demo_audit.name))


def start(annotator: str | None = "alice", **params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    if annotator:
        at.query_params["annotator"] = annotator
    for name, value in params.items():
        at.query_params[name] = value
    return at.run()


def select(at: AppTest, ids: list[str], colour: str = "flagged") -> AppTest:
    """Inject a plotly selection event as the browser sends it (2-D customdata, the id first)."""
    points = [
        {"curve_number": 0, "point_number": i, "point_index": i, "customdata": [sid, "?", "0.1", ""]}
        for i, sid in enumerate(ids)
    ]
    at.session_state[f"map-{DEMO.project_name}-{colour}"] = {
        "selection": {"points": points, "point_indices": list(range(len(ids))), "box": [], "lasso": []}
    }
    return at.run()


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


# ---------------------------------------------------------------- flows


def test_first_start_audits_the_demo_in_the_background_then_shows_the_map(home):
    at = start()
    assert not at.exception
    project = home / DEMO.project_name
    assert "Demo:" in texts(at.info) and "10% of the labels flipped" in texts(at.info)
    assert at.query_params["project"] == DEMO.project_name
    if not read_status(project, "audit").finished:  # the cached model makes the demo quick: it may be done
        assert at.get("progress") and at.button(key=f"cancel-{DEMO.project_name}/audit")
        assert at.query_params["job"] == f"{DEMO.project_name}/audit"
    wait_for_job(project)
    at.run()
    assert not at.exception and not at.error
    assert [c.key for c in at.get("plotly_chart")] == [f"map-{DEMO.project_name}-flagged"]
    assert "AUROC" in [m.label for m in at.metric]
    assert "job" not in at.query_params


def test_a_refreshed_page_reattaches_to_the_running_job(project):
    with held_audit(project, "train", 0.4, "epoch 2/5") as job:
        at = start(project=project.name, job=job.job_id)  # a new session, as after a refresh
        bar = at.get("progress")[0]
        assert "train: epoch 2/5" in bar.proto.text and bar.value == 40
        at.button(key=f"cancel-{job.job_id}").click().run()
        assert job.cancel_event.is_set()


def test_a_selection_fills_the_grid(project):
    run = Project(project).open_run()
    at = start()
    assert "Drag a box" in texts(at.caption)
    ids = run.flagged_ids[:2] + [run.table["sample_id"][0]]
    at = select(at, ids)
    assert f"{len(ids)} selected" in texts(at.subheader)
    grid = texts(at.markdown)
    for sample_id in ids:
        assert f"`{sample_id}`" in grid
    row = run.by_id.loc[ids[0]]
    assert f"suggested **{row.suggested_label}**" in grid and f"predicted {row.predicted_label}" in grid


def test_the_map_carries_hover_pictures_of_the_drawn_samples(project, monkeypatch):
    """Every sample of a small map gets its picture (flagged first); a density map's only its flagged points'. The
    script receives them as JSON data, keyed by the id as the chart's customdata holds it."""
    import json

    from ogaudit.ui.hover import MAP_CONTAINER

    run = Project(project).open_run()

    def payload(at: AppTest) -> dict:
        (hover,) = [e for e in at.main if getattr(e, "type", "") == "bidi_component"]
        assert hover.proto.component_name == "ogaudit.map_hover"
        return json.loads(hover.proto.json)

    data = payload(start())
    assert data["ids"][: len(run.flagged_ids)] == run.flagged_ids  # most suspicious first
    assert sorted(data["ids"]) == sorted(run.table["sample_id"]) and len(data["uris"]) == len(data["ids"])
    assert all(uri.startswith("data:image/png;base64,") for uri in data["uris"])
    assert data["selector"] == f".st-key-{MAP_CONTAINER} .js-plotly-plot" and data["size"] == 48
    monkeypatch.setenv("OGAUDIT_MAP_POINTS", "100")
    st.cache_resource.clear()
    assert payload(start())["ids"] == run.flagged_ids


def test_each_action_lands_in_the_ledger(project):
    run = Project(project).open_run()
    ledger = Project(run.path).open_ledger()
    first, second, third, fourth, fifth = run.flagged_ids[:5]
    at = start()
    assert f"`{first}` (rank 1)" in texts(at.markdown)
    at.button(key=f"confirm-{first}").click().run()
    other = next(c for c in run.class_names if c != run.by_id.loc[second, "suggested_label"])
    at.selectbox(key=f"relabel-label-{second}").set_value(other)
    at.button(key=f"relabel-{second}").click().run()
    for action, sample_id in (("keep", third), ("remove", fourth), ("unsure", fifth)):
        at.button(key=f"{action}-{sample_id}").click().run()
    assert not at.exception
    decisions = ledger.state().set_index("sample_id")
    assert decisions["action"].to_dict() == {
        first: "confirm",
        second: "relabel",
        third: "keep",
        fourth: "remove",
        fifth: "unsure",
    }
    assert decisions.loc[first, "final_label"] == run.by_id.loc[first, "suggested_label"]
    assert decisions.loc[second, "final_label"] == other
    assert set(decisions["annotator"]) == {"alice"}
    assert decisions.loc[first, "rank"] == 1 and decisions.loc[first, "run"] == project.name
    assert "Reviewed 5 of" in at.sidebar.get("progress")[0].proto.text
    assert f"`{first}`" not in texts(at.markdown)  # decided samples leave the queue


def test_bulk_action_on_the_selection_then_undo_and_redo(project):
    run = Project(project).open_run()
    ledger = Project(run.path).open_ledger()
    ids = run.flagged_ids[:4]
    at = select(start(), ids)
    at.pills(key="bulk-action").set_value("confirm").run()
    next(b for b in at.button if b.label == f"Apply to {len(ids)}").click().run()
    assert ledger.state().empty  # Apply asks once more before anything is written
    at.button(key="bulk-yes").click().run()
    state_after = ledger.state().set_index("sample_id")
    assert sorted(state_after.index) == sorted(ids)
    assert (state_after["final_label"] == run.by_id.loc[state_after.index, "suggested_label"]).all()
    assert len(set(state_after["batch_id"])) == 1  # one bulk action, one undo step
    at.sidebar.button(key="undo").click().run()
    assert ledger.state().empty and "Undid the decision on 4 sample(s)" in texts(at.info)
    at.sidebar.button(key="redo").click().run()
    assert sorted(ledger.state()["sample_id"]) == sorted(ids)
    assert at.sidebar.button(key="redo").disabled and not at.sidebar.button(key="undo").disabled


def test_two_annotators_see_each_other(project):
    run = Project(project).open_run()
    alice, bob = start("alice"), start("bob")
    sample = run.flagged_ids[0]
    alice.button(key=f"keep-{sample}").click().run()
    bob.run()
    assert "Reviewed 1 of" in bob.sidebar.get("progress")[0].proto.text
    assert bob.sidebar.button(key="undo").disabled  # undo is per annotator


def test_the_annotator_is_asked_once(project):
    at = start(annotator=None)
    assert at.button(key=f"confirm-{Project(project).open_run().flagged_ids[0]}").disabled
    at.text_input(key="annotator-input").input("carol")
    next(b for b in at.button if b.label == "Start reviewing").click().run()
    assert at.query_params["annotator"] == "carol"
    assert "Reviewing as **carol**" in texts(at.sidebar.markdown)


def test_library_errors_are_shown_not_raised(project, home, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "broken.npz").write_text("not an archive")
    monkeypatch.setenv("OGAUDIT_DATA_ROOTS", str(data))
    at = start()
    (form,) = [block for block in at.sidebar.get("form") if block.proto.form.form_id == "new-audit"]
    assert not form.proto.form.enter_to_submit  # Enter in the subset or name field does not start an audit
    assert "setup-builtin" in [box.key for box in at.sidebar.selectbox]
    assert "setup-path" not in [field.key for field in at.sidebar.text_input]  # each source shows its own inputs
    at.sidebar.radio(key="setup-source").set_value("Path").run()
    assert "setup-builtin" not in [box.key for box in at.sidebar.selectbox]
    at.sidebar.text_input(key="setup-path").input(str(home / "no-such-data"))
    at.sidebar.text_input(key="setup-name").input("outside")
    next(b for b in at.sidebar.button if b.label == "Start audit").click().run()
    refusal = texts(at.sidebar.error).replace("\\", "")  # shown escaped: the path is the visitor's text
    assert "not an existing path inside the data folders" in refusal and "OGAUDIT_DATA_ROOTS" in refusal
    assert not (home / "outside").exists()  # refused before anything was created
    at.sidebar.text_input(key="setup-path").input("broken.npz")  # relative: inside the first data folder
    at.sidebar.text_input(key="setup-name").input("broken")
    next(b for b in at.sidebar.button if b.label == "Start audit").click().run()
    assert at.query_params["project"] == "broken"
    wait_for_job(home / "broken")
    at.run()
    assert not at.exception
    message = texts(at.error)
    assert "failed during the **load** stage" in message and "Cannot read" in message
    assert at.button(key="retry-broken")  # a file of the server's: its owner may fix it, then Retry
    from ogaudit.server.jobs import JobSnapshot
    from ogaudit.settings import AuditSettings
    from ogaudit.ui.jobview import retry_can_help

    failed = JobSnapshot("x/audit", "audit", status="failed", error_type="DataError")
    upload = home / "up"
    upload.mkdir()
    Project(upload).write_request(str(upload / "upload" / "d"), AuditSettings())
    assert not retry_can_help(failed, upload)  # an upload kept in the project cannot change: no Retry
    Project(upload).write_request("digits", AuditSettings())
    assert not retry_can_help(failed, upload)  # nor a built-in
    assert not retry_can_help(JobSnapshot("x/audit", "audit", status="failed", error_type="SettingsError"), upload)
    assert retry_can_help(JobSnapshot("x/audit", "audit", status="failed", error_type="StorageError"), upload)
    at.sidebar.radio(key="setup-source").set_value("Upload zip").run()
    next(b for b in at.sidebar.button if b.label == "Start audit").click().run()
    assert not at.exception and "Upload a zip of an image folder" in texts(at.error)
    at.sidebar.radio(key="setup-source").set_value("Upload text table").run()
    at.sidebar.text_input(key="setup-text-column").input("Quote")
    next(b for b in at.sidebar.button if b.label == "Start audit").click().run()
    assert not at.exception and "Upload a text table" in texts(at.error) and "label column first" in texts(at.error)


def test_export_panel_offers_the_decisions(project):
    run = Project(project).open_run()
    Project(run.path).open_ledger().decide(run.flagged_ids[0], "remove", annotator="alice")
    at = start()
    labels = [b.proto.label for b in at.get("download_button")]
    assert "⬇ Decisions CSV" in labels and "⬇ Decisions of the 0 selected" in labels
    at.button(key="write-split").click().run()
    assert not at.exception and "Kept 299 of 300 samples (1 removed" in texts(at.success)
    split = next((project / "exports").iterdir())
    assert (split / "split.json").exists() and (split / "digits.npz").exists()
    manifest = (split / "split.json").read_text()
    assert str(project) not in manifest and str(project.parent) not in manifest  # no server path travels with the split


def test_export_panel_offers_each_tool_format(project):
    from ogaudit.ui.exportview import TOOL_FORMATS, tool_export_bytes

    at = start()
    assert at.selectbox(key="tool-format").options == [label for label, _, _ in TOOL_FORMATS.values()]
    assert "⬇ Export" in [b.proto.label for b in at.get("download_button")]  # its bytes come on click: below
    run = Project(project).open_run()
    Project(run.path).open_ledger().decide(run.flagged_ids[0], "remove", annotator="alice")
    issues = pd.read_csv(io.BytesIO(tool_export_bytes(run, None, "cleanlab")))
    assert len(issues) == len(run.table) and issues["is_label_issue"].sum() == run.table["flagged"].sum()
    with zipfile.ZipFile(io.BytesIO(tool_export_bytes(run, Project(project).load_dataset(), "fiftyone"))) as archive:
        names = archive.namelist()
    assert "labels.json" in names and sum(name.startswith("data/") for name in names) == len(run.table)


def test_verify_runs_in_the_background_and_shows_before_and_after(project):
    run = Project(project).open_run()
    Project(run.path).open_ledger().decide(run.flagged_ids[:5], "remove", annotator="alice")
    at = start()
    at.button(key="verify").click().run()
    wait_for_job(project, "verify")
    at.run()
    assert not at.exception and not at.error
    assert {"Accuracy before", "Accuracy after"} <= {m.label for m in at.metric}
    assert "5 decisions in force then" in texts(at.caption)


def test_the_plain_modules_do_not_import_streamlit():
    code = (
        "import sys, ogaudit.server.jobs, ogaudit.project, ogaudit.review.actions, ogaudit.ui.config, ogaudit.ui.figure, "
        "ogaudit.data.uploads, ogaudit.ui.forms, ogaudit.ui.selection; assert 'streamlit' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ---------------------------------------------------------------- plain functions


def _zip(entries: dict[str, bytes], symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def test_unpack_zip_finds_the_image_folder_inside_one_top_folder(tmp_path):
    data = _zip({"pets/cat/a.png": b"1", "pets/dog/b.png": b"2", "__MACOSX/pets/._a.png": b"x"})
    root = unpack_zip(data, tmp_path / "out")
    assert root == tmp_path / "out" / "pets" and sorted(p.name for p in root.iterdir()) == ["cat", "dog"]
    assert not (tmp_path / "out" / "__MACOSX").exists()


@pytest.mark.parametrize(
    ("entries", "symlink", "message"),
    [
        ({"../evil.png": b"1"}, None, "contains '..'"),
        ({"a/../../evil.png": b"1"}, None, "contains '..'"),
        ({"/etc/evil.png": b"1"}, None, "absolute path"),
        ({"C:/evil.png": b"1"}, None, "absolute path"),
        ({"cat\\..\\evil.png": b"1"}, None, "backslash"),
        ({"cat/a.png": b"1"}, "cat/link.png", "symbolic link"),
        ({}, None, "no files"),
    ],
)
def test_unpack_zip_refuses_unsafe_archives(tmp_path, entries, symlink, message):
    with pytest.raises(DataError, match=message):
        unpack_zip(_zip(entries, symlink), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unpack_zip_caps_size_and_count(tmp_path):
    data = _zip({f"c/{i}.png": b"0" * 100 for i in range(5)})
    with pytest.raises(DataError, match="5 files; the limit is 4"):
        unpack_zip(data, tmp_path / "a", max_files=4)
    with pytest.raises(DataError, match="unpacks to"):
        unpack_zip(data, tmp_path / "b", max_unpacked_bytes=499)
    with pytest.raises(DataError, match="the limit is"):
        unpack_zip(data, tmp_path / "c", max_upload_bytes=10)
    with pytest.raises(DataError, match="not a zip"):
        unpack_zip(b"not a zip", tmp_path / "d")


def test_unpack_zip_counts_the_bytes_it_writes_not_the_header(tmp_path):
    data = bytearray(_zip({"c/a.png": b"0" * 1000}))
    central = data.rindex(b"PK\x01\x02")  # the central directory's size fields say 10 bytes, not 1000
    data[central + 24 : central + 28] = (10).to_bytes(4, "little")
    with pytest.raises((DataError, zipfile.BadZipFile)):
        unpack_zip(bytes(data), tmp_path / "out", max_unpacked_bytes=500)
    assert not (tmp_path / "out").exists()


def test_zip_folder_round_trips(tmp_path):
    (tmp_path / "src" / "cat").mkdir(parents=True)
    (tmp_path / "src" / "cat" / "a.png").write_bytes(b"abc")
    with zipfile.ZipFile(io.BytesIO(zip_folder(tmp_path / "src"))) as archive:
        assert archive.namelist() == ["cat/a.png"] and archive.read("cat/a.png") == b"abc"


@pytest.mark.parametrize("customdata", [["s1", "3", "0.5", ""], {"0": "s1"}, "s1", ("s1",)])
def test_selected_ids_reads_every_customdata_shape(customdata):
    event = {"selection": {"points": [{"customdata": customdata}, {"customdata": customdata}, {"x": 1}]}}
    assert selected_ids(event) == ["s1"]
    assert selected_ids(event, known={"s2"}) == []
    assert selected_ids(None) == [] and selected_ids({"selection": {}}) == []


def _table(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(n)],
            "x": np.arange(n, dtype=float),
            "y": np.arange(n, dtype=float),
            "given_label": ["a", "b"] * (n // 2),
            "predicted_label": ["a", "a"] * (n // 2),
            "suggested_label": ["a", "b"] * (n // 2),
            "score": np.linspace(0, 1, n),
            "rank": np.arange(n, 0, -1),
            "flagged": [False] * (n - 1) + [True],
        }
    )


def test_hover_data_names_other_labels_only_where_they_differ():
    data = hover_data(_table())
    assert data.shape == (6, 4) and list(data[0]) == ["s0", "a", "0", ""]
    assert data[1, 3] == "<br>predicted a, suggested b" and data[5, 2] == "1"


@pytest.mark.parametrize("colour", COLOUR_MODES)
def test_markup_in_ids_and_labels_is_shown_as_written_and_selects_the_right_sample(colour):
    """Plotly renders <a href>, <b>, <br> in hover labels and legends: a file's ids and class names must not."""
    from ogaudit.ui.selection import selected_ids

    table = _table()
    hostile = ['<a href="javascript:alert(1)">x</a>', "&amp;", "a&b", "<b>", "&copy;", "s5"]
    table["sample_id"] = hostile
    table["given_label"] = ['<img src=x onerror="alert(1)">', "b"] * 3
    figure = map_figure(table, colour, None)
    for trace in figure.data:
        assert "<" not in (trace.name or "") and "<img" not in str(trace.customdata)
        assert "<a " not in str(trace.customdata) and "<b>" not in str(trace.customdata)
    points = [
        {"customdata": list(row)} for trace in figure.data if trace.customdata is not None for row in trace.customdata
    ]
    assert sorted(selected_ids({"selection": {"points": points}})) == sorted(hostile)


@pytest.mark.parametrize("colour", COLOUR_MODES)
def test_map_figure_is_webgl_box_select_with_ids_in_customdata(colour):
    decisions = pd.DataFrame({"sample_id": ["s1"], "action": ["remove"]})
    figure = map_figure(_table(), colour, decisions)
    assert all(isinstance(trace, go.Scattergl) for trace in figure.data)
    assert figure.layout.dragmode == "select" and figure.layout.uirevision
    ids = [row[0] for trace in figure.data for row in trace.customdata]
    assert set(ids) == {f"s{i}" for i in range(6)}
    assert all(trace.text is None and trace.hovertext is None for trace in figure.data)
    assert any(set(row[0] for row in trace.customdata) == {"s5"} for trace in figure.data)  # flagged stand out
    if colour == "decision":
        assert {trace.name for trace in figure.data} >= {"undecided", "remove"}


def _big_table(n: int = DENSITY_ABOVE + 1000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    labels = np.array(["t-shirt", "bag", "coat"])[rng.integers(0, 3, n)]
    score = rng.random(n)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(-score, kind="stable")] = np.arange(1, n + 1)
    return pd.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(n)],
            "x": rng.normal(size=n),
            "y": rng.normal(size=n),
            "given_label": labels,
            "predicted_label": labels,
            "suggested_label": labels,
            "score": score,
            "rank": rank,
            "flagged": rank <= n // 20,
        }
    )


@pytest.mark.parametrize("colour", COLOUR_MODES)
def test_a_big_map_is_a_density_image_with_the_most_suspicious_as_points(colour):
    from ogaudit.ui.figure import density_figure

    table = _big_table()
    top = table.sort_values("rank")["sample_id"].tolist()
    decisions = pd.DataFrame({"sample_id": [top[0], top[5000]], "action": ["remove", "keep"]})
    assert len(map_figure(table, colour, decisions).layout.images) == 1  # a big table is drawn as density
    limit = 300
    figure = density_figure(table, colour, decisions, limit=limit)
    assert len(figure.layout.images) == 1 and figure.layout.images[0].source.startswith("data:image/png;base64,")
    assert figure.layout.dragmode == "select" and figure.layout.xaxis.range is not None
    marked = [row[0] for trace in figure.data if trace.customdata is not None for row in trace.customdata]
    assert set(top[:limit]) <= set(marked) and len(set(marked)) <= limit + 2
    assert top[limit] not in marked  # flagged, but past the marker limit: drawn in the image only
    assert len(figure.to_json()) < 1_000_000
    names = {trace.name for trace in figure.data}
    if colour == "given label":
        assert {"t-shirt", "bag", "coat"} <= names  # legend rows for colours only the image shows
    if colour == "decision":
        assert {"remove", "keep"} <= names  # decided samples are points, flagged or not


def test_a_box_on_a_density_map_selects_every_sample_inside_it():
    from ogaudit.ui.mapview import event_ids

    table = _big_table()
    run = Run(Path("big"), {}, table)
    box = {"xref": "x", "yref": "y", "x": [-0.2, 0.3], "y": [0.1, 0.5]}
    clicked = {"customdata": ["s3", "?", "0.1", ""]}
    ids = event_ids(run, {"selection": {"points": [clicked], "box": [box], "lasso": []}})
    inside = table[table.x.between(-0.2, 0.3) & table.y.between(0.1, 0.5)]["sample_id"]
    assert len(inside) > 100 and ids[0] == "s3" and set(ids) == set(inside) | {"s3"} and len(ids) == len(set(ids))
    small = Run(Path("small"), {}, _table())  # a small map: only the points plotly reports
    assert event_ids(small, {"selection": {"points": [{"customdata": ["s1"]}], "box": [box]}}) == ["s1"]


def test_the_grid_ranks_the_selection_most_suspicious_first():
    from ogaudit.ui.mapview import ranked_rows

    run = Run(Path("small"), {}, _table())  # rank 6, 5, ..., 1 for s0..s5
    assert ranked_rows(run, ["s1", "s4", "nope", "s2"]).tolist() == [4, 2, 1]


def test_map_points_limit_reads_the_environment():
    from ogaudit.ui.config import map_points_limit

    assert map_points_limit({}) == DENSITY_ABOVE and map_points_limit({"OGAUDIT_MAP_POINTS": " 150 "}) == 150
    with pytest.raises(SettingsError, match="OGAUDIT_MAP_POINTS='lots'"):
        map_points_limit({"OGAUDIT_MAP_POINTS": "lots"})


def test_decide_confirms_each_sample_with_its_own_suggestion(demo_audit, tmp_path):
    project = Path(shutil.copytree(demo_audit, tmp_path / "p"))
    run = Project(project).open_run()
    ledger = Project(run.path).open_ledger()
    ids = run.flagged_ids[:3]
    decide(ledger, run, ids, "confirm", annotator="ann")
    saved = ledger.state().set_index("sample_id")
    assert saved.loc[ids, "final_label"].tolist() == run.by_id.loc[ids, "suggested_label"].tolist()
    with pytest.raises(LedgerError, match="needs the right label"):
        decide(ledger, run, ids, "relabel", annotator="ann")
    with pytest.raises(LedgerError, match="Unknown sample id"):
        decide(ledger, run, ["nope"], "keep", annotator="ann")


def test_prepare_audit_validates_and_leaves_no_folder_behind(tmp_path):
    with pytest.raises(SettingsError, match="noise_rate"):
        prepare_audit(SetupChoices(noise_rate=1.5, name="x"), tmp_path)
    with pytest.raises(ModelError, match="Upload a checkpoint"):
        prepare_audit(SetupChoices(model="checkpoint"), tmp_path)
    with pytest.raises(ModelError, match="should end in"):
        prepare_audit(SetupChoices(model="checkpoint", checkpoint=b"x", checkpoint_name="m.txt"), tmp_path)
    with pytest.raises(DataError, match="contains '..'"):
        prepare_audit(SetupChoices(source="Upload zip", upload=_zip({"../a.png": b"1"})), tmp_path)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SettingsError, match="noise_kind"):
        prepare_audit(SetupChoices(noise_rate=0.1, noise_kind="human", name="x"), tmp_path)
    assert list(tmp_path.iterdir()) == []
    _, _, settings = prepare_audit(SetupChoices(noise_rate=0.1, noise_kind="instance", name="x"), tmp_path)
    assert settings.noise_kind == "instance"
    project, data, settings = prepare_audit(
        SetupChoices(
            source="Upload zip",
            upload=_zip({"d/cat/a.png": b"1"}),
            model="checkpoint",
            checkpoint=b"weights",
            checkpoint_name="net.pth",
            arch="resnet18",
            epochs=3,
        ),
        tmp_path,
    )
    assert data == str(project / "upload" / "d") and settings.model == str(project / "checkpoint.pth")
    assert project.name == "upload"  # a zip without a file name
    named, _, _ = prepare_audit(
        SetupChoices(source="Upload zip", upload=_zip({"d/cat/a.png": b"1"}), upload_name="Holiday Photos.zip"),
        tmp_path,
    )
    assert named.name == "Holiday-Photos"  # the zip's own name, not "upload"
    assert settings.arch == "resnet18" and settings.epochs == 3 and settings.limit is None


def test_prepare_audit_keeps_an_uploaded_text_table_and_its_column_choices(tmp_path):
    from ogaudit.data.text import load_text_dataset

    table = "Quote,Feeling,Ticket\n" + "".join(
        f'"text number {i}, which is fine",{"pos" if i % 2 else "neg"},T-{i:03d}\n' for i in range(8)
    )
    with pytest.raises(DataError, match="Upload a text table"):
        prepare_audit(SetupChoices(source="Upload text table"), tmp_path)
    with pytest.raises(DataError, match="is not a text table"):
        prepare_audit(SetupChoices(source="Upload text table", text_upload=b"x", text_upload_name="a.xlsx"), tmp_path)
    assert list(tmp_path.iterdir()) == []  # refused: no project folder left behind
    project, data, settings = prepare_audit(
        SetupChoices(
            source="Upload text table",
            text_upload=table.encode(),
            text_upload_name="../../my reviews.csv",  # a browser's name: only its cleaned stem is used
            text_column=" Quote ",
            label_column="Feeling",
            id_column="Ticket",
        ),
        tmp_path,
    )
    assert project.name == "my-reviews" and Path(data) == project / "upload" / "my_reviews.csv"
    assert Path(data).read_text() == table  # the user's bytes, unchanged
    assert settings.text_column == "Quote" and settings.label_column == "Feeling"
    dataset = load_text_dataset(data, **settings.text_options)
    assert len(dataset.texts) == 8 and sorted(dataset.class_names) == ["neg", "pos"]
    assert settings.id_column == "Ticket" and dataset.sample_ids[0] == "T-000"  # the user's ids on cards and exports


def test_a_project_is_named_after_its_data_without_the_file_suffix(tmp_path):
    data = tmp_path / "data"
    (data / "photos.v2").mkdir(parents=True)
    for name in ("reviews.csv", "train.parquet", "tweets.csv.gz", "v1.2.npz"):
        (data / name).write_text("x")
    root = tmp_path / "projects"
    named = {}
    for name in ("reviews.csv", "train.parquet", "tweets.csv.gz", "v1.2.npz", "photos.v2"):
        project, _, _ = prepare_audit(SetupChoices(source="Path", path=str(data / name)), root, data_roots=[data])
        named[name] = project.name
    assert named == {
        "reviews.csv": "reviews",
        "train.parquet": "train",
        "tweets.csv.gz": "tweets",
        "v1.2.npz": "v1.2",
        "photos.v2": "photos.v2",
    }
    uploaded, _, _ = prepare_audit(
        SetupChoices(source="Upload text table", text_upload=b"text,label\na,x\nb,y\n", text_upload_name="reviews.csv"),
        root,
    )
    assert uploaded.name == "reviews-2"  # the same name as the first: numbered, still without ".csv"


def test_demo_config_reads_the_environment():
    assert DemoConfig.from_env({}) == DemoConfig("mnist5k", 0.1, 10, "umap", None)
    assert DemoConfig.from_env({"OGAUDIT_DEMO_EPOCHS": "auto"}).epochs is None
    assert DEMO.settings().epochs == 1 and DEMO.settings().map_method == "pca" and DEMO.limit == 300
    with pytest.raises(SettingsError, match="OGAUDIT_DEMO"):
        DemoConfig.from_env({"OGAUDIT_DEMO_NOISE": "lots"})
    assert not DemoConfig.from_env({"OGAUDIT_DEMO": "0"}).enabled and DEMO.enabled


def test_with_the_demo_off_an_empty_workspace_waits_for_new_audit(home, monkeypatch):
    monkeypatch.setenv("OGAUDIT_DEMO", "off")
    at = start()
    assert not at.exception
    assert "open **New audit**" in texts(at.info)
    assert not home.exists() or not any(home.iterdir())  # no project, no failed demo left behind


def test_a_text_sample_both_selected_on_the_map_and_in_the_review_queue_renders_in_each(
    tmp_path, monkeypatch, cache_dir
):
    """One card per place: the map's selection grid and the review queue each draw the flagged sample's text."""
    pytest.importorskip("sentence_transformers")
    env = {"OGAUDIT_DEMO": "rotten-tomatoes", "OGAUDIT_DEMO_LIMIT": "60", "OGAUDIT_DEMO_MAP": "pca"}
    env |= {"OGAUDIT_DEMO_NOISE": "0.15", "OGAUDIT_DEMO_EPOCHS": "4"}
    for name, value in {**env, "OGAUDIT_HOME": str(tmp_path / "home"), "OGAUDIT_CACHE": str(cache_dir)}.items():
        monkeypatch.setenv(name, value)
    st.cache_resource.clear()
    demo = DemoConfig.from_env(env)
    folder = tmp_path / "home" / demo.project_name
    audit(demo.data, demo.settings(), out_dir=folder, cache_dir=cache_dir)
    Project(folder).write_request(demo.data, demo.settings())
    flagged = Project(folder).open_run().flagged_ids[0]
    at = start(project=demo.project_name)
    at.session_state[f"map-{demo.project_name}-flagged"] = {
        "selection": {
            "points": [{"customdata": [flagged, "?", "0.1", ""]}],
            "point_indices": [0],
            "box": [],
            "lasso": [],
        }
    }
    at.run()
    assert not at.exception, at.exception
    shown = [str(e.value) for e in at.get("text")]
    from ogaudit.review.texts import display_texts

    (text,) = display_texts(Project(folder).load_dataset(), [Project(folder).open_run().position[flagged]])
    assert shown.count(text) >= 2  # the selection's card and the queue's card


def test_a_long_text_scrolls_inside_its_card_and_a_short_one_does_not(tmp_path):
    from streamlit.testing.v1 import AppTest

    def page(path: str) -> None:
        from ogaudit.data.text import load_text_dataset
        from ogaudit.ui.textcards import text_card

        data = load_text_dataset(path)
        text_card(data, 0)
        text_card(data, 1)

    long = "The plane was late. " * 60  # 1,200 characters
    table = tmp_path / "t.csv"
    pd.DataFrame({"text": ["short and sweet", long.strip()], "label": ["pos", "neg"]}).to_csv(table, index=False)
    at = AppTest.from_function(page, args=(str(table),)).run()
    assert not at.exception, at.exception
    assert [str(e.value) for e in at.get("text")] == ["short and sweet", long.strip()]  # both whole
    assert texts(at.caption) == "1,199 characters: scroll for the rest"  # only the long one is boxed


def test_a_failed_audit_says_what_failed_and_its_empty_project_can_be_deleted(home, tmp_path, cache_dir, monkeypatch):
    from ogaudit.server.jobs import JobRegistry, submit_audit
    from ogaudit.settings import AuditSettings

    monkeypatch.setenv("OGAUDIT_DEMO", "off")  # an emptied workspace starts no demo
    settings = AuditSettings(epochs=1, map_method="pca")
    job = submit_audit(JobRegistry(), home / "broken", str(tmp_path / "missing.npz"), settings, by="alice")
    assert job.wait(60).status == "failed"
    (home / "ghost").mkdir()  # a folder with nothing in it is not a project
    at = start(project="broken")
    failure = texts(at.error)
    assert f"The audit of `…/{tmp_path.name}/missing.npz` failed during the **load** stage" in failure
    assert str(tmp_path) not in failure.replace("\\", "")  # no server path, even to an admin
    assert "Nothing was made for review" in texts(at.caption)
    assert at.sidebar.selectbox(key="project-picker").options == ["broken · failed"]
    at.button(key="delete-broken").click().run()
    assert (home / "broken").is_dir()  # one click asks first
    at.button(key="delete-yes-broken").click().run()
    assert not at.exception and "Deleted the project broken." in texts(at.success)
    assert not (home / "broken").exists() and (home / "ghost").is_dir() and "project" not in at.query_params
    assert "open **New audit**" in texts(at.info)  # nothing left to show: no project listed
