"""Endpoints on Ray Serve, on a local Ray: the same configuration, protocols, tokens and answers
as the local supervisor, with one Serve deployment per production variant."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from wellml.errors import BackendUnavailable, Conflict, InvalidInput, NotFound
from wellml.serving import AutoScaling, ProductionVariant, ShadowVariant
from wellml.serving.ray_serve import autoscaling_config, deployment_options
from wellml.serving.service import free_port
from wellml.workspace import Workspace


@dataclass(frozen=True)
class RayServe:
    ray: Any
    serve: Any
    port: int


@pytest.fixture(scope="module")
def ray_serve(ray_local: Any) -> Iterator[RayServe]:
    """Serve on a free port of the session's local Ray, started once for the module and shut
    down after."""
    try:
        from ray import serve
    except ImportError as exc:
        message = f"Ray Serve is not importable ({exc}; pip install 'wellml[ray]')"
        if os.environ.get("WELLML_REQUIRE_SERVICES") == "1":
            pytest.fail(message + " and WELLML_REQUIRE_SERVICES=1", pytrace=False)
        pytest.skip(message)
    port = free_port()
    try:
        # Serve keeps one HTTP proxy for the cluster, on the port it is first started with.
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield RayServe(ray_local, serve, port)
    finally:
        serve.shutdown()


@pytest.fixture
def two_models(workspace: Workspace) -> Workspace:
    """m@1 (logistic regression) and m@2 (a shallow tree), approved, trained on x and z."""
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"x": rng.normal(size=300), "z": rng.normal(size=300)})
    y = (X["x"] - 0.5 * X["z"] > 0).astype(int)
    train = workspace.data.register("train", X.assign(y=y))
    for model in (LogisticRegression().fit(X, y), DecisionTreeClassifier(max_depth=2).fit(X, y)):
        with workspace.tracking.start_run("m") as run:
            run.log_input(train, "train")
            workspace.registry.register("m", model, X=X, y=y, run=run)
    for v in (1, 2):
        workspace.registry.approve(f"m@{v}", by="lead")
    return workspace


ROWS = [{"x": float(v), "z": float(np.sin(v))} for v in np.linspace(-2, 2, 9)]


def test_autoscaling_maps_to_serve_and_fixed_replicas_stay_fixed() -> None:
    policy = AutoScaling(
        min_replicas=2,
        max_replicas=5,
        target_inflight=3,
        scale_out_cooldown_s=7,
        scale_in_cooldown_s=40,
    )
    assert autoscaling_config(policy) == {
        "min_replicas": 2,
        "initial_replicas": 2,
        "max_replicas": 5,
        "target_ongoing_requests": 3,
        "upscale_delay_s": 7,
        "downscale_delay_s": 40,
        "look_back_period_s": 30.0,
    }
    scaled = deployment_options(
        ProductionVariant("a", "m@1", autoscaling=policy, replicas=2), num_cpus=0.5
    )
    assert "num_replicas" not in scaled and scaled["max_ongoing_requests"] == 6
    assert scaled["name"] == "variant-a" and scaled["ray_actor_options"] == {"num_cpus": 0.5}
    fixed = deployment_options(ProductionVariant("b", "m@2", replicas=3), num_cpus=1)
    assert fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed


def test_bad_arguments_are_refused_before_ray_starts(
    two_models: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = two_models
    ws.endpoints.create("rs", [ProductionVariant("a", "m@1")], port=1)
    with pytest.raises(InvalidInput, match="route prefix"):
        ws.endpoints.deploy_ray("rs", route_prefix="api")
    with pytest.raises(InvalidInput, match="TCP port"):
        ws.endpoints.deploy_ray("rs", port=70000)
    with pytest.raises(InvalidInput, match="num_cpus"):
        ws.endpoints.deploy_ray("rs", num_cpus=-1)
    with pytest.raises(NotFound):
        ws.endpoints.deploy_ray("nope")
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "ray", None)  # as if the ray extra were not installed
        with pytest.raises(BackendUnavailable, match=r"pip install 'wellml\[ray\]'"):
            ws.endpoints.deploy_ray("rs")
    assert ws.endpoints.get("rs").status != "in-service"
    assert ws.endpoints.events("rs") == []


@pytest.mark.ray
def test_an_endpoint_serves_on_ray_serve_like_the_local_supervisor(
    two_models: Workspace, ray_serve: RayServe
) -> None:
    ws = two_models
    ws.endpoints.create(
        "rs",
        [
            ProductionVariant("a", "m@1", weight=3),
            ProductionVariant(
                "b",
                "m@2",
                weight=1,
                autoscaling=AutoScaling(min_replicas=1, max_replicas=2, target_inflight=2),
            ),
        ],
        shadows=[ShadowVariant("s", "m@1", sampling_percent=50)],
        port=1,
    )
    token = ws.endpoints.issue_token("rs", "app").secret
    ws.endpoints.deploy("m@1", name="other", port=1)
    foreign = ws.endpoints.issue_token("other", "app").secret
    frame = pd.DataFrame(ROWS)
    expected = {
        "a": ws.registry.load("m@1").predict(frame).tolist(),
        "b": ws.registry.load("m@2").predict(frame).tolist(),
    }
    assert expected["a"] != expected["b"]  # the variants are told apart by their answers
    port = ray_serve.port
    limited = ws.endpoints.issue_token("rs", "batch", rate_limit=(0.2, 1)).secret

    running = ws.endpoints.deploy_ray("rs", port=port, num_cpus=0.5, timeout=240)
    try:
        assert running.url == f"http://127.0.0.1:{port}"
        record = ws.endpoints.get("rs")
        assert record.status == "in-service" and record.runtime is not None
        assert record.runtime["backend"] == "ray-serve"
        assert record.runtime["shadows_not_served"] == ["s"]
        with pytest.raises(Conflict, match="running"):
            ws.endpoints.deploy_ray("rs")
        with pytest.raises(Conflict, match="Ray Serve"):
            ws.endpoints.stop("rs")
        events = {e["variant"]: e for e in ws.endpoints.events("rs")}
        assert events["a"]["kind"] == "ray-serve-deploy" and events["a"]["detail"]["num_replicas"]
        assert events["b"]["detail"]["autoscaling_config"]["max_replicas"] == 2
        status = ray_serve.serve.status().applications["wellml-rs"]
        assert str(status.status).endswith("RUNNING")
        assert set(status.deployments) == {"router", "variant-a", "variant-b"}

        auth = {"authorization": f"Bearer {token}"}
        with httpx.Client(base_url=running.url, timeout=60, headers=auth) as client:
            assert client.get("/ping").status_code == 200
            seen: Counter[str] = Counter()
            for _ in range(40):
                r = client.post("/invocations", json=ROWS)
                assert r.status_code == 200, r.text
                variant = r.headers["x-amzn-invoked-production-variant"]
                assert r.json()["predictions"] == expected[variant]
                assert r.headers["x-wellml-model-version"] == {"a": "m@1", "b": "m@2"}[variant]
                seen[variant] += 1
            assert seen == {"a": 30, "b": 10}  # exactly the weights, 3:1

            pinned = client.post(
                "/invocations", json=ROWS, headers={"X-Amzn-SageMaker-Target-Variant": "b"}
            )
            assert pinned.headers["x-amzn-invoked-production-variant"] == "b"
            assert pinned.json()["predictions"] == expected["b"]
            unknown = client.post(
                "/invocations", json=ROWS, headers={"x-wellml-target-variant": "s"}
            )
            assert unknown.status_code == 400 and "no production variant 's'" in unknown.text

            csv = client.post(
                "/invocations",
                content=frame.to_csv(index=False),
                headers={"content-type": "text/csv", "x-wellml-target-variant": "a"},
            )
            assert csv.json()["predictions"] == expected["a"]
            v2 = client.post(
                "/v2/models/rs/infer",
                json={
                    "inputs": [
                        {"name": "x", "shape": [2], "datatype": "FP64", "data": [1.0, -1.0]},
                        {"name": "z", "shape": [2], "datatype": "FP64", "data": [0.0, 0.0]},
                    ]
                },
                headers={"x-wellml-target-variant": "a"},
            )
            assert v2.status_code == 200 and v2.json()["model_name"] == "rs"
            assert v2.json()["outputs"][0]["data"] == [1, 0]
            far = client.post(
                "/invocations",
                json=[{"x": 0.0, "z": 0.0}, {"x": 1000.0, "z": 0.0}],
                headers={"x-wellml-target-variant": "a"},
            )
            assert far.status_code == 200 and far.headers["x-wellml-ood-rows"] == "1"
            assert far.json()["out_of_distribution"] == [{"row": 1, "columns": ["x"]}]

            broken = client.post(
                "/invocations", content=b"{not json", headers={"content-type": "application/json"}
            )
            assert broken.status_code == 400 and "error" in broken.json()
            wrong = client.post("/invocations", json=[{"x": 1.0}])
            assert wrong.status_code == 422 and "z" in wrong.json()["error"]
            typed = client.post("/invocations", json=[{"x": "high", "z": 0.0}])
            assert typed.status_code == 422
            media = client.post(
                "/invocations", content=b"x=1", headers={"content-type": "text/plain"}
            )
            assert media.status_code == 415
            assert client.get("/nowhere").status_code == 404

        anonymous = httpx.post(running.url + "/invocations", json=ROWS, timeout=60)
        assert anonymous.status_code == 401 and "token" in anonymous.json()["error"]
        other = httpx.post(
            running.url + "/invocations",
            json=ROWS,
            headers={"authorization": f"Bearer {foreign}"},
            timeout=60,
        )
        assert other.status_code == 403
        by_limited = {"authorization": f"Bearer {limited}"}
        first = httpx.post(running.url + "/invocations", json=ROWS, headers=by_limited, timeout=60)
        second = httpx.post(running.url + "/invocations", json=ROWS, headers=by_limited, timeout=60)
        assert first.status_code == 200 and second.status_code == 429
        assert int(second.headers["retry-after"]) >= 1 and "rate limit" in second.json()["error"]
    finally:
        running.stop()

    assert "wellml-rs" not in ray_serve.serve.status().applications
    # Serve itself stays up (this module started it); nothing answers for the endpoint now.
    gone = httpx.post(running.url + "/invocations", json=ROWS, headers=auth, timeout=30)
    assert gone.status_code == 404
    assert ws.endpoints.get("rs").status == "stopped"
    stops = [e for e in ws.endpoints.events("rs") if e["kind"] == "ray-serve-stop"]
    assert sorted(e["variant"] for e in stops) == ["a", "b"]
    # Replicas capture what they answered, as local replicas do, and flush when they stop.
    captured = sum(f["rows"] for f in ws.endpoints.capture_files("rs"))
    assert captured == 43 * len(ROWS) + 2 + 2


@pytest.mark.ray
def test_endpoints_up_with_the_ray_backend_serves_until_stopped(
    two_models: Workspace, ray_serve: RayServe
) -> None:
    ws = two_models
    ws.endpoints.create("cli", [ProductionVariant("a", "m@2")], auth=False, port=ray_serve.port)
    address = ray_serve.ray.get_runtime_context().gcs_address
    cmd = [sys.executable, "-m", "wellml", "--workspace", str(ws.root), "endpoints", "up"]
    proc = subprocess.Popen(
        [*cmd, "cli", "--backend", "ray", "--ray-address", address],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{ray_serve.port}"
    try:
        deadline = time.monotonic() + 180
        while httpx.get(url + "/ping", timeout=10).status_code != 200:
            assert proc.poll() is None, "wellml endpoints up exited early"
            assert time.monotonic() < deadline, "the endpoint never answered"
            time.sleep(0.5)
        answer = httpx.post(url + "/invocations", json=ROWS, timeout=60)
        expected = ws.registry.load("m@2").predict(pd.DataFrame(ROWS)).tolist()
        assert answer.status_code == 200 and answer.json()["predictions"] == expected
        # The record is written once the application answers.
        while (record := ws.endpoints.get("cli")).status != "in-service":
            assert time.monotonic() < deadline, f"the endpoint stayed {record.status}"
            time.sleep(0.2)
        assert record.pid == proc.pid
        assert record.runtime is not None and record.runtime["address"] == address
        stopped = ws.endpoints.stop("cli", timeout=120)  # SIGTERM to the up process
        assert stopped.status == "stopped"
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    kinds = [e["kind"] for e in ws.endpoints.events("cli")]
    assert kinds == ["ray-serve-deploy", "ray-serve-stop"]
    assert "wellml-cli" not in ray_serve.serve.status().applications


def test_up_refuses_an_unknown_backend_in_one_line(
    two_models: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    from wellml.cli.app import main
    from wellml.cli.context import state

    two_models.endpoints.create("ep", [ProductionVariant("a", "m@1")], port=1)
    state._ws = None
    state.workspace = None
    code = main(["--workspace", str(two_models.root), "endpoints", "up", "ep", "--backend", "k8s"])
    err = capsys.readouterr().err
    assert code != 0 and "unknown backend 'k8s'" in err and "Traceback" not in err
    state._ws = None
    state.workspace = None
    code = main(["--workspace", str(two_models.root), "endpoints", "up", "ep", "--port", "9000"])
    assert code != 0 and "go with --backend ray" in capsys.readouterr().err


def test_a_stop_asked_for_while_ray_starts_is_kept() -> None:
    """ray.init replaces the SIGTERM handler with its own (exit at once); deploying keeps the
    handler of `endpoints up`, so a stop that arrives then is carried out and recorded."""
    from wellml.serving.ray_serve import _keeping_sigterm, stop_requested

    before = signal.getsignal(signal.SIGTERM)
    with stop_requested() as done:
        ours = signal.getsignal(signal.SIGTERM)
        with _keeping_sigterm():
            signal.signal(signal.SIGTERM, lambda *_: None)  # what ray.init does
        assert signal.getsignal(signal.SIGTERM) is ours
        os.kill(os.getpid(), signal.SIGTERM)
        assert done.wait(5)
    assert signal.getsignal(signal.SIGTERM) is before
