"""--ecrmirror-jobs: the items' work on threads, reported in order; -x stops new work; polite upstreams."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from chartfactory import ChartFile, package_chart, write_index
from ociregistry import TokenRegistry

from conftest import REGISTRY
from ecrmirror.emulator import Emulator


class SlowRepository:
    """A Helm repository whose archives take `delay` seconds each, counting downloads in flight."""

    def __init__(self, directory: Path, delay: float) -> None:
        self.directory = directory
        self.delay = delay
        self.in_flight = 0
        self.most_in_flight = 0
        self.archive_gets: list[str] = []
        self._lock = threading.Lock()
        self.charts: list[ChartFile] = []
        repository = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(directory), **kwargs)

            def do_GET(self) -> None:
                if not self.path.endswith(".tgz"):
                    return super().do_GET()
                with repository._lock:
                    repository.archive_gets.append(self.path)
                    repository.in_flight += 1
                    repository.most_in_flight = max(repository.most_in_flight, repository.in_flight)
                time.sleep(repository.delay)
                # Counted out before the answer goes: a client that has read it may send its next
                # request on another connection before this thread would get to count it out.
                with repository._lock:
                    repository.in_flight -= 1
                super().do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        # socketserver's backlog of 5 would make a sixth connection at once wait for a SYN retry
        server = type("Server", (ThreadingHTTPServer,), {"request_queue_size": 64})
        self.server = server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/"

    def publish(self, name: str, versions: list[str]) -> None:
        self.charts = [package_chart(self.directory, name, version) for version in versions]
        write_index(self.directory, self.charts)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slow_repository(tmp_path: Path) -> Iterator[SlowRepository]:
    directory = tmp_path / "slow"
    directory.mkdir()
    repository = SlowRepository(directory, delay=0.15)
    yield repository
    repository.stop()


VERSIONS = [f"1.{minor}.0" for minor in range(12)]


def spec(url: str, versions: list[str]) -> str:
    return (
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        f"charts:\n  - name: app\n    repo: {url}\n    versions: {versions}\n"
    )


def reported_versions(result: pytest.RunResult) -> list[str]:
    return re.findall(r"mirror\.yaml::app::(\S+) (?:PUSHED|PRESENT)", result.stdout.str())


def test_items_report_in_collection_order_while_their_downloads_overlap(
    slow_repository: SlowRepository, emulator: Emulator, write_spec, run
) -> None:
    # given twelve versions whose archives each take 0.15 s to download
    slow_repository.publish("app", VERSIONS)
    write_spec(spec(slow_repository.url, VERSIONS))

    # when they are synced with 8 jobs and at most 3 requests at a time to the upstream
    synced = run("--sync", "-v", "--ecrmirror-jobs=8", "--ecrmirror-upstream-connections=3", "mirror.yaml")

    # then every version is pushed and reported, in the spec's order, one item each
    synced.assert_outcomes(passed=1 + len(VERSIONS))
    assert reported_versions(synced) == VERSIONS
    # and the downloads overlapped, but never more than the upstream's share at once
    assert len(slow_repository.archive_gets) == len(VERSIONS)
    assert slow_repository.most_in_flight == 3
    # and the audit, also with jobs, finds them all
    audited = run("--check-only", "-v", "--ecrmirror-jobs=8", "mirror.yaml")
    assert reported_versions(audited) == VERSIONS


def test_by_default_the_upstream_s_share_grows_with_the_jobs(
    slow_repository: SlowRepository, emulator: Emulator, write_spec, run
) -> None:
    # given twelve versions whose archives each take 0.6 s to download (long enough for the jobs
    # to meet on a busy machine)
    slow_repository.delay = 0.6
    slow_repository.publish("app", VERSIONS)
    write_spec(spec(slow_repository.url, VERSIONS))

    # when they are synced with 8 jobs and no limit given
    run("--sync", "--ecrmirror-jobs=8", "mirror.yaml").assert_outcomes(passed=1 + len(VERSIONS))

    # then more downloads overlap than the fixed 6 of a run without jobs: the default share is 6
    # requests a job
    assert slow_repository.most_in_flight > 6


def test_one_job_downloads_one_archive_at_a_time(
    slow_repository: SlowRepository, emulator: Emulator, write_spec, run
) -> None:
    slow_repository.publish("app", VERSIONS[:4])
    write_spec(spec(slow_repository.url, VERSIONS[:4]))

    run("--sync", "--ecrmirror-jobs=1", "mirror.yaml").assert_outcomes(passed=5)

    assert slow_repository.most_in_flight == 1


def test_x_stops_new_work_and_says_what_was_still_running(
    slow_repository: SlowRepository, emulator: Emulator, write_spec, run
) -> None:
    # given a spec whose first version is not upstream, before eleven slow ones
    slow_repository.publish("app", VERSIONS[1:])
    write_spec(spec(slow_repository.url, VERSIONS))

    # when it is synced with -x and two jobs
    synced = run("--sync", "-x", "--ecrmirror-jobs=2", "mirror.yaml")

    # then the run stops at the first failure, starts nothing new, and says so
    synced.assert_outcomes(passed=1, failed=1)
    stopped = re.search(
        r"ecrmirror: stopped \(.*\): (\d+) item\(s\) not started; (\d+) already running", synced.stdout.str()
    )
    assert stopped is not None, synced.stdout.str()
    not_started, running = int(stopped[1]), int(stopped[2])
    assert running <= 2
    assert not_started >= len(VERSIONS) - 1 - 3
    assert len(slow_repository.archive_gets) <= 3  # what was running, of eleven
    # and what was let finish is whole: the next run finds it PRESENT, and pushes the rest
    ecr = boto3.client("ecr", region_name="eu-west-1", endpoint_url=emulator.url)
    held = {image["imageTag"] for image in ecr.list_images(repositoryName="app")["imageIds"]}
    again = run("--sync", "-v", "mirror.yaml")
    again.assert_outcomes(passed=len(VERSIONS), failed=1)
    present = re.findall(r"mirror\.yaml::app::(\S+) PRESENT", again.stdout.str())
    assert set(present) == held
    assert len(re.findall(r"mirror\.yaml::app::\S+ PUSHED", again.stdout.str())) == len(VERSIONS) - 1 - len(
        held
    )


def test_each_item_s_log_records_are_its_own(
    slow_repository: SlowRepository, emulator: Emulator, write_spec, run
) -> None:
    slow_repository.publish("app", VERSIONS[:6])
    write_spec(spec(slow_repository.url, VERSIONS[:6]))

    synced = run("--sync", "--ecrmirror-jobs=6", "--log-level=DEBUG", "mirror.yaml")

    synced.assert_outcomes(passed=7)
    reports = [
        r
        for r in synced.reprec.getreports("pytest_runtest_logreport")  # type: ignore[attr-defined]
        if r.when == "call" and "::app::" in r.nodeid
    ]
    assert len(reports) == 6
    for report in reports:
        version = report.nodeid.rsplit("::", 1)[1]
        downloads = set(re.findall(r'"GET /(app-[^ ]+\.tgz)', report.caplog))
        # urllib3 logs each request: an item's log holds its own archive's download, no other
        assert downloads == {f"app-{version}.tgz"}, report.caplog


def test_a_jobs_value_that_is_not_a_number_is_a_usage_error(emulator: Emulator, write_spec, run) -> None:
    write_spec(spec("http://127.0.0.1:9/", ["1.0.0"]))

    result = run("--sync", "--ecrmirror-jobs=0", "mirror.yaml")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--ecrmirror-jobs (ini ecrmirror_jobs) must be a whole number of at least 1*"]
    )


# -- OCI sources: HEAD for digests, and Docker Hub's pull limit ------------------------------------------
@pytest.fixture
def hub(tmp_path: Path) -> Iterator[TokenRegistry]:
    registry = TokenRegistry().start()
    for version in VERSIONS[:5]:
        chart = package_chart(tmp_path / "hub", "cache", version)
        registry.add_chart("library/cache", chart.path, "cache", version)
    yield registry
    registry.stop()


def oci_spec(registry: TokenRegistry) -> str:
    return (
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        f"charts:\n  - name: cache\n    repo: oci://{registry.host}/library\n    plain_http: true\n"
        f"    versions: {VERSIONS[:5]}\n"
    )


def manifest_requests(registry: TokenRegistry, method: str) -> list[str]:
    return [path for m, path in registry.methods if m == method and "/manifests/" in path]


def test_below_the_pull_reserve_no_new_pull_starts_and_the_audit_pulls_nothing(
    hub: TokenRegistry, emulator: Emulator, write_spec, run
) -> None:
    # given a registry that, as Docker Hub, has 13 pulls left and says so in RateLimit-Remaining
    hub.pulls_left = 13
    write_spec(oci_spec(hub))

    # when five versions are synced one at a time (the default reserve is 10)
    synced = run("--sync", "-v", "--ecrmirror-jobs=1", "mirror.yaml")

    # then three are pulled and pushed, and the last two are refused before any request, saying why
    synced.assert_outcomes(passed=4, failed=2)
    synced.stdout.fnmatch_lines(
        ["*says 10 pulls are left in its rate-limit window (RateLimit-Remaining)*keeps 10 in reserve*"]
    )
    assert len(manifest_requests(hub, "GET")) == 3
    assert hub.pulls_left == 10  # no 429 earned

    # and the audit finds the three by HEAD, which pulls nothing
    hub.methods.clear()
    audited = run("--check-only", "-v", "--ecrmirror-jobs=8", "mirror.yaml")
    audited.assert_outcomes(passed=4, failed=2)
    assert manifest_requests(hub, "GET") == []
    # (one HEAD per version; with 8 jobs, several are sent before the first token, and repeated once)
    assert sorted(set(manifest_requests(hub, "HEAD"))) == [
        f"/v2/library/cache/manifests/{version}" for version in VERSIONS[:5]
    ]
    assert hub.pulls_left == 10
    ecr = boto3.client("ecr", region_name="eu-west-1", endpoint_url=emulator.url)
    assert len(ecr.list_images(repositoryName="cache")["imageIds"]) == 3


def test_under_xdist_each_worker_runs_its_items_on_its_own_jobs_once_each(
    slow_repository: SlowRepository, emulator: Emulator, write_spec, run_subprocess
) -> None:
    # given two specs (so that --dist loadfile gives each worker one) of six versions each
    slow_repository.publish("app", VERSIONS[:12])
    write_spec(spec(slow_repository.url, VERSIONS[:6]), name="first")
    write_spec(spec(slow_repository.url, VERSIONS[6:12]), name="second")

    # when both are synced by two workers, four jobs each
    synced = run_subprocess(
        "-p",
        "xdist.plugin",
        "-n",
        "2",
        "--dist",
        "loadfile",
        "--sync",
        "--ecrmirror-jobs=4",
        "first.yaml",
        "second.yaml",
    )

    # then every version is pushed once: no worker did another's items
    synced.assert_outcomes(passed=2 + 12)
    manifests = [r for r in emulator.requests if r.method == "PUT" and "/manifests/" in r.path]
    assert sorted(r.path.rsplit("/", 1)[1] for r in manifests) == sorted(VERSIONS[:12])
    assert sorted(slow_repository.archive_gets) == sorted(f"/app-{v}.tgz" for v in VERSIONS[:12])
    assert slow_repository.most_in_flight > 1


def test_a_job_waiting_for_hundreds_that_end_while_it_is_submitted_runs_once() -> None:
    # given jobs that wait for 200 quick ones (a spec's versions for its repositories), submitted
    # while those end, twenty times over
    from collections import Counter
    from functools import partial

    from ecrmirror.jobs import Jobs

    ran: Counter[str] = Counter()
    lock = threading.Lock()

    def note(name: str) -> str:
        with lock:
            ran[name] += 1
        return name

    for attempt in range(20):
        jobs = Jobs(8)
        first = [f"repository {attempt}.{n}" for n in range(200)]
        for key in first:
            jobs.submit(key, partial(note, key))
        later = [f"version {attempt}.{n}" for n in range(50)]
        for key in later:
            jobs.submit(key, partial(note, key), after=first)

        # when their results are taken
        results: list[str] = []
        taker = threading.Thread(target=_take, args=(jobs, later, results), daemon=True)
        taker.start()
        taker.join(timeout=30)
        jobs.close()

        # then each ran, after the others, and none twice
        assert results == later
    assert set(ran.values()) == {1}


def test_side_by_side_a_slow_call_holds_up_no_other() -> None:
    # given a job's calls where the first ends only once the last has started: more calls than
    # a job has in flight, so the last starts only when a place is free
    from concurrent.futures import ThreadPoolExecutor

    from ecrmirror.jobs import IN_FLIGHT_PER_JOB
    from ecrmirror.sources.oci import side_by_side

    last = IN_FLIGHT_PER_JOB
    last_started = threading.Event()

    def work(n: int) -> int:
        if n == 0:
            assert last_started.wait(timeout=10), "the last call waited for the first to end"
        if n == last:
            last_started.set()
        return n * 10

    # when they run side by side on the job's share of side threads
    with ThreadPoolExecutor(IN_FLIGHT_PER_JOB - 1) as side:
        results = side_by_side(work, list(range(last + 1)), side.submit)

    # then the last took the place of a quick one, and the results keep the calls' order
    assert results == [n * 10 for n in range(last + 1)]


def test_side_by_side_raises_the_first_failure_once_the_calls_running_have_ended() -> None:
    # given calls of which two fail, the later one first
    from concurrent.futures import ThreadPoolExecutor

    from ecrmirror.jobs import IN_FLIGHT_PER_JOB
    from ecrmirror.sources.oci import side_by_side

    later_failed = threading.Event()
    started: list[int] = []
    ended: list[int] = []

    def work(n: int) -> int:
        started.append(n)
        if n == 2:
            later_failed.set()
            raise ValueError("two")
        assert later_failed.wait(timeout=10)  # the others, call 1 among them, wait for it
        if n == 1:
            raise ValueError("one")
        ended.append(n)
        return n

    # when they run side by side
    calls = list(range(1000))
    with ThreadPoolExecutor(IN_FLIGHT_PER_JOB - 1) as side, pytest.raises(ValueError, match=r"^one$"):
        side_by_side(work, calls, side.submit)

    # then the failure of the earlier call is raised, every call started has ended, and the calls
    # stopped starting once one had failed (each place may have taken one more meanwhile)
    assert sorted([*ended, 1, 2]) == sorted(started)
    assert len(started) < 4 * IN_FLIGHT_PER_JOB


def _take(jobs: Any, keys: list[str], into: list[str]) -> None:
    into.extend(jobs.result(key) for key in keys)


def _asked_of(hub: TokenRegistry, emulator: Emulator) -> Counter[str]:
    """What a run asked: each upstream request sent with the token (with jobs, some go out before
    the first token, are answered 401 and sent again), and each ECR call or request. The one
    probe for the referrers API is counted whichever version's digest it asks with."""
    probe = re.compile(r"/referrers/sha256:[0-9a-f]{64}$")
    asked = Counter(f"upstream {method} {probe.sub('/referrers/*', path)}" for method, path in hub.granted)
    asked.update(f"ecr {r.method} {r.action or r.path.split('/')[-2]}" for r in emulator.requests)
    return asked


@pytest.mark.parametrize("args", [("--sync",), ("--check-only",)], ids=["sync", "audit"])
def test_from_an_oci_source_jobs_ask_what_one_job_asks_as_often(
    hub: TokenRegistry, emulator: Emulator, write_spec, run, args: tuple[str, ...]
) -> None:
    # given five versions in an OCI registry with Docker Hub's token flow
    write_spec(oci_spec(hub))
    asked: dict[int, list[Counter[str]]] = {}
    said: dict[int, list[list[str]]] = {}
    for jobs in (1, 4):
        emulator.reset()
        asked[jobs], said[jobs] = [], []
        # when the spec runs into an empty ECR, and again with everything in place (for --sync)
        for _ in range(2):
            emulator.app.requests.clear()
            hub.granted.clear()
            result = run(*args, "-v", f"--ecrmirror-jobs={jobs}", "mirror.yaml")
            asked[jobs].append(_asked_of(hub, emulator))
            said[jobs].append(
                [line.split(" [")[0] for line in result.stdout.lines if "mirror.yaml::" in line]
            )

    # then four jobs, which read ahead of the items, ask what one job asks, and say the same; but
    # for the tag list, which they read first to get the registry's token before the versions' HEADs
    tags = Counter({"upstream GET /v2/library/cache/tags/list?n=1000": 1})
    for one, four in zip(asked[1], asked[4], strict=True):
        assert four - one == (tags if args == ("--check-only",) else Counter())
        assert one - four == Counter()
    assert said[4] == said[1]
