"""The images of a repository as ECR keeps them: manifests by digest, tags that move or stay.

One `put` serves the API's PutImage and the registry's manifest PUT: ECR's limits (a manifest up
to 4 MiB, a tag up to 300 characters), image indexes and manifest lists (their manifests must be
in the repository), immutability with wildcard exclusion filters, and a tag that moves in a
mutable repository leaving the image it left untagged (userguide/image-tag-mutability.html). The
listings page as ECR's do: 100 by default, `maxResults` 1 to 1,000, an opaque `nextToken`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from ecrmirror.ecr_rules import MAX_IMAGE_IDS, MAX_IMAGE_TAG, MAX_MANIFEST_BYTES, wildcard_match
from ecrmirror.emulator.answers import Refused, validation_error

IMAGE_INDEXES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_LOOSE_DIGEST = re.compile(r"^[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+$")  # what ECR's BatchGetImage accepts as one
DEFAULT_PAGE = 100
MAX_PAGE = 1000
IMAGE_STATUSES = ("ACTIVE", "ARCHIVED", "ACTIVATING", "ANY")  # ImageStatusFilter [BC]
# An image's storage fields as ImageDetail carries them (imageStatus, lastArchivedAt, ...).
Storage = Callable[[Any], dict[str, Any]]


def _all_active(image: Any) -> dict[str, Any]:
    return {"imageStatus": "ACTIVE"}


def is_immutable(repository: Any, tag: str) -> bool:
    """Whether `tag` may not move in `repository`: its mutability, and the wildcard exclusions."""
    mutability = repository.image_tag_mutability
    excluded = any(
        wildcard_match(str(f.get("filter", "")), tag)
        for f in repository.image_tag_mutability_exclusion_filters or []
    )
    if mutability == "IMMUTABLE_WITH_EXCLUSION":
        return not excluded
    if mutability == "MUTABLE_WITH_EXCLUSION":
        return excluded
    return bool(mutability == "IMMUTABLE")


def find(repository: Any, reference: str) -> Any:
    """The image of `repository` with this digest or tag, or None."""
    for image in repository.images:
        if (
            DIGEST.match(reference) and image.get_image_digest() == reference
        ) or reference in image.image_tags:
            return image
    return None


def put(
    account: str,
    repository: Any,
    body: bytes,
    media_type: str,
    tag: str | None,
    *,
    expected_digest: str | None = None,
    blobs: set[str] | None = None,
    untag_held: bool = False,
) -> Any:
    """Store a manifest (as `tag`), as ECR does; Refused for what ECR refuses.

    `blobs` are the blobs the repository holds (the registry checks an image's references; the
    API's PutImage does not). `untag_held`: replication into a repository whose `tag` holds
    other content stores the image untagged instead of refusing it.
    """
    from moto.ecr.models import Image

    if len(body) > MAX_MANIFEST_BYTES:
        raise Refused(
            "ValidationException",
            f"the manifest is {len(body)} bytes; ECR takes manifests of up to {MAX_MANIFEST_BYTES}",
            oci="MANIFEST_INVALID",
        )
    if tag is not None and not 1 <= len(tag) <= MAX_IMAGE_TAG:
        raise Refused(
            "ValidationException",
            f"the tag is {len(tag)} characters; ECR takes tags of 1 to {MAX_IMAGE_TAG}",
            oci="TAG_INVALID",
        )
    try:
        document = json.loads(body)
        text = body.decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise Refused(
            "InvalidParameterException", "the manifest is not valid JSON", oci="MANIFEST_INVALID"
        ) from None
    if not isinstance(document, dict):
        raise Refused(
            "InvalidParameterException", "the manifest is not a JSON object", oci="MANIFEST_INVALID"
        )
    media_type = media_type or str(document.get("mediaType") or "")
    if not media_type.startswith("application/vnd."):
        raise Refused(
            "InvalidParameterException", f"unsupported media type {media_type!r}", oci="MANIFEST_INVALID"
        )
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    if expected_digest is not None and expected_digest != digest:
        raise Refused(
            "ImageDigestDoesNotMatchException",
            f"manifest digest {digest} is not {expected_digest}",
            oci="DIGEST_INVALID",
        )
    _check_references(repository, document, media_type, blobs)
    image = find(repository, digest)
    holder = find(repository, tag) if tag is not None else None
    if holder is not None and (holder is not image or is_immutable(repository, str(tag))):
        if is_immutable(repository, str(tag)):
            if not untag_held:
                raise Refused(
                    "ImageTagAlreadyExistsException",
                    f"The image tag '{tag}' already exists in the '{repository.name}' repository and cannot "
                    "be overwritten because the repository is immutable.",
                    oci="TAG_INVALID",
                )
            tag = None
        else:
            holder.remove_tag(tag)  # the image it left stays, untagged
            if not holder.image_tags:
                holder.image_tag = None
    if image is None:
        # moto's Image takes tag None for an untagged image, though its annotation says str
        image = Image(
            account,
            tag,  # type: ignore[arg-type]
            text,
            repository.name,
            media_type,
            digest,
            repository.registry_id,
        )
        repository.images.append(image)
    elif tag is not None:
        image.update_tag(tag)
    return image


def _check_references(
    repository: Any, document: dict[str, Any], media_type: str, blobs: set[str] | None
) -> None:
    if media_type in IMAGE_INDEXES or "manifests" in document:
        missing = [
            str(m.get("digest"))
            for m in document.get("manifests") or []
            if not isinstance(m, dict) or find(repository, str(m.get("digest"))) is None
        ]
        if missing:
            raise Refused(
                "ReferencedImagesNotFoundException",
                f"the index refers to manifests not in repository {repository.name}: {', '.join(missing)}",
                oci="MANIFEST_BLOB_UNKNOWN",
            )
        return
    if blobs is None:
        return
    descriptors = [document.get("config") or {}, *(document.get("layers") or [])]
    for descriptor in descriptors:
        blob = descriptor.get("digest") if isinstance(descriptor, dict) else None
        if blob not in blobs:
            raise Refused(
                "LayersNotFoundException",
                f"blob {blob} is not in repository {repository.name}",
                oci="MANIFEST_BLOB_UNKNOWN",
            )


def referenced_by_index(repository: Any, image: Any) -> Any:
    """The image index of `repository` that lists `image`, or None: ECR deletes no image an index
    still refers to (BatchDeleteImage's failure code ImageReferencedByManifestList)."""
    digest = image.get_image_digest()
    for other in repository.images:
        try:
            document = json.loads(other.image_manifest)
        except (ValueError, TypeError):
            continue
        listed = document.get("manifests") if isinstance(document, dict) else None
        if any(isinstance(m, dict) and m.get("digest") == digest for m in listed or []):
            return other
    return None


def batch_delete_image(where: Any, body: dict[str, Any]) -> dict[str, Any] | None:
    """BatchDeleteImage, as moto does it, except for an image an index refers to: refused as ECR
    refuses it, the others deleted (by moto, handed only those)."""
    repository = where.repository(str(body.get("repositoryName", "")))
    kept, refused = [], []
    for image_id in body.get("imageIds") or []:
        image = find(repository, str(image_id.get("imageDigest") or image_id.get("imageTag") or ""))
        whole = image is not None and (image_id.get("imageDigest") or len(image.image_tags) <= 1)
        if whole and referenced_by_index(repository, image) is not None:
            refused.append(
                {
                    "imageId": image_id,
                    "failureCode": "ImageReferencedByManifestList",
                    "failureReason": "Requested image referenced by manifest list: "
                    f"[{referenced_by_index(repository, image).get_image_digest()}]",
                }
            )
        else:
            kept.append(image_id)
    if not refused:
        return None  # moto deletes them all
    answer: dict[str, Any] = {"imageIds": [], "failures": []}
    if kept:
        answer = where.backend().batch_delete_image(repository.name, where.account, kept)
        answer["imageIds"] = [
            {"imageDigest": i.image_digest, **({"imageTag": i.image_tag} if i.image_tag else {})}
            for i in answer["imageIds"]
        ]
    answer["failures"] = list(answer.get("failures") or []) + refused
    return answer


def blobs_of(image: Any) -> set[str]:
    """The digests of the blobs an image manifest refers to (none for an index)."""
    document = json.loads(image.image_manifest)
    descriptors = [document.get("config") or {}, *(document.get("layers") or [])]
    return {str(d["digest"]) for d in descriptors if isinstance(d, dict) and d.get("digest")}


def referrers(
    repository: Any,
    subject: str,
    artifact_type: str | None = None,
    include: Callable[[Any], bool] | None = None,
) -> list[dict[str, Any]]:
    """The descriptors of the manifests whose `subject` is `subject` (OCI 1.1's referrers API);
    `include` keeps only the images it admits (by storage status, say)."""
    found = []
    for image in repository.images:
        if include is not None and not include(image):
            continue
        document = json.loads(image.image_manifest)
        if not isinstance(document.get("subject"), dict) or document["subject"].get("digest") != subject:
            continue
        kind = document.get("artifactType") or (document.get("config") or {}).get("mediaType")
        if artifact_type and kind != artifact_type:
            continue
        descriptor = {
            "mediaType": image.image_manifest_media_type,
            "digest": image.get_image_digest(),
            "size": len(image.image_manifest.encode()),
        }
        if kind:
            descriptor["artifactType"] = kind
        if document.get("annotations"):
            descriptor["annotations"] = document["annotations"]
        found.append(descriptor)
    return found


# -- the API's image actions ---------------------------------------------------------------------
def batch_get_image(
    repository: Any, body: dict[str, Any], pullable: Callable[[Any], bool] | None = None
) -> dict[str, Any]:
    """BatchGetImage; an image `pullable` refuses (an archived one) fails as a missing one does."""
    image_ids = body.get("imageIds") or []
    if not 1 <= len(image_ids) <= MAX_IMAGE_IDS:
        raise validation_error(
            "imageIds", image_ids, f"Member must have length between 1 and {MAX_IMAGE_IDS}, inclusive"
        )
    images, failures = [], []
    for image_id in image_ids:
        found, failure = _resolve(repository, image_id)
        if failure is None and pullable is not None and not pullable(found):
            failure = ("ImageNotFound", "Requested image not found")
        if failure is not None:
            failures.append({"imageId": image_id, "failureCode": failure[0], "failureReason": failure[1]})
            continue
        images.append(
            {
                "registryId": repository.registry_id,
                "repositoryName": repository.name,
                "imageId": {"imageDigest": found.get_image_digest(), **_tag_of(image_id)},
                "imageManifest": found.image_manifest,
                "imageManifestMediaType": found.image_manifest_media_type,
            }
        )
    return {"images": images, "failures": failures}


def _resolve(repository: Any, image_id: dict[str, Any]) -> tuple[Any, tuple[str, str] | None]:
    digest, tag = image_id.get("imageDigest"), image_id.get("imageTag")
    if digest is None and tag is None:
        return None, (
            "MissingDigestAndTag",
            "Invalid request parameters: the image id has no digest and no tag",
        )
    if digest is not None and not _LOOSE_DIGEST.match(str(digest)):
        return None, (
            "InvalidImageDigest",
            "Invalid request parameters: image digest should satisfy the regex "
            "'[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'",
        )
    found = find(repository, str(digest) if digest is not None else str(tag))
    if found is None:
        return None, ("ImageNotFound", "Requested image not found")
    if digest is not None and tag is not None and tag not in found.image_tags:
        return None, (
            "ImageTagDoesNotMatchDigest",
            "Invalid request parameters: image tag does not match digest",
        )
    return found, None


def _tag_of(image_id: dict[str, Any]) -> dict[str, str]:
    return {"imageTag": str(image_id["imageTag"])} if image_id.get("imageTag") else {}


def describe_images(repository: Any, body: dict[str, Any], storage: Storage = _all_active) -> dict[str, Any]:
    """DescribeImages. An image outside `filter.imageStatus` (ACTIVE only without one) is left out
    of the listing, and asked for by id it is not found, as a missing one."""
    wanted = _image_status(body)
    requested = body.get("imageIds")
    if requested:
        images = []
        for image_id in requested:
            found, failure = _resolve(repository, image_id)
            if failure is None and not _admits(wanted, storage(found)):
                failure = ("ImageNotFound", "")
            if failure is not None:
                raise Refused(
                    "ImageNotFoundException",
                    f"The image with imageId {json.dumps(image_id)} does not exist within the repository "
                    "with "
                    f"name '{repository.name}' in the registry with id '{repository.registry_id}'",
                )
            images.append(found)
    else:
        images = _filtered(repository.images, body, storage)
    page, token = paginate(images, body)
    details = [{**_detail(repository, image), **storage(image)} for image in page]
    return {"imageDetails": details, **({"nextToken": token} if token else {})}


def list_images(repository: Any, body: dict[str, Any], storage: Storage = _all_active) -> dict[str, Any]:
    ids = [
        {"imageDigest": image.get_image_digest(), **({"imageTag": tag} if tag else {})}
        for image in _filtered(repository.images, body, storage)
        for tag in image.image_tags or [None]
    ]
    page, token = paginate(ids, body)
    return {"imageIds": page, **({"nextToken": token} if token else {})}


def _filtered(images: Iterable[Any], body: dict[str, Any], storage: Storage = _all_active) -> list[Any]:
    wanted = _image_status(body)
    admitted = [i for i in images if _admits(wanted, storage(i))]
    status = (body.get("filter") or {}).get("tagStatus", "ANY")
    if status == "TAGGED":
        return [i for i in admitted if i.image_tags]
    if status == "UNTAGGED":
        return [i for i in admitted if not i.image_tags]
    return admitted


def _image_status(body: dict[str, Any]) -> str:
    """`filter.imageStatus`, ACTIVE when not given: ECR's listings leave archived images out [BC]."""
    wanted = (body.get("filter") or {}).get("imageStatus") or "ACTIVE"
    if wanted not in IMAGE_STATUSES:
        raise validation_error(
            "filter.imageStatus",
            wanted,
            f"Member must satisfy enum value set: [{', '.join(IMAGE_STATUSES)}]",
        )
    return str(wanted)


def _admits(wanted: str, fields: dict[str, Any]) -> bool:
    return wanted == "ANY" or fields.get("imageStatus", "ACTIVE") == wanted


def _detail(repository: Any, image: Any) -> dict[str, Any]:
    document = json.loads(image.image_manifest)
    detail: dict[str, Any] = {
        "registryId": repository.registry_id,
        "repositoryName": repository.name,
        "imageDigest": image.get_image_digest(),
        "imageSizeInBytes": sum(int(layer.get("size", 0)) for layer in document.get("layers") or []),
        "imagePushedAt": image.image_pushed_at,
        "imageManifestMediaType": image.image_manifest_media_type,
    }
    config_type = (document.get("config") or {}).get("mediaType")
    if document.get("artifactType") or config_type:
        detail["artifactMediaType"] = document.get("artifactType") or config_type
    if image.image_tags:
        detail["imageTags"] = list(image.image_tags)
    return detail


def paginate(items: list[Any], body: dict[str, Any]) -> tuple[list[Any], str | None]:
    """One page of `items` as ECR's listings give them, and the token for the next, if any."""
    size = body.get("maxResults")
    if size is not None and not (isinstance(size, int) and 1 <= size <= MAX_PAGE):
        raise validation_error(
            "maxResults", size, f"Member must have value between 1 and {MAX_PAGE}, inclusive"
        )
    start = 0
    if body.get("nextToken"):
        try:
            start = int(base64.urlsafe_b64decode(str(body["nextToken"]).encode()).decode())
        except (ValueError, UnicodeDecodeError):
            raise Refused("InvalidParameterException", "Invalid parameter at 'nextToken'") from None
    end = start + (size or DEFAULT_PAGE)
    token = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else None
    return items[start:end], token


def epoch(moment: datetime | float | int) -> float:
    return moment.timestamp() if isinstance(moment, datetime) else float(moment)
