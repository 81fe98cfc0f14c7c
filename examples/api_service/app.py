"""A small, realistic API service: login (successes and failures), an admin area (403s), rate
limiting (429), a slow report, an endpoint that fails (500), input validation (422).

It only uses stdlib ``logging``; otel-ext (zero-code or ``otel_ext.configure()``) turns those calls
into classified, redacted OTLP records. Run it:

    OTEL_PYTHON_DISTRO=otel_ext OTEL_EXT_BACKENDS=otlp+grpc://127.0.0.1:4317 \\
        opentelemetry-instrument uvicorn examples.api_service.app:app --no-access-log
    OTEL_EXT_IN_CODE=1 uvicorn examples.api_service.app:app      # same, configured in code
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

if os.environ.get("OTEL_EXT_IN_CODE"):
    import otel_ext

    otel_ext.configure()

logging.getLogger().setLevel(logging.INFO)  # plain logging.info() calls must reach the handler
logging.getLogger("uvicorn.error").setLevel(logging.WARNING)  # no server start/stop chatter
log = logging.getLogger("shop.api")

USERS = {"alice": "wonderland", "bob": "builder", "admin": "correct-horse-battery-staple"}
RATE_LIMIT = 20  # requests per client per second on /api/orders
# API keys of the example's tenants (the key itself is never logged: the access record carries the
# tenant id, which otel-ext's usage metrics export hashed and the report groups by)
API_KEYS = {"ak-acme-7f3c": "acme", "ak-globex-91b2": "globex", "ak-initech-2d4e": "initech",
            "ak-umbrella-c0de": "umbrella", "ak-hooli-55aa": "hooli", "ak-stark-0b0e": "stark",
            "ak-wayne-1a1a": "wayne", "ak-wonka-3c3c": "wonka"}
@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    yield
    stats_file = os.environ.get("SHOP_STATS_FILE")
    if stats_file:  # example-only: final counters for the demo, after everything was flushed
        import json

        import otel_ext

        pipeline = otel_ext.current_pipeline()
        if pipeline is not None:
            pipeline.force_flush(30_000)
            with open(stats_file, "w", encoding="utf-8") as out:
                json.dump(pipeline.stats(), out)


app = FastAPI(title="shop-api", lifespan=lifespan)
_hits: dict[str, deque[float]] = defaultdict(deque)
_hits_lock = threading.Lock()


class Login(BaseModel):
    username: str
    password: str


class Order(BaseModel):
    item: str = Field(min_length=1)
    quantity: int = Field(gt=0, le=100)


@app.middleware("http")
async def access_log(request: Request, call_next: Any) -> Any:
    """One structured access record per request, with OTel HTTP semconv attributes."""
    start = time.perf_counter()
    status = 500
    try:
        response = await call_next(request)
        status = response.status_code
        return response
    finally:
        route = request.scope.get("route")
        attrs = {
            "http.request.method": request.method,
            "url.path": request.url.path,
            "http.response.status_code": status,
            "client.address": request.headers.get("x-forwarded-for", request.client.host if request.client else ""),
            "user_agent.original": request.headers.get("user-agent", ""),
            "http.server.request.duration": time.perf_counter() - start,
        }
        if request.url.query:  # semconv: url.query only when the request had one (attack patterns live here)
            attrs["url.query"] = request.url.query
        if route is not None:  # semconv: http.route only when a route matched (no raw 404 paths)
            attrs["http.route"] = route.path
        tenant = API_KEYS.get(request.headers.get("x-api-key", ""))
        if tenant:
            attrs["tenant.id"] = tenant
        user = request.headers.get("x-user") or getattr(request.state, "user", None)
        if user:
            attrs["user.id"] = user
        if not request.url.path.startswith("/_otel_ext"):
            log.info("%s %s %d", request.method, request.url.path, status, extra=attrs)


@app.post("/api/login")
async def login(body: Login, request: Request) -> dict[str, str]:
    request.state.user = body.username
    # a careless debug line: the password and the session token are redacted before export
    log.debug("login attempt user=%s password=%s", body.username, body.password)
    if USERS.get(body.username) != body.password:
        log.warning("Failed login for user %s: invalid password", body.username)
        raise HTTPException(status_code=401, detail="invalid credentials")
    session = os.urandom(12).hex()
    log.info("User %s logged in successfully (session_id=%s)", body.username, session)
    return {"session": session}


@app.get("/api/admin/users")
async def admin_users(request: Request) -> list[str]:
    if request.headers.get("x-role") != "admin":
        raise HTTPException(status_code=403, detail="admins only")
    return sorted(USERS)


@app.get("/api/orders")
async def list_orders(request: Request) -> list[dict[str, Any]]:
    client = request.headers.get("x-forwarded-for", request.client.host if request.client else "")
    now = time.monotonic()
    with _hits_lock:
        hits = _hits[client]
        while hits and now - hits[0] > 1.0:
            hits.popleft()
        hits.append(now)
        limited = len(hits) > RATE_LIMIT
    if limited:
        raise HTTPException(status_code=429, detail="rate limit exceeded")
    return [{"id": 1, "item": "book", "quantity": 2}]


@app.get("/api/orders/{order_id}")
async def order_detail(order_id: int) -> dict[str, Any]:
    return {"id": order_id, "item": "book", "quantity": 1, "lines": [{"sku": "B-1", "price": 12.5}]}


@app.post("/api/orders")
async def create_order(order: Order) -> dict[str, Any]:
    log.info("order created for %s x%d", order.item, order.quantity)
    return {"id": 2, **order.model_dump()}


@app.get("/api/reports/slow")
async def slow_report() -> dict[str, str]:
    time.sleep(1.1)  # a slow query; crosses the 1 s performance threshold
    return {"report": "ready"}


@app.get("/api/orders/{order_id}/fail")
async def failing(order_id: int) -> dict[str, str]:
    try:
        raise RuntimeError(f"inventory service timed out for order {order_id}")
    except RuntimeError:
        log.exception("could not load order %d", order_id)
        raise HTTPException(status_code=500, detail="internal error") from None


@app.post("/_otel_ext/flush")
async def otel_ext_flush() -> JSONResponse:
    """Example-only: flush the pipeline and show its counters (no record contents, no secrets)."""
    import otel_ext

    pipeline = otel_ext.current_pipeline()
    if pipeline is None:
        return JSONResponse({"error": "otel-ext is not configured"}, status_code=503)
    ok = pipeline.force_flush(30_000)
    return JSONResponse({"flushed": ok, **pipeline.stats()})
