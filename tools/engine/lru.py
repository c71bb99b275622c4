"""The least-recently-used bound that the warm engine's caches share (LoRA adapters, prompt
embeddings): a long-lived worker that sees ever new LoRAs and prompts must not grow without end."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Hashable
from typing import TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def evict(items: OrderedDict[K, V], limit: int, keep: Collection[K] = ()) -> list[tuple[K, V]]:
    """Drop the least recently used entries (the front; a use moves an entry to the end) until at
    most `limit` remain, never one in `keep`; the dropped (key, value) pairs, oldest first."""
    dropped: list[tuple[K, V]] = []
    for key in list(items):
        if len(items) <= limit:
            break
        if key not in keep:
            dropped.append((key, items.pop(key)))
    return dropped
