"""pytest fixtures that give a test an empty offline ECR, for users testing their own specs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ecrmirror.emulator.server import Emulator

MARKER = "ecr_emulator"
MARKER_HELP = (
    "ecr_emulator(throttle=False, kms_keys=(), restore_delay=600): how the ecr_emulator fixture behaves "
    "for this test: throttle=True answers ECR's default rate quotas with ThrottlingException / HTTP 429; "
    "kms_keys are KMS key ARNs of your account that the emulator takes as existing; restore_delay is "
    "how many seconds (on the emulator's clock) a restored image stays ACTIVATING"
)
_OPTIONS = ("throttle", "kms_keys", "restore_delay")


@pytest.fixture(scope="session")
def ecr_emulator_server() -> Iterator[Emulator]:
    """One emulator for the whole session, served on a free port of 127.0.0.1."""
    # Imported here: werkzeug and moto cost every pytest process (each xdist worker) ~0.1 s of
    # start-up that a run without the fixture does not need.
    from ecrmirror.emulator.server import Emulator

    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def ecr_emulator(
    ecr_emulator_server: Emulator, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Emulator:
    """An empty emulator, with boto3 and ecrmirror pointed at it through the environment.

    `@pytest.mark.ecr_emulator(throttle=True, kms_keys=[...], restore_delay=0)` on a test (or a
    module's `pytestmark`) switches on throttling, declares KMS keys, or sets how long a restore
    from the archive takes, for that test.
    """
    from ecrmirror.emulator.state import RESTORE_DELAY

    marker = request.node.get_closest_marker(MARKER)
    options = dict(marker.kwargs) if marker else {}
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown or (marker and marker.args):
        pytest.fail(
            f"@pytest.mark.{MARKER} takes the keywords {', '.join(_OPTIONS)}; got "
            f"{', '.join(unknown) or repr(marker.args if marker else ())}",
            pytrace=False,
        )
    ecr_emulator_server.reset()
    ecr_emulator_server.app.throttle.enabled = bool(options.get("throttle", False))
    ecr_emulator_server.app.state.restore_delay = float(options.get("restore_delay", RESTORE_DELAY))
    for key in options.get("kms_keys") or ():
        ecr_emulator_server.app.kms.assume(str(key))
    for name, value in ecr_emulator_server.environ().items():
        monkeypatch.setenv(name, value)
    return ecr_emulator_server
