"""``ogaudit scan`` on prompt/response pairs with a causal LM folder: a project folder and a readable summary."""

from __future__ import annotations

import json

import pytest

from ogaudit.cli import main


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_scan_pairs_with_a_model_folder_and_a_reference(
    tmp_path, tiny_causal_lm, small_instructions, cache_dir, capsys
):
    code = main(
        [
            "scan",
            str(small_instructions),
            "--model",
            str(tiny_causal_lm),
            "--reference",
            str(small_instructions),
            "--detector",
            "grad-cosine",
            "--epochs",
            "1",
            "--projection-dim",
            "128",
            "--map",
            "pca",
            "--out",
            str(tmp_path / "project"),
            "--cache-dir",
            str(cache_dir),
            "--quiet",
            "--json",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["samples"] == 60 and summary["detector"] == "grad-cosine" and summary["flagged"] == 3
    assert "class detection" in captured.err and (tmp_path / "project" / "run.json").is_file()
