"""What the router measures: Prometheus series for scraping, and a short rolling window per
variant that the deployment alarms and the autoscaler read."""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
WINDOW_SECONDS = 600


class EndpointMetrics:
    """The Prometheus series of one endpoint, in a registry of its own."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "wellml_endpoint_requests",
            "Requests answered, by variant and HTTP status.",
            ("endpoint", "variant", "status"),
            registry=r,
        )
        self.errors = Counter(
            "wellml_endpoint_errors",
            "Requests that failed on the server side (5xx), by variant.",
            ("endpoint", "variant"),
            registry=r,
        )
        self.latency = Histogram(
            "wellml_endpoint_request_latency_seconds",
            "Time from the router receiving a request to its answer, by variant.",
            ("endpoint", "variant"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.replicas = Gauge(
            "wellml_endpoint_replicas",
            "Replica processes by variant and state (ready, starting).",
            ("endpoint", "variant", "state"),
            registry=r,
        )
        self.inflight = Gauge(
            "wellml_endpoint_inflight_requests",
            "Requests being served now, by variant.",
            ("endpoint", "variant"),
            registry=r,
        )
        self.weights = Gauge(
            "wellml_endpoint_variant_weight",
            "The share of traffic each production variant gets now.",
            ("endpoint", "variant"),
            registry=r,
        )
        self.rate_limited = Counter(
            "wellml_endpoint_rate_limited",
            "Requests refused with 429 by the per-consumer rate limit.",
            ("endpoint", "principal"),
            registry=r,
        )
        self.restarts = Counter(
            "wellml_endpoint_replica_restarts",
            "Replica processes restarted after they exited.",
            ("endpoint", "variant"),
            registry=r,
        )
        self.ood_rows = Counter(
            "wellml_endpoint_ood_rows",
            "Rows flagged as out of the training distribution, by variant.",
            ("endpoint", "variant"),
            registry=r,
        )
        self.shadow = Counter(
            "wellml_endpoint_shadow_requests",
            "Copies sent to shadow variants, by outcome (agree, disagree, error).",
            ("endpoint", "shadow", "outcome"),
            registry=r,
        )
        self.shadow_latency = Histogram(
            "wellml_endpoint_shadow_latency_seconds",
            "Latency of shadow variants on their copies.",
            ("endpoint", "shadow"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.replica_rss = Gauge(
            "wellml_endpoint_replica_memory_bytes",
            "Resident memory of each replica process.",
            ("endpoint", "variant", "pid"),
            registry=r,
        )
        self.replica_cpu = Gauge(
            "wellml_endpoint_replica_cpu_seconds",
            "CPU time used by each replica process.",
            ("endpoint", "variant", "pid"),
            registry=r,
        )

        self.model_requests = Counter(
            "wellml_endpoint_model_requests",
            "Requests answered by each model version of a multi-model endpoint, by status.",
            ("endpoint", "variant", "model_version", "status"),
            registry=r,
        )
        self.model_loads = Counter(
            "wellml_endpoint_model_loads",
            "Model versions loaded into a multi-model replica on first use.",
            ("endpoint", "variant", "model_version"),
            registry=r,
        )
        self.model_load_seconds = Histogram(
            "wellml_endpoint_model_load_seconds",
            "Time a multi-model replica took to load a model version.",
            ("endpoint", "variant"),
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.model_evictions = Counter(
            "wellml_endpoint_model_evictions",
            "Model versions evicted from a multi-model replica to stay within its budget.",
            ("endpoint", "variant", "model_version"),
            registry=r,
        )
        self.models_loaded = Gauge(
            "wellml_endpoint_models_loaded",
            "Model versions loaded in each multi-model replica (by its port).",
            ("endpoint", "variant", "replica"),
            registry=r,
        )
        self.models_loaded_bytes = Gauge(
            "wellml_endpoint_models_loaded_bytes",
            "Bytes counted against the memory budget in each multi-model replica.",
            ("endpoint", "variant", "replica"),
            registry=r,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Window:
    """Figures of one variant over a stretch of time."""

    requests: int = 0
    errors_5xx: int = 0
    errors_4xx: int = 0
    latencies: list[float] = field(default_factory=list)

    def error_rate(self, *, include_4xx: bool = False) -> float:
        """Failed requests over all requests (0 when there were none)."""
        if not self.requests:
            return 0.0
        failed = self.errors_5xx + (self.errors_4xx if include_4xx else 0)
        return failed / self.requests

    def to_dict(self) -> dict[str, Any]:
        """Plain data, latencies as p50/p99 in milliseconds."""
        p50 = percentile(self.latencies, 50)
        p99 = percentile(self.latencies, 99)
        return {
            "requests": self.requests,
            "errors_5xx": self.errors_5xx,
            "errors_4xx": self.errors_4xx,
            "error_rate": round(self.error_rate(), 6),
            "p50_ms": round(p50 * 1000, 3) if p50 is not None else None,
            "p99_ms": round(p99 * 1000, 3) if p99 is not None else None,
        }


class RollingStats:
    """Per-variant request outcomes of the last ``WINDOW_SECONDS``, kept per second."""

    def __init__(self, *, clock: Any = time.monotonic, keep_latencies: int = 2000) -> None:
        self._clock = clock
        self._keep = keep_latencies
        self._buckets: dict[str, deque[list[Any]]] = {}
        self.totals: dict[str, Window] = {}

    def add(self, variant: str, status: int, latency: float) -> None:
        """Count one answered request."""
        sec = int(self._clock())
        buckets = self._buckets.setdefault(variant, deque())
        if not buckets or buckets[-1][0] != sec:
            buckets.append([sec, 0, 0, 0, []])
            while buckets and buckets[0][0] < sec - WINDOW_SECONDS:
                buckets.popleft()
        b = buckets[-1]
        b[1] += 1
        if status >= 500:
            b[2] += 1
        elif status >= 400:
            b[3] += 1
        if len(b[4]) < self._keep:
            b[4].append(latency)
        total = self.totals.setdefault(variant, Window())
        total.requests += 1
        total.errors_5xx += status >= 500
        total.errors_4xx += 400 <= status < 500

    def window(self, variant: str, *, since: float | None = None, seconds: float = 60) -> Window:
        """The figures of ``variant`` since the clock read ``since`` (or the last ``seconds``)."""
        start = since if since is not None else self._clock() - seconds
        out = Window()
        for sec, n, e5, e4, lat in self._buckets.get(variant, ()):
            if sec + 1 <= start:
                continue
            out.requests += n
            out.errors_5xx += e5
            out.errors_4xx += e4
            out.latencies.extend(lat)
        return out

    def now(self) -> float:
        """The clock these figures are kept by."""
        return float(self._clock())


@dataclass
class ShadowStats:
    """How a shadow variant compares with the live answers it was checked against."""

    requests: int = 0
    compared_rows: int = 0
    agreeing_rows: int = 0
    errors: int = 0
    live_latencies: deque[float] = field(default_factory=lambda: deque(maxlen=5000))
    shadow_latencies: deque[float] = field(default_factory=lambda: deque(maxlen=5000))

    def to_dict(self) -> dict[str, Any]:
        """Plain data: agreement over compared rows, p50/p99 of both in milliseconds."""

        def ms(values: deque[float], q: float) -> float | None:
            p = percentile(list(values), q)
            return round(p * 1000, 3) if p is not None else None

        return {
            "requests": self.requests,
            "errors": self.errors,
            "compared_rows": self.compared_rows,
            "agreement": (
                round(self.agreeing_rows / self.compared_rows, 6) if self.compared_rows else None
            ),
            "live_p50_ms": ms(self.live_latencies, 50),
            "live_p99_ms": ms(self.live_latencies, 99),
            "shadow_p50_ms": ms(self.shadow_latencies, 50),
            "shadow_p99_ms": ms(self.shadow_latencies, 99),
        }
