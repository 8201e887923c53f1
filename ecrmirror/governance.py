"""What a spec declares about repositories and replication, compared with what ECR holds. No I/O."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ecrmirror.errors import ReplicationLimit
from ecrmirror.spec import Destination, RepositorySettings, Target

# ECR's quotas for a registry's replication configuration.
MAX_REPLICATION_RULES = 10
MAX_FILTERS_PER_RULE = 100


@dataclass(frozen=True)
class Actual:
    """A repository's settings as ECR reports them; tags and lifecycle only when the spec declares them."""

    image_tag_mutability: str
    mutability_exclusions: tuple[str, ...]
    scan_on_push: bool
    encryption: str
    kms_key: str | None
    tags: Mapping[str, str] | None = None
    lifecycle_policy: str | None = None


@dataclass(frozen=True)
class Difference:
    """One declared setting that the repository does not have."""

    setting: str
    declared: str
    actual: str
    changeable: bool = True  # False: ECR cannot change it on an existing repository

    def __str__(self) -> str:
        return f"{self.setting}: declared {self.declared}, actual {self.actual}"


def differences(declared: RepositorySettings, actual: Actual) -> list[Difference]:
    """Every declared setting that `actual` lacks, in the order the spec lists them."""
    found: list[Difference] = []
    if declared.image_tag_mutability not in (None, actual.image_tag_mutability):
        found.append(
            Difference("image_tag_mutability", declared.image_tag_mutability, actual.image_tag_mutability)
        )
    if declared.mutability_exclusions is not None and set(declared.mutability_exclusions) != set(
        actual.mutability_exclusions
    ):
        found.append(
            Difference(
                "image_tag_mutability_exclusion_filters",
                _show(list(declared.mutability_exclusions)),
                _show(list(actual.mutability_exclusions)),
            )
        )
    if declared.scan_on_push not in (None, actual.scan_on_push):
        found.append(Difference("scan_on_push", _show(declared.scan_on_push), _show(actual.scan_on_push)))
    if declared.encryption not in (None, actual.encryption):
        found.append(Difference("encryption", declared.encryption, actual.encryption, changeable=False))
    if declared.kms_key is not None and declared.kms_key != actual.kms_key:
        found.append(Difference("kms_key", declared.kms_key, actual.kms_key or "none", changeable=False))
    if declared.tags is not None:
        held = actual.tags or {}
        for key, value in declared.tags:
            if held.get(key) != value:
                found.append(Difference(f"tags.{key}", _show(value), _show(held.get(key, "(not set)"))))
    if declared.lifecycle_policy is not None and not same_policy(
        declared.lifecycle_policy, actual.lifecycle_policy
    ):
        found.append(
            Difference("lifecycle_policy", declared.lifecycle_policy, actual.lifecycle_policy or "(none)")
        )
    return found


def same_policy(declared: str, actual: str | None) -> bool:
    """Lifecycle policies compare as JSON values: ECR may return other spacing and key order."""
    if actual is None:
        return False
    try:
        return bool(json.loads(declared) == json.loads(actual))
    except ValueError:
        return False


def _show(value: Any) -> str:
    return json.dumps(value)


# -- replication ------------------------------------------------------------------------------


def replication_filters(target: Target, repositories: Iterable[str]) -> tuple[str, ...]:
    """The rule's PREFIX_MATCH filters: the spec's prefix, or its repositories when it has none."""
    if target.prefix:
        return (target.prefix,)
    return tuple(sorted(set(repositories)))


def _covers(rule: Mapping[str, Any], repository: str, destination: Destination) -> bool:
    destinations = {(d.get("region"), d.get("registryId")) for d in rule.get("destinations") or []}
    if (destination.region, destination.registry_id) not in destinations:
        return False
    return any(
        f.get("filterType", "PREFIX_MATCH") == "PREFIX_MATCH"
        and repository.startswith(str(f.get("filter", "")))
        for f in rule.get("repositoryFilters") or []
    )


def uncovered(
    configuration: Mapping[str, Any], repositories: Iterable[str], destinations: Iterable[Destination]
) -> dict[Destination, list[str]]:
    """For each destination, the repositories that no rule of `configuration` replicates there."""
    rules = list(configuration.get("rules") or [])
    names = sorted(set(repositories))
    missing: dict[Destination, list[str]] = {}
    for destination in destinations:
        lacking = [name for name in names if not any(_covers(rule, name, destination) for rule in rules)]
        if lacking:
            missing[destination] = lacking
    return missing


def merged(
    configuration: Mapping[str, Any],
    filters: tuple[str, ...],
    declared: Iterable[Destination],
    missing: Iterable[Destination],
) -> dict[str, Any]:
    """`configuration` plus the `missing` destinations, leaving every other rule as it was.

    PutReplicationConfiguration replaces the registry's whole configuration, so the new
    configuration must carry every existing rule. Only a rule that ecrmirror could have written
    for this spec (exactly its filters, and no destination outside `declared`) gains the missing
    destinations; any other rule stays as it is, and a new rule is appended instead.
    """
    rules = [dict(rule) for rule in configuration.get("rules") or []]
    allowed = [{"region": d.region, "registryId": d.registry_id} for d in declared]
    wanted = [{"region": d.region, "registryId": d.registry_id} for d in missing]
    our_filters = {("PREFIX_MATCH", f) for f in filters}
    for rule in rules:
        rule_filters = {
            (f.get("filterType", "PREFIX_MATCH"), f.get("filter"))
            for f in rule.get("repositoryFilters") or []
        }
        present = list(rule.get("destinations") or [])
        if rule_filters == our_filters and all(d in allowed for d in present):
            rule["destinations"] = present + [d for d in wanted if d not in present]
            return {"rules": rules}
    if len(rules) >= MAX_REPLICATION_RULES:
        raise ReplicationLimit(
            f"the registry already has {len(rules)} replication rules, ECR's maximum; ecrmirror "
            "will not replace any of them. Merge some rules by hand, then run --sync again."
        )
    if len(filters) > MAX_FILTERS_PER_RULE:
        raise ReplicationLimit(
            f"the spec has {len(filters)} repositories and no prefix, but a replication rule holds at "
            f"most {MAX_FILTERS_PER_RULE} filters. Give the spec a target.prefix."
        )
    rules.append(
        {
            "destinations": wanted,
            "repositoryFilters": [{"filter": f, "filterType": "PREFIX_MATCH"} for f in filters],
        }
    )
    return {"rules": rules}
