"""The least-privilege IAM policy that a sync or an audit of some specs needs. No I/O."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the plugin reads MODES in every pytest process: no spec reading for that
    from ecrmirror.spec import Registry, SigningRule, Spec, Target

SYNC = "sync"
AUDIT = "audit"
MODES = (SYNC, AUDIT)
# ECR creates this role on the first PutReplicationConfiguration, as the caller, ...
REPLICATION_ROLE = "role/aws-service-role/replication.ecr.amazonaws.com/AWSServiceRoleForECRReplication"
# ... and this one on the first CreateRepositoryCreationTemplate (userguide/slr-rct.html).
TEMPLATE_ROLE = "role/aws-service-role/ecr.amazonaws.com/AWSServiceRoleForECRTemplate"

# What every sync does per repository: read the inventory and settings, push what is missing
# (HEAD blob, POST + PUT upload, PUT manifest: the registry checks these IAM actions).
_SYNC_ACTIONS = {
    "ecr:BatchGetImage",
    "ecr:DescribeImages",  # the inventory: what each tag names, archived or not (ecr.py)
    "ecr:DescribeRepositories",
    "ecr:BatchCheckLayerAvailability",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
}
_AUDIT_ACTIONS = {"ecr:BatchGetImage", "ecr:DescribeImages", "ecr:DescribeRepositories"}
# What pushing into a repository takes beyond reading it: a replica needs none of it when ECR's
# replication backfill fills it (backfill.py).
_PUSH_ACTIONS = {
    "ecr:BatchCheckLayerAvailability",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
}
# ECR's replication backfill, registry-wide. UNCONFIRMED: the Service Authorization Reference read
# for ecr-now.md predates these operations; the names assume IAM's usual `ecr:<Operation>`.
_NATIVE_BACKFILL_ACTIONS = {
    "ecr:StartReplicationBackfill",
    "ecr:DescribeReplicationBackfillResults",
    "ecr:ListReplicationBackfills",
}


def partition(registry: Registry) -> str:
    if registry.region.startswith("cn-"):
        return "aws-cn"
    if registry.region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def repository_resources(target: Target, repositories: Iterable[str]) -> list[str]:
    """The spec's repositories as ARNs: `<prefix>/*` when it has a prefix, else each name."""
    registry = target.registry
    base = f"arn:{partition(registry)}:ecr:{registry.region}:{registry.account}:repository/"
    if target.prefix:
        return [f"{base}{target.prefix}/*"]
    return [base + name for name in sorted(set(repositories))]


def repository_actions(target: Target, mode: str) -> set[str]:
    """The ECR actions a run needs on the spec's repositories, from what the spec declares."""
    declared = target.repository
    actions = set(_SYNC_ACTIONS if mode == SYNC else _AUDIT_ACTIONS)
    if declared.tags is not None:
        actions.add("ecr:ListTagsForResource")
    if declared.lifecycle_policy is not None:
        actions.add("ecr:GetLifecyclePolicy")
    if mode == AUDIT:
        if target.replication is not None:
            actions.add("ecr:DescribeImageReplicationStatus")
        return actions
    if target.create_repositories:
        actions.add("ecr:CreateRepository")
        if declared.tags:
            actions.add("ecr:TagResource")  # tagging on create needs it too
        if declared.lifecycle_policy is not None:
            actions.add("ecr:PutLifecyclePolicy")
    if declared.enforce:
        if declared.image_tag_mutability is not None or declared.mutability_exclusions is not None:
            actions.add("ecr:PutImageTagMutability")
        if declared.scan_on_push is not None:
            actions.add("ecr:PutImageScanningConfiguration")
        if declared.tags:
            actions.add("ecr:TagResource")
        if declared.lifecycle_policy is not None:
            actions.add("ecr:PutLifecyclePolicy")
    return actions


def _source_actions(target: Target, mode: str) -> set[str]:
    """What the spec's own repositories need beyond what their replicas do: a restore of an archived
    version (versions.py), and the preview of the spec's lifecycle policy (repositories.py)."""
    actions = {"ecr:UpdateImageStorageClass"} if mode == SYNC else set()
    if target.repository.lifecycle_policy is not None:
        actions |= {"ecr:StartLifecyclePolicyPreview", "ecr:GetLifecyclePolicyPreview"}
    return actions


def _spec_repositories(spec: Spec) -> list[str]:
    return [spec.target.repository_for(chart.name) for chart in spec.charts + spec.gitops_charts]


def _image_resources(target: Target) -> list[str]:
    """Where a spec's images land, as ARNs, without finding them (that needs the charts): under the
    prefix (repository_resources covers it), under each pull-through cache rule's prefix, or
    without a prefix, under a first path part that is a registry host (it holds a "." or "-")."""
    registry = target.registry
    base = f"arn:{partition(registry)}:ecr:{registry.region}:{registry.account}:repository/"
    rules = target.images.pull_through_cache
    if rules is not None:
        return sorted({f"{base}{prefix}/*" for _, prefix in rules})
    if target.prefix:
        return []
    return [f"{base}*.*/*", f"{base}*-*/*"]


def policy_document(specs: Iterable[Spec], mode: str) -> dict[str, Any]:
    """An IAM policy document allowing exactly what `mode` needs for `specs`, nothing registry-wide
    except what ECR only authorizes on `*` (GetAuthorizationToken, the replication configuration)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    from ecrmirror.replicas import natively, replica_target, writable_destinations

    by_resource: dict[str, set[str]] = defaultdict(set)
    registry_wide: set[str] = set()
    replication_roles: set[str] = set()
    kms_keys: set[str] = set()
    signing_keys: list[dict[str, Any]] = []
    managed: list[Target] = []  # specs with managed signing rules
    for spec in specs:
        target = spec.target
        repositories = _spec_repositories(spec)
        for resource in repository_resources(target, repositories):
            by_resource[resource] |= repository_actions(target, mode) | _source_actions(target, mode)
        verifying = any(chart.verify for chart in spec.charts)
        # The audit re-verifies the .prov layer ECR holds, and the attestations of a signing spec
        # (one small blob each); a signing sync reads the .prov of a version it signs later.
        if (mode == AUDIT and (verifying or target.sign)) or (mode == SYNC and verifying and target.sign):
            registry_wide.add("ecr:GetAuthorizationToken")
            for resource in repository_resources(target, repositories):
                by_resource[resource].add("ecr:GetDownloadUrlForLayer")
        behind = [c for c in spec.gitops_charts if c.range is not None and c.gitops and not c.gitops.strict]
        if mode == AUDIT and behind:  # whether ECR holds an older match of a GitOps range
            for resource in repository_resources(target, repositories):
                by_resource[resource].add("ecr:ListImages")
        if any(chart.images for chart in spec.charts):
            for resource in _image_resources(target):
                by_resource[resource] |= repository_actions(target, mode) | _source_actions(target, mode)
            if mode == SYNC:
                registry_wide.add("ecr:GetAccountSetting")  # BLOB_MOUNTING: mount shared layers
        if target.sign is not None:
            actions = {"kms:GetPublicKey", *(["kms:Sign"] if mode == SYNC else [])}
            signing_keys.append(_signing_statement(target, actions))
        if mode == SYNC:
            registry_wide.add("ecr:GetAuthorizationToken")
            declared = target.repository
            if target.create_repositories and declared.kms_key:
                kms_keys.add(declared.kms_key)
        if target.pull_time_exclusions is not None:  # registry-level: `*` only (SAR)
            registry_wide.add("ecr:ListPullTimeUpdateExclusions")
            if mode == SYNC:
                registry_wide.add("ecr:RegisterPullTimeUpdateExclusion")
        if target.managed_signing is not None:
            managed.append(target)
        if target.replication is None:
            continue
        registry_wide.add("ecr:DescribeRegistry")
        iam = f"arn:{partition(target.registry)}:iam::{target.registry.account}"
        native = natively(target)
        if mode == SYNC:
            registry_wide.add("ecr:PutReplicationConfiguration")
            replication_roles.add(f"{iam}:{REPLICATION_ROLE}")
            if native:  # what a destination lacks, ECR's replication backfill brings, in any account
                registry_wide |= _NATIVE_BACKFILL_ACTIONS
        replicas = writable_destinations(target)
        if not replicas:
            continue
        # Replica repositories are items of their own, held to the spec's settings; a sync
        # has what they lack backfilled (by ECR, else copied from the source: backfill.py) and
        # keeps the creation templates.
        registry_wide.add("ecr:DescribeRepositoryCreationTemplates")
        if mode == SYNC:
            registry_wide.add("ecr:CreateRepositoryCreationTemplate")
            if target.repository.enforce:
                registry_wide.add("ecr:UpdateRepositoryCreationTemplate")
            replication_roles.add(f"{iam}:{TEMPLATE_ROLE}")
            reading = {"ecr:DescribeImageReplicationStatus"} | (
                set() if native else {"ecr:GetDownloadUrlForLayer"}
            )
            for resource in repository_resources(target, repositories):
                by_resource[resource] |= reading
        for destination in replicas:
            replica = replica_target(target, destination)
            # A replica's copy is judged by its digest (DescribeImages): never pulled.
            actions = repository_actions(replica, mode) - (_PUSH_ACTIONS if native else set())
            if native or mode == AUDIT:
                actions.discard("ecr:BatchGetImage")
            if mode == SYNC:
                actions.add("ecr:UpdateImageStorageClass")  # an archived copy is restored (backfill.py)
            for resource in repository_resources(replica, repositories):
                by_resource[resource] |= actions
    statements: list[dict[str, Any]] = []
    if registry_wide:
        statements.append(_statement("RegistryWide", registry_wide, ["*"]))
    grouped: dict[frozenset[str], list[str]] = defaultdict(list)
    for resource, actions in by_resource.items():
        grouped[frozenset(actions)].append(resource)
    for index, (allowed, resources) in enumerate(sorted(grouped.items(), key=lambda kv: sorted(kv[1]))):
        statements.append(_statement(f"Repositories{index + 1}", allowed, sorted(resources)))
    if replication_roles:
        statements.append(
            _statement("EcrServiceLinkedRoles", {"iam:CreateServiceLinkedRole"}, sorted(replication_roles))
        )
    for index, statement in enumerate(signing_keys):
        statements.append({"Sid": f"SigningKey{index + 1}", **statement})
    for index, target in enumerate(managed):
        assert target.managed_signing is not None
        for statement in managed_signing_statements(target.managed_signing.rules, target.registry, mode):
            statements.append({**statement, "Sid": f"{statement['Sid']}{index + 1}"})
    if kms_keys:
        statements.append(
            _statement("KmsKeysOfNewRepositories", {"kms:CreateGrant", "kms:DescribeKey"}, sorted(kms_keys))
        )
    return {"Version": "2012-10-17", "Statement": statements}


def _signing_statement(target: Target, actions: set[str]) -> dict[str, Any]:
    """kms:Sign and kms:GetPublicKey on the `sign:` key. IAM authorizes them on the key, not its
    alias: an alias is allowed as any key of the account that the alias names (kms:ResourceAliases)."""
    key = target.sign.kms_key if target.sign else ""
    registry = target.registry
    statement: dict[str, Any] = {"Effect": "Allow", "Action": sorted(actions)}
    if key.startswith("arn:") and ":key/" in key:
        return {**statement, "Resource": key}
    alias = key.rpartition(":")[2] if key.startswith("arn:") else key
    if not alias.startswith("alias/"):  # a bare key id
        return {
            **statement,
            "Resource": f"arn:{partition(registry)}:kms:{registry.region}:{registry.account}:key/{key}",
        }
    region = key.split(":")[3] if key.startswith("arn:") else registry.region
    return {
        **statement,
        "Resource": f"arn:{partition(registry)}:kms:{region}:{registry.account}:key/*",
        "Condition": {"ForAnyValue:StringEquals": {"kms:ResourceAliases": alias}},
    }


def _statement(sid: str, actions: Iterable[str], resources: list[str]) -> dict[str, Any]:
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": sorted(actions),
        "Resource": resources[0] if len(resources) == 1 else resources,
    }


def managed_signing_statements(
    rules: Iterable[SigningRule], registry: Registry, mode: str = "sync"
) -> list[dict[str, Any]]:
    """What managed signing adds to the policy a run needs (policy.py's statement shape).

    sync: `signer:SignPayload` on the profiles (ECR signs as the pusher), the configuration read
    and written (registry-level: `*` only), and each pushed version's status read. audit: the
    configuration and the statuses read. The statuses are read on the rules' repositories: ECR's
    wildcard filters are IAM's resource wildcards too.
    """
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
