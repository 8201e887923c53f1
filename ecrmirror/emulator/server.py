"""The emulator's WSGI application and its HTTP server: requests routed to the ECR API (ours, else
moto's), moto's IAM API, the OCI registry, and `/_emulator/` introspection; each one recorded."""

from __future__ import annotations

import io
import json
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from werkzeug.exceptions import ClientDisconnected
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from ecrmirror.emulator.api import CREDENTIAL_SCOPE, DEFAULT_ACCOUNT, EcrApi
from ecrmirror.emulator.iam import ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, Iam
from ecrmirror.emulator.kms import ASSUME_PATH, SIGNING_KEYS_PATH, Kms, ensure_signing_key
from ecrmirror.emulator.registry import OciRegistry
from ecrmirror.emulator.replication import Replicator
from ecrmirror.emulator.signatures import refuse_signature
from ecrmirror.emulator.state import TOKEN_TTL, State
from ecrmirror.emulator.sts import refuse_web_identity
from ecrmirror.emulator.throttle import Throttle

# STS actions that need no signature: the web identity token is the credential.
STS_UNSIGNED = ("AssumeRoleWithWebIdentity", "AssumeRoleWithSAML")

# What the request log calls each signed service's requests.
_KINDS = {"ecr": "api", "iam": "iam", "sts": "sts", "kms": "kms"}
# Calls that change nothing in a registry; a lifecycle policy preview only computes what the rules
# would do (its result is read with GetLifecyclePolicyPreview).
_READ_ACTIONS = re.compile(r"^(Describe|List|Get|BatchGet|BatchCheck|StartLifecyclePolicyPreview$)")
WStart = Callable[..., Any]
_ARRIVED = "ecrmirror.emulator.arrived"  # the environ key of a request's arrival time


@dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator served: `api` calls carry their action, `registry` calls a path."""

    kind: str  # "api" (ECR), "iam", "sts", "kms", or "registry"
    method: str
    path: str
    action: str
    status: int
    at: float = 0.0  # time.time() when the request arrived: how long a client took to its first

    @property
    def is_write(self) -> bool:
        if self.kind != "registry":
            return not _READ_ACTIONS.match(self.action)
        return self.method not in ("GET", "HEAD")


class EmulatorApp:
    """The WSGI application: ECR API at `/`, registry at `/v2/`, introspection at `/_emulator/`.

    Its parts share one State; the knobs tests and users turn are `iam.enforce`, `throttle.enabled`,
    `replicator.delay` and `replicator.outcomes`, and `kms.assume` for keys of an offline rehearsal.
    """

    def __init__(
        self, token_ttl: float = TOKEN_TTL, enforce_iam: bool = False, throttle: bool = False
    ) -> None:
        from moto.moto_server.werkzeug_app import create_backend_app

        self.state = State(token_ttl)
        # With enforce_iam, callers other than the emulator's own administrator key get exactly
        # what their IAM policies allow, resource ARNs included, on the API and the registry.
        self.iam = Iam(enforce_iam)
        self.throttle = Throttle(enabled=throttle)
        self.kms = Kms()
        self.replicator = Replicator(self.state)
        self.api = EcrApi(self.state, self.iam, self.replicator, self.throttle, self.kms)
        self.registry = OciRegistry(self.state, self.iam, self.replicator, self.throttle)
        self._moto = create_backend_app("ecr")
        self._moto_iam = create_backend_app("iam")
        self._moto_sts = create_backend_app("sts")
        self._moto_kms = create_backend_app("kms")
        self.requests: list[RecordedRequest] = []

    def reset(self) -> None:
        with self.state.lock:
            self.state.reset()
            self.replicator.reset()
            self.throttle.reset()
            self.kms.reset()
            self.requests.clear()

    def close(self) -> None:
        self.state.close()

    def __call__(self, environ: dict[str, Any], start_response: WStart) -> Iterable[bytes]:
        environ[_ARRIVED] = time.time()
        request = Request(environ)
        path = request.path
        if path.startswith("/_emulator/"):
            return self._introspect(request)(environ, start_response)
        try:
            request = _with_body_read(environ, request)
        except ClientDisconnected:  # the client went away mid-body: nobody reads the answer
            return Response(status=400)(environ, start_response)
        with self.state.lock:
            if path == "/v2/" or path.startswith("/v2/"):
                response = self.registry.answer(request)
                self.requests.append(
                    RecordedRequest(
                        "registry", request.method, path, "", response.status_code, environ[_ARRIVED]
                    )
                )
                return response(environ, start_response)
            data = request.get_data()
            environ["wsgi.input"] = io.BytesIO(data)  # moto reads the body again
            scope = CREDENTIAL_SCOPE.search(request.headers.get("Authorization", ""))
            service = scope["service"] if scope is not None else ""
            if self.iam.enforce:  # as AWS: who signed must hold the secret; rehearsals need not
                refused = refuse_signature(request, data)
                if refused is not None:
                    action = request.form.get("Action") or request.headers.get("X-Amz-Target", "")
                    self.requests.append(
                        RecordedRequest(
                            _KINDS.get(service, "api"),
                            request.method,
                            path,
                            action.rpartition(".")[2],
                            refused.status_code,
                            environ[_ARRIVED],
                        )
                    )
                    return refused(environ, start_response)
            if service in ("iam", "sts") or (scope is None and request.form.get("Action") in STS_UNSIGNED):
                return self._query_api(request, service or "sts", environ, start_response)
            action = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
            if service == "kms":
                # moto's KMS keeps keys per account: the caller's, as AWS does
                assert scope is not None
                caller = self.api.caller(scope["key"], request.headers.get("X-Amz-Security-Token", ""))
                account = DEFAULT_ACCOUNT if caller.admin else caller.account
                environ["HTTP_X_MOTO_ACCOUNT_ID"] = account
                refused = self.kms.authorize(self.iam, caller, account, scope["region"], action, data)
                if refused is not None:
                    self.requests.append(
                        RecordedRequest(
                            "kms", request.method, path, action, refused.status_code, environ[_ARRIVED]
                        )
                    )
                    return refused(environ, start_response)
                return self._moto_app(self._moto_kms, "kms", action, environ, start_response)
            answer = self.api.answer(request, action, data)
            if answer is None:
                return self._moto_app(self._moto, "api", action, environ, start_response)
            self.requests.append(
                RecordedRequest("api", request.method, path, action, answer.status_code, environ[_ARRIVED])
            )
            return answer(environ, start_response)

    def _query_api(
        self, request: Request, service: str, environ: dict[str, Any], start_response: WStart
    ) -> Iterable[bytes]:
        """IAM and STS (query APIs): moto answers, after STS refuses what AWS would refuse."""
        params = {key: request.form[key] for key in request.form}
        action = params.get("Action", "")
        if service == "sts" and action == "AssumeRoleWithWebIdentity":
            refused = refuse_web_identity(params)
            if refused is not None:
                self.requests.append(
                    RecordedRequest(
                        "sts", request.method, request.path, action, refused.status_code, environ[_ARRIVED]
                    )
                )
                return refused(environ, start_response)
        app = self._moto_sts if service == "sts" else self._moto_iam
        return self._moto_app(app, service, action, environ, start_response)

    def _moto_app(
        self, app: Any, kind: str, action: str, environ: dict[str, Any], start_response: WStart
    ) -> Iterable[bytes]:
        status: list[int] = []

        def recording_start(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            status.append(int(status_line.split()[0]))
            return start_response(status_line, headers, exc_info)

        body = list(app(environ, recording_start))
        self.requests.append(
            RecordedRequest(
                kind,
                environ["REQUEST_METHOD"],
                environ["PATH_INFO"],
                action,
                status[0] if status else 0,
                environ[_ARRIVED],
            )
        )
        return body

    def _introspect(self, request: Request) -> Response:
        if request.path == "/_emulator/requests" and request.method == "GET":
            return Response(json.dumps([asdict(r) for r in self.requests]), content_type="application/json")
        if request.path == "/_emulator/requests" and request.method == "DELETE":
            with self.state.lock:
                self.requests.clear()
            return Response(status=204)
        if request.path == ASSUME_PATH and request.method == "POST":
            keys = json.loads(request.get_data() or b"{}").get("keys") or []
            with self.state.lock:
                for key in keys:
                    self.kms.assume(str(key))
            return Response(status=204)
        if request.path == SIGNING_KEYS_PATH and request.method == "POST":
            with self.state.lock:
                for account, region, alias in json.loads(request.get_data() or b"{}").get("keys") or []:
                    ensure_signing_key(str(account), str(region), str(alias))
            return Response(status=204)
        if request.path == "/_emulator/clock" and request.method == "POST":
            # {"advance": seconds}: lifecycle rules, restores and backfills see that much time pass
            with self.state.lock:
                self.state.advance(float(json.loads(request.get_data() or b"{}").get("advance") or 0))
            return Response(json.dumps({"now": self.state.now()}), content_type="application/json")
        if request.path == "/_emulator/reset" and request.method == "POST":
            self.reset()
            return Response(status=204)
        return Response("unknown emulator endpoint\n", status=404)


class _QuietHandler(WSGIRequestHandler):
    """No access log: the emulator runs inside pytest, whose output belongs to the user."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class Emulator:
    """The emulator served over real HTTP on 127.0.0.1 from a background thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token_ttl: float = TOKEN_TTL,
        access_log: bool = False,
        enforce_iam: bool = False,
        throttle: bool = False,
    ) -> None:
        self.app = EmulatorApp(token_ttl=token_ttl, enforce_iam=enforce_iam, throttle=throttle)
        self._host = host
        self._port = port
        self._handler = WSGIRequestHandler if access_log else _QuietHandler
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Emulator:
        self._server = make_server(
            self._host, self._port, self.app, threaded=True, request_handler=self._handler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="ecr-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.app.close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return f"http://{self._host}:{self._server.server_port}"

    def environ(self) -> dict[str, str]:
        """The variables that point ecrmirror, boto3 and the AWS CLI at this emulator."""
        return {
            "AWS_ENDPOINT_URL_ECR": self.url,
            "AWS_ENDPOINT_URL_KMS": self.url,
            "ECRMIRROR_REGISTRY_ENDPOINT": self.url,
            "AWS_ACCESS_KEY_ID": ADMIN_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": ADMIN_SECRET_KEY,
        }

    @property
    def requests(self) -> list[RecordedRequest]:
        return list(self.app.requests)

    def writes(self) -> list[RecordedRequest]:
        return [r for r in self.app.requests if r.is_write]

    def reset(self) -> None:
        self.app.reset()


def _with_body_read(environ: dict[str, Any], request: Request) -> Request:
    """The request, its body read before the state's lock is taken: a client that stops sending
    mid-body (killed, or behind a proxy that went away) must hold up its own request only, not
    every other request the lock serializes. Big bodies (blob uploads) are spooled to disk."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return request
    body = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 - the body, for as long as the request
    shutil.copyfileobj(request.stream, body, 1 << 20)
    size = body.tell()
    body.seek(0)
    environ["wsgi.input"] = body
    environ["CONTENT_LENGTH"] = str(size)
    environ.pop("HTTP_TRANSFER_ENCODING", None)  # what was chunked is read whole
    environ["wsgi.input_terminated"] = False
    return Request(environ)
