"""Resource-based policies as ECR reads them: a repository's policy, a registry's permissions policy.

A statement applies when its Principal names the caller (`*`, its account id, the account's root
ARN, or one of the caller's own ARNs), its Action matches and its Resource (if any) does; Deny
wins. A statement with a Condition is not evaluated: the emulator treats it as not applying
(fail closed), and docs/emulator-fidelity.md says so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any


def allows(
    policy_text: str | None, account: str, arns: Iterable[str], action: str, resource: str = ""
) -> bool:
    """Whether `policy_text` lets the principal of `account` (with `arns`) do `action` on `resource`."""
    if not policy_text:
        return False
    try:
        policy = json.loads(policy_text)
    except ValueError:
        return False
    names = {"*", account, f"arn:aws:iam::{account}:root", *arns}
    allowed = False
    for statement in _listed(policy.get("Statement")):
        if not isinstance(statement, dict) or statement.get("Condition"):
            continue
        if not _principal_matches(statement.get("Principal"), names):
            continue
        if not any(like(action, str(pattern)) for pattern in _listed(statement.get("Action"))):
            continue
        resources = _listed(statement.get("Resource"))
        if resources and resource and not any(like(resource, str(pattern)) for pattern in resources):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


def like(value: str, pattern: str) -> bool:
    """IAM's wildcard match: `*` any run of characters, `?` one; case-insensitive for actions."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL) is not None


def _principal_matches(principal: Any, names: set[str]) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    return any(str(p) in names for p in _listed(principal.get("AWS")))


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]
