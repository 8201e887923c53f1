"""ecrmirror's command-line options and ini keys: declared in one group, resolved command line > ini >
default, and a bad value is a pytest.UsageError that names the flag."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ecrmirror import policy

if TYPE_CHECKING:
    from ecrmirror.sources.index import IndexCache
    from ecrmirror.transport import RetryPolicy

# transport.READ_DEADLINE, for the help texts: every pytest process reads them, and importing
# transport (requests) would cost each one ~40 ms. tests/test_startup.py holds the two equal.
READ_DEADLINE = 300.0

# Threads per process, from benchmarks/concurrency.py (the README's "Jobs" quotes it): on 2 cores
# 8 jobs sync 200 versions through 20 ms of latency within 1.25x of the CPU floor, so more would
# only wait for CPU; against AWS, more concurrent uploads meet ECR's per-action rate quotas.
DEFAULT_JOBS = 8
# Requests in flight to one upstream host: a polite few (skopeo copies 6 layers at a time), or with
# jobs, as many as the jobs send at once (jobs.IN_FLIGHT_PER_JOB each), as that many skopeo copies
# side by side would.
DEFAULT_UPSTREAM_CONNECTIONS = 6
DEFAULT_PULL_RESERVE = 10


def add_options(parser: pytest.Parser) -> None:
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
        "--offline-account",
        default=None,
        metavar="ACCOUNT",
        help="With --offline, act as this AWS account (an id, or an IAM ARN of it such as the sync "
        "role's), as your credentials would: another account's registry then needs its repository "
        "policy, as in AWS (default: ini ecrmirror_offline_account, else each registry as its own)",
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
        "--ecrmirror-plan",
        metavar="PATH",
        default=None,
        help="Write a Markdown plan of the run to PATH: per spec, what was (or would be) pushed, "
        "created and changed, failures with their reason, and what a merge request adds or removes",
    )
    group.addoption(
        "--ecrmirror-images",
        metavar="PATH",
        default=None,
        help="Write a lock (JSON) of every image of the run to PATH: upstream reference, digest, each "
        "platform's digest, ECR reference, the chart versions that run it; and beside it, per chart "
        "version, a values override that points its images at ECR",
    )
    group.addoption(
        "--ecrmirror-plan-base",
        metavar="REV",
        default=None,
        help="With --ecrmirror-plan, compare the specs with this git revision "
        "(default: $CI_MERGE_REQUEST_DIFF_BASE_SHA in a GitLab merge request pipeline)",
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
    group.addoption(
        "--ecrmirror-jobs",
        type=int,
        default=None,
        metavar="N",
        help="Do the items' network work on N threads in this process (per xdist worker), reported "
        f"one item at a time, in order (default: ini ecrmirror_jobs, else {DEFAULT_JOBS})",
    )
    group.addoption(
        "--ecrmirror-upstream-connections",
        type=int,
        default=None,
        metavar="N",
        help="At most N requests in flight to one upstream host, however many jobs (default: ini "
        f"ecrmirror_upstream_connections, else {DEFAULT_UPSTREAM_CONNECTIONS} or 6 per job, the more)",
    )
    group.addoption(
        "--ecrmirror-upstream-read-deadline",
        default=None,
        metavar="SECONDS",
        help="Stop a step reading an upstream's answers (index, archive, manifest, blob, tag list, "
        "token) after SECONDS, however slowly they come "
        f"(default: ini ecrmirror_upstream_read_deadline, else {int(READ_DEADLINE)})",
    )
    group.addoption(
        "--ecrmirror-var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="A variable for ${NAME} in specs and GitOps manifests (Flux's post-build substitution), "
        "over the environment's; repeat for more",
    )
    group.addoption(
        "--ecrmirror-helm",
        default=None,
        metavar="PATH",
        help="The helm binary that renders charts to find their images, for images.render "
        "(default: ini ecrmirror_helm, else helm on PATH)",
    )
    parser.addini("ecrmirror_helm", default="", help="The helm binary that renders charts (images.render)")
    parser.addini("ecrmirror_jobs", default=str(DEFAULT_JOBS), help="Threads for the items' network work")
    parser.addini(
        "ecrmirror_upstream_read_deadline",
        default="",
        help=f"Seconds a step may spend reading an upstream's answers, however slowly they come "
        f"(default {int(READ_DEADLINE)})",
    )
    parser.addini(
        "ecrmirror_upstream_connections",
        default="",
        help=f"Requests in flight to one upstream host at most (default {DEFAULT_UPSTREAM_CONNECTIONS} "
        "or 6 per job, the more)",
    )
    parser.addini(
        "ecrmirror_upstream_pull_reserve",
        default=str(DEFAULT_PULL_RESERVE),
        help="Stop starting pulls from a registry whose RateLimit-Remaining (Docker Hub's) falls "
        "below this many",
    )
    parser.addini(
        "ecrmirror_offline_account",
        default="",
        help="The AWS account --offline acts as (an id, or an IAM ARN of it)",
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


def mode(config: pytest.Config) -> tuple[bool, bool]:
    """(sync, check_only) as the options ask, after refusing combinations that make no sense."""
    sync, check_only = bool(config.getoption("sync")), bool(config.getoption("check_only"))
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
    shard(config)  # a bad value is a usage error up front
    return sync, check_only


_ACCOUNT = re.compile(r"^(?:\d{12}|arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:(\d{12}):.+)$")


def offline_account(config: pytest.Config) -> str | None:
    """--offline-account, else the ini key: the 12-digit account, also when given as an ARN."""
    value = (config.getoption("offline_account") or str(config.getini("ecrmirror_offline_account"))).strip()
    if not value:
        return None
    match = _ACCOUNT.match(value)
    if match is None:
        raise pytest.UsageError(
            f"--offline-account {value!r} is not an AWS account: give its 12-digit id, or an IAM ARN "
            "of it (arn:aws:iam::123456789012:role/ecrmirror-sync)"
        )
    return match.group(1) or value


def index_cache(config: pytest.Config, shared: Path | None) -> IndexCache:
    """--ecrmirror-cache-dir (relative to the invocation), else ini ecrmirror_cache_dir (to the rootdir)."""
    option, ini = config.getoption("ecrmirror_cache_dir"), str(config.getini("ecrmirror_cache_dir") or "")
    keep = (config.invocation_params.dir / option) if option else (config.rootpath / ini) if ini else None
    if keep is not None:
        _require_private(keep.resolve(), "--ecrmirror-cache-dir" if option else "ini ecrmirror_cache_dir")
    from ecrmirror.sources.index import IndexCache

    return IndexCache(shared=shared, keep=keep.resolve() if keep else None)


def manifest_store(config: pytest.Config, index_cache: IndexCache, shared: Path | None) -> Path | None:
    """Where the manifests ECR holds are kept by digest, so that audits do not pull them
    (manifest_store.py): beside the kept indexes, else in pytest's cache directory (which lasts
    across runs unless `-p no:cacheprovider`), else this run's shared directory."""
    if index_cache.keep is not None:
        return index_cache.keep / "manifests"
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("ecrmirror-manifests"))
    return shared / "manifests" if shared else None


def _require_private(directory: Path, flag: str) -> None:
    """A kept index decides which archive digests a sync accepts, so whoever can write the cache
    could make ecrmirror push content it did not check: the directory and what it holds must be
    this user's alone (not writable by group or others). A directory not made yet is made so."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    for path in (directory, *(sorted(directory.iterdir()) if directory.is_dir() else ())):
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        problem = ""
        if stat.S_ISLNK(info.st_mode):
            problem = "is a symbolic link"
        elif uid is not None and info.st_uid != uid:
            problem = f"belongs to user id {info.st_uid}, not to this run's ({uid})"
        elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            problem = f"can be written by others (mode {stat.filemode(info.st_mode)})"
        if problem:
            raise pytest.UsageError(
                f"{flag}: {path} {problem}. Kept indexes decide what a sync trusts, so a cache that "
                f"others can write could make ecrmirror push content it did not check. Use a directory "
                f"only this user can write (chmod -R go-w {directory}), or remove it and let the run "
                "fill it again."
            )


def retry_policy(config: pytest.Config) -> RetryPolicy:
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
    from ecrmirror.transport import RetryPolicy

    return RetryPolicy(attempts=retries + 1, backoff=backoff)


_SIZE_UNITS = {"": 1, "B": 1, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3}


def max_chart_size(config: pytest.Config) -> int:
    """--ecrmirror-max-chart-size, else the ini key: bytes, or a number with KiB, MiB or GiB."""
    value = config.getoption("ecrmirror_max_chart_size") or str(config.getini("ecrmirror_max_chart_size"))
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]iB|B)?\s*", value, re.IGNORECASE)
    if not match or int(match.group(1)) == 0:
        raise pytest.UsageError(
            f"ecrmirror_max_chart_size {value!r} is not a size: give bytes, or a number with KiB, MiB "
            "or GiB (helm's limit, the default, is 100MiB)"
        )
    return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").upper()]


def specs_dir(config: pytest.Config) -> Path:
    value = str(config.getini("ecrmirror_specs"))
    directory = Path(value) if Path(value).is_absolute() else config.rootpath / value
    if not directory.is_dir():
        raise pytest.UsageError(
            f"the specs directory {directory} does not exist. Pass spec paths "
            "(pytest path/to/specs --sync), or set ecrmirror_specs in your pytest configuration."
        )
    return directory


def shard(config: pytest.Config) -> tuple[int, int] | None:
    """--ecrmirror-shard=K/N as (K, N); None without the option."""
    value = config.getoption("ecrmirror_shard")
    if not value:
        return None
    index, _, total = value.partition("/")
    if not (index.isdigit() and total.isdigit() and 1 <= int(index) <= int(total)):
        raise pytest.UsageError(
            f"--ecrmirror-shard={value}: write K/N with 1 <= K <= N, e.g. "
            "--ecrmirror-shard=$CI_NODE_INDEX/$CI_NODE_TOTAL"
        )
    return int(index), int(total)


def _whole(config: pytest.Config, option: str, ini: str, least: int) -> int:
    given = config.getoption(option, None)
    value = given if given is not None else str(config.getini(ini)).strip()
    try:
        number = int(value)
    except ValueError:
        number = least - 1
    if number < least:
        flag = "--" + option.replace("_", "-")
        raise pytest.UsageError(
            f"{flag} (ini {ini}) must be a whole number of at least {least}, not {value!r}"
        )
    return number


def jobs(config: pytest.Config) -> int:
    """--ecrmirror-jobs, else ini ecrmirror_jobs: threads for the items' network work."""
    return _whole(config, "ecrmirror_jobs", "ecrmirror_jobs", 1)


def upstream_connections(config: pytest.Config, jobs: int) -> int:
    given = config.getoption("ecrmirror_upstream_connections", None)
    if given is None and not str(config.getini("ecrmirror_upstream_connections")).strip():
        from ecrmirror.jobs import IN_FLIGHT_PER_JOB

        return max(DEFAULT_UPSTREAM_CONNECTIONS, IN_FLIGHT_PER_JOB * jobs)
    return _whole(config, "ecrmirror_upstream_connections", "ecrmirror_upstream_connections", 1)


def read_deadline(config: pytest.Config) -> float | None:
    """--ecrmirror-upstream-read-deadline, else the ini key, else None (transport's default)."""
    given = config.getoption("ecrmirror_upstream_read_deadline", None)
    value = str(given if given is not None else config.getini("ecrmirror_upstream_read_deadline")).strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise pytest.UsageError(
            f"--ecrmirror-upstream-read-deadline (ini ecrmirror_upstream_read_deadline) must be a number "
            f"of seconds above 0, not {value!r}"
        )
    return seconds


def variables(config: pytest.Config) -> dict[str, str]:
    """The environment with --ecrmirror-var NAME=VALUE over it: what ${NAME} in specs reads."""
    found = dict(os.environ)
    for given in config.getoption("ecrmirror_var", None) or []:
        name, equals, value = str(given).partition("=")
        if not equals or not name.strip():
            raise pytest.UsageError(f"--ecrmirror-var takes NAME=VALUE, not {given!r}")
        found[name.strip()] = value
    return found


def helm(config: pytest.Config) -> str | None:
    """--ecrmirror-helm, else ini ecrmirror_helm, else None (helm from PATH)."""
    given = config.getoption("ecrmirror_helm", None) or str(config.getini("ecrmirror_helm")).strip()
    return given or None


def pull_reserve(config: pytest.Config) -> int:
    return _whole(config, "ecrmirror_upstream_pull_reserve", "ecrmirror_upstream_pull_reserve", 0)
