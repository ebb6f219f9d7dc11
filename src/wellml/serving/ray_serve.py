"""An endpoint's current configuration served by Ray Serve: the scale-out backend of endpoints.

Each production variant becomes one Serve deployment whose replicas build the very app a local
replica process serves (:func:`wellml.serving.replica.build_replica`), so request formats, 4xx
answers, out-of-distribution flags and data capture are the same. A variant's replica count
becomes ``num_replicas``; its :class:`~wellml.serving.config.AutoScaling` becomes Serve's
``autoscaling_config`` (Serve then scales it: min and max replicas, the target of requests in
flight per replica, and the cooldowns as upscale and downscale delays). A router deployment
takes the HTTP traffic on 127.0.0.1: it checks tokens and rate limits as the local router does,
picks production variants by smooth weighted round robin, and honours the target-variant
headers. Shadow variants are served only by the local supervisor.

Ray Serve runs one HTTP proxy per cluster, on the port it was first started with; an endpoint's
application takes the route prefix ``/`` unless told otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from starlette.responses import Response

from wellml.errors import (
    BackendUnavailable,
    Conflict,
    InvalidInput,
    PermissionDenied,
    Unauthenticated,
    http_status,
)
from wellml.governance import tokens
from wellml.governance.ratelimit import RateLimiter
from wellml.serving.app import dumps
from wellml.serving.config import AutoScaling, EndpointConfig, ProductionVariant, RateLimit
from wellml.serving.router import (
    FORWARD_REQUEST_HEADERS,
    FORWARD_RESPONSE_HEADERS,
    TARGET_VARIANT_HEADERS,
    Authenticator,
    RoutingTable,
    VariantRoute,
)
from wellml.store import serving as sql

if TYPE_CHECKING:
    from starlette.requests import Request

    from wellml.workspace import Workspace

log = logging.getLogger("wellml.serving")

ROUTER_DEPLOYMENT = "router"
# Shares of traffic and token checks live in the router, so it needs little CPU of its own.
ROUTER_CPUS = 0.1
INSTALL_HINT = "Ray Serve is not installed (pip install 'wellml[ray]')"


def application_name(endpoint: str) -> str:
    """The Serve application that serves ``endpoint``."""
    return f"wellml-{endpoint}"


def variant_deployment(variant: str) -> str:
    """The Serve deployment of a production variant."""
    return f"variant-{variant}"


def autoscaling_config(policy: AutoScaling) -> dict[str, Any]:
    """Serve's ``autoscaling_config`` for a variant's target tracking policy.

    Serve averages requests in flight per replica over ``look_back_period_s``; 30 s is the
    window the local supervisor averages over.
    """
    return {
        "min_replicas": policy.min_replicas,
        "initial_replicas": policy.min_replicas,
        "max_replicas": policy.max_replicas,
        "target_ongoing_requests": policy.target_inflight,
        "upscale_delay_s": policy.scale_out_cooldown_s,
        "downscale_delay_s": policy.scale_in_cooldown_s,
        "look_back_period_s": 30.0,
    }


def deployment_options(variant: ProductionVariant, *, num_cpus: float) -> dict[str, Any]:
    """The Serve deployment options of a production variant: a fixed replica count, or the
    variant's autoscaling policy."""
    options: dict[str, Any] = {
        "name": variant_deployment(variant.name),
        "ray_actor_options": {"num_cpus": num_cpus},
    }
    if variant.autoscaling is None:
        options["num_replicas"] = variant.replicas
    else:
        options["autoscaling_config"] = autoscaling_config(variant.autoscaling)
        # Serve queues a request at a replica only below this many in flight; it must stay
        # above the target or the target is never reached.
        options["max_ongoing_requests"] = max(5, math.ceil(2 * variant.autoscaling.target_inflight))
    return options


def _import_serve() -> tuple[Any, Any]:
    try:
        import ray
        from ray import serve
    except ImportError as exc:
        raise BackendUnavailable(f"{INSTALL_HINT}: {exc}") from None
    return ray, serve


def _settings_env() -> dict[str, str]:
    """The workspace settings of this process (``WELLML_*``), handed to Serve's replicas so they
    open the same metadata store, artifacts and capture location."""
    return {k: v for k, v in os.environ.items() if k.startswith("WELLML_")}


# -- the deployments (plain classes; Serve wraps them when an endpoint is deployed) ------------


class VariantReplica:
    """One Serve replica of a production variant: the replica app of
    :func:`~wellml.serving.replica.build_replica`, called in process for each request."""

    def __init__(
        self,
        root: str,
        endpoint: str,
        variant: str,
        model_version_id: str,
        multi_model: dict[str, Any] | None,
    ) -> None:
        from wellml.serving.config import MultiModel
        from wellml.serving.replica import build_replica
        from wellml.workspace import Workspace

        self._ws = Workspace.open(root)
        self._app = build_replica(
            self._ws,
            endpoint,
            variant,
            model_version_id,
            multi_model=MultiModel.from_dict(multi_model) if multi_model else None,
        )
        # The app's lifespan closes its capture writer (flushing captured rows) on exit.
        self._lifespan = self._app.router.lifespan_context(self._app)
        self._started = False
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self._app), base_url="http://replica"
        )

    async def invoke(
        self, method: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Answer one request; returns status, headers and body."""
        if not self._started:
            self._started = True
            await self._lifespan.__aenter__()
        url = httpx.URL(path, query=query.encode("latin-1"))
        resp = await self._client.request(method, url, headers=headers, content=body)
        return resp.status_code, list(resp.headers.items()), resp.content

    async def __del__(self) -> None:
        if self._started:
            self._started = False
            await self._lifespan.__aexit__(None, None, None)
        await self._client.aclose()
        self._ws.close()


class EndpointRouter:
    """The HTTP entry of an endpoint on Ray Serve: tokens, rate limits, the choice of a
    production variant, and the call to that variant's deployment."""

    def __init__(
        self, root: str, endpoint: str, config: dict[str, Any], variants: dict[str, Any]
    ) -> None:
        from wellml.workspace import Workspace

        self._ws = Workspace.open(root)
        self._endpoint = endpoint
        self._config = EndpointConfig.from_dict(config)
        self._handles = variants
        self._table = RoutingTable()
        for v in self._config.variants:
            self._table.variants[v.name] = _ServeRoute(v.name, v.model_version)
        self._table.set_weights({v.name: v.weight for v in self._config.variants})
        self._limiter = RateLimiter()
        self._authenticate: Any = None
        if self._config.auth:
            store = self._ws.metadata
            self._authenticate = Authenticator(
                lambda t: tokens.authenticate(store, t, f"invoke:{endpoint}")
            )

    async def __call__(self, request: Request) -> Response:
        """Answer one HTTP request."""
        path = request.scope["path"]
        root = request.scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        method = request.method
        if method == "GET" and path == "/ping":
            return _reply(200, b"", content_type=None)
        if method == "GET" and path in ("/v2/health/live", "/v2/health/ready"):
            kind = path.rpartition("/")[2]
            return _reply(200, dumps({kind: True}))
        if not ((path == "/invocations" and method == "POST") or path.startswith("/v2")):
            return _error(404, f"no route {method} {path}")
        try:
            await self._admit(request)
            body = await request.body()
            if len(body) > self._config.max_payload_bytes:
                return _error(413, f"payload larger than {self._config.max_payload_bytes} bytes")
            variant = self._route(request)
        except _Refused as exc:
            return _error(exc.status, str(exc), exc.headers)
        return await self._forward(variant, request, path, body)

    async def _admit(self, request: Request) -> None:
        token: dict[str, Any] | None = None
        if self._authenticate is not None:
            auth = request.headers.get("authorization", "")
            scheme, _, secret = auth.partition(" ")
            presented = secret.strip() or None if scheme.lower() == "bearer" else None
            try:
                token = await asyncio.to_thread(self._authenticate, presented)
            except (Unauthenticated, PermissionDenied) as exc:
                raise _Refused(http_status(exc), str(exc)) from None
        limit = self._config.rate_limit
        if token is not None and token.get("rate_limit"):
            limit = RateLimit(**token["rate_limit"])
        if limit is None:
            return
        wait = self._limiter.check(
            token["id"] if token is not None else "anonymous", limit.rate, limit.burst
        )
        if wait > 0:
            raise _Refused(
                429,
                f"rate limit of {limit.rate:g} requests a second exceeded; retry in {wait:.2f} s",
                {"retry-after": str(max(1, round(wait + 0.5)))},
            )

    def _route(self, request: Request) -> str:
        for header in TARGET_VARIANT_HEADERS:
            name = request.headers.get(header.decode())
            if name is not None:
                name = name.strip()
                if name not in self._handles:
                    raise _Refused(
                        400,
                        f"no production variant {name!r}; variants: {', '.join(self._handles)}",
                    )
                return name
        route = self._table.choose()
        if route is None:  # pragma: no cover - a config always has a weighted variant
            raise _Refused(503, "no production variant has a weight above 0")
        return route.name

    async def _forward(self, variant: str, request: Request, path: str, body: bytes) -> Response:
        forward = {h.decode() for h in FORWARD_REQUEST_HEADERS}
        headers = [(k, v) for k, v in request.headers.items() if k in forward]
        try:
            status, out_headers, content = await self._handles[variant].invoke.remote(
                request.method, path, request.url.query, headers, body
            )
        except Exception as exc:
            log.warning("variant %s of %s failed to answer: %s", variant, self._endpoint, exc)
            return _error(503, f"variant {variant!r} failed to answer: {type(exc).__name__}")
        keep = {h.decode() for h in FORWARD_RESPONSE_HEADERS}
        kept = {k: v for k, v in out_headers if k in keep and k != "content-type"}
        kept["x-amzn-invoked-production-variant"] = variant
        kept["x-wellml-variant"] = variant
        media = dict(out_headers).get("content-type")
        return Response(content, status_code=status, headers=kept, media_type=media)


class _ServeRoute(VariantRoute):
    """A production variant as the Serve router's weighted round robin sees it: Serve keeps
    its replicas, so it counts as ready whenever the application runs."""

    @property
    def ready(self) -> int:
        """Always one: Serve queues requests for the variant's replicas itself."""
        return 1


class _Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def _reply(status: int, body: bytes, content_type: str | None = "application/json") -> Response:
    return Response(body, status_code=status, media_type=content_type)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        dumps({"error": message, "status": status}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


# -- deploying ---------------------------------------------------------------------------------


@dataclass
class RayServeEndpoint:
    """An endpoint deployed on Ray Serve by :func:`deploy`; :meth:`stop` takes it down."""

    name: str
    url: str
    application: str
    runtime: dict[str, Any]
    _ws: Workspace = field(repr=False)
    _endpoint_id: str = field(repr=False)
    _owns_serve: bool = field(default=False, repr=False)
    _owns_ray: bool = field(default=False, repr=False)
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        """Delete the endpoint's Serve application (its replicas flush captured data), mark the
        endpoint stopped, and shut down the Serve and Ray that :func:`deploy` started."""
        if self._stopped:
            return
        self._stopped = True
        ray, serve = _import_serve()
        try:
            serve.delete(self.application)
        finally:
            if self._owns_serve:
                serve.shutdown()
            if self._owns_ray:
                ray.shutdown()
            with self._ws.metadata.write() as conn:
                sql.update_endpoint(conn, self._endpoint_id, status="stopped", pid=None)
                for variant in self.runtime["variants"]:
                    sql.add_event(
                        conn,
                        self._endpoint_id,
                        "ray-serve-stop",
                        variant,
                        {"application": self.application},
                    )

    def serve_until_stopped(self, done: threading.Event | None = None) -> None:
        """Block until SIGTERM or Ctrl-C (or until ``done`` is set, as by
        :func:`stop_requested`), then :meth:`stop`."""
        if done is None:
            with stop_requested() as asked:
                self.serve_until_stopped(asked)
            return
        try:
            while not done.wait(1.0):
                pass
        finally:
            self.stop()

    def __enter__(self) -> RayServeEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def _keeping_sigterm() -> Iterator[None]:
    # ray.init installs a SIGTERM handler of its own (exit at once); the caller's handler,
    # such as stop_requested's, must stay in place so that a stop is carried out and recorded.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def stop_requested() -> Iterator[threading.Event]:
    """An event set by SIGTERM or Ctrl-C while the block runs (the handlers are restored
    after). Installed before deploying, so that a stop asked for while the application comes
    up is not lost: the endpoint is then stopped, and recorded so, as soon as it is up."""
    done = threading.Event()
    previous = {s: signal.signal(s, lambda *_: done.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield done
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def deploy(
    ws: Workspace,
    name: str,
    *,
    address: str | None = None,
    port: int | None = None,
    route_prefix: str = "/",
    num_cpus: float = 1.0,
    timeout: float = 180.0,
) -> RayServeEndpoint:
    """Deploy endpoint ``name``'s current configuration on Ray Serve and wait until it answers.

    Connects to Ray at ``address`` (``ray://host:10001``, ``auto``) or, when Ray is not
    initialised, starts a local Ray (which :meth:`RayServeEndpoint.stop` shuts down again).
    Serve's HTTP proxy listens on 127.0.0.1 at ``port`` (default: the endpoint's own port).
    The replicas open the workspace at its path with this process's ``WELLML_*`` settings: on a
    cluster of several hosts, the workspace's metadata and artifacts must be reachable from
    every host (PostgreSQL and S3-compatible storage).

    Args:
        num_cpus: CPUs each variant replica reserves in Ray.

    Raises:
        NotFound: no such endpoint.
        Conflict: the endpoint is in service already.
        InvalidInput: an unusable port, route prefix or CPU share.
        BackendUnavailable: Ray Serve is not installed, Ray cannot be reached, or the
            application did not answer within ``timeout`` seconds.
    """
    from wellml.serving.service import free_port

    if not route_prefix.startswith("/"):
        raise InvalidInput(f"a route prefix starts with '/': {route_prefix!r}")
    if not num_cpus >= 0:
        raise InvalidInput(f"num_cpus must be 0 or more, not {num_cpus!r}")
    if port is not None and not 0 < port < 65536:
        raise InvalidInput(f"not a TCP port: {port!r}")
    row = ws.endpoints._row(name)
    if ws.endpoints._running(row):
        raise Conflict(f"endpoint {name!r} is running (pid {row['pid']})")
    config = EndpointConfig.from_dict(row["config"])
    if port is None:
        port = row["port"] if row["port"] not in (0, 1) else free_port()
    ray, serve = _import_serve()

    owns_ray = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
        if address:
            kwargs["address"] = address
        try:
            with _keeping_sigterm():
                ray.init(**kwargs)
        except Exception as exc:
            raise BackendUnavailable(f"cannot start or reach Ray at {address}: {exc}") from exc
        owns_ray = True
    owns_serve = owns_ray and not address
    app_name = application_name(name)
    env = _settings_env()
    root = str(ws.root)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        handles: dict[str, Any] = {}
        described: dict[str, dict[str, Any]] = {}
        for v in config.variants:
            options = deployment_options(v, num_cpus=num_cpus)
            if env:
                options["ray_actor_options"]["runtime_env"] = {"env_vars": env}
            mv_id = ws.registry.get(v.model_version).id
            multi = v.multi_model.to_dict() if v.multi_model is not None else None
            handles[v.name] = (
                serve.deployment(VariantReplica)
                .options(**options)
                .bind(root, name, v.name, mv_id, multi)
            )
            described[v.name] = {
                "deployment": options["name"],
                "model_version": v.model_version,
                "weight": v.weight,
                **(
                    {"autoscaling_config": options["autoscaling_config"]}
                    if "autoscaling_config" in options
                    else {"num_replicas": options["num_replicas"]}
                ),
            }
        router_options: dict[str, Any] = {
            "name": ROUTER_DEPLOYMENT,
            "num_replicas": 1,
            "ray_actor_options": {"num_cpus": min(ROUTER_CPUS, num_cpus)},
        }
        if env:
            router_options["ray_actor_options"]["runtime_env"] = {"env_vars": env}
        entry = (
            serve.deployment(EndpointRouter)
            .options(**router_options)
            .bind(root, name, config.to_dict(), handles)
        )
        serve.run(
            entry,
            name=app_name,
            route_prefix=route_prefix,
            blocking=False,
            logging_config={"log_level": "WARNING"},
        )
        url = f"http://127.0.0.1:{port}{route_prefix.rstrip('/')}"
        _wait_for(url + "/ping", timeout)
    except BaseException:
        try:
            serve.delete(app_name)
        except Exception:
            pass
        if owns_serve:
            serve.shutdown()
        if owns_ray:
            ray.shutdown()
        raise

    runtime = {
        "backend": "ray-serve",
        "address": address or "local",
        "application": app_name,
        "url": url,
        "config_version": row.get("config_version"),
        "variants": described,
        "shadows_not_served": [s.name for s in config.shadows],
        "updated_at": time.time(),
    }
    if config.shadows:
        log.warning(
            "endpoint %s: shadow variants (%s) are served only by the local supervisor",
            name,
            ", ".join(s.name for s in config.shadows),
        )
    with ws.metadata.write() as conn:
        sql.update_endpoint(conn, row["id"], status="in-service", pid=os.getpid(), runtime=runtime)
        for variant, detail in described.items():
            sql.add_event(
                conn,
                row["id"],
                "ray-serve-deploy",
                variant,
                {"application": app_name, "url": url, "address": address or "local", **detail},
            )
    return RayServeEndpoint(
        name, url, app_name, runtime, ws, row["id"], _owns_serve=owns_serve, _owns_ray=owns_ray
    )


def _wait_for(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(url, timeout=2)
            if resp.status_code == 200:
                return
            last = f"status {resp.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.25)
    raise BackendUnavailable(
        f"the endpoint did not answer at {url} in {timeout:.0f} s ({last}); when Serve already "
        "runs on this cluster, it keeps the port it was first started with"
    )


__all__ = [
    "EndpointRouter",
    "RayServeEndpoint",
    "VariantReplica",
    "application_name",
    "autoscaling_config",
    "deploy",
    "deployment_options",
]
