"""Load a mirror spec: YAML with file:line for every value, ${VAR} expansion and strict validation."""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import yaml

from ecrmirror.constraints import ConstraintError, parse_constraint
from ecrmirror.errors import SpecError

try:  # libyaml is much faster; PyYAML's pure-Python loader gives the same nodes and marks.
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

TAG_MUTABILITY = ("IMMUTABLE", "MUTABLE", "IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION")
ENCRYPTION_TYPES = ("AES256", "KMS", "KMS_DSSE")
DEFAULT_TAG_MUTABILITY = "IMMUTABLE"  # what a created repository gets when the spec says nothing
# ECR's limits: https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_ImageTagMutabilityExclusionFilter.html
_EXCLUSION_FILTER = re.compile(r"^[0-9a-zA-Z._*-]{1,128}$")
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d$")
_ACCOUNT = re.compile(r"^\d{12}$")
_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(?:key|alias)/\S+$")
# https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests
REPOSITORY_NAME = re.compile(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")
# Standard, FIPS and dual-stack ECR registry hosts, in the commercial and China partitions.
ECR_HOST = re.compile(
    r"^(?P<account>\d{12})\.dkr[.-]ecr(?:-fips)?\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)"
    r"\.(?:amazonaws\.com(?:\.cn)?|on\.aws)$"
)
CHART_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
# https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests
OCI_TAG = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
_VARIABLE = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\})")
_STR_TAG = "tag:yaml.org,2002:str"
_ACCESS_KEYS = ("auth", "ca_file", "insecure_skip_tls_verify", "pass_credentials", "plain_http")
_SPEC_MARKER = re.compile(r"^charts\s*:", re.MULTILINE)


@dataclass(frozen=True)
class RepositorySettings:
    """The repository settings a spec declares. None means "not declared": ecrmirror neither
    sets nor audits it, and a repository it creates gets ECR's default (IMMUTABLE tags for
    `image_tag_mutability`, because a mirror must never be overwritten)."""

    image_tag_mutability: str | None = None
    mutability_exclusions: tuple[str, ...] | None = None  # WILDCARD filters of *_WITH_EXCLUSION
    scan_on_push: bool | None = None
    encryption: str | None = None
    kms_key: str | None = None
    tags: tuple[tuple[str, str], ...] | None = None
    lifecycle_policy: str | None = None  # JSON text, as ECR takes it
    enforce: bool = False  # change an existing repository to match (never its encryption)
    where: str = ""

    @property
    def declared(self) -> bool:
        return any(
            value is not None
            for value in (
                self.image_tag_mutability,
                self.mutability_exclusions,
                self.scan_on_push,
                self.encryption,
                self.kms_key,
                self.tags,
                self.lifecycle_policy,
            )
        )


@dataclass(frozen=True)
class Destination:
    """Where a replication rule copies images: a region, in this account or another."""

    region: str
    registry_id: str


@dataclass(frozen=True)
class Replication:
    destinations: tuple[Destination, ...]
    where: str


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
    replication: Replication | None = None

    def repository_for(self, chart_name: str) -> str:
        """The repository `helm push x.tgz oci://<registry>/<prefix>` would use."""
        return f"{self.prefix}/{chart_name}" if self.prefix else chart_name


@dataclass(frozen=True)
class VersionEntry:
    version: str
    where: str
    line: int


@dataclass(frozen=True)
class VersionRange:
    """`versions: ">=7.1 <8"` and its options: resolved against the upstream at collection."""

    constraint: str
    latest: int | None
    include_prereleases: bool
    exclude: tuple[str, ...]
    where: str
    line: int

    def describe(self) -> str:
        text = repr(self.constraint)
        if self.include_prereleases:
            text += " with prereleases"
        if self.exclude:
            text += f" except {', '.join(self.exclude)}"
        if self.latest is not None:
            text += f", latest {self.latest}"
        return text


@dataclass(frozen=True)
class Credentials:
    """What a spec gives for a private upstream: a username and password, or a token."""

    username: str = ""
    password: str = ""
    token: str = ""

    def __repr__(self) -> str:  # never let a secret reach a traceback or an assertion message
        return f"Credentials(username={self.username!r}, password=***, token=***)"


@dataclass(frozen=True)
class Access:
    """How to reach a chart's upstream: credentials and TLS, as helm's repo options."""

    credentials: Credentials | None = None
    ca_file: str | None = None
    insecure_skip_tls_verify: bool = False
    pass_credentials: bool = False  # send credentials to chart URLs on other hosts (helm's flag)
    plain_http: bool = False  # an OCI registry without TLS, as helm's --plain-http

    @property
    def verify(self) -> bool | str:
        """requests' `verify`: a CA bundle, or whether to verify at all."""
        if self.insecure_skip_tls_verify:
            return False
        return self.ca_file or True


@dataclass(frozen=True)
class ChartEntry:
    name: str
    repo: str
    versions: tuple[VersionEntry, ...]  # exact versions; empty when `range` says which
    where: str
    range: VersionRange | None = None
    access: Access = Access()
    provenance: str = "if-present"  # or "required"
    with_dependencies: bool = False

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
    _reject_aliases(root, shown)
    return _SpecReader(path, shown, env).spec(root)


def _reject_aliases(root: yaml.Node | None, shown: str) -> None:
    """A spec with anchors and aliases (&a, *a) is refused: they hide what the file says, and a
    few lines of them expand to billions of values (the "billion laughs")."""
    seen: set[int] = set()
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if id(node) in seen:
            line = node.start_mark.line + 1
            raise SpecError(
                f"{shown}:{line}",
                "YAML anchors and aliases (&name, *name) are not allowed in a spec",
                "write the value out where it is used",
            )
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


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
        fields = self.mapping(
            node,
            "target",
            ("registry",),
            ("prefix", "create_repositories", "repository", "replication"),
        )
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
        registry = Registry(host=host, account=match["account"], region=match["region"])
        replication = None
        if "replication" in fields:
            replication = self.replication(fields["replication"], registry)
        return Target(
            registry=registry,
            prefix=prefix,
            create_repositories=create,
            repository=settings,
            where=self.where(node),
            replication=replication,
        )

    def repository_settings(self, node: yaml.Node) -> RepositorySettings:
        fields = self.mapping(
            node,
            "target.repository",
            (),
            (
                "image_tag_mutability",
                "image_tag_mutability_exclusion_filters",
                "scan_on_push",
                "encryption",
                "kms_key",
                "tags",
                "lifecycle_policy",
                "enforce_settings",
            ),
        )
        mutability = exclusions = scan = encryption = kms_key = tags = lifecycle = None
        if "image_tag_mutability" in fields:
            mutability = self.choice(fields["image_tag_mutability"], "image_tag_mutability", TAG_MUTABILITY)
        if "image_tag_mutability_exclusion_filters" in fields:
            exclusions = self.exclusion_filters(fields["image_tag_mutability_exclusion_filters"])
        with_exclusion = (mutability or "").endswith("_WITH_EXCLUSION")
        if with_exclusion and exclusions is None:
            raise self.fail(
                fields["image_tag_mutability"],
                f"image_tag_mutability {mutability} needs image_tag_mutability_exclusion_filters",
                'list the exempt tag patterns: image_tag_mutability_exclusion_filters: ["latest"]',
            )
        if exclusions is not None and not with_exclusion:
            raise self.fail(
                fields["image_tag_mutability_exclusion_filters"],
                "image_tag_mutability_exclusion_filters needs image_tag_mutability "
                "IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION",
                "set one of those, or remove the filters",
            )
        if "scan_on_push" in fields:
            scan = self.boolean(fields["scan_on_push"], "scan_on_push")
        if "encryption" in fields:
            encryption = self.choice(fields["encryption"], "encryption", ENCRYPTION_TYPES)
        if "kms_key" in fields:
            kms_key = self.string(fields["kms_key"], "kms_key").strip()
            if encryption not in ("KMS", "KMS_DSSE"):
                raise self.fail(
                    fields["kms_key"], "kms_key needs encryption: KMS (or KMS_DSSE)", "add `encryption: KMS`"
                )
            if not _KMS_KEY_ARN.match(kms_key):
                raise self.fail(
                    fields["kms_key"],
                    f"kms_key {kms_key!r} is not a KMS key ARN",
                    "give the full ARN: arn:aws:kms:<region>:<account>:key/<id>",
                )
        if "tags" in fields:
            tags = self.resource_tags(fields["tags"])
        if "lifecycle_policy" in fields:
            lifecycle = self.lifecycle_policy(fields["lifecycle_policy"])
        enforce = False
        if "enforce_settings" in fields:
            enforce = self.boolean(fields["enforce_settings"], "enforce_settings")
        return RepositorySettings(
            image_tag_mutability=mutability,
            mutability_exclusions=exclusions,
            scan_on_push=scan,
            encryption=encryption,
            kms_key=kms_key,
            tags=tags,
            lifecycle_policy=lifecycle,
            enforce=enforce,
            where=self.where(node),
        )

    def exclusion_filters(self, node: yaml.Node) -> tuple[str, ...]:
        what = "image_tag_mutability_exclusion_filters"
        if not isinstance(node, yaml.SequenceNode) or not 1 <= len(node.value) <= 5:
            raise self.fail(
                node, f"{what} must be a list of 1 to 5 tag patterns", 'write ["latest", "dev-*"]'
            )
        filters = tuple(self.string(item, "a tag pattern").strip() for item in node.value)
        for item, value in zip(node.value, filters, strict=True):
            if not _EXCLUSION_FILTER.match(value):
                raise self.fail(
                    item,
                    f"tag pattern {value!r} is not valid for ECR",
                    "use 1-128 letters, digits, . _ - and the wildcard *",
                )
        return filters

    def resource_tags(self, node: yaml.Node) -> tuple[tuple[str, str], ...]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(
                node, "tags must be a mapping of tag keys to values", "write tags: {team: platform}"
            )
        tags: dict[str, str] = {}
        for key_node, value_node in node.value:
            key = self.string(key_node, "a tag key").strip()
            value = self.string(value_node, f"tag {key!r}")
            if not 1 <= len(key) <= 128 or len(value) > 256 or key.lower().startswith("aws:"):
                raise self.fail(
                    key_node,
                    f"tag {key!r} is not a valid AWS resource tag",
                    "keys are 1-128 characters and do not start with aws:; values at most 256",
                )
            if key in tags:
                raise self.fail(key_node, f"tag {key!r} is given twice", "keep one of them")
            tags[key] = value
        return tuple(sorted(tags.items()))

    def lifecycle_policy(self, node: yaml.Node) -> str:
        """A lifecycle policy written as YAML, or as the JSON text ECR's console shows."""
        if isinstance(node, yaml.ScalarNode):
            text = self.string(node, "lifecycle_policy")
            try:
                policy = json.loads(text)
            except ValueError as exc:
                raise self.fail(
                    node, f"lifecycle_policy is not valid JSON: {exc}", "write it as YAML, or fix the JSON"
                ) from None
        else:
            policy = self.plain(node)
        if not isinstance(policy, dict) or not isinstance(policy.get("rules"), list) or not policy["rules"]:
            raise self.fail(
                node,
                "lifecycle_policy must have a non-empty list of rules",
                "see https://docs.aws.amazon.com/AmazonECR/latest/userguide/lifecycle_policy_parameters.html",
            )
        return json.dumps(policy, sort_keys=True, separators=(",", ":"))

    def plain(self, node: yaml.Node) -> Any:
        """A YAML subtree as plain Python values, with ${VAR} expanded in every string."""
        if isinstance(node, yaml.MappingNode):
            return {self.string(k, "a key"): self.plain(v) for k, v in node.value}
        if isinstance(node, yaml.SequenceNode):
            return [self.plain(item) for item in node.value]
        if node.tag == _STR_TAG:
            return self.expand(node, node.value)
        return yaml.safe_load(node.value)  # an int, bool or null, as YAML resolved it

    def version_range(self, node: yaml.Node, fields: dict[str, yaml.Node]) -> VersionRange:
        text = self.string(node, "versions").strip()
        try:
            parse_constraint(text)
        except ConstraintError as exc:
            raise self.fail(
                node,
                f"versions {text!r} is not a version constraint: {exc}",
                'use helm\'s syntax: ">=7.1.0 <8.0.0", "~7.9", "^7", "7.x", or a list of exact versions',
            ) from None
        latest = None
        if "latest" in fields:
            latest = _positive(self.string(fields["latest"], "latest").strip())
            if latest is None:
                raise self.fail(fields["latest"], "latest must be a whole number above 0", "write latest: 3")
        include = False
        if "include_prereleases" in fields:
            include = self.boolean(fields["include_prereleases"], "include_prereleases")
        exclude: tuple[str, ...] = ()
        if "exclude" in fields:
            exclude_node = fields["exclude"]
            if not isinstance(exclude_node, yaml.SequenceNode):
                raise self.fail(
                    exclude_node, "exclude must be a list of versions", 'write exclude: ["7.3.1"]'
                )
            exclude = tuple(self.string(item, "a version").strip() for item in exclude_node.value)
        return VersionRange(text, latest, include, exclude, self.where(node), node.start_mark.line + 1)

    def replication(self, node: yaml.Node, registry: Registry) -> Replication:
        fields = self.mapping(node, "target.replication", ("regions",), ("registry_id",))
        registry_id = registry.account
        if "registry_id" in fields:
            registry_id = self.string(fields["registry_id"], "replication.registry_id").strip()
            if not _ACCOUNT.match(registry_id):
                raise self.fail(
                    fields["registry_id"],
                    f"replication.registry_id {registry_id!r} is not an AWS account id",
                    "give the 12-digit account id of the destination registry",
                )
        regions_node = fields["regions"]
        if not isinstance(regions_node, yaml.SequenceNode) or not regions_node.value:
            raise self.fail(
                regions_node, "replication.regions must be a non-empty list", "write [eu-central-1]"
            )
        destinations: list[Destination] = []
        for region_node in regions_node.value:
            region = self.string(region_node, "a region").strip()
            if not _REGION.match(region):
                raise self.fail(region_node, f"{region!r} is not an AWS region", "write e.g. eu-central-1")
            if region == registry.region and registry_id == registry.account:
                raise self.fail(
                    region_node,
                    f"replication to {region} would copy the registry onto itself",
                    "list other regions, or set registry_id for another account",
                )
            destination = Destination(region, registry_id)
            if destination in destinations:
                raise self.fail(region_node, f"region {region} is listed twice", "remove the duplicate")
            destinations.append(destination)
        return Replication(destinations=tuple(destinations), where=self.where(node))

    def chart(self, node: yaml.Node, target: Target) -> ChartEntry:
        fields = self.mapping(
            node,
            "a chart entry",
            ("name", "repo", "versions"),
            ("latest", "include_prereleases", "exclude", *_ACCESS_KEYS, "provenance", "with_dependencies"),
        )
        name = self.string(fields["name"], "name")
        if not CHART_NAME.match(name):
            raise self.fail(
                fields["name"],
                f"chart name {name!r} is not a chart name",
                "chart names are lowercase letters and digits, with . _ - between them (no / or ..); "
                "helm cannot push anything else to an OCI registry",
            )
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
        repo, in_url = self.credentials_in_url(fields["repo"], repo, "auth" in fields)
        extras = self.chart_options(fields, repo)
        if in_url is not None:
            extras["access"] = replace(extras["access"], credentials=in_url)
        versions_node = fields["versions"]
        if isinstance(versions_node, yaml.ScalarNode) and versions_node.tag != "tag:yaml.org,2002:null":
            return ChartEntry(
                name=name,
                repo=repo,
                versions=(),
                where=self.where(node),
                range=self.version_range(versions_node, fields),
                **extras,
            )
        for option in ("latest", "include_prereleases", "exclude"):
            if option in fields:
                raise self.fail(
                    fields[option],
                    f"{option} applies to a version constraint, but versions is a list",
                    'write versions as a constraint string, e.g. versions: ">=7.1.0 <8.0.0"',
                )
        if not isinstance(versions_node, yaml.SequenceNode) or not versions_node.value:
            raise self.fail(
                versions_node,
                "versions must be a non-empty list of versions, or a constraint string",
                'write versions: ["1.2.3", "1.2.4"] or versions: ">=1.2.0 <2.0.0"',
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
        return ChartEntry(name=name, repo=repo, versions=tuple(versions), where=self.where(node), **extras)

    def credentials_in_url(
        self, node: yaml.Node, repo: str, has_auth: bool
    ) -> tuple[str, Credentials | None]:
        """`https://user:password@host/...` works, but the credentials leave the URL at once, so
        that no message or log that names the repository can show them."""
        parts = urlsplit(repo)
        if not parts.username:
            return repo, None
        if has_auth:
            raise self.fail(
                node, "repo has credentials in its URL and the entry has auth too", "keep one of them"
            )
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        clean = urlunsplit(parts._replace(netloc=netloc))
        return clean, Credentials(username=unquote(parts.username), password=unquote(parts.password or ""))

    def chart_options(self, fields: dict[str, yaml.Node], repo: str) -> dict[str, Any]:
        """Access, provenance and dependency options of a chart entry."""
        credentials = None
        if "auth" in fields:
            auth = self.mapping(fields["auth"], "auth", (), ("username", "password", "token"))
            values = {key: self.string(value, f"auth.{key}") for key, value in auth.items()}
            if "token" in values and ("username" in values or "password" in values):
                raise self.fail(fields["auth"], "auth takes a token or a username and password, not both")
            if "token" not in values and not values.get("username"):
                raise self.fail(
                    fields["auth"],
                    "auth needs a username (with a password) or a token",
                    "write auth: {username: ${REPO_USER}, password: ${REPO_PASSWORD}}",
                )
            credentials = Credentials(**values)
        flags = {
            key: self.boolean(fields[key], key)
            for key in ("insecure_skip_tls_verify", "pass_credentials", "plain_http", "with_dependencies")
            if key in fields
        }
        if flags.get("plain_http") and not repo.startswith("oci://"):
            raise self.fail(
                fields["plain_http"],
                "plain_http applies to oci:// repositories",
                "use an http:// repo URL instead",
            )
        ca_file = None
        if "ca_file" in fields:
            ca_path = Path(self.string(fields["ca_file"], "ca_file").strip())
            ca_file = str(ca_path if ca_path.is_absolute() else (self.path.parent / ca_path).resolve())
            if not Path(ca_file).is_file():
                raise self.fail(
                    fields["ca_file"],
                    f"ca_file {ca_file} does not exist",
                    "give a PEM file of CA certificates",
                )
        provenance = "if-present"
        if "provenance" in fields:
            provenance = self.choice(fields["provenance"], "provenance", ("if-present", "required"))
        return {
            "access": Access(
                credentials=credentials,
                ca_file=ca_file,
                insecure_skip_tls_verify=flags.get("insecure_skip_tls_verify", False),
                pass_credentials=flags.get("pass_credentials", False),
                plain_http=flags.get("plain_http", False),
            ),
            "provenance": provenance,
            "with_dependencies": flags.get("with_dependencies", False),
        }


def _positive(text: str) -> int | None:
    return int(text) if text.isdigit() and int(text) > 0 else None


def _did_you_mean(key: str, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f"did you mean {close[0]!r}? (allowed: {', '.join(allowed)})"
    return f"remove it (allowed: {', '.join(allowed)})"
