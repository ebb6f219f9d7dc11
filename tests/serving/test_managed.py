"""Managed endpoints end to end, with real router and replica processes on 127.0.0.1: weighted
variants, a replica killed under traffic, shadows, canary rollouts that complete or roll back
by themselves, smoke tests, rollbacks and their record."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from tests.conftest import RequestLoad, wait_until
from wellml.errors import Conflict
from wellml.serving import (
    DeploymentPolicy,
    ErrorRateAlarm,
    ProductionVariant,
    ShadowVariant,
)
from wellml.workspace import Workspace


@pytest.fixture
def models(workspace: Workspace) -> Workspace:
    """m@1 and m@2 are good, m@3 fails on every row with a negative x, m@4 is not approved."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=300), "z": rng.normal(size=300)})
    y = (X["x"] + X["z"] > 0).astype(int)
    train = workspace.data.register("train", X.assign(y=y))
    fitted = [
        make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y),
        make_pipeline(StandardScaler(), LogisticRegression(C=0.01)).fit(X, y),
        make_pipeline(FunctionTransformer(np.log), LogisticRegression()).fit(X.abs() + 1, y),
        LogisticRegression().fit(X[["x", "z"]] * 0 + 1 - (X > 0), y),
    ]
    for model in fitted:
        with workspace.tracking.start_run("m") as run:
            run.log_input(train, "train")
            workspace.registry.register("m", model, X=X, y=y, run=run)
    for v in (1, 2, 3):
        workspace.registry.approve(f"m@{v}", by="lead")
    return workspace


ROWS = [{"x": float(v), "z": float(-v / 2)} for v in np.linspace(-2, 2, 8)]


def steady_load(url: str, *, threads: int = 2) -> RequestLoad:
    """One-row requests from ``threads`` threads, cycling through ``ROWS``, until stopped."""
    return RequestLoad(
        url + "/invocations", lambda n, i: [ROWS[(n + i) % len(ROWS)]], threads=threads, timeout=30
    )


def test_weighted_variants_survive_a_killed_replica_and_shadows_report(
    models: Workspace,
) -> None:
    ws = models
    ws.endpoints.create(
        "ab",
        [ProductionVariant("a", "m@1", replicas=2, weight=3), ProductionVariant("b", "m@2")],
        shadows=[ShadowVariant("s", "m@4")],  # a shadow may serve a version not yet approved
        auth=False,
        port=1,
    )
    with ws.endpoints.start(name="ab") as running:
        with httpx.Client(base_url=running.url, timeout=30) as client:
            seen = Counter(
                client.post("/invocations", json=[ROWS[0]]).headers["x-wellml-variant"]
                for _ in range(200)
            )
            assert seen == {"a": 150, "b": 50}
            pinned = client.post(
                "/invocations", json=ROWS, headers={"X-Amzn-SageMaker-Target-Variant": "b"}
            )
            assert pinned.headers["x-amzn-invoked-production-variant"] == "b"
            reference = client.post(
                "/invocations", json=ROWS, headers={"x-wellml-target-variant": "a"}
            ).json()["predictions"]
        runtime = wait_until(
            lambda: (ws.endpoints.get("ab").runtime or {}).get("variants"), what="runtime"
        )
        victim = runtime["a"]["replicas"][0]["pid"]
        with steady_load(running.url, threads=2) as load:
            time.sleep(0.5)
            os.kill(victim, signal.SIGKILL)
            wait_until(
                lambda: [e for e in ws.endpoints.events("ab") if e["kind"] == "replica-restart"],
                what="a restart",
            )
            wait_until(
                lambda: all(
                    r["ready"]
                    for r in (ws.endpoints.get("ab").runtime or {})["variants"]["a"]["replicas"]
                ),
                what="the restarted replica to be ready",
            )
            time.sleep(0.5)
        assert load.sent > 50 and load.failed == 0, load.statuses
        restart = next(e for e in ws.endpoints.events("ab") if e["kind"] == "replica-restart")
        assert restart["variant"] == "a" and restart["detail"]["exit_code"] == -signal.SIGKILL
        with httpx.Client(base_url=running.url, timeout=30) as client:
            again = client.post("/invocations", json=ROWS, headers={"x-wellml-target-variant": "a"})
            assert again.json()["predictions"] == reference  # shadows never answer
            metrics = client.get("/metrics").text
            assert (
                'wellml_endpoint_replica_restarts_total{endpoint="ab",variant="a"} 1.0' in metrics
            )
            # A request that meets a connection the killed process left behind takes that
            # replica out until the next probe brings it back: the gauge settles at 2.
            ready = 'wellml_endpoint_replicas{endpoint="ab",state="ready",variant="a"} 2.0'
            wait_until(lambda: ready in client.get("/metrics").text, what="two ready replicas")
        compared = wait_until(
            lambda: ws.endpoints.compare("ab")["shadows"].get("s", {}).get("compared_rows"),
            what="shadow figures",
        )
        assert compared > 0
        report = ws.endpoints.compare("ab")
        assert 0 <= report["shadows"]["s"]["agreement"] <= 1
        assert (
            report["variants"]["a"]["traffic"]["requests"]
            > report["variants"]["b"]["traffic"]["requests"]
        )
    assert ws.endpoints.get("ab").status == "stopped"
    assert os.path.getsize(ws.endpoints.access_log_path("ab")) > 0


def test_canary_rollouts_complete_or_roll_back_and_rollbacks_are_recorded(
    models: Workspace,
) -> None:
    ws = models
    policy = DeploymentPolicy(
        strategy="canary",
        canary_percent=20,
        bake_seconds=2.0,
        alarms=(ErrorRateAlarm(max_rate=0.05, min_requests=10),),
    )
    ws.endpoints.deploy("m@1", name="live", auth=False, policy=policy, port=1)
    with pytest.raises(Conflict, match="approve it first"):
        ws.endpoints.update("live", model="m@4")
    with ws.endpoints.start(name="live") as running:
        with steady_load(running.url, threads=2) as load:
            time.sleep(0.5)
            good = ws.endpoints.update("live", model="m@2", timeout=120)
            time.sleep(0.5)
        assert good["outcome"] == "completed", good
        assert load.failed == 0 and load.sent > 50, load.statuses
        actions = [s["action"] for s in good["steps"]]
        assert actions == [
            "provision",
            "smoke-test",
            "traffic",
            "bake",
            "traffic",
            "bake",
            "complete",
        ]
        assert good["steps"][2]["weights"] == {"primary": 0.8, "m-2": 0.2}
        assert ws.endpoints.get("live").model_version == "m@2"

        # A broken version that its smoke test catches never gets traffic.
        caught = ws.endpoints.update("live", model="m@3", variant="m-3a", timeout=120)
        assert caught["outcome"] == "rolled-back"
        assert [s["action"] for s in caught["steps"]] == ["provision", "smoke-test", "rollback"]

        # One that passes it is rolled back by the error-rate alarm during the canary bake.
        slipped = DeploymentPolicy(
            strategy="canary",
            canary_percent=20,
            bake_seconds=5.0,
            smoke_test=False,
            alarms=policy.alarms,
        )
        with steady_load(running.url, threads=2) as load:
            time.sleep(0.5)
            bad = ws.endpoints.update("live", model="m@3", policy=slipped, timeout=120)
            time.sleep(0.5)
        assert bad["outcome"] == "rolled-back", bad
        alarm = next(s for s in bad["steps"] if s["action"] == "alarm")
        assert alarm["alarm"] == "error_rate" and alarm["variant"] == "m-3"
        assert "error_rate" in bad["reason"]
        assert 0 < load.failed < load.sent * 0.2  # only part of the canary share failed
        assert set(load.statuses) == {200, 500}
        with httpx.Client(base_url=running.url, timeout=30) as client:
            after = client.post("/invocations", json=ROWS)
            assert after.status_code == 200 and after.headers["x-wellml-variant"] == "m-2"

        back = ws.endpoints.rollback("live", timeout=120)
        assert [d["outcome"] for d in back] == ["completed"]
        assert back[0]["origin"] == "rollback"
        assert ws.endpoints.get("live").model_version == "m@1"
    history = ws.endpoints.get("live").deployments
    assert [d["outcome"] for d in history] == [
        "stopped",
        "completed",
        "rolled-back",
        "rolled-back",
        "completed",
    ]
    assert [c["version"] for c in ws.endpoints.configs("live")] == [1, 2, 3, 4, 5]
    review = {r.id: r for r in ws.lens.review().results}
    mlrel13 = review["MLREL-13"]
    assert "automatic rollback is not configured" not in mlrel13.reason
    assert "no rollback or rollback drill" not in mlrel13.reason
    assert "endpoint-config:live@2" in ws.lineage.downstream("model:m@2").refs()


def test_updates_of_a_stopped_endpoint_apply_at_once(models: Workspace) -> None:
    ws = models
    ws.endpoints.deploy("m@1", name="cold", port=1)
    dep = ws.endpoints.update(
        "cold",
        variants=[ProductionVariant("a", "m@1", weight=1), ProductionVariant("b", "m@2")],
    )
    assert dep["outcome"] == "completed" and dep["steps"][0]["action"] == "applied"
    weights = ws.endpoints.update("cold", weights={"b": 3})
    assert weights["to_version"] == 3
    assert ws.endpoints.get("cold").endpoint_config.shares() == {"a": 0.25, "b": 0.75}
    drill = ws.endpoints.rollback("cold", drill=True)
    assert [d["origin"] for d in drill] == ["rollback-drill", "rollback-drill"]
    assert ws.endpoints.get("cold").endpoint_config.shares() == {"a": 0.25, "b": 0.75}
    ws.endpoints.delete("cold")
    assert "cold" not in {e.name for e in ws.endpoints.list()}
