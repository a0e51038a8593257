"""The ogaudit app: ``streamlit run app.py`` (``scripts/app.sh`` installs, then runs this).

Everything is in :mod:`ogaudit.ui`; this file only starts it.
"""

from ogaudit.ui.main import main

main()
