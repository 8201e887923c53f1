"""Chart-version items, the heart: check that a version is in ECR as upstream has it, or push it.

A version's sync downloads and verifies the archive (or copies an OCI source's manifest and
blobs), asks repositories.py for a missing repository (and its replicas) and replication.py for
the rule, pushes the blobs and writes the manifest last. A tag that is there is compared, never
overwritten, and copied into the destination regions that lack it (backfill.py).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from ecrmirror import backfill, constraints, managed_signing, replication, repositories, selection
from ecrmirror.chart import build_artifact, chart_layer_digest, tag_for
from ecrmirror.ecr import ACTIVATING, RemoteImage
from ecrmirror.errors import EcrMirrorError, TagConflict, Unverified, UpstreamError
from ecrmirror.outcome import Outcome, Result
from ecrmirror.provenance import Verified, verify
from ecrmirror.replicas import replica_registry, writable
from ecrmirror.run import Run
from ecrmirror.sources import ChartRelease, is_registry
from ecrmirror.spec import ChartEntry, Target, VersionEntry


@dataclass(frozen=True)
class PlannedVersion:
    """One chart version of one spec: what a pytest item stands for."""

    spec_path: Path
    target: Target
    chart: ChartEntry
    version: VersionEntry
    spec_repositories: tuple[str, ...] = ()  # every repository of the spec, for its replication rule

    @property
    def repository(self) -> str:
        return self.target.repository_for(self.chart.name)

    @property
    def tag(self) -> str:
        return tag_for(self.version.version)

    @property
    def reference(self) -> str:
        return f"{self.target.registry.host}/{self.repository}:{self.tag}"


def _skipped_note(run: Run, planned: PlannedVersion) -> tuple[str, ...]:
    """For the newest version a constraint chose: the upstream's versions that helm cannot read,
    which no constraint chooses (said once per chart entry, not once per version)."""
    chart = planned.chart
    if chart.range is None:
        return ()
    source = run.source(planned.spec_path, chart)
    if is_registry(source):
        return ()  # a registry's tags are not all versions: cosign's, `latest` and the like are normal
    skipped = constraints.unreadable(source.versions(chart.name))
    if not skipped or selection.select(run, planned.spec_path, chart)[0] != planned.version.version:
        return ()
    listed = ", ".join(constraints.shown(v) for v in skipped[:5])
    more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    return (
        f"{chart.source_location(planned.spec_path)} lists {len(skipped)} version(s) of {chart.name} "
        f"that helm does not read as semantic versions, which {chart.range.describe()} never chooses: "
        f"{listed}{more}",
    )


def _noted(run: Run, planned: PlannedVersion, result: Result) -> Result:
    notes = _skipped_note(run, planned)
    return replace(result, notes=result.notes + notes) if notes else result


def announce(run: Run, planned: Iterable[PlannedVersion]) -> None:
    """The run's versions, so that ECR is asked about each repository's tags once, in batches."""
    for item in planned:
        target = item.target
        run.inventory.expect_tags(
            target.registry, item.repository, [item.tag], manifests=_compared_by_manifest(item)
        )
        run.inventory.expect_repositories(target.registry, [item.repository])
        for destination in target.replication.destinations if target.replication else ():
            replica = replica_registry(target.registry, destination)
            run.inventory.expect_tags(replica, item.repository, [item.tag])
            if writable(target, destination):
                run.inventory.expect_repositories(replica, [item.repository])


def _compared_by_manifest(planned: PlannedVersion) -> bool:
    """Whether checking the version reads ECR's manifest of it: a Helm repository's version is
    compared by its chart layer, and verifying or signing reads the layers. A plain copy of an OCI
    source's version is its manifest: its digest, from ECR's listing, says all (nothing pulled)."""
    chart = planned.chart
    if not chart.source_location(planned.spec_path).startswith("oci://"):
        return True
    return chart.verify is not None or chart.provenance == "required" or planned.target.sign is not None


def read_upstreams_ahead(run: Run, planned: Iterable[PlannedVersion]) -> None:
    """Once the run's versions are known, before anything of ECR's: download each Helm
    repository's index now, and read each OCI source's tag list (with it, the registry's
    challenge), before the first version item reads them (with more than one job; see Run.warm).
    They wait for nothing, so they go first: ECR's first answer waits for its client, whose
    making takes longer. The repository keeps a failed download, which each version that needs
    it says."""
    for item in planned:
        location = item.chart.source_location(item.spec_path)
        if location.startswith(("http://", "https://")):  # a Helm repository (sources.Sources)
            run.warm(("index", location, item.chart.access), partial(_read_index, run, item))
        elif location.startswith("oci://"):
            run.warm(("tags", location, item.chart.access, item.chart.name), partial(_read_tags, run, item))


def warm_up(run: Run, planned: Iterable[PlannedVersion], *, sync: bool) -> None:
    """Once ECR's batched description has started (repositories.warm_up): what ECR holds of each
    version's repository, read ahead. An OCI version's first upstream request for the version
    itself follows ECR's answer for it (_read_release)."""
    for item in planned:
        location = item.chart.source_location(item.spec_path)
        # What ECR holds of the version's repository, once the batched description says it exists.
        registry = item.target.registry
        held = ("ecr images", registry.host, item.repository)
        run.warm(held, partial(_read_images, run, item))
        if location.startswith("oci://"):  # a version ECR holds is compared: its digest, a HEAD
            release = ("release", location, item.chart.name, item.version.version)
            run.warm(release, partial(_read_release, run, item, held, sync))


def _read_index(run: Run, planned: PlannedVersion) -> None:
    from ecrmirror.sources.http import HttpRepository

    source = run.source(planned.spec_path, planned.chart)
    if isinstance(source, HttpRepository):
        source.index()


def _read_tags(run: Run, planned: PlannedVersion) -> None:
    """An OCI source's tag list, read ahead; a failure is left for the item to meet again."""
    with contextlib.suppress(EcrMirrorError):
        run.source(planned.spec_path, planned.chart).versions(planned.chart.name)


def _read_images(run: Run, planned: PlannedVersion) -> None:
    """ECR's answer for the version's repository, read ahead; a failure is left for the item."""
    registry = planned.target.registry
    with contextlib.suppress(EcrMirrorError):
        if repositories.described_ahead(run, registry, planned.repository):
            run.inventory.images(registry, planned.repository, planned.tag)


def _read_release(run: Run, planned: PlannedVersion, held: tuple[str, str, str], sync: bool) -> None:
    """An OCI version's first upstream request, read ahead once ECR's answer says which the item
    makes: the digest (a HEAD) of a version ECR holds, which the item compares; the manifest of
    one a sync copies (its digest then needs no HEAD), and with it the registry's push token;
    the digest of one an audit finds missing, which its report names. With the first digest,
    whether the registry has the referrers API, which every version's referrers wait for."""
    registry = planned.target.registry
    if not run.warmed_well(held):
        return
    exists = repositories.exists_as_described(run, registry, planned.repository)
    if exists is None:
        return
    with contextlib.suppress(EcrMirrorError):
        # A repository the description says is missing holds nothing: no DescribeImages to say so.
        images = run.inventory.images(registry, planned.repository, planned.tag) if exists else None
        source = run.source(planned.spec_path, planned.chart)
        image = images.get(planned.tag) if images else None
        if image is not None or not sync:
            release = _release(run, planned)
            # The item looks for referrers beside a version ECR holds as the upstream has it.
            same = image is not None and image.pullable and image.manifest_digest == release.digest
        else:
            token = ("registry token", registry.host)
            run.warm(token, lambda: run.registry_client(registry).authenticate())
            if not is_registry(source):
                return
            source.pull(planned.chart.name, planned.version.version)
            release = _release(run, planned)  # the pulled manifest's digest: no request
            same = True  # copied, and its referrers after it
        if same and is_registry(source) and planned.chart.copy_referrers:
            source.probe_referrers(release)


def check(run: Run, planned: PlannedVersion) -> Result:
    """Read-only audit of one version: PRESENT, MISSING, DIFFERS, or UNREPLICATED."""
    return _noted(run, planned, _check(run, planned))


def _check(run: Run, planned: PlannedVersion) -> Result:
    release = _release(run, planned)
    images = run.inventory.images(planned.target.registry, planned.repository, planned.tag)
    if images is None:
        return Result(
            Outcome.MISSING,
            f"repository {planned.repository} does not exist in {planned.target.registry.host}; "
            "`pytest --sync` creates it (if the spec allows) and pushes the version",
            release,
        )
    image = images.get(planned.tag)
    if image is None:
        return _behind(run, planned, release) or Result(
            Outcome.MISSING, f"{planned.reference} is not in ECR; `pytest --sync` pushes it", release
        )
    if not image.pullable:
        return _archived(run, planned, release, image, sync=False)
    result = _compare(planned, release, image)
    if result.outcome is Outcome.PRESENT and planned.chart.verify is not None:
        result = _verify_held(run, planned, release, image, result)
    result = _referrers(run, planned, release, result, sync=False)
    if result.outcome is Outcome.PRESENT and planned.target.sign is not None:
        result = _check_signed(run, planned, image, result)
    if result.outcome is Outcome.PRESENT and planned.target.managed_signing is not None:
        rules = planned.target.managed_signing.rules
        ecr = run.ecr(planned.target.registry)
        result = managed_signing.audited(ecr, rules, planned.repository, image.manifest_digest, result)
    if result.outcome is Outcome.PRESENT and planned.target.replication is not None:
        return replication.check_replicas(run, planned.target, planned.repository, image, result)
    return result


def _behind(run: Run, planned: PlannedVersion, release: ChartRelease) -> Result | None:
    """A version a GitOps range chose that ECR lacks, where ECR holds an older match: the cluster
    deploys that one until the mirror catches up, so it is a note, not a failure (unless the
    spec says `strict: true`). One ListImages pass per repository, only in this case."""
    chart = planned.chart
    if chart.gitops is None or chart.range is None or chart.gitops.strict:
        return None
    registry = planned.target.registry
    held = run.remember(
        ("image tags", registry.host, planned.repository),
        lambda: run.ecr(registry).image_tags(planned.repository) or [],
    )
    constraint = constraints.parse_constraint(chart.range.constraint)
    matching = constraints.select([tag.replace("_", "+") for tag in held], constraint)
    if not matching:
        return None
    message = (
        f"{planned.reference} is not in ECR yet; ECR holds {matching[0]}, which also satisfies "
        f"{chart.range.describe()}, so {chart.gitops.asked_by} can still deploy. `pytest --sync` pushes "
        f"{planned.version.version}; `strict: true` on the gitops entry makes this a failure"
    )
    return Result(Outcome.BEHIND, message, release, notes=(message,))


def sync(run: Run, planned: PlannedVersion) -> Result:
    """Push one version if ECR lacks it; never touch a tag that is there."""
    return _noted(run, planned, _sync(run, planned))


def _sync(run: Run, planned: PlannedVersion) -> Result:
    target = planned.target
    source = run.source(planned.spec_path, planned.chart)
    if is_registry(source):
        held = run.inventory.images(target.registry, planned.repository, planned.tag)
        if held is None or planned.tag not in held:
            # A copy needs the manifest: pulled now, its digest needs no HEAD of its own.
            source.pull(planned.chart.name, planned.version.version)
    release = _release(run, planned)
    images = run.inventory.images(target.registry, planned.repository, planned.tag)
    if images is not None and planned.tag in images:
        image = images[planned.tag]
        if not image.pullable:
            return _archived(run, planned, release, image, sync=True)
        result = _referrers(run, planned, release, _compare(planned, release, image), sync=True)
        if result.outcome is Outcome.PRESENT and target.sign is not None:
            verified = _verified_held(run, planned, release, image) if planned.chart.verify else None
            result = _sign(run, planned, release, image, result, verified)
        if result.outcome is Outcome.PRESENT and target.replication is not None:
            covered = planned.spec_repositories or (planned.repository,)
            return backfill.backfill(
                run, planned.spec_path, target, planned.repository, image, result, covered
            )
        return result

    def make_room() -> bool:
        """Once the version is downloaded and verified, and only then (a version that fails
        creates nothing): its repository, replicas and rule; whether its tag may move there."""
        if images is None:
            repositories.ensure_exists(run, planned.spec_path, target, planned.repository)
        if target.replication is not None:
            backfill.ensure_replica_repositories(run, planned.spec_path, target, planned.repository)
            # ECR replicates only what is pushed after the rule exists.
            replication.ensure_rule(run, target, planned.spec_repositories or (planned.repository,))
        return repositories.tag_may_move(run, target, planned.repository)(planned.tag)

    with run.scratch() as tmp:
        try:
            if release.oci:
                manifest_digest, uploaded, verified = _copy_oci(run, planned, release, Path(tmp), make_room)
            else:
                manifest_digest, uploaded, verified = _push_archive(
                    run, planned, release, Path(tmp), make_room
                )
        except TagConflict:
            # Someone pushed the tag since our inventory: audit it instead of failing blindly.
            fresh = run.inventory.images(target.registry, planned.repository, planned.tag, fresh=True) or {}
            if planned.tag in fresh:
                return _compare(planned, release, fresh[planned.tag])
            raise
    chart_digest = None if release.oci else release.digest
    image = RemoteImage(planned.tag, manifest_digest, chart_digest)
    run.inventory.add_image(target.registry, planned.repository, image)
    pushed = Result(
        Outcome.PUSHED,
        f"pushed {planned.reference} ({manifest_digest}, {uploaded} bytes uploaded)",
        release,
        uploaded,
    )
    result = _referrers(run, planned, release, pushed, sync=True)
    if result.outcome.ok and target.sign is not None:
        result = _sign(run, planned, release, image, result, verified)
    return result


# -- the archive storage class ----------------------------------------------------------------------
def _archived(
    run: Run, planned: PlannedVersion, release: ChartRelease, image: RemoteImage, sync: bool
) -> Result:
    """A version ECR holds in its archive storage class (or is restoring): present, not pullable.

    Never MISSING, never re-pushed: ECR answers a pull of it 404 and hides it from default
    listings (userguide/archive-image.html), so a tool that listed without `imageStatus: ANY`
    would push it again. --sync restores it unless the spec accepts it archived."""
    known = image.chart_digest is not None or release.oci
    if known:
        compared = _compare(planned, release, image)
        if compared.outcome is not Outcome.PRESENT:
            return compared
    content = "" if known else " (its content is not checked: an archived manifest cannot be read)"
    accepted = (planned.chart.archived or planned.target.archived) == "accept"
    if image.status == ACTIVATING:
        message = (
            f"{planned.reference} is being restored from ECR's archive (ACTIVATING){content}: it can "
            "be pulled once ECR says ACTIVE, typically within 20 minutes"
        )
        return Result(Outcome.RESTORING, message, release, notes=(message,))
    if accepted:
        message = (
            f"{planned.reference} is in ECR's archive storage class{content}, as the spec accepts "
            "(`archived: accept`): a pull of it gets 404 until someone restores it"
        )
        return Result(Outcome.KEPT_ARCHIVED, message, release, notes=(message,))
    if not sync:
        return Result(
            Outcome.ARCHIVED,
            f"{planned.reference} is in ECR's archive storage class{content} ({image.manifest_digest}): "
            "ECR answers a pull of it 404, so a cluster that deploys this version fails. "
            "`pytest --sync` restores it (UpdateImageStorageClass, nothing re-pushed); to keep it "
            "archived on purpose, write `archived: accept` on the chart entry or the target",
            release,
        )
    status = run.ecr(planned.target.registry).restore(planned.repository, image.manifest_digest)
    message = (
        f"{planned.reference} was in ECR's archive storage class{content}: restoring it "
        f"({status}); it can be pulled once ECR says ACTIVE, typically within 20 minutes"
    )
    return Result(Outcome.RESTORING, message, release, notes=(message,))


# -- signing (`sign:`) -------------------------------------------------------------------------------
def _sign(
    run: Run,
    planned: PlannedVersion,
    release: ChartRelease,
    image: RemoteImage,
    result: Result,
    verified: Verified | None,
) -> Result:
    """Sign what ECR holds of the version, unless it is signed already; the result says what was added."""
    from ecrmirror import signing  # specs that sign only: KMS and cryptography

    assert planned.target.sign is not None
    archive = image.chart_digest or (None if release.oci else release.digest)
    mirrored = signing.Mirrored(release, archive, verified)
    may_move = repositories.tag_may_move(run, planned.target, planned.repository)
    added = signing.sign(
        run, planned.target.sign, planned.target.registry, planned.repository, image, mirrored, may_move
    )
    if not added:
        return result
    message = f"{result.message}; added its {' and '.join(added)}"
    return Result(result.outcome, message, result.release, result.bytes_uploaded, notes=result.notes)


def _check_signed(run: Run, planned: PlannedVersion, image: RemoteImage, present: Result) -> Result:
    from ecrmirror import signing

    assert planned.target.sign is not None
    found = signing.problems(run, planned.target.sign, planned.target.registry, planned.repository, image)
    if not found:
        return present
    return Result(
        Outcome.UNSIGNED,
        f"{planned.reference} is in ECR, but {'; '.join(found)}. `pytest --sync` signs it with "
        f"{planned.target.sign.kms_key}; a tag that holds something else is never overwritten.",
        present.release,
        notes=present.notes,
    )


def _release(run: Run, planned: PlannedVersion) -> ChartRelease:
    return run.source(planned.spec_path, planned.chart).release(planned.chart.name, planned.version.version)


def _compare(planned: PlannedVersion, release: ChartRelease, image: RemoteImage) -> Result:
    if release.oci:  # a true mirror of an OCI source: the manifest itself is the identity
        if image.manifest_digest == release.digest:
            return Result(Outcome.PRESENT, f"{planned.reference} holds {release.digest}", release)
        return Result(
            Outcome.DIFFERS,
            f"{planned.reference} holds manifest {image.manifest_digest}, but {release.url} is "
            f"{release.digest}. ecrmirror never overwrites a tag: find out whether the upstream "
            "re-pushed this version, then decide by hand.",
            release,
        )
    if image.chart_digest == release.digest:
        return Result(Outcome.PRESENT, f"{planned.reference} holds {release.digest}", release)
    held = image.chart_digest or "no Helm chart layer"
    return Result(
        Outcome.DIFFERS,
        f"{planned.reference} holds {held} (manifest {image.manifest_digest}), but "
        f"{release.source} lists {release.digest} for {planned.chart.name} "
        f"{planned.version.version}. ecrmirror never overwrites a tag: find out whether the "
        "upstream republished this version, then decide by hand.",
        release,
    )


# -- provenance (`verify:`) --------------------------------------------------------------------------
def _verify(
    planned: PlannedVersion, release: ChartRelease, provenance: Path | None, digest: str
) -> Verified | None:
    """Before anything is pushed: the version's .prov verifies against the spec's keyring."""
    verification = planned.chart.verify
    if verification is None:
        return None
    what = f"{planned.chart.name} {planned.version.version}"
    if provenance is None:
        raise Unverified(
            f"{what}: {release.url} has no provenance file (.prov), and the spec says verify "
            f"({verification.where}); nothing was pushed"
        )
    return verify(
        provenance.read_bytes(), _archive_names(planned, release), digest, verification.keyring, what
    )


def _verify_held(
    run: Run, planned: PlannedVersion, release: ChartRelease, image: RemoteImage, present: Result
) -> Result:
    """The audit: the provenance layer ECR holds verifies for the chart layer ECR holds (its digest
    is in the manifest: the chart itself is not downloaded)."""
    verified = _verified_held(run, planned, release, image)
    notes = present.notes
    if verified.expired:
        notes += (f"{planned.reference}: signed by key {verified.fingerprint}, which has expired since",)
    return Result(present.outcome, present.message, present.release, notes=notes)


def _verified_held(run: Run, planned: PlannedVersion, release: ChartRelease, image: RemoteImage) -> Verified:
    verification = planned.chart.verify
    assert verification is not None
    what = f"{planned.chart.name} {planned.version.version}"
    if image.provenance_digest is None or image.chart_digest is None:
        raise Unverified(
            f"{what}: {planned.reference} holds no provenance layer, and the spec says verify "
            f"({verification.where}). ecrmirror never overwrites a tag: find out how it was pushed "
            "without its .prov, then decide by hand."
        )
    reader = run.registry_reader(planned.target.registry)
    held = reader.small_blob(planned.repository, image.provenance_digest)
    return verify(held, _archive_names(planned, release), image.chart_digest, verification.keyring, what)


def _archive_names(planned: PlannedVersion, release: ChartRelease) -> tuple[str, ...]:
    """The names a .prov may list the archive under: the upstream file's, or helm pull's."""
    pulled = f"{planned.chart.name}-{planned.version.version}.tgz"
    upstream = PurePosixPath(urlsplit(release.url).path).name
    return tuple(dict.fromkeys(name for name in (upstream, pulled) if name.endswith(".tgz")))


def _push_archive(
    run: Run, planned: PlannedVersion, release: ChartRelease, tmp: Path, make_room: Callable[[], bool]
) -> tuple[str, int, Verified | None]:
    """Download, verify, and push the archive as `helm push` would (with its .prov, if any)."""
    source = run.source(planned.spec_path, planned.chart)
    # Whether a .prov exists is asked while the archive downloads: one round trip, not two.
    probed = run.alongside(source.provenance, release, tmp)
    try:
        archive = source.fetch(release, tmp)
    except BaseException:
        concurrent.futures.wait([probed])  # it writes into the scratch directory the caller removes
        raise
    provenance = probed.result()
    verified = _verify(planned, release, provenance, release.digest)
    if provenance is None and planned.chart.provenance == "required":
        raise UpstreamError(
            f"{planned.chart.name} {planned.version.version}: {release.url} has no provenance file "
            f"(.prov), and the spec says provenance: required. Nothing was pushed."
        )
    artifact = build_artifact(
        archive,
        release.digest,
        name=planned.chart.name,
        version=planned.version.version,
        created=release.created,
        origin=release.url,
        provenance=provenance,
        max_chart_size=run.options.max_chart_size,
    )
    mutable = make_room()
    client = run.registry_client(planned.target.registry)
    new = run.inventory.created_here(planned.target.registry, planned.repository)
    report = client.push(
        planned.repository, artifact, archive, provenance, new_repository=new, mutable=mutable
    )
    return artifact.manifest_digest, report.bytes_uploaded, verified


def _copy_oci(
    run: Run, planned: PlannedVersion, release: ChartRelease, tmp: Path, make_room: Callable[[], bool]
) -> tuple[str, int, Verified | None]:
    """Copy an OCI source's manifest and blobs unchanged (the digest in ECR is the source's), and
    then what refers to it. Blobs the target already holds are neither downloaded nor uploaded."""
    from ecrmirror import ocicopy  # OCI sources only: their copies, through oras-py's registry client

    source = run.source(planned.spec_path, planned.chart)
    assert is_registry(source)
    manifest = source.manifest(release)
    wanted = planned.chart.verify is not None or planned.chart.provenance == "required"
    provenance = source.provenance(release, tmp) if wanted else None
    verified = _verify(planned, release, provenance, chart_layer_digest(json.loads(manifest.body)) or "")
    if planned.chart.provenance == "required" and provenance is None:
        raise UpstreamError(
            f"{planned.chart.name} {planned.version.version}: {release.url} has no provenance layer, "
            "and the spec says provenance: required. Nothing was pushed."
        )
    client = run.registry_client(planned.target.registry)
    limit = run.options.max_chart_size
    uploaded = ocicopy.copy_manifest(
        source,
        release,
        manifest,
        client,
        planned.repository,
        planned.tag,
        tmp,
        limit,
        before_upload=make_room,
        new_repository=run.inventory.created_here(planned.target.registry, planned.repository),
        alongside=run.alongside,
    )
    return manifest.digest, uploaded, verified


def _referrers(
    run: Run, planned: PlannedVersion, release: ChartRelease, result: Result, sync: bool
) -> Result:
    """An OCI source's signatures and SBOMs of a version ECR holds: copied (sync) or checked."""
    if not (release.oci and planned.chart.copy_referrers) or not result.outcome.ok:
        return result
    source = run.source(planned.spec_path, planned.chart)
    assert is_registry(source)
    from ecrmirror import ocicopy

    registry = planned.target.registry
    attached = ocicopy.missing_referrers(run, registry, planned.repository, source, release)
    if not attached.missing and not attached.differing:
        return result
    if not sync and not attached.differing:
        listed = ", ".join(ocicopy.describe(r) for r in attached.missing)
        return Result(
            Outcome.INCOMPLETE,
            f"{planned.reference} is in ECR, but not what {release.source} attaches to it: {listed}. "
            "`pytest --sync` copies them, digests unchanged.",
            release,
        )
    copied = ocicopy.Copied()
    if sync and attached.missing:
        may_move = repositories.tag_may_move(run, planned.target, planned.repository)
        with run.scratch() as tmp:
            copied = ocicopy.copy_referrers(
                run, registry, planned.repository, source, release, attached.missing, Path(tmp), may_move
            )
    message = result.message
    if copied.referrers:
        message += f"; copied what refers to it: {', '.join(copied.referrers)}"
    uploaded = result.bytes_uploaded + copied.uploaded
    differing = attached.differing + copied.differing
    if not differing:
        return Result(result.outcome, message, release, uploaded, notes=result.notes)
    return Result(
        Outcome.DIFFERS,
        f"{message}; but {'; '.join(differing)}. cosign re-pushes that tag when a signature is "
        "added upstream, and ecrmirror never overwrites a tag: compare the two, then decide by "
        "hand (delete ECR's tag to take the upstream's).",
        release,
        uploaded,
        notes=result.notes,
    )
