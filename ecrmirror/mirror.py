"""Check or sync one planned chart version against ECR and report an outcome. No pytest in here."""

from __future__ import annotations

import enum
import re
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import boto3
from filelock import FileLock

from ecrmirror import constraints, governance
from ecrmirror.chart import MAX_CHART_SIZE, Descriptor, build_artifact, tag_for
from ecrmirror.ecr import Ecr, RemoteImage, RepositoryState, create_repository_command
from ecrmirror.errors import (
    AwsError,
    EcrMirrorError,
    RepositoryMissing,
    SpecError,
    TagConflict,
    UpstreamError,
    VersionNotFound,
)
from ecrmirror.registry import RegistryClient
from ecrmirror.share import once_per_run
from ecrmirror.sources import NO_ACCESS, ChartRelease, IndexCache, OciRepository, Source, Sources
from ecrmirror.spec import ChartEntry, Destination, Registry, Spec, Target, VersionEntry
from ecrmirror.transport import DEFAULT_POLICY, Http, RetryPolicy

REPLICATION_WRITE_ATTEMPTS = 3  # PutReplicationConfiguration has no compare-and-swap: re-read and retry


class Outcome(str, enum.Enum):
    PUSHED = "PUSHED"  # was missing, now mirrored
    PRESENT = "PRESENT"  # already in ECR as declared (content, settings or replication rule)
    CREATED = "CREATED"  # a repository or replication rule that was missing, now made
    UPDATED = "UPDATED"  # repository settings changed to the spec's (enforce_settings)
    MISSING = "MISSING"  # not in ECR (audit)
    DIFFERS = "DIFFERS"  # in ECR, but not as declared; chart content is never overwritten
    UNREPLICATED = "UNREPLICATED"  # in ECR, but replication to a destination failed or never ran

    @property
    def ok(self) -> bool:
        return self in (Outcome.PUSHED, Outcome.PRESENT, Outcome.CREATED, Outcome.UPDATED)


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


@dataclass(frozen=True)
class Dependency:
    """A chart that a mirrored chart version declares, to be mirrored next to it."""

    name: str
    repository: str  # an http(s) or oci:// URL
    version: str
    pulled_in_by: str  # "<chart> <version>"


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    message: str
    release: ChartRelease | None = None  # None for repository and replication results
    bytes_uploaded: int = 0
    notes: tuple[str, ...] = ()  # worth saying even when the outcome is fine


@dataclass(frozen=True)
class Endpoints:
    """Where to reach ECR; None means AWS's own endpoints (boto3 honours AWS_ENDPOINT_URL_ECR)."""

    ecr_api: str | None = None
    registry: str | None = None
    aws_access_key_id: str | None = None  # set by --offline only: the emulator's fake keys
    aws_secret_access_key: str | None = None


class Mirror:
    """One run's mirroring state: sources opened once, ECR inventory fetched in batches."""

    def __init__(
        self,
        endpoints: Endpoints,
        workdir: Path,
        lock_dir: Path | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        index_cache: IndexCache | None = None,
        max_chart_size: int = MAX_CHART_SIZE,
        shared: Path | None = None,
    ) -> None:
        self.endpoints = endpoints
        # This run's directory for ECR answers that its xdist workers share (share.once_per_run).
        self.shared = shared
        self.workdir = workdir
        # Shared by every process of one run (xdist workers), so their replication merges take turns.
        self.lock_dir = lock_dir or workdir
        self.policy = policy
        self.http = Http(policy)
        self.sources = Sources(self.http, index_cache, max_chart_size)
        self.boto_session = boto3.session.Session(
            aws_access_key_id=endpoints.aws_access_key_id,
            aws_secret_access_key=endpoints.aws_secret_access_key,
        )
        self._planned_tags: dict[tuple[str, str], set[str]] = defaultdict(set)
        self._inventory: dict[tuple[str, str], dict[str, RemoteImage] | None] = {}
        self._ecr: dict[str, Ecr] = {}
        self._registries: dict[str, RegistryClient] = {}
        self._planned_repositories: dict[str, set[str]] = defaultdict(set)
        self._repository_states: dict[tuple[str, str], RepositoryState | None] = {}
        self._changed_repositories: set[tuple[str, str]] = set()  # to describe again, not from the share
        self._replication_ensured: set[tuple[str, tuple[str, ...], tuple[Destination, ...]]] = set()
        self._replication_statuses: dict[tuple[str, str, str], list[dict[str, str]] | None] = {}

    def plan(
        self, planned: Iterable[PlannedVersion], repositories: Iterable[tuple[Target, str]] = ()
    ) -> None:
        """Announce the run's versions and repositories, so that ECR is asked once per batch."""
        for item in planned:
            self._planned_tags[(item.target.registry.host, item.repository)].add(item.tag)
            self._planned_repositories[item.target.registry.host].add(item.repository)
            for destination in item.target.replication.destinations if item.target.replication else ():
                host = _destination_registry(item.target.registry, destination).host
                self._planned_tags[(host, item.repository)].add(item.tag)
        for target, name in repositories:
            self._planned_repositories[target.registry.host].add(name)

    def ecr(self, registry: Registry) -> Ecr:
        if registry.host not in self._ecr:
            self._ecr[registry.host] = Ecr(
                registry, self.boto_session, self.endpoints.ecr_api, max_attempts=self.policy.attempts
            )
        return self._ecr[registry.host]

    def registry_client(self, registry: Registry) -> RegistryClient:
        if registry.host not in self._registries:
            endpoint = self.endpoints.registry or f"https://{registry.host}"
            self._registries[registry.host] = RegistryClient(
                endpoint, self.ecr(registry).registry_token, self.policy
            )
        return self._registries[registry.host]

    def _source(self, planned: PlannedVersion) -> Source:
        return self.sources.get(planned.chart.source_location(planned.spec_path), planned.chart.access)

    def _create_repository(self, spec_path: Path, target: Target, name: str) -> bool:
        """Create `name` with the spec's settings, or say how when the spec does not allow it."""
        if not target.create_repositories:
            raise RepositoryMissing(
                f"repository {name} does not exist in {target.registry.host}, "
                "and the spec does not allow creating it. Create it with:\n  "
                + create_repository_command(target.registry, name, target.repository)
                + f"\nor set `create_repositories: true` under target in {spec_path}."
            )
        created = self.ecr(target.registry).create_repository(name, target.repository)
        self._forget_repository(target, name)
        return created

    def _forget_repository(self, target: Target, name: str) -> None:
        """`name` changed (created or updated, by us or a concurrent writer): describe it afresh."""
        self._repository_states.pop((target.registry.host, name), None)
        self._changed_repositories.add((target.registry.host, name))

    def resolve(self, spec_path: Path, chart: ChartEntry) -> list[str]:
        """The versions a chart entry stands for: its list, or what its range selects upstream."""
        if chart.range is None:
            return [v.version for v in chart.versions]
        found = self.sources.get(chart.source_location(spec_path), chart.access).versions(chart.name)
        chosen = constraints.select(
            found,
            constraints.parse_constraint(chart.range.constraint),
            include_prereleases=chart.range.include_prereleases,
            latest=chart.range.latest,
            exclude=chart.range.exclude,
        )
        if not chosen:
            newest = constraints.newest_first(found)
            shown = ", ".join(newest[:10]) + (f" (and {len(newest) - 10} more)" if len(newest) > 10 else "")
            raise VersionNotFound(
                f"{chart.range.where}: no version of {chart.name} in {chart.source_location(spec_path)} "
                f"matches {chart.range.describe()}; it has {shown or 'none'}. Fix the constraint"
                + ("" if chart.range.include_prereleases else ", or set include_prereleases: true")
                + "."
            )
        return chosen

    def dependencies(self, spec_path: Path, chart: ChartEntry, version: str) -> list[Dependency]:
        """The charts `chart` at `version` depends on from an http(s) or oci repository, each at
        the version helm would pick: an exact match, else the newest the constraint allows."""
        source = self.sources.get(chart.source_location(spec_path), chart.access)
        found: list[Dependency] = []
        for declared in source.metadata(chart.name, version).get("dependencies") or []:
            if not isinstance(declared, dict):
                continue
            repository = str(declared.get("repository") or "")
            if not re.match(r"^(https?|oci)://", repository):
                continue  # vendored in charts/ (empty or file://), or a local repo alias: inside the archive
            name, wanted = str(declared.get("name", "")), str(declared.get("version") or "*")
            upstream = self.sources.get(repository, NO_ACCESS)
            available = upstream.versions(name)
            if wanted in available:
                chosen = wanted
            else:
                try:
                    matches = constraints.select(available, constraints.parse_constraint(wanted))
                except constraints.ConstraintError as exc:
                    raise UpstreamError(
                        f"{chart.name} {version} declares dependency {name} {wanted!r}: {exc}"
                    ) from None
                if not matches:
                    raise VersionNotFound(
                        f"{chart.name} {version} depends on {name} {wanted!r} from {repository}, which "
                        f"has no such version (newest: {', '.join(constraints.newest_first(available)[:5])})"
                    )
                chosen = matches[0]
            found.append(Dependency(name, repository, chosen, f"{chart.name} {version}"))
        return found

    def dependency_entries(self, spec: Spec) -> list[tuple[ChartEntry, dict[str, str]]]:
        """with_dependencies: one chart entry per dependency chart, with the chart versions that
        pulled in each of its versions. A version the spec lists already is not repeated."""
        listed = {(chart.name, chart.repo): {v.version for v in chart.versions} for chart in spec.charts}
        wanted: dict[tuple[str, str], dict[str, list[str]]] = {}
        parents: dict[tuple[str, str], ChartEntry] = {}
        for chart in spec.charts:
            if not chart.with_dependencies:
                continue
            for version in self.resolve(spec.path, chart):
                for dependency in self.dependencies(spec.path, chart, version):
                    key = (dependency.name, dependency.repository)
                    if dependency.version in listed.get(key, set()):
                        continue
                    clash = next(
                        (
                            c
                            for c in spec.charts
                            if c.name == dependency.name and c.repo != dependency.repository
                        ),
                        None,
                    )
                    if clash is not None:
                        raise SpecError(
                            chart.where,
                            f"{dependency.pulled_in_by} depends on {dependency.name} from "
                            f"{dependency.repository}, but the spec mirrors {dependency.name} from "
                            f"{clash.repo} into the same repository",
                            "mirror one of them with another spec and prefix",
                        )
                    parents.setdefault(key, chart)
                    wanted.setdefault(key, {}).setdefault(dependency.version, []).append(
                        dependency.pulled_in_by
                    )
        entries: list[tuple[ChartEntry, dict[str, str]]] = []
        for (name, repository), chosen in wanted.items():
            parent = parents[(name, repository)]
            line = int(parent.where.rpartition(":")[2] or 1)
            entry = ChartEntry(
                name=name,
                repo=repository,
                versions=tuple(VersionEntry(v, parent.where, line) for v in chosen),
                where=parent.where,
            )
            entries.append((entry, {v: ", ".join(by) for v, by in chosen.items()}))
        return entries

    def release(self, planned: PlannedVersion) -> ChartRelease:
        return self._source(planned).release(planned.chart.name, planned.version.version)

    def _images(self, planned: PlannedVersion, fresh: bool = False) -> dict[str, RemoteImage] | None:
        key = (planned.target.registry.host, planned.repository)
        if key not in self._inventory or fresh:
            tags = self._planned_tags[key] | {planned.tag}
            self._inventory[key] = self._fetch_images(
                planned.target.registry, planned.repository, tags, fresh
            )
        return self._inventory[key]

    def _fetch_images(
        self, registry: Registry, repository: str, tags: set[str], fresh: bool = False
    ) -> dict[str, RemoteImage] | None:
        """BatchGetImage for the run's tags of `repository`, asked once per run (not per worker)."""

        def fetch() -> list[dict[str, Any]] | None:
            found = self.ecr(registry).images(repository, tags)
            return None if found is None else [asdict(image) for image in found.values()]

        question = f"images {registry.host}/{repository} {' '.join(sorted(tags))}"
        answer = fetch() if fresh else once_per_run(self.shared, question, fetch)
        return None if answer is None else {image["tag"]: RemoteImage(**image) for image in answer}

    def _compare(self, planned: PlannedVersion, release: ChartRelease, image: RemoteImage) -> Result:
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

    def check(self, planned: PlannedVersion) -> Result:
        """Read-only audit of one version: PRESENT, MISSING or DIFFERS."""
        release = self.release(planned)
        images = self._images(planned)
        if images is None:
            return Result(
                Outcome.MISSING,
                f"repository {planned.repository} does not exist in {planned.target.registry.host}; "
                "`pytest --sync` creates it (if the spec allows) and pushes the version",
                release,
            )
        image = images.get(planned.tag)
        if image is None:
            return Result(
                Outcome.MISSING, f"{planned.reference} is not in ECR; `pytest --sync` pushes it", release
            )
        result = self._compare(planned, release, image)
        if result.outcome is Outcome.PRESENT and planned.target.replication is not None:
            return self._check_replicated(planned, image, result)
        return result

    # -- replication of one version ---------------------------------------------------------------
    def _check_replicated(self, planned: PlannedVersion, image: RemoteImage, present: Result) -> Result:
        """PRESENT stays PRESENT when every destination holds the image (or is still copying it)."""
        assert planned.target.replication is not None
        problems: list[str] = []
        notes: list[str] = []
        for destination in planned.target.replication.destinations:
            where = f"{destination.region} ({destination.registry_id})"
            if destination.registry_id == planned.target.registry.account:
                # One batched BatchGetImage per repository and region answers most versions at once.
                copy = self._destination_images(planned, destination).get(planned.tag)
                if copy is not None and copy.manifest_digest == image.manifest_digest:
                    continue
            status = self._replication_status(planned, destination)
            state = status.get("status") if status else None
            if state == "COMPLETE" and destination.registry_id != planned.target.registry.account:
                continue  # another account's registry: ECR's word is all we can read
            if state == "IN_PROGRESS":
                notes.append(f"replication of {planned.reference} to {where} is in progress")
            elif state == "FAILED":
                problems.append(
                    f"replication to {where} FAILED ({status.get('failureCode') or 'no failure code'})"
                )
            elif state == "COMPLETE":
                problems.append(f"ECR reports replication to {where} COMPLETE, but the image is not there")
            else:
                problems.append(
                    f"{where} has no copy and no replication record (ECR replicates only what is "
                    "pushed after the rule exists)"
                )
        if problems:
            return Result(
                Outcome.UNREPLICATED,
                f"{planned.reference} is in ECR, but " + "; ".join(problems) + ". Fix the cause "
                "(the destination registry's permissions policy, KMS, quotas), then copy the image "
                "to the destination by hand: ecrmirror never re-pushes a tag that is there.",
                present.release,
                notes=tuple(notes),
            )
        return Result(present.outcome, present.message, present.release, notes=tuple(notes))

    def _destination_images(
        self, planned: PlannedVersion, destination: Destination
    ) -> dict[str, RemoteImage]:
        registry = _destination_registry(planned.target.registry, destination)
        key = (registry.host, planned.repository)
        if key not in self._inventory:
            tags = self._planned_tags[key] | {planned.tag}
            self._inventory[key] = self._fetch_images(registry, planned.repository, tags)
        return self._inventory[key] or {}

    def _replication_status(self, planned: PlannedVersion, destination: Destination) -> dict[str, str]:
        key = (planned.target.registry.host, planned.repository, planned.tag)
        if key not in self._replication_statuses:
            self._replication_statuses[key] = self.ecr(planned.target.registry).replication_statuses(
                planned.repository, planned.tag
            )
        for status in self._replication_statuses[key] or []:
            if (status.get("region"), status.get("registryId")) == (
                destination.region,
                destination.registry_id,
            ):
                return status
        return {}

    # -- repositories -----------------------------------------------------------------------------
    def _repository_state(self, target: Target, name: str) -> RepositoryState | None:
        key = (target.registry.host, name)
        if key not in self._repository_states:
            names = self._planned_repositories[target.registry.host] | {name}
            unknown = {n for n in names if (target.registry.host, n) not in self._repository_states}
            changed = key in self._changed_repositories
            if changed:  # the run's shared answer is from before the change: ask for this one alone
                unknown = {name}
                self._changed_repositories.discard(key)

            def fetch() -> dict[str, dict[str, Any]]:
                found = self.ecr(target.registry).repositories(unknown)
                return {each: asdict(described) for each, described in found.items()}

            question = f"repositories {target.registry.host} {' '.join(sorted(unknown))}"
            answer = fetch() if changed else once_per_run(self.shared, question, fetch)
            for each in unknown:
                state = answer.get(each)
                self._repository_states[(target.registry.host, each)] = (
                    None
                    if state is None
                    else RepositoryState(
                        **{**state, "mutability_exclusions": tuple(state["mutability_exclusions"])}
                    )
                )
        return self._repository_states[key]

    def _actual(self, target: Target, state: RepositoryState) -> governance.Actual:
        ecr, declared = self.ecr(target.registry), target.repository
        return governance.Actual(
            image_tag_mutability=state.image_tag_mutability,
            mutability_exclusions=state.mutability_exclusions,
            scan_on_push=state.scan_on_push,
            encryption=state.encryption,
            kms_key=state.kms_key,
            tags=ecr.tags(state.arn) if declared.tags is not None else None,
            lifecycle_policy=ecr.lifecycle_policy(state.name)
            if declared.lifecycle_policy is not None
            else None,
        )

    def check_repository(self, spec_path: Path, target: Target, name: str) -> Result:
        """Read-only: does `name` exist with every setting the spec declares?"""
        state = self._repository_state(target, name)
        if state is None:
            how = (
                "`pytest --sync` creates it"
                if target.create_repositories
                else "create it with:\n  "
                + create_repository_command(target.registry, name, target.repository)
            )
            return Result(
                Outcome.MISSING, f"repository {name} does not exist in {target.registry.host}; {how}"
            )
        found = governance.differences(target.repository, self._actual(target, state))
        if not found:
            return Result(Outcome.PRESENT, f"repository {name} has every declared setting")
        return Result(Outcome.DIFFERS, _differences_message(name, found, target, spec_path))

    def sync_repository(
        self, spec_path: Path, target: Target, name: str, charts: Iterable[ChartEntry] = ()
    ) -> Result:
        """Create `name` if missing; change declared settings only under enforce_settings.

        A repository is created only for a chart its upstream has, so that a misspelt chart name
        fails without leaving an empty repository behind.
        """
        state = self._repository_state(target, name)
        if state is None:
            self._require_upstream(spec_path, charts)
            if self._create_repository(spec_path, target, name):
                return Result(Outcome.CREATED, f"created repository {name} with the declared settings")
            state = self._repository_state(target, name)  # someone else created it meanwhile
            if state is None:
                raise AwsError(f"repository {name} was created concurrently but cannot be described")
        found = governance.differences(target.repository, self._actual(target, state))
        if not found:
            return Result(Outcome.PRESENT, f"repository {name} has every declared setting")
        if not target.repository.enforce:
            return Result(Outcome.DIFFERS, _differences_message(name, found, target, spec_path))
        self._enforce(target, state, found)
        self._forget_repository(target, name)
        fixed = [d for d in found if d.changeable]
        left = [d for d in found if not d.changeable]
        if left:
            return Result(
                Outcome.DIFFERS,
                (f"changed {', '.join(d.setting for d in fixed)}; " if fixed else "")
                + _differences_message(name, left, target, spec_path),
            )
        return Result(
            Outcome.UPDATED,
            f"repository {name}: changed " + "; ".join(str(d) for d in fixed),
        )

    def _require_upstream(self, spec_path: Path, charts: Iterable[ChartEntry]) -> None:
        """Raise the upstream's error unless at least one of the versions is there to mirror."""
        first_error: EcrMirrorError | None = None
        for chart in charts:
            source = self.sources.get(chart.source_location(spec_path), chart.access)
            for version in chart.versions:
                try:
                    source.release(chart.name, version.version)
                    return
                except EcrMirrorError as exc:
                    first_error = first_error or exc
        if first_error is not None:
            raise first_error

    def _enforce(self, target: Target, state: RepositoryState, found: list[governance.Difference]) -> None:
        ecr, declared = self.ecr(target.registry), target.repository
        settings = {d.setting for d in found if d.changeable}
        if settings & {"image_tag_mutability", "image_tag_mutability_exclusion_filters"}:
            mutability = declared.image_tag_mutability or state.image_tag_mutability
            exclusions = declared.mutability_exclusions
            if exclusions is None and mutability.endswith("_WITH_EXCLUSION"):
                exclusions = state.mutability_exclusions
            ecr.put_image_tag_mutability(state.name, mutability, exclusions)
        if "scan_on_push" in settings and declared.scan_on_push is not None:
            ecr.put_image_scanning_configuration(state.name, declared.scan_on_push)
        tags = {key: value for key, value in declared.tags or () if f"tags.{key}" in settings}
        if tags:
            ecr.tag_resource(state.arn, tags)  # adds and updates; never removes anyone's tags
        if "lifecycle_policy" in settings and declared.lifecycle_policy is not None:
            ecr.put_lifecycle_policy(state.name, declared.lifecycle_policy)

    # -- the registry's replication rule ------------------------------------------------------------
    def check_replication(self, target: Target, repositories: tuple[str, ...]) -> Result:
        assert target.replication is not None
        configuration = self.ecr(target.registry).replication_configuration()
        missing = governance.uncovered(configuration, repositories, target.replication.destinations)
        if not missing:
            return Result(Outcome.PRESENT, _replication_summary(target, repositories))
        return Result(
            Outcome.MISSING,
            "; ".join(
                f"no replication rule copies {', '.join(names)} to {d.region} ({d.registry_id})"
                for d, names in missing.items()
            )
            + ". `pytest --sync` adds the rule, keeping every other rule of the registry.",
        )

    def sync_replication(self, target: Target, repositories: tuple[str, ...]) -> Result:
        changed = self.ensure_replication(target, repositories)
        if changed:
            return Result(
                Outcome.CREATED,
                "added to the registry's replication: " + _replication_summary(target, repositories),
            )
        return Result(Outcome.PRESENT, _replication_summary(target, repositories))

    def ensure_replication(self, target: Target, repositories: tuple[str, ...]) -> bool:
        """Merge the spec's rule into the registry's configuration; True if it had to be written.

        Every other rule is written back unchanged. ECR has no conditional put, so the merge
        takes a lock shared by this run's processes and re-reads after writing.
        """
        assert target.replication is not None
        destinations = target.replication.destinations
        key = (target.registry.host, tuple(sorted(repositories)), destinations)
        if key in self._replication_ensured:
            return False
        ecr = self.ecr(target.registry)
        filters = governance.replication_filters(target, repositories)
        # Read-modify-write of one registry-wide document: workers of this run take turns (a
        # writer that read before another's write would drop its rule), and every writer reads
        # again after writing, for writers outside this run.
        with FileLock(self.lock_dir / f"replication-{target.registry.host}.lock"):
            changed = self._merge_replication(ecr, target, repositories, filters)
        self._replication_ensured.add(key)
        return changed

    def _merge_replication(
        self, ecr: Ecr, target: Target, repositories: tuple[str, ...], filters: tuple[str, ...]
    ) -> bool:
        assert target.replication is not None
        destinations = target.replication.destinations
        for writes in range(REPLICATION_WRITE_ATTEMPTS + 1):
            configuration = ecr.replication_configuration()
            missing = governance.uncovered(configuration, repositories, destinations)
            if not missing:
                return writes > 0
            if writes == REPLICATION_WRITE_ATTEMPTS:
                break
            ecr.put_replication_configuration(
                governance.merged(configuration, filters, destinations, missing)
            )
        raise AwsError(
            f"the replication rule for {', '.join(filters)} did not stay in the registry's configuration "
            f"after {REPLICATION_WRITE_ATTEMPTS} writes: something else rewrites it concurrently. "
            "Find the other writer (Terraform, CloudFormation, another job) and run --sync again."
        )

    def sync(self, planned: PlannedVersion) -> Result:
        """Push one version if ECR lacks it; never touch a tag that is there."""
        release = self.release(planned)
        images = self._images(planned)
        if images is not None and planned.tag in images:
            return self._compare(planned, release, images[planned.tag])
        target = planned.target
        key = (target.registry.host, planned.repository)
        if images is None:
            self._create_repository(planned.spec_path, target, planned.repository)
            images = self._inventory[key] = {}
        if target.replication is not None:
            # ECR replicates only what is pushed after the rule exists.
            self.ensure_replication(target, planned.spec_repositories or (planned.repository,))
        with tempfile.TemporaryDirectory(dir=self.workdir, prefix="chart-") as tmp:
            try:
                if release.oci:
                    manifest_digest, uploaded = self._copy_oci(planned, release, Path(tmp))
                else:
                    manifest_digest, uploaded = self._push_archive(planned, release, Path(tmp))
            except TagConflict:
                # Someone pushed the tag since our inventory: audit it instead of failing blindly.
                fresh = self._images(planned, fresh=True) or {}
                if planned.tag in fresh:
                    return self._compare(planned, release, fresh[planned.tag])
                raise
        chart_digest = None if release.oci else release.digest
        images[planned.tag] = RemoteImage(planned.tag, manifest_digest, chart_digest)
        return Result(
            Outcome.PUSHED,
            f"pushed {planned.reference} ({manifest_digest}, {uploaded} bytes uploaded)",
            release,
            uploaded,
        )

    def _push_archive(self, planned: PlannedVersion, release: ChartRelease, tmp: Path) -> tuple[str, int]:
        """Download, verify, and push the archive as `helm push` would (with its .prov, if any)."""
        source = self._source(planned)
        archive = source.fetch(release, tmp)
        provenance = source.provenance(release, tmp)
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
            max_chart_size=self.sources.max_chart_size,
        )
        client = self.registry_client(planned.target.registry)
        report = client.push(planned.repository, artifact, archive, provenance)
        return artifact.manifest_digest, report.bytes_uploaded

    def _copy_oci(self, planned: PlannedVersion, release: ChartRelease, tmp: Path) -> tuple[str, int]:
        """Copy an OCI source's manifest and blobs unchanged: the digest in ECR is the source's.

        Blobs the target already holds are neither downloaded nor uploaded; the manifest goes last.
        """
        source = self._source(planned)
        assert isinstance(source, OciRepository)
        manifest = source.manifest(release)
        if planned.chart.provenance == "required" and source.provenance(release, tmp) is None:
            raise UpstreamError(
                f"{planned.chart.name} {planned.version.version}: {release.url} has no provenance layer, "
                "and the spec says provenance: required. Nothing was pushed."
            )
        client = self.registry_client(planned.target.registry)
        uploaded = 0
        config, *layers = (
            Descriptor(str(blob.get("mediaType", "")), str(blob["digest"]), int(blob["size"]))
            for blob in manifest.blobs()
        )
        for descriptor in (config, *layers):
            if descriptor.size > self.sources.max_chart_size:
                raise UpstreamError(
                    f"{release.url}: blob {descriptor.digest} is {descriptor.size} bytes, more than a "
                    f"chart may be ({self.sources.max_chart_size}; ini ecrmirror_max_chart_size); "
                    "nothing was pushed"
                )
        # Everything is downloaded and verified before the first upload: a bad source leaves nothing
        # behind in ECR, not even an untagged blob.
        downloaded: list[tuple[Descriptor, Path]] = []
        for descriptor in (config, *layers):
            # As in RegistryClient.push: the config (a few hundred bytes, new with each version)
            # costs one request to download either way, so asking ECR for it first only adds one.
            if descriptor is not config and client.has_blob(planned.repository, descriptor.digest):
                continue
            target = tmp / descriptor.digest.replace(":", "-")
            downloaded.append((descriptor, source.blob(release, descriptor.digest, target, descriptor.size)))
        for descriptor, path in downloaded:
            client.upload_blob(planned.repository, path, descriptor)
            uploaded += descriptor.size
        client.put_manifest(planned.repository, planned.tag, manifest.body, manifest.media_type)
        return manifest.digest, uploaded


def _destination_registry(source: Registry, destination: Destination) -> Registry:
    host = source.host.replace(source.account, destination.registry_id, 1).replace(
        f".{source.region}.", f".{destination.region}.", 1
    )
    return Registry(host=host, account=destination.registry_id, region=destination.region)


def _replication_summary(target: Target, repositories: tuple[str, ...]) -> str:
    assert target.replication is not None
    filters = governance.replication_filters(target, repositories)
    regions = ", ".join(f"{d.region} ({d.registry_id})" for d in target.replication.destinations)
    return f"{', '.join(f + '*' for f in filters)} replicates to {regions}"


def _differences_message(
    name: str, found: list[governance.Difference], target: Target, spec_path: Path
) -> str:
    lines = [f"settings of {name} differ from the spec ({target.repository.where or spec_path}):"]
    lines += [f"  {d}" for d in found]
    if any(not d.changeable for d in found):
        lines.append(
            "  ECR cannot change a repository's encryption: create a new repository with the declared "
            "encryption and copy the images into it, or make the spec say what the repository has."
        )
    if any(d.changeable for d in found):
        if target.repository.enforce:
            lines.append("  the other settings were changed to the spec's")
        else:
            lines.append(
                "  set `enforce_settings: true` under target.repository and run `pytest --sync` to apply "
                "the spec, or make the spec say what the repository has."
            )
    return "\n".join(lines)
