"""Private and unusual HTTP repositories: credentials only where they belong, TLS, JSON, gzip, .prov."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import boto3
import httphosts
import pytest
import yaml
from chartfactory import ChartFile, package_chart, write_index
from httphosts import Host

from conftest import REGISTRY
from ecrmirror.chart import PROVENANCE_MEDIA_TYPE
from ecrmirror.emulator import Emulator

PASSWORD = "hunter2-but-longer-Zq8"
BASIC = "Basic " + base64.b64encode(f"mirror:{PASSWORD}".encode()).decode()


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[tuple[Host, Host]]:
    """A private repository (index on 127.0.0.1) whose archives sit on a CDN (localhost)."""
    repo = Host(tmp_path / "repo", required=BASIC).start()
    cdn = Host(tmp_path / "cdn", name="localhost").start()
    repo.directory.mkdir()
    cdn.directory.mkdir()
    yield repo, cdn
    repo.stop()
    cdn.stop()


def publish(directory: Path, charts: list[ChartFile], base_url: str = "") -> None:
    write_index(directory, charts, base_url=base_url)


def private_spec(url: str, extra: str = "", versions: str = "['1.0.0']") -> str:
    return (
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        f"charts:\n  - name: secret-app\n    repo: {url}\n    versions: {versions}\n"
        "    auth: {username: mirror, password: '${REPO_PASSWORD}'}\n" + extra
    )


def test_the_password_reaches_the_repository_host_and_no_other_and_never_the_output(
    hosts: tuple[Host, Host],
    emulator: Emulator,
    write_spec,
    run,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo, cdn = hosts
    chart = package_chart(cdn.directory, "secret-app", "1.0.0")
    publish(repo.directory, [chart], base_url=cdn.url)  # absolute chart URLs on another host
    monkeypatch.setenv("REPO_PASSWORD", PASSWORD)
    write_spec(private_spec(repo.url + "?sig=for-the-repo-host", versions="['1.0.0', '1.0.1']"))

    result = run("--sync", "-v", "-rA", "--log-level=DEBUG", "--junitxml=report.xml", "mirror.yaml")

    result.assert_outcomes(passed=2, failed=1)  # 1.0.1 does not exist: a failing run too
    assert repo.authorizations() == [BASIC]  # one index download, with the credentials
    assert cdn.seen  # the archive came from the CDN ...
    assert cdn.authorizations() == []  # ... which never saw them
    assert not any("sig=" in path for path, _ in cdn.seen)  # nor the repository's query string
    written = "\n".join(result.outlines + result.errlines) + (pytester.path / "report.xml").read_text()
    assert PASSWORD not in written
    assert BASIC.removeprefix("Basic ") not in written


# pass_credentials to another host: over https only, tests/test_upstream_auth.py (a plain-http chart
# URL on another host gets none, whatever the spec says: credentials never travel in the clear).


def test_a_token_is_sent_as_a_bearer_token(tmp_path: Path, emulator: Emulator, write_spec, run) -> None:
    repo = Host(tmp_path / "repo", required="Bearer t0ken-abc").start()
    repo.directory.mkdir()
    try:
        publish(repo.directory, [package_chart(repo.directory, "secret-app", "1.0.0")])
        write_spec(
            f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
            f"charts:\n  - name: secret-app\n    repo: {repo.url}\n    versions: ['1.0.0']\n"
            "    auth: {token: t0ken-abc}\n"
        )

        run("--sync", "mirror.yaml").assert_outcomes(passed=2)
    finally:
        repo.stop()
    assert set(repo.authorizations()) == {"Bearer t0ken-abc"}  # index and archive: same host


def test_wrong_credentials_are_a_plain_error_naming_the_url(
    hosts: tuple[Host, Host], emulator: Emulator, write_spec, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, cdn = hosts
    publish(repo.directory, [package_chart(cdn.directory, "secret-app", "1.0.0")], base_url=cdn.url)
    monkeypatch.setenv("REPO_PASSWORD", "wrong")
    write_spec(private_spec(repo.url))

    result = run("--sync", "mirror.yaml")

    result.stdout.fnmatch_lines([f"*cannot download {repo.url}index.yaml: HTTP 401 Unauthorized*"])
    result.stdout.no_fnmatch_line("*Traceback*")
    assert emulator.writes() == []


# -- TLS ---------------------------------------------------------------------------------------------
@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A certificate for 127.0.0.1 signed by itself, and the server context that serves it."""
    return httphosts.self_signed(tmp_path / "tls")


@pytest.fixture
def tls_repo(tmp_path: Path, self_signed: tuple[ssl.SSLContext, Path]) -> Iterator[Host]:
    repo = Host(tmp_path / "tls-repo", tls=self_signed[0])
    repo.directory.mkdir()
    publish(repo.directory, [package_chart(repo.directory, "secret-app", "1.0.0")])
    yield repo.start()
    repo.stop()


def tls_spec(url: str, extra: str = "") -> str:
    return (
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        f"charts:\n  - name: secret-app\n    repo: {url}\n    versions: ['1.0.0']\n{extra}"
    )


def test_a_self_signed_upstream_fails_with_a_message_naming_ca_file(
    tls_repo: Host, emulator: Emulator, write_spec, run
) -> None:
    write_spec(tls_spec(tls_repo.url))

    result = run("--sync", "mirror.yaml")

    result.stdout.fnmatch_lines(["*cannot verify the TLS certificate of *give its certificate as ca_file*"])
    assert emulator.writes() == []


@pytest.mark.parametrize("option", ["ca_file", "insecure_skip_tls_verify"])
def test_ca_file_or_an_explicit_insecure_skip_reaches_it(
    tls_repo: Host, self_signed: tuple[ssl.SSLContext, Path], emulator: Emulator, write_spec, run, option: str
) -> None:
    extra = (
        f"    ca_file: {self_signed[1]}\n" if option == "ca_file" else "    insecure_skip_tls_verify: true\n"
    )
    write_spec(tls_spec(tls_repo.url, extra))

    run("--sync", "mirror.yaml").assert_outcomes(passed=2)


# -- unusual indexes ---------------------------------------------------------------------------------
def test_an_index_served_as_gzip_encoded_json_is_read(
    tmp_path: Path, emulator: Emulator, write_spec, run
) -> None:
    repo = Host(tmp_path / "repo", gzip_index=True)
    repo.directory.mkdir()
    chart = package_chart(repo.directory, "secret-app", "1.0.0")
    publish(repo.directory, [chart])
    index = repo.directory / "index.yaml"
    index.write_text(json.dumps(yaml.safe_load(index.read_text())))  # JSON is YAML, as helm reads it
    repo.start()
    try:
        write_spec(tls_spec(repo.url + "?token=abc"))  # a query string, kept on every request

        run("--sync", "mirror.yaml").assert_outcomes(passed=2)
    finally:
        repo.stop()
    seen = [path for path, _ in repo.seen]
    assert seen[0] == "/index.yaml?token=abc"
    assert sorted(seen[1:]) == [  # asked side by side
        "/secret-app-1.0.0.tgz.prov?token=abc",  # is there a provenance file? (404: no)
        "/secret-app-1.0.0.tgz?token=abc",
    ]


# -- provenance --------------------------------------------------------------------------------------
def test_a_provenance_file_becomes_helms_second_layer(
    tmp_path: Path, emulator: Emulator, write_spec, run
) -> None:
    repo = Host(tmp_path / "repo")
    repo.directory.mkdir()
    chart = package_chart(repo.directory, "secret-app", "1.0.0")
    Path(f"{chart.path}.prov").write_text("-----BEGIN PGP SIGNED MESSAGE-----\nfake but present\n")
    publish(repo.directory, [chart])
    repo.start()
    try:
        write_spec(tls_spec(repo.url, "    provenance: required\n"))
        run("--sync", "mirror.yaml").assert_outcomes(passed=2)
    finally:
        repo.stop()
    image = boto3.client("ecr", region_name="eu-west-1").batch_get_image(
        repositoryName="secret-app", imageIds=[{"imageTag": "1.0.0"}]
    )["images"][0]
    layers = json.loads(image["imageManifest"])["layers"]
    assert sorted(layer["mediaType"] for layer in layers) == [
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
        PROVENANCE_MEDIA_TYPE,
    ]
    assert [layer["digest"] for layer in layers] == sorted(layer["digest"] for layer in layers)


def test_provenance_required_fails_a_version_without_one(
    tmp_path: Path, emulator: Emulator, write_spec, run
) -> None:
    repo = Host(tmp_path / "repo")
    repo.directory.mkdir()
    publish(repo.directory, [package_chart(repo.directory, "secret-app", "1.0.0")])
    repo.start()
    try:
        write_spec(tls_spec(repo.url, "    provenance: required\n"))
        result = run("--sync", "mirror.yaml")
    finally:
        repo.stop()

    result.stdout.fnmatch_lines(["*has no provenance file (.prov), and the spec says provenance: required*"])
    assert [r for r in emulator.writes() if r.kind == "registry"] == []
