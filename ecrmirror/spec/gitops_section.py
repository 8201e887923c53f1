"""The `gitops:` section of a spec: the GitOps manifests whose charts the spec mirrors, as chart entries."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from ecrmirror import ecr_rules
from ecrmirror.errors import SpecError
from ecrmirror.spec.gitops import ChartRequest, read_gitops
from ecrmirror.spec.model import (
    Access,
    ChartEntry,
    GitopsOrigin,
    NotMirrored,
    Target,
    VersionEntry,
    VersionRange,
)
from ecrmirror.spec.reader import Reader

NEWEST = 1  # what a range mirrors by default: the version the cluster would deploy now


def read_gitops_section(
    reader: Reader, node: yaml.Node, target: Target
) -> tuple[tuple[ChartEntry, ...], tuple[NotMirrored, ...]]:
    """Every chart request of the manifests under the section's paths, as a chart entry each (a
    pin, or a range resolved against the upstream at collection), and what they ask for that is
    not mirrored (a chart from Git), with why."""
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        raise reader.fail(
            node,
            "gitops must be a non-empty list",
            "list manifest files or directories, relative to the spec",
        )
    listed: list[tuple[Path, int | None, bool, tuple[str, ...]]] = []  # path, latest, strict, plain_http
    for item in node.value:
        latest: int | None
        plain_http: tuple[str, ...] = ()
        if isinstance(item, yaml.ScalarNode):
            path_text, latest, strict = reader.string(item, "a gitops path"), NEWEST, False
        else:
            fields = reader.mapping(
                item, "a gitops entry", ("path",), ("versions", "latest", "strict", "plain_http")
            )
            path_text = reader.string(fields["path"], "gitops path")
            latest, strict = _how_many(reader, fields), False
            if "strict" in fields:
                strict = reader.boolean(fields["strict"], "strict")
            if "plain_http" in fields:
                plain_http = _hosts(reader, fields["plain_http"])
        path = (reader.path.parent / path_text).resolve()
        if not path.exists():
            raise reader.fail(
                item, f"gitops path {path_text!r} does not exist ({path})", "give a path relative to the spec"
            )
        listed.append((path, latest, strict, plain_http))
    # Read together: a HelmRelease under one path may name a HelmRepository under another, as Flux
    # trees keep sources apart from releases. Each request takes the settings of the entry that
    # holds its manifest (the most specific one).
    requests, not_mirrored = read_gitops([path for path, *_ in listed], _shown(reader), reader.environ)
    entries = []
    for request in requests:
        _, latest, strict, plain_http = _holding(listed, request.manifest)
        entries.append(_entry(request, target, latest, strict, plain_http))
    skipped = [NotMirrored(f"{s.asked_by} at {s.where}", s.manifest, s.line, s.reason) for s in not_mirrored]
    return tuple(entries), tuple(skipped)


def _holding(
    listed: list[tuple[Path, int | None, bool, tuple[str, ...]]], manifest: Path
) -> tuple[Path, int | None, bool, tuple[str, ...]]:
    """The gitops entry whose path holds `manifest`: the deepest, when entries nest."""
    holding = [entry for entry in listed if entry[0] == manifest or entry[0] in manifest.resolve().parents]
    return max(holding, key=lambda entry: len(entry[0].parts)) if holding else listed[0]


def _how_many(reader: Reader, fields: dict[str, yaml.Node]) -> int | None:
    """`versions: all` (every match of a range), `latest: N`, else the newest match."""
    if "versions" in fields and "latest" in fields:
        raise reader.fail(fields["latest"], "give versions: all or latest: N, not both")
    if "versions" in fields:
        reader.choice(fields["versions"], "versions", ("all",))
        return None
    if "latest" in fields:
        text = reader.string(fields["latest"], "latest")
        if not text.isdigit() or int(text) < 1:
            raise reader.fail(fields["latest"], f"latest must be a whole number above 0, not {text!r}")
        return int(text)
    return NEWEST


def _shown(reader: Reader) -> Callable[[Path], str]:
    """A manifest as messages name it: relative to where the spec is shown from, as the spec is."""

    def shown(path: Path) -> str:
        relative = os.path.relpath(path, reader.path.parent)
        if relative.startswith(".."):
            return str(path)
        return os.path.normpath(os.path.join(os.path.dirname(reader.shown), relative))

    return shown


def _hosts(reader: Reader, node: yaml.Node) -> tuple[str, ...]:
    """`plain_http`: OCI registries the manifests name that are reached over plain http, as
    Flux's `insecure: true` says of them (ecrmirror takes it from the spec, not the manifests)."""
    if not isinstance(node, yaml.SequenceNode):
        raise reader.fail(
            node, "plain_http must be a list of registry hosts", "write plain_http: [host:port]"
        )
    return tuple(reader.string(item, "a registry host") for item in node.value)


def _entry(
    request: ChartRequest, target: Target, latest: int | None, strict: bool, plain_http: tuple[str, ...]
) -> ChartEntry:
    repository = target.repository_for(request.name)
    problem = ecr_rules.repository_name_problem(repository)
    if problem is not None:
        raise SpecError(
            request.where,
            f"{request.asked_by}: chart {request.name!r} cannot be an ECR repository name as "
            f"{repository!r}: {problem}",
        )
    origin = GitopsOrigin(
        manifest=request.manifest,
        line=request.line,
        asked_by=f"{request.asked_by} at {request.where}",
        source=request.source,
        pointing=_pointing(request, target),
        strict=strict,
    )
    host = urlsplit(request.repo).netloc
    access = Access(plain_http=True) if request.repo.startswith("oci://") and host in plain_http else Access()
    if request.version is not None:
        version = VersionEntry(request.version, request.where, request.line, request.manifest)
        return ChartEntry(request.name, request.repo, (version,), request.where, access=access, gitops=origin)
    assert request.constraint is not None
    version_range = VersionRange(request.constraint, latest, False, (), request.where, request.line)
    return ChartEntry(
        request.name, request.repo, (), request.where, range=version_range, access=access, gitops=origin
    )


def _pointing(request: ChartRequest, target: Target) -> str:
    """What to change in the request's source so that the cluster pulls the chart from ECR."""
    base = f"{target.registry.host}/{target.prefix}" if target.prefix else target.registry.host
    if request.flux_source_kind == "OCIRepository":
        return f"{request.source}: url: oci://{base}/{request.name}, provider: aws"
    if request.flux_source_kind is not None:
        return f"{request.source}: type: oci, url: oci://{base}, provider: aws"
    return f"{request.source}: repoURL: {base}, chart: {request.name}"
