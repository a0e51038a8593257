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


def test_text_duplicates_are_equal_texts_and_near_ones_texts_the_encoder_reads_alike(tmp_path):
    """Exact means the same text, never the same embedding; two texts cut to one embedding are near duplicates."""
    from dataclasses import replace

    import pandas as pd

    from ogaudit.data.text import load_text_dataset
    from ogaudit.review.duplicates import duplicate_inputs

    texts = ["tok " * 300, "tok " * 256, "a fine film", "a fine film", "dull", "another"]
    table = tmp_path / "t.csv"
    labels = ["pos", "neg", "pos", "neg", "neg", "pos"]
    pd.DataFrame({"text": texts, "label": labels}).to_csv(table, index=False)
    data = load_text_dataset(table)
    x = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
    x[1] = x[0]  # cut at 256 tokens: the encoder gives both one embedding
    data = replace(data, x=x)
    given, near = duplicate_inputs(data, near_limit=100)
    table = find_duplicates(data.sample_ids, np.array(labels, dtype=object), x=given, directions=near)
    kinds = {tuple(sorted(t["sample_id"])): t["kind"].iloc[0] for _, t in table.groupby("group")}
    assert kinds == {("0", "1"): "near", ("2", "3"): "exact"}
    assert duplicate_inputs(data, near_limit=5)[1] is None  # above the limit: exact ones only
    assert exact_groups(np.array(["x", "y", "x"], dtype=object)).tolist() == [0, -1, 0]
