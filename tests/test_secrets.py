"""Canary credentials of every kind never reach stdout, stderr, a log file or the JUnit file."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from chartfactory import package_chart, write_index
from httphosts import Host

from conftest import REGISTRY
from ecrmirror.emulator import Emulator
from ecrmirror.redact import redact
from ecrmirror.spec import load_spec

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


# -- every spelling of a credential in a repo URL ------------------------------------------------------
TOKEN = "CANARYtokenSPELLING0123456789"
URL_SPELLINGS = {
    # the repo URL as a user writes it, and the Authorization the server wants (None: any)
    "empty user, token as password": ("http://:{token}@{host}/", _basic("", TOKEN)),
    "a user alone (the token)": ("http://{token}@{host}/", _basic(TOKEN, "")),
    "a token in the query string": ("http://{host}/?token={token}", None),
    "a token as another query parameter": ("http://{host}/?ref=main&x={token}", None),
}
# A library failing inside a request (not one of ours): pytest shows the traceback, with every
# frame's locals under -l, and the request's URL and headers are among them.
LIBRARY_FAULT = """
from requests.adapters import HTTPAdapter

send = HTTPAdapter.send

def failing(self, request, *args, **kwargs):
    if "/crash" in request.url:
        raise RuntimeError("a bug in a library")
    return send(self, request, *args, **kwargs)

def pytest_configure(config):
    HTTPAdapter.send = failing

def pytest_unconfigure(config):
    HTTPAdapter.send = send
"""


@pytest.mark.parametrize("spelling", URL_SPELLINGS)
def test_a_credential_in_any_url_spelling_never_appears_in_what_a_run_writes(
    spelling: str, tmp_path: Path, emulator: Emulator, write_spec, run, pytester: pytest.Pytester
) -> None:
    # given a repository needing the token, a chart version it lacks, and one whose download crashes
    template, required = URL_SPELLINGS[spelling]
    host = Host(tmp_path / "upstream", required=required).start()
    host.directory.mkdir()
    crash = host.directory / "crash"
    crash.mkdir()
    write_index(
        host.directory,
        [package_chart(host.directory, "app", "1.0.0"), package_chart(host.directory, "ranged", "1.0.0")],
    )
    write_index(crash, [package_chart(crash, "other", "1.0.0")])
    netloc = host.url.split("://")[1].rstrip("/")
    repo = template.format(token=TOKEN, host=netloc)
    crash_repo = template.replace("{host}/", "{host}/crash/").format(token=TOKEN, host=netloc)
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        f"charts:\n  - name: app\n    repo: '{repo}'\n    versions: ['1.0.0', '9.9.9']\n"
        f"  - name: other\n    repo: '{crash_repo}'\n    versions: ['1.0.0']\n"
        "  - name: ranged\n"
        f"    repo: '{repo}'\n    versions: '>=1'\n"
    )
    write_spec(
        f"target:\n  registry: {REGISTRY}\n"
        f"charts:\n  - name: ranged\n    repo: '{repo}'\n    versions: '>=5'\n",
        name="unmatched",
    )
    pytester.makeconftest(LIBRARY_FAULT)

    try:
        collected = run("--sync", "--collect-only", "mirror.yaml", "unmatched.yaml")
        result = run(
            "--sync",
            "-v",
            "-rA",
            "-l",
            "--tb=long",
            "--log-level=DEBUG",
            "--log-file=run.log",
            "--log-file-level=DEBUG",
            "--junitxml=report.xml",
            "--ecrmirror-plan=plan.md",
            "--ecrmirror-cache-dir=cache",
            "mirror.yaml",
        )
    finally:
        host.stop()

    # then the version is mirrored with the token, the others fail, and the token is nowhere
    if required is not None:
        assert required in host.authorizations()
    assert "a bug in a library" in result.stdout.str()
    assert "repo = " in result.stdout.str() or "url = " in result.stdout.str(), "-l shows locals"
    written = {
        "stdout": result.stdout.str(),
        "stderr": result.stderr.str(),
        "--collect-only": collected.stdout.str() + collected.stderr.str(),
        "log file": (pytester.path / "run.log").read_text(),
        "JUnit file": (pytester.path / "report.xml").read_text(),
        "plan": (pytester.path / "plan.md").read_text(),
        "cache": "".join(p.read_text() for p in (pytester.path / "cache").rglob("*") if p.is_file()),
    }
    forms = {TOKEN, base64.b64encode(f":{TOKEN}".encode()).decode(), base64.b64encode(f"{TOKEN}:".encode())}
    leaks = [where for where, text in written.items() for form in forms if str(form) in text]
    assert leaks == []
    assert "9.9.9 is not in" in written["stdout"]


def test_a_password_that_breaks_url_parsing_is_a_spec_error_that_does_not_show_it(
    emulator: Emulator, write_spec, run
) -> None:
    secret = "CANARY/broken#pass?word"
    write_spec(
        f"target:\n  registry: {REGISTRY}\n"
        f"charts:\n  - name: app\n    repo: 'https://bot:{secret}@charts.example/'\n    versions: ['1.0.0']\n"
    )

    result = run("--sync", "-l", "--tb=long", "mirror.yaml")

    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        ["*mirror.yaml:5: repo has an @ after its host: a password with / ? # or @ in it breaks the URL*"]
    )
    assert "CANARY" not in result.stdout.str() + result.stderr.str()
    assert emulator.requests == []


def test_a_query_value_that_is_no_credential_is_not_hidden(tmp_path: Path) -> None:
    # given a repo URL whose query holds a ref and a token
    spec = tmp_path / "mirror.yaml"
    spec.write_text(
        f"target:\n  registry: {REGISTRY}\ncharts:\n  - name: app\n"
        "    repo: 'https://charts.example/?ref=stable-main&access_token=tok3n-CANARY'\n"
        "    versions: ['1.0.0']\n"
    )

    load_spec(spec)

    # then the token is hidden wherever it is written, and the ref, an everyday word, is not
    assert redact("ref=stable-main token tok3n-CANARY") == "ref=stable-main token ***"


# One text per kind of credential redact.py knows without being told (its _QUOTED and _PATTERNS),
# as botocore, urllib3 or an upstream's error would write it; the secret is what must go.
SIGNATURE = "ca11ab1e" * 8
UNTOLD_CREDENTIALS = [
    ("{'Authorization': 'AWS4-HMAC-SHA256 Credential=AKIA/CANARY'}", "CANARY"),
    ('b\'{"authorizationToken": "QVdTOkNBTkFSWQ==CANARY"}\'', "CANARY"),
    ("X-Amz-Security-Token=IQoJb3JpZ2luCANARY&X-Amz-Date=20261207", "CANARY"),
    ("<Credentials><SecretAccessKey>wJalrCANARY</SecretAccessKey>", "CANARY"),
    ("Authorization: Basic dXNlcjpDQU5BUlk=CANARY", "CANARY"),
    ("www-authenticate: Bearer eyJhbGciOiJSUzI1NiJ9.CANARY", "CANARY"),
    (f"Credential=AKIA/20261207/us-east-1/ecr/aws4_request, Signature={SIGNATURE}", SIGNATURE),
    ("GET https://robot:CANARY@charts.example/index.yaml", "CANARY"),
    ("GET https://charts.example/index.yaml?sig=CANARY&se=2026", "CANARY"),
]


@pytest.mark.parametrize(("text", "secret"), UNTOLD_CREDENTIALS)
def test_every_kind_of_credential_is_hidden_without_being_told(text: str, secret: str) -> None:
    assert secret not in redact(text)


def test_text_without_a_credential_comes_back_as_it_was() -> None:
    text = "oci/app:4.0.1 PRESENT sha256:" + "a" * 64 + " 1,130,255 bytes; Basic auth, a bearer token"
    assert redact(text) == text
