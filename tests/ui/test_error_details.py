"""What a browser sees of an uncaught exception: Streamlit's generic notice, never a message or a traceback that
names server paths (the launcher sets ``client.showErrorDetails = none``)."""

from __future__ import annotations

import sys

import pytest
from streamlit import config
from streamlit.testing.v1 import AppTest

from ogaudit.ui import serve

SCRIPT = "import streamlit as st\nraise ValueError('cannot read /srv/ogaudit-home/users.json')"


@pytest.mark.parametrize("given", [[], ["--client.showErrorDetails", "full"]])
def test_the_launcher_hides_exception_details_unless_told_otherwise(monkeypatch, given):
    seen = {}
    monkeypatch.setattr("ogaudit.ui.guard.install", lambda: None)
    monkeypatch.setattr("streamlit.web.cli.main", lambda: seen.setdefault("argv", list(sys.argv)))
    serve.main(["app.py", "--server.port", "8599", *given])
    argv = seen["argv"]
    assert argv[:3] == ["streamlit", "run", "app.py"] and "--server.port" in argv
    at = argv.index(serve.ERROR_DETAILS)
    assert argv[at + 1] == ("full" if given else "none") and argv.count(serve.ERROR_DETAILS) == 1


def test_with_the_launchers_setting_an_uncaught_exception_shows_no_path_or_traceback():
    before = config.get_option("client.showErrorDetails")
    try:
        shown = AppTest.from_string(SCRIPT).run().exception[0]  # the control: Streamlit's default shows it all
        assert "/srv/ogaudit-home" in shown.message and shown.stack_trace
        config.set_option("client.showErrorDetails", "none")
        hidden = AppTest.from_string(SCRIPT).run().exception[0]
    finally:
        config.set_option("client.showErrorDetails", before)
    assert "/srv/ogaudit-home" not in hidden.message and "redacted" in hidden.message
    assert not hidden.stack_trace
