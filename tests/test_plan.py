"""--ecrmirror-plan: the Markdown page a merge request links, with what its specs add and remove."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from tools import require_tool

from conftest import REGISTRY, ChartServer
from ecrmirror.emulator import Emulator


def spec(server: ChartServer, versions: list[str]) -> str:
    return (
        f"target:\n  registry: {REGISTRY}\n  prefix: helm\n  create_repositories: true\n"
        f"charts:\n  - name: gitlab\n    repo: {server.url}\n    versions: {json.dumps(versions)}\n"
    )


def git(directory: Path, *args: str) -> str:
    done = subprocess.run(
        [require_tool("git", "install git"), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=directory,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def upstream(chart_server: ChartServer) -> ChartServer:
    for version in ("7.1.1", "7.1.2", "7.1.3"):
        chart_server.add("gitlab", version)
    chart_server.publish()
    return chart_server


@pytest.fixture
def merge_request(upstream: ChartServer, write_spec, pytester: pytest.Pytester) -> str:
    """A project whose target branch mirrors gitlab 7.1.1 and 7.1.2; the merge request's spec
    drops 7.1.1 and adds 7.1.3 and 9.9.9 (which upstream does not have). Returns the base commit."""
    git(pytester.path, "init", "-q")
    write_spec(spec(upstream, ["7.1.1", "7.1.2"]))
    git(pytester.path, "add", "mirror.yaml")
    git(pytester.path, "commit", "-q", "-m", "base")
    base = git(pytester.path, "rev-parse", "HEAD")
    write_spec(spec(upstream, ["7.1.2", "7.1.3", "9.9.9"]))
    return base


def test_a_merge_request_pipeline_s_plan_says_what_it_adds_pushes_and_why_one_failed(
    merge_request: str,
    emulator: Emulator,
    run_subprocess,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CI_MERGE_REQUEST_DIFF_BASE_SHA", merge_request)  # as GitLab sets it

    result = run_subprocess("-p", "xdist.plugin", "-n", "2", "--sync", "--ecrmirror-plan=out/plan.md", ".")

    result.assert_outcomes(passed=3, failed=1)
    plan = (pytester.path / "out" / "plan.md").read_text()
    assert plan.startswith("# ecrmirror plan: sync against http://127.0.0.1:")
    lines = plan.splitlines()
    assert "3 chart versions: 2 pushed, 1 failed items; " in plan
    assert f"Compared with the merge request's base, {merge_request[:12]}." in lines
    assert "## mirror.yaml" in lines
    assert "- Adds: gitlab 7.1.3, gitlab 9.9.9" in lines
    assert "- Removes: gitlab 7.1.1 (ecrmirror deletes nothing from ECR)" in lines
    assert any(
        line.startswith("- Pushed (") and line.endswith("bytes): gitlab 7.1.2, gitlab 7.1.3")
        for line in lines
    )
    assert f"  into `{REGISTRY}/helm/gitlab`" in lines
    failure = next(line for line in lines if line.startswith("- **NOT UPSTREAM** gitlab 9.9.9: "))
    # Upstream text is never a link in the plan: `&#58;` shows ':' without making one.
    assert "gitlab 9.9.9 is not in http&#58;//127.0.0.1:" in failure
    assert "nearest versions there: 7.1.2, 7.1.3" in failure


def test_an_audit_plan_lists_what_a_sync_would_push_once(
    upstream: ChartServer, emulator: Emulator, write_spec, run, pytester: pytest.Pytester
) -> None:
    write_spec(spec(upstream, ["7.1.1"]))
    run("--sync", "--ecrmirror-plan=sync.md", "mirror.yaml").assert_outcomes(passed=2)
    assert "- Repositories created: helm/gitlab" in (pytester.path / "sync.md").read_text().splitlines()
    write_spec(spec(upstream, ["7.1.1", "7.1.2"]))

    run("--check-only", "--ecrmirror-plan=plan.md", "mirror.yaml").assert_outcomes(passed=2, failed=1)

    lines = (pytester.path / "plan.md").read_text().splitlines()
    assert lines[0] == "# ecrmirror plan: audit (read-only) against " + emulator.url
    assert "2 chart versions: 1 to push, 1 failed items." in lines
    assert "- Would push: gitlab 7.1.2" in lines
    assert "- Already in ECR: gitlab 7.1.1" in lines
    assert not any("failed:" in line for line in lines)  # the missing version is listed once, above


def test_a_base_that_is_not_fetched_is_said_in_the_plan_and_fails_nothing(
    merge_request: str, emulator: Emulator, run, pytester: pytest.Pytester
) -> None:
    result = run(
        "--sync", "--ecrmirror-plan=plan.md", "--ecrmirror-plan-base=0123456789abcdef", "mirror.yaml"
    )

    result.assert_outcomes(passed=3, failed=1)  # only 9.9.9, which upstream does not have
    plan = (pytester.path / "plan.md").read_text()
    assert "Compared with the merge request's base, 0123456789ab: git cat-file -e failed" in plan
    assert "fetch it (GIT_DEPTH: 0, or git fetch origin $CI_MERGE_REQUEST_DIFF_BASE_SHA)" in plan
