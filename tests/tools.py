"""Find the external tools some tests compare against; skip without them, but never in CI."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

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
