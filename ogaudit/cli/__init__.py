"""Command line: ``ogaudit scan DATA --out DIR`` and the review commands on the project folder it writes.

Building the parser imports no engine module (only :mod:`ogaudit.settings` for the choice lists); ``scan`` and
``verify`` import the engine when they run, so review commands that read a project start in well under 2 s.
Each handler returns an exit code and raises :class:`~ogaudit.errors.OgauditError` for :func:`main` to print;
:data:`EXIT_CODES` says which code each kind of failure gets. With ``--json`` a command prints one JSON object on
stdout (its summary, or ``{"ok": false, "error": ..., "kind": ...}``) and its messages go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

from ogaudit import __version__
from ogaudit.cli.review import add_review_commands
from ogaudit.cli.scan import add_scan_command
from ogaudit.cli.users import add_users_command
from ogaudit.errors import (
    Cancelled,
    DataError,
    EngineError,
    JobBusy,
    LedgerError,
    MissingExtra,
    ModelError,
    OgauditError,
    SettingsError,
    StorageError,
)

EXIT_OK = 0
EXIT_INCOMPLETE = 1
"""The command ran but did not do all it was asked (rows of an import refused, nothing to undo)."""
EXIT_USAGE = 2
"""A command line argparse refuses, or a setting outside its allowed values."""
EXIT_INPUT = 3
"""Data, a model or a decision that cannot be used as given."""
EXIT_ENVIRONMENT = 4
"""A result that could not be written (full disk, read-only folder), a cluster that failed, another audit
running on the same project folder, or a package of an extra that is not installed."""
EXIT_INTERNAL = 70
"""A bug in ogaudit (sysexits' EX_SOFTWARE): the message says so and the traceback follows on stderr."""
EXIT_CANCELLED = 130
"""Interrupted (Ctrl-C) or cancelled, as shells report SIGINT."""

EXIT_CODES = (
    (SettingsError, EXIT_USAGE, "usage"),
    ((DataError, ModelError, LedgerError), EXIT_INPUT, "input"),
    ((StorageError, EngineError, JobBusy, MissingExtra), EXIT_ENVIRONMENT, "environment"),
    (Cancelled, EXIT_CANCELLED, "cancelled"),
    (OgauditError, EXIT_INPUT, "input"),
)
"""``(error classes, exit code, kind)``, first match wins."""

EPILOG = """exit codes:
  0    done
  1    done in part (an import with refused rows, nothing to undo)
  2    usage: a bad command line or setting
  3    input: data, a model or a decision that cannot be used as given
  4    environment: a result that could not be written, a cluster that failed, a missing extra
  70   internal: a bug in ogaudit (please report it with the traceback)
  130  interrupted or cancelled

With --json, a command prints one JSON object on stdout: its summary, or {"ok": false, "error", "kind"}.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ogaudit",
        description="Find mislabelled training samples by Outlier Gradient Analysis.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ogaudit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    add_scan_command(commands)
    add_review_commands(commands)
    add_users_command(commands)
    return parser


def exit_code(error: BaseException) -> tuple[int, str]:
    """``(exit code, kind)`` for an error raised by a command (see :data:`EXIT_CODES`)."""
    for kinds, code, name in EXIT_CODES:
        if isinstance(error, kinds):
            return code, name
    return EXIT_INTERNAL, "internal"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    as_json = getattr(args, "json", False)
    try:
        return args.handler(args)
    except BrokenPipeError:  # the reader went away (`ogaudit decisions list | head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print("ogaudit: interrupted", file=sys.stderr)
        return _failed(as_json, "interrupted", "cancelled", EXIT_CANCELLED)
    except OgauditError as error:
        code, kind = exit_code(error)
        print(f"ogaudit: error: {error}", file=sys.stderr)
        return _failed(as_json, str(error), kind, code)
    except Exception as error:  # noqa: BLE001 - the last line of defence: a bug, said as one
        traceback.print_exc(file=sys.stderr)
        message = f"internal error ({type(error).__name__}: {error}); this is a bug in ogaudit {__version__}"
        print(f"ogaudit: {message}", file=sys.stderr)
        return _failed(as_json, message, "internal", EXIT_INTERNAL)


def _failed(as_json: bool, message: str, kind: str, code: int) -> int:
    if as_json:
        print(json.dumps({"ok": False, "error": message, "kind": kind, "exit_code": code}))
    return code
