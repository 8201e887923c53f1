"""The offline ECR emulator: `Emulator` for code, fixtures for pytest, `python -m` for a shell.

server.py routes each request to api.py (the ECR actions we answer; moto answers the rest),
registry.py (the OCI registry moto lacks) or moto's IAM; iam.py authorizes, replication.py copies
pushed images to destination regions, state.py holds what they share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ecrmirror.emulator.server import Emulator, EmulatorApp, RecordedRequest

__all__ = ["Emulator", "EmulatorApp", "RecordedRequest"]


def __getattr__(name: str) -> Any:
    # The server (werkzeug, moto) is imported on first use: the pytest plugin imports this
    # package for its fixtures in every process, and most never start an emulator.
    if name in __all__:
        from ecrmirror.emulator import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
