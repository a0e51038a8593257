"""Duplicate and conflict groups (:mod:`ogaudit.review.duplicates`) on small arrays with planted copies."""

from __future__ import annotations

import numpy as np

from ogaudit.review.duplicates import exact_groups, find_duplicates, near_pairs, pixel_directions


def _images(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, size=(8, 12, 12, 1), dtype=np.uint8)


def test_exact_copies_form_one_group_and_the_rest_none():
    x = _images()
    x[5] = x[1]
    x[6] = x[1]
    groups = exact_groups(x)
    assert groups[1] == groups[5] == groups[6] >= 0 and (groups[[0, 2, 3, 4, 7]] == -1).all()


def test_near_copies_survive_brightness_changes_and_noise_but_strangers_do_not_pair():
    x = _images()
    x[3] = np.clip(x[0].astype(int) // 2 + 40, 0, 255).astype(np.uint8)  # darker, lower contrast: same picture
    pairs = near_pairs(pixel_directions(x), threshold=0.98)
    assert pairs.tolist() == [[0, 3]]


def test_find_duplicates_marks_conflicts_first_and_the_slow_reference_agrees():
    x = _images()
    x[5] = x[1]
    x[7] = np.clip(x[2].astype(int) + 3, 0, 255).astype(np.uint8)
    ids = np.array([f"s{i}" for i in range(8)])
    labels = np.array(["a", "b", "c", "a", "a", "a", "b", "d"])
    table = find_duplicates(ids, labels, x=x, directions=pixel_directions(x), threshold=0.98)
    groups = {g: sorted(t["sample_id"]) for g, t in table.groupby("group")}
    assert groups == {1: ["s1", "s5"], 2: ["s2", "s7"]} or groups == {1: ["s2", "s7"], 2: ["s1", "s5"]}
    assert table.groupby("group")["conflict"].first().tolist() == [True, True]
    kinds = dict(zip(table["sample_id"], table["kind"], strict=True))
    assert kinds["s1"] == "exact" and kinds["s7"] == "near"
    directions = pixel_directions(x)
    slow = {(i, j) for i in range(8) for j in range(i + 1, 8) if directions[i] @ directions[j] >= 0.98}
    assert {tuple(p) for p in near_pairs(directions, threshold=0.98, chunk=3).tolist()} == slow
    assert find_duplicates(ids, labels).empty
