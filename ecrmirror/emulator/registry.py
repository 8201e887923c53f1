"""The OCI registry ECR serves beside its API (moto has none): token auth, blobs, uploads, manifests,
tags and referrers, with the IAM action ECR checks for each request. A pushed manifest is replicated.

As ECR answers (userguide/registry_auth.html, the OCI distribution spec v1.1):
- an unauthenticated request gets 401 "Not Authorized" as text, challenging Basic auth with the
  registry's own URL as realm; every answer says `Docker-Distribution-Api-Version: registry/2.0`;
- a request whose Host is an ECR registry host acts in that account and region, and a token from
  another region is not accepted there; otherwise the token's registry is used;
- uploads answer their status (GET), take chunks (PATCH) only at the offset they have reached,
  and a cross-repository mount happens only with the account's BLOB_MOUNTING setting ENABLED;
- a manifest is deleted by digest (`DELETE`, as `oras manifest delete`), and
  `GET /v2/<name>/referrers/<digest>` lists the manifests whose subject it is; filtered by
  `artifactType`, it says so in `OCI-Filters-Applied`;
- the tag list comes a page at a time, as ECR's does: 100 tags without `n`, `n` up to 1,000.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

import ecrmirror.emulator.archive as archive
import ecrmirror.emulator.images as images
from ecrmirror.emulator.answers import DISTRIBUTION_HEADER, Refused, oci_error
from ecrmirror.emulator.iam import REGISTRY_ACTIONS, Caller, Denied, Iam
from ecrmirror.emulator.policies import allows
from ecrmirror.emulator.replication import Replicator
from ecrmirror.emulator.repositories import Where
from ecrmirror.emulator.state import Grant, RepositoryKey, State
from ecrmirror.emulator.throttle import Throttle

_PATH = re.compile(
    r"^/v2/(?P<name>[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*)"
    r"/(?P<kind>blobs/uploads|blobs|manifests|tags|referrers)/?(?P<rest>.*)$"
)
_ECR_HOST = re.compile(r"^(?P<account>\d{12})\.dkr[.-]ecr(?:-fips)?\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)\.")
_RANGE = re.compile(r"^(?:bytes=)?(?P<start>\d+)-(?P<end>\d+)$")
DEFAULT_ACCOUNT, DEFAULT_REGION = "123456789012", "us-east-1"
TAG_PAGE, MAX_TAG_PAGE = 100, 1000  # a tag list page without `n`, and the largest `n` ECR takes


class OciRegistry:
    """`/v2/`: what docker, helm, oras, skopeo and ecrmirror push to and pull from."""

    def __init__(self, state: State, iam: Iam, replicator: Replicator, throttle: Throttle) -> None:
        self.state = state
        self.iam = iam
        self.replicator = replicator
        self.throttle = throttle

    def answer(self, request: Request) -> Response:
        response = self._answer(request)
        response.headers.update(DISTRIBUTION_HEADER)
        return response

    def _answer(self, request: Request) -> Response:
        host = _ECR_HOST.match(request.host or "")
        grant = self._authenticate(request, host)
        if isinstance(grant, Response):
            return grant
        where = Where(host["account"], host["region"]) if host else Where(grant.account, grant.region)
        if request.path == "/v2/":
            return Response("{}", content_type="application/json")
        match = _PATH.match(request.path)
        if not match:
            return oci_error(404, "NAME_INVALID", "invalid repository name or path")
        name, kind, rest = match["name"], match["kind"], match["rest"]
        method = request.method
        actions = REGISTRY_ACTIONS.get((kind, method), ())
        if kind == "blobs/uploads" and method == "PUT" and not request.content_length:
            actions = ("ecr:CompleteLayerUpload",)  # the body came in PATCHes
        if actions and not self.throttle.allows(where.account, where.region, actions[-1].partition(":")[2]):
            return oci_error(429, "TOOMANYREQUESTS", "Rate exceeded")
        repository = where.backend().repositories.get(name)
        arn = f"arn:aws:ecr:{where.region}:{where.account}:repository/{name}"
        try:
            self.iam.authorize(grant.caller, [(action, arn) for action in actions])
            self._check_cross_account(grant, where, repository, actions, arn)
        except Denied as denied:
            return oci_error(403, "DENIED", str(denied))
        if repository is None:
            return oci_error(
                404,
                "NAME_UNKNOWN",
                f"The repository with name '{name}' does not exist in the registry with id '{where.account}'",
            )
        key = (where.account, where.region, name)
        try:
            return self._serve(request, where, repository, key, kind, rest, grant.caller)
        except Refused as refused:
            return refused.registry()

    def _serve(
        self,
        request: Request,
        where: Where,
        repository: Any,
        key: RepositoryKey,
        kind: str,
        rest: str,
        caller: Caller,
    ) -> Response:
        method = request.method
        if kind == "blobs" and method in ("GET", "HEAD"):
            return self._get_blob(key, rest)
        if kind == "blobs/uploads":
            return self._upload(request, where, key, rest)
        if kind == "manifests" and method in ("GET", "HEAD"):
            return self._get_manifest(where, repository, rest, caller)
        if kind == "manifests" and method == "PUT":
            return self._put_manifest(request, where, repository, key, rest, caller)
        if kind == "manifests" and method == "DELETE":
            return self._delete_manifest(repository, rest)
        if kind == "tags" and method == "GET" and rest == "list":
            return self._tags(request, repository)
        if kind == "referrers" and method == "GET":
            artifact_type = request.args.get("artifactType")
            # ACTIVE referrers only: whether ECR lists archived ones here is unverified
            found = images.referrers(
                repository, rest, artifact_type, lambda i: archive.pullable(self.state, i)
            )
            index = {"schemaVersion": 2, "mediaType": images.IMAGE_INDEXES[0], "manifests": found}
            # The spec: a registry that applies the filter MUST say so, or clients filter again.
            applied = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
            return Response(json.dumps(index), headers=applied, content_type=images.IMAGE_INDEXES[0])
        return oci_error(405, "UNSUPPORTED", f"{method} {kind} is not supported")

    # -- who asks -----------------------------------------------------------------------------------------
    def _authenticate(self, request: Request, host: re.Match[str] | None) -> Grant | Response:
        account, region = (host["account"], host["region"]) if host else (DEFAULT_ACCOUNT, DEFAULT_REGION)
        realm = f"https://{account}.dkr.ecr.{region}.amazonaws.com/"
        refused = Response(
            "Not Authorized\n",
            status=401,
            headers={"WWW-Authenticate": f'Basic realm="{realm}",service="ecr.amazonaws.com"'},
            content_type="text/plain; charset=utf-8",
        )
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return refused
        try:
            username, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return refused
        grant = self.state.grants.get(password)
        if username != "AWS" or grant is None or (host is not None and host["region"] != grant.region):
            return refused  # a token is good for the region it was issued in
        if time.time() >= grant.expires_at:
            # As ECR: 403 and no WWW-Authenticate, so clients must know to renew.
            return oci_error(
                403, "DENIED", "Your authorization token has expired. Reauthenticate and try again."
            )
        return grant

    def _check_cross_account(
        self, grant: Grant, where: Where, repository: Any, actions: tuple[str, ...], arn: str
    ) -> None:
        caller = grant.caller
        if caller.admin or where.account == caller.account:
            return
        policy = repository.policy if repository is not None else None
        for action in actions:
            if not allows(policy, caller.account, caller.arns(), action, arn):
                raise Denied(
                    f"User: arn:aws:iam::{caller.account}:root is not authorized to perform: {action} on "
                    f"resource: {arn} because no resource-based policy allows the {action} action"
                )

    # -- blobs ---------------------------------------------------------------------------------------------
    def _get_blob(self, key: RepositoryKey, digest: str) -> Response:
        if digest not in self.state.repo_blobs.get(key, set()):
            return oci_error(404, "BLOB_UNKNOWN", f"blob {digest} is unknown to this repository")
        path = self.state.blob_path(digest)
        headers = {"Docker-Content-Digest": digest, "Content-Length": str(path.stat().st_size)}
        # A streamed body keeps our Content-Length; werkzeug drops the body itself for HEAD.
        return Response(
            _stream(path), headers=headers, content_type="application/octet-stream", direct_passthrough=True
        )

    def _upload(self, request: Request, where: Where, key: RepositoryKey, session_id: str) -> Response:
        name = key[2]
        if request.method == "POST" and not session_id:
            mount, source = request.args.get("mount"), request.args.get("from")
            settings = self.state.account_settings.get((where.account, where.region), {})
            if (
                mount
                and source
                and settings.get("BLOB_MOUNTING") == "ENABLED"
                and mount in self.state.repo_blobs.get((key[0], key[1], source), set())
            ):
                self.state.repo_blobs.setdefault(key, set()).add(mount)
                return Response(
                    status=201,
                    headers={"Location": f"/v2/{name}/blobs/{mount}", "Docker-Content-Digest": mount},
                )
            session_id = str(uuid.uuid4())
            part = self.state.storage / "uploads" / session_id
            part.parent.mkdir(parents=True, exist_ok=True)
            part.write_bytes(b"")
            self.state.uploads[session_id] = (key, part)
            digest = request.args.get("digest")
            if digest:  # single-POST monolithic upload
                _append(request, part)
                return self._finish_upload(key, session_id, digest)
            return _upload_status(202, name, session_id, 0)
        upload = self.state.uploads.get(session_id)
        if upload is None or upload[0] != key:
            return oci_error(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
        part = upload[1]
        size = part.stat().st_size
        if request.method == "GET":
            return _upload_status(204, name, session_id, size)
        if request.method == "PATCH":
            claimed = _RANGE.match(request.headers.get("Content-Range", ""))
            if claimed is not None and int(claimed["start"]) != size:
                # A chunk out of order, or one sent again: the spec says 416 with what it holds.
                refused = oci_error(
                    416, "BLOB_UPLOAD_INVALID", f"the upload holds bytes 0-{max(size - 1, 0)}"
                )
                refused.headers.update(_upload_headers(name, session_id, size))
                return refused
            _append(request, part)
            return _upload_status(202, name, session_id, part.stat().st_size)
        if request.method == "PUT":
            _append(request, part)
            return self._finish_upload(key, session_id, request.args.get("digest", ""))
        if request.method == "DELETE":
            self.state.uploads.pop(session_id, None)
            part.unlink(missing_ok=True)
            return Response(status=204)
        return oci_error(405, "UNSUPPORTED", f"{request.method} on an upload is not supported")

    def _finish_upload(self, key: RepositoryKey, session_id: str, digest: str) -> Response:
        _, part = self.state.uploads.pop(session_id)
        sha = hashlib.sha256()
        with open(part, "rb") as handle:
            while chunk := handle.read(1 << 20):
                sha.update(chunk)
        actual = "sha256:" + sha.hexdigest()
        if not images.DIGEST.match(digest) or digest != actual:
            part.unlink(missing_ok=True)
            return oci_error(
                400, "DIGEST_INVALID", f"provided digest {digest!r} does not match uploaded content {actual}"
            )
        target = self.state.blob_path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, target)
        self.state.repo_blobs.setdefault(key, set()).add(digest)
        return Response(
            status=201, headers={"Location": f"/v2/{key[2]}/blobs/{digest}", "Docker-Content-Digest": digest}
        )

    # -- manifests and tags ---------------------------------------------------------------------------------
    def _get_manifest(self, where: Where, repository: Any, reference: str, caller: Caller) -> Response:
        """A pull (GET or HEAD): an archived or activating image is not found, as ECR answers it
        (userguide/archive-image.html); a pull stamps the image's lastRecordedPullTime."""
        image = images.find(repository, reference)
        if image is None or not archive.pullable(self.state, image):
            return oci_error(
                404, "MANIFEST_UNKNOWN", f"Requested image not found: {repository.name}:{reference}"
            )
        archive.pulled(self.state, where, image, caller)
        body = image.image_manifest.encode("utf-8")
        media_type = image.image_manifest_media_type or json.loads(body).get("mediaType", "")
        headers = {"Docker-Content-Digest": image.get_image_digest()}
        return Response(body, headers=headers, content_type=media_type)

    def _put_manifest(
        self,
        request: Request,
        where: Where,
        repository: Any,
        key: RepositoryKey,
        reference: str,
        caller: Caller,
    ) -> Response:
        body = request.get_data()
        is_digest = bool(images.DIGEST.match(reference))
        tag = None if is_digest else reference
        image = images.put(
            where.account,
            repository,
            body,
            request.headers.get("Content-Type", "").split(";")[0].strip(),
            tag,
            expected_digest=reference if is_digest else None,
            blobs=self.state.repo_blobs.get(key, set()),
        )
        self.replicator.replicate(where, repository, image, tag)
        self.state.pushed(where, repository, image, tag, caller)
        digest = image.get_image_digest()
        headers = {"Location": f"/v2/{repository.name}/manifests/{digest}", "Docker-Content-Digest": digest}
        subject = json.loads(body).get("subject")
        if isinstance(subject, dict) and subject.get("digest"):
            headers["OCI-Subject"] = str(subject["digest"])  # this registry serves referrers itself
        return Response(status=201, headers=headers)

    def _delete_manifest(self, repository: Any, reference: str) -> Response:
        if not images.DIGEST.match(reference):
            return oci_error(400, "UNSUPPORTED", "delete a manifest by its digest")
        image = images.find(repository, reference)
        if image is None:
            return oci_error(
                404, "MANIFEST_UNKNOWN", f"Requested image not found: {repository.name}@{reference}"
            )
        index = images.referenced_by_index(repository, image)
        if index is not None:
            return oci_error(
                409, "DENIED", f"Requested image referenced by manifest list: [{index.get_image_digest()}]"
            )
        repository.images.remove(image)
        return Response(status=202)

    def _tags(self, request: Request, repository: Any) -> Response:
        """The tag list, in the spec's lexical order, a page at a time as ECR gives it: 100 tags
        without `n`, and `n` above 1,000 refused as ECR refuses its maxResults (users' reports: see
        docs/emulator-fidelity.md, row 24). `n=0` is the spec's empty list without a Link."""
        tags = sorted({tag for image in repository.images for tag in image.image_tags if tag})
        last = request.args.get("last")
        if last:
            tags = [t for t in tags if t > last]
        asked = request.args.get("n")
        limit = TAG_PAGE if asked is None else _page_size(asked)
        if isinstance(limit, str):
            return oci_error(400, "UNSUPPORTED", limit)
        headers = {}
        if len(tags) > limit:
            tags = tags[:limit]
            if tags:  # the next page starts after this one's last tag
                query = urlencode({**({"n": limit} if asked is not None else {}), "last": tags[-1]})
                headers["Link"] = f'</v2/{repository.name}/tags/list?{query}>; rel="next"'
        return Response(
            json.dumps({"name": repository.name, "tags": tags}),
            headers=headers,
            content_type="application/json",
        )


def _page_size(asked: str) -> int | str:
    """`n` as a page size, or why ECR refuses it (its words for its maxResults above 1,000)."""
    try:
        size = int(asked)
    except ValueError:
        size = -1
    if size > MAX_TAG_PAGE:
        return (
            "Invalid parameter at 'maxResults' failed to satisfy constraint: "
            f"'Member must have value less than or equal to {MAX_TAG_PAGE}'"
        )
    return size if size >= 0 else f"n must be a whole number from 0 to {MAX_TAG_PAGE}, not {asked!r}"


def _upload_headers(name: str, session_id: str, size: int) -> dict[str, str]:
    return {
        "Location": f"/v2/{name}/blobs/uploads/{session_id}",
        "Range": f"0-{max(size - 1, 0)}",
        "Docker-Upload-UUID": session_id,
    }


def _upload_status(status: int, name: str, session_id: str, size: int) -> Response:
    return Response(status=status, headers=_upload_headers(name, session_id, size))


def _append(request: Request, part: Path) -> None:
    with open(part, "ab") as out:
        while chunk := request.stream.read(1 << 20):
            out.write(chunk)


def _stream(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            yield chunk
