"""ECR's own replication backfill: StartReplicationBackfill and the operations that follow it.

A backfill copies, inside AWS, what the registry's *current* replication rules send to one
destination (region + registry), whatever was pushed before the rules existed
(userguide/replication-backfill.html; the API as botocore's model has it). Here:

- the selection (every image+tag of every repository a PREFIX_MATCH rule sends there) is fixed at
  start; one backfill per destination region is PREPARING/IN_PROGRESS/STOPPING at a time, ten per
  registry;
- it runs on the emulator's clock (`State.now()`): PREPARING for `preparing` seconds (no progress),
  then IN_PROGRESS while the copies land one after another over `duration` seconds, then COMPLETE
  (or FAILED once at least 100 copies ran and half of them failed); copies are made, as
  replication's are (replication.py), when the backfill is next looked at, and never appear as
  registry requests: they happen inside AWS;
- per-image results exist only once it is over; a copy fails with a code when its source repository
  or image was deleted, when another account's registry policy does not allow it, or as `failures`
  forces for a region;
- `native = False` makes the registry answer all four operations as one that does not offer them
  (UnknownOperationException), for a client's fallback to be tested.

The knobs live on `backfills(state)`; a reset restores their defaults.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ecrmirror.emulator.images as images
from ecrmirror.emulator.answers import Refused, validation_error
from ecrmirror.emulator.repositories import Where
from ecrmirror.emulator.state import State

if TYPE_CHECKING:
    from ecrmirror.emulator.iam import Iam
    from ecrmirror.emulator.replication import Replicator
    from ecrmirror.emulator.repositories import Handler

PREPARING, IN_PROGRESS, COMPLETE, FAILED, STOPPING, STOPPED = (
    "PREPARING",
    "IN_PROGRESS",
    "COMPLETE",
    "FAILED",
    "STOPPING",
    "STOPPED",
)
ACTIVE = (PREPARING, IN_PROGRESS, STOPPING)
MAX_ACTIVE = 10  # "10 in progress per registry" (LimitExceededException) [BC]
RETENTION = 90 * 86400  # terminal backfills stay listed for 90 days
AUTO_FAIL_AFTER = 100  # the 50% rule is evaluated only once this many replications ran
LIST_PAGE, LIST_MAX = 25, 50
# ECR's failure codes are free strings with no enum [BC]: these are the emulator's (unverified).
SOURCE_REPOSITORY_DELETED = "SOURCE_REPOSITORY_NOT_FOUND"
SOURCE_IMAGE_DELETED = "SOURCE_IMAGE_NOT_FOUND"
TOO_MANY_FAILURES = "REPLICATION_FAILURE_THRESHOLD_EXCEEDED"
UNSUPPORTED = "UnknownOperationException"  # what `native = False` answers (unverified)
REGION = re.compile(r"^[0-9a-z-]{2,25}$")
REGISTRY_ID = re.compile(r"^[0-9]{12}$")


@dataclass
class Replication:
    """One image+tag of a backfill's selection, and how its copy went ('' until attempted)."""

    repository: str
    digest: str
    tag: str | None
    status: str = ""
    failure: str = ""

    def result(self) -> dict[str, Any]:
        image_id = {"imageDigest": self.digest, **({"imageTag": self.tag} if self.tag else {})}
        return {
            "repositoryName": self.repository,
            "imageId": image_id,
            "status": self.status,
            **({"failureCode": self.failure} if self.failure else {}),
        }


@dataclass
class Backfill:
    id: str
    source: Where
    destination: Where
    started_at: float
    preparing: float  # the knobs as they were at start
    duration: float
    selection: list[Replication]
    status: str = PREPARING
    failure_code: str = ""
    ended_at: float | None = None
    stop_at: float | None = None  # STOPPING: when the in-flight copy has landed

    def lands_at(self, index: int) -> float:
        """When replication `index` of the selection is copied."""
        count = max(1, len(self.selection))
        return self.started_at + self.preparing + self.duration * (index + 1) / count

    def attempted(self) -> list[Replication]:
        return [r for r in self.selection if r.status]

    def destination_document(self) -> dict[str, str]:
        return {"region": self.destination.region, "registryId": self.destination.account}

    def progress(self) -> dict[str, Any] | None:
        if self.status == PREPARING:
            return None  # "null while PREPARING" [BC]
        done = self.attempted()
        failed = [r for r in done if r.status == FAILED]
        return {
            "totalReplicationCount": len(self.selection),
            "completedReplicationCount": len(done) - len(failed),
            "failedReplicationCount": len(failed),
            "failureCodes": sorted({r.failure for r in failed}),
        }

    def summary(self) -> dict[str, Any]:
        progress = self.progress()
        return {
            "replicationBackfillId": self.id,
            "destination": self.destination_document(),
            "status": self.status,
            **({"failureCode": self.failure_code} if self.failure_code else {}),
            **({"progress": progress} if progress is not None else {}),
            "startedAt": self.started_at,
            **({"endedAt": self.ended_at} if self.ended_at is not None else {}),
        }


@dataclass
class Backfills:
    """Every backfill the emulator started, and the knobs tests turn."""

    preparing: float = 0.2  # seconds in PREPARING (AWS: minutes; short, so rehearsals stay fast)
    duration: float = 0.3  # seconds IN_PROGRESS, over which the copies land
    native: bool = True  # False: the registry does not offer backfill (UNSUPPORTED)
    failures: dict[str, str] = field(default_factory=dict)  # region -> failure code forced on its copies
    records: dict[str, Backfill] = field(default_factory=dict)


def backfills(state: State) -> Backfills:
    """The emulator's backfills and their knobs (made anew by a reset)."""
    found: Backfills = state.part("backfill", Backfills)
    return found


def handlers(state: State, iam: Iam, replicator: Replicator) -> dict[str, Handler]:
    """The ECR actions this part answers."""
    service = _Service(state, replicator)
    return {
        "StartReplicationBackfill": service.start,
        "DescribeReplicationBackfillResults": service.describe,
        "ListReplicationBackfills": service.listing,
        "StopReplicationBackfill": service.stop,
    }


class _Service:
    def __init__(self, state: State, replicator: Replicator) -> None:
        self.state = state
        self.replicator = replicator

    def _offered(self, action: str) -> Backfills:
        held = backfills(self.state)
        if not held.native:
            raise Refused(UNSUPPORTED, f"The registry does not offer the ECR action {action}")
        return held

    # -- the four operations --------------------------------------------------------------------------
    def start(self, where: Where, body: dict[str, Any], caller: Any) -> dict[str, Any]:
        held = self._offered("StartReplicationBackfill")
        destination = body.get("destination") or {}
        region, registry_id = destination.get("region"), destination.get("registryId")
        if region is None or registry_id is None:
            missing = "region" if region is None else "registryId"
            raise Refused(
                "ValidationException",
                f"1 validation error detected: Value null at 'destination.{missing}' failed to satisfy "
                "constraint: Member must not be null",
            )
        if not isinstance(region, str) or not REGION.match(region):
            raise validation_error(
                "destination.region",
                region,
                "Member must satisfy regular expression pattern: [0-9a-z-]{2,25}",
            )
        if not isinstance(registry_id, str) or not REGISTRY_ID.match(registry_id):
            raise validation_error(
                "destination.registryId",
                registry_id,
                "Member must satisfy regular expression pattern: [0-9]{12}",
            )
        target = Where(registry_id, region)
        rules = [
            r for r in (where.backend().replication_config or {}).get("rules") or [] if _sends_to(r, target)
        ]
        if not rules:
            raise Refused(
                "InvalidParameterException",
                f"Invalid parameter at 'destination' failed to satisfy constraint: 'The destination "
                f"{region} ({registry_id}) is not in the registry's replication configuration'",
            )
        mine = self._records(held, where)
        active = [b for b in mine if b.status in ACTIVE]
        running = next((b for b in active if b.destination.region == region), None)
        if running is not None:
            raise Refused(
                "ReplicationBackfillInProgressException",
                f"A replication backfill to region {region} is already in progress in the registry with "
                f"id '{where.account}'",
            )
        if len(active) >= MAX_ACTIVE:
            raise Refused(
                "LimitExceededException",
                f"The registry with id '{where.account}' already has {MAX_ACTIVE} replication backfills in "
                "progress",
            )
        backfill = Backfill(
            id=str(uuid.uuid4()),
            source=where,
            destination=target,
            started_at=self.state.now(),
            preparing=held.preparing,
            duration=held.duration,
            selection=_selection(where, rules),
        )
        held.records[backfill.id] = backfill
        return {
            "replicationBackfillId": backfill.id,
            "registryId": where.account,
            "destination": backfill.destination_document(),
            "status": backfill.status,
            "startedAt": backfill.started_at,
        }

    def describe(self, where: Where, body: dict[str, Any], caller: Any) -> dict[str, Any]:
        held = self._offered("DescribeReplicationBackfillResults")
        backfill = self._one(held, where, body)
        wanted = body.get("resultStatusFilter")
        if wanted is not None and wanted not in (COMPLETE, FAILED):
            raise validation_error(
                "resultStatusFilter", wanted, "Member must satisfy enum value set: [COMPLETE, FAILED]"
            )
        done = backfill.status not in ACTIVE and backfill.status != PREPARING
        # Per-image results only once the backfill is over [BC].
        results = (
            [r.result() for r in backfill.attempted() if not wanted or r.status == wanted] if done else []
        )
        page, token = images.paginate(results, body)
        summary = backfill.summary()
        return {
            "registryId": where.account,
            "replicationBackfillId": backfill.id,
            "destination": summary["destination"],
            "status": backfill.status,
            **{k: summary[k] for k in ("failureCode", "progress", "startedAt", "endedAt") if k in summary},
            "results": page,
            **({"nextToken": token} if token else {}),
        }

    def listing(self, where: Where, body: dict[str, Any], caller: Any) -> dict[str, Any]:
        held = self._offered("ListReplicationBackfills")
        size = body.get("maxResults")
        if size is not None and not (isinstance(size, int) and 1 <= size <= LIST_MAX):
            raise validation_error(
                "maxResults", size, f"Member must have value between 1 and {LIST_MAX}, inclusive"
            )
        newest_first = sorted(self._records(held, where), key=lambda b: b.started_at, reverse=True)
        summaries = [b.summary() for b in newest_first]
        page, token = images.paginate(summaries, {**body, "maxResults": size or LIST_PAGE})
        return {"registryId": where.account, "backfills": page, **({"nextToken": token} if token else {})}

    def stop(self, where: Where, body: dict[str, Any], caller: Any) -> dict[str, Any]:
        held = self._offered("StopReplicationBackfill")
        backfill = self._one(held, where, body)
        now = self.state.now()
        if backfill.status == PREPARING:
            backfill.status, backfill.ended_at = STOPPED, now
        elif backfill.status == IN_PROGRESS:
            # The copy in flight finishes; the rest of the selection is never copied.
            pending = [i for i, r in enumerate(backfill.selection) if not r.status]
            backfill.status, backfill.stop_at = STOPPING, backfill.lands_at(pending[0]) if pending else now
        else:
            raise Refused(
                "ReplicationBackfillInvalidStatusException",
                f"The replication backfill with id '{backfill.id}' is {backfill.status}; only a PREPARING or "
                "IN_PROGRESS backfill can be stopped",
            )
        return {
            "registryId": where.account,
            "replicationBackfillId": backfill.id,
            "destination": backfill.destination_document(),
            "status": backfill.status,
            "startedAt": backfill.started_at,
        }

    # -- time passing ---------------------------------------------------------------------------------
    def _records(self, held: Backfills, where: Where) -> list[Backfill]:
        """`where`'s backfills as they stand now, less those that ended more than 90 days ago."""
        now = self.state.now()
        mine = [b for b in held.records.values() if b.source == where]
        for backfill in mine:
            self._advance(held, backfill, now)
        return [b for b in mine if b.ended_at is None or now - b.ended_at < RETENTION]

    def _one(self, held: Backfills, where: Where, body: dict[str, Any]) -> Backfill:
        wanted = str(body.get("replicationBackfillId", ""))
        found = next((b for b in self._records(held, where) if b.id == wanted), None)
        if found is None:
            raise Refused(
                "ReplicationBackfillNotFoundException",
                f"The replication backfill with id '{wanted}' does not exist in the registry with id "
                f"'{where.account}'",
            )
        return found

    def _advance(self, held: Backfills, backfill: Backfill, now: float) -> None:
        """Bring `backfill` to `now`: its state, and the copies that have landed since last asked."""
        if backfill.status not in ACTIVE or now < backfill.started_at + backfill.preparing:
            return
        if backfill.status == PREPARING:
            backfill.status = IN_PROGRESS
        until = now if backfill.stop_at is None else min(now, backfill.stop_at)
        for index, replication in enumerate(backfill.selection):
            if replication.status:
                continue
            lands = backfill.lands_at(index)
            if lands > until:
                break
            self._copy(held, backfill, replication)
            done = backfill.attempted()
            failed = sum(1 for r in done if r.status == FAILED)
            if len(done) >= AUTO_FAIL_AFTER and 2 * failed >= len(done):
                backfill.status, backfill.failure_code, backfill.ended_at = FAILED, TOO_MANY_FAILURES, lands
                return
        if backfill.status == STOPPING and backfill.stop_at is not None and now >= backfill.stop_at:
            backfill.status, backfill.ended_at = STOPPED, backfill.stop_at
        elif all(r.status for r in backfill.selection):
            ends = backfill.started_at + backfill.preparing + backfill.duration
            if now >= ends:
                backfill.status, backfill.ended_at = COMPLETE, ends

    def _copy(self, held: Backfills, backfill: Backfill, replication: Replication) -> None:
        source, where = backfill.source, backfill.destination
        repository = source.backend().repositories.get(replication.repository)
        image = images.find(repository, replication.digest) if repository is not None else None
        if repository is None:
            failure = SOURCE_REPOSITORY_DELETED  # "skipped and reported FAILED"
        elif image is None:
            failure = SOURCE_IMAGE_DELETED
        elif where.region in held.failures:
            failure = held.failures[where.region]
        else:
            try:
                failure = self.replicator.copy(source, repository, image, replication.tag, where)
            except Refused as refused:  # the destination refuses the image (an index without its parts)
                failure = refused.code
        replication.status, replication.failure = _status(failure)
        if image is not None:  # unverified: DescribeImageReplicationStatus shows the backfill's copy
            self.replicator.record(
                source, replication.repository, replication.digest, where, *_status(failure)
            )


def _status(failure: str) -> tuple[str, str]:
    return (FAILED, failure) if failure else (COMPLETE, "")


def _sends_to(rule: dict[str, Any], where: Where) -> bool:
    return any(
        (str(d.get("region")), str(d.get("registryId"))) == (where.region, where.account)
        for d in rule.get("destinations") or []
    )


def _selection(source: Where, rules: list[dict[str, Any]]) -> list[Replication]:
    """Every image+tag the `rules` (those naming the destination) send there, by PREFIX_MATCH."""
    chosen = []
    for name in sorted(source.backend().repositories):
        if not any(_matches(rule, name) for rule in rules):
            continue
        repository = source.backend().repositories[name]
        for image in repository.images:
            digest = image.get_image_digest()
            for tag in sorted(image.image_tags) or [None]:
                chosen.append(Replication(name, digest, tag))
    return chosen


def _matches(rule: dict[str, Any], name: str) -> bool:
    filters = [
        str(f.get("filter", ""))
        for f in rule.get("repositoryFilters") or []
        if f.get("filterType", "PREFIX_MATCH") == "PREFIX_MATCH"
    ]
    return not rule.get("repositoryFilters") or any(name.startswith(f) for f in filters)
