"""What checking or syncing one item came to: an outcome word, a plain message, and what it moved."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ecrmirror.sources import ChartRelease


class Outcome(str, enum.Enum):
    PUSHED = "PUSHED"  # was missing, now mirrored
    PRESENT = "PRESENT"  # already in ECR as declared (content, settings or replication rule)
    CREATED = "CREATED"  # a repository or replication rule that was missing, now made
    UPDATED = "UPDATED"  # repository settings changed to the spec's (enforce_settings)
    BACKFILLED = "BACKFILLED"  # in ECR, and now copied into destination regions that lacked it
    MISSING = "MISSING"  # not in ECR (audit)
    DIFFERS = "DIFFERS"  # in ECR, but not as declared; chart content is never overwritten
    UNREPLICATED = "UNREPLICATED"  # in ECR, but replication to a destination failed or never ran
    INCOMPLETE = "INCOMPLETE"  # in ECR, but without the signatures or SBOMs upstream attaches to it
    BEHIND = "BEHIND"  # a GitOps range's newest match is not in ECR yet, an older match is: a note
    DRIFTED = "DRIFTED"  # an image whose upstream tag moved on since ECR's copy: reported, not followed
    UNSIGNED = "UNSIGNED"  # in ECR, but without the mirror's own signature or attestation (`sign:`)
    ARCHIVED = "ARCHIVED"  # in ECR's archive storage class: present, but a pull gets 404 (audit)
    RESTORING = "RESTORING"  # being restored from the archive (ACTIVATING): pullable once ACTIVE
    KEPT_ARCHIVED = "KEPT_ARCHIVED"  # archived, and the spec accepts it (`archived: accept`)

    @property
    def ok(self) -> bool:
        return self in (
            Outcome.PUSHED,
            Outcome.PRESENT,
            Outcome.CREATED,
            Outcome.UPDATED,
            Outcome.BACKFILLED,
            Outcome.BEHIND,
            Outcome.RESTORING,
            Outcome.KEPT_ARCHIVED,
        )


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    message: str
    release: ChartRelease | None = None  # None for repository and replication results
    bytes_uploaded: int = 0
    notes: tuple[str, ...] = ()  # worth saying even when the outcome is fine
    details: tuple[tuple[str, str], ...] = ()  # what a report records beyond these (an image's digests)
