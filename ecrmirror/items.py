"""Spec files as pytest collectors, chart versions as pytest items, outcomes as pytest reports."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pytest

from ecrmirror import options, registry_rules, replication, repositories, selection, versions
from ecrmirror.errors import CredentialsError, EcrMirrorError, SpecError
from ecrmirror.junit import (
    ASKED_BY_PROPERTY,
    BYTES_PROPERTY,
    ERROR_PROPERTY,
    FILE_PROPERTY,
    KIND_PROPERTY,
    LINE_PROPERTY,
    NOTE_PROPERTY,
    OUTCOME_PROPERTY,
    POINTING_PROPERTY,
    PULLED_IN_BY_PROPERTY,
    RANGE_PROPERTY,
    SPEC_PROPERTY,
    TITLE_PROPERTY,
    USED_BY_PROPERTY,
    VALUES_PROPERTY,
)
from ecrmirror.outcome import Result
from ecrmirror.replicas import replica_target, writable_destinations
from ecrmirror.run import Options, Run
from ecrmirror.spec import ChartEntry, NotMirrored, Spec, Target, VersionEntry, load_spec
from ecrmirror.versions import PlannedVersion

if TYPE_CHECKING:
    from ecrmirror.images.mirror import NotFound, PlannedImage
    from ecrmirror.jobs import Jobs


@dataclass
class Runner:
    """What the items of one pytest process share: the mode, the Run, made on first use so that
    pytest runs without spec files pay nothing for it, and with --ecrmirror-jobs, the jobs."""

    sync: bool
    options: Options
    jobs: Jobs | None = None
    _run: Run | None = field(default=None, init=False)

    @property
    def run(self) -> Run:
        if self._run is None:
            self._run = Run(self.options)
        return self._run

    def submit(self, item: MirrorItem, after: tuple[str, ...] = ()) -> None:
        """Start `item`'s work on the jobs' threads (once), after the items named in `after`."""
        if self.jobs is not None and item.nodeid not in self.jobs:
            run, sync = self.run, self.sync
            self.jobs.submit(item.nodeid, lambda: item.mirror(run, sync), after)

    def result(self, item: MirrorItem) -> Result:
        """`item`'s result: from its job when it was submitted, else worked out now."""
        if self.jobs is not None and item.nodeid in self.jobs:
            result: Result = self.jobs.result(item.nodeid)
            return result
        return item.mirror(self.run, self.sync)

    def close(self) -> None:
        if self.jobs is not None:
            self.jobs.close()
        if self._run is not None:
            self._run.close()


RUN_KEY = pytest.StashKey[Runner]()


class OutcomeFailure(Exception):
    """A version that is MISSING or DIFFERS: an audit finding, not a crash."""

    def __init__(self, result: Result) -> None:
        super().__init__(f"{result.outcome.value}: {result.message}")
        self.result = result


class SpecFile(pytest.File):
    """A mirror spec: its repositories first, then its replication rule, then its chart versions."""

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        try:
            spec = load_spec(self.path, options.variables(self.config), display_path=_display_path(self))
        except SpecError as exc:
            raise self.CollectError(str(exc)) from None
        try:
            pulled_in = self._dependencies(spec)
        except EcrMirrorError as exc:
            raise self.CollectError(str(exc)) from None
        charts = spec.charts + tuple(entry for entry, _ in pulled_in) + spec.gitops_charts
        planned_images, not_found = self._images(spec)
        names = tuple(
            dict.fromkeys(
                [spec.target.repository_for(chart.name) for chart in charts]
                + [planned.repository for planned in planned_images]
            )
        )
        yield RepositoriesNode.from_parent(
            self, name="repository", spec=spec, repositories=names, charts=charts
        )
        if writable_destinations(spec.target):
            yield ReplicasNode.from_parent(self, name="replica", spec=spec, repositories=names, charts=charts)
        if spec.target.replication is not None:
            yield ReplicationItem.from_parent(self, name="replication", spec=spec, repositories=names)
        for setting in REGISTRY_SETTINGS:
            if getattr(spec.target, setting.attribute) is not None:
                yield RegistrySettingItem.from_parent(self, name=setting.name, spec=spec, setting=setting)
        for chart in spec.charts:
            yield ChartNode.from_parent(self, name=chart.name, spec=spec, chart=chart, repositories=names)
        for entry, pulled_in_by in pulled_in:
            yield ChartNode.from_parent(
                self, name=entry.name, spec=spec, chart=entry, repositories=names, pulled_in_by=pulled_in_by
            )
        asked: dict[tuple[str, str], list[ChartEntry]] = {}
        for entry in spec.gitops_charts:  # one node per chart, whichever manifests ask for it
            asked.setdefault((entry.name, entry.repo), []).append(entry)
        for (name, _), entries in asked.items():
            yield GitopsChartNode.from_parent(self, name=name, spec=spec, entries=entries, repositories=names)
        for not_mirrored in spec.gitops_skipped:
            yield NotMirroredItem.from_parent(self, name=not_mirrored.asked_by, not_mirrored=not_mirrored)
        if planned_images or not_found:
            yield ImagesNode.from_parent(self, name="image", images=planned_images, not_found=not_found)

    def _images(self, spec: Spec) -> tuple[list[PlannedImage], list[NotFound]]:
        """The images the spec's charts run (entries with `images:`), found now so that each is an
        item of its own, as --collect-only shows it."""
        if not any(chart.images for chart in spec.charts) or self.config.getoption("ecrmirror_policy"):
            return [], []
        from ecrmirror.images import mirror as images  # specs with images only: OCI copies, oras-py

        run = self.config.stash[RUN_KEY].run
        try:
            return images.plan(run, spec, lambda chart: _chart_versions(self.config, spec, chart))
        except EcrMirrorError as exc:
            raise self.CollectError(str(exc)) from None

    def _dependencies(self, spec: Spec) -> list[tuple[ChartEntry, dict[str, str]]]:
        if not any(chart.with_dependencies for chart in spec.charts):
            return []
        from ecrmirror import dependencies

        return dependencies.entries(self.config.stash[RUN_KEY].run, spec)


def _display_path(node: pytest.File) -> str:
    """The spec's path as the user would type it: relative to where pytest was invoked."""
    relative = os.path.relpath(node.path, node.config.invocation_params.dir)
    return str(node.path) if relative.startswith("..") else relative


def _line(where: str) -> int | None:
    """The 0-based line of a `path:line` location, as reportinfo wants it."""
    _, _, line = where.rpartition(":")
    return int(line) - 1 if line.isdigit() else None


class RepositoriesNode(pytest.Collector):
    """`<spec>::repository`: one item per ECR repository the spec mirrors into. As
    `<spec>::replica::<region>`, the same repositories in one destination region."""

    def __init__(
        self,
        *,
        spec: Spec,
        repositories: tuple[str, ...],
        charts: tuple[ChartEntry, ...],
        target: Target | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.repositories = repositories
        self.charts = charts
        self.target = target or spec.target

    def collect(self) -> Iterator[RepositoryItem]:
        for name in self.repositories:
            charts = tuple(c for c in self.charts if self.spec.target.repository_for(c.name) == name)
            yield RepositoryItem.from_parent(
                self, name=name, spec=self.spec, repository=name, charts=charts, target=self.target
            )


class ReplicasNode(pytest.Collector):
    """`<spec>::replica`: the spec's repositories in each destination region ecrmirror can write."""

    def __init__(
        self, *, spec: Spec, repositories: tuple[str, ...], charts: tuple[ChartEntry, ...], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.repositories = repositories
        self.charts = charts

    def collect(self) -> Iterator[RepositoriesNode]:
        for destination in writable_destinations(self.spec.target):
            yield RepositoriesNode.from_parent(
                self,
                name=destination.region,
                spec=self.spec,
                repositories=self.repositories,
                charts=self.charts,
                target=replica_target(self.spec.target, destination),
            )


class MirrorItem(pytest.Item):
    """What our items share: check or sync through one kind's module, record the outcome, and fail
    with a plain message that starts with the outcome word, what the item is about and where."""

    kind = ""

    def runtest(self) -> None:
        path, line, _ = self.location
        spec = self.nodeid.split("::")[0]  # the spec, as the node id names it: relative to the rootdir
        self.user_properties.extend(
            [
                (TITLE_PROPERTY, self.title()),
                (SPEC_PROPERTY, spec),
                (FILE_PROPERTY, path),  # where the item sits: the spec, or the GitOps manifest asking
                (LINE_PROPERTY, str((line or 0) + 1)),
            ]
        )
        runner = self.config.stash[RUN_KEY]
        try:
            result = runner.result(self)
        except EcrMirrorError as error:
            self.user_properties.append((ERROR_PROPERTY, error.word))
            if isinstance(error, CredentialsError):
                self.session.shouldstop = "no usable AWS credentials"  # every other item would say the same
            raise
        self.record(result)
        self.user_properties.append((OUTCOME_PROPERTY, result.outcome.value))
        self.user_properties.extend((NOTE_PROPERTY, note) for note in result.notes)
        if not result.outcome.ok:
            raise OutcomeFailure(result)

    def mirror(self, run: Run, sync: bool) -> Result:
        """Check (or with `sync`, sync) what this item stands for. It may run on a job's thread:
        it touches nothing of the item's but reads it; `record` keeps what the result says."""
        raise NotImplementedError

    def record(self, result: Result) -> None:
        """What the item's report carries of its result, beyond the outcome and notes."""

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
        failure = excinfo.value
        if isinstance(failure, OutcomeFailure):
            word, message = failure.result.outcome.value, failure.result.message
        elif isinstance(failure, EcrMirrorError):
            word, message = failure.word, str(failure)
        else:
            return super().repr_failure(excinfo, style=style)
        return f"{word} {self.title()}: {self.target()}\n{message}"

    def title(self) -> str:
        """What the item is about, as a reviewer reads it (the JUnit test case's name)."""
        raise NotImplementedError

    def target(self) -> str:
        """Where in ECR: registry/repository:tag for a version."""
        raise NotImplementedError

    @property
    def shard_key(self) -> str:
        """Items that must run in the same --ecrmirror-shard share a key: a repository's items."""
        raise NotImplementedError


class RepositoryItem(MirrorItem):
    """One ECR repository: exists, with every setting the spec declares (created under --sync).
    A replica repository (kind "replica") is held to the same settings in its own region."""

    def __init__(
        self,
        *,
        spec: Spec,
        repository: str,
        charts: tuple[ChartEntry, ...],
        target: Target | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.repository = repository
        self.charts = charts
        self.repository_target = target or spec.target
        self.replica = self.repository_target.registry != spec.target.registry
        self.kind = "replica" if self.replica else "repository"
        self.user_properties.extend(
            [
                (KIND_PROPERTY, self.kind),
                ("registry", self.repository_target.registry.host),
                ("repository", repository),
            ]
        )

    def mirror(self, run: Run, sync: bool) -> Result:
        target, path = self.repository_target, self.spec.path
        # The spec's lifecycle policy is previewed on the source: its replicas hold the same versions.
        if sync:
            return repositories.sync(
                run, path, target, self.repository, self.charts, preview=not self.replica
            )
        return repositories.check(run, path, target, self.repository, preview=not self.replica)

    def title(self) -> str:
        if self.replica:
            return f"repository {self.repository} in {self.repository_target.registry.region}"
        return f"repository {self.repository}"

    def target(self) -> str:
        return f"{self.repository_target.registry.host}/{self.repository}"

    @property
    def shard_key(self) -> str:
        # A replica runs in its source repository's share, with the versions it receives.
        return f"{self.spec.target.registry.host}/{self.repository}"

    def reportinfo(self) -> tuple[Any, int | None, str]:
        where = self.spec.target.repository.where or self.spec.target.where
        return self.path, _line(where), self.title()


class ReplicationItem(MirrorItem):
    """`<spec>::replication`: the registry replicates the spec's repositories to every listed region."""

    kind = "replication"

    def __init__(self, *, spec: Spec, repositories: tuple[str, ...], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.repositories = repositories
        self.user_properties.extend([(KIND_PROPERTY, self.kind), ("registry", spec.target.registry.host)])

    def mirror(self, run: Run, sync: bool) -> Result:
        call = replication.sync_rule if sync else replication.check_rule
        return call(run, self.spec.target, self.repositories)

    def title(self) -> str:
        return "replication rule"  # one a spec; its regions are in its target, and change with the spec

    def target(self) -> str:
        assert self.spec.target.replication is not None
        destinations = ", ".join(
            f"{d.region} ({d.registry_id})" for d in self.spec.target.replication.destinations
        )
        return f"{self.spec.target.registry.host} to {destinations}"

    @property
    def shard_key(self) -> str:
        return f"replication {self.spec.path}"

    def reportinfo(self) -> tuple[Any, int | None, str]:
        assert self.spec.target.replication is not None
        return self.path, _line(self.spec.target.replication.where), "replication"


@dataclass(frozen=True)
class RegistrySetting:
    """A registry-wide setting a spec may declare (its target's `attribute`), and how it is kept."""

    name: str  # the item's name and title
    attribute: str
    check: Callable[[Run, Target], Result]
    sync: Callable[[Run, Target], Result]


REGISTRY_SETTINGS = (
    RegistrySetting(
        "managed signing", "managed_signing", registry_rules.check_signing, registry_rules.sync_signing
    ),
    RegistrySetting(
        "pull-time exclusions",
        "pull_time_exclusions",
        registry_rules.check_exclusions,
        registry_rules.sync_exclusions,
    ),
)


class RegistrySettingItem(MirrorItem):
    """`<spec>::managed signing`, `<spec>::pull-time exclusions`: a registry-wide setting holds what
    the spec declares (merged in by --sync, everything else kept)."""

    kind = "registry"

    def __init__(self, *, spec: Spec, setting: RegistrySetting, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.setting = setting
        self.user_properties.extend([(KIND_PROPERTY, self.kind), ("registry", spec.target.registry.host)])

    def mirror(self, run: Run, sync: bool) -> Result:
        call = self.setting.sync if sync else self.setting.check
        return call(run, self.spec.target)

    def title(self) -> str:
        return self.setting.name

    def target(self) -> str:
        return self.spec.target.registry.host

    @property
    def shard_key(self) -> str:
        return f"{self.setting.name} {self.spec.path}"

    def reportinfo(self) -> tuple[Any, int | None, str]:
        declared = getattr(self.spec.target, self.setting.attribute)
        return self.path, _line(declared.where), self.setting.name


class ChartNode(pytest.Collector):
    def __init__(
        self,
        *,
        spec: Spec,
        chart: ChartEntry,
        repositories: tuple[str, ...],
        pulled_in_by: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.chart = chart
        self.repositories = repositories
        self.pulled_in_by = pulled_in_by or {}  # version -> the chart versions that depend on it

    def collect(self) -> Iterator[ChartVersionItem]:
        for version in self._versions():
            planned = PlannedVersion(self.spec.path, self.spec.target, self.chart, version, self.repositories)
            yield ChartVersionItem.from_parent(
                self,
                name=version.version,
                planned=planned,
                pulled_in_by=self.pulled_in_by.get(version.version),
            )

    def _versions(self) -> tuple[VersionEntry, ...]:
        try:
            return _chart_versions(self.config, self.spec, self.chart)
        except EcrMirrorError as exc:
            raise self.CollectError(str(exc)) from None


def _chart_versions(config: pytest.Config, spec: Spec, chart: ChartEntry) -> tuple[VersionEntry, ...]:
    """The listed versions, or those a constraint selects upstream, resolved now so that
    --collect-only shows exactly what a run would touch."""
    version_range = chart.range
    if version_range is None:
        return chart.versions
    if config.getoption("ecrmirror_policy"):
        return ()  # a policy does not depend on versions: no upstream request for it
    chosen = selection.select(config.stash[RUN_KEY].run, spec.path, chart)
    return tuple(VersionEntry(v, version_range.where, version_range.line) for v in chosen)


class GitopsChartNode(pytest.Collector):
    """A chart that GitOps manifests ask for: one item per version, however many manifests ask for
    it, located at the first of them; a range resolves to what the cluster would deploy."""

    def __init__(
        self, *, spec: Spec, entries: list[ChartEntry], repositories: tuple[str, ...], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.entries = entries
        self.repositories = repositories

    def collect(self) -> Iterator[ChartVersionItem]:
        versions: dict[str, list[tuple[ChartEntry, VersionEntry]]] = {}
        for entry in self.entries:
            try:
                chosen = _chart_versions(self.config, self.spec, entry)
            except EcrMirrorError as exc:
                raise self.CollectError(str(exc)) from None
            for chosen_version in chosen:
                assert entry.gitops is not None
                located = replace(chosen_version, manifest=entry.gitops.manifest, line=entry.gitops.line)
                versions.setdefault(chosen_version.version, []).append((entry, located))
        for version, askers in versions.items():
            # A pin asks for exactly this version: it outranks a range that happens to choose it.
            entry, located = min(askers, key=lambda asker: asker[0].range is not None)
            planned = PlannedVersion(self.spec.path, self.spec.target, entry, located, self.repositories)
            asked_by = tuple(dict.fromkeys(a.gitops.asked_by for a, _ in askers if a.gitops is not None))
            pointing = tuple(dict.fromkeys(a.gitops.pointing for a, _ in askers if a.gitops is not None))
            yield ChartVersionItem.from_parent(
                self, name=version, planned=planned, asked_by=asked_by, pointing=pointing
            )


class NotMirroredItem(pytest.Item):
    """What a GitOps manifest asks for that ecrmirror does not mirror: a skip with the reason, so
    that the report shows it rather than leaving it out."""

    def __init__(self, *, not_mirrored: NotMirrored, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.not_mirrored = not_mirrored

    def runtest(self) -> None:
        pytest.skip(f"{self.not_mirrored.asked_by}: {self.not_mirrored.reason}")

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.not_mirrored.manifest, self.not_mirrored.line - 1, self.name


class ChartVersionItem(MirrorItem):
    """One chart version: audited by default, pushed when missing under --sync."""

    kind = "version"

    def __init__(
        self,
        *,
        planned: PlannedVersion,
        pulled_in_by: str | None = None,
        asked_by: tuple[str, ...] = (),
        pointing: tuple[str, ...] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.planned = planned
        self.pulled_in_by = pulled_in_by  # a dependency: the chart versions that declare it
        self.asked_by = asked_by  # GitOps objects that ask for it, at file:line
        self.user_properties.extend((ASKED_BY_PROPERTY, each) for each in asked_by)
        self.user_properties.extend((POINTING_PROPERTY, each) for each in pointing)
        self.user_properties.extend(
            [
                (KIND_PROPERTY, self.kind),
                ("registry", planned.target.registry.host),
                ("repository", planned.repository),
                ("tag", planned.tag),
            ]
        )
        if planned.chart.range is not None:
            self.user_properties.append(
                (RANGE_PROPERTY, f"{planned.chart.name} {planned.chart.range.describe()}")
            )
        if pulled_in_by is not None:
            self.user_properties.append((PULLED_IN_BY_PROPERTY, pulled_in_by))

    def mirror(self, run: Run, sync: bool) -> Result:
        return (versions.sync if sync else versions.check)(run, self.planned)

    def record(self, result: Result) -> None:
        if result.release is not None:
            self.user_properties.append(("upstream_digest", result.release.digest))
        self.user_properties.append((BYTES_PROPERTY, str(result.bytes_uploaded)))
        self.user_properties.extend(result.details)

    def title(self) -> str:
        # Identity only: GitLab keys a test case by its name, so who pulls a dependency in or asks
        # for a version (which a merge request elsewhere in the spec changes) stays out of it.
        return f"{self.planned.chart.name} {self.planned.version.version}"

    def target(self) -> str:
        return self.planned.reference

    @property
    def shard_key(self) -> str:
        return f"{self.planned.target.registry.host}/{self.planned.repository}"

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
        shown = super().repr_failure(excinfo, style)
        if not isinstance(shown, str):
            return shown
        if self.pulled_in_by is not None:
            shown += f"\ndependency of: {self.pulled_in_by}"
        if self.asked_by:
            shown += f"\nasked for by: {'; '.join(self.asked_by)}"
        return shown

    def reportinfo(self) -> tuple[Any, int | None, str]:
        version = self.planned.version
        # A version a GitOps manifest asks for sits there: a merge request shows that file and line.
        return version.manifest or self.path, version.line - 1, f"{self.planned.chart.name}@{version.version}"


class ImagesNode(pytest.Collector):
    """`<spec>::image`: the images the spec's chart versions run, one item each, and an item for
    each version whose images could not be found (its render failed, say), so that it fails."""

    def __init__(self, *, images: list[PlannedImage], not_found: list[NotFound], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.images = images
        self.not_found = not_found

    def collect(self) -> Iterator[MirrorItem]:
        for failed in self.not_found:
            yield ImagesNotFoundItem.from_parent(self, name=f"images of {failed.chart}", failed=failed)
        for planned in self.images:
            yield ImageItem.from_parent(self, name=str(planned.image), planned=planned)


class ImageItem(MirrorItem):
    """One image a chart runs: audited by default, copied byte for byte when missing under --sync."""

    kind = "image"

    def __init__(self, *, planned: PlannedImage, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.planned = planned
        self.user_properties.extend(
            [
                (KIND_PROPERTY, self.kind),
                ("registry", planned.target.registry.host),
                ("repository", planned.repository),
                ("upstream", str(planned.image)),
                *((USED_BY_PROPERTY, user) for user in planned.users),
                *(
                    (VALUES_PROPERTY, json.dumps({"chart": chart, "path": list(path), "bitnami": bitnami}))
                    for chart, path, bitnami in planned.in_values
                ),
            ]
        )

    def mirror(self, run: Run, sync: bool) -> Result:
        from ecrmirror.images import mirror as images

        return (images.sync if sync else images.check)(run, self.planned)

    def record(self, result: Result) -> None:
        self.user_properties.append((BYTES_PROPERTY, str(result.bytes_uploaded)))
        self.user_properties.extend(result.details)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
        shown = super().repr_failure(excinfo, style)
        if not isinstance(shown, str):
            return shown
        return f"{shown}\nrun by: {'; '.join(self.planned.users)}"

    def title(self) -> str:
        return str(self.planned.image)

    def target(self) -> str:
        return self.planned.reference

    @property
    def shard_key(self) -> str:
        return f"{self.planned.target.registry.host}/{self.planned.repository}"

    def reportinfo(self) -> tuple[Any, int | None, str]:
        # Not the node id's tail: pytest would show each "." of it as "::".
        return self.path, None, f"image {self.planned.image}"


class ImagesNotFoundItem(MirrorItem):
    """A chart version whose images could not be found: it fails with why (helm's own message for
    a failed render), never a silent skip that would leave its images out of the mirror."""

    kind = "image"

    def __init__(self, *, failed: NotFound, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failed = failed
        self.user_properties.append((KIND_PROPERTY, self.kind))

    def mirror(self, run: Run, sync: bool) -> Result:
        raise self.failed.error

    def title(self) -> str:
        return f"images of {self.failed.chart}"

    def target(self) -> str:
        return self.failed.where

    @property
    def shard_key(self) -> str:
        return f"images of {self.failed.chart}"

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, _line(self.failed.where), self.title()
