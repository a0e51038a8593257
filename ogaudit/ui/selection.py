"""Turn a plotly selection event (what ``st.plotly_chart(on_select="rerun")`` returns) into sample ids.

Plotly's point indices are per trace, so ids travel in ``customdata``. It comes back as a list (2-D customdata:
the id first), a dict ``{"0": id}``, or a scalar, depending on how the figure set it; all three are read here.
The figure escapes ``&``, ``<`` and ``>`` in the ids it shows (:func:`~ogaudit.ui.figure.escape_markup`);
:func:`point_id` undoes that exactly (``&`` is escaped first, so one ``html.unescape`` pass restores every id).
"""

from __future__ import annotations

import html
from collections.abc import Collection, Mapping


def point_id(point: Mapping) -> str | None:
    """The sample id of one selected point, or None when it carries no customdata."""
    data = point.get("customdata")
    if isinstance(data, list | tuple):
        data = data[0] if data else None
    elif isinstance(data, Mapping):
        data = data.get("0", data.get(0))
    return None if data is None else html.unescape(str(data))


def selected_ids(event: Mapping | None, known: Collection[str] | None = None) -> list[str]:
    """Ids of the selected points in selection order, each once; with ``known``, only ids in it."""
    if not event:
        return []
    selection = event.get("selection") or {}
    ids = (point_id(point) for point in selection.get("points") or [])
    unique = dict.fromkeys(i for i in ids if i is not None and (known is None or i in known))
    return list(unique)
