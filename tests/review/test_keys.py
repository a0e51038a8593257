"""The review's keys: digits follow digit-named classes, remapped keys are checked."""

from __future__ import annotations

import pytest

from ogaudit.errors import SettingsError
from ogaudit.review.keys import DEFAULT_KEYS, check_keys, class_keys, key_label, names_the_key, normalise_key


def test_a_class_named_by_a_digit_gets_that_digit():
    digits = [str(d) for d in range(10)]
    assert class_keys(digits) == digits  # on digits, 3 relabels to "3", not to the third class
    assert class_keys(["3", "cat", "1"]) == ["3", "2", "1"]
    assert class_keys(["cat", "dog"]) == ["1", "2"]


def test_a_class_that_reads_as_its_key_is_shown_once():
    names = ["3", "cat", " 7", "7"]
    keys = class_keys(names)
    assert [names_the_key(n, k) for n, k in zip(names, keys, strict=True)] == [True, False, True, False]
    assert not names_the_key("3", None) and not names_the_key("3", "Shift+3")


def test_classes_beyond_ten_have_no_key_and_repeated_digits_are_not_shared():
    names = [f"c{i}" for i in range(12)]
    assert class_keys(names) == [*"1234567890", None, None]
    assert class_keys(["7", " 7"]) == ["7", "1"]


def test_keys_are_normalised_and_bad_ones_refused():
    assert normalise_key(" x ") == "X" and normalise_key("shift+z") == "Shift+Z" and normalise_key("left") == "Left"
    assert normalise_key("alt+shift+q") == "Shift+Alt+Q"
    for bad in ("", "3", "c", "ctrl+q", "ab", ".", "é", None):
        with pytest.raises(SettingsError):
            normalise_key(bad)


def test_check_keys_merges_with_the_defaults_and_refuses_two_actions_on_one_key():
    keys = check_keys({"keep": "j"})
    assert keys == {**DEFAULT_KEYS, "keep": "J"}
    with pytest.raises(SettingsError, match="both 'accept' and 'keep'"):
        check_keys({"keep": "a"})
    with pytest.raises(SettingsError, match="no action"):
        check_keys({"jump": "q"})
    assert key_label("Left") == "←" and key_label(None) == ""
