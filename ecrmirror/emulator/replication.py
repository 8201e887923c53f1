"""Replication as the emulator performs it: a pushed image copied to every destination whose rule
matches, and a record per destination for DescribeImageReplicationStatus."""

from __future__ import annotations

import contextlib
from typing import Any

from ecrmirror.emulator.state import State


class Replicator:
    """Copies pushed images to the destination registries of the source registry's rules."""

    def __init__(self, state: State) -> None:
        self.state = state
        # region -> "FAILED" or "IN_PROGRESS": what replication to that region does from now on
        self.outcomes: dict[str, str] = {}
        # (account, region, repository, digest) -> {(region, account): status}
        self._statuses: dict[tuple[str, str, str, str], dict[tuple[str, str], str]] = {}

    def reset(self) -> None:
        self.outcomes.clear()
        self._statuses.clear()

    def statuses(self, account: str, region: str, name: str, digest: str) -> dict[tuple[str, str], str]:
        """{(region, account): status} of one image's replication, empty when none ran."""
        return self._statuses.get((account, region, name, digest), {})

    def replicate(
        self,
        account: str,
        region: str,
        repository: Any,
        tag: str | None,
        text: str,
        media_type: str,
        digest: str,
    ) -> None:
        """Copy a pushed image to every destination whose rule matches, as ECR does after a push."""
        name = repository.name
        configuration = self.state.backend(account, region).replication_config or {}
        done: dict[tuple[str, str], str] = {}
        for rule in configuration.get("rules") or []:
            filters = [
                f.get("filter", "")
                for f in rule.get("repositoryFilters") or []
                if f.get("filterType", "PREFIX_MATCH") == "PREFIX_MATCH"
            ]
            if rule.get("repositoryFilters") and not any(name.startswith(f) for f in filters):
                continue
            for destination in rule.get("destinations") or []:
                where = (destination["region"], destination["registryId"])
                if where in done:
                    continue
                status = self.outcomes.get(where[0], "COMPLETE")
                if status == "COMPLETE":
                    self._copy_image(account, region, repository, where, tag, text, media_type, digest)
                done[where] = status
        if done:
            self._statuses[(account, region, name, digest)] = done

    def _copy_image(
        self,
        account: str,
        region: str,
        source: Any,
        where: tuple[str, str],
        tag: str | None,
        text: str,
        media_type: str,
        digest: str,
    ) -> None:
        from moto.ecr.exceptions import ImageAlreadyExistsException

        backend = self.state.backend(where[1], where[0])
        replica = backend.repositories.get(source.name)
        if replica is None:  # ECR creates the destination repository with the source's settings
            replica = backend.create_repository(
                repository_name=source.name,
                registry_id=None,
                encryption_config=dict(source.encryption_configuration),
                image_scan_config=source.image_scanning_configuration,
                image_tag_mutability=source.image_tag_mutability,
                image_tag_mutability_exclusion_filters=source.image_tag_mutability_exclusion_filters,
                tags=[],
            )
        blobs = self.state.repo_blobs.get((account, region, source.name), set())
        self.state.repo_blobs.setdefault((where[1], where[0], source.name), set()).update(blobs)
        with contextlib.suppress(ImageAlreadyExistsException):  # ECR leaves a held tag as it is
            backend.put_image(source.name, text, tag, media_type, digest)

    # -- registry ------------------------------------------------------------------------------
