"""ECR managed signing: the registry's signing rules hold the spec's, and each pushed version's status.

A registry's signing configuration (PutSigningConfiguration) names AWS Signer profiles and, per
profile, the repositories whose pushes ECR signs (userguide/managed-signing.html). As with
replication (replication.py), the configuration is one registry-wide document: the spec's rule is
merged in, every other rule written back as it was. ECR signs as the pusher, who then needs
`signer:SignPayload` on the profile; the audit reads each version's status per profile
(DescribeImageSigningStatus). This sits beside `sign:` (signing.py, cosign with a KMS key): one is
ECR signing on push, the other the mirror signing itself.

The limits and patterns (botocore's model of PutSigningConfiguration) live in ecr_rules.py, which the
spec reader and the emulator share. No pytest here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ecrmirror.ecr_rules import MAX_SIGNING_RULES, wildcard_match
from ecrmirror.errors import AwsError
from ecrmirror.outcome import Outcome, Result
from ecrmirror.spec.model import SigningRule

if TYPE_CHECKING:
    from ecrmirror.ecr import Ecr

WRITE_ATTEMPTS = 3  # PutSigningConfiguration has no compare-and-swap: re-read and retry


@dataclass(frozen=True)
class SigningStatus:
    """One profile's signing of one image, as DescribeImageSigningStatus reports it."""

    profile: str
    status: str  # IN_PROGRESS, COMPLETE or FAILED
    failure_code: str = ""  # only when FAILED; ECR documents no values
    failure_reason: str = ""


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
    if len(rules) + len(added) > MAX_SIGNING_RULES:
        raise AwsError(
            f"the registry's signing configuration has {len(rules)} rules and the spec's would add "
            f"{len(added)}, but ECR holds at most {MAX_SIGNING_RULES}; ecrmirror replaces none of them. "
            "Merge rules of the same signing profile by hand (one rule takes up to 100 filters), then run "
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


def audited(ecr: Ecr, rules: Iterable[SigningRule], repository: str, digest: str, present: Result) -> Result:
    """`present` (an image ECR holds as declared) with what ECR's managed signing did with it,
    profile by profile: UNSIGNED when a profile FAILED, else the statuses in its message and
    report, and a note while one is IN_PROGRESS. Unchanged outside the rules' repositories.

    For the audit only: ECR has no batch form of DescribeImageSigningStatus, so this is one call
    per image the rules cover."""
    if not covering(rules, repository):
        return present
    found = statuses(ecr, repository, digest)
    failed = [s for s in found if s.status == "FAILED"]
    if failed:
        return replace(
            present,
            outcome=Outcome.UNSIGNED,
            message=f"{present.message}, but ECR's managed signing FAILED: "
            + "; ".join(f"{s.profile}: {s.failure_code} {s.failure_reason}".strip() for s in failed)
            + ". Give the pushing role signer:SignPayload on the profile (`pytest --ecrmirror-policy=sync` "
            "prints it); ECR signs what is pushed after that",
        )
    described = (
        ", ".join(f"{s.status} ({s.profile.rpartition('/')[2]})" for s in found)
        or "none (ECR signs container images only)"
    )
    notes = present.notes
    if any(s.status == "IN_PROGRESS" for s in found):
        notes += (f"{repository}@{digest}: ECR's managed signing is in progress",)
    return replace(
        present,
        message=f"{present.message}; managed signing: {described}",
        notes=notes,
        details=(*present.details, ("managed_signing", described)),
    )
