"""The launcher (``python -m ogaudit.ui.serve app.py``) listens on 127.0.0.1 unless an address is given, as
``scripts/app.sh`` does: without the flag, Streamlit listens on every interface and the app asked a new user for
users to sign in with."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("streamlit")

from ogaudit.ui import serve  # noqa: E402


def test_no_address_means_loopback_and_a_given_one_is_kept():
    assert serve.with_address(["app.py"]) == ["app.py", "--server.address", "127.0.0.1"]
    for given in (["app.py", "--server.address", "0.0.0.0"], ["app.py", "--server.address=0.0.0.0"]):
        assert serve.with_address(given) == given
    assert serve.with_address(["app.py", "--server.port", "8502"], configured=True) == [
        "app.py",
        "--server.port",
        "8502",
    ]


@pytest.fixture
def launched(monkeypatch):
    """What ``serve.main`` hands Streamlit's command line, without starting a server."""
    from streamlit import config
    from streamlit.web import cli

    from ogaudit.ui import guard

    seen: list[list[str]] = []
    monkeypatch.setattr(guard, "install", lambda: None)
    monkeypatch.setattr(cli, "main", lambda: seen.append(list(sys.argv)))
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    yield seen
    monkeypatch.undo()
    config.get_config_options(force_reparse=True)  # forget the environment this test set


def test_the_launcher_behaves_the_same_with_or_without_the_flag(launched, monkeypatch):
    monkeypatch.delenv("STREAMLIT_SERVER_ADDRESS", raising=False)
    serve.main(["app.py", "--server.headless", "true"])
    serve.main(["app.py", "--server.headless", "true", "--server.address", "127.0.0.1"])
    assert launched[0][:2] == ["streamlit", "run"]
    assert launched[0][-2:] == launched[1][-2:] == ["--server.address", "127.0.0.1"]
    monkeypatch.setenv("STREAMLIT_SERVER_ADDRESS", "0.0.0.0")  # a deliberate team server keeps its address
    serve.main(["app.py"])
    assert launched[2][:3] == ["streamlit", "run", "app.py"] and "--server.address" not in launched[2]


def test_an_address_in_a_streamlit_config_file_is_kept(launched, monkeypatch, tmp_path):
    monkeypatch.delenv("STREAMLIT_SERVER_ADDRESS", raising=False)
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "config.toml").write_text('[server]\naddress = "0.0.0.0"\n')
    monkeypatch.chdir(tmp_path)
    serve.main(["app.py"])
    assert launched[0][:3] == ["streamlit", "run", "app.py"] and "--server.address" not in launched[0]
