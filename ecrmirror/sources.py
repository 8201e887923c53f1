"""Upstream chart repositories: list a chart's versions and hand over archives verified by digest."""

from __future__ import annotations

import base64
import difflib
import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
import yaml

from ecrmirror import transport
from ecrmirror.chart import MAX_CHART_SIZE, normalize_created, read_chart_metadata
from ecrmirror.errors import DigestMismatch, EcrMirrorError, UpstreamError, VersionNotFound
from ecrmirror.share import once_per_run, write_atomically
from ecrmirror.spec import Access
from ecrmirror.transport import describe_error

try:  # a Rust YAML parser, much faster on big indexes; optional
    import yaml_rs as _fast_yaml
except ImportError:  # pragma: no cover - depends on the platform's wheels
    _fast_yaml = None  # type: ignore[assignment]

try:
    from yaml import CSafeLoader as _IndexLoader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _IndexLoader  # type: ignore[assignment]

_CHUNK = 1 << 20
# Upstreams are not trusted to end their answers: an index or archive stops being read here.
MAX_INDEX_BYTES = 128 * 1024 * 1024  # the biggest public indexes are tens of MB
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
    location: str

    def versions(self, name: str) -> list[str]: ...

    def metadata(self, name: str, version: str) -> dict[str, Any]: ...

    def release(self, name: str, version: str) -> ChartRelease: ...

    def fetch(self, release: ChartRelease, workdir: Path) -> Path: ...

    def provenance(self, release: ChartRelease, workdir: Path) -> Path | None: ...


class Sources:
    """Every upstream of one run, each opened once: one index download per source per run."""

    def __init__(
        self, http: transport.Http, cache: IndexCache | None = None, max_chart_size: int = MAX_CHART_SIZE
    ) -> None:
        self._http = http
        self._cache = cache or IndexCache()
        self.max_chart_size = max_chart_size
        self._sources: dict[tuple[str, Access], Source] = {}

    def get(self, location: str, access: Access = NO_ACCESS) -> Source:
        key = (location, access)
        if key not in self._sources:
            source: Source
            if re.match(r"^https?://", location):
                source = HttpRepository(location, self._http, access, self._cache, self.max_chart_size)
            elif location.startswith("oci://"):
                from ecrmirror.oci import OciRepository  # here: ecrmirror.oci builds on this module

                source = OciRepository(location, self._http, access)
            elif re.match(r"^[a-z][a-z0-9+.-]*://", location):
                raise UpstreamError(
                    f"{location}: unsupported repository scheme; use an http(s):// Helm repository, "
                    "an oci:// registry path, or a local directory"
                )
            else:
                source = LocalRepository(Path(location), self._http, self.max_chart_size)
            self._sources[key] = source
        return self._sources[key]


class _Index:
    """A parsed index.yaml: chart name -> version -> entry."""

    def __init__(self, location: str, document: Any) -> None:
        if not isinstance(document, dict) or not isinstance(document.get("entries"), dict):
            raise UpstreamError(f"{location} is not a Helm repository index (no `entries` mapping)")
        if not document.get("apiVersion"):
            raise UpstreamError(f"{location} has no apiVersion, so helm would not read it either")
        self.location = location
        self.entries: dict[str, dict[str, dict[str, Any]]] = {}
        for name, versions in document["entries"].items():
            by_version: dict[str, dict[str, Any]] = {}
            for entry in versions or []:
                if isinstance(entry, dict) and entry.get("version") is not None:
                    by_version[str(entry["version"])] = entry
            self.entries[str(name)] = by_version

    def entry(self, name: str, version: str) -> dict[str, Any]:
        return _lookup(self.entries, name, version, self.location)

    def versions(self, name: str) -> list[str]:
        return list(_chart(self.entries, name, self.location))


def _chart(table: Mapping[str, Mapping[str, T]], name: str, location: str) -> Mapping[str, T]:
    """table[name], or VersionNotFound naming the charts the upstream does have."""
    versions = table.get(name)
    if versions is None:
        raise VersionNotFound(
            f"chart {name!r} is not in {location}; it lists "
            f"{_summarize(sorted(table), near=name)}. Check the chart name and repo."
        )
    return versions


def _lookup(table: Mapping[str, Mapping[str, T]], name: str, version: str, location: str) -> T:
    """table[name][version], or VersionNotFound naming what the upstream does have."""
    versions = _chart(table, name, location)
    found = versions.get(version)
    if found is None:
        raise VersionNotFound(
            f"{name} {version} is not in {location}; nearest versions there: "
            f"{', '.join(nearest_versions(version, versions)) or 'none'}. "
            "Fix the version in the spec."
        )
    return found


@dataclass(frozen=True)
class IndexCache:
    """Where parsed indexes are kept as JSON (which loads many times faster than YAML parses).

    `shared` is this run's own directory: under pytest-xdist the first worker downloads and parses
    an index, the others read its JSON. `keep` (ecrmirror_cache_dir, for CI caches) lasts across
    runs: an index there is revalidated with a conditional GET (ETag, Last-Modified).
    """

    shared: Path | None = None
    keep: Path | None = None


def parse_index(location: str, text: str | bytes, fast: bool = True) -> _Index:
    return _Index(location, load_index_document(location, text, fast))


def load_index_document(location: str, text: str | bytes, fast: bool = True) -> Any:
    """An index file, parsed with yaml-rs (Rust) when it is installed: a 25 MB index takes it about
    1.5 s, where PyYAML's C loader needs about 28 s, because PyYAML builds its objects in Python.
    PyYAML stays as the fallback (and for spec files, where line numbers matter); tests check
    that both read indexes alike."""
    if fast and _fast_yaml is not None:
        try:
            raw = text.decode("utf-8") if isinstance(text, bytes) else text
            document = _fast_yaml.loads(
                raw, parse_datetime=False, duplicate_key_policy=_fast_yaml.DuplicateKeyPolicy.LastWins
            )
        except (ValueError, UnicodeDecodeError) as exc:
            raise UpstreamError(f"{location}: the index is not valid YAML or JSON: {exc}") from None
        return document
    try:
        return yaml.load(text, Loader=_IndexLoader)
    except yaml.YAMLError as exc:
        raise UpstreamError(f"{location}: the index is not valid YAML or JSON: {exc}") from None


def _release(index: _Index, name: str, version: str, url: str) -> ChartRelease:
    entry = index.entry(name, version)
    digest = entry.get("digest")
    digest = digest.strip().lower() if isinstance(digest, str) else None
    if digest is None or not re.fullmatch(r"(sha256:)?[0-9a-f]{64}", digest):
        raise UpstreamError(
            f"{name} {version} in {index.location} has no valid sha256 digest, so "
            "its archive cannot be verified; ask the publisher to regenerate the "
            "index with `helm repo index`"
        )
    return ChartRelease(
        name=name,
        version=version,
        digest=digest if digest.startswith("sha256:") else f"sha256:{digest}",
        url=url,
        created=normalize_created(entry.get("created")),
        source=index.location,
    )


class HttpRepository:
    """A Helm repository served over HTTP(S): index.yaml plus archives."""

    def __init__(
        self,
        url: str,
        http: transport.Http,
        access: Access = NO_ACCESS,
        cache: IndexCache | None = None,
        max_chart_size: int = MAX_CHART_SIZE,
    ) -> None:
        self.location = url
        self._http = http
        self._max_chart_size = max_chart_size
        self._cache = cache or IndexCache()
        self._access = access
        self._host = urlsplit(url).netloc
        self._index: _Index | None = None
        self._failure: UpstreamError | None = None
        parts = urlsplit(url)
        # helm forces a trailing slash on the path and keeps the query string.
        self._base = urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/", query=""))
        self._query = parts.query

    def _with_query(self, url: str) -> str:
        parts = urlsplit(url)
        if self._query and not parts.query:
            return urlunsplit(parts._replace(query=self._query))
        return url

    @property
    def index_url(self) -> str:
        return self._with_query(urljoin(self._base, "index.yaml"))

    def index(self) -> _Index:
        """The index, downloaded once per run; a failed download (after the session's retries)
        is not tried again by every item that needs it."""
        if self._failure is not None:
            raise self._failure
        if self._index is None:
            try:
                self._index = _Index(self.index_url, self._document())
            except UpstreamError as exc:
                self._failure = exc
                raise
        return self._index

    def _document(self) -> Any:
        """The parsed index: from this run's shared copy, else downloaded (revalidated when kept)."""
        return once_per_run(self._cache.shared, self.index_url, self._download_document)

    def _download_document(self) -> Any:
        keep = self._cache.keep
        if keep is None:
            return self._download_index(headers={})[1]
        key = hashlib.sha256(self.index_url.encode()).hexdigest()[:32]
        data, meta = keep / f"{key}.json", keep / f"{key}.meta.json"
        validators: dict[str, str] = {}
        kept: Any = None
        try:  # a cache that is missing, half-deleted or hand-edited is simply not used
            saved = json.loads(meta.read_text())
            kept = json.loads(data.read_bytes())
            validators = {
                name: str(saved[key])
                for name, key in (("If-None-Match", "etag"), ("If-Modified-Since", "last_modified"))
                if saved.get(key)
            }
        except (OSError, ValueError, TypeError, AttributeError):
            validators = {}
        response, document = self._download_index(headers=validators)
        if response.status_code == 304:
            return kept
        keep.mkdir(parents=True, exist_ok=True)
        write_atomically(data, json.dumps(document, default=str).encode())
        saved = {
            "url": self.index_url,
            "etag": response.headers.get("ETag"),
            "last_modified": response.headers.get("Last-Modified"),
        }
        write_atomically(meta, json.dumps(saved).encode())
        return document

    def credentials_for(self, url: str) -> dict[str, str]:
        """The repository's credentials for `url`: only on its own host, unless the spec says
        pass_credentials (helm's rule since CVE-2021-32690)."""
        credentials = self._access.credentials
        if credentials is None or not (urlsplit(url).netloc == self._host or self._access.pass_credentials):
            return {}
        if credentials.token:
            return {"Authorization": f"Bearer {credentials.token}"}
        pair = f"{credentials.username}:{credentials.password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}

    def _download_index(self, headers: dict[str, str]) -> tuple[requests.Response, Any]:
        """GET the index (conditionally, with `headers`): the response, and the parsed document
        unless the answer was 304 Not Modified."""
        url = self.index_url

        def attempt() -> tuple[requests.Response, bytes]:
            response = self._http.get(
                url,
                credentials_for=self.credentials_for,
                verify=self._access.verify,
                stream=True,
                headers=headers,
            )
            with response:
                # Read inside the attempt (a cut-short body is retried), and never without bound.
                body = _read_capped(response, MAX_INDEX_BYTES, url) if response.status_code == 200 else b""
            return response, body

        try:
            response, body = self._http.retrying(attempt, what=f"download of {url}")
        except requests.exceptions.SSLError as exc:
            raise UpstreamError(
                f"cannot verify the TLS certificate of {url}: {describe_error(exc)}. If the repository "
                "uses a private CA, give its certificate as ca_file on the chart entry."
            ) from None
        except requests.RequestException as exc:
            raise UpstreamError(f"cannot download {url}: {describe_error(exc)}") from None
        if response.status_code == 304 and headers:
            return response, None
        if response.status_code != 200:
            raise UpstreamError(
                f"cannot download {url}: HTTP {response.status_code} "
                f"{response.reason}{transport.attempts_note(response)}. Check the repo URL in the spec."
            )
        return response, load_index_document(url, body)

    def versions(self, name: str) -> list[str]:
        return self.index().versions(name)

    def metadata(self, name: str, version: str) -> dict[str, Any]:
        """Chart.yaml's fields, as `helm repo index` copies them into the index entry."""
        return self.index().entry(name, version)

    def release(self, name: str, version: str) -> ChartRelease:
        index = self.index()
        urls = index.entry(name, version).get("urls") or []
        if not urls or not isinstance(urls[0], str):
            raise UpstreamError(f"{name} {version} in {index.location} lists no download URL")
        return _release(index, name, version, self.chart_url(urls[0]))

    def chart_url(self, listed: str) -> str:
        """As helm resolves it: an absolute URL as it is; a relative one against the repository,
        with the repository's query string (which may be a signature for this host only).

        Only http(s) is followed: an index must never make ecrmirror read a local file or talk
        to another kind of service."""
        scheme = urlsplit(listed).scheme
        if scheme and scheme not in ("http", "https"):
            raise UpstreamError(
                f"{self.location} lists a chart URL with scheme {scheme!r} ({listed[:100]}); only http(s) "
                "chart URLs are downloaded"
            )
        if scheme:
            return listed
        return self._with_query(urljoin(self._base, listed))

    def fetch(self, release: ChartRelease, workdir: Path) -> Path:
        return _download(
            self._http, release, workdir, self.credentials_for, self._access.verify, self._max_chart_size
        )

    def provenance(self, release: ChartRelease, workdir: Path) -> Path | None:
        """`<archive URL>.prov`, as helm looks for it; None when the upstream publishes none."""
        return _download_provenance(self._http, release, workdir, self.credentials_for, self._access.verify)


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

    def _scan(self) -> dict[str, dict[str, Callable[[], ChartRelease]]]:
        if self._releases is not None:
            return self._releases
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
                    releases.setdefault(name, {})[version] = partial(_release, index, name, version, target)
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
                    digest=_file_digest(archive),
                    url=str(archive),
                    created=None,
                    source=str(self._directory),
                ),
            )
        self._releases = releases
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
        return list(_chart(self._scan(), name, str(self._directory)))

    def metadata(self, name: str, version: str) -> dict[str, Any]:
        release = self.release(name, version)
        if re.match(r"^https?://", release.url):
            raise UpstreamError(
                f"{name} {version} in {self._directory} is an archive on {release.url}; "
                "list its repository as a chart of its own instead"
            )
        return read_chart_metadata(Path(release.url), release.url, self._max_chart_size)

    def release(self, name: str, version: str) -> ChartRelease:
        return _lookup(self._scan(), name, version, str(self._directory))()

    def fetch(self, release: ChartRelease, workdir: Path) -> Path:
        if re.match(r"^https?://", release.url):
            return _download(self._http, release, workdir, max_bytes=self._max_chart_size)
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
        _verify(target, release)
        return target

    def provenance(self, release: ChartRelease, workdir: Path) -> Path | None:
        if re.match(r"^https?://", release.url):
            return _download_provenance(self._http, release, workdir, _no_credentials, True)
        source = Path(release.url + ".prov")
        if not source.is_file():
            return None
        target = Path(tempfile.mkstemp(dir=workdir, suffix=".prov")[1])
        shutil.copyfile(source, target)
        return target


def _read_capped(response: requests.Response, limit: int, url: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise UpstreamError(f"{url} is larger than {limit} bytes; ecrmirror stopped reading it")
        chunks.append(chunk)
    return b"".join(chunks)


def _no_credentials(url: str) -> dict[str, str]:
    return {}


def _download(
    http: transport.Http,
    release: ChartRelease,
    workdir: Path,
    credentials_for: Callable[[str], dict[str, str]] = _no_credentials,
    verify: bool | str = True,
    max_bytes: int = MAX_CHART_SIZE,
) -> Path:
    """Stream the archive to disk and verify it; a body cut short is downloaded again.

    An archive is never bigger than the chart it decompresses to, so the chart limit caps it too.
    """
    target = Path(tempfile.mkstemp(dir=workdir, suffix=".tgz")[1])

    def attempt() -> Path:
        with (
            open(target, "wb") as out,
            http.get(release.url, credentials_for=credentials_for, verify=verify, stream=True) as resp,
        ):
            if resp.status_code != 200:
                raise UpstreamError(
                    f"cannot download {release.url}: HTTP {resp.status_code} {resp.reason}"
                    + transport.attempts_note(resp)
                )
            size = 0
            for chunk in resp.iter_content(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise UpstreamError(
                        f"{release.url} is larger than {max_bytes} bytes, more than a chart may be "
                        f"(helm's limit is {MAX_CHART_SIZE} decompressed; ini ecrmirror_max_chart_size "
                        "raises ecrmirror's); nothing was pushed"
                    )
                out.write(chunk)
        return target

    try:
        http.retrying(attempt, what=f"download of {release.url}")
        _verify(target, release)
    except requests.RequestException as exc:
        target.unlink(missing_ok=True)
        raise UpstreamError(f"cannot download {release.url}: {describe_error(exc)}") from None
    except EcrMirrorError:
        target.unlink(missing_ok=True)
        raise
    return target


def _download_provenance(
    http: transport.Http,
    release: ChartRelease,
    workdir: Path,
    credentials_for: Callable[[str], dict[str, str]],
    verify: bool | str,
) -> Path | None:
    url = _with_suffix(release.url, ".prov")
    try:
        with http.get(url, credentials_for=credentials_for, verify=verify, stream=True) as resp:
            if resp.status_code in (403, 404):  # object stores answer 403 for a missing key
                return None
            if resp.status_code != 200:
                raise UpstreamError(f"cannot download {url}: HTTP {resp.status_code} {resp.reason}")
            target = Path(tempfile.mkstemp(dir=workdir, suffix=".prov")[1])
            with open(target, "wb") as out:
                for chunk in resp.iter_content(_CHUNK):
                    out.write(chunk)
            return target
    except requests.RequestException as exc:
        raise UpstreamError(f"cannot download {url}: {describe_error(exc)}") from None


def _with_suffix(url: str, suffix: str) -> str:
    """`url` with `suffix` after its path, keeping a query string (helm keeps the repo's query)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path + suffix))


def _verify(path: Path, release: ChartRelease) -> None:
    actual = _file_digest(path)
    if actual != release.digest:
        path.unlink(missing_ok=True)
        raise DigestMismatch(
            f"{release.name} {release.version}: the archive from {release.url} has digest {actual}, "
            f"but {release.source} says {release.digest}. Nothing was pushed. The upstream may have "
            "republished this version or the download was corrupted; investigate before mirroring."
        )


def _file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest()


def version_key(version: str) -> tuple[Any, ...]:
    """An ordering close to semver's: numbers numerically, a prerelease before its release."""
    core, _, _build = version.partition("+")
    release, dash, pre = core.partition("-")
    numbers = tuple(int(p) if p.isdigit() else 0 for p in release.lstrip("v").split("."))
    return (numbers, 0 if dash else 1, pre)


def nearest_versions(version: str, available: Iterable[str], count: int = 2) -> list[str]:
    ordered = sorted(set(available), key=version_key)
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
