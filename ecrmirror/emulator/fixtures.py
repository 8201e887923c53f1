"""pytest fixtures that give a test an empty offline ECR, for users testing their own specs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ecrmirror.emulator.server import Emulator


@pytest.fixture(scope="session")
def ecr_emulator_server() -> Iterator[Emulator]:
    """One emulator for the whole session, served on a free port of 127.0.0.1."""
    # Imported here: werkzeug and moto cost every pytest process (each xdist worker) ~0.1 s of
    # start-up that a run without the fixture does not need.
    from ecrmirror.emulator.server import Emulator

    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def ecr_emulator(ecr_emulator_server: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """An empty emulator, with boto3 and ecrmirror pointed at it through the environment."""
    ecr_emulator_server.reset()
    for name, value in ecr_emulator_server.environ().items():
        monkeypatch.setenv(name, value)
    return ecr_emulator_server
