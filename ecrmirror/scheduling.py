"""--ecrmirror-jobs in pytest's run: the items' work starts on the jobs' threads, pytest reports.

When the run starts, every item this process will run is submitted, in collection order (under
xdist, the items the worker has been sent, as they arrive: `--dist loadfile` sends whole spec
files). Each item then takes its own result, so reports come one item at a time, in order. A
spec's versions wait for its repository and replication items, as they would run after them.
-x and --maxfail stop new work from starting; the summary says what was still running.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Generator, Iterable
from typing import Any

import pytest

from ecrmirror.items import RUN_KEY, ChartVersionItem, ImageItem, MirrorItem, Runner
from ecrmirror.jobs import Jobs, NotFromJobs, Stopped


class JobsHooks:
    """Registered by the plugin when --ecrmirror-jobs is more than 1."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.stopped: Stopped | None = None
        self.reason = ""
        self._waits_for: dict[str, tuple[str, ...]] = {}
        self._worker: Any = None
        self._running: Runner | None = None  # the runner whose jobs run, once the run starts

    def _runner(self, config: pytest.Config) -> Runner:
        return config.stash[RUN_KEY]

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Who waits for whom: a spec's versions for the spec's other items (its repositories,
        replicas and replication rule), which come first in collection order."""
        before: dict[str, list[str]] = defaultdict(list)
        for item in session.items:
            if not isinstance(item, MirrorItem):
                continue
            spec = str(item.path)
            if isinstance(item, ChartVersionItem | ImageItem):
                self._waits_for[item.nodeid] = tuple(before[spec])
            else:
                before[spec].append(item.nodeid)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        if session.config.option.collectonly or session.testsfailed:
            return
        if not any(isinstance(item, MirrorItem) for item in session.items):
            return  # the project's own tests, say: nothing for jobs
        runner = self._runner(session.config)
        runner.jobs = Jobs(self.threads)
        self._running = runner
        _keep_job_records_for_their_items(session.config)
        if hasattr(session.config, "workerinput"):
            # An xdist worker runs what the controller sends it: submitted as it arrives.
            self._worker = next(
                (p for p in session.config.pluginmanager.get_plugins() if hasattr(p, "torun")), None
            )
            return
        self._submit(runner, session.items)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None]:
        session = item.session
        runner = self._runner(item.config)
        if runner.jobs is not None and hasattr(item.config, "workerinput") and self.stopped is None:
            self._submit(runner, [item, *([nextitem] if nextitem else []), *self._sent_to_worker(session)])
        try:
            return (yield)
        finally:
            if (
                runner.jobs is not None
                and self.stopped is None
                and (session.shouldfail or session.shouldstop)
            ):
                self.stopped = runner.jobs.stop()
                self.reason = str(session.shouldfail or session.shouldstop)

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        """Ctrl-C: nothing new starts, and what runs stops before its next upload or tag."""
        runner = self._running
        if runner is not None and runner.jobs is not None:
            runner.jobs.stop()
            runner.run.interrupted.set()

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.stopped is None:
            return
        terminalreporter.write_line(
            f"ecrmirror: stopped ({self.reason}): {self.stopped.not_started} item(s) not started; "
            f"{self.stopped.running} already running were let finish (a push is never left half done), "
            "unreported: the next run finds what they pushed",
            yellow=True,
        )

    def _submit(self, runner: Runner, items: Iterable[pytest.Item]) -> None:
        for item in items:
            if isinstance(item, MirrorItem):
                runner.submit(item, self._waits_for.get(item.nodeid, ()))

    def _sent_to_worker(self, session: pytest.Session) -> list[pytest.Item]:
        """The items the controller has sent this xdist worker and it has not run yet. xdist keeps
        them in its WorkerInteractor's queue, which has no public way to look: read under its lock,
        and nothing (just the next item) if that ever changes."""
        queue = getattr(self._worker, "torun", None)
        try:
            with queue.lock() as pending:  # type: ignore[union-attr]
                indices = [i for i in pending if isinstance(i, int)]
        except Exception:  # xdist's internals changed: fall back to the next item
            return []
        return [session.items[i] for i in indices if i < len(session.items)]


def _keep_job_records_for_their_items(config: pytest.Config) -> None:
    """pytest's log capture is per item; records of a job running ahead go to its own item."""
    logging_plugin = config.pluginmanager.get_plugin("logging-plugin")
    for name in ("report_handler", "caplog_handler", "log_cli_handler", "log_file_handler"):
        handler = getattr(logging_plugin, name, None)
        if isinstance(handler, logging.Handler) and not any(
            isinstance(f, NotFromJobs) for f in handler.filters
        ):
            handler.addFilter(NotFromJobs())
