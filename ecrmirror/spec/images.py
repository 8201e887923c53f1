"""The `images:` sections of a spec: how a chart entry's images are found, and where they land."""

from __future__ import annotations

import re

import yaml

from ecrmirror.images.references import BadReference, mirrored_repository, parse
from ecrmirror.spec.model import ExtraImage, ImageNaming, ImageSettings, Render, Target
from ecrmirror.spec.reader import Reader

_PLATFORM = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?$")
_HOST = re.compile(r"^[a-zA-Z0-9.-]+(?::[0-9]+)?$")
_KUBE_VERSION = re.compile(r"^v?\d+\.\d+(?:\.\d+)?$")
# ECR's PullThroughCacheRuleRepositoryPrefix: 2 to 30 characters (botocore's ECR model).
_CACHE_PREFIX = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
NAMINGS = ("by-host", "pull-through-cache")


def read_naming(reader: Reader, node: yaml.Node) -> ImageNaming:
    fields = reader.mapping(node, "target.images", (), ("naming", "pull_through_cache"))
    naming = (
        reader.choice(fields["naming"], "target.images.naming", NAMINGS) if "naming" in fields else "by-host"
    )
    if naming == "by-host":
        if "pull_through_cache" in fields:
            raise reader.fail(
                fields["pull_through_cache"],
                "target.images.pull_through_cache applies to naming: pull-through-cache only",
                "add `naming: pull-through-cache`, or remove the rules",
            )
        return ImageNaming(where=reader.where(node))
    if "pull_through_cache" not in fields:
        raise reader.fail(
            node,
            "naming: pull-through-cache needs the rules: which pull-through cache prefix serves each host",
            "add pull_through_cache: {docker.io: docker-hub, ghcr.io: github}",
        )
    return ImageNaming(tuple(_rules(reader, fields["pull_through_cache"])), reader.where(node))


def _rules(reader: Reader, node: yaml.Node) -> list[tuple[str, str]]:
    if not isinstance(node, yaml.MappingNode) or not node.value:
        raise reader.fail(node, "pull_through_cache must map upstream hosts to rule prefixes")
    rules = []
    for key_node, value_node in node.value:
        host = reader.string(key_node, "an upstream host")
        prefix = reader.string(value_node, f"the rule prefix of {host}")
        if not _HOST.match(host):
            raise reader.fail(
                key_node, f"{host!r} is not a registry host", "write it as docker.io or host:port"
            )
        if not 2 <= len(prefix) <= 30 or not _CACHE_PREFIX.match(prefix):
            raise reader.fail(
                value_node,
                f"{prefix!r} is not an ECR pull-through cache prefix",
                "a prefix is 2 to 30 lowercase letters and digits, with . _ - / between them",
            )
        rules.append((host, prefix))
    return rules


def read_images(reader: Reader, node: yaml.Node, target: Target) -> ImageSettings:
    fields = reader.mapping(
        node, "images", (), ("annotations", "render", "extra", "exclude", "platforms", "plain_http")
    )
    annotations = (
        reader.boolean(fields["annotations"], "images.annotations") if "annotations" in fields else True
    )
    render = _render(reader, fields["render"]) if "render" in fields else None
    rules = dict(target.images.pull_through_cache) if target.images.pull_through_cache is not None else None
    extra = []
    for item in _list(reader, fields.get("extra"), "images.extra"):
        text = reader.string(item, "an image of images.extra").strip()
        try:
            image = parse(text)
        except BadReference as exc:
            raise reader.fail(
                item, str(exc), "write it as docker would pull it, e.g. quay.io/org/name:1.2"
            ) from None
        try:
            mirrored_repository(image, target.prefix, rules)
        except BadReference as exc:
            fix = (
                f"add `{image.host}: <rule prefix>` to target.images.pull_through_cache"
                if rules is not None and image.host not in rules
                else "mirror it with a shorter prefix, or list another image"
            )
            raise reader.fail(item, str(exc), fix) from None
        extra.append(ExtraImage(text, reader.where(item)))
    exclude = tuple(
        reader.string(item, "a pattern of images.exclude")
        for item in _list(reader, fields.get("exclude"), "images.exclude")
    )
    platforms = None
    if "platforms" in fields:
        platforms = tuple(
            reader.string(item, "a platform")
            for item in _list(reader, fields["platforms"], "images.platforms")
        )
        for item, platform in zip(fields["platforms"].value, platforms, strict=True):
            if not _PLATFORM.match(platform):
                raise reader.fail(
                    item,
                    f"{platform!r} is not a platform",
                    "write os/architecture[/variant], e.g. linux/arm64/v8",
                )
        if not platforms:
            raise reader.fail(
                fields["platforms"],
                "images.platforms is empty",
                "list at least one, or remove it to copy every platform",
            )
    plain_http = tuple(
        reader.string(item, "a registry host")
        for item in _list(reader, fields.get("plain_http"), "images.plain_http")
    )
    for item, host in zip(
        fields["plain_http"].value if "plain_http" in fields else (), plain_http, strict=True
    ):
        if not _HOST.match(host):
            raise reader.fail(
                item, f"{host!r} is not a registry host", "write host or host:port, e.g. 127.0.0.1:5000"
            )
    if not annotations and render is None and not extra:
        raise reader.fail(
            node,
            "images finds no image: annotations is false, and there is no render or extra",
            "set render: {} to render the chart, list images under extra, or remove images",
        )
    return ImageSettings(
        annotations, render, tuple(extra), exclude, platforms, plain_http, reader.where(node)
    )


def _render(reader: Reader, node: yaml.Node) -> Render:
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        return Render(where=reader.where(node))
    fields = reader.mapping(node, "images.render", (), ("values", "set", "kube_version"))
    values = []
    for item in _list(reader, fields.get("values"), "images.render.values"):
        path = (reader.path.parent / reader.string(item, "a values file")).resolve()
        if not path.is_file():
            raise reader.fail(item, f"values file {path} does not exist", "give a path relative to the spec")
        values.append(str(path))
    settings: list[tuple[str, str]] = []
    if "set" in fields:
        set_node = fields["set"]
        if not isinstance(set_node, yaml.MappingNode):
            raise reader.fail(set_node, "images.render.set must be a mapping", "write set: {key.path: value}")
        for key_node, value_node in set_node.value:
            settings.append(
                (reader.string(key_node, "a key of set"), reader.string(value_node, "a value of set"))
            )
    kube_version = None
    if "kube_version" in fields:
        kube_version = reader.string(fields["kube_version"], "images.render.kube_version").strip()
        if not _KUBE_VERSION.match(kube_version):
            raise reader.fail(
                fields["kube_version"],
                f"kube_version {kube_version!r} is not a Kubernetes version",
                'write it quoted, e.g. kube_version: "1.31"',
            )
    return Render(tuple(values), tuple(settings), kube_version, reader.where(node))


def _list(reader: Reader, node: yaml.Node | None, what: str) -> list[yaml.Node]:
    if node is None:
        return []
    if not isinstance(node, yaml.SequenceNode):
        raise reader.fail(node, f"{what} must be a list", f"write {what} as `- item` lines")
    return list(node.value)
