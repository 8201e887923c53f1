"""Upstreams behind one protocol: an HTTP(S) Helm repository, a local directory, an OCI registry.

Each lists a chart's versions, gives its metadata (Chart.yaml's fields) and hands over archives
verified by digest (`Source` in release.py). `Sources` opens each location of a run once.
"""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from ecrmirror.chart import MAX_CHART_SIZE
from ecrmirror.errors import UpstreamError
from ecrmirror.sources.index import IndexCache, parse_index
from ecrmirror.sources.release import NO_ACCESS, ChartRelease, Source

if TYPE_CHECKING:
    from ecrmirror import transport
    from ecrmirror.sources.oci import OciRepository
    from ecrmirror.spec import Access

__all__ = [
    "NO_ACCESS",
    "ChartRelease",
    "IndexCache",
    "OciRepository",
    "Source",
    "Sources",
    "is_registry",
    "parse_index",
]


def __getattr__(name: str) -> Any:
    # The kinds' modules are imported when a run opens a source of their kind: an OCI registry's
    # client (and its requests) costs nothing to a run with none.
    if name == "OciRepository":
        from ecrmirror.sources.oci import OciRepository

        return OciRepository
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_registry(source: Source) -> TypeGuard[OciRepository]:
    """`source` is an OCI registry, asked without importing the OCI client: a run that made an
    OciRepository has its module loaded, and one that has not holds none."""
    oci = sys.modules.get("ecrmirror.sources.oci")
    return oci is not None and isinstance(source, oci.OciRepository)


class Sources:
    """Every upstream of one run, each opened once: one index download per source per run."""

    def __init__(
        self, http: transport.Http, cache: IndexCache | None = None, max_chart_size: int = MAX_CHART_SIZE
    ) -> None:
        self._http = http
        self._cache = cache or IndexCache()
        self.max_chart_size = max_chart_size
        self._sources: dict[tuple[str, Access], Source] = {}
        self._lock = threading.Lock()  # jobs (threads) open a source once

    def get(self, location: str, access: Access = NO_ACCESS) -> Source:
        key = (location, access)
        with self._lock:
            return self._sources.get(key) or self._open(key)

    def _open(self, key: tuple[str, Access]) -> Source:
        location, access = key
        source: Source
        if re.match(r"^https?://", location):
            from ecrmirror.sources.http import HttpRepository

            source = HttpRepository(location, self._http, access, self._cache, self.max_chart_size)
        elif location.startswith("oci://"):
            from ecrmirror.sources.oci import OciRepository

            source = OciRepository(location, self._http, access, self.max_chart_size)
        elif re.match(r"^[a-z][a-z0-9+.-]*://", location):
            raise UpstreamError(
                f"{location}: unsupported repository scheme; use an http(s):// Helm repository, "
                "an oci:// registry path, or a local directory"
            )
        else:
            from ecrmirror.sources.local import LocalRepository

            source = LocalRepository(Path(location), self._http, self.max_chart_size)
        self._sources[key] = source
        return source
