"""A test case keeps its GitLab identity across merge requests: its key changes only with the item.

GitLab's merge request widget tells new failures from existing ones by a key, the SHA-256 of
"<testsuite name>_<classname>_<name>" (Gitlab::Ci::Reports::TestCase#initialize). Each test here
runs a spec as the default branch has it and as a merge request changes it elsewhere, and checks
that every item both runs hold has the same key in both, computed as GitLab computes it.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import REGISTRY, ChartServer
from ecrmirror.emulator import Emulator


def gitlab_keys(report: Path) -> dict[str, str]:
    """name -> GitLab's key of each test case, for the suite it is in."""
    keys: dict[str, str] = {}
    for suite in ET.parse(report).getroot().iter("testsuite"):
        for case in suite.iter("testcase"):
            text = f"{suite.get('name')}_{case.get('classname')}_{case.get('name')}"
            keys[str(case.get("name"))] = hashlib.sha256(text.encode()).hexdigest()
    return keys


def assert_same_keys(before: dict[str, str], after: dict[str, str]) -> None:
    both = before.keys() & after.keys()
    assert both, "the two runs share no test case"
    assert {name: before[name] for name in both} == {name: after[name] for name in both}


@pytest.fixture
def parents(chart_server: ChartServer) -> ChartServer:
    """app 1.0.0, 1.1.0 and 1.2.0, each depending on redis ^17.1.0 (17.3.1, as helm picks)."""
    chart_server.add("redis", "17.3.1")
    dependencies = [{"name": "redis", "version": "^17.1.0", "repository": chart_server.url}]
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        chart_server.add("app", version, dependencies=dependencies)
    chart_server.publish()
    return chart_server


def spec(server: ChartServer, versions: str, head: str = "") -> str:
    return (
        f"{head}target:\n  registry: {REGISTRY}\n  prefix: mirror\n  create_repositories: true\n"
        "  replication:\n    regions: [eu-central-1]\n"
        f"charts:\n  - name: app\n    repo: {server.url}\n    versions: {versions}\n"
        "    with_dependencies: true\n"
    )


@pytest.mark.parametrize(
    ("change", "default_branch", "merge_request"),
    [
        ("adds a parent of the dependency", "['1.0.0']", "['1.0.0', '1.1.0']"),
        ("bumps the parent", "['1.0.0', '1.1.0']", "['1.0.0', '1.2.0']"),
        ("moves the spec's lines", "['1.0.0', '1.1.0']", "['1.0.0', '1.1.0']"),
        ("adds a replication region", "['1.0.0']", "['1.0.0']"),
    ],
)
def test_a_merge_request_elsewhere_in_the_spec_keeps_every_items_key(
    parents: ChartServer,
    emulator: Emulator,
    write_spec,
    run,
    pytester: pytest.Pytester,
    change: str,
    default_branch: str,
    merge_request: str,
) -> None:
    # given the default branch's report
    write_spec(spec(parents, default_branch))
    run("--check-only", "--junitxml=main.xml", "mirror.yaml")

    # when a merge request changes the spec elsewhere
    text = spec(
        parents,
        merge_request,
        head="# mirrored for the platform team\n\n" * (change == "moves the spec's lines"),
    )
    if change == "adds a replication region":
        text = text.replace("[eu-central-1]", "[eu-central-1, us-east-1]")
    write_spec(text)
    run("--check-only", "--junitxml=mr.xml", "mirror.yaml")

    # then every item both runs hold keeps its key: redis 17.3.1, app 1.0.0, the repositories, the rule
    before, after = gitlab_keys(pytester.path / "main.xml"), gitlab_keys(pytester.path / "mr.xml")
    for name in ("redis 17.3.1", "app 1.0.0", "repository mirror/redis", "replication rule"):
        assert name in before
        assert name in after
    assert_same_keys(before, after)


def test_a_dependency_is_named_for_itself_and_says_who_pulls_it_in_elsewhere(
    parents: ChartServer, emulator: Emulator, write_spec, run, pytester: pytest.Pytester
) -> None:
    write_spec(spec(parents, "['1.0.0', '1.1.0']"))

    result = run("--check-only", "--junitxml=report.xml", "mirror.yaml")

    cases = {c.get("name"): c for c in ET.parse(pytester.path / "report.xml").iter("testcase")}
    assert not [name for name in cases if "dependency" in str(name)]
    case = cases["redis 17.3.1"]
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert properties["pulled_in_by"] == "app 1.0.0, app 1.1.0"
    failure = case.find("failure")
    assert failure is not None
    assert "dependency of: app 1.0.0, app 1.1.0" in (failure.text or "")
    result.stdout.fnmatch_lines(["pulled in: redis::17.3.1 (dependency of app 1.0.0, app 1.1.0)"])


def test_an_image_keeps_its_key_when_another_chart_runs_it(
    chart_server: ChartServer, emulator: Emulator, write_spec, run, pytester: pytest.Pytester
) -> None:
    # given an image that one chart runs (its upstream unreachable: the key does not need it)
    chart_server.add("web", "1.0.0")
    chart_server.add("api", "2.0.0")
    chart_server.publish()
    image = "127.0.0.1:9/team/base:1.0"

    def entry(name: str, version: str) -> str:
        return (
            f"  - name: {name}\n    repo: {chart_server.url}\n    versions: ['{version}']\n"
            f"    images: {{annotations: false, extra: ['{image}']}}\n"
        )

    head = f"target:\n  registry: {REGISTRY}\n  prefix: mirror\ncharts:\n"
    write_spec(head + entry("web", "1.0.0"))
    run("--check-only", "--junitxml=main.xml", "mirror.yaml")

    # when a merge request adds a second chart that runs it
    write_spec(head + entry("web", "1.0.0") + entry("api", "2.0.0"))
    run("--check-only", "--junitxml=mr.xml", "mirror.yaml")

    # then the image's test case keeps its key
    before, after = gitlab_keys(pytester.path / "main.xml"), gitlab_keys(pytester.path / "mr.xml")
    assert image in before
    assert_same_keys(before, after)
