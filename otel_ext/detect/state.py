"""Bounded keyed state for detectors: an LRU map capped at ``max_keys`` whose evictions are
counted, so hostile cardinality (many source IPs or user names) cannot grow memory."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class BoundedKeys(Generic[V]):
    def __init__(self, max_keys: int, factory: Callable[[], V], on_evict: Callable[[], None]) -> None:
        if max_keys <= 0:
            raise ValueError("max_keys must be positive")
        self.max_keys = max_keys
        self._factory = factory
        self._on_evict = on_evict
        self._items: OrderedDict[str, V] = OrderedDict()

    def get(self, key: str) -> V:
        items = self._items
        value = items.get(key)
        if value is None:
            value = self._factory()
            items[key] = value
            if len(items) > self.max_keys:
                items.popitem(last=False)
                self._on_evict()
        else:
            items.move_to_end(key)
        return value

    def peek(self, key: str) -> V | None:
        return self._items.get(key)

    def pop(self, key: str) -> None:
        self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)
