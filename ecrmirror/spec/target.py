"""The `target:` section of a spec: the ECR registry, the repositories' settings, replication."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from ecrmirror import ecr_rules
from ecrmirror.spec.images import read_naming
from ecrmirror.spec.model import (
    ARCHIVED_CHOICES,
    ENCRYPTION_TYPES,
    TAG_MUTABILITY,
    Destination,
    ImageNaming,
    ManagedSigning,
    PullTimeExclusions,
    Registry,
    Replication,
    RepositorySettings,
    Signing,
    SigningRule,
    Target,
    Verification,
)
from ecrmirror.spec.reader import Reader

# ECR's limits: https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_ImageTagMutabilityExclusionFilter.html
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d$")
_ACCOUNT = re.compile(r"^\d{12}$")
# https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests
REPOSITORY_NAME = re.compile(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")
# Standard, FIPS and dual-stack ECR registry hosts, in the commercial and China partitions.
ECR_HOST = re.compile(
    r"^(?P<account>\d{12})\.dkr[.-]ecr(?:-fips)?\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)"
    r"\.(?:amazonaws\.com(?:\.cn)?|on\.aws)$"
)


def read_target(reader: Reader, node: yaml.Node) -> Target:
    fields = reader.mapping(
        node,
        "target",
        ("registry",),
        (
            "prefix",
            "create_repositories",
            "repository",
            "replication",
            "verify",
            "sign",
            "images",
            "archived",
            "managed_signing",
            "pull_time_exclusions",
        ),
    )
    registry_node = fields["registry"]
    raw = reader.string(registry_node, "target.registry").strip()
    host, _, path_prefix = re.sub(r"^oci://", "", raw).rstrip("/").partition("/")
    match = ECR_HOST.match(host)
    if not match:
        raise reader.fail(
            registry_node,
            f"target.registry {raw!r} is not an ECR registry host",
            "use <account>.dkr.ecr.<region>.amazonaws.com (an oci:// prefix is fine)",
        )
    prefix = path_prefix
    if "prefix" in fields:
        if path_prefix:
            raise reader.fail(
                fields["prefix"],
                "target.registry already has a path and target.prefix gives another",
                "keep the path in one of them",
            )
        prefix = reader.string(fields["prefix"], "target.prefix").strip("/")
    if prefix and not REPOSITORY_NAME.match(prefix):
        raise reader.fail(
            fields.get("prefix", registry_node),
            f"prefix {prefix!r} is not a valid repository path",
            "use lowercase letters, digits, and . _ - / between them",
        )
    create = False
    if "create_repositories" in fields:
        create = reader.boolean(fields["create_repositories"], "target.create_repositories")
    registry = Registry(host=host, account=match["account"], region=match["region"])
    settings = RepositorySettings()
    if "repository" in fields:
        settings = _repository_settings(reader, fields["repository"], registry)
    replication = None
    if "replication" in fields:
        replication = _replication(reader, fields["replication"], registry)
    verify = read_verification(reader, fields["verify"], "target.verify") if "verify" in fields else None
    sign = _signing(reader, fields["sign"]) if "sign" in fields else None
    naming = read_naming(reader, fields["images"]) if "images" in fields else ImageNaming()
    archived = "restore"
    if "archived" in fields:
        archived = reader.choice(fields["archived"], "target.archived", ARCHIVED_CHOICES)
    managed = (
        _managed_signing(reader, fields["managed_signing"], registry) if "managed_signing" in fields else None
    )
    exclusions = None
    if "pull_time_exclusions" in fields:
        exclusions = _pull_time_exclusions(reader, fields["pull_time_exclusions"])
    return Target(
        registry=registry,
        prefix=prefix,
        create_repositories=create,
        repository=settings,
        where=reader.where(node),
        replication=replication,
        verify=verify,
        sign=sign,
        images=naming,
        archived=archived,
        managed_signing=managed,
        pull_time_exclusions=exclusions,
    )


def _managed_signing(reader: Reader, node: yaml.Node, registry: Registry) -> ManagedSigning:
    """`managed_signing: [{profile: ARN, repositories: [WILDCARD, ...]}, ...]`."""
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        raise reader.fail(
            node,
            "target.managed_signing must be a list of rules",
            "write - profile: arn:aws:signer:REGION:ACCOUNT:/signing-profiles/NAME",
        )
    rules = []
    for entry in node.value:
        fields = reader.mapping(entry, "a managed_signing rule", ("profile",), ("repositories",))
        profile = reader.string(fields["profile"], "managed_signing.profile").strip()
        filters: tuple[str, ...] = ()
        if "repositories" in fields:
            listed = fields["repositories"]
            if not isinstance(listed, yaml.SequenceNode) or not listed.value:
                raise reader.fail(
                    listed,
                    "managed_signing.repositories must be a list of repository names (* for any run "
                    "of characters)",
                    "leave it out to sign every repository's images",
                )
            filters = tuple(reader.string(f, "managed_signing.repositories").strip() for f in listed.value)
        problems = ecr_rules.signing_rule_problems(profile, filters, registry.region)
        if problems:
            raise reader.fail(entry, "; ".join(problems), "ECR's PutSigningConfiguration would refuse it")
        rules.append(SigningRule(profile, filters))
    if len(rules) > ecr_rules.MAX_SIGNING_RULES:
        raise reader.fail(
            node,
            f"{len(rules)} managed_signing rules; a registry holds at most {ecr_rules.MAX_SIGNING_RULES}",
        )
    return ManagedSigning(tuple(rules), reader.where(node))


# What RegisterPullTimeUpdateExclusion takes: IAM roles (userguide/pull-time-update-exclusions-
# considerations.html; the model's pattern also admits users, the guide does not), up to 200 characters.
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,}$")


def _pull_time_exclusions(reader: Reader, node: yaml.Node) -> PullTimeExclusions:
    """`pull_time_exclusions: [arn:aws:iam::ACCOUNT:role/NAME, ...]`."""
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        raise reader.fail(
            node,
            "target.pull_time_exclusions must be a list of IAM role ARNs",
            "write - arn:aws:iam::111122223333:role/ecrmirror-audit",
        )
    roles = []
    for entry in node.value:
        role = reader.string(entry, "pull_time_exclusions").strip()
        if not _ROLE_ARN.match(role) or len(role) > 200:
            raise reader.fail(
                entry,
                f"{role!r} is not an IAM role ARN",
                "ECR excludes roles only: arn:aws:iam::ACCOUNT:role/NAME (give the role, not an "
                "assumed-role session)",
            )
        roles.append(role)
    return PullTimeExclusions(tuple(dict.fromkeys(roles)), reader.where(node))


_KMS_KEY = re.compile(
    r"^(?:alias/[a-zA-Z0-9/_-]+|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(?:key|alias)/[a-zA-Z0-9/_-]+"
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)


def _signing(reader: Reader, node: yaml.Node) -> Signing:
    fields = reader.mapping(node, "target.sign", ("kms_key",), ())
    key = reader.string(fields["kms_key"], "target.sign.kms_key").strip()
    if not _KMS_KEY.match(key):
        raise reader.fail(
            fields["kms_key"],
            f"sign.kms_key {key!r} is not an AWS KMS key",
            "give alias/NAME, a key or alias ARN, or a key id of an ECC_NIST_P256 signing key",
        )
    return Signing(key, reader.where(node))


def read_verification(reader: Reader, node: yaml.Node, label: str) -> Verification | None:
    """`verify: {keyring: PATH}` (relative to the spec), or `verify: false` to opt a chart out."""
    if isinstance(node, yaml.ScalarNode):
        if reader.boolean(node, label):
            raise reader.fail(
                node, f"{label} needs a keyring", "write verify: {keyring: path/to/pubring.gpg}"
            )
        return None
    fields = reader.mapping(node, label, ("keyring",), ())
    keyring_node = fields["keyring"]
    given = Path(reader.string(keyring_node, f"{label}.keyring").strip())
    keyring = given if given.is_absolute() else (reader.path.parent / given).resolve()
    if not keyring.is_file():
        raise reader.fail(
            keyring_node,
            f"keyring {keyring} does not exist",
            "give the public keyring that `helm verify --keyring` would use (gpg --export KEY > FILE)",
        )
    if keyring.read_bytes()[:32].lstrip().startswith(b"-----BEGIN PGP"):
        raise reader.fail(
            keyring_node,
            f"keyring {keyring} is ASCII-armored; helm and gpgv read binary keyrings",
            f"convert it: gpg --dearmor < {given} > {given.with_suffix('.gpg').name}",
        )
    return Verification(str(keyring), reader.where(node))


def _repository_settings(reader: Reader, node: yaml.Node, registry: Registry) -> RepositorySettings:
    fields = reader.mapping(
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
        mutability = reader.choice(fields["image_tag_mutability"], "image_tag_mutability", TAG_MUTABILITY)
    if "image_tag_mutability_exclusion_filters" in fields:
        exclusions = _exclusion_filters(reader, fields["image_tag_mutability_exclusion_filters"])
    with_exclusion = (mutability or "").endswith("_WITH_EXCLUSION")
    if with_exclusion and exclusions is None:
        raise reader.fail(
            fields["image_tag_mutability"],
            f"image_tag_mutability {mutability} needs image_tag_mutability_exclusion_filters",
            'list the exempt tag patterns: image_tag_mutability_exclusion_filters: ["latest"]',
        )
    if exclusions is not None and not with_exclusion:
        raise reader.fail(
            fields["image_tag_mutability_exclusion_filters"],
            "image_tag_mutability_exclusion_filters needs image_tag_mutability "
            "IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION",
            "set one of those, or remove the filters",
        )
    if "scan_on_push" in fields:
        scan = reader.boolean(fields["scan_on_push"], "scan_on_push")
    if "encryption" in fields:
        encryption = reader.choice(fields["encryption"], "encryption", ENCRYPTION_TYPES)
    if "kms_key" in fields:
        kms_key = reader.string(fields["kms_key"], "kms_key").strip()
        if encryption not in ("KMS", "KMS_DSSE"):
            raise reader.fail(
                fields["kms_key"], "kms_key needs encryption: KMS (or KMS_DSSE)", "add `encryption: KMS`"
            )
        key_arn = ecr_rules.KMS_KEY_ARN.match(kms_key)
        if key_arn and key_arn["region"] != registry.region:
            raise reader.fail(
                fields["kms_key"],
                f"kms_key is a key in {key_arn['region']}, but the registry is in {registry.region}: ECR "
                "encrypts a repository only with a KMS key of the repository's own region",
                f"give a key of {registry.region}",
            )
        if not key_arn:
            raise reader.fail(
                fields["kms_key"],
                f"kms_key {kms_key!r} is not a KMS key ARN",
                "give the full ARN: arn:aws:kms:<region>:<account>:key/<id>",
            )
    if "tags" in fields:
        tags = _resource_tags(reader, fields["tags"])
    if "lifecycle_policy" in fields:
        lifecycle = _lifecycle_policy(reader, fields["lifecycle_policy"])
    enforce = False
    if "enforce_settings" in fields:
        enforce = reader.boolean(fields["enforce_settings"], "enforce_settings")
    return RepositorySettings(
        image_tag_mutability=mutability,
        mutability_exclusions=exclusions,
        scan_on_push=scan,
        encryption=encryption,
        kms_key=kms_key,
        tags=tags,
        lifecycle_policy=lifecycle,
        enforce=enforce,
        where=reader.where(node),
    )


def _exclusion_filters(reader: Reader, node: yaml.Node) -> tuple[str, ...]:
    what = "image_tag_mutability_exclusion_filters"
    most = ecr_rules.MAX_EXCLUSION_FILTERS
    if not isinstance(node, yaml.SequenceNode) or not 1 <= len(node.value) <= most:
        raise reader.fail(
            node, f"{what} must be a list of 1 to {most} tag patterns", 'write ["latest", "dev-*"]'
        )
    filters = tuple(reader.string(item, "a tag pattern").strip() for item in node.value)
    for item, value in zip(node.value, filters, strict=True):
        if not ecr_rules.EXCLUSION_FILTER.match(value):
            raise reader.fail(
                item,
                f"tag pattern {value!r} is not valid for ECR",
                "use 1-128 letters, digits, . _ - and the wildcard *",
            )
    return filters


def _resource_tags(reader: Reader, node: yaml.Node) -> tuple[tuple[str, str], ...]:
    if not isinstance(node, yaml.MappingNode):
        raise reader.fail(
            node, "tags must be a mapping of tag keys to values", "write tags: {team: platform}"
        )
    tags: dict[str, str] = {}
    for key_node, value_node in node.value:
        key = reader.string(key_node, "a tag key").strip()
        value = reader.string(value_node, f"tag {key!r}")
        problems = ecr_rules.tag_problems([(key, value)])
        if problems:
            raise reader.fail(
                key_node,
                f"tag {key!r} is not a valid AWS resource tag: {problems[0]}",
                "keys are 1-128 characters and do not start with aws:; values at most 256",
            )
        if key in tags:
            raise reader.fail(key_node, f"tag {key!r} is given twice", "keep one of them")
        tags[key] = value
    if len(tags) > ecr_rules.MAX_TAGS:
        raise reader.fail(
            node,
            f"{len(tags)} tags, but ECR allows at most {ecr_rules.MAX_TAGS} on a repository",
            "keep the tags your cost and access rules need",
        )
    return tuple(sorted(tags.items()))


def _lifecycle_policy(reader: Reader, node: yaml.Node) -> str:
    """A lifecycle policy written as YAML, or as the JSON text ECR's console shows."""
    if isinstance(node, yaml.ScalarNode):
        text = reader.string(node, "lifecycle_policy")
        try:
            policy = json.loads(text)
        except ValueError as exc:
            raise reader.fail(
                node, f"lifecycle_policy is not valid JSON: {exc}", "write it as YAML, or fix the JSON"
            ) from None
    else:
        policy = reader.plain(node)
    text = json.dumps(policy, sort_keys=True, separators=(",", ":"))
    problems = ecr_rules.lifecycle_problems(text)
    if problems:
        raise reader.fail(
            node,
            "ECR would refuse this lifecycle_policy: " + "; ".join(problems),
            "see https://docs.aws.amazon.com/AmazonECR/latest/userguide/lifecycle_policy_parameters.html",
        )
    return text


def _replication(reader: Reader, node: yaml.Node, registry: Registry) -> Replication:
    fields = reader.mapping(node, "target.replication", ("regions",), ("registry_id", "backfill"))
    backfill = "native"
    if "backfill" in fields:  # native: ECR's replication backfill, with ecrmirror's copy as fallback
        backfill = reader.choice(fields["backfill"], "replication.backfill", ("native", "copy"))
    registry_id = registry.account
    if "registry_id" in fields:
        registry_id = reader.string(fields["registry_id"], "replication.registry_id").strip()
        if not _ACCOUNT.match(registry_id):
            raise reader.fail(
                fields["registry_id"],
                f"replication.registry_id {registry_id!r} is not an AWS account id",
                "give the 12-digit account id of the destination registry",
            )
    regions_node = fields["regions"]
    if not isinstance(regions_node, yaml.SequenceNode) or not regions_node.value:
        raise reader.fail(
            regions_node, "replication.regions must be a non-empty list", "write [eu-central-1]"
        )
    destinations: list[Destination] = []
    for region_node in regions_node.value:
        region = reader.string(region_node, "a region").strip()
        if not _REGION.match(region):
            raise reader.fail(region_node, f"{region!r} is not an AWS region", "write e.g. eu-central-1")
        if region == registry.region and registry_id == registry.account:
            raise reader.fail(
                region_node,
                f"replication to {region} would copy the registry onto itself",
                "list other regions, or set registry_id for another account",
            )
        destination = Destination(region, registry_id)
        if destination in destinations:
            raise reader.fail(region_node, f"region {region} is listed twice", "remove the duplicate")
        destinations.append(destination)
    if len(destinations) > ecr_rules.MAX_REPLICATION_DESTINATIONS:
        raise reader.fail(
            regions_node,
            f"{len(destinations)} replication destinations, but ECR replicates a registry to at most "
            f"{ecr_rules.MAX_REPLICATION_DESTINATIONS}",
            "list fewer regions",
        )
    return Replication(destinations=tuple(destinations), where=reader.where(node), backfill=backfill)
