"""The supervisor's autoscaler, driven by real requests on 127.0.0.1: a burst of concurrent slow
requests scales a variant out to its maximum and never beyond, idling scales it back in to its
minimum after the cooldown, and every action is an endpoint event."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.neighbors import KNeighborsClassifier

from tests.conftest import RequestLoad, wait_until
from wellml.serving import AutoScaling, ProductionVariant
from wellml.workspace import Workspace

# Each request predicts this many rows with a brute-force nearest-neighbour model: tens of
# milliseconds of work, so concurrent requests pile up in flight at the router.
BATCH_ROWS = 400


@pytest.fixture
def slow_model(workspace: Workspace) -> Workspace:
    """knn@1: nearest neighbours over 20,000 training rows, approved."""
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"x": rng.normal(size=20_000), "z": rng.normal(size=20_000)})
    y = (X["x"] > 0).astype(int)
    model = KNeighborsClassifier(n_neighbors=5, algorithm="brute").fit(X, y)
    workspace.registry.register("knn", model, X=X, y=y)
    workspace.registry.approve("knn@1", by="lead")
    return workspace


def a_burst(url: str, variant: str, *, clients: int) -> RequestLoad:
    """``clients`` threads each sending requests of ``BATCH_ROWS`` rows one after another to
    variant ``variant``, until stopped, 2,000 requests in all, or 90 s have passed."""
    rng = np.random.default_rng(4)
    rows = [{"x": float(a), "z": float(b)} for a, b in rng.normal(size=(BATCH_ROWS, 2)) * 0.9]
    return RequestLoad(
        url + "/invocations",
        lambda n, i: rows,
        threads=clients,
        limit=2_000,
        seconds=90,
        headers={"x-wellml-target-variant": variant},
    )


def test_a_burst_scales_out_to_the_maximum_and_idling_scales_back_in(
    slow_model: Workspace,
) -> None:
    ws = slow_model
    policy = AutoScaling(
        min_replicas=1,
        max_replicas=2,
        target_inflight=1,
        scale_out_cooldown_s=1,
        scale_in_cooldown_s=3,
    )
    ws.endpoints.create(
        "auto",
        [
            ProductionVariant("a", "knn@1", weight=1, autoscaling=policy),
            ProductionVariant("b", "knn@1", weight=1),  # fixed at one replica
        ],
        auth=False,
        capture_percent=0,
        port=1,
    )
    seen: Counter[int] = Counter()  # replica counts of variant a observed while it runs

    def replicas(name: str) -> list[dict[str, Any]]:
        runtime = ws.endpoints.get("auto").runtime or {}
        found = runtime.get("variants", {}).get(name, {}).get("replicas", [])
        if name == "a" and found:
            seen[len(found)] += 1
        return list(found)

    def events(kind: str) -> list[dict[str, Any]]:
        return [e for e in ws.endpoints.events("auto") if e["kind"] == kind]

    with ws.endpoints.start(name="auto") as running:
        assert len(wait_until(lambda: replicas("a"), 30, "the runtime record")) == 1
        # Four clients keep about four requests in flight against a target of one per
        # replica: the autoscaler wants four replicas and is held to the maximum of two.
        with a_burst(running.url, "a", clients=4) as burst:
            wait_until(lambda: events("scale-out"), 60, "a scale-out")
            wait_until(
                lambda: len(r := replicas("a")) == 2 and all(x["ready"] for x in r),
                60,
                "the second replica to be ready",
            )
            time.sleep(2.5)  # the load goes on past another scale-out cooldown
            served = [r["served"] for r in replicas("a")]
        assert burst.statuses[200] > 10 and set(burst.statuses) == {200}, burst.statuses
        assert all(n > 0 for n in served), served  # the new replica took traffic too

        # Idle: once the 30 s window's mean falls under the target, one replica goes.
        wait_until(lambda: events("scale-in"), 60, "a scale-in")
        wait_until(lambda: len(replicas("a")) == 1, 30, "variant a back to one replica")
        time.sleep(3.5)  # past another scale-in cooldown: nothing goes below the minimum
        assert len(replicas("a")) == 1
        after = httpx.post(
            running.url + "/invocations",
            json=[{"x": 1.0, "z": 0.0}],
            headers={"x-wellml-target-variant": "a"},
            timeout=30,
        )
        assert after.status_code == 200 and after.json()["predictions"] == [1]
        assert len(replicas("b")) == 1

    actions = [e for e in ws.endpoints.events("auto") if e["kind"].startswith("scale-")]
    assert [e["kind"] for e in actions] == ["scale-out", "scale-in"], actions
    out, back = actions
    assert out["variant"] == back["variant"] == "a"
    assert out["detail"]["from"] == 1 and out["detail"]["to"] == 2
    assert out["detail"]["mean_inflight"] > policy.target_inflight
    assert out["detail"]["target_inflight"] == 1
    assert back["detail"]["from"] == 2 and back["detail"]["to"] == 1
    assert out["detail"]["replicas"] == 2 and back["detail"]["replicas"] == 1
    assert "error" not in out["detail"] and "error" not in back["detail"]
    assert back["detail"]["mean_inflight"] <= policy.target_inflight
    assert back["at"] - out["at"] >= policy.scale_in_cooldown_s
    assert set(seen) <= {1, 2} and seen[2] > 0, seen  # never above the maximum
