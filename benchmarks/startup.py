"""Start-up: what a run costs before it does anything, the fixed cost a small mirror pays each run.

The plugin's import beyond pytest's own, in fresh processes; the seconds from just before the
pytest process is started to the first request that reaches ECR (the emulator's arrival times)
or the upstream (the chart server's); and the CPU of a re-run of one version with nothing new.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from chartfactory import package_chart, write_index  # type: ignore[import-not-found, unused-ignore]
from common import Figure, child_environ, pytest_measured, serve, spec_text

from ecrmirror.emulator import Emulator

# Prints the seconds `import ecrmirror.plugin` takes once pytest is imported, then pytest's own.
_IMPORT = (
    "import time; t0 = time.perf_counter(); import pytest; t1 = time.perf_counter(); "
    "import ecrmirror.plugin; print(time.perf_counter() - t1, t1 - t0)"
)


def import_seconds(repeats: int = 5) -> tuple[float, float]:
    """Medians over `repeats` fresh processes: (the plugin's import beyond pytest's, pytest's)."""
    plugin, pytest = [], []
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, "-c", _IMPORT], capture_output=True, text=True, check=True, env=child_environ()
        )
        ours, theirs = (float(word) for word in done.stdout.split())
        plugin.append(ours)
        pytest.append(theirs)
    return statistics.median(plugin), statistics.median(pytest)


def first_request(work: Path, repeats: int = 5) -> tuple[list[float], list[str], list[float]]:
    """A sync of one version from a chart server, then its re-run, `repeats` times (each into an
    emptied emulator): the seconds from the sync's start to its first request at ECR or the
    upstream, what that request was, and the re-run's CPU seconds."""
    upstream = work / "upstream"
    upstream.mkdir(parents=True)
    write_index(upstream, [package_chart(upstream, "start", "1.0.0")])
    arrivals: list[float] = []
    url, seen, server = serve(upstream, arrivals)
    (work / "mirror.yaml").write_text(spec_text(url, {"start": ["1.0.0"]}))
    firsts, whats, cpus = [], [], []
    try:
        with Emulator() as emulator:
            for _ in range(repeats):
                emulator.reset()  # moto's state is per process: start each measurement empty
                arrivals.clear()
                seen.clear()
                started = time.time()  # just before pytest_measured's Popen: microseconds apart
                pytest_measured(work, emulator, "--sync", "mirror.yaml")
                candidates = [(r.at, f"ECR {r.action or r.method + ' ' + r.path}") for r in emulator.requests]
                candidates += [(at, f"upstream GET {path}") for at, path in zip(arrivals, seen, strict=True)]
                at, what = min(candidates)
                firsts.append(at - started)
                whats.append(what)
                cpus.append(pytest_measured(work, emulator, "--sync", "mirror.yaml")[1])
    finally:
        server.shutdown()
    return firsts, whats, cpus


def start_up_figures(work: Path) -> list[Figure]:
    plugin, pytest = import_seconds()
    firsts, whats, cpus = first_request(work / "start-up")
    first = statistics.median(firsts)
    return [
        Figure("start-up: import pytest (s, median of 5 processes)", round(pytest, 3), "measured", None),
        Figure(
            "start-up: import ecrmirror.plugin beyond pytest (s, median of 5 processes)",
            round(plugin, 3),
            "<= 0.25",
            plugin <= 0.25,
        ),
        Figure(
            f"start-up: process start to first request, 1-version sync (s, median of {len(firsts)})",
            round(first, 3),
            "<= 0.4",
            first <= 0.4,
        ),
        Figure("start-up: the first request, each run", "; ".join(whats), "measured", None),
        Figure(
            f"start-up: CPU of an up-to-date re-run of 1 version (s, median of {len(cpus)})",
            round(statistics.median(cpus), 2),
            "measured",
            None,
        ),
    ]
