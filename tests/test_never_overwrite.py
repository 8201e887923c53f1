"""A tag that ECR holds is never overwritten: in a MUTABLE repository too, for cosign's tags too, and
when someone else pushes it while a run downloads. And a blob moves once, however often a manifest
lists it.

ECR refuses a PUT to an existing tag only in an IMMUTABLE repository (or for a tag its exclusions
make immutable). Where a PUT could replace what a tag holds, ecrmirror asks for the tag again right
before the PUT; only those repositories pay the extra request.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from chartfactory import package_chart
from ociregistry import TokenRegistry
from tools import registry_password, says_in_order

from conftest import REGISTRY, ChartServer
from ecrmirror.chart import MANIFEST_MEDIA_TYPE, build_artifact
from ecrmirror.emulator import Emulator

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

COSIGN_DIFFERS = (
    "…; but sha256-….sig holds sha256:… in ECR and sha256:… in oci://…/library. cosign re-pushes that "
    "tag when a signature is added upstream, and ecrmirror never overwrites a tag: compare the two, "
    "then decide by hand (delete ECR's tag to take the upstream's)."
)
# What each case's message says (… stands for anything); docs/hostile-input.md has a row for each.
HOSTILE_CASES: dict[str, str] = {
    "never overwrite: a cosign tag ECR holds with other content, MUTABLE repository": COSIGN_DIFFERS,
    "never overwrite: a cosign tag ECR holds with other content, IMMUTABLE repository": COSIGN_DIFFERS,
    "never overwrite: the tag pushed by someone else during the download": (
        "…/app:1.0.0 holds sha256:… (manifest sha256:…), but http://…/index.yaml lists sha256:… for app "
        "1.0.0. ecrmirror never overwrites a tag: find out whether the upstream republished this "
        "version, then decide by hand."
    ),
}


def says(output: str, case: str) -> None:
    """`output` says what HOSTILE_CASES gives for `case`, where … stands for anything."""
    says_in_order(output, HOSTILE_CASES[case])


# -- the emulator as another writer would reach it: the registry API, with a registry token ----------
def push_blob(emulator: Emulator, repository: str, data: bytes) -> str:
    auth = ("AWS", registry_password(emulator))
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    started = requests.post(f"{emulator.url}/v2/{repository}/blobs/uploads/", auth=auth, timeout=10)
    location = started.headers["Location"]
    url = location if location.startswith("http") else f"{emulator.url}{location}"
    separator = "&" if "?" in url else "?"
    done = requests.put(f"{url}{separator}digest={digest}", data=data, auth=auth, timeout=10)
    assert done.status_code == 201, done.text
    return digest


def push_manifest(emulator: Emulator, repository: str, tag: str, body: bytes, media_type: str) -> str:
    auth = ("AWS", registry_password(emulator))
    done = requests.put(
        f"{emulator.url}/v2/{repository}/manifests/{tag}",
        data=body,
        headers={"Content-Type": media_type},
        auth=auth,
        timeout=10,
    )
    assert done.status_code == 201, done.text
    return "sha256:" + hashlib.sha256(body).hexdigest()


def held(repository: str, tag: str) -> str:
    """The manifest digest ECR's tag holds."""
    ecr = boto3.client("ecr", region_name="eu-west-1")
    image = ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageTag": tag}])["images"][0]
    return str(image["imageId"]["imageDigest"])


def create_repository(name: str, mutability: str) -> None:
    boto3.client("ecr", region_name="eu-west-1").create_repository(
        repositoryName=name, imageTagMutability=mutability
    )


def signature_image(payload: bytes) -> tuple[dict[str, bytes], bytes]:
    """A cosign signature image: its blobs (digest -> bytes) and its manifest."""
    config, layer = b"{}", payload
    blobs = {"sha256:" + hashlib.sha256(body).hexdigest(): body for body in (config, layer)}
    digests = list(blobs)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digests[0], "size": 2},
        "layers": [
            {
                "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                "digest": digests[1],
                "size": len(layer),
            }
        ],
    }
    return blobs, json.dumps(manifest).encode()


def registry_requests(emulator: Emulator, method: str, path: str) -> int:
    return sum(1 for r in emulator.requests if r.kind == "registry" and r.method == method and r.path == path)


@pytest.fixture
def token_registry() -> Iterator[TokenRegistry]:
    registry = TokenRegistry().start()
    yield registry
    registry.stop()


# -- B (1): cosign's tags ---------------------------------------------------------------------------
@pytest.mark.parametrize("mutability", ["MUTABLE", "IMMUTABLE"])
def test_a_cosign_tag_ecr_holds_with_other_content_differs_and_keeps_what_it_holds(
    mutability: str,
    token_registry: TokenRegistry,
    emulator: Emulator,
    write_spec: Any,
    run: Any,
    tmp_path: Path,
) -> None:
    # given an upstream chart with a cosign signature, and an ECR repository whose signature tag
    # for that chart holds another signature (the upstream added one since, say)
    chart = token_registry.add_chart(
        "library/cache", package_chart(tmp_path, "cache", "3.2.1").path, "cache", "3.2.1"
    )
    tag = f"sha256-{chart.partition(':')[2]}.sig"
    blobs, upstream_signature = signature_image(b'{"critical": "the upstream signs again"}')
    token_registry.blobs.update(blobs)
    token_registry.manifests[("library/cache", tag)] = upstream_signature
    upstream_digest = "sha256:" + hashlib.sha256(upstream_signature).hexdigest()
    create_repository("cache", mutability)
    theirs, ecr_signature = signature_image(b'{"critical": "what ECR was given first"}')
    for body in theirs.values():
        push_blob(emulator, "cache", body)
    ecr_digest = push_manifest(emulator, "cache", tag, ecr_signature, OCI_MANIFEST)
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        f"  repository:\n    image_tag_mutability: {mutability}\n"
        f"charts:\n  - name: cache\n    repo: oci://{token_registry.host}/library\n    plain_http: true\n"
        "    versions: ['3.2.1']\n"
    )
    emulator.app.requests.clear()

    # when it is synced, and then audited
    synced = run("--sync", "-v", "mirror.yaml")
    audited = run("--check-only", "-v", "mirror.yaml")

    # then the chart is pushed, the version DIFFERS naming both signatures, and ECR's stays
    for result in (synced, audited):
        result.assert_outcomes(passed=1, failed=1)
        result.stdout.fnmatch_lines(
            [
                "mirror.yaml::cache::3.2.1 DIFFERS*",
                f"*but {tag} holds {ecr_digest} in ECR and {upstream_digest} in "
                f"oci://{token_registry.host}/library. cosign re-pushes that tag when a signature is "
                "added upstream, and ecrmirror never overwrites a tag*",
            ]
        )
        assert "Traceback" not in result.stdout.str()
        says(
            result.stdout.str(),
            f"never overwrite: a cosign tag ECR holds with other content, {mutability} repository",
        )
    synced.stdout.fnmatch_lines(["*pushed * (sha256:*)*"])
    assert held("cache", tag) == ecr_digest
    assert held("cache", "3.2.1") == chart
    assert registry_requests(emulator, "PUT", f"/v2/cache/manifests/{tag}") == 0


# -- B (2): a push by someone else while the run downloads ---------------------------------------------
class _Upstream(ThreadingHTTPServer):
    before_archive: Callable[[], None] | None = None


def serve(directory: Path, before_archive: Callable[[], None]) -> tuple[_Upstream, str]:
    """A Helm repository whose first archive GET runs `before_archive` before it answers."""

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(directory), **kwargs)

        def do_GET(self) -> None:
            hook = server.before_archive
            if self.path.endswith(".tgz") and hook is not None:
                server.before_archive = None
                hook()
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = _Upstream(("127.0.0.1", 0), Handler)
    server.before_archive = before_archive
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/"


@pytest.mark.parametrize("created_by", ["the run", "someone before the run"])
def test_a_tag_pushed_by_someone_else_during_the_download_differs_and_is_not_overwritten(
    created_by: str, emulator: Emulator, write_spec: Any, run: Any, tmp_path: Path
) -> None:
    # given a MUTABLE repository (the run's own, or one that exists), and an upstream whose
    # archive download lets another writer push app 1.0.0, with other content, first
    other = package_chart(tmp_path / "other", "app", "1.0.0", description="pushed by someone else")
    other_digest = "sha256:" + other.digest
    theirs = build_artifact(other.path, other_digest, name="app", version="1.0.0", created=None)
    pushed: list[str] = []

    def someone_pushes() -> None:
        push_blob(emulator, "app", theirs.config)
        push_blob(emulator, "app", other.path.read_bytes())
        pushed.append(push_manifest(emulator, "app", "1.0.0", theirs.manifest, MANIFEST_MEDIA_TYPE))

    upstream = ChartServer(tmp_path / "upstream", "", None)  # type: ignore[arg-type]
    ours = upstream.add("app", "1.0.0")
    upstream.publish()
    server, url = serve(upstream.directory, someone_pushes)
    if created_by != "the run":
        create_repository("app", "MUTABLE")
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        "  repository:\n    image_tag_mutability: MUTABLE\n"
        f"charts:\n  - name: app\n    repo: {url}\n    versions: ['1.0.0']\n"
    )

    try:
        # when it is synced
        result = run("--sync", "-v", "mirror.yaml")
    finally:
        server.shutdown()
        server.server_close()

    # then the version DIFFERS, naming what ECR holds and what the upstream lists, and the tag
    # still holds the other writer's manifest: ecrmirror's PUT never happened
    assert pushed, "the other writer did not push"
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "mirror.yaml::app::1.0.0 DIFFERS*",
            f"*/app:1.0.0 holds {other_digest} (manifest {pushed[0]}), but {url}index.yaml lists "
            f"sha256:{ours.digest} for app 1.0.0. ecrmirror never overwrites a tag*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    says(result.stdout.str(), "never overwrite: the tag pushed by someone else during the download")
    assert held("app", "1.0.0") == pushed[0]
    assert registry_requests(emulator, "PUT", "/v2/app/manifests/1.0.0") == 1  # theirs alone


@pytest.mark.parametrize(("mutability", "heads"), [("MUTABLE", 1), ("IMMUTABLE", 0)])
def test_only_a_repository_that_lets_a_tag_move_pays_the_check_before_the_put(
    mutability: str, heads: int, chart_server: ChartServer, emulator: Emulator, write_spec: Any, run: Any
) -> None:
    chart_server.add("app", "1.0.0")
    chart_server.publish()
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        f"  repository:\n    image_tag_mutability: {mutability}\n"
        f"charts:\n  - name: app\n    repo: {chart_server.url}\n    versions: ['1.0.0']\n"
    )

    run("--sync", "mirror.yaml").assert_outcomes(passed=2)

    assert registry_requests(emulator, "HEAD", "/v2/app/manifests/1.0.0") == heads
    assert registry_requests(emulator, "PUT", "/v2/app/manifests/1.0.0") == 1


def test_an_exclusion_that_makes_the_version_tag_mutable_gets_the_check_too(
    chart_server: ChartServer, emulator: Emulator, write_spec: Any, run: Any
) -> None:
    chart_server.add("app", "1.0.0")
    chart_server.publish()
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        "  repository:\n    image_tag_mutability: IMMUTABLE_WITH_EXCLUSION\n"
        "    image_tag_mutability_exclusion_filters: ['1.*']\n"
        f"charts:\n  - name: app\n    repo: {chart_server.url}\n    versions: ['1.0.0']\n"
    )

    run("--sync", "mirror.yaml").assert_outcomes(passed=2)

    assert registry_requests(emulator, "HEAD", "/v2/app/manifests/1.0.0") == 1


# -- C: a layer listed three times ------------------------------------------------------------------
def test_a_layer_a_manifest_lists_three_times_is_fetched_and_uploaded_once(
    token_registry: TokenRegistry, emulator: Emulator, write_spec: Any, run: Any, tmp_path: Path
) -> None:
    # given an OCI chart whose manifest lists its chart layer three times
    archive = package_chart(tmp_path, "cache", "3.2.1").path
    token_registry.add_chart("library/cache", archive, "cache", "3.2.1")
    layer = "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest()
    document = json.loads(token_registry.manifests[("library/cache", "3.2.1")])
    document["layers"] = document["layers"] * 3
    body = json.dumps(document).encode()
    token_registry.manifests[("library/cache", "3.2.1")] = body
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        f"charts:\n  - name: cache\n    repo: oci://{token_registry.host}/library\n    plain_http: true\n"
        "    versions: ['3.2.1']\n"
    )

    # when it is synced
    run("--sync", "mirror.yaml").assert_outcomes(passed=2)

    # then the layer was downloaded once and uploaded once, and ECR holds the manifest unchanged
    assert len(document["layers"]) == 3
    downloads = [path for host, path, _ in token_registry.seen if host == token_registry.storage_host]
    assert downloads.count(f"/{layer}") == 1
    uploads = [
        r
        for r in emulator.requests
        if r.kind == "registry" and r.method == "PUT" and "/blobs/uploads/" in r.path
    ]
    assert len(uploads) == 2  # the config, and the layer once
    # (in a repository the run created, which holds nothing it did not put there, not asked about)
    assert registry_requests(emulator, "HEAD", f"/v2/cache/blobs/{layer}") == 0
    assert held("cache", "3.2.1") == "sha256:" + hashlib.sha256(body).hexdigest()
