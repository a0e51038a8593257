"""``ogaudit users add|remove|list``: who may sign in to a shared app server (``$OGAUDIT_HOME/users.json``)."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from ogaudit.errors import SettingsError
from ogaudit.server.auth import ROLES, UserStore


def add_users_command(subparsers: argparse._SubParsersAction) -> None:
    users = subparsers.add_parser(
        "users",
        help="manage who may sign in to the app when it is served to a team",
        description="Users and salted bcrypt password hashes live in $OGAUDIT_HOME/users.json (mode 0600). Once "
        "it lists a user, the app asks everyone to sign in.",
    )
    what = users.add_subparsers(dest="users_what", required=True)
    adding = what.add_parser("add", help="add a user (asks for the password twice)")
    adding.add_argument("name", help="user name (letters, digits, . _ @ -)")
    adding.add_argument(
        "--role",
        required=True,
        choices=ROLES,
        help="admin: everything; reviewer: review and settle disagreements; annotator: review only",
    )
    adding.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    adding.add_argument("--replace", action="store_true", help="change an existing user's password or role")
    adding.set_defaults(handler=run_add)
    removing = what.add_parser("remove", help="remove a user (signed out on their next click)")
    removing.add_argument("name")
    removing.set_defaults(handler=run_remove)
    listing = what.add_parser("list", help="list users and roles")
    listing.set_defaults(handler=run_list)
    for parser in (adding, removing, listing):
        parser.add_argument(
            "--home", type=Path, help="the app's workspace (default $OGAUDIT_HOME or ./ogaudit-projects)"
        )


def _store(args: argparse.Namespace) -> UserStore:
    from ogaudit.project import workspace_root

    return UserStore.in_home(args.home if args.home is not None else workspace_root())


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"Password for {args.name}: ")
    if getpass.getpass("Again: ") != first:
        raise SettingsError("the two passwords differ; nothing was changed.")
    return first


def run_add(args: argparse.Namespace) -> int:
    store = _store(args)
    user = store.add(args.name, _password(args), args.role, replace=args.replace)
    print(f"{'updated' if args.replace else 'added'} {user.name} ({user.role}) in {store.path}")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    store = _store(args)
    store.remove(args.name)
    print(f"removed {args.name} from {store.path}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    users = _store(args).list()
    if not users:
        print("no users: the app runs without sign-in when it listens on 127.0.0.1 only")
    for user in users:
        print(f"{user.name}\t{user.role}")
    return 0
