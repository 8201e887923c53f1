"""Pull-through cache rules: create, describe, update, delete and validate.

Sources: botocore's ECR model (the operations, their limits and patterns, the upstream registries
and their URLs), userguide/pull-through-cache.html (which upstreams need a secret, a role or
nothing), userguide/pull-through-cache-creating-rule.html (the secret's name and where it lives),
userguide/pull-through-cache-private-wildcards.html (ROOT and the upstream prefix) and
userguide/service-quotas.html (50 rules a registry). What no source says is chosen to be hardest
on a client (see the fidelity rows), so that what works here also works in AWS.

The emulator reaches no upstream registry and no Secrets Manager: a rule is stored and answered,
never used to fill a repository, and a secret is checked for its shape only.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ecrmirror.emulator.answers import Refused
from ecrmirror.emulator.images import paginate

if TYPE_CHECKING:
    from ecrmirror.emulator.iam import Caller, Iam
    from ecrmirror.emulator.replication import Replicator
    from ecrmirror.emulator.repositories import Handler, Where
    from ecrmirror.emulator.state import State

ROOT = "ROOT"
MAX_RULES = 50  # "Pull through cache rules per registry: 50, not adjustable" (userguide/service-quotas.html)
# The model's PullThroughCacheRuleRepositoryPrefix: 2-30 characters of this pattern.
PREFIX = re.compile(r"^([a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*\/?|ROOT)$")
PREFIX_LENGTH = (2, 30)
# The model's CredentialArn: 50-612 characters, a Secrets Manager secret named ecr-pullthroughcache/...
CREDENTIAL = re.compile(
    r"^arn:aws(-\w+)*:secretsmanager:[a-zA-Z0-9-:]+:secret:ecr\-pullthroughcache\/[a-zA-Z0-9\/_+=.@-]+$"
)
CREDENTIAL_LENGTH = (50, 612)
SECRET_PLACE = re.compile(r"^arn:[^:]+:secretsmanager:(?P<region>[^:]*):(?P<account>[^:]*):secret:")
ROLE = re.compile(r"^arn:aws(-[a-z]+)*:iam::(?P<account>\d{12}):role/[\w+=,.@/-]+$")
MAX_ROLE_ARN = 2048
NOT_CONTACTED = (
    "The emulator did not contact the upstream registry or Secrets Manager: it checked the rule's shape only"
)


@dataclass(frozen=True)
class Upstream:
    """An upstream registry ECR caches from: its name in the model, its URL, how ECR authenticates."""

    name: str
    url: re.Pattern[str]
    auth: str  # "none", "secret" (a Secrets Manager secret) or "role" (IAM roles)


def _url(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"^{pattern}$")


# The model's UpstreamRegistry enum with the URL its documentation gives each; auth classes from
# userguide/pull-through-cache.html. Chainguard's URL is in no AWS source: cgr.dev is Chainguard's
# own registry (unverified).
UPSTREAMS = {
    upstream.name: upstream
    for upstream in (
        Upstream("ecr-public", _url(r"public\.ecr\.aws"), "none"),
        Upstream("k8s", _url(r"registry\.k8s\.io"), "none"),
        Upstream("quay", _url(r"quay\.io"), "none"),
        Upstream("docker-hub", _url(r"registry-1\.docker\.io"), "secret"),
        Upstream("github-container-registry", _url(r"ghcr\.io"), "secret"),
        Upstream("gitlab-container-registry", _url(r"registry\.gitlab\.com"), "secret"),
        Upstream("azure-container-registry", _url(r"[a-z0-9]{5,50}\.azurecr\.io"), "secret"),
        Upstream("chainguard", _url(r"cgr\.dev"), "secret"),
        Upstream(
            "ecr", _url(r"(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com"), "role"
        ),
        Upstream("ecr-public-premium", _url(r"ecr-premium\.aws\.com"), "role"),
    )
}
ROLE_MEMBERS = ("credentialArn", "customRoleArn", "upstreamRoleArn")  # all Update may change


def handlers(state: State, iam: Iam, replicator: Replicator) -> dict[str, Handler]:
    """The ECR actions this part answers."""

    def rules(where: Where) -> dict[str, dict[str, Any]]:
        held: dict[tuple[str, str], dict[str, dict[str, Any]]] = state.part("pull_through", dict)
        return held.setdefault((where.account, where.region), {})

    def create(where: Where, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        return _create(rules(where), where, body, state.now())

    def describe(where: Where, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        return _describe(rules(where), where, body)

    def update(where: Where, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        return _update(rules(where), where, body, state.now())

    def delete(where: Where, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        held = rules(where)
        rule = _find(held, where, body)
        del held[rule["ecrRepositoryPrefix"]]
        return _answer("DeletePullThroughCacheRule", rule)

    def validate(where: Where, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        # Every stored rule passed _check; whether its secret opens and upstream lets ECR in is
        # beyond the emulator, which says so in `failure` while answering isValid (unverified).
        rule = _find(rules(where), where, body)
        return {**_answer("ValidatePullThroughCacheRule", rule), "isValid": True, "failure": NOT_CONTACTED}

    return {
        "CreatePullThroughCacheRule": create,
        "DescribePullThroughCacheRules": describe,
        "UpdatePullThroughCacheRule": update,
        "DeletePullThroughCacheRule": delete,
        "ValidatePullThroughCacheRule": validate,
    }


# -- the actions ---------------------------------------------------------------------------------------
def _create(
    held: dict[str, dict[str, Any]], where: Where, body: dict[str, Any], now: float
) -> dict[str, Any]:
    prefix = _prefix("ecrRepositoryPrefix", body.get("ecrRepositoryPrefix"))
    given = body.get("upstreamRepositoryPrefix")
    upstream_prefix = _prefix("upstreamRepositoryPrefix", ROOT if given is None else given)
    _model_checks(body)
    url = str(body.get("upstreamRegistryUrl", ""))
    name = body.get("upstreamRegistry")
    if name is not None and name not in UPSTREAMS:
        raise _invalid(
            "upstreamRegistry", name, f"Member must satisfy enum value set: [{', '.join(UPSTREAMS)}]"
        )
    upstream = _upstream(str(name) if name is not None else None, url)
    rule: dict[str, Any] = {
        "ecrRepositoryPrefix": prefix,
        "upstreamRegistryUrl": url,
        "createdAt": now,
        "registryId": where.account,
        "upstreamRegistry": upstream.name,
        "upstreamRepositoryPrefix": upstream_prefix,
        **{member: str(body[member]) for member in ROLE_MEMBERS if body.get(member)},
    }
    _check(rule, upstream, where)
    if prefix in held:
        raise Refused(
            "PullThroughCacheRuleAlreadyExistsException",
            f"A pull through cache rule with the prefix '{prefix}' already exists in the registry with "
            f"id '{where.account}'",
        )
    if len(held) >= MAX_RULES:
        raise Refused(
            "LimitExceededException",
            f"The registry with id '{where.account}' already has {MAX_RULES} pull through cache rules, "
            "the most a registry can have",
        )
    held[prefix] = rule
    return _answer("CreatePullThroughCacheRule", rule)


def _describe(held: dict[str, dict[str, Any]], where: Where, body: dict[str, Any]) -> dict[str, Any]:
    wanted = body.get("ecrRepositoryPrefixes")
    if wanted is not None:
        if not 1 <= len(wanted) <= 100:
            raise _invalid(
                "ecrRepositoryPrefixes", wanted, "Member must have length between 1 and 100, inclusive"
            )
        prefixes = [
            _prefix(f"ecrRepositoryPrefixes.{n}.member", value) for n, value in enumerate(wanted, start=1)
        ]
        chosen = [_find(held, where, {"ecrRepositoryPrefix": p}) for p in dict.fromkeys(prefixes)]
    else:
        chosen = list(held.values())
    page, token = paginate(chosen, body)
    return {
        "pullThroughCacheRules": [
            _answer("DescribePullThroughCacheRules", rule, "PullThroughCacheRule") for rule in page
        ],
        **({"nextToken": token} if token else {}),
    }


def _update(
    held: dict[str, dict[str, Any]], where: Where, body: dict[str, Any], now: float
) -> dict[str, Any]:
    _model_checks(body)  # AWS's request validation comes before ECR looks for the rule
    rule = _find(held, where, body)
    # Only the secret and the roles change (the model's UpdatePullThroughCacheRuleRequest has no
    # other member): anything else a request carries is left as it was.
    changed = {**rule, **{m: str(body[m]) for m in ROLE_MEMBERS if body.get(m)}, "updatedAt": now}
    _check(changed, UPSTREAMS[rule["upstreamRegistry"]], where)
    held[rule["ecrRepositoryPrefix"]] = changed
    return _answer("UpdatePullThroughCacheRule", changed)


# -- what ECR checks ---------------------------------------------------------------------------------
def _prefix(field: str, value: Any) -> str:
    """A repository prefix as the model allows it, without its optional trailing `/` (ECR always
    reads one: `ecr-public` is `ecr-public/`)."""
    text = str(value if value is not None else "")
    low, high = PREFIX_LENGTH
    if len(text) < low:
        raise _invalid(field, text, f"Member must have length greater than or equal to {low}")
    if len(text) > high:
        raise _invalid(field, text, f"Member must have length less than or equal to {high}")
    if not PREFIX.match(text):
        raise _invalid(field, text, f"Member must satisfy regular expression pattern: {PREFIX.pattern}")
    return text.removesuffix("/")


def _model_checks(body: dict[str, Any]) -> None:
    """The credential's and the roles' lengths and pattern, as AWS's request validation has them."""
    credential = body.get("credentialArn")
    if credential is not None:
        low, high = CREDENTIAL_LENGTH
        if len(str(credential)) < low:
            raise _invalid(
                "credentialArn", credential, f"Member must have length greater than or equal to {low}"
            )
        if len(str(credential)) > high:
            raise _invalid(
                "credentialArn", credential, f"Member must have length less than or equal to {high}"
            )
        if not CREDENTIAL.match(str(credential)):
            raise _invalid(
                "credentialArn",
                credential,
                f"Member must satisfy regular expression pattern: {CREDENTIAL.pattern}",
            )
    for member in ("customRoleArn", "upstreamRoleArn"):
        if body.get(member) is not None and len(str(body[member])) > MAX_ROLE_ARN:
            raise _invalid(
                member, body[member], f"Member must have length less than or equal to {MAX_ROLE_ARN}"
            )


def _upstream(name: str | None, url: str) -> Upstream:
    """The upstream registry `url` is, which must be `name`'s when the request names one."""
    matching = [u for u in UPSTREAMS.values() if u.url.match(url)]
    if name is None and matching:
        return matching[0]
    if name is not None and UPSTREAMS[name].url.match(url):
        return UPSTREAMS[name]
    expected = f" (an {name} rule's URL is not {url!r})" if name is not None else ""
    raise Refused(
        "UnsupportedUpstreamRegistryException",
        f"The upstream registry URL '{url}' is not supported{expected}",
    )


def _check(rule: dict[str, Any], upstream: Upstream, where: Where) -> None:
    """Refuse what the rule's upstream does not take: a secret for one that needs none, none for
    one that needs it, roles where ECR uses none, prefixes ECR documents for ECR-to-ECR only."""

    def refuse(message: str) -> Refused:
        return Refused("InvalidParameterException", f"Invalid parameter: {message}")

    name = upstream.name
    credential, role, upstream_role = (rule.get(m) for m in ROLE_MEMBERS)
    if upstream.auth == "secret" and not credential:
        raise refuse(f"a {name} rule needs a credentialArn: the upstream registry requires authentication")
    if upstream.auth != "secret" and credential:
        raise refuse(f"a {name} rule takes no credentialArn")
    if name not in ("ecr", "ecr-public-premium") and (role or upstream_role):
        raise refuse(f"a {name} rule takes no customRoleArn or upstreamRoleArn")
    if name == "ecr" and upstream_role:
        raise refuse("upstreamRoleArn is for the ecr-public-premium upstream registry only")
    if name == "ecr-public-premium" and bool(role) != bool(upstream_role):
        raise refuse(
            "an ecr-public-premium rule takes customRoleArn and upstreamRoleArn together, or neither"
        )
    if credential:
        place = SECRET_PLACE.match(str(credential))
        if place is None or (place["region"], place["account"]) != (where.region, where.account):
            raise refuse(
                f"the secret must be in the rule's account {where.account} and Region {where.region}"
            )
    for member, arn in (("customRoleArn", role), ("upstreamRoleArn", upstream_role)):
        found = ROLE.match(str(arn)) if arn else None
        if arn and found is None:
            raise refuse(f"{member} must be the ARN of an IAM role")
        if member == "customRoleArn" and found is not None and found["account"] != where.account:
            raise refuse(f"customRoleArn must be a role of the registry's account {where.account}")
    if name == "ecr":
        source = upstream.url.match(str(rule["upstreamRegistryUrl"]))
        if source is not None and source["account"] != where.account and not role:
            raise refuse("caching from another account's registry needs a customRoleArn")
    prefix, upstream_prefix = rule["ecrRepositoryPrefix"], rule["upstreamRepositoryPrefix"]
    if prefix == ROOT and upstream_prefix != ROOT:
        raise refuse("upstreamRepositoryPrefix can be set only when ecrRepositoryPrefix is not ROOT")
    if name != "ecr" and (prefix == ROOT or upstream_prefix != ROOT):
        raise refuse(
            f"ROOT and upstreamRepositoryPrefix are for rules of the ecr upstream registry, not {name}"
        )


def _find(held: dict[str, dict[str, Any]], where: Where, body: dict[str, Any]) -> dict[str, Any]:
    prefix = _prefix("ecrRepositoryPrefix", body.get("ecrRepositoryPrefix"))
    rule = held.get(prefix)
    if rule is None:
        raise Refused(
            "PullThroughCacheRuleNotFoundException",
            f"The pull through cache rule with the prefix '{prefix}' does not exist in the registry with "
            f"id '{where.account}'",
        )
    return rule


# -- answers --------------------------------------------------------------------------------------------
def _answer(operation: str, rule: dict[str, Any], shape: str | None = None) -> dict[str, Any]:
    """The rule as `operation`'s output shape (or `shape`) has it: each operation answers its own
    subset (DeletePullThroughCacheRule's has no upstreamRegistry, say)."""
    return {member: rule[member] for member in _members(operation, shape) if member in rule}


@functools.cache
def _members(operation: str, shape: str | None) -> tuple[str, ...]:
    import botocore.session

    model = botocore.session.get_session().get_service_model("ecr")
    found: Any = model.shape_for(shape) if shape else model.operation_model(operation).output_shape
    return tuple(found.members)


def _invalid(field: str, value: Any, constraint: str) -> Refused:
    """AWS's request validation message, the value as the request had it."""
    shown = value if isinstance(value, str) else str(value)
    return Refused(
        "ValidationException",
        f"1 validation error detected: Value '{shown[:200]}' at '{field}' failed to satisfy constraint: "
        + constraint,
    )
