"""--offline, the standalone emulator and pytest-xdist: the README's main job, run as a user would."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from ecrclient import OCI_MANIFEST

from conftest import REGISTRY, ChartServer, copy_examples
from ecrmirror.emulator import Emulator
from ecrmirror.redact import redact

EMPTY = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"  # the OCI empty "{}"
EXAMPLE_VERSIONS = [
    "hello::0.1.0",
    "hello::0.2.0",
    "hello::1.0.0-rc.1",
    "hello::1.0.0+build.5",
    "greeter::2.3.4",
]


def test_sync_offline_pushes_every_example_version(pytester: pytest.Pytester, run_subprocess) -> None:
    copy_examples(pytester.path / "examples")

    result = run_subprocess("examples/", "--sync", "--offline", "-v")

    result.assert_outcomes(passed=10)
    result.stdout.fnmatch_lines(
        [f"examples/mirror.yaml::repository::helm/{name} CREATED*" for name in ("hello", "greeter")]
        + [
            f"examples/mirror.yaml::replica::eu-central-1::helm/{name} CREATED*"
            for name in ("hello", "greeter")
        ]
        + ["examples/mirror.yaml::replication CREATED*"]
    )
    result.stdout.fnmatch_lines([f"examples/mirror.yaml::{version} PUSHED*" for version in EXAMPLE_VERSIONS])
    result.stdout.fnmatch_lines(["5 versions: 5 pushed, 0 present, 0 failed; * bytes uploaded"])


def test_check_only_offline_fails_every_version_as_missing(pytester: pytest.Pytester, run_subprocess) -> None:
    copy_examples(pytester.path / "examples")

    result = run_subprocess("examples/", "--check-only", "--offline", "-v", "--junitxml=audit.xml")

    result.assert_outcomes(failed=10)
    result.stdout.fnmatch_lines([f"examples/mirror.yaml::{version} MISSING*" for version in EXAMPLE_VERSIONS])
    suite = ET.parse(pytester.path / "audit.xml").getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("10", "10")
    assert len([case for case in suite.iter("testcase") if case.find("failure") is not None]) == 10


@contextlib.contextmanager
def standalone(*options: str) -> Iterator[dict[str, str]]:
    """`python -m ecrmirror.emulator` as a user starts it; yields the variables it prints."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ecrmirror.emulator", "--port", "0", "--quiet", *options],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    environ: dict[str, str] = {}
    for line in process.stdout:
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").strip().partition("=")
            environ[name] = value
        if line.startswith("# requests served"):
            break
    yield environ
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=10)  # waits, and closes the pipe
    assert process.returncode == 0


@pytest.fixture
def standalone_emulator() -> Iterator[dict[str, str]]:
    with standalone() as environ:
        yield environ


def test_standalone_emulator_second_sync_is_all_present_and_writes_nothing(
    standalone_emulator: dict[str, str], pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert set(standalone_emulator) == {
        "AWS_ENDPOINT_URL_ECR",
        "AWS_ENDPOINT_URL_KMS",
        "ECRMIRROR_REGISTRY_ENDPOINT",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
    for name, value in standalone_emulator.items():
        monkeypatch.setenv(name, value)
    copy_examples(pytester.path / "examples")
    url = standalone_emulator["AWS_ENDPOINT_URL_ECR"]

    first = pytester.runpytest_subprocess("-p", "ecrmirror.plugin", "examples/", "--sync", "-v")
    first.assert_outcomes(passed=10)
    requests.delete(f"{url}/_emulator/requests", timeout=10)

    second = pytester.runpytest_subprocess("-p", "ecrmirror.plugin", "examples/", "--sync", "-v")

    second.assert_outcomes(passed=10)
    second.stdout.fnmatch_lines([f"examples/mirror.yaml::{version} PRESENT*" for version in EXAMPLE_VERSIONS])
    seen = requests.get(f"{url}/_emulator/requests", timeout=10).json()
    # per repository, in the source and in its replica region: its inventory, tags and lifecycle
    # policy (ECR has no batch call for the last two); per registry: the settings of all its
    # repositories; once: the replication configuration and the replica region's template. No
    # BatchGetImage: the manifests the first run pushed are kept in pytest's cache, not pulled.
    # Per source repository: the preview of what the spec's lifecycle policy would do
    assert sorted(r["action"] for r in seen) == sorted(
        ["DescribeImages", "GetLifecyclePolicy", "ListTagsForResource"] * 4
        + ["StartLifecyclePolicyPreview", "GetLifecyclePolicyPreview"] * 2
        + ["DescribeRepositories"] * 2
        + ["DescribeRegistry", "DescribeRepositoryCreationTemplates"]
    )
    assert all(r["kind"] == "api" for r in seen)


def test_the_standalone_emulator_throttles_and_replicates_late_when_asked() -> None:
    with standalone("--throttle", "--replication-delay", "1") as environ:
        url = environ["AWS_ENDPOINT_URL_ECR"]
        ecr = boto3.client(
            "ecr",
            region_name="eu-west-1",
            endpoint_url=url,
            aws_access_key_id=environ["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=environ["AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"total_max_attempts": 1}),
        )
        ecr.create_repository(repositoryName="app")
        ecr.put_replication_configuration(
            replicationConfiguration={
                "rules": [{"destinations": [{"region": "eu-central-1", "registryId": "123456789012"}]}]
            }
        )
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY, "size": 2},
                "layers": [],
            }
        )
        codes = []
        for n in range(15):  # PutImage: 10 per second by default
            try:
                ecr.put_image(repositoryName="app", imageTag=f"v{n}", imageManifest=manifest)
                codes.append("ok")
            except ClientError as exc:
                codes.append(exc.response["Error"]["Code"])

        def status() -> str:
            answer = ecr.describe_image_replication_status(repositoryName="app", imageId={"imageTag": "v0"})
            return str(answer["replicationStatuses"][0]["status"])

        just_pushed = status()
        time.sleep(1.5)
        arrived = status()

    assert "ThrottlingException" in codes
    assert codes[0] == "ok"
    assert (just_pushed, arrived) == ("IN_PROGRESS", "COMPLETE")


def test_the_port_option_is_honoured(tmp_path: Path) -> None:
    with Emulator(port=0) as probe:  # find a free port, then hand it to the process
        port = int(probe.url.rsplit(":", 1)[1])
    process = subprocess.Popen(
        [sys.executable, "-m", "ecrmirror.emulator", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert re.match(rf"# ECR emulator listening on http://127\.0\.0\.1:{port}\b", first)
        assert process.stdout.readline() == f"export AWS_ENDPOINT_URL_ECR=http://127.0.0.1:{port}\n"
    finally:
        process.terminate()
        process.communicate(timeout=10)  # waits, and closes the pipe


def test_xdist_workers_share_one_offline_emulator(
    pytester: pytest.Pytester, run_subprocess, chart_server: ChartServer
) -> None:
    # given four specs that each mirror the same version into the same repository
    chart_server.add("shared", "1.0.0")
    chart_server.publish()
    for n in range(4):
        pytester.makefile(
            ".yaml",
            **{
                f"spec{n}": (
                    f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
                    f"charts:\n  - name: shared\n    repo: {chart_server.url}\n    versions: ['1.0.0']\n"
                )
            },
        )

    # when four files run on two workers
    result = run_subprocess("-p", "xdist.plugin", "-n", "2", "--dist", "loadfile", "--sync", "--offline", ".")

    # then one push happened in the whole run: every worker saw the others' writes
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(
        ["4 repositories: 1 created, 3 present, 0 failed", "4 versions: 1 pushed, 3 present, 0 failed; *"]
    )


def test_secrets_never_reach_output_logs_or_junit(
    chart_server: ChartServer,
    emulator: Emulator,
    write_spec,
    run,
    monkeypatch: pytest.MonkeyPatch,
    pytester: pytest.Pytester,
) -> None:
    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    chart_server.add("gitlab", "7.1.1")
    chart_server.publish()
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        f"charts:\n  - name: gitlab\n    repo: {chart_server.url}\n"
        "    versions: ['7.1.1', '9.9.9']\n"
    )

    result = run("--sync", "-v", "-rA", "--log-level=DEBUG", "--junitxml=report.xml", "mirror.yaml")

    result.assert_outcomes(passed=2, failed=1)
    passwords = list(emulator.app.state.grants)
    assert passwords, "the run should have fetched a registry token"
    written = "\n".join(result.outlines + result.errlines) + (pytester.path / "report.xml").read_text()
    tokens = [base64.b64encode(f"AWS:{p}".encode()).decode() for p in passwords]
    assert "Authorization" in written, "debug logs should be there, redacted"
    for value in [secret, *passwords, *tokens]:
        assert value not in written
    assert not re.search(r"Signature=[0-9a-f]{64}", written)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "{'Authorization': b'AWS4-HMAC-SHA256 Credential=AKIA/x, Signature=ab'}",
            "{'Authorization': b'***'}",
        ),
        ("x-amz-security-token:FwoGZXIvYXdzEJr//////////\nhost:api", "x-amz-security-token:***\nhost:api"),
        (
            '{"authorizationToken": "QVdTOnNlY3JldA==", "expiresAt": 1}',
            '{"authorizationToken": "***", "expiresAt": 1}',
        ),
        ("headers={'X-Amz-Security-Token': 'IQoJb3JpZ2luX2VjE'}", "headers={'X-Amz-Security-Token': '***'}"),
        ("Authorization: Basic QVdTOnNlY3JldC10b2tlbg==", "Authorization: Basic ***"),
        ("nothing secret here", "nothing secret here"),
    ],
)
def test_redaction_patterns(line: str, expected: str) -> None:
    assert redact(line) == expected


def test_missing_credentials_under_xdist_is_one_message(
    chart_server: ChartServer, pytester: pytest.Pytester, run_subprocess
) -> None:
    chart_server.add("gitlab", "7.1.1")
    chart_server.publish()
    pytester.makefile(
        ".yaml",
        mirror=(
            f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
            f"charts:\n  - name: gitlab\n    repo: {chart_server.url}\n    versions: ['7.1.1']\n"
        ),
    )

    result = run_subprocess("-p", "xdist.plugin", "-n", "2", "--sync", "mirror.yaml")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: ecrmirror found no AWS credentials*--offline*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_users_can_test_their_specs_with_the_emulator_fixture(
    pytester: pytest.Pytester, run_subprocess
) -> None:
    copy_examples(pytester.path / "examples")
    pytester.makepyfile(
        test_my_specs="""
        import subprocess, sys

        import boto3


        def test_examples_sync_into_the_emulator(ecr_emulator):
            synced = subprocess.run([sys.executable, "-m", "pytest", "-p", "ecrmirror.plugin",
                                     "examples/", "--sync", "-q"], capture_output=True, text=True)
            assert synced.returncode == 0, synced.stdout
            ecr = boto3.client("ecr", region_name="eu-west-1")
            names = sorted(r["repositoryName"] for r in ecr.describe_repositories()["repositories"])
            assert names == ["helm/greeter", "helm/hello"]
            assert ecr_emulator.writes()


        def test_each_test_starts_empty(ecr_emulator):
            ecr = boto3.client("ecr", region_name="eu-west-1")
            assert ecr.describe_repositories()["repositories"] == []
    """
    )

    result = run_subprocess("-p", "ecrmirror.plugin", "test_my_specs.py", "-v")

    result.assert_outcomes(passed=2)
