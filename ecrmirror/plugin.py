"""The pytest entry point: thin hooks that hand off to options, items, reporting and the kinds' modules.

PYTEST_DONT_REWRITE: no assertions here for pytest to rewrite, and rewriting warns when the module
is already imported (an in-process run with -p ecrmirror.plugin, next to the entry point).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# Only what every pytest process needs: options and fixtures. The rest (spec reading, items, botocore,
# requests) is imported by the hooks that use it, so that a project's own `pytest` without spec
# files pays almost nothing for the plugin being installed.
from ecrmirror import options
from ecrmirror.emulator.fixtures import (
    MARKER_HELP,
    ecr_emulator,  # noqa: F401 - a fixture, for pytest to find
    ecr_emulator_server,  # noqa: F401 - a fixture, for pytest to find
)

if TYPE_CHECKING:
    from ecrmirror.items import SpecFile
    from ecrmirror.run import Endpoints

REGISTRY_ENDPOINT_ENV = "ECRMIRROR_REGISTRY_ENDPOINT"
_WORKER_EMULATOR = "ecrmirror_emulator_url"
_WORKER_LOCKS = "ecrmirror_lock_dir"
_STATE = pytest.StashKey[dict[str, Any]]()
_COLLECT_SPECS = pytest.StashKey[bool]()
# Set when this process runs ecrmirror (spec files, or --offline): the hooks that every test passes
# through do nothing otherwise.
_ACTIVE = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    sync, check_only = options.mode(config)
    paths_given = config.args_source == pytest.Config.ArgsSource.ARGS
    if (sync or check_only) and not paths_given:
        config.args[:] = [str(options.specs_dir(config))]
    # Plain `pytest` runs the project's own tests: spec files count only when named or asked for.
    config.stash[_COLLECT_SPECS] = paths_given or sync or check_only
    state: dict[str, Any] = {}
    config.stash[_STATE] = state
    if not (config.stash[_COLLECT_SPECS] or config.getoption("offline")):
        return
    import tempfile

    from ecrmirror import redact, reporting
    from ecrmirror.items import RUN_KEY, Runner
    from ecrmirror.jobs import IN_FLIGHT_PER_JOB
    from ecrmirror.run import Options

    config.stash[_ACTIVE] = True
    config.pluginmanager.register(reporting.Totals(), "ecrmirror-totals")
    worker = getattr(config, "workerinput", None)
    xmlpath = config.getoption("xmlpath", None)
    if xmlpath and worker is None:  # as junitxml: the main process (or xdist controller) writes it
        path = Path(os.path.abspath(os.path.expandvars(os.path.expanduser(xmlpath))))
        config.pluginmanager.register(reporting.JunitNames(path), "ecrmirror-junit")
    _freeze_until_cleanup(config)
    state["log_factory"] = redact.install()
    jobs = options.jobs(config)
    endpoints = _offline_endpoints(config, state) if config.getoption("offline") else _endpoints()
    plan_path = config.getoption("ecrmirror_plan")
    if plan_path and worker is None:  # the main process (or xdist controller) sees every report
        from ecrmirror.plan import Heading

        base = config.getoption("ecrmirror_plan_base") or os.environ.get("CI_MERGE_REQUEST_DIFF_BASE_SHA", "")
        where = "the offline emulator" if "emulator_url" in state else _aws_endpoint()
        heading = Heading(sync=sync, where=where, base=base)
        config.pluginmanager.register(
            reporting.PlanWriter(config, config.invocation_params.dir / plan_path, heading), "ecrmirror-plan"
        )
    images_path = config.getoption("ecrmirror_images")
    if images_path and worker is None:
        config.pluginmanager.register(
            reporting.ImageLock(config.invocation_params.dir / images_path), "ecrmirror-images"
        )
    lock_dir = (worker or {}).get(_WORKER_LOCKS)
    if lock_dir is None:  # the main process (or the xdist controller) owns the run's lock directory
        lock_dir = state["lock_dir"] = tempfile.mkdtemp(prefix="ecrmirror-locks-")
    # Under xdist the first worker to need an index or an ECR answer fetches it; the others read it.
    shared = Path(lock_dir) / "shared" if worker is not None else None
    index_cache = options.index_cache(config, shared / "indexes" if shared else None)
    run_options = Options(
        endpoints=endpoints,
        retry=options.retry_policy(config),
        index_cache=index_cache,
        manifests=options.manifest_store(config, index_cache, shared),
        max_chart_size=options.max_chart_size(config),
        lock_dir=Path(lock_dir),
        shared=shared / "ecr" if shared else None,
        jobs=jobs,
        # A job's own requests and those it sends alongside; one job sends one request at a time.
        connections=IN_FLIGHT_PER_JOB * jobs if jobs > 1 else 1,
        upstream_connections=options.upstream_connections(config, jobs),
        pull_reserve=options.pull_reserve(config),
        read_deadline=options.read_deadline(config),
        helm=options.helm(config),
    )
    config.stash[RUN_KEY] = Runner(sync=sync, options=run_options)
    if jobs > 1 and not config.getoption("ecrmirror_policy"):
        from ecrmirror import scheduling

        config.pluginmanager.register(scheduling.JobsHooks(jobs), "ecrmirror-jobs")
    config.pluginmanager.register(_XdistHooks(state), "ecrmirror-xdist")  # inert without xdist


def _endpoints() -> Endpoints:
    from ecrmirror.run import Endpoints

    return Endpoints(registry=os.environ.get(REGISTRY_ENDPOINT_ENV) or None)


def _offline_endpoints(config: pytest.Config, state: dict[str, Any]) -> Endpoints:
    """The run's emulator: started here, or the xdist controller's, handed to this worker."""
    # Imported only here: the emulator's werkzeug and moto would slow every worker's start.
    from ecrmirror.emulator.iam import ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY
    from ecrmirror.emulator.server import Emulator
    from ecrmirror.run import Endpoints

    account = options.offline_account(config)
    url = getattr(config, "workerinput", {}).get(_WORKER_EMULATOR)
    if url is None:  # the main process (or the xdist controller) owns the emulator
        emulator = Emulator().start()
        state["emulator"] = emulator
        url = emulator.url
    state["emulator_url"] = url
    state["offline_account"] = account
    # The emulator's key for one account; `{account}` (each registry's own) without --offline-account.
    access_key = f"{ADMIN_ACCESS_KEY}-{account or '{account}'}"
    return Endpoints(
        ecr_api=url,
        registry=url,
        kms=url,
        aws_access_key_id=access_key,
        aws_secret_access_key=ADMIN_SECRET_KEY,
    )


class _XdistHooks:
    """Hands the controller's emulator and lock directory to each xdist worker, so all workers
    share one ECR and take turns at registry-wide writes."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        if "emulator_url" in self.state:
            node.workerinput[_WORKER_EMULATOR] = self.state["emulator_url"]
        if "lock_dir" in self.state:
            node.workerinput[_WORKER_LOCKS] = self.state["lock_dir"]


def pytest_unconfigure(config: pytest.Config) -> None:
    if not config.stash.get(_ACTIVE, False):
        return
    import shutil

    from ecrmirror import redact
    from ecrmirror.items import RUN_KEY

    state = config.stash[_STATE]
    if RUN_KEY in config.stash:
        config.stash[RUN_KEY].close()
    if "emulator" in state:
        state["emulator"].stop()
    if "lock_dir" in state:
        shutil.rmtree(state["lock_dir"], ignore_errors=True)
    if "log_factory" in state:
        redact.uninstall(state["log_factory"])
    _freeze_more()  # before pytest's own pytest_unconfigure: this hook runs first


def pytest_report_header(config: pytest.Config) -> str | None:
    if not config.stash.get(_ACTIVE, False):
        return None
    from ecrmirror.items import RUN_KEY

    if RUN_KEY not in config.stash:
        return None
    state = config.stash[_STATE]
    if config.getoption("ecrmirror_policy"):
        return f"ecrmirror: the IAM policy for --ecrmirror-policy={config.getoption('ecrmirror_policy')}"
    mode = "sync" if config.stash[RUN_KEY].sync else "audit (read-only)"
    emulator = state.get("emulator_url")
    where = f"the offline emulator at {emulator}" if emulator else _aws_endpoint()
    if emulator:
        account = state.get("offline_account")
        where += f", as account {account}" if account else ", each registry as its own account"
    return f"ecrmirror: spec files run as {mode} against {where}"


def _aws_endpoint() -> str:
    return os.environ.get("AWS_ENDPOINT_URL_ECR") or os.environ.get("AWS_ENDPOINT_URL") or "AWS"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> SpecFile | None:
    config = parent.config
    if file_path.suffix not in (".yaml", ".yml") or not config.stash.get(_COLLECT_SPECS, False):
        return None
    # In a directory, only files with a top-level `charts` are specs; a file named on the command
    # line is one, so that an empty or unreadable spec says so instead of being skipped.
    from ecrmirror.items import SpecFile
    from ecrmirror.spec import looks_like_spec

    named = file_path.resolve() in _named_files(config)
    if named or looks_like_spec(file_path):
        return SpecFile.from_parent(parent, path=file_path)
    return None


def _named_files(config: pytest.Config) -> set[Path]:
    base = config.invocation_params.dir
    return {(base / arg.split("::")[0]).resolve() for arg in config.args}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    explicit = config.getoption("sync") or config.getoption("check_only")
    if explicit and config.stash.get(_ACTIVE, False) and config.pluginmanager.has_plugin("dsession"):
        # The xdist controller collects nothing, and a worker cannot end the run with a usage
        # error: check before the workers start, so the run says it once.
        _require_credentials(config)
        _freeze_more()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """--ecrmirror-shard=K/N: keep the K-th share of our items; the project's own tests stay."""
    shard = options.shard(config)
    if shard is None:
        return
    from ecrmirror import shards

    selected = shards.share(items, _shard_key, *shard)
    deselected = [item for item in items if item not in selected]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


def _shard_key(item: pytest.Item) -> str | None:
    from ecrmirror.items import (
        ChartVersionItem,
        ImageItem,
        ImagesNotFoundItem,
        NotMirroredItem,
        ReplicationItem,
        RepositoryItem,
    )

    if isinstance(item, ChartVersionItem | RepositoryItem | ReplicationItem | ImageItem | ImagesNotFoundItem):
        return item.shard_key
    if isinstance(item, NotMirroredItem):
        return f"not mirrored {item.name}"  # one share says it, not every share
    return None


def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    if config.getoption("ecrmirror_policy") or not config.stash.get(_ACTIVE, False):
        return
    from ecrmirror import repositories, versions
    from ecrmirror.items import RUN_KEY, ChartVersionItem, ImageItem, ReplicationItem, RepositoryItem

    planned = [item for item in session.items if isinstance(item, ChartVersionItem)]
    repository_items = [item for item in session.items if isinstance(item, RepositoryItem)]
    if not (planned or repository_items or any(isinstance(i, ReplicationItem) for i in session.items)):
        return
    if config.option.collectonly:
        return
    if "emulator_url" in config.stash[_STATE]:
        _declare_kms_keys(config.stash[_STATE]["emulator_url"], session.items)
    run = config.stash[RUN_KEY].run
    versions.announce(run, (item.planned for item in planned))
    image_items = [item for item in session.items if isinstance(item, ImageItem)]
    if image_items:  # oras-py and the OCI client, for runs with images only
        from ecrmirror.images import mirror as images

        images.announce(run, (item.planned for item in image_items))
    for item in repository_items:
        repositories.announce(run, item.repository_target, [item.repository])
    # Spec errors first: they stop the run anyway, and say more than missing credentials.
    # On an xdist worker, the first item reports missing credentials and stops the worker.
    if not session.testsfailed and not hasattr(config, "workerinput"):
        _require_credentials(config)
        # With jobs, the run's first requests start now, side by side: each Helm repository's
        # index, and ECR's description of the repositories (whose client takes longer to make).
        # A worker runs only what it is sent: it starts nothing ahead.
        # The upstreams first: they wait for nothing. Then the description, before the warm-ups
        # of what ECR holds, which wait for it.
        planned_versions = [item.planned for item in planned]
        versions.read_upstreams_ahead(run, planned_versions)
        for item in repository_items:
            repositories.warm_up(run, item.repository_target, item.repository)
        versions.warm_up(run, planned_versions, sync=config.stash[RUN_KEY].sync)
        if image_items:
            images.warm_up(run, (item.planned for item in image_items), sync=config.stash[RUN_KEY].sync)


def _freeze_until_cleanup(config: pytest.Config) -> None:
    """What is alive now (pytest, the plugin's modules) lives until the run ends: out of the
    collector's way, the collections that imports and requests set off, and pytest's gc.collect()
    calls at the end (to find unraisable exceptions), walk only what the run makes. Unfrozen by a
    cleanup registered before pytest's own (this hook runs first; cleanups run last in, first out),
    so it runs after their collections, and a process running pytest again frees what this run held."""
    import gc

    gc.freeze()
    config.add_cleanup(gc.unfreeze)


def _freeze_more() -> None:
    """Into the frozen generation with the rest: once credentials are checked (botocore's modules
    and session), and once the run is closed (its clients and botocore's models, which the
    collections at the end would otherwise walk, and found alive)."""
    import gc

    gc.freeze()


def _declare_kms_keys(emulator_url: str, items: list[pytest.Item]) -> None:
    """--offline: the KMS keys the specs name are the user's, which the emulator cannot see: the
    repositories' keys are taken as existing, and each signing alias gets a key of its own."""
    from ecrmirror.emulator.kms import declare_keys, declare_signing_keys
    from ecrmirror.items import RepositoryItem

    targets = [item.spec.target for item in items if isinstance(item, RepositoryItem)]
    keys = {target.repository.kms_key for target in targets if target.repository.kms_key}
    if keys:
        declare_keys(emulator_url, (key for key in keys if key))
    aliases = {
        (target.registry.account, target.registry.region, target.sign.kms_key)
        for target in targets
        if target.sign is not None and target.sign.kms_key.startswith("alias/")
    }
    if aliases:
        declare_signing_keys(emulator_url, aliases)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    """--ecrmirror-policy: print the policy for the collected specs instead of running them."""
    mode = session.config.getoption("ecrmirror_policy")
    if not mode:
        return None
    import json

    from ecrmirror import policy
    from ecrmirror.items import RepositoryItem

    if session.testsfailed:  # a spec did not load: a policy without it would be wrong
        raise session.Interrupted(f"{session.testsfailed} spec(s) could not be collected: no policy printed")
    specs = {item.spec.path: item.spec for item in session.items if isinstance(item, RepositoryItem)}
    if not specs:
        raise pytest.UsageError("--ecrmirror-policy found no spec files: pass spec paths, e.g. pytest specs/")
    text = json.dumps(policy.policy_document(specs.values(), mode), indent=2)
    session.config.get_terminal_writer().line(text)
    output = session.config.getoption("ecrmirror_policy_file")
    if output:
        Path(output).write_text(text + "\n", encoding="utf-8")
    return True


def _require_credentials(config: pytest.Config) -> None:
    if config.option.collectonly or "emulator_url" in config.stash[_STATE]:
        return
    from ecrmirror.ecr import require_credentials
    from ecrmirror.errors import CredentialsError
    from ecrmirror.items import RUN_KEY

    try:
        require_credentials(config.stash[RUN_KEY].run.aws_session)
    except CredentialsError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    """How each version constraint resolved, also under --collect-only."""
    if not config.stash.get(_ACTIVE, False):
        return []
    from ecrmirror import reporting

    return reporting.resolved_constraints(items)


# Old-style wrappers (pytest >= 7.4 has them; `wrapper=True` needs pytest 8): every report passes
# through reporting.clean before anything shows or sends it.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    if item.config.stash.get(_ACTIVE, False):
        from ecrmirror import reporting

        reporting.clean(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    outcome = yield
    if collector.config.stash.get(_ACTIVE, False):
        from ecrmirror import reporting

        reporting.clean(outcome.get_result())


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, Any] | None:
    if not config.stash.get(_ACTIVE, False):
        return None
    from ecrmirror import reporting

    return reporting.teststatus(report)
