"""The endpoint app: every protocol it accepts, and a 4xx with a reason for bad requests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression

from wellml.errors import PermissionDenied, Unauthenticated
from wellml.registry.signature import infer_signature
from wellml.serving.app import ServedModel, build_app
from wellml.serving.capture import CaptureWriter


@pytest.fixture
def served() -> ServedModel:
    rng = np.random.default_rng(1)
    X = pd.DataFrame(
        {
            "age": rng.integers(18, 80, 300),
            "income": rng.normal(50, 10, 300),
            "plan": rng.choice(["a", "b"], 300),
        }
    )
    y = (X["income"] > 50).astype(int)
    model = LogisticRegression().fit(X[["age", "income"]], y)

    class Wrapped:
        """Uses only the numeric columns, like a pipeline that drops one."""

        classes_ = model.classes_

        def predict(self, frame: pd.DataFrame) -> np.ndarray:
            return model.predict(frame[["age", "income"]])

        def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
            return model.predict_proba(frame[["age", "income"]])

    return ServedModel("ep", "m@1", Wrapped(), infer_signature(X, y, model=model))


@pytest.fixture
def client(served: ServedModel) -> TestClient:
    return TestClient(build_app(served))


ROW = {"age": 30, "income": 60.0, "plan": "a"}


def test_ping_is_an_empty_200(client: TestClient) -> None:
    r = client.get("/ping")
    assert r.status_code == 200 and r.content == b""


@pytest.mark.parametrize(
    "body",
    [
        [ROW, ROW],
        {"dataframe_records": [ROW, ROW]},
        {"dataframe_split": {"columns": ["age", "income", "plan"], "data": [[30, 60.0, "a"]] * 2}},
        {"instances": [ROW, ROW]},
        {"instances": [[30, 60.0, "a"], [30, 60.0, "a"]]},
        {"inputs": {"age": [30, 30], "income": [60.0, 60.0], "plan": ["a", "a"]}},
    ],
)
def test_json_forms_all_predict(client: TestClient, body: object) -> None:
    r = client.post("/invocations", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["predictions"] == [1, 1]
    assert out["classes"] == [0, 1] and len(out["probabilities"]) == 2
    assert r.headers["x-wellml-model-version"] == "m@1"


def test_csv_with_and_without_header(client: TestClient) -> None:
    for body in ("age,income,plan\n30,60.0,a\n40,40.0,b\n", "30,60.0,a\n40,40.0,b\n"):
        r = client.post("/invocations", content=body, headers={"content-type": "text/csv"})
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == [1, 0]


@pytest.mark.parametrize(
    ("body", "ctype", "status", "reason"),
    [
        (b"{not json", "application/json", 400, "malformed JSON"),
        (b"", "application/json", 400, "empty request body"),
        (b"[]", "application/json", 400, "no rows"),
        (b'"a string"', "application/json", 400, "list of records"),
        (b'{"instances": [], "inputs": []}', "application/json", 400, "exactly one"),
        (b'[{"age": 30}]', "application/json", 422, "missing input column"),
        (
            b'[{"age": "old", "income": 1, "plan": "a"}]',
            "application/json",
            422,
            "expected integer",
        ),
        (b'[{"age": {"x": 1}, "income": 1, "plan": "a"}]', "application/json", 400, "scalars"),
        (b"[[1, 2]]", "application/json", 400, "3 values"),
        (b"age,income\n1,2\n", "text/csv", 422, "missing input column"),
        (b"1,2\n", "text/csv", 400, "fields"),
        (b"<xml/>", "application/xml", 415, "unsupported content type"),
        (b"[]", "application/json; charset=latin-1", 415, "charset"),
        (b"\xff\xfe", "application/json", 400, "malformed JSON"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_reason(
    client: TestClient, body: bytes, ctype: str, status: int, reason: str
) -> None:
    r = client.post("/invocations", content=body, headers={"content-type": ctype})
    assert r.status_code == status, r.text
    assert reason in r.json()["error"]


def test_oversized_payloads_are_refused(served: ServedModel) -> None:
    client = TestClient(build_app(served, max_payload_bytes=100))
    r = client.post("/invocations", json=[ROW] * 10)
    assert r.status_code == 413


def test_tokens_are_required_when_auth_is_on(served: ServedModel) -> None:
    def authenticate(token: str | None) -> None:
        if token is None:
            raise Unauthenticated("a token is required")
        if token != "good":
            raise PermissionDenied("the token's scopes do not include invoke:ep")

    client = TestClient(build_app(served, authenticate=authenticate))
    assert client.post("/invocations", json=[ROW]).status_code == 401
    bad = client.post("/invocations", json=[ROW], headers={"authorization": "Bearer nope"})
    assert bad.status_code == 403
    ok = client.post("/invocations", json=[ROW], headers={"authorization": "Bearer good"})
    assert ok.status_code == 200
    assert client.get("/ping").status_code == 200  # health needs no token


def test_capture_records_inputs_outputs_and_inference_ids(
    served: ServedModel, tmp_path: Path
) -> None:
    files: list[tuple[str, int]] = []
    capture = CaptureWriter(
        str(tmp_path / "cap"),
        "ep",
        flush_seconds=60,
        on_file=lambda uri, rows, t0, t1: files.append((uri, rows)),
    )
    with TestClient(build_app(served, capture=capture)) as client:
        client.post("/invocations", json=[ROW, ROW], headers={"x-wellml-inference-id": "abc"})
        client.post("/invocations", json=[{"age": 1}])  # rejected: not captured
    assert [rows for _, rows in files] == [2]  # flushed when the app shut down
    data = pd.read_parquet(files[0][0])
    assert list(data["inference_id"]) == ["abc", "abc"]
    assert {"age", "income", "plan", "prediction", "probability", "model_version"} <= set(
        data.columns
    )


def test_capture_sampling_keeps_about_the_requested_share(tmp_path: Path) -> None:
    capture = CaptureWriter(str(tmp_path), "ep", sampling_percent=20, seed=3, flush_seconds=60)
    kept = sum(capture.sampled() for _ in range(5000))
    capture.close()
    assert 900 < kept < 1100
