"""Load a mirror spec: YAML with file:line for every value, ${VAR} expansion and strict validation."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from ecrmirror.errors import SpecError

try:  # libyaml is much faster; PyYAML's pure-Python loader gives the same nodes and marks.
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

TAG_MUTABILITY = ("IMMUTABLE", "MUTABLE")
# https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests
REPOSITORY_NAME = re.compile(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")
# Standard, FIPS and dual-stack ECR registry hosts, in the commercial and China partitions.
ECR_HOST = re.compile(
    r"^(?P<account>\d{12})\.dkr[.-]ecr(?:-fips)?\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)"
    r"\.(?:amazonaws\.com(?:\.cn)?|on\.aws)$"
)
# https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests
OCI_TAG = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
_VARIABLE = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\})")
_SPEC_MARKER = re.compile(r"^charts\s*:", re.MULTILINE)


@dataclass(frozen=True)
class RepositorySettings:
    """How ecrmirror creates a repository that does not exist yet."""

    image_tag_mutability: str = "IMMUTABLE"
    scan_on_push: bool = False


@dataclass(frozen=True)
class Registry:
    """An ECR registry, parsed from its host name."""

    host: str
    account: str
    region: str


@dataclass(frozen=True)
class Target:
    registry: Registry
    prefix: str
    create_repositories: bool
    repository: RepositorySettings
    where: str

    def repository_for(self, chart_name: str) -> str:
        """The repository `helm push x.tgz oci://<registry>/<prefix>` would use."""
        return f"{self.prefix}/{chart_name}" if self.prefix else chart_name


@dataclass(frozen=True)
class VersionEntry:
    version: str
    where: str
    line: int


@dataclass(frozen=True)
class ChartEntry:
    name: str
    repo: str
    versions: tuple[VersionEntry, ...]
    where: str

    def source_location(self, spec_path: Path) -> str:
        """The repository as a URL, or a local directory resolved against the spec file."""
        if re.match(r"^[a-z][a-z0-9+.-]*://", self.repo):
            return self.repo
        return str((spec_path.parent / self.repo).resolve())


@dataclass(frozen=True)
class Spec:
    path: Path
    target: Target
    charts: tuple[ChartEntry, ...]


def looks_like_spec(path: Path) -> bool:
    """A YAML file is a spec when its top level has `charts`; anything else is not ours."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if not _SPEC_MARKER.search(text):
        return False
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return True  # it says `charts:` at the top: report its syntax error rather than skip it
    return isinstance(root, yaml.MappingNode) and any(
        isinstance(k, yaml.ScalarNode) and k.value == "charts" for k, _ in root.value
    )


def load_spec(path: Path, environ: Mapping[str, str] | None = None, display_path: str | None = None) -> Spec:
    """Parse and validate one spec file; raises SpecError naming the file, line and fix.

    `display_path` is how messages name the file (pytest passes it relative to the invocation).
    """
    env = os.environ if environ is None else environ
    shown = display_path or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(shown, f"cannot read the spec: {exc}") from None
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise SpecError(
            f"{shown}:{line}", f"invalid YAML: {exc.problem}", "fix the YAML syntax at that line"
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(shown, f"invalid YAML: {exc}") from None
    return _SpecReader(path, shown, env).spec(root)


class _SpecReader:
    """Walks the YAML node tree so that every error can name the line it comes from."""

    def __init__(self, path: Path, shown: str, env: Mapping[str, str]) -> None:
        self.path = path
        self.shown = shown
        self.env = env

    def where(self, node: yaml.Node | None) -> str:
        line = node.start_mark.line + 1 if node is not None else 1
        return f"{self.shown}:{line}"

    def fail(self, node: yaml.Node | None, problem: str, fix: str = "") -> SpecError:
        return SpecError(self.where(node), problem, fix)

    def mapping(
        self, node: yaml.Node | None, what: str, required: tuple[str, ...], optional: tuple[str, ...]
    ) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping", f"write {what} as `key: value` lines")
        fields: dict[str, yaml.Node] = {}
        allowed = required + optional
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key not in allowed:
                raise self.fail(
                    key_node,
                    f"unknown key {key!r} in {what}",
                    _did_you_mean(str(key), allowed),
                )
            if key in fields:
                raise self.fail(key_node, f"duplicate key {key!r} in {what}", "keep one of them")
            fields[key] = value_node
        for key in required:
            if key not in fields:
                raise self.fail(node, f"{what} has no {key!r}", f"add `{key}:` to {what}")
        return fields

    def string(self, node: yaml.Node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:null":
            raise self.fail(node, f"{what} must be a string")
        # The raw scalar text, so that `version: 1.10` stays "1.10" rather than the float 1.1.
        return self.expand(node, node.value)

    def boolean(self, node: yaml.Node, what: str) -> bool:
        text = self.string(node, what).strip().lower()
        if text in ("true", "yes", "on"):
            return True
        if text in ("false", "no", "off"):
            return False
        raise self.fail(node, f"{what} must be true or false, not {text!r}")

    def choice(self, node: yaml.Node, what: str, choices: tuple[str, ...]) -> str:
        value = self.string(node, what)
        if value not in choices:
            raise self.fail(node, f"{what} must be one of {', '.join(choices)}, not {value!r}")
        return value

    def expand(self, node: yaml.Node, text: str) -> str:
        def substitute(match: re.Match[str]) -> str:
            name = match.group("name")
            if name is None:  # `$$` is a literal dollar sign
                return "$"
            value = self.env.get(name)
            if value is None or (value == "" and match.group("default") is not None):
                if match.group("default") is not None:
                    return match.group("default")
                raise self.fail(
                    node,
                    f"environment variable {name} is not set",
                    f"export {name}=..., or give a default: ${{{name}:-value}}",
                )
            return value

        return _VARIABLE.sub(substitute, text)

    def spec(self, root: yaml.Node | None) -> Spec:
        fields = self.mapping(root, "the spec", ("target", "charts"), ())
        target = self.target(fields["target"])
        charts_node = fields["charts"]
        if not isinstance(charts_node, yaml.SequenceNode) or not charts_node.value:
            raise self.fail(
                charts_node, "charts must be a non-empty list", "list charts as `- name: ...` entries"
            )
        charts = tuple(self.chart(node, target) for node in charts_node.value)
        seen: dict[tuple[str, str], ChartEntry] = {}
        for chart in charts:
            key = (chart.name, chart.repo)
            if key in seen:
                raise SpecError(
                    chart.where,
                    f"chart {chart.name!r} from {chart.repo} is listed twice (first at {seen[key].where})",
                    "merge the two entries' versions",
                )
            seen[key] = chart
        names: dict[str, ChartEntry] = {}
        for chart in charts:
            if chart.name in names and names[chart.name].repo != chart.repo:
                raise SpecError(
                    chart.where,
                    f"chart {chart.name!r} comes from two repositories "
                    f"({names[chart.name].repo} and {chart.repo}) into one ECR repository",
                    "mirror one of them into another spec with a different prefix",
                )
            names[chart.name] = chart
        return Spec(path=self.path, target=target, charts=charts)

    def target(self, node: yaml.Node) -> Target:
        fields = self.mapping(node, "target", ("registry",), ("prefix", "create_repositories", "repository"))
        registry_node = fields["registry"]
        raw = self.string(registry_node, "target.registry").strip()
        host, _, path_prefix = re.sub(r"^oci://", "", raw).rstrip("/").partition("/")
        match = ECR_HOST.match(host)
        if not match:
            raise self.fail(
                registry_node,
                f"target.registry {raw!r} is not an ECR registry host",
                "use <account>.dkr.ecr.<region>.amazonaws.com (an oci:// prefix is fine)",
            )
        prefix = path_prefix
        if "prefix" in fields:
            if path_prefix:
                raise self.fail(
                    fields["prefix"],
                    "target.registry already has a path and target.prefix gives another",
                    "keep the path in one of them",
                )
            prefix = self.string(fields["prefix"], "target.prefix").strip("/")
        if prefix and not REPOSITORY_NAME.match(prefix):
            raise self.fail(
                fields.get("prefix", registry_node),
                f"prefix {prefix!r} is not a valid repository path",
                "use lowercase letters, digits, and . _ - / between them",
            )
        create = False
        if "create_repositories" in fields:
            create = self.boolean(fields["create_repositories"], "target.create_repositories")
        settings = RepositorySettings()
        if "repository" in fields:
            settings = self.repository_settings(fields["repository"])
        return Target(
            registry=Registry(host=host, account=match["account"], region=match["region"]),
            prefix=prefix,
            create_repositories=create,
            repository=settings,
            where=self.where(node),
        )

    def repository_settings(self, node: yaml.Node) -> RepositorySettings:
        fields = self.mapping(node, "target.repository", (), ("image_tag_mutability", "scan_on_push"))
        defaults = RepositorySettings()
        return RepositorySettings(
            image_tag_mutability=self.choice(
                fields["image_tag_mutability"], "image_tag_mutability", TAG_MUTABILITY
            )
            if "image_tag_mutability" in fields
            else defaults.image_tag_mutability,
            scan_on_push=self.boolean(fields["scan_on_push"], "scan_on_push")
            if "scan_on_push" in fields
            else defaults.scan_on_push,
        )

    def chart(self, node: yaml.Node, target: Target) -> ChartEntry:
        fields = self.mapping(node, "a chart entry", ("name", "repo", "versions"), ())
        name = self.string(fields["name"], "name")
        repository = target.repository_for(name)
        if not REPOSITORY_NAME.match(repository):
            raise self.fail(
                fields["name"],
                f"chart name {name!r} cannot be an ECR repository name",
                "OCI repository names are lowercase; helm cannot push this chart either",
            )
        repo = self.string(fields["repo"], "repo").strip()
        if not repo:
            raise self.fail(
                fields["repo"],
                "repo is empty",
                "give a Helm repository URL or a directory relative to the spec",
            )
        versions_node = fields["versions"]
        if not isinstance(versions_node, yaml.SequenceNode) or not versions_node.value:
            raise self.fail(
                versions_node,
                "versions must be a non-empty list of versions",
                'write versions: ["1.2.3", "1.2.4"]',
            )
        versions: list[VersionEntry] = []
        seen: set[str] = set()
        for version_node in versions_node.value:
            version = self.string(version_node, "a version").strip()
            if not version:
                raise self.fail(version_node, "a version is empty")
            if not OCI_TAG.match(version.replace("+", "_")):
                raise self.fail(
                    version_node,
                    f"version {version!r} of {name} cannot be an OCI tag",
                    "a version is at most 128 characters of letters, digits, . _ - and +",
                )
            if version in seen:
                raise self.fail(
                    version_node, f"version {version} of {name} is listed twice", "remove the duplicate"
                )
            seen.add(version)
            versions.append(VersionEntry(version, self.where(version_node), version_node.start_mark.line + 1))
        return ChartEntry(name=name, repo=repo, versions=tuple(versions), where=self.where(node))


def _did_you_mean(key: str, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f"did you mean {close[0]!r}? (allowed: {', '.join(allowed)})"
    return f"remove it (allowed: {', '.join(allowed)})"
