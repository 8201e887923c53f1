"""Indexes kept across runs in a cache directory and revalidated; under xdist, each index and each
batched ECR question fetched once per run, not once per worker."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from conftest import REGISTRY, ChartServer
from ecrmirror.emulator import Emulator


@pytest.fixture
def upstream(chart_server: ChartServer, write_spec) -> ChartServer:
    versions = ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0"]
    for version in versions:
        chart_server.add("app", version)
    chart_server.publish()
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        f"charts:\n  - name: app\n    repo: {chart_server.url}\n    versions: '>=1.0.0'\n"
    )
    return chart_server


def test_a_kept_index_is_revalidated_and_used_when_not_modified(
    upstream: ChartServer, emulator: Emulator, run, pytester: pytest.Pytester
) -> None:
    first = run("--sync", "--collect-only", "-q", "--ecrmirror-cache-dir=index-cache", "mirror.yaml")
    index = upstream.directory / "index.yaml"
    stat = index.stat()
    # the upstream's file now holds something unreadable, but claims not to have changed
    index.write_text("entries: [broken")
    os.utime(index, (stat.st_atime, stat.st_mtime))

    second = run("--sync", "--collect-only", "-q", "--ecrmirror-cache-dir=index-cache", "mirror.yaml")

    assert [line for line in first.outlines if "::app::" in line] == [
        line for line in second.outlines if "::app::" in line
    ]
    assert len([line for line in second.outlines if "::app::" in line]) == 6
    assert upstream.requests == ["/index.yaml", "/index.yaml"]  # the second answered 304
    assert list((pytester.path / "index-cache").glob("*.json"))


def test_without_the_cache_the_same_index_is_read_again(
    upstream: ChartServer, emulator: Emulator, run
) -> None:
    run("--sync", "--collect-only", "-q", "mirror.yaml")
    index = upstream.directory / "index.yaml"
    stat = index.stat()
    index.write_text("entries: [broken")
    os.utime(index, (stat.st_atime, stat.st_mtime))

    result = run("--sync", "--collect-only", "-q", "mirror.yaml")

    result.stdout.fnmatch_lines(["*the index is not valid YAML or JSON*"])


def test_under_xdist_an_index_is_downloaded_and_parsed_once_per_run(
    upstream: ChartServer, emulator: Emulator, run_subprocess
) -> None:
    result = run_subprocess("-p", "xdist.plugin", "-n", "2", "--sync", "mirror.yaml")

    result.assert_outcomes(passed=7)
    assert upstream.requests.count("/index.yaml") == 1


def test_under_xdist_ecr_is_asked_once_per_run_not_once_per_worker(
    upstream: ChartServer, emulator: Emulator, run, run_subprocess, write_spec
) -> None:
    for version in ("2.0.0", "2.1.0", "2.2.0"):
        upstream.add("web", version)
    upstream.publish()
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        f"charts:\n  - name: app\n    repo: {upstream.url}\n    versions: '>=1.0.0'\n"
        f"  - name: web\n    repo: {upstream.url}\n    versions: '>=2.0.0'\n"
    )
    run("--sync", "mirror.yaml").assert_outcomes(passed=11)
    emulator.app.requests.clear()
    run("--check-only", "mirror.yaml").assert_outcomes(passed=11)
    serial = Counter(r.action for r in emulator.requests if r.kind == "api")
    emulator.app.requests.clear()

    run_subprocess("-p", "xdist.plugin", "-n", "3", "--check-only", "mirror.yaml").assert_outcomes(passed=11)

    assert serial == {"DescribeImages": 2, "BatchGetImage": 2, "DescribeRepositories": 1}
    assert Counter(r.action for r in emulator.requests if r.kind == "api") == serial


def test_a_damaged_cache_is_not_used_but_read_again(
    upstream: ChartServer, emulator: Emulator, run, pytester: pytest.Pytester
) -> None:
    run("--sync", "--collect-only", "-q", "--ecrmirror-cache-dir=index-cache", "mirror.yaml")
    for kept in (pytester.path / "index-cache").glob("*.json"):
        kept.write_text("{not json")

    result = run("--sync", "--collect-only", "-q", "--ecrmirror-cache-dir=index-cache", "mirror.yaml")

    assert len([line for line in result.outlines if "::app::" in line]) == 6
    result.stdout.no_fnmatch_line("*Traceback*")


@pytest.mark.parametrize("what", ["the directory", "an entry"])
def test_a_cache_others_can_write_is_refused_before_anything_is_read(
    what: str, upstream: ChartServer, emulator: Emulator, run, pytester: pytest.Pytester
) -> None:
    # given a kept cache, then made writable by anyone (a shared runner's cache, say)
    run("--sync", "--collect-only", "-q", "--ecrmirror-cache-dir=index-cache", "mirror.yaml")
    cache = pytester.path / "index-cache"
    made_shared = cache if what == "the directory" else next(cache.glob("*.meta.json"))
    made_shared.chmod(0o777 if made_shared.is_dir() else 0o666)
    upstream.requests.clear()

    result = run("--sync", "--ecrmirror-cache-dir=index-cache", "mirror.yaml")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"*--ecrmirror-cache-dir: {made_shared} can be written by others (mode *w?)."
            " Kept indexes decide what a sync trusts*chmod -R go-w*"
        ]
    )
    assert upstream.requests == []
    assert emulator.requests == []
