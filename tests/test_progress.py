"""The progress an audit shows without a callback: tqdm.auto bars in a notebook or a terminal, nothing in a log,
nothing with progress=False; notices stay warnings."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from sklearn.datasets import load_digits

import ogaudit
from ogaudit.progress import AutoBars


def test_auto_bars_show_each_stage_and_pass_notices_on(capsys):
    notices = []
    bars = AutoBars(notices.append, shown=True)
    for stage, fraction, message in [("load", 1.0, ""), ("train", 0.4, "epoch 4/10"), ("train", 1.0, "done")]:
        bars(stage, fraction, message)
    bars("notice", 0.0, "a cache entry was recomputed")
    bars.close()
    err = capsys.readouterr().err
    assert "load" in err and "train" in err and "100%, done" in err
    assert notices == ["a cache entry was recomputed"]
    hidden = AutoBars(notices.append, shown=False)
    hidden("train", 0.5, "epoch 1/2")
    hidden.close()
    assert capsys.readouterr().err == ""


@pytest.fixture(scope="module")
def small():
    digits = load_digits()
    return digits.data[:300].astype(np.float32), digits.target[:300]


def test_an_audit_without_a_callback_shows_bars_in_a_notebook_and_is_quiet_when_asked(
    small, cache_dir, capsys, monkeypatch
):
    settings = ogaudit.AuditSettings(epochs=1, map_method="pca")
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))  # as inside Jupyter
    ogaudit.audit(small, settings, cache_dir=cache_dir)
    err = capsys.readouterr().err
    assert "train" in err and "gradients" in err and "100%" in err  # tqdm.auto: text here, a widget in Jupyter
    ogaudit.audit(small, settings, cache_dir=cache_dir, progress=False)
    assert "100%" not in capsys.readouterr().err
    monkeypatch.delitem(sys.modules, "ipykernel")
    ogaudit.audit(small, settings, cache_dir=cache_dir)  # stderr is no terminal here: a log gets no bars
    assert "100%" not in capsys.readouterr().err
    with pytest.raises(TypeError, match="False \\(quiet\\)"):
        ogaudit.audit(small, settings, cache_dir=cache_dir, progress="yes")
