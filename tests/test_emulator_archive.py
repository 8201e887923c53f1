"""The emulator's archive storage class, pull times and their exclusions, lifecycle rules that run
on its clock, the lifecycle policy preview and ListImageReferrers: through boto3 and plain HTTP,
as any ECR user reaches them (fidelity rows: /tmp/h/rows-archive.md)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError
from ecrclient import OCI_INDEX, OCI_MANIFEST, Registry, admin, client, digest

from conftest import REGISTRY
from ecrmirror.emulator import Emulator
from ecrmirror.errors import SpecError
from ecrmirror.spec import load_spec

DAY = 86_400
TRANSITION = {"type": "transition", "targetStorageClass": "archive"}


def error(call: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    found = caught.value.response["Error"]
    return str(found["Code"]), str(found["Message"])


def advance(emulator: Emulator, seconds: float) -> None:
    answer = requests.post(f"{emulator.url}/_emulator/clock", json={"advance": seconds}, timeout=10)
    assert answer.status_code == 200, answer.text


def push(registry: Registry, repository: str, tag: str, content: bytes | None = None) -> str:
    answer = registry.image(repository, tag, content or tag.encode())
    assert answer.status_code == 201, answer.text
    return str(answer.headers["Docker-Content-Digest"])


def status(ecr: Any, repository: str, image_digest: str) -> dict[str, Any]:
    found = ecr.describe_images(
        repositoryName=repository, imageIds=[{"imageDigest": image_digest}], filter={"imageStatus": "ANY"}
    )
    detail: dict[str, Any] = found["imageDetails"][0]
    return detail


def listed(ecr: Any, repository: str, **kwargs: Any) -> list[str]:
    found = ecr.list_images(repositoryName=repository, **kwargs)["imageIds"]
    return sorted(str(i.get("imageTag", i["imageDigest"])) for i in found)


@pytest.fixture
def ecr(emulator: Emulator) -> Any:
    found = admin("ecr", emulator)
    found.create_repository(repositoryName="charts/app")
    return found


@pytest.fixture
def registry(emulator: Emulator, ecr: Any) -> Registry:
    return Registry(emulator)


def archive(ecr: Any, image_digest: str, repository: str = "charts/app") -> dict[str, Any]:
    answer: dict[str, Any] = ecr.update_image_storage_class(
        repositoryName=repository, imageId={"imageDigest": image_digest}, targetStorageClass="ARCHIVE"
    )
    return answer


def restore(ecr: Any, image_digest: str, repository: str = "charts/app") -> dict[str, Any]:
    answer: dict[str, Any] = ecr.update_image_storage_class(
        repositoryName=repository, imageId={"imageDigest": image_digest}, targetStorageClass="STANDARD"
    )
    return answer


# -- 1: archive and restore -------------------------------------------------------------------------
@pytest.mark.ecr_emulator(restore_delay=60)
def test_archive_is_at_once_and_a_restore_takes_the_restore_delay(
    emulator: Emulator, ecr: Any, registry: Registry
) -> None:
    image = push(registry, "charts/app", "1.0.0")

    archived = ecr.update_image_storage_class(
        repositoryName="charts/app", imageId={"imageTag": "1.0.0"}, targetStorageClass="ARCHIVE"
    )
    assert {k: archived[k] for k in ("registryId", "repositoryName", "imageId", "imageStatus")} == {
        "registryId": "123456789012",
        "repositoryName": "charts/app",
        "imageId": {"imageDigest": image, "imageTag": "1.0.0"},
        "imageStatus": "ARCHIVED",
    }
    assert status(ecr, "charts/app", image)["imageStatus"] == "ARCHIVED"
    assert "lastArchivedAt" in status(ecr, "charts/app", image)

    assert restore(ecr, image)["imageStatus"] == "ACTIVATING"
    advance(emulator, 59)
    assert status(ecr, "charts/app", image)["imageStatus"] == "ACTIVATING"
    advance(emulator, 2)
    restored = status(ecr, "charts/app", image)
    assert restored["imageStatus"] == "ACTIVE"
    assert restored["lastActivatedAt"] > restored["lastArchivedAt"]
    assert registry.request("GET", f"/v2/charts/app/manifests/{image}").status_code == 200


def test_the_restore_delay_defaults_to_ten_minutes(emulator: Emulator, ecr: Any, registry: Registry) -> None:
    image = push(registry, "charts/app", "1.0.0")
    archive(ecr, image)
    restore(ecr, image)

    advance(emulator, 599)
    assert status(ecr, "charts/app", image)["imageStatus"] == "ACTIVATING"
    advance(emulator, 2)
    assert status(ecr, "charts/app", image)["imageStatus"] == "ACTIVE"


@pytest.mark.parametrize(
    ("steps", "target", "now"),
    [
        ([], "STANDARD", "ACTIVE"),
        (["ARCHIVE"], "ARCHIVE", "ARCHIVED"),
        (["ARCHIVE", "STANDARD"], "STANDARD", "ACTIVATING"),
        (["ARCHIVE", "STANDARD"], "ARCHIVE", "ACTIVATING"),
    ],
    ids=["restore an active image", "archive it twice", "restore it twice", "archive it while activating"],
)
def test_a_move_that_is_not_a_transition_is_refused(
    ecr: Any, registry: Registry, steps: list[str], target: str, now: str
) -> None:
    image = push(registry, "charts/app", "1.0.0")
    for step in steps:
        ecr.update_image_storage_class(
            repositoryName="charts/app", imageId={"imageDigest": image}, targetStorageClass=step
        )

    code, message = error(
        ecr.update_image_storage_class,
        repositoryName="charts/app",
        imageId={"imageDigest": image},
        targetStorageClass=target,
    )

    assert (code, message) == (
        "InvalidParameterException",
        f"Invalid parameter: the image {image} is {now} and cannot be moved to storage class {target}",
    )
    assert status(ecr, "charts/app", image)["imageStatus"] == now


def test_update_image_storage_class_refuses_what_is_not_there(ecr: Any) -> None:
    missing = "sha256:" + "0" * 64
    assert error(
        ecr.update_image_storage_class,
        repositoryName="charts/app",
        imageId={"imageDigest": missing},
        targetStorageClass="ARCHIVE",
    ) == (
        "ImageNotFoundException",
        f'The image with imageId {{"imageDigest": "{missing}"}} does not exist within the repository with '
        "name 'charts/app' in the registry with id '123456789012'",
    )
    assert error(
        ecr.update_image_storage_class,
        repositoryName="nothing",
        imageId={"imageTag": "1"},
        targetStorageClass="ARCHIVE",
    )[0] == ("RepositoryNotFoundException")
    assert error(
        ecr.update_image_storage_class,
        repositoryName="charts/app",
        imageId={"imageTag": "1"},
        targetStorageClass="GLACIER",
    ) == (
        "ValidationException",
        "1 validation error detected: Value '\"GLACIER\"' at 'targetStorageClass' failed to satisfy "
        "constraint: Member must satisfy enum value set: [STANDARD, ARCHIVE]",
    )


# -- 2: listings -----------------------------------------------------------------------------------------
@pytest.mark.ecr_emulator(restore_delay=60)
def test_listings_show_active_images_unless_a_status_filter_says_otherwise(
    ecr: Any, registry: Registry
) -> None:
    live, old, waking = (push(registry, "charts/app", tag) for tag in ("live", "old", "waking"))
    archive(ecr, old)
    archive(ecr, waking)
    restore(ecr, waking)
    untagged = push(registry, "charts/app", "gone")
    push(registry, "charts/app", "gone", b"other content")  # the tag moves: the first is untagged
    archive(ecr, untagged)

    assert listed(ecr, "charts/app") == ["gone", "live"]
    assert listed(ecr, "charts/app", filter={"imageStatus": "ARCHIVED"}) == sorted(["old", untagged])
    assert listed(ecr, "charts/app", filter={"imageStatus": "ACTIVATING"}) == ["waking"]
    assert listed(ecr, "charts/app", filter={"imageStatus": "ANY"}) == sorted(
        ["gone", "live", "old", "waking", untagged]
    )
    assert listed(ecr, "charts/app", filter={"imageStatus": "ARCHIVED", "tagStatus": "UNTAGGED"}) == [
        untagged
    ]
    described = ecr.describe_images(repositoryName="charts/app")["imageDetails"]
    assert sorted(d["imageTags"][0] for d in described) == ["gone", "live"]
    assert {d["imageStatus"] for d in described} == {"ACTIVE"}
    every = ecr.describe_images(repositoryName="charts/app", filter={"imageStatus": "ANY"})["imageDetails"]
    assert {d["imageDigest"]: d["imageStatus"] for d in every if d["imageDigest"] in (live, old, waking)} == {
        live: "ACTIVE",
        old: "ARCHIVED",
        waking: "ACTIVATING",
    }


def test_describing_an_archived_image_by_id_needs_the_filter(ecr: Any, registry: Registry) -> None:
    image = push(registry, "charts/app", "1.0.0")
    archive(ecr, image)

    code, _ = error(ecr.describe_images, repositoryName="charts/app", imageIds=[{"imageTag": "1.0.0"}])
    assert code == "ImageNotFoundException"
    found = ecr.describe_images(
        repositoryName="charts/app", imageIds=[{"imageTag": "1.0.0"}], filter={"imageStatus": "ARCHIVED"}
    )["imageDetails"]
    assert [d["imageStatus"] for d in found] == ["ARCHIVED"]
    assert error(ecr.list_images, repositoryName="charts/app", filter={"imageStatus": "COLD"}) == (
        "ValidationException",
        "1 validation error detected: Value '\"COLD\"' at 'filter.imageStatus' failed to satisfy constraint: "
        "Member must satisfy enum value set: [ACTIVE, ARCHIVED, ACTIVATING, ANY]",
    )


# -- 3: pulls --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("restoring", [False, True], ids=["archived", "activating"])
def test_an_archived_or_activating_image_is_not_pullable(
    ecr: Any, registry: Registry, restoring: bool
) -> None:
    image = push(registry, "charts/app", "1.0.0")
    archive(ecr, image)
    if restoring:
        restore(ecr, image)

    for method in ("GET", "HEAD"):
        for reference in ("1.0.0", image):
            answer = registry.request(method, f"/v2/charts/app/manifests/{reference}")
            assert answer.status_code == 404, (method, reference)
            if method == "GET":
                assert answer.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    got = ecr.batch_get_image(repositoryName="charts/app", imageIds=[{"imageTag": "1.0.0"}])
    assert got["images"] == []
    assert got["failures"] == [
        {
            "imageId": {"imageTag": "1.0.0"},
            "failureCode": "ImageNotFound",
            "failureReason": "Requested image not found",
        }
    ]


def test_pulls_stamp_the_pull_time_and_metadata_reads_do_not(
    emulator: Emulator, ecr: Any, registry: Registry
) -> None:
    image = push(registry, "charts/app", "1.0.0")
    manifest = json.loads(
        registry.request("GET", f"/v2/charts/app/manifests/{image}").text
    )  # this first GET is a pull
    first = status(ecr, "charts/app", image)["lastRecordedPullTime"]

    advance(emulator, DAY)
    ecr.describe_images(repositoryName="charts/app")
    ecr.list_images(repositoryName="charts/app")
    ecr.batch_check_layer_availability(
        repositoryName="charts/app", layerDigests=[manifest["config"]["digest"]]
    )
    assert registry.request("GET", f"/v2/charts/app/blobs/{manifest['config']['digest']}").status_code == 200
    assert registry.request("HEAD", f"/v2/charts/app/blobs/{manifest['config']['digest']}").status_code == 200
    assert status(ecr, "charts/app", image)["lastRecordedPullTime"] == first

    stamps = [first]
    for pull in (
        lambda: registry.request("HEAD", "/v2/charts/app/manifests/1.0.0"),
        lambda: registry.request("GET", "/v2/charts/app/manifests/1.0.0"),
        lambda: ecr.batch_get_image(repositoryName="charts/app", imageIds=[{"imageDigest": image}]),
    ):
        advance(emulator, DAY)
        pull()
        stamps.append(status(ecr, "charts/app", image)["lastRecordedPullTime"])
    assert [round((b - a).total_seconds() / DAY) for a, b in itertools.pairwise(stamps)] == [2, 1, 1]


def assumed_role(emulator: Emulator, role: str) -> dict[str, str]:
    sts = admin("sts", emulator, "us-east-1")
    found = sts.assume_role(RoleArn=f"arn:aws:iam::123456789012:role/{role}", RoleSessionName="audit")[
        "Credentials"
    ]
    return {
        "aws_access_key_id": found["AccessKeyId"],
        "aws_secret_access_key": found["SecretAccessKey"],
        "aws_session_token": found["SessionToken"],
    }


def test_an_excluded_role_pulls_without_stamping(emulator: Emulator, ecr: Any, registry: Registry) -> None:
    image = push(registry, "charts/app", "1.0.0")
    ecr.register_pull_time_update_exclusion(principalArn="arn:aws:iam::123456789012:role/audit")
    auditor = client("ecr", emulator, assumed_role(emulator, "audit"), "eu-west-1")
    other = client("ecr", emulator, assumed_role(emulator, "deploy"), "eu-west-1")

    auditor.batch_get_image(repositoryName="charts/app", imageIds=[{"imageDigest": image}])
    answer = Registry(emulator, ecr=auditor).request("GET", f"/v2/charts/app/manifests/{image}")
    assert answer.status_code == 200
    assert "lastRecordedPullTime" not in status(ecr, "charts/app", image)

    other.batch_get_image(repositoryName="charts/app", imageIds=[{"imageDigest": image}])
    assert "lastRecordedPullTime" in status(ecr, "charts/app", image)


def test_pull_time_exclusions_are_kept_as_ecr_keeps_them(ecr: Any) -> None:
    role = "arn:aws:iam::123456789012:role/audit"
    registered = ecr.register_pull_time_update_exclusion(principalArn=role)
    assert registered["principalArn"] == role
    assert "createdAt" in registered
    assert error(ecr.register_pull_time_update_exclusion, principalArn=role) == (
        "ExclusionAlreadyExistsException",
        f"The principal '{role}' is already excluded from pull time updates in the registry with id "
        "'123456789012'",
    )
    user = "arn:aws:iam::123456789012:user/someone"
    assert error(ecr.register_pull_time_update_exclusion, principalArn=user) == (
        "InvalidParameterException",
        f"Invalid parameter at 'principalArn' failed to satisfy constraint: '{user} is an IAM user; only "
        "IAM roles can be excluded from pull time updates'",
    )
    assert (
        error(ecr.register_pull_time_update_exclusion, principalArn="role/audit")[0] == "ValidationException"
    )
    for number in range(2, 101):
        ecr.register_pull_time_update_exclusion(principalArn=f"arn:aws:iam::123456789012:role/r{number:03}")
    assert error(ecr.register_pull_time_update_exclusion, principalArn="arn:aws:iam::123456789012:role/x")[
        0
    ] == ("LimitExceededException")

    first = ecr.list_pull_time_update_exclusions(maxResults=60)
    rest = ecr.list_pull_time_update_exclusions(nextToken=first["nextToken"])
    assert len(first["pullTimeUpdateExclusions"]) == 60
    assert "nextToken" not in rest
    assert role in first["pullTimeUpdateExclusions"] + rest["pullTimeUpdateExclusions"]
    assert error(ecr.list_pull_time_update_exclusions, maxResults=1001)[0] == "ValidationException"

    assert ecr.deregister_pull_time_update_exclusion(principalArn=role)["principalArn"] == role
    assert error(ecr.deregister_pull_time_update_exclusion, principalArn=role) == (
        "ExclusionNotFoundException",
        f"The principal '{role}' is not excluded from pull time updates in the registry with id "
        "'123456789012'",
    )


def test_a_push_of_an_archived_image_restores_it_at_once(ecr: Any, registry: Registry) -> None:
    image = push(registry, "charts/app", "1.0.0")
    manifest = registry.request("GET", f"/v2/charts/app/manifests/{image}").text
    archive(ecr, image)

    ecr.put_image(repositoryName="charts/app", imageManifest=manifest, imageTag="1.0.0")

    restored = status(ecr, "charts/app", image)
    assert restored["imageStatus"] == "ACTIVE"
    assert "lastActivatedAt" in restored
    assert registry.request("GET", "/v2/charts/app/manifests/1.0.0").status_code == 200


def test_a_push_of_an_archived_image_into_an_immutable_tag_is_refused(ecr: Any, registry: Registry) -> None:
    ecr.create_repository(repositoryName="charts/fixed", imageTagMutability="IMMUTABLE")
    image = push(registry, "charts/fixed", "1.0.0")
    manifest = registry.request("GET", f"/v2/charts/fixed/manifests/{image}").text
    archive(ecr, image, "charts/fixed")

    answer = registry.request(
        "PUT", "/v2/charts/fixed/manifests/1.0.0", data=manifest, headers={"Content-Type": OCI_MANIFEST}
    )

    assert answer.status_code == 400
    assert answer.json()["errors"][0]["code"] == "TAG_INVALID"
    assert status(ecr, "charts/fixed", image)["imageStatus"] == "ARCHIVED"


def test_an_archived_index_leaves_its_images_pullable(ecr: Any, registry: Registry) -> None:
    child = push(registry, "charts/app", "amd64")
    size = len(registry.request("GET", f"/v2/charts/app/manifests/{child}").content)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": size}],
    }
    answer = registry.manifest("charts/app", "multi", index, OCI_INDEX)
    assert answer.status_code == 201, answer.text

    archive(ecr, str(answer.headers["Docker-Content-Digest"]))

    assert registry.request("GET", "/v2/charts/app/manifests/multi").status_code == 404
    assert registry.request("GET", f"/v2/charts/app/manifests/{child}").status_code == 200
    assert digest(json.dumps(index).encode()) == answer.headers["Docker-Content-Digest"]


# -- 4: lifecycle rules that run on the emulator's clock --------------------------------------------------
def rule(priority: int, action: dict[str, Any] | None = None, **selection: Any) -> dict[str, Any]:
    counted = {"countUnit": "days"} if selection.get("countType", "").startswith("since") else {}
    return {
        "rulePriority": priority,
        "selection": {**counted, **selection},
        "action": action or {"type": "expire"},
    }


def put_policy(ecr: Any, *rules: dict[str, Any], repository: str = "charts/app") -> None:
    ecr.put_lifecycle_policy(
        repositoryName=repository, lifecyclePolicyText=json.dumps({"rules": list(rules)})
    )


def statuses(ecr: Any, repository: str = "charts/app") -> dict[str, str]:
    found = ecr.describe_images(repositoryName=repository, filter={"imageStatus": "ANY"})["imageDetails"]
    return {(d.get("imageTags") or [d["imageDigest"]])[0]: d["imageStatus"] for d in found}


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (
            rule(1, tagStatus="any", countType="sinceImagePulled", countNumber=90),
            "countType sinceImagePulled goes only with action transition",
        ),
        (
            rule(
                1,
                TRANSITION,
                tagStatus="any",
                storageClass="archive",
                countType="sinceImageTransitioned",
                countNumber=90,
            ),
            "countType sinceImageTransitioned goes only with action expire",
        ),
        (
            rule(1, tagStatus="any", storageClass="archive", countType="sinceImagePushed", countNumber=90),
            "storageClass archive goes only with countType sinceImageTransitioned",
        ),
        (
            rule(
                1, tagStatus="any", storageClass="archive", countType="sinceImageTransitioned", countNumber=30
            ),
            "countType sinceImageTransitioned needs a countNumber of at least 90: "
            "archived images are kept 90 days",
        ),
    ],
    ids=["pulled expire", "transitioned transition", "archive pushed", "archive under 90 days"],
)
def test_a_lifecycle_rule_that_pairs_the_archive_class_wrongly_is_refused(
    ecr: Any, bad: dict[str, Any], problem: str
) -> None:
    assert error(
        ecr.put_lifecycle_policy,
        repositoryName="charts/app",
        lifecyclePolicyText=json.dumps({"rules": [bad]}),
    ) == (
        "InvalidParameterException",
        "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: "
        f"'Lifecycle policy validation failure: rule 1: {problem}'",
    )


def test_a_since_pulled_rule_archives_what_was_not_pulled_when_the_clock_passes(
    emulator: Emulator, ecr: Any, registry: Registry
) -> None:
    push(registry, "charts/app", "unused")
    used = push(registry, "charts/app", "used")
    put_policy(ecr, rule(1, TRANSITION, tagStatus="any", countType="sinceImagePulled", countNumber=90))

    advance(emulator, 60 * DAY)
    assert registry.request("GET", f"/v2/charts/app/manifests/{used}").status_code == 200
    advance(emulator, 31 * DAY)

    assert statuses(ecr) == {"unused": "ARCHIVED", "used": "ACTIVE"}
    assert registry.request("GET", "/v2/charts/app/manifests/unused").status_code == 404


def test_a_restored_image_ages_from_its_restore_for_since_pulled(
    emulator: Emulator, ecr: Any, registry: Registry
) -> None:
    image = push(registry, "charts/app", "1.0.0")
    put_policy(ecr, rule(1, TRANSITION, tagStatus="any", countType="sinceImagePulled", countNumber=90))
    advance(emulator, 91 * DAY)
    assert statuses(ecr) == {"1.0.0": "ARCHIVED"}

    restore(ecr, image)
    advance(emulator, 600)
    assert statuses(ecr) == {"1.0.0": "ACTIVE"}
    advance(emulator, 89 * DAY)
    assert statuses(ecr) == {"1.0.0": "ACTIVE"}
    advance(emulator, 2 * DAY)
    assert statuses(ecr) == {"1.0.0": "ARCHIVED"}


def test_archived_images_expire_by_time_since_transition(
    emulator: Emulator, ecr: Any, registry: Registry
) -> None:
    push(registry, "charts/app", "1.0.0")
    put_policy(
        ecr,
        rule(1, TRANSITION, tagStatus="any", countType="sinceImagePulled", countNumber=30),
        rule(2, tagStatus="any", storageClass="archive", countType="sinceImageTransitioned", countNumber=90),
    )
    advance(emulator, 31 * DAY)
    assert statuses(ecr) == {"1.0.0": "ARCHIVED"}
    advance(emulator, 89 * DAY)
    assert statuses(ecr) == {"1.0.0": "ARCHIVED"}
    advance(emulator, 2 * DAY)
    assert statuses(ecr) == {}


def test_count_rules_expire_the_oldest_at_once_and_a_higher_rule_protects_what_it_selects(
    emulator: Emulator, ecr: Any, registry: Registry
) -> None:
    for tag in ("v1", "v2", "v3", "prod-1", "dev-1"):
        push(registry, "charts/app", tag)
        advance(emulator, 10)
    put_policy(
        ecr,
        rule(1, tagStatus="tagged", tagPrefixList=["v"], countType="imageCountMoreThan", countNumber=2),
        rule(2, tagStatus="tagged", tagPatternList=["prod-*"], countType="imageCountMoreThan", countNumber=5),
        rule(3, tagStatus="any", countType="sinceImagePushed", countNumber=30),
    )
    assert sorted(statuses(ecr)) == ["dev-1", "prod-1", "v2", "v3"]  # v1 at once: ECR within 24 hours

    advance(emulator, 31 * DAY)

    assert sorted(statuses(ecr)) == ["prod-1", "v2", "v3"]


def test_an_image_an_index_lists_is_archived_after_the_index(
    emulator: Emulator, ecr: Any, registry: Registry
) -> None:
    child = push(registry, "charts/app", "amd64")
    size = len(registry.request("GET", f"/v2/charts/app/manifests/{child}").content)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": size}],
    }
    assert registry.manifest("charts/app", "multi", index, OCI_INDEX).status_code == 201
    put_policy(ecr, rule(1, TRANSITION, tagStatus="any", countType="sinceImagePushed", countNumber=10))

    advance(emulator, 11 * DAY)
    assert statuses(ecr) == {"amd64": "ACTIVE", "multi": "ARCHIVED"}
    advance(emulator, 1)
    assert statuses(ecr) == {"amd64": "ARCHIVED", "multi": "ARCHIVED"}


# -- 5: lifecycle policy preview ---------------------------------------------------------------------------
def test_the_preview_says_what_the_policy_would_do_and_the_runner_then_does_it(
    emulator: Emulator, ecr: Any, registry: Registry
) -> None:
    digests = {}
    for tag in ("v1", "v2", "v3"):
        digests[tag] = push(registry, "charts/app", tag)
        advance(emulator, 10)
    digests["old"] = push(registry, "charts/app", "old")
    push(registry, "charts/app", "old", b"new content")  # the first "old" is left untagged
    advance(emulator, 20 * DAY)
    policy = json.dumps(
        {
            "rules": [
                rule(1, tagStatus="untagged", countType="sinceImagePushed", countNumber=14),
                rule(
                    2,
                    TRANSITION,
                    tagStatus="tagged",
                    tagPatternList=["v*"],
                    countType="imageCountMoreThan",
                    countNumber=1,
                ),
            ]
        }
    )

    started = ecr.start_lifecycle_policy_preview(repositoryName="charts/app", lifecyclePolicyText=policy)
    assert (started["status"], started["lifecyclePolicyText"]) == ("IN_PROGRESS", policy)
    assert error(ecr.start_lifecycle_policy_preview, repositoryName="charts/app")[0] == (
        "LifecyclePolicyPreviewInProgressException"
    )
    preview = ecr.get_lifecycle_policy_preview(repositoryName="charts/app")

    assert preview["status"] == "COMPLETE"
    found = {
        r["imageDigest"]: (r["imageTags"], r["action"], r["appliedRulePriority"], r["storageClass"])
        for r in preview["previewResults"]
    }
    assert found == {
        digests["old"]: ([], {"type": "EXPIRE"}, 1, "STANDARD"),
        digests["v1"]: (["v1"], {"type": "TRANSITION", "targetStorageClass": "ARCHIVE"}, 2, "STANDARD"),
        digests["v2"]: (["v2"], {"type": "TRANSITION", "targetStorageClass": "ARCHIVE"}, 2, "STANDARD"),
    }
    assert preview["summary"] == {
        "expiringImageTotalCount": 1,
        "transitioningImageTotalCounts": [{"targetStorageClass": "ARCHIVE", "imageTotalCount": 2}],
    }
    untagged = ecr.get_lifecycle_policy_preview(repositoryName="charts/app", filter={"tagStatus": "UNTAGGED"})
    assert [r["imageDigest"] for r in untagged["previewResults"]] == [digests["old"]]
    first = ecr.get_lifecycle_policy_preview(repositoryName="charts/app", maxResults=2)
    rest = ecr.get_lifecycle_policy_preview(
        repositoryName="charts/app", maxResults=2, nextToken=first["nextToken"]
    )
    assert len(first["previewResults"]) == 2
    assert len(rest["previewResults"]) == 1
    assert error(ecr.get_lifecycle_policy_preview, repositoryName="charts/app", maxResults=101)[0] == (
        "ValidationException"
    )

    ecr.put_lifecycle_policy(repositoryName="charts/app", lifecyclePolicyText=policy)

    assert statuses(ecr) == {"v1": "ARCHIVED", "v2": "ARCHIVED", "v3": "ACTIVE", "old": "ACTIVE"}


def test_a_preview_needs_a_policy_and_a_start(ecr: Any) -> None:
    assert error(ecr.get_lifecycle_policy_preview, repositoryName="charts/app") == (
        "LifecyclePolicyPreviewNotFoundException",
        "There is no lifecycle policy preview for the repository with name 'charts/app' in the registry "
        "with id '123456789012'",
    )
    assert error(ecr.start_lifecycle_policy_preview, repositoryName="charts/app") == (
        "LifecyclePolicyNotFoundException",
        "Lifecycle policy does not exist for the repository with name 'charts/app' in the registry with id "
        "'123456789012'",
    )
    refused = json.dumps({"rules": [rule(1, tagStatus="any", countType="sinceImagePulled", countNumber=9)]})
    assert error(
        ecr.start_lifecycle_policy_preview, repositoryName="charts/app", lifecyclePolicyText=refused
    ) == (
        "InvalidParameterException",
        "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy "
        "validation failure: rule 1: countType sinceImagePulled goes only with action transition'",
    )
    put_policy(ecr, rule(1, tagStatus="untagged", countType="sinceImagePushed", countNumber=14))
    started = ecr.start_lifecycle_policy_preview(repositoryName="charts/app")
    assert json.loads(started["lifecyclePolicyText"])["rules"][0]["rulePriority"] == 1
    preview = ecr.get_lifecycle_policy_preview(repositoryName="charts/app")
    assert (preview["status"], preview["previewResults"]) == ("COMPLETE", [])


# -- 6: ListImageReferrers ------------------------------------------------------------------------------
def test_image_referrers_are_listed_with_their_status(ecr: Any, registry: Registry) -> None:
    subject = push(registry, "charts/app", "1.0.0")
    size = len(registry.request("GET", f"/v2/charts/app/manifests/{subject}").content)
    about = {"mediaType": OCI_MANIFEST, "digest": subject, "size": size}
    referrers = {}
    for kind in ("application/vnd.example.sbom", "application/vnd.example.signature"):
        answer = registry.image(
            "charts/app", kind.rpartition(".")[2], kind.encode(), subject=about, artifactType=kind
        )
        assert answer.status_code == 201, answer.text
        referrers[kind] = answer.headers["Docker-Content-Digest"]
    archive(ecr, referrers["application/vnd.example.sbom"])

    def listed_referrers(**kwargs: Any) -> dict[str, str]:
        found = ecr.list_image_referrers(
            repositoryName="charts/app", subjectId={"imageDigest": subject}, **kwargs
        )
        return {r["artifactType"]: r["artifactStatus"] for r in found["referrers"]}

    assert listed_referrers() == {"application/vnd.example.signature": "ACTIVE"}
    assert listed_referrers(filter={"artifactStatus": "ANY"}) == {
        "application/vnd.example.sbom": "ARCHIVED",
        "application/vnd.example.signature": "ACTIVE",
    }
    assert listed_referrers(
        filter={"artifactStatus": "ANY", "artifactTypes": ["application/vnd.example.sbom"]}
    ) == {"application/vnd.example.sbom": "ARCHIVED"}
    first = ecr.list_image_referrers(
        repositoryName="charts/app",
        subjectId={"imageDigest": subject},
        filter={"artifactStatus": "ANY"},
        maxResults=1,
    )
    assert len(first["referrers"]) == 1
    assert {"digest", "mediaType", "size", "artifactStatus"} <= set(first["referrers"][0])
    rest = ecr.list_image_referrers(
        repositoryName="charts/app",
        subjectId={"imageDigest": subject},
        filter={"artifactStatus": "ANY"},
        nextToken=first["nextToken"],
    )
    assert len(rest["referrers"]) == 1
    assert "nextToken" not in rest
    for bad in ({"maxResults": 51}, {"filter": {"artifactTypes": [f"a/{n}" for n in range(6)]}}):
        assert error(
            ecr.list_image_referrers, repositoryName="charts/app", subjectId={"imageDigest": subject}, **bad
        )[0] == ("ValidationException")

    index = registry.request("GET", f"/v2/charts/app/referrers/{subject}").json()
    assert [m["digest"] for m in index["manifests"]] == [referrers["application/vnd.example.signature"]]


def test_the_spec_reader_refuses_the_same_archive_pairing(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        "  repository:\n    lifecycle_policy:\n      rules:\n        - rulePriority: 1\n"
        "          selection: {tagStatus: any, countType: sinceImagePulled, countUnit: days,\n"
        "                      countNumber: 90}\n"
        "          action: {type: expire}\n"
        "charts:\n  - name: ab\n    repo: ./c\n    versions: ['1']\n"
    )

    with pytest.raises(SpecError) as caught:
        load_spec(spec, environ={})

    assert "rule 1: countType sinceImagePulled goes only with action transition" in str(caught.value)
