"""What a deployer needs to run a mirrored chart from ECR without rewriting it: a values override
that points each image at ECR, for charts whose values hold images in the common shape.

The chart archive is never changed (its digest and .prov must stay upstream's): charts-syncer
rewrote values inside the chart and users asked for the chart untouched (#104, #369). Most charts
take an image as `image: {registry, repository, tag}` (Bitnami's and many others'), so setting
`registry` and `repository` per image at install time moves every such image to ECR.
"""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path
from typing import Any

import yaml

from ecrmirror.chart import MAX_FILE_SIZE
from ecrmirror.helmyaml import YamlRefused, load_helm_yaml
from ecrmirror.images.references import BadReference, ImageReference, parse

ValuePath = tuple[str, ...]  # keys from the top of values.yaml to an image's mapping
MAX_DEPTH = 20  # nesting of values walked: an image deeper than this is not in the common shape


def value_images(
    archive: Path, metadata: dict[str, Any]
) -> tuple[list[tuple[ValuePath, ImageReference]], bool]:
    """The images the values.yaml of a checked archive (`metadata`: its Chart.yaml, as
    chart.read_chart_metadata read it) holds as `{registry?, repository, tag?, digest?}`, each
    with its path, and whether the chart is Bitnami's (its image check needs a setting, below)."""
    bitnami = "images" in (metadata.get("annotations") or {})
    values = _values(archive)
    if not isinstance(values, dict):
        return [], bitnami
    security = ((values.get("global") or {}) if isinstance(values.get("global"), dict) else {}).get(
        "security"
    )
    bitnami = bitnami or (isinstance(security, dict) and "allowInsecureImages" in security)
    found: list[tuple[ValuePath, ImageReference]] = []
    stack: list[tuple[ValuePath, Any]] = [((), values)]
    seen: set[int] = set()
    while stack:
        path, node = stack.pop()
        if not isinstance(node, dict) or id(node) in seen or len(path) > MAX_DEPTH:
            continue
        seen.add(id(node))
        image = _image(node, str(metadata.get("appVersion") or ""))
        if image is not None:
            found.append((path, image))
        stack.extend(((*path, str(key)), value) for key, value in node.items() if isinstance(value, dict))
    return sorted(found), bitnami


def _image(node: dict[str, Any], app_version: str) -> ImageReference | None:
    repository = node.get("repository")
    if not isinstance(repository, str) or not repository or not ({"registry", "tag", "digest"} & node.keys()):
        return None
    registry, tag, digest = node.get("registry"), node.get("tag"), node.get("digest")
    text = f"{registry}/{repository}" if isinstance(registry, str) and registry else repository
    if isinstance(tag, str | int | float) and str(tag):
        text += f":{tag}"
    elif app_version:
        text += f":{app_version}"  # as charts default it: `.Values.image.tag | default .Chart.AppVersion`
    if isinstance(digest, str) and digest:
        text += f"@{digest}"
    try:
        return parse(text)
    except BadReference:
        return None


def _values(archive: Path) -> Any:
    """The chart's own values.yaml (`<chart>/values.yaml`), read as helm reads it; None without one."""
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in tar:
                parts = member.name.split("/")
                if (
                    member.isfile()
                    and len(parts) == 2
                    and parts[1] == "values.yaml"
                    and member.size <= MAX_FILE_SIZE
                ):
                    handle = tar.extractfile(member)
                    return load_helm_yaml(handle.read()) if handle is not None else None
    except (tarfile.TarError, OSError, EOFError, zlib.error, YamlRefused, yaml.YAMLError):
        return (
            None  # read_chart_metadata has checked the archive; a values.yaml helm refuses has no images here
        )
    return None


def values_override(moved: list[tuple[ValuePath, str, str]], bitnami: bool) -> dict[str, Any]:
    """The values that point each image at ECR: (path, ECR registry host, ECR repository) each.
    Bitnami's charts refuse images other than their annotation's unless
    `global.security.allowInsecureImages` is true (bitnami/charts#30850): it is set for them."""
    override: dict[str, Any] = {}
    for path, registry, repository in moved:
        node = override
        for key in path:
            node = node.setdefault(key, {})
        node["registry"] = registry
        node["repository"] = repository
    if bitnami:
        override.setdefault("global", {}).setdefault("security", {})["allowInsecureImages"] = True
    return override
