"""`with_dependencies`: the charts a mirrored chart version depends on, at the versions helm would pick.

Each dependency chart becomes a chart entry of its own, so that its versions are items that
versions.py checks and syncs like any other. A dependency's name and version come from an
upstream's Chart.yaml: they meet the rules a spec's chart names and versions meet, or collection
fails naming the spec entry and the chart version that declares them (nothing is pushed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ecrmirror import constraints, ecr_rules, selection
from ecrmirror.errors import SpecError, UpstreamError, VersionNotFound
from ecrmirror.run import Run
from ecrmirror.sources import NO_ACCESS
from ecrmirror.spec import ChartEntry, Spec, Target, VersionEntry
from ecrmirror.spec.charts import CHART_NAME


@dataclass(frozen=True)
class Dependency:
    """A chart that a mirrored chart version declares, to be mirrored next to it."""

    name: str
    repository: str  # an http(s) or oci:// URL
    version: str
    pulled_in_by: str  # "<chart> <version>"


def declared(run: Run, spec: Spec, chart: ChartEntry, version: str) -> list[Dependency]:
    """The charts `chart` at `version` depends on from an http(s) or oci repository, each at
    the version helm would pick: an exact match, else the newest the constraint allows."""
    found: list[Dependency] = []
    for entry in run.source(spec.path, chart).metadata(chart.name, version).get("dependencies") or []:
        if not isinstance(entry, dict):
            continue
        repository = str(entry.get("repository") or "")
        if not re.match(r"^(https?|oci)://", repository):
            continue  # vendored in charts/ (empty or file://), or a local repo alias: inside the archive
        name, wanted = str(entry.get("name", "")), str(entry.get("version") or "*")
        problem = _name_problem(spec.target, name)
        if problem is not None:  # before the name goes into a request
            raise UpstreamError(
                f"{chart.where}: {chart.name} {version} depends on a chart named "
                f"{constraints.shown(name)} from {repository}, which {problem}. Nothing was pushed: "
                f"mirror {chart.name} without with_dependencies, or ask its publisher to fix the name."
            )
        available = run.sources.get(repository, NO_ACCESS).versions(name)
        if wanted in available:
            chosen = wanted
        else:
            try:
                matches = constraints.select(available, constraints.parse_constraint(wanted))
            except constraints.ConstraintError as exc:
                raise UpstreamError(
                    f"{chart.where}: {chart.name} {version} declares dependency {name} "
                    f"{constraints.shown(wanted)}: {exc}"
                ) from None
            if not matches:
                raise VersionNotFound(
                    f"{chart.where}: {chart.name} {version} depends on {name} "
                    f"{constraints.shown(wanted)} from {repository}, which has no such version (newest: "
                    f"{', '.join(constraints.newest_first(available)[:5])})"
                )
            chosen = matches[0]
        problem = constraints.version_problem(chosen)
        if problem is not None:
            raise UpstreamError(
                f"{chart.where}: {chart.name} {version} depends on {name} {constraints.shown(chosen)} "
                f"from {repository}, but that version {problem}. Nothing was pushed: mirror "
                f"{chart.name} without with_dependencies, or ask its publisher to fix the version."
            )
        found.append(Dependency(name, repository, chosen, f"{chart.name} {version}"))
    return found


def _name_problem(target: Target, name: str) -> str | None:
    """Why a dependency's name cannot be mirrored as the spec's own chart names are: it is a chart
    name, and its repository (the target's prefix and the name) one that ECR takes."""
    if not CHART_NAME.fullmatch(name):
        return "is not a chart name (lowercase letters and digits, with . _ - between them)"
    repository = target.repository_for(name)
    problem = ecr_rules.repository_name_problem(repository)
    if problem is not None:
        return f"cannot be an ECR repository name as {constraints.shown(repository)}: {problem}"
    return None


def entries(run: Run, spec: Spec) -> list[tuple[ChartEntry, dict[str, str]]]:
    """One chart entry per dependency chart, with the chart versions that pulled in each of its
    versions. A version the spec lists already is not repeated."""
    listed = {(chart.name, chart.repo): {v.version for v in chart.versions} for chart in spec.charts}
    wanted: dict[tuple[str, str], dict[str, list[str]]] = {}
    parents: dict[tuple[str, str], ChartEntry] = {}
    for chart in spec.charts:
        if not chart.with_dependencies:
            continue
        for version in selection.select(run, spec.path, chart):
            for dependency in declared(run, spec, chart, version):
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
