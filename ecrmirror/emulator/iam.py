"""IAM as ECR applies it: which (action, resource) pairs a request needs, checked with moto's policies.

moto itself checks only `*` resources; here every API and registry request is authorized against
the real repository ARN, as ECR does. The emulator's own keys are the administrator's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ADMIN_ACCESS_KEY = "ecrmirror-emulator"
ADMIN_SECRET_KEY = "ecrmirror-emulator"
# The IAM actions that ECR checks for each registry (OCI) request, as AWS documents them.
REGISTRY_ACTIONS = {
    ("blobs", "GET"): ("ecr:GetDownloadUrlForLayer",),
    ("blobs", "HEAD"): ("ecr:BatchCheckLayerAvailability",),
    ("blobs/uploads", "POST"): ("ecr:InitiateLayerUpload",),
    ("blobs/uploads", "PATCH"): ("ecr:UploadLayerPart",),
    ("blobs/uploads", "PUT"): ("ecr:UploadLayerPart", "ecr:CompleteLayerUpload"),
    ("manifests", "GET"): ("ecr:BatchGetImage",),
    ("manifests", "HEAD"): ("ecr:BatchGetImage",),
    ("manifests", "PUT"): ("ecr:PutImage",),
    ("tags", "GET"): ("ecr:ListImages",),
    ("manifests", "DELETE"): ("ecr:BatchDeleteImage",),
    ("referrers", "GET"): ("ecr:BatchGetImage",),
    ("blobs/uploads", "GET"): ("ecr:UploadLayerPart",),
}


@dataclass(frozen=True)
class Caller:
    """Who signed a request: an access key of an account, and an assumed role's session token."""

    access_key: str
    account: str
    session_token: str = ""  # moto tells an assumed role's temporary key from a user's by it

    @property
    def admin(self) -> bool:
        """The emulator's own keys: allowed everything, in any account."""
        return self.access_key == ADMIN_ACCESS_KEY

    def arns(self) -> list[str]:
        """The caller's ARNs that a resource policy may name: its user, or its role and session."""
        from moto.iam.models import iam_backends
        from moto.sts.models import sts_backends

        found: list[str] = []
        role = sts_backends[self.account]["aws"].get_assumed_role_from_access_key(self.access_key)
        if role is not None:
            found += [role.arn, getattr(role, "role_arn", "")]
        try:
            user = iam_backends[self.account]["aws"].get_user_from_access_key_id(self.access_key)
        except Exception:  # moto's NotFound for keys it did not issue
            user = None
        if user is not None:
            found.append(user.arn)
        return [arn for arn in found if arn]


class Denied(Exception):
    """IAM does not allow the caller an action on a resource."""


class Iam:
    """Authorizes requests when the emulator enforces IAM; allows everything when it does not."""

    def __init__(self, enforce: bool) -> None:
        self.enforce = enforce

    def authorize(
        self,
        caller: Caller,
        permissions: Iterable[tuple[str, str]],
        context: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """Raise Denied unless the caller's IAM policies allow every (action, resource).

        `context` holds the request's condition keys (kms:ResourceAliases, say): a statement with
        a Condition applies when its condition holds for them (see `_conditions_hold`)."""
        if not self.enforce or caller.access_key.startswith(ADMIN_ACCESS_KEY):  # the emulator's own keys
            return
        from moto.iam.access_control import (
            CreateAccessKeyFailure,
            IAMPolicy,
            PermissionResult,
            create_access_key,
        )

        try:
            headers = {"X-Amz-Security-Token": caller.session_token} if caller.session_token else {}
            principal = create_access_key(
                account_id=caller.account, partition="aws", access_key_id=caller.access_key, headers=headers
            )
        except CreateAccessKeyFailure:
            raise Denied(f"the caller's access key is not known to IAM in account {caller.account}") from None
        policies = [_applicable(IAMPolicy(policy), context or {}) for policy in principal.collect_policies()]
        for action, resource in permissions:
            results = {policy.is_action_permitted(action, resource) for policy in policies}
            if PermissionResult.DENIED in results or PermissionResult.PERMITTED not in results:
                raise Denied(
                    f"User: {principal.arn} is not authorized to perform: {action} on resource: {resource}"
                )


def api_permissions(action: str, body: Any, account: str, region: str) -> list[tuple[str, str]]:
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
    if action == "ListImageReferrers":  # authorized as a pull (APIReference/API_ListImageReferrers.html)
        return [("ecr:BatchGetImage", arn(name))]
    permissions = [(f"ecr:{action}", arn(name))]
    if action == "CreateRepository":
        if body.get("tags"):
            permissions.append(("ecr:TagResource", arn(name)))  # tagging on create
        kms_key = (body.get("encryptionConfiguration") or {}).get("kmsKey")
        if kms_key:  # ECR validates the key and grants itself its use, as the caller
            permissions += [("kms:DescribeKey", kms_key), ("kms:CreateGrant", kms_key)]
    return permissions


def _applicable(policy: Any, context: Mapping[str, Sequence[str]]) -> Any:
    """`policy` (moto's IAMPolicy) with each conditional statement kept, without its Condition,
    only when the condition holds for `context`: moto evaluates StringEquals on single values
    only, and KMS's alias condition is multi-valued (ForAnyValue:StringEquals on kms:ResourceAliases)."""
    from moto.iam.access_control import IAMPolicy

    document = dict(policy._policy_json)  # moto keeps the parsed document there
    statements = document.get("Statement")
    listed = statements if isinstance(statements, list) else [statements]
    kept = []
    for statement in listed:
        if not isinstance(statement, dict) or not statement.get("Condition"):
            kept.append(statement)
        elif _conditions_hold(statement["Condition"], context):
            kept.append({key: value for key, value in statement.items() if key != "Condition"})
    return IAMPolicy(json.dumps({**document, "Statement": kept}))


def _conditions_hold(conditions: Any, context: Mapping[str, Sequence[str]]) -> bool:
    """StringEquals and StringLike, plain or ForAnyValue:/ForAllValues:, over `context`'s values.
    Any other operator does not hold: the statement is left out (fail closed for an Allow)."""
    if not isinstance(conditions, dict):
        return False
    for operator, tests in conditions.items():
        qualifier, _, base = str(operator).rpartition(":")
        if base not in ("StringEquals", "StringLike") or qualifier not in ("", "ForAnyValue", "ForAllValues"):
            return False
        for key, expected in (tests or {}).items():
            wanted = expected if isinstance(expected, list) else [expected]
            actual = list(context.get(str(key), []))
            matches = [any(_like(value, str(w), base == "StringLike") for w in wanted) for value in actual]
            # ForAllValues: every value matches; ForAnyValue (or a single-valued key): one does
            holds = all(matches) if qualifier == "ForAllValues" else any(matches)
            if not holds:
                return False
    return True


def _like(value: str, pattern: str, wildcards: bool) -> bool:
    if not wildcards:
        return value == pattern
    from ecrmirror.emulator.policies import like

    return like(value, pattern)
