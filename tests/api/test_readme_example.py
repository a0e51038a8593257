"""The README's "Python API" example runs as written (docs/examples/python_api.py; the README shows its text)."""

from __future__ import annotations

import runpy
import tempfile
from pathlib import Path

import pandas as pd

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "python_api.py"


def test_the_python_api_example_runs_and_writes_only_in_its_temporary_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the example's mkdtemp creates its folder
    monkeypatch.chdir(tmp_path)
    names = runpy.run_path(str(EXAMPLE), run_name="__main__")
    work = names["work"]
    assert work.parent == tmp_path and [p.name for p in tmp_path.iterdir()] == [work.name]
    assert {p.name for p in work.iterdir()} == {"project", "cache", "decisions.csv", "cleaned"}
    decisions = pd.read_csv(work / "decisions.csv", dtype=str)
    assert decisions["action"].tolist() == ["confirm"]
    assert names["split"]["counts"]["relabelled"] == 1
    assert names["planted"].mean() > 0.6  # the flags are mostly the planted wrong labels
    assert "flagged samples carry a planted wrong label" in capsys.readouterr().out
