"""What the emulator's parts share: moto's backends, the blobs each repository holds, upload sessions,
registry tokens, one lock that serializes requests, a clock that tests can move forward, and the
hooks that run after a push (managed signing, say)."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecrmirror.emulator.iam import Caller

TOKEN_TTL = 12 * 3600  # ECR's registry tokens last 12 hours
# A restore (ARCHIVED -> ACTIVATING -> ACTIVE) takes up to 20 minutes (userguide/archive_restore_image.html)
RESTORE_DELAY = 600.0
RepositoryKey = tuple[str, str, str]  # (account, region, repository name)
# After an image is stored by PutImage or a manifest PUT: (where, repository, image, tag, caller).
PushHook = Callable[[Any, Any, Any, "str | None", Caller], None]


@dataclass(frozen=True)
class Grant:
    """A registry token that GetAuthorizationToken handed out."""

    caller: Caller  # whose IAM policies the registry checks
    account: str  # the registry it was asked for (GetAuthorizationToken's registryIds, else the caller's)
    region: str
    expires_at: float


class State:
    """The emulator's state besides moto's, over moto's ECR and IAM backends (global in moto)."""

    def __init__(self, token_ttl: float = TOKEN_TTL) -> None:
        self.token_ttl = token_ttl
        self.lock = threading.RLock()
        self.storage = Path(tempfile.mkdtemp(prefix="ecrmirror-emulator-"))
        self.grants: dict[str, Grant] = {}  # registry password -> grant
        self.repo_blobs: dict[RepositoryKey, set[str]] = {}
        self.uploads: dict[str, tuple[RepositoryKey, Path]] = {}  # upload session -> its part file
        # (account, region) -> prefix -> repository creation template, as DescribeRepositoryCreationTemplates
        self.templates: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        # (account, region) -> account setting name -> value (PutAccountSetting)
        self.account_settings: dict[tuple[str, str], dict[str, str]] = {}
        # Seconds the emulator's clock is ahead of the machine's (advance()): what lifecycle rules,
        # restores and backfills measure time by, so a test can let 90 days pass.
        self.clock_offset = 0.0
        # The state of the parts that keep their own (backfills, signing, ...), by part: reset empties it.
        self.parts: dict[str, Any] = {}
        self.push_hooks: list[PushHook] = []  # wiring, not state: reset keeps them
        self.advance_hooks: list[Callable[[], None]] = []  # run after the clock moves (lifecycle rules)
        # Seconds an image stays ACTIVATING after a restore is asked for: a knob, kept by reset.
        self.restore_delay = RESTORE_DELAY

    def now(self) -> float:
        """The emulator's time, in seconds since the epoch."""
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock forward (never back: ECR's timestamps only grow)."""
        self.clock_offset += max(0.0, seconds)
        for hook in self.advance_hooks:
            hook()

    def part(self, name: str, new: Callable[[], Any]) -> Any:
        """The state part `name` keeps, made by `new` on first use and after a reset."""
        if name not in self.parts:
            self.parts[name] = new()
        return self.parts[name]

    def pushed(self, where: Any, repository: Any, image: Any, tag: str | None, caller: Caller) -> None:
        for hook in self.push_hooks:
            hook(where, repository, image, tag, caller)

    def reset(self) -> None:
        from moto.backends import get_backend

        with self.lock:
            for service in ("ecr", "iam", "sts", "kms"):
                get_backend(service).reset()
            self.grants.clear()
            self.repo_blobs.clear()
            self.uploads.clear()
            self.templates.clear()
            self.account_settings.clear()
            self.parts.clear()
            self.clock_offset = 0.0
            self.restore_delay = RESTORE_DELAY
            shutil.rmtree(self.storage, ignore_errors=True)
            self.storage.mkdir(parents=True)

    def close(self) -> None:
        shutil.rmtree(self.storage, ignore_errors=True)

    def backend(self, account: str, region: str) -> Any:
        """moto's ECR backend of one registry (an account in a region)."""
        from moto.ecr.models import ecr_backends

        return ecr_backends[account][region]

    def blob_path(self, digest: str) -> Path:
        return self.storage / "blobs" / digest.replace(":", "-")
