"""OCI registries as sources: a true mirror (same digests), auth flows, and no credential on a redirect."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from chartfactory import package_chart
from ociregistry import DockerRegistry, TokenRegistry
from tools import registry_password, require_tool, tool

from conftest import REGISTRY, ChartServer
from ecrmirror.emulator import Emulator

SECRET = "s3cret-registry-pa55word"


@pytest.fixture
def token_registry() -> Iterator[TokenRegistry]:
    registry = TokenRegistry().start()
    yield registry
    registry.stop()


def helm_push(helm: list[str], archive: Path, destination: str) -> None:
    pushed = subprocess.run(
        [*helm, "push", str(archive), destination, "--plain-http"], capture_output=True, text=True, timeout=60
    )
    assert pushed.returncode == 0, pushed.stderr


def emulator_digest(repository: str, tag: str) -> str:
    ecr = boto3.client("ecr", region_name="eu-west-1")
    image = ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageTag": tag}])["images"][0]
    return str(image["imageId"]["imageDigest"])


def test_a_spec_mixing_http_local_and_oci_sources_mirrors_oci_digests_unchanged(
    docker_registry: DockerRegistry,
    helm: list[str],
    chart_server: ChartServer,
    emulator: Emulator,
    write_spec,
    run,
    pytester: pytest.Pytester,
    tmp_path: Path,
) -> None:
    # given an HTTP repository, a local directory and an OCI registry, each with charts
    chart_server.add("web", "1.0.0")
    chart_server.publish()
    package_chart(pytester.path / "local", "tool", "0.1.0")
    source = f"{docker_registry.host}/{tmp_path.name.lower()}/charts"
    for version in ("2.0.0", "2.1.0+build.1"):
        helm_push(helm, package_chart(tmp_path, "db", version).path, f"oci://{source}")
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  prefix: mirror\n  create_repositories: true\n"
        "charts:\n"
        f"  - name: web\n    repo: {chart_server.url}\n    versions: ['1.0.0']\n"
        "  - name: tool\n    repo: local\n    versions: ['0.1.0']\n"
        f"  - name: db\n    repo: oci://{source}\n    plain_http: true\n"
        "    versions: ['2.0.0', '2.1.0+build.1']\n"
    )

    # when the spec is synced into the offline emulator
    synced = run("--sync", "-v", "mirror.yaml")

    # then every version is there, and each OCI-sourced manifest has the source's digest
    synced.assert_outcomes(passed=7)
    synced.stdout.fnmatch_lines(["mirror.yaml::db::2.1.0+build.1 PUSHED*"])
    for tag in ("2.0.0", "2.1.0_build.1"):
        assert emulator_digest("mirror/db", tag) == docker_registry.manifest_digest(
            f"{tmp_path.name.lower()}/charts/db", tag
        )

    # and an audit finds everything PRESENT, pulling nothing from the OCI-sourced repository (its
    # copies are compared by manifest digest, which ECR's listing gives), and a second sync writes
    # nothing
    emulator.app.requests.clear()
    run("--check-only", "mirror.yaml").assert_outcomes(passed=7)
    pulls = [r for r in emulator.requests if r.action == "BatchGetImage"]
    assert len(pulls) == 2  # mirror/web's and mirror/tool's manifests (their chart layers compared)
    emulator.app.requests.clear()
    run("--sync", "mirror.yaml").assert_outcomes(passed=7)
    assert emulator.writes() == []


def test_skopeo_copy_and_ecrmirror_give_the_same_manifest_digest(
    docker_registry: DockerRegistry, helm: list[str], emulator: Emulator, write_spec, run, tmp_path: Path
) -> None:
    skopeo = require_tool("skopeo", "apt-get install skopeo, as .ci/run does")
    path = f"{tmp_path.name.lower()}/charts"
    versions = ("0.1.0", "0.2.0-rc.1", "1.0.0+meta")
    for version in versions:
        helm_push(helm, package_chart(tmp_path, "app", version).path, f"oci://{docker_registry.host}/{path}")
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  prefix: ecrmirror\n  create_repositories: true\n"
        f"charts:\n  - name: app\n    repo: oci://{docker_registry.host}/{path}\n    plain_http: true\n"
        f"    versions: {json.dumps(list(versions))}\n"
    )
    run("--sync", "mirror.yaml").assert_outcomes(passed=4)
    boto3.client("ecr", region_name="eu-west-1").create_repository(repositoryName="skopeo/app")
    host = emulator.url.removeprefix("http://")
    creds = f"AWS:{registry_password(emulator)}"

    for version in versions:
        tag = version.replace("+", "_")
        copied = tool(
            skopeo,
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--dest-creds",
            creds,
            f"docker://{docker_registry.host}/{path}/app:{tag}",
            f"docker://{host}/skopeo/app:{tag}",
        )
        assert copied.returncode == 0, copied.stderr
        assert emulator_digest("skopeo/app", tag) == emulator_digest("ecrmirror/app", tag)


def test_a_version_constraint_resolves_against_the_registrys_tags(
    docker_registry: DockerRegistry, helm: list[str], emulator: Emulator, write_spec, run, tmp_path: Path
) -> None:
    path = f"{tmp_path.name.lower()}/charts"
    for version in ("1.0.0", "1.4.0", "2.0.0", "1.5.0-rc.1", "1.4.1+build.2"):
        helm_push(helm, package_chart(tmp_path, "svc", version).path, f"oci://{docker_registry.host}/{path}")
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        f"charts:\n  - name: svc\n    repo: oci://{docker_registry.host}/{path}\n    plain_http: true\n"
        "    versions: '^1'\n"
    )

    result = run("--sync", "--collect-only", "-q", "mirror.yaml")

    result.stdout.fnmatch_lines(
        ["mirror.yaml::svc::1.4.1+build.2", "mirror.yaml::svc::1.4.0", "mirror.yaml::svc::1.0.0"]
    )
    result.stdout.no_fnmatch_line("*1.5.0-rc.1*")


def write_cache_spec(write_spec: Any, registry: TokenRegistry) -> None:
    """mirror.yaml: cache 3.2.1 from `registry`'s library/ path."""
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        f"charts:\n  - name: cache\n    repo: oci://{registry.host}/library\n    plain_http: true\n"
        "    versions: ['3.2.1']\n"
    )


def test_a_token_registry_gets_an_anonymous_token_and_blob_storage_no_credentials(
    token_registry: TokenRegistry, emulator: Emulator, write_spec, run, tmp_path: Path
) -> None:
    chart = package_chart(tmp_path, "cache", "3.2.1")
    digest = token_registry.add_chart("library/cache", chart.path, "cache", "3.2.1")
    write_cache_spec(write_spec, token_registry)

    run("--sync", "mirror.yaml").assert_outcomes(passed=2)

    assert emulator_digest("cache", "3.2.1") == digest
    assert "Bearer granted" in token_registry.authorizations(token_registry.host)
    assert token_registry.authorizations(token_registry.storage_host) == []  # the redirect got nothing
    assert any(host == token_registry.storage_host for host, _, _ in token_registry.seen)


def test_registry_credentials_reach_only_the_token_service_and_never_the_output(
    token_registry: TokenRegistry,
    emulator: Emulator,
    write_spec,
    run,
    tmp_path: Path,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token_registry.username, token_registry.password = "mirror-bot", SECRET
    chart = package_chart(tmp_path, "cache", "3.2.1")
    token_registry.add_chart("library/cache", chart.path, "cache", "3.2.1")
    monkeypatch.setenv("SOURCE_PASSWORD", SECRET)
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        f"charts:\n  - name: cache\n    repo: oci://{token_registry.host}/library\n    plain_http: true\n"
        "    auth: {username: mirror-bot, password: '${SOURCE_PASSWORD}'}\n"
        "    versions: ['3.2.1', '9.9.9']\n"
    )

    result = run("--sync", "-v", "-rA", "--log-level=DEBUG", "--junitxml=report.xml", "mirror.yaml")

    result.assert_outcomes(passed=2, failed=1)  # 9.9.9 is not there: a failing run says no secret either
    token_requests = [auth for host, path, auth in token_registry.seen if path.startswith("/token")]
    assert token_requests
    assert all(auth.startswith("Basic ") for auth in token_requests)
    assert token_registry.authorizations(token_registry.storage_host) == []
    written = "\n".join(result.outlines + result.errlines) + (pytester.path / "report.xml").read_text()
    assert SECRET not in written
    assert "bWlycm9yLWJvdDpz" not in written  # the start of base64("mirror-bot:s3cret...")


def test_wrong_registry_credentials_are_a_plain_error(
    token_registry: TokenRegistry, emulator: Emulator, write_spec, run, tmp_path: Path
) -> None:
    token_registry.username, token_registry.password = "mirror-bot", SECRET
    token_registry.add_chart(
        "library/cache", package_chart(tmp_path, "cache", "3.2.1").path, "cache", "3.2.1"
    )
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        f"charts:\n  - name: cache\n    repo: oci://{token_registry.host}/library\n    plain_http: true\n"
        "    auth: {username: mirror-bot, password: wrong}\n    versions: ['3.2.1']\n"
    )

    result = run("--sync", "mirror.yaml")

    result.stdout.fnmatch_lines(["*the token service of * refused a repository:library/cache:pull token*"])
    result.stdout.no_fnmatch_line("*Traceback*")
    assert emulator.writes() == []


def test_a_manifest_whose_digests_are_not_digests_is_refused(
    token_registry: TokenRegistry, emulator: Emulator, write_spec, run, tmp_path: Path
) -> None:
    token_registry.add_chart(
        "library/cache", package_chart(tmp_path, "cache", "3.2.1").path, "cache", "3.2.1"
    )
    hostile = {
        "schemaVersion": 2,
        "config": {
            "mediaType": "application/vnd.cncf.helm.config.v1+json",
            "digest": "sha256:../../x",
            "size": 2,
        },
        "layers": [],
    }
    token_registry.manifests[("library/cache", "3.2.1")] = json.dumps(hostile).encode()
    write_cache_spec(write_spec, token_registry)

    result = run("--sync", "mirror.yaml")

    result.stdout.fnmatch_lines(
        ["*the manifest is not a valid OCI image manifest (a descriptor without a sha256 digest*"]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    assert [r for r in emulator.writes() if r.kind == "registry"] == []


def test_a_blob_longer_than_its_manifest_says_is_cut_off(
    token_registry: TokenRegistry, emulator: Emulator, write_spec, run, tmp_path: Path
) -> None:
    chart = package_chart(tmp_path, "cache", "3.2.1")
    token_registry.add_chart("library/cache", chart.path, "cache", "3.2.1")
    digest = "sha256:" + hashlib.sha256(chart.path.read_bytes()).hexdigest()
    token_registry.blobs[digest] += bytes(1 << 20)  # an endless blob, as far as the client can tell
    write_cache_spec(write_spec, token_registry)

    result = run("--sync", "mirror.yaml")

    result.stdout.fnmatch_lines(
        [
            f"*blob {digest} from {token_registry.host}/library/cache is longer than the "
            f"{chart.path.stat().st_size} bytes its manifest declares; ecrmirror stopped reading it*"
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    assert [r for r in emulator.writes() if r.kind == "registry"] == []


def test_a_chart_layer_bigger_than_the_chart_size_limit_is_not_downloaded(
    token_registry: TokenRegistry, emulator: Emulator, write_spec, run, tmp_path: Path
) -> None:
    chart = package_chart(tmp_path, "cache", "3.2.1")
    token_registry.add_chart("library/cache", chart.path, "cache", "3.2.1")
    write_cache_spec(write_spec, token_registry)

    result = run("--sync", "mirror.yaml", "--ecrmirror-max-chart-size=100")

    result.stdout.fnmatch_lines(
        ["*is * bytes, more than a chart may be (100; ini ecrmirror_max_chart_size)*"]
    )
    digest = "sha256:" + hashlib.sha256(chart.path.read_bytes()).hexdigest()
    assert not any(digest in path for _, path, _ in token_registry.seen)
    assert [r for r in emulator.writes() if r.kind == "registry"] == []


# -- what refers to a chart comes with it -------------------------------------------------------------
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY = b"{}"


def push_blob(host: str, repository: str, data: bytes, auth: tuple[str, str] | None = None) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    started = requests.post(f"http://{host}/v2/{repository}/blobs/uploads/", auth=auth, timeout=10)
    location = started.headers["Location"]
    separator = "&" if "?" in location else "?"
    url = location if location.startswith("http") else f"http://{host}{location}"
    done = requests.put(f"{url}{separator}digest={digest}", data=data, auth=auth, timeout=10)
    assert done.status_code == 201, done.text
    return digest


def push_manifest(
    host: str,
    repository: str,
    reference: str,
    document: dict[str, Any],
    media_type: str,
    auth: tuple[str, str] | None = None,
) -> str:
    body = json.dumps(document).encode()
    done = requests.put(
        f"http://{host}/v2/{repository}/manifests/{reference}",
        data=body,
        headers={"Content-Type": media_type},
        auth=auth,
        timeout=10,
    )
    assert done.status_code == 201, done.text
    return "sha256:" + hashlib.sha256(body).hexdigest()


def test_a_cosign_signature_and_an_sbom_referrer_come_with_an_oci_chart_digests_unchanged(
    docker_registry: DockerRegistry, helm: list[str], emulator: Emulator, write_spec, run, tmp_path: Path
) -> None:
    # given a chart in a registry without the referrers API (distribution 2.8), carrying a cosign
    # signature under cosign's tag scheme and an SBOM listed by the referrers tag schema
    host, path = docker_registry.host, f"{tmp_path.name.lower()}/charts"
    repository = f"{path}/db"
    helm_push(helm, package_chart(tmp_path, "db", "2.0.0").path, f"oci://{host}/{path}")
    chart = docker_registry.manifest_digest(repository, "2.0.0")
    chart_size = len(requests.get(f"http://{host}/v2/{repository}/manifests/2.0.0", timeout=10).content)
    hexdigest = chart.partition(":")[2]
    empty = {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": push_blob(host, repository, EMPTY),
        "size": 2,
    }
    payload = json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": f"{host}/{repository}"},
                "image": {"docker-manifest-digest": chart},
                "type": "cosign container image signature",
            },
            "optional": None,
        }
    ).encode()
    signature_layer = {
        "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
        "digest": push_blob(host, repository, payload),
        "size": len(payload),
        "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQDfakebutwellformedsignature=="},
    }
    signature = push_manifest(
        host,
        repository,
        f"sha256-{hexdigest}.sig",
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": empty, "layers": [signature_layer]},
        OCI_MANIFEST,
    )
    spdx = b'{"spdxVersion": "SPDX-2.3", "name": "db"}'
    sbom_document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/spdx+json",
        "config": empty,
        "layers": [
            {
                "mediaType": "application/spdx+json",
                "digest": push_blob(host, repository, spdx),
                "size": len(spdx),
            }
        ],
        "subject": {"mediaType": OCI_MANIFEST, "digest": chart, "size": chart_size},
    }
    sbom = "sha256:" + hashlib.sha256(json.dumps(sbom_document).encode()).hexdigest()
    push_manifest(host, repository, sbom, sbom_document, OCI_MANIFEST)
    sbom_size = len(json.dumps(sbom_document).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": sbom,
                "size": sbom_size,
                "artifactType": "application/spdx+json",
            }
        ],
    }
    push_manifest(host, repository, f"sha256-{hexdigest}", index, OCI_INDEX)
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  prefix: mirror\n  create_repositories: true\n"
        f"charts:\n  - name: db\n    repo: oci://{host}/{path}\n    plain_http: true\n"
        "    versions: ['2.0.0']\n"
    )

    # when it is synced
    run("--sync", "-v", "mirror.yaml").assert_outcomes(passed=2)

    # then ECR holds the chart, its signature under the same tag, and the SBOM as a referrer of
    # the chart, each with the source's digest
    ecr = boto3.client("ecr", region_name="eu-west-1")
    held = ecr.batch_get_image(repositoryName="mirror/db", imageIds=[{"imageTag": f"sha256-{hexdigest}.sig"}])
    assert held["images"][0]["imageId"]["imageDigest"] == signature
    password = registry_password(emulator)
    referrers = requests.get(
        f"{emulator.url}/v2/mirror/db/referrers/{chart}", auth=("AWS", password), timeout=10
    ).json()["manifests"]
    assert [(r["digest"], r.get("artifactType")) for r in referrers] == [(sbom, "application/spdx+json")]
    assert emulator_digest("mirror/db", "2.0.0") == chart

    # and the audit passes; once the signature is deleted from ECR, it says what is missing
    run("--check-only", "mirror.yaml").assert_outcomes(passed=2)
    ecr.batch_delete_image(repositoryName="mirror/db", imageIds=[{"imageDigest": signature}])
    audited = run("--check-only", "-v", "mirror.yaml")
    audited.assert_outcomes(passed=1, failed=1)
    audited.stdout.fnmatch_lines(
        [
            "mirror.yaml::db::2.0.0 INCOMPLETE*",
            f"*is in ECR, but not what * attaches to it: sha256-{hexdigest}.sig ({signature})*",
        ]
    )
    # and the next sync puts it back, same digest
    run("--sync", "mirror.yaml").assert_outcomes(passed=2)
    run("--check-only", "mirror.yaml").assert_outcomes(passed=2)


def test_copy_referrers_false_leaves_them_upstream(
    docker_registry: DockerRegistry, helm: list[str], emulator: Emulator, write_spec, run, tmp_path: Path
) -> None:
    host, path = docker_registry.host, f"{tmp_path.name.lower()}/charts"
    helm_push(helm, package_chart(tmp_path, "db", "2.0.0").path, f"oci://{host}/{path}")
    chart = docker_registry.manifest_digest(f"{path}/db", "2.0.0")
    empty = {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": push_blob(host, f"{path}/db", EMPTY),
        "size": 2,
    }
    push_manifest(
        host,
        f"{path}/db",
        f"sha256-{chart.partition(':')[2]}.sig",
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": empty, "layers": []},
        OCI_MANIFEST,
    )
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        f"charts:\n  - name: db\n    repo: oci://{host}/{path}\n    plain_http: true\n"
        "    copy_referrers: false\n    versions: ['2.0.0']\n"
    )

    run("--sync", "mirror.yaml").assert_outcomes(passed=2)

    tags = {
        i.get("imageTag")
        for i in boto3.client("ecr", region_name="eu-west-1").list_images(repositoryName="db")["imageIds"]
    }
    assert tags == {"2.0.0"}


@pytest.mark.parametrize("jobs", [1, 4])
def test_from_a_registry_with_the_referrers_api_an_sbom_is_found_through_it(
    chart_server: ChartServer,
    emulator: Emulator,
    write_spec,
    run,
    monkeypatch: pytest.MonkeyPatch,
    jobs: int,
) -> None:
    # given a chart in a registry that has the referrers API (the emulator's `upstream/db`, as
    # another team's ECR would be), with an SBOM whose subject is the chart and no tag schema
    chart_server.add("db", "2.0.0")
    chart_server.publish()
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  prefix: upstream\n  create_repositories: true\n"
        f"charts:\n  - name: db\n    repo: {chart_server.url}\n    versions: ['2.0.0']\n"
    )
    run("--sync", "mirror.yaml").assert_outcomes(passed=2)
    chart = emulator_digest("upstream/db", "2.0.0")
    password = registry_password(emulator)
    auth = ("AWS", password)
    host = emulator.url.removeprefix("http://")
    chart_manifest = requests.get(
        f"{emulator.url}/v2/upstream/db/manifests/2.0.0",
        auth=auth,
        headers={"Accept": OCI_MANIFEST},
        timeout=10,
    ).content
    empty = {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": push_blob(host, "upstream/db", EMPTY, auth),
        "size": 2,
    }
    spdx = b'{"spdxVersion": "SPDX-2.3", "name": "db"}'
    sbom_document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/spdx+json",
        "config": empty,
        "layers": [
            {
                "mediaType": "application/spdx+json",
                "digest": push_blob(host, "upstream/db", spdx, auth),
                "size": len(spdx),
            }
        ],
        "subject": {"mediaType": OCI_MANIFEST, "digest": chart, "size": len(chart_manifest)},
    }
    sbom = "sha256:" + hashlib.sha256(json.dumps(sbom_document).encode()).hexdigest()
    push_manifest(host, "upstream/db", sbom, sbom_document, OCI_MANIFEST, auth)
    monkeypatch.setenv("UPSTREAM_PASSWORD", password)
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  prefix: mirror\n  create_repositories: true\n"
        f"charts:\n  - name: db\n    repo: oci://{host}/upstream\n    plain_http: true\n"
        "    auth: {username: AWS, password: '${UPSTREAM_PASSWORD}'}\n    versions: ['2.0.0']\n"
    )
    emulator.app.requests.clear()

    # when it is mirrored (with jobs, the registry is asked ahead whether it has the API)
    run("--sync", f"--ecrmirror-jobs={jobs}", "mirror.yaml").assert_outcomes(passed=2)

    # then the SBOM was found through the referrers API, asked once (the answer to the probe
    # ahead is the version's own), and arrived as the mirrored chart's referrer
    asked = [r.path for r in emulator.app.requests if r.kind == "registry" and r.method == "GET"]
    assert asked.count(f"/v2/upstream/db/referrers/{chart}") == 1
    assert f"/v2/upstream/db/manifests/sha256-{chart.partition(':')[2]}" not in asked  # no tag schema
    referrers = requests.get(f"{emulator.url}/v2/mirror/db/referrers/{chart}", auth=auth, timeout=10).json()
    assert [(r["digest"], r.get("artifactType")) for r in referrers["manifests"]] == [
        (sbom, "application/spdx+json")
    ]
    assert emulator_digest("mirror/db", "2.0.0") == chart
