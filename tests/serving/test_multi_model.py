"""Multi-model endpoints: a request names its model version by header; each replica loads
versions on first use and evicts the least recently used under a memory budget; only allowed,
approved versions are served; capture and metrics say which version answered."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.conftest import wait_until
from wellml.cli.app import main
from wellml.cli.context import state
from wellml.cli.output import console
from wellml.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from wellml.serving import DeploymentPolicy, ProductionVariant, ShadowVariant
from wellml.serving.capture import CaptureWriter
from wellml.serving.config import EndpointConfig, MultiModel, parse_memory
from wellml.serving.multimodel import LoadedModels, ModelTooLarge, model_file_size
from wellml.serving.replica import build_replica
from wellml.workspace import Workspace

ROWS_A = [{"x": float(v), "z": float(-v / 3)} for v in np.linspace(-2, 2, 6)]
ROWS_B = [{"n": int(v), "w": float(v) / 4} for v in range(-3, 3)]


@pytest.fixture
def zoo(workspace: Workspace) -> Workspace:
    """a@1, a@2 approved, a@3 pending, a@4 rejected (inputs x, z); b@1 approved (an integer
    input n and a float w); big@1 approved and far larger; c@1 approved but never allowed."""
    ws = workspace
    rng = np.random.default_rng(0)
    Xa = pd.DataFrame({"x": rng.normal(size=300), "z": rng.normal(size=300)})
    ya = (Xa["x"] - Xa["z"] > 0).astype(int)
    for c in (1.0, 0.01, 0.1, 5.0):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c)).fit(Xa, ya)
        ws.registry.register("a", model, X=Xa, y=ya)
    Xb = pd.DataFrame({"n": rng.integers(-5, 5, 300), "w": rng.normal(size=300)})
    yb = (Xb["n"] + Xb["w"] > 0).astype(int)
    ws.registry.register("b", LogisticRegression().fit(Xb, yb), X=Xb, y=yb)
    forest = RandomForestClassifier(n_estimators=40, random_state=0).fit(Xa, ya)
    ws.registry.register("big", forest, X=Xa, y=ya)
    ws.registry.register("c", LogisticRegression().fit(Xa, ya), X=Xa, y=ya)
    for ref in ("a@1", "a@2", "b@1", "big@1", "c@1"):
        ws.registry.approve(ref, by="lead")
    ws.registry.reject("a@4", reason="leaks the label", by="lead")
    return ws


def size(ws: Workspace, ref: str) -> int:
    return model_file_size(ws, ws.registry.get(ref))


def two_model_budget(ws: Workspace) -> int:
    """Room for any two of a@1, a@2 and b@1, never three."""
    small = sorted(size(ws, r) for r in ("a@1", "a@2", "b@1"))
    budget = small[2] + small[1]
    assert small[0] + small[1] + small[2] > budget
    assert size(ws, "big@1") > budget  # the forest does not fit even alone
    return budget


def create(ws: Workspace, budget: int, **kw: Any) -> None:
    ws.endpoints.create(
        "mm",
        [ProductionVariant.multi("primary", ["a", "b@1", "big"], memory_budget=budget, **kw)],
        auth=False,
        port=1,
    )


@pytest.fixture
def replica(zoo: Workspace) -> Iterator[tuple[Workspace, TestClient]]:
    """The app of one replica of a multi-model endpoint that holds two small models."""
    create(zoo, two_model_budget(zoo))
    spec = zoo.endpoints.get("mm").endpoint_config.variants[0].multi_model
    mv_id = zoo.registry.get("a@1").id
    with TestClient(build_replica(zoo, "mm", "primary", mv_id, multi_model=spec)) as client:
        yield zoo, client


def call(client: TestClient, target: str | None, rows: list[dict[str, Any]]) -> httpx.Response:
    headers = {"x-amzn-sagemaker-target-model": target} if target is not None else {}
    return client.post("/invocations", json=rows, headers=headers)


# -- the configuration ---------------------------------------------------------------------------


def test_multi_model_settings_round_trip_and_refuse_bad_values() -> None:
    v = ProductionVariant.multi("mm", ["a", "b@2"], memory_budget="1MiB", max_models=3)
    assert v.model_version == "a" and v.multi_model == MultiModel(("a", "b@2"), 1 << 20, 3)
    config = EndpointConfig(variants=(v,))
    assert config.multi_model
    data = config.to_dict()
    assert data["variants"][0]["multi_model"] == {
        "models": ["a", "b@2"],
        "memory_budget_bytes": 1048576,
        "max_models": 3,
    }
    assert EndpointConfig.from_dict(json.loads(json.dumps(data))) == config
    single = EndpointConfig(variants=(ProductionVariant("p", "a@1"),))
    assert not single.multi_model and "multi_model" not in single.to_dict()["variants"][0]
    assert parse_memory("512MiB") == 512 << 20 and parse_memory(4096) == 4096
    for bad in ("lots", "0", "-1MB", True):
        with pytest.raises(InvalidInput, match="memory size"):
            parse_memory(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="at least one"):
        MultiModel((), 100)
    with pytest.raises(InvalidInput, match="unique"):
        MultiModel(("a", "a"), 100)
    with pytest.raises(InvalidInput, match="budget"):
        MultiModel(("a",), 0)
    with pytest.raises(InvalidInput, match="max_models"):
        MultiModel(("a",), 10, 0)
    with pytest.raises(InvalidInput, match="invalid"):
        MultiModel(("bad name!",), 10)
    with pytest.raises(InvalidInput, match="all multi-model or none"):
        EndpointConfig(variants=(v, ProductionVariant("p", "a@1")))
    with pytest.raises(InvalidInput, match="no shadow"):
        EndpointConfig(variants=(v,), shadows=(ShadowVariant("s", "a@1"),))
    with pytest.raises(InvalidInput, match="multi-model settings"):
        EndpointConfig.from_dict(
            {"variants": [{"name": "p", "model_version": "a", "multi_model": {"models": ["a"]}}]}
        )


def test_creating_pins_versions_and_refuses_what_cannot_be_served(zoo: Workspace) -> None:
    ws = zoo
    zoo.registry.set_alias("c", "production", 1)
    ws.endpoints.create(
        "mm",
        [ProductionVariant.multi("primary", ["b@1", "a", "c@production"], memory_budget="10MiB")],
        port=1,
    )
    ep = ws.endpoints.get("mm")
    v = ep.endpoint_config.variants[0]
    # The record shows the first version the set serves; a model name stays a name and an
    # alias is pinned to the version it names now.
    assert v.model_version == "b@1" and ep.model_version == "b@1"
    assert v.multi_model is not None and v.multi_model.models == ("b@1", "a", "c@1")
    deploy = [
        e
        for e in ws.lineage.upstream(ep.lineage_ref, depth=2).nodes
        if str(e.ref).startswith("model:")
    ]
    assert {n.ref for n in deploy} == {"model:b@1", "model:a@2", "model:c@1"}

    def refused(models: list[str], budget: str = "10MiB") -> None:
        ws.endpoints.create(
            "bad", [ProductionVariant.multi("p", models, memory_budget=budget)], port=1
        )

    with pytest.raises(Conflict, match="a@3 is pending; approve it first"):
        refused(["a@3"])
    with pytest.raises(Conflict, match="rejected"):
        refused(["b", "a@4"])
    with pytest.raises(NotFound, match="nope"):
        refused(["nope"])
    with pytest.raises(NotFound):
        refused(["a@9"])
    ws.registry.register(
        "d", LogisticRegression().fit([[0.0], [1.0]], [0, 1]), X=pd.DataFrame({"q": [0.0, 1.0]})
    )
    with pytest.raises(Conflict, match="none of d has an approved version"):
        refused(["d"])
    with pytest.raises(InvalidInput, match="more than the memory budget"):
        refused(["big@1"], budget=str(size(ws, "big@1") - 1))
    with pytest.raises(NotFound):
        ws.endpoints.get("bad")  # nothing was written


# -- the replica --------------------------------------------------------------------------------


def test_requests_go_to_the_model_they_name(replica: tuple[Workspace, TestClient]) -> None:
    ws, client = replica
    ws.registry.set_alias("a", "production", 2)
    for target, rows in (("a@1", ROWS_A), ("a@2", ROWS_A), ("b@1", ROWS_B)):
        r = call(client, target, rows)
        assert r.status_code == 200, r.text
        direct = ws.registry.load(target)
        frame = pd.DataFrame(rows)
        assert r.json()["predictions"] == direct.predict(frame).tolist()
        assert np.allclose(r.json()["probabilities"], direct.predict_proba(frame), atol=1e-6)
        assert r.headers["x-wellml-model-version"] == target
    r = client.post("/invocations", json=ROWS_A, headers={"x-wellml-target-model": "a@production"})
    assert r.status_code == 200 and r.headers["x-wellml-model-version"] == "a@2"
    # a@1 and a@2 give different answers on these rows, so the routing is not a coincidence.
    p1 = call(client, "a@1", ROWS_A).json()["probabilities"]
    p2 = call(client, "a@2", ROWS_A).json()["probabilities"]
    assert p1 != p2


def test_models_load_on_first_use_and_evict_least_recently_used(
    replica: tuple[Workspace, TestClient],
) -> None:
    ws, client = replica
    first = call(client, "a@1", ROWS_A)
    assert first.headers["x-wellml-models-loaded"] == "1"
    assert float(first.headers["x-wellml-model-loaded"]) > 0
    again = call(client, "a@1", ROWS_A)
    assert "x-wellml-model-loaded" not in again.headers  # loaded once, then served warm
    assert call(client, "a@2", ROWS_A).headers["x-wellml-models-loaded"] == "2"
    # A third model does not fit: the least recently used one (a@1) goes.
    r = call(client, "b@1", ROWS_B)
    assert r.headers["x-wellml-models-evicted"] == "a@1"
    assert r.headers["x-wellml-models-loaded"] == "2"
    assert int(r.headers["x-wellml-models-loaded-bytes"]) == size(ws, "a@2") + size(ws, "b@1")
    # Using a@2 makes b@1 the least recently used; a@1 comes back in its place.
    assert "x-wellml-model-loaded" not in call(client, "a@2", ROWS_A).headers
    back = call(client, "a@1", ROWS_A)
    assert back.status_code == 200 and "x-wellml-model-loaded" in back.headers
    assert back.headers["x-wellml-models-evicted"] == "b@1"
    assert (
        back.json()["predictions"] == ws.registry.load("a@1").predict(pd.DataFrame(ROWS_A)).tolist()
    )

    def events() -> list[tuple[str, str]]:
        found = [
            (e["kind"], e["detail"]["model_version"])
            for e in ws.endpoints.events("mm")
            if e["kind"].startswith("model-")
        ]
        return found if len(found) == 6 else []

    assert sorted(wait_until(events, what="load and eviction events")) == sorted(
        [
            ("model-load", "a@1"),
            ("model-load", "a@2"),
            ("model-load", "b@1"),
            ("model-evict", "a@1"),
            ("model-load", "a@1"),
            ("model-evict", "b@1"),
        ]
    )


def test_simultaneous_first_requests_share_one_load(
    replica: tuple[Workspace, TestClient],
) -> None:
    ws, client = replica
    barrier = threading.Barrier(6)
    answers: list[httpx.Response] = []

    def send() -> None:
        barrier.wait(5)
        answers.append(call(client, "b@1", ROWS_B))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [r.status_code for r in answers] == [200] * 6
    assert sum("x-wellml-model-loaded" in r.headers for r in answers) == 1
    expected = ws.registry.load("b@1").predict(pd.DataFrame(ROWS_B)).tolist()
    assert all(r.json()["predictions"] == expected for r in answers)
    loads = wait_until(
        lambda: [e for e in ws.endpoints.events("mm") if e["kind"] == "model-load"],
        what="the load event",
    )
    time.sleep(0.3)  # any second load would have been recorded by now
    assert len([e for e in ws.endpoints.events("mm") if e["kind"] == "model-load"]) == 1
    assert loads[0]["detail"]["model_version"] == "b@1"
    assert loads[0]["detail"]["bytes"] == size(ws, "b@1")


def test_bad_or_missing_targets_get_a_reason(replica: tuple[Workspace, TestClient]) -> None:
    _, client = replica
    cases = [
        (None, 400, "needs the target model"),
        ("", 400, "needs the target model"),
        ("a", 400, "names no version"),
        ("a@", 400, "nothing after '@'"),
        ("bad name@1", 400, "invalid target model"),
        ("nope@1", 404, "no registered model named 'nope'"),
        ("a@9", 404, "no version 9"),
        ("a@staging", 404, "no alias 'staging'"),
        ("c@1", 403, "c@1 is not served by this endpoint"),
        ("a@3", 403, "a@3 is pending; only approved versions are served"),
        ("a@4", 403, "a@4 is rejected"),
        ("big@1", 507, "more than the whole memory budget"),
    ]
    for target, status, reason in cases:
        r = call(client, target, ROWS_A)
        assert r.status_code == status, (target, r.text)
        assert reason in r.json()["error"], (target, r.json())
    # None of that loaded anything; a good request still works.
    ok = call(client, "a@1", ROWS_A)
    assert ok.status_code == 200 and ok.headers["x-wellml-models-loaded"] == "1"
    # Wrong inputs for the model named are the usual 422.
    assert call(client, "b@1", ROWS_A).status_code == 422


def test_a_version_rejected_after_loading_stops_being_served(
    replica: tuple[Workspace, TestClient],
) -> None:
    ws, client = replica
    assert call(client, "a@2", ROWS_A).status_code == 200
    ws.registry.reject("a@2", reason="found a bug", by="lead")
    time.sleep(5.2)  # resolutions are kept for five seconds
    r = call(client, "a@2", ROWS_A)
    assert r.status_code == 403 and "rejected" in r.json()["error"]
    assert call(client, "a@1", ROWS_A).headers["x-wellml-models-loaded"] == "1"


def test_capture_records_the_model_of_every_row(zoo: Workspace) -> None:
    ws = zoo
    create(ws, two_model_budget(ws))
    spec = ws.endpoints.get("mm").endpoint_config.variants[0].multi_model
    ws.registry.set_alias("a", "production", 2)
    app = build_replica(ws, "mm", "primary", ws.registry.get("a@1").id, multi_model=spec)
    with TestClient(app) as client:
        assert call(client, "a@1", ROWS_A[:2]).status_code == 200
        assert call(client, "b@1", ROWS_B[:3]).status_code == 200
        assert call(client, "a@production", ROWS_A[:1]).status_code == 200
        assert call(client, "c@1", ROWS_A).status_code == 403  # refused: not captured
    frames = [pd.read_parquet(f["uri"]) for f in ws.endpoints.capture_files("mm")]
    data = pd.concat(frames, ignore_index=True)
    assert data["model_version"].tolist() == ["a@1"] * 2 + ["b@1"] * 3 + ["a@2"]
    assert data["target_model"].tolist() == ["a@1"] * 2 + ["b@1"] * 3 + ["a@production"]
    b = data[data["model_version"] == "b@1"]
    assert b["n"].tolist() == [-3, -2, -1]  # the integer input is kept as integers
    assert data.loc[data["model_version"] != "b@1", "x"].notna().all()
    dv = ws.endpoints.capture_dataset("mm")
    assert dv is not None and dv.num_rows == 6


def test_a_single_model_endpoint_refuses_a_foreign_target(zoo: Workspace) -> None:
    ws = zoo
    ws.endpoints.deploy("a@1", name="one", port=1, auth=False)
    app = build_replica(ws, "one", "primary", ws.registry.get("a@1").id)
    with TestClient(app) as client:
        r = call(client, "b@1", ROWS_A)
        assert r.status_code == 400 and "not a multi-model endpoint" in r.json()["error"]
        assert call(client, "a@1", ROWS_A).status_code == 200  # naming its own model is fine
        assert call(client, None, ROWS_A).status_code == 200
        v2 = client.post(
            "/v2/models/one/infer",
            json={
                "inputs": [
                    {"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]},
                    {"name": "z", "shape": [1], "datatype": "FP64", "data": [0.0]},
                ]
            },
            headers={"x-wellml-target-model": "a@2"},
        )
        assert v2.status_code == 400


def test_open_inference_protocol_names_the_model_in_the_path(
    replica: tuple[Workspace, TestClient],
) -> None:
    ws, client = replica
    body = {
        "inputs": [
            {"name": "x", "shape": [2], "datatype": "FP64", "data": [1.0, -1.0]},
            {"name": "z", "shape": [2], "datatype": "FP64", "data": [0.0, 0.5]},
        ]
    }
    assert client.get("/v2/models/a/versions/2/ready").json() == {"name": "a", "ready": False}
    r = client.post("/v2/models/a/versions/2/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    expected = ws.registry.load("a@2").predict(pd.DataFrame({"x": [1.0, -1.0], "z": [0.0, 0.5]}))
    assert out["model_name"] == "a" and out["model_version"] == "a@2"
    assert out["outputs"][0]["data"] == expected.tolist()
    assert client.get("/v2/models/a/versions/2/ready").json()["ready"] is True
    meta = client.get("/v2/models/b/versions/1").json()
    assert [i["name"] for i in meta["inputs"]] == ["n", "w"] and meta["versions"] == ["1"]
    r = client.post("/v2/models/a/infer", json=body)
    assert r.status_code == 400 and "name the version" in r.json()["error"]
    r = client.post("/v2/models/a/infer", json=body, headers={"x-wellml-target-model": "a@1"})
    assert r.status_code == 200 and r.json()["model_version"] == "a@1"
    assert client.post("/v2/models/c/versions/1/infer", json=body).status_code == 403


# -- the cache itself -------------------------------------------------------------------------


def test_concurrent_first_requests_load_a_model_once() -> None:
    calls: list[str] = []
    gate = threading.Event()

    def load(key: str) -> Callable[[], str]:
        def run() -> str:
            calls.append(key)
            gate.wait(5)
            return key.upper()

        return run

    async def scenario() -> None:
        cache: LoadedModels[str] = LoadedModels(budget_bytes=100)
        tasks = [asyncio.create_task(cache.get("m@1", 10, load("m@1"))) for _ in range(8)]
        await asyncio.sleep(0.05)
        gate.set()
        got = await asyncio.gather(*tasks)
        assert [f.value for f in got] == ["M@1"] * 8
        assert sum(f.loaded for f in got) == 1  # one caller loaded it, seven waited for it
        assert cache.loads == 1 and cache.keys() == ["m@1"]

    asyncio.run(scenario())
    assert calls == ["m@1"]


def test_the_budget_holds_while_models_load_at_once() -> None:
    lock = threading.Lock()
    live = {"running": 0, "peak": 0}

    def load(n: int) -> Callable[[], str]:
        def run() -> str:
            with lock:
                live["running"] += 1
                live["peak"] = max(live["peak"], live["running"])
            time.sleep(0.05)
            with lock:
                live["running"] -= 1
            return str(n)

        return run

    async def scenario() -> None:
        cache: LoadedModels[str] = LoadedModels(budget_bytes=100)
        got = await asyncio.gather(*(cache.get(f"m@{n}", 40, load(n)) for n in range(5)))
        assert sorted(f.value for f in got) == ["0", "1", "2", "3", "4"]
        assert all(f.loaded for f in got)
        assert len(cache) == 2 and cache.loaded_bytes == 80
        assert cache.evictions == 3

    asyncio.run(scenario())
    # Two 40-byte models load side by side; a third never starts while they hold the room.
    assert live["peak"] == 2


def test_a_count_limit_evicts_like_the_budget() -> None:
    async def scenario() -> None:
        cache: LoadedModels[int] = LoadedModels(budget_bytes=10**9, max_models=2)
        for key in ("a", "b", "a", "c"):
            await cache.get(key, 1, lambda: 0)
        assert cache.keys() == ["a", "c"]  # b was the least recently used
        with pytest.raises(ModelTooLarge) as err:
            await cache.get("huge", 10**9 + 1, lambda: 0)
        assert err.value.status == 507 and cache.keys() == ["a", "c"]

        def broken() -> int:
            raise OSError("disk gone")

        with pytest.raises(OSError, match="disk gone"):
            await cache.get("d", 1, broken)
        # Room is made before loading: the failed load cost the least recently used model.
        assert cache.keys() == ["c"] and "d" not in cache
        assert (await cache.get("d", 1, lambda: 4)).value == 4  # a failed load can be retried

    asyncio.run(scenario())
    with pytest.raises(InvalidInput):
        LoadedModels(budget_bytes=0)


def test_capture_writer_keeps_each_requests_integer_columns(tmp_path: Path) -> None:
    writer = CaptureWriter(str(tmp_path), "ep", flush_seconds=60)
    try:
        writer.add(
            "r1",
            "b@1",
            (np.array([[2.0, 0.5]]), ["n", "w"]),
            {"prediction": [1]},
            target_model="b@1",
            integer_columns=("n",),
        )
        writer.add(
            "r2",
            "e@1",
            (np.array([[2.5, 0.5]]), ["n", "w"]),
            {"prediction": [0]},
            target_model="e@latest-good",
            integer_columns=(),
        )
        uri = writer.flush()
    finally:
        writer.close()
    assert uri is not None
    data = pd.read_parquet(uri)
    assert data["target_model"].tolist() == ["b@1", "e@latest-good"]
    assert data["n"].tolist() == [2.0, 2.5]  # r2's float n is not cut to an integer


# -- the CLI and a running endpoint ---------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    state._ws = None
    state.workspace = None
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_creates_a_multi_model_endpoint(
    zoo: Workspace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(zoo.root)
    base = ("endpoints", "create", "mm", "--port", "1")
    code, _, err = run_cli(capsys, *base, "--multi-model", "--models", "a")
    assert code != 0 and "--memory-budget" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, *base, "--models", "a", "--memory-budget", "1MiB")
    assert code != 0 and "go with --multi-model" in err
    code, _, err = run_cli(
        capsys, *base, "--multi-model", "--models", "a", "--memory-budget", "plenty"
    )
    assert code != 0 and "cannot read memory size 'plenty'" in err
    code, _, err = run_cli(
        capsys, *base, "--multi-model", "--models", "a@3", "--memory-budget", "1MiB"
    )
    assert code != 0 and "a@3 is pending" in err
    code, out, err = run_cli(
        capsys,
        *base,
        "--multi-model",
        "--models",
        "a,b@1",
        "--models",
        "big",
        "--memory-budget",
        "2MiB",
        "--max-models",
        "3",
        "--format",
        "json",
    )
    assert code == 0, err
    variant = json.loads(out)["config"]["variants"][0]
    assert variant["multi_model"] == {
        "models": ["a", "b@1", "big"],
        "memory_budget_bytes": 2 << 20,
        "max_models": 3,
    }
    monkeypatch.setattr(console, "width", 200)  # one line per row, whatever the terminal
    code, out, _ = run_cli(capsys, "endpoints", "list")
    assert code == 0 and "primary=multi-model[a,b@1,big]" in out
    code, out, _ = run_cli(capsys, "endpoints", "show", "mm")
    assert code == 0 and "multi-model[a,b@1,big]" in out


def test_a_running_multi_model_endpoint_routes_counts_and_reports(zoo: Workspace) -> None:
    ws = zoo
    create(ws, two_model_budget(ws))
    with ws.endpoints.start(name="mm", port=0) as running:
        out = ws.endpoints.invoke("mm", ROWS_B, target_model="b@1")
        assert out["predictions"] == ws.registry.load("b@1").predict(pd.DataFrame(ROWS_B)).tolist()
        r = httpx.post(
            running.url + "/invocations",
            json=ROWS_A,
            headers={"X-Amzn-SageMaker-Target-Model": "a@2"},
        )
        assert r.status_code == 200 and r.headers["x-wellml-model-version"] == "a@2"
        assert r.headers["x-amzn-invoked-production-variant"] == "primary"
        assert "x-wellml-model-loaded" in r.headers  # a cold start is visible to the caller
        with pytest.raises(InvalidInput, match="needs the target model"):
            ws.endpoints.invoke("mm", ROWS_A)
        with pytest.raises(PermissionDenied, match="not served by this endpoint"):
            ws.endpoints.invoke("mm", ROWS_A, target_model="c@1")
        with pytest.raises(NotFound, match="no version 7"):
            ws.endpoints.invoke("mm", ROWS_A, target_model="a@7")
        ws.endpoints.invoke("mm", ROWS_A, target_model="a@1")  # evicts b@1
        metrics = httpx.get(running.url + "/metrics").text
        for line in (
            'wellml_endpoint_model_loads_total{endpoint="mm",model_version="b@1",'
            'variant="primary"} 1.0',
            'wellml_endpoint_model_evictions_total{endpoint="mm",model_version="b@1",'
            'variant="primary"} 1.0',
            'wellml_endpoint_model_requests_total{endpoint="mm",model_version="a@2",'
            'status="200",variant="primary"} 1.0',
        ):
            assert line in metrics, line
        assert 'wellml_endpoint_models_loaded{endpoint="mm"' in metrics

        def loaded() -> Any:
            runtime = ws.endpoints.get("mm").runtime or {}
            replicas = runtime.get("variants", {}).get("primary", {}).get("replicas", [])
            return replicas and replicas[0].get("models_loaded") == 2

        wait_until(loaded, what="the runtime record to show two loaded models")
        # A new multi-model variant is smoke-tested on its first version, then takes over.
        dep = ws.endpoints.update(
            "mm",
            variants=[ProductionVariant.multi("only-a", ["a"], memory_budget="8MiB")],
            policy=DeploymentPolicy(strategy="all-at-once", bake_seconds=0, alarms=()),
        )
        assert dep["outcome"] == "completed", dep
        smoke = next(s for s in dep["steps"] if s["action"] == "smoke-test")
        assert smoke["variant"] == "only-a" and smoke["passed"] is True
        out = ws.endpoints.invoke("mm", ROWS_A, target_model="a@1")
        assert out["predictions"] == ws.registry.load("a@1").predict(pd.DataFrame(ROWS_A)).tolist()
        with pytest.raises(PermissionDenied, match="b@1 is not served"):
            ws.endpoints.invoke("mm", ROWS_B, target_model="b@1")
