"""Pull side of the OCI distribution API: tags, manifests and blobs from any registry, with its auth.

oras-py's pull client does not fit: its token backend cannot answer a Basic challenge (a
registry behind htpasswd), it retries with unbounded sleeps, and it follows redirects inside
requests. This client handles the challenge flows registries use (Basic; Bearer with an
anonymous or credentialed token request, as Docker Hub's token service expects), retries
through the shared session (urllib3's Retry), and follows redirects itself so that credentials
never go to another host (registries redirect blob GETs to object storage).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import requests

from ecrmirror import transport
from ecrmirror.chart import (
    CHART_LAYER_MEDIA_TYPE,
    MAX_CHART_SIZE,
    MAX_FILE_SIZE,
    PROVENANCE_MEDIA_TYPE,
    tag_for,
)
from ecrmirror.errors import DigestMismatch, UpstreamError, VersionNotFound
from ecrmirror.jobs import IN_FLIGHT_PER_JOB
from ecrmirror.once import KeyedLocks, once
from ecrmirror.sources.download import MAX_PROVENANCE_SIZE
from ecrmirror.sources.release import ChartRelease, nearest_versions
from ecrmirror.spec import Access, Credentials
from ecrmirror.transport import describe_error, may_carry_credentials, origin

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_NEXT = re.compile(r"<([^>]+)>\s*;\s*rel=\"?next\"?")


COSIGN_SUFFIXES = ("sig", "att", "sbom")  # cosign's tag scheme: sha256-<hex>.<suffix>
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",)
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
# What an image tag may name: a multi-platform index (OCI's or Docker's list) or one manifest.
IMAGE_TYPES = (INDEX_TYPES[0], DOCKER_LIST, *MANIFEST_TYPES)

# What a registry sends is read up to these limits, which no answer can raise.
# A manifest or an image index: ECR takes none bigger (PutImage's imageManifest is at most
# 4,194,304 characters), so a bigger one could not be mirrored. A page of a listing (tags,
# referrers) is capped the same: a full page of 1,000 tags of 128 characters is 140 KB.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# Layers in one image manifest. ECR refuses more with "Limit on number of layers per image
# exceeded"; AWS no longer documents the number (its service limits said 127, Docker's limit,
# until 2016), and 500 is what ECR was measured to take (nuonco/nuon#2348, 2026). A chart has
# one or two layers; a cosign attestation has one per attestation.
MAX_LAYERS = 500
# A listing's pages (Link: rel="next"): ecrmirror asks for 1,000 tags a page; a registry that
# gives 100 reaches MAX_TAGS within this many.
MAX_PAGES = 1_000
# Tags of one repository: ten times ECR's default quota of images per repository (10,000), and
# at most 13 MB held, at 128 characters a tag.
MAX_TAGS = 100_000
# What refers to one chart: each is an image of its own in the mirror's repository, and ECR's
# default quota is 10,000 images per repository.
MAX_REFERRERS = 10_000
# A token service's answer: JSON with a token (a JWT of a few KiB).
MAX_TOKEN_ANSWER = 1024 * 1024
# A blob read into memory (a chart's config is its Chart.yaml as JSON, a .prov a signed
# Chart.yaml): at most helm's limit for one file of a chart.
MAX_SMALL_BLOB = MAX_FILE_SIZE
_JSON_KINDS = {
    list: "a JSON list",
    str: "a JSON string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
}
T = TypeVar("T")
A = TypeVar("A")


@dataclass(frozen=True)
class Manifest:
    body: bytes  # exactly as the registry serves it: its digest is the mirror's identity
    media_type: str
    digest: str

    def blobs(self) -> list[dict[str, Any]]:
        document = json.loads(self.body)
        return [document["config"], *document.get("layers", [])]

    @property
    def is_index(self) -> bool:
        return self.media_type in (INDEX_TYPES[0], DOCKER_LIST)

    def children(self) -> list[dict[str, Any]]:
        """The descriptors an index lists (each checked when the index was read)."""
        return list(json.loads(self.body).get("manifests") or []) if self.is_index else []

    @property
    def artifact_type(self) -> str:
        """What the manifest holds: its artifactType, else its config's media type."""
        document = json.loads(self.body)
        return str(document.get("artifactType") or (document.get("config") or {}).get("mediaType") or "")


@dataclass(frozen=True)
class Referrer:
    """A manifest that refers to a chart's: a signature, an attestation, an SBOM."""

    manifest: Manifest
    tag: str | None  # cosign's tag for it; None for an OCI 1.1 referrer (found by its subject)


class OciClient:
    """One registry host: authenticated GETs of tags, manifests and blobs."""

    def __init__(
        self,
        host: str,
        http: transport.Http,
        *,
        plain_http: bool = False,
        credentials: Credentials | None = None,
        verify: bool | str = True,
        refused_hint: str = "check the chart entry's auth",
        basic_first: bool = False,
    ) -> None:
        self.host = host
        self.refused_hint = refused_hint  # what to do when the registry refuses (401/403)
        # Send Basic credentials with the first request instead of waiting for the challenge:
        # for a registry known to want them (ECR), which saves a 401 round trip per repository.
        self._basic_first = basic_first
        self.base = f"{'http' if plain_http else 'https'}://{host}"
        # The user chose plain http for this registry: credentials may go there (transport.Http.get).
        self._plain_http = self.base if plain_http else None
        self._http = http
        self._credentials = credentials
        self._verify = verify
        self._authorization: dict[str, str] = {}  # scope -> Authorization header value
        self._scope_locks = KeyedLocks()  # jobs (threads) answering one scope's challenge: one token
        self._unchallenged: set[str] = set()  # scopes the registry answered without a challenge
        self._referrers_api: bool | None = None  # unknown until the first referrers request
        self._probe_lock = threading.Lock()  # jobs asking at once: one of them probes for the API
        # The probe's own answer ((repository, digest), listed digests), asked ahead of the item
        # that wants it (probe_referrers): that item is not sent to ask again.
        self._probed: tuple[tuple[str, str], list[str] | None] | None = None
        # Docker Hub's RateLimit-Remaining, as last seen: pulls left in its window (None: no limit said)
        self.pulls_left: int | None = None
        self._pull_lock = threading.Lock()

    # -- reading -------------------------------------------------------------------------------------
    def tags(self, repository: str) -> list[str]:
        what = f"the tag list of {self.host}/{repository}"
        found: list[str] = []
        for url, response, document in self._pages(
            f"{self.base}/v2/{repository}/tags/list?n=1000", repository, what
        ):
            if response.status_code == 404:
                raise VersionNotFound(f"{self.host}/{repository} does not exist (HTTP 404 on its tag list)")
            self._expect_ok(response, what, url)
            tags = document.get("tags") or []  # a repository without tags may say null
            if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
                raise UpstreamError(
                    f"{what} ({url}) is not a registry's tag list: its `tags` is not a list of strings"
                )
            found.extend(tags)
            if len(found) > MAX_TAGS:
                raise UpstreamError(
                    f"{what} lists more than {MAX_TAGS} tags (read up to {url}); ecrmirror stopped "
                    "reading it. Mirror from a repository that holds the chart's versions only"
                )
        return found

    def referrers(self, repository: str, digest: str) -> list[str] | None:
        """The digests of the manifests whose subject is `digest`, from the referrers API; None
        when the registry does not have it (then the referrers tag schema is the way)."""
        if self._referrers_api is None or self._probe_lock.locked():
            with self._probe_lock:  # the others wait for its answer: one probe per registry
                if self._referrers_api is None:
                    return self._listed_referrers(repository, digest)
        probed = self._probed  # kept by probe_referrers before it let go of the lock
        if probed is not None and probed[0] == (repository, digest):
            return probed[1]
        return self._listed_referrers(repository, digest)

    def probe_referrers(self, repository: str, digest: str) -> None:
        """Whether the registry has the referrers API, asked now with `digest`'s referrers, ahead
        of the items: otherwise the first item to want referrers asks while every other waits
        for its answer. Nothing when the answer is known or being asked; an error is left for
        the item to meet again."""
        if self._referrers_api is not None or not self._probe_lock.acquire(blocking=False):
            return
        try:
            if self._referrers_api is None:
                found = self._listed_referrers(repository, digest)
                self._probed = ((repository, digest), found)
        finally:
            self._probe_lock.release()

    def _listed_referrers(self, repository: str, digest: str) -> list[str] | None:
        if self._referrers_api is False:
            return None
        what = f"the referrers of {self.host}/{repository}@{digest}"
        found: list[str] = []
        first = f"{self.base}/v2/{repository}/referrers/{digest}"
        for url, response, document in self._pages(first, repository, what, accept=INDEX_TYPES[0]):
            if response.status_code != 200:
                if url == first and response.status_code in (404, 405, 400):
                    self._referrers_api = False  # one probe per registry
                    return None
                self._expect_ok(response, what, url)
            self._referrers_api = True
            found.extend(_listed(document, what, url))
            _bounded_referrers(len(found), f"{self.host}/{repository}@{digest}")
        return found

    def index_digests(self, repository: str, tag: str) -> list[str]:
        """The manifests an index lists (the referrers tag schema's `sha256-<hex>` tag)."""
        what = f"{self.host}/{repository}:{tag}"
        url = f"{self.base}/v2/{repository}/manifests/{tag}"
        response, body = self._read(url, repository, what=what, accept=INDEX_TYPES[0])
        if response.status_code == 404:
            return []
        self._expect_ok(response, what, url)
        found = _listed(_json_object(body, what, url), what, url)
        _bounded_referrers(len(found), f"{self.host}/{repository}@{tag.replace('-', ':', 1)}")
        return found

    def manifest(self, repository: str, reference: str, *, indexes: bool = False) -> Manifest:
        """A single image manifest (a chart's, or a signature's or SBOM's), checked against its
        digest: the one asked for, and the one the registry says. With `indexes`, an image index
        (a multi-platform image) too."""
        types = IMAGE_TYPES if indexes else MANIFEST_TYPES
        accept = ", ".join(types)
        self._take_pull(repository, reference)
        where = _named(self.host, repository, reference)
        url = f"{self.base}/v2/{repository}/manifests/{reference}"
        response, body = self._read(
            url,
            repository,
            what=f"the manifest of {where}",
            accept=accept,
            too_large=(
                f"the manifest of {where} is larger than {MAX_MANIFEST_BYTES} bytes, more than ECR takes "
                "for a manifest (4 MiB), so it cannot be mirrored; ecrmirror stopped reading it"
            ),
        )
        if response.status_code == 404:
            raise VersionNotFound(f"{where} is not in the registry")
        self._expect_ok(response, f"the manifest of {where}", url)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        echoed = response.headers.get("Docker-Content-Digest")
        if echoed and echoed != digest:
            raise DigestMismatch(f"{where}: the registry says {echoed}, but the manifest it sent is {digest}")
        if _DIGEST.match(reference) and reference != digest:
            raise DigestMismatch(f"{where}: the registry sent a manifest of digest {digest}")
        try:
            document = json.loads(body)
            if indexes and isinstance(document, dict) and "manifests" in document:
                return self._index(body, digest, document, response, where)
            layers = document.get("layers") or [] if isinstance(document, dict) else []
            if isinstance(layers, list) and len(layers) > MAX_LAYERS:
                raise UpstreamError(
                    f"{where}: the manifest lists {len(layers)} layers, and ECR takes at most {MAX_LAYERS} "
                    "in an image, so it cannot be mirrored; nothing of it was downloaded"
                )
            descriptors = [document["config"], *document.get("layers", [])]
            for descriptor in descriptors:
                # The digest names a temporary file and a URL: it must be a digest and nothing else.
                if not isinstance(descriptor, dict) or not _DIGEST.match(str(descriptor.get("digest"))):
                    raise ValueError(f"a descriptor without a sha256 digest: {str(descriptor)[:100]}")
                if not isinstance(descriptor.get("size"), int) or descriptor["size"] < 0:
                    raise ValueError(f"a descriptor without a size: {str(descriptor)[:100]}")
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise UpstreamError(f"{where}: the manifest is not a valid OCI image manifest ({exc})") from None
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if media_type not in MANIFEST_TYPES:
            media_type = str(document.get("mediaType") or "")
        if media_type not in MANIFEST_TYPES:
            raise UpstreamError(
                f"{_named(self.host, repository, reference)} is a {media_type or 'manifest of unknown type'}"
                ", not a single OCI image manifest as helm pushes charts"
            )
        return Manifest(body, media_type, digest)

    def _index(
        self, body: bytes, digest: str, document: dict[str, Any], response: requests.Response, where: str
    ) -> Manifest:
        children = document["manifests"]
        if not isinstance(children, list):
            raise UpstreamError(f"{where}: the image index's `manifests` is not a list")
        if len(children) > MAX_LAYERS:
            raise UpstreamError(
                f"{where}: the image index lists {len(children)} manifests; ecrmirror reads {MAX_LAYERS}"
            )
        for child in children:
            if not isinstance(child, dict) or not _DIGEST.match(str(child.get("digest"))):
                raise UpstreamError(f"{where}: the image index lists a manifest without a sha256 digest")
            if not isinstance(child.get("size"), int) or child["size"] < 0:
                raise UpstreamError(f"{where}: the image index lists a manifest without a size")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if media_type not in (INDEX_TYPES[0], DOCKER_LIST):
            media_type = str(document.get("mediaType") or INDEX_TYPES[0])
        if media_type not in (INDEX_TYPES[0], DOCKER_LIST):
            raise UpstreamError(f"{where} is a {media_type[:100]}, not an image index")
        return Manifest(body, media_type, digest)

    def manifest_digest(self, repository: str, reference: str, *, indexes: bool = False) -> str | None:
        """The digest of a manifest, from a HEAD: no pull (Docker Hub does not count HEADs against
        its pull limit). None when the registry does not say it (then a GET must)."""
        accept = ", ".join(IMAGE_TYPES if indexes else MANIFEST_TYPES)
        url = f"{self.base}/v2/{repository}/manifests/{reference}"
        response = self._get(url, repository, accept=accept, method="HEAD")
        self._http.discard(response)  # an answer to a HEAD has no body
        if response.status_code == 404:
            raise VersionNotFound(f"{_named(self.host, repository, reference)} is not in the registry")
        if response.status_code in (405, 501):  # a registry that does not answer HEAD
            return None
        self._expect_ok(response, f"the manifest of {_named(self.host, repository, reference)}", url)
        digest = response.headers.get("Docker-Content-Digest", "")
        return digest if _DIGEST.match(digest) else None

    def _take_pull(self, repository: str, reference: str) -> None:
        """Before a manifest GET (a pull, to Docker Hub): refuse it when the registry said that
        fewer than the reserve are left, instead of spending the rest and earning 429s."""
        reserve = self._http.pull_reserve
        with self._pull_lock:
            left = self.pulls_left
            if left is None or left > reserve:
                if left is not None:
                    self.pulls_left = left - 1  # until the next answer says
                return
        raise UpstreamError(
            f"{self.host} says {left} pulls are left in its rate-limit window (RateLimit-Remaining), "
            f"and ecrmirror keeps {reserve} in reserve (ini ecrmirror_upstream_pull_reserve): it starts "
            f"no more pulls from {self.host} in this run, so {repository}:{reference} was not pulled. "
            "The next run, once the window refills, mirrors it; a Docker Hub login (auth:) raises the limit."
        )

    def _count_pulls(self, response: requests.Response) -> None:
        header = response.headers.get("RateLimit-Remaining")
        if header:
            left = header.split(";")[0].strip()
            if left.isdigit():
                with self._pull_lock:
                    self.pulls_left = int(left)

    def small_blob(self, repository: str, digest: str, size: int | None = None) -> bytes:
        """A small blob (a config, a .prov) in memory, verified against its digest: at most the
        `size` its manifest declares, and never more than MAX_SMALL_BLOB."""
        what = f"blob {digest} of {self.host}/{repository}"
        if size is not None and size > MAX_SMALL_BLOB:
            raise UpstreamError(
                f"{what} is {size} bytes by its manifest; as a chart's config or .prov it can be at most "
                f"{MAX_SMALL_BLOB} (helm's limit for a file of a chart), so it was not downloaded"
            )
        limit = MAX_SMALL_BLOB if size is None else size
        url = f"{self.base}/v2/{repository}/blobs/{digest}"
        response, body = self._read(
            url,
            repository,
            what=what,
            limit=limit,
            too_large=f"{what} is longer than {limit} bytes; ecrmirror stopped reading it",
        )
        self._expect_ok(response, what, url)
        if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
            raise DigestMismatch(f"blob {digest} from {self.host}/{repository} does not match its digest")
        return body

    def blob(self, repository: str, digest: str, target: Path, size: int) -> Path:
        """Stream one blob to `target`, verified against its digest; a blob longer than the
        `size` its manifest declares is cut off there, so an endless one cannot fill the disk."""

        url = f"{self.base}/v2/{repository}/blobs/{digest}"
        deadline = self._http.deadline()  # for the step, however many attempts it takes
        too_long = (
            f"blob {digest} from {self.host}/{repository} is longer than the {size} "
            "bytes its manifest declares; ecrmirror stopped reading it and pushed nothing"
        )

        def attempt() -> Any:
            sha = hashlib.sha256()
            with self._get(url, repository) as response:
                self._expect_ok(response, f"blob {digest} of {self.host}/{repository}", url)
                with open(target, "wb") as out:
                    for chunk in self._http.chunks(
                        response, url, limit=size, deadline=deadline, too_large=too_long
                    ):
                        sha.update(chunk)
                        out.write(chunk)
            return sha

        try:
            sha = self._http.retrying(
                attempt, what=f"download of blob {digest} from {self.host}/{repository}"
            )
        except requests.RequestException as exc:
            target.unlink(missing_ok=True)
            raise UpstreamError(
                f"cannot download blob {digest} from {self.host}/{repository}: {describe_error(exc)}"
            ) from None
        except UpstreamError:
            target.unlink(missing_ok=True)
            raise
        if "sha256:" + sha.hexdigest() != digest:
            target.unlink(missing_ok=True)
            raise DigestMismatch(
                f"blob {digest} from {self.host}/{repository} arrived with digest sha256:{sha.hexdigest()}; "
                "nothing was pushed"
            )
        return target

    # -- requests, auth and redirects ------------------------------------------------------------------
    def _read(
        self,
        url: str,
        repository: str,
        *,
        what: str,
        accept: str | None = None,
        limit: int = MAX_MANIFEST_BYTES,
        deadline: float | None = None,
        too_large: str | None = None,
    ) -> tuple[requests.Response, bytes]:
        """GET `url` and, when it answers 200, its body: at most `limit` bytes, by `deadline` (see
        transport.Http.chunks). The response comes back closed, its status and headers to read."""
        response = self._get(url, repository, accept=accept)
        if response.status_code != 200:
            self._http.discard(response)
            return response, b""
        with response:
            try:
                body = self._http.read(response, url, limit=limit, deadline=deadline, too_large=too_large)
            except requests.RequestException as exc:
                raise UpstreamError(f"cannot read {what} ({url}): {describe_error(exc)}") from None
        return response, body

    def _pages(
        self, url: str, repository: str, what: str, *, accept: str | None = None
    ) -> Iterator[tuple[str, requests.Response, dict[str, Any]]]:
        """A listing's pages (URL, the closed response, its JSON object when it answered 200): the
        first at `url`, each next where the last one's Link header points (rel="next"). Bounded:
        at most MAX_PAGES pages of MAX_MANIFEST_BYTES each, all read within one step's time, on
        the registry itself only, and never a page twice (a loop)."""
        deadline = self._http.deadline()
        followed: set[str] = set()
        while True:
            followed.add(url)
            response, body = self._read(url, repository, what=what, accept=accept, deadline=deadline)
            yield url, response, _json_object(body, what, url) if response.status_code == 200 else {}
            link = _NEXT.search(response.headers.get("Link", ""))
            if link is None:
                return
            following = urljoin(url, link[1])
            shown = following[:200]
            if origin(following) != origin(self.base):
                raise UpstreamError(
                    f"{what}: its page {url} links to the next on another host ({shown}); ecrmirror "
                    f"follows a listing's pages on {self.host} only"
                )
            if following in followed:
                raise UpstreamError(
                    f"{what}: its page {url} links back to {shown}, a page already read; ecrmirror "
                    "stopped following the pages. The registry's pagination is broken: tell its operators"
                )
            if len(followed) >= MAX_PAGES:
                raise UpstreamError(
                    f"{what} goes on for more than {MAX_PAGES} pages (the last read: {url}); ecrmirror "
                    "stopped following them"
                )
            url = following

    def _get(
        self,
        url: str,
        repository: str,
        *,
        accept: str | None = None,
        method: str = "GET",
    ) -> requests.Response:
        """A request for `url`, with the authorization for `repository`'s pull scope (answering
        the registry's challenge first); the answer is streamed: read it (`_read`) or close it."""
        scope = f"repository:{repository}:pull"
        credentials = self._credentials
        if self._basic_first and credentials is not None and scope not in self._authorization:
            pair = f"{credentials.username}:{credentials.password}".encode()
            self._authorization[scope] = "Basic " + base64.b64encode(pair).decode()
        if scope not in self._authorization and scope not in self._unchallenged:
            # A scope's first request goes alone: jobs sending theirs at once would each be
            # challenged (401), and each ask again with the token the first one fetched.
            with self._scope_locks(scope):
                if scope not in self._authorization and scope not in self._unchallenged:
                    response = self._follow(url, scope, accept, method)
                    if response.status_code != 401:
                        self._unchallenged.add(scope)
                    else:
                        self._http.discard(response)  # the challenge is in its headers
                        if self._answer(response, scope):
                            response = self._follow(url, scope, accept, method)
                    self._count_pulls(response)
                    return response
        sent = self._authorization.get(scope)
        response = self._follow(url, scope, accept, method)
        if response.status_code == 401:
            self._http.discard(response)  # the challenge is in its headers
            with self._scope_locks(scope):
                # Another job may have answered this scope's challenge while this one waited.
                answered = self._authorization.get(scope) != sent or self._answer(response, scope)
            if answered:
                response = self._follow(url, scope, accept, method)
        self._count_pulls(response)
        return response

    def _follow(self, url: str, scope: str, accept: str | None, method: str = "GET") -> requests.Response:
        def credentials_for(hop: str) -> dict[str, str]:
            if urlsplit(hop).netloc == self.host and scope in self._authorization:
                return {"Authorization": self._authorization[scope]}
            return {}  # object storage behind a redirect gets no registry credentials

        try:
            return self._http.get(
                url,
                credentials_for=credentials_for,
                verify=self._verify,
                accept=accept,
                method=method,
                plain_http=self._plain_http,
            )
        except requests.RequestException as exc:
            raise UpstreamError(f"cannot reach {self.host}: {describe_error(exc)}") from None

    def _answer(self, response: requests.Response, scope: str) -> bool:
        """Answer a 401's challenge; False when there is nothing more to try."""
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme, _, rest = challenge.partition(" ")
        params = dict(_CHALLENGE.findall(rest))
        credentials = self._credentials
        if scheme.lower() == "basic":
            if credentials is None or not credentials.username:
                raise UpstreamError(
                    f"{self.host} requires a username and password; add auth: {{username: ..., "
                    "password: ${VARIABLE}} to the chart entry"
                )
            pair = f"{credentials.username}:{credentials.password}".encode()
            self._authorization[scope] = "Basic " + base64.b64encode(pair).decode()
            return True
        if scheme.lower() != "bearer" or "realm" not in params:
            return False
        if credentials is not None and credentials.token and scope not in self._authorization:
            self._authorization[scope] = f"Bearer {credentials.token}"
            return True
        token = self._token(params["realm"], params.get("service"), params.get("scope") or scope)
        self._authorization[scope] = f"Bearer {token}"
        return True

    def _token(self, realm: str, service: str | None, scope: str) -> str:
        """A token from the registry's token service, anonymous or with the spec's credentials.

        The credentials go to the realm over https only, or to the registry itself when the spec
        says plain_http (transport.may_carry_credentials): a realm on plain http elsewhere is
        refused before anything is sent. What the service answers is read up to MAX_TOKEN_ANSWER
        bytes; no message repeats the credentials or the request's query."""
        shown = _shown(realm)
        where = origin(realm)
        if where is None or where[0] not in ("http", "https") or not where[1]:
            raise UpstreamError(
                f"{self.host} asks for a token from {shown!r}, which is not an http(s) URL; check the "
                "registry's token settings (the realm of its WWW-Authenticate challenge)"
            )
        credentials = self._credentials
        authorization: dict[str, str] = {}
        if credentials is not None and credentials.username:
            if not may_carry_credentials(realm, self._plain_http):
                elsewhere = " on another host" if where[1:] != (origin(self.base) or where)[1:] else ""
                raise UpstreamError(
                    f"{self.host} asks for the chart entry's credentials at {shown}, over plain http"
                    f"{elsewhere}: ecrmirror sends credentials over https only (or to a registry the "
                    "spec marks plain_http: true), so it sent nothing. The registry's token service "
                    "(the realm of its challenge) must be on https"
                )
            pair = f"{credentials.username}:{credentials.password}".encode()
            authorization = {"Authorization": "Basic " + base64.b64encode(pair).decode()}

        def credentials_for(hop: str) -> dict[str, str]:
            return authorization if origin(hop) == where else {}  # a redirect elsewhere gets none

        service_of = f"the token service of {self.host} ({shown})"
        query = {"scope": scope, **({"service": service} if service else {})}
        try:
            prepared = requests.PreparedRequest()
            prepared.prepare_url(realm, query)
            with self._http.get(
                str(prepared.url),
                credentials_for=credentials_for,
                verify=self._verify,
                plain_http=self._plain_http,
            ) as response:
                if response.status_code != 200:
                    raise UpstreamError(
                        f"the token service of {self.host} refused a {scope} token (HTTP "
                        f"{response.status_code}); check the chart entry's auth"
                    )
                body = self._http.read(
                    response,
                    shown,
                    limit=MAX_TOKEN_ANSWER,
                    too_large=f"{service_of} answered more than {MAX_TOKEN_ANSWER} bytes; a token "
                    "answer is a few KiB, so ecrmirror stopped reading it",
                )
        except requests.RequestException as exc:
            raise UpstreamError(f"cannot reach {service_of}: {describe_error(exc)}") from None
        answer = _json_object(body, f"the answer of {service_of}", shown, show_url=False)
        token = answer.get("token") or answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise UpstreamError(f"{service_of} answered without a token")
        return token

    def _expect_ok(self, response: requests.Response, what: str, url: str | None = None) -> None:
        """Nothing when `response` (to a request for `url`) is a 200; else what it means, plainly."""
        if response.status_code == 200:
            return
        note = transport.hop_note(response, url or response.url, self._plain_http)
        if response.status_code in (401, 403):
            raise UpstreamError(
                f"{self.host} refused {what} (HTTP {response.status_code}{f'; {note}' if note else ''}); "
                f"{self.refused_hint}"
            )
        raise UpstreamError(
            f"cannot read {what}{f' ({note})' if note else ''}: HTTP {response.status_code} {response.reason}"
        )


class OciRepository:
    """`oci://HOST/PATH` as a chart source: chart <name> is the repository PATH/<name>, and a
    version is the tag helm gives it. Its manifest and blobs are copied unchanged."""

    def __init__(
        self, url: str, http: transport.Http, access: Access, max_chart_size: int = MAX_CHART_SIZE
    ) -> None:
        parts = urlsplit(url)
        self.location = url
        self._max_chart_size = max_chart_size
        self._path = parts.path.strip("/")
        self._client = OciClient(
            parts.netloc,
            http,
            plain_http=access.plain_http,
            credentials=access.credentials,
            verify=access.verify,
        )
        self._manifests: dict[tuple[str, str], Manifest] = {}
        self._digests: dict[tuple[str, str], str] = {}
        self._tags: dict[str, list[str]] = {}
        # What jobs (threads) ask for at once is fetched once: one lock per cache and key.
        self._manifest_locks, self._digest_locks, self._tag_locks = KeyedLocks(), KeyedLocks(), KeyedLocks()

    def repository(self, name: str) -> str:
        return f"{self._path}/{name}" if self._path else name

    def versions(self, name: str) -> list[str]:
        return [tag.replace("_", "+") for tag in self._tag_list(name)]

    def release(self, name: str, version: str) -> ChartRelease:
        """The version as the registry holds it now: its manifest's digest, from a HEAD unless its
        manifest was pulled already (`pull`)."""
        tag = tag_for(version)
        digest = once(self._digests, self._digest_locks, (name, version), lambda: self._digest(name, version))
        return ChartRelease(
            name=name,
            version=version,
            digest=digest,
            url=f"{self.location.rstrip('/')}/{name}:{tag}",
            created=None,
            source=self.location,
            oci=True,
        )

    def pull(self, name: str, version: str) -> Manifest:
        """The version's manifest, pulled by tag (a copy needs it: then no HEAD is spent on its digest)."""

        def get() -> Manifest:
            tag = tag_for(version)
            try:
                return self._client.manifest(self.repository(name), tag)
            except VersionNotFound:
                near = ", ".join(nearest_versions(version, self.versions(name))) or "none"
                raise VersionNotFound(
                    f"{name} {version} is not in {self.location} (no tag {tag}); nearest versions "
                    f"there: {near}. Fix the version in the spec."
                ) from None

        return once(self._manifests, self._manifest_locks, (name, version), get)

    def _digest(self, name: str, version: str) -> str:
        known = self._manifests.get((name, version))
        if known is not None:
            return known.digest
        tag = tag_for(version)
        try:
            digest = self._client.manifest_digest(self.repository(name), tag)
        except VersionNotFound:
            return self.pull(name, version).digest  # says which versions are near
        return digest if digest is not None else self.pull(name, version).digest

    def metadata(self, name: str, version: str) -> dict[str, Any]:
        """Chart.yaml's fields: helm's config blob holds them as JSON."""
        release = self.release(name, version)
        config = self.manifest(release).blobs()[0]
        body = self._client.small_blob(self.repository(name), str(config["digest"]), int(config["size"]))
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            raise UpstreamError(f"the config of {release.url} is not JSON, so not a Helm chart's") from None
        return document if isinstance(document, dict) else {}

    def manifest(self, release: ChartRelease) -> Manifest:
        manifest = self.pull(release.name, release.version)
        if manifest.digest != release.digest:
            raise UpstreamError(
                f"{release.url} moved during the run: it was {release.digest}, it is now "
                f"{manifest.digest}. Nothing was copied; the next run compares it again."
            )
        return manifest

    def blob(self, release: ChartRelease, digest: str, target: Path, size: int) -> Path:
        return self._client.blob(self.repository(release.name), digest, target, size)

    def fetch(self, release: ChartRelease, workdir: Path) -> Path:
        """The chart archive (its chart layer), verified by digest."""
        for descriptor in self.manifest(release).blobs():
            if descriptor.get("mediaType") == CHART_LAYER_MEDIA_TYPE:
                size = int(descriptor["size"])
                if size > self._max_chart_size:
                    raise UpstreamError(
                        f"{release.url}: blob {descriptor['digest']} is {size} bytes, more than a chart may "
                        f"be ({self._max_chart_size}; ini ecrmirror_max_chart_size); nothing was pushed"
                    )
                target = Path(tempfile.mkstemp(dir=workdir, suffix=".tgz")[1])
                return self.blob(release, str(descriptor["digest"]), target, size)
        raise UpstreamError(f"{release.url} has no Helm chart layer ({CHART_LAYER_MEDIA_TYPE})")

    def provenance(self, release: ChartRelease, workdir: Path) -> Path | None:
        """The provenance layer, downloaded (the copy carries it with the rest); None without one."""
        for descriptor in self.manifest(release).blobs():
            if descriptor.get("mediaType") == PROVENANCE_MEDIA_TYPE:
                size = int(descriptor["size"])
                if size > MAX_PROVENANCE_SIZE:
                    raise UpstreamError(
                        f"{release.url}: its provenance layer is {size} bytes; a .prov is at most "
                        f"{MAX_PROVENANCE_SIZE}, so it was not downloaded; nothing was pushed"
                    )
                target = Path(tempfile.mkstemp(dir=workdir, suffix=".prov")[1])
                return self.blob(release, str(descriptor["digest"]), target, size)
        return None

    def referrers(
        self, release: ChartRelease, alongside: Callable[..., futures.Future[Any]] | None = None
    ) -> list[Referrer]:
        """What refers to the release's manifest, to be copied with it (see `attached`)."""
        tags = set(self._tag_list(release.name))
        found = attached(self._client, self.repository(release.name), release.digest, tags, alongside)
        _bounded_referrers(len(found), f"{release.url} ({self._client.host}/{self.repository(release.name)})")
        return found

    def probe_referrers(self, release: ChartRelease) -> None:
        """Ask ahead whether the registry has the referrers API (OciClient.probe_referrers)."""
        self._client.probe_referrers(self.repository(release.name), release.digest)

    def _tag_list(self, name: str) -> list[str]:
        return once(self._tags, self._tag_locks, name, lambda: self._client.tags(self.repository(name)))


def attached(
    client: OciClient,
    repository: str,
    digest: str,
    tags: set[str],
    alongside: Callable[..., futures.Future[Any]] | None = None,
) -> list[Referrer]:
    """What refers to manifest `digest` of `repository` (see `attached_references`), pulled: one
    manifest GET each; with `alongside` (run.alongside), side by side (`side_by_side`)."""
    wanted = attached_references(client, repository, digest, tags)
    return pull_referrers(client, repository, wanted, alongside)


def attached_references(
    client: OciClient, repository: str, digest: str, tags: set[str]
) -> list[tuple[str, str | None]]:
    """(reference, cosign tag or None) of what refers to manifest `digest` of `repository`: its OCI
    1.1 referrers (the referrers API, else the referrers tag schema) and cosign's
    `sha256-<hex>.sig/.att/.sbom`, at most MAX_REFERRERS. `tags`, the repository's tag list
    (read once), says which of those tags exist. Nothing is pulled."""
    hexdigest = digest.partition(":")[2]
    digests = client.referrers(repository, digest)
    if digests is None:
        schema_tag = f"sha256-{hexdigest}"
        digests = client.index_digests(repository, schema_tag) if schema_tag in tags else []
    wanted: list[tuple[str, str | None]] = [(each, None) for each in dict.fromkeys(digests)]
    for suffix in COSIGN_SUFFIXES:
        tag = f"sha256-{hexdigest}.{suffix}"
        if tag in tags:
            wanted.append((tag, tag))
    _bounded_referrers(len(wanted), f"{client.host}/{repository}@{digest}")
    return wanted


def pull_referrers(
    client: OciClient,
    repository: str,
    wanted: list[tuple[str, str | None]],
    alongside: Callable[..., futures.Future[Any]] | None = None,
) -> list[Referrer]:
    """The manifests of `wanted` (from attached_references), each once."""
    manifests = side_by_side(
        lambda reference: client.manifest(repository, reference),
        [reference for reference, _ in wanted],
        alongside,
    )
    found: list[Referrer] = []
    seen: set[str] = set()  # a cosign tag may name a manifest the referrers API listed too
    for (_, cosign_tag), manifest in zip(wanted, manifests, strict=True):
        if manifest.digest not in seen:
            seen.add(manifest.digest)
            found.append(Referrer(manifest, cosign_tag))
    return found


def _named(host: str, repository: str, reference: str) -> str:
    """host/repository:tag, or host/repository@digest, as a person writes a reference."""
    return f"{host}/{repository}{'@' if _DIGEST.match(reference) else ':'}{reference}"


def _listed(document: dict[str, Any], what: str, url: str) -> list[str]:
    """The manifest digests an image index lists."""
    listed = document.get("manifests") or []
    if not isinstance(listed, list):
        raise UpstreamError(f"{what} ({url}) is not an image index: its `manifests` is not a list")
    return [str(m["digest"]) for m in listed if isinstance(m, dict) and _DIGEST.match(str(m.get("digest")))]


def _bounded_referrers(count: int, what: str) -> None:
    if count > MAX_REFERRERS:
        raise UpstreamError(
            f"more than {MAX_REFERRERS} manifests refer to {what}: more than an ECR repository holds "
            "by default (10,000 images); ecrmirror copies none of them. Set copy_referrers: false on "
            "the chart entry to mirror the chart alone"
        )


def _json_object(body: bytes, what: str, url: str, *, show_url: bool = True) -> dict[str, Any]:
    """`body` as the JSON object a registry answers; anything else (HTML, a JSON list or string,
    bytes) is an UpstreamError naming `what` and `url`, never a JSON parser's exception."""
    where = f" ({url})" if show_url else ""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        start = body[:15].decode("ascii", "replace").strip()
        looks = " (it looks like HTML: a login or error page?)" if start.lower().startswith("<") else ""
        raise UpstreamError(f"{what}{where} is not JSON{looks}") from None
    if not isinstance(document, dict):
        kind = _JSON_KINDS.get(type(document), "null")
        raise UpstreamError(f"{what}{where} is {kind}, not the JSON object a registry answers")
    return document


def _shown(url: str) -> str:
    """`url` for a message: without user information, query or fragment (they may carry secrets)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"[:200]


def side_by_side(
    work: Callable[[A], T], calls: list[A], alongside: Callable[..., futures.Future[Any]] | None
) -> list[T]:
    """`work(call)` for each of `calls`; the results in order. With `alongside` (run.alongside), a
    job's IN_FLIGHT_PER_JOB at a time: this thread and the job's share of the run's side threads
    each take the next call as soon as their last one is done, so one slow call holds up no
    other. After a failure no call starts; the first failure (in the order of `calls`) is raised
    once those running have ended, so nothing is left running. `work` must not itself go
    alongside: a side thread waiting for a side thread could wait forever."""
    if alongside is None or len(calls) <= 1:
        return [work(call) for call in calls]
    results: list[Any] = [None] * len(calls)
    failures: dict[int, BaseException] = {}
    next_call = iter(enumerate(calls))
    taking = threading.Lock()

    def take_turns() -> None:
        while True:
            with taking:
                taken = None if failures else next(next_call, None)
            if taken is None:
                return
            index, call = taken
            try:
                results[index] = work(call)
            except BaseException as exc:  # an interrupt too: the others stop taking calls
                with taking:
                    failures[index] = exc
                return

    others = [alongside(take_turns) for _ in range(min(IN_FLIGHT_PER_JOB, len(calls)) - 1)]
    try:
        take_turns()
    finally:
        futures.wait(others)
    if failures:
        raise failures[min(failures)]
    return results
