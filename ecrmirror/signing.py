"""`sign:`: what the mirror holds is signed by the mirror, with an AWS KMS key, as cosign signs it.

For each chart version, as `cosign sign --key awskms:///...` and `cosign attest` store them
(sigstore/cosign specs/SIGNATURE_SPEC.md and ATTESTATION_SPEC.md):

- `sha256-<hex>.sig`: an OCI image manifest whose one layer is the simple-signing payload
  (`critical.image.docker-manifest-digest` is the chart manifest's digest), with the base64 DER
  ECDSA-P256/SHA-256 signature of that payload in the `dev.cosignproject.cosign/signature`
  annotation;
- `sha256-<hex>.att`: one layer, a DSSE envelope of an in-toto statement whose subject is the chart
  manifest and whose predicate (SLSA provenance v1) records the mirroring: the upstream URL, the
  digest the upstream lists, the archive's sha256, the .prov verification and its key, ecrmirror's
  version and the time.

KMS signs the payload itself (MessageType RAW: KMS hashes it with SHA-256), which verifies exactly
as cosign's signatures do. The payload is built the same way every time, so the audit checks a
signature against the signature layer's digest without downloading the payload; an attestation's
envelope (one small blob) is downloaded and checked.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.exceptions
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_public_key

from ecrmirror import __version__
from ecrmirror.chart import Descriptor, sha256_digest
from ecrmirror.ecr import RemoteImage
from ecrmirror.errors import AwsError, TagConflict
from ecrmirror.provenance import Verified
from ecrmirror.run import Run
from ecrmirror.sources import ChartRelease
from ecrmirror.spec import Registry, Signing

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
IN_TOTO = "application/vnd.in-toto+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:ecrmirror:mirror:v1"
KMS_RAW_LIMIT = 4096  # bytes KMS signs as a RAW message
_KEY_REGION = re.compile(r"^arn:aws[a-z-]*:kms:(?P<region>[a-z0-9-]+):")


@dataclass(frozen=True)
class Mirrored:
    """What the attestation says of one version's mirroring."""

    release: ChartRelease
    archive_digest: str | None  # the chart archive's sha256 (its layer); None if unknown
    verified: Verified | None  # the .prov check, when the spec asks for one


class Signer:
    """One KMS key: signs messages, and gives its public key (fetched once)."""

    def __init__(self, run: Run, signing: Signing, registry: Registry) -> None:
        match = _KEY_REGION.match(signing.kms_key)
        self.key = signing.kms_key
        self.where = signing.where
        self._kms = run.kms(registry, match["region"] if match else registry.region)
        self._public: ec.EllipticCurvePublicKey | None = None
        self._public_lock = threading.Lock()  # jobs (threads) ask KMS for it once

    def sign(self, message: bytes) -> bytes:
        if len(message) > KMS_RAW_LIMIT:
            raise AwsError(f"a {len(message)}-byte message is more than KMS signs ({KMS_RAW_LIMIT})")
        response = self._call("sign", Message=message, MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256")
        return bytes(response["Signature"])

    def public_key(self) -> ec.EllipticCurvePublicKey:
        with self._public_lock:
            return self._public or self._fetch_public_key()

    def _fetch_public_key(self) -> ec.EllipticCurvePublicKey:
        response = self._call("get_public_key")
        key = load_der_public_key(bytes(response["PublicKey"]))
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise AwsError(
                f"KMS key {self.key} ({self.where}) is not an ECC_NIST_P256 key, which cosign "
                "signatures need: create one with KeySpec ECC_NIST_P256 and KeyUsage SIGN_VERIFY"
            )
        self._public = key
        return key

    def fingerprint(self) -> str:
        """sha256 of the public key's DER, as a key id for the attestation."""
        der = self.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return "sha256:" + hashlib.sha256(der).hexdigest()

    def verifies(self, signature: bytes, digest: bytes) -> bool:
        """Whether `signature` is the key's over a message whose sha256 is `digest`."""
        try:
            self.public_key().verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        except InvalidSignature:
            return False
        return True

    def _call(self, operation: str, **kwargs: Any) -> Mapping[str, Any]:
        try:
            result: Mapping[str, Any] = getattr(self._kms, operation)(KeyId=self.key, **kwargs)
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            raise AwsError(
                f"KMS {operation} with {self.key} ({self.where}) failed: {error.get('Code')}: "
                f"{error.get('Message')}. The sync needs kms:Sign and kms:GetPublicKey on it, the "
                "audit kms:GetPublicKey; `pytest --ecrmirror-policy` prints them."
            ) from None
        return result


def signer(run: Run, signing: Signing, registry: Registry) -> Signer:
    return run.remember(("signer", signing.kms_key, registry.region), lambda: Signer(run, signing, registry))


# -- what the registry holds -------------------------------------------------------------------------
def tags(image: RemoteImage) -> tuple[str, str]:
    hexdigest = image.manifest_digest.partition(":")[2]
    return f"sha256-{hexdigest}.sig", f"sha256-{hexdigest}.att"


def attached(
    run: Run, registry: Registry, repository: str, image: RemoteImage
) -> dict[str, tuple[str, bytes]]:
    """The signature and attestation manifests of `image` that ECR holds, by tag. Asked once per
    repository for all the run's versions there (one BatchGetImage per 50 versions)."""
    key = ("attached", registry.host, repository)
    with run.locks(key):  # jobs (threads) of one repository: one batch answers them all
        if key not in run.memo or not set(tags(image)) <= run.memo[key][0]:
            held = run.inventory.images(registry, repository, image.tag) or {}
            wanted = {tag for each in held.values() for tag in tags(each)} | set(tags(image))
            run.memo[key] = (wanted, run.ecr(registry).manifests(repository, wanted))
        found: dict[str, tuple[str, bytes]] = run.memo[key][1]
    return {tag: found[tag] for tag in tags(image) if tag in found}


def problems(
    run: Run, signing: Signing, registry: Registry, repository: str, image: RemoteImage
) -> list[str]:
    """Why `image` lacks a good signature or attestation by the spec's key ([] when it has both)."""
    key = signer(run, signing, registry)
    signature_tag, attestation_tag = tags(image)
    held = attached(run, registry, repository, image)
    found: list[str] = []
    if signature_tag not in held:
        found.append(f"no signature ({signature_tag})")
    elif not _signature_verifies(key, registry, repository, image, held[signature_tag][1]):
        found.append(f"{signature_tag} holds no signature by {signing.kms_key} of {image.manifest_digest}")
    if attestation_tag not in held:
        found.append(f"no attestation ({attestation_tag})")
    else:
        envelope = _attestation_envelope(run, registry, repository, held[attestation_tag][1])
        if envelope is None or not _attestation_verifies(key, image, envelope):
            found.append(
                f"{attestation_tag} holds no attestation by {signing.kms_key} of {image.manifest_digest}"
            )
    return found


def _signature_verifies(
    key: Signer, registry: Registry, repository: str, image: RemoteImage, manifest: bytes
) -> bool:
    expected = payload(registry, repository, image.manifest_digest)
    for layer in _layers(manifest):
        if layer.get("mediaType") != SIMPLE_SIGNING or layer.get("digest") != sha256_digest(expected):
            continue
        signature = (layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION, "")
        try:
            raw = base64.b64decode(signature, validate=True)
        except ValueError:
            continue
        if key.verifies(raw, hashlib.sha256(expected).digest()):
            return True
    return False


def _attestation_envelope(
    run: Run, registry: Registry, repository: str, manifest: bytes
) -> dict[str, Any] | None:
    for layer in _layers(manifest):
        if layer.get("mediaType") == DSSE_ENVELOPE and isinstance(layer.get("digest"), str):
            body = run.registry_reader(registry).small_blob(repository, layer["digest"])
            try:
                envelope = json.loads(body)
            except ValueError:
                return None
            return envelope if isinstance(envelope, dict) else None
    return None


def _attestation_verifies(key: Signer, image: RemoteImage, envelope: dict[str, Any]) -> bool:
    try:
        body = base64.b64decode(str(envelope.get("payload", "")), validate=True)
        statement = json.loads(body)
        subjects = statement.get("subject") or []
    except (ValueError, AttributeError):
        return False
    digest = image.manifest_digest.partition(":")[2]
    if not any((s.get("digest") or {}).get("sha256") == digest for s in subjects if isinstance(s, dict)):
        return False
    message = pae(str(envelope.get("payloadType", "")), body)
    for entry in envelope.get("signatures") or []:
        try:
            raw = base64.b64decode(str(entry.get("sig", "")), validate=True)
        except ValueError:
            continue
        if key.verifies(raw, hashlib.sha256(message).digest()):
            return True
    return False


def _layers(manifest: bytes) -> list[dict[str, Any]]:
    try:
        document = json.loads(manifest)
    except ValueError:
        return []
    layers = document.get("layers") if isinstance(document, dict) else None
    return [layer for layer in layers or [] if isinstance(layer, dict)]


# -- signing -----------------------------------------------------------------------------------------
def sign(
    run: Run,
    signing: Signing,
    registry: Registry,
    repository: str,
    image: RemoteImage,
    mirrored: Mirrored,
    may_move: Callable[[str], bool] = lambda tag: True,
) -> list[str]:
    """Push what `image` lacks of its signature and attestation; what was added, described.

    A tag that holds something else is never overwritten: TagConflict says so. Where ECR would
    let a tag move (`may_move`), it is asked for again right before its PUT."""
    key = signer(run, signing, registry)
    signature_tag, attestation_tag = tags(image)
    held = attached(run, registry, repository, image)
    added: list[str] = []
    client = run.registry_client(registry)
    pushed: dict[str, tuple[str, bytes]] = {}
    if signature_tag not in held:
        body = payload(registry, repository, image.manifest_digest)
        signature = base64.b64encode(key.sign(body)).decode()
        layer = {"annotations": {SIGNATURE_ANNOTATION: signature}}
        pushed[signature_tag] = _push(
            client, repository, signature_tag, body, SIMPLE_SIGNING, layer, may_move(signature_tag)
        )
        added.append(f"signature {signature_tag}")
    if attestation_tag not in held:
        statement = json.dumps(provenance_statement(registry, repository, image, mirrored, key)).encode()
        signature = base64.b64encode(key.sign(pae(IN_TOTO, statement))).decode()
        envelope = {
            "payloadType": IN_TOTO,
            "payload": base64.b64encode(statement).decode(),
            "signatures": [{"keyid": "", "sig": signature}],
        }
        body = json.dumps(envelope).encode()
        annotations = {"annotations": {"predicateType": PREDICATE_TYPE}}
        pushed[attestation_tag] = _push(
            client, repository, attestation_tag, body, DSSE_ENVELOPE, annotations, may_move(attestation_tag)
        )
        added.append(f"attestation {attestation_tag}")
    memo_key = ("attached", registry.host, repository)
    with run.locks(memo_key):
        run.memo[memo_key][1].update(pushed)  # the other items see them
    return added


def _push(
    client: Any,
    repository: str,
    tag: str,
    layer_body: bytes,
    media_type: str,
    extra: dict[str, Any],
    mutable: bool,
) -> tuple[str, bytes]:
    """An OCI image manifest of one layer, as cosign writes its signature and attestation images."""
    layer = Descriptor(media_type, sha256_digest(layer_body), len(layer_body))
    config_body = json.dumps(
        {
            "architecture": "",
            "os": "",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
        },
        separators=(",", ":"),
    ).encode()
    config = Descriptor(OCI_CONFIG, sha256_digest(config_body), len(config_body))
    with tempfile.TemporaryDirectory(prefix="ecrmirror-sign-") as tmp:
        for descriptor, body in ((config, config_body), (layer, layer_body)):
            if not client.has_blob(repository, descriptor.digest):
                path = Path(tmp) / descriptor.digest.replace(":", "-")
                path.write_bytes(body)
                client.upload_blob(repository, path, descriptor)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config.media_type, "digest": config.digest, "size": config.size},
        "layers": [{"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size, **extra}],
    }
    body = json.dumps(manifest).encode()
    try:
        client.put_manifest(repository, tag, body, OCI_MANIFEST, mutable=mutable)
    except TagConflict:
        raise TagConflict(
            f"{repository}:{tag} holds another signature image, which ecrmirror never overwrites "
            "(cosign rewrites that tag to add a signature; ECR's tags here are immutable)"
        ) from None
    return sha256_digest(body), body


def payload(registry: Registry, repository: str, digest: str) -> bytes:
    """cosign's simple-signing payload for `digest`, the same bytes every time."""
    document = {
        "critical": {
            "identity": {"docker-reference": f"{registry.host}/{repository}"},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what a DSSE signature signs."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def provenance_statement(
    registry: Registry, repository: str, image: RemoteImage, mirrored: Mirrored, key: Signer
) -> dict[str, Any]:
    """An in-toto statement, SLSA provenance v1, of how ecrmirror mirrored the version."""
    release = mirrored.release
    source: dict[str, Any] = {"uri": release.url, "digest": {"sha256": release.digest.partition(":")[2]}}
    dependencies = [source]
    if mirrored.archive_digest and mirrored.archive_digest != release.digest:
        dependencies.append(
            {"name": "chart archive", "digest": {"sha256": mirrored.archive_digest.partition(":")[2]}}
        )
    verification: dict[str, Any] | None = None
    if mirrored.verified is not None:
        verification = {
            "provenanceVerified": True,
            "keyFingerprint": mirrored.verified.fingerprint,
            "signer": mirrored.verified.signer,
        }
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {
                "name": f"{registry.host}/{repository}",
                "digest": {"sha256": image.manifest_digest.partition(":")[2]},
            }
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "chart": release.name,
                    "version": release.version,
                    "source": release.source,
                    "upstreamDigest": release.digest,
                    "archiveDigest": mirrored.archive_digest,
                },
                "internalParameters": {"verification": verification, "signingKey": key.fingerprint()},
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": f"urn:ecrmirror:{__version__}"},
                "metadata": {"finishedOn": now},
            },
        },
    }
