"""Repository creation templates: the replica repositories ECR creates by itself get the spec's settings.

ECR creates a missing replica repository with its defaults (MUTABLE tags, AES256) unless a
creation template for REPLICATION matches its name (userguide/repository-creation-templates-create.html).
ecrmirror creates the replicas it knows of itself (replica items, and before a push), so the
template is for the rest: a repository a push outside ecrmirror creates, say. One template per
replication filter (the spec's prefix, or each repository without one), in each destination region
of the source's own account.

The template carries the spec's tag mutability, exclusion filters, encryption type and lifecycle
policy. Not tags, nor a KMS key: AWS's guide wants a custom IAM role for templates that set them,
which ecrmirror does not create; the replica items tag and settle each replica instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ecrmirror.replicas import replica_registry, writable_destinations
from ecrmirror.repositories import Difference, same_policy
from ecrmirror.run import Run
from ecrmirror.spec import DEFAULT_TAG_MUTABILITY, Registry, Target

APPLIED_FOR = "REPLICATION"


@dataclass(frozen=True)
class TemplateReport:
    """What checking (or settling) a spec's templates found, region by region."""

    created: tuple[str, ...] = ()  # "eu-central-1 mirror"
    updated: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()  # what differs (and stays so), one line each


def desired(target: Target, prefix: str) -> dict[str, Any]:
    """The CreateRepositoryCreationTemplate request for `prefix`, from the spec's settings."""
    declared = target.repository
    template: dict[str, Any] = {
        "prefix": prefix,
        "description": "ecrmirror: replicas of the charts mirrored under this prefix",
        "appliedFor": [APPLIED_FOR],
        "imageTagMutability": declared.image_tag_mutability or DEFAULT_TAG_MUTABILITY,
    }
    if declared.mutability_exclusions is not None:
        template["imageTagMutabilityExclusionFilters"] = [
            {"filterType": "WILDCARD", "filter": pattern} for pattern in declared.mutability_exclusions
        ]
    if declared.encryption is not None:
        template["encryptionConfiguration"] = {"encryptionType": declared.encryption}
    if declared.lifecycle_policy is not None:
        template["lifecyclePolicy"] = declared.lifecycle_policy
    return template


def differences(target: Target, actual: dict[str, Any]) -> list[Difference]:
    """What a template lacks of the spec's declared settings (and of being one for REPLICATION)."""
    declared = target.repository
    found: list[Difference] = []
    applied = list(actual.get("appliedFor") or [])
    if APPLIED_FOR not in applied:
        found.append(Difference("appliedFor", json.dumps([*applied, APPLIED_FOR]), json.dumps(applied)))
    mutability = str(actual.get("imageTagMutability") or "MUTABLE")
    if declared.image_tag_mutability not in (None, mutability):
        found.append(Difference("image_tag_mutability", declared.image_tag_mutability, mutability))
    held = sorted(str(f.get("filter")) for f in actual.get("imageTagMutabilityExclusionFilters") or [])
    if declared.mutability_exclusions is not None and sorted(declared.mutability_exclusions) != held:
        found.append(
            Difference(
                "image_tag_mutability_exclusion_filters",
                json.dumps(sorted(declared.mutability_exclusions)),
                json.dumps(held),
            )
        )
    encryption = str((actual.get("encryptionConfiguration") or {}).get("encryptionType") or "AES256")
    if declared.encryption not in (None, encryption):
        found.append(Difference("encryption", declared.encryption, encryption))
    lifecycle = actual.get("lifecyclePolicy")
    if declared.lifecycle_policy is not None and not same_policy(declared.lifecycle_policy, lifecycle):
        found.append(Difference("lifecycle_policy", declared.lifecycle_policy, str(lifecycle or "(none)")))
    return found


def prefixes(target: Target, repositories: tuple[str, ...]) -> tuple[str, ...]:
    """One template per replication filter: the spec's prefix, else each repository."""
    return (target.prefix,) if target.prefix else tuple(sorted(set(repositories)))


def check(run: Run, target: Target, repositories: tuple[str, ...]) -> TemplateReport:
    problems: list[str] = []
    for registry, found in _templates(run, target, repositories):
        for prefix in prefixes(target, repositories):
            actual = found.get(prefix)
            if actual is None:
                problems.append(
                    f"{registry.region}: no repository creation template for {prefix!r}: replica "
                    "repositories ECR creates there get MUTABLE tags; `pytest --sync` creates it"
                )
                continue
            problems += [f"{registry.region}: template {prefix!r}: {d}" for d in differences(target, actual)]
    return TemplateReport(problems=tuple(problems))


def ensure(run: Run, target: Target, repositories: tuple[str, ...]) -> TemplateReport:
    """Create missing templates; change ours that differ only under enforce_settings."""
    created: list[str] = []
    updated: list[str] = []
    problems: list[str] = []
    for registry, found in _templates(run, target, repositories):
        ecr = run.ecr(registry)
        for prefix in prefixes(target, repositories):
            actual = found.get(prefix)
            if actual is None:
                if ecr.create_creation_template(desired(target, prefix)):
                    created.append(f"{registry.region} {prefix!r}")
                continue
            found_differences = differences(target, actual)
            if not found_differences:
                continue
            if not target.repository.enforce:
                problems += [f"{registry.region}: template {prefix!r}: {d}" for d in found_differences]
                continue
            change = desired(target, prefix)
            # appliedFor lists every scenario the template serves: keep the others it had.
            change["appliedFor"] = sorted({*(actual.get("appliedFor") or []), APPLIED_FOR})
            ecr.update_creation_template(change)
            updated.append(f"{registry.region} {prefix!r}")
    return TemplateReport(tuple(created), tuple(updated), tuple(problems))


def _templates(
    run: Run, target: Target, repositories: tuple[str, ...]
) -> list[tuple[Registry, dict[str, dict[str, Any]]]]:
    """Each writable destination registry with its templates for the spec's prefixes."""
    wanted = prefixes(target, repositories)
    registries = [replica_registry(target.registry, d) for d in writable_destinations(target)]
    return [(registry, run.ecr(registry).creation_templates(wanted)) for registry in registries]
