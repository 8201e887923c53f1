"""Which chart versions a chart entry stands for: its list, or what its constraint chooses upstream.

The step between a parsed spec and its planned versions: the items are made from it, and the
repository items ask it whether a repository would hold anything before creating it.
"""

from __future__ import annotations

from pathlib import Path

from ecrmirror import constraints
from ecrmirror.errors import UpstreamError, VersionNotFound
from ecrmirror.run import Run
from ecrmirror.spec import ChartEntry


def select(run: Run, spec_path: Path, chart: ChartEntry) -> list[str]:
    """The versions a chart entry stands for: its list, or what its constraint selects upstream.
    Worked out once per run: every version item of a constraint asks (for its note)."""
    if chart.range is None:
        return [v.version for v in chart.versions]
    return list(run.remember(("selected", spec_path, chart), lambda: tuple(_chosen(run, spec_path, chart))))


def _chosen(run: Run, spec_path: Path, chart: ChartEntry) -> list[str]:
    assert chart.range is not None
    found = run.source(spec_path, chart).versions(chart.name)
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
    for version in chosen:
        # helm would choose it, so skipping it would mirror something else than helm installs.
        problem = constraints.version_problem(version)
        if problem is not None:
            raise UpstreamError(
                f"{chart.range.where}: {chart.range.describe()} chooses {chart.name} "
                f"{constraints.shown(version)} from {chart.source_location(spec_path)}, but that "
                f"version {problem}. Add it to exclude (or narrow the constraint); nothing was pushed."
            )
    return chosen
