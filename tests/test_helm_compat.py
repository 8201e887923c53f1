"""What ecrmirror pushes is what `helm push` pushes; real helm and skopeo read it back."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime
from pathlib import Path

import boto3
import pytest
import requests
from chartfactory import package_chart
from tools import helm_push, registry_password, require_tool, tool

from conftest import REGISTRY, ChartServer
from ecrmirror.chart import (
    CHART_LAYER_MEDIA_TYPE,
    CONFIG_MEDIA_TYPE,
    build_artifact,
    go_json,
    helm_config,
    normalize_created,
    tag_for,
)
from ecrmirror.emulator import Emulator

HELM_HOW = "run .ci/run, or put a helm >= 3.8 binary on PATH"
CREATED = "2024-03-01T12:34:56Z"


def sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


# -- the artifact, unit by unit -------------------------------------------------------------------
def test_config_is_chart_yaml_as_json_in_helms_field_order() -> None:
    metadata = {
        "type": "application",
        "version": "1.0.0",
        "name": "demo",
        "appVersion": 2.1,
        "annotations": {"z": "1", "a": "<b>&"},
        "keywords": [],
        "deprecated": False,
        "dependencies": [{"name": "redis", "version": "17.x", "alias": "cache"}],
        "maintainers": [{"email": "me@example.org", "name": "Me"}],
    }

    config = helm_config(metadata)

    assert config == (
        b'{"name":"demo","version":"1.0.0","maintainers":[{"name":"Me","email":"me@example.org"}],'
        b'"apiVersion":"v1","appVersion":"2.1","annotations":{"a":"\\u003cb\\u003e\\u0026","z":"1"},'
        b'"dependencies":[{"name":"redis","version":"17.x","repository":"","alias":"cache"}],'
        b'"type":"application"}'
    )


def test_go_json_keeps_unicode_and_escapes_html_as_go_does() -> None:
    assert go_json({"d": "Grüße <x> & \u2028"}) == ('{"d":"Grüße \\u003cx\\u003e \\u0026 \\u2028"}'.encode())


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        ("2024-03-01T12:34:56.123456789Z", "2024-03-01T12:34:56Z"),
        ("2024-03-01T13:34:56+01:00", "2024-03-01T12:34:56Z"),
        (datetime(2024, 3, 1, 12, 34, 56), "2024-03-01T12:34:56Z"),
        ("", None),
        ("yesterday", None),
        (None, None),
    ],
)
def test_created_comes_from_the_index_normalized_to_rfc3339_utc(
    created: object, expected: str | None
) -> None:
    assert normalize_created(created) == expected


@pytest.mark.parametrize(
    ("version", "tag"),
    [("1.2.3", "1.2.3"), ("1.2.3+build.4", "1.2.3_build.4"), ("1.0.0-rc.1+a+b", "1.0.0-rc.1_a_b")],
)
def test_tag_replaces_plus_with_underscore(version: str, tag: str) -> None:
    assert tag_for(version) == tag


def test_manifest_is_reproducible_and_has_helms_shape(tmp_path: Path) -> None:
    chart = package_chart(
        tmp_path,
        "demo",
        "1.0.0+7",
        home="https://demo.example",
        sources=["https://src.example", "https://second.example"],
        maintainers=[{"name": "A", "email": "a@x"}, {"name": "B"}],
        annotations={
            "org.opencontainers.image.title": "ignored",
            "org.opencontainers.image.url": "https://override",
        },
    )

    first = build_artifact(chart.path, sha256(chart.path), name="demo", version="1.0.0+7", created=CREATED)
    again = build_artifact(chart.path, sha256(chart.path), name="demo", version="1.0.0+7", created=CREATED)

    assert first.manifest == again.manifest
    manifest = json.loads(first.manifest)
    assert list(manifest) == ["schemaVersion", "config", "layers", "annotations"]
    assert manifest["config"]["mediaType"] == CONFIG_MEDIA_TYPE
    assert manifest["layers"] == [
        {"mediaType": CHART_LAYER_MEDIA_TYPE, "digest": sha256(chart.path), "size": chart.path.stat().st_size}
    ]
    assert manifest["annotations"] == {
        "org.opencontainers.image.authors": "A (a@x), B",
        "org.opencontainers.image.created": CREATED,
        "org.opencontainers.image.description": "The demo chart",
        "org.opencontainers.image.source": "https://src.example",
        "org.opencontainers.image.title": "demo",
        "org.opencontainers.image.url": "https://override",
        "org.opencontainers.image.version": "1.0.0+7",
    }
    assert first.tag == "1.0.0_7"


# -- against real helm ------------------------------------------------------------------------------
def test_helm_push_and_ecrmirror_store_byte_identical_manifests(
    helm: list[str], emulator: Emulator, tmp_path: Path
) -> None:
    # given a chart whose file time is the index's created time (helm >= 3.17 uses the mtime)
    chart = package_chart(
        tmp_path / "charts",
        "demo",
        "1.2.3+build.9",
        appVersion="9.9",
        home="https://demo.example",
        keywords=["a", "b"],
        maintainers=[{"name": "Ops", "email": "ops@example.org"}],
        annotations={"category": "Infra & <ops>"},
    )
    moment = datetime.fromisoformat(CREATED.replace("Z", "+00:00")).timestamp()
    os.utime(chart.path, (moment, moment))
    ecr = boto3.client("ecr", region_name="eu-west-1", endpoint_url=emulator.url)
    ecr.create_repository(repositoryName="helm/demo")

    # when helm itself pushes it
    pushed = helm_push(helm, chart.path, emulator)
    assert pushed.returncode == 0, pushed.stderr

    # then ecrmirror's artifact for the same archive is the same manifest, byte for byte
    ours = build_artifact(
        chart.path, sha256(chart.path), name="demo", version="1.2.3+build.9", created=CREATED
    )
    assert f"Digest: {ours.manifest_digest}" in pushed.stdout + pushed.stderr
    stored = ecr.batch_get_image(repositoryName="helm/demo", imageIds=[{"imageTag": ours.tag}])
    assert stored["images"][0]["imageManifest"].encode() == ours.manifest


def test_helm_pulls_what_ecrmirror_pushed(
    helm: list[str], chart_server: ChartServer, emulator: Emulator, write_spec, run, tmp_path: Path
) -> None:
    chart = chart_server.add("demo", "0.3.0+rc.2", appVersion="1.0")
    chart_server.publish()
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  prefix: helm\n  create_repositories: true\n"
        f"charts:\n  - name: demo\n    repo: {chart_server.url}\n"
        "    versions: ['0.3.0+rc.2']\n"
    )
    run("--sync", "mirror.yaml").assert_outcomes(passed=2)
    host = emulator.url.removeprefix("http://")
    login = tool(
        *helm,
        "registry",
        "login",
        host,
        "--insecure",
        "--username",
        "AWS",
        "--password-stdin",
        input=registry_password(emulator),
    )
    assert login.returncode == 0, login.stderr

    (tmp_path / "pulled").mkdir()
    pulled = tool(
        *helm,
        "pull",
        f"oci://{host}/helm/demo",
        "--version",
        "0.3.0+rc.2",
        "--plain-http",
        "--destination",
        str(tmp_path / "pulled"),
    )

    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "pulled" / chart.path.name).read_bytes() == chart.path.read_bytes()


# -- against an independent OCI client ---------------------------------------------------------------
def test_skopeo_reads_helm_media_types_and_the_upstream_digest(
    chart_server: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    skopeo = require_tool("skopeo", "apt-get install skopeo, as .ci/run does")
    chart_server.add("gitlab", "7.1.1")
    chart_server.add("gitlab", "7.2.0+meta")
    chart_server.publish()
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  prefix: helm\n  create_repositories: true\n"
        f"charts:\n  - name: gitlab\n    repo: {chart_server.url}\n"
        "    versions: ['7.1.1', '7.2.0+meta']\n"
    )
    run("--sync", "mirror.yaml").assert_outcomes(passed=3)
    host = emulator.url.removeprefix("http://")

    for chart in chart_server.charts:
        inspected = tool(
            skopeo,
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            f"AWS:{registry_password(emulator)}",
            f"docker://{host}/helm/gitlab:{tag_for(chart.version)}",
        )
        assert inspected.returncode == 0, inspected.stderr
        manifest = json.loads(inspected.stdout)
        assert manifest["config"]["mediaType"] == CONFIG_MEDIA_TYPE
        assert [layer["mediaType"] for layer in manifest["layers"]] == [CHART_LAYER_MEDIA_TYPE]
        assert manifest["layers"][0]["digest"] == f"sha256:{chart.digest}"


def test_emulator_rejects_requests_without_the_token(emulator: Emulator) -> None:
    response = requests.get(f"{emulator.url}/v2/", timeout=10)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


def test_skopeo_lists_tags_and_copies_between_emulator_repositories(
    chart_server: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    """The emulator is a registry for other clients too: tag listing and chunked (PATCH) uploads."""
    skopeo = require_tool("skopeo", "apt-get install skopeo, as .ci/run does")
    for version in ("1.0.0", "1.1.0", "2.0.0+build.1"):
        chart_server.add("gitlab", version)
    chart_server.publish()
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  prefix: helm\n  create_repositories: true\n"
        f"charts:\n  - name: gitlab\n    repo: {chart_server.url}\n"
        "    versions: ['1.0.0', '1.1.0', '2.0.0+build.1']\n"
    )
    run("--sync", "mirror.yaml").assert_outcomes(passed=4)
    host = emulator.url.removeprefix("http://")
    creds = f"AWS:{registry_password(emulator)}"
    boto3.client("ecr", region_name="eu-west-1", endpoint_url=emulator.url).create_repository(
        repositoryName="copy/gitlab"
    )

    listed = tool(skopeo, "list-tags", "--tls-verify=false", "--creds", creds, f"docker://{host}/helm/gitlab")
    copied = tool(
        skopeo,
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--src-creds",
        creds,
        "--dest-creds",
        creds,
        "--preserve-digests",
        f"docker://{host}/helm/gitlab:1.1.0",
        f"docker://{host}/copy/gitlab:1.1.0",
    )

    assert listed.returncode == 0, listed.stderr
    assert sorted(json.loads(listed.stdout)["Tags"]) == ["1.0.0", "1.1.0", "2.0.0_build.1"]
    assert copied.returncode == 0, copied.stderr
    ecr = boto3.client("ecr", region_name="eu-west-1", endpoint_url=emulator.url)
    source, copy = (
        ecr.batch_get_image(repositoryName=name, imageIds=[{"imageTag": "1.1.0"}])["images"][0]
        for name in ("helm/gitlab", "copy/gitlab")
    )
    assert copy["imageId"]["imageDigest"] == source["imageId"]["imageDigest"]
