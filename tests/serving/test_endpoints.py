"""Endpoints end to end: deploy an approved version, serve it in a child process, call it with
a token, capture its traffic as a dataset version with lineage, stop it."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from wellml.errors import Conflict, InvalidInput, NotFound, PermissionDenied, Unauthenticated
from wellml.workspace import Workspace


@pytest.fixture
def approved(workspace: Workspace) -> Workspace:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=200), "kind": rng.choice(["a", "b"], 200)})
    y = (X["x"] > 0).astype(int)
    dv = workspace.data.register("train", X.assign(y=y))
    with workspace.tracking.start_run("e") as run:
        run.log_input(dv, "train")
        model = LogisticRegression().fit(X[["x"]], y)
        workspace.registry.register("m", model, X=X[["x"]], y=y, run=run)
    return workspace


def test_only_approved_versions_are_deployed(approved: Workspace) -> None:
    with pytest.raises(Conflict, match="approve it first"):
        approved.endpoints.deploy("m@1", name="ep")
    ep = approved.endpoints.deploy("m@1", name="ep", allow_unapproved=True, port=1)
    assert ep.status == "creating" and ep.model_version == "m@1"
    with pytest.raises(InvalidInput):
        approved.endpoints.deploy("m@1", name="ep", allow_unapproved=True, capture_percent=150)
    with pytest.raises(NotFound):
        approved.endpoints.get("nope")


def test_serve_invoke_capture_and_stop(approved: Workspace) -> None:
    approved.registry.approve("m@1")
    approved.registry.set_alias("m", "production", 1)
    with approved.endpoints.start("m@production", name="ep") as running:
        ep = approved.endpoints.get("ep")
        assert ep.status == "in-service" and ep.pid == running.process.pid
        token = approved.endpoints.issue_token("ep", "app").secret
        with pytest.raises(Unauthenticated):
            approved.endpoints.invoke("ep", [{"x": 1.0}])
        other = approved.endpoints.issue_token("ep", "other")  # scope is per endpoint
        assert other.scopes == ("invoke:ep",)
        out = approved.endpoints.invoke("ep", [{"x": 1.0}, {"x": -1.0}], token=token)
        assert out["predictions"] == [1, 0]
        with pytest.raises(InvalidInput, match="422"):
            approved.endpoints.invoke("ep", [{"y": 1.0}], token=token)
    assert approved.endpoints.get("ep").status == "stopped"
    files = approved.endpoints.capture_files("ep")
    assert sum(f["rows"] for f in files) == 2  # the rejected request is not captured
    dv = approved.endpoints.capture_dataset("ep")
    assert dv is not None and dv.name == "ep-capture" and dv.num_rows == 2
    assert approved.endpoints.capture_dataset("ep") is None  # nothing new
    up = approved.lineage.upstream(dv.lineage_ref)
    assert {"endpoint:ep", "model:m@1", "dataset:train@1"} <= up.refs()
    history = approved.endpoints.get("ep").deployments
    assert [d["outcome"] for d in history] == ["stopped"]


def test_a_token_for_another_endpoint_is_refused(approved: Workspace) -> None:
    approved.registry.approve("m@1")
    with approved.endpoints.start("m@1", name="ep"):
        approved.endpoints.deploy("m@1", name="other", port=1)
        foreign = approved.endpoints.issue_token("other", "app").secret
        with pytest.raises(PermissionDenied, match="scopes"):
            approved.endpoints.invoke("ep", [{"x": 1.0}], token=foreign)


def test_a_killed_server_is_reported_failed(approved: Workspace) -> None:
    approved.registry.approve("m@1")
    running = approved.endpoints.start("m@1", name="ep", auth=False)
    os.kill(running.process.pid, signal.SIGKILL)
    running.process.wait()
    deadline = time.monotonic() + 5
    while approved.endpoints.get("ep").status != "failed" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert approved.endpoints.get("ep").status == "failed"
    with pytest.raises(Conflict, match="not running"):
        approved.endpoints.stop("ep")


def test_a_deployed_version_can_autoscale(approved: Workspace) -> None:
    from wellml.serving import AutoScaling

    approved.registry.approve("m@1")
    scaling = AutoScaling(min_replicas=1, max_replicas=3, target_inflight=2)
    ep = approved.endpoints.deploy("m@1", name="ep", port=1, autoscaling=scaling)
    (variant,) = ep.endpoint_config.variants
    assert variant.autoscaling == scaling and variant.replicas == 1
    with pytest.raises(InvalidInput, match="autoscaling needs"):
        approved.endpoints.deploy(
            "m@1", name="ep", port=1, autoscaling=AutoScaling(min_replicas=2, max_replicas=1)
        )
