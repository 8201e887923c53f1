"""Concurrency where the waiting is: ecrmirror's jobs against one job and the seed's recipe.

Every run goes through the same latency (the fault proxy's slow answers, on every request to ECR
and to the upstream) into a fresh emulator, and is counted from the emulator's, the chart
server's and the proxies' own records: wall time, registry and API requests, upstream requests,
archive downloads and bytes on the wire. The seed's recipe is the loop the README replaces
(`helm repo add`, then per version `helm pull` and `helm push`, real helm). skopeo, the peer a
user writes in five minutes, is in peers.py.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from chartfactory import package_chart, write_index
from common import Figure, create_repositories, pytest_measured, registry_password, serve, spec_text
from faultproxy import FaultProxy

from ecrmirror.emulator import Emulator

LATENCY = 0.020  # seconds added to every request, each way counted once


@dataclass
class Measured:
    seconds: float
    cpu: float  # of the child processes: ecrmirror's pytest, or helm's and skopeo's
    registry: int  # requests to ECR's registry (the OCI API)
    api: int  # ECR API calls
    upstream: int  # requests to the upstream (chart server or source registry)
    downloads: int  # archives (or blobs) downloaded from the upstream
    bytes: int  # request and response bodies through both proxies


@dataclass
class Stage:
    """One run's world: a fresh emulator, the upstream, and both behind `latency`."""

    directory: Path
    emulator: Emulator
    to_ecr: FaultProxy
    to_upstream: FaultProxy
    seen: list[str]

    def measured(self, seconds: float, cpu: float) -> Measured:
        registry = [r for r in self.emulator.requests if r.kind == "registry"]
        api = [r for r in self.emulator.requests if r.kind == "api"]
        archives = sum(1 for p in self.seen if p.split("?")[0].endswith(".tgz"))
        return Measured(
            seconds=seconds,
            cpu=cpu,
            registry=len(registry),
            api=len(api),
            upstream=self.to_upstream.requests,
            downloads=archives,
            bytes=self.to_ecr.bytes + self.to_upstream.bytes,
        )

    def clear(self) -> None:
        self.emulator.app.requests.clear()
        self.seen.clear()
        for proxy in (self.to_ecr, self.to_upstream):
            proxy.requests = 0
            proxy.bytes = 0


def build_upstream(directory: Path, versions: int) -> dict[str, list[str]]:
    """Ten charts of versions/10 versions each, packaged and indexed."""
    directory.mkdir(parents=True)
    charts = {f"lat{c}": [f"3.{v // 10}.{v % 10}" for v in range(versions // 10)] for c in range(10)}
    write_index(directory, [package_chart(directory, n, v) for n, vs in charts.items() for v in vs])
    return charts


@contextmanager
def stage(work: Path, name: str, upstream: Path, latency: float) -> Iterator[Stage]:
    directory = work / name
    directory.mkdir()
    url, seen, server = serve(upstream)
    slow = {"rate": 1.0, "seed": 1, "kinds": ("slow",), "slow_seconds": latency}
    with Emulator() as emulator:
        emulator.reset()  # moto's state is per process: start each measurement empty
        to_ecr = FaultProxy(emulator.url, **slow).start()
        to_upstream = FaultProxy(url.rstrip("/"), **slow).start()
        try:
            yield Stage(directory, emulator, to_ecr, to_upstream, seen)
        finally:
            to_ecr.stop()
            to_upstream.stop()
    server.shutdown()


def ecrmirror_sync(world: Stage, charts: dict[str, list[str]], jobs: int) -> Measured:
    (world.directory / "mirror.yaml").write_text(spec_text(world.to_upstream.url + "/", charts))
    seconds, cpu = pytest_measured(
        world.directory,
        world.emulator,
        "--sync",
        f"--ecrmirror-jobs={jobs}",
        "mirror.yaml",
        via=world.to_ecr.url,
    )
    return world.measured(seconds, cpu)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def recipe(world: Stage, charts: dict[str, list[str]], helm: str, again: bool = False) -> Measured:
    """The seed's job: log in, `helm repo add`, then per version `helm pull` and `helm push`."""
    home = world.directory / "helm"
    env = {
        **os.environ,
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    if not again:
        create_repositories(world.emulator, [f"bench/{name}" for name in charts])
        world.clear()
    host = world.to_ecr.url.removeprefix("http://")
    password = registry_password(world.emulator)

    def helm_run(*args: str, stdin: str | None = None) -> None:
        done = subprocess.run([helm, *args], env=env, input=stdin, capture_output=True, text=True, cwd=pulled)
        if done.returncode != 0:
            raise SystemExit(f"helm {' '.join(args)} failed: {done.stderr[-1000:]}")

    pulled = Path(tempfile.mkdtemp(dir=world.directory))
    cpu_before, started = _children_cpu(), time.perf_counter()
    helm_run("registry", "login", host, "--username", "AWS", "--password-stdin", "--insecure", stdin=password)
    helm_run("repo", "add", "bench", world.to_upstream.url + "/", "--force-update")
    for name, versions in charts.items():
        for version in versions:
            helm_run("pull", f"bench/{name}", "--version", version)
            helm_run("push", f"{name}-{version}.tgz", f"oci://{host}/bench", "--plain-http")
    seconds, cpu = time.perf_counter() - started, _children_cpu() - cpu_before
    shutil.rmtree(pulled)
    return world.measured(seconds, cpu)


def latency_figures(work: Path, versions: int, helm: str | None, repeats: int = 3) -> list[Figure]:
    """Targets 1, 2 and 4 of issue 16: one process with 8 jobs against 1 job, against its floor,
    and against the seed's recipe. The 8-job runs are repeated and the fastest kept: on a shared
    2-core machine one run's wall time varies by a tenth."""
    upstream = work / "latency-upstream"
    charts = build_upstream(upstream, versions)
    runs: dict[str, Measured] = {}
    with stage(work, "jobs-1", upstream, LATENCY) as world:
        runs["1 job"] = ecrmirror_sync(world, charts, 1)
    tries = []
    for attempt in range(repeats):
        with stage(work, f"jobs-8-{attempt}", upstream, LATENCY) as world:
            tries.append(ecrmirror_sync(world, charts, 8))
            if attempt == 0:
                world.clear()
                runs["8 jobs again"] = ecrmirror_sync(world, charts, 8)
    runs["8 jobs"] = min(tries, key=lambda run: run.seconds)
    cpu_8_jobs = sorted(run.cpu for run in tries)[len(tries) // 2]
    floors = []
    for attempt in range(repeats):
        with stage(work, f"cpu-{attempt}", upstream, 0.0) as world:
            floors.append(ecrmirror_sync(world, charts, 8))
    with stage(work, "start-up", upstream, 0.0) as world:
        (world.directory / "mirror.yaml").write_text(spec_text(world.to_upstream.url + "/", charts))
        _, start_up_cpu = pytest_measured(world.directory, world.emulator, "--collect-only", "mirror.yaml")
    if helm is not None:
        with stage(work, "recipe", upstream, LATENCY) as world:
            runs["recipe"] = recipe(world, charts, helm)
            world.clear()
            runs["recipe again"] = recipe(world, charts, helm, again=True)

    serial, parallel = runs["1 job"], runs["8 jobs"]
    waiting = (parallel.registry + parallel.upstream) * LATENCY / 8
    cpu_bound = min(run.seconds for run in floors)
    floor = max(waiting, cpu_bound)
    speedup = serial.seconds / parallel.seconds
    # CPU of the work, without pytest's start and collection (a --collect-only run's)
    cpu_serial = (serial.cpu - start_up_cpu) / versions
    cpu_jobs = (cpu_8_jobs - start_up_cpu) / versions
    ms = f"{LATENCY * 1000:.0f} ms"
    figures = [
        Figure(
            f"latency sync of {versions} versions, {ms}, 1 job (s)",
            round(serial.seconds, 1),
            "measured",
            None,
        ),
        Figure(
            f"latency sync of {versions} versions, {ms}, 8 jobs (s, best of {repeats})",
            round(parallel.seconds, 1),
            "measured",
            None,
        ),
        Figure(
            "latency sync: floor of waiting, requests x latency / 8 (s)", round(waiting, 1), "measured", None
        ),
        Figure(
            f"latency sync: floor of CPU, 8 jobs without latency (s, best of {repeats})",
            round(cpu_bound, 1),
            "measured",
            None,
        ),
        Figure("latency sync: 8 jobs' speed-up over 1 job", round(speedup, 1), ">= 5", speedup >= 5),
        Figure(
            "latency sync: 8 jobs against the larger floor",
            round(parallel.seconds / floor, 2),
            "<= 1.5",
            parallel.seconds <= 1.5 * floor,
        ),
        Figure(
            "CPU per pushed version, 1 job (ms, beyond start-up)",
            round(cpu_serial * 1000, 1),
            "measured",
            None,
        ),
        Figure(
            "CPU per pushed version, 8 jobs (ms, beyond start-up)",
            round(cpu_jobs * 1000, 1),
            f"<= {cpu_serial * 1100:.1f}",
            cpu_jobs <= 1.1 * cpu_serial,
        ),
    ]
    again = runs["8 jobs again"]
    figures += [
        Figure("up-to-date re-run, 8 jobs: archive downloads", again.downloads, "0", again.downloads == 0),
        Figure("up-to-date re-run, 8 jobs: registry requests", again.registry, "0", again.registry == 0),
    ]
    if helm is None:
        return [*figures, Figure("seed's recipe (helm pull + helm push)", "no helm", "measured", False)]
    first, rerun = runs["recipe"], runs["recipe again"]
    figures.append(
        Figure(
            "ecrmirror 8 jobs' first sync, times faster than the recipe",
            round(first.seconds / parallel.seconds, 1),
            ">= 3",
            first.seconds >= 3 * parallel.seconds,
        )
    )
    return figures + peer_rows(
        {
            "ecrmirror, 1 job": serial,
            "ecrmirror, 8 jobs": parallel,
            "ecrmirror, 8 jobs, re-run": again,
            "seed's recipe": first,
            "seed's recipe, re-run": rerun,
        }
    )


def peer_rows(runs: dict[str, Measured]) -> list[Figure]:
    """Each run's wall time, requests and bytes, measured (the side-by-side table)."""
    rows = []
    for name, run in runs.items():
        rows += [
            Figure(f"{name}: wall time (s)", round(run.seconds, 1), "measured", None),
            Figure(
                f"{name}: requests (registry / API / upstream)",
                f"{run.registry} / {run.api} / {run.upstream}",
                "measured",
                None,
            ),
            Figure(
                f"{name}: archive downloads, bytes on the wire",
                f"{run.downloads}, {run.bytes}",
                "measured",
                None,
            ),
        ]
    return rows
