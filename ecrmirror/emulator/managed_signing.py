"""Managed signing: the registry's signing configuration and each pushed image's signing status.

As ECR documents it (userguide/managed-signing.html, botocore's model [BC]):
- Put/Get/DeleteSigningConfiguration hold one configuration per registry: 0 to 10 rules, each a
  Signer profile ARN and 1 to 100 WILDCARD_MATCH repository filters, or none (every repository).
  Get and Delete answer SigningConfigurationNotFoundException when there is none; deleting stops
  signing of later pushes and leaves signatures alone.
- On a push, each profile whose rules match the repository signs the image, as the pusher:
  IN_PROGRESS, then COMPLETE once `delay` seconds of the emulator's clock have passed (or FAILED
  when the pusher may not signer:SignPayload on the profile, under enforced IAM; the push itself
  succeeds). DescribeImageSigningStatus answers one status per profile.
- A completed signature is stored in the image's repository as an OCI 1.1 referrer of it, and is
  itself never signed.

Where ECR's documents are silent the emulator takes the reading hardest on a client (see
docs/emulator-fidelity.md): only container images are signed (not Helm charts, signatures or
other artifacts); an image index is signed when it lists a container image; a profile that
already signed (or failed) a digest does not sign it again on a re-push; the signature appears
only once its status is COMPLETE, as a Notary Project signature (artifactType
`application/vnd.cncf.notary.signature`, a JWS envelope layer) that verifies nothing.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ecrmirror.emulator.images as images
from ecrmirror import ecr_rules
from ecrmirror import managed_signing as rules
from ecrmirror.emulator.answers import Refused
from ecrmirror.emulator.iam import Caller, Denied
from ecrmirror.emulator.repositories import Where

if TYPE_CHECKING:
    from ecrmirror.emulator.iam import Iam
    from ecrmirror.emulator.replication import Replicator
    from ecrmirror.emulator.repositories import Handler
    from ecrmirror.emulator.state import State

PART = "managed_signing"
DEFAULT_DELAY = 2.0  # seconds of the emulator's clock from push to COMPLETE; ECR's: UNCONFIRMED
SIGNATURE_ARTIFACT = "application/vnd.cncf.notary.signature"  # UNCONFIRMED for ECR's signatures
ENVELOPE = "application/jose+json"  # Notation's JWS envelope; UNCONFIRMED which one Signer gives ECR
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
IMAGE_CONFIGS = ("application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json")
IMAGE_LAYERS = re.compile(r"^application/vnd\.(oci\.image\.layer\.|docker\.image\.rootfs\.)")
# What a FAILED status says when the pusher lacks signer:SignPayload: ECR documents no values.
DENIED_CODE = "AccessDeniedException"

Key = tuple[str, str, str, str]  # (account, region, repository, digest)


@dataclass
class Job:
    """One profile's signing of one pushed image."""

    profile: str
    done_at: float  # the emulator's time at which it completes (or fails)
    failure: tuple[str, str] | None = None  # (failureCode, failureReason)
    stored: bool = False  # its signature is in the repository


@dataclass
class Signing:
    """The part's state: configurations by registry, jobs by image, and the delay knob."""

    delay: float = DEFAULT_DELAY
    configurations: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    jobs: dict[Key, list[Job]] = field(default_factory=dict)


def of(state: State) -> Signing:
    """The emulator's managed signing state (tests turn `delay` here: emptied by reset)."""
    found: Signing = state.part(PART, Signing)
    return found


def handlers(state: State, iam: Iam, replicator: Replicator) -> dict[str, Handler]:
    """The ECR actions this part answers; pushes are signed through a push hook."""
    if not any(isinstance(hook, _Signer) for hook in state.push_hooks):
        state.push_hooks.append(_Signer(state, iam))
    return {
        "PutSigningConfiguration": lambda w, b, c: _put(of(state), w, b),
        "GetSigningConfiguration": lambda w, b, c: _get(of(state), w, delete=False),
        "DeleteSigningConfiguration": lambda w, b, c: _get(of(state), w, delete=True),
        "DescribeImageSigningStatus": lambda w, b, c: _describe(state, w, b),
    }


# -- the configuration -----------------------------------------------------------------------------------
def _put(signing: Signing, where: Where, body: dict[str, Any]) -> dict[str, Any]:
    configuration = body["signingConfiguration"]  # the model's check: a JSON object
    if configuration.get("rules") is None:
        raise _invalid(
            [
                "Value null at 'signingConfiguration.rules' failed to satisfy constraint: "
                "Member must not be null"
            ]
        )
    if not isinstance(configuration["rules"], list):
        raise Refused("SerializationException", "signingConfiguration.rules: expected a JSON list")
    held = [_rule(rule, n) for n, rule in enumerate(configuration["rules"], start=1)]
    problems = [problem for _, found in held for problem in found]
    if len(held) > ecr_rules.MAX_SIGNING_RULES:
        problems.insert(
            0,
            f"Value '{json.dumps(configuration['rules'])[:200]}' at 'signingConfiguration.rules' failed to "
            "satisfy constraint: Member must have length less than or equal to "
            f"{ecr_rules.MAX_SIGNING_RULES}",
        )
    if problems:
        raise _invalid(problems)
    for rule, _ in held:
        region = ecr_rules.SIGNING_PROFILE_ARN.match(rule["signingProfileArn"])
        if region is not None and region["region"] != where.region:  # message: UNCONFIRMED
            raise Refused(
                "InvalidParameterException",
                "Invalid parameter at 'signingConfiguration' failed to satisfy constraint: 'The signing "
                f"profile {rule['signingProfileArn']} must be in the registry's region {where.region}'",
            )
    stored = {"rules": [rule for rule, _ in held]}
    signing.configurations[(where.account, where.region)] = stored
    return {"signingConfiguration": stored}


def _rule(rule: Any, n: int) -> tuple[dict[str, Any], list[str]]:
    """A rule as stored, and what AWS's request validation says of it (paths as AWS writes them)."""
    at = f"signingConfiguration.rules.{n}.member"
    if not isinstance(rule, dict):
        raise Refused("SerializationException", f"{at}: expected a JSON object")
    problems = []
    arn = rule.get("signingProfileArn")
    if arn is None:
        problems.append(
            f"Value null at '{at}.signingProfileArn' failed to satisfy constraint: Member must not be null"
        )
    elif not isinstance(arn, str):
        raise Refused("SerializationException", f"{at}.signingProfileArn: expected a JSON string")
    elif len(arn) > ecr_rules.MAX_SIGNING_PROFILE_ARN:
        problems.append(
            f"Value '{arn}' at '{at}.signingProfileArn' failed to satisfy constraint: Member must have "
            f"length less than or equal to {ecr_rules.MAX_SIGNING_PROFILE_ARN}"
        )
    elif not ecr_rules.SIGNING_PROFILE_ARN.match(arn):
        problems.append(
            f"Value '{arn}' at '{at}.signingProfileArn' failed to satisfy constraint: Member must satisfy "
            f"regular expression pattern: {_MODEL_ARN}"
        )
    stored: dict[str, Any] = {"signingProfileArn": arn}
    filters = rule.get("repositoryFilters")
    if filters is None:
        return stored, problems
    if not isinstance(filters, list):
        raise Refused("SerializationException", f"{at}.repositoryFilters: expected a JSON list")
    if not 1 <= len(filters) <= ecr_rules.MAX_SIGNING_FILTERS:
        bound = (
            f"less than or equal to {ecr_rules.MAX_SIGNING_FILTERS}"
            if filters
            else "greater than or equal to 1"
        )
        problems.append(
            f"Value '{json.dumps(filters)[:200]}' at '{at}.repositoryFilters' failed to satisfy constraint: "
            f"Member must have length {bound}"
        )
    for m, entry in enumerate(filters, start=1):
        where = f"{at}.repositoryFilters.{m}.member"
        if not isinstance(entry, dict):
            raise Refused("SerializationException", f"{where}: expected a JSON object")
        value, kind = entry.get("filter"), entry.get("filterType")
        if value is None:
            problems.append(
                f"Value null at '{where}.filter' failed to satisfy constraint: Member must not be null"
            )
        elif (
            not isinstance(value, str)
            or not 1 <= len(value) <= ecr_rules.MAX_SIGNING_FILTER
            or not ecr_rules.SIGNING_FILTER.match(value)
        ):
            problems.append(
                f"Value '{value}' at '{where}.filter' failed to satisfy constraint: Member must satisfy "
                f"regular expression pattern: {ecr_rules.SIGNING_FILTER.pattern}"
            )
        if kind is None:
            problems.append(
                f"Value null at '{where}.filterType' failed to satisfy constraint: Member must not be null"
            )
        elif kind != ecr_rules.SIGNING_FILTER_TYPE:
            problems.append(
                f"Value '{kind}' at '{where}.filterType' failed to satisfy constraint: Member must satisfy "
                f"enum value set: [{ecr_rules.SIGNING_FILTER_TYPE}]"
            )
    stored["repositoryFilters"] = [
        {"filter": e.get("filter"), "filterType": e.get("filterType")} for e in filters if isinstance(e, dict)
    ]
    return stored, problems


# The model's pattern, as AWS's messages quote it (ours names its groups).
_MODEL_ARN = r"^arn:aws(-[a-z]+)*:signer:[a-z0-9-]+:[0-9]{12}:\/signing-profiles\/[a-zA-Z0-9_]{2,}$"


def _invalid(problems: list[str]) -> Refused:
    count = f"{len(problems)} validation error{'s' if len(problems) > 1 else ''} detected: "
    return Refused("ValidationException", count + "; ".join(problems))


def _get(signing: Signing, where: Where, *, delete: bool) -> dict[str, Any]:
    key = (where.account, where.region)
    configuration = signing.configurations.pop(key, None) if delete else signing.configurations.get(key)
    if configuration is None:
        raise Refused(
            "SigningConfigurationNotFoundException",
            f"Signing configuration not found for registry '{where.account}'",  # wording: UNCONFIRMED
        )
    return {"registryId": where.account, "signingConfiguration": configuration}


# -- signing on push --------------------------------------------------------------------------------------
class _Signer:
    """The push hook: a job per matching profile for each container image pushed."""

    def __init__(self, state: State, iam: Iam) -> None:
        self.state = state
        self.iam = iam

    def __call__(self, where: Where, repository: Any, image: Any, tag: str | None, caller: Caller) -> None:
        state = self.state
        signing = of(state)
        _settle(state, signing)
        configuration = signing.configurations.get((where.account, where.region))
        if configuration is None or not signs(repository, image):
            return
        profiles = dict.fromkeys(
            r.profile_arn for r in rules.covering(rules.rules_of(configuration), repository.name)
        )
        jobs = signing.jobs.setdefault(
            (where.account, where.region, repository.name, image.get_image_digest()), []
        )
        done_at = state.now() + signing.delay
        for profile in profiles:
            if any(job.profile == profile for job in jobs):
                continue  # a re-push of the same digest is not signed again (UNCONFIRMED)
            try:
                self.iam.authorize(caller, [("signer:SignPayload", profile)])
                failure = None
            except Denied as denied:
                failure = (DENIED_CODE, str(denied))
            jobs.append(Job(profile, done_at, failure))


def signs(repository: Any, image: Any) -> bool:
    """Whether ECR's managed signing takes this manifest: a container image (an image config and
    image layers), or an index listing one. A referrer (a signature, an SBOM), an artifact with
    an artifactType, a Helm chart or any other config type is not signed."""
    document = _document(image)
    if document.get("subject") or document.get("artifactType"):
        return False
    if "manifests" in document:
        listed = [
            images.find(repository, str(m.get("digest")))
            for m in document["manifests"]
            if isinstance(m, dict)
        ]
        return any(child is not None and _is_container_image(_document(child)) for child in listed)
    return _is_container_image(document)


def _is_container_image(document: dict[str, Any]) -> bool:
    if document.get("subject") or document.get("artifactType") or "manifests" in document:
        return False
    config = document.get("config") or {}
    layers = document.get("layers") or []
    return config.get("mediaType") in IMAGE_CONFIGS and all(
        isinstance(layer, dict) and IMAGE_LAYERS.match(str(layer.get("mediaType", ""))) for layer in layers
    )


def _document(image: Any) -> dict[str, Any]:
    try:
        document = json.loads(image.image_manifest)
    except (TypeError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def _settle(state: State, signing: Signing) -> None:
    """Store the signature of every job that completed by now (the clock moves without us)."""
    now = state.now()
    for (account, region, name, digest), jobs in signing.jobs.items():
        for job in jobs:
            if job.stored or job.failure is not None or job.done_at > now:
                continue
            job.stored = True
            repository = Where(account, region).backend().repositories.get(name)
            subject = images.find(repository, digest) if repository is not None else None
            if subject is not None:  # deleted meanwhile: nothing to sign
                _store_signature(state, Where(account, region), repository, subject, job.profile)


def _store_signature(state: State, where: Where, repository: Any, subject: Any, profile: str) -> None:
    """A Notary Project signature of `subject` by `profile`, as a referrer in its repository. Its
    envelope is a placeholder: it names what was signed, and verifies nothing."""
    descriptor = {
        "mediaType": subject.image_manifest_media_type or OCI_MANIFEST,
        "digest": subject.get_image_digest(),
        "size": len(subject.image_manifest.encode("utf-8")),
    }
    envelope = json.dumps(
        {"payload": {"targetArtifact": descriptor}, "signingProfile": profile, "signature": "emulator"},
        sort_keys=True,
    ).encode()
    blobs = [(EMPTY_CONFIG, b"{}"), (ENVELOPE, envelope)]
    held = state.repo_blobs.setdefault((where.account, where.region, repository.name), set())
    described = []
    for media_type, data in blobs:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = state.blob_path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        held.add(digest)
        described.append({"mediaType": media_type, "digest": digest, "size": len(data)})
    signed_at = datetime.datetime.fromtimestamp(state.now(), datetime.timezone.utc)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIGNATURE_ARTIFACT,
        "config": described[0],
        "layers": described[1:],
        "subject": descriptor,
        "annotations": {"org.opencontainers.image.created": signed_at.strftime("%Y-%m-%dT%H:%M:%SZ")},
    }
    body = json.dumps(manifest, sort_keys=True).encode()
    images.put(where.account, repository, body, OCI_MANIFEST, None)  # no push hook: never signed itself


# -- statuses ----------------------------------------------------------------------------------------------
def _describe(state: State, where: Where, body: dict[str, Any]) -> dict[str, Any]:
    signing = of(state)
    _settle(state, signing)
    repository = where.repository(str(body.get("repositoryName", "")))
    image_id = body.get("imageId") or {}
    if not isinstance(image_id, dict) or not (image_id.get("imageDigest") or image_id.get("imageTag")):
        raise Refused(
            "InvalidParameterException",
            "Invalid parameter at 'imageId' failed to satisfy constraint: "
            "'an image id needs a digest or a tag'",
        )
    reference = str(image_id.get("imageDigest") or image_id.get("imageTag"))
    image = images.find(repository, reference)
    if image is None or (image_id.get("imageTag") and image_id["imageTag"] not in image.image_tags):
        raise Refused(
            "ImageNotFoundException",
            f"The image with imageId {json.dumps(image_id)} does not exist within the repository with "
            f"name '{repository.name}' in the registry with id '{where.account}'",
        )
    digest = image.get_image_digest()
    now = state.now()
    found = []
    for job in signing.jobs.get((where.account, where.region, repository.name, digest), []):
        status: dict[str, Any] = {"signingProfileArn": job.profile}
        if job.done_at > now:
            status["status"] = "IN_PROGRESS"
        elif job.failure is not None:
            status.update(status="FAILED", failureCode=job.failure[0], failureReason=job.failure[1])
        else:
            status["status"] = "COMPLETE"
        found.append(status)
    return {
        "registryId": where.account,
        "repositoryName": repository.name,
        "imageId": {
            "imageDigest": digest,
            **({"imageTag": image_id["imageTag"]} if image_id.get("imageTag") else {}),
        },
        "signingStatuses": found,
    }
