"""Images a chart runs, copied into ECR: ecrmirror's 8 jobs against `xargs -P 8 skopeo copy --all`.

The upstream is Debian's docker-registry holding multi-arch images as buildx and cosign push them
(an OCI index of amd64, arm64 and an attestation; cosign signatures of the index and of amd64),
every image with the same ~1 MiB base layer and small layers of its own. It is reached through a
pass-through proxy that logs every request and adds 20 ms to each (concurrency.LATENCY); ECR is
a fresh emulator per tool and repetition, with BLOB_MOUNTING enabled (a blob one image repository
holds can be mounted into another), behind 20 ms too. Each tool copies every image once into
empty repositories and once more with nothing new; the tools take turns, repetition by repetition.

Counted from the proxies' logs, the emulator's own records, and ecrmirror's summary line for the
bytes it uploaded; the unique bytes are every distinct blob's size over all the images, read back
from the upstream: what a copy that uploads each blob once per registry uploads.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from chartfactory import package_chart, write_index  # type: ignore[import-not-found, unused-ignore]
from common import (
    REGISTRY,
    Figure,
    child_environ,
    create_repositories,
    ecr_kinds,
    registry_password,
    request_kind,
    serve,
    skopeo_xargs,
)
from ecrclient import admin  # type: ignore[import-not-found, unused-ignore]
from faultproxy import FaultProxy  # type: ignore[import-not-found, unused-ignore]
from imagefactory import (  # type: ignore[import-not-found, unused-ignore]
    manifest_digest,
    push_multiarch_image,
    tar_gz_layer,
)
from ociregistry import DockerRegistry  # type: ignore[import-not-found, unused-ignore]
from peers import TOOLS, Run, comparison_rows, slow

from ecrmirror.emulator import Emulator

JOBS = 8
TAG = "1.0"
CHART = "app"  # the chart whose spec entry lists the images
BASE_LAYER_BYTES = 1 << 20
MANIFESTS = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
_SUMMARY = re.compile(r"(\d+) images: (\d+) pushed, (\d+) present, (\d+) failed; (\d+) bytes uploaded")


@dataclass
class Copied:
    """One tool's run over all the images."""

    seconds: float
    registry: int  # requests to ECR's registry (the OCI API)
    api: int  # ECR API calls
    writes: list[str]  # ECR's writes, "METHOD path" or the API action
    upstream: list[tuple[str, str]]  # (method, path) of every request to the upstream
    blob_uploads: int  # blob uploads ECR completed into image repositories (mounts are not uploads)
    ecr: Counter[str] = field(default_factory=Counter)  # ECR's requests by kind
    uploaded: int | None = None  # bytes, as ecrmirror's summary says them
    pushed: int | None = None  # images, as ecrmirror's summary says them

    def run(self) -> Run:
        """The run as the peers' comparison counts it: time and requests by kind."""
        return Run(self.seconds, 0.0, self.ecr, Counter(request_kind(m, p) for m, p in self.upstream))

    @property
    def manifest_gets(self) -> list[str]:
        return [path for method, path in self.upstream if method == "GET" and "/manifests/" in path]


@dataclass(frozen=True)
class Blob:
    size: int
    signature: bool  # a cosign signature's (its payload or config), not the image's


@dataclass
class World:
    """The upstream behind its recording proxy, and the emulator behind one of its own."""

    directory: Path
    emulator: Emulator
    proxy: Any  # a RecordingProxy: a pass-through that logs (method, path)
    references: list[str]  # HOST/PATH:TAG of every image, HOST the proxy's
    to_ecr: Any  # a RecordingProxy in front of the emulator

    @property
    def host(self) -> str:
        return str(self.proxy.url).removeprefix("http://")

    def clear(self) -> None:
        self.emulator.app.requests.clear()
        for proxy in (self.proxy, self.to_ecr):
            proxy.log.clear()
            proxy.requests = 0

    def copied(self, seconds: float) -> Copied:
        recorded = self.emulator.requests
        return Copied(
            seconds=seconds,
            ecr=ecr_kinds(recorded, list(self.to_ecr.log)),
            registry=sum(1 for r in recorded if r.kind == "registry"),
            api=sum(1 for r in recorded if r.kind == "api"),
            writes=[
                r.action if r.kind != "registry" else f"{r.method} {r.path}"
                for r in recorded
                if r.is_write and r.kind in ("registry", "api")
            ],
            upstream=list(self.proxy.log),
            blob_uploads=sum(
                1
                for r in recorded
                if r.kind == "registry"
                and r.method == "PUT"
                and "/blobs/uploads/" in r.path
                and not r.path.startswith(f"/v2/bench/{CHART}/")  # the chart's own
            ),
        )


class RecordingProxy(FaultProxy):  # type: ignore[misc, unused-ignore]
    """FaultProxy at rate 0, forwarding a repeated request header whole: skopeo says each manifest
    type it accepts in an Accept header of its own, and FaultProxy keeps the last one only."""

    @staticmethod
    def _forward(netloc: str, method: str, path: str, headers: Any, body: bytes) -> Any:
        merged: dict[str, str] = {}
        for name, value in headers.items():
            merged[name] = f"{merged[name]}, {value}" if name in merged else value
        return FaultProxy._forward(netloc, method, path, merged, body)


def image_figures(work: Path, images: int, skopeo: str | None, repeats: int = 2) -> list[Figure]:
    """ecrmirror's first sync and re-run of `images` images, and skopeo's, side by side."""
    binary = shutil.which("docker-registry")
    if binary is None:
        print("images: no docker-registry (apt-get install docker-registry): image rows skipped")
        return []
    directory = work / f"images-{images}"
    (directory / "registry").mkdir(parents=True)
    upstream = DockerRegistry(binary, directory / "registry")
    tries: list[dict[str, Copied]] = []
    identical: dict[str, list[tuple[int, int]]] = {tool: [] for tool in TOOLS}
    try:
        paths = push_images(upstream.host, images)
        blobs = unique_blobs(upstream.host, paths)
        digests = {path: manifest_digest(upstream.host, path, TAG) for path in paths}
        proxy = RecordingProxy(target=f"http://{upstream.host}", **slow()).start()
        tools = TOOLS if skopeo is not None else ("ecrmirror",)
        try:
            for attempt in range(repeats if skopeo is not None else 1):
                runs: dict[str, Copied] = {}
                for tool in tools:
                    world = directory / f"{tool}-{attempt}"
                    first, again, same = image_runs(world, tool, skopeo or "", proxy, paths, digests)
                    runs[tool], runs[f"{tool} again"] = first, again
                    identical[tool].append(same)
                tries.append(runs)
        finally:
            proxy.stop()
    finally:
        upstream.stop()
    rows = figures(images, blobs, tries[0])
    if skopeo is None:
        print("images: no skopeo (apt-get install skopeo): skopeo rows skipped")
        return rows
    firsts = {tool: [runs[tool].run() for runs in tries] for tool in TOOLS}
    agains = {tool: [runs[f"{tool} again"].run() for runs in tries] for tool in TOOLS}
    label = f"images, {images} images"
    return rows + comparison_rows(label, "image", images, firsts, agains, identical, len(tries))


def image_runs(
    directory: Path, tool: str, skopeo: str, proxy: Any, paths: list[str], digests: dict[str, str | None]
) -> tuple[Copied, Copied, tuple[int, int]]:
    """`tool`'s first sync and re-run into a fresh emulator behind 20 ms; how many images' ECR
    tags have the upstream's digest, of how many."""
    directory.mkdir()
    with Emulator() as emulator:
        emulator.reset()  # moto's state is per process: start each measurement empty
        admin("ecr", emulator).put_account_setting(name="BLOB_MOUNTING", value="ENABLED")
        to_ecr = RecordingProxy(target=emulator.url, **slow()).start()
        host = str(proxy.url).removeprefix("http://")
        world = World(directory, emulator, proxy, [f"{host}/{path}:{TAG}" for path in paths], to_ecr)
        try:
            if tool == "skopeo":
                create_repositories(emulator, [f"skopeo/{path}" for path in paths])

            def copy() -> Copied:
                return ecrmirror_sync(world) if tool == "ecrmirror" else skopeo_copies(world, skopeo, paths)

            first = copy()
            same = same_digests(emulator, digests)
            again = copy()
        finally:
            to_ecr.stop()
    return first, again, same


def same_digests(emulator: Emulator, digests: dict[str, str | None]) -> tuple[int, int]:
    """How many images' ECR tags have the upstream's index digest, of how many: an image's
    repository is the one whose name ends with its upstream path."""
    ecr = admin("ecr", emulator)
    names = [
        repository["repositoryName"]
        for page in ecr.get_paginator("describe_repositories").paginate()
        for repository in page["repositories"]
    ]
    same = 0
    for path, digest in digests.items():
        repository = next((name for name in names if name == path or name.endswith(f"/{path}")), None)
        if repository is None:
            continue
        found = ecr.batch_get_image(
            repositoryName=repository, imageIds=[{"imageTag": TAG}], acceptedMediaTypes=MANIFESTS.split(", ")
        )["images"]
        same += bool(found) and found[0]["imageId"]["imageDigest"] == digest
    return same, len(digests)


def push_images(host: str, images: int) -> list[str]:
    """`images` multi-arch images, each with the one base layer; their repository paths."""
    noise = random.Random(20240301).randbytes(BASE_LAYER_BYTES)  # random: gzip keeps its size
    base = tar_gz_layer({"usr/lib/base.bin": noise})
    paths = [f"bench/img{n}" for n in range(images)]

    def push(path: str) -> None:
        push_multiarch_image(host, path, TAG, shared_layer=base, seed=path)

    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        list(pool.map(push, paths))
    return paths


def unique_blobs(host: str, paths: list[str]) -> dict[str, Blob]:
    """Every distinct blob (configs and layers) of every manifest the images hold, by digest: each
    index's children and the cosign signatures, read back from the registry."""
    session = requests.Session()

    def manifest(path: str, reference: str) -> dict[str, Any]:
        response = session.get(
            f"http://{host}/v2/{path}/manifests/{reference}", headers={"Accept": MANIFESTS}, timeout=10
        )
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return document

    blobs: dict[str, Blob] = {}
    for path in paths:
        tags = session.get(f"http://{host}/v2/{path}/tags/list", timeout=10).json()["tags"]
        for tag in tags:
            top = manifest(path, tag)
            children = [manifest(path, child["digest"]) for child in top.get("manifests", [])] or [top]
            for child in children:
                for blob in [child["config"], *child["layers"]]:
                    blobs[blob["digest"]] = Blob(int(blob["size"]), tag.endswith(".sig"))
    return blobs


def ecrmirror_sync(world: World) -> Copied:
    """`pytest --sync --ecrmirror-jobs 8` of a spec listing every image under images.extra."""
    charts = world.directory / "charts"
    if not charts.exists():
        write_index(charts, [package_chart(charts, CHART, "1.0.0")])
    url, _, server = serve(charts)
    extra = "".join(f"\n        - {reference}" for reference in world.references)
    (world.directory / "mirror.yaml").write_text(
        f"target:\n  registry: {REGISTRY}\n  prefix: bench\n  create_repositories: true\n"
        f"charts:\n  - name: {CHART}\n    repo: {url}\n    versions: ['1.0.0']\n"
        f"    images:\n      plain_http: ['{world.host}']\n      annotations: false\n      extra:{extra}\n"
    )
    world.clear()
    try:
        seconds, said = _pytest(world, "--sync", f"--ecrmirror-jobs={JOBS}", "mirror.yaml")
    finally:
        server.shutdown()
    summary = _SUMMARY.search(said)
    if summary is None:
        raise SystemExit(f"ecrmirror printed no images summary line:\n{said[-3000:]}")
    total, pushed, _, failed, uploaded = (int(group) for group in summary.groups())
    if failed or total != len(world.references):
        raise SystemExit(f"ecrmirror's image sync failed: {summary[0]}\n{said[-3000:]}")
    copied = world.copied(seconds)
    copied.uploaded, copied.pushed = uploaded, pushed
    return copied


def _pytest(world: World, *args: str) -> tuple[float, str]:
    """As common.pytest_measured, but what pytest printed: (wall seconds, its stdout)."""
    via = {"AWS_ENDPOINT_URL_ECR": world.to_ecr.url, "ECRMIRROR_REGISTRY_ENDPOINT": world.to_ecr.url}
    env = child_environ(world.emulator.environ(), via, {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    command = [sys.executable, "-m", "pytest", "-p", "ecrmirror.plugin", "-p", "no:cacheprovider", "-q"]
    started = time.perf_counter()
    done = subprocess.run([*command, *args], cwd=world.directory, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"pytest {' '.join(args)} failed:\n{done.stdout[-3000:]}")
    return elapsed, done.stdout


def skopeo_copies(world: World, skopeo: str, paths: list[str]) -> Copied:
    """`xargs -P 8 -n 2 skopeo copy --all` of every image into skopeo/<path>:<tag>."""
    password = registry_password(world.emulator)  # `aws ecr get-login-password`, before the clock starts
    destination = str(world.to_ecr.url).removeprefix("http://")
    pairs = [
        (f"docker://{world.host}/{path}:{TAG}", f"docker://{destination}/skopeo/{path}:{TAG}")
        for path in paths
    ]
    world.clear()
    options = ("--all", "--src-tls-verify=false", "--dest-tls-verify=false")
    seconds, _ = skopeo_xargs(skopeo, world.directory, pairs, password, *options, jobs=JOBS)
    return world.copied(seconds)


def figures(images: int, blobs: dict[str, Blob], runs: dict[str, Copied]) -> list[Figure]:
    """ecrmirror's targets for images (one repetition's runs): each blob uploaded once, nothing
    read or written again by a re-run."""
    first, again = runs["ecrmirror"], runs["ecrmirror again"]
    uploaded, unique = first.uploaded or 0, sum(blob.size for blob in blobs.values())
    signatures = sum(blob.size for blob in blobs.values() if blob.signature)
    ratio = uploaded / unique
    gets, writes = again.manifest_gets, again.writes
    if uploaded != unique:
        _explain(
            "ecrmirror's first sync: bytes uploaded (its summary line) are not the unique bytes",
            [
                f"uploaded {uploaded}, unique {unique}: {unique - uploaded} fewer",
                f"of the unique, cosign signatures' blobs {signatures}, the images' {unique - signatures}",
            ],
        )
    if first.blob_uploads != len(blobs):
        _explain(
            "ecrmirror's first sync: blob uploads are not the unique blobs",
            [f"{first.blob_uploads} uploads, {len(blobs)} unique blobs"],
        )
    if gets:
        _explain(f"ecrmirror's re-run: {len(gets)} upstream manifest GETs", gets)
    if writes:
        _explain(f"ecrmirror's re-run: {len(writes)} ECR writes", writes)
    n = f"{images} images"
    rows = [
        Figure(
            f"images first sync ({n}): bytes uploaded / unique bytes",
            round(ratio, 3),
            "== 1.0",
            uploaded == unique,
        ),
        Figure(
            f"images first sync ({n}): bytes uploaded, unique bytes",
            f"{uploaded}, {unique}",
            "measured",
            None,
        ),
        Figure(
            f"images first sync ({n}): blob uploads / unique blobs",
            round(first.blob_uploads / len(blobs), 3),
            "== 1.0",
            first.blob_uploads == len(blobs),
        ),
        Figure(
            f"images first sync ({n}): images pushed", first.pushed or 0, str(images), first.pushed == images
        ),
        Figure(f"images re-run ({n}): ecrmirror upstream manifest GETs", len(gets), "0", not gets),
        Figure(f"images re-run ({n}): ecrmirror ECR writes", len(writes), "0", not writes),
    ]
    return rows


def _explain(what: str, seen: list[str]) -> None:
    """A missed target, said with what is behind it (the requests, the bytes), for whoever fixes it."""
    print(f"images: {what}:", *(f"  {each}" for each in seen[:40]), sep="\n")
