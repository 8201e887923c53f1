"""Copying from an OCI source into ECR, unchanged: a chart's manifest and blobs, and what refers to it.

What refers to a chart (cosign's signatures, attestations and SBOMs under its `sha256-<hex>.sig`,
`.att`, `.sbom` tags; OCI 1.1 referrers, whose `subject` is the chart) comes with it, digests
unchanged, so that a cluster verifying signatures against ECR finds them there. A cosign tag that
ECR already holds with other content is never overwritten: cosign re-pushes that tag whenever a
signature is added upstream, and ECR's tags here are immutable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ecrmirror.chart import Descriptor
from ecrmirror.errors import TagConflict, UpstreamError
from ecrmirror.registry import RegistryClient
from ecrmirror.run import Run
from ecrmirror.sources import ChartRelease, OciRepository
from ecrmirror.sources.oci import Manifest, Referrer
from ecrmirror.spec import Registry


@dataclass(frozen=True)
class Copied:
    uploaded: int = 0  # bytes
    referrers: tuple[str, ...] = ()  # what was copied, described
    problems: tuple[str, ...] = ()  # what could not be, and why


def copy_manifest(
    source: OciRepository,
    release: ChartRelease,
    manifest: Manifest,
    client: RegistryClient,
    repository: str,
    reference: str,
    tmp: Path,
    limit: int,
) -> int:
    """Copy one manifest and the blobs ECR lacks; the manifest last, as `reference` (a tag or its
    digest). Everything is downloaded and verified before the first upload: a bad source leaves
    nothing behind in ECR, not even an untagged blob. Returns the bytes uploaded."""
    config, *layers = (
        Descriptor(str(blob.get("mediaType", "")), str(blob["digest"]), int(blob["size"]))
        for blob in manifest.blobs()
    )
    for descriptor in (config, *layers):
        if descriptor.size > limit:
            raise UpstreamError(
                f"{release.url}: blob {descriptor.digest} is {descriptor.size} bytes, more than a "
                f"chart may be ({limit}; ini ecrmirror_max_chart_size); nothing was pushed"
            )
    downloaded: list[tuple[Descriptor, Path]] = []
    for descriptor in (config, *layers):
        # As in RegistryClient.push: the config (a few hundred bytes, new with each version)
        # costs one request to download either way, so asking ECR for it first only adds one.
        if descriptor is not config and client.has_blob(repository, descriptor.digest):
            continue
        target = tmp / descriptor.digest.replace(":", "-")
        downloaded.append((descriptor, source.blob(release, descriptor.digest, target, descriptor.size)))
    uploaded = 0
    for descriptor, path in downloaded:
        client.upload_blob(repository, path, descriptor)
        uploaded += descriptor.size
    client.put_manifest(repository, reference, manifest.body, manifest.media_type)
    return uploaded


def missing_referrers(
    run: Run, registry: Registry, repository: str, source: OciRepository, release: ChartRelease
) -> list[Referrer]:
    """What the source attaches to the release that ECR does not hold (one BatchGetImage)."""
    found = source.referrers(release)
    if not found:
        return []
    held = run.ecr(registry).held_manifests(repository, [r.manifest.digest for r in found])
    return [r for r in found if r.manifest.digest not in held]


def copy_referrers(
    run: Run,
    registry: Registry,
    repository: str,
    source: OciRepository,
    release: ChartRelease,
    referrers: list[Referrer],
    tmp: Path,
) -> Copied:
    client = run.registry_client(registry)
    uploaded, copied, problems = 0, [], []
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
            )
        except TagConflict:
            problems.append(
                f"ECR holds {referrer.tag} with other content than {release.source} has now (cosign "
                "re-pushes that tag when a signature is added); ecrmirror never overwrites a tag"
            )
            continue
        copied.append(describe(referrer))
    return Copied(uploaded, tuple(copied), tuple(problems))


def describe(referrer: Referrer) -> str:
    if referrer.tag is not None:
        return f"{referrer.tag} ({referrer.manifest.digest})"
    kind = referrer.manifest.artifact_type or "referrer"
    return f"{kind} {referrer.manifest.digest}"
