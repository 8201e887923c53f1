"""What a spec says, as plain frozen data: the target registry and its settings, and the chart entries."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecrmirror.ecr_rules import SIGNING_FILTER_TYPE, wildcard_match

TAG_MUTABILITY = ("IMMUTABLE", "MUTABLE", "IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION")
ENCRYPTION_TYPES = ("AES256", "KMS", "KMS_DSSE")
ARCHIVED_CHOICES = ("restore", "accept")  # `archived:` on a target or a chart entry
DEFAULT_TAG_MUTABILITY = "IMMUTABLE"  # what a created repository gets when the spec says nothing


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
    # What fills a destination that lacks versions: "native" (ECR's replication backfill, then
    # ecrmirror's copy for what it leaves out) or "copy" (ecrmirror's copy alone).
    backfill: str = "native"


@dataclass(frozen=True)
class Registry:
    """An ECR registry, parsed from its host name."""

    host: str
    account: str
    region: str


@dataclass(frozen=True)
class Verification:
    """`verify:`: each version's .prov must verify, as `helm verify --keyring` checks it."""

    keyring: str  # absolute path of a binary OpenPGP keyring (`gpg --export > FILE`)
    where: str


@dataclass(frozen=True)
class Signing:
    """`sign:`: every version ecrmirror holds gets a cosign signature and attestation by this key."""

    kms_key: str  # an AWS KMS key (ECC_NIST_P256): alias/NAME, an alias or key ARN, or a key id
    where: str


@dataclass(frozen=True)
class ImageNaming:
    """`target.images`: where the images of the spec's charts land in ECR."""

    # None: `<prefix>/<upstream host>/<path>`. Else `naming: pull-through-cache`: upstream host ->
    # the ECR pull-through cache rule prefix whose repositories the mirror fills.
    pull_through_cache: tuple[tuple[str, str], ...] | None = None
    where: str = ""


@dataclass(frozen=True)
class SigningRule:
    """One rule: pushes to repositories matching `filters` (none: every repository) are signed
    with the Signer profile `profile_arn`."""

    profile_arn: str
    filters: tuple[str, ...] = ()

    def covers(self, repository: str) -> bool:
        return not self.filters or any(wildcard_match(f, repository) for f in self.filters)

    def document(self) -> dict[str, Any]:
        """The rule as PutSigningConfiguration takes it."""
        rule: dict[str, Any] = {"signingProfileArn": self.profile_arn}
        if self.filters:
            rule["repositoryFilters"] = [
                {"filter": f, "filterType": SIGNING_FILTER_TYPE} for f in self.filters
            ]
        return rule


@dataclass(frozen=True)
class ManagedSigning:
    """`target.managed_signing`: the rules the registry's signing configuration must hold, so that
    ECR signs what the mirror pushes to those repositories (as the pusher)."""

    rules: tuple[SigningRule, ...]
    where: str


@dataclass(frozen=True)
class PullTimeExclusions:
    """`target.pull_time_exclusions`: IAM roles whose pulls ECR does not record as pulls (an audit
    role that must pull), so that `sinceImagePulled` lifecycle rules still see unused versions."""

    roles: tuple[str, ...]
    where: str


@dataclass(frozen=True)
class Target:
    registry: Registry
    prefix: str
    create_repositories: bool
    repository: RepositorySettings
    where: str
    replication: Replication | None = None
    verify: Verification | None = None  # the default of every chart entry
    sign: Signing | None = None
    images: ImageNaming = ImageNaming()
    # What a version in ECR's archive storage class means: "restore" (the audit fails, --sync
    # restores it) or "accept" (kept archived on purpose: cheap, not pullable). Chart entries may
    # say otherwise.
    archived: str = "restore"
    managed_signing: ManagedSigning | None = None
    pull_time_exclusions: PullTimeExclusions | None = None

    def repository_for(self, chart_name: str) -> str:
        """The repository `helm push x.tgz oci://<registry>/<prefix>` would use."""
        return f"{self.prefix}/{chart_name}" if self.prefix else chart_name


@dataclass(frozen=True)
class VersionEntry:
    version: str
    where: str
    line: int
    manifest: Path | None = None  # the GitOps manifest that asks for it: its item sits there


@dataclass(frozen=True)
class GitopsOrigin:
    """What a GitOps manifest asks for, for a chart entry read from one (`gitops:` in a spec)."""

    manifest: Path
    line: int
    asked_by: str  # "HelmRelease apps/podinfo at clusters/apps.yaml:12"
    source: str  # the source object that names the upstream
    pointing: str  # what to change in that source to pull from ECR instead
    strict: bool = False  # a range whose newest match ECR lacks fails the audit (else a note)


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
class Render:
    """`images.render`: the chart rendered by `helm template`, as a release would be."""

    values: tuple[str, ...] = ()  # absolute paths of values files, in order (-f)
    set: tuple[tuple[str, str], ...] = ()  # --set NAME=VALUE, in order
    kube_version: str | None = None
    where: str = ""


@dataclass(frozen=True)
class ExtraImage:
    reference: str
    where: str


@dataclass(frozen=True)
class ImageSettings:
    """A chart entry's `images:`: how its versions' images are found, and which are copied."""

    annotations: bool = True  # the image annotations of the chart and its subcharts
    render: Render | None = None
    extra: tuple[ExtraImage, ...] = ()
    exclude: tuple[str, ...] = ()  # fnmatch patterns of references or names
    platforms: tuple[str, ...] | None = None  # None: every platform, the index unchanged
    plain_http: tuple[str, ...] = ()  # registry hosts reached over plain http (docker's insecure-registries)
    where: str = ""


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
    verify: Verification | None = None
    copy_referrers: bool = True  # oci:// sources: carry signatures, attestations, SBOMs
    images: ImageSettings | None = None  # None: the chart alone, no image
    gitops: GitopsOrigin | None = None  # read from a GitOps manifest, not from `charts:`
    archived: str | None = None  # "restore" or "accept"; None: the target's

    def source_location(self, spec_path: Path) -> str:
        """The repository as a URL, or a local directory resolved against the spec file."""
        if re.match(r"^[a-z][a-z0-9+.-]*://", self.repo):
            return self.repo
        return str((spec_path.parent / self.repo).resolve())


@dataclass(frozen=True)
class NotMirrored:
    """What a GitOps manifest asks for that ecrmirror does not mirror (a chart from Git), and why."""

    asked_by: str  # "HelmRelease apps/podinfo"
    manifest: Path
    line: int
    reason: str


@dataclass(frozen=True)
class Spec:
    path: Path
    target: Target
    charts: tuple[ChartEntry, ...]
    # What the `gitops:` manifests ask for: an entry per request, grouped into items at collection.
    gitops_charts: tuple[ChartEntry, ...] = ()
    gitops_skipped: tuple[NotMirrored, ...] = ()
