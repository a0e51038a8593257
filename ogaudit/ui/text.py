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
