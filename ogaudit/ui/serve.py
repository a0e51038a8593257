"""``python -m ogaudit.ui.serve app.py [streamlit run options]``: ``streamlit run`` with ogaudit's guard installed
before the server takes its first request.

``streamlit run app.py`` alone installs the guard (:mod:`ogaudit.ui.guard`) in the first run of the page, so from the
server's start until the first page has imported ogaudit (a few seconds), Streamlit's own handlers would answer an
upload or a ``clear_cache`` message unguarded. This launcher closes that gap: it installs the guard, then hands its
arguments to Streamlit's command line in the same process. ``scripts/app.sh`` and the tests start the app with it.
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

    sys.argv = ["streamlit", "run", *(sys.argv[1:] if argv is None else argv)]
    cli.main()


if __name__ == "__main__":
    main()
