"""The README's "Python API" example runs as written."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pandas as pd

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    """The first ``python`` code block of the README's "Python API" section."""
    section = README.read_text(encoding="utf-8").split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_python_api_example_runs_and_writes_only_in_its_temporary_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the example's mkdtemp creates its folder
    monkeypatch.chdir(tmp_path)
    names: dict = {"__name__": "__main__"}
    exec(compile(readme_example(), str(README), "exec"), names)
    work = names["work"]
    written = [p.name for p in tmp_path.iterdir() if not p.name.startswith("torchinductor")]  # torch's own cache
    assert work.parent == tmp_path and written == [work.name]
    assert {p.name for p in work.iterdir()} == {"project", "cache", "decisions.csv", "cleaned"}
    decisions = pd.read_csv(work / "decisions.csv", dtype=str)
    assert decisions["action"].tolist() == ["confirm"]
    assert names["split"]["counts"]["relabelled"] == 1
    assert names["planted"].mean() > 0.6  # the flags are mostly the planted wrong labels
    assert "flagged samples carry a planted wrong label" in capsys.readouterr().out
