"""``python -m ogaudit.ui.serve app.py [streamlit run options]``: ``streamlit run`` with ogaudit's guard installed
before the server takes its first request.

``streamlit run app.py`` alone installs the guard (:mod:`ogaudit.ui.guard`) in the first run of the page, so from the
server's start until the first page has imported ogaudit (a few seconds), Streamlit's own handlers would answer an
upload or a ``clear_cache`` message unguarded. This launcher closes that gap: it installs the guard, then hands its
arguments to Streamlit's command line in the same process. ``scripts/app.sh`` and the tests start the app with it.

It also sets ``--client.showErrorDetails none`` unless the command line sets that option itself: an uncaught
exception (a bug, or a widget value of the wrong type sent by a client) then shows the browser Streamlit's generic
notice, not the exception's message and traceback, which name server paths and code; the server's log keeps them.
"""

from __future__ import annotations

import sys


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
    sys.argv = ["streamlit", "run", *args]
    cli.main()


ERROR_DETAILS = "--client.showErrorDetails"
"""Streamlit's option for what a browser sees of an uncaught exception; the launcher sets it to ``none``."""


if __name__ == "__main__":
    main()
