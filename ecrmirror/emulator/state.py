"""What the emulator's parts share: moto's backends, the blobs each repository holds, upload sessions,
registry tokens, and one lock that serializes requests."""

from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecrmirror.emulator.iam import Caller

TOKEN_TTL = 12 * 3600  # ECR's registry tokens last 12 hours
RepositoryKey = tuple[str, str, str]  # (account, region, repository name)


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
