"""Specs that take their charts from Flux and Argo CD manifests: collected as Flux and Argo would pick
the versions, synced into the emulator, reported at the manifest that asks.

The upstreams are real: a local Helm repository over HTTP, and Debian's docker-registry holding
charts pushed by real helm. Which version each object picks is checked against what Flux's and
Argo CD's documentation says of it (tests/test_gitops_reading.py holds the reading rules).
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import boto3
import pytest
from chartfactory import package_chart
from ecrclient import become_user, printed_policy
from ociregistry import DockerRegistry

from conftest import REGISTRY, ChartServer
from ecrmirror.emulator import Emulator
from ecrmirror.spec import parse_spec


def helm_push(helm: list[str], directory: Path, name: str, version: str, destination: str) -> None:
    archive = package_chart(directory, name, version).path
    pushed = subprocess.run(
        [*helm, "push", str(archive), destination, "--plain-http"], capture_output=True, text=True, timeout=60
    )
    assert pushed.returncode == 0, pushed.stderr


FLUX = """\
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata: {name: podinfo, namespace: flux-system}
spec: {url: "HTTP_REPO", interval: 10m}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata: {name: charts, namespace: flux-system}
spec: {type: oci, url: "oci://OCI_HOST/SPACE/charts", interval: 10m}
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: podinfo, namespace: apps}
spec:
  interval: 10m
  chart:
    spec:
      chart: podinfo
      version: ">=6.0.0 <7.0.0"
      sourceRef: {kind: HelmRepository, name: podinfo, namespace: flux-system}
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: podinfo-edge, namespace: flux-system}
spec:
  chart:
    spec:
      chart: podinfo
      sourceRef: {kind: HelmRepository, name: podinfo}
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: redis, namespace: apps}
spec:
  chart:
    spec:
      chart: redis
      version: "REDIS_VERSION"
      sourceRef: {kind: HelmRepository, name: charts, namespace: flux-system}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: OCIRepository
metadata: {name: argo-cd, namespace: apps}
spec:
  url: oci://OCI_HOST/SPACE/argo-helm/argo-cd
  ref: {semver: ">=7.0.0"}
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: argo-cd, namespace: apps}
spec:
  chartRef: {kind: OCIRepository, name: argo-cd}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: platform, namespace: flux-system}
spec: {url: "https://git.example.com/platform.git", ref: {branch: main}}
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: internal, namespace: apps}
spec:
  chart:
    spec:
      chart: ./charts/internal
      sourceRef: {kind: GitRepository, name: platform, namespace: flux-system}
"""

ARGO = """\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: web, namespace: argocd}
spec:
  source: {repoURL: "HTTP_REPO", chart: nginx, targetRevision: "15.*"}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: cache, namespace: argocd}
spec:
  source: {repoURL: OCI_HOST/SPACE/charts, chart: redis, targetRevision: "17.4.0"}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: argo, namespace: argocd}
spec:
  source: {repoURL: oci://OCI_HOST/SPACE/argo-helm/argo-cd, targetRevision: "7.7.0", path: .}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: multi, namespace: argocd}
spec:
  sources:
    - {repoURL: "https://git.example.com/values.git", targetRevision: main, ref: values}
    - repoURL: "HTTP_REPO"
      chart: podinfo
      targetRevision: "6.5.0"
      helm: {valueFiles: [$values/podinfo.yaml]}
"""

# What Flux and Argo CD pick from these upstreams, by their documentation:
# (chart, version, who asks). Flux: an exact version is a pin, `*` or none the newest stable, else
# a Masterminds range, newest match, prereleases only if the range has one (helmcharts.md).
# Argo: a version semver parses is a pin, else a range over the repository's versions
# (tracking_strategies.md); oci:// names the chart itself (oci.md).
EXPECTED = {
    ("podinfo", "6.5.0"): {"HelmRelease apps/podinfo", "Application argocd/multi"},  # >=6 <7: not 6.5.1-rc.1
    ("podinfo", "7.0.0"): {"HelmRelease flux-system/podinfo-edge"},  # no version: the newest stable
    ("redis", "17.3.1"): {"HelmRelease apps/redis"},  # a pin, not the newest
    ("redis", "17.4.0"): {"Application argocd/cache"},  # a scheme-less registry: OCI
    ("argo-cd", "7.8.0"): {"HelmRelease apps/argo-cd"},  # OCIRepository ref.semver: the newest match
    ("argo-cd", "7.7.0"): {"Application argocd/argo"},  # an oci:// repoURL is the chart itself
    ("nginx", "15.10.0"): {"Application argocd/web"},  # 15.*: the newest 15
}


@pytest.fixture
def tree(
    chart_server: ChartServer,
    docker_registry: DockerRegistry,
    helm: list[str],
    pytester: pytest.Pytester,
    tmp_path: Path,
) -> Path:
    for name, version in (
        ("podinfo", "6.4.0"),
        ("podinfo", "6.5.0"),
        ("podinfo", "6.5.1-rc.1"),
        ("podinfo", "7.0.0"),
    ):
        chart_server.add(name, version)
    for version in ("15.9.0", "15.10.0"):
        chart_server.add("nginx", version)
    chart_server.publish()
    space = tmp_path.name.lower()
    for version in ("17.3.1", "17.4.0", "17.5.0"):
        helm_push(helm, tmp_path / "built", "redis", version, f"oci://{docker_registry.host}/{space}/charts")
    for version in ("7.7.0", "7.8.0"):
        helm_push(
            helm, tmp_path / "built", "argo-cd", version, f"oci://{docker_registry.host}/{space}/argo-helm"
        )
    gitops = pytester.path / "clusters"
    (gitops / "flux").mkdir(parents=True)
    (gitops / "argo").mkdir()
    fill = {"HTTP_REPO": chart_server.url, "OCI_HOST": docker_registry.host, "SPACE": space}
    flux, argo = FLUX, ARGO
    for key, value in fill.items():
        flux, argo = flux.replace(key, value), argo.replace(key, value)
    (gitops / "flux" / "apps.yaml").write_text(flux.replace("REDIS_VERSION", "17.3.1"))
    (gitops / "argo" / "apps.yaml").write_text(argo)
    (pytester.path / "mirror.yaml").write_text(
        textwrap.dedent(
            f"""\
            target:
              registry: {REGISTRY}
              prefix: mirror
              create_repositories: true
            gitops:
              - path: clusters
                plain_http: ['{docker_registry.host}']
            """
        )
    )
    return gitops


def test_a_flux_tree_and_argo_applications_collect_to_what_flux_and_argo_would_pick(
    tree: Path, emulator: Emulator, run, pytester: pytest.Pytester
) -> None:
    # when the spec is synced, with a JUnit report
    synced = run("--sync", "-v", "-rs", "--junitxml=report.xml", "mirror.yaml")

    # then each chart version either picks is one item, wherever many objects ask for it
    synced.assert_outcomes(passed=4 + len(EXPECTED), skipped=2)
    # and what is not a published chart is skipped, saying why
    synced.stdout.fnmatch_lines_random(
        [
            "SKIPPED*HelmRelease apps/internal at clusters/flux/apps.yaml:*Git*",
            "SKIPPED*Application argocd/multi*source 1*",
        ]
    )
    cases = list(ET.parse(pytester.path / "report.xml").iter("testcase"))
    found = {}
    for case in cases:
        properties = [(p.get("name"), p.get("value") or "") for p in case.iter("property")]
        kind = dict(properties).get("ecrmirror")
        if kind != "version":
            continue
        name, _, version = str(case.get("name")).partition(" ")
        found[(name, version)] = {value.split(" at ")[0] for key, value in properties if key == "asked_by"}
        # and the test case sits at the manifest that asks
        assert str(case.get("file")).startswith("clusters/")
    assert found == EXPECTED
    ecr = boto3.client("ecr", region_name="eu-west-1")
    for name, version in EXPECTED:
        held = ecr.batch_get_image(repositoryName=f"mirror/{name}", imageIds=[{"imageTag": version}])
        assert held["images"], f"{name} {version} is not in ECR"

    # and a re-run audits all of them as PRESENT, writing nothing
    emulator.app.requests.clear()
    run("--check-only", "mirror.yaml").assert_outcomes(passed=4 + len(EXPECTED), skipped=2)
    assert emulator.writes() == []


def test_a_merge_request_bumping_a_helmrelease_fails_one_case_at_its_manifest_until_synced(
    tree: Path, emulator: Emulator, run, pytester: pytest.Pytester
) -> None:
    # given the default branch, synced
    run("--sync", "mirror.yaml").assert_outcomes(passed=4 + len(EXPECTED), skipped=2)

    # when a merge request bumps the HelmRelease of redis to a version ECR lacks
    manifest = tree / "flux" / "apps.yaml"
    manifest.write_text(manifest.read_text().replace('version: "17.3.1"', 'version: "17.5.0"'))
    audited = run("--check-only", "--junitxml=mr.xml", "mirror.yaml")

    # then exactly one test case fails: redis 17.5.0, at the HelmRelease's file and line, MISSING
    failures = [
        c for c in ET.parse(pytester.path / "mr.xml").iter("testcase") if c.find("failure") is not None
    ]
    assert [(c.get("name"), c.get("file")) for c in failures] == [("redis 17.5.0", "clusters/flux/apps.yaml")]
    assert failures[0].get("line") == "31"  # where the HelmRelease starts
    message = failures[0].find("failure")
    assert message is not None
    assert (message.get("message") or "").startswith("MISSING")
    audited.stdout.fnmatch_lines(["*asked for by: HelmRelease apps/redis at clusters/flux/apps.yaml:31*"])

    # and after the sync that follows the merge, it passes
    run("--sync", "mirror.yaml")
    run("--check-only", "mirror.yaml").assert_outcomes(passed=4 + len(EXPECTED), skipped=2)


def test_the_plan_says_how_to_point_each_source_at_ecr(
    tree: Path, emulator: Emulator, run, pytester: pytest.Pytester
) -> None:
    run("--check-only", "--ecrmirror-plan=plan.md", "mirror.yaml")

    plan = (pytester.path / "plan.md").read_text()

    assert "- To pull these charts from ECR, change:" in plan
    assert (
        f"HelmRepository flux-system/podinfo: type: oci, url: oci://{REGISTRY}/mirror, provider: aws" in plan
    )
    assert f"OCIRepository apps/argo-cd: url: oci://{REGISTRY}/mirror/argo-cd, provider: aws" in plan
    assert f"repoURL: {REGISTRY}/mirror, chart: nginx" in plan


def test_a_range_whose_newest_match_ecr_lacks_is_a_note_unless_strict(
    tree: Path, emulator: Emulator, run, pytester: pytest.Pytester
) -> None:
    # given ECR lost podinfo 7.0.0, which only a range (no version: `*`) asks for, and holds 6.5.0
    run("--sync", "mirror.yaml").assert_outcomes(passed=4 + len(EXPECTED), skipped=2)
    boto3.client("ecr", region_name="eu-west-1").batch_delete_image(
        repositoryName="mirror/podinfo", imageIds=[{"imageTag": "7.0.0"}]
    )

    # when the tree is audited
    audited = run("--check-only", "-v", "mirror.yaml")

    # then the cluster can still deploy 6.5.0: a note, not a failure
    audited.assert_outcomes(passed=4 + len(EXPECTED), skipped=2)
    audited.stdout.fnmatch_lines(
        [
            "*podinfo::7.0.0 BEHIND*",
            "*ECR holds 6.5.0, which also satisfies '*'*HelmRelease flux-system/podinfo-edge*",
        ]
    )

    # and with strict: true it fails as MISSING
    spec = pytester.path / "mirror.yaml"
    spec.write_text(
        spec.read_text().replace("  - path: clusters\n", "  - path: clusters\n    strict: true\n")
    )
    strict = run("--check-only", "-v", "mirror.yaml")
    strict.stdout.fnmatch_lines(["*podinfo::7.0.0 MISSING*"])
    assert strict.parseoutcomes()["failed"] == 1


def test_the_readmes_gitops_spec_reads_the_shipped_examples() -> None:
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    section = readme[readme.index("### Specs from GitOps manifests") :]
    start = section.index("```yaml\n") + len("```yaml\n")

    spec = parse_spec(
        section[start : section.index("\n```", start)], root / "specs" / "gitops.yaml", environ={}
    )

    asked = {
        (c.name, c.repo, c.versions[0].version if c.versions else c.range and c.range.constraint)
        for c in spec.gitops_charts
    }
    assert asked == {
        ("podinfo", "https://stefanprodan.github.io/podinfo", ">=6.5.0 <7.0.0"),
        ("cert-manager", "oci://quay.io/jetstack/charts", "v1.16.2"),
        ("nginx", "oci://registry-1.docker.io/bitnamicharts", "18.2.4"),
    }


def test_a_flux_variable_comes_from_ecrmirror_var(
    tree: Path, emulator: Emulator, run, pytester: pytest.Pytester
) -> None:
    # given the HelmRelease of redis asks for ${REDIS_VERSION}
    manifest = tree / "flux" / "apps.yaml"
    manifest.write_text(manifest.read_text().replace('version: "17.3.1"', 'version: "${REDIS_VERSION}"'))

    # when it is collected without the variable, and with it
    without = run("--collect-only", "-q", "mirror.yaml")
    given = run("--collect-only", "-q", "--ecrmirror-var", "REDIS_VERSION=17.4.0", "mirror.yaml")

    # then without, one plain refusal naming it; with, the version it names
    without.stdout.fnmatch_lines(
        ["*the Flux variable ${REDIS_VERSION}, which is not set*", "*--ecrmirror-var REDIS_VERSION=VALUE*"]
    )
    assert "Traceback" not in without.stdout.str()
    given.stdout.fnmatch_lines(["mirror.yaml::redis::17.4.0"])
    assert "17.3.1" not in given.stdout.str()


def test_the_audit_policy_lets_an_audit_see_that_a_range_is_behind(
    tree: Path, emulator: Emulator, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given ECR lacks the newest match of a range, holding an older one
    run("--sync", "mirror.yaml").assert_outcomes(passed=4 + len(EXPECTED), skipped=2)
    boto3.client("ecr", region_name="eu-west-1").batch_delete_image(
        repositoryName="mirror/podinfo", imageIds=[{"imageTag": "7.0.0"}]
    )
    policy = printed_policy(run, "audit")
    assert "ecr:ListImages" in json.dumps(policy)

    # when a user holding exactly the printed audit policy audits
    emulator.app.iam.enforce = True
    try:
        become_user(emulator, policy, monkeypatch)
        audited = run("--check-only", "-v", "mirror.yaml")
    finally:
        emulator.app.iam.enforce = False

    # then the range is BEHIND, a note, as for the administrator
    audited.assert_outcomes(passed=4 + len(EXPECTED), skipped=2)
    audited.stdout.fnmatch_lines(["*podinfo::7.0.0 BEHIND*"])


def test_releases_and_their_sources_may_sit_under_different_gitops_paths(
    chart_server: ChartServer, emulator: Emulator, write_spec, run, pytester: pytest.Pytester
) -> None:
    # given a tree that keeps sources apart from releases, as Flux trees often do
    for version in ("6.4.0", "6.5.0", "7.0.0"):
        chart_server.add("podinfo", version)
    chart_server.publish()
    (pytester.path / "infrastructure").mkdir()
    (pytester.path / "apps").mkdir()
    (pytester.path / "infrastructure" / "sources.yaml").write_text(
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\n"
        f"metadata: {{name: podinfo, namespace: flux-system}}\nspec: {{url: '{chart_server.url}'}}\n"
    )
    (pytester.path / "apps" / "podinfo.yaml").write_text(
        "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\n"
        "metadata: {name: podinfo, namespace: apps}\n"
        "spec:\n  chart:\n    spec:\n      chart: podinfo\n      version: '>=6.0.0'\n"
        "      sourceRef: {kind: HelmRepository, name: podinfo, namespace: flux-system}\n"
    )
    # and the releases' entry asks for the two newest matches
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  prefix: mirror\n"
        "gitops:\n  - path: apps\n    latest: 2\n  - infrastructure\n"
    )

    collected = run("--collect-only", "-q", "mirror.yaml")

    collected.stdout.fnmatch_lines(["mirror.yaml::podinfo::7.0.0", "mirror.yaml::podinfo::6.5.0"])
    collected.stdout.no_fnmatch_line("*6.4.0*")
