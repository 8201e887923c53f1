"""Replication as ECR performs it (userguide/replication.html): after a push, asynchronously, to every
destination of the rules whose filters match, once per push.

- A replica repository that does not exist is created with ECR's defaults, or with the settings of
  the destination's repository creation template for REPLICATION.
- Another account's registry takes the copy only when its registry permissions policy allows the
  source account ecr:ReplicateImage (and ecr:CreateRepository, for a repository it lacks);
  otherwise the replication FAILS.
- An immutable replica whose tag holds other content gets the image untagged.
`delay` makes the copy arrive later (IN_PROGRESS until then); `outcomes` forces a region's result.
"""

from __future__ import annotations

import threading
from typing import Any

import ecrmirror.emulator.images as images
import ecrmirror.emulator.policies as policies
from ecrmirror.emulator.repositories import Where, create_from_template
from ecrmirror.emulator.state import State


class Replicator:
    """Copies pushed images to the destination registries of the source registry's rules."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.delay = 0.0  # seconds before a copy arrives; 0 copies before the push is answered
        # region -> "FAILED" or "IN_PROGRESS": what replication to that region does from now on
        self.outcomes: dict[str, str] = {}
        # (account, region, repository, digest) -> {(region, account): (status, failure code)}
        self._statuses: dict[tuple[str, str, str, str], dict[tuple[str, str], tuple[str, str]]] = {}
        self._pending: list[threading.Timer] = []

    def reset(self) -> None:
        for timer in self._pending:
            timer.cancel()
        self._pending.clear()
        self.delay = 0.0
        self.outcomes.clear()
        self._statuses.clear()

    def statuses(
        self, account: str, region: str, name: str, digest: str
    ) -> dict[tuple[str, str], tuple[str, str]]:
        """{(region, account): (status, failure code)} of one image's replication."""
        return dict(self._statuses.get((account, region, name, digest), {}))

    def replicate(self, source: Where, repository: Any, image: Any, tag: str | None) -> None:
        """Start copying `image` (pushed as `tag`) to every destination whose rule matches."""
        configuration = source.backend().replication_config or {}
        record = self._statuses.setdefault(
            (source.account, source.region, repository.name, image.get_image_digest()), {}
        )
        for rule in configuration.get("rules") or []:
            filters = [
                f.get("filter", "")
                for f in rule.get("repositoryFilters") or []
                if f.get("filterType", "PREFIX_MATCH") == "PREFIX_MATCH"
            ]
            if rule.get("repositoryFilters") and not any(repository.name.startswith(f) for f in filters):
                continue
            for destination in rule.get("destinations") or []:
                where = Where(str(destination["registryId"]), str(destination["region"]))
                if (where.region, where.account) in record:
                    continue  # one copy per push, however many rules name the destination
                forced = self.outcomes.get(where.region)
                if forced is not None:
                    record[(where.region, where.account)] = (
                        forced,
                        "EMULATED_FAILURE" if forced == "FAILED" else "",
                    )
                    continue
                record[(where.region, where.account)] = ("IN_PROGRESS", "")
                copy = (source, repository, image, tag, where, record)
                if self.delay <= 0:
                    self._copy(*copy)
                else:
                    timer = threading.Timer(self.delay, self._copy, copy)
                    timer.daemon = True
                    self._pending.append(timer)
                    timer.start()

    def _copy(
        self,
        source: Where,
        repository: Any,
        image: Any,
        tag: str | None,
        where: Where,
        record: dict[tuple[str, str], tuple[str, str]],
    ) -> None:
        failure = self.copy(source, repository, image, tag, where)
        record[(where.region, where.account)] = ("FAILED", failure) if failure else ("COMPLETE", "")

    def copy(self, source: Where, repository: Any, image: Any, tag: str | None, where: Where) -> str:
        """Copy one image into `where` as replication does: '' when stored, else ECR's failure code.
        Inside AWS: no registry request is made (or recorded) for it."""
        with self.state.lock:
            replica = where.backend().repositories.get(repository.name)
            if where.account != source.account:
                denied = self._refusal(source, where, repository.name, replica is None)
                if denied:
                    return denied
            if replica is None:
                replica = create_from_template(self.state, where, repository.name, "REPLICATION")
            # The image's own blobs travel with it, not everything the source repository holds.
            held = self.state.repo_blobs.get((source.account, source.region, repository.name), set())
            self.state.repo_blobs.setdefault((where.account, where.region, repository.name), set()).update(
                held & images.blobs_of(image)
            )
            body = image.image_manifest.encode("utf-8")
            images.put(where.account, replica, body, image.image_manifest_media_type, tag, untag_held=True)
            return ""

    def record(self, source: Where, name: str, digest: str, where: Where, status: str, code: str) -> None:
        """What DescribeImageReplicationStatus says of one image's copy into `where` from now on."""
        statuses = self._statuses.setdefault((source.account, source.region, name, digest), {})
        statuses[(where.region, where.account)] = (status, code)

    def _refusal(self, source: Where, where: Where, name: str, create: bool) -> str:
        """Why another account's registry refuses the copy ('' when its registry policy allows it)."""
        policy = where.backend().registry_policy
        arn = f"arn:aws:ecr:{where.region}:{where.account}:repository/{name}"
        actions = ["ecr:ReplicateImage", *(["ecr:CreateRepository"] if create else [])]
        for action in actions:
            if not policies.allows(policy, source.account, [], action, arn):
                return "REPLICATION_PERMISSION_DENIED"
        return ""
