"""ecrmirror's benchmark: builds its own inputs, runs ecrmirror as users do, prints the figures.

    python benchmarks/run.py --quick --json out.json

Requests are counted from the emulator's and the chart server's own records, never from
ecrmirror's output. Each figure has its target from issue 6; the last column says whether it
is met.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the test suite's chart factory builds real archives
sys.path.insert(0, str(ROOT / "benchmarks"))

import concurrency  # noqa: E402
import images  # noqa: E402
import peers  # noqa: E402
import startup  # noqa: E402
from chartfactory import ChartFile, package_chart, write_index  # noqa: E402
from common import REGISTRY, Figure, child_environ, compile_ecrmirror, pytest_run, serve, spec_text  # noqa: E402

from ecrmirror.emulator import Emulator  # noqa: E402
from ecrmirror.sources import IndexCache, Sources, parse_index  # noqa: E402
from ecrmirror.transport import Http  # noqa: E402


def mirror_figures(work: Path, repositories: int, versions_each: int) -> list[Figure]:
    upstream = work / "upstream"
    upstream.mkdir()
    charts = {f"app{r}": [f"1.{v // 10}.{v % 10}" for v in range(versions_each)] for r in range(repositories)}
    packaged = [
        package_chart(upstream, name, version) for name, versions in charts.items() for version in versions
    ]
    write_index(upstream, packaged)
    url, seen, server = serve(upstream)
    total = repositories * versions_each
    figures: list[Figure] = []
    with Emulator() as emulator:
        emulator.reset()  # moto's state is per process: start each measurement empty
        (work / "mirror.yaml").write_text(spec_text(url, charts))
        # The manifests a sync pushes are kept (as a CI cache keeps them), so audits need not pull.
        kept = "--ecrmirror-cache-dir=cache"
        sync_seconds = pytest_run(work, emulator, "--sync", kept, "mirror.yaml")
        registry = [r for r in emulator.requests if r.kind == "registry"]
        per_push = len(registry) / total
        figures.append(Figure(f"sync of {total} versions (s)", round(sync_seconds, 1), "measured", None))
        figures.append(
            Figure("registry requests per pushed version", round(per_push, 2), "<= 6", per_push <= 6)
        )
        unauthorized = sum(1 for r in registry if r.status == 401)
        figures.append(Figure("401 round trips", unauthorized, "0", unauthorized == 0))

        emulator.app.requests.clear()
        seen.clear()
        pytest_run(work, emulator, "--sync", kept, "mirror.yaml")
        archives = sum(1 for p in seen if p.split("?")[0].endswith(".tgz"))
        registry_again = sum(1 for r in emulator.requests if r.kind == "registry")
        figures.append(Figure("up-to-date sync: archive downloads", archives, "0", archives == 0))
        figures.append(Figure("up-to-date sync: registry requests", registry_again, "0", registry_again == 0))

        emulator.app.requests.clear()
        audit_seconds = pytest_run(work, emulator, "--check-only", kept, "mirror.yaml")
        api = [r.action for r in emulator.requests if r.kind == "api"]
        # One DescribeImages per 1,000 images of a repository, one DescribeRepositories per 100.
        limit = repositories * math.ceil(versions_each / 1000) + math.ceil(repositories / 100)
        figures.append(
            Figure(
                f"audit of {total} versions in {repositories} repositories (s)",
                round(audit_seconds, 1),
                "measured",
                None,
            )
        )
        figures.append(Figure("audit API calls", len(api), f"<= {limit}", len(api) <= limit))
        pulls = api.count("BatchGetImage")
        figures.append(Figure("audit pulls (BatchGetImage), manifests kept", pulls, "0", pulls == 0))
        # A runner with no cache must read each manifest once: one BatchGetImage per 100 more.
        emulator.app.requests.clear()
        pytest_run(work, emulator, "--check-only", "mirror.yaml")
        cold = [r.action for r in emulator.requests if r.kind == "api"]
        cold_limit = limit + repositories * math.ceil(versions_each / 100)
        figures.append(
            Figure("audit API calls, nothing kept", len(cold), f"<= {cold_limit}", len(cold) <= cold_limit)
        )
    server.shutdown()
    return figures


def backfill_figures(work: Path, repositories: int, versions_each: int) -> list[Figure]:
    """Versions mirrored before a region joined `replication.regions`, then copied there by --sync."""
    upstream = work / "upstream"
    upstream.mkdir()
    charts = {f"app{r}": [f"1.{v // 10}.{v % 10}" for v in range(versions_each)] for r in range(repositories)}
    write_index(upstream, [package_chart(upstream, n, v) for n, versions in charts.items() for v in versions])
    url, _, server = serve(upstream)
    total = repositories * versions_each
    figures: list[Figure] = []
    with Emulator() as emulator:
        emulator.reset()
        (work / "mirror.yaml").write_text(spec_text(url, charts))
        pytest_run(work, emulator, "--sync", "mirror.yaml")
        replicated = spec_text(url, charts).replace(
            "charts:", "  replication:\n    regions: [us-east-1]\ncharts:"
        )
        (work / "mirror.yaml").write_text(replicated)
        emulator.app.requests.clear()
        seconds = pytest_run(work, emulator, "--sync", "mirror.yaml")
        registry = [r for r in emulator.requests if r.kind == "registry"]
        statuses = sum(1 for r in emulator.requests if r.action == "DescribeImageReplicationStatus")
        per_version = len(registry) / total
        figures.append(
            Figure(f"backfill of {total} versions into a new region (s)", round(seconds, 1), "measured", None)
        )
        # a manifest GET and PUT; the config's GET, POST and PUT; each layer's HEAD, GET, POST and PUT
        figures.append(
            Figure(
                "registry requests per backfilled version", round(per_version, 2), "<= 9", per_version <= 9
            )
        )
        figures.append(
            Figure(
                "replication status calls per backfilled version",
                round(statuses / total, 2),
                "<= 1",
                statuses <= total,
            )
        )
        emulator.app.requests.clear()
        pytest_run(work, emulator, "--sync", "mirror.yaml")
        again = sum(1 for r in emulator.requests if r.kind == "registry" or r.is_write)
        figures.append(Figure("backfilled sync again: registry requests and writes", again, "0", again == 0))
    server.shutdown()
    return figures


def oci_figures(work: Path, charts_count: int, versions_each: int) -> list[Figure]:
    """An OCI source (a registry with Docker Hub's token flow and blob redirects) copied into ECR."""
    from ociregistry import TokenRegistry

    source = TokenRegistry().start()
    packages = work / "oci-packages"
    charts = {f"oci{c}": [f"4.{v // 10}.{v % 10}" for v in range(versions_each)] for c in range(charts_count)}
    for name, versions in charts.items():
        for version in versions:
            source.add_chart(f"library/{name}", package_chart(packages, name, version).path, name, version)
    entries = "".join(
        f"  - name: {n}\n    repo: oci://{source.host}/library\n    plain_http: true\n"
        f"    versions: {json.dumps(v)}\n"
        for n, v in charts.items()
    )
    (work / "oci.yaml").write_text(
        f"target:\n  registry: {REGISTRY}\n  prefix: oci\n  create_repositories: true\ncharts:\n{entries}"
    )
    total = charts_count * versions_each
    with Emulator() as emulator:
        emulator.reset()  # moto's state is per process: start each measurement empty
        seconds = pytest_run(work, emulator, "--sync", "oci.yaml")
        per_copy = sum(1 for r in emulator.requests if r.kind == "registry") / total
        from_source = len(source.seen) / total
        emulator.app.requests.clear()
        source.seen.clear()
        pytest_run(work, emulator, "--sync", "oci.yaml")
        again = sum(1 for r in emulator.requests if r.kind == "registry")
        blobs_again = sum(
            1 for host, path, _ in source.seen if "/blobs/" in path or host == source.storage_host
        )
    source.stop()
    return [
        Figure(f"OCI source: sync of {total} versions (s)", round(seconds, 1), "measured", None),
        Figure("OCI source: registry requests per copied version", round(per_copy, 2), "<= 6", per_copy <= 6),
        Figure("OCI source: source requests per copied version", round(from_source, 2), "measured", None),
        Figure("OCI up-to-date sync: blob downloads", blobs_again, "0", blobs_again == 0),
        Figure("OCI up-to-date sync: registry requests", again, "0", again == 0),
    ]


def memory_figures(work: Path, small: int, large: int) -> list[Figure]:
    """Peak RSS of a sync does not grow with the number of versions."""
    peaks = []
    for count in (small, large):
        directory = work / f"memory-{count}"
        (directory / "upstream").mkdir(parents=True)
        charts = {"mem": [f"2.{v // 10}.{v % 10}" for v in range(count)]}
        write_index(
            directory / "upstream", [package_chart(directory / "upstream", "mem", v) for v in charts["mem"]]
        )
        url, _, server = serve(directory / "upstream")
        (directory / "mirror.yaml").write_text(spec_text(url, charts))
        with Emulator() as emulator:
            emulator.reset()  # moto's state is per process: start each measurement empty
            env = child_environ(emulator.environ(), {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
            command = [sys.executable, "-c", _PEAK_RSS, "--sync", "mirror.yaml"]
            done = subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True)
            peaks.append(int(done.stdout.strip().splitlines()[-1]))
        server.shutdown()
    growth = peaks[1] - peaks[0]
    return [
        Figure(f"peak RSS, sync of {small} versions (MiB)", peaks[0], "measured", None),
        Figure(f"peak RSS, sync of {large} versions (MiB)", peaks[1], f"<= {peaks[0]} + 20", growth <= 20),
    ]


def big_chart_figures(work: Path, megabytes: int) -> list[Figure]:
    """Peak RSS of syncing one chart of `megabytes` MB: archives stream to and from disk."""
    peak, size, pushed = _sync_big_charts(work / "big-chart", 1, megabytes)
    return [
        Figure(
            f"peak RSS, sync of one {size / 1e6:.0f} MB chart (MiB)",
            peak,
            "< 150",
            peak < 150 and pushed,
        )
    ]


def _sync_big_charts(directory: Path, charts: int, megabytes: int, *args: str) -> tuple[int, int, bool]:
    """Sync `charts` charts of `megabytes` MB each (pytest ARGS added): the run's peak RSS in MiB,
    one archive's size, and whether every chart was pushed."""
    upstream = directory / "upstream"
    upstream.mkdir(parents=True)
    names = ["big"] if charts == 1 else [f"big{n}" for n in range(charts)]
    files = [
        ChartFile(
            write_big_chart(upstream / f"{name}-1.0.0.tgz", megabytes, name=name),
            name,
            "1.0.0",
            {"apiVersion": "v2", "name": name, "version": "1.0.0"},
        )
        for name in names
    ]
    write_index(upstream, files)
    url, _, server = serve(upstream)
    (directory / "mirror.yaml").write_text(spec_text(url, {name: ["1.0.0"] for name in names}))
    size = files[0].path.stat().st_size
    limit = f"{size // (1024 * 1024) * 2}MiB"  # above helm's 100 MiB: the chart needs the limit raised
    with Emulator() as emulator:
        emulator.reset()  # moto's state is per process: start each measurement empty
        env = child_environ(emulator.environ(), {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
        command = [
            sys.executable,
            "-c",
            _PEAK_RSS,
            "--sync",
            "mirror.yaml",
            f"--ecrmirror-max-chart-size={limit}",
        ]
        done = subprocess.run([*command, *args], cwd=directory, env=env, capture_output=True, text=True)
        if f"{2 * charts} passed" not in done.stdout:
            raise SystemExit(f"sync of the big charts failed:\n{done.stdout[-2000:]}")
        peak = int(done.stdout.strip().splitlines()[-1])
        manifests = [r for r in emulator.requests if r.method == "PUT" and "/manifests/" in r.path]
    server.shutdown()
    shutil.rmtree(upstream)
    return peak, size, len(manifests) == charts


def write_big_chart(path: Path, megabytes: int, name: str = "big") -> Path:
    """A chart of random 4 MiB files (under helm's 5 MiB per file), `megabytes` in all, gzipped
    without compression: random bytes would not compress, and level 0 writes it in a second."""
    import tarfile

    with tarfile.open(path, mode="w:gz", compresslevel=0) as tar:
        members = [(f"{name}/Chart.yaml", f"apiVersion: v2\nname: {name}\nversion: 1.0.0\n".encode())]
        members += [(f"{name}/files/blob{n}", b"") for n in range(math.ceil(megabytes * 1e6 / (4 << 20)))]
        for name, data in members:
            data = data or os.urandom(4 << 20)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


# Runs pytest in-process and prints the process's own peak RSS in MiB. VmHWM, not ru_maxrss:
# Linux carries ru_maxrss across fork and exec, so a child would report this (big) benchmark
# process's RSS; VmHWM belongs to the address space exec gave the child.
_PEAK_RSS = (
    "import re, sys, pytest; "
    "pytest.main(['-p', 'ecrmirror.plugin', '-p', 'no:cacheprovider', '-q', *sys.argv[1:]]); "
    "print(int(re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read()).group(1)) // 1024)"
)


def index_figures(work: Path, megabytes: int) -> list[Figure]:
    """A big publisher's index, parsed cold by yaml-rs and by PyYAML."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bigindex import write_big_index

    path = work / "index.yaml"
    size = write_big_index(path, megabytes)
    text = path.read_bytes()
    started = time.perf_counter()
    parse_index(str(path), text, fast=True)
    fast = time.perf_counter() - started
    figures = [
        Figure(f"index of {size / 1e6:.0f} MB, cold parse, yaml-rs (s)", round(fast, 2), "<= 3", fast <= 3)
    ]
    started = time.perf_counter()
    parse_index(str(path), text, fast=False)
    slow = time.perf_counter() - started
    figures.append(
        Figure(
            f"index of {size / 1e6:.0f} MB, cold parse, PyYAML C loader (s)", round(slow, 2), "measured", None
        )
    )
    url, _, server = serve(work)
    keep = work / "index-cache"
    Sources(Http(), IndexCache(keep=keep)).get(url).versions("chart-0000")  # cold: downloads and keeps
    started = time.perf_counter()
    Sources(Http(), IndexCache(keep=keep)).get(url).versions("chart-0000")  # a later run: 304, then JSON
    cached = time.perf_counter() - started
    server.shutdown()
    figures.append(
        Figure("index from the cache directory, revalidated (s)", round(cached, 2), "<= 1", cached <= 1)
    )
    return figures


def collection_figures(work: Path, versions: int) -> list[Figure]:
    """Collection of many versions from an already written index (no archives needed)."""
    directory = work / "collection"
    (directory / "upstream").mkdir(parents=True)
    per_chart = 100
    entries = {
        f"c{c}": [
            {
                "name": f"c{c}",
                "version": f"1.{v // 10}.{v % 10}",
                "digest": "ab" * 32,
                "urls": [f"c{c}-{v}.tgz"],
            }
            for v in range(per_chart)
        ]
        for c in range(versions // per_chart)
    }
    (directory / "upstream" / "index.yaml").write_text(json.dumps({"apiVersion": "v1", "entries": entries}))
    charts = {name: [e["version"] for e in listed] for name, listed in entries.items()}
    (directory / "mirror.yaml").write_text(spec_text("upstream", charts))
    with Emulator() as emulator:
        emulator.reset()  # moto's state is per process: start each measurement empty
        (directory / "empty").mkdir()
        # The best of three of each: a second of noise would hide the difference at small sizes.
        baseline = min(pytest_run(directory, emulator, "--collect-only", "--sync", "empty") for _ in range(3))
        full = min(
            pytest_run(directory, emulator, "--collect-only", "--sync", "mirror.yaml") for _ in range(3)
        )
    collect = max(full - baseline, 0.0)
    return [
        Figure(
            f"collection of {versions} versions (s, beyond pytest's start)",
            round(collect, 2),
            "<= 2",
            collect <= 2,
        )
    ]


def big_charts_with_jobs_figures(work: Path, charts: int, megabytes: int) -> list[Figure]:
    """Peak RSS of `charts` jobs each syncing a chart of `megabytes` MB at once: streams, not buffers."""
    jobs = (f"--ecrmirror-jobs={charts}", f"--ecrmirror-upstream-connections={charts}")
    peak, _, pushed = _sync_big_charts(work / "big-charts", charts, megabytes, *jobs)
    return [
        Figure(
            f"peak RSS, {charts} jobs each syncing a {megabytes} MB chart (MiB)",
            peak,
            "< 300",
            peak < 300 and pushed,
        )
    ]


def _tool(name: str) -> str | None:
    """A tool for the peers' runs: on PATH, or where .ci/install-helm puts helm."""
    return shutil.which(name) or shutil.which(name, path=str(ROOT / ".tools" / "bin"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Small inputs: under 7 minutes on 2 cores")
    parser.add_argument("--json", metavar="PATH", help="Also write the figures as JSON")
    args = parser.parse_args()
    repositories, versions_each = (4, 25) if args.quick else (20, 100)
    index_mb = 3 if args.quick else 30
    figures: list[Figure] = []
    compile_ecrmirror()
    with tempfile.TemporaryDirectory(prefix="ecrmirror-bench-") as tmp:
        work = Path(tmp)
        (work / "mirror").mkdir()
        figures += mirror_figures(work / "mirror", repositories, versions_each)
        (work / "backfill").mkdir()
        figures += backfill_figures(work / "backfill", *((2, 10) if args.quick else (10, 100)))
        figures += oci_figures(work, *((2, 10) if args.quick else (5, 40)))
        figures += memory_figures(work, 10, 40 if args.quick else 1000)
        figures += big_chart_figures(work, 200)
        figures += index_figures(work, index_mb)
        figures += collection_figures(work, 2000 if args.quick else 10_000)
        figures += big_charts_with_jobs_figures(work, 8, 200)
        helm, skopeo = _tool("helm"), _tool("skopeo")
        figures += concurrency.latency_figures(work, 200, helm)
        figures += startup.start_up_figures(work)
        # Against `xargs -P 8 skopeo copy`: 3 charts of 10 versions, 10 of 20; 30 images, 200.
        # Three repetitions: the median of two is their mean, which one slow minute of this
        # shared machine moves; the median of three is a run that happened.
        for (charts, each), count in [((3, 10), 30), ((10, 20), 200)][: 1 if args.quick else 2]:
            figures += peers.chart_figures(work, charts, each, skopeo, repeats=3)
            figures += images.image_figures(work, count, skopeo, repeats=3)
    width = max(len(f.name) for f in figures)
    print(f"{'figure':<{width}}  {'value':>14}  {'target':<14}  met")
    for f in figures:
        met = "-" if f.met is None else ("yes" if f.met else "NO")
        print(f"{f.name:<{width}}  {f.value!s:>14}  {f.target:<14}  {met}")
    targets = [f for f in figures if f.met is not None]
    print(f"{sum(f.met is True for f in targets)} of {len(targets)} targets met")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(f) for f in figures], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
