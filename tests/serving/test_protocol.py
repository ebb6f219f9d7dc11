"""The replica app's protocols: hostile bodies, the numeric fast path, the Open Inference
Protocol (V2), out-of-distribution flags, model failures and the router's secret."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, StandardScaler

from wellml.data.profile import profile_table
from wellml.registry.signature import infer_signature
from wellml.serving.app import ServedModel, build_app
from wellml.serving.capture import CaptureWriter
from wellml.serving.ood import InputRanges
from wellml.serving.predictor import Predictor

COLS = ["a", "b", "n"]


@pytest.fixture(scope="module")
def training() -> pd.DataFrame:
    rng = np.random.default_rng(4)
    return pd.DataFrame(
        {"a": rng.normal(size=400), "b": rng.uniform(0, 10, 400), "n": rng.integers(0, 5, 400)}
    )


@pytest.fixture(scope="module")
def numeric(training: pd.DataFrame) -> ServedModel:
    y = (training["a"] + training["b"] / 5 > 1).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(training, y)
    sig = infer_signature(training, y, model=model)
    ranges = InputRanges.from_signature(sig, profile_table(training).to_dict())
    return ServedModel("ep", "m@1", model, sig, variant="blue", ranges=ranges)


@pytest.fixture
def client(numeric: ServedModel) -> TestClient:
    return TestClient(build_app(numeric))


def test_linear_pipelines_take_the_shortcut_with_the_same_answers(
    training: pd.DataFrame,
) -> None:
    y = (training["a"] > 0).astype(int)
    for model in (
        make_pipeline(StandardScaler(), LogisticRegression()),
        make_pipeline(MinMaxScaler(), LogisticRegression()),
        LogisticRegression(),
    ):
        model.fit(training, y)
        p = Predictor(model, infer_signature(training, y, model=model))
        assert p.compiled
        matrix = training.to_numpy(dtype=float)[:50]
        fast = p.predict_matrix(matrix)
        slow = p.predict_frame(training.head(50))
        assert fast.prediction == slow.prediction
        assert np.allclose(fast.probabilities, slow.probabilities)
    odd = make_pipeline(FunctionTransformer(np.abs), LogisticRegression()).fit(training, y)
    assert not Predictor(odd, infer_signature(training, y, model=odd)).compiled


@pytest.mark.parametrize(
    "body",
    [
        [{"a": 0.1, "b": 2.0, "n": 3}],
        [[0.1, 2.0, 3]],
        {"dataframe_split": {"columns": COLS, "data": [[0.1, 2.0, 3]]}},
        {"dataframe_split": {"columns": ["n", "b", "a"], "data": [[3, 2.0, 0.1]]}},
        {"dataframe_records": [{"a": 0.1, "b": 2.0, "n": 3, "extra": "x"}]},
        {"instances": [{"a": 0.1, "b": 2, "n": 3}]},
        {"inputs": {"a": [0.1], "b": [2.0], "n": [3]}},
        [{"a": "0.1", "b": 2.0, "n": 3}],  # a numeric string takes the general path
    ],
)
def test_every_json_form_gets_the_same_answer(client: TestClient, body: object) -> None:
    r = client.post("/invocations", json=body)
    assert r.status_code == 200, r.text
    reference = client.post("/invocations", json=[{"a": 0.1, "b": 2.0, "n": 3}]).json()
    assert r.json()["predictions"] == reference["predictions"]
    assert r.json()["probabilities"] == reference["probabilities"]


HOSTILE = [
    (b"[" * 100_000 + b"]" * 100_000, "application/json", 400),
    (b"{" * 50_000, "application/json", 400),
    (b"\xef\xbb\xbf[{}]", "application/json", 400),
    (b"null", "application/json", 400),
    (b"42", "application/json", 400),
    (b'"[]"', "application/json", 400),
    (b"[1, 2, 3]", "application/json", 400),
    (b"[{}, []]", "application/json", 400),
    # Infinity and NaN are refused by the JSON reader (orjson) or by the model (stdlib json).
    (b'[{"a": 1e999, "b": 1, "n": 1}]', "application/json", 0),
    (b'[{"a": NaN, "b": 1, "n": 1}]', "application/json", 0),
    (b'[{"a": 1, "b": 1, "n": 1.5}]', "application/json", 422),
    (b'[{"a": null, "b": 1, "n": 1}]', "application/json", 422),
    (b'[{"a": [1], "b": 1, "n": 1}]', "application/json", 400),
    (b'{"dataframe_split": {"columns": "abc", "data": [[1, 2, 3]]}}', "application/json", 400),
    (b'{"dataframe_split": {"columns": [1, 2, 3], "data": [[1, 2, 3]]}}', "application/json", 400),
    (
        b'{"dataframe_split": {"columns": ["a", "a", "n"], "data": [[1, 2, 3]]}}',
        "application/json",
        400,
    ),
    (b'{"dataframe_split": {"data": "x"}}', "application/json", 400),
    (b'{"dataframe_split": [1]}', "application/json", 400),
    (b'{"inputs": {"a": [1, 2], "b": [1], "n": [1]}}', "application/json", 400),
    (b'{"inputs": {"a": {"x": 1}, "b": [1], "n": [1]}}', "application/json", 400),
    (b'{"instances": 5}', "application/json", 400),
    (b'{"instances": [], "inputs": []}', "application/json", 400),
    (b"{}", "application/json", 400),
    (b'{"a": 1}\n{"a": ', "application/jsonlines", 400),
    (b"a,b,n\n1,2\n", "text/csv", 422),
    (b'a,b,n\n"1,2,3\n', "text/csv", 400),
    (b"a,a,n\n1,2,3\n", "text/csv", 400),
    (b"a,b,n\nx,y,z\n", "text/csv", 422),
    (b"\x00\x01\x02", "text/csv", 400),
    (b"[]", "application/x-www-form-urlencoded", 415),
    (b"[]", "", 415),
    (b"[]", "application/json; charset=utf-16", 415),
    (b"   ", "application/json", 400),
]


@pytest.mark.parametrize(("body", "ctype", "status"), HOSTILE)
def test_hostile_bodies_get_a_4xx_with_a_reason(
    client: TestClient, body: bytes, ctype: str, status: int
) -> None:
    r = client.post("/invocations", content=body, headers={"content-type": ctype})
    assert 400 <= r.status_code < 500, r.text
    assert r.status_code == status or not status, r.text
    assert r.json()["error"]


def test_a_model_that_fails_on_valid_rows_answers_500(training: pd.DataFrame) -> None:
    y = (training["a"] > 0).astype(int)
    broken = make_pipeline(FunctionTransformer(np.log), LogisticRegression()).fit(
        training.abs() + 1, y
    )
    served = ServedModel("ep", "m@2", broken, infer_signature(training, y, model=broken))
    client = TestClient(build_app(served))
    ok = client.post("/invocations", json=[{"a": 1.0, "b": 2.0, "n": 1}])
    assert ok.status_code == 200
    bad = client.post("/invocations", json=[{"a": -1.0, "b": 2.0, "n": 1}])
    assert bad.status_code == 500
    assert "the model failed" in bad.json()["error"]


def test_out_of_range_and_unseen_values_are_flagged_in_answer_and_capture(
    numeric: ServedModel, tmp_path: Path
) -> None:
    files: list[str] = []
    capture = CaptureWriter(
        str(tmp_path),
        "ep",
        flush_seconds=60,
        on_file=lambda uri, *_: files.append(uri),
        integer_columns=("n",),
    )
    with TestClient(build_app(numeric, capture=capture)) as client:
        r = client.post(
            "/invocations",
            json=[{"a": 0.0, "b": 5.0, "n": 2}, {"a": 0.0, "b": 50.0, "n": 99}],
        )
        assert r.status_code == 200
        assert r.json()["out_of_distribution"] == [{"row": 1, "columns": ["b", "n"]}]
        assert r.headers["x-wellml-ood-rows"] == "1"
        clean = client.post("/invocations", json=[{"a": 0.0, "b": 5.0, "n": 2}])
        assert "out_of_distribution" not in clean.json()
    data = pd.read_parquet(files[0])
    assert list(data["ood"]) == ["", "b,n", ""]
    assert list(data["variant"]) == ["blue"] * 3
    assert data["n"].dtype == np.int64  # integers stay integers on the fast path

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=50), "plan": rng.choice(["a", "b"], 50)})
    sig = infer_signature(X)
    flags = InputRanges.from_signature(sig).check_frame(
        pd.DataFrame({"x": [0.0, 1.0], "plan": ["a", "zzz"]})
    )
    assert flags == [(1, ["plan"])]


def test_v2_metadata_health_and_inference(client: TestClient, numeric: ServedModel) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2").json()["name"] == "wellml"
    meta = client.get("/v2/models/ep").json()
    assert meta["versions"] == ["1"]
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("a", "FP64"),
        ("b", "FP64"),
        ("n", "INT64"),
    ]
    assert client.get("/v2/models/ep/ready").json()["ready"] is True
    assert client.get("/v2/models/other").status_code == 404
    assert client.get("/v2/models/ep/versions/7").status_code == 404
    by_column = {
        "id": "req-1",
        "inputs": [
            {"name": "a", "shape": [2], "datatype": "FP64", "data": [0.1, -1.0]},
            {"name": "b", "shape": [2, 1], "datatype": "FP64", "data": [[2.0], [9.0]]},
            {"name": "n", "shape": [2], "datatype": "INT64", "data": [3, 1]},
        ],
    }
    r = client.post("/v2/models/ep/infer", json=by_column)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == "req-1" and out["model_name"] == "ep" and out["model_version"] == "m@1"
    predict = out["outputs"][0]
    reference = client.post(
        "/invocations", json=[{"a": 0.1, "b": 2.0, "n": 3}, {"a": -1.0, "b": 9.0, "n": 1}]
    ).json()
    assert predict["name"] == "predict" and predict["shape"] == [2]
    assert predict["data"] == reference["predictions"]
    proba = out["outputs"][1]
    assert proba["shape"] == [2, 2] and len(proba["data"]) == 4
    as_matrix = {
        "inputs": [
            {"name": "x", "shape": [2, 3], "datatype": "FP64", "data": [0.1, 2.0, 3, -1.0, 9.0, 1]}
        ]
    }
    r2 = client.post("/v2/models/ep/versions/1/infer", json=as_matrix)
    assert r2.status_code == 200 and r2.json()["outputs"][0]["data"] == predict["data"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"inputs": []},
        {"inputs": [{"name": "a", "shape": [1], "datatype": "FP64"}]},
        {"inputs": [{"name": "a", "shape": [2], "datatype": "FP64", "data": [1.0]}]},
        {"inputs": [{"name": "a", "shape": [1], "datatype": "FLOAT", "data": [1.0]}]},
        {"inputs": [{"name": "a", "shape": [-1], "datatype": "FP64", "data": [1.0]}]},
        {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]}]},
        {"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [{"v": 1}]}]},
        {
            "id": 5,
            "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}],
        },
        {"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1.0]}]},
    ],
)
def test_bad_v2_requests_get_a_4xx(client: TestClient, body: object) -> None:
    r = client.post("/v2/models/ep/infer", content=json.dumps(body))
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]


def test_replicas_answer_only_their_router(numeric: ServedModel) -> None:
    client = TestClient(build_app(numeric, internal_secret="s3cret"))
    assert client.get("/ping").status_code == 200
    row = [{"a": 0.1, "b": 2.0, "n": 3}]
    assert client.post("/invocations", json=row).status_code == 403
    ok = client.post("/invocations", json=row, headers={"x-wellml-internal": "s3cret"})
    assert ok.status_code == 200 and ok.headers["x-wellml-variant"] == "blue"
