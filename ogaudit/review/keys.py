"""The review's keyboard: which key does what, which digit relabels to which class, and a reviewer's own keys.

No streamlit here: the app's keyboard view and card grid (``ogaudit/ui/review.py``) draw buttons with these keys,
and :mod:`ogaudit.server.prefs` keeps each reviewer's remapped keys on the server.

Class keys follow the class, not its position: a class whose name is one digit (``"0"`` … ``"9"``, as in MNIST
or digits) is relabelled by that digit's key; the other classes take the digits left over, 1 → 9 then 0, in the
run's class order. Label Studio lets annotators choose their keys (its ``hotkey`` attribute); here a reviewer may
remap the action keys, never the digits (they belong to the classes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ogaudit.errors import SettingsError

DEFAULT_KEYS = {
    "accept": "A",
    "keep": "K",
    "remove": "X",
    "unsure": "U",
    "previous": "Left",
    "next": "Right",
    "undo": "Z",
    "redo": "Shift+Z",
}
"""Action → key (Streamlit's shortcut syntax: one letter, or a named key, with optional ``Shift+``/``Alt+``)."""
ACTION_NAMES = {
    "accept": "accept the suggestion",
    "keep": "keep the given label",
    "remove": "remove the sample",
    "unsure": "mark unsure",
    "previous": "previous sample",
    "next": "next sample",
    "undo": "undo",
    "redo": "redo",
}
DIGITS = "1234567890"
NAMED_KEYS = ("Left", "Right", "Up", "Down", "Enter", "Space", "Home", "End", "PageUp", "PageDown", "Backspace")
MODIFIERS = ("Shift", "Alt")
RESERVED = frozenset("CR")
"""Streamlit refuses shortcuts on C and R (its own copy and rerun keys)."""


def class_keys(names: Sequence[object]) -> list[str | None]:
    """The digit key of each class in ``names`` (None for a class without one: there are ten digits).

    A class named by one digit gets that digit; the rest get the unused digits in the order 1…9, 0. Example:
    ``class_keys(["0", "1", …, "9"])`` → ``["0", "1", …, "9"]``; ``class_keys(["cat", "dog"])`` → ``["1", "2"]``;
    ``class_keys(["3", "cat"])`` → ``["3", "1"]``.
    """
    keys: list[str | None] = [None] * len(names)
    taken = set()
    for index, name in enumerate(names):
        text = str(name).strip()
        if len(text) == 1 and text in DIGITS and text not in taken:
            keys[index] = text
            taken.add(text)
    free = iter(d for d in DIGITS if d not in taken)
    for index in range(len(names)):
        if keys[index] is None:
            keys[index] = next(free, None)
    return keys


def names_the_key(name: object, key: str | None) -> bool:
    """Whether the class ``name`` reads as its own ``key`` (the class "3" on the key 3): its button and the key
    legend then show it once ("3"), not as the name beside the key ("3 3"); other classes show both ("Dress [4]")."""
    return key is not None and str(name).strip() == key


def normalise_key(key: object) -> str:
    """A key as typed ("x", "shift+z", " Left ") in the form the app uses ("X", "Shift+Z", "Left").

    Raises :class:`~ogaudit.errors.SettingsError` for anything else: keys are one letter, or one of
    :data:`NAMED_KEYS`, optionally after ``Shift+`` or ``Alt+``; C and R are Streamlit's own; digits relabel.
    """
    if not isinstance(key, str) or not key.strip():
        raise SettingsError("a key must be a letter (A-Z) or a named key such as Left or Space.")
    parts = [part.strip() for part in key.strip().split("+")]
    *mods, base = parts
    modifiers = []
    for mod in mods:
        match = next((m for m in MODIFIERS if m.lower() == mod.lower()), None)
        if match is None or match in modifiers:
            raise SettingsError(f"key {key!r}: {mod!r} is not a modifier; use Shift+ or Alt+.")
        modifiers.append(match)
    named = next((n for n in NAMED_KEYS if n.lower() == base.lower()), None)
    if named is None:
        if len(base) != 1 or not base.isascii() or not base.isalnum():
            raise SettingsError(
                f"key {key!r} is not allowed: use one letter A-Z or one of {', '.join(NAMED_KEYS)} "
                "(with Shift+ or Alt+ if you like)."
            )
        if base in DIGITS:
            raise SettingsError(f"key {key!r}: the digits relabel to the classes and cannot be remapped.")
        base = base.upper()
        if base in RESERVED:
            raise SettingsError(f"key {key!r}: C and R are the browser page's own keys in the app; choose another.")
    ordered = [m for m in MODIFIERS if m in modifiers]
    return "+".join([*ordered, named or base])


def check_keys(keys: Mapping[str, object]) -> dict[str, str]:
    """The full action → key map: :data:`DEFAULT_KEYS` with ``keys`` (a reviewer's own) applied and checked.

    Raises :class:`~ogaudit.errors.SettingsError` for an unknown action, a key :func:`normalise_key` refuses, or
    two actions on one key (the message names both).
    """
    unknown = set(keys) - set(DEFAULT_KEYS)
    if unknown:
        raise SettingsError(f"no action {sorted(unknown)[0]!r}: the actions are {', '.join(DEFAULT_KEYS)}.")
    merged = dict(DEFAULT_KEYS)
    for action, key in keys.items():
        merged[action] = normalise_key(key)
    seen: dict[str, str] = {}
    for action, key in merged.items():
        if key in seen:
            raise SettingsError(f"{key} is the key of both {seen[key]!r} and {action!r}: give each action its own.")
        seen[key] = action
    return merged


def key_label(key: str | None) -> str:
    """How a key is printed on a button: "←" for Left, "Shift+Z" as is."""
    arrows = {"Left": "←", "Right": "→", "Up": "↑", "Down": "↓"}
    return "" if key is None else arrows.get(key, key)


__all__ = ["DEFAULT_KEYS", "check_keys", "class_keys", "key_label", "names_the_key", "normalise_key"]
