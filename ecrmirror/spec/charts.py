"""A chart entry of a spec: the chart, its upstream and how to reach it, and which versions to mirror."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import yaml

from ecrmirror import ecr_rules, redact
from ecrmirror.constraints import ConstraintError, parse_constraint, shown, version_problem
from ecrmirror.spec.images import read_images
from ecrmirror.spec.model import (
    ARCHIVED_CHOICES,
    Access,
    ChartEntry,
    Credentials,
    Target,
    VersionEntry,
    VersionRange,
)
from ecrmirror.spec.reader import Reader
from ecrmirror.spec.target import read_verification

CHART_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_CREDENTIAL_KEY = re.compile(r"(?i)token|key|sig|pass|secret|auth|credential|session")
_ACCESS_KEYS = ("auth", "ca_file", "insecure_skip_tls_verify", "pass_credentials", "plain_http")


def read_chart(reader: Reader, node: yaml.Node, target: Target) -> ChartEntry:
    fields = reader.mapping(
        node,
        "a chart entry",
        ("name", "repo", "versions"),
        (
            "latest",
            "include_prereleases",
            "exclude",
            *_ACCESS_KEYS,
            "provenance",
            "with_dependencies",
            "verify",
            "copy_referrers",
            "images",
            "archived",
        ),
    )
    name = reader.string(fields["name"], "name")
    if not CHART_NAME.fullmatch(name):  # fullmatch: `$` would let a trailing newline through
        raise reader.fail(
            fields["name"],
            f"chart name {name!r} is not a chart name",
            "chart names are lowercase letters and digits, with . _ - between them (no / or ..); "
            "helm cannot push anything else to an OCI registry",
        )
    repository = target.repository_for(name)
    problem = ecr_rules.repository_name_problem(repository)
    if problem is not None:
        raise reader.fail(
            fields["name"],
            f"chart name {shown(name)} cannot be an ECR repository name as {shown(repository)}: {problem}",
            "ECR refuses such a repository; use another chart name or a shorter prefix",
        )
    repo = reader.string(fields["repo"], "repo").strip()
    if not repo:
        raise reader.fail(
            fields["repo"],
            "repo is empty",
            "give a Helm repository URL or a directory relative to the spec",
        )
    repo, in_url = _credentials_in_url(reader, fields["repo"], repo, "auth" in fields)
    extras = _chart_options(reader, fields, repo)
    extras["verify"] = (
        read_verification(reader, fields["verify"], "verify") if "verify" in fields else target.verify
    )
    if in_url is not None:
        extras["access"] = replace(extras["access"], credentials=in_url)
    if "images" in fields:
        extras["images"] = read_images(reader, fields["images"], target)
    versions_node = fields["versions"]
    if isinstance(versions_node, yaml.ScalarNode) and versions_node.tag != "tag:yaml.org,2002:null":
        return ChartEntry(
            name=name,
            repo=repo,
            versions=(),
            where=reader.where(node),
            range=_version_range(reader, versions_node, fields),
            **extras,
        )
    for option in ("latest", "include_prereleases", "exclude"):
        if option in fields:
            raise reader.fail(
                fields[option],
                f"{option} applies to a version constraint, but versions is a list",
                'write versions as a constraint string, e.g. versions: ">=7.1.0 <8.0.0"',
            )
    if not isinstance(versions_node, yaml.SequenceNode) or not versions_node.value:
        raise reader.fail(
            versions_node,
            "versions must be a non-empty list of versions, or a constraint string",
            'write versions: ["1.2.3", "1.2.4"] or versions: ">=1.2.0 <2.0.0"',
        )
    versions: list[VersionEntry] = []
    seen: set[str] = set()
    for version_node in versions_node.value:
        version = reader.string(version_node, "a version").strip()
        if not version:
            raise reader.fail(version_node, "a version is empty")
        problem = version_problem(version)  # the rule every version from an upstream meets too
        if problem is not None:
            raise reader.fail(
                version_node,
                f"version {shown(version)} of {name} {problem}",
                "a version is helm's semver (MAJOR[.MINOR[.PATCH]][-PRERELEASE][+BUILD]) in at most "
                "128 characters of letters, digits, . _ - and +",
            )
        if version in seen:
            raise reader.fail(
                version_node, f"version {version} of {name} is listed twice", "remove the duplicate"
            )
        seen.add(version)
        versions.append(VersionEntry(version, reader.where(version_node), version_node.start_mark.line + 1))
    return ChartEntry(name=name, repo=repo, versions=tuple(versions), where=reader.where(node), **extras)


def _version_range(reader: Reader, node: yaml.Node, fields: dict[str, yaml.Node]) -> VersionRange:
    text = reader.string(node, "versions").strip()
    try:
        parse_constraint(text)
    except ConstraintError as exc:
        raise reader.fail(
            node,
            f"versions {shown(text)} is not a version constraint: {exc}",
            'use helm\'s syntax: ">=7.1.0 <8.0.0", "~7.9", "^7", "7.x", or a list of exact versions',
        ) from None
    latest = None
    if "latest" in fields:
        latest = _positive(reader.string(fields["latest"], "latest").strip())
        if latest is None:
            raise reader.fail(fields["latest"], "latest must be a whole number above 0", "write latest: 3")
    include = False
    if "include_prereleases" in fields:
        include = reader.boolean(fields["include_prereleases"], "include_prereleases")
    exclude: tuple[str, ...] = ()
    if "exclude" in fields:
        exclude_node = fields["exclude"]
        if not isinstance(exclude_node, yaml.SequenceNode):
            raise reader.fail(exclude_node, "exclude must be a list of versions", 'write exclude: ["7.3.1"]')
        exclude = tuple(reader.string(item, "a version").strip() for item in exclude_node.value)
    return VersionRange(text, latest, include, exclude, reader.where(node), node.start_mark.line + 1)


def _credentials_in_url(
    reader: Reader, node: yaml.Node, repo: str, has_auth: bool
) -> tuple[str, Credentials | None]:
    """`https://user:password@host/...` works (so do `https://:token@host` and `https://token@host`),
    but the credentials leave the URL at once, so that no message or log that names the repository
    can show them. A query string may carry a token too: its values are remembered as secrets
    (redact.py), and it stays, since helm sends it with every request to the repository."""
    parts = urlsplit(repo)
    for key, value in parse_qsl(parts.query, keep_blank_values=False):
        # Not every query value is a secret, and `?ref=main` must not hide every "main" a run
        # writes: a value named like a credential, or long enough to be a token, is.
        if _CREDENTIAL_KEY.search(key) or len(value) >= 16:
            redact.remember(value)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        if parts.scheme and re.search(r"@[A-Za-z0-9.-]+(:[0-9]+)?(/|$)", repo.partition("://")[2]):
            # `https://user:pa/ss@host/`: a password with / ? # @ in it ends the URL's host part
            # early; what looks like its path holds the rest of the password, and the host.
            redact.remember(repo.partition("://")[2].rpartition("@")[0])
            raise reader.fail(
                node,
                "repo has an @ after its host: a password with / ? # or @ in it breaks the URL",
                "percent-encode those characters in the password (/ as %2F, ? as %3F, # as %23, "
                "@ as %40), or move the credentials to auth: {username: ..., password: ${VARIABLE}}",
            )
        return repo, None
    user, colon, password = userinfo.partition(":")
    redact.remember(userinfo)
    redact.remember(unquote(password) if colon else unquote(user))  # a user alone is a token
    if has_auth:
        raise reader.fail(
            node, "repo has credentials in its URL and the entry has auth too", "keep one of them"
        )
    clean = urlunsplit(parts._replace(netloc=hostport))
    return clean, Credentials(username=unquote(user), password=unquote(password))


def _chart_options(reader: Reader, fields: dict[str, yaml.Node], repo: str) -> dict[str, Any]:
    """Access, provenance and dependency options of a chart entry."""
    credentials = None
    if "auth" in fields:
        auth = reader.mapping(fields["auth"], "auth", (), ("username", "password", "token"))
        values = {key: reader.string(value, f"auth.{key}") for key, value in auth.items()}
        for key in ("password", "token"):
            if values.get(key):
                redact.remember(values[key])
        if "token" in values and ("username" in values or "password" in values):
            raise reader.fail(fields["auth"], "auth takes a token or a username and password, not both")
        if "token" not in values and not values.get("username"):
            raise reader.fail(
                fields["auth"],
                "auth needs a username (with a password) or a token",
                "write auth: {username: ${REPO_USER}, password: ${REPO_PASSWORD}}",
            )
        credentials = Credentials(**values)
    flags = {
        key: reader.boolean(fields[key], key)
        for key in (
            "insecure_skip_tls_verify",
            "pass_credentials",
            "plain_http",
            "with_dependencies",
            "copy_referrers",
        )
        if key in fields
    }
    if flags.get("plain_http") and not repo.startswith("oci://"):
        raise reader.fail(
            fields["plain_http"],
            "plain_http applies to oci:// repositories",
            "use an http:// repo URL instead",
        )
    if "copy_referrers" in fields and not repo.startswith("oci://"):
        raise reader.fail(
            fields["copy_referrers"],
            "copy_referrers applies to oci:// repositories (signatures and SBOMs that refer to a chart)",
            "remove it: a Helm repository's .prov files are copied with their charts",
        )
    ca_file = None
    if "ca_file" in fields:
        ca_path = Path(reader.string(fields["ca_file"], "ca_file").strip())
        ca_file = str(ca_path if ca_path.is_absolute() else (reader.path.parent / ca_path).resolve())
        if not Path(ca_file).is_file():
            raise reader.fail(
                fields["ca_file"],
                f"ca_file {ca_file} does not exist",
                "give a PEM file of CA certificates",
            )
    provenance = "if-present"
    if "provenance" in fields:
        provenance = reader.choice(fields["provenance"], "provenance", ("if-present", "required"))
    archived = None
    if "archived" in fields:
        archived = reader.choice(fields["archived"], "archived", ARCHIVED_CHOICES)
    return {
        "archived": archived,
        "access": Access(
            credentials=credentials,
            ca_file=ca_file,
            insecure_skip_tls_verify=flags.get("insecure_skip_tls_verify", False),
            pass_credentials=flags.get("pass_credentials", False),
            plain_http=flags.get("plain_http", False),
        ),
        "provenance": provenance,
        "with_dependencies": flags.get("with_dependencies", False),
        "copy_referrers": flags.get("copy_referrers", True),
    }


def _positive(text: str) -> int | None:
    return int(text) if text.isdigit() and int(text) > 0 else None
