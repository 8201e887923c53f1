"""An offline rehearsal says what real ECR would: `pytest specs/ --sync --offline`, run as a user runs it.

What ECR refuses in a spec fails when the spec is read (file, line, what ECR allows), before the
emulator is asked anything; a registry of another account than the credentials' fails with both
accounts named; and a spec that uses what ECR allows at its limits passes end to end.
"""

from __future__ import annotations

import pytest

from conftest import ChartServer

ACCOUNT = "123456789012"
KMS_KEY = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/6f1f5e2a-0b4c-4d8e-9a7b-1c2d3e4f5a6b"
SYNC_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ecrmirror-sync"


def spec(chart_server: ChartServer, repository: str, account: str = ACCOUNT) -> str:
    return (
        f"target:\n  registry: {account}.dkr.ecr.eu-west-1.amazonaws.com\n  prefix: mirror\n"
        "  create_repositories: true\n"
        f"{repository}"
        f"charts:\n  - name: hello\n    repo: {chart_server.url}\n    versions: ['1.0.0']\n"
    )


@pytest.fixture
def upstream(chart_server: ChartServer) -> ChartServer:
    chart_server.add("hello", "1.0.0")
    chart_server.publish()
    return chart_server


REFUSED = {
    "an invalid lifecycle policy": (
        "  repository:\n    lifecycle_policy:\n      rules:\n        - rulePriority: 1\n"
        "          selection: {tagStatus: tagged, countType: imageCountMoreThan, countNumber: 5}\n"
        "          action: {type: expire}\n",
        "mirror.yaml:7: ECR would refuse this lifecycle_policy: rule 1: tagStatus tagged needs a "
        "tagPatternList or a tagPrefixList*",
    ),
    "a 51st tag": (
        "  repository:\n    tags:\n" + "".join(f"      tag{n}: v\n" for n in range(51)),
        "mirror.yaml:7: 51 tags, but ECR allows at most 50 on a repository*",
    ),
    "a regular expression as an exclusion filter": (
        "  repository:\n    image_tag_mutability: IMMUTABLE_WITH_EXCLUSION\n"
        "    image_tag_mutability_exclusion_filters: ['v[0-9]*']\n",
        "mirror.yaml:7: tag pattern 'v[[]0-9]*' is not valid for ECR",
    ),
}


@pytest.mark.parametrize(("repository", "message"), list(REFUSED.values()), ids=list(REFUSED))
def test_a_rehearsal_refuses_what_ecr_refuses_before_anything_runs(
    upstream: ChartServer, pytester: pytest.Pytester, run_subprocess, repository: str, message: str
) -> None:
    pytester.makefile(".yaml", mirror=spec(upstream, repository))

    result = run_subprocess("mirror.yaml", "--sync", "--offline", f"--offline-account={ACCOUNT}")

    assert result.ret == pytest.ExitCode.INTERRUPTED  # a spec that does not load stops the run
    result.stdout.fnmatch_lines([message, "  fix: *"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert upstream.archive_downloads() == []


def test_a_mistyped_account_fails_each_item_naming_both_accounts(
    upstream: ChartServer, pytester: pytest.Pytester, run_subprocess
) -> None:
    # given a spec whose registry account has one digit wrong, with a replication rule
    mistyped = "123456789013"
    pytester.makefile(
        ".yaml", mirror=spec(upstream, "  replication:\n    regions: [eu-central-1]\n", account=mistyped)
    )
    pytester.makeini(f"[pytest]\necrmirror_offline_account = {SYNC_ROLE}\n")

    # when the rehearsal runs as the account the sync role belongs to
    result = run_subprocess("mirror.yaml", "--sync", "--offline", "-v")

    # then nothing is created or pushed, and each item says which two accounts differ
    result.assert_outcomes(failed=4)
    output = result.stdout.str()
    assert f"as account {ACCOUNT}" in output
    both = f"*the credentials belong to account {ACCOUNT}, but the spec's registry is in account {mistyped}*"
    result.stdout.fnmatch_lines([f"AWS ERROR repository mirror/hello: {mistyped}.*", both])
    result.stdout.fnmatch_lines([f"AWS ERROR repository mirror/hello in eu-central-1: {mistyped}.*", both])
    result.stdout.fnmatch_lines([f"AWS ERROR replication rule: {mistyped}.*", both])
    result.stdout.fnmatch_lines([f"AWS ERROR hello 1.0.0: {mistyped}.*", both])
    assert f"If {mistyped} is a typo, correct `registry:` in the spec" in output
    assert "Traceback" not in output


def test_a_spec_at_ecrs_limits_passes_end_to_end(
    upstream: ChartServer, pytester: pytest.Pytester, run_subprocess
) -> None:
    # given a spec using what ECR allows, at its limits: a KMS key of the account, 50 tags, a
    # wildcard exclusion filter, a lifecycle policy with a transition to archive, replication
    repository = (
        "  repository:\n    image_tag_mutability: IMMUTABLE_WITH_EXCLUSION\n"
        "    image_tag_mutability_exclusion_filters: ['latest', 'dev-*']\n"
        f"    encryption: KMS\n    kms_key: {KMS_KEY}\n"
        "    tags:\n" + "".join(f"      tag{n}: v\n" for n in range(50)) + "    lifecycle_policy:\n"
        "      rules:\n"
        "        - rulePriority: 1\n"
        "          selection: {tagStatus: tagged, tagPatternList: ['dev-*'], countType: sinceImagePushed,"
        " countUnit: days, countNumber: 30}\n"
        "          action: {type: transition, targetStorageClass: archive}\n"
        "        - rulePriority: 2\n"
        "          selection: {tagStatus: any, countType: imageCountMoreThan, countNumber: 500}\n"
        "          action: {type: expire}\n"
        "  replication:\n    regions: [eu-central-1, us-east-1]\n"
    )
    pytester.makefile(".yaml", mirror=spec(upstream, repository))

    # when it is rehearsed as its own account, and then audited
    synced = run_subprocess("mirror.yaml", "--sync", "--offline", f"--offline-account={SYNC_ROLE}", "-v")

    # then every item passes
    synced.assert_outcomes(passed=5)
    synced.stdout.fnmatch_lines(
        [
            "*mirror.yaml::repository::mirror/hello CREATED*",
            "*mirror.yaml::replica::us-east-1::mirror/hello CREATED*",
            "*mirror.yaml::replication CREATED*",
            "*mirror.yaml::hello::1.0.0 PUSHED*",
        ]
    )


def test_a_bad_offline_account_is_a_usage_error(pytester: pytest.Pytester, run_subprocess) -> None:
    result = run_subprocess("--sync", "--offline", "--offline-account=12345", ".")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--offline-account '12345' is not an AWS account: give its 12-digit id*"])
