"""``python -m ogaudit.ui.serve app.py [streamlit run options]``: ``streamlit run`` with ogaudit's guard installed
before the server takes its first request, listening on 127.0.0.1 unless told otherwise.

``streamlit run app.py`` alone installs the guard (:mod:`ogaudit.ui.guard`) in the first run of the page, so from the
server's start until the first page has imported ogaudit (a few seconds), Streamlit's own handlers would answer an
upload or a ``clear_cache`` message unguarded. This launcher closes that gap: it installs the guard, then hands its
arguments to Streamlit's command line in the same process. ``scripts/app.sh`` and the tests start the app with it.

It also sets ``--client.showErrorDetails none`` unless the command line sets that option itself: an uncaught
exception (a bug, or a widget value of the wrong type sent by a client) then shows the browser Streamlit's generic
notice, not the exception's message and traceback, which name server paths and code; the server's log keeps them.

Where no ``--server.address`` is given (on the command line, in ``STREAMLIT_SERVER_ADDRESS`` or a Streamlit
``config.toml``), it listens on 127.0.0.1, as ``scripts/app.sh`` does: Streamlit's own default is every interface,
which makes the app ask for sign-in (a server others can reach) and, with no users yet, show only how to add one; a
new user who ran the README's command without the flag met that. Serving a team is a deliberate
``--server.address 0.0.0.0`` (README, *Serving a review team*).
"""

from __future__ import annotations

import sys

LOCAL_ADDRESS = "127.0.0.1"


def with_address(args: list[str], *, configured: bool = False) -> list[str]:
    """``args`` (``streamlit run``'s arguments) with ``--server.address 127.0.0.1`` added when they name no address
    (``--server.address X`` or ``--server.address=X``) and none is ``configured`` elsewhere (environment, config
    file)."""
    named = any(arg == "--server.address" or arg.startswith("--server.address=") for arg in args)
    return list(args) if named or configured else [*args, "--server.address", LOCAL_ADDRESS]


def _address_configured() -> bool:
    """Whether ``server.address`` is set outside the command line: ``STREAMLIT_SERVER_ADDRESS`` or a Streamlit
    ``config.toml`` (``~/.streamlit`` or ``./.streamlit``), as Streamlit itself reads them (the variable through its
    command line's ``STREAMLIT_`` prefix, the files through its config)."""
    import os

    from streamlit import config

    if os.environ.get("STREAMLIT_SERVER_ADDRESS"):
        return True
    config.get_config_options(force_reparse=True)
    return config.is_manually_set("server.address")


def main(argv: list[str] | None = None) -> None:
    try:
        import plotly  # noqa: F401 - the map
        import streamlit  # noqa: F401
    except ImportError as error:
        sys.exit(f"ogaudit: the app needs {error.name}, which is not installed: pip install 'ogaudit[app]'.")
    from ogaudit.ui import guard

    guard.install()
    from streamlit.web import cli

    args = list(sys.argv[1:] if argv is None else argv)
    if not any(arg.startswith("--client.showErrorDetails") for arg in args):
        args[1:1] = [ERROR_DETAILS, "none"]  # after the script: `streamlit run SCRIPT [OPTIONS]`
    sys.argv = ["streamlit", "run", *with_address(args, configured=_address_configured())]
    cli.main()


ERROR_DETAILS = "--client.showErrorDetails"
"""Streamlit's option for what a browser sees of an uncaught exception; the launcher sets it to ``none``."""


if __name__ == "__main__":
    main()
