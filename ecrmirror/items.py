"""Spec files as pytest collectors, chart versions as pytest items, outcomes as pytest reports."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ecrmirror.errors import CredentialsMissing, EcrMirrorError, SpecError
from ecrmirror.mirror import Endpoints, Mirror, Outcome, PlannedVersion, Result
from ecrmirror.spec import ChartEntry, Spec, load_spec

OUTCOME_PROPERTY = "outcome"
BYTES_PROPERTY = "bytes_uploaded"


@dataclass
class MirrorRun:
    """What the chart-version items of one pytest process share: the mode, and the Mirror,
    made on first use so that pytest runs without spec files pay nothing for it."""

    sync: bool
    endpoints: Endpoints
    _mirror: Mirror | None = field(default=None, init=False)

    @property
    def mirror(self) -> Mirror:
        if self._mirror is None:
            self._mirror = Mirror(self.endpoints, Path(tempfile.mkdtemp(prefix="ecrmirror-")))
        return self._mirror

    def close(self) -> None:
        if self._mirror is not None:
            shutil.rmtree(self._mirror.workdir, ignore_errors=True)


RUN_KEY = pytest.StashKey[MirrorRun]()


class OutcomeFailure(Exception):
    """A version that is MISSING or DIFFERS: an audit finding, not a crash."""

    def __init__(self, result: Result) -> None:
        super().__init__(f"{result.outcome.value}: {result.message}")
        self.result = result


class SpecFile(pytest.File):
    """A mirror spec: collects one node per chart, each holding one item per version."""

    def collect(self) -> Iterator[ChartNode]:
        try:
            spec = load_spec(self.path, display_path=_display_path(self))
        except SpecError as exc:
            raise self.CollectError(str(exc)) from None
        for chart in spec.charts:
            yield ChartNode.from_parent(self, name=chart.name, spec=spec, chart=chart)


def _display_path(node: pytest.File) -> str:
    """The spec's path as the user would type it: relative to where pytest was invoked."""
    relative = os.path.relpath(node.path, node.config.invocation_params.dir)
    return str(node.path) if relative.startswith("..") else relative


class ChartNode(pytest.Collector):
    def __init__(self, *, spec: Spec, chart: ChartEntry, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.chart = chart

    def collect(self) -> Iterator[ChartVersionItem]:
        for version in self.chart.versions:
            planned = PlannedVersion(self.spec.path, self.spec.target, self.chart, version)
            yield ChartVersionItem.from_parent(self, name=version.version, planned=planned)


class ChartVersionItem(pytest.Item):
    """One chart version: audited by default, pushed when missing under --sync."""

    def __init__(self, *, planned: PlannedVersion, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.planned = planned
        self.user_properties.extend(
            [
                ("registry", planned.target.registry.host),
                ("repository", planned.repository),
                ("tag", planned.tag),
            ]
        )

    def runtest(self) -> None:
        run = self.config.stash[RUN_KEY]
        try:
            result = run.mirror.sync(self.planned) if run.sync else run.mirror.check(self.planned)
        except CredentialsMissing:
            self.session.shouldstop = "no AWS credentials"  # every other item would say the same
            raise
        self.user_properties.extend(
            [
                ("upstream_digest", result.release.digest),
                (OUTCOME_PROPERTY, result.outcome.value),
                (BYTES_PROPERTY, str(result.bytes_uploaded)),
            ]
        )
        if not result.outcome.ok:
            raise OutcomeFailure(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
        if isinstance(excinfo.value, OutcomeFailure | EcrMirrorError):
            return f"{self.planned.chart.name} {self.planned.version.version}: {excinfo.value}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        version = self.planned.version
        return self.path, version.line - 1, f"{self.planned.chart.name}@{version.version}"


def report_outcome(report: pytest.TestReport) -> Outcome | None:
    for name, value in report.user_properties:
        if name == OUTCOME_PROPERTY:
            return Outcome(value)
    return None


def report_bytes(report: pytest.TestReport) -> int:
    for name, value in report.user_properties:
        if name == BYTES_PROPERTY:
            return int(str(value))
    return 0
