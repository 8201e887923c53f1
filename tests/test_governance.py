"""Repository settings and replication, declared in the spec, applied by --sync, audited by --check-only."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from conftest import REGISTRY, ChartServer
from ecrmirror.emulator import Emulator

KMS_KEY = "arn:aws:kms:eu-west-1:123456789012:key/1f0c8a6e-7d2b-4c1e-9a55-3b8e2f1d0c4a"
# A key of the user's account: the emulator takes it as existing, as --offline does a spec's keys.
pytestmark = pytest.mark.ecr_emulator(kms_keys=[KMS_KEY])
LIFECYCLE = {
    "rules": [
        {
            "rulePriority": 1,
            "description": "expire untagged after 14 days",
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
OTHER_LIFECYCLE = json.dumps(
    {
        "rules": [
            {
                "rulePriority": 1,
                "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 5},
                "action": {"type": "expire"},
            }
        ]
    }
)


def governed_spec(
    server: ChartServer,
    *,
    enforce: bool = False,
    regions: tuple[str, ...] = ("eu-central-1", "us-east-1"),
    encryption: str = f"encryption: KMS\n    kms_key: {KMS_KEY}\n",
) -> str:
    lifecycle = "\n".join("      " + line for line in json.dumps(LIFECYCLE, indent=2).splitlines())
    replication = f"  replication:\n    regions: {json.dumps(list(regions))}\n" if regions else ""
    return (
        f"target:\n  registry: {REGISTRY}\n  prefix: mirror\n  create_repositories: true\n"
        "  repository:\n"
        "    image_tag_mutability: IMMUTABLE_WITH_EXCLUSION\n"
        "    image_tag_mutability_exclusion_filters: [latest]\n"
        "    scan_on_push: true\n"
        f"    {encryption}"
        "    tags:\n      team: platform\n      cost-center: '4711'\n"
        f"    lifecycle_policy: |\n{lifecycle}\n"
        f"    enforce_settings: {str(enforce).lower()}\n"
        f"{replication}"
        f"charts:\n"
        f"  - name: gitlab\n    repo: {server.url}\n    versions: ['7.1.1', '7.1.2']\n"
        f"  - name: ingress\n    repo: {server.url}\n    versions: ['1.0.0']\n"
    )


@pytest.fixture
def upstream(two_charts: ChartServer) -> ChartServer:
    return two_charts


def ecr(region: str = "eu-west-1") -> Any:
    return boto3.client("ecr", region_name=region)


def describe(name: str) -> dict[str, Any]:
    return ecr().describe_repositories(repositoryNames=[name])["repositories"][0]  # type: ignore[no-any-return]


def test_sync_offline_applies_settings_replication_and_lifecycle(
    upstream: ChartServer, pytester: pytest.Pytester, run_subprocess
) -> None:
    (pytester.path / "mirror.yaml").write_text(governed_spec(upstream))

    result = run_subprocess("--sync", "--offline", "-v", "mirror.yaml")

    result.assert_outcomes(passed=10)
    result.stdout.fnmatch_lines(
        [
            "mirror.yaml::repository::mirror/gitlab CREATED*",
            "mirror.yaml::repository::mirror/ingress CREATED*",
            "mirror.yaml::replica::eu-central-1::mirror/gitlab CREATED*",
            "mirror.yaml::replica::us-east-1::mirror/ingress CREATED*",
            "mirror.yaml::replication CREATED*",
            "mirror.yaml::gitlab::7.1.1 PUSHED*",
            "2 repositories: 2 created, 0 failed",
            "4 replica repositories: 4 created, 0 failed",
            "1 replication rules: 1 created, 0 failed",
        ]
    )


def test_sync_creates_repositories_with_every_declared_setting(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    write_spec(governed_spec(upstream))

    run("--sync", "mirror.yaml").assert_outcomes(passed=10)

    repository = describe("mirror/gitlab")
    assert repository["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert repository["imageTagMutabilityExclusionFilters"] == [
        {"filterType": "WILDCARD", "filter": "latest"}
    ]
    assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repository["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": KMS_KEY}
    tags = ecr().list_tags_for_resource(resourceArn=repository["repositoryArn"])["tags"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("cost-center", "4711"), ("team", "platform")]
    policy = ecr().get_lifecycle_policy(repositoryName="mirror/gitlab")["lifecyclePolicyText"]
    assert json.loads(policy) == LIFECYCLE
    # a replica holds the same settings, with its own region's AWS managed key (a KMS key is regional)
    replica = ecr("us-east-1").describe_repositories(repositoryNames=["mirror/gitlab"])["repositories"][0]
    assert replica["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert replica["imageScanningConfiguration"] == {"scanOnPush": True}
    assert replica["encryptionConfiguration"]["encryptionType"] == "KMS"
    assert replica["encryptionConfiguration"].get("kmsKey") != KMS_KEY


def _drift_mutability(name: str) -> None:
    ecr().put_image_tag_mutability(repositoryName=name, imageTagMutability="MUTABLE")


def _drift_exclusions(name: str) -> None:
    ecr().put_image_tag_mutability(
        repositoryName=name,
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "dev-*"}],
    )


def _drift_scan(name: str) -> None:
    ecr().put_image_scanning_configuration(
        repositoryName=name, imageScanningConfiguration={"scanOnPush": False}
    )


def _drift_tag(name: str) -> None:
    ecr().tag_resource(resourceArn=describe(name)["repositoryArn"], tags=[{"Key": "team", "Value": "data"}])


def _drift_lifecycle(name: str) -> None:
    ecr().put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=OTHER_LIFECYCLE)


DRIFTS: dict[str, tuple[Callable[[str], None], str]] = {
    "mutability": (
        _drift_mutability,
        "image_tag_mutability: declared IMMUTABLE_WITH_EXCLUSION, actual MUTABLE",
    ),
    "exclusion filters": (
        _drift_exclusions,
        'image_tag_mutability_exclusion_filters: declared ["latest"], actual ["dev-*"]',
    ),
    "scan on push": (_drift_scan, "scan_on_push: declared true, actual false"),
    "tag": (_drift_tag, 'tags.team: declared "platform", actual "data"'),
    "lifecycle": (_drift_lifecycle, "lifecycle_policy: declared {*}, actual {*imageCountMoreThan*}"),
}


@pytest.mark.parametrize("drift", DRIFTS.values(), ids=DRIFTS.keys())
def test_a_changed_setting_fails_exactly_its_repository_and_names_the_setting(
    upstream: ChartServer, emulator: Emulator, write_spec, run, drift: tuple[Callable[[str], None], str]
) -> None:
    # given a synced spec, and one setting of one repository changed behind its back
    change, expected = drift
    write_spec(governed_spec(upstream))
    run("--sync", "mirror.yaml").assert_outcomes(passed=10)
    change("mirror/gitlab")
    emulator.app.requests.clear()

    # when it is audited
    result = run("--check-only", "-v", "mirror.yaml")

    # then exactly that repository's item fails, naming the setting, declared and actual
    result.assert_outcomes(passed=9, failed=1)
    result.stdout.fnmatch_lines(
        [
            "mirror.yaml::repository::mirror/gitlab DIFFERS*",
            "mirror.yaml::repository::mirror/ingress PRESENT*",
            f"DIFFERS repository mirror/gitlab: {REGISTRY}/mirror/gitlab",
            "settings of mirror/gitlab differ from the spec (mirror.yaml:6):",
            f"  {expected}",
            "*set `enforce_settings: true` under target.repository*",
        ]
    )
    assert emulator.writes() == []


def test_sync_without_enforce_settings_reports_drift_and_changes_nothing(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    write_spec(governed_spec(upstream))
    run("--sync", "mirror.yaml").assert_outcomes(passed=10)
    _drift_mutability("mirror/gitlab")
    emulator.app.requests.clear()

    result = run("--sync", "-v", "mirror.yaml")

    result.assert_outcomes(passed=9, failed=1)
    result.stdout.fnmatch_lines(["mirror.yaml::repository::mirror/gitlab DIFFERS*"])
    assert emulator.writes() == []
    assert describe("mirror/gitlab")["imageTagMutability"] == "MUTABLE"


def test_enforce_settings_changes_what_ecr_can_change_and_adds_tags_without_removing_any(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    write_spec(governed_spec(upstream, enforce=True))
    run("--sync", "mirror.yaml").assert_outcomes(passed=10)
    for change in (_drift_mutability, _drift_scan, _drift_tag, _drift_lifecycle):
        change("mirror/gitlab")
    arn = describe("mirror/gitlab")["repositoryArn"]
    ecr().tag_resource(resourceArn=arn, tags=[{"Key": "owner", "Value": "someone else"}])

    result = run("--sync", "-v", "mirror.yaml")

    result.assert_outcomes(passed=10)
    result.stdout.fnmatch_lines(
        ["mirror.yaml::repository::mirror/gitlab UPDATED*", "2 repositories: 1 updated, 1 present, 0 failed"]
    )
    run("--check-only", "mirror.yaml").assert_outcomes(passed=10)
    tags = {t["Key"]: t["Value"] for t in ecr().list_tags_for_resource(resourceArn=arn)["tags"]}
    assert tags == {"team": "platform", "cost-center": "4711", "owner": "someone else"}


def test_encryption_cannot_change_in_place_and_the_message_says_what_to_do(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    ecr().create_repository(repositoryName="mirror/gitlab", imageTagMutability="IMMUTABLE")  # AES256
    write_spec(governed_spec(upstream, enforce=True, regions=()))

    result = run("--sync", "-v", "mirror.yaml")

    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(
        [
            "mirror.yaml::repository::mirror/gitlab DIFFERS*",
            "*changed image_tag_mutability, image_tag_mutability_exclusion_filters, scan_on_push, "
            "tags.cost-center, tags.team, lifecycle_policy; settings of mirror/gitlab differ*",
            "  encryption: declared KMS, actual AES256",
            f"  kms_key: declared {KMS_KEY}, actual none",
            "*ECR cannot change a repository's encryption: create a new repository*",
        ]
    )
    assert describe("mirror/gitlab")["encryptionConfiguration"] == {"encryptionType": "AES256"}


# -- replication -------------------------------------------------------------------------------------
OUTSIDE_RULE = {
    "destinations": [{"region": "ap-southeast-2", "registryId": "123456789012"}],
    "repositoryFilters": [{"filter": "team-b", "filterType": "PREFIX_MATCH"}],
}


def test_sync_merges_the_rule_and_keeps_a_rule_made_outside_ecrmirror(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    # given the registry already replicates another team's repositories
    ecr().put_replication_configuration(replicationConfiguration={"rules": [OUTSIDE_RULE]})
    write_spec(governed_spec(upstream))

    # when the spec is synced
    run("--sync", "mirror.yaml").assert_outcomes(passed=10)

    # then that rule is there unchanged, next to ours
    rules = ecr().describe_registry()["replicationConfiguration"]["rules"]
    assert rules == [
        OUTSIDE_RULE,
        {
            "destinations": [
                {"region": "eu-central-1", "registryId": "123456789012"},
                {"region": "us-east-1", "registryId": "123456789012"},
            ],
            "repositoryFilters": [{"filter": "mirror", "filterType": "PREFIX_MATCH"}],
        },
    ]
    # and every pushed version is in both destination regions
    for region in ("eu-central-1", "us-east-1"):
        images = ecr(region).batch_get_image(
            repositoryName="mirror/gitlab", imageIds=[{"imageTag": "7.1.1"}, {"imageTag": "7.1.2"}]
        )
        assert len(images["images"]) == 2
    statuses = ecr().describe_image_replication_status(
        repositoryName="mirror/gitlab", imageId={"imageTag": "7.1.1"}
    )
    assert [(s["region"], s["status"]) for s in statuses["replicationStatuses"]] == [
        ("eu-central-1", "COMPLETE"),
        ("us-east-1", "COMPLETE"),
    ]

    # when it is synced again, nothing is written
    emulator.app.requests.clear()
    run("--sync", "mirror.yaml").assert_outcomes(passed=10)
    assert emulator.writes() == []


def test_a_new_region_is_added_to_our_rule_and_nothing_else_changes(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    ecr().put_replication_configuration(replicationConfiguration={"rules": [OUTSIDE_RULE]})
    write_spec(governed_spec(upstream, regions=("eu-central-1",)))
    run("--sync", "mirror.yaml").assert_outcomes(passed=8)
    write_spec(governed_spec(upstream, regions=("eu-central-1", "us-west-2")))

    run("--sync", "mirror.yaml").assert_outcomes(passed=10)

    rules = ecr().describe_registry()["replicationConfiguration"]["rules"]
    assert rules[0] == OUTSIDE_RULE
    assert [d["region"] for d in rules[1]["destinations"]] == ["eu-central-1", "us-west-2"]
    assert len(rules) == 2


def test_a_rule_someone_else_made_for_the_same_prefix_is_not_changed_either(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    # given someone replicates the same prefix to a region the spec does not list
    theirs = {
        "destinations": [{"region": "us-west-2", "registryId": "123456789012"}],
        "repositoryFilters": [{"filter": "mirror", "filterType": "PREFIX_MATCH"}],
    }
    ecr().put_replication_configuration(replicationConfiguration={"rules": [theirs]})
    write_spec(governed_spec(upstream, regions=("eu-central-1",)))

    run("--sync", "mirror.yaml").assert_outcomes(passed=8)

    # then their rule is as it was, and ours sits next to it
    rules = ecr().describe_registry()["replicationConfiguration"]["rules"]
    assert rules[0] == theirs
    assert rules[1]["destinations"] == [{"region": "eu-central-1", "registryId": "123456789012"}]


def test_check_only_fails_the_replication_item_when_no_rule_covers_the_prefix(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    ecr().put_replication_configuration(replicationConfiguration={"rules": [OUTSIDE_RULE]})
    write_spec(governed_spec(upstream))
    emulator.app.requests.clear()

    result = run("--check-only", "-v", "mirror.yaml")

    result.stdout.fnmatch_lines(
        [
            "mirror.yaml::replication MISSING*",
            "*no replication rule copies mirror/gitlab, mirror/ingress to eu-central-1 (123456789012)*",
        ]
    )
    assert emulator.writes() == []


def test_audit_checks_replicas_in_one_batch_per_repository_and_region(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    write_spec(governed_spec(upstream))
    run("--sync", "mirror.yaml").assert_outcomes(passed=10)
    emulator.app.requests.clear()

    result = run("--check-only", "-v", "mirror.yaml")

    result.assert_outcomes(passed=10)
    actions = sorted(r.action for r in emulator.requests)
    # 2 repositories x (source + 2 destination regions), never one call per version; the
    # manifests of the source's tags, which this run does not keep, are pulled once for the
    # replicas' comparison too
    assert actions.count("DescribeImages") == 6
    assert actions.count("BatchGetImage") == 2
    # one per registry (the source's and two replicas'), never one per repository
    assert actions.count("DescribeRepositories") == 3
    assert actions.count("DescribeRepositoryCreationTemplates") == 2
    assert "DescribeImageReplicationStatus" not in actions


@pytest.mark.parametrize("status", ["FAILED", "IN_PROGRESS"])
def test_a_version_whose_replication_failed_fails_and_one_in_progress_passes_with_a_note(
    upstream: ChartServer, emulator: Emulator, write_spec, run, status: str
) -> None:
    emulator.app.replicator.outcomes["us-east-1"] = status
    write_spec(governed_spec(upstream))
    run("--sync", "mirror.yaml").assert_outcomes(passed=10)

    result = run("--check-only", "-v", "mirror.yaml")

    if status == "FAILED":
        result.assert_outcomes(passed=7, failed=3)
        result.stdout.fnmatch_lines(
            [
                "mirror.yaml::gitlab::7.1.1 UNREPLICATED*",
                "*is in ECR, but us-east-1 (123456789012): replication FAILED (EMULATED_FAILURE)*"
                "`pytest --sync` backfills it (ECR's replication backfill, else a copy by ecrmirror), "
                "digest unchanged.",
            ]
        )
    else:
        result.assert_outcomes(passed=10)
        result.stdout.fnmatch_lines(
            ["note: mirror.yaml::gitlab::7.1.1: replication of * to us-east-1 (123456789012) is in progress"]
        )


def test_workers_merging_rules_at_once_lose_none(
    upstream: ChartServer, emulator: Emulator, pytester: pytest.Pytester, run_subprocess
) -> None:
    # given four specs, each replicating its own prefix, run by four xdist workers at once
    for team in ("alpha", "beta", "gamma", "delta"):
        (pytester.path / f"{team}.yaml").write_text(
            f"target:\n  registry: {REGISTRY}\n  prefix: {team}\n  create_repositories: true\n"
            f"  replication:\n    regions: [us-east-1]\n"
            f"charts:\n  - name: ingress\n    repo: {upstream.url}\n    versions: ['1.0.0']\n"
        )

    result = run_subprocess("-p", "xdist.plugin", "-n", "4", "--sync", ".")

    # then every spec's rule is in the registry: PutReplicationConfiguration replaces the whole
    # configuration, so a writer that lost a race merges again
    result.assert_outcomes(passed=16)  # each: repository, replica, rule, version
    rules = ecr().describe_registry()["replicationConfiguration"]["rules"]
    filters = sorted(f["filter"] for rule in rules for f in rule["repositoryFilters"])
    print(
        "PutReplicationConfiguration calls:",
        sum(r.action == "PutReplicationConfiguration" for r in emulator.requests),
    )
    assert filters == ["alpha", "beta", "delta", "gamma"]


# -- the merge itself, as plain functions ------------------------------------------------------------
def _rule(filter_: str, *regions: str) -> dict[str, Any]:
    return {
        "destinations": [{"region": r, "registryId": "123456789012"} for r in regions],
        "repositoryFilters": [{"filter": filter_, "filterType": "PREFIX_MATCH"}],
    }


def test_a_broader_prefix_rule_already_covers_the_spec() -> None:
    from ecrmirror.replication import uncovered
    from ecrmirror.spec import Destination

    configuration = {"rules": [_rule("mirr", "us-east-1")]}

    missing = uncovered(configuration, ["mirror/gitlab"], [Destination("us-east-1", "123456789012")])

    assert missing == {}


def test_a_full_configuration_is_never_replaced_to_make_room() -> None:
    from ecrmirror.errors import ReplicationLimit
    from ecrmirror.replication import merged
    from ecrmirror.spec import Destination

    configuration = {"rules": [_rule(f"team-{n}", "us-east-1") for n in range(10)]}
    destination = Destination("eu-central-1", "123456789012")

    with pytest.raises(ReplicationLimit, match="already has 10 replication rules, ECR's maximum"):
        merged(configuration, ("mirror",), [destination], [destination])
