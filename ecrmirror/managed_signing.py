"""ECR managed signing: the registry's signing rules hold the spec's, and each pushed version's status.

A registry's signing configuration (PutSigningConfiguration) names AWS Signer profiles and, per
profile, the repositories whose pushes ECR signs (userguide/managed-signing.html). As with
replication (replication.py), the configuration is one registry-wide document: the spec's rule is
merged in, every other rule written back as it was. ECR signs as the pusher, who then needs
`signer:SignPayload` on the profile; the audit reads each version's status per profile
(DescribeImageSigningStatus). This sits beside `sign:` (signing.py, cosign with a KMS key): one is
ECR signing on push, the other the mirror signing itself.

The limits and patterns are those of botocore's ECR model (PutSigningConfiguration's shapes); the
emulator holds requests to the same ones. No pytest here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ecrmirror.ecr_rules import wildcard_match
from ecrmirror.errors import AwsError

if TYPE_CHECKING:
    from ecrmirror.ecr import Ecr
    from ecrmirror.spec import Registry

# [BC] SigningProfileArn, SigningRuleList, SigningRepositoryFilterList, SigningRepositoryFilterValue
PROFILE_ARN = re.compile(
    r"^arn:aws(-[a-z]+)*:signer:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):"
    r"/signing-profiles/(?P<name>[a-zA-Z0-9_]{2,})$"
)
MAX_PROFILE_ARN = 200
MAX_RULES = 10
MAX_FILTERS = 100
MAX_FILTER = 256
FILTER = re.compile(r"^(?:[a-z0-9*]+(?:[._-][a-z0-9*]+)*/)*[a-z0-9*]+(?:[._-][a-z0-9*]+)*$")
FILTER_TYPE = "WILDCARD_MATCH"
SIGNING_STATUSES = ("IN_PROGRESS", "COMPLETE", "FAILED")
WRITE_ATTEMPTS = 3  # PutSigningConfiguration has no compare-and-swap: re-read and retry


@dataclass(frozen=True)
class SigningRule:
    """One rule: pushes to repositories matching `filters` (none: every repository) are signed
    with the Signer profile `profile_arn`."""

    profile_arn: str
    filters: tuple[str, ...] = ()

    def covers(self, repository: str) -> bool:
        return not self.filters or any(wildcard_match(f, repository) for f in self.filters)

    def document(self) -> dict[str, Any]:
        """The rule as PutSigningConfiguration takes it."""
        rule: dict[str, Any] = {"signingProfileArn": self.profile_arn}
        if self.filters:
            rule["repositoryFilters"] = [{"filter": f, "filterType": FILTER_TYPE} for f in self.filters]
        return rule


@dataclass(frozen=True)
class SigningStatus:
    """One profile's signing of one image, as DescribeImageSigningStatus reports it."""

    profile: str
    status: str  # IN_PROGRESS, COMPLETE or FAILED
    failure_code: str = ""  # only when FAILED; ECR documents no values
    failure_reason: str = ""


# -- what a spec may declare: no I/O ------------------------------------------------------------------
def rule_problems(profile_arn: str, filters: Iterable[str], region: str) -> list[str]:
    """What ECR would refuse, or never sign with, in a declared rule; [] when it is good."""
    problems = []
    found = PROFILE_ARN.match(profile_arn)
    if found is None:
        problems.append(
            f"{profile_arn!r} is not a signing profile ARN: ECR takes "
            "arn:aws:signer:REGION:ACCOUNT:/signing-profiles/NAME (NAME of 2 or more letters, digits or _)"
        )
    elif found["region"] != region:
        problems.append(
            f"the signing profile {profile_arn} is in {found['region']}, but the registry is in {region}: "
            "ECR signs only with profiles of the registry's region (the profile may be another account's)"
        )
    if len(profile_arn) > MAX_PROFILE_ARN:
        problems.append(
            f"the profile ARN is {len(profile_arn)} characters; ECR takes up to {MAX_PROFILE_ARN}"
        )
    listed = list(filters)
    if len(listed) > MAX_FILTERS:
        problems.append(f"{len(listed)} repository filters; a signing rule holds at most {MAX_FILTERS}")
    for pattern in listed:
        if not 1 <= len(pattern) <= MAX_FILTER or not FILTER.match(pattern):
            problems.append(
                f"repository filter {pattern!r} is not one ECR takes: a repository name (lowercase letters, "
                f"digits, and . _ - between them, / between parts) where * stands for any run of "
                f"characters, up to {MAX_FILTER} characters"
            )
    return problems


def covering(rules: Iterable[SigningRule], repository: str) -> list[SigningRule]:
    """The rules under which ECR signs what is pushed to `repository`."""
    return [rule for rule in rules if rule.covers(repository)]


def rules_of(configuration: Mapping[str, Any] | None) -> list[SigningRule]:
    """A signing configuration's rules (None: the registry has none)."""
    return [
        SigningRule(
            str(rule.get("signingProfileArn", "")),
            tuple(str(f.get("filter", "")) for f in rule.get("repositoryFilters") or []),
        )
        for rule in (configuration or {}).get("rules") or []
    ]


def missing(configuration: Mapping[str, Any] | None, declared: Iterable[SigningRule]) -> list[SigningRule]:
    """The declared rules the configuration lacks. A declared rule is present when rules of the
    same profile cover each of its filters (a filter covers another when every repository the
    other matches, it matches too: `mirror/*` covers `mirror/app-*`; no filter covers all)."""
    held = rules_of(configuration)
    absent = []
    for rule in declared:
        patterns = [f for r in held if r.profile_arn == rule.profile_arn for f in r.filters or ("*",)]
        if not all(any(_subsumes(p, f) for p in patterns) for f in rule.filters or ("*",)):
            absent.append(rule)
    return absent


def _subsumes(general: str, specific: str) -> bool:
    # A filter's only wildcard is `*`, and no repository name holds one: when `general` matches
    # `specific`'s text, each `*` of `specific` is absorbed by a `*` of `general`, so every
    # expansion of `specific` matches `general` as well.
    return wildcard_match(general, specific)


def merged(configuration: Mapping[str, Any] | None, declared: Iterable[SigningRule]) -> dict[str, Any]:
    """`configuration` with the declared rules it lacks appended, every other rule as it was.

    PutSigningConfiguration replaces the registry's whole configuration, so the new one carries
    every existing rule unchanged; a missing rule is added as the spec declares it.
    """
    rules = [dict(rule) for rule in (configuration or {}).get("rules") or []]
    added = missing(configuration, declared)
    if len(rules) + len(added) > MAX_RULES:
        raise AwsError(
            f"the registry's signing configuration has {len(rules)} rules and the spec's would add "
            f"{len(added)}, but ECR holds at most {MAX_RULES}; ecrmirror replaces none of them. Merge "
            "rules of the same signing profile by hand (one rule takes up to 100 filters), then run "
            "--sync again."
        )
    return {"rules": rules + [rule.document() for rule in added]}


# -- the registry ---------------------------------------------------------------------------------------
def read_configuration(ecr: Ecr) -> dict[str, Any] | None:
    """The registry's signing configuration, None when it has none."""
    response = ecr.call("get_signing_configuration", missing_ok="SigningConfigurationNotFoundException")
    if response is None:
        return None
    return {"rules": list((response.get("signingConfiguration") or {}).get("rules") or [])}


def put_configuration(ecr: Ecr, configuration: Mapping[str, Any]) -> None:
    ecr.call("put_signing_configuration", signingConfiguration=dict(configuration))


def ensure(ecr: Ecr, declared: Iterable[SigningRule]) -> bool:
    """Merge the declared rules into the registry's configuration; True if it had to be written.

    ECR has no conditional put: after writing, the configuration is read again, and merged again
    if another writer's put dropped the rules meanwhile. Writers of one run should also take
    turns (a lock around this call, as replication's rule takes one)."""
    wanted = list(declared)
    for writes in range(WRITE_ATTEMPTS + 1):
        configuration = read_configuration(ecr)
        if not missing(configuration, wanted):
            return writes > 0
        if writes == WRITE_ATTEMPTS:
            break
        put_configuration(ecr, merged(configuration, wanted))
    raise AwsError(
        f"the signing rules for {', '.join(r.profile_arn for r in wanted)} did not stay in the registry's "
        f"signing configuration after {WRITE_ATTEMPTS} writes: something else rewrites it concurrently. "
        "Find the other writer (Terraform, CloudFormation, another job) and run --sync again."
    )


def statuses(ecr: Ecr, repository: str, digest: str) -> list[SigningStatus]:
    """Each signing profile's status for the image `digest` of `repository`: [] when no rule
    matched it when it was pushed (or ECR does not sign its kind: a Helm chart, a signature)."""
    response = ecr.call(
        "describe_image_signing_status",
        registryId=ecr.registry.account,
        repositoryName=repository,
        imageId={"imageDigest": digest},
    )
    return [
        SigningStatus(
            str(found.get("signingProfileArn", "")),
            str(found.get("status", "")),
            str(found.get("failureCode") or ""),
            str(found.get("failureReason") or ""),
        )
        for found in response.get("signingStatuses") or []
    ]


# -- IAM ------------------------------------------------------------------------------------------------
def policy_statements(
    rules: Iterable[SigningRule], registry: Registry, mode: str = "sync"
) -> list[dict[str, Any]]:
    """What managed signing adds to the policy a run needs (policy.py's statement shape).

    sync: `signer:SignPayload` on the profiles (ECR signs as the pusher), the configuration read
    and written (registry-level: `*` only), and each pushed version's status read. audit: the
    configuration and the statuses read. The statuses are read on the rules' repositories: ECR's
    wildcard filters are IAM's resource wildcards too.
    """
    from ecrmirror.policy import SYNC, partition

    listed = list(rules)
    if not listed:
        return []
    base = f"arn:{partition(registry)}:ecr:{registry.region}:{registry.account}:repository/"
    repositories = sorted({base + f for rule in listed for f in rule.filters or ("*",)})
    profiles = sorted({rule.profile_arn for rule in listed})
    statements = []
    if mode == SYNC:
        statements.append(_statement("ManagedSigningProfiles", ["signer:SignPayload"], profiles))
    configuration = [
        "ecr:GetSigningConfiguration",
        *(["ecr:PutSigningConfiguration"] if mode == SYNC else []),
    ]
    statements.append(_statement("ManagedSigningConfiguration", configuration, ["*"]))
    statements.append(_statement("ManagedSigningStatus", ["ecr:DescribeImageSigningStatus"], repositories))
    return statements


def _statement(sid: str, actions: list[str], resources: list[str]) -> dict[str, Any]:
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": sorted(actions),
        "Resource": resources[0] if len(resources) == 1 else resources,
    }
