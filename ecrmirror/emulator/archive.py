"""Archive and restore, lifecycle rules run on the emulator's clock, pull times and their exclusions.

Each image carries its storage state (`Storage`, kept on moto's image, so it goes with the image):
ACTIVE, ARCHIVED, or ACTIVATING until the restore delay has passed on the emulator's clock (read
lazily: no timers). Archived and activating images are left out of the default listings and are
not pullable (userguide/archive-image.html); a pull stamps `lastRecordedPullTime` unless the caller
is a registered pull-time exclusion (userguide/pull-time-update-exclusions.html). Lifecycle rules
run whenever the clock moves and after PutLifecyclePolicy, and at once where ECR takes up to 24
hours; the lifecycle policy preview is the same evaluation, answered instead of applied.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ecrmirror.emulator.images as images
import ecrmirror.emulator.repositories as repositories
from ecrmirror import ecr_rules
from ecrmirror.emulator.answers import Refused, validation_error
from ecrmirror.emulator.iam import Caller
from ecrmirror.emulator.repositories import Where
from ecrmirror.emulator.state import State

if TYPE_CHECKING:
    from ecrmirror.emulator.iam import Iam
    from ecrmirror.emulator.replication import Replicator
    from ecrmirror.emulator.repositories import Handler

ACTIVE, ARCHIVED, ACTIVATING = "ACTIVE", "ARCHIVED", "ACTIVATING"
STORAGE_CLASSES = ("STANDARD", "ARCHIVE")  # UpdateImageStorageClass's targetStorageClass [BC]
DAY = 86_400.0
MAX_EXCLUSIONS = 100  # per account (userguide/pull-time-update-exclusions.html)
PRINCIPAL_ARN = re.compile(r"^arn:aws(-[a-z]+)*:iam::[0-9]{12}:(role|user)/[\w+=,.@-]+(/[\w+=,.@-]+)*$")
MAX_PRINCIPAL_ARN = 200
MAX_PREVIEW_PAGE = 100
MAX_REFERRER_PAGE = 50
MAX_ARTIFACT_TYPES = 5
_ATTRIBUTE = "ecrmirror_storage"


@dataclass
class Storage:
    """One image's storage class and pull time, as ImageDetail carries them (times: emulator clock)."""

    pushed_at: float
    status: str = ACTIVE
    last_archived_at: float | None = None
    last_activated_at: float | None = None
    active_at: float | None = None  # while ACTIVATING: when the restore is done
    last_pulled_at: float | None = None

    def fields(self) -> dict[str, Any]:
        found: dict[str, Any] = {"imageStatus": self.status}
        for name, value in (
            ("lastRecordedPullTime", self.last_pulled_at),
            ("lastArchivedAt", self.last_archived_at),
            ("lastActivatedAt", self.last_activated_at),
        ):
            if value is not None:
                found[name] = value
        return found


@dataclass
class Preview:
    """A lifecycle policy preview: IN_PROGRESS until the first GetLifecyclePolicyPreview."""

    policy: str
    verdicts: list[Verdict]
    complete: bool = False


@dataclass
class _Registry:
    """What this part keeps besides the images: exclusions by account, previews by repository."""

    exclusions: dict[str, dict[str, float]] = field(default_factory=dict)  # account -> ARN -> createdAt
    previews: dict[tuple[str, str, str], Preview] = field(default_factory=dict)


def _held(state: State) -> _Registry:
    held: _Registry = state.part("archive", _Registry)
    return held


# -- one image's storage ----------------------------------------------------------------------------------
def storage(state: State, image: Any) -> Storage:
    """The image's storage state now: an ACTIVATING image whose restore is done is ACTIVE."""
    found: Storage | None = getattr(image, _ATTRIBUTE, None)
    if found is None:
        found = Storage(pushed_at=float(images.epoch(image.image_pushed_at)))
        setattr(image, _ATTRIBUTE, found)
    if found.status == ACTIVATING and found.active_at is not None and state.now() >= found.active_at:
        found.status, found.last_activated_at, found.active_at = ACTIVE, found.active_at, None
    return found


def pullable(state: State, image: Any) -> bool:
    """Whether a pull gets the image: not while ARCHIVED or ACTIVATING (userguide/archive-image.html)."""
    return storage(state, image).status == ACTIVE


def pulled(state: State, where: Where, image: Any, caller: Caller) -> None:
    """A pull of `image` by `caller`: stamps lastRecordedPullTime unless the caller is excluded."""
    excluded = _held(state).exclusions.get(where.account, {})
    if any(arn in excluded for arn in caller.arns()):
        return
    storage(state, image).last_pulled_at = state.now()


def _archive(state: State, image: Any) -> None:
    held = storage(state, image)
    held.status, held.last_archived_at, held.active_at = ARCHIVED, state.now(), None


def _restored_by_push(state: State, where: Any, repository: Any, image: Any, tag: Any, caller: Any) -> None:
    """A push of an archived (or activating) image restores it at once (userguide/image-push.html);
    a first push records its time on the emulator's clock."""
    held: Storage | None = getattr(image, _ATTRIBUTE, None)
    if held is None:
        image.image_pushed_at = int(state.now())
        setattr(image, _ATTRIBUTE, Storage(pushed_at=float(image.image_pushed_at)))
        return
    if storage(state, image).status != ACTIVE:
        held.status, held.last_activated_at, held.active_at = ACTIVE, state.now(), None


# -- the actions ------------------------------------------------------------------------------------------
def handlers(state: State, iam: Iam, replicator: Replicator) -> dict[str, Handler]:
    """The ECR actions this part answers."""
    if not any(getattr(hook, "func", None) is _restored_by_push for hook in state.push_hooks):
        state.push_hooks.append(functools.partial(_restored_by_push, state))
        state.advance_hooks.append(functools.partial(run_lifecycle_everywhere, state))

    def fields(image: Any) -> dict[str, Any]:
        return storage(state, image).fields()

    def batch_get_image(where: Where, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        repository = where.repository(str(body.get("repositoryName", "")))
        answer = images.batch_get_image(repository, body, lambda image: pullable(state, image))
        for got in answer["images"]:
            image = images.find(repository, str(got["imageId"]["imageDigest"]))
            if image is not None:
                pulled(state, where, image, caller)
        return answer

    def put_lifecycle_policy(where: Where, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        answer = repositories.put_lifecycle_policy(where, body)
        run_lifecycle(state, where.repository(str(body.get("repositoryName", ""))))
        return answer

    return {
        "UpdateImageStorageClass": lambda w, b, c: update_image_storage_class(state, w, b),
        "DescribeImages": lambda w, b, c: images.describe_images(
            w.repository(str(b.get("repositoryName", ""))), b, fields
        ),
        "ListImages": lambda w, b, c: images.list_images(
            w.repository(str(b.get("repositoryName", ""))), b, fields
        ),
        "BatchGetImage": batch_get_image,
        "PutLifecyclePolicy": put_lifecycle_policy,
        "RegisterPullTimeUpdateExclusion": lambda w, b, c: register_exclusion(state, w, b),
        "DeregisterPullTimeUpdateExclusion": lambda w, b, c: deregister_exclusion(state, w, b),
        "ListPullTimeUpdateExclusions": lambda w, b, c: list_exclusions(state, w, b),
        "StartLifecyclePolicyPreview": lambda w, b, c: start_preview(state, w, b),
        "GetLifecyclePolicyPreview": lambda w, b, c: get_preview(state, w, b),
        "ListImageReferrers": lambda w, b, c: list_image_referrers(state, w, b),
    }


def _image(repository: Any, image_id: dict[str, Any]) -> Any:
    found, failure = images._resolve(repository, image_id)
    if failure is not None:
        raise Refused(
            "ImageNotFoundException",
            f"The image with imageId {json.dumps(image_id)} does not exist within the repository with "
            f"name '{repository.name}' in the registry with id '{repository.registry_id}'",
        )
    return found


def update_image_storage_class(state: State, where: Where, body: dict[str, Any]) -> dict[str, Any]:
    """ACTIVE -> ARCHIVED at once; ARCHIVED -> ACTIVATING -> ACTIVE after the restore delay. Any
    other move (an image already in the class, or one ACTIVATING) is refused (*unverified*)."""
    target = body.get("targetStorageClass")
    if target not in STORAGE_CLASSES:
        raise validation_error(
            "targetStorageClass",
            target,
            f"Member must satisfy enum value set: [{', '.join(STORAGE_CLASSES)}]",
        )
    repository = where.repository(str(body.get("repositoryName", "")))
    image_id = body.get("imageId") or {}
    image = _image(repository, image_id)
    held = storage(state, image)
    if (target, held.status) == ("ARCHIVE", ACTIVE):
        _archive(state, image)
    elif (target, held.status) == ("STANDARD", ARCHIVED):
        held.status, held.active_at = ACTIVATING, state.now() + state.restore_delay
        storage(state, image)  # a restore delay of 0 is done at once
    else:
        raise Refused(
            "InvalidParameterException",
            f"Invalid parameter: the image {image.get_image_digest()} is {held.status} and cannot be "
            f"moved to storage class {target}",
        )
    tag = image_id.get("imageTag")
    return {
        "registryId": repository.registry_id,
        "repositoryName": repository.name,
        "imageId": {"imageDigest": image.get_image_digest(), **({"imageTag": str(tag)} if tag else {})},
        "imageStatus": storage(state, image).status,
    }


# -- pull-time update exclusions ---------------------------------------------------------------------------
def _principal(body: dict[str, Any]) -> str:
    arn = str(body.get("principalArn", ""))
    if len(arn) > MAX_PRINCIPAL_ARN:
        raise validation_error(
            "principalArn", arn, f"Member must have length less than or equal to {MAX_PRINCIPAL_ARN}"
        )
    if not PRINCIPAL_ARN.match(arn):
        raise validation_error(
            "principalArn", arn, f"Member must satisfy regular expression pattern: {PRINCIPAL_ARN.pattern}"
        )
    if ":user/" in arn:
        raise Refused(
            "InvalidParameterException",
            f"Invalid parameter at 'principalArn' failed to satisfy constraint: '{arn} is an IAM user; "
            "only IAM roles can be excluded from pull time updates'",
        )
    return arn


def register_exclusion(state: State, where: Where, body: dict[str, Any]) -> dict[str, Any]:
    arn = _principal(body)
    held = _held(state).exclusions.setdefault(where.account, {})
    if arn in held:
        raise Refused(
            "ExclusionAlreadyExistsException",
            f"The principal '{arn}' is already excluded from pull time updates in the registry with id "
            f"'{where.account}'",
        )
    if len(held) >= MAX_EXCLUSIONS:
        raise Refused(
            "LimitExceededException",
            f"The registry with id '{where.account}' already has {MAX_EXCLUSIONS} pull time update "
            "exclusions, the most it can have",
        )
    held[arn] = state.now()
    return {"principalArn": arn, "createdAt": held[arn]}


def deregister_exclusion(state: State, where: Where, body: dict[str, Any]) -> dict[str, Any]:
    arn = _principal(body)
    held = _held(state).exclusions.get(where.account, {})
    if held.pop(arn, None) is None:
        raise Refused(
            "ExclusionNotFoundException",
            f"The principal '{arn}' is not excluded from pull time updates in the registry with id "
            f"'{where.account}'",
        )
    return {"principalArn": arn}


def list_exclusions(state: State, where: Where, body: dict[str, Any]) -> dict[str, Any]:
    held = _held(state).exclusions.get(where.account, {})
    page, token = images.paginate(sorted(held), body)
    return {"pullTimeUpdateExclusions": page, **({"nextToken": token} if token else {})}


# -- lifecycle rules -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """What a lifecycle policy does to one image now: EXPIRE or TRANSITION, by which rule."""

    image: Any
    action: str  # EXPIRE | TRANSITION
    priority: int
    storage_class: str  # the image's class now: STANDARD | ARCHIVE


def evaluate(state: State, repository: Any, policy: str) -> list[Verdict]:
    """What `policy` does to `repository`'s images at this moment (userguide/LifecyclePolicies.html):
    rules by priority; an image whose tags a rule selects is never acted on by a later rule (a rule
    still counts it); at most one action per image; oldest pushed first; an image an index still
    lists is not acted on before the index. Both the runner and the preview use it."""
    rules = sorted(json.loads(policy)["rules"], key=lambda r: int(r["rulePriority"]))
    now = state.now()
    claimed: set[int] = set()
    verdicts: list[Verdict] = []
    for rule in rules:
        selection, action = rule["selection"], rule["action"]
        archive_class = selection.get("storageClass", "standard") == "archive"
        wanted = ARCHIVED if archive_class else ACTIVE
        selected = [
            image
            for image in repository.images
            if storage(state, image).status == wanted and _tags_match(selection, list(image.image_tags))
        ]
        selected.sort(key=lambda image: storage(state, image).pushed_at, reverse=True)  # newest first
        count_type, number = selection["countType"], int(selection["countNumber"])
        if count_type == "imageCountMoreThan":
            due = selected[number:]
        else:
            due = [i for i in selected if now - _since(state, i, count_type) > number * DAY]
        kind = "TRANSITION" if action.get("type") == "transition" else "EXPIRE"
        for image in reversed(due):  # oldest first
            if id(image) in claimed or _listed_by_index(state, repository, image, kind):
                continue
            verdicts.append(
                Verdict(image, kind, int(rule["rulePriority"]), "ARCHIVE" if archive_class else "STANDARD")
            )
            claimed.add(id(image))
        claimed.update(id(image) for image in selected)
    return verdicts


def _tags_match(selection: dict[str, Any], tags: list[str]) -> bool:
    """tagged: each pattern (or prefix) of the rule matches one of the image's tags
    (userguide/lifecycle_policy_examples.html); untagged: no tag; any: every image."""
    status = selection.get("tagStatus")
    if status == "untagged":
        return not tags
    if status == "any":
        return True
    if not tags:
        return False
    if "tagPatternList" in selection:
        return all(any(ecr_rules.wildcard_match(p, t) for t in tags) for p in selection["tagPatternList"])
    return all(any(t.startswith(p) for t in tags) for p in selection.get("tagPrefixList") or [])


def _since(state: State, image: Any, count_type: str) -> float:
    held = storage(state, image)
    if count_type == "sinceImagePulled":  # never pulled: pushed; restored since the last pull: restored
        return max(t for t in (held.pushed_at, held.last_activated_at, held.last_pulled_at) if t is not None)
    if count_type == "sinceImageTransitioned":
        return held.last_archived_at if held.last_archived_at is not None else held.pushed_at
    return held.pushed_at


def _listed_by_index(state: State, repository: Any, image: Any, kind: str) -> bool:
    """An index still lists the image: while the index exists (expire), or is ACTIVE (transition)."""
    digest = image.get_image_digest()
    for other in repository.images:
        if other is image or "manifests" not in other.image_manifest:
            continue
        try:
            listed = json.loads(other.image_manifest).get("manifests") or []
        except (ValueError, AttributeError):
            continue
        lists_it = any(isinstance(m, dict) and m.get("digest") == digest for m in listed)
        if lists_it and (kind == "EXPIRE" or storage(state, other).status == ACTIVE):
            return True
    return False


def run_lifecycle(state: State, repository: Any) -> None:
    """Apply the repository's lifecycle policy now (ECR: within 24 hours of an image meeting it)."""
    if not repository.lifecycle_policy:
        return
    for verdict in evaluate(state, repository, str(repositories.json_text(repository.lifecycle_policy))):
        if verdict.action == "TRANSITION":
            _archive(state, verdict.image)
        elif verdict.image in repository.images:
            repository.images.remove(verdict.image)


def run_lifecycle_everywhere(state: State) -> None:
    from moto.ecr.models import ecr_backends

    for _, regions in list(ecr_backends.items()):
        for _, backend in list(regions.items()):
            for repository in list(backend.repositories.values()):
                run_lifecycle(state, repository)


# -- lifecycle policy preview ------------------------------------------------------------------------
def _policy_of(where: Where, repository: Any, body: dict[str, Any]) -> str:
    text = body.get("lifecyclePolicyText")
    if text is not None:
        problems = ecr_rules.lifecycle_problems(str(text))
        if problems:
            raise Refused(
                "InvalidParameterException",
                "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: "
                f"'Lifecycle policy validation failure: {'; '.join(problems)}'",
            )
        return str(text)
    if not repository.lifecycle_policy:
        raise Refused(
            "LifecyclePolicyNotFoundException",
            f"Lifecycle policy does not exist for the repository with name '{repository.name}' in the "
            f"registry with id '{where.account}'",
        )
    return str(repositories.json_text(repository.lifecycle_policy))


def start_preview(state: State, where: Where, body: dict[str, Any]) -> dict[str, Any]:
    repository = where.repository(str(body.get("repositoryName", "")))
    key = (where.account, where.region, repository.name)
    running = _held(state).previews.get(key)
    if running is not None and not running.complete:
        raise Refused(
            "LifecyclePolicyPreviewInProgressException",
            f"The previous lifecycle policy preview request has not completed for the repository with name "
            f"'{repository.name}' in the registry with id '{where.account}'",
        )
    policy = _policy_of(where, repository, body)
    _held(state).previews[key] = Preview(policy, evaluate(state, repository, policy))
    return {
        "registryId": repository.registry_id,
        "repositoryName": repository.name,
        "lifecyclePolicyText": policy,
        "status": "IN_PROGRESS",
    }


def get_preview(state: State, where: Where, body: dict[str, Any]) -> dict[str, Any]:
    repository = where.repository(str(body.get("repositoryName", "")))
    preview = _held(state).previews.get((where.account, where.region, repository.name))
    if preview is None:
        raise Refused(
            "LifecyclePolicyPreviewNotFoundException",
            f"There is no lifecycle policy preview for the repository with name '{repository.name}' in the "
            f"registry with id '{where.account}'",
        )
    preview.complete = True
    size = body.get("maxResults")
    if size is not None and not 1 <= size <= MAX_PREVIEW_PAGE:
        raise validation_error(
            "maxResults", size, f"Member must have value between 1 and {MAX_PREVIEW_PAGE}, inclusive"
        )
    verdicts = _preview_filtered(repository, preview.verdicts, body)
    page, token = images.paginate(verdicts, body)
    return {
        "registryId": repository.registry_id,
        "repositoryName": repository.name,
        "lifecyclePolicyText": preview.policy,
        "status": "COMPLETE",
        "previewResults": [_preview_result(v) for v in page],
        "summary": _summary(preview.verdicts),
        **({"nextToken": token} if token else {}),
    }


def _preview_filtered(repository: Any, verdicts: list[Verdict], body: dict[str, Any]) -> list[Verdict]:
    status = (body.get("filter") or {}).get("tagStatus", "ANY")
    kept = [v for v in verdicts if status == "ANY" or (status == "TAGGED") == bool(v.image.image_tags)]
    asked = body.get("imageIds")
    if asked:
        wanted = {images._resolve(repository, image_id)[0] for image_id in asked}
        kept = [v for v in kept if v.image in wanted]
    return kept


def _preview_result(verdict: Verdict) -> dict[str, Any]:
    image = verdict.image
    action: dict[str, Any] = {"type": verdict.action}
    if verdict.action == "TRANSITION":
        action["targetStorageClass"] = "ARCHIVE"
    return {
        "imageTags": list(image.image_tags),
        "imageDigest": image.get_image_digest(),
        "imagePushedAt": getattr(image, _ATTRIBUTE).pushed_at,
        "action": action,
        "appliedRulePriority": verdict.priority,
        "storageClass": verdict.storage_class,
    }


def _summary(verdicts: Iterable[Verdict]) -> dict[str, Any]:
    listed = list(verdicts)
    transitioning = sum(1 for v in listed if v.action == "TRANSITION")
    return {
        "expiringImageTotalCount": sum(1 for v in listed if v.action == "EXPIRE"),
        "transitioningImageTotalCounts": (
            [{"targetStorageClass": "ARCHIVE", "imageTotalCount": transitioning}] if transitioning else []
        ),
    }


# -- referrers ---------------------------------------------------------------------------------------
ARTIFACT_STATUSES = ("ACTIVE", "ARCHIVED", "ACTIVATING", "ANY")


def list_image_referrers(state: State, where: Where, body: dict[str, Any]) -> dict[str, Any]:
    """ListImageReferrers [BC]: the manifests whose subject is the digest, ACTIVE ones unless
    `filter.artifactStatus` says otherwise, up to 5 artifact types, 50 a page by default."""
    subject = (body.get("subjectId") or {}).get("imageDigest")
    if subject is None:
        raise Refused(
            "ValidationException",
            "1 validation error detected: Value null at 'subjectId.imageDigest' failed to satisfy "
            "constraint: Member must not be null",
        )
    wanted_filter = body.get("filter") or {}
    types = wanted_filter.get("artifactTypes")
    if types is not None and len(types) > MAX_ARTIFACT_TYPES:
        raise validation_error(
            "filter.artifactTypes",
            types,
            f"Member must have length less than or equal to {MAX_ARTIFACT_TYPES}",
        )
    wanted = wanted_filter.get("artifactStatus") or ACTIVE
    if wanted not in ARTIFACT_STATUSES:
        raise validation_error(
            "filter.artifactStatus",
            wanted,
            f"Member must satisfy enum value set: [{', '.join(ARTIFACT_STATUSES)}]",
        )
    size = body.get("maxResults")
    if size is not None and not 1 <= size <= MAX_REFERRER_PAGE:
        raise validation_error(
            "maxResults", size, f"Member must have value between 1 and {MAX_REFERRER_PAGE}, inclusive"
        )
    repository = where.repository(str(body.get("repositoryName", "")))

    def admitted(image: Any) -> bool:
        return wanted == "ANY" or storage(state, image).status == wanted

    found = [
        {**d, "artifactStatus": storage(state, images.find(repository, d["digest"])).status}
        for d in images.referrers(repository, str(subject), None, admitted)
        if not types or d.get("artifactType") in types
    ]
    page, token = images.paginate(found, {**body, "maxResults": size or MAX_REFERRER_PAGE})
    return {"referrers": page, **({"nextToken": token} if token else {})}
