"""`versions:` as a constraint: resolved upstream at collection, with helm's own choice as the oracle."""

from __future__ import annotations

import re
import subprocess

import pytest
from tools import require_tool

from conftest import REGISTRY, ChartServer
from ecrmirror.constraints import parse_constraint, select
from ecrmirror.emulator import Emulator

UPSTREAM_VERSIONS = [
    "6.9.9",
    "7.0.0",
    "7.1.0",
    "7.1.1",
    "7.2.0+build.3",
    "7.9.1",
    "7.9.2",
    "7.10.0-rc.1",
    "8.0.0-beta.1",
    "8.0.0",
    "8.1.0+meta",
]


@pytest.fixture
def upstream(chart_server: ChartServer) -> ChartServer:
    for version in UPSTREAM_VERSIONS:
        chart_server.add("gitlab", version)
    chart_server.publish()
    return chart_server


def range_spec(server: ChartServer, versions: str, options: str = "") -> str:
    return (
        f"target:\n  registry: {REGISTRY}\n  prefix: helm\n  create_repositories: true\n"
        f"charts:\n  - name: gitlab\n    repo: {server.url}\n    versions: '{versions}'\n{options}"
    )


def collected(result: pytest.RunResult) -> list[str]:
    return [line.rsplit("::", 1)[1] for line in result.outlines if line.startswith("mirror.yaml::gitlab::")]


def test_collect_only_lists_exactly_what_the_constraint_selects_and_says_how(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    write_spec(range_spec(upstream, ">=7.1.0 <8.0.0", "    latest: 3\n    exclude: ['7.9.1']\n"))

    result = run("--sync", "--collect-only", "-q", "mirror.yaml")

    assert collected(result) == ["7.9.2", "7.2.0+build.3", "7.1.1"]
    result.stdout.fnmatch_lines(
        [
            "ecrmirror: mirror.yaml: gitlab '>=7.1.0 <8.0.0' except 7.9.1, latest 3 "
            "resolves to 7.9.2, 7.2.0+build.3, 7.1.1"
        ]
    )
    assert upstream.requests == ["/index.yaml"]
    assert emulator.requests == []


def test_the_run_summary_says_how_each_constraint_resolved(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    write_spec(range_spec(upstream, "^8", "    include_prereleases: true\n"))

    result = run("--sync", "-v", "mirror.yaml")

    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "mirror.yaml::gitlab::8.1.0+meta PUSHED*",
            # 8.0.0-beta.1 precedes 8.0.0, the floor of ^8, even with prereleases
            "mirror.yaml: gitlab '^8' with prereleases resolved to 8.1.0+meta, 8.0.0",
        ]
    )
    assert upstream.requests.count("/index.yaml") == 1  # collection and run share one download


def test_a_constraint_matching_nothing_names_what_exists(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    write_spec(range_spec(upstream, "~9.1"))

    result = run("--check-only", "mirror.yaml")

    result.assert_outcomes(passed=0, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*mirror.yaml:8: no version of gitlab in * matches '~9.1'; it has 8.1.0+meta, 8.0.0, "
            "8.0.0-beta.1, 7.10.0-rc.1, 7.9.2*or set include_prereleases: true."
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")


# helm picks the newest version a constraint allows: that pick must be our first choice. (helm's
# --devel applies only when no version is given, so include_prereleases has no helm oracle; a
# constraint that names a prerelease is how helm users ask for them.)
HELM_TABLE = [
    ">=7.1.0 <8.0.0",
    "~7.9",
    "^7",
    "7.x",
    "7",
    ">=7.0.0-0 <8.0.0",  # names a prerelease: 7.10.0-rc.1 qualifies
    ">=8.0.0-0",
    "<8.0.0",
    "~7.2.0",  # 7.2.0+build.3: build metadata
    "^8.0.0",
    "8.1.0",  # = ignores build metadata: 8.1.0+meta
    ">6.9.9 <7.1.0 || 8.0.x",
    "7.1.0 - 7.9.1",
    "!=8.1.0",
]


@pytest.mark.parametrize("constraint", HELM_TABLE)
def test_the_newest_version_we_select_is_the_one_helm_pulls(upstream: ChartServer, constraint: str) -> None:
    helm = require_tool("helm", "run .ci/run, or put a helm >= 3.8 binary on PATH")
    command = [helm, "show", "chart", "--repo", upstream.url, "gitlab", "--version", constraint]
    shown = subprocess.run(command, capture_output=True, text=True, check=True)
    helms_pick = re.search(r"^version: (\S+)$", shown.stdout, re.MULTILINE)

    ours = select(UPSTREAM_VERSIONS, parse_constraint(constraint))

    assert helms_pick is not None, shown.stdout
    assert ours[0] == helms_pick[1]
