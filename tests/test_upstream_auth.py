"""Secrets in transit: an upstream's credentials go over https, or to the plain-http host the spec
names, and nowhere else; a token service's answer is read plainly, whatever it is.

Each case of HOSTILE_CASES is a row of docs/hostile-input.md: run through the plugin as users run
it, against servers on 127.0.0.1, it ends in one plain message, without a traceback or the
credentials, having pushed nothing.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from chartfactory import package_chart
from httphosts import Host, self_signed
from ociregistry import QuietHandler, TokenRegistry

from conftest import REGISTRY
from ecrmirror.emulator import Emulator
from ecrmirror.sources.oci import MAX_TOKEN_ANSWER

SECRET = "s3cret-upstream-pa55word-Qx7"
BASIC = "Basic " + base64.b64encode(f"mirror:{SECRET}".encode()).decode()
TARGET = f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
AUTH = "    auth: {username: mirror, password: '${UPSTREAM_PASSWORD}'}\n"

# What each case's message says, as docs/hostile-input.md shows it (… for what varies).
UNSENT = "over plain http: ecrmirror sent no credentials there"
NOT_JSON = "the answer of the token service of … (…/token) is not JSON"
NOT_AN_OBJECT = "the answer of the token service of … (…/token) is {}, not the JSON object a registry answers"
HOSTILE_CASES: dict[str, str] = {
    "http: https redirects to plain http on the same host": (
        f"cannot download https://…/app-1.0.0.tgz (redirected to http://…/app-1.0.0.tgz, {UNSENT}): HTTP "
        "401 Unauthorized"
    ),
    "http: pass_credentials to a chart URL on plain http": (
        f"cannot download http://…/app-1.0.0.tgz ({UNSENT}): HTTP 401 Unauthorized"
    ),
    "oci: https registry redirects to plain http on the same host": (
        "… refused the manifest of …/library/cache:3.2.1 (HTTP 401; redirected to "
        f"http://…/v2/library/cache/manifests/3.2.1, {UNSENT}); check the chart entry's auth"
    ),
    "oci: token realm on plain http on another host": (
        "… asks for the chart entry's credentials at http://…/token, over plain http on another host: "
        "ecrmirror sends credentials over https only (or to a registry the spec marks plain_http: true), "
        "so it sent nothing. The registry's token service (the realm of its challenge) must be on https"
    ),
    "oci: token realm on plain http, from an https registry": (
        "… asks for the chart entry's credentials at http://…/token, over plain http: ecrmirror sends "
        "credentials over https only"
    ),
    "oci: token answer is an HTML page": f"{NOT_JSON} (it looks like HTML: a login or error page?)",
    "oci: token answer is not JSON": NOT_JSON,
    "oci: token answer is a JSON list": NOT_AN_OBJECT.format("a JSON list"),
    "oci: token answer is a JSON string": NOT_AN_OBJECT.format("a JSON string"),
    "oci: token answer without a token": "the token service of … (…/token) answered without a token",
    "oci: token answer of unbounded size": (
        f"the token service of … (…/token) answered more than {MAX_TOKEN_ANSWER} bytes; a token answer "
        "is a few KiB, so ecrmirror stopped reading it"
    ),
    "oci: token answer echoes the credentials": f"{NOT_JSON} (it looks like HTML: a login or error page?)",
    "oci: tag list is a JSON list": (
        "the tag list of …/library/cache (…) is a JSON list, not the JSON object a registry answers"
    ),
    "oci: tags that are not strings": (
        "the tag list of …/library/cache (…) is not a registry's tag list: its `tags` is not a list of "
        "strings"
    ),
    "oci: referrers listing is not JSON": (
        "the referrers of …/library/cache@sha256:… (…) is not JSON (it looks like HTML: a login or error "
        "page?)"
    ),
    "oci: referrers listing whose manifests are not a list": (
        "the referrers of …/library/cache@sha256:… (…) is not an image index: its `manifests` is not a list"
    ),
}


def case(name: str) -> str:
    """A case's message as an fnmatch pattern, what varies matched by anything."""
    return "*" + HOSTILE_CASES[name].replace("…", "*") + "*"


def plainly_refused(result: pytest.RunResult, emulator: Emulator, pattern: str) -> None:
    result.stdout.fnmatch_lines([pattern])
    result.stdout.no_fnmatch_line("*Traceback*")
    assert result.ret != pytest.ExitCode.OK
    assert [r for r in emulator.writes() if r.kind == "registry"] == []


def no_secret_in(result: pytest.RunResult) -> None:
    written = "\n".join(result.outlines + result.errlines)
    assert SECRET not in written
    assert BASIC.removeprefix("Basic ")[:16] not in written


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    return self_signed(tmp_path / "tls")


@pytest.fixture
def password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("UPSTREAM_PASSWORD", SECRET)
    return SECRET


# -- HTTP repositories ------------------------------------------------------------------------------
def publish(directory: Path, archive_url: str) -> None:
    chart = package_chart(directory, "app", "1.0.0")
    entry = {"name": "app", "version": "1.0.0", "digest": chart.digest, "urls": [archive_url]}
    (directory / "index.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "entries": {"app": [entry]}}))


def http_spec(url: str, extra: str = "") -> str:
    return TARGET + f"charts:\n  - name: app\n    repo: {url}\n    versions: ['1.0.0']\n" + AUTH + extra


def test_an_https_repository_redirecting_to_plain_http_on_its_own_host_gets_no_credentials_there(
    tls: tuple[ssl.SSLContext, Path], password: str, emulator: Emulator, write_spec, run, tmp_path: Path
) -> None:
    # given a private repository on https, whose archive redirects to plain http on the same host
    # and port (the host speaks both)
    context, ca_file = tls
    repo = Host(tmp_path / "repo", required=BASIC, tls=context, plain_too=True)
    repo.directory.mkdir()
    publish(repo.directory, "app-1.0.0.tgz")
    repo.start()
    plain = repo.url.replace("https://", "http://") + "app-1.0.0.tgz"

    def downgrade(handler: QuietHandler) -> None:
        if handler.over_tls:
            return handler._send(302, b"", {"Location": plain})
        handler._send(401, b"unauthorized", {"WWW-Authenticate": 'Basic realm="charts"'})

    repo.answers["/app-1.0.0.tgz"] = downgrade
    try:
        write_spec(http_spec(repo.url, f"    ca_file: {ca_file}\n"))

        # when it is synced
        result = run("--sync", "mirror.yaml")
    finally:
        repo.stop()

    # then the index got the credentials over https, the plain-http hop none, and nothing was pushed
    assert BASIC in repo.authorizations()
    assert ("/app-1.0.0.tgz", "") in repo.insecure
    assert [auth for _, auth in repo.insecure if auth] == []
    plainly_refused(result, emulator, case("http: https redirects to plain http on the same host"))
    no_secret_in(result)


@pytest.fixture
def repo_and_cdn(tmp_path: Path) -> Iterator[tuple[Host, Host]]:
    repo = Host(tmp_path / "repo", required=BASIC)
    cdn = Host(tmp_path / "cdn", name="localhost", required=BASIC)
    repo.directory.mkdir()
    cdn.directory.mkdir()
    yield repo.start(), cdn.start()
    repo.stop()
    cdn.stop()


def test_pass_credentials_sends_none_to_a_chart_url_on_plain_http_elsewhere(
    repo_and_cdn: tuple[Host, Host], password: str, emulator: Emulator, write_spec, run
) -> None:
    # given a repository the spec names on plain http, whose index points at another plain-http host
    repo, cdn = repo_and_cdn
    publish(cdn.directory, f"{cdn.url}app-1.0.0.tgz")
    (repo.directory / "index.yaml").write_bytes((cdn.directory / "index.yaml").read_bytes())
    write_spec(http_spec(repo.url, "    pass_credentials: true\n"))

    result = run("--sync", "mirror.yaml")

    # then the repository's own host got them (the spec chose plain http for it), the other none
    assert repo.authorizations() == [BASIC]
    assert cdn.seen
    assert cdn.authorizations() == []
    plainly_refused(result, emulator, case("http: pass_credentials to a chart URL on plain http"))
    no_secret_in(result)


def test_pass_credentials_sends_them_to_a_chart_url_on_https_elsewhere(
    tls: tuple[ssl.SSLContext, Path], password: str, emulator: Emulator, write_spec, run, tmp_path: Path
) -> None:
    context, ca_file = tls
    repo = Host(tmp_path / "repo", required=BASIC).start()
    cdn = Host(tmp_path / "cdn", name="localhost", required=BASIC, tls=context).start()
    try:
        for host in (repo, cdn):
            host.directory.mkdir()
        publish(cdn.directory, f"{cdn.url}app-1.0.0.tgz")
        (repo.directory / "index.yaml").write_bytes((cdn.directory / "index.yaml").read_bytes())
        write_spec(http_spec(repo.url, f"    pass_credentials: true\n    ca_file: {ca_file}\n"))

        run("--sync", "mirror.yaml").assert_outcomes(passed=2)
    finally:
        repo.stop()
        cdn.stop()

    assert cdn.authorizations() == [BASIC, BASIC]  # the archive and its .prov probe, over https


# -- OCI registries: where credentials go ------------------------------------------------------------
@pytest.fixture
def token_registry() -> Iterator[TokenRegistry]:
    registry = TokenRegistry(username="mirror", password=SECRET).start()
    yield registry
    registry.stop()


def oci_spec(registry: TokenRegistry, extra: str = "    plain_http: true\n", auth: str = AUTH) -> str:
    return (
        TARGET + f"charts:\n  - name: cache\n    repo: oci://{registry.host}/library\n{extra}{auth}"
        "    versions: ['3.2.1']\n"
    )


def with_chart(registry: TokenRegistry, tmp_path: Path) -> str:
    return registry.add_chart(
        "library/cache", package_chart(tmp_path, "cache", "3.2.1").path, "cache", "3.2.1"
    )


def test_an_https_registry_redirecting_to_plain_http_on_its_own_host_gets_no_credentials_there(
    tls: tuple[ssl.SSLContext, Path], password: str, emulator: Emulator, write_spec, run, tmp_path: Path
) -> None:
    # given a registry on https (and plain http, same port) whose manifest redirects to plain http
    context, ca_file = tls
    registry = TokenRegistry(username="mirror", password=SECRET, tls=context).start()
    try:
        with_chart(registry, tmp_path)
        path = "/v2/library/cache/manifests/3.2.1"
        manifest = registry.manifests[("library/cache", "3.2.1")]

        def downgrade(handler: QuietHandler) -> None:
            if handler.over_tls:
                return handler._send(307, b"", {"Location": f"http://{registry.host}{path}"})
            handler._send(200, manifest, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})

        registry.answers[path] = downgrade
        write_spec(oci_spec(registry, f"    ca_file: {ca_file}\n"))

        result = run("--sync", "mirror.yaml")
    finally:
        registry.stop()

    # then the token came over https, and the plain-http hop was asked without it: the registry
    # challenged it (a 401), and the version failed plainly
    assert "Bearer granted" in registry.authorizations(registry.host)
    assert (path, "") in registry.insecure
    assert [auth for _, auth in registry.insecure if auth] == []
    plainly_refused(result, emulator, case("oci: https registry redirects to plain http on the same host"))
    no_secret_in(result)


def test_credentials_are_not_sent_to_a_token_service_on_plain_http_elsewhere(
    token_registry: TokenRegistry, password: str, emulator: Emulator, write_spec, run, tmp_path: Path
) -> None:
    # given a plain-http registry (the spec says so) whose challenge sends clients to a token
    # service on plain http on another host
    with_chart(token_registry, tmp_path)
    token_registry.realm = f"http://{token_registry.storage_host}/token"
    write_spec(oci_spec(token_registry))

    # when it is synced with credentials
    result = run("--sync", "mirror.yaml")

    # then the token service was never asked, and the message names it
    assert not any(path.startswith("/token") for _, path, _ in token_registry.seen)
    plainly_refused(result, emulator, case("oci: token realm on plain http on another host"))
    assert f"http://{token_registry.storage_host}/token" in result.stdout.str()
    no_secret_in(result)


def test_an_anonymous_token_request_may_go_to_plain_http_elsewhere(
    emulator: Emulator, write_spec, run, tmp_path: Path
) -> None:
    registry = TokenRegistry().start()
    try:
        with_chart(registry, tmp_path)
        registry.realm = f"http://{registry.storage_host}/token"
        write_spec(oci_spec(registry, auth=""))

        run("--sync", "mirror.yaml").assert_outcomes(passed=2)
    finally:
        registry.stop()
    assert any(host == registry.storage_host and path.startswith("/token") for host, path, _ in registry.seen)


def test_credentials_are_not_sent_to_a_plain_http_realm_of_an_https_registry(
    tls: tuple[ssl.SSLContext, Path], password: str, emulator: Emulator, write_spec, run, tmp_path: Path
) -> None:
    # given an https registry whose token service is its own host, on plain http
    context, ca_file = tls
    registry = TokenRegistry(username="mirror", password=SECRET, tls=context).start()
    try:
        with_chart(registry, tmp_path)
        registry.realm = f"http://{registry.host}/token"
        write_spec(oci_spec(registry, f"    ca_file: {ca_file}\n"))

        result = run("--sync", "mirror.yaml")
    finally:
        registry.stop()

    assert not any(path.startswith("/token") for path, _ in registry.insecure)
    plainly_refused(result, emulator, case("oci: token realm on plain http, from an https registry"))
    no_secret_in(result)


# -- OCI registries: answers that are not what they should be -----------------------------------------
def answer(body: bytes, content_type: str = "application/json") -> Callable[[QuietHandler], None]:
    return lambda handler: handler._send(200, body, {"Content-Type": content_type})


def endless(handler: QuietHandler) -> None:
    handler.send_response(200)
    handler.end_headers()
    try:
        while True:
            handler.wfile.write(b'{"token": "' + b"a" * 65536)
    except OSError:
        pass


def echoing(handler: QuietHandler) -> None:
    """An error page that repeats the request's Authorization header, as some proxies' do."""
    page = f"<html><body>Bad request: {handler.headers.get('Authorization')}</body></html>".encode()
    handler._send(200, page, {"Content-Type": "text/html"})


TOKEN_ANSWERS: dict[str, Callable[[QuietHandler], None]] = {
    "oci: token answer is an HTML page": answer(b"<!DOCTYPE html><html>Sign in</html>", "text/html"),
    "oci: token answer is not JSON": answer(b"\x89\xff\x00garbage{"),
    "oci: token answer is a JSON list": answer(b'["granted"]'),
    "oci: token answer is a JSON string": answer(b'"granted"'),
    "oci: token answer without a token": answer(b'{"token": "", "expires_in": 300}'),
    "oci: token answer of unbounded size": endless,
    "oci: token answer echoes the credentials": echoing,
}


@pytest.mark.parametrize("name", TOKEN_ANSWERS)
def test_a_token_service_answering_nonsense_fails_the_version_plainly(
    name: str,
    token_registry: TokenRegistry,
    password: str,
    emulator: Emulator,
    write_spec,
    run,
    tmp_path: Path,
) -> None:
    with_chart(token_registry, tmp_path)
    token_registry.answers["/token"] = TOKEN_ANSWERS[name]
    write_spec(oci_spec(token_registry))

    result = run("--sync", "mirror.yaml")

    plainly_refused(result, emulator, case(name))
    no_secret_in(result)
    result.stdout.no_fnmatch_line("*JSONDecodeError*")
    result.stdout.no_fnmatch_line("*AttributeError*")


TAG_LIST = "/v2/library/cache/tags/list"
LISTINGS: dict[str, Callable[[str], tuple[str, Callable[[QuietHandler], None]]]] = {
    "oci: tag list is a JSON list": lambda digest: (TAG_LIST, answer(b'["3.2.1"]')),
    "oci: tags that are not strings": lambda digest: (TAG_LIST, answer(b'{"tags": [{"name": "3.2.1"}]}')),
    "oci: referrers listing is not JSON": lambda digest: (
        f"/v2/library/cache/referrers/{digest}",
        answer(b"<html>503</html>", "text/html"),
    ),
    "oci: referrers listing whose manifests are not a list": lambda digest: (
        f"/v2/library/cache/referrers/{digest}",
        answer(json.dumps({"schemaVersion": 2, "manifests": {"digest": digest}}).encode()),
    ),
}


@pytest.mark.parametrize("name", LISTINGS)
def test_a_listing_that_is_not_one_fails_plainly(
    name: str,
    token_registry: TokenRegistry,
    password: str,
    emulator: Emulator,
    write_spec,
    run,
    tmp_path: Path,
) -> None:
    # given a chart mirrored already, whose registry then answers a listing with something else
    digest = with_chart(token_registry, tmp_path)
    write_spec(oci_spec(token_registry))
    run("--sync", "mirror.yaml").assert_outcomes(passed=2)
    path, respond = LISTINGS[name](digest)
    token_registry.answers[path] = respond
    emulator.app.requests.clear()

    # when it is synced again (the tag list is read for cosign's tags, the referrers for OCI 1.1's)
    result = run("--sync", "mirror.yaml")

    # then the version fails plainly, and nothing was pushed
    plainly_refused(result, emulator, case(name))
    no_secret_in(result)


def test_netrc_credentials_are_never_sent(
    emulator: Emulator, write_spec, run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a ~/.netrc (as requests would read it) with a password for the repository's host
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login bot password NETRC-CANARY-pa55\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    repo = Host(tmp_path / "repo")
    repo.directory.mkdir()
    publish(repo.directory, "app-1.0.0.tgz")
    repo.start()
    try:
        write_spec(TARGET + f"charts:\n  - name: app\n    repo: {repo.url}\n    versions: ['1.0.0']\n")

        result = run("--sync", "mirror.yaml")
    finally:
        repo.stop()

    # then credentials come from the spec alone, as helm's do: none were sent
    result.assert_outcomes(passed=2)
    assert repo.seen
    assert repo.authorizations() == []
