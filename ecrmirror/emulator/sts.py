"""STS's AssumeRoleWithWebIdentity as AWS decides it, in front of moto's STS (which asks nothing).

AWS accepts a web identity token only from an IAM OIDC identity provider of the role's account
whose URL is the token's `iss` and whose client IDs hold its `aud`, only before its `exp`, and
only when the role's trust policy allows `sts:AssumeRoleWithWebIdentity` to that provider with
conditions on `<provider>:aud` and `<provider>:sub` that the token meets
(https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_providers_create_oidc.html,
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_iam-condition-keys.html#condition-keys-wif).
The emulator checks all of that; it cannot check the token's signature (that needs the
provider's published keys), so a token is read, not verified.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape

from werkzeug.wrappers import Response

ACTION = "sts:AssumeRoleWithWebIdentity"
# The claims AWS lets a trust policy test for an OIDC provider (besides amr, which GitLab lacks).
_CLAIM_KEYS = ("aud", "sub", "oaud")


def refuse_web_identity(params: Mapping[str, str]) -> Response | None:
    """STS's error for an AssumeRoleWithWebIdentity call AWS would refuse; None lets it through."""
    from moto.iam.exceptions import NotFoundException
    from moto.iam.models import iam_backends

    role_arn = params.get("RoleArn", "")
    claims = _claims(params.get("WebIdentityToken", ""))
    if claims is None:
        return sts_error(400, "InvalidIdentityToken", "Couldn't parse the web identity token (not a JWT).")
    issuer = str(claims.get("iss", ""))
    provider_url = issuer.removeprefix("https://")
    account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else ""
    iam = iam_backends[account]["aws"] if account else None
    provider_arn = f"arn:aws:iam::{account}:oidc-provider/{provider_url}"
    try:
        provider = iam.get_open_id_connect_provider(provider_arn) if iam else None
    except NotFoundException:
        provider = None
    if provider is None:
        return sts_error(
            400, "InvalidIdentityToken", f"No OpenIDConnect provider found in your account for {issuer}"
        )
    audiences = claims.get("aud")
    audiences = audiences if isinstance(audiences, list) else [audiences]
    if not set(map(str, audiences)) & set(provider.client_id_list):
        return sts_error(400, "InvalidIdentityToken", "Incorrect token audience")
    if not isinstance(claims.get("exp"), int | float) or claims["exp"] <= time.time():
        return sts_error(
            400, "ExpiredTokenException", "Token expired: current date/time is past its exp claim"
        )
    try:
        role = iam.get_role_by_arn(role_arn) if iam else None
    except NotFoundException:
        role = None
    trust = json.loads(role.assume_role_policy_document) if role is not None else {}
    if role is None or not _trusts(trust, provider_arn, provider_url, claims):
        return sts_error(403, "AccessDenied", f"Not authorized to perform {ACTION}")
    return None


STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"


def sts_error(status: int, code: str, message: str) -> Response:
    """An error as STS's query API writes it."""
    return query_error(status, code, message, STS_NAMESPACE)


def query_error(status: int, code: str, message: str, namespace: str) -> Response:
    """An error as AWS's query APIs (STS, IAM) write it, in the service's XML namespace."""
    body = (
        f'<ErrorResponse xmlns="{escape(namespace)}"><Error>'
        f"<Type>Sender</Type><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"</Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
    return Response(body, status=status, content_type="text/xml")


def _claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT (header.payload.signature), unverified."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    return payload if isinstance(payload, dict) else None


def _trusts(
    policy: Mapping[str, Any], provider_arn: str, provider_url: str, claims: Mapping[str, Any]
) -> bool:
    """An Allow statement for this provider and action whose conditions hold, and no such Deny."""
    allowed = False
    for statement in _listed(policy.get("Statement")):
        if not isinstance(statement, dict) or not _names_action(statement.get("Action")):
            continue
        principal = statement.get("Principal") or {}
        federated = _listed(principal.get("Federated")) if isinstance(principal, dict) else []
        if provider_arn not in federated:
            continue
        if not _conditions_hold(statement.get("Condition") or {}, provider_url, claims):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


def _conditions_hold(conditions: Mapping[str, Any], provider_url: str, claims: Mapping[str, Any]) -> bool:
    for operator, tests in conditions.items():
        for key, wanted in (tests or {}).items():
            prefix, _, claim = str(key).rpartition(":")
            if prefix != provider_url or claim not in _CLAIM_KEYS or claim not in claims:
                return False  # a key this token cannot satisfy
            values = [str(v) for v in _listed(claims[claim])]
            patterns = [str(w) for w in _listed(wanted)]
            if operator == "StringEquals":
                held = any(value in patterns for value in values)
            elif operator == "StringLike":
                held = any(_like(value, pattern) for value in values for pattern in patterns)
            else:
                return False  # an operator the emulator does not evaluate: fail closed
            if not held:
                return False
    return True


def _names_action(action: Any) -> bool:
    return any(_like(ACTION.lower(), str(pattern).lower()) for pattern in _listed(action))


def _like(value: str, pattern: str) -> bool:
    """IAM's wildcard match: `*` any run of characters, `?` one; nothing else is special."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]
