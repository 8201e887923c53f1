"""Copying an image into ECR byte for byte: each child manifest of an index first, then the index,
every manifest with the upstream's exact bytes, so its digest (and every signature over it) holds.

A blob is uploaded once per registry and run: a blob another image repository of the run already
holds is mounted from it where the registry mounts (ECR's BLOB_MOUNTING setting), and two jobs
that need one blob at once take turns, so the second mounts what the first uploaded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecrmirror.chart import Descriptor
from ecrmirror.errors import UpstreamError
from ecrmirror.registry import RegistryClient
from ecrmirror.run import Run
from ecrmirror.sources.oci import Manifest, OciClient, side_by_side
from ecrmirror.spec import Registry

# ECR's largest layer (service quotas: 52,000 MiB); a manifest saying more cannot be mirrored.
MAX_LAYER_SIZE = 52_000 * 1024 * 1024
# Which of the run's image repositories holds each blob it uploaded: (registry host, digest) -> repository.
_UPLOADED = "images: uploaded blobs"
# Every blob the run put (uploaded or mounted) in each repository: (registry host, repository, digest).
_PLACED = "images: placed blobs"


@dataclass
class Moved:
    """What a copy did: bytes uploaded, blobs mounted, manifests written (children, then the index)."""

    uploaded: int = 0
    mounted: int = 0
    manifests: int = 0


def copy_image(
    run: Run,
    registry: Registry,
    upstream: OciClient,
    upstream_repository: str,
    top: Manifest,
    repository: str,
    reference: str,
    tmp: Path,
    *,
    mutable: bool,
    children: list[Manifest] | None = None,
    referrer_blobs: list[dict[str, Any]] | None = None,
) -> Moved:
    """Copy `top` (an index or one manifest) from `upstream_repository` into `repository` as
    `reference`: the children ECR lacks first (`children`: pulled already), each with its blobs,
    then `top` itself. `referrer_blobs` (of what refers to `top`, whose manifests go up after
    it) are copied side by side with its own, counted in what it moved."""
    client = run.registry_client(registry)
    moved = Moved()
    if top.is_index:
        wanted = list(dict.fromkeys(str(child["digest"]) for child in top.children()))
        listing = run.inventory.listing(registry, repository)
        held = listing.holds(wanted) if listing else set()
        pulled = {manifest.digest: manifest for manifest in children or ()}
        lacking = [digest for digest in wanted if digest not in held]
        # Three steps, each side by side with jobs: the children ECR lacks are pulled, their
        # blobs copied, their manifests put; the index last, once all of them are in.
        copied = side_by_side(
            lambda digest: pulled.get(digest) or upstream.manifest(upstream_repository, digest, indexes=True),
            [digest for digest in lacking if digest not in pulled],
            run.alongside,
        )
        pulled.update((child.digest, child) for child in copied)
        for digest in lacking:
            if pulled[digest].is_index:
                raise UpstreamError(
                    f"{upstream.host}/{upstream_repository}@{top.digest} lists another index ({digest}) "
                    "as a child; ecrmirror copies an index of image manifests"
                )
        blobs = [blob for digest in lacking for blob in pulled[digest].blobs()] + (referrer_blobs or [])
        copy_blobs(run, registry, client, upstream, upstream_repository, blobs, repository, tmp, moved)

        def put_child(digest: str) -> None:
            client.put_manifest(repository, digest, pulled[digest].body, pulled[digest].media_type)
            run.inventory.pushed(registry, repository, digest)

        side_by_side(put_child, lacking, run.alongside)
        moved.manifests += len(lacking)
    else:
        blobs = top.blobs() + (referrer_blobs or [])
        copy_blobs(run, registry, client, upstream, upstream_repository, blobs, repository, tmp, moved)
    client.put_manifest(repository, reference, top.body, top.media_type, mutable=mutable)
    run.inventory.pushed(registry, repository, top.digest, None if reference == top.digest else reference)
    moved.manifests += 1
    return moved


def copy_blobs(
    run: Run,
    registry: Registry,
    client: RegistryClient,
    upstream: OciClient,
    upstream_repository: str,
    blobs: list[dict[str, Any]],
    repository: str,
    tmp: Path,
    moved: Moved,
) -> None:
    """The blobs (descriptors) that `repository` lacks: mounted, or downloaded (verified by
    digest) and uploaded, side by side with jobs. A repository this process created holds only
    what the run put in it: no blob is asked about there (a HEAD each)."""
    uploaded: dict[tuple[str, str], str] = run.remember(_UPLOADED, dict)
    placed: set[tuple[str, str, str]] = run.remember(_PLACED, set)
    created_here = run.inventory.created_here(registry, repository)
    descriptors = []
    for blob in {str(each["digest"]): each for each in blobs}.values():
        descriptor = Descriptor(str(blob.get("mediaType", "")), str(blob["digest"]), int(blob["size"]))
        if descriptor.size > MAX_LAYER_SIZE:
            raise UpstreamError(
                f"{upstream.host}/{upstream_repository}: blob {descriptor.digest} is "
                f"{descriptor.size} bytes, more than ECR takes in one layer ({MAX_LAYER_SIZE})"
            )
        descriptors.append(descriptor)

    def held_or_mounted(descriptor: Descriptor) -> tuple[int, int] | None:
        """(0, 0) when `repository` holds the blob, (0, 1) when it was mounted from the run's
        repository that holds it, None when it must be uploaded."""
        here = (registry.host, repository, descriptor.digest)
        if here in placed:
            return 0, 0
        if not created_here and client.has_blob(repository, descriptor.digest):
            placed.add(here)  # not asked again: by a copy of what refers to it, say
            return 0, 0
        holder = uploaded.get((registry.host, descriptor.digest))
        mountable = holder is not None and holder != repository and _mounts(run, registry)
        if mountable and client.mount_blob(repository, descriptor.digest, str(holder)):
            placed.add(here)
            return 0, 1
        return None

    def copy(descriptor: Descriptor) -> tuple[int, int]:
        """(bytes uploaded, blobs mounted)"""
        key = (registry.host, descriptor.digest)
        here = (registry.host, repository, descriptor.digest)
        # A blob the run uploaded already is mounted at once: mounts of it need not take turns.
        asked = key in uploaded
        if asked and (done := held_or_mounted(descriptor)) is not None:
            return done
        with run.locks(("blob", key)):  # one upload of a blob per registry, however many jobs need it
            if not asked and (done := held_or_mounted(descriptor)) is not None:
                return done
            path = tmp / descriptor.digest.replace(":", "-")
            upstream.blob(upstream_repository, descriptor.digest, path, descriptor.size)
            try:
                client.upload_blob(repository, path, descriptor)
            finally:
                path.unlink(missing_ok=True)
            uploaded[key] = repository
            placed.add(here)
            return descriptor.size, 0

    for sent, mounted in side_by_side(copy, descriptors, run.alongside):
        moved.uploaded += sent
        moved.mounted += mounted


def _mounts(run: Run, registry: Registry) -> bool:
    return run.remember(("blob mounting", registry.host), lambda: run.ecr(registry).blob_mounting())


def platform_of(descriptor: dict[str, Any]) -> str:
    platform = descriptor.get("platform") or {}
    if not isinstance(platform, dict):
        return "unknown/unknown"
    text = f"{platform.get('os', 'unknown')}/{platform.get('architecture', 'unknown')}"
    return f"{text}/{platform['variant']}" if platform.get("variant") else text


# The annotation a filtered index keeps its upstream index's digest in, so that an audit can tell
# that ECR's index is what the spec's platforms make of the upstream's, without pulling it.
SOURCE_ANNOTATION = "io.ecrmirror.source-index"


def filtered_index(index: Manifest, platforms: tuple[str, ...]) -> Manifest:
    """A new index of `index`'s children for `platforms` (`linux/arm64` also takes `linux/arm64/v8`),
    with the attestations that refer to them. Its digest is not the upstream's: said by the caller."""
    document = json.loads(index.body)
    kept = [
        child
        for child in document.get("manifests") or []
        if any(platform_of(child) == p or platform_of(child).startswith(p + "/") for p in platforms)
    ]
    if not kept:
        listed = ", ".join(sorted({platform_of(c) for c in document.get("manifests") or []}))
        raise UpstreamError(
            f"the index {index.digest} has none of the platforms {', '.join(platforms)} (it has {listed})"
        )
    digests = {str(child["digest"]) for child in kept}
    for child in document.get("manifests") or []:
        annotations = child.get("annotations") or {}
        if annotations.get("vnd.docker.reference.digest") in digests and child not in kept:
            kept.append(child)  # buildx's attestation of a kept image
    document["manifests"] = kept
    document["annotations"] = {**(document.get("annotations") or {}), SOURCE_ANNOTATION: index.digest}
    body = json.dumps(document, separators=(",", ":")).encode()
    return Manifest(body, index.media_type, "sha256:" + hashlib.sha256(body).hexdigest())
