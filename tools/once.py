"""`once_property`: `functools.cached_property` that builds its value once, under a lock.

The studio server answers requests in a thread pool, so the first calls of a cold server ask
for the same warm resource (the pose bank, a runtime's planner) at once. `cached_property`
takes no lock since Python 3.12 (and 3.11's is one lock for every instance), so two threads
could both build it, or use a half-built one. This one takes one re-entrant lock per instance
(a value may need another of the same object's); once built, reading it is a plain attribute.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_LOCK = "_once_property_lock"


class once_property(Generic[T]):  # noqa: N801  (named like the decorator it replaces)
    def __init__(self, build: Callable[[Any], T]) -> None:
        self.build = build
        self.name = build.__name__
        self.__doc__ = build.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> T:
        if instance is None:
            return self  # type: ignore[return-value]
        return built_once(instance, self.name, lambda: self.build(instance))


def built_once(instance: Any, name: str, build: Callable[[], T]) -> T:
    """`instance.<name>`, built by `build` on first use under the instance's lock (the same
    lock as its `once_property`s); a build that raises leaves nothing, so the next call tries
    again."""
    values = instance.__dict__
    if name not in values:
        # setdefault is atomic: every thread gets the same lock.
        with values.setdefault(_LOCK, threading.RLock()):
            if name not in values:
                values[name] = build()
    return values[name]
