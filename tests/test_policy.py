"""--ecrmirror-policy prints a least-privilege IAM policy: proven sufficient and minimal against IAM.

The emulator, with enforce_iam, authorizes every API and registry request of a non-admin caller
by the caller's IAM policies (moto's policy evaluation, with the real resource ARNs).
"""

from __future__ import annotations

import copy
import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from ecrclient import admin, become_user, printed_policy

from conftest import REGISTRY, ChartServer
from ecrmirror.emulator import Emulator
from ecrmirror.emulator.backfill import backfills
from ecrmirror.emulator.iam import ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY
from ecrmirror.policy import AUDIT, SYNC, policy_document
from ecrmirror.spec import load_spec

KMS_KEY = "arn:aws:kms:eu-west-1:123456789012:key/0b9d6c1e-5f7a-4e2b-8c3d-9a1f2e4b6c8d"
# A key of the user's account: the emulator takes it as existing, as --offline does a spec's keys.
pytestmark = pytest.mark.ecr_emulator(kms_keys=[KMS_KEY])
SCENARIO = (
    f"target:\n  registry: {REGISTRY}\n  prefix: mirror\n  create_repositories: true\n"
    "  repository:\n"
    "    image_tag_mutability: IMMUTABLE\n"
    "    scan_on_push: true\n"
    f"    encryption: KMS\n    kms_key: {KMS_KEY}\n"
    "    tags: {team: platform}\n"
    '    lifecycle_policy: \'{"rules": [{"rulePriority": 1, "selection": {"tagStatus": "untagged", '
    '"countType": "sinceImagePushed", "countUnit": "days", "countNumber": 7}, '
    '"action": {"type": "expire"}}]}\'\n'
    "    enforce_settings: true\n"
    "  replication:\n    regions: [eu-central-1, us-east-1]\n"
    "  pull_time_exclusions: ['arn:aws:iam::123456789012:role/ecrmirror-audit']\n"
    "charts:\n"
    "  - name: gitlab\n    repo: REPO\n    versions: ['7.1.1', '7.1.2', '7.2.0']\n"
    "  - name: ingress\n    repo: REPO\n    versions: ['1.0.0']\n"
)
# A lifecycle policy preview changes nothing: it computes what the rules would do.
READ_ONLY = re.compile(r"^ecr:((Describe|List|Get|BatchGet)[A-Za-z]+|StartLifecyclePolicyPreview)$")


def scenario_policy(mode: str, tmp: Path) -> dict[str, Any]:
    path = tmp / f"scenario-{mode}.yaml"
    path.write_text(SCENARIO.replace("REPO", "http://127.0.0.1:9/charts"))
    return policy_document([load_spec(path)], mode)


def statement_actions(document: dict[str, Any]) -> list[tuple[int, str]]:
    return [(i, a) for i, s in enumerate(document["Statement"]) for a in s["Action"]]


def without(document: dict[str, Any], statement: int, action: str) -> dict[str, Any]:
    reduced = copy.deepcopy(document)
    reduced["Statement"][statement]["Action"].remove(action)
    if not reduced["Statement"][statement]["Action"]:
        del reduced["Statement"][statement]
    return reduced


# The cases are known at collection: the policy of the scenario, as the domain code computes it.
# test_the_printed_policy_is_what_the_cases_remove_from proves the printed one is the same.
with tempfile.TemporaryDirectory(prefix="ecrmirror-policy-") as _tmp:
    SYNC_POLICY = scenario_policy(SYNC, Path(_tmp))
    AUDIT_POLICY = scenario_policy(AUDIT, Path(_tmp))


@pytest.fixture
def upstream(two_charts: ChartServer) -> ChartServer:
    two_charts.add("gitlab", "7.2.0")  # pushed into a repository that exists: its blobs asked first
    two_charts.publish()
    return two_charts


@pytest.fixture
def account(upstream: ChartServer, emulator: Emulator, write_spec, run) -> Iterator[Emulator]:
    """The scenario's account, drifted so that a sync needs every action of its policy; IAM
    enforced for everyone but the administrator.

    gitlab 7.1.1 was mirrored before replication was declared (the sync backfills it), the source
    repository and the eu-central-1 replica were changed by hand, and eu-central-1 has a
    creation template of other settings (made before ECR's template role, which the sync creates).
    gitlab 7.1.2 was mirrored then too, and since archived (the sync restores it); 7.1.1 reached
    eu-central-1 by other means and was archived there (the sync restores that copy too).
    """
    before = SCENARIO.split("  replication:")[0] + "charts:\n  - name: gitlab\n    repo: REPO\n"
    write_spec(before.replace("REPO", upstream.url) + "    versions: ['7.1.1', '7.1.2']\n")
    run("--sync", "mirror.yaml").assert_outcomes(passed=3)
    source = admin("ecr", emulator)
    source.update_image_storage_class(
        repositoryName="mirror/gitlab", imageId={"imageTag": "7.1.2"}, targetStorageClass="ARCHIVE"
    )
    source.put_image_tag_mutability(repositoryName="mirror/gitlab", imageTagMutability="MUTABLE")
    source.put_image_scanning_configuration(
        repositoryName="mirror/gitlab", imageScanningConfiguration={"scanOnPush": False}
    )
    frankfurt = admin("ecr", emulator, "eu-central-1")
    frankfurt.create_repository(
        repositoryName="mirror/gitlab",
        imageTagMutability="MUTABLE",
        imageScanningConfiguration={"scanOnPush": False},
        encryptionConfiguration={"encryptionType": "KMS"},  # the region's AWS managed key
    )
    # gitlab 7.1.1 reached eu-central-1 by other means, and was archived there (the sync restores it)
    held = source.batch_get_image(repositoryName="mirror/gitlab", imageIds=[{"imageTag": "7.1.1"}])["images"][
        0
    ]
    frankfurt.put_image(
        repositoryName="mirror/gitlab",
        imageManifest=held["imageManifest"],
        imageManifestMediaType=held["imageManifestMediaType"],
        imageTag="7.1.1",
    )
    frankfurt.update_image_storage_class(
        repositoryName="mirror/gitlab", imageId={"imageTag": "7.1.1"}, targetStorageClass="ARCHIVE"
    )
    frankfurt.create_repository_creation_template(
        prefix="mirror", appliedFor=["REPLICATION"], imageTagMutability="MUTABLE"
    )
    admin("iam", emulator, "us-east-1").delete_role(RoleName="AWSServiceRoleForECRTemplate")
    write_spec(SCENARIO.replace("REPO", upstream.url))
    emulator.app.iam.enforce = True
    try:
        yield emulator
    finally:
        emulator.app.iam.enforce = False


def test_the_printed_policy_is_what_the_cases_remove_from(account: Emulator, run) -> None:
    account.app.requests.clear()
    assert printed_policy(run, SYNC) == SYNC_POLICY
    assert printed_policy(run, AUDIT) == AUDIT_POLICY
    assert account.requests == [], "printing a policy must not touch AWS"


def test_the_audit_policy_is_read_only() -> None:
    actions = {action for _, action in statement_actions(AUDIT_POLICY)}
    assert actions, "the audit policy allows nothing"
    assert {a for a in actions if not READ_ONLY.match(a)} == set()
    assert "ecr:GetAuthorizationToken" not in actions  # an audit never talks to the registry


def test_the_sync_policy_scopes_repositories_to_the_prefix_and_only_what_must_be_star() -> None:
    for statement in SYNC_POLICY["Statement"]:
        if statement["Resource"] == "*":
            assert set(statement["Action"]) == {
                "ecr:GetAuthorizationToken",
                "ecr:DescribeRegistry",
                "ecr:PutReplicationConfiguration",
                "ecr:DescribeRepositoryCreationTemplates",
                "ecr:CreateRepositoryCreationTemplate",
                "ecr:UpdateRepositoryCreationTemplate",
                # ECR's replication backfill fills the replicas: no push rights there (below)
                "ecr:StartReplicationBackfill",
                "ecr:DescribeReplicationBackfillResults",
                "ecr:ListReplicationBackfills",
                # pull-time exclusions are registry-level (the Service Authorization Reference)
                "ecr:ListPullTimeUpdateExclusions",
                "ecr:RegisterPullTimeUpdateExclusion",
            }
    resources = {json.dumps(s["Resource"]) for s in SYNC_POLICY["Statement"]}
    assert json.dumps("arn:aws:ecr:eu-west-1:123456789012:repository/mirror/*") in resources
    for region in ("eu-central-1", "us-east-1"):  # the replicas, which the sync keeps, and ECR backfills
        replica = f"arn:aws:ecr:{region}:123456789012:repository/mirror/*"
        held = [s for s in SYNC_POLICY["Statement"] if replica in json.dumps(s["Resource"])]
        assert held
        assert all(not {"ecr:PutImage", "ecr:InitiateLayerUpload"} & set(s["Action"]) for s in held)
    roles = "arn:aws:iam::123456789012:role/aws-service-role/"
    assert (
        json.dumps(
            [
                f"{roles}ecr.amazonaws.com/AWSServiceRoleForECRTemplate",
                f"{roles}replication.ecr.amazonaws.com/AWSServiceRoleForECRReplication",
            ]
        )
        in resources
    )


def test_a_user_with_exactly_the_sync_policy_can_sync_and_with_the_audit_policy_audit(
    account: Emulator, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    account.app.replicator.outcomes["us-east-1"] = "IN_PROGRESS"  # so the audit asks ECR for the status
    become_user(account, SYNC_POLICY, monkeypatch)

    synced = run("--sync", "-v", "mirror.yaml")

    synced.assert_outcomes(passed=12)  # 2 repositories, 4 replicas, the rule, the exclusion, 4 versions
    synced.stdout.fnmatch_lines(
        [
            "mirror.yaml::repository::mirror/gitlab UPDATED*",
            "mirror.yaml::replica::eu-central-1::mirror/gitlab UPDATED*",
            "mirror.yaml::replication CREATED*",
            "mirror.yaml::gitlab::7.1.1 BACKFILLED*",
            "mirror.yaml::gitlab::7.1.2 RESTORING*",
        ]
    )

    admin("iam", account, "us-east-1").put_user_policy(
        UserName="mirror-ci", PolicyName="ecrmirror", PolicyDocument=json.dumps(AUDIT_POLICY)
    )
    audited = run("--check-only", "-v", "mirror.yaml")
    audited.assert_outcomes(passed=12)
    assert any(r.action == "DescribeImageReplicationStatus" for r in account.requests)


@pytest.mark.parametrize(("statement", "action"), statement_actions(SYNC_POLICY))
def test_sync_fails_without_any_one_action_of_its_policy(
    account: Emulator, run, monkeypatch: pytest.MonkeyPatch, statement: int, action: str
) -> None:
    become_user(account, without(SYNC_POLICY, statement, action), monkeypatch)

    result = run("--sync", "mirror.yaml")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert action in result.stdout.str()  # the failure names what is missing


@pytest.mark.parametrize(("statement", "action"), statement_actions(AUDIT_POLICY))
def test_the_audit_fails_without_any_one_action_of_its_policy(
    account: Emulator, run, monkeypatch: pytest.MonkeyPatch, statement: int, action: str
) -> None:
    account.app.replicator.outcomes["us-east-1"] = "IN_PROGRESS"
    # ECR's backfill would copy what replication leaves IN_PROGRESS too; ecrmirror's copy does not
    backfills(account.app.state).native = False
    account.app.iam.enforce = False
    run("--sync", "mirror.yaml").assert_outcomes(passed=12)  # as the administrator
    account.app.iam.enforce = True
    become_user(account, without(AUDIT_POLICY, statement, action), monkeypatch)

    result = run("--check-only", "mirror.yaml")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert action in result.stdout.str()  # the failure names what is missing


def test_policy_without_specs_is_a_usage_error(pytester: pytest.Pytester, run) -> None:
    pytester.mkdir("empty")

    result = run("--ecrmirror-policy=sync", "empty")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--ecrmirror-policy found no spec files*"])


def test_a_spec_error_prints_no_policy(write_spec, run) -> None:
    write_spec(f"target:\n  registry: {REGISTRY}\n  replicaton: {{}}\ncharts: []\n")

    result = run("--ecrmirror-policy=sync", "mirror.yaml")

    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*unknown key 'replicaton' in target*", "*no policy printed*"])
    result.stdout.no_fnmatch_line('*"Statement"*')


def test_policy_with_a_mode_flag_is_a_usage_error(write_spec, run) -> None:
    result = run("--ecrmirror-policy=sync", "--sync")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--ecrmirror-policy prints a policy and runs nothing*"])


def test_the_standalone_emulator_enforces_iam_on_request() -> None:
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "ecrmirror.emulator", "--port", "0", "--quiet", "--enforce-iam"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split("listening on ")[1].split(";")[0]
        keys = {
            "endpoint_url": url,
            "aws_access_key_id": ADMIN_ACCESS_KEY,
            "aws_secret_access_key": ADMIN_SECRET_KEY,
        }
        iam = boto3.client("iam", region_name="us-east-1", **keys)
        iam.create_user(UserName="nobody")
        key = iam.create_access_key(UserName="nobody")["AccessKey"]
        user = boto3.client(
            "ecr",
            region_name="eu-west-1",
            endpoint_url=url,
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
        )

        with pytest.raises(
            user.exceptions.ClientError, match="not authorized to perform: ecr:CreateRepository"
        ):
            user.create_repository(repositoryName="mirror/x")
        boto3.client("ecr", region_name="eu-west-1", **keys).create_repository(repositoryName="mirror/x")
    finally:
        process.terminate()
        process.communicate(timeout=10)  # waits, and closes the pipe
