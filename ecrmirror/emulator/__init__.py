"""The offline ECR emulator: `Emulator` for code, fixtures for pytest, `python -m` for a shell."""

from __future__ import annotations

from ecrmirror.emulator.server import Emulator, EmulatorApp, RecordedRequest

__all__ = ["Emulator", "EmulatorApp", "RecordedRequest"]
