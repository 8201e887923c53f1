"""ECR's own replication backfill as a sync uses it: one per destination and run, joined if one runs.

StartReplicationBackfill copies, inside AWS, every image the registry's current replication rules
send to one destination (region + registry): no bytes through the runner, no push rights in the
destination. ECR runs one backfill per destination region at a time (ten per registry), so a run
first looks for one already running there (ListReplicationBackfills) and joins it; only then does
it start its own. Per-image results exist only once the backfill is over, so the run polls
DescribeReplicationBackfillResults until then, within a step's deadline (RetryPolicy.deadline);
a backfill still running after that is left to ECR and named, and the next run joins it.

Under pytest-xdist the first worker to ask starts (or joins) and waits; the others read its answer
(share.once_per_run). A registry that refuses the calls (no IAM permission, or a region or
partition without the operation) is said so, for the caller to fall back to copying.

The backfill operations' IAM action names are UNCONFIRMED (../shared/docs/ecr-now.md, section 2):
policy.py assumes `ecr:<Operation>`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ecrmirror.ecr import Ecr
from ecrmirror.errors import AwsError
from ecrmirror.run import Run
from ecrmirror.share import once_per_run
from ecrmirror.spec import Destination, Target

ACTIVE = ("PREPARING", "IN_PROGRESS", "STOPPING")
# What a registry answers when it will not run a backfill for us: the caller copies instead.
REFUSALS = (
    "AccessDeniedException",
    "AccessDenied",
    "UnknownOperationException",  # a registry (region, partition, emulator) without the operation
    "LimitExceededException",  # ten backfills already run in the registry
    "InvalidParameterException",  # the destination is not (yet) in the replication configuration
    "ReplicationBackfillInProgressException",  # another registry's backfill holds the region
)
FIRST_PAUSE = 0.25  # seconds between polls, doubled up to MAX_PAUSE
MAX_PAUSE = 10.0


@dataclass(frozen=True)
class NativeBackfill:
    """What ECR's backfill to one destination came to, as far as this run waited for it."""

    id: str = ""  # "" when ECR ran none for us (see `refused`)
    status: str = ""  # ECR's: COMPLETE, FAILED, STOPPED, or still PREPARING/IN_PROGRESS/STOPPING
    joined: bool = False  # it was already running when the run looked
    refused: str = ""  # why ECR ran none: its error, as ecrmirror words it
    failure_code: str = ""  # the backfill's own, when FAILED
    # "repository:tag" -> (digest, COMPLETE or FAILED, ECR's failure code)
    results: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.status in ACTIVE

    def named(self) -> str:
        joined = ", already running when this run looked" if self.joined else ""
        return f"ECR's replication backfill {self.id}{joined}"

    def result(self, repository: str, tag: str, digest: str) -> tuple[str, str] | None:
        """(status, failure code) of `repository:tag` at `digest`; None if the backfill left it out."""
        found = self.results.get(f"{repository}:{tag}")
        if found is None or found[0] != digest:
            return None
        return found[1], found[2]


def for_destination(run: Run, target: Target, destination: Destination) -> NativeBackfill:
    """The run's backfill to `destination` (started, or joined), waited for within a step's deadline.

    Asked by every version that lacks a copy there, it runs once a run: once a process (threads
    wait for the first), and once a run (xdist workers read the first worker's answer).
    """
    key = f"native backfill {target.registry.host} {destination.region} {destination.registry_id}"

    def shared() -> NativeBackfill:
        answer = once_per_run(
            run.options.shared,
            key,
            lambda: _document(_backfill(run.ecr(target.registry), destination, run.options.retry.deadline)),
        )
        return _read(answer)

    found: NativeBackfill = run.remember(("native backfill", key), shared)
    return found


def _backfill(ecr: Ecr, destination: Destination, bound: float) -> NativeBackfill:
    wanted = {"region": destination.region, "registryId": destination.registry_id}
    try:
        running = _running(ecr, wanted)
    except AwsError as exc:  # without the listing no backfill can be joined: ask for none
        if exc.code not in REFUSALS:
            raise
        return NativeBackfill(refused=str(exc))
    joined = running is not None
    if running is None:
        try:
            running = ecr.call("start_replication_backfill", destination=wanted)["replicationBackfillId"]
        except AwsError as exc:
            code = exc.code
            if code == "ReplicationBackfillInProgressException":  # another run started one meanwhile
                joined, running = True, _running(ecr, wanted)
            if running is None:
                if code not in REFUSALS:
                    raise
                return NativeBackfill(refused=str(exc))
    return _waited(ecr, str(running), joined, bound)


def _running(ecr: Ecr, destination: dict[str, str]) -> str | None:
    """The id of the backfill that runs to `destination` now, if one does."""
    for page in ecr.pages("list_replication_backfills", maxResults=50) or []:
        for summary in page.get("backfills") or []:
            if summary.get("destination") == destination and summary.get("status") in ACTIVE:
                return str(summary["replicationBackfillId"])
    return None


def _waited(ecr: Ecr, backfill_id: str, joined: bool, bound: float) -> NativeBackfill:
    """Poll until the backfill is over (then read every result), or until `bound` seconds passed."""
    deadline = time.monotonic() + bound
    pause = FIRST_PAUSE
    while True:
        answer = ecr.call(
            "describe_replication_backfill_results", replicationBackfillId=backfill_id, maxResults=1000
        )
        status = str(answer.get("status", ""))
        if status not in ACTIVE:
            break
        if time.monotonic() + pause > deadline:
            return NativeBackfill(id=backfill_id, status=status, joined=joined)
        time.sleep(pause)
        pause = min(2 * pause, MAX_PAUSE)
    pages = ecr.pages(
        "describe_replication_backfill_results",
        first=answer,
        replicationBackfillId=backfill_id,
        maxResults=1000,
    )
    results = {
        f"{result['repositoryName']}:{image['imageTag']}": (
            str(image.get("imageDigest", "")),
            str(result.get("status", "")),
            str(result.get("failureCode") or ""),
        )
        for page in pages or []
        for result in page.get("results") or []
        if (image := result.get("imageId") or {}).get("imageTag")
    }
    return NativeBackfill(
        id=backfill_id,
        status=status,
        joined=joined,
        failure_code=str(answer.get("failureCode") or ""),
        results=results,
    )


def _document(backfill: NativeBackfill) -> dict[str, Any]:
    """As JSON, for the run's other processes."""
    return {
        "id": backfill.id,
        "status": backfill.status,
        "joined": backfill.joined,
        "refused": backfill.refused,
        "failure_code": backfill.failure_code,
        "results": {key: list(value) for key, value in backfill.results.items()},
    }


def _read(document: dict[str, Any]) -> NativeBackfill:
    return NativeBackfill(
        id=document["id"],
        status=document["status"],
        joined=document["joined"],
        refused=document["refused"],
        failure_code=document["failure_code"],
        results={key: (value[0], value[1], value[2]) for key, value in document["results"].items()},
    )
