"""End to end, as users run it: specs -> pytest items -> a chart server on 127.0.0.1 -> the emulator."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import boto3
import pytest
import requests

from conftest import REGISTRY, ChartServer
from ecrmirror.emulator import Emulator


def spec_for(
    server: ChartServer,
    charts: dict[str, list[str]],
    *,
    create: bool = True,
    mutability: str = "IMMUTABLE",
    prefix: str = "helm",
) -> str:
    entries = "".join(
        f"  - name: {name}\n    repo: {server.url}\n    versions: {json.dumps(versions)}\n"
        for name, versions in charts.items()
    )
    return (
        f"target:\n  registry: {REGISTRY}\n  prefix: {prefix}\n"
        f"  create_repositories: {str(create).lower()}\n"
        f"  repository:\n    image_tag_mutability: {mutability}\n"
        f"charts:\n{entries}"
    )


def ecr_client(emulator: Emulator) -> object:
    return boto3.client("ecr", region_name="eu-west-1", endpoint_url=emulator.url)


def manifest(emulator: Emulator, repository: str, tag: str) -> dict[str, object]:
    response = ecr_client(emulator).batch_get_image(  # type: ignore[attr-defined]
        repositoryName=repository, imageIds=[{"imageTag": tag}]
    )
    assert response["failures"] == [], response["failures"]
    return json.loads(response["images"][0]["imageManifest"])  # type: ignore[no-any-return]


@pytest.fixture
def upstream(chart_server: ChartServer) -> ChartServer:
    chart_server.add("gitlab", "7.1.1", appVersion="v16.1.1", home="https://about.gitlab.com/")
    chart_server.add("gitlab", "7.1.2", appVersion="v16.1.2")
    chart_server.add("gitlab", "7.2.0-rc.1")
    chart_server.add("ingress", "1.0.0+build.7")
    chart_server.publish()
    return chart_server


def test_sync_pushes_every_missing_version_then_writes_nothing_on_the_second_run(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    # given a spec of four versions, none of them in ECR
    write_spec(spec_for(upstream, {"gitlab": ["7.1.1", "7.1.2", "7.2.0-rc.1"], "ingress": ["1.0.0+build.7"]}))

    # when it is synced
    first = run("--sync", "-v", "mirror.yaml")

    # then every version is pushed, with its upstream archive as the chart layer
    first.assert_outcomes(passed=6)
    first.stdout.fnmatch_lines(
        [
            "mirror.yaml::repository::helm/gitlab CREATED*",
            "mirror.yaml::repository::helm/ingress CREATED*",
            "mirror.yaml::gitlab::7.1.1 PUSHED*",
            "mirror.yaml::gitlab::7.1.2 PUSHED*",
            "mirror.yaml::gitlab::7.2.0-rc.1 PUSHED*",
            "mirror.yaml::ingress::1.0.0+build.7 PUSHED*",
            "2 repositories: 2 created, 0 failed",
            "4 versions: 4 pushed, 0 present, 0 failed; * bytes uploaded",
        ]
    )
    for chart in upstream.charts:
        pushed = manifest(emulator, f"helm/{chart.name}", chart.version.replace("+", "_"))
        assert pushed["layers"] == [
            {  # type: ignore[comparison-overlap]
                "mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                "digest": f"sha256:{chart.digest}",
                "size": chart.path.stat().st_size,
            }
        ]
    assert len(upstream.archive_downloads()) == 4
    created = ecr_client(emulator).describe_repositories()["repositories"]  # type: ignore[attr-defined]
    assert {
        (r["repositoryName"], r["imageTagMutability"], r["imageScanningConfiguration"]["scanOnPush"])
        for r in created
    } == {("helm/gitlab", "IMMUTABLE", False), ("helm/ingress", "IMMUTABLE", False)}

    # when it is synced again
    upstream.requests.clear()
    emulator.app.requests.clear()
    second = run("--sync", "-v", "mirror.yaml")

    # then everything is PRESENT, the emulator saw no write and no archive was downloaded
    second.assert_outcomes(passed=6)
    second.stdout.fnmatch_lines(
        ["mirror.yaml::gitlab::7.1.1 PRESENT*", "4 versions: 0 pushed, 4 present, 0 failed; 0 bytes uploaded"]
    )
    assert emulator.writes() == []
    assert upstream.archive_downloads() == []
    assert upstream.requests == ["/index.yaml"]  # one index download for the whole run
    # and presence was checked in one DescribeImages (metadata) per repository, not one call per
    # version; the manifests, which this run does not keep (-p no:cacheprovider), pulled in one
    # batch per repository; and the settings of both repositories in one call
    actions = sorted(r.action for r in emulator.requests)
    assert actions == [
        "BatchGetImage",
        "BatchGetImage",
        "DescribeImages",
        "DescribeImages",
        "DescribeRepositories",
    ]


def test_check_only_after_sync_passes_and_writes_nothing(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    write_spec(spec_for(upstream, {"gitlab": ["7.1.1", "7.1.2"]}))
    run("--sync", "mirror.yaml").assert_outcomes(passed=3)
    emulator.app.requests.clear()

    result = run("--check-only", "-v", "mirror.yaml")

    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["mirror.yaml::gitlab::7.1.1 PRESENT*"])
    assert emulator.writes() == []


def test_check_only_on_an_empty_registry_fails_every_version_as_missing_with_junit(
    upstream: ChartServer, emulator: Emulator, write_spec, run, pytester: pytest.Pytester
) -> None:
    write_spec(spec_for(upstream, {"gitlab": ["7.1.1", "7.1.2"], "ingress": ["1.0.0+build.7"]}))

    result = run("--check-only", "-v", "--junitxml=report.xml", "mirror.yaml")

    result.assert_outcomes(failed=5)
    result.stdout.fnmatch_lines(
        [
            "mirror.yaml::repository::helm/gitlab MISSING*",
            "mirror.yaml::gitlab::7.1.1 MISSING*",
            "2 repositories: 2 failed",
            "3 versions: 0 pushed, 0 present, 3 failed; 0 bytes uploaded",
        ]
    )
    assert emulator.writes() == []
    cases = ET.parse(pytester.path / "report.xml").getroot().iter("testcase")
    by_name = {f"{c.get('classname')}::{c.get('name')}": c for c in cases}
    assert sorted(by_name) == [
        "mirror.yaml::gitlab 7.1.1",
        "mirror.yaml::gitlab 7.1.2",
        "mirror.yaml::ingress 1.0.0+build.7",
        "mirror.yaml::repository helm/gitlab",
        "mirror.yaml::repository helm/ingress",
    ]
    case = by_name["mirror.yaml::ingress 1.0.0+build.7"]
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    ingress = next(c for c in upstream.charts if c.name == "ingress")
    assert properties == {
        "ecrmirror": "version",
        "registry": REGISTRY,
        "repository": "helm/ingress",
        "tag": "1.0.0_build.7",
        "upstream_digest": f"sha256:{ingress.digest}",
        "title": "ingress 1.0.0+build.7",
        "spec": "mirror.yaml",
        "file": "mirror.yaml",
        "line": "13",
        "outcome": "MISSING",
        "bytes_uploaded": "0",
    }
    failure = case.find("failure")
    assert failure is not None
    assert "MISSING" in failure.get("message", "")


def test_audit_is_the_default_for_spec_paths(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    write_spec(spec_for(upstream, {"gitlab": ["7.1.1"]}))

    result = run("-v", "mirror.yaml")

    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*MISSING*"])
    assert emulator.writes() == []


def test_missing_repository_without_create_repositories_fails_with_the_command_to_create_it(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    write_spec(spec_for(upstream, {"gitlab": ["7.1.1"]}, create=False))

    result = run("--sync", "mirror.yaml")

    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*repository helm/gitlab does not exist in 123456789012.dkr.ecr.eu-west-1.amazonaws.com*",
            "*aws ecr create-repository --region eu-west-1 --repository-name helm/gitlab "
            "--image-tag-mutability IMMUTABLE*",
            "*create_repositories: true*",
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    assert emulator.writes() == []


def test_existing_repository_is_used_when_create_repositories_is_false(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    ecr_client(emulator).create_repository(repositoryName="helm/gitlab")  # type: ignore[attr-defined]
    write_spec(spec_for(upstream, {"gitlab": ["7.1.1"]}, create=False, mutability="MUTABLE"))

    run("--sync", "mirror.yaml").assert_outcomes(passed=2)

    assert manifest(emulator, "helm/gitlab", "7.1.1")["layers"]


def test_a_tag_holding_other_content_differs_and_is_never_overwritten(
    upstream: ChartServer, emulator: Emulator, write_spec, run, tmp_path: Path
) -> None:
    # given ECR holds 7.1.1 with another chart archive (a republished upstream, say)
    other = ChartServer(tmp_path / "other", upstream.url, upstream.server)
    other.directory.mkdir()
    impostor = other.add("gitlab", "7.1.1", description="republished with other content")
    write_spec(spec_for(upstream, {"gitlab": ["7.1.1"]}))
    alt_repo = tmp_path / "alt"
    alt_repo.mkdir()
    impostor.path.rename(alt_repo / impostor.path.name)
    (alt_repo / "spec.yaml").write_text(
        f"target:\n  registry: {REGISTRY}\n  prefix: helm\n  create_repositories: true\n"
        f"charts:\n  - name: gitlab\n    repo: .\n    versions: ['7.1.1']\n"
    )
    run("--sync", str(alt_repo / "spec.yaml")).assert_outcomes(passed=2)
    before = manifest(emulator, "helm/gitlab", "7.1.1")
    emulator.app.requests.clear()

    # when the real spec is synced and audited
    synced = run("--sync", "-v", "mirror.yaml")
    audited = run("--check-only", "-v", "mirror.yaml")

    # then both fail as DIFFERS, naming both digests, and the tag is untouched
    for result in (synced, audited):
        result.assert_outcomes(passed=1, failed=1)
        result.stdout.fnmatch_lines(
            [
                "mirror.yaml::gitlab::7.1.1 DIFFERS*",
                f"*holds sha256:{_digest_of(alt_repo / impostor.path.name)}*"
                f"lists sha256:{upstream.charts[0].digest}*never overwrites a tag*",
            ]
        )
    assert emulator.writes() == []
    assert manifest(emulator, "helm/gitlab", "7.1.1") == before


def _digest_of(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_mutable_repository_is_not_overwritten_either(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    client = ecr_client(emulator)
    client.create_repository(repositoryName="helm/gitlab", imageTagMutability="MUTABLE")  # type: ignore[attr-defined]
    client.put_image(
        repositoryName="helm/gitlab",
        imageTag="7.1.1",  # type: ignore[attr-defined]
        imageManifest=json.dumps({"schemaVersion": 2, "layers": []}),
        imageManifestMediaType="application/vnd.oci.image.manifest.v1+json",
    )
    write_spec(spec_for(upstream, {"gitlab": ["7.1.1"]}, mutability="MUTABLE"))
    emulator.app.requests.clear()

    result = run("--sync", "-v", "mirror.yaml")

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [f"DIFFERS gitlab 7.1.1: {REGISTRY}/helm/gitlab:7.1.1", "*holds no Helm chart layer*"]
    )
    assert emulator.writes() == []


def test_collect_only_lists_node_ids_and_touches_nothing(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    write_spec(spec_for(upstream, {"gitlab": ["7.1.1", "7.2.0-rc.1"], "ingress": ["1.0.0+build.7"]}))
    upstream.requests.clear()

    result = run("--sync", "--collect-only", "-q", "mirror.yaml")

    result.stdout.fnmatch_lines(
        [
            "mirror.yaml::repository::helm/gitlab",
            "mirror.yaml::repository::helm/ingress",
            "mirror.yaml::gitlab::7.1.1",
            "mirror.yaml::gitlab::7.2.0-rc.1",
            "mirror.yaml::ingress::1.0.0+build.7",
        ]
    )
    assert emulator.requests == []
    assert upstream.requests == []


def test_keyword_selection_and_exitfirst(upstream: ChartServer, emulator: Emulator, write_spec, run) -> None:
    write_spec(spec_for(upstream, {"gitlab": ["7.1.1", "7.1.2"], "ingress": ["1.0.0+build.7"]}))

    selected = run("--sync", "-v", "-k", "ingress", "mirror.yaml")
    selected.assert_outcomes(passed=2, deselected=3)  # helm/ingress and its one version

    first_failure = run("--check-only", "-x", "mirror.yaml")
    first_failure.assert_outcomes(failed=1)  # repository helm/gitlab is missing: stop there


def test_last_failed_reruns_only_the_failed_versions(
    upstream: ChartServer, emulator: Emulator, write_spec, pytester: pytest.Pytester
) -> None:
    write_spec(spec_for(upstream, {"gitlab": ["7.1.1", "7.9.9"]}))
    args = ("-p", "ecrmirror.plugin", "--sync", "mirror.yaml")
    pytester.runpytest_inprocess(*args).assert_outcomes(passed=2, failed=1)

    again = pytester.runpytest_inprocess(*args, "--lf", "-v")

    again.assert_outcomes(failed=1, deselected=2)
    again.stdout.fnmatch_lines(["mirror.yaml::gitlab::7.9.9 NOT UPSTREAM*"])


def test_default_specs_directory_for_sync_and_check_only(
    upstream: ChartServer, emulator: Emulator, pytester: pytest.Pytester, run
) -> None:
    pytester.mkdir("specs")
    (pytester.path / "specs" / "gitlab.yaml").write_text(spec_for(upstream, {"gitlab": ["7.1.1"]}))
    pytester.makepyfile(test_own="def test_own():\n    pass\n")

    plain = run("-v")  # no path and no mode: the project's own tests only, no AWS
    plain.assert_outcomes(passed=1)
    assert emulator.requests == []

    synced = run("--sync", "-v")
    synced.assert_outcomes(passed=2)
    synced.stdout.fnmatch_lines(["specs/gitlab.yaml::gitlab::7.1.1 PUSHED*"])


def test_plain_pytest_with_testpaths_never_touches_aws(
    upstream: ChartServer, emulator: Emulator, pytester: pytest.Pytester, run
) -> None:
    pytester.makeini("[pytest]\ntestpaths = tests\n")
    pytester.mkdir("specs")
    (pytester.path / "specs" / "gitlab.yaml").write_text(spec_for(upstream, {"gitlab": ["7.1.1"]}))
    pytester.mkdir("tests")
    (pytester.path / "tests" / "test_own.py").write_text("def test_own():\n    pass\n")

    result = run("-v")

    result.assert_outcomes(passed=1)
    assert emulator.requests == []
    result.stdout.no_fnmatch_line("ecrmirror*")  # no header, no totals: not our run


def test_ini_option_names_the_specs_directory(
    upstream: ChartServer, emulator: Emulator, pytester: pytest.Pytester, run
) -> None:
    pytester.makeini("[pytest]\necrmirror_specs = mirror/specs\n")
    (pytester.path / "mirror" / "specs").mkdir(parents=True)
    (pytester.path / "mirror" / "specs" / "a.yml").write_text(spec_for(upstream, {"gitlab": ["7.1.1"]}))

    run("--check-only").assert_outcomes(failed=2)


def test_other_yaml_files_are_ignored(
    upstream: ChartServer, emulator: Emulator, pytester: pytest.Pytester, write_spec, run
) -> None:
    write_spec(spec_for(upstream, {"gitlab": ["7.1.1"]}))
    pytester.makefile(".yml", **{".gitlab-ci": "stages: [test]\njob:\n  script: [pytest]\n"})
    pytester.makefile(".yaml", values="global:\n  charts: [nested]\n")
    pytester.makefile(".yaml", broken="key: [unclosed\n")
    pytester.makefile(".yaml", fixture="items:\n  - charts: nested, not top level\n")

    result = run("--sync", ".")

    result.assert_outcomes(passed=2)


def test_the_pushed_artifact_is_reproducible(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    write_spec(spec_for(upstream, {"gitlab": ["7.1.1"]}))
    run("--sync", "mirror.yaml").assert_outcomes(passed=2)
    first = ecr_client(emulator).batch_get_image(  # type: ignore[attr-defined]
        repositoryName="helm/gitlab", imageIds=[{"imageTag": "7.1.1"}]
    )["images"][0]

    emulator.reset()
    run("--sync", "mirror.yaml").assert_outcomes(passed=2)
    second = ecr_client(emulator).batch_get_image(  # type: ignore[attr-defined]
        repositoryName="helm/gitlab", imageIds=[{"imageTag": "7.1.1"}]
    )["images"][0]

    assert first["imageId"]["imageDigest"] == second["imageId"]["imageDigest"]
    assert (
        json.loads(first["imageManifest"])["annotations"]["org.opencontainers.image.created"]
        == "2024-03-01T12:34:56Z"
    )


def test_the_registry_serves_what_was_pushed(
    upstream: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    """A pull the way helm does it: manifest by tag, then the chart blob, equal to upstream."""
    write_spec(spec_for(upstream, {"gitlab": ["7.1.1"]}))
    run("--sync", "mirror.yaml").assert_outcomes(passed=2)
    token = ecr_client(emulator).get_authorization_token()  # type: ignore[attr-defined]
    auth = {"Authorization": f"Basic {token['authorizationData'][0]['authorizationToken']}"}

    got = requests.get(
        f"{emulator.url}/v2/helm/gitlab/manifests/7.1.1",
        headers={**auth, "Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=10,
    )
    layer = got.json()["layers"][0]["digest"]
    blob = requests.get(f"{emulator.url}/v2/helm/gitlab/blobs/{layer}", headers=auth, timeout=10)

    assert got.headers["Content-Type"] == "application/vnd.oci.image.manifest.v1+json"
    assert blob.content == upstream.charts[0].path.read_bytes()


def test_credentials_from_a_named_profile(
    upstream: ChartServer,
    emulator: Emulator,
    write_spec,
    run,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """boto3's chain, not just environment keys: a profile in the shared credentials file."""
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[mirror]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = profile-secret\n"
    )
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_PROFILE", "mirror")
    write_spec(spec_for(upstream, {"gitlab": ["7.1.1"]}))

    run("--sync", "mirror.yaml").assert_outcomes(passed=2)


# -- nothing created for nothing ----------------------------------------------------------------------
def _unusable_index(server: ChartServer) -> None:
    """Versions that are listed, but none of which can be mirrored: no digest, or a file:// URL."""
    entries = [
        {"name": "app", "version": "1.0.0", "urls": ["app-1.0.0.tgz"]},
        {"name": "app", "version": "1.1.0", "digest": "ab" * 32, "urls": ["file:///etc/passwd"]},
    ]
    (server.directory / "index.yaml").write_text(
        json.dumps({"apiVersion": "v1", "entries": {"app": entries}})
    )


def test_a_constraint_whose_every_choice_fails_creates_no_repository(
    chart_server: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    _unusable_index(chart_server)
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        f"charts:\n  - name: app\n    repo: {chart_server.url}\n    versions: '>=1.0.0'\n"
    )

    result = run("--sync", "mirror.yaml")

    result.assert_outcomes(failed=3)  # the repository, and both versions
    result.stdout.fnmatch_lines(["*app 1.0.0 in * has no valid sha256 digest*"])
    assert [r.action for r in emulator.writes()] == []


def test_a_version_that_fails_its_download_creates_no_repository_on_its_own(
    chart_server: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    # given a version whose archive is not what the index says (its repository item deselected)
    chart = chart_server.add("app", "1.0.0")
    chart_server.publish()
    chart.path.write_bytes(b"republished")
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        f"charts:\n  - name: app\n    repo: {chart_server.url}\n    versions: ['1.0.0']\n"
    )

    result = run("--sync", "mirror.yaml", "-k", "not repository")

    result.assert_outcomes(failed=1, deselected=1)
    result.stdout.fnmatch_lines(["*DIGEST MISMATCH*"])
    assert emulator.writes() == []
