"""The workspace's Clarify service: stored reports, lineage, HTML pages and the CLI."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from wellml.clarify import BiasInputError, ExplainInputError, Threshold, render_html
from wellml.cli.app import main
from wellml.cli.context import state
from wellml.errors import InvalidInput, NotFound, SchemaMismatch
from wellml.workspace import Workspace

FEATURES = ["usage", "tenure", "sex", "plan"]


def _data(n: int = 240, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "usage": rng.normal(size=n),
            "tenure": rng.integers(1, 60, size=n),
            "sex": rng.choice(["F", "M"], size=n),
            "plan": rng.choice(["basic", "gold"], size=n),
        }
    )
    score = 1.5 * df["usage"] - 0.8 * (df["sex"] == "F") + rng.normal(scale=0.4, size=n)
    df["churn"] = (score > 0).astype(int)
    return df


def _model(df: pd.DataFrame) -> Pipeline:
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["usage", "tenure"]),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["sex", "plan"]),
        ]
    )
    model = Pipeline(
        [("prepare", pre), ("model", RandomForestClassifier(n_estimators=20, random_state=0))]
    )
    return model.fit(df[FEATURES], df["churn"])


@pytest.fixture
def ws(workspace: Workspace) -> Workspace:
    """A workspace with dataset ``churn@1`` and model ``churn-model@1`` trained on it."""
    df = _data()
    dv = workspace.data.register("churn", df)
    workspace.registry.register("churn-model", _model(df), X=df[FEATURES], training_data=[dv])
    return workspace


# --------------------------------------------------------------------------------------------
# Explanations


def test_explain_stores_a_content_addressed_report_and_records_lineage(ws: Workspace) -> None:
    report = ws.clarify.explain("churn-model@1", "churn@1", rows=30, partial_dependence=1)
    info = report.info
    assert info.kinds == ("global_shap", "local_shap")
    assert (info.model, info.dataset, info.subject) == (
        "churn-model@1",
        "churn@1",
        "model:churn-model@1",
    )
    stored = ws.artifacts.get_bytes(info.digest)
    assert hashlib.sha256(stored).hexdigest() == info.digest
    assert json.loads(stored) == report.document
    assert report.document["analysis"]["explanations"]["kernel_shap"]["1"]["global_shap_values"]
    assert report.document["parameters"]["rows"] == 30
    assert len(report.document["local_shap"]["shap_values"]) == 30
    assert [p["feature"] for p in report.document["partial_dependence"]] == [
        next(iter(info.summary["global_shap_values"]))
    ]

    graph = ws.lineage.upstream(info.ref, depth=2)
    (run,) = graph.by_kind("clarify_explain")
    roles = {(e.source, e.role) for e in graph.edges if e.target == run.id}
    model_node = ws.lineage.node("model:churn-model@1")
    data_node = ws.lineage.node("dataset:churn@1")
    assert roles == {(model_node.id, "model"), (data_node.id, "data")}
    assert ws.lineage.node(info.ref).kind == "clarify_report"

    assert [i.id for i in ws.clarify.reports(model="churn-model@1")] == [report.id]
    again = ws.clarify.get_report(info.ref)
    assert again.document == report.document and again.info == info


def test_explained_model_uses_its_signature_columns_and_ranks_usage_first(ws: Workspace) -> None:
    report = ws.clarify.explain("churn-model", "churn@1", rows=40, partial_dependence=0)
    local = report.document["local_shap"]
    assert local["features"] == FEATURES
    assert local["method"] == "tree"
    assert next(iter(report.info.summary["global_shap_values"])) == "usage"
    assert report.document["partial_dependence"] == []
    rows = np.asarray(local["shap_values"])
    total = local["expected_value"] + rows.sum(axis=1)
    np.testing.assert_allclose(total, local["predicted_values"], atol=1e-6)


# --------------------------------------------------------------------------------------------
# Bias


def test_bias_with_a_model_records_pre_and_post_training_metrics(ws: Workspace) -> None:
    report = ws.clarify.bias(
        "churn@1",
        label="churn",
        label_values_or_threshold=1,
        facet="sex",
        facet_values_or_threshold="F",
        model="churn-model@1",
        group_variable="plan",
    )
    assert report.info.kinds == ("pre_training_bias", "post_training_bias")
    assert report.info.subject == "model:churn-model@1"
    metrics = report.info.summary["metrics"]
    # Women churn less in the data and in the predictions: d = F gets fewer positives.
    assert metrics["pre_training"]["F"]["DPL"] > 0.1
    assert metrics["post_training"]["F"]["DPPL"] > 0.1
    analysis = report.document["analysis"]
    assert set(analysis) == {"pre_training_bias_metrics", "post_training_bias_metrics"}
    assert analysis["post_training_bias_metrics"]["facets"]["sex"][0]["value_or_threshold"] == "F"
    graph = ws.lineage.upstream(report.info.ref, depth=2)
    assert {"model:churn-model@1", "dataset:churn@1"} <= graph.refs()
    assert graph.by_kind("clarify_bias")


def test_dataset_only_bias_is_listed_for_the_dataset_not_the_model(ws: Workspace) -> None:
    data_report = ws.clarify.bias(
        "churn@1",
        label="churn",
        label_values_or_threshold=1,
        facet="tenure",
        facet_values_or_threshold=Threshold(40),
    )
    model_report = ws.clarify.explain("churn-model@1", "churn@1", rows=10, partial_dependence=0)
    assert data_report.info.subject == "dataset:churn@1"
    assert data_report.info.kinds == ("pre_training_bias",)
    assert data_report.info.summary["metrics"]["pre_training"].keys() == {"(40, 59]"}
    assert [i.id for i in ws.clarify.reports(model="churn-model@1")] == [model_report.id]
    assert {i.id for i in ws.clarify.reports()} == {data_report.id, model_report.id}
    listed = ws.clarify.reports(dataset="churn@1")
    assert [i.id for i in listed] == [model_report.id, data_report.id]


# --------------------------------------------------------------------------------------------
# HTML pages


def test_html_pages_are_written_next_to_their_json_with_the_chart_data(
    ws: Workspace, tmp_path: Path
) -> None:
    explained = ws.clarify.explain(
        "churn-model@1", "churn@1", rows=20, partial_dependence=["plan"], html=tmp_path / "e.html"
    )
    page = (tmp_path / "e.html").read_text(encoding="utf-8")
    assert explained.html_path == str(tmp_path / "e.html")
    assert json.loads((tmp_path / "e.json").read_text()) == explained.document
    for needle in ("Plotly.newPlot", "Mean |SHAP value|", "Partial dependence on plan", "usage"):
        assert needle in page
    top = next(iter(explained.info.summary["global_shap_values"].values()))
    assert json.dumps(top)[:8] in page  # the bar chart's data, not a picture of it
    # plotly.js is inlined: nothing is loaded from elsewhere.
    assert re.search(r"<script[^>]*\bsrc=", page) is None and len(page) > 1_000_000

    bias = ws.clarify.bias(
        "churn@1",
        label="churn",
        label_values_or_threshold=1,
        facet="sex",
        facet_values_or_threshold="F",
    )
    html_path, json_path = ws.clarify.write_html(bias.id, tmp_path / "out" / "bias.html")
    text = html_path.read_text(encoding="utf-8")
    assert json_path == tmp_path / "out" / "bias.json"
    assert "Class Imbalance (CI)" in text and '"DPL"' in text and "sex = F" in text


def test_render_html_refuses_a_document_that_is_not_a_report() -> None:
    with pytest.raises(InvalidInput, match="not a clarify report"):
        render_html({"type": "something"})


# --------------------------------------------------------------------------------------------
# Refused input


def test_bad_inputs_give_clear_errors_and_record_nothing(ws: Workspace, tmp_path: Path) -> None:
    with pytest.raises(BiasInputError, match="'nope' is not in the data"):
        ws.clarify.bias("churn@1", label="churn", label_values_or_threshold=1, facet="nope")
    with pytest.raises(BiasInputError, match="numeric threshold cannot apply"):
        ws.clarify.bias(
            "churn@1",
            label="churn",
            label_values_or_threshold=1,
            facet="sex",
            facet_values_or_threshold=Threshold(3),
        )
    with pytest.raises(ExplainInputError, match="'nope' is not one of the model's columns"):
        ws.clarify.explain("churn-model@1", "churn@1", rows=10, partial_dependence=["nope"])
    with pytest.raises(NotFound):
        ws.clarify.explain("churn-model@1", "missing@1")
    with pytest.raises(NotFound, match="no clarify report"):
        ws.clarify.get_report("0" * 32)
    assert ws.clarify.reports() == []

    df = _data()
    ws.data.register("no-usage", df.drop(columns="usage"))
    with pytest.raises(SchemaMismatch, match="lacks column"):
        ws.clarify.explain("churn-model@1", "no-usage@1")
    ws.data.register("texty", df.assign(usage="high"))
    with pytest.raises(SchemaMismatch, match="cannot predict on dataset texty@1"):
        ws.clarify.explain("churn-model@1", "texty@1")
    with pytest.raises(SchemaMismatch, match="cannot predict"):
        ws.clarify.bias(
            "texty@1",
            label="churn",
            label_values_or_threshold=1,
            facet="sex",
            facet_values_or_threshold="F",
            model="churn-model@1",
        )
    ws.data.register("empty", df.iloc[:0])
    with pytest.raises(InvalidInput, match="no rows"):
        ws.clarify.explain("churn-model@1", "empty@1")
    with pytest.raises(BiasInputError, match="no rows"):
        ws.clarify.bias("empty@1", label="churn", label_values_or_threshold=1, facet="sex")
    assert ws.clarify.reports() == []

    with pytest.raises(InvalidInput, match="rows must be a positive"):
        ws.clarify.explain("churn-model@1", "churn@1", rows=0)
    with pytest.raises(InvalidInput, match="is a folder"):
        ws.clarify.explain("churn-model@1", "churn@1", rows=5, html=tmp_path)
    assert ws.clarify.reports() == []
    report = ws.clarify.explain("churn-model@1", "churn@1", rows=5, partial_dependence=0)
    with pytest.raises(InvalidInput, match="is a folder"):
        ws.clarify.write_html(report, tmp_path)


# --------------------------------------------------------------------------------------------
# The CLI


@pytest.fixture
def _fresh_cli_state() -> None:
    state.workspace = None
    state.debug = False
    state._ws = None


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    state._ws = None
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.usefixtures("_fresh_cli_state")
def test_cli_round_trip_with_json_output(
    ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(ws.root)
    code, out, err = _run(
        capsys, "-w", root, "clarify", "explain", "churn-model@1", "churn@1",
        "--rows", "15", "--pd", "plan", "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    explained = json.loads(out)
    assert explained["kinds"] == ["global_shap", "local_shap"]
    assert explained["document"]["partial_dependence"][0]["feature"] == "plan"

    code, out, err = _run(
        capsys, "-w", root, "clarify", "bias", "churn@1", "--label", "churn",
        "--label-value", "1", "--facet", "sex", "--facet-value", "F",
        "--model", "churn-model@1", "--html", str(tmp_path / "b.html"), "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    bias = json.loads(out)
    assert bias["kinds"] == ["pre_training_bias", "post_training_bias"]
    assert bias["html"] == str(tmp_path / "b.html") and (tmp_path / "b.json").is_file()

    code, out, _ = _run(capsys, "-w", root, "clarify", "report", explained["id"], "-f", "json")
    assert code == 0 and json.loads(out)["document"] == explained["document"]
    code, out, _ = _run(capsys, "-w", root, "clarify", "list", "--format", "json")
    assert {r["id"] for r in json.loads(out)} == {explained["id"], bias["id"]}

    code, out, _ = _run(capsys, "-w", root, "clarify", "report", bias["id"])
    assert code == 0 and "DPPL" in out
    code, out, _ = _run(capsys, "-w", root, "clarify", "report", explained["id"])
    assert code == 0 and "usage" in out and "mean |SHAP|" in out


@pytest.mark.usefixtures("_fresh_cli_state")
def test_cli_errors_are_one_line(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(ws.root)
    code, _, err = _run(
        capsys, "-w", root, "clarify", "bias", "churn@1", "--label", "churn",
        "--label-value", "1", "--facet", "sex", "--facet-threshold", "3",
    )  # fmt: skip
    assert code == 1 and "numeric threshold cannot apply" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, _, err = _run(
        capsys, "-w", root, "clarify", "bias", "churn@1", "--label", "churn", "--facet", "sex"
    )
    assert code == 1 and "--label-value" in err
    code, _, err = _run(capsys, "-w", root, "clarify", "explain", "churn-model@1", "nope@1")
    assert code == 1 and "nope" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run(capsys, "-w", root, "clarify", "report", "abc")
    assert code == 1 and "no clarify report" in err
