"""`python -m ecrmirror.emulator --port N`: serve the ECR API and registry on one local port."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from types import FrameType

from ecrmirror.emulator.server import Emulator
from ecrmirror.emulator.state import RESTORE_DELAY


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ecrmirror.emulator", description="Serve an offline ECR (API and registry) locally"
    )
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on")
    parser.add_argument("--port", type=int, default=5000, help="Port for the API and the registry")
    parser.add_argument("--quiet", action="store_true", help="Do not log each request to stderr")
    parser.add_argument(
        "--enforce-iam",
        action="store_true",
        help="Give callers other than the printed keys only what their IAM policies allow "
        "(create users and policies through the emulator's IAM API with the printed keys)",
    )
    parser.add_argument(
        "--throttle",
        action="store_true",
        help="Answer ECR's default per-action rate quotas (PutImage 10 per second, ...) as ECR does: "
        "ThrottlingException from the API, 429 TOOMANYREQUESTS from the registry",
    )
    parser.add_argument(
        "--replication-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="Replicate a pushed image this long after the push, as ECR does asynchronously "
        "(IN_PROGRESS until then; default 0: before the push is answered)",
    )
    parser.add_argument(
        "--restore-delay",
        type=float,
        default=RESTORE_DELAY,
        metavar="SECONDS",
        help="Keep an image restored from the archive ACTIVATING this long on the emulator's clock, "
        f"as ECR takes up to 20 minutes (default {RESTORE_DELAY:g})",
    )
    args = parser.parse_args(argv)

    emulator = Emulator(
        host=args.host,
        port=args.port,
        access_log=not args.quiet,
        enforce_iam=args.enforce_iam,
        throttle=args.throttle,
    ).start()
    emulator.app.replicator.delay = args.replication_delay
    emulator.app.state.restore_delay = args.restore_delay
    print(f"# ECR emulator listening on {emulator.url}; point ecrmirror at it with:")
    for name, value in emulator.environ().items():
        print(f"export {name}={shlex.quote(value)}")
    print("# requests served: GET /_emulator/requests; stop with Ctrl-C", flush=True)

    stopped = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    stopped.wait()
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
