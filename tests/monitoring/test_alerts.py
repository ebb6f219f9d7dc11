"""Alerts: the event log, webhook delivery to a local receiver (with retries and recorded
failures), and retrain triggers that fire on drift only."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pandas as pd
import pytest

from wellml.errors import Conflict, InvalidInput
from wellml.monitoring.alerts import AlertRoute, deliver_webhook
from wellml.workspace import Workspace


class Receiver:
    """A webhook receiver on 127.0.0.1 answering with the given status codes in turn."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.received: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.received.append(json.loads(body))
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([])
    yield r
    r.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(30)
def test_delivery_retries_server_errors_and_gives_up_on_client_errors() -> None:
    r = Receiver([500, 503, 200])
    try:
        ok = deliver_webhook(r.url, {"a": 1}, retries=2, backoff=0.01)
        assert (ok.delivered, ok.attempts, ok.status_code) == (True, 3, 200)
        assert r.received == [{"a": 1}] * 3
        r.statuses = [404]
        refused = deliver_webhook(r.url, {"a": 2}, retries=3, backoff=0.01)
        assert (refused.delivered, refused.attempts) == (False, 1)
        assert "HTTP 404" in (refused.error or "")
    finally:
        r.close()
    down = deliver_webhook(
        f"http://127.0.0.1:{_closed_port()}/", {"a": 3}, retries=1, backoff=0.01, timeout=2
    )
    assert (down.delivered, down.attempts, down.status_code) == (False, 2, None)
    assert down.error


def test_routes_are_validated() -> None:
    with pytest.raises(InvalidInput, match="http"):
        AlertRoute(webhook="ftp://x")
    with pytest.raises(InvalidInput, match="unknown alert route key"):
        AlertRoute.from_dict({"webhok": "http://x"})
    with pytest.raises(InvalidInput, match="when"):
        AlertRoute.from_dict({"retrain": {"pipeline": "p:f", "when": "always"}})
    route = AlertRoute.from_dict({"webhook": "http://x", "min_severity": "critical"})
    assert not route.sends("warning") and route.sends("critical")


def _reference(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(size=n), "c": rng.choice(["a", "b"], n)})


def _drift_monitor(ws: Workspace, route: dict[str, Any]) -> None:
    ref = ws.data.register("ref", _reference())
    ws.data.register("live", _reference(2000, 1))
    ws.monitoring.create_monitor(
        dataset="live", baseline=ws.monitoring.baseline(ref), alert_route=route
    )


@pytest.mark.timeout(60)
def test_drift_alerts_reach_the_webhook_and_the_event_log(
    workspace: Workspace, receiver: Receiver
) -> None:
    _drift_monitor(workspace, {"webhook": receiver.url, "retries": 0})
    clean = workspace.monitoring.run_monitor("live-drift")
    assert clean.violations == [] and clean.alerts == []
    assert receiver.received == [] and workspace.monitoring.alerts() == []

    workspace.data.register("live", _reference(2000, 2).assign(x=lambda f: f["x"] + 1))
    drifted = workspace.monitoring.run_monitor("live-drift")
    assert drifted.drifted_features == ["x"]
    (payload,) = receiver.received
    assert payload["monitor"] == "live-drift" and payload["drifted_features"] == ["x"]
    # One of two features is half of them: the dataset has drifted, a critical alert.
    assert payload["execution"] == drifted.id and payload["severity"] == "critical"
    (event,) = workspace.monitoring.alerts("live-drift")
    assert (event["delivered"], event["attempts"], event["webhook"]) == (True, 1, receiver.url)
    assert event["execution_id"] == drifted.id and "drifted: x" in event["message"]


@pytest.mark.timeout(60)
def test_a_failed_delivery_is_recorded_not_raised(workspace: Workspace) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/hook"
    _drift_monitor(workspace, {"webhook": url, "retries": 1, "backoff": 0.01, "timeout": 2})
    workspace.monitoring.run_monitor("live-drift")
    workspace.data.register("live", _reference(2000, 3).assign(x=lambda f: f["x"] + 1))
    result = workspace.monitoring.run_monitor("live-drift")
    assert result.status == "completed-with-violations"
    (event,) = workspace.monitoring.alerts()
    assert (event["delivered"], event["attempts"]) == (False, 2)
    assert event["error"]


def test_retraining_is_triggered_on_drift_only(workspace: Workspace) -> None:
    _drift_monitor(workspace, {"retrain": {"pipeline": "flows:train", "params": {"c": 0.5}}})
    # No drift: no alert, no trigger.
    assert workspace.monitoring.run_monitor("live-drift").violations == []
    # Violations without drift (a missing column): an alert, still no trigger.
    workspace.data.register("live", _reference(2000, 4).drop(columns=["c"]))
    missing = workspace.monitoring.run_monitor("live-drift")
    assert [v["constraint_check_type"] for v in missing.violations] == ["missing_column_check"]
    assert missing.alerts[0]["retrain_trigger"] is None
    assert workspace.monitoring.retrain_triggers() == []
    # Drift: a pending trigger naming the pipeline.
    workspace.data.register("live", _reference(2000, 5).assign(x=lambda f: f["x"] * 3))
    drifted = workspace.monitoring.run_monitor("live-drift")
    (trigger,) = workspace.monitoring.retrain_triggers("pending")
    assert trigger["id"] == drifted.alerts[0]["retrain_trigger"]
    assert (trigger["pipeline"], trigger["params"], trigger["monitor"]) == (
        "flows:train",
        {"c": 0.5},
        "live-drift",
    )
    assert trigger["execution_id"] == drifted.id

    claimed = workspace.monitoring.claim_trigger(trigger["id"], by="scheduler")
    assert (claimed["status"], claimed["claimed_by"]) == ("claimed", "scheduler")
    with pytest.raises(Conflict, match="not pending"):
        workspace.monitoring.claim_trigger(trigger["id"])
    workspace.monitoring.finish_trigger(trigger["id"], status="completed", pipeline_run_id="r1")
    (done,) = workspace.monitoring.retrain_triggers("completed")
    assert done["pipeline_run_id"] == "r1"


def test_dispatch_runs_each_pending_pipeline_once(workspace: Workspace) -> None:
    _drift_monitor(workspace, {"retrain": "flows:train"})
    workspace.monitoring.run_monitor("live-drift")
    workspace.data.register("live", _reference(2000, 6).assign(x=lambda f: f["x"] + 2))
    workspace.monitoring.run_monitor("live-drift")

    class Run:
        id = "run-1"
        status = "completed"

    class FakePipelines:
        calls: list[tuple[str, dict[str, Any]]] = []

        def run(self, pipeline: str, params: dict[str, Any], **kw: Any) -> Run:
            self.calls.append((pipeline, params))
            return Run()

    fake = FakePipelines()
    workspace.__dict__["pipelines"] = fake
    outcomes = workspace.monitoring.dispatch_retraining()
    assert [o["status"] for o in outcomes] == ["completed"]
    assert fake.calls == [("flows:train", {})]
    assert workspace.monitoring.dispatch_retraining() == []
    (done,) = workspace.monitoring.retrain_triggers()
    assert (done["status"], done["pipeline_run_id"]) == ("completed", "run-1")
