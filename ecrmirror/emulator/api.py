"""The ECR API actions the emulator answers itself, where moto's answer is missing or wrong for us;
every other action goes on to moto. Each call is authorized first (iam.py)."""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from typing import Any

from werkzeug.wrappers import Request, Response

from ecrmirror.emulator.iam import Caller, Denied, Iam, api_permissions
from ecrmirror.emulator.replication import Replicator
from ecrmirror.emulator.state import Grant, State, find_image

CREDENTIAL_SCOPE = re.compile(r"Credential=(?P<key>[^/]+)/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/")
REPLICATION_ROLE_NAME = "AWSServiceRoleForECRReplication"
REPLICATION_SERVICE = "replication.ecr.amazonaws.com"


def api_error(code: str, message: str, status: int = 400) -> Response:
    body = json.dumps({"__type": code, "message": message})
    return Response(body, status=status, content_type="application/x-amz-json-1.1")


class EcrApi:
    """GetAuthorizationToken, PutReplicationConfiguration and DescribeImageReplicationStatus."""

    def __init__(self, state: State, iam: Iam, replicator: Replicator) -> None:
        self.state = state
        self.iam = iam
        self.replicator = replicator

    def answer(self, request: Request, action: str, data: bytes) -> Response | None:
        """The ECR actions the emulator answers itself; None hands the request to moto."""
        scope = CREDENTIAL_SCOPE.search(request.headers.get("Authorization", ""))
        if scope is None:
            return api_error(
                "UnrecognizedClientException", "The security token included in the request is invalid."
            )
        from moto.iam.models import get_account_id_from

        key, region = scope["key"], scope["region"]
        caller = Caller(key, get_account_id_from(key), request.headers.get("X-Amz-Security-Token", ""))
        account = caller.account
        try:
            body = json.loads(data or b"{}")
        except ValueError:
            return None  # moto answers a malformed body as ECR would
        try:
            self.iam.authorize(caller, api_permissions(action, body, account, region))
            if action == "GetAuthorizationToken":
                return self._authorization_token(caller, region)
            if action == "PutReplicationConfiguration":
                return self._put_replication_configuration(caller, region, body)
            if action == "DescribeImageReplicationStatus":
                return self._describe_image_replication_status(account, region, body)
        except Denied as denied:
            return api_error("AccessDeniedException", str(denied))
        return None

    # -- registry tokens: moto's expired in 2015 -------------------------------------------------
    def _authorization_token(self, caller: Caller, region: str) -> Response:
        """A real, expiring registry token (moto's expired in 2015 and carries no region)."""
        password = secrets.token_urlsafe(24)
        expires_at = time.time() + self.state.token_ttl
        self.state.grants[password] = Grant(caller, region, expires_at)
        account = caller.account
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
    def _put_replication_configuration(self, caller: Caller, region: str, body: Any) -> Response:
        """ECR's rules, which moto restricts to one: up to 10 rules, never onto the source itself.

        The first call creates the replication service-linked role, as the caller: that is why
        the caller needs iam:CreateServiceLinkedRole.
        """
        from moto.iam.exceptions import NotFoundException
        from moto.iam.models import iam_backends

        account = caller.account
        configuration = body.get("replicationConfiguration") or {}
        rules = configuration.get("rules")
        if not isinstance(rules, list) or len(rules) > 10:
            return api_error(
                "ValidationException", "replicationConfiguration.rules must hold at most 10 rules"
            )
        for rule in rules:
            for destination in rule.get("destinations") or []:
                if (destination.get("region"), destination.get("registryId")) == (region, account):
                    return api_error(
                        "InvalidParameterException",
                        "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: "
                        "'Replication destination cannot be the same as the source registry'",
                    )
        roles = iam_backends[account]["aws"]
        try:
            roles.get_role(REPLICATION_ROLE_NAME)
        except NotFoundException:
            role_path = f"/aws-service-role/{REPLICATION_SERVICE}/"
            self.iam.authorize(
                caller,
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
            roles.create_role(
                role_name=REPLICATION_ROLE_NAME,
                assume_role_policy_document=json.dumps(trust),
                path=role_path,
                permissions_boundary=None,
                description="Allows ECR to replicate images",
                tags=[],
                max_session_duration=None,
                linked_service=REPLICATION_SERVICE,
            )
        self.state.backend(account, region).replication_config = {"rules": rules}
        return Response(
            json.dumps({"replicationConfiguration": {"rules": rules}}),
            content_type="application/x-amz-json-1.1",
        )

    def _describe_image_replication_status(self, account: str, region: str, body: Any) -> Response:
        name = str(body.get("repositoryName", ""))
        registry = str(body.get("registryId") or account)
        repository = self.state.backend(registry, region).repositories.get(name)
        if repository is None:
            return api_error(
                "RepositoryNotFoundException",
                f"The repository with name '{name}' does not exist in the registry with id '{registry}'",
            )
        image_id = body.get("imageId") or {}
        image = find_image(repository, image_id.get("imageDigest") or image_id.get("imageTag") or "")
        if image is None:
            return api_error(
                "ImageNotFoundException",
                f"The image with imageId {json.dumps(image_id)} does not exist within the repository with "
                f"name '{name}' in the registry with id '{registry}'",
            )
        digest = image.get_image_digest()
        statuses = self.replicator.statuses(registry, region, name, digest)
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
