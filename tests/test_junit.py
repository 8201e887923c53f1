"""The JUnit file as GitLab reads it in a merge request: name, classname, file, and the failure body."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import boto3
import pytest
from gitlab import gitlab_rows

from conftest import REGISTRY, ChartServer
from ecrmirror.emulator import Emulator

TARGET = f"{REGISTRY}/helm/gitlab"


def spec(server: ChartServer, versions: list[str]) -> str:
    return (
        f"target:\n  registry: {REGISTRY}\n  prefix: helm\n  create_repositories: true\n"
        f"  repository:\n    image_tag_mutability: MUTABLE\n"
        f"charts:\n  - name: gitlab\n    repo: {server.url}\n    versions: {json.dumps(versions)}\n"
    )


@pytest.fixture
def held_elsewhere(chart_server: ChartServer, emulator: Emulator) -> ChartServer:
    """Upstream has gitlab 7.1.1 to 7.1.3; ECR's tag 7.1.2 already holds something else."""
    for version in ("7.1.1", "7.1.2", "7.1.3"):
        chart_server.add("gitlab", version)
    chart_server.publish()
    ecr = boto3.client("ecr", region_name="eu-west-1", endpoint_url=emulator.url)
    ecr.create_repository(repositoryName="helm/gitlab", imageTagMutability="MUTABLE")
    ecr.put_image(
        repositoryName="helm/gitlab",
        imageTag="7.1.2",
        imageManifest=json.dumps({"schemaVersion": 2, "layers": []}),
        imageManifestMediaType="application/vnd.oci.image.manifest.v1+json",
    )
    return chart_server


@pytest.mark.parametrize("family", ["xunit2", "xunit1"])
def test_failing_rows_name_chart_version_target_and_reason_with_the_spec_as_file(
    held_elsewhere: ChartServer, write_spec, run, pytester: pytest.Pytester, family: str
) -> None:
    # given a sync that pushes 7.1.1 and finds 7.1.2 held by other content
    write_spec(spec(held_elsewhere, ["7.1.1", "7.1.2"]))
    family_option = [] if family == "xunit2" else ["-o", f"junit_family={family}"]  # xunit2: pytest's default
    run("--sync", "--junitxml=sync.xml", *family_option, "mirror.yaml").assert_outcomes(passed=2, failed=1)
    # and an audit after 7.1.3 joined the spec
    write_spec(spec(held_elsewhere, ["7.1.1", "7.1.2", "7.1.3"]))
    run("--check-only", "--junitxml=audit.xml", *family_option, "mirror.yaml").assert_outcomes(
        passed=2, failed=2
    )

    synced, audited = gitlab_rows(pytester.path / "sync.xml"), gitlab_rows(pytester.path / "audit.xml")

    # then every row has the spec as classname (the dialog's title) and file (the link)
    assert sorted(synced) == ["gitlab 7.1.1", "gitlab 7.1.2", "repository helm/gitlab"]
    assert sorted(audited) == ["gitlab 7.1.1", "gitlab 7.1.2", "gitlab 7.1.3", "repository helm/gitlab"]
    for row in [*synced.values(), *audited.values()]:
        assert (row["classname"], row["file"]) == ("mirror.yaml", "mirror.yaml")
    # and the pushed version passes, while each failing row says what, where, why and what to do
    assert synced["gitlab 7.1.1"]["status"] == "success"
    differs = synced["gitlab 7.1.2"]
    assert differs["status"] == "failed"
    assert differs["body"].splitlines()[0] == f"DIFFERS gitlab 7.1.2: {TARGET}:7.1.2"
    assert "holds no Helm chart layer" in differs["body"]
    assert "ecrmirror never overwrites a tag" in differs["body"]
    missing = audited["gitlab 7.1.3"]
    assert missing["status"] == "failed"
    assert missing["body"].splitlines() == [
        f"MISSING gitlab 7.1.3: {TARGET}:7.1.3",
        f"{TARGET}:7.1.3 is not in ECR; `pytest --sync` pushes it",
    ]


def test_node_ids_stay_and_work_with_k_and_lf(
    held_elsewhere: ChartServer, write_spec, run, pytester: pytest.Pytester
) -> None:
    write_spec(spec(held_elsewhere, ["7.1.1"]))
    run("--sync", "mirror.yaml").assert_outcomes(passed=2)
    write_spec(spec(held_elsewhere, ["7.1.1", "7.1.2", "7.1.3"]))
    # with the cache provider, unlike the other runs here: --lf needs it
    first = pytester.runpytest_inprocess("-p", "ecrmirror.plugin", "--check-only", "mirror.yaml")
    first.assert_outcomes(passed=2, failed=2)

    again = pytester.runpytest_inprocess(
        "-p", "ecrmirror.plugin", "--check-only", "--lf", "-v", "mirror.yaml"
    )
    chosen = pytester.runpytest_inprocess(
        "-p", "ecrmirror.plugin", "--check-only", "-v", "-k", "7.1.3", "mirror.yaml"
    )

    again.assert_outcomes(failed=2)
    again.stdout.fnmatch_lines(["mirror.yaml::gitlab::7.1.2 DIFFERS*", "mirror.yaml::gitlab::7.1.3 MISSING*"])
    chosen.assert_outcomes(failed=1)
    chosen.stdout.fnmatch_lines(["mirror.yaml::gitlab::7.1.3 MISSING*"])


def test_a_spec_that_cannot_be_read_is_a_row_with_the_spec_as_file_also_under_xdist(
    chart_server: ChartServer, emulator: Emulator, write_spec, run_subprocess, pytester: pytest.Pytester
) -> None:
    write_spec(spec(chart_server, ["1.0.0"]).replace("versions:", "verions:"), name="broken")

    result = run_subprocess("-p", "xdist.plugin", "-n", "2", "--check-only", "--junitxml=report.xml", ".")

    result.assert_outcomes(errors=1)
    rows = gitlab_rows(pytester.path / "report.xml")
    assert list(rows) == ["broken.yaml"]
    row = rows["broken.yaml"]
    assert (row["classname"], row["file"], row["status"]) == ("broken.yaml", "broken.yaml", "error")
    assert row["body"].startswith("broken.yaml:10: unknown key 'verions' in a chart entry")


def test_the_project_s_own_tests_keep_pytest_s_names(pytester: pytest.Pytester, run) -> None:
    pytester.makepyfile(test_plain="def test_one():\n    assert False\n")

    run("--junitxml=report.xml", "test_plain.py").assert_outcomes(failed=1)

    case = next(ET.parse(pytester.path / "report.xml").getroot().iter("testcase"))
    assert (case.get("classname"), case.get("name")) == ("test_plain", "test_one")
