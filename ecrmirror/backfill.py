"""Backfill: a version the source holds goes into every destination region of its account that lacks it.

ECR replicates only what is pushed after a rule exists, so a region added to `replication.regions`
never receives the versions before it, and a failed replication is not tried again. `--sync`
copies such a version straight from the source repository into the replica repository: the same
manifest bytes (so the same digest), its blobs first and the tag last, into a repository that
exists with the spec's settings. A version ECR is still replicating is left to ECR, and another
account's registry, which ecrmirror cannot write, is left to replication.

(ECR's StartReplicationBackfill replicates a whole registry's matching images to a region; this
copies exactly the spec's versions, and finishes within the run that reports them.)
"""

from __future__ import annotations

from pathlib import Path

from ecrmirror import repositories
from ecrmirror.chart import Descriptor
from ecrmirror.ecr import RemoteImage
from ecrmirror.errors import RegistryError, TagConflict, UpstreamError, VersionNotFound
from ecrmirror.outcome import Outcome, Result
from ecrmirror.replicas import replica_target, writable, writable_destinations
from ecrmirror.replication import MISSING, check_replicas, replica_states
from ecrmirror.run import Run
from ecrmirror.spec import Destination, Target


def backfill(
    run: Run, spec_path: Path, target: Target, repository: str, image: RemoteImage, present: Result
) -> Result:
    """`present` (the source holds the version) after copying it to each writable destination that
    lacks it: BACKFILLED when something was copied, else what the audit would say."""
    copied: list[str] = []
    uploaded = 0
    for state in replica_states(run, target, repository, image):
        # HELD needs nothing, COPYING is ECR's to finish, OTHER content is never overwritten, and
        # another account's registry is replication's alone.
        if state.state != MISSING or not writable(target, state.destination):
            continue
        stored = _copy(run, spec_path, target, state.destination, repository, image)
        if stored is not None:
            uploaded += stored
            copied.append(state.destination.region)
    result = check_replicas(run, target, repository, image, present)  # what is left, from the inventory
    if not copied or not result.outcome.ok:
        return result
    reference = f"{target.registry.host}/{repository}:{image.tag}"
    return Result(
        Outcome.BACKFILLED,
        f"{reference} ({image.manifest_digest}) copied to {', '.join(copied)}, where replication had "
        f"not brought it; {uploaded} bytes uploaded",
        present.release,
        uploaded,
        notes=result.notes,
    )


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
