"""The replication item and the replicas of each version: ECR's replication rules hold the spec's.

`check_rule`/`sync_rule` stand for `<spec>::replication`: the registry's configuration replicates
the spec's repositories to every declared destination, merged in without touching other rules,
and each destination region of the source's account has a creation template for the spec's
replicas (templates.py). A chart version's sync asks `ensure_rule` before its push (ECR
replicates only what is pushed after the rule exists); `replica_states` says, destination by
destination, whether a version's copy arrived, for the audit (`check_replicas`) and for the
backfill (backfill.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ecrmirror import ecr_rules, templates
from ecrmirror.ecr import ARCHIVED as ARCHIVED_STATUS
from ecrmirror.ecr import Ecr, RemoteImage
from ecrmirror.errors import AwsError, ReplicationLimit
from ecrmirror.outcome import Outcome, Result
from ecrmirror.replicas import registry_policy, replica_registry, writable
from ecrmirror.run import Run
from ecrmirror.spec import Destination, Registry, Target

REPLICATION_WRITE_ATTEMPTS = 3  # PutReplicationConfiguration has no compare-and-swap: re-read and retry


# -- the registry's rule ------------------------------------------------------------------------------
def check_rule(run: Run, target: Target, repositories: tuple[str, ...]) -> Result:
    assert target.replication is not None
    configuration = run.ecr(target.registry).replication_configuration()
    missing = uncovered(configuration, repositories, target.replication.destinations)
    problems = [
        f"no replication rule copies {', '.join(names)} to {d.region} ({d.registry_id})"
        for d, names in missing.items()
    ]
    problems += templates.check(run, target, repositories).problems
    notes = _other_accounts(target, repositories)
    if not problems:
        return Result(Outcome.PRESENT, _summary(target, repositories), notes=notes)
    return Result(
        Outcome.MISSING if missing else Outcome.DIFFERS,
        "; ".join(problems)
        + ". `pytest --sync` adds the rule (keeping every other rule of the registry) and the "
        "templates; a template that differs changes only under `enforce_settings: true`.",
        notes=notes,
    )


def sync_rule(run: Run, target: Target, repositories: tuple[str, ...]) -> Result:
    changed = ensure_rule(run, target, repositories)
    report = templates.ensure(run, target, repositories)
    notes = _other_accounts(target, repositories)
    done = (["added to the registry's replication"] if changed else []) + [
        f"{verb} the creation template {', '.join(which)}"
        for verb, which in (("created", report.created), ("updated", report.updated))
        if which
    ]
    if report.problems:
        return Result(
            Outcome.DIFFERS,
            (f"{'; '.join(done)}; " if done else "")
            + "; ".join(report.problems)
            + ". Set `enforce_settings: true` under target.repository to change the templates to the "
            "spec's, or make the spec say what they have.",
            notes=notes,
        )
    if changed or report.created:
        return Result(Outcome.CREATED, "; ".join(done) + ": " + _summary(target, repositories), notes=notes)
    if report.updated:
        return Result(Outcome.UPDATED, "; ".join(done), notes=notes)
    return Result(Outcome.PRESENT, _summary(target, repositories), notes=notes)


def _other_accounts(target: Target, repositories: tuple[str, ...]) -> tuple[str, ...]:
    """What replication into another account's registry needs: it cannot be read from here."""
    assert target.replication is not None
    return tuple(
        f"replication into account {d.registry_id} ({d.region}) works only if that registry's "
        f"permissions policy allows it; ecrmirror cannot read another account's registry. It must "
        f"hold: {registry_policy(target, d, repositories)}"
        for d in target.replication.destinations
        if not writable(target, d)
    )


def ensure_rule(run: Run, target: Target, repositories: tuple[str, ...]) -> bool:
    """Merge the spec's rule into the registry's configuration; True if it had to be written.

    Every other rule is written back unchanged. ECR has no conditional put, so the merge
    takes a lock shared by this run's processes and re-reads after writing.
    """
    assert target.replication is not None
    destinations = target.replication.destinations
    key = ("replication", target.registry.host, tuple(sorted(repositories)), destinations)
    if key in run.settled:
        return False
    from filelock import FileLock  # here: most runs declare no replication

    filters = replication_filters(target, repositories)
    # Read-modify-write of one registry-wide document: workers of this run take turns (a
    # writer that read before another's write would drop its rule), and every writer reads
    # again after writing, for writers outside this run.
    with FileLock(run.lock_dir / f"replication-{target.registry.host}.lock"):
        changed = _merge(run.ecr(target.registry), repositories, filters, destinations)
    run.settled.add(key)
    return changed


def _merge(
    ecr: Ecr, repositories: tuple[str, ...], filters: tuple[str, ...], destinations: tuple[Destination, ...]
) -> bool:
    for writes in range(REPLICATION_WRITE_ATTEMPTS + 1):
        configuration = ecr.replication_configuration()
        missing = uncovered(configuration, repositories, destinations)
        if not missing:
            return writes > 0
        if writes == REPLICATION_WRITE_ATTEMPTS:
            break
        ecr.put_replication_configuration(merged(configuration, filters, destinations, missing))
    raise AwsError(
        f"the replication rule for {', '.join(filters)} did not stay in the registry's configuration "
        f"after {REPLICATION_WRITE_ATTEMPTS} writes: something else rewrites it concurrently. "
        "Find the other writer (Terraform, CloudFormation, another job) and run --sync again."
    )


# -- the replicas of one version ------------------------------------------------------------------------
@dataclass(frozen=True)
class ReplicaState:
    """Where one destination stands with one version."""

    destination: Destination
    state: str  # HELD, COPYING (ECR is replicating it), MISSING, OTHER (the tag holds other content),
    # or ARCHIVED (held, not pullable)
    detail: str = ""  # why, for a message
    image_status: str = ""  # ECR's imageStatus of an ARCHIVED copy: ARCHIVED or ACTIVATING

    @property
    def where(self) -> str:
        return f"{self.destination.region} ({self.destination.registry_id})"


HELD, COPYING, MISSING, OTHER = "HELD", "COPYING", "MISSING", "OTHER"
ARCHIVED = "ARCHIVED"  # held, in the archive class (or being restored): not pullable there


def replica_states(run: Run, target: Target, repository: str, image: RemoteImage) -> list[ReplicaState]:
    """Each destination's copy of `image`: read from the replica where ecrmirror can read it (one
    DescribeImages per repository and region: metadata, not a pull), else as ECR's replication
    status says."""
    assert target.replication is not None
    states = []
    for destination in target.replication.destinations:
        if writable(target, destination):
            replica = replica_registry(target.registry, destination)
            copy = (run.inventory.digests(replica, repository, image.tag) or {}).get(image.tag)
            if copy is not None and copy.manifest_digest == image.manifest_digest and not copy.pullable:
                what = "ARCHIVED" if copy.status == ARCHIVED_STATUS else "being restored (ACTIVATING)"
                detail = f"{replica.host}/{repository}:{image.tag} is {what}: a pull in that region gets 404"
                states.append(ReplicaState(destination, ARCHIVED, detail, copy.status))
                continue
            if copy is not None and copy.manifest_digest == image.manifest_digest:
                states.append(ReplicaState(destination, HELD))
                continue
            if copy is not None:
                states.append(
                    ReplicaState(
                        destination,
                        OTHER,
                        f"{replica.host}/{repository}:{image.tag} holds {copy.manifest_digest}, not the "
                        f"source's {image.manifest_digest}; ecrmirror never overwrites a tag",
                    )
                )
                continue
        status = _status(run, target.registry, repository, image.tag, destination)
        state = status.get("status")
        if state == "COMPLETE" and not writable(target, destination):
            states.append(ReplicaState(destination, HELD))  # another account: ECR's word is all we read
        elif state == "IN_PROGRESS":
            states.append(ReplicaState(destination, COPYING))
        elif state == "FAILED":
            code = status.get("failureCode") or "no failure code"
            states.append(ReplicaState(destination, MISSING, f"replication FAILED ({code})"))
        elif state == "COMPLETE":
            states.append(
                ReplicaState(destination, MISSING, "ECR reports COMPLETE, but the image is not there")
            )
        else:
            states.append(
                ReplicaState(
                    destination,
                    MISSING,
                    "no copy and no replication record (ECR replicates only what is pushed after the "
                    "rule exists)",
                )
            )
    return states


def check_replicas(run: Run, target: Target, repository: str, image: RemoteImage, present: Result) -> Result:
    """`present` stays as it is when every destination holds the image (or is still copying it)."""
    return verdict(target, repository, image, replica_states(run, target, repository, image), present)


def verdict(
    target: Target, repository: str, image: RemoteImage, states: list[ReplicaState], present: Result
) -> Result:
    """What `states` (one per destination) make of `present`: it stands while none is MISSING or OTHER."""
    reference = f"{target.registry.host}/{repository}:{image.tag}"
    notes = tuple(
        f"replication of {reference} to {s.where} is in progress" + (f" ({s.detail})" if s.detail else "")
        for s in states
        if s.state == COPYING
    )
    notes += tuple(
        f"{reference} in {s.where}: ECR is restoring the copy there from the archive ({s.image_status}); "
        "a pull there gets 404 until it is ACTIVE"
        for s in states
        if s.state == ARCHIVED and s.image_status != ARCHIVED_STATUS
    )
    failing = [
        s
        for s in states
        if s.state in (MISSING, OTHER) or (s.state == ARCHIVED and s.image_status == ARCHIVED_STATUS)
    ]
    if not failing:
        return Result(present.outcome, present.message, present.release, notes=notes)
    return Result(
        Outcome.UNREPLICATED,
        f"{reference} is in ECR, but "
        + "; ".join(f"{s.where}: {s.detail}" for s in failing)
        + ". "
        + " ".join(dict.fromkeys(_remedy(target, s) for s in failing)),
        present.release,
        notes=notes,
    )


def _remedy(target: Target, state: ReplicaState) -> str:
    if state.state == ARCHIVED:
        return "`pytest --sync` restores it there (UpdateImageStorageClass, nothing re-pushed)."
    if state.state == OTHER:
        return "Find out who pushed the other content to the replica, then decide by hand."
    if writable(target, state.destination):
        return (
            "`pytest --sync` backfills it (ECR's replication backfill, else a copy by ecrmirror), "
            "digest unchanged."
        )
    return (
        f"Account {state.destination.registry_id}'s registry permissions policy must allow the "
        "replication (the replication item's note prints it); ecrmirror cannot write another "
        "account's registry, so fix the cause, then `pytest --sync` asks ECR for a replication "
        "backfill (or push the version there by hand)."
    )


def _status(
    run: Run, registry: Registry, repository: str, tag: str, destination: Destination
) -> dict[str, str]:
    for status in run.inventory.replication_statuses(registry, repository, tag):
        if (status.get("region"), status.get("registryId")) == (destination.region, destination.registry_id):
            return status
    return {}


def _summary(target: Target, repositories: tuple[str, ...]) -> str:
    assert target.replication is not None
    filters = replication_filters(target, repositories)
    regions = ", ".join(f"{d.region} ({d.registry_id})" for d in target.replication.destinations)
    return f"{', '.join(f + '*' for f in filters)} replicates to {regions}"


# -- rules compared and merged: no I/O below ------------------------------------------------------------
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
            return _within_limits({"rules": rules})
    if len(rules) >= ecr_rules.MAX_REPLICATION_RULES:
        raise ReplicationLimit(
            f"the registry already has {len(rules)} replication rules, ECR's maximum; ecrmirror "
            "will not replace any of them. Merge some rules by hand, then run --sync again."
        )
    if len(filters) > ecr_rules.MAX_FILTERS_PER_RULE:
        raise ReplicationLimit(
            f"the spec has {len(filters)} repositories and no prefix, but a replication rule holds at "
            f"most {ecr_rules.MAX_FILTERS_PER_RULE} filters. Give the spec a target.prefix."
        )
    rules.append(
        {
            "destinations": wanted,
            "repositoryFilters": [{"filter": f, "filterType": "PREFIX_MATCH"} for f in filters],
        }
    )
    return _within_limits({"rules": rules})


def _within_limits(configuration: dict[str, Any]) -> dict[str, Any]:
    """`configuration`, unless ECR would refuse it (25 destinations across all rules, say)."""
    problems = ecr_rules.replication_problems(configuration["rules"])
    if problems:
        raise ReplicationLimit(
            "adding the spec's destinations would make a replication configuration ECR refuses ("
            + "; ".join(problems)
            + "). Remove destinations or rules that are no longer needed, then run --sync again."
        )
    return configuration
