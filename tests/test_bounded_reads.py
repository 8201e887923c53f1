"""Everything read from an upstream has a limit the upstream cannot raise: in size, in count, in time.

Each case of HOSTILE_CASES is a row of docs/hostile-input.md: a hostile registry or repository on
127.0.0.1, run through the plugin as users run it, ends in one plain message, without a
traceback, having pushed nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from chartfactory import package_chart
from httphosts import Host
from ociregistry import QuietHandler, TokenRegistry, trickle

from conftest import REGISTRY
from ecrmirror import transport
from ecrmirror.emulator import Emulator
from ecrmirror.sources.oci import MAX_LAYERS, MAX_PAGES, MAX_REFERRERS, MAX_TAGS, OciRepository
from ecrmirror.spec import Access

# What each case's message says, as docs/hostile-input.md shows it (… for what varies; 300 s is the
# default bound, which the trickle tests shorten to DEADLINE).
SLOW = (
    "… was still arriving when the 300 s ecrmirror gives a step to read an upstream's answers ran out "
    "(… bytes read); it stopped reading. The server is overloaded or sends slowly on purpose: try again later"
)
HOSTILE_CASES: dict[str, str] = {
    "oci: a manifest over 4 MiB": (
        "the manifest of …/library/cache:3.2.1 is larger than 4194304 bytes, more than ECR takes for a "
        "manifest (4 MiB), so it cannot be mirrored; ecrmirror stopped reading it"
    ),
    "oci: more layers than ECR takes": (
        f"…/library/cache:3.2.1: the manifest lists {MAX_LAYERS + 1} layers, and ECR takes at most "
        f"{MAX_LAYERS} in an image, so it cannot be mirrored; nothing of it was downloaded"
    ),
    "oci: tag list pages in a loop": (
        "the tag list of …/library/cache: its page … links back to …, a page already read; ecrmirror "
        "stopped following the pages. The registry's pagination is broken: tell its operators"
    ),
    "oci: tag list pages without end": (
        f"the tag list of …/library/cache goes on for more than {MAX_PAGES} pages (the last read: …); "
        "ecrmirror stopped following them"
    ),
    "oci: tag list of unbounded length": (
        f"the tag list of …/library/cache lists more than {MAX_TAGS} tags (read up to …); ecrmirror "
        "stopped reading it. Mirror from a repository that holds the chart's versions only"
    ),
    "oci: tag list page on another host": (
        "the tag list of …/library/cache: its page … links to the next on another host (…); ecrmirror "
        "follows a listing's pages on … only"
    ),
    "oci: tag list page over 4 MiB": (
        "…/v2/library/cache/tags/list?n=1000 is larger than 4194304 bytes; ecrmirror stopped reading it"
    ),
    "oci: referrers listing pages in a loop": (
        "the referrers of …/library/cache@sha256:…: its page … links back to …, a page already read; "
        "ecrmirror stopped following the pages"
    ),
    "oci: more referrers than a repository holds": (
        f"more than {MAX_REFERRERS} manifests refer to …/library/cache@sha256:…: more than an ECR "
        "repository holds by default (10,000 images); ecrmirror copies none of them. Set "
        "copy_referrers: false on the chart entry to mirror the chart alone"
    ),
    "index: a byte at a time": SLOW,
    "archive: a byte at a time": SLOW,
    "archive: .prov a byte at a time": SLOW,
    "oci: manifest a byte at a time": SLOW,
    "oci: blob a byte at a time": SLOW,
    "oci: tag list a byte at a time": SLOW,
    "oci: token a byte at a time": SLOW,
    "index: a retried 503 with an endless body": (
        "cannot download …/index.yaml: HTTP 503 Service Unavailable after … attempts. Check the repo URL "
        "in the spec."
    ),
}

TARGET = f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
DEADLINE = 1.5  # seconds: the tests' bound on a step's reading, for the trickles


def case(name: str, first: str = "*") -> str:
    """A case's message as an fnmatch pattern, what varies matched by anything (the first `…` by
    `first`), with the tests' bound in place of the default."""
    message = HOSTILE_CASES[name].replace("300 s", f"{DEADLINE:g} s").replace("…", first, 1)
    return "*" + message.replace("…", "*") + "*"


@pytest.fixture
def token_registry() -> Iterator[TokenRegistry]:
    registry = TokenRegistry().start()
    yield registry
    registry.stop()


@pytest.fixture
def short_deadline() -> str:
    """The option that ends a step's reading DEADLINE seconds in."""
    return f"--ecrmirror-upstream-read-deadline={DEADLINE}"


def oci_spec(registry: TokenRegistry, versions: str = "['3.2.1']") -> str:
    return (
        TARGET + f"charts:\n  - name: cache\n    repo: oci://{registry.host}/library\n    plain_http: true\n"
        f"    versions: {versions}\n"
    )


def with_chart(registry: TokenRegistry, tmp_path: Path) -> str:
    """library/cache 3.2.1 in `registry`; its manifest digest."""
    return registry.add_chart(
        "library/cache", package_chart(tmp_path, "cache", "3.2.1").path, "cache", "3.2.1"
    )


def plainly_refused(result: pytest.RunResult, emulator: Emulator, pattern: str) -> None:
    result.stdout.fnmatch_lines([pattern])
    result.stdout.no_fnmatch_line("*Traceback*")
    assert result.ret != pytest.ExitCode.OK
    assert [r for r in emulator.writes() if r.kind == "registry"] == []


def manifest_with_layers(count: int) -> bytes:
    def descriptor(n: int) -> dict[str, object]:
        digest = "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()
        return {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": 1}

    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {**descriptor(-1), "mediaType": "application/vnd.cncf.helm.config.v1+json"},
            "layers": [descriptor(n) for n in range(count)],
        }
    ).encode()


# -- sizes and counts of a registry's answers ---------------------------------------------------------
def test_a_manifest_over_ecrs_limit_is_cut_off(
    token_registry: TokenRegistry, emulator: Emulator, write_spec, run, tmp_path: Path
) -> None:
    with_chart(token_registry, tmp_path)
    huge = {"schemaVersion": 2, "annotations": {"padding": "x" * (4 * 1024 * 1024)}}
    token_registry.manifests[("library/cache", "3.2.1")] = json.dumps(huge).encode()
    write_spec(oci_spec(token_registry))

    result = run("--sync", "mirror.yaml")

    plainly_refused(result, emulator, case("oci: a manifest over 4 MiB"))


def test_more_layers_than_ecr_takes_are_refused_before_any_blob_is_downloaded(
    token_registry: TokenRegistry, emulator: Emulator, write_spec, run, tmp_path: Path
) -> None:
    with_chart(token_registry, tmp_path)
    token_registry.manifests[("library/cache", "3.2.1")] = manifest_with_layers(MAX_LAYERS + 1)
    write_spec(oci_spec(token_registry))

    result = run("--sync", "mirror.yaml")

    plainly_refused(result, emulator, case("oci: more layers than ECR takes"))
    assert not any("/blobs/" in path for _, path, _ in token_registry.seen)


def test_as_many_layers_as_ecr_takes_pass_the_check(
    token_registry: TokenRegistry, emulator: Emulator, write_spec, run, tmp_path: Path
) -> None:
    # the limit is ECR's, not lower: a manifest of MAX_LAYERS layers goes on to its blobs (which
    # this registry does not have)
    with_chart(token_registry, tmp_path)
    token_registry.manifests[("library/cache", "3.2.1")] = manifest_with_layers(MAX_LAYERS)
    write_spec(oci_spec(token_registry))

    result = run("--sync", "mirror.yaml")

    result.stdout.no_fnmatch_line("*ECR takes at most*")
    assert any("/blobs/" in path for _, path, _ in token_registry.seen)


def page(tags: list[str], link: str | None = None) -> Callable[[QuietHandler], None]:
    def answer(handler: QuietHandler) -> None:
        headers = {"Link": f'<{link}>; rel="next"'} if link else {}
        handler._send(200, json.dumps({"name": "library/cache", "tags": tags}).encode(), headers)

    return answer


def endless_pages(handler: QuietHandler) -> None:
    """Page N links to page N+1, for ever: each page new, so that only a count ends it."""
    number = int(handler.path.partition("page=")[2] or 0)
    link = f"/v2/library/cache/tags/list?n=1000&page={number + 1}"
    page([f"0.0.{number}"], link)(handler)


def over_4_mib(handler: QuietHandler) -> None:
    handler._send(200, json.dumps({"tags": ["1.0.0"], "padding": "x" * (4 * 1024 * 1024)}).encode(), {})


TAG_LIST = "/v2/library/cache/tags/list"
TAG_LIST_CASES: dict[str, Callable[[TokenRegistry], Callable[[QuietHandler], None]]] = {
    "oci: tag list pages in a loop": lambda registry: page(["3.2.1"], f"{TAG_LIST}?n=1000"),
    "oci: tag list pages without end": lambda registry: endless_pages,
    "oci: tag list of unbounded length": lambda registry: page([f"1.0.{n}" for n in range(MAX_TAGS + 1)]),
    "oci: tag list page on another host": lambda registry: page(
        ["3.2.1"], f"http://{registry.storage_host}{TAG_LIST}?n=1000&last=3.2.1"
    ),
    "oci: tag list page over 4 MiB": lambda registry: over_4_mib,
}


@pytest.mark.parametrize("name", TAG_LIST_CASES)
def test_a_tag_list_without_bounds_is_cut_off(
    name: str, token_registry: TokenRegistry, emulator: Emulator, write_spec, run, tmp_path: Path
) -> None:
    # given a registry whose tag list never ends, one way or another, and a version range that
    # needs it
    with_chart(token_registry, tmp_path)
    token_registry.answers[TAG_LIST] = TAG_LIST_CASES[name](token_registry)
    write_spec(oci_spec(token_registry, versions="'^3'"))

    # when the spec is synced
    result = run("--sync", "mirror.yaml")

    # then the tag list was given up on, plainly, and nothing was pushed
    plainly_refused(result, emulator, case(name))
    assert not any(host == token_registry.storage_host for host, _, _ in token_registry.seen)
    pages = [path for _, path, _ in token_registry.seen if path.startswith(TAG_LIST)]
    assert len(pages) <= MAX_PAGES + 1  # one 401 that asks for a token, then the pages


def referrers_path(digest: str) -> str:
    return f"/v2/library/cache/referrers/{digest}"


def test_a_referrers_listing_in_a_loop_is_cut_off(
    token_registry: TokenRegistry, emulator: Emulator, write_spec, run, tmp_path: Path
) -> None:
    # given a chart mirrored already, whose registry then lists its referrers in pages that loop
    digest = with_chart(token_registry, tmp_path)
    write_spec(oci_spec(token_registry))
    run("--sync", "mirror.yaml").assert_outcomes(passed=2)
    path = referrers_path(digest)

    def looping(handler: QuietHandler) -> None:
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}
        handler._send(200, json.dumps(index).encode(), {"Link": f'<{path}?page=2>; rel="next"'})

    token_registry.answers[path] = looping
    emulator.app.requests.clear()

    # when it is synced again
    result = run("--sync", "mirror.yaml")

    # then the listing is given up on, and nothing was pushed
    plainly_refused(result, emulator, case("oci: referrers listing pages in a loop"))


def test_more_referrers_than_an_ecr_repository_holds_are_refused_before_any_is_read(
    token_registry: TokenRegistry, emulator: Emulator, write_spec, run, tmp_path: Path
) -> None:
    digest = with_chart(token_registry, tmp_path)
    write_spec(oci_spec(token_registry))
    run("--sync", "mirror.yaml").assert_outcomes(passed=2)
    listed = [
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + hashlib.sha256(str(n).encode()).hexdigest(),
            "size": 100,
        }
        for n in range(MAX_REFERRERS + 1)
    ]
    index = json.dumps({"schemaVersion": 2, "manifests": listed}).encode()
    token_registry.answers[referrers_path(digest)] = lambda handler: handler._send(200, index, {})
    emulator.app.requests.clear()
    token_registry.seen.clear()

    result = run("--sync", "mirror.yaml")

    plainly_refused(result, emulator, case("oci: more referrers than a repository holds"))
    assert not any("/manifests/sha256:" in path for _, path, _ in token_registry.seen)


# -- what referrers cost -------------------------------------------------------------------------------
def test_each_referrer_costs_one_manifest_get_whatever_the_listing_repeats(
    token_registry: TokenRegistry, tmp_path: Path
) -> None:
    # given a chart with 300 referrers, listed by the referrers API twice each, in pages of 100,
    # and a cosign signature that is one of them
    digest = with_chart(token_registry, tmp_path)
    referrers: list[str] = []
    for n in range(300):
        body = json.dumps(
            {
                "schemaVersion": 2,
                "config": {"digest": digest, "size": 1},
                "layers": [],
                "annotations": {"n": str(n)},
            }
        ).encode()
        referrer = "sha256:" + hashlib.sha256(body).hexdigest()
        token_registry.manifests[("library/cache", referrer)] = body
        referrers.append(referrer)
    token_registry.manifests[("library/cache", f"sha256-{digest.partition(':')[2]}.sig")] = (
        token_registry.manifests[("library/cache", referrers[7])]
    )
    path = referrers_path(digest)

    def pages(handler: QuietHandler) -> None:
        number = int(handler.path.partition("page=")[2] or 0)
        listed = (referrers * 2)[number * 100 : (number + 1) * 100]
        more = {"Link": f'<{path}?page={number + 1}>; rel="next"'} if number < 5 else {}
        manifests = [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d} for d in listed]
        handler._send(200, json.dumps({"schemaVersion": 2, "manifests": manifests}).encode(), more)

    token_registry.answers[path] = pages
    source = OciRepository(f"oci://{token_registry.host}/library", transport.Http(), Access(plain_http=True))
    release = source.release("cache", "3.2.1")

    # when what refers to it is read, with two GETs alongside each job's own
    with ThreadPoolExecutor(2) as pool:
        found = source.referrers(release, alongside=pool.submit)

    # then each referrer was asked for once, and the signature's tag added nothing
    assert [r.manifest.digest for r in found] == referrers
    asked = [
        path for method, path in token_registry.methods if method == "GET" and "/manifests/sha256:" in path
    ]
    assert sorted(asked) == sorted(f"/v2/library/cache/manifests/{d}" for d in referrers)
    assert found[7].tag is None
    # and one at a time, without the pool, the same
    again = OciRepository(f"oci://{token_registry.host}/library", transport.Http(), Access(plain_http=True))
    assert [r.manifest.digest for r in again.referrers(release)] == referrers


# -- time: a server that sends a byte at a time ---------------------------------------------------------
def ended_in_time(started: float) -> None:
    # Generous: the run itself takes a second or two; a trickle lasts a minute.
    assert time.monotonic() - started < 15 * DEADLINE


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Host]:
    host = Host(tmp_path / "repo")
    host.directory.mkdir()
    yield host.start()
    host.stop()


HTTP_TRICKLES = {
    "index: a byte at a time": "/index.yaml",
    "archive: a byte at a time": "/app-1.0.0.tgz",
    "archive: .prov a byte at a time": "/app-1.0.0.tgz.prov",
}


@pytest.mark.parametrize("name", HTTP_TRICKLES)
def test_a_repository_sending_a_byte_at_a_time_ends_within_the_steps_bound(
    name: str, repo: Host, short_deadline: str, emulator: Emulator, write_spec, run, tmp_path: Path
) -> None:
    # given a repository that sends one of its files a byte every 0.2 s
    chart = package_chart(repo.directory, "app", "1.0.0")
    entry = {"name": "app", "version": "1.0.0", "digest": chart.digest, "urls": ["app-1.0.0.tgz"]}
    (repo.directory / "index.yaml").write_text(
        yaml.safe_dump({"apiVersion": "v1", "entries": {"app": [entry]}})
    )
    repo.answers[HTTP_TRICKLES[name]] = trickle
    write_spec(TARGET + f"charts:\n  - name: app\n    repo: {repo.url}\n    versions: ['1.0.0']\n")

    # when it is synced
    started = time.monotonic()
    result = run("--sync", "mirror.yaml", short_deadline)

    # then the step ends at its bound, plainly, naming the URL, and nothing was pushed
    ended_in_time(started)
    plainly_refused(result, emulator, case(name, first=f"{repo.url}{HTTP_TRICKLES[name].lstrip('/')}"))


OCI_TRICKLES = {
    "oci: manifest a byte at a time": lambda digest: "/v2/library/cache/manifests/3.2.1",
    "oci: blob a byte at a time": lambda digest: f"/v2/library/cache/blobs/{digest}",
    "oci: tag list a byte at a time": lambda digest: TAG_LIST,
    "oci: token a byte at a time": lambda digest: "/token",
}


@pytest.mark.parametrize("name", OCI_TRICKLES)
def test_a_registry_sending_a_byte_at_a_time_ends_within_the_steps_bound(
    name: str,
    token_registry: TokenRegistry,
    short_deadline: str,
    emulator: Emulator,
    write_spec,
    run,
    tmp_path: Path,
) -> None:
    chart = package_chart(tmp_path, "cache", "3.2.1")
    token_registry.add_chart("library/cache", chart.path, "cache", "3.2.1")
    layer = "sha256:" + hashlib.sha256(chart.path.read_bytes()).hexdigest()
    token_registry.answers[OCI_TRICKLES[name](layer)] = trickle
    write_spec(oci_spec(token_registry, versions="'^3'" if "tag list" in name else "['3.2.1']"))

    started = time.monotonic()
    result = run("--sync", "mirror.yaml", short_deadline)

    ended_in_time(started)
    plainly_refused(result, emulator, case(name))


def test_a_retried_answer_with_an_endless_body_is_not_read(
    repo: Host, emulator: Emulator, write_spec, run
) -> None:
    # given a repository that answers 503 with a body that never ends, each time it is asked
    def unavailable(handler: QuietHandler) -> None:
        handler.send_response(503)
        handler.end_headers()
        try:
            while True:
                handler.wfile.write(b"x" * 65536)
        except OSError:
            pass

    repo.answers["/index.yaml"] = unavailable
    write_spec(TARGET + f"charts:\n  - name: app\n    repo: {repo.url}\n    versions: ['1.0.0']\n")

    # when it is synced, with two retries
    started = time.monotonic()
    result = run("--sync", "mirror.yaml", "--ecrmirror-retries=2")

    # then the retries did not read the bodies (urllib3 would, to the end), and the run ends
    ended_in_time(started)
    plainly_refused(
        result, emulator, case("index: a retried 503 with an endless body").replace("after *", "after 3")
    )
    assert [path for path, _ in repo.seen] == ["/index.yaml"] * 3


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_a_read_deadline_that_is_not_a_time_is_a_usage_error(value: str, write_spec, run) -> None:
    write_spec(TARGET + "charts:\n  - name: app\n    repo: ./c\n    versions: ['1.0.0']\n")

    result = run("--sync", "mirror.yaml", f"--ecrmirror-upstream-read-deadline={value}")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*ecrmirror_upstream_read_deadline) must be a number of seconds above 0, not '{value}'*"]
    )
