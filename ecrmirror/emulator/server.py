"""An offline ECR: moto's ECR API plus the OCI registry endpoints moto lacks, over one shared state."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

FAKE_ACCESS_KEY = "ecrmirror-emulator"
FAKE_SECRET_KEY = "ecrmirror-emulator"
TOKEN_TTL = 12 * 3600  # ECR's registry tokens last 12 hours
_REGISTRY_PATH = re.compile(
    r"^/v2/(?P<name>[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*)"
    r"/(?P<kind>blobs/uploads|blobs|manifests|tags)/?(?P<rest>.*)$"
)
_CREDENTIAL_SCOPE = re.compile(r"Credential=(?P<key>[^/]+)/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_READ_ACTIONS = re.compile(r"^(Describe|List|Get|BatchGet|BatchCheck)")
REPLICATION_ROLE_NAME = "AWSServiceRoleForECRReplication"
REPLICATION_SERVICE = "replication.ecr.amazonaws.com"
# The IAM actions that ECR checks for each registry (OCI) request, as AWS documents them.
_REGISTRY_ACTIONS = {
    ("blobs", "GET"): ("ecr:GetDownloadUrlForLayer",),
    ("blobs", "HEAD"): ("ecr:BatchCheckLayerAvailability",),
    ("blobs/uploads", "POST"): ("ecr:InitiateLayerUpload",),
    ("blobs/uploads", "PATCH"): ("ecr:UploadLayerPart",),
    ("blobs/uploads", "PUT"): ("ecr:UploadLayerPart", "ecr:CompleteLayerUpload"),
    ("manifests", "GET"): ("ecr:BatchGetImage",),
    ("manifests", "HEAD"): ("ecr:BatchGetImage",),
    ("manifests", "PUT"): ("ecr:PutImage",),
    ("tags", "GET"): ("ecr:ListImages",),
}
WStart = Callable[..., Any]


@dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator served: `api` calls carry their action, `registry` calls a path."""

    kind: str  # "api" (ECR), "iam", or "registry"
    method: str
    path: str
    action: str
    status: int

    @property
    def is_write(self) -> bool:
        if self.kind != "registry":
            return not _READ_ACTIONS.match(self.action)
        return self.method not in ("GET", "HEAD")


@dataclass(frozen=True)
class _Grant:
    account: str
    region: str
    expires_at: float
    access_key: str  # whose IAM policies the registry checks


class _Denied(Exception):
    """IAM does not allow the caller an action on a resource."""


def _api_error(code: str, message: str, status: int = 400) -> Response:
    body = json.dumps({"__type": code, "message": message})
    return Response(body, status=status, content_type="application/x-amz-json-1.1")


def _oci_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"errors": [{"code": code, "message": message, "detail": {}}]})
    return Response(body, status=status, headers=headers, content_type="application/json")


class EmulatorApp:
    """The WSGI application: ECR API at `/`, registry at `/v2/`, introspection at `/_emulator/`."""

    def __init__(self, token_ttl: float = TOKEN_TTL, enforce_iam: bool = False) -> None:
        from moto.moto_server.werkzeug_app import create_backend_app

        self.token_ttl = token_ttl
        # With enforce_iam, callers other than the emulator's own administrator key get exactly
        # what their IAM policies allow, resource ARNs included, on the API and the registry.
        self.enforce_iam = enforce_iam
        # region -> "FAILED" or "IN_PROGRESS": what replication to that region does from now on
        self.replication_outcomes: dict[str, str] = {}
        self._moto = create_backend_app("ecr")
        self._moto_iam = create_backend_app("iam")
        self._lock = threading.RLock()
        self._storage = Path(tempfile.mkdtemp(prefix="ecrmirror-emulator-"))
        self._grants: dict[str, _Grant] = {}
        self._repo_blobs: dict[tuple[str, str, str], set[str]] = {}
        self._uploads: dict[str, tuple[tuple[str, str, str], Path]] = {}
        self._replication: dict[tuple[str, str, str, str], dict[tuple[str, str], str]] = {}
        self.requests: list[RecordedRequest] = []

    # -- state ---------------------------------------------------------------------------------
    def reset(self) -> None:
        from moto.backends import get_backend

        with self._lock:
            get_backend("ecr").reset()
            get_backend("iam").reset()
            self._grants.clear()
            self._replication.clear()
            self.replication_outcomes.clear()
            self._repo_blobs.clear()
            self._uploads.clear()
            self.requests.clear()
            shutil.rmtree(self._storage, ignore_errors=True)
            self._storage.mkdir(parents=True)

    def close(self) -> None:
        shutil.rmtree(self._storage, ignore_errors=True)

    def _backend(self, account: str, region: str) -> Any:
        from moto.ecr.models import ecr_backends

        return ecr_backends[account][region]

    def _blob_path(self, digest: str) -> Path:
        return self._storage / "blobs" / digest.replace(":", "-")

    # -- dispatch ------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: WStart) -> Iterable[bytes]:
        request = Request(environ)
        path = request.path
        if path.startswith("/_emulator/"):
            return self._introspect(request)(environ, start_response)
        with self._lock:
            if path == "/v2/" or path.startswith("/v2/"):
                response = self._registry(request)
                self.requests.append(
                    RecordedRequest("registry", request.method, path, "", response.status_code)
                )
                return response(environ, start_response)
            data = request.get_data()
            environ["wsgi.input"] = io.BytesIO(data)  # moto reads the body again
            scope = _CREDENTIAL_SCOPE.search(request.headers.get("Authorization", ""))
            if scope is not None and scope["service"] == "iam":
                action = parse_qs(data.decode("utf-8", "replace")).get("Action", [""])[0]
                return self._moto_app(self._moto_iam, "iam", action, environ, start_response)
            action = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
            answer = self._api(request, action, data)
            if answer is None:
                return self._moto_app(self._moto, "api", action, environ, start_response)
            self.requests.append(RecordedRequest("api", request.method, path, action, answer.status_code))
            return answer(environ, start_response)

    def _moto_app(
        self, app: Any, kind: str, action: str, environ: dict[str, Any], start_response: WStart
    ) -> Iterable[bytes]:
        status: list[int] = []

        def recording_start(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            status.append(int(status_line.split()[0]))
            return start_response(status_line, headers, exc_info)

        body = list(app(environ, recording_start))
        self.requests.append(
            RecordedRequest(
                kind, environ["REQUEST_METHOD"], environ["PATH_INFO"], action, status[0] if status else 0
            )
        )
        return body

    def _api(self, request: Request, action: str, data: bytes) -> Response | None:
        """The ECR actions the emulator answers itself; None hands the request to moto."""
        scope = _CREDENTIAL_SCOPE.search(request.headers.get("Authorization", ""))
        if scope is None:
            return _api_error(
                "UnrecognizedClientException", "The security token included in the request is invalid."
            )
        from moto.iam.models import get_account_id_from

        key, region = scope["key"], scope["region"]
        account = get_account_id_from(key)
        try:
            body = json.loads(data or b"{}")
        except ValueError:
            return None  # moto answers a malformed body as ECR would
        try:
            self._authorize(key, account, _api_permissions(action, body, account, region))
            if action == "GetAuthorizationToken":
                return self._authorization_token(key, account, region)
            if action == "PutReplicationConfiguration":
                return self._put_replication_configuration(key, account, region, body)
            if action == "DescribeImageReplicationStatus":
                return self._describe_image_replication_status(account, region, body)
        except _Denied as denied:
            return _api_error("AccessDeniedException", str(denied))
        return None

    # -- IAM ---------------------------------------------------------------------------------------
    def _authorize(self, key: str, account: str, permissions: Iterable[tuple[str, str]]) -> None:
        """Raise _Denied unless the caller's IAM policies allow every (action, resource)."""
        if not self.enforce_iam or key == FAKE_ACCESS_KEY:
            return
        from moto.iam.access_control import (
            CreateAccessKeyFailure,
            IAMPolicy,
            PermissionResult,
            create_access_key,
        )

        try:
            principal = create_access_key(account_id=account, partition="aws", access_key_id=key, headers={})
        except CreateAccessKeyFailure:
            raise _Denied(f"the caller's access key is not known to IAM in account {account}") from None
        policies = [IAMPolicy(policy) for policy in principal.collect_policies()]
        for action, resource in permissions:
            results = {policy.is_action_permitted(action, resource) for policy in policies}
            if PermissionResult.DENIED in results or PermissionResult.PERMITTED not in results:
                raise _Denied(
                    f"User: {principal.arn} is not authorized to perform: {action} on resource: {resource}"
                )

    def _introspect(self, request: Request) -> Response:
        if request.path == "/_emulator/requests" and request.method == "GET":
            return Response(json.dumps([asdict(r) for r in self.requests]), content_type="application/json")
        if request.path == "/_emulator/requests" and request.method == "DELETE":
            with self._lock:
                self.requests.clear()
            return Response(status=204)
        if request.path == "/_emulator/reset" and request.method == "POST":
            self.reset()
            return Response(status=204)
        return Response("unknown emulator endpoint\n", status=404)

    # -- API: the one action that moto gets wrong for us -----------------------------------------
    def _authorization_token(self, key: str, account: str, region: str) -> Response:
        """A real, expiring registry token (moto's expired in 2015 and carries no region)."""
        password = secrets.token_urlsafe(24)
        expires_at = time.time() + self.token_ttl
        self._grants[password] = _Grant(account, region, expires_at, key)
        token = base64.b64encode(f"AWS:{password}".encode()).decode()
        body: dict[str, Any] = {
            "authorizationData": [
                {
                    "authorizationToken": token,
                    "expiresAt": expires_at,
                    "proxyEndpoint": f"https://{account}.dkr.ecr.{region}.amazonaws.com",
                }
            ]
        }
        return Response(json.dumps(body), content_type="application/x-amz-json-1.1")

    # -- replication -------------------------------------------------------------------------------
    def _put_replication_configuration(self, key: str, account: str, region: str, body: Any) -> Response:
        """ECR's rules, which moto restricts to one: up to 10 rules, never onto the source itself.

        The first call creates the replication service-linked role, as the caller: that is why
        the caller needs iam:CreateServiceLinkedRole.
        """
        from moto.iam.exceptions import NotFoundException
        from moto.iam.models import iam_backends

        configuration = body.get("replicationConfiguration") or {}
        rules = configuration.get("rules")
        if not isinstance(rules, list) or len(rules) > 10:
            return _api_error(
                "ValidationException", "replicationConfiguration.rules must hold at most 10 rules"
            )
        for rule in rules:
            for destination in rule.get("destinations") or []:
                if (destination.get("region"), destination.get("registryId")) == (region, account):
                    return _api_error(
                        "InvalidParameterException",
                        "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: "
                        "'Replication destination cannot be the same as the source registry'",
                    )
        iam = iam_backends[account]["aws"]
        try:
            iam.get_role(REPLICATION_ROLE_NAME)
        except NotFoundException:
            role_path = f"/aws-service-role/{REPLICATION_SERVICE}/"
            self._authorize(
                key,
                account,
                [
                    (
                        "iam:CreateServiceLinkedRole",
                        f"arn:aws:iam::{account}:role{role_path}{REPLICATION_ROLE_NAME}",
                    )
                ],
            )
            trust = {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": REPLICATION_SERVICE},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
            iam.create_role(
                role_name=REPLICATION_ROLE_NAME,
                assume_role_policy_document=json.dumps(trust),
                path=role_path,
                permissions_boundary=None,
                description="Allows ECR to replicate images",
                tags=[],
                max_session_duration=None,
                linked_service=REPLICATION_SERVICE,
            )
        self._backend(account, region).replication_config = {"rules": rules}
        return Response(
            json.dumps({"replicationConfiguration": {"rules": rules}}),
            content_type="application/x-amz-json-1.1",
        )

    def _describe_image_replication_status(self, account: str, region: str, body: Any) -> Response:
        name = str(body.get("repositoryName", ""))
        registry = str(body.get("registryId") or account)
        repository = self._backend(registry, region).repositories.get(name)
        if repository is None:
            return _api_error(
                "RepositoryNotFoundException",
                f"The repository with name '{name}' does not exist in the registry with id '{registry}'",
            )
        image_id = body.get("imageId") or {}
        image = self._find_image(repository, image_id.get("imageDigest") or image_id.get("imageTag") or "")
        if image is None:
            return _api_error(
                "ImageNotFoundException",
                f"The image with imageId {json.dumps(image_id)} does not exist within the repository with "
                f"name '{name}' in the registry with id '{registry}'",
            )
        digest = image.get_image_digest()
        statuses = self._replication.get((registry, region, name, digest), {})
        answer = {
            "repositoryName": name,
            "imageId": {
                "imageDigest": digest,
                **({"imageTag": image_id["imageTag"]} if "imageTag" in image_id else {}),
            },
            "replicationStatuses": [
                {
                    "region": r,
                    "registryId": a,
                    "status": status,
                    **({"failureCode": "EMULATED_FAILURE"} if status == "FAILED" else {}),
                }
                for (r, a), status in sorted(statuses.items())
            ],
        }
        return Response(json.dumps(answer), content_type="application/x-amz-json-1.1")

    def _replicate(
        self,
        account: str,
        region: str,
        repository: Any,
        tag: str | None,
        text: str,
        media_type: str,
        digest: str,
    ) -> None:
        """Copy a pushed image to every destination whose rule matches, as ECR does after a push."""
        name = repository.name
        configuration = self._backend(account, region).replication_config or {}
        done: dict[tuple[str, str], str] = {}
        for rule in configuration.get("rules") or []:
            filters = [
                f.get("filter", "")
                for f in rule.get("repositoryFilters") or []
                if f.get("filterType", "PREFIX_MATCH") == "PREFIX_MATCH"
            ]
            if rule.get("repositoryFilters") and not any(name.startswith(f) for f in filters):
                continue
            for destination in rule.get("destinations") or []:
                where = (destination["region"], destination["registryId"])
                if where in done:
                    continue
                status = self.replication_outcomes.get(where[0], "COMPLETE")
                if status == "COMPLETE":
                    self._copy_image(account, region, repository, where, tag, text, media_type, digest)
                done[where] = status
        if done:
            self._replication[(account, region, name, digest)] = done

    def _copy_image(
        self,
        account: str,
        region: str,
        source: Any,
        where: tuple[str, str],
        tag: str | None,
        text: str,
        media_type: str,
        digest: str,
    ) -> None:
        from moto.ecr.exceptions import ImageAlreadyExistsException

        backend = self._backend(where[1], where[0])
        replica = backend.repositories.get(source.name)
        if replica is None:  # ECR creates the destination repository with the source's settings
            replica = backend.create_repository(
                repository_name=source.name,
                registry_id=None,
                encryption_config=dict(source.encryption_configuration),
                image_scan_config=source.image_scanning_configuration,
                image_tag_mutability=source.image_tag_mutability,
                image_tag_mutability_exclusion_filters=source.image_tag_mutability_exclusion_filters,
                tags=[],
            )
        blobs = self._repo_blobs.get((account, region, source.name), set())
        self._repo_blobs.setdefault((where[1], where[0], source.name), set()).update(blobs)
        with contextlib.suppress(ImageAlreadyExistsException):  # ECR leaves a held tag as it is
            backend.put_image(source.name, text, tag, media_type, digest)

    # -- registry ------------------------------------------------------------------------------
    def _authenticate(self, request: Request) -> _Grant | Response:
        header = request.headers.get("Authorization", "")
        challenge = {"WWW-Authenticate": 'Basic realm="ecrmirror-emulator",service="ecr.amazonaws.com"'}
        if not header.startswith("Basic "):
            return _oci_error(401, "UNAUTHORIZED", "Not Authorized", challenge)
        try:
            username, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return _oci_error(401, "UNAUTHORIZED", "Not Authorized", challenge)
        grant = self._grants.get(password)
        if username != "AWS" or grant is None:
            return _oci_error(401, "UNAUTHORIZED", "Not Authorized", challenge)
        if time.time() >= grant.expires_at:
            # As ECR: 403 and no WWW-Authenticate, so clients must know to renew.
            return _oci_error(
                403, "DENIED", "Your authorization token has expired. Reauthenticate and try again."
            )
        return grant

    def _registry(self, request: Request) -> Response:
        grant = self._authenticate(request)
        if isinstance(grant, Response):
            return grant
        if request.path == "/v2/":
            return Response("{}", content_type="application/json")
        match = _REGISTRY_PATH.match(request.path)
        if not match:
            return _oci_error(404, "NAME_INVALID", "invalid repository name or path")
        name, kind, rest = match["name"], match["kind"], match["rest"]
        backend = self._backend(grant.account, grant.region)
        repository = backend.repositories.get(name)
        if repository is None:
            return _oci_error(
                404,
                "NAME_UNKNOWN",
                f"The repository with name '{name}' does not exist in the registry with id '{grant.account}'",
            )
        key = (grant.account, grant.region, name)
        method = request.method
        arn = f"arn:aws:ecr:{grant.region}:{grant.account}:repository/{name}"
        actions = _REGISTRY_ACTIONS.get((kind, method), ())
        if kind == "blobs/uploads" and method == "PUT" and not request.content_length:
            actions = ("ecr:CompleteLayerUpload",)  # the body came in PATCHes
        try:
            self._authorize(grant.access_key, grant.account, [(action, arn) for action in actions])
        except _Denied as denied:
            return _oci_error(403, "DENIED", str(denied))
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
        return _oci_error(405, "UNSUPPORTED", f"{method} {kind} is not supported")

    def _get_blob(self, key: tuple[str, str, str], digest: str) -> Response:
        if digest not in self._repo_blobs.get(key, set()):
            return _oci_error(404, "BLOB_UNKNOWN", f"blob {digest} is unknown to this repository")
        path = self._blob_path(digest)
        headers = {"Docker-Content-Digest": digest, "Content-Length": str(path.stat().st_size)}
        # A streamed body keeps our Content-Length; werkzeug drops the body itself for HEAD.
        return Response(
            _stream(path), headers=headers, content_type="application/octet-stream", direct_passthrough=True
        )

    def _upload(self, request: Request, key: tuple[str, str, str], session_id: str) -> Response:
        name = key[2]
        if request.method == "POST" and not session_id:
            mount, source = request.args.get("mount"), request.args.get("from")
            if mount and source and mount in self._repo_blobs.get((key[0], key[1], source), set()):
                self._repo_blobs.setdefault(key, set()).add(mount)
                return Response(
                    status=201,
                    headers={"Location": f"/v2/{name}/blobs/{mount}", "Docker-Content-Digest": mount},
                )
            session_id = str(uuid.uuid4())
            part = self._storage / "uploads" / session_id
            part.parent.mkdir(parents=True, exist_ok=True)
            part.write_bytes(b"")
            self._uploads[session_id] = (key, part)
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
        upload = self._uploads.get(session_id)
        if upload is None or upload[0] != key:
            return _oci_error(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
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
            self._uploads.pop(session_id, None)
            part.unlink(missing_ok=True)
            return Response(status=204)
        return _oci_error(405, "UNSUPPORTED", f"{request.method} on an upload is not supported")

    @staticmethod
    def _append(request: Request, part: Path) -> None:
        with open(part, "ab") as out:
            while chunk := request.stream.read(1 << 20):
                out.write(chunk)

    def _finish_upload(self, key: tuple[str, str, str], session_id: str, digest: str) -> Response:
        _, part = self._uploads.pop(session_id)
        sha = hashlib.sha256()
        with open(part, "rb") as handle:
            while chunk := handle.read(1 << 20):
                sha.update(chunk)
        actual = "sha256:" + sha.hexdigest()
        if not _DIGEST.match(digest) or digest != actual:
            part.unlink(missing_ok=True)
            return _oci_error(
                400, "DIGEST_INVALID", f"provided digest {digest!r} does not match uploaded content {actual}"
            )
        target = self._blob_path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, target)
        self._repo_blobs.setdefault(key, set()).add(digest)
        return Response(
            status=201, headers={"Location": f"/v2/{key[2]}/blobs/{digest}", "Docker-Content-Digest": digest}
        )

    @staticmethod
    def _find_image(repository: Any, reference: str) -> Any:
        for image in repository.images:
            if (_DIGEST.match(reference) and image.get_image_digest() == reference) or (
                reference in image.image_tags
            ):
                return image
        return None

    def _get_manifest(self, repository: Any, name: str, reference: str) -> Response:
        image = self._find_image(repository, reference)
        if image is None:
            return _oci_error(404, "MANIFEST_UNKNOWN", f"Requested image not found: {name}:{reference}")
        body = image.image_manifest.encode("utf-8")
        media_type = image.image_manifest_media_type or json.loads(body).get("mediaType", "")
        headers = {"Docker-Content-Digest": image.get_image_digest()}
        return Response(body, headers=headers, content_type=media_type)

    def _put_manifest(
        self, request: Request, backend: Any, repository: Any, key: tuple[str, str, str], reference: str
    ) -> Response:
        from moto.ecr.exceptions import ImageAlreadyExistsException

        body = request.get_data()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        try:
            manifest = json.loads(body)
            text = body.decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return _oci_error(400, "MANIFEST_INVALID", "manifest is not valid JSON")
        media_type = request.headers.get("Content-Type", "") or manifest.get("mediaType", "")
        if not media_type.startswith("application/vnd."):
            return _oci_error(400, "MANIFEST_INVALID", f"unsupported media type {media_type!r}")
        have = self._repo_blobs.get(key, set())
        descriptors = [manifest.get("config") or {}, *(manifest.get("layers") or [])]
        wanted = [d.get("digest") for d in descriptors if isinstance(d, dict)]
        for blob in wanted:
            if blob not in have:
                return _oci_error(400, "MANIFEST_BLOB_UNKNOWN", f"blob {blob} is not in repository {key[2]}")
        is_digest = bool(_DIGEST.match(reference))
        if is_digest and reference != digest:
            return _oci_error(400, "DIGEST_INVALID", f"manifest digest {digest} is not {reference}")
        tag = None if is_digest else reference
        existing = self._find_image(repository, tag) if tag else None
        if (
            existing is not None
            and existing.get_image_digest() == digest
            and not repository.is_tag_immutable()
        ):
            # ECR accepts re-pushing the same manifest to a mutable tag (moto would refuse it).
            return Response(status=201, headers={"Docker-Content-Digest": digest})
        try:
            backend.put_image(repository.name, text, tag, media_type, digest)
            self._replicate(key[0], key[1], repository, tag, text, media_type, digest)
        except ImageAlreadyExistsException:
            return _oci_error(
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


def _api_permissions(action: str, body: Any, account: str, region: str) -> list[tuple[str, str]]:
    """The (IAM action, resource ARN) pairs ECR authorizes for one API call."""
    registry = str(body.get("registryId") or account)

    def arn(name: str) -> str:
        return f"arn:aws:ecr:{region}:{registry}:repository/{name}"

    if action == "DescribeRepositories":
        names = body.get("repositoryNames") or ["*"]
        return [(f"ecr:{action}", arn(name)) for name in names]
    if action in ("TagResource", "UntagResource", "ListTagsForResource"):
        return [(f"ecr:{action}", str(body.get("resourceArn", "")))]
    if "repositoryName" not in body:
        return [(f"ecr:{action}", "*")]  # registry-level: GetAuthorizationToken, replication, ...
    name = str(body["repositoryName"])
    permissions = [(f"ecr:{action}", arn(name))]
    if action == "CreateRepository":
        if body.get("tags"):
            permissions.append(("ecr:TagResource", arn(name)))  # tagging on create
        kms_key = (body.get("encryptionConfiguration") or {}).get("kmsKey")
        if kms_key:  # ECR validates the key and grants itself its use, as the caller
            permissions += [("kms:DescribeKey", kms_key), ("kms:CreateGrant", kms_key)]
    return permissions


def _stream(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            yield chunk


class _QuietHandler(WSGIRequestHandler):
    """No access log: the emulator runs inside pytest, whose output belongs to the user."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class Emulator:
    """The emulator served over real HTTP on 127.0.0.1 from a background thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token_ttl: float = TOKEN_TTL,
        access_log: bool = False,
        enforce_iam: bool = False,
    ) -> None:
        self.app = EmulatorApp(token_ttl=token_ttl, enforce_iam=enforce_iam)
        self._host = host
        self._port = port
        self._handler = WSGIRequestHandler if access_log else _QuietHandler
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Emulator:
        self._server = make_server(
            self._host, self._port, self.app, threaded=True, request_handler=self._handler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="ecr-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.app.close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return f"http://{self._host}:{self._server.server_port}"

    def environ(self) -> dict[str, str]:
        """The variables that point ecrmirror, boto3 and the AWS CLI at this emulator."""
        return {
            "AWS_ENDPOINT_URL_ECR": self.url,
            "ECRMIRROR_REGISTRY_ENDPOINT": self.url,
            "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_KEY,
        }

    @property
    def requests(self) -> list[RecordedRequest]:
        return list(self.app.requests)

    def writes(self) -> list[RecordedRequest]:
        return [r for r in self.app.requests if r.is_write]

    def reset(self) -> None:
        self.app.reset()
