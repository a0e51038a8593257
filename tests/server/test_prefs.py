"""Per-reviewer preferences on the server: keys saved per name, never outside the home, damage read as defaults."""

from __future__ import annotations

import json

import pytest

from ogaudit.errors import SettingsError
from ogaudit.project import list_projects
from ogaudit.review.keys import DEFAULT_KEYS
from ogaudit.server.prefs import UserPrefs


def test_keys_are_saved_per_name(tmp_path):
    ana = UserPrefs(tmp_path, "ana")
    assert ana.keys() == DEFAULT_KEYS
    ana.set_keys({"keep": "j", "remove": "Shift+X"})
    assert UserPrefs(tmp_path, "ana").keys()["keep"] == "J"
    assert UserPrefs(tmp_path, "ben").keys() == DEFAULT_KEYS
    saved = json.loads(ana.path.read_text())
    assert saved["keys"] == {"keep": "J", "remove": "Shift+X"}  # only what differs from the defaults


def test_a_refused_key_saves_nothing(tmp_path):
    ana = UserPrefs(tmp_path, "ana")
    with pytest.raises(SettingsError):
        ana.set_keys({"keep": "1"})
    assert not ana.path.exists()


@pytest.mark.parametrize("name", ["../../etc/passwd", "/abs", "a/b", "x" * 500, "ünï"])
def test_any_name_stays_inside_the_prefs_folder_and_out_of_the_project_list(tmp_path, name):
    prefs = UserPrefs(tmp_path, name)
    prefs.set_keys({"keep": "j"})
    assert prefs.path.parent == tmp_path / ".prefs" and prefs.keys()["keep"] == "J"
    assert list_projects(tmp_path) == []


def test_a_damaged_or_foreign_file_reads_as_the_defaults(tmp_path):
    ana = UserPrefs(tmp_path, "ana")
    ana.set_keys({"keep": "j"})
    ana.path.write_text("{not json")
    assert ana.keys() == DEFAULT_KEYS
    ana.path.write_text(json.dumps({"format": 1, "name": "ben", "keys": {"keep": "Q"}}))
    assert ana.keys() == DEFAULT_KEYS
    ana.path.write_text(json.dumps({"format": 1, "name": "ana", "keys": {"keep": "A"}}))  # clashes with accept
    assert ana.keys() == DEFAULT_KEYS
