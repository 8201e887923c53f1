"""The specs this repository ships: they parse, and list exactly what the seed mirrored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecrmirror.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
SEED_VERSIONS = [
    "7.1.1",
    "7.1.2",
    "7.3.0",
    "7.3.5",
    "7.6.0",
    "7.7.0",
    "7.7.3",
    "7.8.1",
    "7.8.2",
    "7.9.1",
    "7.9.2",
]
ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def test_gitlab_spec_mirrors_the_seed_versions_into_the_gitlab_repository() -> None:
    spec = load_spec(ROOT / "specs" / "gitlab.yaml", environ={"ECR": ECR})

    (chart,) = spec.charts
    assert (chart.name, chart.repo) == ("gitlab", "https://charts.gitlab.io/")
    assert [v.version for v in chart.versions] == SEED_VERSIONS
    assert spec.target.registry.host == ECR
    assert spec.target.repository_for("gitlab") == "gitlab"
    assert spec.target.repository.image_tag_mutability == "IMMUTABLE"
    assert spec.target.replication is not None
    assert [d.region for d in spec.target.replication.destinations] == ["eu-central-1"]


def test_sync_collects_the_specs_directory_by_default(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECR", ECR)
    pytester.makeini("[pytest]\ntestpaths = tests\n")
    (pytester.path / "specs").mkdir()
    (pytester.path / "specs" / "gitlab.yaml").write_text((ROOT / "specs" / "gitlab.yaml").read_text())

    result = pytester.runpytest_inprocess("-p", "ecrmirror.plugin", "--sync", "--collect-only", "-q")

    result.stdout.fnmatch_lines(
        ["specs/gitlab.yaml::repository::gitlab", "specs/gitlab.yaml::replication"]
        + [f"specs/gitlab.yaml::gitlab::{v}" for v in SEED_VERSIONS]
    )


def test_examples_spec_is_valid_without_any_variable() -> None:
    spec = load_spec(ROOT / "examples" / "mirror.yaml", environ={})

    assert sum(len(c.versions) for c in spec.charts) == 5


def test_the_readme_shows_the_policy_that_gitlab_spec_really_needs(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### The IAM policy") :]
    start = section.index("```json\n") + len("```json\n")
    shown = json.loads(section[start : section.index("\n```", start)])
    monkeypatch.setenv("ECR", ECR)
    monkeypatch.delenv("ECR_REPLICA_REGION", raising=False)
    (pytester.path / "specs").mkdir()
    (pytester.path / "specs" / "gitlab.yaml").write_text((ROOT / "specs" / "gitlab.yaml").read_text())

    result = pytester.runpytest_inprocess(
        "-p", "ecrmirror.plugin", "specs", "--ecrmirror-policy=sync", "--ecrmirror-policy-file=policy.json"
    )

    assert result.ret == 0, result.stdout.str()
    assert json.loads((pytester.path / "policy.json").read_text()) == shown
