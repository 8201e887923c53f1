"""imagefactory's images and charts, as skopeo, docker-registry and helm see them."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from imagefactory import (
    ALL_MANIFESTS,
    ATTESTATION,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    IN_TOTO,
    OCI_INDEX,
    OCI_MANIFEST,
    SIMPLE_SIGNING,
    ImageRefs,
    manifest_digest,
    move_tag,
    push_docker_list_image,
    push_multiarch_image,
    push_single_image,
    sha256,
    tar_gz_layer,
    write_image_chart,
)
from ociregistry import DockerRegistry
from tools import require_tool, tool

REFS = ImageRefs(
    annotated="registry.example.com/team/app:1.0",
    subchart_annotated="registry.example.com/team/sub:2.0",
    init_container="registry.example.com/team/migrate:3.0",
    hook_job="registry.example.com/team/setup:4.0",
    operator_cr="registry.example.com/team/postgres:5.0",
)


@pytest.fixture
def skopeo() -> str:
    return require_tool("skopeo", "apt-get install skopeo, as .ci/run does")


def inspect(skopeo: str, reference: str, *options: str) -> str:
    inspected = tool(skopeo, "inspect", "--tls-verify=false", *options, f"docker://{reference}")
    assert inspected.returncode == 0, inspected.stderr
    return inspected.stdout


def blob(host: str, repository: str, digest: str) -> Any:
    response = requests.get(f"http://{host}/v2/{repository}/blobs/{digest}", timeout=10)
    response.raise_for_status()
    return response.json()


def test_a_multiarch_image_is_stored_as_pushed_with_its_attestation_and_signatures(
    docker_registry: DockerRegistry, skopeo: str
) -> None:
    host, shared = docker_registry.host, tar_gz_layer({"lib/shared.txt": b"shared"})
    pushed = push_multiarch_image(host, "images/app", "1.0", shared_layer=shared, seed="a", referrer=True)

    # Byte for byte: the index's odd layout is what a faithful copy must keep.
    assert inspect(skopeo, f"{host}/images/app:1.0", "--raw").encode() == pushed.index_body
    index = json.loads(pushed.index_body)
    assert index["mediaType"] == OCI_INDEX
    attestation = index["manifests"][2]
    assert attestation["platform"] == {"architecture": "unknown", "os": "unknown"}
    assert attestation["annotations"] == {
        "vnd.docker.reference.type": "attestation-manifest",
        "vnd.docker.reference.digest": pushed.children["linux/amd64"],
    }
    layers: set[str] = set()
    for platform, digest in pushed.children.items():
        raw = inspect(skopeo, f"{host}/images/app@{digest}", "--raw")
        assert sha256(raw.encode()) == digest, platform
        manifest = json.loads(raw)
        assert manifest["mediaType"] == OCI_MANIFEST
        layers |= {layer["digest"] for layer in manifest["layers"]}
        if platform == ATTESTATION:
            assert [layer["mediaType"] for layer in manifest["layers"]] == [IN_TOTO]
    assert layers == pushed.layer_digests
    assert sha256(shared) in pushed.layer_digests

    # skopeo picks a platform's child by the index's platforms and reads its config.
    arm64 = json.loads(inspect(skopeo, f"{host}/images/app:1.0", "--override-arch", "arm64"))
    assert (arm64["Architecture"], arm64["Os"]) == ("arm64", "linux")
    arm64_manifest = json.loads(
        inspect(skopeo, f"{host}/images/app@{pushed.children['linux/arm64']}", "--raw")
    )
    assert arm64["Layers"] == [layer["digest"] for layer in arm64_manifest["layers"]]

    signed = {pushed.index_digest, pushed.children["linux/amd64"]}
    assert set(pushed.cosign_tags) == {digest.replace(":", "-") + ".sig" for digest in signed}
    for tag, digest in pushed.cosign_tags.items():
        raw = inspect(skopeo, f"{host}/images/app:{tag}", "--raw")
        assert sha256(raw.encode()) == digest
        (layer,) = json.loads(raw)["layers"]
        assert layer["mediaType"] == SIMPLE_SIGNING
        assert layer["annotations"]["dev.cosignproject.cosign/signature"]
        payload = blob(host, "images/app", layer["digest"])
        assert payload["critical"]["type"] == "cosign container image signature"
        assert tag == payload["critical"]["image"]["docker-manifest-digest"].replace(":", "-") + ".sig"

    # The referrer: by digest only, listed under the referrers tag (docker-registry has no API).
    assert pushed.referrer is not None
    assert manifest_digest(host, "images/app", pushed.referrer) == pushed.referrer
    ((referrers_tag, listing),) = pushed.referrers_tags.items()
    assert referrers_tag == pushed.children["linux/arm64"].replace(":", "-")
    raw = inspect(skopeo, f"{host}/images/app:{referrers_tag}", "--raw")
    assert sha256(raw.encode()) == listing
    assert [entry["digest"] for entry in json.loads(raw)["manifests"]] == [pushed.referrer]


def test_seeds_make_other_images_the_same_push_the_same_and_a_shared_layer_is_shared(
    docker_registry: DockerRegistry,
) -> None:
    host, shared = docker_registry.host, tar_gz_layer({"lib/shared.txt": b"common"})
    first = push_multiarch_image(host, "images/seeds", "a", shared_layer=shared, seed="a")
    second = push_multiarch_image(host, "images/seeds", "b", shared_layer=shared, seed="b")
    again = push_multiarch_image(host, "images/seeds", "a", shared_layer=shared, seed="a")
    assert first.index_digest != second.index_digest
    assert first.layer_digests & second.layer_digests == {sha256(shared)}
    assert again.index_body == first.index_body
    assert not first.referrers_tags


def test_a_docker_list_a_single_image_and_a_moved_tag(docker_registry: DockerRegistry, skopeo: str) -> None:
    host = docker_registry.host
    listed = push_docker_list_image(host, "images/old", "1.0", seed="old")
    assert inspect(skopeo, f"{host}/images/old:1.0", "--raw").encode() == listed.index_body
    assert json.loads(listed.index_body)["mediaType"] == DOCKER_LIST
    assert set(listed.children) == {"linux/amd64", "linux/arm64"}
    assert not listed.cosign_tags
    for digest in listed.children.values():
        raw = inspect(skopeo, f"{host}/images/old@{digest}", "--raw")
        assert (sha256(raw.encode()), json.loads(raw)["mediaType"]) == (digest, DOCKER_MANIFEST)

    first = push_single_image(host, "images/moving", "latest", seed="1")
    assert json.loads(inspect(skopeo, f"{host}/images/moving:latest"))["Digest"] == first
    moved = move_tag(host, "images/moving", "latest", "2")
    assert moved != first
    assert json.loads(inspect(skopeo, f"{host}/images/moving:latest"))["Digest"] == moved
    with pytest.raises(ValueError, match="did not move"):
        move_tag(host, "images/moving", "latest", "2")


def test_docker_registry_shows_a_multiarch_tag_only_to_clients_that_accept_its_type(
    docker_registry: DockerRegistry,
) -> None:
    """What the mirroring tests stand on: docker-registry 2.8 hides an OCI index from a client
    that does not accept one (404, even with the Docker list type), and answers a Docker list's
    tag with its amd64 child to a client that accepts Docker manifests but not lists."""
    host = docker_registry.host
    oci = push_multiarch_image(host, "images/accept", "oci")
    docker = push_docker_list_image(host, "images/accept", "docker")

    def head(tag: str, accept: str) -> requests.Response:
        url = f"http://{host}/v2/images/accept/manifests/{tag}"
        return requests.head(url, headers={"Accept": accept}, timeout=10)

    for accept in (OCI_MANIFEST, DOCKER_LIST):
        assert head("oci", accept).status_code == 404
    assert head("oci", ALL_MANIFESTS).headers["Docker-Content-Digest"] == oci.index_digest
    assert head("docker", DOCKER_MANIFEST).headers["Docker-Content-Digest"] == docker.children["linux/amd64"]
    assert head("docker", ALL_MANIFESTS).headers["Docker-Content-Digest"] == docker.index_digest


def chart_yaml(archive: bytes, name: str) -> Any:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.extractfile(f"{name}/Chart.yaml")
        assert member is not None
        return yaml.safe_load(member.read())


def test_helm_renders_every_templated_image_but_the_subcharts_annotated_one(
    helm: list[str], tmp_path: Path
) -> None:
    archive = write_image_chart(tmp_path, name="app", version="1.2.3", images=REFS)
    assert archive == tmp_path / "app-1.2.3.tgz"
    rendered = tool(*helm, "template", "release", str(archive), "--include-crds")
    assert rendered.returncode == 0, rendered.stderr
    for image in REFS.rendered:
        assert image in rendered.stdout
    assert REFS.subchart_annotated not in rendered.stdout
    assert "# Source: app/charts/sub/templates/configmap.yaml" in rendered.stdout  # the subchart loaded
    assert "# Source: app/crds/databases.example.com.yaml" in rendered.stdout

    chart = chart_yaml(archive.read_bytes(), "app")
    annotated = yaml.safe_load(chart["annotations"]["artifacthub.io/images"])
    assert annotated == [{"name": "app", "image": REFS.annotated}]
    with tarfile.open(archive) as tar:
        subchart = tar.extractfile("app/charts/sub-0.1.0.tgz")
        assert subchart is not None
        images = yaml.safe_load(chart_yaml(subchart.read(), "sub")["annotations"]["images"])
    assert images == [{"name": "sub", "image": REFS.subchart_annotated}]


def test_a_chart_missing_a_required_value_fails_to_render(helm: list[str], tmp_path: Path) -> None:
    archive = write_image_chart(tmp_path, name="app", version="1.2.3", images=REFS, render_fails=True)
    rendered = tool(*helm, "template", "release", str(archive), "--include-crds")
    assert rendered.returncode != 0
    assert "database.password is required" in rendered.stderr
