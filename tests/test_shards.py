"""--ecrmirror-shard=K/N splits a run across GitLab jobs: disjoint shares, whole repositories, all items."""

from __future__ import annotations

import pytest

from conftest import REGISTRY, ChartServer
from ecrmirror.emulator import Emulator

CHARTS = {"alpha": 5, "beta": 1, "gamma": 3, "delta": 2, "epsilon": 4, "zeta": 1, "eta": 2}


@pytest.fixture
def spec(chart_server: ChartServer, write_spec) -> None:
    entries = ""
    for name, count in CHARTS.items():
        versions = [f"1.{n}.0" for n in range(count)]
        for version in versions:
            chart_server.add(name, version)
        entries += f"  - name: {name}\n    repo: {chart_server.url}\n    versions: {versions}\n"
    chart_server.publish()
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        f"  replication:\n    regions: [us-east-1]\ncharts:\n{entries}"
    )


def node_ids(result: pytest.RunResult) -> set[str]:
    return {line for line in result.outlines if line.startswith("mirror.yaml::")}


@pytest.mark.parametrize("total", [1, 3, 4])
def test_shards_are_disjoint_cover_every_item_and_keep_repositories_whole(
    spec: None, emulator: Emulator, run, total: int
) -> None:
    everything = node_ids(run("--sync", "--collect-only", "-q", "mirror.yaml"))
    shares = [
        node_ids(run("--sync", "--collect-only", "-q", f"--ecrmirror-shard={k}/{total}", "mirror.yaml"))
        for k in range(1, total + 1)
    ]

    assert set().union(*shares) == everything
    assert sum(len(share) for share in shares) == len(everything)  # disjoint
    for share in shares:
        for name in CHARTS:
            in_share = {i for i in share if i.startswith(f"mirror.yaml::{name}::")}
            if in_share or f"mirror.yaml::repository::{name}" in share:
                assert f"mirror.yaml::repository::{name}" in share
                assert len(in_share) == CHARTS[name]  # all of the repository's versions
    assert max(map(len, shares)) - min(map(len, shares)) <= max(CHARTS.values()) + 1


def test_each_shard_syncs_its_share_and_together_they_mirror_everything(
    spec: None, emulator: Emulator, run
) -> None:
    for k in (1, 2):
        run("--sync", f"--ecrmirror-shard={k}/2", "mirror.yaml")

    result = run("--check-only", "mirror.yaml")

    # each repository and its replica, the rule, and every version
    result.assert_outcomes(passed=2 * len(CHARTS) + 1 + sum(CHARTS.values()))


@pytest.mark.parametrize("value", ["3/2", "0/2", "one/two", "2"])
def test_a_bad_shard_is_a_usage_error(spec: None, run, value: str) -> None:
    result = run("--sync", f"--ecrmirror-shard={value}", "mirror.yaml")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*write K/N with 1 <= K <= N*"])
