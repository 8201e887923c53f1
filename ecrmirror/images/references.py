"""Image references as docker reads them, and the ECR repository each lands in.

`nginx` is `docker.io/library/nginx:latest` to docker, containerd and the kubelet, so it is here
too: two spellings of one image are one item. No library parses these references as the
distribution project does (its Go `reference` package is the definition), so the grammar is
written out below from distribution's reference/regexp.go.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ecrmirror.ecr_rules import repository_name_problem

DOCKER_HUB = "docker.io"
# Where docker.io's registry API answers (docker's own default endpoint).
_DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
MAX_REFERENCE = 255  # distribution's NameTotalLengthMax, for the name part


class BadReference(ValueError):
    """Not an image reference docker would pull; the message says why."""


@dataclass(frozen=True, order=True)
class ImageReference:
    host: str  # docker.io, quay.io, 127.0.0.1:5000
    path: str  # library/nginx
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """host/path: the repository, without tag or digest."""
        return f"{self.host}/{self.path}"

    @property
    def reference(self) -> str:
        """What the registry API takes after /manifests/: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @property
    def endpoint(self) -> str:
        """The host whose /v2/ API serves the image."""
        return _DOCKER_HUB_ENDPOINT if self.host == DOCKER_HUB else self.host


def parse(text: str) -> ImageReference:
    """`text` as docker reads an image reference; BadReference says what is wrong with it."""
    if not text or text != text.strip():
        raise BadReference(f"{text!r} is not an image reference (empty, or spaces around it)")
    rest, digest = text, None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if not _DIGEST.fullmatch(digest):
            raise BadReference(f"{text!r}: {digest!r} is not a sha256 digest (sha256: and 64 hex digits)")
    tag = None
    slash, colon = rest.rfind("/"), rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise BadReference(f"{text!r}: {tag!r} is not a valid tag (letters, digits, _ . -; up to 128)")
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        host, path = first, remainder
        if not _DOMAIN.fullmatch(host):
            raise BadReference(f"{text!r}: {host!r} is not a registry host")
    else:
        host, path = DOCKER_HUB, rest
    if host in ("index.docker.io", "registry-1.docker.io"):
        host = DOCKER_HUB
    if host == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"  # Docker Hub's official images
    if not _PATH.fullmatch(path):
        raise BadReference(
            f"{text!r}: {path!r} is not a repository path (lowercase letters and digits, with . _ - "
            "between them and / between components)"
        )
    if len(f"{host}/{path}") > MAX_REFERENCE:
        raise BadReference(f"{text!r}: its name is longer than {MAX_REFERENCE} characters")
    if tag is None and digest is None:
        tag = "latest"  # as docker and the kubelet read a bare name
    return ImageReference(host, path, tag, digest)


def mirrored_repository(image: ImageReference, prefix: str, rules: dict[str, str] | None) -> str:
    """The ECR repository `image` lands in. Without `rules`: `<prefix>/<host>/<path>`, the host
    kept so that quay.io/x/y and docker.io/x/y cannot collide (`host:port` as `host-port`).
    With `rules` (upstream host -> pull-through cache rule prefix): where ECR's pull-through
    cache would put it, `<rule prefix>/<path>`, so one name serves whichever filled it.
    BadReference when there is no rule for the host, or ECR would refuse the name."""
    if rules is not None:
        if image.host not in rules:
            raise BadReference(
                f"{image}: no pull-through cache rule for {image.host} (naming: "
                f"pull-through-cache knows {', '.join(sorted(rules)) or 'no host'})"
            )
        name = f"{rules[image.host]}/{image.path}"
    else:
        host = image.host.lower().replace(":", "-").strip("[]")
        name = f"{prefix}/{host}/{image.path}" if prefix else f"{host}/{image.path}"
    problem = repository_name_problem(name)
    if problem is not None:
        raise BadReference(f"{image}: ECR would refuse its repository name {name[:80]!r}: {problem}")
    return name
