"""The ECR API as the emulator answers it: who calls, in which registry, whether they may, and the
actions it answers itself where moto's answer is missing or not ECR's; the rest goes on to moto,
in the right account.

A call acts in the registry its `registryId` names, else the caller's own. Another account's
repository needs its repository policy (userguide/repository-policies.html): without one, the
call is denied as ECR denies it. The emulator's administrator keys act in any account;
`ecrmirror-emulator-<account>` keys are an administrator of that one account.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import secrets
import time
from typing import Any

from werkzeug.wrappers import Request, Response

import ecrmirror.emulator.archive as archive
import ecrmirror.emulator.backfill as backfill
import ecrmirror.emulator.images as images
import ecrmirror.emulator.managed_signing as managed_signing
import ecrmirror.emulator.pull_through as pull_through
import ecrmirror.emulator.repositories as repositories
from ecrmirror import ecr_rules
from ecrmirror.emulator.answers import Refused, api_answer, api_error
from ecrmirror.emulator.iam import ADMIN_ACCESS_KEY, Caller, Denied, Iam, api_permissions
from ecrmirror.emulator.kms import Kms
from ecrmirror.emulator.policies import allows
from ecrmirror.emulator.replication import Replicator
from ecrmirror.emulator.repositories import Handler, Where
from ecrmirror.emulator.state import Grant, State
from ecrmirror.emulator.throttle import Throttle

CREDENTIAL_SCOPE = re.compile(r"Credential=(?P<key>[^/]+)/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/")
REPLICATION_ROLE_NAME = "AWSServiceRoleForECRReplication"
REPLICATION_SERVICE = "replication.ecr.amazonaws.com"
TEMPLATE_ROLE_NAME = "AWSServiceRoleForECRTemplate"
TEMPLATE_SERVICE = "ecr.amazonaws.com"
DEFAULT_ACCOUNT = "123456789012"
ACCOUNT_ADMIN = re.compile(rf"^{ADMIN_ACCESS_KEY}-(?P<account>\d{{12}})$")
ACCOUNT_SETTINGS = {
    "BASIC_SCAN_TYPE_VERSION": "AWS_NATIVE",
    "REGISTRY_POLICY_SCOPE": "V2",
    "BLOB_MOUNTING": "DISABLED",
}


class EcrApi:
    """Routes one ECR API call: authorization, throttling, then our handler or moto's."""

    def __init__(self, state: State, iam: Iam, replicator: Replicator, throttle: Throttle, kms: Kms) -> None:
        self.state = state
        self.iam = iam
        self.replicator = replicator
        self.throttle = throttle
        self.kms = kms
        self._handlers: dict[str, Handler] = {
            "GetAuthorizationToken": self._authorization_token,
            "PutReplicationConfiguration": self._put_replication_configuration,
            "DescribeImageReplicationStatus": self._describe_image_replication_status,
            "CreateRepository": self._check_create_repository,
            "DescribeRepositories": lambda w, b, c: repositories.describe_repositories(w, b),
            "TagResource": lambda w, b, c: repositories.tag_resource(w, b),
            "PutLifecyclePolicy": lambda w, b, c: repositories.put_lifecycle_policy(w, b),
            "PutImageTagMutability": self._check_mutability,
            "PutImage": self._put_image,
            "BatchGetImage": lambda w, b, c: images.batch_get_image(
                w.repository(b.get("repositoryName", "")), b
            ),
            "DescribeImages": lambda w, b, c: images.describe_images(
                w.repository(b.get("repositoryName", "")), b
            ),
            "BatchDeleteImage": lambda w, b, c: images.batch_delete_image(w, b),
            "ListImages": lambda w, b, c: images.list_images(w.repository(b.get("repositoryName", "")), b),
            "CreateRepositoryCreationTemplate": self._create_template,
            "UpdateRepositoryCreationTemplate": lambda w, b, c: repositories.update_template(
                self.state, w, b, self.kms
            ),
            "DeleteRepositoryCreationTemplate": lambda w, b, c: repositories.delete_template(
                self.state, w, b
            ),
            "DescribeRepositoryCreationTemplates": lambda w, b, c: repositories.describe_templates(
                self.state, w, b
            ),
            "PutRegistryScanningConfiguration": _put_registry_scanning_configuration,
            "PutAccountSetting": self._put_account_setting,
            "GetAccountSetting": self._get_account_setting,
            "GetDownloadUrlForLayer": self._download_url_for_layer,
        }
        for part in (archive, backfill, managed_signing, pull_through):  # each answers its own actions
            self._handlers.update(part.handlers(state, iam, replicator))

    def answer(self, request: Request, action: str, data: bytes) -> Response | None:
        """The answer to one API call; None hands it to moto (the environ then names the account)."""
        scope = CREDENTIAL_SCOPE.search(request.headers.get("Authorization", ""))
        if scope is None:
            return api_error(
                "UnrecognizedClientException", "The security token included in the request is invalid."
            )
        caller = self.caller(scope["key"], request.headers.get("X-Amz-Security-Token", ""))
        region = scope["region"]
        try:
            body = json.loads(data or b"{}")
        except ValueError:
            return None  # moto answers a malformed body as ECR would
        if not isinstance(body, dict):
            return None
        malformed = _malformed(action, body)
        if malformed is not None:
            return malformed.api()
        account = str(body.get("registryId") or (DEFAULT_ACCOUNT if caller.admin else caller.account))
        where = Where(account, region)
        if not self.throttle.allows(account, region, action):
            return api_error("ThrottlingException", "Rate exceeded")
        if action not in self._handlers and not _moto_serves(action):
            return api_error(
                "UnknownOperationException", f"The emulator does not serve the ECR action {action}"
            )
        try:
            self.iam.authorize(caller, api_permissions(action, body, account, region))
            self._check_cross_account(caller, where, action, body)
            handler = self._handlers.get(action)
            if handler is not None:
                answer = handler(where, body, caller)
                if answer is not None:
                    return answer if isinstance(answer, Response) else api_answer(answer)
        except Denied as denied:
            return api_error("AccessDeniedException", str(denied))
        except Refused as refused:
            return refused.api()
        request.environ["HTTP_X_MOTO_ACCOUNT_ID"] = account
        return None

    def caller(self, key: str, session_token: str = "") -> Caller:
        from moto.iam.models import get_account_id_from

        one_account = ACCOUNT_ADMIN.match(key)
        account = one_account["account"] if one_account else get_account_id_from(key)
        return Caller(key, account, session_token)

    # -- another account's repositories ---------------------------------------------------------------
    def _check_cross_account(self, caller: Caller, where: Where, action: str, body: dict[str, Any]) -> None:
        if caller.admin or where.account == caller.account:
            return
        names = [str(body["repositoryName"])] if body.get("repositoryName") else []
        names += [str(n) for n in body.get("repositoryNames") or []]
        if body.get("resourceArn"):
            names.append(str(body["resourceArn"]).rpartition(":repository/")[2])
        for name in names or ["*"]:
            resource = f"arn:aws:ecr:{where.region}:{where.account}:repository/{name}"
            repository = where.backend().repositories.get(name)
            policy = repository.policy if repository is not None else None
            if not allows(policy, caller.account, caller.arns(), f"ecr:{action}", resource):
                who = next(iter(caller.arns()), f"arn:aws:iam::{caller.account}:root")
                raise Denied(
                    f"User: {who} is not authorized to perform: ecr:{action} on resource: {resource} "
                    f"because no resource-based policy allows the ecr:{action} action"
                )

    # -- tokens ------------------------------------------------------------------------------------------
    def _authorization_token(self, where: Where, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """A real, expiring registry token (moto's expired in 2015 and carries no region)."""
        accounts = [str(a) for a in body.get("registryIds") or []] or [
            caller.account if not caller.admin else where.account
        ]
        data = []
        for account in accounts:
            password = secrets.token_urlsafe(24)
            expires_at = time.time() + self.state.token_ttl
            self.state.grants[password] = Grant(caller, account, where.region, expires_at)
            data.append(
                {
                    "authorizationToken": base64.b64encode(f"AWS:{password}".encode()).decode(),
                    "expiresAt": expires_at,
                    "proxyEndpoint": f"https://{account}.dkr.ecr.{where.region}.amazonaws.com",
                }
            )
        return {"authorizationData": data}

    # -- repositories --------------------------------------------------------------------------------------
    def _check_create_repository(self, where: Where, body: dict[str, Any], caller: Caller) -> None:
        repositories.check_create(where, body, self.kms)  # then moto creates it

    def _check_mutability(self, where: Where, body: dict[str, Any], caller: Caller) -> None:
        repositories.check_exclusion_filters(body.get("imageTagMutabilityExclusionFilters"))

    def _put_image(self, where: Where, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        repository = where.repository(str(body.get("repositoryName", "")))
        manifest = str(body.get("imageManifest", ""))
        tag = body.get("imageTag")
        image = images.put(
            where.account,
            repository,
            manifest.encode("utf-8"),
            str(body.get("imageManifestMediaType") or ""),
            str(tag) if tag else None,
            expected_digest=body.get("imageDigest"),
        )
        self.replicator.replicate(where, repository, image, str(tag) if tag else None)
        self.state.pushed(where, repository, image, str(tag) if tag else None, caller)
        image_id = {"imageDigest": image.get_image_digest(), **({"imageTag": str(tag)} if tag else {})}
        return {
            "image": {
                "registryId": repository.registry_id,
                "repositoryName": repository.name,
                "imageId": image_id,
                "imageManifest": manifest,
                "imageManifestMediaType": image.image_manifest_media_type,
            }
        }

    def _download_url_for_layer(self, where: Where, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """Where a layer can be downloaded (moto's is a stub that answers 500). ECR answers a
        pre-signed S3 URL; the emulator has no S3, so it names the layer at the registry, which
        takes the registry token as any blob GET does."""
        repository = where.repository(str(body.get("repositoryName", "")))
        digest = str(body.get("layerDigest", ""))
        if digest not in self.state.repo_blobs.get((where.account, where.region, repository.name), set()):
            raise Refused(
                "LayersNotFoundException",
                f"The specified layer {digest} does not exist in repository {repository.name}",
            )
        host = f"{where.account}.dkr.ecr.{where.region}.amazonaws.com"
        return {"downloadUrl": f"https://{host}/v2/{repository.name}/blobs/{digest}", "layerDigest": digest}

    # -- registry settings ----------------------------------------------------------------------------
    def _put_account_setting(self, where: Where, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        name, value = str(body.get("name", "")), str(body.get("value", ""))
        if name not in ACCOUNT_SETTINGS:
            raise Refused("ValidationException", f"unknown account setting {name!r}")
        if name == "BLOB_MOUNTING" and value not in ("ENABLED", "DISABLED"):
            raise Refused("ValidationException", "BLOB_MOUNTING is ENABLED or DISABLED")
        self.state.account_settings.setdefault((where.account, where.region), {})[name] = value
        return {"name": name, "value": value}

    def _get_account_setting(self, where: Where, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        name = str(body.get("name", ""))
        if name not in ACCOUNT_SETTINGS:
            raise Refused("ValidationException", f"unknown account setting {name!r}")
        held = self.state.account_settings.get((where.account, where.region), {})
        return {"name": name, "value": held.get(name, ACCOUNT_SETTINGS[name])}

    def _put_replication_configuration(self, where: Where, body: dict[str, Any], caller: Caller) -> Response:
        """ECR's rules and limits (moto allows one rule); never onto the source itself.

        The first call creates the replication service-linked role, as the caller: that is why
        the caller needs iam:CreateServiceLinkedRole.
        """
        configuration = body.get("replicationConfiguration") or {}
        rules = configuration.get("rules")
        if not isinstance(rules, list):
            raise Refused("ValidationException", "replicationConfiguration.rules must be a list")
        problems = ecr_rules.replication_problems(rules)
        if problems:
            raise Refused("ValidationException", "Invalid replication configuration: " + "; ".join(problems))
        for rule in rules:
            for destination in rule.get("destinations") or []:
                if (destination.get("region"), destination.get("registryId")) == (
                    where.region,
                    where.account,
                ):
                    raise Refused(
                        "InvalidParameterException",
                        "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: "
                        "'Replication destination cannot be the same as the source registry'",
                    )
        self._ensure_service_linked_role(
            where, caller, REPLICATION_ROLE_NAME, REPLICATION_SERVICE, "Allows ECR to replicate images"
        )
        where.backend().replication_config = {"rules": rules}
        return api_answer({"replicationConfiguration": {"rules": rules}})

    def _create_template(self, where: Where, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """The first template creates ECR's template service-linked role, as the caller
        (userguide/slr-rct.html)."""
        description = "Allows ECR to create repositories from templates"
        self._ensure_service_linked_role(where, caller, TEMPLATE_ROLE_NAME, TEMPLATE_SERVICE, description)
        return repositories.create_template(self.state, where, body, self.kms)

    def _ensure_service_linked_role(
        self, where: Where, caller: Caller, name: str, service: str, description: str
    ) -> None:
        """Create service-linked role `name` on first use: the caller needs iam:CreateServiceLinkedRole."""
        from moto.iam.exceptions import NotFoundException
        from moto.iam.models import iam_backends

        roles = iam_backends[where.account]["aws"]
        try:
            roles.get_role(name)
            return
        except NotFoundException:
            pass
        path = f"/aws-service-role/{service}/"
        self.iam.authorize(
            caller, [("iam:CreateServiceLinkedRole", f"arn:aws:iam::{where.account}:role{path}{name}")]
        )
        trust = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
        roles.create_role(
            role_name=name,
            assume_role_policy_document=json.dumps(trust),
            path=path,
            permissions_boundary=None,
            description=description,
            tags=[],
            max_session_duration=None,
            linked_service=service,
        )

    def _describe_image_replication_status(
        self, where: Where, body: dict[str, Any], caller: Caller
    ) -> dict[str, Any]:
        repository = where.repository(str(body.get("repositoryName", "")))
        image_id = body.get("imageId") or {}
        image = images.find(repository, str(image_id.get("imageDigest") or image_id.get("imageTag") or ""))
        if image is None:
            raise Refused(
                "ImageNotFoundException",
                f"The image with imageId {json.dumps(image_id)} does not exist within the repository with "
                f"name '{repository.name}' in the registry with id '{where.account}'",
            )
        digest = image.get_image_digest()
        statuses = self.replicator.statuses(where.account, where.region, repository.name, digest)
        return {
            "repositoryName": repository.name,
            "imageId": {
                "imageDigest": digest,
                **({"imageTag": image_id["imageTag"]} if "imageTag" in image_id else {}),
            },
            "replicationStatuses": [
                {"region": r, "registryId": a, "status": status, **({"failureCode": code} if code else {})}
                for (r, a), (status, code) in sorted(statuses.items())
            ],
        }


def _put_registry_scanning_configuration(
    where: Where, body: dict[str, Any], caller: Caller
) -> dict[str, Any] | None:
    """`rules` is optional in ECR's model (none: no rule); moto iterates it, so an absent one is given
    as empty here rather than answered 500."""
    if body.get("rules") is not None:
        return None  # moto does the rest
    where.backend().put_registry_scanning_configuration(body.get("scanType"), [])
    return {
        "registryId": where.account,
        "registryScanningConfiguration": {"scanType": body.get("scanType"), "rules": []},
    }


# JSON types of botocore's shapes, as a request body carries them.
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "long": (int,),
    "boolean": (bool,),
    "list": (list,),
    "structure": (dict,),
    "map": (dict,),
}


@functools.cache
def _ecr_model() -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model("ecr")


def _malformed(action: str, body: dict[str, Any]) -> Refused | None:
    """What AWS refuses before ECR sees the request, by the API's model (botocore's copy of it): a
    required member left out is a ValidationException with the message AWS's request validation
    gives ("Value null at 'x' failed to satisfy constraint: Member must not be null"); a member of
    the wrong JSON type a SerializationException. Without this, moto answers some of them 500."""
    from botocore.model import OperationNotFoundError

    try:
        shape = _ecr_model().operation_model(action).input_shape
    except OperationNotFoundError:
        return None
    if shape is None:
        return None
    for name in shape.required_members:
        if body.get(name) is None:
            return Refused(
                "ValidationException",
                f"1 validation error detected: Value null at '{name}' failed to satisfy constraint: "
                "Member must not be null",
            )
    for name, value in body.items():
        member = shape.members.get(name)
        expected = _JSON_TYPES.get(member.type_name) if member is not None else None
        wrong_bool = isinstance(value, bool) and bool not in (expected or ())
        if expected is not None and value is not None and (not isinstance(value, expected) or wrong_bool):
            return Refused("SerializationException", f"{name}: expected a JSON {member.type_name}")
    return None


def _moto_serves(action: str) -> bool:
    from moto.ecr.responses import ECRResponse

    return hasattr(ECRResponse, re.sub(r"(?<!^)(?=[A-Z])", "_", action).lower())
