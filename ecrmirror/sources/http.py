"""A Helm repository served over HTTP(S): its index.yaml (downloaded once, kept, revalidated) and archives."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests

from ecrmirror import transport
from ecrmirror.chart import MAX_CHART_SIZE
from ecrmirror.errors import UpstreamError
from ecrmirror.share import once_per_run, write_atomically
from ecrmirror.sources.download import download_archive, download_provenance
from ecrmirror.sources.index import Index, IndexCache, load_index_document, release_from_index
from ecrmirror.sources.release import NO_ACCESS, ChartRelease
from ecrmirror.spec import Access
from ecrmirror.transport import describe_error

# Upstreams are not trusted to end their answers: an index stops being read here.
MAX_INDEX_BYTES = 128 * 1024 * 1024  # the biggest public indexes are tens of MB


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
        # An http:// repository URL: the user chose plain http for its host (transport.Http.get).
        self._plain_http = url if urlsplit(url).scheme == "http" else None
        self._index: Index | None = None
        self._failure: UpstreamError | None = None
        self._index_lock = threading.Lock()  # jobs (threads) wait for the one download
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

    def index(self) -> Index:
        """The index, downloaded once per run; a failed download (after the session's retries)
        is not tried again by every item that needs it."""
        if self._index is not None:
            return self._index
        with self._index_lock:
            if self._failure is not None:
                raise self._failure
            if self._index is None:
                try:
                    self._index = Index(self.index_url, self._document())
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
        parts = urlsplit(self.index_url)
        saved = {
            # For whoever reads the cache: without user information or query, which may be credentials.
            "url": urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query="")),
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
        deadline = self._http.deadline()

        def attempt() -> tuple[requests.Response, bytes]:
            response = self._http.get(
                url,
                credentials_for=self.credentials_for,
                verify=self._access.verify,
                headers=headers,
                plain_http=self._plain_http,
            )
            with response:
                # Read inside the attempt (a cut-short body is retried), and never without bound.
                ok = response.status_code == 200
                body = self._http.read(response, url, limit=MAX_INDEX_BYTES, deadline=deadline) if ok else b""
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
            note = transport.hop_note(response, url, self._plain_http)
            raise UpstreamError(
                f"cannot download {url}{f' ({note})' if note else ''}: HTTP "
                f"{response.status_code} {response.reason}{transport.attempts_note(response)}. Check the "
                "repo URL in the spec."
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
        return release_from_index(index, name, version, self.chart_url(urls[0]))

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
        return download_archive(
            self._http,
            release,
            workdir,
            self.credentials_for,
            self._access.verify,
            self._max_chart_size,
            plain_http=self._plain_http,
        )

    def provenance(self, release: ChartRelease, workdir: Path) -> Path | None:
        """`<archive URL>.prov`, as helm looks for it; None when the upstream publishes none."""
        return download_provenance(
            self._http, release, workdir, self.credentials_for, self._access.verify, self._plain_http
        )
