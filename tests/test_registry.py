"""Registry auth as ECR does it: token with the first request, renewed before expiry and on 403."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from chartfactory import package_chart

from ecrmirror.chart import build_artifact
from ecrmirror.ecr import Ecr, RegistryToken
from ecrmirror.emulator import Emulator
from ecrmirror.errors import RepositoryMissing, TagConflict
from ecrmirror.registry import RegistryClient
from ecrmirror.run import aws_session
from ecrmirror.spec import Registry, RepositorySettings

REGISTRY = Registry("123456789012.dkr.ecr.eu-west-1.amazonaws.com", "123456789012", "eu-west-1")


@pytest.fixture
def ecr(emulator: Emulator) -> Ecr:
    return Ecr(REGISTRY, aws_session(None, None), endpoint_url=emulator.url)


@pytest.fixture
def artifact_and_archive(tmp_path: Path):  # type: ignore[no-untyped-def]
    chart = package_chart(tmp_path, "demo", "1.0.0")
    digest = "sha256:" + hashlib.sha256(chart.path.read_bytes()).hexdigest()
    return build_artifact(
        chart.path, digest, name="demo", version="1.0.0", created="2024-01-01T00:00:00Z"
    ), chart.path


def test_token_goes_with_the_first_request_so_no_401_round_trips(
    emulator: Emulator, ecr: Ecr, artifact_and_archive
) -> None:
    artifact, archive = artifact_and_archive
    ecr.create_repository("helm/demo", RepositorySettings())
    client = RegistryClient(emulator.url, ecr.registry_token)

    client.push("helm/demo", artifact, archive)

    statuses = [r.status for r in emulator.requests if r.kind == "registry"]
    assert 401 not in statuses
    # the config uploaded straight away (POST + PUT), the archive after a HEAD, the manifest last
    assert [r.method for r in emulator.requests if r.kind == "registry"] == [
        "POST",
        "PUT",
        "HEAD",
        "POST",
        "PUT",
        "PUT",
    ]
    assert [r.action for r in emulator.requests if r.kind == "api"].count("GetAuthorizationToken") == 1


def test_token_is_renewed_before_it_expires(ecr: Ecr, artifact_and_archive, emulator: Emulator) -> None:
    artifact, archive = artifact_and_archive
    ecr.create_repository("helm/demo", RepositorySettings())
    issued: list[RegistryToken] = []

    def short_lived() -> RegistryToken:
        token = ecr.registry_token()
        issued.append(token)
        # as if ECR's 12 h were nearly over: inside the renewal margin
        return RegistryToken(token.username, token.password, time.time() + 60)

    client = RegistryClient(emulator.url, short_lived)
    client.push("helm/demo", artifact, archive)

    assert len(issued) == 6  # one per request: each found the last one about to expire


def test_expired_token_403_is_renewed_once_and_the_request_retried(
    ecr: Ecr, artifact_and_archive, emulator: Emulator
) -> None:
    artifact, archive = artifact_and_archive
    ecr.create_repository("helm/demo", RepositorySettings())
    emulator.app.state.token_ttl = 0  # the first token is dead on arrival, though it claims 12 h
    tokens = iter([ecr.registry_token()])
    emulator.app.state.token_ttl = 3600

    def fetch() -> RegistryToken:
        token = next(tokens, None) or ecr.registry_token()
        return RegistryToken(token.username, token.password, time.time() + 12 * 3600)

    client = RegistryClient(emulator.url, fetch)
    client.push("helm/demo", artifact, archive)

    registry = [(r.method, r.status) for r in emulator.requests if r.kind == "registry"]
    assert registry[:2] == [("POST", 403), ("POST", 202)]
    assert registry[-1] == ("PUT", 201)


def test_push_into_a_missing_repository_is_repository_missing(
    ecr: Ecr, artifact_and_archive, emulator: Emulator
) -> None:
    artifact, archive = artifact_and_archive
    client = RegistryClient(emulator.url, ecr.registry_token)

    with pytest.raises(RepositoryMissing, match=r"helm/demo.*repository does not exist"):
        client.push("helm/demo", artifact, archive)


def test_immutable_tag_cannot_be_pushed_twice(ecr: Ecr, artifact_and_archive, emulator: Emulator) -> None:
    artifact, archive = artifact_and_archive
    ecr.create_repository("helm/demo", RepositorySettings(image_tag_mutability="IMMUTABLE"))
    client = RegistryClient(emulator.url, ecr.registry_token)
    client.push("helm/demo", artifact, archive)

    with pytest.raises(TagConflict, match=r"already exists.*never overwrites a tag"):
        client.push("helm/demo", artifact, archive)


def test_second_push_of_same_blobs_sends_only_the_config_again(
    ecr: Ecr, artifact_and_archive, emulator: Emulator, tmp_path: Path
) -> None:
    artifact, archive = artifact_and_archive
    ecr.create_repository("helm/demo", RepositorySettings(image_tag_mutability="MUTABLE"))
    client = RegistryClient(emulator.url, ecr.registry_token)
    first = client.push("helm/demo", artifact, archive)

    emulator.app.requests.clear()
    second = client.push("helm/demo", artifact, archive)

    # the archive is not sent again; the config (a few hundred bytes) is, instead of a HEAD
    assert (first.blobs_uploaded, second.blobs_uploaded) == (2, 1)
    assert second.bytes_uploaded == artifact.config_descriptor.size


def test_inventory_reads_tags_as_metadata_and_pulls_each_manifest_once_100_a_call(
    ecr: Ecr, emulator: Emulator
) -> None:
    # given 250 chart versions in one repository
    ecr.create_repository("helm/many", RepositorySettings())
    tags = [f"1.0.{n}" for n in range(250)]
    for tag in tags:
        manifest = (
            '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
            '"config":{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"sha256:'
            + hashlib.sha256(tag.encode()).hexdigest()
            + '","size":1},"layers":[]}'
        )
        ecr.client.put_image(repositoryName="helm/many", imageManifest=manifest, imageTag=tag)
    emulator.app.requests.clear()

    # when the inventory is asked twice, as two audits of one run would be
    found = ecr.images("helm/many", [*tags, "2.0.0"])
    again = ecr.images("helm/many", tags)

    # then the tags come from one DescribeImages page each time (metadata, not a pull), and each
    # manifest is pulled once, 100 digests a BatchGetImage, then read from the manifest store
    assert sorted(found) == sorted(tags)
    assert again == {t: found[t] for t in tags}
    actions = [r.action for r in emulator.requests if r.kind == "api"]
    assert actions.count("DescribeImages") == 2
    assert actions.count("BatchGetImage") == 3


def test_inventory_of_a_missing_repository_is_none(ecr: Ecr) -> None:
    assert ecr.images("helm/none", ["1.0.0"]) is None
