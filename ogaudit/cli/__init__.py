"""Command line: ``ogaudit scan DATA --out DIR`` and the review commands on the project folder it writes.

Building the parser imports no engine module (only :mod:`ogaudit.settings` for the choice lists); ``scan`` and
``verify`` import the engine when they run, so review commands that read a project start in well under 2 s.
Each handler returns an exit code and raises :class:`~ogaudit.errors.OgauditError` for :func:`main` to print.
"""

from __future__ import annotations

import argparse
import sys

from ogaudit.cli.review import add_review_commands
from ogaudit.cli.scan import add_scan_command
from ogaudit.cli.users import add_users_command
from ogaudit.errors import OgauditError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ogaudit", description="Find mislabelled training samples by Outlier Gradient Analysis."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_scan_command(commands)
    add_review_commands(commands)
    add_users_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except OgauditError as error:
        print(f"ogaudit: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ogaudit: interrupted", file=sys.stderr)
        return 130
