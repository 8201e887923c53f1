"""Work a run does once, when several threads (`--ecrmirror-jobs`) ask for it at the same time.

The run's caches (clients, indexes, ECR's batched answers, tokens) are filled on first use. With
threads, two items may ask for the same thing at once: without a lock, each would download the
index or ask ECR, and "one index download per source per run" would quietly become eight. The
standard library has a lock and a cache, not a keyed "compute once, others wait" (functools'
caches may call the function twice under concurrency): this is that, and only that.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, MutableMapping
from typing import TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class KeyedLocks:
    """One re-entrant lock per key, made on demand: the same key waits, different keys do not."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[Hashable, threading.RLock] = {}

    def __call__(self, key: Hashable) -> threading.RLock:
        with self._guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.RLock()
            return lock


def once(cache: MutableMapping[K, V], locks: KeyedLocks, key: K, make: Callable[[], V]) -> V:
    """`cache[key]`, made by `make()` by the first thread to ask; the others wait for it."""
    try:
        return cache[key]
    except KeyError:
        pass
    with locks(key):
        if key not in cache:
            cache[key] = make()
        return cache[key]
