"""The scoring service: a Starlette app over the bundle in service.

Routes (DESIGN.md's binding paths): POST /score, POST /outcomes, GET /models,
GET /models/{name}/{version}, GET /health, GET /metrics, POST /admin/reload,
the Open Inference Protocol's /v2/..., and the live page at / (with its data
at /api/live and its assets under /static). `ROUTES` is the only place a path
is written; the handlers are plain functions that read what they share from
`request.app.state` (settings, switch, buffer, outcome_buffer, outcomes, metrics, monitor, recent, run_id).

Every answer is JSON with one-line errors (no traceback ever reaches a
client), carries the bundle it was scored with (`X-MLSM-Bundle` header,
`bundle` field), is counted in the metrics under its route's path template,
and needs the bearer token MLSM_SERVE_TOKEN when one is set — except the
health endpoints (/health, /v2/health/live, /v2/health/ready: probes carry
no token), and the page shell and its static assets, which hold no data (the
page asks for the token).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .._gc import tune_for_serving
from ..core.model import model_key
from ..files import dumps
from .batching import Batcher
from .bundle import ServedBundle, load_served_bundle
from .metrics import ServeMetrics
from .monitoring import MonitorGauges, monitor_reader
from .oip import (
    InferError,
    attach_binary,
    encode_response,
    infer_response,
    model_metadata,
    records_from_request,
    row_entries,
    server_metadata,
    split_body,
    wanted_outputs,
)
from .outcomes import LiveOutcomes
from .policy import bundle_policy
from .recent import RecentScores
from .scoring import ScoringThreads, TooManyStuck
from .swap import BundleSwitch
from .timing import Timings

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SCORING_THREADS = min(32, (os.cpu_count() or 1) + 4)  # requests' records score in them (see serve.scoring)


@dataclass
class ServeSettings:
    """How one server runs (the `serve` command's options)."""

    bundle_dir: str
    token: str | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    max_records: int = 10_000
    body_timeout: float = 30.0
    poll_seconds: float = 1.0
    id_field: str = "id"
    mongo_uri: str | None = None
    mongo_db: str | None = None
    mongo_ids_per_query: int | None = None  # MongoStore's ids_per_query (None: its default)
    batch_max_size: int = 64  # records in one batch of concurrent requests (1: no batching)
    batch_max_latency_ms: float = 5.0  # longest a request waits for others to join its batch
    record_timeout: float = 60.0  # seconds one record may take per model (0: no limit)
    monitor: str | None = None  # a run directory (or its monitor.json) whose monitor findings /metrics shows


class Problem(Exception):
    """A request answered with an error status and a one-line reason."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def json_response(value, status: int = 200, bundle: str | None = None, headers: dict | None = None) -> Response:
    response = Response(dumps(value), status, headers=headers, media_type="application/json")
    if bundle:
        response.headers["X-MLSM-Bundle"] = bundle
    return response


async def read_body(request: Request, settings: ServeSettings) -> bytes:
    """The request body, within the size limit and time limit, not empty; Problem otherwise."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_body_bytes:
        raise Problem(413, f"body of {int(declared):,} bytes is over the limit of {settings.max_body_bytes:,} bytes")
    encoding = request.headers.get("content-encoding", "identity")
    if encoding.lower() != "identity":
        raise Problem(415, f"Content-Encoding {encoding} is not supported: send the body uncompressed")
    chunks, size = [], 0
    try:
        with anyio.fail_after(settings.body_timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > settings.max_body_bytes:
                    raise Problem(413, f"body is over the limit of {settings.max_body_bytes:,} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise Problem(408, f"the body did not arrive within {settings.body_timeout:g} s") from None
    if not size:
        raise Problem(400, "empty body: send a JSON record or a list of records")
    return b"".join(chunks)


def parse_json(body: bytes):
    """`body` as JSON; Problem 400 when it is not."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, f"malformed JSON: {str(exc).splitlines()[0]}") from None


def create_app(settings: ServeSettings, bundle: ServedBundle | None = None) -> Starlette:
    """The ASGI app serving the bundle at `settings.bundle_dir` (loaded now unless given).

    Raises BundleError when the bundle cannot be loaded: a server never starts
    without models.
    """
    metrics = ServeMetrics()
    switch = BundleSwitch(settings.bundle_dir, bundle or load_served_bundle(settings.bundle_dir),
                          check=bundle_policy(settings.mongo_uri, settings.mongo_db),
                          on_change=lambda outcome, _: metrics.bundle_events.labels(outcome).inc())
    buffer, outcome_buffer = buffers(settings, switch.current.sha256)
    app = Starlette(routes=ROUTES, exception_handlers={HTTPException: not_found}, lifespan=lifespan)
    state = app.state
    state.settings, state.switch, state.buffer, state.metrics = settings, switch, buffer, metrics
    state.recent, state.run_id = RecentScores(), buffer.run_id if buffer else "serve"
    state.outcome_buffer = outcome_buffer
    state.outcomes = LiveOutcomes(settings.id_field, memory=outcome_buffer is None,
                                  shared_dir=os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    metrics.show_figures(state.outcomes.figures)
    state.scorers = ScoringThreads(SCORING_THREADS)
    reader = monitor_reader(settings.monitor, settings.mongo_uri, settings.mongo_db)
    state.monitor = MonitorGauges(reader) if reader else None
    state.batcher = Batcher(functools.partial(score_checked, state), settings.batch_max_size,
                            settings.batch_max_latency_ms / 1000, on_batch=metrics.observe_batch)
    return app


def buffers(settings: ServeSettings, bundle: str):
    """With MongoDB, the buffers storing served results and posted outcomes; (None, None) without."""
    if not settings.mongo_uri:
        return None, None
    from ..audit.database import AuditDatabase
    from ..store.mongo import MongoStore
    from .storage import OUTCOMES_WAITING, OutcomeBuffer, ResultBuffer

    uri, database, id_field = settings.mongo_uri, settings.mongo_db, settings.id_field
    tuning = {"ids_per_query": settings.mongo_ids_per_query} if settings.mongo_ids_per_query else {}

    def store():
        return MongoStore.connect(uri, database, id_field=id_field, retries=1, **tuning)

    def audit_database():
        audit = AuditDatabase(store())
        audit.ensure_indexes()
        return audit

    # one attempt per write: the buffer retries (forever, keeping the documents), so /health tells of an
    # outage at its first failed store and shutdown is not held up by a store's own retries
    return (ResultBuffer(store, bundle=bundle),
            OutcomeBuffer(audit_database, flush_seconds=0.2, limit=OUTCOMES_WAITING))


@contextlib.asynccontextmanager
async def lifespan(app: Starlette):
    """Watch BUNDLE_DIR while serving; on shutdown, store what is buffered (bounded in time)."""
    watcher = asyncio.create_task(app.state.switch.watch(app.state.settings.poll_seconds))
    tune_for_serving()
    try:
        yield
    finally:
        watcher.cancel()
        app.state.scorers.close()
        async with anyio.create_task_group() as closing:  # together: shutdown stays within 10 s
            for buffer in (app.state.buffer, app.state.outcome_buffer):
                if buffer is not None:
                    closing.start_soon(anyio.to_thread.run_sync, buffer.close)


async def not_found(request: Request, exc: HTTPException) -> Response:
    return json_response({"error": f"{exc.status_code}: {exc.detail} ({request.method} {request.url.path})"},
                         exc.status_code)


def authorized(request: Request) -> bool:
    """True when no token is set, or the request carries it (compared in constant time)."""
    token = request.app.state.settings.token
    if not token:
        return True
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(credentials.encode(), token.encode())


async def answer(handler, path: str, public: bool, timed: bool, request: Request) -> Response:
    """Call `handler` behind the token check, with one-line errors, the bundle header and the metrics
    (labelled with `path`, the route's path template); for a `timed` route, the stages the handler
    timed (`request.state.timings`) as `Server-Timing` and in the metrics."""
    started = time.perf_counter()
    if timed:
        request.state.timings = Timings()
    try:
        if not public and not authorized(request):
            raise Problem(401, "missing or wrong bearer token (Authorization: Bearer ...)",
                          {"WWW-Authenticate": "Bearer"})
        response = await handler(request)
    except Problem as problem:
        response = json_response({"error": str(problem)}, problem.status, headers=problem.headers)
    except Exception:  # noqa: BLE001 - the client gets one line; the log gets the traceback
        log.exception("%s %s failed", request.method, request.url.path)
        response = json_response({"error": "internal error; the server log has the details"}, 500)
    state = request.app.state
    response.headers.setdefault("X-MLSM-Bundle", state.switch.current.sha256)
    response.headers["X-Content-Type-Options"] = "nosniff"
    took = time.perf_counter() - started
    if timed and request.state.timings.stages:
        response.headers["Server-Timing"] = request.state.timings.header(took)
        state.metrics.observe_stages(path, request.state.timings.stages)
    state.metrics.observe_request(path, request.method, response.status_code, took)
    return response


def route(method: str, path: str, handler, public: bool = False, timed: bool = False) -> Route:
    """`handler` at `path`, answered through `answer` (public: no token needed; timed: a scoring route,
    whose handler times its stages)."""
    return Route(path, functools.partial(answer, handler, path, public, timed), methods=[method])


# --- handlers ----------------------------------------------------------------------

async def score_records(request: Request, records: list, plan=None):
    """Score `records` with the bundle in service (read once); store and count them. (bundle, Scored)"""
    state = request.app.state
    settings, bundle = state.settings, state.switch.current
    if len(records) > settings.max_records:
        raise Problem(413, f"{len(records):,} records in one request; the limit is {settings.max_records:,} "
                           "(split the list)")

    timings = request.state.timings
    if state.batcher.takes(len(records)):
        scored = await state.batcher.score_request(bundle, records, plan=plan, id_field=settings.id_field,
                                                   run_id=state.run_id, timings=timings)
    else:  # scored alone
        good, rejected = bundle.check(records, settings.id_field)
        timings.lap("check")
        outcomes = await score_checked(state, bundle, plan or bundle.plan, good) if good else []
        scored = bundle.documents(good, rejected, outcomes, id_field=settings.id_field, run_id=state.run_id)
        timings.lap("score")
    if state.buffer is not None:
        state.buffer.add(scored.documents)
    state.outcomes.remember_scores(scored.documents)
    state.metrics.observe_scores(scored.outcomes, len(scored.rejected))
    state.recent.add(scored.outcomes, time.time())
    return bundle, scored


async def score_checked(state, bundle: ServedBundle, plan, records: list) -> list:
    """The scoring core over checked records (a request's, or a batch of requests', see `serve.batching`),
    in one of the scoring threads, never on the event loop: each record within --record-timeout (see
    `serve.scoring`); Problem 500 when more than a few of them are stuck."""
    limit = state.settings.record_timeout or None

    def work(board, stuck):
        return bundle.score_checked(records, plan, limit=limit, board=board, stuck=stuck)

    try:
        return await state.scorers.score(work)
    except TooManyStuck as exc:
        raise Problem(500, str(exc)) from None


async def score(request: Request) -> Response:
    raw = await read_body(request, request.app.state.settings)
    timings = request.state.timings
    timings.start()
    body = parse_json(raw)
    timings.lap("parse")
    if isinstance(body, dict):
        records, single = [body], True
    elif isinstance(body, list):
        records, single = body, False
    else:
        raise Problem(400, f"body must be a record (object) or a list of records, got {type(body).__name__}")
    bundle, scored = await score_records(request, records)
    if single and scored.rejected:
        raise Problem(400, f"record not scored: {scored.rejected[0]['reason']}")
    out = {"bundle": bundle.sha256, "documents": scored.documents, "rejected": scored.rejected,
           "draft": bundle.drafts}
    if request.app.state.buffer is not None:
        out["stored"] = "queued"
    response = json_response(out, bundle=bundle.sha256)
    timings.lap("serialise")
    return response


async def post_outcomes(request: Request) -> Response:
    """Outcomes (the records of `mlsm-nb outcomes`, label column named by ?label=): each bad one refused
    with its reason, the others queued for MongoDB (or kept in memory) and joined to the scores given
    (see `serve.outcomes`). A single record refused: 400; too many waiting for MongoDB: 503, none kept."""
    state = request.app.state
    label = request.query_params.get("label")
    if not label:
        raise Problem(400, "say which label the outcomes give: POST /outcomes?label=NAME (e.g. converted)")
    body = parse_json(await read_body(request, state.settings))
    records = [body] if isinstance(body, dict) else body
    if not isinstance(records, list):
        raise Problem(400, f"body must be an outcome (object) or a list of outcomes, got {type(body).__name__}")
    if len(records) > state.settings.max_records:
        raise Problem(413, f"{len(records):,} outcomes in one request; the limit is {state.settings.max_records:,}")
    accepted, refused = state.outcomes.check(records, label)
    if isinstance(body, dict) and refused:
        state.outcomes.accept([], 1)
        state.metrics.outcomes.labels("refused").inc()
        raise Problem(400, f"outcome not kept: {refused[0]['reason']}")
    if state.outcome_buffer is not None and not state.outcome_buffer.add(accepted):
        state.metrics.outcomes.labels("busy").inc(len(records))
        raise Problem(503, f"{state.outcome_buffer.pending:,} outcomes are waiting for MongoDB "
                           f"({state.outcome_buffer.last_error}); none of these was kept, send them again later",
                      {"Retry-After": "5"})
    unscored = state.outcomes.accept(accepted, len(refused))
    for result, count in (("accepted", len(accepted)), ("refused", len(refused)), ("unscored", len(unscored))):
        if count:
            state.metrics.outcomes.labels(result).inc(count)
    return json_response({"accepted": len(accepted), "refused": refused, "unscored": unscored,
                          "stored": "memory" if state.outcome_buffer is None else "queued"})


async def models(request: Request) -> Response:
    bundle = request.app.state.switch.current
    return json_response({"bundle": bundle.sha256, "models": [bundle.describe_model(m) for m in bundle.plan]},
                         bundle=bundle.sha256)


def find(bundle: ServedBundle, name: str, version: str | None):
    """The model `name` (at `version`) in `bundle`; Problem 404 naming what the bundle has."""
    model = bundle.find(name, version)
    if model is None:
        which = f"{name} {version}" if version else name
        known = ", ".join(model_key(*m.key) for m in bundle.plan)
        reason = "several versions; name one" if version is None and any(m.name == name for m in bundle.plan) \
            else "no such model"
        raise Problem(404, f"model {which}: {reason} (bundle has {known})")
    return model


async def model_detail(request: Request) -> Response:
    bundle = request.app.state.switch.current
    model = find(bundle, request.path_params["name"], request.path_params["version"])
    return json_response({"bundle": bundle.sha256, **bundle.describe_model(model, detail=True)},
                         bundle=bundle.sha256)


def service_state(request: Request) -> dict:
    """The swap's state and, with MongoDB, the storing's; `status` degraded when either has a problem."""
    state = request.app.state
    out = state.switch.health()
    if state.buffer is not None:
        out["storage"] = state.buffer.status()
    out["outcomes"] = state.outcomes.status()
    if state.outcome_buffer is not None:
        out["outcomes"].update(kept="mongodb", **state.outcome_buffer.status())
    degraded = out["refused"] or (state.buffer is not None and (out["storage"]["error"] or
                                                                 out["outcomes"]["error"]))
    return {"status": "degraded" if degraded else "ok", **out}


async def health(request: Request) -> Response:
    return json_response(service_state(request))


async def metrics_text(request: Request) -> Response:
    """Every worker's metrics, and what `mlsm-nb monitor` last found (see serve.monitoring)."""
    metrics, monitor = request.app.state.metrics, request.app.state.monitor
    text = metrics.render()
    if monitor is not None:
        await anyio.to_thread.run_sync(monitor.refresh)
        text += monitor.render()
    return Response(text, media_type=metrics.content_type)


async def reload(request: Request) -> Response:
    outcome = await request.app.state.switch.reload(force=request.query_params.get("force") == "1")
    return json_response(outcome, 422 if outcome["outcome"] == "refused" else 200, bundle=outcome["bundle"])


async def page(request: Request) -> Response:
    return FileResponse(STATIC / "live.html", headers={"Content-Security-Policy": PAGE_POLICY,
                                                       "Cache-Control": "no-store"})


async def live(request: Request) -> Response:
    state = request.app.state
    return json_response({**service_state(request), "recent": state.recent.snapshot(),
                          "labelled": state.outcomes.figures()})


# --- Open Inference Protocol ---------------------------------------------------------

async def v2_live(request: Request) -> Response:
    return json_response({"live": True})


async def v2_ready(request: Request) -> Response:
    return json_response({"ready": True})


async def v2_server(request: Request) -> Response:
    return json_response(server_metadata())


async def v2_model(request: Request) -> Response:
    bundle = request.app.state.switch.current
    model = find(bundle, request.path_params["name"], request.path_params.get("version"))
    versions = [m.version for m in bundle.plan if m.name == model.name]
    return json_response(model_metadata(model, versions, bundle.outputs.get(model.key, {})), bundle=bundle.sha256)


async def v2_model_ready(request: Request) -> Response:
    bundle = request.app.state.switch.current
    model = find(bundle, request.path_params["name"], request.path_params.get("version"))
    return json_response({"name": model.name, "ready": True}, bundle=bundle.sha256)


async def v2_infer(request: Request) -> Response:
    state = request.app.state
    raw = await read_body(request, state.settings)
    timings = request.state.timings
    timings.start()
    bundle = state.switch.current
    model = find(bundle, request.path_params["name"], request.path_params.get("version"))
    stated = bundle.outputs.get(model.key, {})
    try:
        head, binary = split_body(raw, request.headers.get("inference-header-content-length"))
        body = parse_json(head)
        attach_binary(body, binary)
        timings.lap("parse")
        records, request_id = records_from_request(body, state.settings.id_field)
        wanted = wanted_outputs(body, model, stated)
    except InferError as exc:
        raise Problem(400, str(exc)) from None
    timings.lap("check")
    bundle, scored = await score_records(request, records, bundle.plan_for(model))
    entries = row_entries(model, scored.documents, scored.rejected, len(records))
    content, headers = encode_response(
        infer_response(model, entries, request_id, bundle.sha256, scored.rejected, stated, wanted), wanted)
    response = Response(content, headers={**headers, "X-MLSM-Bundle": bundle.sha256})
    timings.lap("serialise")
    return response


ROUTES = [
    route("GET", "/", page, public=True),
    route("POST", "/score", score, timed=True),
    route("POST", "/outcomes", post_outcomes),
    route("GET", "/models", models),
    route("GET", "/models/{name}/{version}", model_detail),
    route("GET", "/health", health, public=True),
    route("GET", "/metrics", metrics_text),
    route("POST", "/admin/reload", reload),
    route("GET", "/api/live", live),
    route("GET", "/v2", v2_server),
    route("GET", "/v2/health/live", v2_live, public=True),
    route("GET", "/v2/health/ready", v2_ready, public=True),
    route("GET", "/v2/models/{name}", v2_model),
    route("GET", "/v2/models/{name}/ready", v2_model_ready),
    route("GET", "/v2/models/{name}/versions/{version}", v2_model),
    route("GET", "/v2/models/{name}/versions/{version}/ready", v2_model_ready),
    route("POST", "/v2/models/{name}/infer", v2_infer, timed=True),
    route("POST", "/v2/models/{name}/versions/{version}/infer", v2_infer, timed=True),
    Mount("/static", StaticFiles(directory=STATIC), name="static"),
]
