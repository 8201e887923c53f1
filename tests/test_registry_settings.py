"""Registry-wide settings besides replication, as users declare them: ECR's managed signing rules and
the roles whose pulls ECR does not record. Audited, merged in by --sync, others' entries kept."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import boto3
import pytest

from conftest import REGISTRY, ChartServer
from ecrmirror.emulator import Emulator

PROFILE = "arn:aws:signer:eu-west-1:123456789012:/signing-profiles/mirror"
OTHERS = "arn:aws:signer:eu-west-1:123456789012:/signing-profiles/platform"
AUDITOR = "arn:aws:iam::123456789012:role/ecrmirror-audit"


def ecr(emulator: Emulator) -> Any:
    return boto3.client("ecr", region_name="eu-west-1", endpoint_url=emulator.url)


def spec(server: ChartServer, target_extra: str) -> str:
    return (
        f"target:\n  registry: {REGISTRY}\n  prefix: helm\n  create_repositories: true\n{target_extra}"
        f"charts:\n  - name: app\n    repo: {server.url}\n    versions: ['1.0.0']\n"
    )


@pytest.fixture
def upstream(chart_server: ChartServer) -> ChartServer:
    chart_server.add("app", "1.0.0")
    chart_server.publish()
    return chart_server


def test_a_declared_signing_rule_is_merged_keeping_others_and_each_version_reports_its_status(
    upstream: ChartServer, emulator: Emulator, write_spec, run, pytester: pytest.Pytester
) -> None:
    # given a registry whose signing configuration already holds another team's rule
    ecr(emulator).put_signing_configuration(signingConfiguration={"rules": [{"signingProfileArn": OTHERS}]})
    write_spec(
        spec(upstream, f"  managed_signing:\n    - profile: {PROFILE}\n      repositories: ['helm/*']\n")
    )

    # when the audit runs first, then --sync, then the audit again
    before = run("--check-only", "-v", "mirror.yaml")
    synced = run("--sync", "-v", "mirror.yaml")
    after = run("--check-only", "-v", "--junitxml=report.xml", "mirror.yaml")

    # then the audit names the missing rule, --sync adds it beside the other team's
    before.stdout.fnmatch_lines(
        [
            "mirror.yaml::managed signing MISSING*",
            f"*signing configuration lacks {PROFILE} for helm/[*]: *`pytest --sync` adds the rules*",
        ]
    )
    synced.stdout.fnmatch_lines(["mirror.yaml::managed signing CREATED*", "1 registry settings: 1 created*"])
    rules = ecr(emulator).get_signing_configuration()["signingConfiguration"]["rules"]
    assert [r["signingProfileArn"] for r in rules] == [OTHERS, PROFILE]
    # and each version says what ECR's signing did with it: a chart is not a container image
    after.assert_outcomes(passed=3)
    after.stdout.fnmatch_lines(["mirror.yaml::managed signing PRESENT*"])
    after.stdout.fnmatch_lines(
        ["note: mirror.yaml::managed signing: ECR's managed signing signs container images only*"]
    )
    cases = {c.get("name"): c for c in ET.parse(pytester.path / "report.xml").iter("testcase")}
    properties = {p.get("name"): p.get("value") for p in cases["app 1.0.0"].iter("property")}
    assert properties["managed_signing"] == "none (ECR signs container images only)"


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        (
            f"  managed_signing:\n    - profile: {PROFILE.replace('eu-west-1', 'us-east-1')}\n",
            ["mirror.yaml:6: the signing profile * is in us-east-1, but the registry is in eu-west-1*"],
        ),
        (
            "  managed_signing:\n    - profile: mirror\n",
            ["mirror.yaml:6: 'mirror' is not a signing profile ARN*", "*fix: ECR's PutSigningConfiguration*"],
        ),
        (
            "  pull_time_exclusions:\n    - arn:aws:iam::123456789012:user/ci\n",
            ["mirror.yaml:6: * is not an IAM role ARN", "*fix: ECR excludes roles only*"],
        ),
    ],
    ids=["profile in another region", "not an ARN", "a user"],
)
def test_a_registry_setting_ecr_would_refuse_fails_collection_naming_its_line(
    upstream: ChartServer, write_spec, run, declared: str, expected: list[str]
) -> None:
    write_spec(spec(upstream, declared))

    result = run("--check-only", "mirror.yaml")

    result.stdout.fnmatch_lines(expected)
    assert "Traceback" not in result.stdout.str()


def test_a_declared_pull_time_exclusion_is_audited_and_registered_once(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    write_spec(spec(upstream, f"  pull_time_exclusions:\n    - {AUDITOR}\n"))

    before = run("--check-only", "-v", "mirror.yaml")
    synced = run("--sync", "-v", "mirror.yaml")
    again = run("--sync", "-v", "mirror.yaml")

    before.stdout.fnmatch_lines(
        [
            "mirror.yaml::pull-time exclusions MISSING*",
            f"*ECR records pulls by {AUDITOR}*`pytest --sync` registers the exclusion*",
        ]
    )
    synced.stdout.fnmatch_lines(["mirror.yaml::pull-time exclusions CREATED*"])
    again.stdout.fnmatch_lines(["mirror.yaml::pull-time exclusions PRESENT*"])
    assert ecr(emulator).list_pull_time_update_exclusions()["pullTimeUpdateExclusions"] == [AUDITOR]
    assert [r.action for r in emulator.writes()].count("RegisterPullTimeUpdateExclusion") == 1
