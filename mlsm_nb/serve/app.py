"""The scoring service: a Starlette app over the bundle in service.

Routes (DESIGN.md's binding paths): POST /score, GET /models,
GET /models/{name}/{version}, GET /health, GET /metrics, POST /admin/reload,
the Open Inference Protocol's /v2/..., and the live page at / (with its data
at /api/live and its assets under /static). Every answer is JSON with one-line
errors (no traceback ever reaches a client), carries the bundle it was scored
with (`X-MLSM-Bundle` header, `bundle` field), and needs the bearer token
MLSM_SERVE_TOKEN when one is set — except /health, and the page shell and its
static assets, which hold no data (the page asks for the token).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
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

from ..files import dumps
from .bundle import ServedBundle, load_served_bundle
from .metrics import ServeMetrics
from .oip import InferError, infer_response, model_metadata, records_from_request, server_metadata
from .recent import RecentScores
from .swap import BundleSwitch

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
INLINE_RECORDS = 1000  # up to this many score on the event loop (tens of ms; a thread hop costs ~10%); more in a thread


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


async def read_json(request: Request, settings: ServeSettings):
    """The request body as JSON, within the size limit and time limit; Problem otherwise."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_body_bytes:
        raise Problem(413, f"body of {int(declared):,} bytes is over the limit of {settings.max_body_bytes:,} bytes")
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
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise Problem(400, f"malformed JSON: {str(exc).splitlines()[0]}") from None


def create_app(settings: ServeSettings, bundle: ServedBundle | None = None) -> Starlette:
    """The ASGI app serving the bundle at `settings.bundle_dir` (loaded now unless given).

    Raises BundleError when the bundle cannot be loaded: a server never starts
    without models.
    """
    metrics = ServeMetrics()
    recent = RecentScores()
    switch = BundleSwitch(settings.bundle_dir, bundle or load_served_bundle(settings.bundle_dir),
                          on_change=lambda outcome, _: metrics.bundle_events.labels(outcome).inc())
    buffer = None
    if settings.mongo_uri:
        from ..store.mongo import MongoStore
        from .storage import ResultBuffer

        uri, database, id_field = settings.mongo_uri, settings.mongo_db, settings.id_field
        buffer = ResultBuffer(lambda: MongoStore.connect(uri, database, id_field=id_field),
                              bundle=switch.current.sha256)
    run_id = buffer.run_id if buffer else "serve"

    def authorized(request: Request) -> bool:
        if not settings.token:
            return True
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(credentials.encode(), settings.token.encode())

    def endpoint(path: str, public: bool = False):
        """Wrap a handler: token check, one-line errors, the bundle header, metrics."""
        def wrap(handler):
            async def answer(request: Request) -> Response:
                started = time.perf_counter()
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
                response.headers.setdefault("X-MLSM-Bundle", switch.current.sha256)
                response.headers["X-Content-Type-Options"] = "nosniff"
                metrics.observe_request(path, request.method, response.status_code, time.perf_counter() - started)
                return response
            return answer
        return wrap

    async def score_records(records: list, plan=None):
        bundle = switch.current  # read once: every record of this request uses this bundle
        if len(records) > settings.max_records:
            raise Problem(413, f"{len(records):,} records in one request; the limit is {settings.max_records:,} "
                               "(split the list)")

        def work():
            return bundle.score(records, id_field=settings.id_field, run_id=run_id, plan=plan)

        scored = work() if len(records) <= INLINE_RECORDS else await anyio.to_thread.run_sync(work)
        if buffer is not None:
            buffer.add(scored.documents)
        metrics.observe_scores(scored.outcomes, len(scored.rejected))
        recent.add(scored.outcomes, time.time())
        return bundle, scored

    @endpoint("/score")
    async def score(request: Request) -> Response:
        body = await read_json(request, settings)
        if isinstance(body, dict):
            records, single = [body], True
        elif isinstance(body, list):
            records, single = body, False
        else:
            raise Problem(400, f"body must be a record (object) or a list of records, got {type(body).__name__}")
        bundle, scored = await score_records(records)
        if single and scored.rejected:
            raise Problem(400, f"record not scored: {scored.rejected[0]['reason']}")
        drafts = [f"{m.name}@{m.version}" for m in bundle.plan if m.status == "draft"]
        out = {"bundle": bundle.sha256, "documents": scored.documents, "rejected": scored.rejected,
               "draft": drafts}
        if buffer is not None:
            out["stored"] = "queued"
        return json_response(out, bundle=bundle.sha256)

    @endpoint("/models")
    async def models(request: Request) -> Response:
        bundle = switch.current
        return json_response({"bundle": bundle.sha256, "models": [bundle.describe_model(m) for m in bundle.plan]},
                             bundle=bundle.sha256)

    def find(bundle: ServedBundle, name: str, version: str | None):
        model = bundle.find(name, version)
        if model is None:
            which = f"{name} {version}" if version else name
            known = ", ".join(f"{m.name}@{m.version}" for m in bundle.plan)
            reason = "several versions; name one" if version is None and any(m.name == name for m in bundle.plan) \
                else "no such model"
            raise Problem(404, f"model {which}: {reason} (bundle has {known})")
        return model

    @endpoint("/models/{name}/{version}")
    async def model_detail(request: Request) -> Response:
        bundle = switch.current
        model = find(bundle, request.path_params["name"], request.path_params["version"])
        return json_response({"bundle": bundle.sha256, **bundle.describe_model(model, detail=True)},
                             bundle=bundle.sha256)

    @endpoint("/health", public=True)
    async def health(request: Request) -> Response:
        state = switch.health()
        if buffer is not None:
            state["storage"] = buffer.status()
        status = "degraded" if state["refused"] or (buffer and state["storage"]["error"]) else "ok"
        return json_response({"status": status, **state})

    @endpoint("/metrics")
    async def metrics_text(request: Request) -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @endpoint("/admin/reload")
    async def reload(request: Request) -> Response:
        outcome = await switch.reload(force=request.query_params.get("force") == "1")
        return json_response(outcome, 422 if outcome["outcome"] == "refused" else 200, bundle=outcome["bundle"])

    @endpoint("/", public=True)
    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "live.html", headers={"Content-Security-Policy": PAGE_POLICY,
                                                           "Cache-Control": "no-store"})

    @endpoint("/api/live")
    async def live(request: Request) -> Response:
        state = switch.health()
        if buffer is not None:
            state["storage"] = buffer.status()
        return json_response({**state, "recent": recent.snapshot()})

    # --- Open Inference Protocol -------------------------------------------------

    @endpoint("/v2/health", public=True)
    async def v2_health(request: Request) -> Response:
        return json_response({"live": True} if request.url.path.endswith("live") else {"ready": True})

    @endpoint("/v2")
    async def v2_server(request: Request) -> Response:
        return json_response(server_metadata())

    @endpoint("/v2/models/{name}")
    async def v2_model(request: Request) -> Response:
        bundle = switch.current
        model = find(bundle, request.path_params["name"], request.path_params.get("version"))
        if request.url.path.endswith("/ready"):
            return json_response({"name": model.name, "ready": True}, bundle=bundle.sha256)
        versions = [m.version for m in bundle.plan if m.name == model.name]
        return json_response(model_metadata(model, versions), bundle=bundle.sha256)

    @endpoint("/v2/models/{name}/infer")
    async def v2_infer(request: Request) -> Response:
        body = await read_json(request, settings)
        bundle = switch.current
        model = find(bundle, request.path_params["name"], request.path_params.get("version"))
        try:
            records, request_id = records_from_request(body, settings.id_field)
        except InferError as exc:
            raise Problem(400, str(exc)) from None
        bundle, scored = await score_records(records, bundle.plan_for(model))
        entries = [doc["results"][model.name][model.version] for doc in scored.documents]
        return json_response(infer_response(model, entries, request_id, bundle.sha256, scored.rejected),
                             bundle=bundle.sha256)

    async def not_found(request: Request, exc: HTTPException) -> Response:
        return json_response({"error": f"{exc.status_code}: {exc.detail} ({request.method} {request.url.path})"},
                             exc.status_code)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        watcher = asyncio.create_task(switch.watch(settings.poll_seconds))
        try:
            yield
        finally:
            watcher.cancel()
            if buffer is not None:
                await anyio.to_thread.run_sync(buffer.close)

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/score", score, methods=["POST"]),
        Route("/models", models, methods=["GET"]),
        Route("/models/{name}/{version}", model_detail, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics_text, methods=["GET"]),
        Route("/admin/reload", reload, methods=["POST"]),
        Route("/api/live", live, methods=["GET"]),
        Route("/v2", v2_server, methods=["GET"]),
        Route("/v2/health/live", v2_health, methods=["GET"]),
        Route("/v2/health/ready", v2_health, methods=["GET"]),
        Route("/v2/models/{name}", v2_model, methods=["GET"]),
        Route("/v2/models/{name}/ready", v2_model, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}", v2_model, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/ready", v2_model, methods=["GET"]),
        Route("/v2/models/{name}/infer", v2_infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", v2_infer, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: not_found}, lifespan=lifespan)
    app.state.switch, app.state.buffer, app.state.metrics = switch, buffer, metrics
    return app
