"""ECR's archive storage class and pull times, as users meet them: a lifecycle rule archives mirrored
versions, the audit says so, --sync restores them; audits read metadata, so they are not pulls."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from conftest import REGISTRY, ChartServer
from ecrmirror.emulator import Emulator

DAY = 24 * 3600
# The owner's rule: versions nobody pulled for 30 days go to the archive class.
ARCHIVE_UNPULLED = json.dumps(
    {
        "rules": [
            {
                "rulePriority": 1,
                "description": "archive what nobody pulls",
                "selection": {
                    "tagStatus": "any",
                    "countType": "sinceImagePulled",
                    "countUnit": "days",
                    "countNumber": 30,
                },
                "action": {"type": "transition", "targetStorageClass": "archive"},
            }
        ]
    }
)


def spec(server: ChartServer, extra: str = "", chart_extra: str = "") -> str:
    return (
        f"target:\n  registry: {REGISTRY}\n  prefix: helm\n  create_repositories: true\n{extra}"
        f"charts:\n  - name: app\n    repo: {server.url}\n    versions: ['1.0.0', '1.1.0']\n{chart_extra}"
    )


def ecr(emulator: Emulator) -> Any:
    return boto3.client("ecr", region_name="eu-west-1", endpoint_url=emulator.url)


def details(emulator: Emulator) -> dict[str, dict[str, Any]]:
    """tag -> DescribeImages' detail, whatever the storage class."""
    answer = ecr(emulator).describe_images(repositoryName="helm/app", filter={"imageStatus": "ANY"})
    return {tag: d for d in answer["imageDetails"] for tag in d.get("imageTags") or []}


def archive_by_lifecycle_rule(emulator: Emulator) -> None:
    """The owner's lifecycle rule, and 31 days in which nobody pulls."""
    ecr(emulator).put_lifecycle_policy(repositoryName="helm/app", lifecyclePolicyText=ARCHIVE_UNPULLED)
    emulator.app.state.advance(31 * DAY)


@pytest.fixture
def upstream(chart_server: ChartServer) -> ChartServer:
    chart_server.add("app", "1.0.0")
    chart_server.add("app", "1.1.0")
    chart_server.publish()
    return chart_server


def test_a_version_a_lifecycle_rule_archived_fails_the_audit_and_sync_restores_it_without_a_push(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    # given two mirrored versions that the owner's lifecycle rule moved to the archive class
    write_spec(spec(upstream))
    run("--sync", "mirror.yaml").assert_outcomes(passed=3)
    archive_by_lifecycle_rule(emulator)
    assert {tag: d["imageStatus"] for tag, d in details(emulator).items()} == {
        "1.0.0": "ARCHIVED",
        "1.1.0": "ARCHIVED",
    }
    emulator.app.requests.clear()

    # when the scheduled audit runs
    audit = run("--check-only", "-v", "mirror.yaml")

    # then each version is ARCHIVED (present, not pullable), not MISSING, with what to do
    audit.assert_outcomes(passed=1, failed=2)
    audit.stdout.fnmatch_lines(
        [
            "mirror.yaml::app::1.0.0 ARCHIVED*",
            "*helm/app:1.0.0 is in ECR's archive storage class*ECR answers a pull of it 404*"
            "`pytest --sync` restores it (UpdateImageStorageClass, nothing re-pushed)*`archived: accept`*",
        ]
    )
    assert emulator.writes() == []

    # when --sync runs: each version is restored, never pushed again
    emulator.app.requests.clear()
    restore = run("--sync", "-v", "mirror.yaml")
    restore.assert_outcomes(passed=3)
    restore.stdout.fnmatch_lines(["mirror.yaml::app::1.0.0 RESTORING*", "mirror.yaml::app::1.1.0 RESTORING*"])
    assert sorted(r.action for r in emulator.writes()) == ["UpdateImageStorageClass"] * 2
    assert {d["imageStatus"] for d in details(emulator).values()} == {"ACTIVATING"}

    # then the audit says RESTORING (a passing note) until ECR says ACTIVE, then PRESENT
    run("--check-only", "-v", "mirror.yaml").stdout.fnmatch_lines(["mirror.yaml::app::1.0.0 RESTORING*"])
    emulator.app.state.advance(emulator.app.state.restore_delay + 1)
    done = run("--check-only", "-v", "mirror.yaml")
    done.assert_outcomes(passed=3)
    done.stdout.fnmatch_lines(["mirror.yaml::app::1.0.0 PRESENT*", "mirror.yaml::app::1.1.0 PRESENT*"])


@pytest.mark.parametrize(
    ("extra", "chart_extra"),
    [("  archived: accept\n", ""), ("", "    archived: accept\n")],
    ids=["on the target", "on the chart"],
)
def test_a_spec_that_accepts_archived_versions_passes_them_named_as_archived_and_sync_leaves_them(
    upstream: ChartServer, emulator: Emulator, write_spec, run, extra: str, chart_extra: str
) -> None:
    write_spec(spec(upstream, extra, chart_extra))
    run("--sync", "mirror.yaml").assert_outcomes(passed=3)
    archive_by_lifecycle_rule(emulator)
    emulator.app.requests.clear()

    audit = run("--check-only", "-v", "mirror.yaml")
    synced = run("--sync", "-v", "mirror.yaml")

    for result in (audit, synced):
        result.assert_outcomes(passed=3)
        result.stdout.fnmatch_lines(
            ["mirror.yaml::app::1.0.0 KEPT_ARCHIVED*", "mirror.yaml::app::1.1.0 KEPT_ARCHIVED*"]
        )
    assert emulator.writes() == []
    assert {d["imageStatus"] for d in details(emulator).values()} == {"ARCHIVED"}


def test_archived_in_a_spec_must_be_restore_or_accept(write_spec, run) -> None:
    write_spec(f"target:\n  registry: {REGISTRY}\n  archived: keep\ncharts: []\n")

    result = run("--check-only", "-v", "mirror.yaml")

    result.stdout.fnmatch_lines(
        ["*mirror.yaml:3*target.archived must be one of restore, accept, not 'keep'*"]
    )
    assert "Traceback" not in result.stdout.str()


def test_scheduled_audits_are_not_pulls_so_lifecycle_rules_still_see_unused_versions(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    # given a sync that keeps what it pushed in its cache (as a CI cache would carry it)
    write_spec(spec(upstream))
    cache = ("--ecrmirror-cache-dir=cache",)
    run("--sync", *cache, "mirror.yaml").assert_outcomes(passed=3)

    # when three nightly audits run
    for _ in range(3):
        emulator.app.state.advance(DAY)
        run("--check-only", *cache, "mirror.yaml").assert_outcomes(passed=3)

    # then no version was pulled: none has a lastRecordedPullTime, none was asked by BatchGetImage
    assert [d.get("lastRecordedPullTime") for d in details(emulator).values()] == [None, None]
    assert "BatchGetImage" not in {r.action for r in emulator.requests}
    # and the owner's rule still archives them once 30 days pass without a real pull
    archive_by_lifecycle_rule(emulator)
    assert {d["imageStatus"] for d in details(emulator).values()} == {"ARCHIVED"}


def test_an_audit_without_the_cache_pulls_each_version_once_per_run(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    # the figure the README gives: without a kept cache, an audit must read each manifest once
    write_spec(spec(upstream))
    run("--sync", "mirror.yaml").assert_outcomes(passed=3)
    emulator.app.state.advance(DAY)
    emulator.app.requests.clear()

    run("--check-only", "-v", "mirror.yaml").assert_outcomes(passed=3)

    pulled = [d.get("lastRecordedPullTime") for d in details(emulator).values()]
    assert len(pulled) == 2
    assert all(pulled)
    assert [r.action for r in emulator.requests].count("BatchGetImage") == 1  # one batch for both


def keep_newest(action: dict[str, str]) -> str:
    """A spec's lifecycle policy that keeps one image of the repository and acts on the rest."""
    rule = {
        "rulePriority": 1,
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
        "action": action,
    }
    return json.dumps({"rules": [rule]})


@pytest.mark.parametrize(
    ("action", "outcome", "said"),
    [
        (
            {"type": "expire"},
            "DIFFERS",
            "*the spec's lifecycle policy would expire 1.[01].0 in helm/app, which the spec declares*",
        ),
        (
            {"type": "transition", "targetStorageClass": "archive"},
            "PRESENT",
            "note: *the spec's lifecycle policy would archive 1.[01].0 in helm/app*`archived: accept`*",
        ),
    ],
    ids=["expire", "archive"],
)
def test_the_repository_item_says_what_the_specs_own_lifecycle_policy_would_do_to_its_versions(
    upstream: ChartServer,
    emulator: Emulator,
    write_spec,
    run,
    action: dict[str, str],
    outcome: str,
    said: str,
) -> None:
    # given a spec whose own lifecycle policy keeps one image, and two versions it declares
    policy = keep_newest(action)
    write_spec(spec(upstream, f"  repository:\n    lifecycle_policy: '{policy}'\n"))
    run("--sync", "mirror.yaml").assert_outcomes(passed=3)

    # when the audit runs, before ECR acts on the rule (it does within 24 hours)
    audit = run("--check-only", "-v", "mirror.yaml")

    # then the repository item says which declared versions the rule will take, from ECR's preview
    audit.stdout.fnmatch_lines([f"mirror.yaml::repository::helm/app {outcome}*", said])
    assert {r.action for r in emulator.requests} >= {
        "StartLifecyclePolicyPreview",
        "GetLifecyclePolicyPreview",
    }


def test_a_replica_archived_in_its_region_fails_the_audit_and_sync_restores_it_there(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    # given versions replicated to eu-central-1, where one copy was archived
    write_spec(spec(upstream, "  replication:\n    regions: [eu-central-1]\n"))
    run("--sync", "mirror.yaml").assert_outcomes(passed=5)  # repository, replica, rule, 2 versions
    frankfurt = boto3.client("ecr", region_name="eu-central-1", endpoint_url=emulator.url)
    frankfurt.update_image_storage_class(
        repositoryName="helm/app", imageId={"imageTag": "1.0.0"}, targetStorageClass="ARCHIVE"
    )

    # when the audit runs, then --sync, then the audit again
    audit = run("--check-only", "-v", "mirror.yaml")
    emulator.app.requests.clear()
    synced = run("--sync", "mirror.yaml")
    again = run("--check-only", "mirror.yaml")

    # then the copy is named as archived in its region, and --sync restores it there, pushing nothing
    audit.assert_outcomes(passed=4, failed=1)
    audit.stdout.fnmatch_lines(
        [
            "mirror.yaml::app::1.0.0 UNREPLICATED*",
            "*eu-central-1 (123456789012): *helm/app:1.0.0 is ARCHIVED: a pull in that region gets 404*"
            "`pytest --sync` restores it there (UpdateImageStorageClass, nothing re-pushed).",
        ]
    )
    synced.assert_outcomes(passed=5)
    assert [r.action for r in emulator.writes()] == ["UpdateImageStorageClass"]
    again.assert_outcomes(passed=5)
    again.stdout.fnmatch_lines(
        ["note: *helm/app:1.0.0 in eu-central-1 (*): ECR is restoring the copy there*(ACTIVATING)*"]
    )
