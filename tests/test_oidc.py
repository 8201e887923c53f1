"""GitLab's OIDC path: a job's id_token exchanged with STS for the role's credentials, no stored keys.

The emulator serves STS and checks the token as AWS does (provider, audience, expiry, the role's
trust policy); the role's trust policy is the README's, and its permissions the printed sync policy.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from conftest import REGISTRY, ChartServer
from ecrmirror.emulator import Emulator
from ecrmirror.emulator.iam import ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY

ROOT = Path(__file__).resolve().parent.parent
ROLE = "arn:aws:iam::123456789012:role/chart-mirror-sync"
ISSUER = "https://gitlab.example.com"
MAIN = "project_path:platform/chart-mirror:ref_type:branch:ref:main"


def readme_trust_policy() -> dict[str, Any]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("<!-- trust policy: sync role -->") :]
    start = section.index("```json\n") + len("```json\n")
    return json.loads(section[start : section.index("\n```", start)])  # type: ignore[no-any-return]


def id_token(sub: str, *, expires_in: int = 300, aud: str = "sts.amazonaws.com") -> str:
    """A token shaped like GitLab's id_tokens (the emulator reads it; it cannot check signatures)."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    claims = {"iss": ISSUER, "aud": aud, "sub": sub, "exp": int(time.time()) + expires_in, "ref": "main"}
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def admin(service: str, emulator: Emulator) -> Any:
    return boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=emulator.url,
        aws_access_key_id=ADMIN_ACCESS_KEY,
        aws_secret_access_key=ADMIN_SECRET_KEY,
    )


@pytest.fixture
def job(
    chart_server: ChartServer,
    emulator: Emulator,
    write_spec,
    run,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    """A GitLab job's environment: AWS_ROLE_ARN and a token file, STS at the emulator, no keys.
    The role trusts as the README says and may do what --ecrmirror-policy=sync prints."""
    chart_server.add("gitlab", "7.1.1")
    chart_server.publish()
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  prefix: helm\n  create_repositories: true\n"
        f"charts:\n  - name: gitlab\n    repo: {chart_server.url}\n    versions: ['7.1.1']\n"
    )
    printed = run("--ecrmirror-policy=sync", "-q", "mirror.yaml").stdout.str()
    policy, _ = json.JSONDecoder().raw_decode(printed, printed.index("{\n"))
    iam = admin("iam", emulator)
    iam.create_open_id_connect_provider(
        Url=ISSUER, ClientIDList=["sts.amazonaws.com"], ThumbprintList=["0" * 40]
    )
    iam.create_role(RoleName="chart-mirror-sync", AssumeRolePolicyDocument=json.dumps(readme_trust_policy()))
    iam.put_role_policy(
        RoleName="chart-mirror-sync", PolicyName="ecrmirror", PolicyDocument=json.dumps(policy)
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ROLE_ARN", ROLE)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", emulator.url)
    emulator.app.iam.enforce = True
    emulator.app.requests.clear()

    def with_token(token: str) -> str:
        (tmp_path / "token").write_text(token)
        monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(tmp_path / "token"))
        return token

    yield with_token
    emulator.app.iam.enforce = False


def test_a_sync_authenticates_only_with_the_job_s_web_identity_token(
    job: Any, emulator: Emulator, run, pytester: pytest.Pytester
) -> None:
    token = job(id_token(MAIN))

    result = run("--sync", "-v", "-rA", "--log-level=DEBUG", "--junitxml=report.xml", "mirror.yaml")

    result.assert_outcomes(passed=2)
    sts = [r for r in emulator.requests if r.kind == "sts"]
    assert [(r.action, r.status) for r in sts] == [("AssumeRoleWithWebIdentity", 200)] * len(sts)
    # the registry, too, was used as the role: its token was granted to the role's temporary key
    callers = {grant.caller for grant in emulator.app.state.grants.values()}
    assert callers
    assert all(c.access_key.startswith("ASIA") and c.session_token for c in callers)
    written = result.stdout.str() + result.stderr.str() + (pytester.path / "report.xml").read_text()
    secrets = [token, token.split(".")[1], *(c.session_token for c in callers)]
    assert [s for s in secrets if s in written] == []


def test_a_token_from_another_branch_ends_the_run_before_any_item_saying_why(
    job: Any, emulator: Emulator, run
) -> None:
    token = job(id_token(MAIN.replace("ref:main", "ref:feature/x")))

    result = run("--sync", "mirror.yaml")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: AWS STS refused the web identity token for {ROLE} (AccessDenied: Not authorized to "
            "perform sts:AssumeRoleWithWebIdentity). The token says iss 'https://gitlab.example.com', "
            "aud 'sts.amazonaws.com', "
            "sub 'project_path:platform/chart-mirror:ref_type:branch:ref:feature/x'. "
            "The role's trust policy must allow*"
        ]
    )
    assert token not in result.stdout.str() + result.stderr.str()
    assert [r.action for r in emulator.requests] == ["AssumeRoleWithWebIdentity"]


@pytest.mark.parametrize(
    ("token", "said"),
    [
        (id_token(MAIN, expires_in=-60), "ExpiredTokenException: Token expired*"),
        (id_token(MAIN, aud="https://gitlab.example.com"), "InvalidIdentityToken: Incorrect token audience*"),
        ("not-a-jwt", "InvalidIdentityToken: Couldn't parse the web identity token*"),
    ],
    ids=["expired", "another audience", "not a token"],
)
def test_sts_refuses_what_aws_refuses(job: Any, run, token: str, said: str) -> None:
    job(token)

    result = run("--sync", "mirror.yaml")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: AWS STS refused the web identity token for {ROLE} ({said}"])
