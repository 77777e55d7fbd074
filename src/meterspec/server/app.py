"""The reference server of the HTTP binding (specs/http.md) as a Starlette application.

Every handler does the same four things in this order: authenticate the key and check its
scope (401, 403: MS-HTTP-010), charge the key's rate limit (429: MS-HTTP-012), read the body
within its limits (415, 413, 408: MS-HTTP-002, MS-HTTP-008), and call the pure reference or
the store in a worker thread. Store connections wait in a pool: one for DuckDB (one writer
per file), several for PostgreSQL; each is used by one thread at a time. A batch is answered
only after its transaction commits (MS-HTTP-004); uvicorn lets the requests in progress finish
on SIGTERM before the lifespan closes the store (MS-HTTP-013).
"""

from __future__ import annotations

import asyncio
import math
import os
import queue
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import msgspec
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from meterspec import ratelimit
from meterspec.codec import decode, decode_event
from meterspec.contracts import AggregationRequest, MeteringConfig
from meterspec.errors import MeterspecError, Problem
from meterspec.invoices import InvoiceRequest, build_invoices
from meterspec.metering import Meter
from meterspec.projection import project
from meterspec.quotas import QuotaCheck, QuotaPolicy
from meterspec.quotas import decide as decide_quota
from meterspec.readings import Aggregator
from meterspec.server import events_body, registry
from meterspec.server.problems import MEDIA_TYPE, HttpError
from meterspec.server.registry import Key, Scope
from meterspec.store import open_store
from meterspec.store.base import BatchResult, Store, StoreError
from meterspec.store.batch import Batch
from meterspec.timestamps import parse_timestamp

T = TypeVar("T")
MAX_BODY = 8 * 1024 * 1024
BODY_SECONDS = 30.0
DEFAULT_RATE = ratelimit.RateLimitPolicy([ratelimit.RateLimit("second", 1_000),
                                          ratelimit.RateLimit("minute", 20_000)])
GROUP_EVENTS = 20_000
"""At most this many events in one transaction of grouped batches."""
TEXT_CODES = {"invalid-json", "nesting-too-deep", "duplicate-name", "document-too-large"}
ENVIRONMENT = "METERSPEC_SERVE"
"""`meterspec serve --workers N` hands its settings to each worker in this variable (JSON)."""
_json = msgspec.json.Encoder()


@dataclass(frozen=True)
class Settings:
    store: str
    rate: ratelimit.RateLimitPolicy = DEFAULT_RATE
    max_body: int = MAX_BODY
    body_seconds: float = BODY_SECONDS
    connections: int = 4
    """Store connections of a PostgreSQL store (DuckDB: always one)."""


@dataclass
class State:
    settings: Settings
    pool: queue.Queue[Store] = field(default_factory=queue.Queue)
    stores: list[Store] = field(default_factory=list)
    keys: dict[str, Key] = field(default_factory=dict)
    limits: dict[str, ratelimit.RateState] = field(default_factory=dict)
    committer: GroupCommit = field(init=False)

    async def call(self, work: Callable[[Store], T]) -> T:
        """`work` on a store connection of the pool, in a worker thread."""
        def run() -> T:
            store = self.pool.get()
            try:
                return work(store)
            finally:
                self.pool.put(store)
        try:
            return await run_in_threadpool(run)
        except StoreError as error:
            raise HttpError.single(503, "unavailable", str(error), "MS-HTTP-009",
                                   headers={"Retry-After": "1"}) from None


class GroupCommit:
    """Batches that arrive while the store is busy are ingested together, in one transaction
    (their merge: MS-ING-006 makes each event's outcome the one its batch alone would get),
    up to GROUP_EVENTS events; each request is answered once that transaction commits
    (MS-HTTP-004). A store's fixed cost per transaction is then paid once per group, not once
    per request. At most `writers` groups are in progress at once (the pool's connections)."""

    def __init__(self, state: State, writers: int) -> None:
        self.state, self.writers, self.running = state, writers, 0
        self.pending: list[tuple[Batch, asyncio.Future[events_body.Decided]]] = []

    async def ingest(self, batch: Batch) -> events_body.Decided:
        future: asyncio.Future[events_body.Decided] = asyncio.get_running_loop().create_future()
        self.pending.append((batch, future))
        if self.running < self.writers:
            self.running += 1
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self.pending:
                group: list[tuple[Batch, asyncio.Future[events_body.Decided]]] = []
                size = 0
                while self.pending and (not group or size + self.pending[0][0].size
                                        <= GROUP_EVENTS):
                    group.append(self.pending.pop(0))
                    size += group[-1][0].size
                batches = [batch for batch, _ in group]
                merged = events_body.merge(batches)
                try:
                    result = await self.state.call(_ingesting(merged))
                except BaseException as error:
                    for _, future in group:
                        if not future.done():
                            future.set_exception(error)
                    if not isinstance(error, Exception):
                        raise
                    continue
                for (_, future), decided in zip(group, events_body.split(batches, result),
                                                strict=True):
                    if not future.done():
                        future.set_result(decided)
        finally:
            self.running -= 1


def _ingesting(batch: Batch) -> Callable[[Store], BatchResult]:
    return lambda store: store.ingest(batch, "http", detail=True)


def _state(request: Request) -> State:
    return cast(State, request.app.state.meterspec)


def _json_response(value: object, status: int = 200,
                   headers: dict[str, str] | None = None) -> Response:
    return Response(_json.encode(value), status, headers, media_type="application/json")


# ------------------------------------------------------------------ keys, limits, bodies

async def authorize(request: Request, scope: Scope | None) -> Key:
    """The request's key if it may act in `scope` (any, for None: MS-HTTP-010), its rate
    charged (MS-HTTP-012)."""
    state = _state(request)
    header = request.headers.get("authorization", "")
    kind, _, token = header.partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="meterspec"'}
    if kind.lower() != "bearer" or not token.strip():
        raise HttpError.single(401, "unauthorized", "send an API key: Authorization: Bearer "
                               "KEY", "MS-HTTP-010", headers=challenge)
    token = token.strip()
    key = state.keys.get(token)
    if key is None:
        key = await state.call(lambda store: registry.find_key(store, token))
        if key is None:
            raise HttpError.single(401, "unauthorized", "unknown API key", "MS-HTTP-010",
                                   headers=challenge)
        state.keys[token] = key
    if scope is not None and not key.allows(scope):
        raise HttpError.single(403, "forbidden", f"this key's scope is {key.scope!r}; this "
                               f"request needs {scope!r}", "MS-HTTP-010")
    decision = ratelimit.decide(state.settings.rate,
                                state.limits.get(key.key_id, ratelimit.EMPTY), time.time_ns())
    state.limits[key.key_id] = decision.state
    if decision.decision == "deny":
        wait = decision.retry_after or 0
        raise HttpError.single(429, "rate-limited", "over this key's rate limit",
                               "MS-HTTP-012",
                               headers={"Retry-After": str(math.ceil(wait / 1e9))})
    return key


async def read_body(request: Request, accepted: tuple[str, ...] = ("application/json",)
                    ) -> tuple[str, bytes]:
    """(media type, body) within the limits of MS-HTTP-008; 415 for another media type."""
    settings = _state(request).settings
    kind = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if kind not in accepted:
        raise HttpError.single(415, "unsupported-media-type", f"send {' or '.join(accepted)}"
                               f", not {kind or 'no content type'!r}", "MS-HTTP-002")
    length = request.headers.get("content-length")
    too_large = HttpError.single(413, "body-too-large", f"a request body holds at most "
                                 f"{settings.max_body:,} bytes", "MS-HTTP-008")
    if length is not None and length.isdigit() and int(length) > settings.max_body:
        raise too_large
    chunks: list[bytes] = []
    size = 0

    async def receive() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > settings.max_body:
                raise too_large
            chunks.append(chunk)
    try:
        await asyncio.wait_for(receive(), settings.body_seconds)
    except TimeoutError:
        raise HttpError.single(408, "request-timeout", f"the body did not arrive within "
                               f"{settings.body_seconds:g} seconds", "MS-HTTP-008",
                               headers={"Connection": "close"}) from None
    return kind, b"".join(chunks)


def _document(kind: str, body: bytes, struct: type[T]) -> T:
    """A contract from a body: 400 for text that is no JSON document, 422 for a document that
    breaks its contract (every problem: MS-ERR-002)."""
    try:
        return decode(kind, body, struct, fast=False)
    except MeterspecError as error:
        problems = list(error.problems)
        status = 400 if problems[0].code in TEXT_CODES else 422
        raise HttpError(status, problems) from None


def _same_tenant(key: Key, workspace: str, universe: str) -> None:
    problems = [Problem("wrong-tenant", path, f"this key reads workspace {key.workspace_id!r}, "
                        f"universe {key.universe_id!r} only", "MS-HTTP-011")
                for path, value, own in (("/workspaceID", workspace, key.workspace_id),
                                         ("/universeID", universe, key.universe_id))
                if value != own]
    if problems:
        raise HttpError(403, problems)


def _identifier(value: str | None, name: str) -> str:
    if not value:
        raise HttpError.single(400, "missing-field", f"{name} is required (an identifier)",
                               "MS-HTTP-001", path=f"/{name}")
    return value


# ------------------------------------------------------------------ handlers

async def health(request: Request) -> Response:
    return _json_response({"status": "ok"})


class KeyInfo(msgspec.Struct):
    workspace_id: str = msgspec.field(name="workspaceID")
    universe_id: str = msgspec.field(name="universeID")
    scope: str


async def key_info(request: Request) -> Response:
    """MS-HTTP-001: the tenant and scope of the request's key (any scope)."""
    key = await authorize(request, None)
    return _json_response(KeyInfo(key.workspace_id, key.universe_id, key.scope))


async def ingest(request: Request) -> Response:
    """MS-HTTP-002..004."""
    key = await authorize(request, "ingest")
    kind, body = await read_body(request, events_body.MEDIA_TYPES)
    batch = await run_in_threadpool(events_body.batch_of, kind, body, key.workspace_id,
                                    key.universe_id)
    if not batch.size:
        return _json_response(events_body.IngestResult(0, 0, 0, 0, 0, []))
    decided = await _state(request).committer.ingest(batch)
    return _json_response(events_body.answer(batch, decided))


async def put_meter(request: Request) -> Response:
    """MS-HTTP-005."""
    key = await authorize(request, "admin")
    meter_id = request.path_params["id"]
    _, body = await read_body(request)
    config = _document("config", body, MeteringConfig)
    canonical = _json.encode(config)
    created = await _state(request).call(
        lambda store: registry.put_meter(store, key, meter_id, canonical))
    return Response(canonical, 201 if created else 200, media_type="application/json")


async def _meter(request: Request, key: Key, meter_id: str) -> MeteringConfig:
    found = await _state(request).call(lambda store: registry.get_meter(store, key, meter_id))
    if found is None:
        raise HttpError.single(404, "not-found", f"no meter {meter_id!r} in this key's "
                               "workspace and universe", "MS-HTTP-005", path="/meter")
    return msgspec.json.decode(found, type=MeteringConfig)


async def get_meter(request: Request) -> Response:
    key = await authorize(request, "read")
    config = await _meter(request, key, request.path_params["id"])
    return _json_response(config)


class ReadingsQuery(msgspec.Struct, forbid_unknown_fields=True):
    meter: str
    request: msgspec.Raw
    subjects: list[str] | None = None


class ReadingsResult(msgspec.Struct):
    readings: list[Any]
    problems: list[Problem]


def readings_of(store: Store, key: Key, config: MeteringConfig, request: AggregationRequest,
                subjects: set[str] | None) -> ReadingsResult:
    """The readings of the key's tenant's effective events (MS-HTTP-001)."""
    meter = Meter(config)
    aggregator = Aggregator(request)
    grouped = aggregator.needs_dimensions
    problems: list[Problem] = []
    for line in registry.tenant_events(store, key):
        event = decode_event(line)
        if subjects is not None and event.subject not in subjects:
            continue
        try:
            instant, measured, dimensions = meter.measure(event, grouped)
        except MeterspecError as error:
            problems += error.problems
            continue
        for unit, quantity, _ in measured:
            aggregator.add(event.workspace_id, event.universe_id, event.subject, unit,
                           dimensions, instant, quantity)
    return ReadingsResult(aggregator.readings(), problems)


async def _readings(request: Request, key: Key, meter_id: str, raw_request: bytes,
                    subjects: list[str] | None) -> Response:
    config = await _meter(request, key, meter_id)
    aggregation = _document("request", raw_request, AggregationRequest)
    try:
        Aggregator(aggregation)
    except MeterspecError as error:
        raise HttpError(422, list(error.problems)) from None
    wanted = None if subjects is None else set(subjects)
    result = await _state(request).call(
        lambda store: readings_of(store, key, config, aggregation, wanted))
    return _json_response(result)


async def get_readings(request: Request) -> Response:
    key = await authorize(request, "read")
    meter_id = _identifier(request.query_params.get("meter"), "meter")
    text = _identifier(request.query_params.get("request"), "request")
    subjects = request.query_params.getlist("subject") or None
    return await _readings(request, key, meter_id, text.encode(), subjects)


async def post_readings(request: Request) -> Response:
    key = await authorize(request, "read")
    _, body = await read_body(request)
    try:
        query = msgspec.json.decode(body, type=ReadingsQuery)
    except msgspec.DecodeError as error:
        code = "invalid-json" if isinstance(error, msgspec.DecodeError) and not isinstance(
            error, msgspec.ValidationError) else "wrong-type"
        raise HttpError.single(400, code, f"a ReadingsQuery: {error}", "MS-HTTP-001") from None
    if not query.meter:
        raise HttpError.single(422, "empty-string", "meter is an identifier", "MS-HTTP-001",
                               path="/meter")
    return await _readings(request, key, query.meter, bytes(query.request), query.subjects)


async def quota_check(request: Request) -> Response:
    """MS-HTTP-006: the decision, its status and Retry-After."""
    key = await authorize(request, "read")
    _, body = await read_body(request)
    check = _document("quota-check", body, QuotaCheck)
    _same_tenant(key, check.workspace_id, check.universe_id)
    try:
        decision = decide_quota(check)
    except MeterspecError as error:
        raise HttpError(422, list(error.problems)) from None
    if decision.decision != "deny":
        return _json_response(decision)
    if decision.reason == "stale-usage":
        return _json_response(decision, 503)
    wait = parse_timestamp(decision.reset_at) - parse_timestamp(check.now)
    return _json_response(decision, 429, {"Retry-After": str(max(0, -(-wait // 10**9)))})


def records_of(store: Store, key: Key, config: MeteringConfig) -> list[Any]:
    """The records of the key's tenant's effective events (events a meter cannot measure
    are left out, as readings leave them out)."""
    meter = Meter(config)
    records = []
    for line in registry.tenant_events(store, key):
        try:
            records += meter.records(decode_event(line))
        except MeterspecError:
            continue
    return records


async def _billing(request: Request, build: Callable[[InvoiceRequest, list[Any]], list[Any]]
                   ) -> Response:
    key = await authorize(request, "read")
    meter_id = _identifier(request.query_params.get("meter"), "meter")
    _, body = await read_body(request)
    invoice_request = _document("invoice-request", body, InvoiceRequest)
    _same_tenant(key, invoice_request.workspace_id, invoice_request.universe_id)
    config = await _meter(request, key, meter_id)
    records = await _state(request).call(lambda store: records_of(store, key, config))
    try:
        return _json_response(build(invoice_request, records))
    except MeterspecError as error:
        raise HttpError(422, list(error.problems)) from None


async def invoices(request: Request) -> Response:
    return await _billing(request, build_invoices)


async def projections(request: Request) -> Response:
    return await _billing(request, project)


async def usage_page(request: Request) -> Response:
    """MS-HTTP-014: the subject's readings, as SVG and a table, and its quota status."""
    from meterspec.server.page import WINDOWS, render

    key = await authorize(request, "read")
    subject = request.path_params["subject"]
    meter_id = _identifier(request.query_params.get("meter"), "meter")
    window = request.query_params.get("window", "day")
    if window not in WINDOWS:
        raise HttpError.single(400, "invalid-value", f"window is one of {', '.join(WINDOWS)}",
                               "MS-HTTP-014", path="/window")
    policy_text = request.query_params.get("policy")
    policy = None if policy_text is None else _document("quota-policy", policy_text.encode(),
                                                         QuotaPolicy)
    invoice_text = request.query_params.get("invoices")
    invoice_request = None if invoice_text is None else _document(
        "invoice-request", invoice_text.encode(), InvoiceRequest)
    if invoice_request is not None:
        _same_tenant(key, invoice_request.workspace_id, invoice_request.universe_id)
    config = await _meter(request, key, meter_id)
    html = await _state(request).call(
        lambda store: render(store, key, config, meter_id, subject, window, policy,
                             time.time_ns(), invoice_request))
    return HTMLResponse(html)


# ------------------------------------------------------------------ errors

async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HttpError)
    return Response(error.document(), error.status, error.headers, media_type=MEDIA_TYPE)


async def _starlette_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if error.status_code == 405:
        found = HttpError.single(405, "method-not-allowed", f"{request.method} is not "
                                 f"allowed on {request.url.path}", "MS-HTTP-009",
                                 headers=dict(error.headers or {}))
    else:
        found = HttpError.single(error.status_code, "not-found" if error.status_code == 404
                                 else "invalid-value", f"no such path: {request.url.path}"
                                 if error.status_code == 404 else str(error.detail),
                                 "MS-HTTP-009")
    return await _http_error(request, found)


async def _unexpected(request: Request, error: Exception) -> Response:
    """Never a stack trace for any input (MS-HTTP-009): say what, log nothing of the body."""
    return await _http_error(request, HttpError.single(
        500, "internal-error", f"the server failed: {type(error).__name__}", "MS-HTTP-009"))


# ------------------------------------------------------------------ the application

MAX_HEADERS = 64 * 1024


class HeaderLimit:
    """MS-HTTP-008: 431 for a header section over MAX_HEADERS bytes, before any handler
    (uvicorn's own limit only bounds a header section that arrives in pieces)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and sum(len(name) + len(value) + 4 for name, value
                                           in scope["headers"]) > MAX_HEADERS:
            error = HttpError.single(431, "headers-too-large", f"the header section holds "
                                     f"at most {MAX_HEADERS:,} bytes", "MS-HTTP-008",
                                     headers={"Connection": "close"})
            await Response(error.document(), 431, error.headers, media_type=MEDIA_TYPE)(
                scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(settings: Settings) -> Starlette:
    """The application serving `settings.store`; the store opens at startup."""
    state = State(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        count = 1 if settings.store.startswith("duckdb:") else settings.connections
        for _ in range(count):
            store = open_store(settings.store)
            state.stores.append(store)
            state.pool.put(store)
        registry.prepare(state.stores[0])
        state.committer = GroupCommit(state, count)
        app.state.meterspec = state
        try:
            yield
        finally:
            for store in state.stores:
                store.close()

    routes = [
        Route("/v1/health", health, methods=["GET"]),
        Route("/v1/key", key_info, methods=["GET"]),
        Route("/v1/events", ingest, methods=["POST"]),
        Route("/v1/meters/{id}", put_meter, methods=["PUT"]),
        Route("/v1/meters/{id}", get_meter, methods=["GET"]),
        Route("/v1/readings", get_readings, methods=["GET"]),
        Route("/v1/readings", post_readings, methods=["POST"]),
        Route("/v1/quota/check", quota_check, methods=["POST"]),
        Route("/v1/invoices", invoices, methods=["POST"]),
        Route("/v1/projections", projections, methods=["POST"]),
        Route("/v1/usage/{subject}", usage_page, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(HeaderLimit)],
                     exception_handlers={HttpError: _http_error,
                                         HTTPException: _starlette_error,
                                         Exception: _unexpected})


def app_from_environment() -> Starlette:
    """The application of `meterspec serve --workers N` (uvicorn's factory, in each worker)."""
    document = msgspec.json.decode(os.environ[ENVIRONMENT])
    return create_app(Settings(document["store"], msgspec.convert(
        document["rate"], ratelimit.RateLimitPolicy), document["max_body"],
        document["body_seconds"], document["connections"]))
