"""Unattended against a flaky network: a sync through injected faults ends complete and correct."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import boto3
import pytest
from faultproxy import FaultProxy

from conftest import REGISTRY, ChartServer
from ecrmirror.emulator import Emulator

SEED = 20261127
CHARTS = {f"svc{n}": [f"1.{minor}.0" for minor in range(6)] for n in range(9)}  # 54 versions
# Retries meet ECR's own throttling too: its default rate quotas, answered as ECR answers them.
pytestmark = pytest.mark.ecr_emulator(throttle=True)


@pytest.fixture
def proxies(
    chart_server: ChartServer, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[FaultProxy, FaultProxy]]:
    """ecrmirror -> proxy -> emulator (API and registry), and ecrmirror -> proxy -> chart server."""
    for name, versions in CHARTS.items():
        for version in versions:
            chart_server.add(name, version)
    chart_server.publish()
    to_ecr = FaultProxy(emulator.url, rate=0.2, seed=SEED).start()
    to_charts = FaultProxy(chart_server.url.rstrip("/"), rate=0.2, seed=SEED + 1).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", to_ecr.url)
    monkeypatch.setenv("ECRMIRROR_REGISTRY_ENDPOINT", to_ecr.url)
    yield to_ecr, to_charts
    to_ecr.stop()
    to_charts.stop()


@pytest.mark.parametrize("jobs", [1, 8], ids=["1-job", "8-jobs"])
def test_a_sync_through_a_fifth_of_requests_failing_ends_complete_and_correct(
    jobs: int,
    chart_server: ChartServer,
    emulator: Emulator,
    proxies: tuple[FaultProxy, FaultProxy],
    write_spec,
    run,
    record_property,
) -> None:
    to_ecr, to_charts = proxies
    entries = "".join(
        f"  - name: {name}\n    repo: {to_charts.url}/\n    versions: {json.dumps(versions)}\n"
        for name, versions in CHARTS.items()
    )
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  prefix: flaky\n  create_repositories: true\ncharts:\n{entries}"
    )

    synced = run("--sync", "--ecrmirror-retries=8", f"--ecrmirror-jobs={jobs}", "mirror.yaml")
    audited = run("--check-only", "--ecrmirror-retries=8", f"--ecrmirror-jobs={jobs}", "mirror.yaml")

    versions = sum(len(v) for v in CHARTS.values())
    faults = to_ecr.faults + to_charts.faults
    figures = (
        f"fault injection (seed {SEED}, 20% of requests, {jobs} jobs): {versions} versions, "
        f"{to_ecr.requests + to_charts.requests} requests, {sum(faults.values())} faults "
        f"({', '.join(f'{kind} {count}' for kind, count in sorted(faults.items()))}), "
        f"so {sum(faults.values()) - faults['slow']} failed attempts retried; ECR's quotas throttled "
        f"{sum(emulator.app.throttle.throttled.values())} ({dict(emulator.app.throttle.throttled)}); "
        f"sync: {synced.parseoutcomes()}; audit: {audited.parseoutcomes()}"
    )
    record_property("figures", figures)
    print(figures)
    synced.assert_outcomes(passed=versions + len(CHARTS))
    audited.assert_outcomes(passed=versions + len(CHARTS))
    assert set(faults) == {"reset", "500", "502", "503", "429", "slow", "truncate"}
    # every version is there, read straight from the emulator, with the upstream's archive as its layer
    ecr = boto3.client("ecr", region_name="eu-west-1", endpoint_url=emulator.url)
    for chart in chart_server.charts:
        image = ecr.batch_get_image(
            repositoryName=f"flaky/{chart.name}", imageIds=[{"imageTag": chart.version}]
        )
        layers = json.loads(image["images"][0]["imageManifest"])["layers"]
        assert [layer["digest"] for layer in layers] == [f"sha256:{chart.digest}"]
    assert "DIFFERS" not in synced.stdout.str() + audited.stdout.str()


@pytest.mark.parametrize(
    "signal_number", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["ctrl-c", "sigterm", "kill"]
)
def test_a_run_killed_mid_push_leaves_no_tag_and_the_next_run_completes_it(
    chart_server: ChartServer,
    emulator: Emulator,
    write_spec,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    signal_number: int,
) -> None:
    # given a sync slowed down enough to be caught in the middle of a push
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        chart_server.add("app", version)
    chart_server.publish()
    slow = FaultProxy(emulator.url, rate=1.0, seed=SEED, kinds=("slow",), slow_seconds=0.5).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", slow.url)
    monkeypatch.setenv("ECRMIRROR_REGISTRY_ENDPOINT", slow.url)
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        f"charts:\n  - name: app\n    repo: {chart_server.url}\n    versions: ['1.0.0', '1.1.0', '1.2.0']\n"
    )
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "ecrmirror.plugin",
        "-p",
        "no:cacheprovider",
        "--sync",
        "mirror.yaml",
    ]
    process = subprocess.Popen(
        command,
        cwd=pytester.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # As from a terminal: a run started in the background of a non-interactive shell (nohup
        # .ci/run &) inherits an ignored SIGINT, and Python then never raises KeyboardInterrupt.
        preexec_fn=_default_sigint,
    )

    # when it is stopped right after its first blob upload started, before any manifest (jobs
    # upload a version's blobs side by side: by its first blob's PUT, the manifest may be on its way)
    try:
        deadline = time.monotonic() + 60
        while not any(r.method == "POST" and "/blobs/uploads/" in r.path for r in emulator.requests):
            assert time.monotonic() < deadline, "the sync never started uploading"
            time.sleep(0.01)
        process.send_signal(signal_number)
        process.wait(timeout=30)
    finally:
        process.kill()
        slow.stop()
    tags_then = ecr_tags(emulator, "app")

    # then no tag was left half-pushed, and a new run completes the mirror, with no stray tag
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", emulator.url)
    monkeypatch.setenv("ECRMIRROR_REGISTRY_ENDPOINT", emulator.url)
    rerun = subprocess.run(command, cwd=pytester.path, capture_output=True, text=True, timeout=120)

    # (with Ctrl-C, the jobs already pushing stop before their next upload or tag)
    assert tags_then == set()
    assert rerun.returncode == 0, rerun.stdout
    assert ecr_tags(emulator, "app") == {"1.0.0", "1.1.0", "1.2.0"}
    audit = subprocess.run([*command[:-2], "--check-only", "mirror.yaml"], cwd=pytester.path, timeout=120)
    assert audit.returncode == 0


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ecr_tags(emulator: Emulator, repository: str) -> set[str]:
    ecr = boto3.client("ecr", region_name="eu-west-1", endpoint_url=emulator.url)
    try:
        images = ecr.list_images(repositoryName=repository)["imageIds"]
    except ecr.exceptions.RepositoryNotFoundException:
        return set()
    return {image["imageTag"] for image in images if "imageTag" in image}


def test_four_workers_racing_for_the_same_repository_and_versions_end_green(
    chart_server: ChartServer, emulator: Emulator, pytester: pytest.Pytester, run_subprocess, record_property
) -> None:
    # given two specs that mirror the same eight versions into the same repository
    versions = [f"2.{minor}.0" for minor in range(8)]
    for version in versions:
        chart_server.add("shared", version)
    chart_server.publish()
    for spec in ("team-a", "team-b"):
        (pytester.path / f"{spec}.yaml").write_text(
            f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
            f"charts:\n  - name: shared\n    repo: {chart_server.url}\n    versions: {json.dumps(versions)}\n"
        )

    # when four workers take the items as they come, retrying as in production: against ECR's
    # rate quotas, the tests' 0.05 s backoff retries faster than the buckets refill
    result = run_subprocess(
        "-p", "xdist.plugin", "-n", "4", "--dist", "load", "--sync", "-o", "ecrmirror_retry_backoff=0.5", "."
    )

    # then every item passes however the races fell, and each version is there once
    throttled = emulator.app.throttle.throttled
    record_property(
        "figures", f"4 workers: ECR's quotas throttled {sum(throttled.values())} ({dict(throttled)})"
    )
    result.assert_outcomes(passed=18)
    result.stdout.fnmatch_lines(["16 versions: * pushed, * present, 0 failed; *"])
    assert ecr_tags(emulator, "shared") == set(versions)


@pytest.mark.parametrize(
    ("broken", "kind", "message"),
    [
        (
            r"/bad-1\.0\.0\.tgz",
            "503",
            [
                f"UPSTREAM ERROR bad 1.0.0: {REGISTRY}/bad:1.0.0",
                "cannot download http://*/bad-1.0.0.tgz: HTTP 503 * after 5 attempts*",
            ],
        ),
        (
            r"/v2/bad/manifests/",
            "503",
            [
                f"RETRIES EXHAUSTED bad 1.0.0: {REGISTRY}/bad:1.0.0",
                "manifest PUT for bad:1.0.0 failed after 5 attempts: HTTP 503*",
            ],
        ),
        (
            r"/v2/bad/manifests/",
            "429",
            [
                f"RETRIES EXHAUSTED bad 1.0.0: {REGISTRY}/bad:1.0.0",
                "manifest PUT for bad:1.0.0 failed after 5 attempts: HTTP 429 * (throttled: fewer workers "
                "(-n), a longer ecrmirror_retry_backoff or more --ecrmirror-retries *)",
            ],
        ),
    ],
    ids=["upstream archive", "registry manifest", "throttled manifest"],
)
def test_a_step_that_keeps_failing_fails_only_its_item_naming_the_attempts(
    chart_server: ChartServer,
    emulator: Emulator,
    write_spec,
    run,
    monkeypatch: pytest.MonkeyPatch,
    broken: str,
    kind: str,
    message: list[str],
) -> None:
    chart_server.add("good", "1.0.0")
    chart_server.add("bad", "1.0.0")
    chart_server.publish()
    to_ecr = FaultProxy(emulator.url, rate=1.0, seed=SEED, kinds=(kind,), only=broken).start()
    to_charts = FaultProxy(
        chart_server.url.rstrip("/"), rate=1.0, seed=SEED, kinds=(kind,), only=broken
    ).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", to_ecr.url)
    monkeypatch.setenv("ECRMIRROR_REGISTRY_ENDPOINT", to_ecr.url)
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\ncharts:\n"
        f"  - name: bad\n    repo: {to_charts.url}/\n    versions: ['1.0.0']\n"
        f"  - name: good\n    repo: {to_charts.url}/\n    versions: ['1.0.0']\n"
    )
    try:
        result = run("--sync", "-v", "mirror.yaml")
    finally:
        to_ecr.stop()
        to_charts.stop()

    result.assert_outcomes(passed=3, failed=1)  # both repositories, and good 1.0.0
    result.stdout.fnmatch_lines(["mirror.yaml::good::1.0.0 PUSHED*", *message])
    assert ecr_tags(emulator, "bad") == set()
