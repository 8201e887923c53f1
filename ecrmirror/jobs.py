"""`--ecrmirror-jobs N`: the run's network work on N threads, its results handed out in order.

A mirror run waits: on indexes, on ECR, on uploads. Threads are where that waiting overlaps, in
one process, without xdist's start-up cost per worker. The plugin submits every item's work when
the run starts, in collection order; each item then takes its own result, so pytest still reports
one item at a time, in order. A job may wait for others (a spec's versions for its repositories),
as a serial run would have them done first. `stop()` (for -x and --maxfail) starts nothing new;
what is already running finishes, so no push is left half done.

Built on concurrent.futures (the standard library's pool, cancellation and futures); what it adds
is the waiting on other jobs, and each job's log records kept for the item that reports it.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

_THREAD_PREFIX = "ecrmirror-job"
_current = threading.local()  # the job a pool thread is running, for its log records


@dataclass
class _Job:
    key: Hashable
    work: Callable[[], Any]
    waiting_for: set[Hashable]
    future: Future[Any] = field(default_factory=Future)
    records: list[logging.LogRecord] = field(default_factory=list)
    started: bool = False


@dataclass(frozen=True)
class Stopped:
    """What `stop()` left: jobs still running (they finish) and jobs that will not start."""

    running: int
    not_started: int


class Jobs:
    """Work keyed by item, run on `threads` threads, each job after those it waits for."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=_THREAD_PREFIX)
        self._jobs: dict[Hashable, _Job] = {}
        self._lock = threading.Lock()
        self._stopped = False
        self._capture = _JobRecords()
        logging.getLogger().addHandler(self._capture)

    def submit(self, key: Hashable, work: Callable[[], Any], after: Iterable[Hashable] = ()) -> None:
        """Run `work()` once the jobs in `after` (submitted before it) have ended, however they ended."""
        job = _Job(key, work, {k for k in after if k in self._jobs})
        with self._lock:
            self._jobs[key] = job
            job.waiting_for = {k for k in job.waiting_for if not self._jobs[k].future.done()}
            # A copy: the callbacks below take from waiting_for as the jobs waited for end, some
            # of them while this loop runs; the one that empties it starts the job.
            pending = tuple(job.waiting_for)
        for waited in pending:
            self._jobs[waited].future.add_done_callback(functools.partial(self._ended, job, waited))
        if not pending:
            self._start(job)

    def result(self, key: Hashable) -> Any:
        """The job's result (or its exception, raised), waiting for it; its log records are
        handed to the logging handlers of this thread, the item's."""
        job = self._jobs[key]
        try:
            return job.future.result()
        finally:
            for record in job.records:
                logging.getLogger(record.name).handle(_replayed(record))
            job.records.clear()

    def __contains__(self, key: Hashable) -> bool:
        return key in self._jobs

    def stop(self) -> Stopped:
        """Start no more jobs; those running finish. Says how many are running and not started."""
        with self._lock:
            self._stopped = True
            not_started = [j for j in self._jobs.values() if not j.started and not j.future.done()]
            running = sum(1 for j in self._jobs.values() if j.started and not j.future.done())
        for job in not_started:
            job.future.cancel()
        return Stopped(running=running, not_started=len(not_started))

    def close(self) -> None:
        """Wait for the running jobs; nothing new starts."""
        self.stop()
        self._pool.shutdown(wait=True, cancel_futures=True)
        logging.getLogger().removeHandler(self._capture)

    # -- internals -----------------------------------------------------------------------------------
    def _ended(self, job: _Job, waited: Hashable, _: Future[Any]) -> None:
        with self._lock:
            job.waiting_for.discard(waited)
            ready = not job.waiting_for
        if ready:
            self._start(job)

    def _start(self, job: _Job) -> None:
        if self._stopped:
            job.future.cancel()
            return
        try:
            self._pool.submit(self._run, job)  # queued until a thread is free
        except RuntimeError:  # the pool is shutting down
            job.future.cancel()

    def _run(self, job: _Job) -> None:
        with self._lock:  # stop() sees each job either started or cancelled, never between
            if self._stopped or not job.future.set_running_or_notify_cancel():
                job.future.cancel()
                return
            job.started = True
        _current.job = job
        try:
            job.future.set_result(job.work())
        except BaseException as exc:  # the item re-raises it, as if it had run the work itself
            job.future.set_exception(exc)
        finally:
            _current.job = None


def carrying_job(work: Callable[..., Any]) -> Callable[..., Any]:
    """`work`, to run on another thread on behalf of the job running now: its log records go to
    that job's item (run it on a thread named with ecrmirror-job, as `side_threads` names them)."""
    job = getattr(_current, "job", None)

    def on_behalf(*args: Any) -> Any:
        _current.job = job
        try:
            return work(*args)
        finally:
            _current.job = None

    return on_behalf


def inline(work: Callable[..., Any], *args: Any) -> Future[Any]:
    """`work(*args)` now, as a finished future: what running alongside means with one job."""
    done: Future[Any] = Future()
    try:
        done.set_result(work(*args))
    except Exception as exc:  # the caller's .result() raises it, as a thread's would
        done.set_exception(exc)
    return done


# Requests one job has in flight at most: its own, and those it sends alongside (a copy's blobs,
# say); as skopeo copies 6 layers of an image at a time.
IN_FLIGHT_PER_JOB = 6


def side_threads(jobs: int) -> ThreadPoolExecutor:
    """A pool for what `jobs` jobs do alongside their own requests (one upstream request while
    another is in flight): its own threads, so a job never waits for a thread another job holds."""
    return ThreadPoolExecutor(
        max_workers=(IN_FLIGHT_PER_JOB - 1) * max(1, jobs), thread_name_prefix=f"{_THREAD_PREFIX}-side"
    )


class _JobRecords(logging.Handler):
    """Keeps the log records of a pool thread's job for the item that reports it (pytest's log
    capture is per item, in the main thread); `_NotFromJobs` keeps them from the others meanwhile."""

    def emit(self, record: logging.LogRecord) -> None:
        job = getattr(_current, "job", None)
        if job is not None and not getattr(record, "ecrmirror_replayed", False):
            job.records.append(record)


def _replayed(record: logging.LogRecord) -> logging.LogRecord:
    record.ecrmirror_replayed = True
    return record


class NotFromJobs(logging.Filter):
    """For a handler that belongs to the item running now (pytest's capture): records from the
    pool's threads reach it only when replayed for their own item."""

    def filter(self, record: logging.LogRecord) -> bool:
        from_jobs = (record.threadName or "").startswith(_THREAD_PREFIX)
        return not from_jobs or bool(getattr(record, "ecrmirror_replayed", False))
