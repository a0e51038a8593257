"""The review cards' probability (interval, never "100%"), wrong vs ambiguous and flag stability, the filters and
the sort that calibrates P(wrong) (issue 24), on the demo project of the app tests."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import test_app
from test_app import DEMO, start, texts

from ogaudit.pipeline.run import audit
from ogaudit.project import Project
from ogaudit.review.calibration import STABLE_AT, reviewed_estimate, stability_text
from ogaudit.review.queue import CALIBRATE

demo_audit, home, project = test_app.demo_audit, test_app.home, test_app.project  # the app tests' fixtures


def test_cards_show_the_estimate_with_its_interval_and_the_flag_stability(project):
    at = start()
    assert not at.exception and not at.error
    shown = texts(at.markdown)
    assert shown.count("likely that the given label is wrong") >= 1 and "100%" not in shown
    _check_stability_lines(at, Project(project).open_run().table, "resamples of its gradient neighbours")


def _check_stability_lines(at, table: pd.DataFrame, counted: str) -> None:
    """Every card's stability line is the one its row in the table gives, and names what it ``counted``."""
    flagged = table[table["flagged"]]
    expected = {
        stability_text(share, basis, of)[0]
        for share, basis, of in flagged[["flag_stability", "flag_stability_basis", "flag_stability_of"]].itertuples(
            index=False
        )
    }
    shown = [line for line in texts(at.caption).splitlines() if " flag: " in line]
    assert shown and set(shown) <= expected, (shown, sorted(expected)[:3])
    assert all(counted in line for line in shown)


def test_a_model_trained_here_shows_the_flags_stability_across_its_checkpoints(home, cache_dir):
    """The demo trained for 6 epochs: each card counts the last 3 checkpoints of that training."""
    folder = home / DEMO.project_name
    settings = replace(DEMO.settings(), epochs=6)
    audit(DEMO.data, settings, out_dir=folder, cache_dir=cache_dir)
    Project(folder).write_request(DEMO.data, settings)
    at = start()
    assert not at.exception and not at.error
    table = Project(folder).open_run().table
    _check_stability_lines(at, table, "of the last 3 checkpoints of its training")
    share = table.loc[table["flagged"], "flag_stability"]
    for choice, count in (("stable", int((share >= STABLE_AT).sum())), ("unstable", int((share < STABLE_AT).sum()))):
        at.selectbox(key="queue-stability").set_value(choice).run()
        assert not at.exception and not at.error
        shown = texts(at.caption) + texts(at.success)
        assert (f"{count:,} in the queue" in shown) if count else ("No sample fits the filters" in shown), choice


def test_the_queue_filters_wrong_or_ambiguous_and_sorts_to_calibrate(project):
    run = Project(project).open_run()
    at = start()
    at.selectbox(key="queue-verdict").set_value("ambiguous").run()
    assert not at.exception and not at.error
    ambiguous = int((run.table["flagged"] & run.table["ambiguous"]).sum())
    shown = texts(at.caption) + texts(at.success)
    assert (f"{ambiguous:,} in the queue" in shown) if ambiguous else ("No sample fits the filters" in shown)
    at.selectbox(key="queue-verdict").set_value("").run()
    at.selectbox(key="queue-sort").set_value(CALIBRATE).run()
    assert not at.exception and not at.error
    assert f"{len(run.table):,} in the queue" in texts(at.caption)  # the whole range, not only the flagged


def test_a_card_not_yet_calibrated_says_between_what_and_how_many_decisions_would_pin_it_down(project):
    run = Project(project).open_run()
    estimate = reviewed_estimate(run.table, None)
    flagged = [run.position[i] for i in run.flagged_ids]
    at = start()
    assert not at.exception and not at.error
    lines = [line.replace("\\", "") for line in texts(at.markdown).splitlines() if "given label is wrong" in line]
    unknown = [line for line in lines if "not yet calibrated" in line]
    assert lines and (unknown or estimate.calibrated[flagged].all())
    for line in unknown:  # the bracket, and the decisions in the order that calibrates
        assert "not yet calibrated: between " in line and "100%" not in line
        assert f"decide ~{estimate.to_calibrate} samples in the '{CALIBRATE}' order to pin it down" in line


def test_the_sort_and_duplicates_boxes_get_a_quarter_of_the_row(project):
    """At a fifth of the filter row, the sort box cut its choice to "to calibrate P(wro" at 1400 px (a new user's
    trial); each of the four boxes of its row now has a quarter."""
    at = start()
    assert not at.exception and not at.error
    for key in ("queue-sort", "queue-duplicates", "queue-verdict", "queue-stability"):
        holding = [column for column in at.columns if any(box.key == key for box in column.selectbox)]
        assert holding and holding[-1].weight >= 0.25 - 1e-9, (key, [c.weight for c in holding])
