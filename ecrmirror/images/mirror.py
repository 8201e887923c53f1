"""Image items: check that an image is in ECR as its upstream has it, or copy it there.

ECR is asked first: one listing per image repository and run (DescribeImages; the tags' manifests
from the manifest store, else BatchGetImage per 100), none for a repository the run created. An
image ECR holds is compared by a HEAD of the upstream's tag (free on Docker Hub) and never pulled
again; one ECR lacks is pulled by its tag at once, for the copy. A tag that holds anything else is
never overwritten: DIFFERS when the upstream never had what ECR holds, DRIFTED when the upstream's
tag has moved on from it since it was mirrored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from ecrmirror import __version__, managed_signing, repositories
from ecrmirror.ecr import ACTIVATING
from ecrmirror.errors import EcrMirrorError, SpecError, TagConflict, UpstreamError, VersionNotFound
from ecrmirror.images.discovery import (
    Discovered,
    Found,
    discover,
    from_json,
    helm_binary,
    helm_version,
    to_json,
)
from ecrmirror.images.references import BadReference, ImageReference, mirrored_repository
from ecrmirror.images.transfer import (
    SOURCE_ANNOTATION,
    Moved,
    copy_blobs,
    copy_image,
    filtered_index,
    platform_of,
)
from ecrmirror.junit import DIGEST_PROPERTY, PLATFORM_PROPERTY
from ecrmirror.outcome import Outcome, Result
from ecrmirror.run import Run
from ecrmirror.share import once_per_run, write_atomically
from ecrmirror.sources import ChartRelease
from ecrmirror.sources.oci import (
    COSIGN_SUFFIXES,
    MAX_REFERRERS,
    Manifest,
    OciClient,
    Referrer,
    pull_referrers,
    side_by_side,
)
from ecrmirror.spec import ChartEntry, ImageSettings, Spec, Target, VersionEntry


@dataclass(frozen=True)
class PlannedImage:
    """One image of one spec: what an image item stands for."""

    spec_path: Path
    target: Target
    image: ImageReference
    repository: str  # in ECR
    users: tuple[str, ...]  # the chart versions that run it, and how each was found to
    platforms: tuple[str, ...] | None = None  # None: the index as it is
    plain_http: bool = False  # the upstream registry is reached over plain http (the spec says so)
    notes: tuple[str, ...] = ()  # said while finding it: discovery disagreeing, say
    # Where chart versions' values hold it (a values override moves it to ECR): (chart, path, bitnami)
    in_values: tuple[tuple[str, tuple[str, ...], bool], ...] = ()

    @property
    def tag(self) -> str | None:
        return self.image.tag

    @property
    def reference(self) -> str:
        where = f"{self.target.registry.host}/{self.repository}"
        return f"{where}:{self.tag}" if self.tag else f"{where}@{self.image.digest}"


def announce(run: Run, planned: Iterable[PlannedImage]) -> None:
    """The run's images, so that ECR is asked about each repository's tags once, in batches."""
    for item in planned:
        if item.tag:
            run.inventory.expect_tags(item.target.registry, item.repository, [item.tag])
        run.inventory.expect_repositories(item.target.registry, [item.repository])


def warm_up(run: Run, planned: Iterable[PlannedImage], *, sync: bool) -> None:
    """Once the run's images are known: ECR's listing of each image repository that exists, and
    each upstream repository's tag list, read now, side by side, before the items that need them
    (with more than one job; see Run.warm). A failure is left for the item to meet again."""
    for item in planned:
        registry = item.target.registry
        if item.tag:
            run.warm(("image listing", registry.host, item.repository), partial(_read_held, run, item, sync))
        run.warm(("image tags", item.image.endpoint, item.image.path), partial(_read_tags, run, item))


def _read_held(run: Run, planned: PlannedImage, sync: bool) -> None:
    """ECR's listing of the image's repository, read ahead; then, for a sync, the image's top
    manifest if ECR lacks it: the copy's first request, which the item would send next (the
    same pull, once per run: `_pull`)."""
    registry = planned.target.registry
    assert planned.tag is not None
    with contextlib.suppress(EcrMirrorError):
        exists = repositories.exists_as_described(run, registry, planned.repository)
        if exists is None:
            return
        if exists:
            held = run.inventory.manifests(registry, planned.repository, planned.tag)
            if held is None or planned.tag in held:
                return
        if sync:
            _pull(run, planned, planned.image.digest or planned.image.reference)


def _read_tags(run: Run, planned: PlannedImage) -> None:
    with contextlib.suppress(EcrMirrorError):
        _tags(run, planned)


def check(run: Run, planned: PlannedImage) -> Result:
    return _mirror(run, planned, sync=False)


def sync(run: Run, planned: PlannedImage) -> Result:
    return _mirror(run, planned, sync=True)


def _upstream(run: Run, planned: PlannedImage) -> OciClient:
    endpoint = planned.image.endpoint
    return run.remember(
        ("image upstream", endpoint, planned.plain_http),
        lambda: OciClient(
            endpoint,
            run.http,
            plain_http=planned.plain_http,
            refused_hint="ecrmirror pulls images anonymously; mirror this one from a public registry",
        ),
    )


def _wanted(run: Run, planned: PlannedImage) -> str:
    """The digest the upstream's reference names now: pinned, or from a HEAD (no pull)."""
    if planned.image.digest:
        return planned.image.digest
    upstream = _upstream(run, planned)
    try:
        digest = upstream.manifest_digest(planned.image.path, planned.image.reference, indexes=True)
    except VersionNotFound:
        raise _not_upstream(planned) from None
    if digest is None:
        digest = _pull(run, planned, planned.image.reference).digest
    return digest


def _pull(run: Run, planned: PlannedImage, reference: str) -> Manifest:
    """A manifest of the image, pulled once per run however many items or steps ask. Pulled by
    tag, it is kept under its digest too (taken from its bytes), so that nothing pulls it again."""
    upstream = _upstream(run, planned)
    where = (planned.image.endpoint, planned.image.path)
    try:
        manifest: Manifest = run.remember(
            ("image manifest", *where, reference),
            lambda: upstream.manifest(planned.image.path, reference, indexes=True),
        )
    except VersionNotFound:
        if reference != planned.image.tag:
            raise
        raise _not_upstream(planned) from None
    return run.remember(("image manifest", *where, manifest.digest), lambda: manifest)


def _not_upstream(planned: PlannedImage) -> VersionNotFound:
    return VersionNotFound(f"{planned.image} is not in its registry (no tag {planned.image.tag})")


def _tags(run: Run, planned: PlannedImage) -> set[str]:
    """The upstream repository's tags (cosign's among them), listed once per run."""
    path = planned.image.path
    return run.remember(
        ("image tags", planned.image.endpoint, path), lambda: set(_upstream(run, planned).tags(path))
    )


def _mirror(run: Run, planned: PlannedImage, sync: bool) -> Result:
    # A sync reads the upstream's tag list whatever ECR holds (for the image's cosign tags, once
    # it is there): it is listed while ECR is asked. An audit of a missing image needs none.
    if not sync:
        return _mirrored(run, planned, sync)
    tag_list = run.alongside(_tags, run, planned)
    try:
        return _mirrored(run, planned, sync)
    finally:
        futures.wait([tag_list])


def _mirrored(run: Run, planned: PlannedImage, sync: bool) -> Result:
    registry = planned.target.registry
    held_text: str | None = None
    held_digest: str | None = None
    if planned.tag:
        held = run.inventory.manifests(registry, planned.repository, planned.tag)
        repository_exists = held is not None
        if held and planned.tag in held:
            held_digest, held_text = held[planned.tag]
            archived = _archived(run, planned, held_digest, sync)
            if archived is not None:
                return archived
    else:
        listing = run.inventory.listing(registry, planned.repository)
        repository_exists = True  # an absent repository holds nothing: the copy makes it
        held_digest = planned.image.digest if listing and planned.image.digest in listing.digests else None
    if held_digest is None:
        if not sync:
            _wanted(run, planned)  # an image the upstream lacks is an error, not just MISSING
            where = "" if repository_exists else f" (repository {planned.repository} does not exist)"
            return _result(
                planned,
                Outcome.MISSING,
                f"{planned.reference} is not in ECR{where}; `pytest --sync` copies it",
            )
        # To be copied: pulled by its tag at once (its digest from its bytes), with no HEAD first.
        wanted = planned.image.digest or _pull(run, planned, planned.image.reference).digest
        return _copy(run, planned, wanted, repository_exists)
    wanted = _wanted(run, planned)
    source = _source_digest(held_text) if planned.platforms else held_digest
    if source != wanted:
        return _moved_or_differs(run, planned, wanted, held_digest, source)
    return _complete(
        run,
        planned,
        held_digest,
        held_text,
        sync,
        Outcome.PRESENT,
        f"{planned.reference} holds {held_digest}",
        Moved(),
    )


def _archived(run: Run, planned: PlannedImage, digest: str, sync: bool) -> Result | None:
    """None when the image can be pulled; else what its storage class means, as for a chart
    version (versions.py): ARCHIVED in the audit, restored by --sync (never re-pushed), kept
    under `archived: accept`. ECR's listing of the repository says which (one DescribeImages)."""
    assert planned.tag is not None
    listing = run.inventory.listing(planned.target.registry, planned.repository)
    image = listing.tagged([planned.tag]).get(planned.tag) if listing else None
    if image is None or image.pullable or image.manifest_digest != digest:
        return None
    if image.status == ACTIVATING:
        message = f"{planned.reference} is being restored from ECR's archive (ACTIVATING)"
        return replace(_result(planned, Outcome.RESTORING, message), notes=(*planned.notes, message))
    if planned.target.archived == "accept":
        message = f"{planned.reference} is in ECR's archive storage class, as the spec accepts"
        return replace(_result(planned, Outcome.KEPT_ARCHIVED, message), notes=(*planned.notes, message))
    if not sync:
        return _result(
            planned,
            Outcome.ARCHIVED,
            f"{planned.reference} is in ECR's archive storage class ({digest}): ECR answers a pull of it "
            "404, so a pod that runs it cannot start. `pytest --sync` restores it (UpdateImageStorageClass, "
            "nothing re-pushed); to keep it archived on purpose, write `archived: accept` on the target",
        )
    status = run.ecr(planned.target.registry).restore(planned.repository, digest)
    message = f"{planned.reference} was in ECR's archive storage class: restoring it ({status})"
    return replace(_result(planned, Outcome.RESTORING, message), notes=(*planned.notes, message))


def _document(text: str | None) -> dict[str, Any]:
    """A manifest's text as ECR holds it, as a JSON object ({} for anything else)."""
    try:
        document = json.loads(text or "{}")
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _source_digest(text: str | None) -> str | None:
    found = (_document(text).get("annotations") or {}).get(SOURCE_ANNOTATION)
    return str(found) if found else None


def _moved_or_differs(run: Run, planned: PlannedImage, wanted: str, held: str, source: str | None) -> Result:
    """ECR's tag holds `held` (copied from the upstream's `source`: itself, or the index its
    platforms were taken from), the upstream's names `wanted`: drift when the upstream still has
    `source` (its tag moved on since the copy), else a difference nobody upstream made."""
    upstream = _upstream(run, planned)
    try:
        had = (
            source is not None
            and upstream.manifest_digest(planned.image.path, source, indexes=True) is not None
        )
    except VersionNotFound:
        had = False
    if had and not planned.image.digest:
        return _result(
            planned,
            Outcome.DRIFTED,
            f"{planned.image} now names {wanted}, and {planned.reference} holds {held}, which the upstream "
            "still has: its tag moved on since the copy. ecrmirror never moves a tag: mirror the new "
            "image under a new tag, or delete ECR's tag to take the upstream's.",
        )
    return _result(
        planned,
        Outcome.DIFFERS,
        f"{planned.reference} holds {held}, but {planned.image} is {wanted}"
        + (" (with the spec's platforms)" if planned.platforms else "")
        + ". ecrmirror never overwrites a tag: find out who pushed it, then decide by hand.",
    )


def _copy(run: Run, planned: PlannedImage, wanted: str, repository_exists: bool) -> Result:
    registry = planned.target.registry
    top = _pull(run, planned, wanted)
    changed = ""
    if planned.platforms and top.is_index:
        top = filtered_index(top, planned.platforms)
        changed = (
            f"; a new index of {', '.join(planned.platforms)} only (images.platforms): its digest is "
            f"{top.digest}, not the upstream's {wanted}"
        )
    if not repository_exists:
        repositories.ensure_exists(run, planned.spec_path, planned.target, planned.repository)
    text = top.body.decode()
    # What refers to the image is found first, so that its blobs go up side by side with the
    # image's own; its manifests go up once the image is in (_complete).
    referrers = _referrers(run, planned, _subjects(planned, top.digest, text))
    referrer_blobs = [blob for r in referrers[0] if not r.manifest.is_index for blob in r.manifest.blobs()]
    reference = planned.tag or top.digest
    mutable = bool(planned.tag) and repositories.tag_may_move(run, planned.target, planned.repository)(
        reference
    )
    with run.scratch() as tmp:
        try:
            moved = copy_image(
                run,
                registry,
                _upstream(run, planned),
                planned.image.path,
                top,
                planned.repository,
                reference,
                Path(tmp),
                mutable=mutable,
                referrer_blobs=referrer_blobs,
            )
        except TagConflict:
            fresh = run.ecr(registry).image_manifests(planned.repository, [reference]) or {}
            if reference not in fresh:
                raise
            if fresh[reference][0] != top.digest:
                held = fresh[reference][0]
                source = _source_digest(fresh[reference][1]) if planned.platforms else held
                return _moved_or_differs(run, planned, wanted, held, source)
            moved = Moved()  # someone copied the same image meanwhile
    with_referrers = ", with the blobs of what refers to it" if referrer_blobs else ""
    message = (
        f"copied {planned.image} to {planned.reference} ({top.digest}, {moved.manifests} manifest(s), "
        f"{moved.uploaded} bytes uploaded, {moved.mounted} blob(s) mounted{with_referrers}){changed}"
    )
    return _complete(run, planned, top.digest, text, True, Outcome.PUSHED, message, moved, referrers)


def _complete(
    run: Run,
    planned: PlannedImage,
    digest: str,
    text: str | None,
    sync: bool,
    outcome: Outcome,
    message: str,
    moved: Moved,
    referrers: tuple[list[Referrer], list[str]] | None = None,
) -> Result:
    """The image ECR holds has every child its index lists, and what the upstream attaches to the
    index and to each child (cosign's tags, OCI referrers): copied under sync, else INCOMPLETE.
    `referrers`: what `_referrers` found already, for a copy that has just put the image."""
    registry = planned.target.registry
    ecr = run.ecr(registry)
    children = _children(text)
    # A copy just made wrote every child before its index; one found in ECR is asked about.
    asked = children and outcome is not Outcome.PUSHED
    listing = run.inventory.listing(registry, planned.repository) if asked else None
    absent_children = sorted(set(children) - listing.holds(children)) if listing else []
    if referrers is None:
        referrers = _referrers(run, planned, _subjects(planned, digest, text))
    missing, differing = referrers
    if not sync and (absent_children or missing):
        lacks = [f"child manifest {d}" for d in absent_children] + [_describe(r) for r in missing]
        return _result(
            planned,
            Outcome.INCOMPLETE,
            f"{planned.reference} is in ECR, but without {', '.join(lacks)}. `pytest --sync` copies "
            "them, digests unchanged.",
        )
    upstream = _upstream(run, planned)
    if sync and (absent_children or missing):
        may_move = repositories.tag_may_move(run, planned.target, planned.repository)
        with run.scratch() as tmp:
            if absent_children:
                top = Manifest(text.encode() if text else b"", _media_type(text), digest)
                # The index again, with the same bytes: ECR has it already, so only its children move.
                copy_children = copy_image(
                    run,
                    registry,
                    upstream,
                    planned.image.path,
                    top,
                    planned.repository,
                    digest,
                    Path(tmp),
                    mutable=False,
                )
                moved.uploaded += copy_children.uploaded
                moved.mounted += copy_children.mounted
                message += f"; copied its {len(absent_children)} missing child manifest(s)"
            # The blobs of every referrer first, side by side: then the manifests.
            blobs = [blob for r in missing if not r.manifest.is_index for blob in r.manifest.blobs()]
            client = run.registry_client(registry)
            copy_blobs(
                run,
                registry,
                client,
                upstream,
                planned.image.path,
                blobs,
                planned.repository,
                Path(tmp),
                moved,
            )

            def reference_of(referrer: Referrer) -> str:
                return referrer.tag or referrer.manifest.digest

            def mutable(referrer: Referrer) -> bool:
                return referrer.tag is not None and may_move(referrer.tag)

            def put(referrer: Referrer) -> bool:
                """A one-manifest referrer, its blobs in: its manifest PUT. False when someone else
                pushed its tag meanwhile."""
                reference = reference_of(referrer)
                manifest = referrer.manifest
                try:
                    client.put_manifest(
                        planned.repository,
                        reference,
                        manifest.body,
                        manifest.media_type,
                        mutable=mutable(referrer),
                    )
                except TagConflict:
                    return False
                tag = None if reference == manifest.digest else reference
                run.inventory.pushed(registry, planned.repository, manifest.digest, tag)
                return True

            # One-manifest referrers go up side by side: each is a tag (or digest) of its own. An
            # index after them, one at a time: its children may be among them, and the referrers
            # tag schema's index comes last.
            plain = [referrer for referrer in missing if not referrer.manifest.is_index]
            put_plain = iter(side_by_side(put, plain, run.alongside))
            copied = []
            for referrer in missing:
                if not referrer.manifest.is_index:
                    pushed = next(put_plain)
                else:
                    try:
                        carried = copy_image(
                            run,
                            registry,
                            upstream,
                            planned.image.path,
                            referrer.manifest,
                            planned.repository,
                            reference_of(referrer),
                            Path(tmp),
                            mutable=mutable(referrer),
                        )
                    except TagConflict:
                        pushed = False
                    else:
                        pushed = True
                        moved.uploaded += carried.uploaded
                        moved.mounted += carried.mounted
                if not pushed:
                    differing.append(f"{referrer.tag} was pushed by someone else meanwhile")
                    continue
                copied.append(_describe(referrer))
            if copied:
                message += f"; copied what refers to it: {', '.join(copied)}"
    if differing:
        return _result(
            planned,
            Outcome.DIFFERS,
            f"{message}; but {'; '.join(differing)}. cosign re-pushes that tag when a signature is added "
            "upstream, and ecrmirror never overwrites a tag: compare the two, then decide by hand.",
            moved.uploaded,
        )
    result = replace(_result(planned, outcome, message, moved.uploaded), details=_details(digest, text))
    signing = planned.target.managed_signing
    if not sync and outcome is Outcome.PRESENT and signing is not None:
        return managed_signing.audited(ecr, signing.rules, planned.repository, digest, result)
    return result


def _details(digest: str, text: str | None) -> tuple[tuple[str, str], ...]:
    """What ECR holds of the image, for the report and the lock: its digest, each platform's."""
    children = _document(text).get("manifests")
    platforms = [
        (PLATFORM_PROPERTY, f"{platform_of(child)} {child['digest']}")
        for child in children or []
        if isinstance(child, dict) and "digest" in child
    ]
    return ((DIGEST_PROPERTY, digest), *platforms)


def _subjects(planned: PlannedImage, digest: str, text: str | None) -> list[str]:
    """The manifests whose referrers are copied with the image: the index (unless the spec's
    platforms made a new one, which nothing upstream refers to) and each child."""
    children = _children(text)
    return [digest, *children] if not planned.platforms else children


def _children(text: str | None) -> list[str]:
    listed = _document(text).get("manifests")
    return [str(m["digest"]) for m in listed or [] if isinstance(m, dict) and "digest" in m]


def _media_type(text: str | None) -> str:
    return str(_document(text).get("mediaType") or "application/vnd.oci.image.index.v1+json")


def _referrers(run: Run, planned: PlannedImage, subjects: list[str]) -> tuple[list[Referrer], list[str]]:
    """What the upstream attaches to `subjects` that ECR lacks (pulled, to be copied), and the
    cosign tags ECR holds with other content (described). ECR is asked first: what it holds
    is compared by digest (a HEAD for a tag), never pulled again."""
    upstream = _upstream(run, planned)
    path = planned.image.path
    tags = _tags(run, planned)
    listed = {subject: upstream.referrers(path, subject) for subject in subjects}
    # A registry without the referrers API lists them under the referrers tag schema's tag.
    schema_tags = [f"sha256-{s.partition(':')[2]}" for s, found in listed.items() if found is None]
    schemas = _schema_listings(run, planned, [tag for tag in schema_tags if tag in tags])
    wanted: list[tuple[str, str | None]] = []
    for subject, found in listed.items():
        hexdigest = subject.partition(":")[2]
        digests = found if found is not None else schemas.get(f"sha256-{hexdigest}", ([], None))[0]
        wanted += [(digest, None) for digest in digests]
        wanted += [(tag, tag) for tag in (f"sha256-{hexdigest}.{x}" for x in COSIGN_SUFFIXES) if tag in tags]
    wanted = list(dict.fromkeys(wanted))
    if len(wanted) > MAX_REFERRERS:
        raise UpstreamError(
            f"more than {MAX_REFERRERS} manifests refer to {planned.image}: more than an ECR repository "
            "holds by default (10,000 images); ecrmirror copies none of them"
        )
    # ECR's one listing of the repository says what it holds of them, by digest: nothing pulled.
    listing = run.inventory.listing(planned.target.registry, planned.repository) if wanted else None
    untagged = [reference for reference, tag in wanted if tag is None]
    held = listing.holds(untagged) if listing else set()
    tagged = [tag for _, tag in wanted if tag is not None]
    in_ecr = listing.tagged(tagged) if listing else {}
    missing = [
        (reference, tag) for reference, tag in wanted if (tag not in in_ecr if tag else reference not in held)
    ]
    # A cosign tag ECR holds is compared with the upstream's by digest: HEADs, side by side.
    compared = [tag for _, tag in wanted if tag is not None and tag in in_ecr]

    def upstream_digest(tag: str) -> str:
        return (
            upstream.manifest_digest(path, tag)
            or pull_referrers(upstream, path, [(tag, tag)])[0].manifest.digest
        )

    differing = [
        f"{tag} holds {in_ecr[tag].manifest_digest} in ECR and {now} upstream"
        for tag, now in zip(compared, side_by_side(upstream_digest, compared, run.alongside), strict=True)
        if in_ecr[tag].manifest_digest != now
    ]
    pulled = pull_referrers(upstream, path, missing, run.alongside)
    # The schema's own index last: its children (the referrers) are in ECR by then.
    pulled += [Referrer(index, tag) for tag, (_, index) in schemas.items() if index is not None]
    return pulled, differing


def _schema_listings(
    run: Run, planned: PlannedImage, schema_tags: list[str]
) -> dict[str, tuple[list[str], Manifest | None]]:
    """Each referrers tag schema tag's listed digests, and its index when ECR lacks it (to be
    copied): ECR's copy is read when a HEAD says the upstream's is the same, else it is pulled."""
    if not schema_tags:
        return {}
    upstream = _upstream(run, planned)
    path = planned.image.path
    held = run.ecr(planned.target.registry).image_manifests(planned.repository, schema_tags) or {}
    found: dict[str, tuple[list[str], Manifest | None]] = {}
    for tag in schema_tags:
        now = upstream.manifest_digest(path, tag, indexes=True)
        if now is not None and tag in held and held[tag][0] == now:
            found[tag] = (_children(held[tag][1]), None)
            continue
        index = upstream.manifest(path, tag, indexes=True)
        # ECR's tag holds an older listing: its new referrers still come, by digest; the tag stays.
        found[tag] = (_children(index.body.decode()), None if tag in held else index)
    return found


def _describe(referrer: Referrer) -> str:
    if referrer.tag is not None:
        return f"{referrer.tag} ({referrer.manifest.digest})"
    return f"{referrer.manifest.artifact_type or 'referrer'} {referrer.manifest.digest}"


def _result(planned: PlannedImage, outcome: Outcome, message: str, uploaded: int = 0) -> Result:
    return Result(outcome, message, None, uploaded, notes=planned.notes)


# -- which images a spec mirrors ------------------------------------------------------------------------
@dataclass(frozen=True)
class NotFound:
    """A chart version whose images could not be found (its render failed, say): an item of its own."""

    chart: str  # "app 1.0.0"
    where: str  # the spec line that asks for the version
    error: EcrMirrorError


def plan(
    run: Run, spec: Spec, versions: Callable[[ChartEntry], Iterable[VersionEntry]]
) -> tuple[list[PlannedImage], list[NotFound]]:
    """The images of every chart version of `spec` whose entry has `images:`, one PlannedImage per
    image (however many versions run it), and the versions whose images could not be found."""
    found: dict[ImageReference, list[Found]] = {}
    settings_of: dict[ImageReference, list[ImageSettings]] = {}
    notes: dict[ImageReference, list[str]] = {}
    in_values: dict[ImageReference, list[tuple[str, tuple[str, ...], bool]]] = {}
    failed: list[NotFound] = []
    helm = helm_binary(run.options.helm)
    for chart in spec.charts:
        if chart.images is None:
            continue
        for version in versions(chart):
            what = f"{chart.name} {version.version}"
            try:
                discovered = _discover(run, spec, chart, version.version, helm)
            except EcrMirrorError as error:
                failed.append(NotFound(what, version.where, error))
                continue
            for each in discovered.found:
                found.setdefault(each.image, []).append(each)
                settings_of.setdefault(each.image, []).append(chart.images)
            # A note names its image first ("<image>: ..."); one that names none (a reference that
            # cannot be read) goes to every image of the version, or fails the version without any.
            version_images = {each.image for each in discovered.found}
            for path, image in discovered.in_values:
                if image in version_images:
                    in_values.setdefault(image, []).append((what, path, discovered.bitnami))
            for note in discovered.notes:
                about = [image for image in version_images if note.startswith(f"{image}: ")]
                for image in about or version_images:
                    notes.setdefault(image, []).append(note)
                if not version_images:
                    failed.append(NotFound(what, version.where, UpstreamError(note)))
    rules = (
        dict(spec.target.images.pull_through_cache)
        if spec.target.images.pull_through_cache is not None
        else None
    )
    planned = []
    for image, sources in sorted(found.items()):
        settings = settings_of[image]
        try:
            repository = mirrored_repository(image, spec.target.prefix, rules)
        except BadReference as exc:
            failed.append(
                NotFound(sources[0].chart, spec.target.where, SpecError(spec.target.where, str(exc)))
            )
            continue
        platforms: tuple[str, ...] | None = None
        if all(s.platforms is not None for s in settings):
            platforms = tuple(dict.fromkeys(p for s in settings for p in s.platforms or ()))
        if platforms and image.digest:
            where = next(s.where for s in settings if s.platforms)
            problem = (
                f"{image} is pinned by digest, and the spec keeps only {', '.join(platforms)} of it: a new "
                "index would have another digest, so what the chart pins would not be in ECR"
            )
            fix = "remove images.platforms for this chart, or exclude the image"
            failed.append(NotFound(sources[0].chart, where, SpecError(where, problem, fix)))
            continue
        users = tuple(dict.fromkeys(f"{each.chart} ({each.how})" for each in sources))
        planned.append(
            PlannedImage(
                spec.path,
                spec.target,
                image,
                repository,
                users,
                platforms,
                plain_http=any(image.host in s.plain_http for s in settings),
                notes=tuple(dict.fromkeys(notes.get(image, []))),
                in_values=tuple(dict.fromkeys(in_values.get(image, []))),
            )
        )
    return planned, failed


def _discover(run: Run, spec: Spec, chart: ChartEntry, version: str, helm: str | None) -> Discovered:
    """One chart version's images, once per run. What a version's archive holds never changes (it
    is named by its digest), so what was found in it is kept, by that digest and everything else
    that decides it (the spec's settings, its values files, helm's version), in the run's shared
    directory (xdist workers) and the --ecrmirror-cache-dir: the archive is not downloaded again."""
    assert chart.images is not None
    settings = chart.images
    source = run.source(spec.path, chart)

    def find() -> Discovered:
        release = source.release(chart.name, version)
        if not release.digest:  # an index may omit it: then nothing names the archive's content
            return fetch_and_find(release)
        key = _discovery_key(run, release.digest, settings, helm)
        keep = run.options.index_cache.keep
        kept = keep / f"images-{key}.json" if keep is not None else None

        def found_json() -> dict[str, Any]:
            if kept is not None and kept.is_file():
                try:
                    document: dict[str, Any] = json.loads(kept.read_bytes())
                    from_json(document)
                    return document
                except (ValueError, KeyError, TypeError, BadReference):
                    pass  # not what this version wrote: find the images again
            document = to_json(fetch_and_find(release))
            if keep is not None:
                write_atomically(keep / f"images-{key}.json", json.dumps(document).encode())
            return document

        # Under xdist the first worker finds them; the others read its answer.
        return from_json(once_per_run(run.options.index_cache.shared, f"images {key}", found_json))

    def fetch_and_find(release: ChartRelease) -> Discovered:
        with run.scratch() as tmp:
            archive = source.fetch(release, Path(tmp))
            return discover(archive, f"{chart.name} {version}", settings, helm, release.url)

    return run.remember(("images of", chart.source_location(spec.path), chart.name, version, settings), find)


def _discovery_key(run: Run, digest: str, settings: ImageSettings, helm: str | None) -> str:
    parts: list[str] = [__version__, digest, repr(settings)]
    if settings.render is not None:
        parts += [hashlib.sha256(Path(values).read_bytes()).hexdigest() for values in settings.render.values]
        parts.append(run.remember(("helm version", helm), lambda: helm_version(helm)))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:40]
