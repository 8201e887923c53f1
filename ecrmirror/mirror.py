"""Check or sync one planned chart version against ECR and report an outcome. No pytest in here."""

from __future__ import annotations

import enum
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import boto3

from ecrmirror.chart import build_artifact, tag_for
from ecrmirror.ecr import Ecr, RemoteImage, create_repository_command
from ecrmirror.errors import RepositoryMissing, TagConflict
from ecrmirror.registry import RegistryClient
from ecrmirror.sources import ChartRelease, Source, Sources
from ecrmirror.spec import ChartEntry, Registry, Target, VersionEntry
from ecrmirror.transport import new_session


class Outcome(str, enum.Enum):
    PUSHED = "PUSHED"  # was missing, now mirrored
    PRESENT = "PRESENT"  # already in ECR with the upstream's content
    MISSING = "MISSING"  # not in ECR (audit)
    DIFFERS = "DIFFERS"  # in ECR with other content than upstream; never overwritten

    @property
    def ok(self) -> bool:
        return self in (Outcome.PUSHED, Outcome.PRESENT)


@dataclass(frozen=True)
class PlannedVersion:
    """One chart version of one spec: what a pytest item stands for."""

    spec_path: Path
    target: Target
    chart: ChartEntry
    version: VersionEntry

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
class Result:
    outcome: Outcome
    message: str
    release: ChartRelease
    bytes_uploaded: int = 0


@dataclass(frozen=True)
class Endpoints:
    """Where to reach ECR; None means AWS's own endpoints (boto3 honours AWS_ENDPOINT_URL_ECR)."""

    ecr_api: str | None = None
    registry: str | None = None
    aws_access_key_id: str | None = None  # set by --offline only: the emulator's fake keys
    aws_secret_access_key: str | None = None


class Mirror:
    """One run's mirroring state: sources opened once, ECR inventory fetched in batches."""

    def __init__(self, endpoints: Endpoints, workdir: Path) -> None:
        self.endpoints = endpoints
        self.workdir = workdir
        self.http = new_session()
        self.sources = Sources(self.http)
        self.boto_session = boto3.session.Session(
            aws_access_key_id=endpoints.aws_access_key_id,
            aws_secret_access_key=endpoints.aws_secret_access_key,
        )
        self._planned_tags: dict[tuple[str, str], set[str]] = defaultdict(set)
        self._inventory: dict[tuple[str, str], dict[str, RemoteImage] | None] = {}
        self._ecr: dict[str, Ecr] = {}
        self._registries: dict[str, RegistryClient] = {}

    def plan(self, planned: Iterable[PlannedVersion]) -> None:
        """Announce the run's versions, so each repository is queried once for all its tags."""
        for item in planned:
            self._planned_tags[(item.target.registry.host, item.repository)].add(item.tag)

    def ecr(self, registry: Registry) -> Ecr:
        if registry.host not in self._ecr:
            self._ecr[registry.host] = Ecr(registry, self.boto_session, self.endpoints.ecr_api)
        return self._ecr[registry.host]

    def registry_client(self, registry: Registry) -> RegistryClient:
        if registry.host not in self._registries:
            endpoint = self.endpoints.registry or f"https://{registry.host}"
            self._registries[registry.host] = RegistryClient(endpoint, self.ecr(registry).registry_token)
        return self._registries[registry.host]

    def _source(self, planned: PlannedVersion) -> Source:
        return self.sources.get(planned.chart.source_location(planned.spec_path))

    def release(self, planned: PlannedVersion) -> ChartRelease:
        return self._source(planned).release(planned.chart.name, planned.version.version)

    def _images(self, planned: PlannedVersion) -> dict[str, RemoteImage] | None:
        key = (planned.target.registry.host, planned.repository)
        if key not in self._inventory:
            tags = self._planned_tags[key] | {planned.tag}
            self._inventory[key] = self.ecr(planned.target.registry).images(planned.repository, tags)
        return self._inventory[key]

    def _compare(self, planned: PlannedVersion, release: ChartRelease, image: RemoteImage) -> Result:
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
        return self._compare(planned, release, image)

    def sync(self, planned: PlannedVersion) -> Result:
        """Push one version if ECR lacks it; never touch a tag that is there."""
        release = self.release(planned)
        images = self._images(planned)
        if images is not None and planned.tag in images:
            return self._compare(planned, release, images[planned.tag])
        target = planned.target
        key = (target.registry.host, planned.repository)
        if images is None:
            if not target.create_repositories:
                raise RepositoryMissing(
                    f"repository {planned.repository} does not exist in {target.registry.host}, "
                    "and the spec does not allow creating it. Create it with:\n  "
                    + create_repository_command(target.registry, planned.repository, target.repository)
                    + "\nor set `create_repositories: true` under target in "
                    f"{planned.spec_path}."
                )
            self.ecr(target.registry).create_repository(planned.repository, target.repository)
            images = self._inventory[key] = {}
        with tempfile.TemporaryDirectory(dir=self.workdir, prefix="chart-") as tmp:
            archive = self._source(planned).fetch(release, Path(tmp))
            artifact = build_artifact(
                archive,
                release.digest,
                name=planned.chart.name,
                version=planned.version.version,
                created=release.created,
                origin=release.url,
            )
            try:
                report = self.registry_client(target.registry).push(planned.repository, artifact, archive)
            except TagConflict:
                # Someone pushed the tag since our inventory: audit it instead of failing blindly.
                self._inventory.pop(key, None)
                fresh = self._images(planned) or {}
                if planned.tag in fresh:
                    return self._compare(planned, release, fresh[planned.tag])
                raise
        images[planned.tag] = RemoteImage(planned.tag, artifact.manifest_digest, release.digest)
        return Result(
            Outcome.PUSHED,
            f"pushed {planned.reference} ({artifact.manifest_digest}, "
            f"{report.bytes_uploaded} bytes uploaded)",
            release,
            report.bytes_uploaded,
        )
