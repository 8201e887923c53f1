"""Images a chart runs, mirrored with it: found by annotation, render and the spec, copied byte for byte.

The upstream is Debian's docker-registry, behind a recording proxy, holding hand-built OCI
indexes (two platforms and a buildx attestation, cosign signatures on the index and on one
child); skopeo is the oracle that ECR's copy is the upstream's, byte for byte.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from chartfactory import ChartFile, archive_bytes, write_archive
from ecrclient import become_user, printed_policy
from faultproxy import FaultProxy
from imagefactory import (
    OCI_INDEX,
    ImageRefs,
    PushedImage,
    move_tag,
    push_docker_list_image,
    push_manifest,
    push_multiarch_image,
    push_single_image,
    tar_gz_layer,
    write_image_chart,
)
from ociregistry import DockerRegistry
from tools import registry_password, require_tool, tool

from conftest import ChartServer
from ecrmirror.emulator import Emulator
from ecrmirror.spec import parse_spec

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
SHARED = tar_gz_layer({"etc/os-release": b"ID=shared\n" * 1000})  # a base layer every image has


@pytest.fixture
def upstream(docker_registry: DockerRegistry) -> Iterator[FaultProxy]:
    """The registry as ecrmirror reaches it: through a proxy that records every request."""
    proxy = FaultProxy(target=f"http://{docker_registry.host}", rate=0.0, seed=0).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def skopeo() -> str:
    return require_tool("skopeo", "apt-get install skopeo, as .ci/run does")


@dataclass
class World:
    """One test's upstream images, its chart and its spec."""

    registry: str  # where images are pushed
    seen_as: str  # the host the chart names (the recording proxy)
    space: str
    refs: ImageRefs
    extra: str
    pushed: dict[str, PushedImage]

    def path(self, reference: str) -> tuple[str, str]:
        path, _, tag = reference.partition("/")[2].rpartition(":")
        return path, tag

    def mirrored(self, reference: str) -> str:
        """The ECR repository the image lands in."""
        return f"mirror/{self.seen_as.replace(':', '-')}/{self.path(reference)[0]}"


@pytest.fixture
def world(
    docker_registry: DockerRegistry, upstream: FaultProxy, chart_server: ChartServer, tmp_path: Path
) -> World:
    seen_as = upstream.url.removeprefix("http://")
    space = tmp_path.name.lower()
    refs = ImageRefs(
        annotated=f"{seen_as}/{space}/app:1.0",
        subchart_annotated=f"{seen_as}/{space}/sub:2.0",
        init_container=f"{seen_as}/{space}/migrate:3.0",
        hook_job=f"{seen_as}/{space}/setup:4.0",
        operator_cr=f"{seen_as}/{space}/postgres:5.0",
    )
    extra = f"{seen_as}/{space}/extra:6.0"
    pushed = {}
    for reference in (*refs.rendered, refs.subchart_annotated, extra):
        path, _, tag = reference.partition("/")[2].rpartition(":")
        pushed[reference] = push_multiarch_image(
            docker_registry.host, path, tag, seed=reference, shared_layer=SHARED
        )
    publish_chart(chart_server, refs)
    return World(docker_registry.host, seen_as, space, refs, extra, pushed)


def publish_chart(chart_server: ChartServer, refs: ImageRefs, version: str = "1.0.0", **kwargs: bool) -> None:
    path = write_image_chart(chart_server.directory, name="app", version=version, images=refs, **kwargs)
    metadata = {"apiVersion": "v2", "name": "app", "version": version}
    chart_server.charts.append(ChartFile(path, "app", version, metadata))
    chart_server.publish()


def spec(chart_server: ChartServer, world: World, *, images: str = "", versions: str = "['1.0.0']") -> str:
    return (
        f"target:\n  registry: {REGISTRY}\n  prefix: mirror\n  create_repositories: true\n"
        f"charts:\n  - name: app\n    repo: {chart_server.url}\n    versions: {versions}\n"
        f"    images:\n      plain_http: ['{world.seen_as}']\n      extra: ['{world.extra}']\n"
        "      render: {kube_version: '1.31'}\n" + images
    )


def raw(skopeo: str, reference: str, emulator: Emulator | None = None) -> bytes:
    options = ["--tls-verify=false"]
    if emulator is not None:
        options += ["--creds", f"AWS:{registry_password(emulator)}"]
    inspected = tool(skopeo, "inspect", "--raw", *options, f"docker://{reference}")
    assert inspected.returncode == 0, inspected.stderr
    return inspected.stdout.encode()


def ecr() -> object:
    return boto3.client("ecr", region_name="eu-west-1")


def lose(repository: str, digest: str) -> None:
    """Take a manifest out of the emulator's ECR, as a registry that lost it would be."""
    from moto.ecr.models import ecr_backends

    images = ecr_backends["123456789012"]["eu-west-1"].repositories[repository].images
    images[:] = [image for image in images if image.get_image_digest() != digest]


def blob_traffic(emulator: Emulator, world: World, images: list[str]) -> tuple[int, int, list[set[str]]]:
    """The blob uploads and mounts into the images' repositories, and the blobs each holds."""
    requests = [
        r
        for r in emulator.app.requests
        if r.kind == "registry" and "/blobs/uploads/" in r.path and not r.path.startswith("/v2/mirror/app/")
    ]
    uploads = sum(r.method == "PUT" and r.status == 201 for r in requests)
    mounts = sum(r.method == "POST" and r.status == 201 for r in requests)  # an upload's POST is a 202
    names = {world.mirrored(reference) for reference in images}
    held = [blobs for (_, _, name), blobs in emulator.app.state.repo_blobs.items() if name in names]
    return uploads, mounts, held


def manifest_gets(proxy: FaultProxy) -> list[str]:
    return [path for method, path in proxy.log if method == "GET" and "/manifests/" in path]


def test_images_found_by_annotation_render_and_extra_arrive_byte_identical_with_their_signatures(
    world: World,
    upstream: FaultProxy,
    chart_server: ChartServer,
    emulator: Emulator,
    helm: list[str],
    skopeo: str,
    write_spec,
    run,
    pytester: pytest.Pytester,
) -> None:
    # given a chart whose images are found by annotation (its own and a subchart's), by render
    # only (an initContainer, a hook Job, an operator's custom resource) and by the spec's extra
    write_spec(spec(chart_server, world))

    # when the spec is synced
    synced = run(
        "--sync", "-v", f"--ecrmirror-helm={helm[0]}", "--ecrmirror-images=out/images.json", "mirror.yaml"
    )

    # then the chart and every image are in ECR: 7 repositories, the version, 6 images
    synced.assert_outcomes(passed=7 + 1 + 6)
    synced.stdout.fnmatch_lines(["*6 images: 6 pushed, 0 present, 0 failed*"])
    # and where the annotations and the render disagree, the image says so
    synced.stdout.fnmatch_lines_random(
        [
            f"note: *{world.refs.init_container}: found by the render of app 1.0.0, but not in*",
            f"note: *{world.refs.subchart_annotated}: in the image annotations of app 1.0.0, but not*",
        ]
    )
    ecr_host = emulator.url.removeprefix("http://")
    for reference, image in world.pushed.items():
        path, tag = world.path(reference)
        mirrored = f"{ecr_host}/{world.mirrored(reference)}"
        # byte for byte: the index, each child, each cosign signature
        assert raw(skopeo, f"{mirrored}:{tag}", emulator) == image.index_body
        for digest in image.children.values():
            assert raw(skopeo, f"{mirrored}@{digest}", emulator) == raw(
                skopeo, f"{world.registry}/{path}@{digest}"
            )
        assert image.cosign_tags
        for cosign_tag in image.cosign_tags:
            assert raw(skopeo, f"{mirrored}:{cosign_tag}", emulator) == raw(
                skopeo, f"{world.registry}/{path}:{cosign_tag}"
            )
    # and the lock names each image, its digests, where it is in ECR and who runs it
    lock = json.loads((pytester.path / "out" / "images.json").read_text())
    assert [image["upstream"] for image in lock["images"]] == sorted(world.pushed)
    for image in lock["images"]:
        pushed = world.pushed[image["upstream"]]
        assert (image["digest"], image["platforms"]) == (
            pushed.index_digest,
            {p: d for p, d in pushed.children.items()},
        )
        assert image["ecr"] == f"{REGISTRY}/{world.mirrored(image['upstream'])}"
        assert image["used_by"]
    # and the values override moves the image the chart's values hold to ECR, for helm to render
    override = pytester.path / "out" / lock["values"]["app 1.0.0"]
    rendered = tool(*helm, "template", "app", str(chart_server.charts[0].path), "-f", str(override))
    assert rendered.returncode == 0, rendered.stderr
    assert f'image: "{REGISTRY}/{world.mirrored(world.refs.annotated)}:1.0"' in rendered.stdout
    assert f'{world.refs.annotated}"' not in rendered.stdout

    # and the chart is as upstream made it: its archive digest is the index's
    chart = ecr().batch_get_image(repositoryName="mirror/app", imageIds=[{"imageTag": "1.0.0"}])  # type: ignore[attr-defined]
    layers = json.loads(chart["images"][0]["imageManifest"])["layers"]
    assert layers[0]["digest"] == f"sha256:{chart_server.charts[0].digest}"

    # and a re-run is all PRESENT, with no upstream manifest GET and no write to ECR
    upstream.log.clear()
    emulator.app.requests.clear()
    audited = run("--check-only", "-v", f"--ecrmirror-helm={helm[0]}", "mirror.yaml")
    audited.assert_outcomes(passed=14)
    audited.stdout.fnmatch_lines(["*6 images: 0 pushed, 6 present, 0 failed*"])
    run("--sync", f"--ecrmirror-helm={helm[0]}", "mirror.yaml").assert_outcomes(passed=14)
    assert manifest_gets(upstream) == []
    assert emulator.writes() == []


def test_a_render_that_fails_fails_the_versions_image_item_with_helms_message(
    world: World, chart_server: ChartServer, emulator: Emulator, helm: list[str], write_spec, run
) -> None:
    # given a version whose chart needs a value the spec does not give
    publish_chart(chart_server, world.refs, version="2.0.0", render_fails=True)
    write_spec(spec(chart_server, world, versions="['2.0.0']"))

    # when it is audited
    audited = run("--check-only", f"--ecrmirror-helm={helm[0]}", "mirror.yaml")

    # then its image item fails with helm's own words, and the images found otherwise still run
    audited.stdout.fnmatch_lines(
        ["*RENDER FAILED images of app 2.0.0*", "*`helm template` failed*database.password is required*"]
    )
    assert audited.parseoutcomes()["failed"] >= 1


def test_a_preseeded_tag_differs_a_deleted_child_is_incomplete_and_a_moved_tag_drifted(
    world: World,
    chart_server: ChartServer,
    emulator: Emulator,
    helm: list[str],
    write_spec,
    run,
    docker_registry: DockerRegistry,
) -> None:
    write_spec(spec(chart_server, world))
    run("--sync", f"--ecrmirror-helm={helm[0]}", "mirror.yaml").assert_outcomes(passed=14)
    client = ecr()

    # given ECR's copy of one image lost a child manifest (neither ECR's API nor its registry
    # deletes one an index lists: docs/emulator-fidelity.md, row 25; so it goes from the state)
    app = world.refs.annotated
    child = world.pushed[app].children["linux/arm64"]
    lose(world.mirrored(app), child)
    # and another lost the signature upstream attaches to its index
    migrate = world.refs.init_container
    signature = next(
        tag for tag in world.pushed[migrate].cosign_tags if world.pushed[migrate].index_digest[7:] in tag
    )
    client.batch_delete_image(repositoryName=world.mirrored(migrate), imageIds=[{"imageTag": signature}])  # type: ignore[attr-defined]
    # and the upstream moved another image's tag since the copy
    setup = world.refs.hook_job
    path, tag = world.path(setup)
    moved = move_tag(docker_registry.host, path, tag, seed="moved")
    # and someone pushed another image under a third image's tag in ECR before the first copy
    extra_repo = world.mirrored(world.extra)
    client.batch_delete_image(repositoryName=extra_repo, imageIds=[{"imageTag": "6.0"}])  # type: ignore[attr-defined]
    other_path = f"{world.space}/other"
    push_single_image(docker_registry.host, other_path, "6.0", seed="other")
    copied = tool(
        require_tool("skopeo", "apt-get install skopeo"),
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--dest-creds",
        f"AWS:{registry_password(emulator)}",
        f"docker://{docker_registry.host}/{other_path}:6.0",
        f"docker://{emulator.url.removeprefix('http://')}/{extra_repo}:6.0",
    )
    assert copied.returncode == 0, copied.stderr

    # when the spec is audited
    audited = run("--check-only", f"--ecrmirror-helm={helm[0]}", "mirror.yaml")

    # then each says what it is, and nothing is changed by the audit
    audited.stdout.fnmatch_lines_random(
        [
            f"INCOMPLETE {app}: *",
            f"*is in ECR, but without child manifest {child}*",
            f"INCOMPLETE {migrate}: *",
            f"*is in ECR, but without {signature} *",
            f"DRIFTED {setup}: *",
            f"*now names {moved}*which the upstream still has*",
            f"DIFFERS {world.extra}: *",
            "*ecrmirror never overwrites a tag*",
        ]
    )
    # and a sync completes the incomplete one, and leaves the other two as they are
    emulator.app.requests.clear()
    synced = run("--sync", f"--ecrmirror-helm={helm[0]}", "mirror.yaml")
    synced.stdout.fnmatch_lines_random(["*DRIFTED*", "*DIFFERS*"])
    assert synced.parseoutcomes()["failed"] == 2
    held = client.batch_get_image(repositoryName=world.mirrored(app), imageIds=[{"imageDigest": child}])  # type: ignore[attr-defined]
    assert held["images"]
    resigned = client.batch_get_image(
        repositoryName=world.mirrored(migrate), imageIds=[{"imageTag": signature}]
    )  # type: ignore[attr-defined]
    assert resigned["images"][0]["imageId"]["imageDigest"] == world.pushed[migrate].cosign_tags[signature]
    setup_now = client.batch_get_image(repositoryName=world.mirrored(setup), imageIds=[{"imageTag": tag}])  # type: ignore[attr-defined]
    assert setup_now["images"][0]["imageId"]["imageDigest"] == world.pushed[setup].index_digest


def extra_only(chart_server: ChartServer, world: World, images: str = "", target: str = "") -> str:
    return (
        f"target:\n  registry: {REGISTRY}\n  prefix: mirror\n  create_repositories: true\n{target}"
        f"charts:\n  - name: app\n    repo: {chart_server.url}\n    versions: ['1.0.0']\n"
        f"    images:\n      annotations: false\n      plain_http: ['{world.seen_as}']\n"
        f"      extra: ['{world.extra}']\n{images}"
    )


def test_platforms_make_a_new_index_of_the_chosen_children_and_say_that_its_digest_changed(
    world: World, upstream: FaultProxy, chart_server: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    # given a spec that keeps linux/amd64 only
    write_spec(extra_only(chart_server, world, "      platforms: [linux/amd64]\n"))

    # when it is synced
    synced = run("--sync", "-v", "mirror.yaml")

    # then ECR's index lists the amd64 image and the attestation that refers to it, and the item
    # says that the digest is not the upstream's
    synced.assert_outcomes(passed=4)
    synced.stdout.fnmatch_lines(["*image*PUSHED*"])
    held = ecr().batch_get_image(  # type: ignore[attr-defined]
        repositoryName=world.mirrored(world.extra),
        imageIds=[{"imageTag": "6.0"}],
        acceptedMediaTypes=["application/vnd.oci.image.index.v1+json"],
    )["images"][0]
    children = json.loads(held["imageManifest"])["manifests"]
    pushed = world.pushed[world.extra]
    assert {child["digest"] for child in children} == {
        pushed.children["linux/amd64"],
        pushed.children["unknown/unknown"],
    }
    assert held["imageId"]["imageDigest"] != pushed.index_digest

    # and a re-run finds it PRESENT without pulling the upstream's index again
    upstream.log.clear()
    run("--check-only", "mirror.yaml").assert_outcomes(passed=4)
    assert manifest_gets(upstream) == []


def test_pull_through_cache_naming_puts_an_image_where_the_cache_would(
    world: World, chart_server: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    write_spec(
        extra_only(
            chart_server,
            world,
            target="  images:\n    naming: pull-through-cache\n"
            f"    pull_through_cache: {{'{world.seen_as}': cache}}\n",
        )
    )
    run("--sync", "mirror.yaml").assert_outcomes(passed=4)
    held = ecr().describe_images(repositoryName=f"cache/{world.space}/extra")  # type: ignore[attr-defined]
    assert any("6.0" in (image.get("imageTags") or []) for image in held["imageDetails"])


@pytest.mark.parametrize(
    ("images", "said"),
    [
        ("      extra: ['Docker.io/Library/Nginx']\n", "*mirror.yaml:8:*is not a repository path*"),
        ("      extra: ['nginx@sha256:abc']\n", "*mirror.yaml:8:*is not a sha256 digest*"),
        ("      extar: [nginx]\n", "*mirror.yaml:8: unknown key 'extar' in images*"),
        ("      platforms: [amd64]\n", "*mirror.yaml:8: 'amd64' is not a platform*"),
        ("      annotations: false\n", "*mirror.yaml:8: images finds no image*"),
        ("      render: {kube_version: 1.3x}\n", "*kube_version '1.3x' is not a Kubernetes version*"),
    ],
)
def test_a_bad_images_section_is_a_spec_error_naming_its_line(
    chart_server: ChartServer, emulator: Emulator, write_spec, run, images: str, said: str
) -> None:
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  prefix: mirror\n"
        f"charts:\n  - name: app\n    repo: {chart_server.url}\n    images:\n{images}"
        "    versions: ['1.0.0']\n"
    )
    result = run("--check-only", "mirror.yaml")
    result.stdout.fnmatch_lines([said])
    assert "Traceback" not in result.stdout.str()


def test_an_image_name_ecr_would_refuse_under_pull_through_naming_is_a_spec_error(
    chart_server: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  images:\n    naming: pull-through-cache\n"
        "    pull_through_cache: {docker.io: docker-hub}\n"
        f"charts:\n  - name: app\n    repo: {chart_server.url}\n    versions: ['1.0.0']\n"
        "    images:\n      extra: [quay.io/org/tool:1.0]\n"
    )
    run("--check-only", "mirror.yaml").stdout.fnmatch_lines(
        ["*mirror.yaml:11:*no pull-through cache rule for quay.io*", "*fix: add `quay.io: <rule prefix>`*"]
    )


# -- hostile charts and registries: each a row of docs/hostile-input.md ---------------------------------
HOSTILE_CASES: dict[str, str] = {
    "images: a render that prints without end": (
        "app 1.0.0: `helm template` printed more than 1048576 bytes; its images are unknown"
    ),
    "images: a render that never ends": (
        "app 1.0.0: `helm template` ran longer than 2 s; its images are unknown"
    ),
    "images: subcharts packaged without end": "…subcharts nest more than 5 deep",
    "images: an image annotation that is not a list": (
        "app 1.0.0: its annotation artifacthub.io/images is not a YAML list of {name, image}; no image was "
        "read from it"
    ),
    "images: an image reference that is not one": (
        "app 1.0.0: annotation artifacthub.io/images lists an image ecrmirror cannot read, so it was not "
        "mirrored: …is not a repository path…"
    ),
    "images: an image index that lists an index": (
        "…lists another index (…) as a child; ecrmirror copies an index of image manifests"
    ),
}


def hostile(name: str) -> str:
    return "*" + HOSTILE_CASES[name].replace("…", "*") + "*"


def hostile_chart(chart_server: ChartServer, members: dict[str, str | bytes], annotations: str = "") -> None:
    chart_yaml = "apiVersion: v2\nname: app\nversion: 1.0.0\n" + annotations
    files = [("app/Chart.yaml", chart_yaml), *((f"app/{name}", data) for name, data in members.items())]
    written = write_archive(chart_server.directory, "app-1.0.0.tgz", files)
    metadata = {"apiVersion": "v2", "name": "app", "version": "1.0.0"}
    chart_server.charts.append(ChartFile(written.path, "app", "1.0.0", metadata))
    chart_server.publish()


def only_the_chart_repository() -> bool:
    """Nothing but the chart's own repository was made: no image of a hostile chart was copied."""
    names = [r["repositoryName"] for r in ecr().describe_repositories()["repositories"]]  # type: ignore[attr-defined]
    return names == ["mirror/app"]


def rendered_spec(chart_server: ChartServer, annotations: bool = False) -> str:
    return (
        f"target:\n  registry: {REGISTRY}\n  prefix: mirror\n  create_repositories: true\n"
        f"charts:\n  - name: app\n    repo: {chart_server.url}\n    versions: ['1.0.0']\n"
        f"    images:\n      annotations: {str(annotations).lower()}\n      render: {{}}\n"
    )


def test_a_render_that_prints_without_end_is_cut_off(
    chart_server: ChartServer,
    emulator: Emulator,
    helm: list[str],
    write_spec,
    run,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("ecrmirror.images.discovery.MAX_RENDER_OUTPUT", 1024 * 1024)
    line = "# " + "x" * 98
    hostile_chart(
        chart_server, {"templates/big.yaml": "{{- range until 30000 }}\n" + line + "\n{{- end }}\n"}
    )
    write_spec(rendered_spec(chart_server))

    result = run("--sync", f"--ecrmirror-helm={helm[0]}", "mirror.yaml")

    result.stdout.fnmatch_lines([hostile("images: a render that prints without end")])
    assert "Traceback" not in result.stdout.str()
    assert only_the_chart_repository()


def test_a_render_that_never_ends_is_stopped(
    chart_server: ChartServer,
    emulator: Emulator,
    helm: list[str],
    write_spec,
    run,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("ecrmirror.images.discovery.RENDER_TIMEOUT", 2.0)
    hostile_chart(chart_server, {"templates/slow.yaml": "{{- range until 2000000000 }}{{- end }}\n"})
    write_spec(rendered_spec(chart_server))

    result = run("--check-only", f"--ecrmirror-helm={helm[0]}", "mirror.yaml")

    result.stdout.fnmatch_lines([hostile("images: a render that never ends")])


def test_subcharts_packaged_without_end_are_refused(
    chart_server: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    nested = archive_bytes([("leaf/Chart.yaml", "apiVersion: v2\nname: leaf\nversion: 0.1.0\n")])
    for depth in range(7):
        nested = archive_bytes(
            [
                (f"s{depth}/Chart.yaml", f"apiVersion: v2\nname: s{depth}\nversion: 0.1.0\n"),
                (f"s{depth}/charts/x.tgz", nested),
            ]
        )
    hostile_chart(chart_server, {"charts/s.tgz": nested})
    write_spec(rendered_spec(chart_server, annotations=True).replace("      render: {}\n", ""))

    result = run("--check-only", "mirror.yaml")

    result.stdout.fnmatch_lines([hostile("images: subcharts packaged without end")])
    assert "Traceback" not in result.stdout.str()


@pytest.mark.parametrize(
    ("name", "annotation"),
    [
        ("images: an image annotation that is not a list", "not: a list"),
        ("images: an image reference that is not one", "- name: x\n  image: Docker.io/Library/Nginx"),
    ],
)
def test_an_annotation_that_cannot_be_read_is_said_and_copies_nothing(
    chart_server: ChartServer, emulator: Emulator, write_spec, run, name: str, annotation: str
) -> None:
    text = "annotations:\n  artifacthub.io/images: |\n" + "".join(
        f"    {line}\n" for line in annotation.splitlines()
    )
    hostile_chart(chart_server, {}, text)
    write_spec(rendered_spec(chart_server, annotations=True).replace("      render: {}\n", ""))

    result = run("--sync", "mirror.yaml")

    result.stdout.fnmatch_lines([hostile(name)])
    assert "Traceback" not in result.stdout.str()
    assert only_the_chart_repository()


def test_an_image_index_that_lists_an_index_is_not_copied(
    world: World,
    docker_registry: DockerRegistry,
    chart_server: ChartServer,
    emulator: Emulator,
    write_spec,
    run,
) -> None:
    inner = world.pushed[world.extra]
    outer = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": inner.index_digest,
                "size": len(inner.index_body),
            }
        ],
    }
    push_manifest(
        docker_registry.host,
        world.path(world.extra)[0],
        "nested",
        json.dumps(outer).encode(),
        "application/vnd.oci.image.index.v1+json",
    )
    write_spec(
        extra_only(chart_server, world).replace(
            f"'{world.extra}'", f"'{world.extra.rpartition(':')[0]}:nested'"
        )
    )

    result = run("--sync", "mirror.yaml")

    result.stdout.fnmatch_lines([hostile("images: an image index that lists an index")])
    held = ecr().describe_images(repositoryName=world.mirrored(world.extra))["imageDetails"]  # type: ignore[attr-defined]
    assert not any("nested" in (image.get("imageTags") or []) for image in held)


def test_a_docker_list_a_pinned_digest_and_an_oci_referrer_arrive_as_upstream_has_them(
    world: World,
    docker_registry: DockerRegistry,
    upstream: FaultProxy,
    chart_server: ChartServer,
    emulator: Emulator,
    skopeo: str,
    write_spec,
    run,
) -> None:
    # given a Docker manifest list, an index with an OCI 1.1 referrer of its arm64 image, and an
    # image named by digest only
    space = world.space
    listed = push_docker_list_image(docker_registry.host, f"{space}/listed", "1.0", seed="listed")
    referred = push_multiarch_image(docker_registry.host, f"{space}/referred", "1.0", seed="r", referrer=True)
    pinned = world.pushed[world.extra]
    images = [
        f"{world.seen_as}/{space}/listed:1.0",
        f"{world.seen_as}/{space}/referred:1.0",
        f"{world.seen_as}/{space}/extra@{pinned.index_digest}",
    ]
    write_spec(
        extra_only(chart_server, world).replace(f"extra: ['{world.extra}']", f"extra: {json.dumps(images)}")
    )

    # when they are synced
    synced = run("--sync", "-v", "mirror.yaml")

    # then each is in ECR as upstream has it: the list's bytes, the referrer by its digest, the
    # pinned index untagged under its digest
    synced.assert_outcomes(passed=1 + 3 + 1 + 3)
    host = emulator.url.removeprefix("http://")
    mirrored = f"{host}/mirror/{world.seen_as.replace(':', '-')}/{space}"
    assert raw(skopeo, f"{mirrored}/listed:1.0", emulator) == listed.index_body
    assert referred.referrer is not None
    held = ecr().batch_get_image(  # type: ignore[attr-defined]
        repositoryName=f"mirror/{world.seen_as.replace(':', '-')}/{space}/referred",
        imageIds=[{"imageDigest": referred.referrer}],
    )
    assert held["images"], "the OCI 1.1 referrer was not copied"
    assert raw(skopeo, f"{mirrored}/extra@{pinned.index_digest}", emulator) == pinned.index_body

    # and a re-run finds all three without pulling a manifest
    upstream.log.clear()
    run("--check-only", "mirror.yaml").assert_outcomes(passed=8)
    assert manifest_gets(upstream) == []


def test_a_pinned_digest_cannot_be_narrowed_to_platforms(
    world: World, chart_server: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    pinned = f"{world.extra.rpartition(':')[0]}@{world.pushed[world.extra].index_digest}"
    write_spec(
        extra_only(chart_server, world, "      platforms: [linux/arm64]\n").replace(world.extra, pinned)
    )

    synced = run("--sync", "mirror.yaml")

    synced.stdout.fnmatch_lines(["*is pinned by digest, and the spec keeps only linux/arm64 of it*"])
    assert synced.parseoutcomes()["failed"] == 1


def test_a_layer_two_images_share_is_uploaded_once_and_mounted_into_the_other(
    world: World, chart_server: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    # given a registry that mounts blobs across repositories, and two images with one base layer
    ecr().put_account_setting(name="BLOB_MOUNTING", value="ENABLED")  # type: ignore[attr-defined]
    images = [world.refs.annotated, world.refs.init_container]
    write_spec(
        extra_only(chart_server, world).replace(f"extra: ['{world.extra}']", f"extra: {json.dumps(images)}")
    )

    # when both are synced one at a time
    synced = run("--sync", "-v", "--ecrmirror-jobs=1", "mirror.yaml")

    # then the shared layer went up once: the second image mounted it
    synced.assert_outcomes(passed=3 + 1 + 2)
    uploads, mounts, held = blob_traffic(emulator, world, images)
    assert len(held) == 2
    assert mounts == 1
    assert uploads == len(held[0] | held[1])  # every blob once, the shared one mounted
    assert len(held[0] & held[1]) == 1


def test_image_items_are_named_by_their_reference_in_junit_and_collect_only(
    world: World, chart_server: ChartServer, emulator: Emulator, write_spec, run, pytester: pytest.Pytester
) -> None:
    write_spec(extra_only(chart_server, world))

    collected = run("--collect-only", "-q", "mirror.yaml")
    collected.stdout.fnmatch_lines([f"mirror.yaml::image::{world.extra}"])

    run("--check-only", "--junitxml=report.xml", "mirror.yaml")
    cases = {case.get("name"): case for case in ET.parse(pytester.path / "report.xml").iter("testcase")}
    assert world.extra in cases
    assert cases[world.extra].get("classname") == "mirror.yaml"
    properties = {p.get("name"): p.get("value") for p in cases[world.extra].iter("property")}
    assert properties["used_by"] == "app 1.0.0 (extra at mirror.yaml:12)"
    failure = cases[world.extra].find("failure")
    assert failure is not None
    assert "MISSING" in (failure.get("message") or "")


@pytest.mark.parametrize("naming", ["by-host", "pull-through-cache"])
def test_a_user_with_exactly_the_printed_policy_syncs_and_audits_images(
    world: World,
    chart_server: ChartServer,
    emulator: Emulator,
    write_spec,
    run,
    monkeypatch: pytest.MonkeyPatch,
    naming: str,
) -> None:
    # given a spec without a prefix, so image repositories are named by host (or by cache rule)
    target = (
        f"  images:\n    naming: pull-through-cache\n    pull_through_cache: {{'{world.seen_as}': cache}}\n"
        if naming == "pull-through-cache"
        else ""
    )
    write_spec(extra_only(chart_server, world, target=target).replace("  prefix: mirror\n", ""))
    ecr().put_account_setting(name="BLOB_MOUNTING", value="ENABLED")  # type: ignore[attr-defined]
    sync_policy, audit_policy = printed_policy(run, "sync"), printed_policy(run, "audit")
    assert "ecr:GetAccountSetting" in json.dumps(sync_policy)

    # when a user holding exactly that policy syncs, and one holding the audit policy audits
    emulator.app.iam.enforce = True
    try:
        become_user(emulator, sync_policy, monkeypatch)
        synced = run("--sync", "mirror.yaml")
        become_user(emulator, audit_policy, monkeypatch, name="mirror-audit")
        audited = run("--check-only", "mirror.yaml")
    finally:
        emulator.app.iam.enforce = False

    # then both pass: the chart's repository and the image's are inside the policy
    synced.assert_outcomes(passed=4)
    audited.assert_outcomes(passed=4)


def test_with_jobs_the_shared_layer_still_goes_up_once(
    world: World, chart_server: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    # given six images with one base layer, in a registry that mounts blobs
    ecr().put_account_setting(name="BLOB_MOUNTING", value="ENABLED")  # type: ignore[attr-defined]
    images = sorted(world.pushed)
    write_spec(
        extra_only(chart_server, world).replace(f"extra: ['{world.extra}']", f"extra: {json.dumps(images)}")
    )

    # when they are copied eight at a time
    run("--sync", "--ecrmirror-jobs=8", "mirror.yaml").assert_outcomes(passed=7 + 1 + 6)

    # then each blob went up once in all: the base layer once, mounted into the five others
    uploads, mounts, held = blob_traffic(emulator, world, images)
    assert len(held) == 6
    assert uploads == len(set().union(*held))
    assert mounts == 5


def test_with_jobs_ecr_is_asked_about_each_image_repository_once_and_a_new_one_not_at_all(
    world: World, upstream: FaultProxy, chart_server: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    # given six signed multi-arch images, each in a repository the run creates
    images = sorted(world.pushed)
    write_spec(
        extra_only(chart_server, world).replace(f"extra: ['{world.extra}']", f"extra: {json.dumps(images)}")
    )

    # when they are copied eight at a time
    run("--sync", "--ecrmirror-jobs=8", "mirror.yaml").assert_outcomes(passed=7 + 1 + 6)

    # then ECR was not asked what a repository the run just created holds: no listing, no blob
    # HEAD; the upstream was asked once whether it has the referrers API, and no tag was HEADed
    # (a copy pulls the tag's manifest at once)
    image_paths = tuple(f"/v2/{world.mirrored(reference)}/" for reference in images)
    registry = [r for r in emulator.app.requests if r.kind == "registry" and r.path.startswith(image_paths)]
    assert [r.path for r in registry if r.method == "HEAD"] == []
    assert sum(r.action == "DescribeImages" for r in emulator.app.requests) == 0
    assert sum("/referrers/" in path for _, path in upstream.log) == 1
    assert [path for method, path in upstream.log if method == "HEAD"] == []
    # and each image's manifest was pulled by its tag once, read ahead or not
    by_tag = [path for method, path in upstream.log if method == "GET" and "/manifests/sha256" not in path]
    pulled = sorted(path for path in by_tag if "/manifests/" in path)
    assert len(pulled) == len(set(pulled)) == len(images)
    held = {world.mirrored(reference) for reference in images}
    assert all(raw_tags(name) for name in held)

    # when the run is repeated with nothing new
    emulator.app.requests.clear()
    upstream.log.clear()
    run("--sync", "--ecrmirror-jobs=8", "mirror.yaml").assert_outcomes(passed=7 + 1 + 6)

    # then each image repository was listed once (its children and cosign tags are read from that
    # listing), and nothing was written
    api = [r.action for r in emulator.app.requests if r.kind == "api"]
    assert api.count("DescribeImages") == len(images) + 1  # and the chart's repository
    assert [r for r in emulator.app.requests if r.is_write] == []


def raw_tags(repository: str) -> list[str]:
    listed = ecr().list_images(repositoryName=repository, filter={"tagStatus": "TAGGED"})  # type: ignore[attr-defined]
    return [image["imageTag"] for image in listed["imageIds"]]


def test_the_readmes_images_example_is_a_valid_spec(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("### Images") :]
    start = section.index("```yaml\n") + len("```yaml\n")
    (tmp_path / "values").mkdir()
    (tmp_path / "values" / "prod.yaml").write_text("{}\n")

    spec = parse_spec(section[start : section.index("\n```", start)], tmp_path / "mirror.yaml", environ={})

    images = spec.charts[0].images
    assert images is not None
    assert images.render is not None
    assert images.render.kube_version == "1.31"
    assert [extra.reference for extra in images.extra] == ["ghcr.io/zalando/spilo-17:4.0-p2"]


def test_with_a_cache_directory_a_rerun_downloads_no_chart_to_find_its_images(
    world: World, chart_server: ChartServer, emulator: Emulator, helm: list[str], write_spec, run
) -> None:
    # given a spec whose images are found by annotation and by render, synced once with a cache
    write_spec(spec(chart_server, world))
    options = (f"--ecrmirror-helm={helm[0]}", "--ecrmirror-cache-dir=cache", "mirror.yaml")
    run("--sync", *options).assert_outcomes(passed=14)

    # when it is audited again
    chart_server.requests.clear()
    audited = run("--check-only", "-v", *options)

    # then the same images are found, from what the first run kept, without downloading the chart
    audited.assert_outcomes(passed=14)
    audited.stdout.fnmatch_lines(["*6 images: 0 pushed, 6 present, 0 failed*"])
    assert chart_server.archive_downloads() == []


def test_under_xdist_the_workers_find_the_same_images_and_copy_each_once(
    world: World,
    upstream: FaultProxy,
    chart_server: ChartServer,
    emulator: Emulator,
    helm: list[str],
    write_spec,
    run_subprocess,
) -> None:
    # given the chart found by annotation, render and extra
    write_spec(spec(chart_server, world))

    # when two xdist workers sync it
    synced = run_subprocess(
        "-p", "xdist.plugin", "-n", "2", "--sync", f"--ecrmirror-helm={helm[0]}", "mirror.yaml"
    )

    # then every item ran once, each image was pulled once, and the chart downloaded once to find them
    synced.assert_outcomes(passed=14)
    index_gets = [
        path for path in manifest_gets(upstream) if path.endswith(("1.0", "2.0", "3.0", "4.0", "5.0", "6.0"))
    ]
    assert len(index_gets) == len(set(index_gets))
    assert len(chart_server.archive_downloads()) == 2  # one to find the images, one to push it


def test_image_repositories_are_replicated_like_chart_repositories(
    world: World, chart_server: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    # given a spec that replicates to another region
    text = extra_only(chart_server, world).replace(
        "  create_repositories: true\n",
        "  create_repositories: true\n  replication:\n    regions: [eu-central-1]\n",
    )
    write_spec(text)

    # when it is synced
    synced = run("--sync", "-v", "mirror.yaml")

    # then the image's repository has its replica, and the rule covers it
    synced.assert_outcomes(passed=2 + 2 + 1 + 1 + 1)
    synced.stdout.fnmatch_lines([f"*replica::eu-central-1::{world.mirrored(world.extra)} CREATED*"])
    rules = ecr().describe_registry()["replicationConfiguration"]["rules"]  # type: ignore[attr-defined]
    prefixes = {f["filter"] for rule in rules for f in rule.get("repositoryFilters", [])}
    assert any(world.mirrored(world.extra).startswith(prefix) for prefix in prefixes)


def test_an_image_under_a_managed_signing_rule_reports_ecr_s_signature_per_profile(
    world: World, chart_server: ChartServer, emulator: Emulator, write_spec, run, pytester: pytest.Pytester
) -> None:
    # given a spec whose registry signs its repositories on push (ECR's managed signing)
    profile = "arn:aws:signer:eu-west-1:123456789012:/signing-profiles/mirror"
    rule = f"  managed_signing:\n    - profile: {profile}\n      repositories: ['mirror/*']\n"
    write_spec(extra_only(chart_server, world, target=rule))
    run("--sync", "mirror.yaml").assert_outcomes(passed=5)  # 2 repositories, the rule, chart, image

    # when ECR has had the time to sign, and the audit runs
    emulator.app.state.advance(60)
    audit = run("--check-only", "-v", "--junitxml=report.xml", "mirror.yaml")

    # then the image says ECR signed it with the profile; the chart, not a container image, says none
    audit.assert_outcomes(passed=5)
    cases = {c.get("name"): c for c in ET.parse(pytester.path / "report.xml").iter("testcase")}
    signed = {
        name: {p.get("name"): p.get("value") for p in case.iter("property")}.get("managed_signing")
        for name, case in cases.items()
    }
    assert signed[world.extra] == "COMPLETE (mirror)"
    assert signed["app 1.0.0"] == "none (ECR signs container images only)"


def test_an_archived_image_fails_the_audit_and_sync_restores_it_without_a_push(
    world: World, chart_server: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    # given a mirrored image that someone archived
    write_spec(extra_only(chart_server, world))
    run("--sync", "mirror.yaml").assert_outcomes(passed=4)
    ecr().update_image_storage_class(  # type: ignore[attr-defined]
        repositoryName=world.mirrored(world.extra), imageId={"imageTag": "6.0"}, targetStorageClass="ARCHIVE"
    )
    emulator.app.requests.clear()

    # when the audit runs, then --sync
    audit = run("--check-only", "-v", "mirror.yaml")
    synced = run("--sync", "-v", "mirror.yaml")

    # then the audit says ARCHIVED (not MISSING, not PRESENT), and --sync restores it in place
    audit.assert_outcomes(passed=3, failed=1)
    audit.stdout.fnmatch_lines(
        ["*ARCHIVED*", "*is in ECR's archive storage class*`pytest --sync` restores it*"]
    )
    synced.assert_outcomes(passed=4)
    synced.stdout.fnmatch_lines(["*image*RESTORING*"])
    assert [r.action for r in emulator.writes()] == ["UpdateImageStorageClass"]
