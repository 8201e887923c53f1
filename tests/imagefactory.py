"""Push real-looking container images (multi-arch, attested, signed) and write charts that run them."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests
import yaml
from chartfactory import EPOCH, archive_bytes, write_archive

# Spelled out here rather than imported from ecrmirror: the fixtures must not share a typo with
# the code they test.
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
IN_TOTO = "application/vnd.in-toto+json"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SBOM_ARTIFACT = "application/vnd.example.sbom"
ALL_MANIFESTS = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))

PLATFORMS = ("linux/amd64", "linux/arm64")
ATTESTATION = "unknown/unknown"

Descriptor = dict[str, Any]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(host: str, repository: str, data: bytes, media_type: str = OCI_LAYER) -> Descriptor:
    """Upload `data` in one POST+PUT (a monolithic upload); returns its descriptor."""
    digest = sha256(data)
    started = requests.post(f"http://{host}/v2/{repository}/blobs/uploads/", timeout=10)
    started.raise_for_status()
    # The Location may be relative, and carries the upload's state in its query: add to it.
    location = urljoin(f"http://{host}/", started.headers["Location"])
    done = requests.put(
        location,
        params={"digest": digest},
        data=data,
        headers={"Content-Type": "application/octet-stream"},
        timeout=10,
    )
    done.raise_for_status()
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def push_manifest(host: str, repository: str, reference: str, body: bytes, media_type: str) -> str:
    """PUT `body` as it is under `reference` (a tag or its digest); returns its digest."""
    response = requests.put(
        f"http://{host}/v2/{repository}/manifests/{reference}",
        data=body,
        headers={"Content-Type": media_type},
        timeout=10,
    )
    if response.status_code != 201:
        raise RuntimeError(f"PUT manifest {repository}:{reference}: {response.status_code} {response.text}")
    digest = sha256(body)
    # A registry that re-serialized the manifest would answer another digest: fail here, not later.
    if response.headers.get("Docker-Content-Digest") != digest:
        raise RuntimeError(f"{host} stored {repository}:{reference} as another digest than {digest}")
    return digest


def manifest_digest(host: str, repository: str, reference: str) -> str | None:
    """The digest `reference` resolves to (any manifest type accepted), or None when it is absent."""
    response = requests.head(
        f"http://{host}/v2/{repository}/manifests/{reference}", headers={"Accept": ALL_MANIFESTS}, timeout=10
    )
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.headers["Docker-Content-Digest"]


def tar_gz_layer(files: dict[str, bytes]) -> bytes:
    """A gzipped tar of `files`, the same bytes every time (fixed mtimes), as layers are pushed."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(content), EPOCH, 0o644
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=EPOCH)


@dataclass(frozen=True)
class PushedImage:
    repository: str
    tag: str
    index_digest: str
    index_body: bytes
    children: dict[str, str]  # platform ("linux/amd64", "unknown/unknown": the attestation) -> digest
    layer_digests: frozenset[str]  # every layer blob of every child, attestation's included
    cosign_tags: dict[str, str] = field(default_factory=dict)  # sha256-<hex>.sig -> signature manifest
    referrer: str | None = None  # an OCI 1.1 referrer's digest, its subject the arm64 child
    referrers_tags: dict[str, str] = field(default_factory=dict)  # sha256-<hex> -> referrers index


@dataclass(frozen=True)
class _Child:
    descriptor: Descriptor
    layers: tuple[str, ...]


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()  # compact, as Go's encoder writes


def _push_platform_image(
    host: str,
    repository: str,
    platform: str,
    seed: str,
    shared_layer: bytes | None,
    *,
    docker: bool = False,
    reference: str | None = None,
) -> _Child:
    os_name, architecture = platform.split("/")
    layers = [tar_gz_layer({"etc/imagefactory/identity": f"{repository} {seed} {platform}\n".encode()})]
    if shared_layer is not None:
        layers.append(shared_layer)
    layer_type = DOCKER_LAYER if docker else OCI_LAYER
    layer_descriptors = [push_blob(host, repository, layer, layer_type) for layer in layers]
    config = {
        "architecture": architecture,
        "os": os_name,
        "created": "2024-03-01T12:34:56Z",
        "config": {"Entrypoint": ["/bin/app"], "Env": [f"IMAGEFACTORY_SEED={seed}"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(gzip.decompress(layer)) for layer in layers]},
        "history": [{"created": "2024-03-01T12:34:56Z", "created_by": "imagefactory"} for _ in layers],
    }
    config_type = DOCKER_CONFIG if docker else OCI_CONFIG
    media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": push_blob(host, repository, _json(config), config_type),
        "layers": layer_descriptors,
    }
    body = _json(manifest)
    digest = push_manifest(host, repository, reference or sha256(body), body, media_type)
    descriptor = {
        "mediaType": media_type,
        "digest": digest,
        "size": len(body),
        "platform": {"architecture": architecture, "os": os_name},
    }
    return _Child(descriptor, tuple(layer["digest"] for layer in layer_descriptors))


def _push_attestation(host: str, repository: str, tag: str, subject: Descriptor) -> _Child:
    """A buildx-style attestation manifest: an in-toto provenance statement about `subject`."""
    statement = {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [
            {
                "name": f"pkg:docker/{repository}@{tag}?platform=linux%2Famd64",
                "digest": {"sha256": subject["digest"].removeprefix("sha256:")},
            }
        ],
        "predicate": {"builder": {"id": "imagefactory"}, "buildType": "https://mobyproject.org/buildkit@v1"},
    }
    layer = push_blob(host, repository, _json(statement), IN_TOTO)
    layer["annotations"] = {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"}
    config = {
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": push_blob(host, repository, _json(config), OCI_CONFIG),
        "layers": [layer],
    }
    body = _json(manifest)
    digest = push_manifest(host, repository, sha256(body), body, OCI_MANIFEST)
    descriptor = {
        "mediaType": OCI_MANIFEST,
        "digest": digest,
        "size": len(body),
        "annotations": {
            "vnd.docker.reference.digest": subject["digest"],
            "vnd.docker.reference.type": "attestation-manifest",
        },
        "platform": {"architecture": "unknown", "os": "unknown"},
    }
    return _Child(descriptor, (layer["digest"],))


def push_cosign_signature(host: str, repository: str, digest: str) -> tuple[str, str]:
    """A signature of `digest` as cosign stores one (its SIGNATURE_SPEC: a simple-signing payload
    layer, the signature in an annotation), under its tag; returns (tag, manifest digest). The
    signature is no real one: nothing here verifies it."""
    payload = {
        "critical": {
            "identity": {"docker-reference": f"{host}/{repository}"},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    layer = push_blob(host, repository, _json(payload), SIMPLE_SIGNING)
    signature = base64.b64encode(hashlib.sha256(b"signed " + digest.encode()).digest()).decode()
    layer["annotations"] = {"dev.cosignproject.cosign/signature": signature}
    config = {  # what cosign writes: an empty image whose one diff_id is the payload's
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
        "config": {},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": push_blob(host, repository, _json(config), OCI_CONFIG),
        "layers": [layer],
    }
    tag = digest.replace(":", "-") + ".sig"
    return tag, push_manifest(host, repository, tag, _json(manifest), OCI_MANIFEST)


def _push_referrer(host: str, repository: str, subject: Descriptor) -> tuple[str, str, str]:
    """An OCI 1.1 artifact about `subject`, pushed by digest, and the referrers tag that lists it
    for registries without the referrers API; returns (referrer, tag, the tag's index digest)."""
    empty = push_blob(host, repository, b"{}", OCI_EMPTY)
    sbom = push_blob(host, repository, _json({"spdxVersion": "SPDX-2.3", "name": repository}), SBOM_ARTIFACT)
    annotations = {"org.opencontainers.image.created": "2024-03-01T12:34:56Z"}
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SBOM_ARTIFACT,
        "config": {**empty, "data": "e30="},
        "layers": [sbom],
        "subject": {key: subject[key] for key in ("mediaType", "digest", "size")},
        "annotations": annotations,
    }
    body = _json(manifest)
    referrer = push_manifest(host, repository, sha256(body), body, OCI_MANIFEST)
    listed = {
        "mediaType": OCI_MANIFEST,
        "digest": referrer,
        "size": len(body),
        "artifactType": SBOM_ARTIFACT,
        "annotations": annotations,
    }
    index = _json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [listed]})
    tag = subject["digest"].replace(":", "-")
    return referrer, tag, push_manifest(host, repository, tag, index, OCI_INDEX)


def push_multiarch_image(
    host: str,
    repository: str,
    tag: str,
    *,
    shared_layer: bytes | None = None,
    seed: str = "",
    referrer: bool = False,
) -> PushedImage:
    """An OCI index as buildx pushes it (amd64, arm64 and an attestation of amd64), cosign
    signatures of the index and of amd64, and with `referrer` an OCI 1.1 referrer of arm64.

    The index is laid out as no JSON encoder would (indent=3, a newline after), so a copy that
    re-serializes it shows in its digest. Another `seed` gives other layers, so other digests;
    `shared_layer` (a tar_gz_layer) is one more layer of both platforms, for images to share.
    """
    platforms = {
        platform: _push_platform_image(host, repository, platform, seed, shared_layer)
        for platform in PLATFORMS
    }
    attestation = _push_attestation(host, repository, tag, platforms["linux/amd64"].descriptor)
    children = {**platforms, ATTESTATION: attestation}
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [child.descriptor for child in children.values()],
    }
    body = (json.dumps(index, indent=3) + "\n").encode()
    digest = push_manifest(host, repository, tag, body, OCI_INDEX)
    cosign_tags = dict(
        push_cosign_signature(host, repository, signed)
        for signed in (digest, platforms["linux/amd64"].descriptor["digest"])
    )
    referrer_digest, referrers_tags = None, {}
    if referrer:
        referrer_digest, referrers_tag, listing = _push_referrer(
            host, repository, platforms["linux/arm64"].descriptor
        )
        referrers_tags[referrers_tag] = listing
    return PushedImage(
        repository=repository,
        tag=tag,
        index_digest=digest,
        index_body=body,
        children={platform: child.descriptor["digest"] for platform, child in children.items()},
        layer_digests=frozenset(layer for child in children.values() for layer in child.layers),
        cosign_tags=cosign_tags,
        referrer=referrer_digest,
        referrers_tags=referrers_tags,
    )


def push_docker_list_image(
    host: str, repository: str, tag: str, *, shared_layer: bytes | None = None, seed: str = ""
) -> PushedImage:
    """A Docker manifest list of amd64 and arm64 Docker images, as older builders push them: no
    attestation, no signatures. Laid out as push_multiarch_image lays out its index."""
    children = {
        platform: _push_platform_image(host, repository, platform, seed, shared_layer, docker=True)
        for platform in PLATFORMS
    }
    listing = {
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [child.descriptor for child in children.values()],
    }
    body = (json.dumps(listing, indent=3) + "\n").encode()
    return PushedImage(
        repository=repository,
        tag=tag,
        index_digest=push_manifest(host, repository, tag, body, DOCKER_LIST),
        index_body=body,
        children={platform: child.descriptor["digest"] for platform, child in children.items()},
        layer_digests=frozenset(layer for child in children.values() for layer in child.layers),
    )


def push_single_image(host: str, repository: str, tag: str, *, seed: str = "") -> str:
    """One linux/amd64 OCI image manifest under `tag`, no index; returns its digest."""
    child = _push_platform_image(host, repository, "linux/amd64", seed, None, reference=tag)
    return str(child.descriptor["digest"])


def move_tag(host: str, repository: str, tag: str, seed: str) -> str:
    """Re-tag as an upstream does: another image under `tag`; returns its digest. Fails when
    `seed` gives the image the tag already holds, which would not move it."""
    before = manifest_digest(host, repository, tag)
    after = push_single_image(host, repository, tag, seed=seed)
    if after == before:
        raise ValueError(f"seed {seed!r} gives the image {repository}:{tag} already is: the tag did not move")
    return after


@dataclass(frozen=True)
class ImageRefs:
    """The images a chart runs, each found one way only (but `annotated`, also templated)."""

    annotated: str  # Chart.yaml's artifacthub.io/images; the main container, from values.yaml
    subchart_annotated: str  # the packaged subchart's Bitnami-style `images` annotation
    init_container: str  # a Deployment's initContainers
    hook_job: str  # a pre-install hook Job
    operator_cr: str  # a custom resource's spec.image, its CRD in crds/

    @property
    def rendered(self) -> tuple[str, ...]:
        """What `helm template --include-crds` prints."""
        return (self.annotated, self.init_container, self.hook_job, self.operator_cr)


def split_reference(reference: str) -> tuple[str, str, str]:
    """HOST/PATH:TAG -> (HOST, PATH, TAG), as charts' values hold an image in three parts."""
    host, slash, rest = reference.partition("/")
    repository, colon, tag = rest.rpartition(":")
    if not slash or not colon or "@" in reference or "/" in tag:
        raise ValueError(f"{reference!r} is not HOST/PATH:TAG")
    return host, repository, tag


def _images_annotation(name: str, reference: str) -> str:
    return yaml.safe_dump([{"name": name, "image": reference}], sort_keys=False)


def _chart_yaml(name: str, version: str, annotations: dict[str, str]) -> str:
    """Chart.yaml with each annotation a literal block, as the Artifact Hub and Bitnami docs write them."""
    lines = [
        "apiVersion: v2",
        f"name: {name}",
        f"version: {version}",
        f"appVersion: {json.dumps(version)}",
        "type: application",
        "annotations:",
    ]
    for key, text in annotations.items():
        lines.append(f"  {key}: |")
        lines.extend(f"    {line}" for line in text.splitlines())
    return "\n".join(lines) + "\n"


_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
spec:
  selector:
    matchLabels:
      app: {{ .Release.Name }}
  template:
    metadata:
      labels:
        app: {{ .Release.Name }}
    spec:
      initContainers:
        - name: migrate
          image: "INIT_CONTAINER"
      containers:
        - name: app
          image: "{{ .Values.image.registry }}/{{ .Values.image.repository }}:{{ .Values.image.tag }}"
"""

_HOOK_JOB = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .Release.Name }}-setup
  annotations:
    "helm.sh/hook": pre-install
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: setup
          image: "HOOK_JOB"
"""

_CUSTOM_RESOURCE = """\
apiVersion: example.com/v1
kind: Database
metadata:
  name: {{ .Release.Name }}-db
spec:
  image: "OPERATOR_CR"
"""

_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: databases.example.com
spec:
  group: example.com
  names:
    kind: Database
    plural: databases
    singular: database
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                image:
                  type: string
"""

_SUBCHART_CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-sub
data:
  chart: sub
"""

_REQUIRED_SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: {{ .Release.Name }}-db
stringData:
  password: {{ required "database.password is required" .Values.database.password | quote }}
"""


def write_image_chart(
    directory: Path, *, name: str, version: str, images: ImageRefs, render_fails: bool = False
) -> Path:
    """<directory>/<name>-<version>.tgz, a chart running `images` (see ImageRefs for where each
    is said); with `render_fails`, a value it requires is missing, so `helm template` fails."""
    subchart = archive_bytes(
        [
            (
                "sub/Chart.yaml",
                _chart_yaml("sub", "0.1.0", {"images": _images_annotation("sub", images.subchart_annotated)}),
            ),
            ("sub/values.yaml", "{}\n"),
            # No image here: the subchart renders, so helm did load it, but says its image nowhere.
            ("sub/templates/configmap.yaml", _SUBCHART_CONFIGMAP),
        ]
    )
    registry, repository, tag = split_reference(images.annotated)
    values = {
        "image": {"registry": registry, "repository": repository, "tag": tag},
        "database": {"password": ""},
    }
    members: list[tuple[str, str | bytes]] = [
        (
            f"{name}/Chart.yaml",
            _chart_yaml(name, version, {"artifacthub.io/images": _images_annotation(name, images.annotated)}),
        ),
        (f"{name}/values.yaml", yaml.safe_dump(values, sort_keys=False)),
        (f"{name}/templates/deployment.yaml", _DEPLOYMENT.replace("INIT_CONTAINER", images.init_container)),
        (f"{name}/templates/setup-job.yaml", _HOOK_JOB.replace("HOOK_JOB", images.hook_job)),
        (f"{name}/templates/database.yaml", _CUSTOM_RESOURCE.replace("OPERATOR_CR", images.operator_cr)),
        (f"{name}/crds/databases.example.com.yaml", _CRD),
        (f"{name}/charts/sub-0.1.0.tgz", subchart),
    ]
    if render_fails:
        members.append((f"{name}/templates/secret.yaml", _REQUIRED_SECRET))
    return write_archive(directory, f"{name}-{version}.tgz", members).path
