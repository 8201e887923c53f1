"""Unattended against a flaky network: a sync through injected faults ends complete and correct."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from faultproxy import FaultProxy

from conftest import REGISTRY, ChartServer
from ecrmirror.emulator import Emulator

SEED = 20261127
CHARTS = {f"svc{n}": [f"1.{minor}.0" for minor in range(6)] for n in range(9)}  # 54 versions


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


def test_a_sync_through_a_fifth_of_requests_failing_ends_complete_and_correct(
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

    synced = run("--sync", "--ecrmirror-retries=8", "mirror.yaml")
    audited = run("--check-only", "--ecrmirror-retries=8", "mirror.yaml")

    versions = sum(len(v) for v in CHARTS.values())
    faults = to_ecr.faults + to_charts.faults
    figures = (
        f"fault injection (seed {SEED}, 20% of requests): {versions} versions, "
        f"{to_ecr.requests + to_charts.requests} requests, {sum(faults.values())} faults "
        f"({', '.join(f'{kind} {count}' for kind, count in sorted(faults.items()))}), "
        f"so {sum(faults.values()) - faults['slow']} failed attempts retried; "
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
