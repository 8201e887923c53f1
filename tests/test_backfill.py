"""Replication that finishes the job: a region added later receives every earlier version (backfill),
replica repositories hold the spec's settings, and another account's destination is explained."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from conftest import REGISTRY, ChartServer
from ecrmirror.emulator import Emulator

ACCOUNT = "123456789012"
VERSIONS = ["7.1.1", "7.1.2"]
LIFECYCLE = {
    "rules": [
        {
            "rulePriority": 1,
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 14,
            },
            "action": {"type": "expire"},
        }
    ]
}


def spec(server: ChartServer, regions: list[str], *, registry_id: str = "", enforce: bool = False) -> str:
    other = f"    registry_id: '{registry_id}'\n" if registry_id else ""
    return (
        f"target:\n  registry: {REGISTRY}\n  prefix: mirror\n  create_repositories: true\n"
        "  repository:\n"
        "    image_tag_mutability: IMMUTABLE\n"
        "    scan_on_push: true\n"
        "    tags: {team: platform}\n"
        f"    lifecycle_policy: '{json.dumps(LIFECYCLE)}'\n"
        f"    enforce_settings: {str(enforce).lower()}\n"
        f"  replication:\n    regions: {json.dumps(regions)}\n{other}"
        f"charts:\n  - name: gitlab\n    repo: {server.url}\n    versions: {json.dumps(VERSIONS)}\n"
    )


@pytest.fixture
def upstream(two_charts: ChartServer) -> ChartServer:
    return two_charts


def ecr(region: str) -> Any:
    return boto3.client("ecr", region_name=region)


def digests(region: str) -> dict[str, str]:
    images = ecr(region).batch_get_image(
        repositoryName="mirror/gitlab", imageIds=[{"imageTag": v} for v in VERSIONS]
    )["images"]
    return {image["imageId"]["imageTag"]: image["imageId"]["imageDigest"] for image in images}


def test_a_region_added_later_receives_every_earlier_version_and_the_spec_s_settings(
    upstream: ChartServer, emulator: Emulator, pytester: pytest.Pytester, write_spec, run
) -> None:
    # given versions mirrored while the spec replicated to eu-central-1 only
    write_spec(spec(upstream, ["eu-central-1"]))
    run("--sync", "mirror.yaml").assert_outcomes(passed=5)  # repository, replica, rule, 2 versions
    source = digests("eu-west-1")
    assert digests("eu-central-1") == source

    # when the spec gains us-east-1 and is synced once
    write_spec(spec(upstream, ["eu-central-1", "us-east-1"]))
    result = run("--sync", "-v", "--ecrmirror-plan=plan.md", "mirror.yaml")

    # then every version is in every region at the source's digest, copied by ecrmirror
    result.assert_outcomes(passed=6)
    plan = (pytester.path / "plan.md").read_text().splitlines()
    assert "- Replica repositories created: mirror/gitlab in us-east-1" in plan
    assert any(
        line.startswith("- Backfilled into regions replication had not reached (")
        and line.endswith("bytes sent): gitlab 7.1.1, gitlab 7.1.2")
        for line in plan
    ), plan
    result.stdout.fnmatch_lines(
        [
            "mirror.yaml::replica::us-east-1::mirror/gitlab CREATED*",
            "mirror.yaml::replication CREATED*",
            "mirror.yaml::gitlab::7.1.1 BACKFILLED*",
            "mirror.yaml::gitlab::7.1.2 BACKFILLED*",
            "2 replica repositories: 1 created, 1 present, 0 failed",
            "2 versions: 0 pushed, 0 present, 2 backfilled, 0 failed; * bytes uploaded",
        ]
    )
    assert digests("us-east-1") == source
    # and the replica repository holds the spec's settings, as the source does
    replica = ecr("us-east-1").describe_repositories(repositoryNames=["mirror/gitlab"])["repositories"][0]
    assert replica["imageTagMutability"] == "IMMUTABLE"
    assert replica["imageScanningConfiguration"] == {"scanOnPush": True}
    tags = ecr("us-east-1").list_tags_for_resource(resourceArn=replica["repositoryArn"])["tags"]
    assert tags == [{"Key": "team", "Value": "platform"}]
    lifecycle = ecr("us-east-1").get_lifecycle_policy(repositoryName="mirror/gitlab")["lifecyclePolicyText"]
    assert json.loads(lifecycle) == LIFECYCLE
    # and a creation template gives repositories ECR creates there the spec's settings too
    templates = ecr("us-east-1").describe_repository_creation_templates(prefixes=["mirror"])
    template = templates["repositoryCreationTemplates"][0]
    assert (template["appliedFor"], template["imageTagMutability"]) == (["REPLICATION"], "IMMUTABLE")

    # and the audit passes, and a second sync writes nothing
    run("--check-only", "mirror.yaml").assert_outcomes(passed=6)
    emulator.app.requests.clear()
    again = run("--sync", "-v", "mirror.yaml")
    again.assert_outcomes(passed=6)
    assert emulator.writes() == []


def test_a_replica_switched_to_mutable_by_hand_fails_the_audit_naming_region_and_setting(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    write_spec(spec(upstream, ["eu-central-1", "us-east-1"]))
    run("--sync", "mirror.yaml").assert_outcomes(passed=6)
    ecr("us-east-1").put_image_tag_mutability(repositoryName="mirror/gitlab", imageTagMutability="MUTABLE")

    result = run("--check-only", "-v", "mirror.yaml")

    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(
        [
            "mirror.yaml::replica::eu-central-1::mirror/gitlab PRESENT*",
            "mirror.yaml::replica::us-east-1::mirror/gitlab DIFFERS*",
            "DIFFERS repository mirror/gitlab in us-east-1: "
            f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/mirror/gitlab",
            "settings of mirror/gitlab differ from the spec (mirror.yaml:6):",
            "  image_tag_mutability: declared IMMUTABLE, actual MUTABLE",
        ]
    )


def test_enforce_settings_settles_a_drifted_replica_and_its_template(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    write_spec(spec(upstream, ["us-east-1"], enforce=True))
    run("--sync", "mirror.yaml").assert_outcomes(passed=5)
    ecr("us-east-1").put_image_tag_mutability(repositoryName="mirror/gitlab", imageTagMutability="MUTABLE")
    ecr("us-east-1").update_repository_creation_template(prefix="mirror", imageTagMutability="MUTABLE")

    result = run("--sync", "-v", "mirror.yaml")

    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "mirror.yaml::replica::us-east-1::mirror/gitlab UPDATED*",
            "mirror.yaml::replication UPDATED*",
        ]
    )
    replica = ecr("us-east-1").describe_repositories(repositoryNames=["mirror/gitlab"])["repositories"][0]
    assert replica["imageTagMutability"] == "IMMUTABLE"
    template = ecr("us-east-1").describe_repository_creation_templates(prefixes=["mirror"])
    assert template["repositoryCreationTemplates"][0]["imageTagMutability"] == "IMMUTABLE"


def test_a_failed_replication_is_backfilled_and_one_in_progress_is_left_to_ecr(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    # given replication to us-east-1 failed, and to eu-central-1 is slow
    emulator.app.replicator.outcomes["us-east-1"] = "FAILED"
    emulator.app.replicator.outcomes["eu-central-1"] = "IN_PROGRESS"
    write_spec(spec(upstream, ["eu-central-1", "us-east-1"]))
    run("--sync", "mirror.yaml").assert_outcomes(passed=6)
    run("--check-only", "mirror.yaml").assert_outcomes(passed=4, failed=2)  # UNREPLICATED

    # when synced again
    result = run("--sync", "-v", "mirror.yaml")

    # then us-east-1 gets the copies; eu-central-1 is ECR's to finish, and said so
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(
        [
            "mirror.yaml::gitlab::7.1.1 BACKFILLED*",
            "note: mirror.yaml::gitlab::7.1.1: replication of * to eu-central-1 (123456789012) is in*",
        ]
    )
    assert digests("us-east-1") == digests("eu-west-1")
    assert digests("eu-central-1") == {}


def test_a_replica_tag_holding_other_content_is_never_overwritten(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    write_spec(spec(upstream, ["eu-central-1"]))
    run("--sync", "mirror.yaml").assert_outcomes(passed=5)
    write_spec(spec(upstream, ["eu-central-1", "us-east-1"]))
    # someone pushed other content as 7.1.1 into the new region first
    target = ecr("us-east-1")
    target.create_repository(repositoryName="mirror/gitlab", imageTagMutability="IMMUTABLE")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": "sha256:" + "0" * 64,
            "size": 2,
        },
        "layers": [],
    }
    target.put_image(repositoryName="mirror/gitlab", imageTag="7.1.1", imageManifest=json.dumps(manifest))

    result = run("--sync", "-v", "mirror.yaml")

    result.assert_outcomes(passed=4, failed=2)  # 7.1.1, and the replica's settings (tags, lifecycle)
    result.stdout.fnmatch_lines(
        [
            "mirror.yaml::gitlab::7.1.1 UNREPLICATED*",
            "mirror.yaml::gitlab::7.1.2 BACKFILLED*",
            "*us-east-1 (123456789012): *.amazonaws.com/mirror/gitlab:7.1.1 holds sha256:*, not the "
            "source's sha256:*; ecrmirror never overwrites a tag*",
        ]
    )


def test_another_account_s_destination_is_explained_with_the_registry_policy_it_needs(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    write_spec(spec(upstream, ["us-east-1"], registry_id="210987654321"))
    run("--sync", "mirror.yaml")  # the other account allows nothing: replication fails there

    result = run("--check-only", "-v", "mirror.yaml")

    output = result.stdout.str()
    assert "mirror.yaml::replica::" not in output  # ecrmirror cannot read or write that registry
    result.stdout.fnmatch_lines(
        [
            "mirror.yaml::replication PRESENT*",
            "mirror.yaml::gitlab::7.1.1 UNREPLICATED*",
            "*us-east-1 (210987654321): replication FAILED (REPLICATION_PERMISSION_DENIED)*Account "
            "210987654321's registry permissions policy must allow the replication*",
            "note: mirror.yaml::replication: replication into account 210987654321 (us-east-1) works only "
            "if that registry's permissions policy allows it*",
        ]
    )
    policy = json.loads(output[output.index('It must hold: {"') + len("It must hold: ") :].splitlines()[0])
    assert policy["Statement"] == [
        {
            "Sid": f"ReplicationFrom{ACCOUNT}",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
            "Resource": "arn:aws:ecr:us-east-1:210987654321:repository/mirror/*",
        }
    ]
    # and that policy, put in place, is what replication needs: a chart mirrored after it arrives
    other = boto3.client(
        "ecr",
        region_name="us-east-1",
        aws_access_key_id="ecrmirror-emulator-210987654321",
        aws_secret_access_key="ecrmirror-emulator",
    )
    other.put_registry_policy(policyText=json.dumps(policy))
    write_spec(
        spec(upstream, ["us-east-1"], registry_id="210987654321")
        + f"  - name: ingress\n    repo: {upstream.url}\n    versions: ['1.0.0']\n"
    )
    run("--sync", "mirror.yaml")
    audited = run("--check-only", "-v", "mirror.yaml")
    audited.stdout.fnmatch_lines(["mirror.yaml::ingress::1.0.0 PRESENT*"])
    copies = other.batch_get_image(repositoryName="mirror/ingress", imageIds=[{"imageTag": "1.0.0"}])
    assert len(copies["images"]) == 1
