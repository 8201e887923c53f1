"""Where a spec's replicas live, and what holds there: the replica registries, their targets, and the
registry policy another account must hold. No I/O.

ecrmirror writes only destinations in the source registry's own account: its credentials are that
account's. Another account's registry is written by ECR's replication alone, once that account's
registry permissions policy allows it (userguide/registry-permissions-create-replication.html).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace

from ecrmirror.spec import Destination, Registry, Target


def replica_registry(source: Registry, destination: Destination) -> Registry:
    """The registry a destination of `source`'s replication is."""
    host = source.host.replace(source.account, destination.registry_id, 1).replace(
        f".{source.region}.", f".{destination.region}.", 1
    )
    return Registry(host=host, account=destination.registry_id, region=destination.region)


def writable(target: Target, destination: Destination) -> bool:
    """Whether ecrmirror can write `destination` itself: a region of the source's own account."""
    return destination.registry_id == target.registry.account


# How a sync backfills a destination that lacks a version: ECR's replication backfill first, with
# ecrmirror's own copy as the fallback (NATIVE), or the copy alone (COPY).
NATIVE, COPY = "native", "copy"


def backfill_path(target: Target) -> str:
    """The spec's backfill path: `replication.backfill`, native unless it says copy."""
    return target.replication.backfill if target.replication is not None else NATIVE


def natively(target: Target) -> bool:
    """Whether a sync asks ECR to backfill (and the IAM policy allows that, not pushes into replicas)."""
    return backfill_path(target) != COPY


def writable_destinations(target: Target) -> tuple[Destination, ...]:
    if target.replication is None:
        return ()
    return tuple(d for d in target.replication.destinations if writable(target, d))


def replica_target(target: Target, destination: Destination) -> Target:
    """The target a replica repository is held to: the spec's settings, in the destination's region.

    A KMS key belongs to one region, so a replica declared `encryption: KMS` gets the AWS managed
    key of its own region. ECR creates replica repositories whatever the spec's
    `create_repositories` says, so ecrmirror may too.
    """
    declared = target.repository
    return replace(
        target,
        registry=replica_registry(target.registry, destination),
        create_repositories=True,
        repository=replace(declared, kms_key=None),
        replication=None,
    )


def registry_policy(target: Target, destination: Destination, repositories: Iterable[str]) -> str:
    """The registry permissions policy `destination`'s account must hold for the spec's replication."""
    registry = target.registry
    base = f"arn:aws:ecr:{destination.region}:{destination.registry_id}:repository/"
    resources = (
        [f"{base}{target.prefix}/*"] if target.prefix else [base + name for name in sorted(set(repositories))]
    )
    document = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": f"ReplicationFrom{registry.account}",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{registry.account}:root"},
                "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
                "Resource": resources[0] if len(resources) == 1 else resources,
            }
        ],
    }
    return json.dumps(document, separators=(",", ":"))
