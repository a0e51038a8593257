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


def own_model_example() -> str:
    """The first ``python`` code block of the README's "Your own model" section."""
    section = README.read_text(encoding="utf-8").split("## Your own model", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_own_model_example_audits_an_in_memory_model_and_exports_its_flags(tmp_path, monkeypatch, capsys):
    import datasets

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    names: dict = {"__name__": "__main__"}
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the example's plain-torch training: two threads contend badly on a shared machine
    try:
        exec(compile(own_model_example(), str(README), "exec"), names)
    finally:
        torch.set_num_threads(threads)
    work, result = names["work"], names["result"]
    assert work.parent == tmp_path and {p.name for p in work.iterdir()} == {"cache", "flags-hf"}
    assert result.record["model"]["kind"] == "user:Sequential" and result.record["model"]["history"] == []
    assert names["planted"].mean() > 0.6  # the user's model finds the planted wrong labels
    exported = datasets.load_from_disk(str(work / "flags-hf"))
    assert exported.num_rows == len(names["labels"]) and sum(exported["flagged"]) == len(names["flags"])
    assert "flagged samples carry a planted wrong label" in capsys.readouterr().out
