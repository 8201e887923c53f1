"""The OCI data plane through oras-py: authenticated pushes of blobs and a manifest, manifest last."""

from __future__ import annotations

import json
import re
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

from ecrmirror.chart import MANIFEST_MEDIA_TYPE, Descriptor, HelmArtifact, sha256_digest
from ecrmirror.ecr import RegistryToken
from ecrmirror.errors import EcrMirrorError, Interrupted, RegistryError, RepositoryMissing, TagConflict
from ecrmirror.jobs import inline
from ecrmirror.manifest_store import ManifestStore
from ecrmirror.transport import DEFAULT_POLICY, RetryPolicy, retrying

# Renew the token this long before ECR's 12 h expiry, so no request races the deadline.
TOKEN_RENEWAL_MARGIN = 15 * 60
# What a tag may hold, asked for before a PUT could replace it: any manifest, so the answer is
# the digest of what is there, whatever it is.
MANIFEST_TYPES = (
    MANIFEST_MEDIA_TYPE,
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass
class PushReport:
    bytes_uploaded: int = 0
    blobs_uploaded: int = 0


class RegistryClient:
    """Pushes Helm artifacts into one registry endpoint, with the registry's ECR token."""

    def __init__(
        self,
        endpoint: str,
        fetch_token: Callable[[], RegistryToken],
        policy: RetryPolicy = DEFAULT_POLICY,
        connections: int = 10,
        interrupted: threading.Event | None = None,
        alongside: Callable[..., futures.Future[Any]] | None = None,
        manifest_store: ManifestStore | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        # What is pushed is kept: an audit then reads it without pulling it from ECR.
        self.manifest_store = manifest_store or ManifestStore()
        self._alongside = alongside or inline
        # Set on Ctrl-C: jobs (threads) running a push stop before their next upload or tag.
        self.interrupted = interrupted or threading.Event()
        self.policy = policy
        self._fetch_token = fetch_token
        self._token: RegistryToken | None = None
        self._token_lock = threading.Lock()  # jobs (threads) share the token: one fetch renews it
        # oras-py, and jsonschema with it (about 50 ms to import), only once a run writes: a run
        # that finds everything in place never makes a client.
        from ecrmirror.oras_registry import OrasRegistry

        self._oras = OrasRegistry(self.endpoint, self._current_token, policy, connections)

    def _current_token(self, refresh: bool) -> RegistryToken:
        held = self._token
        if not refresh and held is not None and time.time() <= held.expires_at - TOKEN_RENEWAL_MARGIN:
            return held
        with self._token_lock:
            if self._token is held:  # nobody renewed it while this thread waited
                self._token = self._fetch_token()
            assert self._token is not None
            return self._token

    def authenticate(self) -> None:
        """Fetch the registry token now (a warm-up, before the first upload needs it)."""
        self._current_token(refresh=False)

    def _container(self, repository: str, tag: str) -> Any:
        return self._oras.get_container(f"{self._oras.hostname}/{repository}:{tag}")

    def push(
        self,
        repository: str,
        artifact: HelmArtifact,
        archive: Path,
        provenance: Path | None = None,
        *,
        new_repository: bool = False,
        mutable: bool = False,
    ) -> PushReport:
        """Push the blobs, then the manifest: an interrupted push leaves no tag behind.

        `new_repository`: the run created the repository, so it holds no blob the run did not
        upload, and asking for each one first would be a wasted round trip. `mutable`: ECR would
        let the tag move (see put_manifest)."""
        report = PushReport()
        with tempfile.TemporaryDirectory(prefix="ecrmirror-") as tmp:
            config_path = Path(tmp) / "config.json"
            config_path.write_bytes(artifact.config)
            blobs = [(config_path, artifact.config_descriptor), (archive, artifact.chart_descriptor)]
            if provenance is not None and artifact.provenance_descriptor is not None:
                blobs.append((provenance, artifact.provenance_descriptor))

            def send(path: Path, descriptor: Descriptor) -> int:
                # The config is a few hundred bytes and almost always new: uploading it costs
                # less than asking first. Archives are asked about (HEAD) before uploading.
                if (
                    descriptor is artifact.config_descriptor
                    or new_repository
                    or not self.has_blob(repository, descriptor.digest)
                ):
                    self.upload_blob(repository, path, descriptor)
                    return descriptor.size
                return -1

            # The blobs do not depend on each other: they go up side by side (with jobs).
            for sent, (_, descriptor) in zip(self._alongside_all(send, blobs), blobs, strict=True):
                if sent >= 0:
                    report.bytes_uploaded += descriptor.size
                    report.blobs_uploaded += 1
        self.put_manifest(repository, artifact.tag, artifact.manifest, MANIFEST_MEDIA_TYPE, mutable=mutable)
        return report

    def _alongside_all(self, work: Callable[..., int], calls: list[tuple[Any, ...]]) -> list[int]:
        """`work(*args)` for each of `calls`, all but the last on other threads (`alongside`), in
        order; the first failure is raised once all have ended, so nothing is left running."""
        others = [self._alongside(work, *args) for args in calls[:-1]]
        try:
            last = work(*calls[-1])
        finally:
            futures.wait(others)
        return [future.result() for future in others] + [last]

    def _unless_interrupted(self, repository: str, what: str) -> None:
        if self.interrupted.is_set():
            raise Interrupted(
                f"the run was interrupted before {self.endpoint}/{repository}:{what} was written: "
                "nothing is tagged; the next run pushes it"
            )

    def has_blob(self, repository: str, digest: str) -> bool:
        # oras' blob_exists reads any non-200 (a 403 for a missing permission, say) as absent.
        url = f"{self._oras.prefix}://{self._container(repository, 'latest').get_blob_url(digest)}"
        try:
            head = self._oras.do_request(url, "HEAD")
        except requests.RequestException as exc:
            raise RegistryError(
                f"existence check of {digest} in {self.endpoint}/{repository} failed: {exc}"
            ) from None
        if head.status_code == 200:
            return True
        if head.status_code == 404:
            return False
        raise self._error(head, repository, f"existence check of {digest}", "ecr:BatchCheckLayerAvailability")

    def upload_blob(self, repository: str, path: Path, descriptor: Descriptor) -> None:
        """A monolithic POST + PUT (the upload ECR handles as the spec says), retried as a whole:
        an upload session cannot be resumed after a failure, so a new one starts.

        oras' put_upload reads the whole file into memory and hides the POST's status; this
        streams the file and keeps the registry's error code for the message.
        """
        prefix = self._oras.prefix
        container = self._container(repository, "latest")
        what = f"upload of {descriptor.digest} to {self.endpoint}/{repository}"
        self._unless_interrupted(repository, descriptor.digest)
        import oras.utils  # loaded with the client (ecrmirror.oras_registry)

        def attempt() -> requests.Response:
            start = self._oras.do_request(
                f"{prefix}://{container.upload_blob_url()}", "POST", headers={"Content-Length": "0"}
            )
            if start.status_code != 202 or not start.headers.get("Location"):
                return start
            location = urljoin(f"{prefix}://{container.registry}/", start.headers["Location"])
            self._unless_interrupted(repository, descriptor.digest)  # before the bytes go
            with open(path, "rb") as body:
                return self._oras.do_request(
                    oras.utils.append_url_params(location, {"digest": descriptor.digest}),
                    "PUT",
                    data=body,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(descriptor.size),
                    },
                )

        try:
            done = retrying(attempt, what=what, policy=self.policy)
        except requests.RequestException as exc:
            raise RegistryError(f"{what} failed: {exc}") from None
        if done.status_code == 202:  # the POST was refused, not the PUT
            raise self._error(done, repository, f"upload of {descriptor.digest}", "ecr:InitiateLayerUpload")
        if done.status_code != 201:
            permission = (
                "ecr:InitiateLayerUpload"
                if done.request.method == "POST"
                else "ecr:UploadLayerPart and ecr:CompleteLayerUpload"
            )
            raise self._error(done, repository, f"upload of {descriptor.digest}", permission)

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        """Ask the registry to mount blob `digest` of repository `source` into `repository`: no
        bytes move. False when it did not (ECR mounts only with the registry's BLOB_MOUNTING
        setting ENABLED): the upload session it opened instead is left to expire, and the
        caller uploads."""
        self._unless_interrupted(repository, digest)
        import oras.utils  # loaded with the client (ecrmirror.oras_registry)

        container = self._container(repository, "latest")
        url = oras.utils.append_url_params(
            f"{self._oras.prefix}://{container.upload_blob_url()}", {"mount": digest, "from": source}
        )
        try:
            response = retrying(
                lambda: self._oras.do_request(url, "POST", headers={"Content-Length": "0"}),
                what=f"mount of {digest} into {self.endpoint}/{repository}",
                policy=self.policy,
            )
        except requests.RequestException as exc:
            raise RegistryError(
                f"mount of {digest} into {self.endpoint}/{repository} failed: {exc}"
            ) from None
        if response.status_code == 201:
            return True
        if response.status_code == 202:
            return False
        raise self._error(response, repository, f"mount of {digest} from {source}", "ecr:InitiateLayerUpload")

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest of the manifest `reference` (a tag) names now, or None when it names none:
        one HEAD (ecr:BatchGetImage), a GET only if the registry does not say the digest."""
        url = f"{self._oras.prefix}://{self._container(repository, 'latest').manifest_url(reference)}"
        what = f"existence check of tag {reference}"
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        try:
            head = self._oras.do_request(url, "HEAD", headers=headers)
            if head.status_code == 200 and not head.headers.get("Docker-Content-Digest"):
                head = self._oras.do_request(url, "GET", headers=headers)
                if head.status_code == 200:
                    return sha256_digest(head.content)
        except requests.RequestException as exc:
            raise RegistryError(f"{what} in {self.endpoint}/{repository} failed: {exc}") from None
        if head.status_code == 404:
            return None
        if head.status_code != 200:
            raise self._error(head, repository, what, "ecr:BatchGetImage")
        return str(head.headers["Docker-Content-Digest"])

    def put_manifest(
        self, repository: str, tag: str, body: bytes, media_type: str, *, mutable: bool = False
    ) -> None:
        """PUT these exact bytes (not oras' upload_manifest, which re-serializes) as `tag` (or, for
        a manifest that needs no tag, as its own digest).

        `mutable`: ECR would let this PUT replace what the tag holds (a MUTABLE repository, or an
        exclusion that makes the tag mutable). The tag is asked for again right before the PUT, and
        one that holds anything (pushed by someone else since the run last looked) is refused as
        TagConflict, as an immutable repository refuses it. ECR has no conditional PUT: a push in
        the moment between that question and the PUT is the one window that remains.

        Retrying is safe: the same bytes again are the same manifest, and if a lost answer hid a
        success, an immutable repository refuses the repeat as TAG_INVALID, which the caller
        audits instead of failing.
        """
        self._unless_interrupted(repository, tag)
        if mutable and not _DIGEST.fullmatch(tag):
            held = self.manifest_digest(repository, tag)
            if held is not None:
                raise TagConflict(
                    f"{self.endpoint}/{repository}: the tag {tag} holds {held} now (pushed since "
                    "ecrmirror last looked). ecrmirror never overwrites a tag."
                )
        url = f"{self._oras.prefix}://{self._container(repository, 'latest').manifest_url(tag)}"

        def attempt() -> requests.Response:
            return self._oras.do_request(url, "PUT", data=body, headers={"Content-Type": media_type})

        try:
            response = retrying(attempt, what=f"manifest PUT for {repository}:{tag}", policy=self.policy)
        except requests.RequestException as exc:
            raise RegistryError(f"manifest PUT for {repository}:{tag} failed: {exc}") from None
        if response.status_code != 201:
            raise self._error(response, repository, f"manifest PUT for tag {tag}", "ecr:PutImage")
        echoed = response.headers.get("Docker-Content-Digest")
        if echoed and echoed != sha256_digest(body):
            raise RegistryError(
                f"{self.endpoint}/{repository}:{tag}: the registry stored manifest {echoed}, "
                f"not the {sha256_digest(body)} we sent"
            )
        self.manifest_store.put(sha256_digest(body), body)

    def _error(
        self, response: requests.Response, repository: str, what: str, permission: str
    ) -> EcrMirrorError:
        code, message = _oci_error(response)
        where = f"{self.endpoint}/{repository}"
        if code == "NAME_UNKNOWN":
            return RepositoryMissing(f"{where}: {what} failed: repository does not exist ({message})")
        if code == "TAG_INVALID" or "already exists" in message:
            return TagConflict(
                f"{where}: {what} refused: {message.rstrip('.')}. ecrmirror never overwrites a tag."
            )
        if response.status_code in (401, 403):
            said = f" {code}: {message}" if code or message else ""  # a HEAD has no body to say why
            return RegistryError(
                f"{where}: {what} was refused (HTTP {response.status_code}{said}). This step needs "
                f"{permission} on the repository; `pytest --ecrmirror-policy=sync` prints what a sync needs."
            )
        return RegistryError(f"{where}: {what} failed: HTTP {response.status_code} {code} {message}")


def _oci_error(response: requests.Response) -> tuple[str, str]:
    try:
        errors = json.loads(response.text).get("errors") or []
        first = errors[0]
        return str(first.get("code", "")), str(first.get("message", ""))
    except (ValueError, AttributeError, IndexError, TypeError):
        return "", response.text[:200].strip()
