"""The emulator refuses what real ECR refuses and answers as it answers: one test per row of
docs/emulator-fidelity.md, each through a client any ECR user has (boto3, or plain HTTP on the
registry), none through the emulator's internals but the knobs it offers tests (delays, throttling).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import botocore
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from ecrclient import (
    ACCOUNT,
    DOCKER_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Registry,
    admin,
    become_user,
    client,
    digest,
    enforcing_iam,
)

from conftest import REGISTRY, ChartServer
from ecrmirror.emulator import Emulator
from ecrmirror.emulator.iam import ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY

OTHER_ACCOUNT = "210987654321"


def error_code(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    return str(caught.value.response["Error"]["Code"])


def oci_error(response: Any) -> str:
    return str(response.json()["errors"][0]["code"])


def assumed(emulator: Emulator, account: str) -> dict[str, str]:
    """Credentials of a role in `account` (how a test gets a caller in another account)."""
    sts = admin("sts", emulator, "us-east-1")
    found = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/someone", RoleSessionName="test")[
        "Credentials"
    ]
    return {
        "aws_access_key_id": found["AccessKeyId"],
        "aws_secret_access_key": found["SecretAccessKey"],
        "aws_session_token": found["SessionToken"],
    }


# -- 1: tag mutability exclusion filters are wildcards -------------------------------------------
def test_01_exclusion_filters_are_wildcards_not_regular_expressions(emulator: Emulator) -> None:
    admin("ecr", emulator).create_repository(
        repositoryName="wild",
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[
            {"filterType": "WILDCARD", "filter": pattern} for pattern in ("v1.*", "release-*", "*-dev")
        ],
    )
    registry = Registry(emulator)

    for tag in ("v1.2", "release-7", "feature-dev"):  # excluded: the tag may move
        assert registry.image("wild", tag).status_code == 201
        assert registry.image("wild", tag).status_code == 201
    for tag in ("v10", "release"):  # a regular expression would have excluded these too
        assert registry.image("wild", tag).status_code == 201
        again = registry.image("wild", tag)
        assert (again.status_code, oci_error(again)) == (400, "TAG_INVALID")


def test_01_more_than_five_exclusion_filters_are_refused(emulator: Emulator) -> None:
    ecr = admin("ecr", emulator, validate=False)  # botocore checks the minimum only, not the 5
    six = [{"filterType": "WILDCARD", "filter": f"v{n}.*"} for n in range(6)]
    ecr.create_repository(repositoryName="held", imageTagMutability="IMMUTABLE")

    with pytest.raises(ClientError) as created:
        ecr.create_repository(
            repositoryName="wild",
            imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
            imageTagMutabilityExclusionFilters=six,
        )
    with pytest.raises(ClientError) as changed:
        ecr.put_image_tag_mutability(
            repositoryName="held",
            imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
            imageTagMutabilityExclusionFilters=six,
        )
    with pytest.raises(ClientError) as templated:
        ecr.create_repository_creation_template(
            prefix="wild",
            appliedFor=["REPLICATION"],
            imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
            imageTagMutabilityExclusionFilters=six,
        )
    five = ecr.create_repository(
        repositoryName="wild",
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=six[:5],
    )

    for refused in (created.value, changed.value, templated.value):
        assert refused.response["Error"]["Code"] == "ValidationException"
        assert refused.response["Error"]["Message"].startswith("1 validation error detected: Value ")
        assert refused.response["Error"]["Message"].endswith(
            "at 'imageTagMutabilityExclusionFilters' failed to satisfy constraint: "
            "Member must have length less than or equal to 5"
        )
    assert len(five["repository"]["imageTagMutabilityExclusionFilters"]) == 5
    held = ecr.describe_repositories(repositoryNames=["held"])["repositories"][0]
    assert held["imageTagMutability"] == "IMMUTABLE"  # the refused change changed nothing


# -- 2: lifecycle policies are validated ---------------------------------------------------------
def rule(priority: int, selection: dict[str, Any], action: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"rulePriority": priority, "selection": selection, "action": action or {"type": "expire"}}


UNTAGGED_14_DAYS = {
    "tagStatus": "untagged",
    "countType": "sinceImagePushed",
    "countUnit": "days",
    "countNumber": 14,
}


@pytest.mark.parametrize(
    "rules",
    [
        [rule(1, {"tagStatus": "tagged", "countType": "imageCountMoreThan", "countNumber": 5})],
        [rule(1, {**UNTAGGED_14_DAYS, "tagPrefixList": ["v"]})],
        [
            rule(
                1,
                {
                    "tagStatus": "untagged",
                    "countType": "imageCountMoreThan",
                    "countUnit": "days",
                    "countNumber": 5,
                },
            )
        ],
        [rule(1, UNTAGGED_14_DAYS), rule(1, {**UNTAGGED_14_DAYS, "countNumber": 30})],
        [
            rule(1, {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 50}),
            rule(2, UNTAGGED_14_DAYS),
        ],
        [
            rule(
                i,
                {
                    "tagStatus": "tagged",
                    "tagPrefixList": ["x" * 300],
                    "countType": "imageCountMoreThan",
                    "countNumber": 1,
                },
            )
            for i in range(1, 100)
        ],
    ],
    ids=[
        "tagged without tags",
        "untagged with tags",
        "count with a unit",
        "same priority",
        "any not last",
        "too long",
    ],
)
def test_02_a_lifecycle_policy_ecr_would_refuse_is_refused(emulator: Emulator, rules: list[Any]) -> None:
    ecr = admin("ecr", emulator)
    ecr.create_repository(repositoryName="kept")

    code = error_code(
        ecr.put_lifecycle_policy, repositoryName="kept", lifecyclePolicyText=json.dumps({"rules": rules})
    )

    assert code == "InvalidParameterException"


def test_02_a_valid_transition_rule_is_accepted(emulator: Emulator) -> None:
    ecr = admin("ecr", emulator)
    ecr.create_repository(repositoryName="kept")
    policy = json.dumps(
        {
            "rules": [
                rule(1, UNTAGGED_14_DAYS),
                rule(
                    2,
                    {
                        "tagStatus": "any",
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": 90,
                    },
                    {"type": "transition", "targetStorageClass": "archive"},
                ),
            ]
        }
    )

    ecr.put_lifecycle_policy(repositoryName="kept", lifecyclePolicyText=policy)

    assert json.loads(ecr.get_lifecycle_policy(repositoryName="kept")["lifecyclePolicyText"]) == json.loads(
        policy
    )


# -- 3: each account's registry is its own ------------------------------------------------------
def test_03_another_account_s_repository_needs_its_repository_policy(emulator: Emulator) -> None:
    owner = admin("ecr", emulator)
    owner.create_repository(repositoryName="shared")
    Registry(emulator).image("shared", "1.0")
    stranger = client("ecr", emulator, assumed(emulator, OTHER_ACCOUNT))
    wanted = {"registryId": ACCOUNT, "repositoryName": "shared", "imageIds": [{"imageTag": "1.0"}]}

    assert error_code(stranger.batch_get_image, **wanted) == "AccessDeniedException"
    assert error_code(stranger.describe_repositories, registryId=ACCOUNT, repositoryNames=["shared"]) == (
        "AccessDeniedException"
    )
    # and the stranger's own registry has no such repository
    assert error_code(stranger.batch_get_image, **{**wanted, "registryId": OTHER_ACCOUNT}) == (
        "RepositoryNotFoundException"
    )

    owner.set_repository_policy(
        repositoryName="shared",
        policyText=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"},
                        "Action": ["ecr:BatchGetImage"],
                    }
                ],
            }
        ),
    )
    assert [i["imageId"]["imageTag"] for i in stranger.batch_get_image(**wanted)["images"]] == ["1.0"]


# -- 4: a repository's KMS key exists, in its region --------------------------------------------
def test_04_a_kms_key_must_exist_in_the_repository_s_region(emulator: Emulator) -> None:
    ecr = admin("ecr", emulator)
    here = admin("kms", emulator).create_key()["KeyMetadata"]["Arn"]
    elsewhere = admin("kms", emulator, "us-east-1").create_key()["KeyMetadata"]["Arn"]
    missing = here.rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000"

    def create(name: str, key: str) -> Any:
        return ecr.create_repository(
            repositoryName=name, encryptionConfiguration={"encryptionType": "KMS", "kmsKey": key}
        )

    assert create("with-key", here)["repository"]["encryptionConfiguration"]["kmsKey"] == here
    assert error_code(create, "no-such-key", missing) == "KmsException"
    assert error_code(create, "other-region", elsewhere) == "KmsException"
    assert error_code(create, "not-a-key", "my-key") == "KmsException"


# -- 5: repository tags -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tags", "code"),
    [
        ([{"Key": f"k{n}", "Value": "v"} for n in range(51)], "TooManyTagsException"),
        ([{"Key": "k" * 129, "Value": "v"}], "InvalidTagParameterException"),
        ([{"Key": "team", "Value": "v" * 257}], "InvalidTagParameterException"),
        ([{"Key": "aws:owner", "Value": "me"}], "InvalidTagParameterException"),
    ],
    ids=["51 tags", "long key", "long value", "aws: key"],
)
def test_05_tags_ecr_would_refuse_are_refused(emulator: Emulator, tags: list[Any], code: str) -> None:
    ecr = admin("ecr", emulator, validate=False)
    assert error_code(ecr.create_repository, repositoryName="tagged", tags=tags) == code
    arn = ecr.create_repository(repositoryName="tagged-later")["repository"]["repositoryArn"]
    assert error_code(ecr.tag_resource, resourceArn=arn, tags=tags) == code


# -- 6: replication limits ----------------------------------------------------------------------
def destination(region: str, account: str = ACCOUNT) -> dict[str, str]:
    return {"region": region, "registryId": account}


REGIONS = [f"{area}-{n}" for area in ("us-east", "us-west", "ap-south") for n in range(1, 10)]


@pytest.mark.parametrize(
    "rules",
    [
        [{"destinations": [destination(r)]} for r in REGIONS[:11]],
        [
            {"destinations": [destination(r) for r in REGIONS[:13]]},
            {"destinations": [destination(r) for r in REGIONS[13:26]]},
        ],
        [
            {
                "destinations": [destination("us-east-1")],
                "repositoryFilters": [{"filter": f"p{n}", "filterType": "PREFIX_MATCH"} for n in range(101)],
            }
        ],
    ],
    ids=["11 rules", "26 destinations", "101 filters"],
)
def test_06_replication_beyond_ecr_s_limits_is_refused(emulator: Emulator, rules: list[Any]) -> None:
    ecr = admin("ecr", emulator, validate=False)

    code = error_code(ecr.put_replication_configuration, replicationConfiguration={"rules": rules})

    assert code == "ValidationException"
    assert (
        admin("ecr", emulator).describe_registry().get("replicationConfiguration", {"rules": []})["rules"]
        == []
    )


# -- 7: replica repositories are created with defaults, or a creation template's settings ------
def test_07_a_replica_gets_ecr_s_defaults_unless_a_creation_template_matches(emulator: Emulator) -> None:
    here, there = admin("ecr", emulator), admin("ecr", emulator, "us-east-1")
    key = admin("kms", emulator).create_key()["KeyMetadata"]["Arn"]
    for name in ("plain/app", "tmpl/app"):
        here.create_repository(
            repositoryName=name,
            imageTagMutability="IMMUTABLE",
            imageScanningConfiguration={"scanOnPush": True},
            encryptionConfiguration={"encryptionType": "KMS", "kmsKey": key},
        )
    there.create_repository_creation_template(
        prefix="tmpl",
        appliedFor=["REPLICATION"],
        imageTagMutability="IMMUTABLE",
        encryptionConfiguration={"encryptionType": "AES256"},
        resourceTags=[{"Key": "team", "Value": "platform"}],
    )
    assert [
        t["prefix"] for t in there.describe_repository_creation_templates()["repositoryCreationTemplates"]
    ] == ["tmpl"]
    here.put_replication_configuration(
        replicationConfiguration={"rules": [{"destinations": [destination("us-east-1")]}]}
    )
    registry = Registry(emulator)

    for name in ("plain/app", "tmpl/app"):
        assert registry.image(name, "1.0").status_code == 201

    replicas = {r["repositoryName"]: r for r in there.describe_repositories()["repositories"]}
    assert replicas["plain/app"]["imageTagMutability"] == "MUTABLE"
    assert replicas["plain/app"]["encryptionConfiguration"] == {"encryptionType": "AES256"}
    assert replicas["plain/app"]["imageScanningConfiguration"] == {"scanOnPush": False}
    assert replicas["tmpl/app"]["imageTagMutability"] == "IMMUTABLE"
    tags = there.list_tags_for_resource(resourceArn=replicas["tmpl/app"]["repositoryArn"])["tags"]
    assert tags == [{"Key": "team", "Value": "platform"}]


# -- 8: cross-account replication needs the destination's registry policy ----------------------
def test_08_cross_account_replication_needs_the_destination_s_registry_policy(emulator: Emulator) -> None:
    source = admin("ecr", emulator)
    source.create_repository(repositoryName="app")
    source.put_replication_configuration(
        replicationConfiguration={"rules": [{"destinations": [destination("us-east-1", OTHER_ACCOUNT)]}]}
    )
    registry = Registry(emulator)
    target = client("ecr", emulator, assumed(emulator, OTHER_ACCOUNT), "us-east-1")

    first = registry.image("app", "1.0")
    status = source.describe_image_replication_status(repositoryName="app", imageId={"imageTag": "1.0"})

    assert first.status_code == 201
    assert [(s["registryId"], s["status"]) for s in status["replicationStatuses"]] == [
        (OTHER_ACCOUNT, "FAILED")
    ]
    assert target.describe_repositories()["repositories"] == []

    target.put_registry_policy(
        policyText=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                        "Action": ["ecr:ReplicateImage", "ecr:CreateRepository"],
                        "Resource": f"arn:aws:ecr:us-east-1:{OTHER_ACCOUNT}:repository/*",
                    }
                ],
            }
        )
    )
    assert registry.image("app", "2.0").status_code == 201
    status = source.describe_image_replication_status(repositoryName="app", imageId={"imageTag": "2.0"})
    assert [s["status"] for s in status["replicationStatuses"]] == ["COMPLETE"]
    found = target.batch_get_image(repositoryName="app", imageIds=[{"imageTag": "2.0"}])["images"]
    assert [i["imageId"]["imageTag"] for i in found] == ["2.0"]


# -- 9: replication is asynchronous, and a held tag on an immutable replica stays ---------------
def test_09_replication_takes_time_and_leaves_an_immutable_replica_s_tag_alone(emulator: Emulator) -> None:
    here, there = admin("ecr", emulator), admin("ecr", emulator, "us-east-1")
    here.create_repository(repositoryName="app", imageTagMutability="MUTABLE")
    there.create_repository(repositoryName="app", imageTagMutability="IMMUTABLE")
    there_registry, registry = Registry(emulator, "us-east-1"), Registry(emulator)
    assert there_registry.image("app", "1.0", b"already there").status_code == 201
    here.put_replication_configuration(
        replicationConfiguration={"rules": [{"destinations": [destination("us-east-1")]}]}
    )
    emulator.app.replicator.delay = 0.5

    pushed = registry.image("app", "1.0", b"the source's")
    image_id = {"imageDigest": pushed.headers["Docker-Content-Digest"]}
    early = here.describe_image_replication_status(repositoryName="app", imageId=image_id)[
        "replicationStatuses"
    ]
    time.sleep(1.5)
    late = here.describe_image_replication_status(repositoryName="app", imageId=image_id)[
        "replicationStatuses"
    ]

    assert [s["status"] for s in early] == ["IN_PROGRESS"]
    assert [s["status"] for s in late] == ["COMPLETE"]
    replica = there.describe_images(repositoryName="app", imageIds=[image_id])["imageDetails"]
    assert replica[0].get("imageTags", []) == []  # replicated, untagged: the tag held other content
    held = there.batch_get_image(repositoryName="app", imageIds=[{"imageTag": "1.0"}])["images"]
    assert held[0]["imageId"]["imageDigest"] != image_id["imageDigest"]


def test_09_a_replicated_image_brings_its_own_blobs_only(emulator: Emulator) -> None:
    here = admin("ecr", emulator)
    here.create_repository(repositoryName="app", imageTagMutability="MUTABLE")
    registry, there = Registry(emulator), Registry(emulator, "us-east-1")
    before = registry.blob("app", b"pushed before the rule")  # in the source repository only
    here.put_replication_configuration(
        replicationConfiguration={"rules": [{"destinations": [destination("us-east-1")]}]}
    )

    pushed = registry.image("app", "1.0", b"replicated")

    assert pushed.status_code == 201
    config = json.loads(registry.request("GET", "/v2/app/manifests/1.0").content)["config"]["digest"]
    assert there.request("HEAD", f"/v2/app/blobs/{config}").status_code == 200
    assert there.request("HEAD", f"/v2/app/blobs/{before['digest']}").status_code == 404


# -- 10: moving a tag leaves the old image, untagged ---------------------------------------------
def test_10_a_moved_tag_leaves_the_old_image_untagged(emulator: Emulator) -> None:
    ecr = admin("ecr", emulator)
    ecr.create_repository(repositoryName="app", imageTagMutability="MUTABLE")
    registry = Registry(emulator)
    old = registry.image("app", "latest").headers["Docker-Content-Digest"]
    new = registry.image("app", "latest").headers["Docker-Content-Digest"]

    details = {
        d["imageDigest"]: d.get("imageTags", [])
        for d in ecr.describe_images(repositoryName="app")["imageDetails"]
    }

    assert details == {old: [], new: ["latest"]}


# -- 11: image indexes, referrers, and the size limits --------------------------------------------
def test_11_indexes_manifest_lists_and_referrers_are_served(emulator: Emulator) -> None:
    admin("ecr", emulator).create_repository(repositoryName="multi")
    registry = Registry(emulator)
    images = [registry.image("multi", arch) for arch in ("amd64", "arm64")]
    entries = [
        {
            "mediaType": OCI_MANIFEST,
            "digest": r.headers["Docker-Content-Digest"],
            "size": 100,
            "platform": {"os": "linux"},
        }
        for r in images
    ]

    index = registry.manifest(
        "multi", "all", {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}, OCI_INDEX
    )
    listed = registry.manifest(
        "multi",
        "all-docker",
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST,
            "manifests": [
                {**e, "mediaType": "application/vnd.docker.distribution.manifest.v2+json"} for e in entries
            ],
        },
        DOCKER_LIST,
    )
    subject = {"mediaType": OCI_MANIFEST, "digest": entries[0]["digest"], "size": 100}
    signature = registry.image(
        "multi", "sig", artifactType="application/vnd.example.signature", subject=subject
    )
    referrers = registry.request("GET", f"/v2/multi/referrers/{entries[0]['digest']}")

    assert (index.status_code, listed.status_code, signature.status_code) == (201, 201, 201)
    assert signature.headers["OCI-Subject"] == entries[0]["digest"]
    assert referrers.status_code == 200
    assert referrers.headers["Content-Type"] == OCI_INDEX
    found = referrers.json()["manifests"]
    assert [(m["digest"], m.get("artifactType")) for m in found] == [
        (signature.headers["Docker-Content-Digest"], "application/vnd.example.signature")
    ]
    assert registry.request("GET", f"/v2/multi/referrers/{entries[1]['digest']}").json()["manifests"] == []


def test_11_a_referrers_filter_is_applied_and_said_so(emulator: Emulator) -> None:
    admin("ecr", emulator).create_repository(repositoryName="app")
    registry = Registry(emulator)
    image = registry.image("app", "1.0").headers["Docker-Content-Digest"]
    subject = {"mediaType": OCI_MANIFEST, "digest": image, "size": 100}
    signature = registry.image(
        "app", "sig", artifactType="application/vnd.example.signature", subject=subject
    )
    sbom = registry.image("app", "sbom", artifactType="application/vnd.example.sbom", subject=subject)

    everything = registry.request("GET", f"/v2/app/referrers/{image}")
    filtered = registry.request(
        "GET", f"/v2/app/referrers/{image}", params={"artifactType": "application/vnd.example.sbom"}
    )

    assert "OCI-Filters-Applied" not in everything.headers
    assert len(everything.json()["manifests"]) == 2
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["digest"] for m in filtered.json()["manifests"]] == [sbom.headers["Docker-Content-Digest"]]
    assert signature.status_code == 201


def test_11_manifests_tags_and_names_beyond_ecr_s_limits_are_refused(emulator: Emulator) -> None:
    ecr = admin("ecr", emulator, validate=False)
    ecr.create_repository(repositoryName="big")
    registry = Registry(emulator)

    assert registry.image("big", "t" * 300).status_code == 201
    long_tag = registry.image("big", "t" * 301)
    huge = registry.image("big", "huge", annotations={"padding": "x" * (4 * 1024 * 1024)})

    assert (long_tag.status_code, oci_error(long_tag)) == (400, "TAG_INVALID")
    assert (huge.status_code, oci_error(huge)) == (400, "MANIFEST_INVALID")
    assert error_code(ecr.create_repository, repositoryName="n" * 257) == "InvalidParameterException"


# -- 12: BatchGetImage's limits and failure codes --------------------------------------------------
def test_12_batch_get_image_takes_at_most_100_ids_and_names_each_failure(emulator: Emulator) -> None:
    ecr = admin("ecr", emulator, validate=False)
    ecr.create_repository(repositoryName="app")
    registry = Registry(emulator)
    one = registry.image("app", "1.0").headers["Docker-Content-Digest"]
    two = registry.image("app", "2.0").headers["Docker-Content-Digest"]

    too_many = [{"imageTag": f"t{n}"} for n in range(101)]
    assert error_code(ecr.batch_get_image, repositoryName="app", imageIds=too_many) == "ValidationException"
    answer = ecr.batch_get_image(
        repositoryName="app",
        imageIds=[
            {"imageDigest": "sha256:nothex"},
            {"imageTag": "1.0", "imageDigest": two},
            {"imageTag": "9.9"},
        ],
    )
    assert [f["failureCode"] for f in answer["failures"]] == [
        "InvalidImageDigest",
        "ImageTagDoesNotMatchDigest",
        "ImageNotFound",
    ]
    assert answer["images"] == []
    assert one != two


# -- 13: pagination ------------------------------------------------------------------------------
def test_13_listings_page_at_100_with_a_next_token(emulator: Emulator) -> None:
    ecr = admin("ecr", emulator, validate=False)
    for n in range(150):
        ecr.create_repository(repositoryName=f"repo-{n:03d}")
    for n in range(150):
        ecr.put_image(
            repositoryName="repo-000",
            imageTag=f"v{n}",
            imageManifest=json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": {"digest": digest(str(n).encode()), "size": 1, "mediaType": "x"},
                    "layers": [],
                }
            ),
            imageManifestMediaType=OCI_MANIFEST,
        )

    first = ecr.describe_repositories()
    second = ecr.describe_repositories(nextToken=first["nextToken"])
    images = ecr.list_images(repositoryName="repo-000")
    details = ecr.describe_images(repositoryName="repo-000")

    assert (len(first["repositories"]), len(second["repositories"]), "nextToken" in second) == (
        100,
        50,
        False,
    )
    assert (len(images["imageIds"]), "nextToken" in images) == (100, True)
    assert (len(details["imageDetails"]), "nextToken" in details) == (100, True)
    assert len(ecr.list_images(repositoryName="repo-000", nextToken=images["nextToken"])["imageIds"]) == 50
    assert error_code(ecr.list_images, repositoryName="repo-000", maxResults=1001) == "ValidationException"
    names = [f"repo-{n:03d}" for n in range(101)]
    assert error_code(ecr.describe_repositories, repositoryNames=names) == "ValidationException"
    assert (
        error_code(ecr.describe_repositories, repositoryNames=names[:2], maxResults=5)
        == "InvalidParameterException"
    )


# -- 14: PutImage on a held tag of an immutable repository ----------------------------------------
def test_14_put_image_on_a_held_immutable_tag_says_image_tag_already_exists(emulator: Emulator) -> None:
    ecr = admin("ecr", emulator)
    ecr.create_repository(repositoryName="app", imageTagMutability="IMMUTABLE")

    def put(config: bytes) -> Any:
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"digest": digest(config), "size": 1, "mediaType": "x"},
            "layers": [],
        }
        return ecr.put_image(
            repositoryName="app",
            imageTag="1.0",
            imageManifest=json.dumps(manifest),
            imageManifestMediaType=OCI_MANIFEST,
        )

    put(b"one")

    assert error_code(put, b"two") == "ImageTagAlreadyExistsException"


# -- 15: throttling, when asked for -----------------------------------------------------------------
def test_15_throttling_answers_as_ecr_when_switched_on(emulator: Emulator) -> None:
    ecr = admin("ecr", emulator)
    ecr.create_repository(repositoryName="app", imageTagMutability="MUTABLE")
    registry = Registry(emulator)
    emulator.app.throttle.enabled = True
    try:
        # InitiateLayerUpload and PutImage: 10 per second each, by default
        uploads = [registry.request("POST", "/v2/app/blobs/uploads/") for _ in range(30)]
        codes = []
        for _ in range(30):
            try:
                ecr.put_image(
                    repositoryName="app",
                    imageTag="x",
                    imageManifest="{}",
                    imageManifestMediaType=OCI_MANIFEST,
                )
            except ClientError as exc:
                codes.append(exc.response["Error"]["Code"])
        time.sleep(1.1)  # the buckets refill at the quota's rate
        later = registry.request("POST", "/v2/app/blobs/uploads/")
    finally:
        emulator.app.throttle.enabled = False

    throttled = [r for r in uploads if r.status_code == 429]
    assert 10 <= len(uploads) - len(throttled) <= 12
    assert throttled[0].json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert "ThrottlingException" in codes
    assert later.status_code == 202


# -- 16: what the registry says on the wire ----------------------------------------------------------
def test_16_the_registry_challenges_and_heads_as_ecr(emulator: Emulator) -> None:
    host = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"
    anonymous = Registry.__new__(Registry)
    anonymous.url, anonymous.session = emulator.url, __import__("requests").Session()

    challenge = anonymous.request("GET", "/v2/", headers={"Host": host})
    us_east = Registry(emulator, "us-east-1")
    wrong_region = us_east.request("GET", "/v2/", headers={"Host": host})
    right_region = Registry(emulator).request("GET", "/v2/", headers={"Host": host})

    assert challenge.status_code == 401
    assert challenge.headers["Content-Type"].startswith("text/plain")
    assert (
        challenge.headers["WWW-Authenticate"] == f'Basic realm="https://{host}/",service="ecr.amazonaws.com"'
    )
    assert challenge.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert wrong_region.status_code == 401
    assert right_region.status_code == 200
    assert right_region.headers["Docker-Distribution-Api-Version"] == "registry/2.0"


# -- 17: actions the emulator does not serve --------------------------------------------------------
def test_17_an_action_ecr_lacks_is_a_json_error_that_is_not_retried(emulator: Emulator) -> None:
    # every operation of botocore's ECR model is served (test_emulator_every_operation.py): an
    # action that is in no model is what remains
    emulator.app.requests.clear()

    assert raw_call(emulator, "NoSuchAction", {}) == 400
    assert [r.status for r in emulator.requests] == [400]


# -- 18-21: the distribution spec's push and content management, as ECR serves them ---------------
def test_18_a_chunk_at_the_wrong_offset_is_refused(emulator: Emulator) -> None:
    admin("ecr", emulator).create_repository(repositoryName="app")
    registry = Registry(emulator)
    location = registry.request("POST", "/v2/app/blobs/uploads/").headers["Location"]

    def chunk(data: bytes, start: int) -> Any:
        headers = {
            "Content-Range": f"{start}-{start + len(data) - 1}",
            "Content-Type": "application/octet-stream",
        }
        return registry.request("PATCH", location, data=data, headers=headers)

    first = chunk(b"hello", 0)
    replayed = chunk(b"hello", 0)
    skipped = chunk(b"world", 10)
    second = chunk(b"world", 5)
    done = registry.request("PUT", f"{location}?digest={digest(b'helloworld')}")

    assert (first.status_code, first.headers["Range"]) == (202, "0-4")
    assert (replayed.status_code, replayed.headers["Range"]) == (416, "0-4")
    assert skipped.status_code == 416
    assert (second.status_code, second.headers["Range"]) == (202, "0-9")
    assert done.status_code == 201


def test_19_an_upload_in_progress_answers_its_status(emulator: Emulator) -> None:
    admin("ecr", emulator).create_repository(repositoryName="app")
    registry = Registry(emulator)
    location = registry.request("POST", "/v2/app/blobs/uploads/").headers["Location"]
    registry.request("PATCH", location, data=b"abc", headers={"Content-Range": "0-2"})

    status = registry.request("GET", location)

    assert status.status_code == 204
    assert status.headers["Range"] == "0-2"
    assert status.headers["Location"] == location
    assert status.headers["Docker-Upload-UUID"] == location.rsplit("/", 1)[1]


def test_20_a_manifest_is_deleted_by_digest_through_the_registry(emulator: Emulator) -> None:
    admin("ecr", emulator).create_repository(repositoryName="app")
    registry = Registry(emulator)
    pushed = registry.image("app", "1.0").headers["Docker-Content-Digest"]

    deleted = registry.request("DELETE", f"/v2/app/manifests/{pushed}")

    assert deleted.status_code == 202
    assert registry.request("GET", f"/v2/app/manifests/{pushed}").status_code == 404
    assert registry.request("GET", "/v2/app/tags/list").json()["tags"] == []


def test_21_a_cross_repository_mount_needs_the_blob_mounting_setting(emulator: Emulator) -> None:
    ecr = admin("ecr", emulator)
    for name in ("from", "to", "later"):
        ecr.create_repository(repositoryName=name)
    registry = Registry(emulator)
    blob = registry.blob("from", os.urandom(32))["digest"]

    refused = registry.request("POST", f"/v2/to/blobs/uploads/?mount={blob}&from=from")
    ecr.put_account_setting(name="BLOB_MOUNTING", value="ENABLED")
    mounted = registry.request("POST", f"/v2/later/blobs/uploads/?mount={blob}&from=from")

    assert (refused.status_code, "/blobs/uploads/" in refused.headers["Location"]) == (202, True)
    assert registry.request("HEAD", f"/v2/to/blobs/{blob}").status_code == 404
    assert (mounted.status_code, mounted.headers["Location"]) == (201, f"/v2/later/blobs/{blob}")
    assert ecr.get_account_setting(name="BLOB_MOUNTING")["value"] == "ENABLED"


# -- 23: signatures, under --enforce-iam -------------------------------------------------------------
def user_keys(emulator: Emulator) -> dict[str, str]:
    """Keys the emulator's IAM issued to a user that may do anything with ECR and KMS."""
    iam = admin("iam", emulator, "us-east-1")
    iam.create_user(UserName="signer")
    everything = {"Effect": "Allow", "Action": ["ecr:*", "kms:*", "sts:*"], "Resource": "*"}
    iam.put_user_policy(
        UserName="signer",
        PolicyName="all",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [everything]}),
    )
    key = iam.create_access_key(UserName="signer")["AccessKey"]
    return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}


def refusal(call: Any, *args: Any, **kwargs: Any) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    answer = caught.value.response
    return answer["ResponseMetadata"]["HTTPStatusCode"], answer["Error"]["Code"], answer["Error"]["Message"]


MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS "
    "Secret Access Key and signing method. Consult the service documentation for details."
)


def test_23_a_request_signed_with_the_wrong_secret_is_refused_under_enforce_iam(emulator: Emulator) -> None:
    keys = user_keys(emulator)
    wrong = {**keys, "aws_secret_access_key": "not-the-secret-the-emulator-issued"}
    stranger = {"aws_access_key_id": "AKIAEXAMPLENOTISSUED", "aws_secret_access_key": "anything"}
    admin_wrong = {"aws_access_key_id": "ecrmirror-emulator", "aws_secret_access_key": "guessed"}

    with enforcing_iam(emulator):
        client("ecr", emulator, keys).describe_repositories()  # the issued secret signs
        client("sts", emulator, keys, "us-east-1").get_caller_identity()
        client("kms", emulator, keys).list_keys()
        assert refusal(client("ecr", emulator, wrong).describe_repositories) == (
            400,
            "InvalidSignatureException",
            MISMATCH,
        )
        assert (
            refusal(client("ecr", emulator, admin_wrong).describe_repositories)[1]
            == "InvalidSignatureException"
        )
        assert refusal(client("kms", emulator, wrong).list_keys)[:2] == (400, "InvalidSignatureException")
        assert refusal(client("sts", emulator, wrong, "us-east-1").get_caller_identity) == (
            403,
            "SignatureDoesNotMatch",
            MISMATCH,
        )
        assert refusal(client("ecr", emulator, stranger).describe_repositories) == (
            400,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
        assert refusal(client("sts", emulator, stranger, "us-east-1").get_caller_identity)[:2] == (
            403,
            "InvalidClientTokenId",
        )

    # without --enforce-iam a rehearsal signs with whatever keys it has
    assert client("ecr", emulator, wrong).describe_repositories()["repositories"] == []
    assert client("ecr", emulator, stranger).describe_repositories()["repositories"] == []


def test_23_an_assumed_role_s_keys_need_their_session_token(emulator: Emulator) -> None:
    role = assumed(emulator, OTHER_ACCOUNT)

    with enforcing_iam(emulator):
        good = client("sts", emulator, role, "us-east-1").get_caller_identity()
        no_session = refusal(
            client(
                "sts", emulator, {**role, "aws_session_token": "not-this-session"}, "us-east-1"
            ).get_caller_identity
        )
        wrong_secret = refusal(
            client("sts", emulator, {**role, "aws_secret_access_key": "x"}, "us-east-1").get_caller_identity
        )

    assert good["Account"] == OTHER_ACCOUNT
    assert no_session[:2] == (403, "InvalidClientTokenId")
    assert wrong_secret[:2] == (403, "SignatureDoesNotMatch")


def test_23_a_run_with_the_wrong_secret_fails_plainly(
    chart_server: ChartServer, emulator: Emulator, write_spec: Any, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    chart_server.add("gitlab", "7.1.1")
    chart_server.publish()
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        f"charts:\n  - name: gitlab\n    repo: {chart_server.url}\n    versions: ['7.1.1']\n"
    )
    become_user(
        emulator,
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}]},
        monkeypatch,
    )
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret[::-1])

    with enforcing_iam(emulator):
        refused = run("--sync", "mirror.yaml")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        synced = run("--sync", "mirror.yaml")

    assert refused.ret == pytest.ExitCode.TESTS_FAILED
    said = "*AWS rejected the credentials for ECR * (InvalidSignatureException: The request signature*"
    refused.stdout.fnmatch_lines([said])
    assert "Traceback" not in refused.stdout.str()
    assert secret[::-1] not in refused.stdout.str()
    synced.assert_outcomes(passed=2)


# -- 24: the registry's tag list, a page at a time as ECR gives it ---------------------------------
def test_24_the_tag_list_pages_at_100_and_takes_n_up_to_1000(emulator: Emulator) -> None:
    ecr = admin("ecr", emulator)
    ecr.create_repository(repositoryName="app")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"digest": digest(b"one image"), "size": 1, "mediaType": "x"},
            "layers": [],
        }
    )
    tags = sorted(f"v{n}" for n in range(150))
    for tag in tags:
        ecr.put_image(
            repositoryName="app", imageTag=tag, imageManifest=manifest, imageManifestMediaType=OCI_MANIFEST
        )
    registry = Registry(emulator)

    first = registry.request("GET", "/v2/app/tags/list")
    link = first.headers["Link"]
    second = registry.request("GET", link[link.index("<") + 1 : link.index(">")])
    asked = registry.request("GET", "/v2/app/tags/list", params={"n": 1000})
    too_many = registry.request("GET", "/v2/app/tags/list", params={"n": 1001})
    none = registry.request("GET", "/v2/app/tags/list", params={"n": 0})

    assert first.json()["tags"] == tags[:100]
    assert link == f'</v2/app/tags/list?last={tags[99]}>; rel="next"'
    assert (second.json()["tags"], "Link" in second.headers) == (tags[100:], False)
    assert (asked.json()["tags"], "Link" in asked.headers) == (tags, False)
    assert (too_many.status_code, oci_error(too_many)) == (400, "UNSUPPORTED")
    assert "'Member must have value less than or equal to 1000'" in too_many.json()["errors"][0]["message"]
    assert (none.json()["tags"], "Link" in none.headers) == ([], False)


def test_25_an_image_an_index_lists_is_not_deleted(emulator: Emulator) -> None:
    ecr = admin("ecr", emulator)
    ecr.create_repository(repositoryName="multi")
    registry = Registry(emulator)
    child = registry.image("multi", "amd64").headers["Docker-Content-Digest"]
    loose = registry.image("multi", "loose").headers["Docker-Content-Digest"]
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": 100}],
    }
    listed = registry.manifest("multi", "all", index, OCI_INDEX).headers["Docker-Content-Digest"]

    answer = ecr.batch_delete_image(
        repositoryName="multi", imageIds=[{"imageDigest": child}, {"imageDigest": loose}]
    )
    through_registry = registry.request("DELETE", f"/v2/multi/manifests/{child}")

    assert [f["failureCode"] for f in answer["failures"]] == ["ImageReferencedByManifestList"]
    assert listed in answer["failures"][0]["failureReason"]
    assert [i["imageDigest"] for i in answer["imageIds"]] == [loose]
    assert through_registry.status_code == 409
    assert registry.request("GET", f"/v2/multi/manifests/{child}").status_code == 200
    assert registry.request("GET", f"/v2/multi/manifests/{loose}").status_code == 404


# A value of another JSON type than the model's, per shape type.
_WRONG_TYPE = {
    "string": [1],
    "list": "x",
    "structure": "x",
    "map": 5,
    "integer": "x",
    "long": "x",
    "boolean": "x",
}
_RIGHT_TYPE = {
    "string": "x",
    "list": [],
    "structure": {},
    "map": {},
    "integer": 1,
    "long": 1,
    "boolean": True,
}


def test_26_no_request_gets_a_500_for_a_missing_or_mistyped_parameter(emulator: Emulator) -> None:
    ecr = admin("ecr", emulator, validate=False)
    model = ecr.meta.service_model
    answered: dict[str, str] = {}
    for operation in model.operation_names:
        shape = model.operation_model(operation).input_shape
        calls: list[dict[str, Any]] = [{}]  # every required parameter left out
        for name, member in shape.members.items() if shape is not None else ():
            if member.type_name in _WRONG_TYPE:  # one parameter of the wrong type, the others right
                required = {
                    r: _RIGHT_TYPE.get(shape.members[r].type_name, "x") for r in shape.required_members
                }
                calls.append({**required, name: _WRONG_TYPE[member.type_name]})
        for body in calls:
            status = raw_call(emulator, operation, body)
            assert status < 500, f"{operation} {body}: HTTP {status}"
        try:
            getattr(ecr, botocore.xform_name(operation))()
        except ClientError as exc:
            answered[operation] = exc.response["Error"]["Code"]
    # what AWS's request validation says of a required parameter left out
    assert answered["BatchGetRepositoryScanningConfiguration"] == "ValidationException"
    assert answered["GetDownloadUrlForLayer"] == "ValidationException"
    assert error_code(ecr.untag_resource) == "ValidationException"


def raw_call(emulator: Emulator, operation: str, body: dict[str, Any]) -> int:
    """POST `body` as ECR's JSON protocol carries it, signed, whatever the model says of it."""
    data = json.dumps(body)
    request = AWSRequest(
        method="POST",
        url=emulator.url + "/",
        data=data,
        headers={
            "X-Amz-Target": f"AmazonEC2ContainerRegistry_V20150921.{operation}",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    SigV4Auth(Credentials(ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY), "ecr", "eu-west-1").add_auth(request)
    return requests.post(emulator.url + "/", data=data, headers=dict(request.headers), timeout=10).status_code
