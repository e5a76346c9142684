"""Leak-free splits that keep every duplicate group on one side.

* test: a stratified `test_fraction` of each style that never changes. Groups are ordered by a hash
  of their identity (the NFC file names of their members), not by a random draw, so the test split
  is the same across seeds, runs, machines and class sets for the same images.
* train / val: the rest, split per run from the run's seed, stratified by style, whole groups at a
  time. Groups are ordered by a seeded hash of their identity, so the split depends only on the
  class set's own files: a download that grows does not move it.
* artist-disjoint: validation artists (`val_artists`) and cross-validation folds of artists
  (`artist_folds`), holding out only artists whose every class another artist also has.
* image folds for K-fold cross-validation (`image_folds`), stratified, whole groups at a time.
"""

from __future__ import annotations

import collections
import hashlib

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold


class SplitError(ValueError):
    """A split that cannot be made as asked (too many folds, a class left without training data)."""


def _seeded_hash(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}\0{key}".encode("utf-8")).hexdigest()


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
    rank = {g: _seeded_hash(seed, key) for g, key in table["key"].items()}
    val_groups = _take_groups(table, rank.__getitem__, val_fraction)
    return np.isin(np.asarray(groups), list(val_groups))


def group_keys(groups, filenames) -> list[str]:
    """Each image's duplicate group, named by its members' file names (the numeric ids depend on
    the whole download)."""
    members = collections.defaultdict(list)
    for g, f in zip(groups, filenames):
        members[g].append(f)
    key = {g: "|".join(sorted(fs)) for g, fs in members.items()}
    return [key[g] for g in groups]


def heldout_candidates(artist_classes: dict) -> list[str]:
    """Artists that can be held out: each of their classes is another artist's class too. (A style
    with a single artist cannot be scored on unseen artists; it stays in training.)"""
    listed = collections.Counter(c for classes in artist_classes.values() for c in set(classes))
    return sorted(a for a, cs in artist_classes.items() if cs and all(listed[c] >= 2 for c in cs))


def single_artist_classes(artist_classes: dict) -> list[str]:
    """Classes that only one artist has: excluded from held-out-artist scoring."""
    listed = collections.Counter(c for classes in artist_classes.values() for c in set(classes))
    return sorted(c for c, n in listed.items() if n == 1)


def val_artists(artist_classes: dict, seed: int) -> set[str]:
    """One validation artist per class that has two or more, chosen by a seeded hash of the names,
    never leaving a class without a training artist."""
    chosen: set[str] = set()
    listers = collections.defaultdict(set)
    for artist, classes in artist_classes.items():
        for c in classes:
            listers[c].add(artist)
    for c in sorted(listers):
        if listers[c] & chosen:
            continue
        for artist in sorted(listers[c], key=lambda a: _seeded_hash(seed, a)):
            if all(listers[k] - chosen - {artist} for k in artist_classes[artist]):
                chosen.add(artist)
                break
    return chosen


def artist_folds(
    artist_classes: dict, artist_images: dict, folds: int, seed: int
) -> list[list[str]]:
    """Held-out artists per fold. `folds` = 0: one artist per fold (leave-one-artist-out). Else
    GroupKFold over the artists that can be held out, balanced: a class holds out at most one
    artist per fold where it can, and the folds hold similar numbers of images."""
    candidates = heldout_candidates(artist_classes)
    if folds == 0:
        return [[a] for a in candidates]
    if folds < 2 or folds > len(candidates):
        raise SplitError(
            f"{folds} artist folds: need 2 to {len(candidates)} (the artists that can be held out: "
            f"{candidates}); use --folds 0 for one artist per fold"
        )
    order = sorted(candidates, key=lambda a: (-artist_images[a], _seeded_hash(seed, a)))
    held, sizes, classes = [[] for _ in range(folds)], [0] * folds, [set() for _ in range(folds)]
    for artist in order:
        free = [f for f in range(folds) if not classes[f] & set(artist_classes[artist])]
        fold = min(free or range(folds), key=lambda f: (sizes[f], f))
        held[fold].append(artist)
        sizes[fold] += artist_images[artist]
        classes[fold] |= set(artist_classes[artist])
    for f, artists in enumerate(held):
        training = {c for a, cs in artist_classes.items() if a not in artists for c in cs}
        empty = sorted(set().union(*(artist_classes[a] for a in artists)) - training)
        if empty:
            raise SplitError(
                f"fold {f} holds out every artist of {empty} ({sorted(artists)}): "
                "that class would have no training images; use more folds"
            )
    return [sorted(artists) for artists in held]


def image_folds(strata, groups, filenames, folds: int, seed: int) -> np.ndarray:
    """The fold (0..folds-1) of each image: stratified by `strata`, whole duplicate groups at a
    time. Depends only on the images passed in and the seed (groups are named by their members)."""
    order = np.argsort(np.asarray(filenames))
    keys = np.asarray(group_keys(groups, filenames))
    strata = np.asarray(strata)
    found = np.empty(len(order), np.int64)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (_, held) in enumerate(splitter.split(order, strata[order], keys[order])):
        found[order[held]] = fold
    return found


def _linked_blocks(artists, links) -> list[tuple[str, ...]]:
    """The artists in blocks that must stay on one side: those who share a duplicate group."""
    parent = {a: a for a in artists}

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for linked in links:
        first, *rest = sorted(linked)
        for other in rest:
            parent[find(other)] = find(first)
    blocks = collections.defaultdict(list)
    for a in artists:
        blocks[find(a)].append(a)
    return [tuple(sorted(b)) for b in blocks.values()]


def artist_test_artists(
    artist_classes: dict, artist_images: dict, links, test_fraction: float, keep=()
) -> set[str]:
    """The artists of a fixed artist-disjoint test split: blocks of artists (those who share a
    duplicate group, `links`, go together) in the order of a hash of their names, until
    `test_fraction` of the images; a block is passed over where it would leave one of its classes
    without a training artist, or where it holds an artist of `keep` (a pseudo-artist such as
    "Unknown Artist", who is many painters). The same for every seed and run."""
    total = sum(artist_images.values())
    blocks = _linked_blocks(sorted(artist_classes), links)
    order = sorted(blocks, key=lambda b: hashlib.sha256("|".join(b).encode()).hexdigest())
    left = collections.Counter(c for classes in artist_classes.values() for c in set(classes))
    held, count = set(), 0
    for block in order:
        if count >= round(test_fraction * total):
            break
        taken = collections.Counter(c for a in block for c in set(artist_classes[a]))
        if any(left[c] - n < 1 for c, n in taken.items()) or set(block) & set(keep):
            continue
        left -= taken
        held |= set(block)
        count += sum(artist_images[a] for a in block)
    return held
