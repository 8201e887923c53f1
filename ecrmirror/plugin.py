"""The pytest entry point: options, spec collection, outcome words and the run's totals.

PYTEST_DONT_REWRITE: no assertions here for pytest to rewrite, and rewriting warns when the module
is already imported (an in-process run with -p ecrmirror.plugin, next to the entry point).
"""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ecrmirror import policy, redact, repositories, versions
from ecrmirror.ecr import require_credentials
from ecrmirror.emulator.fixtures import ecr_emulator, ecr_emulator_server  # noqa: F401 - fixtures
from ecrmirror.errors import CredentialsMissing
from ecrmirror.items import (
    RUN_KEY,
    ChartVersionItem,
    ReplicationItem,
    RepositoryItem,
    Runner,
    SpecFile,
    report_bytes,
    report_kind,
    report_notes,
    report_outcome,
    report_pulled_in_by,
    report_range,
)
from ecrmirror.outcome import Outcome
from ecrmirror.run import Endpoints, Options
from ecrmirror.sources import IndexCache
from ecrmirror.spec import looks_like_spec
from ecrmirror.transport import RetryPolicy

REGISTRY_ENDPOINT_ENV = "ECRMIRROR_REGISTRY_ENDPOINT"
_WORKER_EMULATOR = "ecrmirror_emulator_url"
_WORKER_LOCKS = "ecrmirror_lock_dir"


@dataclass(eq=False)  # a plugin object must stay hashable
class _Totals:
    """Counts outcomes from reports, so it also works on an xdist controller."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    bytes_uploaded: int = 0
    notes: list[str] = field(default_factory=list)
    ranges: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (spec, range) -> versions
    dependencies: list[str] = field(default_factory=list)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        kind = report_kind(report)
        if kind is None:
            return  # not one of ours
        # One count per item: its call report, or the setup report if setup already failed.
        if report.when == "call" or (report.when == "setup" and not report.passed):
            outcome = report_outcome(report)
            word = outcome.value.lower() if outcome is not None and outcome.ok else "failed"
            counts = self.counts.setdefault(kind, {})
            counts[word] = counts.get(word, 0) + 1
            self.bytes_uploaded += report_bytes(report)
            self.notes.extend(f"{report.nodeid}: {note}" for note in report_notes(report))
            pulled_in_by = report_pulled_in_by(report)
            if pulled_in_by is not None:
                self.dependencies.append(f"{report.nodeid.split('::', 1)[1]} (dependency of {pulled_in_by})")
            version_range = report_range(report)
            if version_range is not None:
                spec = report.nodeid.split("::")[0]
                self.ranges.setdefault((spec, version_range), []).append(report.nodeid.rsplit("::", 1)[1])

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.counts:
            return
        terminalreporter.write_sep("-", "ecrmirror")
        for kind, label in (("repository", "repositories"), ("replication", "replication rules")):
            if kind in self.counts:
                terminalreporter.write_line(f"{_count_line(self.counts[kind], label)}")
        versions = self.counts.get("version")
        if versions:
            line = _count_line(versions, "versions", ("pushed", "present"))
            terminalreporter.write_line(f"{line}; {self.bytes_uploaded} bytes uploaded")
        for (spec, version_range), selected in self.ranges.items():
            terminalreporter.write_line(f"{spec}: {version_range} resolved to {', '.join(selected)}")
        for dependency in self.dependencies:
            terminalreporter.write_line(f"pulled in: {dependency}")
        for note in self.notes:
            terminalreporter.write_line(f"note: {note}")


def _count_line(counts: dict[str, int], label: str, always: tuple[str, ...] = ()) -> str:
    words = [w for w in ("pushed", "created", "updated", "present") if w in always or counts.get(w)]
    parts = [f"{counts.get(w, 0)} {w}" for w in words] + [f"{counts.get('failed', 0)} failed"]
    return f"{sum(counts.values())} {label}: {', '.join(parts)}"


_STATE = pytest.StashKey[dict[str, Any]]()
_COLLECT_SPECS = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ecrmirror", "mirror Helm charts into Amazon ECR")
    group.addoption(
        "--sync",
        action="store_true",
        default=False,
        help="Push every chart version that ECR lacks; never overwrite or delete",
    )
    group.addoption(
        "--check-only",
        action="store_true",
        default=False,
        help="Audit only (the default for spec files): fail versions that are "
        "missing from ECR or differ from upstream",
    )
    group.addoption(
        "--offline",
        action="store_true",
        default=False,
        help="Use a local ECR emulator instead of AWS; needs no credentials",
    )
    group.addoption(
        "--ecrmirror-policy",
        choices=policy.MODES,
        default=None,
        help="Print the least-privilege IAM policy that --sync (or the audit) of the "
        "collected specs needs, as JSON, and run nothing",
    )
    group.addoption(
        "--ecrmirror-policy-file",
        metavar="PATH",
        default=None,
        help="With --ecrmirror-policy, also write the policy to PATH (only the JSON, for CI artifacts)",
    )
    group.addoption(
        "--ecrmirror-retries",
        type=int,
        default=None,
        metavar="N",
        help="Retries of a transient failure (connection, 408, 429, 5xx) per request or upload "
        "step, with exponential backoff (default: ini ecrmirror_retries, else 4)",
    )
    group.addoption(
        "--ecrmirror-shard",
        default=None,
        metavar="K/N",
        help="Run only the K-th of N shares of the spec items (1-based, as GitLab's "
        "CI_NODE_INDEX/CI_NODE_TOTAL), whole repositories at a time",
    )
    group.addoption(
        "--ecrmirror-cache-dir",
        default=None,
        metavar="PATH",
        help="Keep parsed repository indexes here across runs (a CI cache), revalidated with "
        "conditional GETs (default: ini ecrmirror_cache_dir, else none)",
    )
    group.addoption(
        "--ecrmirror-max-chart-size",
        default=None,
        metavar="SIZE",
        help="Refuse a chart that decompresses to more than SIZE (bytes, or with KiB/MiB/GiB) "
        "(default: ini ecrmirror_max_chart_size, else helm's 100MiB)",
    )
    parser.addini("ecrmirror_cache_dir", default="", help="Directory for parsed indexes kept across runs")
    parser.addini(
        "ecrmirror_max_chart_size",
        default="100MiB",
        help="The biggest chart (decompressed) ecrmirror mirrors; helm's loader refuses more than 100MiB",
    )
    parser.addini(
        "ecrmirror_retries", default="4", help="Retries of a transient failure per step (default 4)"
    )
    parser.addini(
        "ecrmirror_retry_backoff",
        default="0.5",
        help="Seconds before the first retry, doubled for each next one, with jitter (default 0.5)",
    )
    parser.addini(
        "ecrmirror_specs",
        default="specs",
        help="Directory of mirror specs used by --sync/--check-only when no path is given",
    )


def pytest_configure(config: pytest.Config) -> None:
    sync, check_only = config.getoption("sync"), config.getoption("check_only")
    if config.getoption("ecrmirror_policy"):
        if sync or check_only:
            raise pytest.UsageError(
                "--ecrmirror-policy prints a policy and runs nothing: leave out --sync and --check-only "
                "(--ecrmirror-policy=sync prints what --sync needs, =audit what --check-only needs)"
            )
        check_only = True  # collects the specs like an audit would, and then runs nothing
    if sync and check_only:
        raise pytest.UsageError(
            "--sync and --check-only exclude each other: --sync pushes what "
            "is missing, --check-only only audits. Pick one."
        )
    if config.getoption("ecrmirror_shard"):
        _parse_shard(config.getoption("ecrmirror_shard"))  # a bad value is a usage error up front
    paths_given = config.args_source == pytest.Config.ArgsSource.ARGS
    if (sync or check_only) and not paths_given:
        config.args[:] = [str(_specs_dir(config))]
    # Plain `pytest` runs the project's own tests: spec files count only when named or asked for.
    config.stash[_COLLECT_SPECS] = paths_given or sync or check_only
    active = config.stash[_COLLECT_SPECS] or config.getoption("offline")
    state: dict[str, Any] = {}
    config.stash[_STATE] = state
    if not active:
        return
    config.pluginmanager.register(_Totals(), "ecrmirror-totals")
    if hasattr(config, "workerinput"):
        # An xdist worker lives for this one run, and what it has loaded by now (pytest, boto3's
        # models, requests) lives as long as it does: out of the collector's way, pytest's
        # gc.collect() calls at exit cost each worker ~0.1 s of CPU less. (Not in a process that
        # may run pytest again, where frozen garbage would never be freed.)
        gc.freeze()
    state["log_factory"] = redact.install()
    endpoints = Endpoints(registry=os.environ.get(REGISTRY_ENDPOINT_ENV) or None)
    if config.getoption("offline"):
        # Imported only here: the emulator's werkzeug and moto would slow every worker's start.
        from ecrmirror.emulator.server import FAKE_ACCESS_KEY, FAKE_SECRET_KEY, Emulator

        url = getattr(config, "workerinput", {}).get(_WORKER_EMULATOR)
        if url is None:  # the main process (or the xdist controller) owns the emulator
            emulator = Emulator().start()
            state["emulator"] = emulator
            url = emulator.url
        state["emulator_url"] = url
        endpoints = Endpoints(
            ecr_api=url,
            registry=url,
            aws_access_key_id=FAKE_ACCESS_KEY,
            aws_secret_access_key=FAKE_SECRET_KEY,
        )
    lock_dir = getattr(config, "workerinput", {}).get(_WORKER_LOCKS)
    if lock_dir is None:  # the main process (or the xdist controller) owns the run's lock directory
        lock_dir = state["lock_dir"] = tempfile.mkdtemp(prefix="ecrmirror-locks-")
    option, ini = config.getoption("ecrmirror_cache_dir"), str(config.getini("ecrmirror_cache_dir") or "")
    keep = (config.invocation_params.dir / option) if option else (config.rootpath / ini) if ini else None
    # Under xdist the first worker to need an index or an ECR answer fetches it; the others read it.
    shared = Path(lock_dir) / "shared" if hasattr(config, "workerinput") else None
    index_cache = IndexCache(
        shared=shared / "indexes" if shared else None, keep=keep.resolve() if keep else None
    )
    options = Options(
        endpoints=endpoints,
        retry=_retry_policy(config),
        index_cache=index_cache,
        max_chart_size=_max_chart_size(config),
        lock_dir=Path(lock_dir),
        shared=shared / "ecr" if shared else None,
    )
    config.stash[RUN_KEY] = Runner(sync=bool(sync), options=options)
    config.pluginmanager.register(_XdistHooks(state), "ecrmirror-xdist")  # inert without xdist


def _retry_policy(config: pytest.Config) -> RetryPolicy:
    """--ecrmirror-retries, else the ini keys, else the defaults."""
    option = config.getoption("ecrmirror_retries")
    try:
        retries = int(option if option is not None else config.getini("ecrmirror_retries"))
        backoff = float(str(config.getini("ecrmirror_retry_backoff")))
    except ValueError:
        raise pytest.UsageError(
            "ecrmirror_retries must be a whole number and ecrmirror_retry_backoff a number of seconds"
        ) from None
    if retries < 0 or backoff < 0:
        raise pytest.UsageError("--ecrmirror-retries and ecrmirror_retry_backoff cannot be negative")
    return RetryPolicy(attempts=retries + 1, backoff=backoff)


_SIZE_UNITS = {"": 1, "B": 1, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3}


def _max_chart_size(config: pytest.Config) -> int:
    """--ecrmirror-max-chart-size, else the ini key: bytes, or a number with KiB, MiB or GiB."""
    value = config.getoption("ecrmirror_max_chart_size") or str(config.getini("ecrmirror_max_chart_size"))
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]iB|B)?\s*", value, re.IGNORECASE)
    if not match or int(match.group(1)) == 0:
        raise pytest.UsageError(
            f"ecrmirror_max_chart_size {value!r} is not a size: give bytes, or a number with KiB, MiB "
            "or GiB (helm's limit, the default, is 100MiB)"
        )
    return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").upper()]


def _specs_dir(config: pytest.Config) -> Path:
    value = str(config.getini("ecrmirror_specs"))
    directory = Path(value) if Path(value).is_absolute() else config.rootpath / value
    if not directory.is_dir():
        raise pytest.UsageError(
            f"the specs directory {directory} does not exist. Pass spec paths "
            "(pytest path/to/specs --sync), or set ecrmirror_specs in your pytest configuration."
        )
    return directory


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
    state = config.stash.get(_STATE, {})
    if RUN_KEY in config.stash:
        config.stash[RUN_KEY].close()
    if "emulator" in state:
        state["emulator"].stop()
    if "lock_dir" in state:
        shutil.rmtree(state["lock_dir"], ignore_errors=True)
    if "log_factory" in state:
        redact.uninstall(state["log_factory"])


def pytest_report_header(config: pytest.Config) -> str | None:
    if RUN_KEY not in config.stash:
        return None
    state = config.stash[_STATE]
    if config.getoption("ecrmirror_policy"):
        return f"ecrmirror: the IAM policy for --ecrmirror-policy={config.getoption('ecrmirror_policy')}"
    mode = "sync" if config.stash[RUN_KEY].sync else "audit (read-only)"
    if "emulator_url" in state:
        where = f"the offline emulator at {state['emulator_url']}"
    else:
        where = os.environ.get("AWS_ENDPOINT_URL_ECR") or os.environ.get("AWS_ENDPOINT_URL") or "AWS"
    return f"ecrmirror: spec files run as {mode} against {where}"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> SpecFile | None:
    config = parent.config
    if file_path.suffix not in (".yaml", ".yml") or not config.stash.get(_COLLECT_SPECS, False):
        return None
    # In a directory, only files with a top-level `charts` are specs; a file named on the command
    # line is one, so that an empty or unreadable spec says so instead of being skipped.
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
    if explicit and RUN_KEY in config.stash and config.pluginmanager.has_plugin("dsession"):
        # The xdist controller collects nothing, and a worker cannot end the run with a usage
        # error: check before the workers start, so the run says it once.
        _require_credentials(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """--ecrmirror-shard=K/N: keep the K-th share of our items; the project's own tests stay."""
    value = config.getoption("ecrmirror_shard")
    if not value:
        return
    index, total = _parse_shard(value)
    groups: dict[str, list[pytest.Item]] = {}
    for item in items:
        key = _shard_key(item)
        if key is not None:
            groups.setdefault(key, []).append(item)
    keep = set(shard_of(groups, total)[index - 1])
    selected = [item for item in items if _shard_key(item) is None or _shard_key(item) in keep]
    deselected = [item for item in items if item not in selected]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


def _parse_shard(value: str) -> tuple[int, int]:
    index, _, total = value.partition("/")
    if not (index.isdigit() and total.isdigit() and 1 <= int(index) <= int(total)):
        raise pytest.UsageError(
            f"--ecrmirror-shard={value}: write K/N with 1 <= K <= N, e.g. "
            "--ecrmirror-shard=$CI_NODE_INDEX/$CI_NODE_TOTAL"
        )
    return int(index), int(total)


def _shard_key(item: pytest.Item) -> str | None:
    """Items of one repository share a key, so a shard holds whole repositories (and their
    BatchGetImage batches stay whole)."""
    if isinstance(item, ChartVersionItem):
        return f"{item.planned.target.registry.host}/{item.planned.repository}"
    if isinstance(item, RepositoryItem):
        return f"{item.spec.target.registry.host}/{item.repository}"
    if isinstance(item, ReplicationItem):
        return f"replication {item.spec.path}"
    return None


def shard_of(groups: dict[str, list[pytest.Item]], total: int) -> list[list[str]]:
    """Deal the groups to `total` shards, biggest first to the lightest shard, ties by key: every
    job computes the same split from the same specs."""
    shards: list[list[str]] = [[] for _ in range(total)]
    load = [0] * total
    for key in sorted(groups, key=lambda k: (-len(groups[k]), k)):
        lightest = min(range(total), key=lambda n: (load[n], n))
        shards[lightest].append(key)
        load[lightest] += len(groups[key])
    return shards


def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    if config.getoption("ecrmirror_policy"):
        return
    planned = [item for item in session.items if isinstance(item, ChartVersionItem)]
    repository_items = [item for item in session.items if isinstance(item, RepositoryItem)]
    if not (planned or repository_items or any(isinstance(i, ReplicationItem) for i in session.items)):
        return
    if config.option.collectonly:
        return
    run = config.stash[RUN_KEY].run
    versions.announce(run, (item.planned for item in planned))
    for item in repository_items:
        repositories.announce(run, item.spec.target, [item.repository])
    # Spec errors first: they stop the run anyway, and say more than missing credentials.
    # On an xdist worker, the first item reports missing credentials and stops the worker.
    if not session.testsfailed and not hasattr(config, "workerinput"):
        _require_credentials(config)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    """--ecrmirror-policy: print the policy for the collected specs instead of running them."""
    mode = session.config.getoption("ecrmirror_policy")
    if not mode:
        return None
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
    try:
        require_credentials(config.stash[RUN_KEY].run.boto_session)
    except CredentialsMissing as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    """How each version constraint resolved, also under --collect-only."""
    resolved: dict[tuple[str, str], list[str]] = {}
    for item in items:
        version_range = item.planned.chart.range if isinstance(item, ChartVersionItem) else None
        if isinstance(item, ChartVersionItem) and version_range is not None:
            chart = item.planned.chart
            key = (item.nodeid.split("::")[0], f"{chart.name} {version_range.describe()}")
            resolved.setdefault(key, []).append(item.planned.version.version)
    return [f"ecrmirror: {spec}: {what} resolves to {', '.join(v)}" for (spec, what), v in resolved.items()]


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, Any] | None:
    if report.when != "call":
        return None
    outcome = report_outcome(report)
    if outcome is None:
        return None
    if outcome.ok:
        letter = "P" if outcome is Outcome.PUSHED else "."
        return "passed", letter, (outcome.value, {"green": True})
    return "failed", "F", (outcome.value, {"red": True})
