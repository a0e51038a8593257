"""Exceptions raised for user input and failed runs.

Every message names the offending value, what is allowed, and how to fix it, so that the CLI and the app can
show it to a person as it is.
"""


class OgauditError(Exception):
    """Base class of every error ogaudit raises on purpose."""


class DataError(OgauditError, ValueError):
    """A dataset, manifest or array that cannot be used as given."""


class ModelError(OgauditError, ValueError):
    """A model, architecture name or checkpoint that cannot be used with the data."""


class SettingsError(OgauditError, ValueError):
    """A setting outside its allowed values."""


class LedgerError(OgauditError, ValueError):
    """A review decision that cannot be recorded (unknown sample, bad action, foreign dataset)."""


class StorageError(OgauditError, OSError):
    """A result or decision that could not be written (full disk, read-only folder, a file in the way)."""


class EngineError(OgauditError, RuntimeError):
    """The per-sample stages failed on a cluster (a node without ogaudit, data it cannot read, a lost worker)."""


class Cancelled(OgauditError):
    """A long run stopped because its cancel token was set."""


class MissingExtra(OgauditError, ImportError):
    """A feature needs a package that a plain ``pip install ogaudit`` leaves out; the message names the extra
    (``pip install 'ogaudit[app]'``) that brings it."""

    def __init__(self, feature: str, package: str, extra: str):
        super().__init__(
            f"{feature} needs {package}, which is not installed: pip install 'ogaudit[{extra}]' (or pip install "
            f"{package})."
        )
        self.package, self.extra = package, extra


def require(module: str, *, feature: str, extra: str, package: str | None = None):
    """Import and return ``module``, or raise :class:`MissingExtra` naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtra(feature, package or module, extra) from error


class JobBusy(OgauditError):
    """A job of this kind already runs on this project folder (in this server, another process or the CLI)."""
