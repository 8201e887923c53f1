"""`with_dependencies`: the charts a mirrored chart version depends on, at the versions helm would pick.

Each dependency chart becomes a chart entry of its own, so that its versions are items that
versions.py checks and syncs like any other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ecrmirror import constraints, versions
from ecrmirror.errors import SpecError, UpstreamError, VersionNotFound
from ecrmirror.run import Run
from ecrmirror.sources import NO_ACCESS
from ecrmirror.spec import ChartEntry, Spec, VersionEntry


@dataclass(frozen=True)
class Dependency:
    """A chart that a mirrored chart version declares, to be mirrored next to it."""

    name: str
    repository: str  # an http(s) or oci:// URL
    version: str
    pulled_in_by: str  # "<chart> <version>"


def declared(run: Run, spec_path: Path, chart: ChartEntry, version: str) -> list[Dependency]:
    """The charts `chart` at `version` depends on from an http(s) or oci repository, each at
    the version helm would pick: an exact match, else the newest the constraint allows."""
    found: list[Dependency] = []
    for entry in run.source(spec_path, chart).metadata(chart.name, version).get("dependencies") or []:
        if not isinstance(entry, dict):
            continue
        repository = str(entry.get("repository") or "")
        if not re.match(r"^(https?|oci)://", repository):
            continue  # vendored in charts/ (empty or file://), or a local repo alias: inside the archive
        name, wanted = str(entry.get("name", "")), str(entry.get("version") or "*")
        available = run.sources.get(repository, NO_ACCESS).versions(name)
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


def entries(run: Run, spec: Spec) -> list[tuple[ChartEntry, dict[str, str]]]:
    """One chart entry per dependency chart, with the chart versions that pulled in each of its
    versions. A version the spec lists already is not repeated."""
    listed = {(chart.name, chart.repo): {v.version for v in chart.versions} for chart in spec.charts}
    wanted: dict[tuple[str, str], dict[str, list[str]]] = {}
    parents: dict[tuple[str, str], ChartEntry] = {}
    for chart in spec.charts:
        if not chart.with_dependencies:
            continue
        for version in versions.select(run, spec.path, chart):
            for dependency in declared(run, spec.path, chart, version):
                key = (dependency.name, dependency.repository)
                if dependency.version in listed.get(key, set()):
                    continue
                clash = next(
                    (c for c in spec.charts if c.name == dependency.name and c.repo != dependency.repository),
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
                wanted.setdefault(key, {}).setdefault(dependency.version, []).append(dependency.pulled_in_by)
    found: list[tuple[ChartEntry, dict[str, str]]] = []
    for (name, repository), chosen in wanted.items():
        parent = parents[(name, repository)]
        line = int(parent.where.rpartition(":")[2] or 1)
        entry = ChartEntry(
            name=name,
            repo=repository,
            versions=tuple(VersionEntry(v, parent.where, line) for v in chosen),
            where=parent.where,
        )
        found.append((entry, {v: ", ".join(by) for v, by in chosen.items()}))
    return found
