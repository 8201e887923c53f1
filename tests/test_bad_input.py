"""Bad input gets one plain message saying what, where and what to do; no traceback, no push."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import responses
from chartfactory import ChartFile, package_chart

from conftest import REGISTRY, ChartServer
from ecrmirror.emulator import Emulator
from ecrmirror.errors import SpecError
from ecrmirror.spec import load_spec

GOOD_TARGET = f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
CHART = "charts:\n  - name: ab\n    repo: ./c\n    versions: ['1']\n"


def spec_error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> SpecError:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as caught:
        load_spec(path, environ=env or {})
    return caught.value


# -- spec files: (spec text, line, message fragment, fix fragment) -----------------------------
SPEC_CASES = {
    "typo in a chart key": (
        GOOD_TARGET + "charts:\n  - name: gitlab\n    repo: ./c\n    verions: ['1.0.0']\n",
        7,
        "unknown key 'verions' in a chart entry",
        "did you mean 'versions'?",
    ),
    "typo in a target key": (
        f"target:\n  registry: {REGISTRY}\n  prefx: helm\n"
        "charts:\n  - name: ab\n    repo: ./c\n    versions: ['1']\n",
        3,
        "unknown key 'prefx' in target",
        "did you mean 'prefix'?",
    ),
    "unset variable": (
        "target:\n  registry: ${ECR}\ncharts:\n  - name: ab\n    repo: ./c\n    versions: ['1']\n",
        2,
        "environment variable ECR is not set",
        "export ECR=..., or give a default: ${ECR:-value}",
    ),
    "versions is a mapping": (
        GOOD_TARGET + "charts:\n  - name: ab\n    repo: ./c\n    versions: {1.0.0: yes}\n",
        7,
        "versions must be a non-empty list of versions, or a constraint string",
        'versions: ["1.2.3", "1.2.4"]',
    ),
    "not an ECR registry": (
        "target:\n  registry: ghcr.io/me\ncharts:\n  - name: ab\n    repo: ./c\n    versions: ['1']\n",
        2,
        "is not an ECR registry host",
        "<account>.dkr.ecr.<region>.amazonaws.com",
    ),
    "charts missing": (
        f"target:\n  registry: {REGISTRY}\ncharts:\n",
        3,
        "charts must be a non-empty list",
        "",
    ),
    "target missing": (
        "charts:\n  - name: ab\n    repo: ./c\n    versions: ['1']\n",
        1,
        "the spec has no 'target'",
        "add `target:`",
    ),
    "duplicate version": (
        GOOD_TARGET + "charts:\n  - name: ab\n    repo: ./c\n    versions: ['1.0.0', '1.0.0']\n",
        7,
        "version 1.0.0 of ab is listed twice",
        "remove the duplicate",
    ),
    "version that cannot be a tag": (
        GOOD_TARGET + "charts:\n  - name: ab\n    repo: ./c\n    versions: ['1.0 final']\n",
        7,
        "version '1.0 final' of ab cannot be an OCI tag",
        "at most 128 characters",
    ),
    "uppercase chart name": (
        GOOD_TARGET + "charts:\n  - name: MyChart\n    repo: ./c\n    versions: ['1']\n",
        5,
        "chart name 'MyChart' is not a chart name",
        "lowercase",
    ),
    "a chart name ECR cannot hold as a repository": (
        f"target:\n  registry: {REGISTRY}\n  prefix: {'p' * 251}\n"
        "charts:\n  - name: chart\n    repo: ./c\n    versions: ['1']\n",
        5,
        "it is 257 characters long, and ECR takes 2 to 256",
        "use another chart name or a shorter prefix",
    ),
    "a one-letter chart name without a prefix": (
        f"target:\n  registry: {REGISTRY}\ncharts:\n  - name: a\n    repo: ./c\n    versions: ['1']\n",
        4,
        "chart name 'a' cannot be an ECR repository name as 'a': it is 1 characters long",
        "use another chart name",
    ),
    "boolean that is not": (
        f"target:\n  registry: {REGISTRY}\n  create_repositories: sometimes\n"
        "charts:\n  - name: ab\n    repo: ./c\n    versions: ['1']\n",
        3,
        "create_repositories must be true or false, not 'sometimes'",
        "",
    ),
    "bad tag mutability": (
        f"target:\n  registry: {REGISTRY}\n  repository:\n    image_tag_mutability: LOCKED\n"
        "charts:\n  - name: ab\n    repo: ./c\n    versions: ['1']\n",
        4,
        "image_tag_mutability must be one of IMMUTABLE, MUTABLE, IMMUTABLE_WITH_EXCLUSION, "
        "MUTABLE_WITH_EXCLUSION, not 'LOCKED'",
        "",
    ),
    "chart listed twice": (
        GOOD_TARGET + "charts:\n  - name: ab\n    repo: ./c\n    versions: ['1']\n"
        "  - name: ab\n    repo: ./c\n    versions: ['2']\n",
        8,
        "chart 'ab' from ./c is listed twice (first at",
        "merge the two entries",
    ),
    "invalid YAML": (GOOD_TARGET + "charts:\n  - name: [a\n", 6, "invalid YAML", "fix the YAML syntax"),
    "a chart entry is a string": (
        GOOD_TARGET + "charts:\n  - gitlab\n",
        5,
        "a chart entry must be a mapping",
        "",
    ),
    # -- version constraints
    "a constraint that does not parse": (
        GOOD_TARGET + "charts:\n  - name: ab\n    repo: ./c\n    versions: '>= seven'\n",
        7,
        "versions '>= seven' is not a version constraint",
        '">=7.1.0 <8.0.0", "~7.9", "^7", "7.x"',
    ),
    "latest with a list of versions": (
        GOOD_TARGET + "charts:\n  - name: ab\n    repo: ./c\n    versions: ['1.0.0']\n    latest: 2\n",
        8,
        "latest applies to a version constraint, but versions is a list",
        "write versions as a constraint string",
    ),
    "latest is not a positive number": (
        GOOD_TARGET + "charts:\n  - name: ab\n    repo: ./c\n    versions: '^1'\n    latest: 0\n",
        8,
        "latest must be a whole number above 0",
        "latest: 3",
    ),
    "exclude is not a list": (
        GOOD_TARGET + "charts:\n  - name: ab\n    repo: ./c\n    versions: '^1'\n    exclude: 1.2.0\n",
        8,
        "exclude must be a list of versions",
        'exclude: ["7.3.1"]',
    ),
    # -- upstream access options
    "auth with both a token and a password": (
        GOOD_TARGET + CHART + "    auth: {username: u, password: p, token: t}\n",
        8,
        "auth takes a token or a username and password, not both",
        "",
    ),
    "auth without a username": (
        GOOD_TARGET + CHART + "    auth: {password: p}\n",
        8,
        "auth needs a username (with a password) or a token",
        "auth: {username: ${REPO_USER}, password: ${REPO_PASSWORD}}",
    ),
    "plain_http on an http repository": (
        GOOD_TARGET + CHART + "    plain_http: true\n",
        8,
        "plain_http applies to oci:// repositories",
        "use an http:// repo URL instead",
    ),
    "copy_referrers on a Helm repository": (
        GOOD_TARGET + CHART + "    copy_referrers: false\n",
        8,
        "copy_referrers applies to oci:// repositories",
        "a Helm repository's .prov files are copied with their charts",
    ),
    "verify: true without a keyring": (
        GOOD_TARGET + CHART + "    verify: true\n",
        8,
        "verify needs a keyring",
        "verify: {keyring: path/to/pubring.gpg}",
    ),
    "a ca_file that does not exist": (
        GOOD_TARGET + CHART + "    ca_file: certs/none.pem\n",
        8,
        "none.pem does not exist",
        "a PEM file of CA certificates",
    ),
    "provenance with an unknown value": (
        GOOD_TARGET + CHART + "    provenance: always\n",
        8,
        "provenance must be one of if-present, required, not 'always'",
        "",
    ),
    # -- repository settings and replication (line numbers count from `target:` = 1)
    "typo in a repository setting": (
        GOOD_TARGET + "  repository:\n    scan_on_pus: true\n" + CHART,
        5,
        "unknown key 'scan_on_pus' in target.repository",
        "did you mean 'scan_on_push'?",
    ),
    "exclusion mutability without filters": (
        GOOD_TARGET + "  repository:\n    image_tag_mutability: IMMUTABLE_WITH_EXCLUSION\n" + CHART,
        5,
        "image_tag_mutability IMMUTABLE_WITH_EXCLUSION needs image_tag_mutability_exclusion_filters",
        "image_tag_mutability_exclusion_filters: [",
    ),
    "exclusion filters without an exclusion mutability": (
        GOOD_TARGET
        + "  repository:\n    image_tag_mutability: IMMUTABLE\n"
        + "    image_tag_mutability_exclusion_filters: [latest]\n"
        + CHART,
        6,
        "image_tag_mutability_exclusion_filters needs image_tag_mutability IMMUTABLE_WITH_EXCLUSION",
        "set one of those, or remove the filters",
    ),
    "a bad exclusion filter": (
        GOOD_TARGET
        + "  repository:\n    image_tag_mutability: MUTABLE_WITH_EXCLUSION\n"
        + "    image_tag_mutability_exclusion_filters: ['v1/*']\n"
        + CHART,
        6,
        "tag pattern 'v1/*' is not valid for ECR",
        "the wildcard *",
    ),
    "kms_key without KMS encryption": (
        GOOD_TARGET
        + "  repository:\n    encryption: AES256\n    kms_key: arn:aws:kms:eu-west-1:1:key/x\n"
        + CHART,
        6,
        "kms_key needs encryption: KMS",
        "add `encryption: KMS`",
    ),
    "kms_key is not an ARN": (
        GOOD_TARGET + "  repository:\n    encryption: KMS\n    kms_key: alias/ecr\n" + CHART,
        6,
        "kms_key 'alias/ecr' is not a KMS key ARN",
        "arn:aws:kms:<region>:<account>:key/<id>",
    ),
    "tags is a list": (
        GOOD_TARGET + "  repository:\n    tags: [team]\n" + CHART,
        5,
        "tags must be a mapping of tag keys to values",
        "tags: {team: platform}",
    ),
    "a reserved tag key": (
        GOOD_TARGET + "  repository:\n    tags:\n      aws:owner: me\n" + CHART,
        6,
        "tag 'aws:owner' is not a valid AWS resource tag",
        "do not start with aws:",
    ),
    "lifecycle policy that is not JSON": (
        GOOD_TARGET + "  repository:\n    lifecycle_policy: '{rules: [}'\n" + CHART,
        5,
        "lifecycle_policy is not valid JSON",
        "write it as YAML, or fix the JSON",
    ),
    "lifecycle policy without rules": (
        GOOD_TARGET + "  repository:\n    lifecycle_policy: {rules: []}\n" + CHART,
        5,
        "ECR would refuse this lifecycle_policy: rules must be a non-empty list",
        "lifecycle_policy_parameters",
    ),
    # What ECR itself refuses, caught when the spec is read (docs/emulator-fidelity.md, rows 1-6):
    "lifecycle rule for tagged images without tags to match": (
        GOOD_TARGET
        + "  repository:\n    lifecycle_policy:\n      rules:\n        - rulePriority: 1\n"
        + "          selection: {tagStatus: tagged, countType: imageCountMoreThan, countNumber: 5}\n"
        + "          action: {type: expire}\n"
        + CHART,
        6,
        "rule 1: tagStatus tagged needs a tagPatternList or a tagPrefixList",
        "lifecycle_policy_parameters",
    ),
    "lifecycle rule counting images with a unit": (
        GOOD_TARGET
        + "  repository:\n    lifecycle_policy:\n      rules:\n        - rulePriority: 1\n"
        + "          selection: {tagStatus: untagged, countType: imageCountMoreThan, countUnit: days,"
        + " countNumber: 5}\n          action: {type: expire}\n"
        + CHART,
        6,
        "countUnit applies only to the since* count types",
        "lifecycle_policy_parameters",
    ),
    "lifecycle rule for any image before another rule": (
        GOOD_TARGET
        + "  repository:\n    lifecycle_policy:\n      rules:\n        - rulePriority: 1\n"
        + "          selection: {tagStatus: any, countType: imageCountMoreThan, countNumber: 50}\n"
        + "          action: {type: expire}\n        - rulePriority: 2\n"
        + "          selection: {tagStatus: untagged, countType: sinceImagePushed, countUnit: days,"
        + " countNumber: 1}\n          action: {type: expire}\n"
        + CHART,
        6,
        "rule 1 selects tagStatus any, so it must have the highest rulePriority",
        "lifecycle_policy_parameters",
    ),
    "a 51st tag": (
        GOOD_TARGET + "  repository:\n    tags:\n" + "".join(f"      tag{n}: v\n" for n in range(51)) + CHART,
        6,
        "51 tags, but ECR allows at most 50 on a repository",
        "keep the tags",
    ),
    "a KMS key of another region": (
        GOOD_TARGET
        + "  repository:\n    encryption: KMS\n"
        + "    kms_key: arn:aws:kms:us-east-1:123456789012:key/0d0c2d2e-1111-2222-3333-444455556666\n"
        + CHART,
        6,
        "kms_key is a key in us-east-1, but the registry is in eu-west-1",
        "give a key of eu-west-1",
    ),
    "26 replication destinations": (
        GOOD_TARGET
        + "  replication:\n    registry_id: '210987654321'\n    regions: ["
        + ", ".join(
            [f"eu-west-{n}" for n in range(1, 10)]
            + [f"us-east-{n}" for n in range(1, 10)]
            + [f"ap-south-{n}" for n in range(1, 9)]
        )
        + "]\n"
        + CHART,
        6,
        "26 replication destinations, but ECR replicates a registry to at most 25",
        "list fewer regions",
    ),
    "a regular expression as a tag mutability exclusion filter": (
        GOOD_TARGET
        + "  repository:\n    image_tag_mutability: IMMUTABLE_WITH_EXCLUSION\n"
        + "    image_tag_mutability_exclusion_filters: ['^release-[0-9]+$']\n"
        + CHART,
        6,
        "tag pattern '^release-[0-9]+$' is not valid for ECR",
        "the wildcard *",
    ),
    "replication without regions": (
        GOOD_TARGET + "  replication:\n    registry_id: '210987654321'\n" + CHART,
        5,
        "target.replication has no 'regions'",
        "add `regions:` to target.replication",
    ),
    "replication to a region that is not one": (
        GOOD_TARGET + "  replication:\n    regions: [frankfurt]\n" + CHART,
        5,
        "'frankfurt' is not an AWS region",
        "eu-central-1",
    ),
    "replication onto the registry itself": (
        GOOD_TARGET + "  replication:\n    regions: [eu-west-1]\n" + CHART,
        5,
        "replication to eu-west-1 would copy the registry onto itself",
        "set registry_id for another account",
    ),
    "replication registry_id that is not an account": (
        GOOD_TARGET + "  replication:\n    regions: [us-east-1]\n    registry_id: prod\n" + CHART,
        6,
        "replication.registry_id 'prod' is not an AWS account id",
        "12-digit account id",
    ),
}


@pytest.mark.parametrize("case", SPEC_CASES)
def test_spec_error_names_file_line_problem_and_fix(tmp_path: Path, case: str) -> None:
    text, line, problem, fix = SPEC_CASES[case]

    error = spec_error(tmp_path, text)

    assert error.where == f"{tmp_path / 'spec.yaml'}:{line}"
    assert problem in error.problem
    assert fix in error.fix


def test_variables_expand_with_defaults_and_dollar_escapes(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(
        "target:\n  registry: oci://${ECR:-" + REGISTRY + "}/\n  prefix: ${PREFIX}\n"
        "charts:\n  - name: ab\n    repo: ./c$$d\n    versions: ['1.10']\n"
    )

    spec = load_spec(path, environ={"PREFIX": "mirror/helm"})

    assert spec.target.registry.host == REGISTRY
    assert (spec.target.registry.account, spec.target.registry.region) == ("123456789012", "eu-west-1")
    assert spec.target.repository_for("ab") == "mirror/helm/ab"
    assert spec.charts[0].repo == "./c$d"
    assert spec.charts[0].versions[0].version == "1.10"  # not the float 1.1


def test_registry_path_becomes_the_prefix_as_with_helm_push(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(
        f"target:\n  registry: oci://{REGISTRY}/helm/\n"
        "charts:\n  - name: ab\n    repo: ./c\n    versions: ['1']\n"
    )

    assert load_spec(path, environ={}).target.repository_for("ab") == "helm/ab"


def test_a_spec_error_is_a_collection_error_without_traceback(write_spec, run) -> None:
    write_spec(GOOD_TARGET + "charts:\n  - name: gitlab\n    repo: ./c\n    verions: ['1.0.0']\n")

    result = run("--sync", "mirror.yaml")

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "mirror.yaml:7: unknown key 'verions' in a chart entry",
            "*fix: did you mean 'versions'? (allowed: name, repo, versions, latest, include_prereleases, *)",
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*ecrmirror/*.py*")  # no frame of our code


def test_sync_and_check_only_together_is_a_usage_error(run) -> None:
    result = run("--sync", "--check-only")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --sync and --check-only exclude each other*"])


def test_missing_specs_directory_is_a_usage_error(run) -> None:
    result = run("--check-only")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: the specs directory * does not exist*ecrmirror_specs*"])


def test_missing_credentials_is_one_message_for_the_whole_run(
    chart_server: ChartServer, write_spec, run
) -> None:
    chart_server.add("gitlab", "7.1.1")
    chart_server.add("gitlab", "7.1.2")
    chart_server.publish()
    write_spec(
        GOOD_TARGET + f"charts:\n  - name: gitlab\n    repo: {chart_server.url}\n"
        "    versions: ['7.1.1', '7.1.2']\n"
    )

    result = run("--sync", "mirror.yaml")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: ecrmirror found no AWS credentials*AWS_ACCESS_KEY_ID*AWS_PROFILE*web identity*--offline*"]
    )
    assert len([line for line in result.stderr.lines if "credentials" in line]) == 1
    result.stdout.no_fnmatch_line("*Traceback*")
    assert chart_server.requests == []


# -- upstream and archive problems: fail the item, push nothing -----------------------------------
@pytest.fixture
def spec_for_gitlab(chart_server: ChartServer, write_spec):  # type: ignore[no-untyped-def]
    def write(*versions: str) -> None:
        write_spec(
            GOOD_TARGET + f"charts:\n  - name: gitlab\n    repo: {chart_server.url}\n"
            f"    versions: {list(versions)}\n"
        )

    return write


def test_version_missing_upstream_names_the_nearest_versions(
    chart_server: ChartServer, emulator: Emulator, spec_for_gitlab, run
) -> None:
    for version in ("7.0.0", "7.1.1", "7.1.2", "7.3.0", "8.0.0"):
        chart_server.add("gitlab", version)
    chart_server.publish()
    spec_for_gitlab("7.2.0")

    result = run("--sync", "mirror.yaml")

    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            f"*gitlab 7.2.0 is not in {chart_server.url}index.yaml; nearest "
            "versions there: 7.1.1, 7.1.2, 7.3.0, 8.0.0. Fix the version*"
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    assert emulator.writes() == []


def test_chart_missing_upstream_suggests_close_names(
    chart_server: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    chart_server.add("gitlab-runner", "0.1.0")
    chart_server.publish()
    write_spec(
        GOOD_TARGET + f"charts:\n  - name: gitlab-runer\n    repo: {chart_server.url}\n"
        "    versions: ['0.1.0']\n"
    )

    result = run("--sync", "mirror.yaml")

    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*chart 'gitlab-runer' is not in *; it lists gitlab-runner*"])


def test_digest_mismatch_fails_and_pushes_nothing(
    chart_server: ChartServer, emulator: Emulator, spec_for_gitlab, run
) -> None:
    chart_server.add("gitlab", "7.1.1")
    chart_server.publish(overrides={("gitlab", "7.1.1"): {"digest": "ab" * 32}})
    spec_for_gitlab("7.1.1")

    result = run("--sync", "mirror.yaml")

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            f"*the archive from {chart_server.url}gitlab-7.1.1.tgz has digest "
            f"sha256:{chart_server.charts[0].digest}, but * says sha256:"
            f"{'ab' * 32}. Nothing was pushed.*"
        ]
    )
    assert [r for r in emulator.writes() if r.kind == "registry"] == []


def test_an_archive_that_is_not_a_chart_is_refused(
    chart_server: ChartServer, emulator: Emulator, spec_for_gitlab, run
) -> None:
    bogus = chart_server.directory / "gitlab-7.1.1.tgz"
    bogus.write_bytes(b"<html>login required</html>")
    chart_server.charts.append(ChartFile(bogus, "gitlab", "7.1.1", {"name": "gitlab", "version": "7.1.1"}))
    chart_server.publish()
    spec_for_gitlab("7.1.1")

    result = run("--sync", "mirror.yaml")

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*gitlab-7.1.1.tgz is not a gzipped tar archive*"])
    assert [r for r in emulator.writes() if r.kind == "registry"] == []


@pytest.mark.parametrize(
    ("packaged", "expected"),
    [
        (
            ("gitlab-runner", "7.1.1"),
            "*Chart.yaml names the chart 'gitlab-runner', but the spec and the index say 'gitlab'*",
        ),
        (("gitlab", "7.1.0"), "*Chart.yaml has version '7.1.0', but the index lists it as '7.1.1'*"),
    ],
    ids=["another chart", "another version"],
)
def test_an_archive_of_another_chart_or_version_is_refused(
    chart_server: ChartServer,
    emulator: Emulator,
    spec_for_gitlab,
    run,
    packaged: tuple[str, str],
    expected: str,
) -> None:
    # given the index lists gitlab 7.1.1, but its archive (digest and all) holds something else
    other = package_chart(chart_server.directory, *packaged)
    renamed = other.path.rename(chart_server.directory / "gitlab-7.1.1.tgz")
    chart_server.charts.append(ChartFile(renamed, "gitlab", "7.1.1", {"name": "gitlab", "version": "7.1.1"}))
    chart_server.publish()
    spec_for_gitlab("7.1.1")

    result = run("--sync", "mirror.yaml")

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([expected])
    assert [r for r in emulator.writes() if r.kind == "registry"] == []


def test_a_chart_yaml_at_the_archive_root_is_refused(
    chart_server: ChartServer, emulator: Emulator, spec_for_gitlab, run
) -> None:
    chart = package_chart(chart_server.directory, "gitlab", "7.1.1", chart_dir="")
    chart_server.charts.append(chart)
    chart_server.publish()
    spec_for_gitlab("7.1.1")

    result = run("--sync", "mirror.yaml")

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*Chart.yaml is at the archive root*"])


def test_unreachable_upstream_is_a_plain_error(emulator: Emulator, write_spec, run) -> None:
    write_spec(
        GOOD_TARGET + "charts:\n  - name: gitlab\n    repo: http://127.0.0.1:9/charts\n"
        "    versions: ['7.1.1']\n"
    )

    result = run("--sync", "mirror.yaml")

    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*cannot download http://127.0.0.1:9/charts/index.yaml: *"])
    result.stdout.no_fnmatch_line("*Traceback*")


def test_missing_local_directory_is_a_plain_error(emulator: Emulator, write_spec, run) -> None:
    write_spec(GOOD_TARGET + "charts:\n  - name: gitlab\n    repo: ./nowhere\n    versions: ['7.1.1']\n")

    result = run("--sync", "mirror.yaml")

    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*nowhere is not a directory; repo must be an http(s) URL or a "
            "directory (relative to the spec) of charts"
        ]
    )


UPSTREAM = "https://charts.example.test/stable"


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (500, "boom", "*cannot download https://charts.example.test/stable/index.yaml: HTTP 500*"),
        (404, "not found", "*index.yaml: HTTP 404 Not Found. Check the repo URL in the spec.*"),
        (200, "<html><body>captive portal</body></html>", "*is not a Helm repository index*"),
        (200, "entries: [unclosed", "*the index is not valid YAML or JSON*"),
    ],
)
def test_broken_upstream_index_fails_the_item(
    emulator: Emulator, write_spec, run, status: int, body: str, expected: str
) -> None:
    write_spec(GOOD_TARGET + f"charts:\n  - name: gitlab\n    repo: {UPSTREAM}\n    versions: ['7.1.1']\n")
    with responses.RequestsMock() as mocked:
        mocked.add_passthru(emulator.url)
        mocked.get(f"{UPSTREAM}/index.yaml", status=status, body=body)

        result = run("--sync", "mirror.yaml")

    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([expected])
    assert emulator.writes() == []


def test_archive_download_failure_fails_the_item(emulator: Emulator, write_spec, run, tmp_path: Path) -> None:
    chart = package_chart(tmp_path, "gitlab", "7.1.1")
    digest = hashlib.sha256(chart.path.read_bytes()).hexdigest()
    index = (
        f"apiVersion: v1\nentries:\n  gitlab:\n  - name: gitlab\n    version: 7.1.1\n"
        f"    digest: {digest}\n    urls: [https://cdn.example.test/gitlab-7.1.1.tgz]\n"
    )
    write_spec(GOOD_TARGET + f"charts:\n  - name: gitlab\n    repo: {UPSTREAM}\n    versions: ['7.1.1']\n")
    with responses.RequestsMock() as mocked:
        mocked.add_passthru(emulator.url)
        mocked.get(f"{UPSTREAM}/index.yaml", body=index)
        mocked.get("https://cdn.example.test/gitlab-7.1.1.tgz", status=403, body="denied")

        result = run("--sync", "mirror.yaml")

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*cannot download https://cdn.example.test/gitlab-7.1.1.tgz: HTTP 403*"])
    assert [r for r in emulator.writes() if r.kind == "registry"] == []


def test_a_repository_is_created_for_a_chart_whose_upstream_has_any_of_its_versions(
    chart_server: ChartServer, emulator: Emulator, spec_for_gitlab, run
) -> None:
    chart_server.add("gitlab", "7.1.1")
    chart_server.publish()
    spec_for_gitlab("7.0.9", "7.1.1")  # the first is a typo, the second is upstream

    result = run("--sync", "-v", "mirror.yaml")

    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        ["mirror.yaml::repository::gitlab CREATED*", "mirror.yaml::gitlab::7.0.9 NOT UPSTREAM*"]
    )
