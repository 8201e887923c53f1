"""Copying from an OCI source into ECR, unchanged: a chart's manifest and blobs, and what refers to it.

What refers to a chart (cosign's signatures, attestations and SBOMs under its `sha256-<hex>.sig`,
`.att`, `.sbom` tags; OCI 1.1 referrers, whose `subject` is the chart) comes with it, digests
unchanged, so that a cluster verifying signatures against ECR finds them there. A cosign tag that
ECR already holds with other content is never overwritten, in an immutable repository or a mutable
one: cosign re-pushes that tag whenever a signature is added upstream, so the two differ (DIFFERS),
and a person decides.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecrmirror.chart import Descriptor
from ecrmirror.errors import TagConflict, UpstreamError
from ecrmirror.registry import RegistryClient
from ecrmirror.run import Run
from ecrmirror.sources import ChartRelease, OciRepository
from ecrmirror.sources.oci import Manifest, Referrer, side_by_side
from ecrmirror.spec import Registry


@dataclass(frozen=True)
class Attached:
    """What the source attaches to a release, against what ECR holds."""

    missing: tuple[Referrer, ...] = ()  # ECR lacks them: a sync copies them
    differing: tuple[str, ...] = ()  # cosign tags ECR holds with other content, described


@dataclass(frozen=True)
class Copied:
    uploaded: int = 0  # bytes
    referrers: tuple[str, ...] = ()  # what was copied, described
    differing: tuple[str, ...] = ()  # cosign tags someone pushed other content to meanwhile, described


def copy_manifest(
    source: OciRepository,
    release: ChartRelease,
    manifest: Manifest,
    client: RegistryClient,
    repository: str,
    reference: str,
    tmp: Path,
    limit: int,
    *,
    mutable: bool = False,
    before_upload: Callable[[], bool] | None = None,
    new_repository: bool = False,
    alongside: Callable[..., futures.Future[Any]] | None = None,
) -> int:
    """Copy one manifest and the blobs ECR lacks; the manifest last, as `reference` (a tag or its
    digest). Everything is downloaded and verified before the first upload: a bad source leaves
    nothing behind in ECR, not even an untagged blob. A blob the manifest lists more than once
    moves once. `mutable`: ECR would let the tag move (RegistryClient.put_manifest).
    `before_upload`, once all is verified: makes room in ECR (creates the repository) and says
    whether the tag may move there, in place of `mutable`. `new_repository`: the run created
    the repository, so it holds no blob the run did not upload (RegistryClient.push). With
    `alongside` (run.alongside), the blobs move side by side. Returns the bytes uploaded."""
    config, *listed = (
        Descriptor(str(blob.get("mediaType", "")), str(blob["digest"]), int(blob["size"]))
        for blob in manifest.blobs()
    )
    unique: dict[str, Descriptor] = {}
    for descriptor in (config, *listed):
        unique.setdefault(descriptor.digest, descriptor)
    blobs = list(unique.values())  # the config first
    for descriptor in blobs:
        if descriptor.size > limit:
            raise UpstreamError(
                f"{release.url}: blob {descriptor.digest} is {descriptor.size} bytes, more than a "
                f"chart may be ({limit}; ini ecrmirror_max_chart_size); nothing was pushed"
            )

    def download(descriptor: Descriptor) -> tuple[Descriptor, Path] | None:
        # As in RegistryClient.push: the config (a few hundred bytes, new with each version)
        # costs one request to download either way, so asking ECR for it first only adds one.
        if descriptor is not config and not new_repository and client.has_blob(repository, descriptor.digest):
            return None
        target = tmp / descriptor.digest.replace(":", "-")
        return descriptor, source.blob(release, descriptor.digest, target, descriptor.size)

    # The blobs do not depend on each other: downloaded side by side, then uploaded side by side.
    downloaded = [each for each in side_by_side(download, blobs, alongside) if each is not None]
    if before_upload is not None:
        mutable = before_upload()

    def upload(each: tuple[Descriptor, Path]) -> int:
        client.upload_blob(repository, each[1], each[0])
        return each[0].size

    uploaded = sum(side_by_side(upload, downloaded, alongside))
    client.put_manifest(repository, reference, manifest.body, manifest.media_type, mutable=mutable)
    return uploaded


def missing_referrers(
    run: Run, registry: Registry, repository: str, source: OciRepository, release: ChartRelease
) -> Attached:
    """What the source attaches to the release that ECR does not hold, and the cosign tags ECR
    holds with other content: from the repository's one listing (by digest, nothing pulled),
    however many versions ask."""
    found = source.referrers(release, run.alongside)
    if not found:
        return Attached()
    listing = run.inventory.listing(registry, repository)
    untagged = [r.manifest.digest for r in found if r.tag is None]
    held = listing.holds(untagged) if listing else set()
    tagged = [r.tag for r in found if r.tag is not None]
    tags = listing.tagged(tagged) if listing else {}
    missing, differing = [], []
    for referrer in found:
        if referrer.tag is None:
            if referrer.manifest.digest not in held:
                missing.append(referrer)
        elif referrer.tag not in tags:
            missing.append(referrer)
        elif tags[referrer.tag].manifest_digest != referrer.manifest.digest:
            differing.append(_differs(referrer, tags[referrer.tag].manifest_digest, release))
    return Attached(tuple(missing), tuple(differing))


def _differs(referrer: Referrer, held: str, release: ChartRelease) -> str:
    return f"{referrer.tag} holds {held} in ECR and {referrer.manifest.digest} in {release.source}"


def copy_referrers(
    run: Run,
    registry: Registry,
    repository: str,
    source: OciRepository,
    release: ChartRelease,
    referrers: tuple[Referrer, ...],
    tmp: Path,
    may_move: Callable[[str], bool],
) -> Copied:
    """Copy what ECR lacks of what refers to a release. `may_move(tag)`: ECR would let a PUT
    replace that tag, so it is asked for again right before its PUT. A cosign tag that someone
    pushed meanwhile is left as it is, and said to differ."""
    client = run.registry_client(registry)
    uploaded, copied, differing = 0, [], []
    for referrer in referrers:
        reference = referrer.tag or referrer.manifest.digest
        try:
            uploaded += copy_manifest(
                source,
                release,
                referrer.manifest,
                client,
                repository,
                reference,
                tmp,
                run.options.max_chart_size,
                mutable=referrer.tag is not None and may_move(referrer.tag),
                alongside=run.alongside,
            )
            run.inventory.pushed(registry, repository, referrer.manifest.digest, referrer.tag)
        except TagConflict:
            if referrer.tag is None:
                raise
            now = (run.ecr(registry).images(repository, [referrer.tag]) or {}).get(referrer.tag)
            if now is None:
                raise
            if now.manifest_digest != referrer.manifest.digest:
                differing.append(_differs(referrer, now.manifest_digest, release))
            continue  # the same manifest: someone copied it meanwhile
        copied.append(describe(referrer))
    return Copied(uploaded, tuple(copied), tuple(differing))


def describe(referrer: Referrer) -> str:
    if referrer.tag is not None:
        return f"{referrer.tag} ({referrer.manifest.digest})"
    kind = referrer.manifest.artifact_type or "referrer"
    return f"{kind} {referrer.manifest.digest}"
