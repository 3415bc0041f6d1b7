"""The HTTP face of the scoring service: a FastAPI app over a :class:`ModelManager`.

Thin by design: requests are checked by the pydantic bodies (:mod:`lendml.serving.schemas`)
and the deployment's input checks, scored by a :class:`~lendml.serving.scorer.Deployment`,
logged to a :class:`~lendml.serving.records.PredictionSink`, counted in Prometheus
metrics. Every error is JSON (:class:`~lendml.serving.schemas.ErrorBody`) naming the field
and the problem; bad input is always a 4xx. Neither feature values nor keys are written
to the application log.

Endpoints: ``POST /v1/score``, ``POST /v1/score:batch``, ``GET /v1/models``,
``POST /v1/admin/reload``, ``PUT /v1/admin/models/{name}/traffic``, ``GET /healthz`` (no
key), ``GET /readyz``, ``GET /metrics``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lendml.core.config import CanarySettings, ServingSettings
from lendml.core.timeutil import utc_now
from lendml.errors import LendmlError, StoreError
from lendml.serving.auth import ApiKey, KeyStore
from lendml.serving.auth import Scope as KeyScope
from lendml.serving.inputs import ScoreInput, problem
from lendml.serving.lifecycle import ModelManager, Target
from lendml.serving.metrics import ServingMetrics
from lendml.serving.records import PredictionSink, Role
from lendml.serving.schemas import (
    BatchRequest,
    BatchResponse,
    ErrorBody,
    Health,
    ScoreRequest,
    ScoreResponse,
    TrafficRequest,
)
from lendml.serving.scorer import Deployment, ScoreResult

log = logging.getLogger(__name__)

ENDPOINTS = (
    "/v1/score",
    "/v1/score:batch",
    "/v1/models",
    "/v1/admin/reload",
    "/healthz",
    "/readyz",
    "/metrics",
)
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "The body cannot be read as JSON text (e.g. it is not UTF-8)."),
        (401, "Missing or invalid API key."),
        (403, "The key's scope does not allow this."),
        (404, "Unknown model, alias, version or entity."),
        (413, "The body is larger than serving.max_body_bytes."),
        (422, "A field is missing, of the wrong type or out of range."),
        (503, "The online store or the registry cannot be reached."),
    )
}
_STATUS_NAMES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "ContentTooLarge",
    415: "UnsupportedMediaType",
    422: "RequestValidationError",
}


class _Telemetry:
    """Pure ASGI middleware: a request id per request (``x-request-id``), the body size
    limit (declared or streamed; a JSON 413), and the request count and latency per
    endpoint."""

    def __init__(self, app: ASGIApp, *, metrics: ServingMetrics, max_body: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            declared = _content_length(scope)
            if declared is not None and declared > self.max_body:
                # answered here: Starlette's own limit would answer in plain text
                body = ErrorBody(
                    error="ContentTooLarge",
                    message=f"body: {declared} bytes is more than the limit of {self.max_body}.",
                    field="body",
                    request_id=request_id,
                )
                response = JSONResponse(body.model_dump(), status_code=413)
                await response(scope, receive, send_with_id)
            else:
                received = 0

                async def receive_with_limit() -> Message:
                    nonlocal received
                    message = await receive()
                    if message["type"] == "http.request":
                        received += len(message.get("body", b""))
                        if received > self.max_body:
                            raise HTTPException(
                                413, f"body: more than the limit of {self.max_body} bytes."
                            )
                    return message

                await self.app(scope, receive_with_limit, send_with_id)
        finally:
            path = scope.get("path", "")
            endpoint = path if path in ENDPOINTS else "other"
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)


def _version() -> str:
    try:
        return version("lendml")
    except PackageNotFoundError:  # running from a source tree without installing
        return "0+unknown"


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _request_id(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    return rid if isinstance(rid, str) else uuid.uuid4().hex


def _error(
    request: Request,
    status: int,
    error: str,
    message: str,
    *,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(error=error, message=message, field=field, request_id=_request_id(request))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _path(loc: Sequence[Any]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


_UNION_TAGS = {"int", "str", "bool", "float", "none", "dict", "list"}


def _field_of(error: dict[str, Any]) -> str:
    loc = list(error.get("loc", ()))
    if loc and loc[0] == "body":
        loc = loc[1:]
    while loc and isinstance(loc[-1], str) and loc[-1] in _UNION_TAGS and len(loc) > 1:
        loc = loc[:-1]
    return _path(loc) or "body"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        first = errors[0] if errors else {"loc": ("body",), "msg": "invalid body"}
        field = _field_of(first)
        fields = list(dict.fromkeys(_field_of(e) for e in errors))
        more = f" (and problems in {len(fields) - 1} more field(s))" if len(fields) > 1 else ""
        message = f"{field}: {first.get('msg', 'invalid value')}{more}."
        return _error(request, 422, "RequestValidationError", message, field=field)

    @app.exception_handler(LendmlError)
    async def lendml_error(request: Request, exc: LendmlError) -> JSONResponse:
        status = exc.http_status
        if isinstance(exc, StoreError):
            status = 503
        if status >= 500:
            log.error("Request %s failed: %s", _request_id(request), type(exc).__name__)
        field = exc.context.get("field")
        return _error(
            request, status, type(exc).__name__, exc.message, field=str(field) if field else None
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        name = _STATUS_NAMES.get(exc.status_code, "HTTPError")
        message, field = str(exc.detail), None
        if exc.status_code in (400, 413):  # FastAPI's body reading, or the size limit
            field = "body"
            if exc.status_code == 400:
                message = "body: cannot be read as JSON text (send UTF-8 encoded JSON)."
        return _error(
            request,
            exc.status_code,
            name,
            message,
            field=field,
            headers=dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(RecursionError)
    async def too_deep(request: Request, exc: RecursionError) -> JSONResponse:
        return _error(
            request, 422, "RequestValidationError", "body: nested too deeply.", field="body"
        )


def _auth(keys: KeyStore) -> Callable[[KeyScope], Callable[..., ApiKey]]:
    bearer = HTTPBearer(
        auto_error=False,
        scheme_name="ApiKey",
        description="An API key made with `lendml keys create --scope score|admin`.",
    )

    def require(scope: KeyScope) -> Callable[..., ApiKey]:
        async def check(  # in the event loop: a stat and a hash, no thread hop
            credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
        ) -> ApiKey:
            challenge = {"WWW-Authenticate": "Bearer"}
            if credentials is None:
                raise HTTPException(
                    401,
                    "Missing API key: send the header 'Authorization: Bearer <key>'.",
                    headers=challenge,
                )
            key = keys.verify(credentials.credentials)
            if key is None:
                raise HTTPException(
                    401, "The API key is not valid (unknown or revoked).", headers=challenge
                )
            if not key.allows(scope):
                raise HTTPException(403, f"This endpoint needs a key with the {scope!r} scope.")
            return key

        return check

    return require


def create_app(
    manager: ModelManager,
    *,
    keys: KeyStore,
    sink: PredictionSink | None = None,
    settings: ServingSettings | None = None,
    on_shutdown: Callable[[], None] | None = None,
) -> FastAPI:
    """The scoring service as an ASGI app.

    Parameters
    ----------
    manager
        The served models, already started (:meth:`ModelManager.start`); the caller
        closes it.
    keys
        The API keys.
    sink
        Where every response's record goes (the prediction log); None logs nothing.
    settings
        ``serving:`` settings for the body and batch limits (default: ``manager.settings``).
    on_shutdown
        Called when the server stops (e.g. close the manager and the log in a worker
        process that built them).

    Examples
    --------
    >>> app = create_app(manager, keys=KeyStore("data/api_keys.json"))  # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)                   # doctest: +SKIP
    """
    settings = settings or manager.settings
    metrics = manager.metrics

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if on_shutdown is not None:
            on_shutdown()

    app = FastAPI(
        lifespan=lifespan,
        title="lendml scoring service",
        version=_version(),
        description=(
            "Scores applicants with the registered champion, returns a decision and, for "
            "declines (or on request), up to four reason codes. See docs/serving.md."
        ),
        # the schema is served below behind a key, like every endpoint but /healthz
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(_Telemetry, metrics=metrics, max_body=settings.max_body_bytes)
    _install_error_handlers(app)
    require = _auth(keys)
    scorer_key = Depends(require("score"))
    admin_key = Depends(require("admin"))

    def observe(results: Sequence[ScoreResult], request_ids: Sequence[str]) -> None:
        now = utc_now()
        for rid, result in zip(request_ids, results, strict=True):
            metrics.observe_result(
                model=result.model,
                version=result.version,
                role=result.role,
                probability=result.probability,
                decision=result.decision,
                missing=result.missing,
            )
            if result.decision == "decline" and not result.reasons:
                metrics.declines_without_reasons.labels(result.model).inc()
            if result.explore:
                metrics.explored.labels(
                    result.model,
                    str(result.version),
                    result.role,
                    result.policy_decision or result.decision,
                ).inc()
            if sink is not None:
                sink.submit(result.to_record(rid, now))

    def shadow(target: Target, items: list[ScoreInput], request_ids: list[str]) -> None:
        routing = target.routing
        if target.live and routing.shadow is not None:
            manager.shadow(routing, items, request_ids, utc_now(), on_result=observe_shadow)

    def observe_shadow(result: ScoreResult) -> None:
        metrics.observe_result(
            model=result.model,
            version=result.version,
            role=result.role,
            probability=result.probability,
            decision=result.decision,
            missing=(),  # the live request already counted its inputs
        )

    def respond(rid: str, result: ScoreResult) -> dict[str, Any]:
        return {
            "request_id": rid,
            "model": {"name": result.model, "version": result.version},
            "role": result.role,
            "score": result.score,
            "probability": result.probability,
            "decision": result.decision,
            "policy_decision": result.policy_decision or result.decision,
            "explore": result.explore,
            "reasons": result.returned_reasons(),
        }

    @app.post(
        "/v1/score",
        response_model=ScoreResponse,
        responses=_ERRORS,
        tags=["scoring"],
        summary="Score one applicant",
    )
    async def score(body: ScoreRequest, request: Request, _: ApiKey = scorer_key) -> dict[str, Any]:
        # Scored in the event loop: the work is CPU under the GIL, so a worker thread
        # would add hand-offs (and FastAPI's response handling more) without adding
        # throughput. Batches, reloads and traffic changes run in worker threads.
        rid = _request_id(request)
        target = manager.target(body.model, body.entity)
        item = ScoreInput(entity=dict(body.entity), fields=dict(body.fields))
        result = target.deployment.score([item], explain=body.explain, role=target.role)[0]
        observe([result], [rid])
        shadow(target, [item], [rid])
        return respond(rid, result)

    @app.post(
        "/v1/score:batch",
        response_model=BatchResponse,
        responses=_ERRORS,
        tags=["scoring"],
        summary="Score many applicants with one model",
    )
    def score_batch(body: BatchRequest, request: Request, _: ApiKey = scorer_key) -> dict[str, Any]:
        rid = _request_id(request)
        if len(body.items) > settings.max_batch:
            raise problem(
                "items",
                f"holds {len(body.items)} applicants; at most {settings.max_batch} per call.",
            )
        items = [ScoreInput(entity=dict(i.entity), fields=dict(i.fields)) for i in body.items]
        # one routing for the whole batch: every item is scored by the same versions
        first = manager.target(body.model, items[0].entity)
        groups: dict[Deployment, list[int]] = {}
        roles: dict[Deployment, Role] = {}
        for i, item in enumerate(items):
            deployment, role = (
                first.routing.pick(item.entity) if first.live else (first.deployment, first.role)
            )
            groups.setdefault(deployment, []).append(i)
            roles[deployment] = role
        results: list[ScoreResult | None] = [None] * len(items)
        for deployment, rows in groups.items():
            scored = deployment.score(
                [items[i] for i in rows],
                explain=body.explain,
                role=roles[deployment],
                prefixes=[f"items[{i}]." for i in rows],
            )
            for i, result in zip(rows, scored, strict=True):
                results[i] = result
        done = [r for r in results if r is not None]
        ids = [f"{rid}-{i}" for i in range(len(done))]
        observe(done, ids)
        shadow(first, items, ids)
        return {
            "request_id": rid,
            "results": [respond(i, r) for i, r in zip(ids, done, strict=True)],
        }

    @app.get(
        "/v1/models",
        tags=["models"],
        responses=_ERRORS,
        summary="What each served model routes to",
    )
    def models(_: ApiKey = scorer_key) -> dict[str, Any]:
        return manager.status()

    @app.post(
        "/v1/admin/reload",
        tags=["admin"],
        responses=_ERRORS,
        summary="Re-read the registry's aliases now and swap in new versions",
    )
    def reload(_: ApiKey = admin_key) -> dict[str, Any]:
        return {"models": manager.refresh(strict=True)}

    @app.put(
        "/v1/admin/models/{name}/traffic",
        tags=["admin"],
        responses=_ERRORS,
        summary="Set a model's shadow and canary",
    )
    def traffic(name: str, body: TrafficRequest, _: ApiKey = admin_key) -> dict[str, Any]:
        canary = (
            CanarySettings(ref=body.canary.ref, percent=body.canary.percent)
            if body.canary is not None
            else None
        )
        return manager.set_traffic(name, shadow=body.shadow, canary=canary)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(_: ApiKey = scorer_key) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/healthz", response_model=Health, tags=["health"], summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=Health,
        responses=_ERRORS,
        tags=["health"],
        summary="Every served model has a champion deployed",
    )
    def readyz(request: Request, _: ApiKey = scorer_key) -> Any:
        if manager.ready:
            return {"status": "ready"}
        return _error(request, 503, "NotReady", "Not every served model is deployed yet.")

    @app.get(
        "/metrics",
        tags=["health"],
        responses={**_ERRORS, 200: {"content": {"text/plain": {}}, "description": "Metrics."}},
        response_class=Response,
        summary="Prometheus metrics",
    )
    def prometheus(_: ApiKey = scorer_key) -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    return app


__all__ = ["create_app"]
