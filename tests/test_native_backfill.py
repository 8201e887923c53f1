"""ECR's replication backfill: the emulator serves it as ECR documents it, and `--sync` fills a
destination with it (one per destination and run, joined when one runs), falling back to its own
copy where the registry refuses."""

from __future__ import annotations

import json
import re
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError
from ecrclient import ACCOUNT, admin, printed_policy

from conftest import REGISTRY, ChartServer
from ecrmirror.emulator import Emulator
from ecrmirror.emulator.backfill import Backfills, backfills
from ecrmirror.policy import SYNC

OTHER_ACCOUNT = "210987654321"
VERSIONS = ["7.1.1", "7.1.2"]
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
BACKFILL_ID = "[0-9a-f]*-[0-9a-f]*-[0-9a-f]*-[0-9a-f]*-[0-9a-f]*"


def spec(server: ChartServer, regions: list[str], *, registry_id: str = "", backfill: str = "") -> str:
    other = f"    registry_id: '{registry_id}'\n" if registry_id else ""
    other += f"    backfill: {backfill}\n" if backfill else ""
    return (
        f"target:\n  registry: {REGISTRY}\n  prefix: mirror\n  create_repositories: true\n"
        "  repository:\n    image_tag_mutability: IMMUTABLE\n"
        f"  replication:\n    regions: {json.dumps(regions)}\n{other}"
        f"charts:\n  - name: gitlab\n    repo: {server.url}\n    versions: {json.dumps(VERSIONS)}\n"
        f"  - name: ingress\n    repo: {server.url}\n    versions: ['1.0.0']\n"
    )


def held(
    region: str, repository: str = "mirror/gitlab", account: str = ACCOUNT, tags: list[str] = VERSIONS
) -> dict[str, str]:
    client = boto3.client("ecr", region_name=region)
    try:
        images = client.batch_get_image(
            registryId=account, repositoryName=repository, imageIds=[{"imageTag": v} for v in tags]
        )["images"]
    except client.exceptions.RepositoryNotFoundException:
        return {}
    return {image["imageId"]["imageTag"]: image["imageId"]["imageDigest"] for image in images}


def pushes(emulator: Emulator) -> list[Any]:
    """Every request that writes an image: registry uploads and manifests, and the API's PutImage."""
    return [
        r
        for r in emulator.requests
        if (r.kind == "registry" and r.method not in ("GET", "HEAD"))
        or r.action in ("PutImage", "InitiateLayerUpload", "UploadLayerPart", "CompleteLayerUpload")
    ]


def started(emulator: Emulator) -> int:
    return sum(1 for r in emulator.requests if r.action == "StartReplicationBackfill" and r.status == 200)


@pytest.fixture
def upstream(two_charts: ChartServer) -> ChartServer:
    return two_charts


@pytest.fixture
def knobs(emulator: Emulator) -> Backfills:
    return backfills(emulator.app.state)


# -- the mirror ---------------------------------------------------------------------------------------
def test_a_region_added_to_replication_is_filled_by_ecr_with_no_image_pushed_there_by_ecrmirror(
    upstream: ChartServer, emulator: Emulator, knobs: Backfills, write_spec, run
) -> None:
    # given versions mirrored while the spec replicated to eu-central-1 only
    write_spec(spec(upstream, ["eu-central-1"]))
    run("--sync", "mirror.yaml").assert_outcomes(passed=8)  # 2 repositories, 2 replicas, rule, 3 versions
    source = held("eu-west-1")

    # when the spec gains us-east-1 and is synced once
    write_spec(spec(upstream, ["eu-central-1", "us-east-1"]))
    emulator.app.requests.clear()
    result = run("--sync", "-v", "mirror.yaml")

    # then ECR's replication backfill brought every version, and ecrmirror pushed no image anywhere
    result.assert_outcomes(passed=10)
    result.stdout.fnmatch_lines(
        [
            "mirror.yaml::gitlab::7.1.1 BACKFILLED*",
            "mirror.yaml::ingress::1.0.0 BACKFILLED*",
            "3 versions: 0 pushed, 0 present, 3 backfilled, 0 failed; 0 bytes uploaded",
            f"note: mirror.yaml::gitlab::7.1.1: {REGISTRY}/mirror/gitlab:7.1.1 (sha256:*) replicated to "
            f"us-east-1 by ECR's replication backfill {BACKFILL_ID}",
        ]
    )
    assert held("us-east-1") == source
    assert held("us-east-1", "mirror/ingress", tags=["1.0.0"]) == held(
        "eu-west-1", "mirror/ingress", tags=["1.0.0"]
    )
    assert pushes(emulator) == []
    assert started(emulator) == 1  # one backfill for the destination, whatever the versions
    assert [b.destination.region for b in knobs.records.values()] == ["us-east-1"]
    # and the audit passes, and another sync starts nothing
    run("--check-only", "mirror.yaml").assert_outcomes(passed=10)
    emulator.app.requests.clear()
    run("--sync", "mirror.yaml").assert_outcomes(passed=10)
    assert emulator.writes() == []


def test_a_spec_that_says_backfill_copy_is_filled_by_ecrmirror_s_copy_and_its_policy_says_so(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    write_spec(spec(upstream, ["eu-central-1"], backfill="copy"))
    run("--sync", "mirror.yaml").assert_outcomes(passed=8)
    write_spec(spec(upstream, ["eu-central-1", "us-east-1"], backfill="copy"))
    emulator.app.requests.clear()

    result = run("--sync", "-v", "mirror.yaml")

    result.assert_outcomes(passed=10)
    result.stdout.fnmatch_lines(["mirror.yaml::gitlab::7.1.1 BACKFILLED*"])
    assert held("us-east-1") == held("eu-west-1")
    assert started(emulator) == 0
    assert pushes(emulator)  # ecrmirror's own copy, as the spec asks
    statements = printed_policy(run, SYNC)["Statement"]
    registry_wide = next(s["Action"] for s in statements if s["Resource"] == "*")
    assert "ecr:StartReplicationBackfill" not in registry_wide
    replica = "arn:aws:ecr:us-east-1:123456789012:repository/mirror/*"
    assert any("ecr:PutImage" in s["Action"] for s in statements if replica in json.dumps(s["Resource"]))


def test_a_spec_s_backfill_is_native_or_copy(upstream: ChartServer, write_spec, run) -> None:
    write_spec(spec(upstream, ["us-east-1"], backfill="skopeo"))

    result = run("--check-only", "mirror.yaml")

    result.stdout.fnmatch_lines(["*replication.backfill must be one of native, copy, not 'skopeo'*"])


def test_workers_of_one_run_start_one_backfill_per_destination(
    upstream: ChartServer, emulator: Emulator, write_spec, run_subprocess
) -> None:
    write_spec(spec(upstream, ["eu-central-1"]))
    run_subprocess("--sync", "mirror.yaml").assert_outcomes(passed=8)
    write_spec(spec(upstream, ["eu-central-1", "us-east-1", "ap-south-1"]))
    emulator.app.requests.clear()

    result = run_subprocess("-p", "xdist.plugin", "-n", "2", "--sync", "mirror.yaml")

    result.assert_outcomes(passed=12)
    assert started(emulator) == 2  # us-east-1 and ap-south-1, for 3 versions on 2 workers
    assert pushes(emulator) == []
    assert held("ap-south-1") == held("us-east-1") == held("eu-west-1")


def test_a_backfill_already_running_to_the_destination_is_joined(
    upstream: ChartServer, emulator: Emulator, knobs: Backfills, write_spec, run
) -> None:
    write_spec(spec(upstream, ["eu-central-1"]))
    run("--sync", "mirror.yaml").assert_outcomes(passed=8)
    # someone added us-east-1 by hand and started a backfill there, one still preparing when the
    # run looks, however slow the machine (with the default 0.5 s it may have ended by then)
    knobs.preparing = 3.0
    ecr = admin("ecr", emulator)
    configuration = ecr.describe_registry()["replicationConfiguration"]
    configuration["rules"][0]["destinations"].append({"region": "us-east-1", "registryId": ACCOUNT})
    ecr.put_replication_configuration(replicationConfiguration=configuration)
    theirs = ecr.start_replication_backfill(destination={"region": "us-east-1", "registryId": ACCOUNT})
    write_spec(spec(upstream, ["eu-central-1", "us-east-1"]))
    emulator.app.requests.clear()

    result = run("--sync", "-v", "mirror.yaml")

    result.assert_outcomes(passed=10)
    result.stdout.fnmatch_lines(
        [
            "note: mirror.yaml::gitlab::7.1.1: *replicated to us-east-1 by ECR's replication backfill "
            f"{theirs['replicationBackfillId']}, already running when this run looked"
        ]
    )
    assert started(emulator) == 0
    assert held("us-east-1") == held("eu-west-1")


def test_a_version_ecr_fails_to_backfill_fails_with_ecr_s_code_until_the_cause_is_fixed(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    # given a destination in another account whose registry policy allows nothing
    write_spec(spec(upstream, ["us-east-1"], registry_id=OTHER_ACCOUNT))
    run("--sync", "mirror.yaml")  # pushed; replication there FAILED

    result = run("--sync", "-v", "mirror.yaml")

    result.assert_outcomes(passed=3, failed=3)
    result.stdout.fnmatch_lines(
        [
            "mirror.yaml::gitlab::7.1.1 UNREPLICATED*",
            f"*us-east-1 ({OTHER_ACCOUNT}): ECR's replication backfill {BACKFILL_ID} FAILED for it "
            "(REPLICATION_PERMISSION_DENIED)*",
        ]
    )
    # when that account allows the replication, the next sync has ECR copy into it: ecrmirror cannot
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
                "Resource": f"arn:aws:ecr:us-east-1:{OTHER_ACCOUNT}:repository/mirror/*",
            }
        ],
    }
    other = boto3.client(
        "ecr",
        region_name="us-east-1",
        aws_access_key_id=f"ecrmirror-emulator-{OTHER_ACCOUNT}",
        aws_secret_access_key="ecrmirror-emulator",
    )
    other.put_registry_policy(policyText=json.dumps(policy))
    emulator.app.requests.clear()
    again = run("--sync", "-v", "mirror.yaml")
    again.assert_outcomes(passed=6)
    again.stdout.fnmatch_lines(
        ["note: mirror.yaml::gitlab::7.1.1: *replicated to us-east-1 by ECR's replication backfill *"]
    )
    assert held("us-east-1", account=OTHER_ACCOUNT) == held("eu-west-1")
    assert pushes(emulator) == []
    run("--check-only", "mirror.yaml").assert_outcomes(passed=6)


def test_a_registry_that_refuses_the_backfill_gets_ecrmirror_s_copy_named_as_the_fallback(
    upstream: ChartServer, emulator: Emulator, knobs: Backfills, write_spec, run
) -> None:
    write_spec(spec(upstream, ["eu-central-1"]))
    run("--sync", "mirror.yaml").assert_outcomes(passed=8)
    knobs.native = False  # the registry does not offer StartReplicationBackfill
    write_spec(spec(upstream, ["eu-central-1", "us-east-1"]))

    result = run("--sync", "-v", "mirror.yaml")

    result.assert_outcomes(passed=10)
    result.stdout.fnmatch_lines(
        [
            "note: mirror.yaml::gitlab::7.1.1: *copied by ecrmirror to us-east-1 (fallback: ECR refused "
            "the replication backfill: ECR ListReplicationBackfills failed in eu-west-1: "
            "UnknownOperationException: The registry does not offer the ECR action "
            "ListReplicationBackfills), where replication had not brought it; * bytes uploaded",
        ]
    )
    assert held("us-east-1") == held("eu-west-1")
    assert pushes(emulator) != []


def test_the_printed_sync_policy_asks_for_the_backfill_and_no_push_into_replicas(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    write_spec(spec(upstream, ["eu-central-1", "us-east-1"]))

    document = printed_policy(run, SYNC)

    registry_wide = next(s for s in document["Statement"] if s["Resource"] == "*")
    assert {
        "ecr:StartReplicationBackfill",
        "ecr:DescribeReplicationBackfillResults",
        "ecr:ListReplicationBackfills",
    } <= set(registry_wide["Action"])
    for statement in document["Statement"]:
        resources = json.dumps(statement["Resource"])
        if "us-east-1" in resources or "eu-central-1" in resources:
            assert not {"ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:CompleteLayerUpload"} & set(
                statement["Action"]
            ), statement
        if "eu-west-1" in resources:  # the source: pushes, but reads no layer for a copy
            assert "ecr:GetDownloadUrlForLayer" not in statement["Action"]


# -- the emulator, as any ECR client sees it ----------------------------------------------------------
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def push(ecr: Any, repository: str, tag: str) -> str:
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": "sha256:" + "4" * 64,
                "size": 2,
            },
            "layers": [],
            "annotations": {"tag": tag},
        }
    )
    return str(
        ecr.put_image(repositoryName=repository, imageTag=tag, imageManifest=manifest)["image"]["imageId"][
            "imageDigest"
        ]
    )


def replicate_to(ecr: Any, *regions: str, prefix: str = "app") -> None:
    ecr.put_replication_configuration(
        replicationConfiguration={
            "rules": [
                {
                    "destinations": [{"region": r, "registryId": ACCOUNT} for r in regions],
                    "repositoryFilters": [{"filter": prefix, "filterType": "PREFIX_MATCH"}],
                }
            ]
        }
    )


def advance(emulator: Emulator, seconds: float) -> None:
    requests.post(f"{emulator.url}/_emulator/clock", json={"advance": seconds}, timeout=10).raise_for_status()


def error(call: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as raised:
        call(**kwargs)
    response = raised.value.response
    return str(response["Error"]["Code"]), str(response["Error"]["Message"])


@pytest.fixture
def slow(knobs: Backfills) -> Backfills:
    """Backfills that take 100 s to prepare and 100 s to copy: only the clock moves them."""
    knobs.preparing, knobs.duration = 100.0, 100.0
    return knobs


def test_a_backfill_prepares_copies_what_the_rules_select_then_completes(
    emulator: Emulator, slow: Backfills
) -> None:
    ecr = admin("ecr", emulator)
    for name in ("app/a", "app/b", "other/c"):
        ecr.create_repository(repositoryName=name)
    digests = {push(ecr, "app/a", "1"), push(ecr, "app/b", "1"), push(ecr, "app/b", "2")}
    push(ecr, "other/c", "1")  # no rule sends it
    replicate_to(ecr, "us-east-1")  # after the pushes: replication alone copies nothing
    emulator.app.requests.clear()

    start = ecr.start_replication_backfill(destination={"region": "us-east-1", "registryId": ACCOUNT})

    assert UUID.match(start["replicationBackfillId"])
    assert start["status"] == "PREPARING"
    backfill_id = start["replicationBackfillId"]
    preparing = ecr.describe_replication_backfill_results(replicationBackfillId=backfill_id)
    assert (preparing["status"], "progress" in preparing, preparing["results"]) == ("PREPARING", False, [])
    advance(emulator, 150)  # half the copying time: the first of 3 copies has landed (at 133 s)
    running = ecr.describe_replication_backfill_results(replicationBackfillId=backfill_id)
    assert running["status"] == "IN_PROGRESS"
    assert running["results"] == []
    assert running["progress"] == {
        "totalReplicationCount": 3,
        "completedReplicationCount": 1,
        "failedReplicationCount": 0,
        "failureCodes": [],
    }
    advance(emulator, 60)
    done = ecr.describe_replication_backfill_results(replicationBackfillId=backfill_id)
    assert done["status"] == "COMPLETE"
    assert "endedAt" in done
    assert {(r["repositoryName"], r["imageId"].get("imageTag"), r["status"]) for r in done["results"]} == {
        ("app/a", "1", "COMPLETE"),
        ("app/b", "1", "COMPLETE"),
        ("app/b", "2", "COMPLETE"),
    }
    copies = admin("ecr", emulator, "us-east-1")
    assert {i["imageDigest"] for i in copies.list_images(repositoryName="app/b")["imageIds"]} | {
        i["imageDigest"] for i in copies.list_images(repositoryName="app/a")["imageIds"]
    } == digests
    assert copies.describe_repositories()["repositories"][0]["repositoryName"].startswith("app/")
    assert [r for r in emulator.requests if r.kind == "registry"] == []  # copied inside AWS


def test_one_backfill_per_destination_region_and_ten_per_registry(
    emulator: Emulator, slow: Backfills
) -> None:
    ecr = admin("ecr", emulator)
    regions = (
        [f"us-east-{n}" for n in (1, 2)]
        + [f"eu-west-{n}" for n in (2, 3)]
        + [f"ap-south-{n}" for n in (1, 2)]
        + ["ca-central-1", "sa-east-1", "eu-north-1", "eu-south-1", "me-south-1"]
    )
    replicate_to(ecr, *regions)
    for region in regions[:10]:
        ecr.start_replication_backfill(destination={"region": region, "registryId": ACCOUNT})

    assert (
        error(ecr.start_replication_backfill, destination={"region": "us-east-1", "registryId": ACCOUNT})[0]
        == "ReplicationBackfillInProgressException"
    )
    code, message = error(
        ecr.start_replication_backfill, destination={"region": regions[10], "registryId": ACCOUNT}
    )
    assert (code, message) == (
        "LimitExceededException",
        f"The registry with id '{ACCOUNT}' already has 10 replication backfills in progress",
    )
    # a destination outside the replication configuration
    code, message = error(
        ecr.start_replication_backfill, destination={"region": "af-south-1", "registryId": ACCOUNT}
    )
    assert code == "InvalidParameterException"
    assert "not in the registry's replication configuration" in message
    # once they end, new ones may start
    advance(emulator, 300)
    assert ecr.start_replication_backfill(destination={"region": regions[10], "registryId": ACCOUNT})[
        "status"
    ] == ("PREPARING")


def test_stop_states_and_errors(emulator: Emulator, slow: Backfills) -> None:
    ecr = admin("ecr", emulator)
    ecr.create_repository(repositoryName="app/a")
    for tag in ("1", "2", "3", "4"):
        push(ecr, "app/a", tag)
    replicate_to(ecr, "us-east-1", "us-west-2")
    preparing = ecr.start_replication_backfill(destination={"region": "us-east-1", "registryId": ACCOUNT})
    assert (
        ecr.stop_replication_backfill(replicationBackfillId=preparing["replicationBackfillId"])["status"]
        == "STOPPED"
    )
    code, message = error(
        ecr.stop_replication_backfill, replicationBackfillId=preparing["replicationBackfillId"]
    )
    assert code == "ReplicationBackfillInvalidStatusException"
    assert "is STOPPED" in message

    running = ecr.start_replication_backfill(destination={"region": "us-west-2", "registryId": ACCOUNT})
    advance(emulator, 110)  # IN_PROGRESS, the first copy lands at 125 s
    stopping = ecr.stop_replication_backfill(replicationBackfillId=running["replicationBackfillId"])
    assert stopping["status"] == "STOPPING"  # the copy in flight finishes
    advance(emulator, 20)
    stopped = ecr.describe_replication_backfill_results(
        replicationBackfillId=running["replicationBackfillId"]
    )
    assert stopped["status"] == "STOPPED"
    assert [r["imageId"]["imageTag"] for r in stopped["results"]] == ["1"]  # what was copied stays

    missing = "00000000-0000-4000-8000-000000000000"
    for call in (ecr.describe_replication_backfill_results, ecr.stop_replication_backfill):
        assert error(call, replicationBackfillId=missing) == (
            "ReplicationBackfillNotFoundException",
            f"The replication backfill with id '{missing}' does not exist in the registry with id "
            f"'{ACCOUNT}'",
        )


def test_results_page_and_filter_and_listings_page(emulator: Emulator, knobs: Backfills) -> None:
    knobs.preparing = knobs.duration = 0.0
    ecr = admin("ecr", emulator)
    ecr.create_repository(repositoryName="app/a")
    for tag in ("1", "2", "3"):
        push(ecr, "app/a", tag)
    replicate_to(ecr, "us-east-1", "us-west-2")
    knobs.failures["us-east-1"] = "EMULATED_FAILURE"
    first = ecr.start_replication_backfill(destination={"region": "us-east-1", "registryId": ACCOUNT})
    ecr.start_replication_backfill(destination={"region": "us-west-2", "registryId": ACCOUNT})
    backfill_id = first["replicationBackfillId"]

    pages = ecr.get_paginator("describe_replication_backfill_results").paginate(
        replicationBackfillId=backfill_id, PaginationConfig={"PageSize": 2}
    )
    results = [r for page in pages for r in page["results"]]
    assert [(r["status"], r["failureCode"]) for r in results] == [("FAILED", "EMULATED_FAILURE")] * 3
    assert (
        ecr.describe_replication_backfill_results(
            replicationBackfillId=backfill_id, resultStatusFilter="COMPLETE"
        )["results"]
        == []
    )
    summary = ecr.describe_replication_backfill_results(replicationBackfillId=backfill_id)["progress"]
    assert summary["failureCodes"] == ["EMULATED_FAILURE"]
    assert summary["failedReplicationCount"] == 3

    listed = ecr.list_replication_backfills(maxResults=1)
    assert len(listed["backfills"]) == 1
    assert listed["nextToken"]
    everything = [
        b for page in ecr.get_paginator("list_replication_backfills").paginate() for b in page["backfills"]
    ]
    assert {b["destination"]["region"] for b in everything} == {"us-east-1", "us-west-2"}
    loose = admin("ecr", emulator, validate=False)
    assert error(loose.list_replication_backfills, maxResults=51)[0] == "ValidationException"
    assert (
        error(
            loose.describe_replication_backfill_results, replicationBackfillId=backfill_id, maxResults=1001
        )[0]
        == "ValidationException"
    )
    # terminal backfills leave the listing after 90 days
    advance(emulator, 91 * 86400)
    assert ecr.list_replication_backfills()["backfills"] == []


def test_half_of_at_least_a_hundred_failing_fails_the_backfill(emulator: Emulator, knobs: Backfills) -> None:
    knobs.preparing = knobs.duration = 0.0
    knobs.failures["us-east-1"] = "EMULATED_FAILURE"
    ecr = admin("ecr", emulator)
    ecr.create_repository(repositoryName="app/a")
    for tag in range(120):
        push(ecr, "app/a", str(tag))
    replicate_to(ecr, "us-east-1")

    backfill_id = ecr.start_replication_backfill(destination={"region": "us-east-1", "registryId": ACCOUNT})[
        "replicationBackfillId"
    ]

    done = ecr.describe_replication_backfill_results(replicationBackfillId=backfill_id, maxResults=1000)
    assert (done["status"], done["failureCode"]) == ("FAILED", "REPLICATION_FAILURE_THRESHOLD_EXCEEDED")
    assert (done["progress"]["totalReplicationCount"], done["progress"]["failedReplicationCount"]) == (
        120,
        100,
    )
    assert len(done["results"]) == 100


def test_an_image_whose_source_repository_was_deleted_fails(emulator: Emulator, slow: Backfills) -> None:
    ecr = admin("ecr", emulator)
    for name in ("app/a", "app/b"):
        ecr.create_repository(repositoryName=name)
        push(ecr, name, "1")
    replicate_to(ecr, "us-east-1")
    backfill_id = ecr.start_replication_backfill(destination={"region": "us-east-1", "registryId": ACCOUNT})[
        "replicationBackfillId"
    ]
    ecr.delete_repository(repositoryName="app/b", force=True)
    advance(emulator, 250)

    done = ecr.describe_replication_backfill_results(replicationBackfillId=backfill_id)

    assert done["status"] == "COMPLETE"
    assert {(r["repositoryName"], r["status"], r.get("failureCode")) for r in done["results"]} == {
        ("app/a", "COMPLETE", None),
        ("app/b", "FAILED", "SOURCE_REPOSITORY_NOT_FOUND"),
    }


def test_a_registry_without_backfill_answers_unknown_operation(emulator: Emulator, knobs: Backfills) -> None:
    knobs.native = False
    ecr = admin("ecr", emulator)
    replicate_to(ecr, "us-east-1")

    assert error(
        ecr.start_replication_backfill, destination={"region": "us-east-1", "registryId": ACCOUNT}
    ) == (
        "UnknownOperationException",
        "The registry does not offer the ECR action StartReplicationBackfill",
    )
    assert error(ecr.list_replication_backfills)[0] == "UnknownOperationException"
