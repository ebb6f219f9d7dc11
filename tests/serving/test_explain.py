"""Per-prediction explanations on request: the header's row filter, and SHAP values that add
up to each answered row's output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from wellml.serving.explain import (
    EndpointExplainer,
    ExplanationUnavailable,
    explanation_request,
)


def _data(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return pd.DataFrame(
        {"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": (2 * x[:, 0] + x[:, 1] > 0).astype(int)}
    )


def _outputs(model: object, rows: pd.DataFrame) -> dict[str, object]:
    proba = model.predict_proba(rows)  # type: ignore[attr-defined]
    return {
        "predictions": [int(p) for p in model.predict(rows)],  # type: ignore[attr-defined]
        "probabilities": proba.tolist(),
        "classes": [0, 1],
    }


def test_the_header_is_a_jmespath_row_filter() -> None:
    assert explanation_request({}) is None
    assert explanation_request({"x-wellml-enable-explanations": "  "}) is None
    every = explanation_request({"x-amzn-sagemaker-enable-explanations": "`true`"})
    assert every is not None and every({"prediction": 0})
    unsure = explanation_request({"x-wellml-enable-explanations": "probability < `0.7`"})
    assert unsure is not None
    assert unsure({"prediction": 1, "probability": 0.55})
    assert not unsure({"prediction": 1, "probability": 0.95})
    assert not unsure({"prediction": 3.2})  # a regressor's row has no probability
    with pytest.raises(ExplanationUnavailable, match="not a JMESPath expression") as err:
        explanation_request({"x-wellml-enable-explanations": "probability <"})
    assert err.value.status == 400


@pytest.mark.parametrize("kind", ["linear", "forest"])
def test_explanations_add_up_to_each_selected_rows_probability(kind: str) -> None:
    train = _data(600, 0)
    features = ["a", "b", "c"]
    model = (
        LogisticRegression()
        if kind == "linear"
        else RandomForestClassifier(n_estimators=20, max_depth=4, random_state=0)
    ).fit(train[features], train["y"])
    calls = []

    def training_data() -> pd.DataFrame:
        calls.append(1)
        return train

    explainer = EndpointExplainer(model, features, training_data, n_clusters=5, n_samples=64)
    rows = _data(8, 1)[features]
    outputs = _outputs(model, rows)
    wanted = explanation_request({"x-wellml-enable-explanations": "probability < `0.9`"})
    assert wanted is not None
    out = explainer.explain(rows, outputs, wanted)
    assert out["method"] == ("kernel" if kind == "linear" else "tree")
    assert out["label"] == "1" and out["baseline_rows"] == 5
    proba = model.predict_proba(rows)[:, 1]
    chosen = [i for i in range(8) if max(outputs["probabilities"][i]) < 0.9]  # type: ignore[index]
    assert chosen and len(chosen) < 8
    for i, entry in enumerate(out["kernel_shap"]):
        if i not in chosen:
            assert entry is None
            continue
        assert [e["feature_header"] for e in entry] == features
        total = out["expected_value"] + sum(e["attributions"][0]["attribution"][0] for e in entry)
        assert total == pytest.approx(proba[i], abs=1e-6)
    # The baseline is made once per replica.
    explainer.explain(rows, outputs, wanted)
    assert len(calls) == 1


def test_too_many_rows_or_no_baseline_data_are_refused() -> None:
    train = _data(300, 2)
    model = LogisticRegression().fit(train[["a", "b", "c"]], train["y"])
    rows = _data(12, 3)[["a", "b", "c"]]
    every = explanation_request({"x-wellml-enable-explanations": "`true`"})
    assert every is not None
    small = EndpointExplainer(model, ["a", "b", "c"], lambda: train, max_rows=10)
    with pytest.raises(ExplanationUnavailable, match="at most 10 per request") as err:
        small.explain(rows, _outputs(model, rows), every)
    assert err.value.status == 413
    lacking = EndpointExplainer(model, ["a", "b", "c"], lambda: train[["a", "b"]])
    with pytest.raises(ExplanationUnavailable, match="lacks the model's inputs") as err:
        lacking.explain(rows, _outputs(model, rows), every)
    assert err.value.status == 409
    none = explanation_request({"x-wellml-enable-explanations": "`false`"})
    assert none is not None
    quiet = EndpointExplainer(model, ["a", "b", "c"], lambda: train)
    out = quiet.explain(rows, _outputs(model, rows), none)
    assert out["kernel_shap"] == [None] * 12 and out["method"] is None


@pytest.fixture
def served(workspace):  # type: ignore[no-untyped-def]
    """``m@1`` (trained on ``train@1``, recorded in lineage) and ``bare@1`` (no training data
    in lineage), both approved."""
    train = _data(400, 4)
    dv = workspace.data.register("train", train)
    features = ["a", "b", "c"]
    model = LogisticRegression().fit(train[features], train["y"])
    with workspace.tracking.start_run("e") as run:
        run.log_input(dv, "train")
        workspace.registry.register("m", model, X=train[features], y=train["y"], run=run)
    workspace.registry.register("bare", model, X=train[features], y=train["y"])
    workspace.registry.approve("m@1")
    workspace.registry.approve("bare@1")
    return workspace


def test_a_running_endpoint_explains_the_rows_a_request_asks_for(served) -> None:  # type: ignore[no-untyped-def]
    from wellml.errors import InvalidInput

    rows = _data(6, 5)[["a", "b", "c"]]
    model = served.registry.load("m@1")
    proba = model.predict_proba(rows)
    with served.endpoints.start("m@1", name="ep"):
        token = served.endpoints.issue_token("ep", "app").secret
        plain = served.endpoints.invoke("ep", rows, token=token)
        assert "explanations" not in plain
        out = served.endpoints.invoke("ep", rows, token=token, explain="`true`")
        assert out["predictions"] == plain["predictions"]
        explanations = out["explanations"]
        assert explanations["label"] == "1" and explanations["baseline_rows"] >= 1
        for i, entry in enumerate(explanations["kernel_shap"]):
            total = explanations["expected_value"] + sum(
                e["attributions"][0]["attribution"][0] for e in entry
            )
            assert total == pytest.approx(proba[i, 1], abs=1e-6)
        unsure = served.endpoints.invoke("ep", rows, token=token, explain="probability < `0.75`")[
            "explanations"
        ]["kernel_shap"]
        assert [e is not None for e in unsure] == list(proba.max(axis=1) < 0.75)
        with pytest.raises(InvalidInput, match=r"400.*not a JMESPath expression"):
            served.endpoints.invoke("ep", rows, token=token, explain="probability <")
    with served.endpoints.start("bare@1", name="bare"):
        token = served.endpoints.issue_token("bare", "app").secret
        with pytest.raises(InvalidInput, match=r"409.*no training data"):
            served.endpoints.invoke("bare", rows, token=token, explain="`true`")
        assert served.endpoints.invoke("bare", rows, token=token)["predictions"]
