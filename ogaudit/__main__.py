"""``python -m ogaudit``: the same as the ``ogaudit`` command."""

import sys

from ogaudit.cli import main

sys.exit(main())
