"""Leak-free splits that keep every duplicate group on one side.

* test: a stratified `test_fraction` of each style that never changes. Groups are ordered by a hash
  of their identity (the NFC file names of their members), not by a random draw, so the test split
  is the same across seeds, runs, machines and class sets for the same images.
* train / val: the rest, split per run from the run's seed, stratified by style, whole groups at a
  time.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd


def _group_table(styles, groups, filenames) -> pd.DataFrame:
    frame = pd.DataFrame({"style": styles, "group": groups, "filename": filenames})
    table = frame.groupby("group").agg(
        style=("style", "first"),
        size=("style", "size"),
        key=("filename", lambda f: "|".join(sorted(f))),
    )
    return table


def _take_groups(table: pd.DataFrame, order_key, fraction: float) -> set:
    """Per style, takes groups in `order_key` order until `fraction` of the style's images is
    reached."""
    taken = set()
    for _, style_groups in table.groupby("style"):
        target = round(fraction * style_groups["size"].sum())
        count = 0
        for group in sorted(style_groups.index, key=order_key):
            if count >= target:
                break
            taken.add(group)
            count += style_groups.at[group, "size"]
    return taken


def fixed_test_mask(styles, groups, filenames, test_fraction: float) -> np.ndarray:
    """True for the images of the fixed test split."""
    table = _group_table(styles, groups, filenames)
    digest = {g: hashlib.sha256(k.encode("utf-8")).hexdigest() for g, k in table["key"].items()}
    test_groups = _take_groups(table, digest.__getitem__, test_fraction)
    return np.isin(np.asarray(groups), list(test_groups))


def seeded_val_mask(styles, groups, filenames, val_fraction: float, seed: int) -> np.ndarray:
    """True for the validation images of a run; `val_fraction` is of the images passed in."""
    table = _group_table(styles, groups, filenames)
    rank = dict(zip(table.index, np.random.default_rng(seed).permutation(len(table))))
    val_groups = _take_groups(table, rank.__getitem__, val_fraction)
    return np.isin(np.asarray(groups), list(val_groups))
