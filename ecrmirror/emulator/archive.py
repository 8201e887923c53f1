"""Archive and restore, lifecycle rules run on the emulator's clock, pull times and their exclusions."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ecrmirror.emulator.api import EcrApi, Handler


def handlers(api: EcrApi) -> dict[str, Handler]:
    """The ECR actions this part answers."""
    return {}
