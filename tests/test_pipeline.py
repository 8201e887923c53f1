"""The README's consuming pipeline, run: its rehearsal and audit jobs under gitlab-ci-local.

gitlab-ci-local (shell executor) runs the jobs of templates/ecrmirror.gitlab-ci.yml as the
README's `.gitlab-ci.yml` includes them, in a project of their own: the rehearsal against the
offline emulator in a merge request, the audit against the emulator with IAM enforced, its role
assumed with a job token (gitlab-ci-local has no id_tokens: the token comes as a variable). The
JUnit files are then read as GitLab reads them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from gitlab import gitlab_rows
from test_oidc import ISSUER, id_token
from tools import require_tool

from conftest import ChartServer
from ecrmirror.emulator import Emulator
from ecrmirror.emulator.iam import ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
AUDIT_ROLE = "arn:aws:iam::123456789012:role/chart-mirror-audit"


def readme_block(marker: str, language: str) -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(marker) :]
    start = section.index(f"```{language}\n") + len(f"```{language}\n")
    return section[start : section.index("\n```", start)]


def git(project: Path, *args: str) -> str:
    return subprocess.run(
        [require_tool("git", "install git"), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def consumer_project(tmp_path: Path) -> Path:
    """A project with the README's .gitlab-ci.yml, including the template from this checkout, and
    ecrmirror as installed for this test run."""
    project = tmp_path / "chart-mirror"
    (project / "templates").mkdir(parents=True)
    shutil.copy(ROOT / "templates" / "ecrmirror.gitlab-ci.yml", project / "templates")
    pipeline = yaml.safe_load(readme_block("<!-- consumer pipeline -->", "yaml"))
    include = pipeline["include"][0]
    pipeline["include"] = [{"local": "templates/ecrmirror.gitlab-ci.yml", "inputs": include["inputs"]}]
    pipeline["include"][0]["inputs"]["install"] = "true"
    (project / ".gitlab-ci.yml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    return project


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, str]:
    """A project as the README describes it: its .gitlab-ci.yml, and specs/ with a local chart
    repository. Its default branch mirrors hello 0.1.0 and 0.2.0; the merge request's commit
    drops 0.1.0 and adds greeter 2.3.4. Returns the project and the merge request's base."""
    project = consumer_project(tmp_path)
    shutil.copytree(ROOT / "examples" / "charts", project / "specs" / "charts")
    spec = (ROOT / "examples" / "mirror.yaml").read_text()
    (project / "specs" / "mirror.yaml").write_text(
        spec.replace('["0.1.0", "0.2.0", "1.0.0-rc.1", "1.0.0+build.5"]', '["0.1.0", "0.2.0"]').replace(
            '  - name: greeter\n    repo: charts/\n    versions: ["2.3.4"]\n', ""
        )
    )
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "the default branch")
    base = git(project, "rev-parse", "HEAD")
    (project / "specs" / "mirror.yaml").write_text(
        spec.replace('["0.1.0", "0.2.0", "1.0.0-rc.1", "1.0.0+build.5"]', '["0.2.0"]')
    )
    git(project, "commit", "-q", "-am", "the merge request")
    return project, base


def gitlab_ci_local(project: Path, job: str, *variables: str) -> subprocess.CompletedProcess[str]:
    binary = require_tool("gitlab-ci-local", "run .ci/install-gitlab-ci-local (needs npm and rsync)")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTEST_", "ECRMIRROR_"))}
    # The jobs' `pytest` is this run's, with ecrmirror installed; plugins load as for a user.
    environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ.get('PATH', '')}"
    environ["HOME"] = str(project.parent / "home")
    arguments = [binary, "--force-shell-executor", "--shell-isolation", "--concurrency", "1", "--no-color"]
    arguments += [f"--variable={variable}" for variable in variables]
    return subprocess.run(
        [*arguments, job], cwd=project, env=environ, capture_output=True, text=True, timeout=600, check=False
    )


def admin(service: str, emulator: Emulator) -> Any:
    return boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=emulator.url,
        aws_access_key_id=ADMIN_ACCESS_KEY,
        aws_secret_access_key=ADMIN_SECRET_KEY,
    )


def test_the_rehearsal_then_the_audit_as_a_merge_request_and_a_schedule_run_them(
    project: tuple[Path, str], emulator: Emulator
) -> None:
    directory, base = project
    artifacts = directory / ".gitlab-ci-local" / "artifacts"

    # a merge request's rehearsal: no AWS at all
    rehearsal = gitlab_ci_local(
        directory,
        "ecrmirror-rehearsal",
        "CI_PIPELINE_SOURCE=merge_request_event",
        f"CI_MERGE_REQUEST_DIFF_BASE_SHA={base}",
    )

    assert rehearsal.returncode == 0, rehearsal.stdout[-3000:]
    # as the sync role's account, so that a spec naming another account would fail here
    assert "against the offline emulator at http://127.0.0.1:" in rehearsal.stdout
    assert ", as account 123456789012" in rehearsal.stdout
    expanded = yaml.safe_load((directory / ".gitlab-ci-local" / "expanded-gitlab-ci.yml").read_text())
    published = expanded["ecrmirror-rehearsal"]["artifacts"]
    assert published["expose_as"] == "mirror plan"
    assert "ecrmirror-plan.md" in published["paths"]
    plan = (artifacts / "ecrmirror-rehearsal" / "ecrmirror-plan.md").read_text().splitlines()
    assert plan[0] == "# ecrmirror plan: sync against the offline emulator"
    assert "- Adds: greeter 2.3.4" in plan
    assert "- Removes: hello 0.1.0 (ecrmirror deletes nothing from ECR)" in plan
    rows = gitlab_rows(artifacts / "ecrmirror-rehearsal" / "ecrmirror.xml")
    assert sorted(rows) == [
        "greeter 2.3.4",
        "hello 0.2.0",
        "replication rule",
        "repository helm/greeter",
        "repository helm/greeter in eu-central-1",
        "repository helm/hello",
        "repository helm/hello in eu-central-1",
    ]
    assert {(row["classname"], row["file"], row["status"]) for row in rows.values()} == {
        ("specs/mirror.yaml", "specs/mirror.yaml", "success")
    }

    # given the audit role, trusting the README's way, allowed what the rehearsal's policy says
    audit_policy = (artifacts / "ecrmirror-rehearsal" / "iam-policy-audit.json").read_text()
    trust = readme_block("<!-- trust policy: sync role -->", "json")
    iam = admin("iam", emulator)
    iam.create_open_id_connect_provider(
        Url=ISSUER, ClientIDList=["sts.amazonaws.com"], ThumbprintList=["0" * 40]
    )
    iam.create_role(RoleName="chart-mirror-audit", AssumeRolePolicyDocument=trust)
    iam.put_role_policy(RoleName="chart-mirror-audit", PolicyName="ecrmirror", PolicyDocument=audit_policy)
    # and ECR holding hello 0.2.0 but not greeter, pushed by the administrator
    sync = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "ecrmirror.plugin",
            "-p",
            "no:cacheprovider",
            "specs/mirror.yaml",
            "--sync",
            "-k",
            "not greeter",
        ],
        cwd=directory,
        env={**os.environ, **emulator.environ(), "ECR": REGISTRY},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert sync.returncode == 0, sync.stdout[-3000:]
    emulator.app.iam.enforce = True
    try:
        # when the schedule's audit runs, as the role, with a token for the default branch
        audit = gitlab_ci_local(
            directory,
            "ecrmirror-audit",
            "CI_PIPELINE_SOURCE=schedule",
            f"ECRMIRROR_OIDC_TOKEN={id_token('project_path:platform/chart-mirror:ref_type:branch:ref:main')}",
            f"AWS_ENDPOINT_URL_ECR={emulator.url}",
            f"AWS_ENDPOINT_URL_STS={emulator.url}",
            f"ECRMIRROR_REGISTRY_ENDPOINT={emulator.url}",
        )
    finally:
        emulator.app.iam.enforce = False

    # then its two shards fail exactly greeter's repository and version, reading as GitLab shows them
    assert audit.returncode != 0
    shards = sorted(path for path in artifacts.iterdir() if path.name.startswith("ecrmirror-audit"))
    assert len(shards) == 2, [path.name for path in artifacts.iterdir()]  # "ecrmirror-audit: [1/2]", [2/2]
    audited: dict[str, dict[str, str]] = {}
    for shard in shards:
        audited.update(gitlab_rows(shard / "ecrmirror.xml"))
    failing = {name: row for name, row in audited.items() if row["status"] != "success"}
    assert sorted(failing) == [
        "greeter 2.3.4",
        "repository helm/greeter",
        "repository helm/greeter in eu-central-1",
    ]
    assert failing["greeter 2.3.4"]["file"] == "specs/mirror.yaml"
    assert (
        failing["greeter 2.3.4"]["body"].splitlines()[0]
        == f"MISSING greeter 2.3.4: {REGISTRY}/helm/greeter:2.3.4"
    )
    assert sorted(name for name, row in audited.items() if row["status"] == "success") == [
        "hello 0.2.0",
        "replication rule",
        "repository helm/hello",
        "repository helm/hello in eu-central-1",
    ]
    assert json.loads(audit_policy)["Statement"], "the audit ran with an empty policy"
    assert {r.action for r in emulator.requests if r.kind == "sts"} == {"AssumeRoleWithWebIdentity"}


def test_the_template_runs_a_spec_that_reads_gitops_manifests_unchanged(
    tmp_path: Path, chart_server: ChartServer, emulator: Emulator
) -> None:
    # given a project as the README describes it, whose only spec reads a Flux HelmRelease
    chart_server.add("hello", "0.2.0")
    chart_server.publish()
    project = consumer_project(tmp_path)
    (project / "specs").mkdir()
    (project / "specs" / "gitops.yaml").write_text(
        "target:\n  registry: ${ECR:-123456789012.dkr.ecr.eu-west-1.amazonaws.com}\n  prefix: helm\n"
        "  create_repositories: true\ngitops:\n  - ../clusters\n"
    )
    (project / "clusters").mkdir()
    (project / "clusters" / "hello.yaml").write_text(
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\n"
        f"metadata: {{name: charts, namespace: flux-system}}\nspec: {{url: '{chart_server.url}'}}\n---\n"
        "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata: {name: hello, namespace: apps}\n"
        "spec:\n  chart:\n    spec:\n      chart: hello\n      version: '0.2.0'\n"
        "      sourceRef: {kind: HelmRepository, name: charts, namespace: flux-system}\n"
    )
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "the default branch")

    # when the merge request's rehearsal job runs
    rehearsal = gitlab_ci_local(project, "ecrmirror-rehearsal", "CI_PIPELINE_SOURCE=merge_request_event")

    # then it mirrors the HelmRelease's chart, reported at the HelmRelease
    assert rehearsal.returncode == 0, rehearsal.stdout[-3000:]
    rows = gitlab_rows(project / ".gitlab-ci-local" / "artifacts" / "ecrmirror-rehearsal" / "ecrmirror.xml")
    assert rows["hello 0.2.0"]["file"] == "clusters/hello.yaml"
    assert rows["hello 0.2.0"]["status"] == "success"
