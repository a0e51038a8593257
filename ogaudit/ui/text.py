"""User-supplied strings on the page: shown as text, never as markdown (links, images, colours) or HTML."""

from __future__ import annotations

import re

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=])")
_INVISIBLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u061c\u115f\u1160\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\u3164\ufeff\ufff9-\ufffb]"
)
"""Characters that draw nothing or reorder the text after them (controls, zero-width and direction marks,
embeddings, overrides and isolates): in a class name or an id they make two different strings look alike."""


def shown(value: object) -> str:
    """``value`` as text with every character that draws nothing or reorders what follows (:data:`_INVISIBLE`)
    written as a visible ``⟨U+XXXX⟩``: a class ``'\u202egod'`` (a right-to-left override, Trojan Source) would
    read ``dog``. Line breaks and tabs stay; every visible character, in any script, stays as written. For text
    that Streamlit shows as plain text (a selectbox's options: ``format_func=shown``); :func:`md` and
    :func:`code` apply it too."""
    return _INVISIBLE.sub(lambda m: f"⟨U+{ord(m.group()):04X}⟩", str(value))


def md(value: object) -> str:
    """``value`` escaped for any Streamlit element that renders markdown (messages, captions, button labels).

    Every markdown-active character gets a backslash, and line breaks become spaces, so a class name
    ``[x](http://evil)`` or ``![](http://evil.png)`` reads exactly as typed; characters that draw nothing or
    reorder the text are written visibly (:func:`shown`).
    """
    text = shown(value).replace("\r", " ").replace("\n", " ")
    return _MARKDOWN.sub(r"\\\1", text)


def code(value: object) -> str:
    """``value`` as a markdown code span (shown verbatim, invisible characters as :func:`shown` writes them),
    fenced by more backticks than it contains."""
    text = shown(value).replace("\r", " ").replace("\n", " ")
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
