"""The OCI registry ECR serves beside its API (moto has none): token auth, blobs, uploads, manifests,
tags, with the IAM action ECR checks for each request. A pushed manifest is replicated."""

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

from werkzeug.wrappers import Request, Response

from ecrmirror.emulator.iam import REGISTRY_ACTIONS, Denied, Iam
from ecrmirror.emulator.replication import Replicator
from ecrmirror.emulator.state import DIGEST, Grant, RepositoryKey, State, find_image

_PATH = re.compile(
    r"^/v2/(?P<name>[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*)"
    r"/(?P<kind>blobs/uploads|blobs|manifests|tags)/?(?P<rest>.*)$"
)


def oci_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"errors": [{"code": code, "message": message, "detail": {}}]})
    return Response(body, status=status, headers=headers, content_type="application/json")


class OciRegistry:
    """`/v2/`: what docker, helm, oras and ecrmirror push to and pull from."""

    def __init__(self, state: State, iam: Iam, replicator: Replicator) -> None:
        self.state = state
        self.iam = iam
        self.replicator = replicator

    def _authenticate(self, request: Request) -> Grant | Response:
        header = request.headers.get("Authorization", "")
        challenge = {"WWW-Authenticate": 'Basic realm="ecrmirror-emulator",service="ecr.amazonaws.com"'}
        if not header.startswith("Basic "):
            return oci_error(401, "UNAUTHORIZED", "Not Authorized", challenge)
        try:
            username, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return oci_error(401, "UNAUTHORIZED", "Not Authorized", challenge)
        grant = self.state.grants.get(password)
        if username != "AWS" or grant is None:
            return oci_error(401, "UNAUTHORIZED", "Not Authorized", challenge)
        if time.time() >= grant.expires_at:
            # As ECR: 403 and no WWW-Authenticate, so clients must know to renew.
            return oci_error(
                403, "DENIED", "Your authorization token has expired. Reauthenticate and try again."
            )
        return grant

    def answer(self, request: Request) -> Response:
        grant = self._authenticate(request)
        if isinstance(grant, Response):
            return grant
        if request.path == "/v2/":
            return Response("{}", content_type="application/json")
        match = _PATH.match(request.path)
        if not match:
            return oci_error(404, "NAME_INVALID", "invalid repository name or path")
        name, kind, rest = match["name"], match["kind"], match["rest"]
        backend = self.state.backend(grant.account, grant.region)
        repository = backend.repositories.get(name)
        if repository is None:
            return oci_error(
                404,
                "NAME_UNKNOWN",
                f"The repository with name '{name}' does not exist in the registry with id '{grant.account}'",
            )
        key = (grant.account, grant.region, name)
        method = request.method
        arn = f"arn:aws:ecr:{grant.region}:{grant.account}:repository/{name}"
        actions = REGISTRY_ACTIONS.get((kind, method), ())
        if kind == "blobs/uploads" and method == "PUT" and not request.content_length:
            actions = ("ecr:CompleteLayerUpload",)  # the body came in PATCHes
        try:
            self.iam.authorize(grant.caller, [(action, arn) for action in actions])
        except Denied as denied:
            return oci_error(403, "DENIED", str(denied))
        if kind == "blobs" and method in ("GET", "HEAD"):
            return self._get_blob(key, rest)
        if kind == "blobs/uploads":
            return self._upload(request, key, rest)
        if kind == "manifests" and method in ("GET", "HEAD"):
            return self._get_manifest(repository, name, rest)
        if kind == "manifests" and method == "PUT":
            return self._put_manifest(request, backend, repository, key, rest)
        if kind == "tags" and method == "GET" and rest == "list":
            return self._tags(request, repository, name)
        return oci_error(405, "UNSUPPORTED", f"{method} {kind} is not supported")

    def _get_blob(self, key: RepositoryKey, digest: str) -> Response:
        if digest not in self.state.repo_blobs.get(key, set()):
            return oci_error(404, "BLOB_UNKNOWN", f"blob {digest} is unknown to this repository")
        path = self.state.blob_path(digest)
        headers = {"Docker-Content-Digest": digest, "Content-Length": str(path.stat().st_size)}
        # A streamed body keeps our Content-Length; werkzeug drops the body itself for HEAD.
        return Response(
            _stream(path), headers=headers, content_type="application/octet-stream", direct_passthrough=True
        )

    def _upload(self, request: Request, key: RepositoryKey, session_id: str) -> Response:
        name = key[2]
        if request.method == "POST" and not session_id:
            mount, source = request.args.get("mount"), request.args.get("from")
            if mount and source and mount in self.state.repo_blobs.get((key[0], key[1], source), set()):
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
                self._append(request, part)
                return self._finish_upload(key, session_id, digest)
            return Response(
                status=202,
                headers={
                    "Location": f"/v2/{name}/blobs/uploads/{session_id}",
                    "Range": "0-0",
                    "Docker-Upload-UUID": session_id,
                },
            )
        upload = self.state.uploads.get(session_id)
        if upload is None or upload[0] != key:
            return oci_error(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
        part = upload[1]
        if request.method == "PATCH":
            self._append(request, part)
            size = part.stat().st_size
            return Response(
                status=202,
                headers={
                    "Location": f"/v2/{name}/blobs/uploads/{session_id}",
                    "Range": f"0-{max(size - 1, 0)}",
                    "Docker-Upload-UUID": session_id,
                },
            )
        if request.method == "PUT":
            self._append(request, part)
            return self._finish_upload(key, session_id, request.args.get("digest", ""))
        if request.method == "DELETE":
            self.state.uploads.pop(session_id, None)
            part.unlink(missing_ok=True)
            return Response(status=204)
        return oci_error(405, "UNSUPPORTED", f"{request.method} on an upload is not supported")

    @staticmethod
    def _append(request: Request, part: Path) -> None:
        with open(part, "ab") as out:
            while chunk := request.stream.read(1 << 20):
                out.write(chunk)

    def _finish_upload(self, key: RepositoryKey, session_id: str, digest: str) -> Response:
        _, part = self.state.uploads.pop(session_id)
        sha = hashlib.sha256()
        with open(part, "rb") as handle:
            while chunk := handle.read(1 << 20):
                sha.update(chunk)
        actual = "sha256:" + sha.hexdigest()
        if not DIGEST.match(digest) or digest != actual:
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

    def _get_manifest(self, repository: Any, name: str, reference: str) -> Response:
        image = find_image(repository, reference)
        if image is None:
            return oci_error(404, "MANIFEST_UNKNOWN", f"Requested image not found: {name}:{reference}")
        body = image.image_manifest.encode("utf-8")
        media_type = image.image_manifest_media_type or json.loads(body).get("mediaType", "")
        headers = {"Docker-Content-Digest": image.get_image_digest()}
        return Response(body, headers=headers, content_type=media_type)

    def _put_manifest(
        self, request: Request, backend: Any, repository: Any, key: RepositoryKey, reference: str
    ) -> Response:
        from moto.ecr.exceptions import ImageAlreadyExistsException

        body = request.get_data()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        try:
            manifest = json.loads(body)
            text = body.decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return oci_error(400, "MANIFEST_INVALID", "manifest is not valid JSON")
        media_type = request.headers.get("Content-Type", "") or manifest.get("mediaType", "")
        if not media_type.startswith("application/vnd."):
            return oci_error(400, "MANIFEST_INVALID", f"unsupported media type {media_type!r}")
        have = self.state.repo_blobs.get(key, set())
        descriptors = [manifest.get("config") or {}, *(manifest.get("layers") or [])]
        wanted = [d.get("digest") for d in descriptors if isinstance(d, dict)]
        for blob in wanted:
            if blob not in have:
                return oci_error(400, "MANIFEST_BLOB_UNKNOWN", f"blob {blob} is not in repository {key[2]}")
        is_digest = bool(DIGEST.match(reference))
        if is_digest and reference != digest:
            return oci_error(400, "DIGEST_INVALID", f"manifest digest {digest} is not {reference}")
        tag = None if is_digest else reference
        existing = find_image(repository, tag) if tag else None
        if (
            existing is not None
            and existing.get_image_digest() == digest
            and not repository.is_tag_immutable()
        ):
            # ECR accepts re-pushing the same manifest to a mutable tag (moto would refuse it).
            return Response(status=201, headers={"Docker-Content-Digest": digest})
        try:
            backend.put_image(repository.name, text, tag, media_type, digest)
            self.replicator.replicate(key[0], key[1], repository, tag, text, media_type, digest)
        except ImageAlreadyExistsException:
            return oci_error(
                400,
                "TAG_INVALID",
                f"The image tag '{tag}' already exists in the '{repository.name}' "
                "repository and cannot be overwritten because the repository is "
                "immutable.",
            )
        return Response(
            status=201,
            headers={
                "Location": f"/v2/{repository.name}/manifests/{digest}",
                "Docker-Content-Digest": digest,
            },
        )

    def _tags(self, request: Request, repository: Any, name: str) -> Response:
        tags = sorted({tag for image in repository.images for tag in image.image_tags if tag})
        last = request.args.get("last")
        if last:
            tags = [t for t in tags if t > last]
        limit = request.args.get("n", type=int)
        headers = {}
        if limit is not None and len(tags) > limit:
            tags = tags[:limit]
            headers["Link"] = f'</v2/{name}/tags/list?n={limit}&last={tags[-1]}>; rel="next"'
        return Response(
            json.dumps({"name": name, "tags": tags}), headers=headers, content_type="application/json"
        )


def _stream(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            yield chunk
