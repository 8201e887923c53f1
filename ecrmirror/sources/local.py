"""A local directory as an upstream: an index.yaml, packaged .tgz charts, or both, read as helm reads them."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ecrmirror import transport
from ecrmirror.chart import MAX_CHART_SIZE, read_chart_metadata
from ecrmirror.errors import EcrMirrorError, UpstreamError, VersionNotFound
from ecrmirror.sources.download import (
    download_archive,
    download_provenance,
    file_digest,
    no_credentials,
    verify_digest,
)
from ecrmirror.sources.index import Index, parse_index, release_from_index
from ecrmirror.sources.release import ChartRelease, lookup, versions_of

_HTTP = re.compile(r"^https?://")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:")


@dataclass(frozen=True)
class _Found:
    """One place a directory holds a chart version: an archive in it, or an entry of its index.yaml."""

    where: str  # for messages: the archive's path, or the index entry's URL
    digest: str | None  # "sha256:<hex>", when known
    release: Callable[[], ChartRelease]


class LocalRepository:
    """A directory holding an index.yaml, packaged .tgz charts, or both.

    Its archives are those `helm repo index DIR` indexes: `*.tgz` in it and in its subdirectories
    one level down (helm's IndexDirectory globs `*.tgz` and `**/*.tgz`, and Go's filepath.Glob
    reads `**` as `*`), hidden ones too, each read as helm's loader reads it. An index.yaml, if
    there is one, lists more (or the same) versions. Where ecrmirror is stricter than helm:

    - Nothing outside the directory is read: an archive, a listed path or a .prov that is a link
      to a file outside it is refused, naming both (helm follows links anywhere).
    - One version held as two different archives (or an index entry and an archive that differ)
      is an error for that version, naming both (helm indexes both and later picks one). The
      same bytes twice, such as a link to an archive next to it, are one archive.
    - An archive whose chart cannot be read (not a chart, corrupt, refused) fails nothing else,
      as helm skips it; but it is not forgotten: a version that no readable archive holds fails
      with that archive's error when its file is named <name>-<version>.tgz (as `helm package`
      names it), and otherwise the "not in" message lists the archives that could not be read.
    """

    def __init__(self, directory: Path, http: transport.Http, max_chart_size: int = MAX_CHART_SIZE) -> None:
        self.location = str(directory)
        self._directory = directory
        self._http = http
        self._max_chart_size = max_chart_size
        # name -> version -> how to make its release: index entries and archives are checked
        # (digest and all) only when asked for, so one bad version cannot break its neighbours.
        self._releases: dict[str, dict[str, Callable[[], ChartRelease]]] | None = None
        self._unreadable: list[tuple[Path, EcrMirrorError]] = []  # archives whose chart is unknown
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
        found: dict[str, dict[str, list[_Found]]] = {}
        indexed = self._read_index(found)
        for archive in self._archives():
            try:
                resolved = self._inside(archive)
                if resolved in indexed:
                    continue
                metadata = read_chart_metadata(archive, max_chart_size=self._max_chart_size)
                name, version = str(metadata.get("name") or ""), str(metadata.get("version") or "")
                if not name or not version:
                    raise UpstreamError(f"{archive}: its Chart.yaml gives no chart name or no version")
            except EcrMirrorError as exc:
                self._unreadable.append((archive, exc))
                continue
            digest = file_digest(resolved)
            release = partial(
                ChartRelease,
                name=name,
                version=version,
                digest=digest,
                url=str(archive),
                created=None,
                source=str(self._directory),
            )
            found.setdefault(name, {}).setdefault(version, []).append(_Found(str(archive), digest, release))
        return {
            name: {version: self._one(name, version, places) for version, places in versions.items()}
            for name, versions in found.items()
        }

    def _read_index(self, found: dict[str, dict[str, list[_Found]]]) -> set[Path]:
        """Add index.yaml's versions to `found`; the archives it lists (not to be scanned again)."""
        index_path = self._directory / "index.yaml"
        if not index_path.is_file():
            return set()
        index = parse_index(str(index_path), self._inside(index_path).read_bytes())
        indexed: set[Path] = set()
        for name, versions in index.entries.items():
            for version, entry in versions.items():
                for each in index.listed(name, version):
                    target = self._listed(str((each.get("urls") or [""])[0]), name, version)[0]
                    if isinstance(target, Path):
                        indexed.add(target)
                listed = str((entry.get("urls") or [""])[0])
                target, problem = self._listed(listed, name, version)
                digest = entry.get("digest")
                digest = digest.strip().lower().removeprefix("sha256:") if isinstance(digest, str) else ""
                found.setdefault(name, {}).setdefault(version, []).append(
                    _Found(
                        f"{listed} (listed in {index_path})",
                        f"sha256:{digest}" if digest else None,
                        partial(self._from_index, index, name, version, str(target), problem),
                    )
                )
        return indexed

    def _archives(self) -> list[Path]:
        """The files `helm repo index` would index, in its order: `*.tgz`, then `*/*.tgz`."""
        found: list[Path] = []
        for pattern in ("*.tgz", "*/*.tgz"):
            found += sorted(path for path in self._directory.glob(pattern) if path.is_file())
        return found

    def _one(self, name: str, version: str, places: list[_Found]) -> Callable[[], ChartRelease]:
        """The one release a version has, or, for a version held as different archives, its error."""
        archives: dict[str, _Found] = {}  # an archive (by digest) -> the first place it is found
        for place in places:
            archives.setdefault(place.digest or place.where, place)
        if len(archives) == 1:
            return places[0].release
        shown = " and ".join(place.where for place in archives.values())
        error = UpstreamError(
            f"{self._directory} holds {name} {version} as {len(archives)} different archives: {shown}. "
            "helm would index them all and pick one; ecrmirror picks none. Keep one of them."
        )
        return partial(_raise, error)

    def _inside(self, path: Path) -> Path:
        """`path` with its links resolved, as long as it stays inside the directory."""
        resolved = path.resolve()
        if not resolved.is_relative_to(self._directory.resolve()):
            raise UpstreamError(
                f"{path} links to {resolved}, outside {self._directory}; a local repository only "
                "reads files inside its directory. Copy the file in instead of linking to it."
            )
        return resolved

    def _listed(self, listed: str, name: str, version: str) -> tuple[Path | str, str | None]:
        """Where an index entry's URL leads: an http(s) URL, or a path inside the directory; or
        why it may not be followed."""
        if _HTTP.match(listed):
            return listed, None
        refused = (
            f"{self._directory}/index.yaml lists {listed!r} for {name} {version}: a local index may only "
            "point inside its directory or at http(s) URLs"
        )
        if _SCHEME.match(listed):
            return listed, refused
        path = self._directory / listed
        if not Path(os.path.normpath(self._directory.resolve() / listed)).is_relative_to(
            self._directory.resolve()
        ):
            return listed, refused
        try:
            return self._inside(path), None
        except UpstreamError as exc:
            return listed, f"{self._directory}/index.yaml lists {listed!r} for {name} {version}, but {exc}"

    def _from_index(
        self, index: Index, name: str, version: str, target: str, problem: str | None
    ) -> ChartRelease:
        if problem is not None:
            raise UpstreamError(problem)
        return release_from_index(index, name, version, target)

    def versions(self, name: str) -> list[str]:
        try:
            return list(versions_of(self._scan(), name, str(self._directory)))
        except VersionNotFound as exc:
            raise VersionNotFound(str(exc) + self._unreadable_note()) from None

    def metadata(self, name: str, version: str) -> dict[str, Any]:
        release = self.release(name, version)
        if _HTTP.match(release.url):
            raise UpstreamError(
                f"{name} {version} in {self._directory} is an archive on {release.url}; "
                "list its repository as a chart of its own instead"
            )
        return read_chart_metadata(Path(release.url), release.url, self._max_chart_size)

    def release(self, name: str, version: str) -> ChartRelease:
        table = self._scan()
        try:
            make = lookup(table, name, version, str(self._directory))
        except VersionNotFound as exc:
            for archive, error in self._unreadable:
                if archive.name == f"{name}-{version}.tgz":
                    raise error from None
            raise VersionNotFound(str(exc) + self._unreadable_note()) from None
        return make()

    def _unreadable_note(self) -> str:
        if not self._unreadable:
            return ""
        error = self._unreadable[0][1]
        more = f" (and {len(self._unreadable) - 1} more)" if len(self._unreadable) > 1 else ""
        return f" It also holds archives whose chart could not be read{more}: {error}"

    def fetch(self, release: ChartRelease, workdir: Path) -> Path:
        if _HTTP.match(release.url):
            return download_archive(self._http, release, workdir, max_bytes=self._max_chart_size)
        source = Path(release.url)
        if not source.is_file():
            raise UpstreamError(f"{source} is listed in {release.source} but does not exist")
        self._inside(source)
        target = Path(tempfile.mkstemp(dir=workdir, suffix=".tgz")[1])
        shutil.copyfile(source, target)  # the copy is what gets verified and pushed
        verify_digest(target, release)
        return target

    def provenance(self, release: ChartRelease, workdir: Path) -> Path | None:
        if _HTTP.match(release.url):
            return download_provenance(self._http, release, workdir, no_credentials, True)
        source = Path(release.url + ".prov")
        if not source.is_file():
            return None
        self._inside(source)
        target = Path(tempfile.mkstemp(dir=workdir, suffix=".prov")[1])
        shutil.copyfile(source, target)
        return target

    def charts(self) -> dict[str, list[str]]:
        """Every chart the directory holds, with its versions (one that fails when asked included)."""
        return {name: list(versions) for name, versions in self._scan().items()}


def _raise(error: EcrMirrorError) -> ChartRelease:
    raise error
