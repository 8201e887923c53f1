"""Backfill: a version the source holds goes into every destination that lacks it.

ECR replicates only what is pushed after a rule exists, so a region added to `replication.regions`
never receives the versions before it, and a failed replication is not tried again. `--sync` first
asks ECR to backfill (native_backfill.py): one StartReplicationBackfill per destination and run (one
already running there is joined), which copies inside AWS whatever the rules send there, in this
account or another. Each version then takes ECR's word for its copy: BACKFILLED, or UNREPLICATED
with ECR's failure code. A version ECR left out of its backfill, or a registry that refuses the
calls (no permission, no such operation), falls back to ecrmirror's own copy, straight from the
source repository into the replica repository: the same manifest bytes (so the same digest), its
blobs first and the tag last. That copy needs push rights in the destination, and reaches only
regions of the source's own account. A version ECR is still replicating, or backfilling after the
step's deadline, is left to ECR and named.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ecrmirror import native_backfill, replication, repositories
from ecrmirror.chart import Descriptor
from ecrmirror.ecr import ARCHIVED as ARCHIVED_STATUS
from ecrmirror.ecr import RemoteImage
from ecrmirror.errors import AwsError, RegistryError, TagConflict, UpstreamError, VersionNotFound
from ecrmirror.outcome import Outcome, Result
from ecrmirror.replicas import natively, replica_registry, replica_target, writable, writable_destinations
from ecrmirror.replication import ARCHIVED, COPYING, HELD, MISSING, ReplicaState, replica_states
from ecrmirror.run import Run
from ecrmirror.spec import Destination, Target


def backfill(
    run: Run,
    spec_path: Path,
    target: Target,
    repository: str,
    image: RemoteImage,
    present: Result,
    spec_repositories: tuple[str, ...] = (),
) -> Result:
    """`present` (the source holds the version) after backfilling each destination that lacks it:
    BACKFILLED when something arrived, else what the audit would say. `spec_repositories`: the
    repositories the spec's replication rule covers (its rule is merged before ECR's backfill)."""
    by_ecr: list[str] = []  # "region by ECR's replication backfill <id>"
    copied: list[str] = []  # "region (why ECR did not)"
    uploaded = 0
    states: list[ReplicaState] = []
    for state in replica_states(run, target, repository, image):
        if state.state == ARCHIVED and state.image_status == ARCHIVED_STATUS:
            # A copy in the archive class: restored there, as the source would be (never re-pushed).
            replica = replica_registry(target.registry, state.destination)
            status = run.ecr(replica).restore(repository, image.manifest_digest)
            states.append(replace(state, image_status=status))
            continue
        # HELD needs nothing, COPYING is ECR's to finish, OTHER content is never overwritten.
        if state.state != MISSING:
            states.append(state)
            continue
        destination = state.destination
        rule_covers = spec_repositories or (repository,)
        ecr = _native(run, target, destination, rule_covers) if natively(target) else None
        if ecr is not None and ecr.id and ecr.running:
            states.append(ReplicaState(destination, COPYING, f"{ecr.named()} is {ecr.status}"))
            continue
        found = (
            ecr.result(repository, image.tag, image.manifest_digest) if ecr is not None and ecr.id else None
        )
        if ecr is not None and found is not None and found[0] == "COMPLETE":
            states.append(ReplicaState(destination, HELD))
            by_ecr.append(f"{destination.region} by {ecr.named()}")
            if writable(target, destination):
                run.inventory.add_image(replica_registry(target.registry, destination), repository, image)
            continue
        if ecr is not None and found is not None:
            code = found[1] or "no failure code"
            states.append(ReplicaState(destination, MISSING, f"{ecr.named()} FAILED for it ({code})"))
            continue
        why = _why_not_ecr(ecr)
        if not writable(target, destination):  # another account's registry: ECR's to write alone
            states.append(replace(state, detail=f"{state.detail}; {why}" if why else state.detail))
            continue
        stored = _fallback(run, spec_path, target, destination, repository, image, why)
        if stored is not None:
            uploaded += stored
            copied.append(f"{destination.region} ({why})" if why else destination.region)
        # Copied, or the tag arrived meanwhile: the inventory says which.
        states.append(replica_states(run, target, repository, image)[_index(target, destination)])
    result = replication.verdict(target, repository, image, states, present)
    if not (by_ecr or copied) or not result.outcome.ok:
        return result
    reference = f"{target.registry.host}/{repository}:{image.tag}"
    done = [f"replicated to {', '.join(by_ecr)}"] if by_ecr else []
    if copied:
        done.append(f"copied by ecrmirror to {', '.join(copied)}, where replication had not brought it")
    message = f"{reference} ({image.manifest_digest}) {'; '.join(done)}" + (
        f"; {uploaded} bytes uploaded" if copied else ""
    )
    # A passing item shows its notes, not its message: who filled which region is worth seeing.
    return Result(Outcome.BACKFILLED, message, present.release, uploaded, notes=(*result.notes, message))


def _native(
    run: Run, target: Target, destination: Destination, repositories: tuple[str, ...]
) -> native_backfill.NativeBackfill:
    """ECR's backfill to `destination`, once the spec's rule sends `repositories` there
    (StartReplicationBackfill refuses a destination outside the configuration, and copies only what
    the rules select)."""
    replication.ensure_rule(run, target, repositories)
    return native_backfill.for_destination(run, target, destination)


def _why_not_ecr(ecr: native_backfill.NativeBackfill | None) -> str:
    """Why ECR's backfill did not bring a version ('' when the spec asks for copies)."""
    if ecr is None:
        return ""
    if not ecr.id:
        return f"fallback: ECR refused the replication backfill: {ecr.refused}"
    return f"fallback: {ecr.named()} ended {ecr.status} without it"


def _index(target: Target, destination: Destination) -> int:
    assert target.replication is not None
    return target.replication.destinations.index(destination)


def _fallback(
    run: Run,
    spec_path: Path,
    target: Target,
    destination: Destination,
    repository: str,
    image: RemoteImage,
    why: str,
) -> int | None:
    """The copy, its failure saying why ECR's backfill did not make it unnecessary."""
    try:
        return _copy(run, spec_path, target, destination, repository, image)
    except (RegistryError, AwsError) as exc:
        if not why or isinstance(exc, TagConflict):
            raise
        raise type(exc)(f"{exc} (ecrmirror copied to {destination.region} itself: {why})") from None


def ensure_replica_repositories(run: Run, spec_path: Path, target: Target, repository: str) -> None:
    """Before a push: each writable destination has the repository, with the spec's settings, for
    ECR's replication to copy into (ECR would create it with its defaults)."""
    for destination in writable_destinations(target):
        replica = replica_target(target, destination)
        if run.inventory.repository(replica.registry, repository) is None:
            repositories.ensure_exists(run, spec_path, replica, repository)


def _copy(
    run: Run, spec_path: Path, target: Target, destination: Destination, repository: str, image: RemoteImage
) -> int | None:
    """Copy `image` from the source repository into `destination`'s: the bytes uploaded, or None
    when the tag arrived there meanwhile (and is left for the audit to compare)."""
    replica = replica_target(target, destination)
    if run.inventory.repository(replica.registry, repository) is None:
        repositories.ensure_exists(run, spec_path, replica, repository)
    reader = run.registry_reader(target.registry)
    writer = run.registry_client(replica.registry)
    source = f"{target.registry.host}/{repository}@{image.manifest_digest}"
    uploaded = 0
    try:
        manifest = reader.manifest(repository, image.manifest_digest)
        with run.scratch() as tmp:
            for index, blob in enumerate(manifest.blobs()):
                descriptor = Descriptor(
                    str(blob.get("mediaType", "")), str(blob["digest"]), int(blob["size"])
                )
                # As a push does: the config (first, a few hundred bytes, new with each version)
                # costs a request to ask about either way; a layer is asked about before it moves.
                if index > 0 and writer.has_blob(repository, descriptor.digest):
                    continue
                path = Path(tmp) / descriptor.digest.replace(":", "-")
                reader.blob(repository, descriptor.digest, path, descriptor.size)
                writer.upload_blob(repository, path, descriptor)
                uploaded += descriptor.size
    except (UpstreamError, VersionNotFound) as exc:  # the source ECR, read as a registry
        raise RegistryError(f"backfill of {destination.region} cannot read {source}: {exc}") from None
    try:
        mutable = repositories.tag_may_move(run, replica, repository)(image.tag)
        writer.put_manifest(repository, image.tag, manifest.body, manifest.media_type, mutable=mutable)
    except TagConflict:
        # Replication (or another run) brought the tag meanwhile: the audit below compares it.
        fresh = run.inventory.images(replica.registry, repository, image.tag, fresh=True) or {}
        if image.tag not in fresh:
            raise
        return None
    run.inventory.add_image(replica.registry, repository, image)
    return uploaded
