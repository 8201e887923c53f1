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
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from ecrmirror import transport
from ecrmirror.chart import CHART_LAYER_MEDIA_TYPE, PROVENANCE_MEDIA_TYPE, tag_for
from ecrmirror.errors import DigestMismatch, UpstreamError, VersionNotFound
from ecrmirror.once import KeyedLocks, once
from ecrmirror.sources.release import ChartRelease, nearest_versions
from ecrmirror.spec import Access, Credentials
from ecrmirror.transport import TIMEOUT, describe_error

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
_CHUNK = 1 << 20
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_NEXT = re.compile(r"<([^>]+)>\s*;\s*rel=\"?next\"?")


COSIGN_SUFFIXES = ("sig", "att", "sbom")  # cosign's tag scheme: sha256-<hex>.<suffix>
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",)


@dataclass(frozen=True)
class Manifest:
    body: bytes  # exactly as the registry serves it: its digest is the mirror's identity
    media_type: str
    digest: str

    def blobs(self) -> list[dict[str, Any]]:
        document = json.loads(self.body)
        return [document["config"], *document.get("layers", [])]

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
        self._http = http
        self._credentials = credentials
        self._verify = verify
        self._authorization: dict[str, str] = {}  # scope -> Authorization header value
        self._scope_locks = KeyedLocks()  # jobs (threads) answering one scope's challenge: one token
        self._referrers_api: bool | None = None  # unknown until the first referrers request
        # Docker Hub's RateLimit-Remaining, as last seen: pulls left in its window (None: no limit said)
        self.pulls_left: int | None = None
        self._pull_lock = threading.Lock()

    # -- reading -------------------------------------------------------------------------------------
    def tags(self, repository: str) -> list[str]:
        url = f"{self.base}/v2/{repository}/tags/list?n=1000"
        found: list[str] = []
        while url:
            response = self._get(url, repository)
            if response.status_code == 404:
                raise VersionNotFound(f"{self.host}/{repository} does not exist (HTTP 404 on its tag list)")
            self._expect_ok(response, f"the tag list of {self.host}/{repository}")
            try:
                tags = response.json().get("tags") or []
            except (ValueError, AttributeError):
                raise UpstreamError(f"the tag list of {self.host}/{repository} is not JSON") from None
            found.extend(str(tag) for tag in tags)
            link = _NEXT.search(response.headers.get("Link", ""))
            url = urljoin(url, link[1]) if link else ""
        return found

    def referrers(self, repository: str, digest: str) -> list[str] | None:
        """The digests of the manifests whose subject is `digest`, from the referrers API; None
        when the registry does not have it (then the referrers tag schema is the way)."""
        if self._referrers_api is False:
            return None
        accept = INDEX_TYPES[0]
        response = self._get(f"{self.base}/v2/{repository}/referrers/{digest}", repository, accept=accept)
        if response.status_code != 200:
            response.close()
            if response.status_code in (404, 405, 400):
                self._referrers_api = False  # one probe per registry
                return None
            self._expect_ok(response, f"the referrers of {self.host}/{repository}@{digest}")
        self._referrers_api = True
        return _listed(response, f"the referrers of {self.host}/{repository}@{digest}")

    def index_digests(self, repository: str, tag: str) -> list[str]:
        """The manifests an index lists (the referrers tag schema's `sha256-<hex>` tag)."""
        response = self._get(
            f"{self.base}/v2/{repository}/manifests/{tag}", repository, accept=INDEX_TYPES[0]
        )
        if response.status_code == 404:
            return []
        self._expect_ok(response, f"{self.host}/{repository}:{tag}")
        return _listed(response, f"{self.host}/{repository}:{tag}")

    def manifest(self, repository: str, reference: str) -> Manifest:
        """A single image manifest (a chart's, or a signature's or SBOM's), checked against its
        digest: the one asked for, and the one the registry says."""
        accept = ", ".join(MANIFEST_TYPES)
        self._take_pull(repository, reference)
        response = self._get(f"{self.base}/v2/{repository}/manifests/{reference}", repository, accept=accept)
        if response.status_code == 404:
            raise VersionNotFound(f"{self.host}/{repository}:{reference} is not in the registry")
        self._expect_ok(response, f"the manifest of {self.host}/{repository}:{reference}")
        body = response.content
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        where = f"{self.host}/{repository}:{reference}"
        echoed = response.headers.get("Docker-Content-Digest")
        if echoed and echoed != digest:
            raise DigestMismatch(f"{where}: the registry says {echoed}, but the manifest it sent is {digest}")
        if _DIGEST.match(reference) and reference != digest:
            raise DigestMismatch(f"{where}: the registry sent a manifest of digest {digest}")
        try:
            document = json.loads(body)
            descriptors = [document["config"], *document.get("layers", [])]
            for descriptor in descriptors:
                # The digest names a temporary file and a URL: it must be a digest and nothing else.
                if not isinstance(descriptor, dict) or not _DIGEST.match(str(descriptor.get("digest"))):
                    raise ValueError(f"a descriptor without a sha256 digest: {str(descriptor)[:100]}")
                if not isinstance(descriptor.get("size"), int) or descriptor["size"] < 0:
                    raise ValueError(f"a descriptor without a size: {str(descriptor)[:100]}")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UpstreamError(f"{where}: the manifest is not a valid OCI image manifest ({exc})") from None
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if media_type not in MANIFEST_TYPES:
            media_type = str(document.get("mediaType") or "")
        if media_type not in MANIFEST_TYPES:
            raise UpstreamError(
                f"{self.host}/{repository}:{reference} is a {media_type or 'manifest of unknown type'}, "
                "not a single OCI image manifest as helm pushes charts"
            )
        return Manifest(body, media_type, digest)

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest of a manifest, from a HEAD: no pull (Docker Hub does not count HEADs against
        its pull limit). None when the registry does not say it (then a GET must)."""
        accept = ", ".join(MANIFEST_TYPES)
        url = f"{self.base}/v2/{repository}/manifests/{reference}"
        response = self._get(url, repository, accept=accept, method="HEAD")
        if response.status_code == 404:
            raise VersionNotFound(f"{self.host}/{repository}:{reference} is not in the registry")
        if response.status_code in (405, 501):  # a registry that does not answer HEAD
            return None
        self._expect_ok(response, f"the manifest of {self.host}/{repository}:{reference}")
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

    def small_blob(self, repository: str, digest: str) -> bytes:
        """A small blob (a config) in memory, verified against its digest."""
        response = self._get(f"{self.base}/v2/{repository}/blobs/{digest}", repository)
        self._expect_ok(response, f"blob {digest} of {self.host}/{repository}")
        if "sha256:" + hashlib.sha256(response.content).hexdigest() != digest:
            raise DigestMismatch(f"blob {digest} from {self.host}/{repository} does not match its digest")
        return response.content

    def blob(self, repository: str, digest: str, target: Path, size: int) -> Path:
        """Stream one blob to `target`, verified against its digest; a blob longer than the
        `size` its manifest declares is cut off there, so an endless one cannot fill the disk."""

        def attempt() -> Any:
            sha = hashlib.sha256()
            received = 0
            with self._get(
                f"{self.base}/v2/{repository}/blobs/{digest}", repository, stream=True
            ) as response:
                self._expect_ok(response, f"blob {digest} of {self.host}/{repository}")
                with open(target, "wb") as out:
                    for chunk in response.iter_content(_CHUNK):
                        received += len(chunk)
                        if received > size:
                            raise UpstreamError(
                                f"blob {digest} from {self.host}/{repository} is longer than the {size} "
                                "bytes its manifest declares; ecrmirror stopped reading it and pushed nothing"
                            )
                        sha.update(chunk)
                        out.write(chunk)
            return sha

        try:
            sha = self._http.retrying(
                attempt, what=f"download of blob {digest} from {self.host}/{repository}"
            )
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
    def _get(
        self,
        url: str,
        repository: str,
        *,
        accept: str | None = None,
        stream: bool = False,
        method: str = "GET",
    ) -> requests.Response:
        scope = f"repository:{repository}:pull"
        credentials = self._credentials
        if self._basic_first and credentials is not None and scope not in self._authorization:
            pair = f"{credentials.username}:{credentials.password}".encode()
            self._authorization[scope] = "Basic " + base64.b64encode(pair).decode()
        sent = self._authorization.get(scope)
        response = self._follow(url, scope, accept, stream, method)
        if response.status_code == 401:
            with self._scope_locks(scope):
                # Another job may have answered this scope's challenge while this one waited.
                answered = self._authorization.get(scope) != sent or self._answer(response, scope)
            if answered:
                response.close()
                response = self._follow(url, scope, accept, stream, method)
        self._count_pulls(response)
        return response

    def _follow(
        self, url: str, scope: str, accept: str | None, stream: bool, method: str = "GET"
    ) -> requests.Response:
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
                stream=stream,
                method=method,
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
        """A token from the registry's token service, anonymous or with the spec's credentials."""
        query = {"scope": scope, **({"service": service} if service else {})}
        auth = None
        credentials = self._credentials
        if credentials is not None and credentials.username:
            auth = (credentials.username, credentials.password)
        try:
            response = self._http.session.get(
                realm, params=query, auth=auth, timeout=TIMEOUT, verify=self._verify
            )
        except requests.RequestException as exc:
            raise UpstreamError(
                f"cannot reach the token service of {self.host}: {describe_error(exc)}"
            ) from None
        if response.status_code != 200:
            raise UpstreamError(
                f"the token service of {self.host} refused a {scope} token (HTTP {response.status_code}); "
                "check the chart entry's auth"
            )
        answer = response.json()
        token = answer.get("token") or answer.get("access_token")
        if not token:
            raise UpstreamError(f"the token service of {self.host} answered without a token")
        return str(token)

    def _expect_ok(self, response: requests.Response, what: str) -> None:
        if response.status_code == 200:
            return
        if response.status_code in (401, 403):
            raise UpstreamError(
                f"{self.host} refused {what} (HTTP {response.status_code}); {self.refused_hint}"
            )
        raise UpstreamError(f"cannot read {what}: HTTP {response.status_code} {response.reason}")


class OciRepository:
    """`oci://HOST/PATH` as a chart source: chart <name> is the repository PATH/<name>, and a
    version is the tag helm gives it. Its manifest and blobs are copied unchanged."""

    def __init__(self, url: str, http: transport.Http, access: Access) -> None:
        parts = urlsplit(url)
        self.location = url
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
        body = self._client.small_blob(self.repository(name), str(config["digest"]))
        try:
            document = json.loads(body)
        except ValueError:
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
                target = Path(tempfile.mkstemp(dir=workdir, suffix=".tgz")[1])
                return self.blob(release, str(descriptor["digest"]), target, int(descriptor["size"]))
        raise UpstreamError(f"{release.url} has no Helm chart layer ({CHART_LAYER_MEDIA_TYPE})")

    def provenance(self, release: ChartRelease, workdir: Path) -> Path | None:
        """The provenance layer, downloaded (the copy carries it with the rest); None without one."""
        for descriptor in self.manifest(release).blobs():
            if descriptor.get("mediaType") == PROVENANCE_MEDIA_TYPE:
                target = Path(tempfile.mkstemp(dir=workdir, suffix=".prov")[1])
                return self.blob(release, str(descriptor["digest"]), target, int(descriptor["size"]))
        return None

    def referrers(self, release: ChartRelease) -> list[Referrer]:
        """What refers to the release's manifest, to be copied with it: its OCI 1.1 referrers (the
        referrers API, else the referrers tag schema) and cosign's `sha256-<hex>.sig/.att/.sbom`.
        The repository's tag list (read once) says which of those tags exist."""
        repository = self.repository(release.name)
        hexdigest = release.digest.partition(":")[2]
        tags = set(self._tag_list(release.name))
        digests = self._client.referrers(repository, release.digest)
        if digests is None:
            schema_tag = f"sha256-{hexdigest}"
            digests = self._client.index_digests(repository, schema_tag) if schema_tag in tags else []
        found = [Referrer(self._client.manifest(repository, digest), None) for digest in digests]
        for suffix in COSIGN_SUFFIXES:
            tag = f"sha256-{hexdigest}.{suffix}"
            if tag not in tags:
                continue
            manifest = self._client.manifest(repository, tag)
            if all(manifest.digest != r.manifest.digest for r in found):
                found.append(Referrer(manifest, tag))
        return found

    def _tag_list(self, name: str) -> list[str]:
        return once(self._tags, self._tag_locks, name, lambda: self._client.tags(self.repository(name)))


def _listed(response: requests.Response, what: str) -> list[str]:
    """The manifest digests an image index lists."""
    try:
        listed = response.json().get("manifests") or []
    except (ValueError, AttributeError):
        raise UpstreamError(f"{what} is not a JSON image index") from None
    return [str(m["digest"]) for m in listed if isinstance(m, dict) and _DIGEST.match(str(m.get("digest")))]
