"""Choices by name: one mapping from a config value to what it builds.

Every option that a config names (model, convolution kernels, optimizer, schedule, normalization,
freeze mode, ...) is a `Registry`. Looking a name up is its validation: an unknown name is an error
that says which config key it came from and lists the valid names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """A name that is not in a Registry (a ValueError for callers, a KeyError for Mapping)."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(Mapping, Generic[T]):
    """An immutable name -> value mapping whose lookups name the config key on failure."""

    def __init__(self, key: str, entries: dict[str, T]):
        self.key = key  # the config key the names come from, e.g. "optimizer.name"
        self._entries = dict(entries)

    def __getitem__(self, name) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable value from a config
            raise UnknownNameError(
                f"{self.key} {name!r} is not one of {tuple(self._entries)}"
            ) from None

    def __iter__(self):
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.key!r}, {tuple(self._entries)})"
