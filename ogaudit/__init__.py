"""ogaudit: find mislabelled training samples by Outlier Gradient Analysis, and review them.

A sample whose per-sample loss gradient is an outlier is likely a wrong (or otherwise detrimental) label
(Chhabra et al., ICML 2025, arXiv 2405.03869); for the last linear layer the gradient is closed-form,
``(softmax(z) − onehot(y)) ⊗ [h, 1]``.

The public names:

``audit(data, settings=None, *, out_dir=None, ...)``
    Train a model on ``data`` (a built-in, a path, arrays, a DataFrame, a torch Dataset or a :class:`Dataset`),
    score every sample and flag the most suspicious; with ``out_dir``, write a project folder.
``score(features, probs, labels, *, logits=None, evidence=None, detector="posterior-auto", budget=0.05, ...)``
    Score the outputs of a model you trained yourself (no training): one row per sample with ``score``,
    ``rank``, ``flagged``, ``suggested_label`` and ``p_wrong``.
``export(source, path, *, format)``
    Hand an audit's flags and a project's review to FiftyOne, Label Studio, a Hugging Face dataset, Parquet or
    cleanlab's label-issues frame (``format="fiftyone" | "label-studio" | "hf" | "parquet" | "cleanlab"``).
``Project(path)``
    A project folder (``ogaudit scan --out DIR`` or the app wrote it): ``open_run()``, ``decide()``,
    ``decisions()``, ``export_decisions()``, ``export_split()``, ``verify()``.
``AuditSettings``, ``AuditResult``
    An audit's settings and what it returns.
``Dataset``, ``load_dataset(spec, ...)``
    The data every stage reads, and the loader of built-ins and paths.
``__version__``

Each name is imported on first use, so ``import ogaudit`` loads neither torch nor the pipeline.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "audit": "ogaudit.api",
    "score": "ogaudit.api",
    "export": "ogaudit.api",
    "Project": "ogaudit.project",
    "AuditSettings": "ogaudit.settings",
    "AuditResult": "ogaudit.pipeline.run",
    "Dataset": "ogaudit.data.dataset",
    "load_dataset": "ogaudit.data.load",
}
__all__ = [*_EXPORTS, "__version__"]


_MODULES = ("errors",)
"""Modules reachable as attributes after a bare ``import ogaudit`` (``ogaudit.errors.DataError``)."""


def __getattr__(name: str):
    if name in _MODULES:
        import importlib

        return importlib.import_module(f"ogaudit.{name}")
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # imported once; later look-ups skip this function
        return value
    raise AttributeError(f"module 'ogaudit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*__all__, *_MODULES])
