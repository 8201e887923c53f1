"""Find the external tools some tests compare against; skip without them, but never in CI."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

import boto3
import pytest

from ecrmirror.emulator import Emulator

TOOLS_DIR = Path(__file__).resolve().parent.parent / ".tools" / "bin"


def require_tool(name: str, how: str) -> str:
    """The path of `name`; skips the test when it is missing, fails instead when CI=true."""
    found = shutil.which(name, path=f"{TOOLS_DIR}{os.pathsep}{os.environ.get('PATH', '')}")
    if found:
        return found
    message = f"{name} is not installed ({how})"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message}: .ci/run must install it", pytrace=False)
    pytest.skip(message)


def tool(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), input=input, capture_output=True, text=True, timeout=60, check=False)


def registry_password(emulator: Emulator) -> str:
    client = boto3.client("ecr", region_name="eu-west-1", endpoint_url=emulator.url)
    token = client.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    return base64.b64decode(token).decode().partition(":")[2]


def helm_push(helm: list[str], archive: Path, emulator: Emulator) -> subprocess.CompletedProcess[str]:
    """`helm push ARCHIVE oci://<emulator>/helm`, logged in as ECR's AWS user."""
    host = emulator.url.removeprefix("http://")
    return tool(
        *helm,
        "push",
        str(archive),
        f"oci://{host}/helm",
        "--plain-http",
        "--username",
        "AWS",
        "--password",
        registry_password(emulator),
    )


def says_in_order(output: str, message: str) -> None:
    """`output` holds `message`, where … stands for anything."""
    position = 0
    for part in message.split("…"):
        found = output.find(part, position)
        assert found >= 0, f"{part!r} not found after position {position} in:\n{output}"
        position = found + len(part)
