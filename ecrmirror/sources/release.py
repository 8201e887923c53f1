"""What every upstream hands over (ChartRelease, the Source protocol) and how a missing chart is told."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ecrmirror.constraints import version_problem
from ecrmirror.errors import VersionNotFound
from ecrmirror.spec import Access

NO_ACCESS = Access()
T = TypeVar("T")


@dataclass(frozen=True)
class ChartRelease:
    """One chart version as its upstream lists it."""

    name: str
    version: str
    digest: str  # "sha256:<hex>" of the .tgz
    url: str  # an http(s) URL, or a local file path
    created: str | None  # RFC 3339 UTC, from the index; None when the upstream gives none
    source: str  # where it was listed, for messages
    oci: bool = False  # from an OCI registry: `digest` is the manifest's, copied unchanged


class Source(Protocol):
    """An upstream: a chart's versions and Chart.yaml fields, and its archives verified by digest."""

    location: str

    def versions(self, name: str) -> list[str]: ...

    def metadata(self, name: str, version: str) -> dict[str, Any]: ...

    def release(self, name: str, version: str) -> ChartRelease: ...

    def fetch(self, release: ChartRelease, workdir: Path) -> Path: ...

    def provenance(self, release: ChartRelease, workdir: Path) -> Path | None: ...


def versions_of(table: Mapping[str, Mapping[str, T]], name: str, location: str) -> Mapping[str, T]:
    """table[name], or VersionNotFound naming the charts the upstream does have."""
    versions = table.get(name)
    if versions is None:
        raise VersionNotFound(
            f"chart {name!r} is not in {location}; it lists "
            f"{_summarize(sorted(table), near=name)}. Check the chart name and repo."
        )
    return versions


def lookup(table: Mapping[str, Mapping[str, T]], name: str, version: str, location: str) -> T:
    """table[name][version], or VersionNotFound naming what the upstream does have."""
    versions = versions_of(table, name, location)
    found = versions.get(version)
    if found is None:
        raise VersionNotFound(
            f"{name} {version} is not in {location}; nearest versions there: "
            f"{', '.join(nearest_versions(version, versions)) or 'none'}. "
            "Fix the version in the spec."
        )
    return found


def version_key(version: str) -> tuple[Any, ...]:
    """An ordering close to semver's: numbers numerically, a prerelease before its release. Any
    string has a key: an upstream's versions are not all versions (see constraints.version_problem)."""
    core, _, _build = version.partition("+")
    release, dash, pre = core.partition("-")
    # ASCII digits only, and few enough for int() (which takes Unicode digits, and refuses more
    # than 4,300 of them): anything else orders as 0.
    numbers = tuple(
        int(p) if p.isascii() and p.isdigit() and len(p) <= 20 else 0 for p in release.lstrip("v").split(".")
    )
    return (numbers, 0 if dash else 1, pre)


def nearest_versions(version: str, available: Iterable[str], count: int = 2) -> list[str]:
    """The versions next to `version` among `available`, for a message: only those that could be
    mirrored, so that a message never quotes a hostile one."""
    ordered = sorted({v for v in available if version_problem(v) is None}, key=version_key)
    key = version_key(version)
    position = sum(1 for v in ordered if version_key(v) < key)
    return ordered[max(0, position - count) : position + count]


def _summarize(names: list[str], near: str) -> str:
    if not names:
        return "no charts"
    close = difflib.get_close_matches(near, names, n=3)
    shown = close or names[:10]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" (and {more} more)" if more > 0 else "")
