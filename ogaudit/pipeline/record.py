"""The run record (``run.json``'s content): settings, data and model fingerprints, versions, timings, notices and,
with planted noise, the detection metrics."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ogaudit import __version__
from ogaudit.data.dataset import Dataset
from ogaudit.detectors.metrics import detection_metrics
from ogaudit.storage import fingerprint


def run_record(
    data, dataset: Dataset, settings, model_info: dict, timings: dict, scores, notices, *, detector_state=None
) -> dict:
    """``run.json``'s content. ``detector_state``: what the detector read from the data
    (:func:`~ogaudit.detectors.outliers.detector_state`), recorded as ``detector_state`` when there is any."""
    import sklearn

    if isinstance(data, Dataset):
        spec = dataset.source
    else:
        path = Path(data).expanduser()
        spec = str(path.resolve()) if path.exists() else str(data)  # a path that works from any folder
    record = {
        "ogaudit_version": __version__,
        "fingerprint": fingerprint(model_info["key"], settings.to_dict()),
        "settings": settings.to_dict(),
        "dataset": {
            "spec": spec,
            "kind": dataset.kind,
            "fingerprint": dataset.fingerprint(),
            "samples": len(dataset),
            "shape": list(dataset.x.shape[1:]),
            "class_names": [str(c) for c in dataset.class_names],
            "label_type": "integer" if dataset.integer_labels else "text",
            "skipped_count": len(dataset.skipped),
            "skipped": [{"path": s.path, "reason": s.reason} for s in dataset.skipped],
            "notes": list(getattr(dataset, "notes", []) or []),
        },
        "model": dict(model_info),
        "flagged": int(scores["flagged"].sum()),
        "timings_s": timings,
        "notices": list(notices),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
            "pandas": pd.__version__,
        },
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if dataset.kind == "instructions":
        origin = dataset.text_origin
        record["dataset"]["instructions"] = {"format": origin.format, "fields": origin.fields}
    elif dataset.is_text:
        from ogaudit.models.encoders import DEFAULT_ENCODER

        origin = dataset.text_origin
        record["dataset"]["text"] = {
            "encoder": DEFAULT_ENCODER,
            "format": origin.format,
            "text_column": origin.text_column,
            "label_column": origin.label_column,
            "id_column": origin.id_column,
        }
    if detector_state:
        record["detector_state"] = dict(detector_state)
    if "is_noisy" in scores:
        record["metrics"] = detection_metrics(
            scores["is_noisy"].to_numpy(), scores["score"].to_numpy(), budget=settings.budget
        )
    return record
