"""User-supplied strings on the page: shown as text, never as markdown (links, images, colours) or HTML."""

from __future__ import annotations

import re

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=])")


def md(value: object) -> str:
    """``value`` escaped for any Streamlit element that renders markdown (messages, captions, button labels).

    Every markdown-active character gets a backslash, and line breaks become spaces, so a class name
    ``[x](http://evil)`` or ``![](http://evil.png)`` reads exactly as typed.
    """
    text = str(value).replace("\r", " ").replace("\n", " ")
    return _MARKDOWN.sub(r"\\\1", text)


def code(value: object) -> str:
    """``value`` as a markdown code span (shown verbatim), fenced by more backticks than it contains."""
    text = str(value).replace("\r", " ").replace("\n", " ")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    padded = f" {text} " if longest or text.startswith(" ") or text.endswith(" ") else text
    return f"{fence}{padded}{fence}"


_PY_LIST = re.compile(r"\[((?:\s*'[^'\[\]]*'\s*,?)+)\]")
_QUOTED_PATH = re.compile(r"""(['"])(/[^'"]*?)\1""")


def readable(error: object, home: object | None = None) -> str:
    """An error message as a person reads it: Python lists (``['a', 'b']``) become ``a, b``, and server paths
    are shortened: inside the workspace ``home`` to the part under it, elsewhere to the last two parts
    (``…/data/cats``). The text still needs :func:`md` before it is shown."""
    text = str(error)
    text = _PY_LIST.sub(
        lambda m: ", ".join(item.strip().strip("'") for item in m.group(1).split(",") if item.strip()), text
    )
    base = None if home is None else str(home).rstrip("/") + "/"

    def shorten(match: re.Match) -> str:
        path = match.group(2)
        if base and path.startswith(base):
            return f"'{path[len(base) :]}'"
        parts = [p for p in path.split("/") if p]
        return f"'…/{'/'.join(parts[-2:])}'" if len(parts) > 2 else f"'{path}'"

    return _QUOTED_PATH.sub(shorten, text)
