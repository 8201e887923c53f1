"""ecrmirror against the peer a user would write in five minutes: `xargs -P 8 skopeo copy`.

Charts from an OCI source: the upstream is a registry with Docker Hub's token flow and blob
redirects (tests' TokenRegistry), its registry, token service and blob storage all behind 20 ms
of latency (concurrency.LATENCY). Each tool copies every version into a fresh emulator of its
own, behind 20 ms too: skopeo into repositories created beforehand (as the recipe does), 8
copies at a time from a shell's `xargs -P 8 -n 2 skopeo copy`; ecrmirror with
`pytest --sync --ecrmirror-jobs 8`. Then each runs again with nothing new. The tools take turns,
repetition by repetition, so that a slow minute of this shared machine hurts both alike.

Requests are counted from the emulator's records and the upstream proxies' logs, by kind; after
each first sync every version's ECR manifest digest is compared with the upstream's.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from chartfactory import package_chart  # type: ignore[import-not-found, unused-ignore]
from common import (
    REGISTRY,
    Figure,
    create_repositories,
    ecr_kinds,
    per_unit,
    pytest_measured,
    registry_password,
    request_kind,
    skopeo_xargs,
)
from concurrency import LATENCY
from ecrclient import admin  # type: ignore[import-not-found, unused-ignore]
from faultproxy import FaultProxy  # type: ignore[import-not-found, unused-ignore]
from ociregistry import TokenRegistry  # type: ignore[import-not-found, unused-ignore]

from ecrmirror.emulator import Emulator

JOBS = 8
TOOLS = ("skopeo", "ecrmirror")
# skopeo's time over ecrmirror's: (first sync, re-run) by number of versions
TARGETS = {30: (1.2, 1.3), 200: (1.5, 1.5)}


def slow(latency: float = LATENCY) -> dict[str, object]:
    """FaultProxy arguments that delay every request by `latency` and fault none."""
    return {"rate": 1.0, "seed": 1, "kinds": ("slow",), "slow_seconds": latency}


@dataclass
class Run:
    """One tool's run: its time and the requests it made, by kind."""

    seconds: float
    cpu: float
    ecr: Counter[str]
    upstream: Counter[str]


@dataclass
class Upstream:
    """The OCI source, its registry (token service included) and its blob storage each behind a
    slow proxy; the charts it holds and their manifest digests."""

    registry: TokenRegistry
    to_registry: FaultProxy
    to_storage: FaultProxy
    charts: dict[str, list[str]]
    digests: dict[tuple[str, str], str]  # (chart, version) -> manifest digest

    @property
    def host(self) -> str:
        return str(self.to_registry.url).removeprefix("http://")

    def requests(self) -> Counter[str]:
        kinds = Counter(request_kind(method, path) for method, path in self.to_registry.log)
        kinds["blob storage GET"] += len(self.to_storage.log)
        return kinds

    def clear(self) -> None:
        for proxy in (self.to_registry, self.to_storage):
            proxy.log.clear()
            proxy.requests = 0

    def stop(self) -> None:
        self.to_registry.stop()
        self.to_storage.stop()
        self.registry.stop()


def oci_upstream(work: Path, charts_count: int, versions_each: int) -> Upstream:
    registry = TokenRegistry().start()
    to_registry = FaultProxy(f"http://{registry.host}", **slow()).start()
    to_storage = FaultProxy(f"http://{registry.storage_host}", **slow()).start()
    # Blobs redirect to the storage proxy, and the token service is reached through the registry's.
    registry.storage_host = str(to_storage.url).removeprefix("http://")
    registry.realm = f"{to_registry.url}/token"
    packages = work / "packages"
    charts = {f"oci{c}": [f"4.{v // 10}.{v % 10}" for v in range(versions_each)] for c in range(charts_count)}
    digests = {
        (name, version): registry.add_chart(
            f"library/{name}", package_chart(packages, name, version).path, name, version
        )
        for name, versions in charts.items()
        for version in versions
    }
    return Upstream(registry, to_registry, to_storage, charts, digests)


def ecr_digests(emulator: Emulator, repositories: list[str]) -> dict[tuple[str, str], str]:
    """(repository, tag) -> manifest digest of every tagged image in `repositories` (those that exist)."""
    ecr = admin("ecr", emulator)
    found: dict[tuple[str, str], str] = {}
    for repository in repositories:
        try:
            pages = ecr.get_paginator("describe_images").paginate(repositoryName=repository)
            for page in pages:
                for image in page["imageDetails"]:
                    for tag in image.get("imageTags", []):
                        found[(repository, tag)] = image["imageDigest"]
        except ecr.exceptions.RepositoryNotFoundException:
            pass
    return found


def _copy_charts(
    tool: str, skopeo: str, directory: Path, upstream: Upstream, emulator: Emulator, to_ecr: FaultProxy
) -> tuple[float, float]:
    """One run of `tool` over every version: (wall seconds, CPU seconds)."""
    if tool == "ecrmirror":
        entries = "".join(
            f"  - name: {name}\n    repo: oci://{upstream.host}/library\n    plain_http: true\n"
            f"    versions: {json.dumps(versions)}\n"
            for name, versions in upstream.charts.items()
        )
        (directory / "oci.yaml").write_text(
            f"target:\n  registry: {REGISTRY}\n  prefix: oci\n  create_repositories: true\ncharts:\n{entries}"
        )
        return pytest_measured(
            directory, emulator, "--sync", f"--ecrmirror-jobs={JOBS}", "oci.yaml", via=to_ecr.url
        )
    destination = str(to_ecr.url).removeprefix("http://")
    pairs = [
        (f"docker://{upstream.host}/library/{name}:{version}", f"docker://{destination}/oci/{name}:{version}")
        for name, versions in upstream.charts.items()
        for version in versions
    ]
    password = registry_password(emulator)  # `aws ecr get-login-password`, before the clock starts
    emulator.app.requests.clear()
    to_ecr.log.clear()
    return skopeo_xargs(
        skopeo, directory, pairs, password, "--src-tls-verify=false", "--dest-tls-verify=false", jobs=JOBS
    )


def chart_runs(
    work: Path, upstream: Upstream, tool: str, skopeo: str, attempt: int
) -> tuple[Run, Run, tuple[int, int]]:
    """`tool`'s first sync and re-run into a fresh emulator behind 20 ms; how many of the versions'
    ECR manifests have the upstream's digest, of how many."""
    directory = work / f"{tool}-{attempt}"
    directory.mkdir()
    repositories = [f"oci/{name}" for name in upstream.charts]
    with Emulator() as emulator:
        emulator.reset()  # moto's state is per process: start each measurement empty
        to_ecr = FaultProxy(emulator.url, **slow()).start()
        try:
            if tool == "skopeo":
                create_repositories(emulator, repositories)

            def copy() -> Run:
                emulator.app.requests.clear()
                to_ecr.log.clear()
                upstream.clear()
                seconds, cpu = _copy_charts(tool, skopeo, directory, upstream, emulator, to_ecr)
                return Run(seconds, cpu, ecr_kinds(emulator.requests, list(to_ecr.log)), upstream.requests())

            first = copy()
            pushed = ecr_digests(emulator, repositories)
            same = sum(
                pushed.get((f"oci/{name}", version)) == digest
                for (name, version), digest in upstream.digests.items()
            )
            again = copy()
        finally:
            to_ecr.stop()
    return first, again, (same, len(upstream.digests))


def chart_figures(
    work: Path, charts_count: int, versions_each: int, skopeo: str | None, repeats: int = 2
) -> list[Figure]:
    """Charts from an OCI source: `xargs -P 8 skopeo copy` against `--ecrmirror-jobs 8`."""
    total = charts_count * versions_each
    label = f"OCI charts, {total} versions ({charts_count}x{versions_each})"
    if skopeo is None:
        return [Figure(f"{label}: skopeo against ecrmirror", "no skopeo", "measured", False)]
    directory = work / f"peers-charts-{total}"
    directory.mkdir()
    upstream = oci_upstream(directory, charts_count, versions_each)
    firsts: dict[str, list[Run]] = {tool: [] for tool in TOOLS}
    agains: dict[str, list[Run]] = {tool: [] for tool in TOOLS}
    identical: dict[str, list[tuple[int, int]]] = {tool: [] for tool in TOOLS}
    try:
        for attempt in range(repeats):
            for tool in TOOLS:
                first, again, same = chart_runs(directory, upstream, tool, skopeo, attempt)
                firsts[tool].append(first)
                agains[tool].append(again)
                identical[tool].append(same)
    finally:
        upstream.stop()
    return comparison_rows(label, "version", total, firsts, agains, identical, repeats)


def comparison_rows(
    label: str,
    unit: str,
    total: int,
    firsts: dict[str, list[Run]],
    agains: dict[str, list[Run]],
    identical: dict[str, list[tuple[int, int]]],
    repeats: int,
) -> list[Figure]:
    """The ratio rows (skopeo's median time over ecrmirror's, with the targets), each run's median
    time, the byte-identity rows, and the requests per `unit` by kind of each tool's first run."""
    size = 30 if total <= 30 else 200
    first_target, again_target = TARGETS[size]
    all_same = all(same == expected for tool in TOOLS for same, expected in identical[tool])
    rows: list[Figure] = []
    for run, runs, target in (("first sync", firsts, first_target), ("re-run", agains, again_target)):
        medians = {tool: statistics.median(r.seconds for r in runs[tool]) for tool in TOOLS}
        ratio = medians["skopeo"] / medians["ecrmirror"]
        rows.append(
            Figure(
                f"{label}, {run}: skopeo time / ecrmirror time (median of {repeats})",
                round(ratio, 2),
                f">= {target}" + ("" if all_same else ", NOT byte-identical"),
                ratio >= target and all_same,
            )
        )
        for tool in TOOLS:
            each = ", ".join(f"{r.seconds:.1f}" for r in runs[tool])
            rows.append(
                Figure(
                    f"{label}, {run}: {tool} (s, median; each: {each})",
                    round(medians[tool], 2),
                    "measured",
                    None,
                )
            )
    for tool in TOOLS:
        same, expected = min(identical[tool])
        rows.append(
            Figure(
                f"{label}: {tool}'s ECR manifests with the upstream's digest (worst of {repeats})",
                f"{same} of {expected}",
                "all",
                same == expected,
            )
        )
    registry = {
        tool: sum(n for kind, n in firsts[tool][0].ecr.items() if not kind.endswith(" calls"))
        for tool in TOOLS
    }
    rows.append(
        Figure(
            f"{label}, first sync: ECR registry requests per {unit}, ecrmirror",
            round(registry["ecrmirror"] / total, 2),
            f"< {registry['skopeo'] / total:.2f} (skopeo's)",
            registry["ecrmirror"] < registry["skopeo"],
        )
    )
    for tool in TOOLS:
        for run, runs in (("first sync", firsts), ("re-run", agains)):
            rows += [
                Figure(
                    f"{label}, {tool} {run}, per {unit}: upstream",
                    per_unit(runs[tool][0].upstream, total),
                    "measured",
                    None,
                ),
                Figure(
                    f"{label}, {tool} {run}, per {unit}: ECR",
                    per_unit(runs[tool][0].ecr, total),
                    "measured",
                    None,
                ),
            ]
    return rows
