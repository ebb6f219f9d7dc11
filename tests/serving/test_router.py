"""The router in front of replicas: weighted split, target-variant header, shadows that never
answer, retries around a dead replica, tokens, rate limits, metrics and access logs."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

from wellml.errors import PermissionDenied, Unauthenticated
from wellml.registry.signature import infer_signature
from wellml.serving.app import ServedModel, build_app
from wellml.serving.config import EndpointConfig, ProductionVariant, RateLimit
from wellml.serving.proxy import ReplicaClient
from wellml.serving.router import Replica, Router, RoutingTable, VariantRoute
from wellml.serving.service import free_port

SECRET = "router-secret"
ROW = [{"x": 1.0}]


class ReplicaServer:
    """A replica app served by uvicorn in a thread, on a loopback port."""

    def __init__(self, served: ServedModel) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            build_app(served, internal_secret=SECRET),
            host="127.0.0.1",
            port=self.port,
            log_level="error",
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _served(variant: str, model: object, X: pd.DataFrame, y: pd.Series) -> ServedModel:
    return ServedModel(
        "ep", f"m@{variant}", model, infer_signature(X, y, model=model), variant=variant
    )


@pytest.fixture(scope="module")
def replicas() -> Iterator[dict[str, ReplicaServer]]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=200)})
    y = pd.Series((X["x"] > 0).astype(int))
    servers = {
        "blue": ReplicaServer(_served("blue", LogisticRegression().fit(X, y), X, y)),
        "blue2": ReplicaServer(_served("blue", LogisticRegression().fit(X, y), X, y)),
        "green": ReplicaServer(
            _served("green", DummyClassifier(strategy="constant", constant=1).fit(X, y), X, y)
        ),
        "zero": ReplicaServer(
            _served("zero", DummyClassifier(strategy="constant", constant=0).fit(X, y), X, y)
        ),
    }
    yield servers
    for s in servers.values():
        s.stop()


def _router(
    replicas: dict[str, ReplicaServer],
    weights: dict[str, float],
    *,
    shadow: str | None = None,
    rate_limit: RateLimit | None = None,
    authenticate: object = None,
) -> Router:
    config = EndpointConfig(
        variants=tuple(ProductionVariant(v, f"m@{v}", 1, w) for v, w in weights.items()),
        rate_limit=rate_limit,
    )
    router = Router("ep", config, internal_secret=SECRET, authenticate=authenticate)  # type: ignore[arg-type]
    for name in weights:
        route = VariantRoute(name, f"m@{name}")
        port = replicas[name].port
        route.replicas.append(Replica(name, port, ReplicaClient("127.0.0.1", port), ready=True))
        router.table.variants[name] = route
    if shadow is not None:
        route = VariantRoute(shadow, f"m@{shadow}", shadow_percent=100.0)
        port = replicas[shadow].port
        route.replicas.append(Replica(shadow, port, ReplicaClient("127.0.0.1", port), ready=True))
        router.table.variants[shadow] = route
    router.table.set_weights(weights)
    return router


def test_smooth_weighted_round_robin_gives_exact_shares() -> None:
    table = RoutingTable()
    for name in ("a", "b", "c"):
        route = VariantRoute(name, "m@1")
        route.replicas.append(Replica(name, 1, ReplicaClient("127.0.0.1", 1), ready=True))
        table.variants[name] = route
    table.set_weights({"a": 5, "b": 3, "c": 2})
    picks = Counter(table.choose().name for _ in range(1000))  # type: ignore[union-attr]
    assert picks == {"a": 500, "b": 300, "c": 200}
    table.variants["b"].replicas[0].ready = False  # no ready replica: skipped
    picks = Counter(table.choose().name for _ in range(700))  # type: ignore[union-attr]
    assert picks == {"a": 500, "c": 200}


def test_traffic_splits_by_weight_and_the_header_overrides(
    replicas: dict[str, ReplicaServer],
) -> None:
    router = _router(replicas, {"blue": 3, "green": 1})
    with TestClient(router) as client:
        served = Counter(
            client.post("/invocations", json=ROW).headers["x-amzn-invoked-production-variant"]
            for _ in range(200)
        )
        assert abs(served["blue"] / 200 - 0.75) <= 0.05
        for header in ("X-Amzn-SageMaker-Target-Variant", "x-wellml-target-variant"):
            r = client.post("/invocations", json=ROW, headers={header: "green"})
            assert r.headers["x-wellml-variant"] == "green"
            assert r.headers["x-wellml-model-version"] == "m@green"
        unknown = client.post("/invocations", json=ROW, headers={"x-wellml-target-variant": "x"})
        assert unknown.status_code == 400 and "no production variant" in unknown.json()["error"]
        bad = client.post("/invocations", json=[{"y": 1}])
        assert bad.status_code == 422  # the replica's answer passes through
        assert client.get("/ping").status_code == 200
        assert client.get("/nope").status_code == 404
    stats = router.stats.totals
    assert stats["blue"].requests + stats["green"].requests == 203  # the 400 never left
    assert stats["green"].errors_4xx + stats["blue"].errors_4xx == 1


def test_shadows_get_a_copy_and_never_answer(replicas: dict[str, ReplicaServer]) -> None:
    router = _router(replicas, {"blue": 1}, shadow="zero")
    rows = [{"x": v} for v in (-2.0, -1.0, 1.0, 2.0)]
    with TestClient(router) as client:
        for _ in range(5):
            r = client.post("/invocations", json=rows)
            assert r.headers["x-wellml-variant"] == "blue"
            assert r.json()["predictions"] == [0, 0, 1, 1]
        shadow_only = client.post(
            "/invocations", json=ROW, headers={"x-wellml-target-variant": "zero"}
        )
        assert shadow_only.status_code == 400
        deadline = time.monotonic() + 5
        while router.shadow_stats["zero"].compared_rows < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
    stats = router.shadow_stats["zero"].to_dict()
    assert stats["requests"] == 5 and stats["compared_rows"] == 20
    assert stats["agreement"] == 0.5
    assert stats["shadow_p50_ms"] is not None
    text = router.metrics.render().decode()
    assert (
        'wellml_endpoint_shadow_requests_total{endpoint="ep",outcome="disagree",shadow="zero"} 5.0'
        in text
    )


def test_a_dead_replica_is_skipped_and_requests_still_succeed(
    replicas: dict[str, ReplicaServer],
) -> None:
    router = _router(replicas, {"blue": 1})
    dead = Replica("blue", free_port(), ReplicaClient("127.0.0.1", free_port()), ready=True)
    router.table.variants["blue"].replicas.insert(0, dead)
    with TestClient(router) as client:
        results = [client.post("/invocations", json=ROW).status_code for _ in range(10)]
    assert results == [200] * 10
    assert dead.ready is False  # taken out until the supervisor sees it answer again


def test_tokens_rate_limits_metrics_and_access_log(
    replicas: dict[str, ReplicaServer], caplog: pytest.LogCaptureFixture
) -> None:
    def authenticate(token: str | None) -> dict[str, object]:
        if token is None:
            raise Unauthenticated("a token is required")
        if token == "fast":
            return {"id": "t2", "principal": "batch", "rate_limit": {"rate": 100, "burst": 100}}
        if token != "good":
            raise PermissionDenied("the token's scopes do not include invoke:ep")
        return {"id": "t1", "principal": "app", "rate_limit": None}

    router = _router(replicas, {"blue": 1}, rate_limit=RateLimit(1, 3), authenticate=authenticate)
    caplog.set_level(logging.INFO, logger="wellml.access")
    with TestClient(router) as client:
        assert client.post("/invocations", json=ROW).status_code == 401
        assert (
            client.post("/invocations", json=ROW, headers={"authorization": "Bearer x"}).status_code
            == 403
        )
        good = {"authorization": "Bearer good"}
        codes = [client.post("/invocations", json=ROW, headers=good).status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
        limited = client.post("/invocations", json=ROW, headers=good)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        fast = {"authorization": "Bearer fast"}  # the token's own limit wins
        assert all(
            client.post("/invocations", json=ROW, headers=fast).status_code == 200
            for _ in range(10)
        )
        metrics = client.get("/metrics")
    text = metrics.text
    assert "wellml_endpoint_request_latency_seconds_bucket" in text
    assert 'wellml_endpoint_requests_total{endpoint="ep",status="200",variant="blue"} 13.0' in text
    assert 'wellml_endpoint_rate_limited_total{endpoint="ep",principal="app"} 3.0' in text
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "wellml.access"]
    assert {line["status"] for line in lines} == {200, 401, 403, 429}
    assert {line["principal"] for line in lines if line["status"] == 200} == {"app", "batch"}
    assert all(line["latency_ms"] >= 0 and line["inference_id"] for line in lines)


def test_oversized_bodies_are_refused_by_the_router(replicas: dict[str, ReplicaServer]) -> None:
    router = _router(replicas, {"blue": 1})
    router.config = router.config.with_changes(max_payload_bytes=50)
    with TestClient(router) as client:
        r = client.post("/invocations", json=ROW * 20)
    assert r.status_code == 413
