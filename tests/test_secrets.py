"""Canary credentials of every kind never reach stdout, stderr, a log file or the JUnit file."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from chartfactory import package_chart, write_index
from httphosts import Host

from conftest import REGISTRY
from ecrmirror.emulator import Emulator

CANARIES = {
    "aws secret key": "CANARYsecretKEY0123456789abcdefghijklmnop",
    "aws session token": "CANARYsessionTOKEN//////abcdefghijklmnopqrstuv==",
    "upstream password": "CANARY-upstream-pa55",
    "password in a repo URL": "CANARY-url-pa55",
}


@pytest.mark.parametrize("failing", [False, True], ids=["passing run", "failing run"])
def test_no_credential_appears_anywhere_a_run_writes(
    tmp_path: Path,
    emulator: Emulator,
    write_spec,
    run,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    failing: bool,
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CANARIES["aws secret key"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", CANARIES["aws session token"])
    monkeypatch.setenv("UPSTREAM_PASSWORD", CANARIES["upstream password"])
    private = Host(tmp_path / "private", required=_basic("mirror", CANARIES["upstream password"])).start()
    in_url = Host(tmp_path / "in-url", required=_basic("bot", CANARIES["password in a repo URL"])).start()
    for host, name in ((private, "private-app"), (in_url, "url-app")):
        host.directory.mkdir()
        write_index(host.directory, [package_chart(host.directory, name, "1.0.0")])
    missing = ", '9.9.9'" if failing else ""
    url_with_password = in_url.url.replace("://", f"://bot:{CANARIES['password in a repo URL']}@")
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        f"charts:\n  - name: private-app\n    repo: {private.url}\n    versions: ['1.0.0'{missing}]\n"
        "    auth: {username: mirror, password: '${UPSTREAM_PASSWORD}'}\n"
        f"  - name: url-app\n    repo: {url_with_password}\n    versions: ['1.0.0'{missing}]\n"
    )
    try:
        result = run(
            "--sync",
            "-v",
            "-rA",
            "--log-level=DEBUG",
            "--log-file=run.log",
            "--log-file-level=DEBUG",
            "--junitxml=report.xml",
            "mirror.yaml",
        )
    finally:
        private.stop()
        in_url.stop()

    result.assert_outcomes(passed=4, failed=2 if failing else 0)
    registry_tokens = [base64.b64encode(f"AWS:{p}".encode()).decode() for p in emulator.app.state.grants]
    assert registry_tokens, "the run should have fetched a registry token"
    written = {
        "stdout": result.stdout.str(),
        "stderr": result.stderr.str(),
        "log file": (pytester.path / "run.log").read_text(),
        "JUnit file": (pytester.path / "report.xml").read_text(),
    }
    assert "Authorization" in written["log file"], "DEBUG logs with headers should be there, redacted"
    secrets = {**CANARIES, **{f"registry token {n}": t for n, t in enumerate(registry_tokens)}}
    secrets |= {f"registry password {n}": p for n, p in enumerate(emulator.app.state.grants)}
    leaks = [
        f"{what} in {where}"
        for what, secret in secrets.items()
        for where, text in written.items()
        if secret in text
    ]
    assert leaks == []


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
