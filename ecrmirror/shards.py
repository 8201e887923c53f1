"""--ecrmirror-shard=K/N: the K-th of N shares of a run's items, whole repositories at a time.

Items of one repository share a key (their BatchGetImage batches stay whole); items without one
(the project's own tests) stay in every share.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

Item = TypeVar("Item")


def share(items: Sequence[Item], key: Callable[[Item], str | None], index: int, total: int) -> list[Item]:
    """The items in share `index` (1-based) of `total`."""
    groups: dict[str, int] = {}
    for item in items:
        name = key(item)
        if name is not None:
            groups[name] = groups.get(name, 0) + 1
    keep = set(shard_of(groups, total)[index - 1])
    return [item for item in items if key(item) is None or key(item) in keep]


def shard_of(groups: dict[str, int], total: int) -> list[list[str]]:
    """Deal the groups (key -> item count) to `total` shards, biggest first to the lightest shard,
    ties by key: every job computes the same split from the same specs."""
    shards: list[list[str]] = [[] for _ in range(total)]
    load = [0] * total
    for name in sorted(groups, key=lambda k: (-groups[k], k)):
        lightest = min(range(total), key=lambda n: (load[n], n))
        shards[lightest].append(name)
        load[lightest] += groups[name]
    return shards
