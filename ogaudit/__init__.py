"""ogaudit: find training samples that hurt a model by Outlier Gradient Analysis, and review them.

The top-level names are imported lazily, so that light modules (the ledger, exports) load without torch.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "audit": "ogaudit.pipeline.run",
    "AuditSettings": "ogaudit.pipeline.run",
    "AuditResult": "ogaudit.pipeline.run",
    "Dataset": "ogaudit.data.dataset",
    "load_dataset": "ogaudit.data.dataset",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ogaudit' has no attribute {name!r}")
