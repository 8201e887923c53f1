"""A local directory as an upstream: an index.yaml, packaged .tgz charts, or both."""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from ecrmirror import transport
from ecrmirror.chart import MAX_CHART_SIZE, read_chart_metadata
from ecrmirror.errors import UpstreamError
from ecrmirror.sources.download import (
    download_archive,
    download_provenance,
    file_digest,
    no_credentials,
    verify_digest,
)
from ecrmirror.sources.index import parse_index, release_from_index
from ecrmirror.sources.release import ChartRelease, lookup, versions_of


class LocalRepository:
    """A directory holding an index.yaml, packaged .tgz charts, or both."""

    def __init__(self, directory: Path, http: transport.Http, max_chart_size: int = MAX_CHART_SIZE) -> None:
        self.location = str(directory)
        self._directory = directory
        self._http = http
        self._max_chart_size = max_chart_size
        # name -> version -> how to make its release: index entries are checked (digest and all)
        # only when asked for, so one bad entry cannot break the versions next to it.
        self._releases: dict[str, dict[str, Callable[[], ChartRelease]]] | None = None
        self._scan_lock = threading.Lock()  # jobs (threads) wait for the one scan

    def _scan(self) -> dict[str, dict[str, Callable[[], ChartRelease]]]:
        if self._releases is not None:
            return self._releases
        with self._scan_lock:
            if self._releases is None:
                self._releases = self._read_directory()
            return self._releases

    def _read_directory(self) -> dict[str, dict[str, Callable[[], ChartRelease]]]:
        if not self._directory.is_dir():
            raise UpstreamError(
                f"{self._directory} is not a directory; repo must be an http(s) "
                "URL or a directory (relative to the spec) of charts"
            )
        releases: dict[str, dict[str, Callable[[], ChartRelease]]] = {}
        indexed: set[str] = set()
        index_path = self._directory / "index.yaml"
        if index_path.is_file():
            index = parse_index(str(index_path), index_path.read_bytes())
            for name, versions in index.entries.items():
                for version, entry in versions.items():
                    url = str((entry.get("urls") or [""])[0])
                    target = url if re.match(r"^https?://", url) else self._inside(url)
                    indexed.add(target)
                    releases.setdefault(name, {})[version] = partial(
                        release_from_index, index, name, version, target
                    )
        for archive in sorted(self._directory.glob("*.tgz")):
            if str(archive) in indexed:
                continue
            metadata = read_chart_metadata(archive, max_chart_size=self._max_chart_size)
            name, version = str(metadata.get("name")), str(metadata.get("version"))
            releases.setdefault(name, {}).setdefault(
                version,
                partial(
                    ChartRelease,
                    name=name,
                    version=version,
                    digest=file_digest(archive),
                    url=str(archive),
                    created=None,
                    source=str(self._directory),
                ),
            )
        return releases

    def _inside(self, listed: str) -> str:
        """A path the index lists, as long as it stays inside the repository directory."""
        if re.match(r"^[a-z][a-z0-9+.-]*:", listed):
            return listed  # another scheme: refused when the version is asked for (see fetch)
        path = (self._directory / listed).resolve()
        if not path.is_relative_to(self._directory.resolve()):
            return f"outside:{listed}"
        return str(path)

    def versions(self, name: str) -> list[str]:
        return list(versions_of(self._scan(), name, str(self._directory)))

    def metadata(self, name: str, version: str) -> dict[str, Any]:
        release = self.release(name, version)
        if re.match(r"^https?://", release.url):
            raise UpstreamError(
                f"{name} {version} in {self._directory} is an archive on {release.url}; "
                "list its repository as a chart of its own instead"
            )
        return read_chart_metadata(Path(release.url), release.url, self._max_chart_size)

    def release(self, name: str, version: str) -> ChartRelease:
        return lookup(self._scan(), name, version, str(self._directory))()

    def fetch(self, release: ChartRelease, workdir: Path) -> Path:
        if re.match(r"^https?://", release.url):
            return download_archive(self._http, release, workdir, max_bytes=self._max_chart_size)
        if release.url.startswith("outside:") or re.match(r"^[a-z][a-z0-9+.-]*:", release.url):
            raise UpstreamError(
                f"{self._directory}/index.yaml lists {release.url.removeprefix('outside:')!r} for "
                f"{release.name} {release.version}: a local index may only point inside its directory "
                "or at http(s) URLs"
            )
        source = Path(release.url)
        if not source.is_file():
            raise UpstreamError(f"{source} is listed in {release.source} but does not exist")
        target = Path(tempfile.mkstemp(dir=workdir, suffix=".tgz")[1])
        shutil.copyfile(source, target)  # the copy is what gets verified and pushed
        verify_digest(target, release)
        return target

    def provenance(self, release: ChartRelease, workdir: Path) -> Path | None:
        if re.match(r"^https?://", release.url):
            return download_provenance(self._http, release, workdir, no_credentials, True)
        source = Path(release.url + ".prov")
        if not source.is_file():
            return None
        target = Path(tempfile.mkstemp(dir=workdir, suffix=".prov")[1])
        shutil.copyfile(source, target)
        return target
