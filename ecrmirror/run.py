"""One run's shared context, handed to every kind of item: options, clients, the inventory, the upstreams.

Nothing here checks or pushes anything: versions.py, repositories.py and replication.py do, each
through the one Run of its process. It is made on first use, so a pytest run without spec files
pays nothing for it. Its clients are made, and their libraries imported, when first asked for:
botocore at the first ECR call, oras-py's registry client at the first push.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from ecrmirror.chart import MAX_CHART_SIZE
from ecrmirror.jobs import IN_FLIGHT_PER_JOB, carrying_job, inline, side_threads
from ecrmirror.manifest_store import ManifestStore
from ecrmirror.once import KeyedLocks, once
from ecrmirror.sources.index import IndexCache

if TYPE_CHECKING:
    import botocore.session

    from ecrmirror.ecr import Ecr
    from ecrmirror.inventory import Inventory
    from ecrmirror.registry import RegistryClient
    from ecrmirror.sources import Source, Sources
    from ecrmirror.sources.oci import OciClient
    from ecrmirror.spec import ChartEntry, Registry
    from ecrmirror.transport import Http, RetryPolicy

T = TypeVar("T")


@dataclass(frozen=True)
class Endpoints:
    """Where to reach ECR; None means AWS's own endpoints (botocore honours AWS_ENDPOINT_URL_ECR)."""

    ecr_api: str | None = None
    registry: str | None = None
    kms: str | None = None  # signing keys (`sign:`); None: botocore honours AWS_ENDPOINT_URL_KMS
    # Set by --offline only: the emulator's keys. `{account}` in the key is each registry's own
    # account: without --offline-account, every registry is reached as an administrator of it.
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None


def aws_session(access_key_id: str | None, secret_access_key: str | None) -> botocore.session.Session:
    """botocore's session (boto3's core, without boto3's import): the standard credential chain,
    or the keys given (the emulator's)."""
    import botocore.session

    session = botocore.session.get_session()
    if access_key_id and secret_access_key:
        session.set_credentials(access_key_id, secret_access_key)
    return session


def _settle(future: Future[Any], work: Callable[[], object]) -> None:
    """Run `work()` into `future`, which others may already wait on."""
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = work()
    except BaseException as exc:  # kept for whoever waits, as an executor keeps it
        future.set_exception(exc)
    else:
        future.set_result(result)


def _default_retry() -> RetryPolicy:
    """transport.DEFAULT_POLICY, imported when an Options is made without a policy."""
    from ecrmirror.transport import DEFAULT_POLICY

    return DEFAULT_POLICY


@dataclass(frozen=True)
class Options:
    """How a run reaches ECR and the upstreams; the plugin fills it from the command line and ini."""

    endpoints: Endpoints = Endpoints()
    retry: RetryPolicy = field(default_factory=_default_retry)
    index_cache: IndexCache = field(default_factory=IndexCache)
    # Where manifests seen in ECR are kept by digest, across runs, so that an audit need not pull
    # what it reads (manifest_store.py); None: this process's memory only.
    manifests: Path | None = None
    max_chart_size: int = MAX_CHART_SIZE
    # Shared by every process of one run (xdist workers), so that registry-wide writes take turns.
    lock_dir: Path | None = None
    # Under xdist: where the workers share what one of them fetched from ECR (share.py).
    shared: Path | None = None
    # Threads for the items' work (--ecrmirror-jobs); with 1, one request at a time.
    jobs: int = 1
    # Connections kept per host: at least one per job (thread), so none waits for another's.
    connections: int = 10
    # Requests in flight to one upstream host at most, however many jobs there are.
    upstream_connections: int = 6
    # Pulls a registry's RateLimit-Remaining (Docker Hub's) must leave before ecrmirror stops pulling.
    pull_reserve: int = 10
    # Seconds a step may spend reading an upstream's answers; None: transport.READ_DEADLINE.
    read_deadline: float | None = None
    # The helm binary that renders charts to find their images (`images.render`); None: from PATH.
    helm: str | None = None


class Run:
    """The state one process of a run shares between its items: each client and source made once."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.workdir = Path(tempfile.mkdtemp(prefix="ecrmirror-"))
        self.locks = KeyedLocks()  # for what is made once, when jobs (threads) ask at the same time
        # Set on Ctrl-C: the jobs' pushes stop before their next upload or tag (registry.py).
        self.interrupted = threading.Event()
        self._side = side_threads(options.jobs)
        self.lock_dir = options.lock_dir or self.workdir
        self.manifest_store = ManifestStore(options.manifests)
        # Registry-wide steps this process has finished (a replication rule merged): done once a run.
        self.settled: set[Hashable] = set()
        self._ecr: dict[tuple[str, ...], Ecr] = {}
        self._registries: dict[tuple[str, ...], RegistryClient] = {}
        self._readers: dict[tuple[str, ...], OciClient] = {}
        self._kms: dict[tuple[str, ...], Any] = {}
        # The run's clients, made on first use (`_made`): http, sources, aws_session, inventory.
        self._clients: dict[str, Any] = {}
        # The run's first requests, started before the items that need their answers (`warm`).
        self._warming: dict[Hashable, Future[Any] | None] = {}
        self._warm_lock = threading.Lock()
        self._warm_threads: ThreadPoolExecutor | None = None
        # botocore's sessions are not thread-safe: their clients are made one at a time (a warm-up
        # and a job may each make one).
        self._making_clients = threading.Lock()
        # What the kinds' modules work out once a process and reuse (a signer, a public key):
        # through `remember`, so that threads asking at once work it out once.
        self.memo: dict[Hashable, Any] = {}
        self._memo_locks = KeyedLocks()

    def _made(self, name: str, make: Callable[[], T]) -> T:
        made: T = once(self._clients, self.locks, name, make)
        return made

    @property
    def http(self) -> Http:
        """Upstream HTTP (requests), with the run's retries and per-host limits."""

        def make() -> Http:
            from ecrmirror.transport import Http

            options = self.options
            return Http(
                options.retry,
                options.upstream_connections,
                options.pull_reserve,
                read_deadline=options.read_deadline,
            )

        return self._made("http", make)

    @property
    def sources(self) -> Sources:
        def make() -> Sources:
            from ecrmirror.sources import Sources

            return Sources(self.http, self.options.index_cache, self.options.max_chart_size)

        return self._made("sources", make)

    @property
    def aws_session(self) -> botocore.session.Session:
        def make() -> botocore.session.Session:
            endpoints = self.options.endpoints
            return aws_session(endpoints.aws_access_key_id, endpoints.aws_secret_access_key)

        return self._made("aws_session", make)

    @property
    def inventory(self) -> Inventory:
        def make() -> Inventory:
            from ecrmirror.inventory import Inventory

            return Inventory(self.ecr, self.options.shared)

        return self._made("inventory", make)

    def alongside(self, work: Callable[..., T], *args: Any) -> Future[T]:
        """Start `work(*args)` on another thread, for the item working now: to overlap two requests
        that do not depend on each other. The caller waits for it before leaving its scratch.
        With one job, it runs now: --ecrmirror-jobs=1 sends one request at a time."""
        if self.options.jobs <= 1:
            return inline(work, *args)
        return self._side.submit(carrying_job(work), *args)

    def warm(self, key: Hashable, work: Callable[[], object]) -> None:
        """Start `work()` (a first request: ECR's listing, an upstream's index) on a thread now,
        before the item that needs its answer runs, so that the run's first requests go out side
        by side; once per key. With one job, nothing starts: the items ask, one at a time.

        `work` fills a cache that the item then reads. What it raises is kept for `warmed`."""
        if self.options.jobs <= 1:
            return
        future: Future[Any] = Future()
        with self._warm_lock:
            if key in self._warming:
                return
            self._warming[key] = future
            if self._warm_threads is None:
                self._warm_threads = ThreadPoolExecutor(
                    max_workers=IN_FLIGHT_PER_JOB * self.options.jobs, thread_name_prefix="ecrmirror-warm"
                )
            threads = self._warm_threads
        # Outside the lock: submitting may start a thread, and waits until it runs, which with
        # the GIL can take a while; the warm-ups already running take the lock to look up others.
        threads.submit(_settle, future, work)

    def warmed(self, key: Hashable) -> None:
        """Wait for the warm-up of `key`, if one is under way. Its error is raised here, once, to
        the first item that needs the answer, as if that item had asked itself (it had: earlier);
        any other asks again, as after any failed request."""
        with self._warm_lock:
            future = self._warming.get(key)
            self._warming[key] = None  # taken: never started again
        if future is not None:
            future.result()

    def warmed_well(self, key: Hashable) -> bool:
        """Whether the warm-up of `key` ended without an error (waiting for it to end); False when
        none was started or it was taken already. Its error stays for `warmed` to raise."""
        with self._warm_lock:
            future = self._warming.get(key)
        if future is None:
            return False
        return future.exception() is None

    def remember(self, key: Hashable, make: Callable[[], T]) -> T:
        """`make()`, once per run and key, however many threads ask for it at the same time."""
        value: T = once(self.memo, self._memo_locks, key, make)
        return value

    def ecr(self, registry: Registry) -> Ecr:
        def make() -> Ecr:
            from ecrmirror.ecr import Ecr

            with self._making_clients:
                return Ecr(
                    registry,
                    self._session(registry),
                    self.options.endpoints.ecr_api,
                    max_attempts=self.options.retry.attempts,
                    connections=self.options.connections,
                    manifest_store=self.manifest_store,
                )

        return once(self._ecr, self.locks, ("ecr", registry.host), make)

    def _session(self, registry: Registry) -> botocore.session.Session:
        key = self.options.endpoints.aws_access_key_id
        if key is None or "{account}" not in key:
            return self.aws_session
        return aws_session(key.format(account=registry.account), self.options.endpoints.aws_secret_access_key)

    def registry_client(self, registry: Registry) -> RegistryClient:
        endpoint = self.options.endpoints.registry or f"https://{registry.host}"

        def make() -> RegistryClient:
            from ecrmirror.registry import RegistryClient

            return RegistryClient(
                endpoint,
                self.ecr(registry).registry_token,
                self.options.retry,
                self.options.connections,
                self.interrupted,
                self.alongside,
                self.manifest_store,
            )

        return once(self._registries, self.locks, ("registry", registry.host), make)

    def kms(self, registry: Registry, region: str) -> Any:
        """AWS KMS in `region`, with the credentials the run reaches `registry` with, and retries."""
        from botocore.config import Config

        config = Config(
            region_name=region,
            retries={"mode": "standard", "max_attempts": self.options.retry.attempts},
            max_pool_connections=self.options.connections,
        )

        def make() -> Any:
            with self._making_clients:
                session = self._session(registry)
                return session.create_client("kms", endpoint_url=self.options.endpoints.kms, config=config)

        return once(self._kms, self.locks, ("kms", registry.account, region), make)

    def registry_reader(self, registry: Registry) -> OciClient:
        """Reads manifests and blobs of an ECR registry (a backfill's source) with its registry token.

        The token lasts ECR's 12 hours from the reader's first use: longer than any one run.
        """

        def reader() -> OciClient:
            from ecrmirror.sources.oci import OciClient
            from ecrmirror.spec import Credentials

            endpoint = urlsplit(self.options.endpoints.registry or f"https://{registry.host}")
            token = self.ecr(registry).registry_token()
            return OciClient(
                endpoint.netloc,
                self.http,
                plain_http=endpoint.scheme == "http",
                credentials=Credentials(username=token.username, password=token.password),
                refused_hint="reading needs ecr:BatchGetImage and ecr:GetDownloadUrlForLayer on the "
                "repository; `pytest --ecrmirror-policy=sync` prints what a sync needs",
                basic_first=True,
            )

        return once(self._readers, self.locks, ("reader", registry.host), reader)

    def source(self, spec_path: Path, chart: ChartEntry) -> Source:
        """The upstream of a chart entry (a local `repo` is relative to its spec)."""
        return self.sources.get(chart.source_location(spec_path), chart.access)

    def scratch(self) -> tempfile.TemporaryDirectory[str]:
        """A directory for one item's downloads, removed when the item is done with it."""
        return tempfile.TemporaryDirectory(dir=self.workdir, prefix="chart-")

    def close(self) -> None:
        if self._warm_threads is not None:
            self._warm_threads.shutdown(wait=True)
        self._side.shutdown(wait=True)
        shutil.rmtree(self.workdir, ignore_errors=True)
