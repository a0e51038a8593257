"""The setup form takes the user's predictions file instead of a model."""

from __future__ import annotations

import io

import numpy as np
import pytest

import ogaudit
from ogaudit.errors import DataError, ModelError
from ogaudit.ui.forms import SetupChoices, prepare_audit


def _predictions(n: int) -> bytes:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(n, 10))
    buffer = io.BytesIO()
    np.savez(buffer, features=rng.normal(size=(n, 16)), logits=logits)
    return buffer.getvalue()


def test_an_uploaded_predictions_file_replaces_the_model(tmp_path, digits, cache_dir):
    choices = SetupChoices(builtin="digits", predictions=_predictions(len(digits)), predictions_name="p.npz")
    project, data, settings = prepare_audit(choices, tmp_path / "home")
    assert settings.predictions == str(project / "predictions.npz") and settings.model == "auto"
    result = ogaudit.audit(data, settings.__class__(**{**settings.to_dict(), "map_method": "pca"}), cache_dir=cache_dir)
    assert result.record["model"]["kind"] == "predictions" and len(result.scores) == len(digits)


def test_predictions_with_a_model_or_of_another_format_are_refused_and_leave_no_folder(tmp_path):
    with pytest.raises(ModelError, match="Predictions replace the model"):
        prepare_audit(SetupChoices(model="cnn", predictions=b"x", predictions_name="p.npz"), tmp_path)
    with pytest.raises(DataError, match="should be one of .npz, .parquet"):
        prepare_audit(SetupChoices(predictions=b"x", predictions_name="p.pkl"), tmp_path)
    assert list(tmp_path.iterdir()) == []
