"""The router in front of an endpoint's replicas: the one address clients call.

It authenticates the caller, applies the caller's rate limit, picks a production variant by
weight (or the one a target-variant header names), sends the request to the least busy ready
replica of that variant, and sends a copy to each shadow variant in the background, comparing
the shadow's answer with the live one without ever returning it. It measures every request
for Prometheus and the deployment alarms, and writes one JSON access-log line per request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from wellml.errors import PermissionDenied, Unauthenticated, WellmlError, http_status
from wellml.governance.ratelimit import RateLimiter
from wellml.serving.app import INTERNAL_HEADER, dumps, loads
from wellml.serving.config import EndpointConfig, RateLimit
from wellml.serving.metrics import EndpointMetrics, RollingStats, ShadowStats
from wellml.serving.proxy import ReplicaClient, ReplicaUnavailable, UpstreamResponse

access_log = logging.getLogger("wellml.access")
log = logging.getLogger("wellml.serving")

TARGET_VARIANT_HEADERS = (b"x-amzn-sagemaker-target-variant", b"x-wellml-target-variant")
FORWARD_REQUEST_HEADERS = (
    b"content-type",
    b"accept",
    b"x-wellml-inference-id",
    b"x-amzn-sagemaker-inference-id",
    b"x-amzn-sagemaker-custom-attributes",
    b"x-amzn-sagemaker-target-model",
    b"x-wellml-target-model",
    b"x-amzn-sagemaker-enable-explanations",
    b"x-wellml-enable-explanations",
)
FORWARD_RESPONSE_HEADERS = (
    b"content-type",
    b"x-wellml-model-version",
    b"x-wellml-model-loaded",
    b"x-wellml-inference-id",
    b"x-wellml-ood-rows",
    b"x-amzn-sagemaker-custom-attributes",
)
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(eq=False)
class Replica:
    """One replica process as the router sees it."""

    variant: str
    port: int
    client: ReplicaClient
    ready: bool = False
    inflight: int = 0
    served: int = 0
    # Multi-model replicas report what they hold in every answer.
    models_loaded: int | None = None
    models_loaded_bytes: int | None = None


@dataclass
class VariantRoute:
    """The replicas of one variant and its share of traffic."""

    name: str
    model_version: str
    replicas: list[Replica] = field(default_factory=list)
    weight: float = 0.0
    shadow_percent: float | None = None  # set for shadow variants
    current: float = 0.0  # smooth weighted round robin state

    def pick(self) -> Replica | None:
        """The ready replica with the fewest requests in flight."""
        best = None
        for r in self.replicas:
            if r.ready and (best is None or r.inflight < best.inflight):
                best = r
        return best

    @property
    def ready(self) -> int:
        """Ready replicas."""
        return sum(1 for r in self.replicas if r.ready)


class RoutingTable:
    """Variants by name; production variants are chosen by smooth weighted round robin, which
    gives each variant exactly its share over every cycle of requests."""

    def __init__(self) -> None:
        self.variants: dict[str, VariantRoute] = {}
        self._live: list[VariantRoute] = []

    def set_weights(self, weights: dict[str, float]) -> None:
        """Give production variants their weights (variants not named get 0)."""
        for v in self.variants.values():
            if v.shadow_percent is None:
                v.weight = float(weights.get(v.name, 0.0))
                v.current = 0.0
        self._live = [
            v for v in self.variants.values() if v.shadow_percent is None and v.weight > 0
        ]

    def weights(self) -> dict[str, float]:
        """Production variants' current shares."""
        total = sum(v.weight for v in self._live) or 1.0
        return {
            v.name: v.weight / total for v in self.variants.values() if v.shadow_percent is None
        }

    def choose(self) -> VariantRoute | None:
        """The next production variant by weight, skipping variants with no ready replica."""
        live = [v for v in self._live if v.ready]
        if not live:
            return None
        total = 0.0
        best = live[0]
        for v in live:
            v.current += v.weight
            total += v.weight
            if v.current > best.current:
                best = v
        best.current -= total
        return best

    def shadows(self) -> list[VariantRoute]:
        """The shadow variants."""
        return [v for v in self.variants.values() if v.shadow_percent is not None]


class Authenticator:
    """Checks bearer tokens against a scope, remembering answers for a few seconds."""

    def __init__(self, lookup: Callable[[str | None], dict[str, Any]], ttl: float = 5.0) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._ok: dict[str, tuple[float, dict[str, Any]]] = {}

    def __call__(self, token: str | None) -> dict[str, Any]:
        """The token's record.

        Raises:
            Unauthenticated, PermissionDenied: the token may not call.
        """
        if token:
            hit = self._ok.get(token)
            if hit is not None and hit[0] > time.monotonic():
                return hit[1]
        record = self._lookup(token)
        assert token is not None
        if len(self._ok) > 10_000:
            self._ok.clear()
        self._ok[token] = (time.monotonic() + self._ttl, record)
        return record


def _bearer(headers: dict[bytes, bytes]) -> str | None:
    auth = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, token = auth.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class RequestRefused(Exception):
    """A request the router answers itself with a 4xx or 5xx."""

    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or []


class Router:
    """The ASGI app of an endpoint's public address."""

    def __init__(
        self,
        endpoint: str,
        config: EndpointConfig,
        *,
        internal_secret: str,
        authenticate: Callable[[str | None], dict[str, Any]] | None = None,
        metrics_scope_check: Callable[[str | None], dict[str, Any]] | None = None,
        on_startup: Callable[[], Awaitable[None]] | None = None,
        on_shutdown: Callable[[], Awaitable[None]] | None = None,
        request_timeout: float = 60.0,
    ) -> None:
        self.endpoint = endpoint
        self.config = config
        self.table = RoutingTable()
        self.metrics = EndpointMetrics(endpoint)
        self.stats = RollingStats()
        self.shadow_stats: dict[str, ShadowStats] = {}
        self.limiter = RateLimiter()
        self._secret = internal_secret.encode()
        self._authenticate = authenticate
        self._metrics_auth = metrics_scope_check
        self._on_startup = on_startup
        self._on_shutdown = on_shutdown
        self._timeout = request_timeout
        self._rng = random.Random()
        self._background: set[asyncio.Task[None]] = set()
        self._labels: dict[tuple[str, int], Any] = {}
        self._latency: dict[str, Any] = {}
        self.accepting = True
        # Called before each scrape, so that gauges kept elsewhere (replicas) are current.
        self.before_scrape: Callable[[], None] | None = None

    # -- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":  # pragma: no cover - websockets are not served
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/ping" and method == "GET":
            await _reply(send, 200 if self.ready() else 503, b"", content_type=None)
            return
        if path.startswith("/v2/health/") and method == "GET":
            kind = path.removeprefix("/v2/health/")
            if kind in ("live", "ready"):
                ok = kind == "live" or self.ready()
                await _reply(send, 200 if ok else 503, dumps({kind: ok}))
                return
        if path == "/metrics" and method == "GET":
            await self._serve_metrics(scope, send)
            return
        if (
            (path == "/invocations" and method == "POST")
            or path == "/v2"
            or path.startswith("/v2/models/")
        ):
            await self._invoke(scope, receive, send)
            return
        await _reply(send, 404, dumps({"error": f"no route {method} {path}", "status": 404}))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self._on_startup is not None:
                        await self._on_startup()
                except Exception as exc:
                    log.exception("endpoint %s failed to start", self.endpoint)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.accepting = False
                try:
                    if self._on_shutdown is not None:
                        await self._on_shutdown()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    def ready(self) -> bool:
        """Whether every production variant that gets traffic has a ready replica."""
        live = [
            v for v in self.table.variants.values() if v.shadow_percent is None and v.weight > 0
        ]
        return self.accepting and bool(live) and all(v.ready for v in live)

    async def _serve_metrics(self, scope: Scope, send: Send) -> None:
        if self._metrics_auth is not None:
            headers = dict(scope["headers"])
            try:
                self._metrics_auth(_bearer(headers))
            except WellmlError as exc:
                await _reply(send, http_status(exc), dumps({"error": str(exc)}))
                return
        if self.before_scrape is not None:
            self.before_scrape()
        await _reply(send, 200, self.metrics.render(), content_type=b"text/plain; version=0.0.4")

    # -- invocations -------------------------------------------------------------------------

    async def _invoke(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = dict(scope["headers"])
        inference_id = (
            headers.get(b"x-wellml-inference-id")
            or headers.get(b"x-amzn-sagemaker-inference-id")
            or uuid.uuid4().hex.encode()
        )[:64]
        principal = None
        token_id = None
        variant_name = "-"
        status = 500
        out_bytes = 0
        body = b""
        try:
            if not self.accepting:
                raise RequestRefused(503, "the endpoint is shutting down")
            token = None
            if self._authenticate is not None:
                try:
                    token = self._authenticate(_bearer(headers))
                except (Unauthenticated, PermissionDenied) as exc:
                    raise RequestRefused(http_status(exc), str(exc)) from None
                principal = token.get("principal")
                token_id = token.get("id")
            self._rate_limit(token, principal)
            body = await self._read_body(headers, receive)
            route = self._route(headers)
            variant_name = route.name
            response = await self._forward(route, scope, headers, body, inference_id)
            status = response.status
            if self.config.multi_model:
                version = response.header(b"x-wellml-model-version")
                if version:
                    self.metrics.model_requests.labels(
                        self.endpoint, route.name, version.decode("latin-1"), str(status)
                    ).inc()
            out_headers = [(k, v) for k, v in response.headers if k in FORWARD_RESPONSE_HEADERS] + [
                (b"x-amzn-invoked-production-variant", route.name.encode()),
                (b"x-wellml-variant", route.name.encode()),
            ]
            if not any(k == b"x-wellml-inference-id" for k, _ in out_headers):
                out_headers.append((b"x-wellml-inference-id", inference_id))
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        *out_headers,
                        (b"content-length", str(len(response.body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": response.body})
            out_bytes = len(response.body)
            ood = response.header(b"x-wellml-ood-rows")
            if ood:
                self.metrics.ood_rows.labels(self.endpoint, route.name).inc(int(ood))
            if status < 400 and scope["method"] == "POST" and self.table.shadows():
                self._shadow(scope, headers, body, inference_id, response, started)
        except RequestRefused as exc:
            status = exc.status
            payload = dumps({"error": str(exc), "status": status})
            out_bytes = len(payload)
            await _reply(
                send,
                status,
                payload,
                extra=[(b"x-wellml-inference-id", inference_id), *exc.headers],
            )
        finally:
            elapsed = time.perf_counter() - started
            if variant_name != "-":
                self._count(variant_name, status, elapsed)
            access_log.info(
                "%s",
                _AccessRecord(
                    self.endpoint,
                    variant_name,
                    principal,
                    token_id,
                    scope["method"],
                    scope["path"],
                    status,
                    elapsed,
                    len(body),
                    out_bytes,
                    inference_id,
                    scope.get("client"),
                ),
            )

    def _rate_limit(self, token: dict[str, Any] | None, principal: str | None) -> None:
        limit = self.config.rate_limit
        if token is not None and token.get("rate_limit"):
            limit = RateLimit(**token["rate_limit"])
        if limit is None:
            return
        key = token["id"] if token is not None else "anonymous"
        wait = self.limiter.check(key, limit.rate, limit.burst)
        if wait > 0:
            self.metrics.rate_limited.labels(self.endpoint, principal or "anonymous").inc()
            raise RequestRefused(
                429,
                f"rate limit of {limit.rate:g} requests a second exceeded; retry in {wait:.2f} s",
                [(b"retry-after", str(max(1, round(wait + 0.5))).encode())],
            )

    async def _read_body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes:
        cap = self.config.max_payload_bytes
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            raise RequestRefused(413, f"payload larger than {cap} bytes")
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestRefused(499, "the client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                raise RequestRefused(413, f"payload larger than {cap} bytes")
            chunks.append(chunk)
            if not message.get("more_body"):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _route(self, headers: dict[bytes, bytes]) -> VariantRoute:
        for h in TARGET_VARIANT_HEADERS:
            if h in headers:
                name = headers[h].decode("latin-1").strip()
                route = self.table.variants.get(name)
                if route is None or route.shadow_percent is not None:
                    known = [
                        v.name for v in self.table.variants.values() if v.shadow_percent is None
                    ]
                    raise RequestRefused(
                        400,
                        f"no production variant {name!r}; variants: {', '.join(known)}",
                    )
                if not route.ready:
                    raise RequestRefused(503, f"variant {name!r} has no ready replica")
                return route
        route = self.table.choose()
        if route is None:
            raise RequestRefused(503, "no variant of this endpoint has a ready replica")
        return route

    async def _forward(
        self,
        route: VariantRoute,
        scope: Scope,
        headers: dict[bytes, bytes],
        body: bytes,
        inference_id: bytes,
    ) -> UpstreamResponse:
        fwd = [(k, headers[k]) for k in FORWARD_REQUEST_HEADERS if k in headers]
        fwd.append((b"x-wellml-inference-id", inference_id))
        fwd.append((INTERNAL_HEADER.encode(), self._secret))
        path = scope["path"]
        if scope.get("query_string"):
            path += "?" + scope["query_string"].decode("latin-1")
        tried: set[int] = set()
        while True:
            replica = route.pick()
            if replica is None or id(replica) in tried:
                replica = next((r for r in route.replicas if r.ready and id(r) not in tried), None)
            if replica is None:
                raise RequestRefused(503, f"variant {route.name!r} has no ready replica")
            tried.add(id(replica))
            replica.inflight += 1
            self.metrics.inflight.labels(self.endpoint, route.name).inc()
            try:
                response = await replica.client.request(
                    scope["method"], path, fwd, body, timeout=self._timeout
                )
                replica.served += 1
                if response.header(b"x-wellml-models-loaded") is not None:
                    self._model_figures(route, replica, response)
                return response
            except ReplicaUnavailable as exc:
                # The replica died or is restarting: take it out until the supervisor sees it
                # answer again, and send the request to another one.
                log.warning(
                    "replica of %s on port %s unavailable: %s", route.name, replica.port, exc
                )
                replica.ready = False
            except TimeoutError:
                raise RequestRefused(
                    504, f"variant {route.name!r} did not answer in {self._timeout:g} s"
                ) from None
            finally:
                replica.inflight -= 1
                self.metrics.inflight.labels(self.endpoint, route.name).dec()

    def _model_figures(
        self, route: VariantRoute, replica: Replica, response: UpstreamResponse
    ) -> None:
        """Loads, evictions and loaded models, as a multi-model replica reports them."""
        m = self.metrics
        try:
            replica.models_loaded = int(response.header(b"x-wellml-models-loaded") or 0)
            replica.models_loaded_bytes = int(response.header(b"x-wellml-models-loaded-bytes") or 0)
            loaded = response.header(b"x-wellml-model-loaded")
            if loaded:
                version = (response.header(b"x-wellml-model-version") or b"").decode("latin-1")
                m.model_loads.labels(self.endpoint, route.name, version).inc()
                m.model_load_seconds.labels(self.endpoint, route.name).observe(float(loaded))
        except ValueError:
            log.warning("unreadable multi-model figures from replica on port %s", replica.port)
            return
        evicted = response.header(b"x-wellml-models-evicted")
        for version in (evicted or b"").decode("latin-1").split(","):
            if version:
                m.model_evictions.labels(self.endpoint, route.name, version).inc()
        port = str(replica.port)
        m.models_loaded.labels(self.endpoint, route.name, port).set(replica.models_loaded)
        m.models_loaded_bytes.labels(self.endpoint, route.name, port).set(
            replica.models_loaded_bytes
        )

    def _count(self, variant: str, status: int, elapsed: float) -> None:
        key = (variant, status)
        child = self._labels.get(key)
        if child is None:
            child = self._labels[key] = self.metrics.requests.labels(
                self.endpoint, variant, str(status)
            )
        child.inc()
        hist = self._latency.get(variant)
        if hist is None:
            hist = self._latency[variant] = self.metrics.latency.labels(self.endpoint, variant)
        hist.observe(elapsed)
        if status >= 500:
            self.metrics.errors.labels(self.endpoint, variant).inc()
        self.stats.add(variant, status, elapsed)

    # -- shadows -----------------------------------------------------------------------------

    def _shadow(
        self,
        scope: Scope,
        headers: dict[bytes, bytes],
        body: bytes,
        inference_id: bytes,
        live: UpstreamResponse,
        started: float,
    ) -> None:
        live_latency = time.perf_counter() - started
        for route in self.table.shadows():
            percent = route.shadow_percent or 0.0
            if percent < 100 and self._rng.random() * 100 >= percent:
                continue
            task = asyncio.create_task(
                self._shadow_one(route, scope, headers, body, inference_id, live, live_latency)
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _shadow_one(
        self,
        route: VariantRoute,
        scope: Scope,
        headers: dict[bytes, bytes],
        body: bytes,
        inference_id: bytes,
        live: UpstreamResponse,
        live_latency: float,
    ) -> None:
        stats = self.shadow_stats.setdefault(route.name, ShadowStats())
        stats.requests += 1
        t0 = time.perf_counter()
        try:
            response = await self._forward(route, scope, headers, body, inference_id)
        except Exception:
            response = None
        elapsed = time.perf_counter() - t0
        if response is None or response.status >= 400:
            stats.errors += 1
            self.metrics.shadow.labels(self.endpoint, route.name, "error").inc()
            return
        stats.live_latencies.append(live_latency)
        stats.shadow_latencies.append(elapsed)
        self.metrics.shadow_latency.labels(self.endpoint, route.name).observe(elapsed)
        try:
            a = _predictions(loads(live.body))
            b = _predictions(loads(response.body))
        except (ValueError, KeyError, TypeError, IndexError):
            stats.errors += 1
            self.metrics.shadow.labels(self.endpoint, route.name, "error").inc()
            return
        same = sum(1 for x, y in zip(a, b) if x == y) if len(a) == len(b) else 0
        stats.compared_rows += len(a)
        stats.agreeing_rows += same
        outcome = "agree" if same == len(a) and len(a) == len(b) else "disagree"
        self.metrics.shadow.labels(self.endpoint, route.name, outcome).inc()

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait for shadow copies still in flight."""
        if self._background:
            await asyncio.wait(list(self._background), timeout=timeout)


def _predictions(body: Any) -> list[Any]:
    if isinstance(body, dict) and "predictions" in body:
        return list(body["predictions"])
    if isinstance(body, dict) and "outputs" in body:
        return list(body["outputs"][0]["data"])
    raise KeyError("no predictions in the answer")


class _AccessRecord:
    """One access-log line, formatted only if a handler writes it."""

    __slots__ = ("args",)

    def __init__(self, *args: Any) -> None:
        self.args = args

    def __str__(self) -> str:
        (
            endpoint,
            variant,
            principal,
            token_id,
            method,
            path,
            status,
            elapsed,
            n_in,
            n_out,
            inference_id,
            client,
        ) = self.args
        return json.dumps(
            {
                "time": round(time.time(), 6),
                "endpoint": endpoint,
                "variant": variant,
                "principal": principal,
                "token_id": token_id,
                "method": method,
                "path": path,
                "status": status,
                "latency_ms": round(elapsed * 1000, 3),
                "bytes_in": n_in,
                "bytes_out": n_out,
                "inference_id": inference_id.decode("latin-1"),
                "client": f"{client[0]}:{client[1]}" if client else None,
            },
            separators=(",", ":"),
        )


async def _reply(
    send: Send,
    status: int,
    body: bytes,
    *,
    content_type: bytes | None = b"application/json",
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if content_type is not None:
        headers.append((b"content-type", content_type))
    headers.extend(extra or [])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
