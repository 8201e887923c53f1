"""Flux and Argo CD manifests read as a chart list: what each object asks for, skips, or is refused for."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import pytest

from ecrmirror.constraints import parse_constraint
from ecrmirror.errors import SpecError
from ecrmirror.spec import gitops
from ecrmirror.spec.gitops import MAX_FILE_BYTES, ChartRequest, SkippedRequest, read_gitops

Read = Callable[..., tuple[list[ChartRequest], list[SkippedRequest]]]


@pytest.fixture
def read(tmp_path: Path) -> Read:
    """Write `files` (path -> text) under tmp_path and read `paths` (default: all of tmp_path), with
    files shown relative to tmp_path."""

    def read(
        files: Mapping[str, str | bytes],
        environ: Mapping[str, str] | None = None,
        paths: list[str] | None = None,
    ) -> tuple[list[ChartRequest], list[SkippedRequest]]:
        for name, content in files.items():
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        chosen = [tmp_path / p for p in paths] if paths is not None else [tmp_path]
        return read_gitops(chosen, lambda p: p.relative_to(tmp_path).as_posix(), environ or {})

    return read


def refused(read: Read, files: Mapping[str, str | bytes], environ: Mapping[str, str] | None = None) -> str:
    with pytest.raises(SpecError) as caught:
        read(files, environ)
    return str(caught.value)


# -- manifests as Flux's and Argo CD's documentation write them ------------------------------------------
# source-controller docs/spec/v1/helmrepositories.md
PODINFO_REPOSITORY = """\
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata:
  name: podinfo
  namespace: flux-system
spec:
  interval: 5m
  url: https://stefanprodan.github.io/podinfo
"""
PODINFO_OCI_REPOSITORY = """\
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata:
  name: podinfo
  namespace: flux-system
spec:
  type: oci
  interval: 5m
  url: oci://ghcr.io/stefanprodan/charts
"""


def podinfo_release(version: str | None, namespace: str = "apps", ref_namespace: str = "flux-system") -> str:
    """helm-controller docs/spec/v2/helmreleases.md's example, in `namespace`, its chart at `version`."""
    version_line = f"      version: {version}\n" if version is not None else ""
    ref_line = f"        namespace: {ref_namespace}\n" if ref_namespace else ""
    return (
        "apiVersion: helm.toolkit.fluxcd.io/v2\n"
        "kind: HelmRelease\n"
        "metadata:\n"
        "  name: podinfo\n"
        f"  namespace: {namespace}\n"
        "spec:\n"
        "  interval: 10m\n"
        "  chart:\n"
        "    spec:\n"
        "      chart: podinfo\n"
        f"{version_line}"
        "      sourceRef:\n"
        "        kind: HelmRepository\n"
        "        name: podinfo\n"
        f"{ref_line}"
        "  values:\n"
        "    replicaCount: 2\n"
    )


def both(*documents: str) -> str:
    return "---\n".join(documents)


# source-controller docs/spec/v1/ocirepositories.md, helm-controller docs/spec/v2/helmreleases.md (chartRef)
def podinfo_oci_repository(ref: str) -> str:
    return (
        "apiVersion: source.toolkit.fluxcd.io/v1\n"
        "kind: OCIRepository\n"
        "metadata:\n"
        "  name: podinfo\n"
        "  namespace: apps\n"
        "spec:\n"
        "  interval: 10m\n"
        "  layerSelector:\n"
        '    mediaType: "application/vnd.cncf.helm.chart.content.v1.tar+gzip"\n'
        "    operation: copy\n"
        "  url: oci://ghcr.io/stefanprodan/charts/podinfo\n"
        f"{ref}"
    )


def chart_ref_release(kind: str, name: str = "podinfo") -> str:
    return (
        "apiVersion: helm.toolkit.fluxcd.io/v2\n"
        "kind: HelmRelease\n"
        "metadata:\n"
        "  name: podinfo\n"
        "  namespace: apps\n"
        "spec:\n"
        "  interval: 10m\n"
        "  chartRef:\n"
        f"    kind: {kind}\n"
        f"    name: {name}\n"
    )


# source-controller docs/spec/v1/helmcharts.md (a HelmChart's sourceRef is in its own namespace)
PODINFO_HELM_CHART = """\
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmChart
metadata:
  name: podinfo
  namespace: apps
spec:
  interval: 5m0s
  chart: podinfo
  reconcileStrategy: ChartVersion
  sourceRef:
    kind: HelmRepository
    name: podinfo
  version: '5.*'
"""
APPS_PODINFO_REPOSITORY = PODINFO_REPOSITORY.replace("namespace: flux-system", "namespace: apps").replace(
    "https://stefanprodan.github.io/podinfo", "https://charts.apps.example.com"
)

# fluxcd/flux2-kustomize-helm-example: apps/base/podinfo/repository.yaml and release.yaml (no version)
EXAMPLE_REPOSITORY = """\
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata:
  name: podinfo
  namespace: podinfo
spec:
  interval: 5m
  url: https://stefanprodan.github.io/podinfo
"""
EXAMPLE_RELEASE = """\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: podinfo
  namespace: podinfo
spec:
  interval: 50m
  releaseName: podinfo
  chart:
    spec:
      chart: podinfo
      sourceRef:
        kind: HelmRepository
        name: podinfo
  install:
    strategy:
      name: RetryOnFailure
  values:
    redis:
      enabled: true
"""
# ... and apps/staging/podinfo-values.yaml: a patch, not a whole HelmRelease
EXAMPLE_STAGING_PATCH = """\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: podinfo
  namespace: podinfo
spec:
  chart:
    spec:
      version: ">=1.0.0-alpha"
  test:
    enable: true
"""


def application(source: str, name: str = "guestbook") -> str:
    """argo-cd docs/operator-manual/declarative-setup.md's Application, with `source` (YAML lines
    under spec, indented two spaces)."""
    return (
        "apiVersion: argoproj.io/v1alpha1\n"
        "kind: Application\n"
        "metadata:\n"
        f"  name: {name}\n"
        "  namespace: argocd\n"
        "spec:\n"
        "  project: default\n"
        f"{source}"
        "  destination:\n"
        "    server: https://kubernetes.default.svc\n"
        "    namespace: guestbook\n"
    )


def helm_source(repo_url: str, chart: str | None, revision: str) -> str:
    chart_line = f"    chart: {chart}\n" if chart else ""
    return f"  source:\n    repoURL: {repo_url}\n{chart_line}    targetRevision: {revision}\n"


# argo-cd docs/user-guide/multiple_sources.md
MULTI_SOURCE = """\
  sources:
  - repoURL: 'https://prometheus-community.github.io/helm-charts'
    chart: prometheus
    targetRevision: 15.7.1
    helm:
      valueFiles:
      - $values/charts/prometheus/values.yaml
  - repoURL: 'https://git.example.com/org/value-files.git'
    targetRevision: dev
    ref: values
"""

PODINFO = "https://stefanprodan.github.io/podinfo"
ARGO_HELM = "https://argoproj.github.io/argo-helm"


class Asks(NamedTuple):
    """The fields of the ChartRequest a manifest makes; by default Flux's, through HelmRepository
    flux-system/podinfo."""

    name: str
    repo: str
    version: str | None = None
    constraint: str | None = None
    source: str = "HelmRepository flux-system/podinfo"
    flux_source_kind: str | None = "HelmRepository"


def argo(
    name: str, repo: str, source: str, version: str | None = None, constraint: str | None = None
) -> Asks:
    return Asks(name, repo, version, constraint, f"Application argocd/guestbook {source}", None)


DOCUMENTED: dict[str, tuple[str, Asks]] = {
    "flux: a range": (
        both(PODINFO_REPOSITORY, podinfo_release('">=4.0.0 <5.0.0"')),
        Asks("podinfo", PODINFO, constraint=">=4.0.0 <5.0.0"),
    ),
    "flux: a pin": (both(PODINFO_REPOSITORY, podinfo_release('"4.5.1"')), Asks("podinfo", PODINFO, "4.5.1")),
    "flux: no version is the newest stable": (
        both(PODINFO_REPOSITORY, podinfo_release(None)),
        Asks("podinfo", PODINFO, constraint="*"),
    ),
    "flux: * is the newest stable": (
        both(PODINFO_REPOSITORY, podinfo_release('"*"')),
        Asks("podinfo", PODINFO, constraint="*"),
    ),
    "flux: 1.2 is a constraint, only strict semver is a pin": (
        both(PODINFO_REPOSITORY, podinfo_release('"1.2"')),
        Asks("podinfo", PODINFO, constraint="1.2"),
    ),
    "flux: a prerelease constraint": (
        both(PODINFO_REPOSITORY, podinfo_release('">=1.0.0-0"')),
        Asks("podinfo", PODINFO, constraint=">=1.0.0-0"),
    ),
    "flux: a v-prefixed pin": (
        both(PODINFO_REPOSITORY, podinfo_release("v6.5.0")),
        Asks("podinfo", PODINFO, "v6.5.0"),
    ),
    "flux: an OCI HelmRepository": (
        both(PODINFO_OCI_REPOSITORY, podinfo_release('"6.5.0"')),
        Asks("podinfo", "oci://ghcr.io/stefanprodan/charts", "6.5.0"),
    ),
    "flux: chartRef to an OCIRepository with a tag": (
        both(podinfo_oci_repository("  ref:\n    tag: 6.5.0\n"), chart_ref_release("OCIRepository")),
        Asks(
            "podinfo",
            "oci://ghcr.io/stefanprodan/charts",
            "6.5.0",
            source="OCIRepository apps/podinfo",
            flux_source_kind="OCIRepository",
        ),
    ),
    "flux: chartRef to an OCIRepository with a semver range": (
        both(podinfo_oci_repository('  ref:\n    semver: ">= 6.0.0"\n'), chart_ref_release("OCIRepository")),
        Asks(
            "podinfo",
            "oci://ghcr.io/stefanprodan/charts",
            constraint=">= 6.0.0",
            source="OCIRepository apps/podinfo",
            flux_source_kind="OCIRepository",
        ),
    ),
    "flux: chartRef to a HelmChart": (
        both(APPS_PODINFO_REPOSITORY, PODINFO_HELM_CHART, chart_ref_release("HelmChart")),
        Asks(
            "podinfo",
            "https://charts.apps.example.com",
            constraint="5.*",
            source="HelmRepository apps/podinfo (via HelmChart apps/podinfo)",
        ),
    ),
    "flux: a sourceRef into another namespace": (
        both(APPS_PODINFO_REPOSITORY, PODINFO_REPOSITORY, podinfo_release('"6.5.0"', "apps", "flux-system")),
        Asks("podinfo", PODINFO, "6.5.0"),
    ),
    "flux: a sourceRef without a namespace is in the release's": (
        both(PODINFO_REPOSITORY, APPS_PODINFO_REPOSITORY, podinfo_release('"6.5.0"', "apps", "")),
        Asks("podinfo", "https://charts.apps.example.com", "6.5.0", source="HelmRepository apps/podinfo"),
    ),
    "flux: flux2-kustomize-helm-example": (
        both(EXAMPLE_REPOSITORY, EXAMPLE_RELEASE),
        Asks("podinfo", PODINFO, constraint="*", source="HelmRepository podinfo/podinfo"),
    ),
    # argo-cd docs/user-guide/helm.md, tracking_strategies.md, oci.md
    "argo: a Helm repository with a wildcard": (
        application(helm_source(ARGO_HELM, "argo-cd", "1.2.*")),
        argo("argo-cd", ARGO_HELM, f"source ({ARGO_HELM})", constraint="1.2.*"),
    ),
    "argo: an OCI registry without a scheme": (
        application(helm_source("registry-1.docker.io/bitnamicharts", "nginx", "15.9.0")),
        argo(
            "nginx",
            "oci://registry-1.docker.io/bitnamicharts",
            "source (registry-1.docker.io/bitnamicharts)",
            "15.9.0",
        ),
    ),
    "argo: an oci:// repoURL is the chart itself": (
        application(helm_source("oci://ghcr.io/argoproj/argo-helm/argo-cd", None, "7.7.0")),
        argo(
            "argo-cd",
            "oci://ghcr.io/argoproj/argo-helm",
            "source (oci://ghcr.io/argoproj/argo-helm/argo-cd)",
            "7.7.0",
        ),
    ),
    "argo: an oci:// repoURL wins over chart": (
        application(helm_source("oci://ghcr.io/argoproj/argo-helm/argo-cd", "ignored", "7.7.0")),
        argo(
            "argo-cd",
            "oci://ghcr.io/argoproj/argo-helm",
            "source (oci://ghcr.io/argoproj/argo-helm/argo-cd)",
            "7.7.0",
        ),
    ),
    "argo: several sources, one a chart": (
        application(MULTI_SOURCE),
        argo(
            "prometheus",
            "https://prometheus-community.github.io/helm-charts",
            "source 1 (https://prometheus-community.github.io/helm-charts)",
            "15.7.1",
        ),
    ),
    "argo: 1.2 is the newest 1.2.x": (
        application(helm_source(ARGO_HELM, "argo-cd", '"1.2"')),
        argo("argo-cd", ARGO_HELM, f"source ({ARGO_HELM})", constraint="=1.2"),
    ),
    "argo: *-0 includes prereleases": (
        application(helm_source(ARGO_HELM, "argo-cd", '"*-0"')),
        argo("argo-cd", ARGO_HELM, f"source ({ARGO_HELM})", constraint="*-0"),
    ),
}


@pytest.mark.parametrize("case", DOCUMENTED)
def test_a_documented_manifest_asks_for_its_chart(case: str, read: Read) -> None:
    # given a manifest as the documentation writes it
    manifest, asks = DOCUMENTED[case]

    # when it is read
    requests, _ = read({"manifests.yaml": manifest})

    # then it asks for one chart, with a constraint ecrmirror can select versions with
    assert [
        Asks(r.name, r.repo, r.version, r.constraint, r.source, r.flux_source_kind) for r in requests
    ] == [asks]
    if asks.constraint is not None:
        parse_constraint(asks.constraint)


def test_argo_short_version_is_the_newest_of_its_line_as_helm_fetches_it() -> None:
    # given the constraint a targetRevision of 1.2 becomes
    constraint = parse_constraint("=1.2")

    # then it allows what `helm pull --version 1.2` would choose from
    assert [v for v in ("1.1.9", "1.2.0", "1.2.7", "1.3.0") if constraint.allows(v)] == ["1.2.0", "1.2.7"]


# -- where a request comes from ---------------------------------------------------------------------------
def test_where_line_and_document_name_the_asking_object(read: Read) -> None:
    # given a multi-document file whose fourth document is the HelmRelease, after other kinds
    manifest = (
        "# cluster apps\n"  # 1
        "---\n"  # 2
        "apiVersion: v1\n"  # 3
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: settings\n"
        "data:\n"
        "  version: 1.10\n"  # a number, in a kind nobody reads
        "---\n"  # 9
        "- just\n"
        "- a list\n"
        "---\n"  # 12
        + PODINFO_REPOSITORY  # 13-20
        + "---\n"  # 21
        + podinfo_release('"6.5.0"')  # 22
        + "---\n"
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\n"
        "kind: Kustomization\n"
        "metadata:\n"
        "  name: apps\n"
    )

    # when the tree is read
    requests, skipped = read({"clusters/prod/apps.yaml": manifest})

    # then the request names the HelmRelease's file, first line and document
    assert skipped == []
    (request,) = requests
    assert (request.where, request.line, request.document) == ("clusters/prod/apps.yaml:22", 22, 4)
    assert request.manifest.name == "apps.yaml"
    assert request.asked_by == "HelmRelease apps/podinfo"


def test_directories_are_walked_in_path_order(read: Read) -> None:
    # given releases spread over files and directories, and files that are not read
    def release(name: str) -> str:
        return podinfo_release('"6.5.0"').replace("name: podinfo\n  namespace", f"name: {name}\n  namespace")

    files = {
        "b.yaml": release("b"),
        "a/y.yaml": release("a-y"),
        "a/x.yml": release("a-x"),
        "sources.yaml": PODINFO_REPOSITORY,
        ".github/workflows/ci.yaml": "jobs: [unclosed\n",  # hidden directories are not read
        "README.md": "not: [yaml\n",
        "a/notes.txt": "not: [yaml\n",
    }

    # when the directory is read
    requests, _ = read(files)

    # then the requests come in the order of their files' paths
    assert [r.asked_by for r in requests] == [
        "HelmRelease apps/a-x",
        "HelmRelease apps/a-y",
        "HelmRelease apps/b",
    ]
    assert [r.where for r in requests] == ["a/x.yml:1", "a/y.yaml:1", "b.yaml:1"]


def test_files_and_directories_can_be_given_together_and_each_file_is_read_once(read: Read) -> None:
    requests, _ = read(
        {"sources/podinfo.yaml": PODINFO_REPOSITORY, "apps/podinfo.yaml": podinfo_release('"6.5.0"')},
        paths=["apps/podinfo.yaml", "apps", "sources"],
    )

    assert [r.where for r in requests] == ["apps/podinfo.yaml:1"]


# -- what is skipped, and why ------------------------------------------------------------------------------
# helm-controller docs/spec/v2/helmreleases.md: a chart from a GitRepository is a path in it
GIT_RELEASE = """\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: podinfo
  namespace: apps
spec:
  interval: 10m
  chart:
    spec:
      chart: ./charts/podinfo
      sourceRef:
        kind: GitRepository
        name: podinfo
        namespace: flux-system
"""


def test_a_chart_from_git_is_skipped_with_its_reason(read: Read) -> None:
    requests, skipped = read({"apps.yaml": GIT_RELEASE})

    assert requests == []
    assert skipped == [
        SkippedRequest(
            where="apps.yaml:1",
            manifest=skipped[0].manifest,
            line=1,
            document=1,
            asked_by="HelmRelease apps/podinfo",
            reason="the chart comes from GitRepository flux-system/podinfo, a path in a Git repository "
            "(./charts/podinfo), not a published chart version: nothing to mirror",
        )
    ]


def test_a_chart_from_a_bucket_is_skipped(read: Read) -> None:
    _, skipped = read({"apps.yaml": GIT_RELEASE.replace("GitRepository", "Bucket")})

    assert [s.reason for s in skipped] == [
        "the chart comes from Bucket flux-system/podinfo, a path in a bucket (./charts/podinfo), not a "
        "published chart version: nothing to mirror"
    ]


def test_an_external_artifact_chart_ref_is_skipped(read: Read) -> None:
    _, skipped = read({"apps.yaml": chart_ref_release("ExternalArtifact")})

    assert [(s.asked_by, s.reason) for s in skipped] == [
        (
            "HelmRelease apps/podinfo",
            "the chart comes from ExternalArtifact apps/podinfo, an artifact another controller builds, "
            "not a published chart version: nothing to mirror",
        )
    ]


def test_argo_ref_and_git_path_sources_are_skipped(read: Read) -> None:
    git_path = (
        "  source:\n"
        "    repoURL: https://github.com/argoproj/argocd-example-apps.git\n"
        "    targetRevision: HEAD\n"
        "    path: guestbook\n"
    )

    requests, skipped = read(
        {"multi.yaml": application(MULTI_SOURCE, "my-billing-app"), "git.yaml": application(git_path)}
    )

    assert [r.name for r in requests] == ["prometheus"]
    assert [(s.where, s.reason) for s in skipped] == [
        (
            "git.yaml:1",
            "source (https://github.com/argoproj/argocd-example-apps.git) is a path in a Git repository "
            "(guestbook), not a published chart version: nothing to mirror",
        ),
        (
            "multi.yaml:1",
            "source 2 (https://git.example.com/org/value-files.git) only lends its files to the other "
            "sources (ref: values): nothing to mirror",
        ),
    ]


# -- Flux's post-build variables -----------------------------------------------------------------------------
def test_variables_and_defaults_come_from_the_environment(read: Read) -> None:
    # given a HelmRepository and a HelmRelease that use post-build variables
    repository = PODINFO_REPOSITORY.replace(
        "https://stefanprodan.github.io/podinfo", "https://${CHARTS_HOST}/podinfo"
    )
    release = podinfo_release('"${PODINFO_VERSION:=6.5.0}"').replace(
        "namespace: flux-system", "namespace: ${SOURCES_NAMESPACE}"
    )
    files = {"apps.yaml": both(repository, release)}

    # when the environment sets some of them
    requests, _ = read(files, {"CHARTS_HOST": "charts.example.com", "SOURCES_NAMESPACE": "flux-system"})
    overridden, _ = read(
        files,
        {"CHARTS_HOST": "x.example.com", "SOURCES_NAMESPACE": "flux-system", "PODINFO_VERSION": "6.6.0"},
    )

    # then they are substituted, and the default stands in for what is not set
    assert [(r.repo, r.version) for r in requests] == [("https://charts.example.com/podinfo", "6.5.0")]
    assert [(r.repo, r.version) for r in overridden] == [("https://x.example.com/podinfo", "6.6.0")]


def test_an_unquoted_variable_whose_value_yaml_reads_as_a_number_is_refused(read: Read) -> None:
    message = refused(
        read,
        {"apps.yaml": both(PODINFO_REPOSITORY, podinfo_release("${PODINFO_VERSION}"))},
        {"PODINFO_VERSION": "1.10"},
    )

    assert message == (
        "apps.yaml:20: document 2, HelmRelease apps/podinfo: spec.chart.spec.version is ${PODINFO_VERSION} "
        "without quotes, which Flux substitutes to 1.10, so YAML reads it as the number 1.1, not as text\n"
        '  fix: quote it: version: "${PODINFO_VERSION}"'
    )


def test_an_object_with_substitution_disabled_keeps_its_variables_and_is_refused(read: Read) -> None:
    release = podinfo_release('"${PODINFO_VERSION}"').replace(
        "  namespace: apps\n",
        "  namespace: apps\n  annotations:\n    kustomize.toolkit.fluxcd.io/substitute: disabled\n",
    )

    message = refused(read, {"apps.yaml": both(PODINFO_REPOSITORY, release)}, {"PODINFO_VERSION": "6.5.0"})

    assert message == (
        "apps.yaml:22: document 2, HelmRelease apps/podinfo: spec.chart.spec.version is "
        "'${PODINFO_VERSION}', and kustomize.toolkit.fluxcd.io/substitute: disabled turns Flux's "
        "substitution off for this object, so the cluster reads it as written\n"
        "  fix: write the value out"
    )


# -- namespaces that kustomize or the cluster fills in -----------------------------------------------------
def test_a_reference_without_namespaces_finds_the_one_source_of_its_name(read: Read) -> None:
    # given a release with no namespace (kustomize's namespace: sets it) and one HelmRepository podinfo
    release = podinfo_release('"6.5.0"', namespace="apps", ref_namespace="").replace(
        "  namespace: apps\n", ""
    )

    requests, _ = read({"apps.yaml": both(PODINFO_REPOSITORY, release)})

    assert [(r.asked_by, r.source) for r in requests] == [
        ("HelmRelease podinfo", "HelmRepository flux-system/podinfo")
    ]


def test_a_reference_without_namespaces_prefers_a_source_without_one(read: Read) -> None:
    release = podinfo_release('"6.5.0"', ref_namespace="").replace("  namespace: apps\n", "")
    unnamespaced = PODINFO_REPOSITORY.replace("  namespace: flux-system\n", "").replace(
        "stefanprodan.github.io", "charts.example.com"
    )

    requests, _ = read({"apps.yaml": both(PODINFO_REPOSITORY, unnamespaced, release)})

    assert [(r.repo, r.source) for r in requests] == [
        ("https://charts.example.com/podinfo", "HelmRepository podinfo")
    ]


def test_a_reference_without_namespaces_and_several_sources_is_ambiguous(read: Read) -> None:
    release = podinfo_release('"6.5.0"', ref_namespace="").replace("  namespace: apps\n", "")

    message = refused(read, {"apps.yaml": both(PODINFO_REPOSITORY, APPS_PODINFO_REPOSITORY, release)})

    assert message == (
        "apps.yaml:29: document 3, HelmRelease podinfo: spec.chart.spec.sourceRef names HelmRepository "
        "podinfo, which could be any of HelmRepository flux-system/podinfo (apps.yaml:1), HelmRepository "
        "apps/podinfo (apps.yaml:10)\n"
        "  fix: give the namespaces (metadata.namespace, or the reference's namespace), or render the tree "
        "first (kustomize build, or flux build ks) and point gitops: at the output"
    )


# -- refusals: one message each ---------------------------------------------------------------------------
RENDER_FIX = (
    "  fix: render the tree first (kustomize build, or flux build ks) and point gitops: at the output"
)

# The manifest and environment of each case ...
HOSTILE_MANIFESTS: dict[str, tuple[str, dict[str, str]]] = {
    "gitops: an unresolved variable": (both(PODINFO_REPOSITORY, podinfo_release('"${PODINFO_VERSION}"')), {}),
    "gitops: a Go template in a field": (
        both(
            PODINFO_REPOSITORY,
            podinfo_release('"6.5.0"').replace("chart: podinfo", 'chart: "{{ .Values.chart }}"'),
        ),
        {},
    ),
    "gitops: an unquoted version": (both(PODINFO_REPOSITORY, podinfo_release("1.10")), {}),
    "gitops: a HelmRelease with both chart and chartRef": (
        both(
            PODINFO_REPOSITORY,
            podinfo_release('"6.5.0"') + "  chartRef:\n    kind: OCIRepository\n    name: podinfo\n",
        ),
        {},
    ),
    "gitops: a HelmRelease with neither chart nor chartRef": (
        "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: podinfo\n"
        "  namespace: apps\nspec:\n  values:\n    replicaCount: 3\n",
        {},
    ),
    "gitops: a sourceRef naming nothing": (podinfo_release('"6.5.0"'), {}),
    "gitops: a HelmRepository type that does not fit its URL": (
        both(
            PODINFO_REPOSITORY.replace("  interval: 5m\n", "  type: oci\n  interval: 5m\n"),
            podinfo_release('"6.5.0"'),
        ),
        {},
    ),
    "gitops: an invalid constraint": (both(PODINFO_REPOSITORY, podinfo_release("latest")), {}),
    "gitops: an ApplicationSet": (
        "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata:\n  name: guestbook\n"
        "  namespace: argocd\nspec:\n  generators:\n  - list:\n      elements:\n"
        "      - cluster: engineering-dev\n"
        "  template:\n    metadata:\n      name: '{{.cluster}}-guestbook'\n",
        {},
    ),
}
# ... and what its message says (… stands for anything); docs/hostile-input.md has a row for each.
HOSTILE_CASES: dict[str, str] = {
    "gitops: an unresolved variable": (
        "apps.yaml:20: document 2, HelmRelease apps/podinfo: spec.chart.spec.version uses the Flux variable "
        "${PODINFO_VERSION}, which is not set\n"
        "  fix: pass --ecrmirror-var PODINFO_VERSION=VALUE or export PODINFO_VERSION; Flux would substitute "
        "an empty string, and ecrmirror does not guess"
    ),
    "gitops: a Go template in a field": (
        "apps.yaml:19: document 2, HelmRelease apps/podinfo: spec.chart.spec.chart is '{{ .Values.chart }}', "
        "a Go template that only a renderer fills in\n"
        "  fix: render the templates first and point gitops: at the output, or write the value out"
    ),
    "gitops: an unquoted version": (
        "apps.yaml:20: document 2, HelmRelease apps/podinfo: spec.chart.spec.version is 1.10 without quotes, "
        "so YAML reads it as the number 1.1, not as text\n"
        '  fix: quote it: version: "1.10"'
    ),
    "gitops: a HelmRelease with both chart and chartRef": (
        "apps.yaml:27: document 2, HelmRelease apps/podinfo: has both spec.chart and spec.chartRef, and Flux "
        "takes exactly one; a HelmRelease like this is usually a kustomize patch fragment, not a whole "
        "HelmRelease\n" + RENDER_FIX
    ),
    "gitops: a HelmRelease with neither chart nor chartRef": (
        "apps.yaml:1: document 1, HelmRelease apps/podinfo: has neither spec.chart nor spec.chartRef; a "
        "HelmRelease like this is usually a kustomize patch fragment, not a whole HelmRelease\n" + RENDER_FIX
    ),
    "gitops: a sourceRef naming nothing": (
        "apps.yaml:12: document 1, HelmRelease apps/podinfo: spec.chart.spec.sourceRef names HelmRepository "
        "flux-system/podinfo, which no gitops file defines\n"
        "  fix: include the file that defines HelmRepository flux-system/podinfo in gitops:, or render the "
        "tree first (kustomize build, or flux build ks) and point gitops: at the output"
    ),
    "gitops: a HelmRepository type that does not fit its URL": (
        "apps.yaml:7: document 1, HelmRepository flux-system/podinfo: spec.type is oci, but spec.url is "
        "https://stefanprodan.github.io/podinfo: Flux reads an oci:// URL only with type: oci, and an "
        "http(s):// URL only without it (used by HelmRelease apps/podinfo at apps.yaml:11)\n"
        "  fix: set type: oci for an oci:// URL, or remove type: oci for an http(s):// Helm repository"
    ),
    "gitops: an invalid constraint": (
        "apps.yaml:20: document 2, HelmRelease apps/podinfo: spec.chart.spec.version 'latest' is not a "
        "version constraint: 'latest' is not a version comparison\n"
        '  fix: write a version (1.2.3) or a constraint such as ">=1.2.0 <2.0.0"'
    ),
    "gitops: an ApplicationSet": (
        "apps.yaml:1: document 1, ApplicationSet argocd/guestbook: an ApplicationSet's Applications come "
        "from its generators and {{...}} templates, which ecrmirror cannot run\n"
        "  fix: point gitops: at the Applications it generates, or list the charts in charts:"
    ),
}


def glob(message: str) -> str:
    """`message` as an fnmatch pattern: … is `*`, and fnmatch's own characters stand for themselves."""
    return re.sub(r"([*?[])", r"[\1]", message).replace("…", "*")


@pytest.mark.parametrize("case", HOSTILE_CASES)
def test_a_hostile_manifest_is_refused_with_one_plain_message(case: str, read: Read) -> None:
    # given the case's manifest
    manifest, environ = HOSTILE_MANIFESTS[case]

    # when it is read
    message = refused(read, {"apps.yaml": manifest}, environ)

    # then the message says what the table says
    assert fnmatch.fnmatchcase(message, glob(HOSTILE_CASES[case])), message


def test_every_hostile_case_has_a_manifest() -> None:
    assert set(HOSTILE_MANIFESTS) == set(HOSTILE_CASES)
    assert all(re.fullmatch(r"[a-z ]+: [^|]+", case) for case in HOSTILE_CASES)


# -- more refusals, each with its fix -----------------------------------------------------------------------
def test_a_kustomize_patch_with_only_a_version_is_refused_as_a_fragment(read: Read) -> None:
    message = refused(read, {"apps/staging/podinfo-values.yaml": EXAMPLE_STAGING_PATCH})

    assert message == (
        "apps/staging/podinfo-values.yaml:8: document 1, HelmRelease podinfo/podinfo: spec.chart.spec has no "
        "chart; a HelmRelease like this is usually a kustomize patch fragment, not a whole HelmRelease\n"
        + RENDER_FIX
    )


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (
            "",
            "apps.yaml:11: document 1, OCIRepository apps/podinfo: has no ref.tag, ref.semver or ref.digest, "
            "so Flux pulls the tag latest, which is not a chart version\n"
            "  fix: pin a chart version with ref.tag, or a range with ref.semver",
        ),
        (
            "  ref:\n    digest: sha256:0123\n",
            "apps.yaml:13: document 1, OCIRepository apps/podinfo: spec.ref.digest sha256:0123 names an "
            "artifact, but no chart version to mirror\n"
            "  fix: add ref.tag with the chart version that digest is",
        ),
        (
            '  ref:\n    semver: ">=6.0.0"\n    semverFilter: ".*-rc.*"\n',
            "apps.yaml:14: document 1, OCIRepository apps/podinfo: spec.ref.semverFilter is not supported: "
            "ecrmirror cannot tell which tags Flux keeps\n"
            "  fix: remove semverFilter, or narrow ref.semver to the versions you want",
        ),
        (
            "  ref:\n    tag: latest\n",
            "apps.yaml:13: document 1, OCIRepository apps/podinfo: spec.ref.tag: version 'latest' is not a "
            "semantic version as helm reads it*",
        ),
    ],
    ids=["no ref", "a digest without a tag", "a semverFilter", "a tag that is no version"],
)
def test_an_oci_repository_without_a_chart_version_is_refused(ref: str, message: str, read: Read) -> None:
    text = refused(read, {"apps.yaml": both(podinfo_oci_repository(ref), chart_ref_release("OCIRepository"))})

    assert fnmatch.fnmatchcase(text, message), text


def test_a_digest_with_a_tag_mirrors_the_tag_and_helms_underscore_is_a_plus(read: Read) -> None:
    ref = "  ref:\n    digest: sha256:0123\n    tag: 6.5.0_build.1\n"

    requests, _ = read({"apps.yaml": both(podinfo_oci_repository(ref), chart_ref_release("OCIRepository"))})

    assert [r.version for r in requests] == ["6.5.0+build.1"]


def test_anchors_and_aliases_are_refused_in_the_objects_read(read: Read) -> None:
    release = podinfo_release('&v "6.5.0"') + "  test:\n    version: *v\n"

    message = refused(read, {"apps.yaml": both(PODINFO_REPOSITORY, release)})

    assert message == (
        "apps.yaml:20: document 2, HelmRelease: YAML anchors and aliases (&name, *name) are not allowed in "
        "the objects ecrmirror reads\n"
        "  fix: write the value out where it is used"
    )


def test_anchors_in_documents_of_other_kinds_do_no_harm(read: Read) -> None:
    values = "defaults: &defaults\n  replicas: 2\nprod:\n  <<: *defaults\n"

    requests, _ = read(
        {"values.yaml": values, "apps.yaml": both(PODINFO_REPOSITORY, podinfo_release('"6.5.0"'))}
    )

    assert [r.version for r in requests] == ["6.5.0"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "apiVersion: v1\nkind: [unclosed\n",
            "broken.yaml:3: invalid YAML: *\n  fix: fix the YAML syntax at that line",
        ),
        (b"apiVersion: v1\nkind: \xff\n", "broken.yaml:2: is not UTF-8 text, so it is not YAML"),
        (
            "apiVersion: v1\nkind: a\x00b\n",
            "broken.yaml:2: invalid YAML: the character U+0000 is not allowed in YAML",
        ),
    ],
    ids=["YAML syntax", "not UTF-8", "a NUL character"],
)
def test_a_file_that_is_not_yaml_is_refused_with_its_line(
    content: str | bytes, message: str, read: Read
) -> None:
    text = refused(read, {"broken.yaml": content})

    assert fnmatch.fnmatchcase(text, message), text


def test_a_missing_path_is_refused(read: Read) -> None:
    with pytest.raises(SpecError) as caught:
        read({}, paths=["clusters/prod"])

    assert str(caught.value) == "clusters/prod: no such file or directory\n  fix: fix the path in gitops:"


def test_a_file_over_the_size_limit_is_refused(read: Read) -> None:
    text = refused(read, {"big.yaml": "# padding\n" * (MAX_FILE_BYTES // 10 + 1)})

    assert text == (
        "big.yaml: is larger than 5 MiB, more than ecrmirror reads from a file\n"
        "  fix: split it, or leave it out of gitops:"
    )


def test_more_yaml_files_than_the_limit_are_refused(read: Read, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gitops, "MAX_FILES", 2)

    text = refused(read, {"a.yaml": "a: 1\n", "b.yaml": "b: 1\n", "c/d.yml": "d: 1\n"})

    assert text == (
        ".: gitops: holds more than 2 YAML files, which is more than ecrmirror reads\n"
        "  fix: point gitops: at the directories that hold the Flux or Argo CD objects"
    )


def test_an_unquoted_go_template_is_refused_as_one(read: Read) -> None:
    release = podinfo_release("{{ .Values.podinfo.version }}")

    message = refused(read, {"apps.yaml": both(PODINFO_REPOSITORY, release)})

    assert message == (
        "apps.yaml:20: document 2, HelmRelease apps/podinfo: spec.chart.spec.version is a Go template "
        "({{ ... }}), which YAML reads as a mapping\n"
        "  fix: render the templates first and point gitops: at the output, or write the value out"
    )


def test_an_api_version_flux_no_longer_serves_is_refused(read: Read) -> None:
    old = PODINFO_REPOSITORY.replace("source.toolkit.fluxcd.io/v1", "source.toolkit.fluxcd.io/v1beta1")

    message = refused(read, {"apps.yaml": both(old, podinfo_release('"6.5.0"'))})

    assert message == (
        "apps.yaml:1: document 1, HelmRepository: apiVersion source.toolkit.fluxcd.io/v1beta1 is not one "
        "ecrmirror reads (source.toolkit.fluxcd.io/v1, source.toolkit.fluxcd.io/v1beta2)\n"
        "  fix: upgrade the manifest to a version Flux or Argo CD serves today"
    )


def test_a_chart_name_that_is_a_path_is_refused(read: Read) -> None:
    release = podinfo_release('"6.5.0"').replace("chart: podinfo", "chart: ../../etc")

    message = refused(read, {"apps.yaml": both(PODINFO_REPOSITORY, release)})

    assert message.startswith(
        "apps.yaml:19: document 2, HelmRelease apps/podinfo: spec.chart.spec.chart: chart name '../../etc' "
        "is not a chart name\n"
    )


def test_a_source_without_a_namespace_answers_a_reference_that_gives_one(read: Read) -> None:
    # given a HelmRepository whose namespace kustomize sets, and a release that names flux-system
    unnamespaced = PODINFO_REPOSITORY.replace("  namespace: flux-system\n", "")

    requests, _ = read({"apps.yaml": both(unnamespaced, podinfo_release('"6.5.0"'))})

    assert [r.source for r in requests] == ["HelmRepository podinfo"]


def test_an_application_without_a_source_is_refused_as_a_fragment(read: Read) -> None:
    patch = "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: guestbook\n"
    patch += "spec:\n  project: default\n"

    message = refused(read, {"apps.yaml": patch})

    assert message == (
        "apps.yaml:1: document 1, Application guestbook: has neither spec.source nor spec.sources; an "
        "Application like this is usually a kustomize patch fragment, not a whole Application\n" + RENDER_FIX
    )
