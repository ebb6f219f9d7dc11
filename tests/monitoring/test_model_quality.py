"""Model quality: metrics equal scikit-learn's, ground truth joins captured inferences, and a
model that got worse is a violation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from tests.monitoring.conftest import capture, customers
from wellml.errors import InvalidInput, NotFound
from wellml.monitoring.model_quality import (
    ModelQualityCheck,
    baseline_metric_names,
    quality_metrics,
)
from wellml.workspace import Workspace


def test_binary_metrics_equal_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    scores = np.clip(y * 0.3 + rng.random(500) * 0.7, 0, 1).round(2)  # ties on purpose
    pred = (scores > 0.5).astype(int)

    got = quality_metrics(y, pred, problem_type="BinaryClassification", scores=scores)

    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert got["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert got["auc"] == pytest.approx(skm.roc_auc_score(y, scores))
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, scores), rel=1e-9)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    assert got["confusion_matrix"] == {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
    assert got["false_positive_rate"] == pytest.approx(fp / (fp + tn))
    assert got["n"] == 500


def test_binary_metrics_with_string_labels_and_a_named_positive_label() -> None:
    y = np.array(["yes", "no", "yes", "yes", "no", "no"])
    pred = np.array(["yes", "yes", "no", "yes", "no", "no"])
    got = quality_metrics(y, pred, problem_type="BinaryClassification", positive_label="yes")
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred, pos_label="yes"))
    assert got["recall"] == pytest.approx(skm.recall_score(y, pred, pos_label="yes"))
    # No positive prediction at all: precision 0, as zero_division=0.
    none = quality_metrics([1, 0], [0, 0], problem_type="BinaryClassification")
    assert none["precision"] == skm.precision_score([1, 0], [0, 0], zero_division=0)


def test_multiclass_weighted_metrics_equal_scikit_learn() -> None:
    rng = np.random.default_rng(1)
    y = rng.choice(["a", "b", "c"], 300, p=[0.5, 0.3, 0.2])
    pred = np.where(rng.random(300) < 0.7, y, rng.choice(["a", "b", "c"], 300))
    got = quality_metrics(y, pred, problem_type="MulticlassClassification")
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    for ours, avg_fn in (
        ("weighted_precision", skm.precision_score),
        ("weighted_recall", skm.recall_score),
        ("weighted_f1", skm.f1_score),
    ):
        assert got[ours] == pytest.approx(avg_fn(y, pred, average="weighted", zero_division=0))


def test_regression_metrics_equal_scikit_learn() -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(10, 3, 400)
    pred = y + rng.normal(0.5, 1, 400)
    got = quality_metrics(y, pred, problem_type="Regression")
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert got["mse"] == pytest.approx(skm.mean_squared_error(y, pred))
    assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)))
    assert got["r2"] == pytest.approx(skm.r2_score(y, pred))


def test_bad_input_is_refused() -> None:
    with pytest.raises(InvalidInput, match="problem_type"):
        quality_metrics([1], [1], problem_type="Ranking")
    with pytest.raises(InvalidInput, match="2 labels but 1"):
        quality_metrics([1, 0], [1], problem_type="BinaryClassification")
    with pytest.raises(InvalidInput, match="probabilities"):
        quality_metrics([1, 0], [1, 0], problem_type="BinaryClassification", scores=[1.5, 0])


def test_degradation_beyond_tolerance_is_a_violation_each_way() -> None:
    check = ModelQualityCheck(problem_type="Regression", tolerances={"mae": 0.2})
    y = np.arange(100.0)
    ok = check.compute(y, y + 1.1, baseline={"mae": 1.0, "r2": 0.9})
    assert ok.violations == []
    worse = check.compute(y, y + 1.3, baseline={"mae": 1.0, "r2": 0.9})
    assert [v["metric_name"] for v in worse.violations] == ["mae"]
    cls = ModelQualityCheck(problem_type="BinaryClassification")
    low = cls.compute([1, 1, 0, 0], [1, 0, 0, 1], baseline={"accuracy": 0.9})
    assert [v["metric_name"] for v in low.violations] == ["accuracy"]
    assert low.violations[0]["constraint_check_type"] == "model_quality_check"


def test_logged_metric_names_map_to_model_monitor_names() -> None:
    assert baseline_metric_names(
        {"val_roc_auc": 0.9, "val_accuracy": 0.8, "f1_score": 0.7, "note": "x", "ok": True}
    ) == {"auc": 0.9, "accuracy": 0.8, "f1": 0.7}


def test_ground_truth_joins_captured_rows_by_inference_id_and_row(served: Workspace) -> None:
    traffic = customers(60, 5)
    ids = capture(served, traffic, ids=[f"r{i}" for i in range(20)], batch=3)
    truth = pd.DataFrame(
        {"inference_id": ids, "row": [i % 3 for i in range(60)], "label": traffic["y"]}
    )
    truth = pd.concat([truth, pd.DataFrame({"inference_id": ["zz"], "row": [0], "label": [1]})])
    got = served.monitoring.ingest_ground_truth("ep", truth)
    assert (got.rows, got.matched, got.unmatched) == (61, 60, 1)
    assert got.unmatched_examples == ["zz"] and got.dataset_ref == "ep-ground-truth@1"

    with pytest.raises(InvalidInput, match="has 3 captured rows"):
        served.monitoring.ingest_ground_truth("ep", truth.drop(columns=["row"]))
    with pytest.raises(InvalidInput, match="labelled twice"):
        served.monitoring.ingest_ground_truth("ep", pd.concat([truth, truth.head(1)]))
    with pytest.raises(InvalidInput, match="lacks column"):
        served.monitoring.ingest_ground_truth("ep", truth.drop(columns=["label"]))


def test_model_quality_monitor_measures_labelled_traffic_like_scikit_learn(
    served: Workspace,
) -> None:
    mon = served.monitoring.create_monitor("ep", kind="model_quality")
    assert mon["config"]["baseline_metrics"] == {"accuracy": 0.85, "auc": 0.93}
    with pytest.raises(NotFound, match="no ground truth"):
        served.monitoring.run_monitor("ep-model-quality")

    traffic = customers(400, 6)
    ids = capture(served, traffic)
    served.monitoring.ingest_ground_truth(
        "ep", pd.DataFrame({"inference_id": ids, "label": traffic["y"]})
    )
    result = served.monitoring.run_monitor("ep-model-quality")
    model = served.registry.load("m@1")
    pred = model.predict(traffic[["x", "plan"]])
    score = model.predict_proba(traffic[["x", "plan"]])[:, 1]
    got = result.report["metrics"]
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(traffic["y"], pred))
    assert got["f1"] == pytest.approx(skm.f1_score(traffic["y"], pred))
    assert got["auc"] == pytest.approx(skm.roc_auc_score(traffic["y"], score), abs=1e-4)
    assert result.status == "completed" and result.dataset_ref == "ep-labelled@1"
    with pytest.raises(NotFound, match="no new"):
        served.monitoring.run_monitor("ep-model-quality")

    # The world changed: the same inputs now carry the opposite labels.
    later = customers(400, 7)
    ids = capture(served, later)
    served.monitoring.ingest_ground_truth(
        "ep", pd.DataFrame({"inference_id": ids, "label": 1 - later["y"]})
    )
    worse = served.monitoring.run_monitor("ep-model-quality")
    assert worse.status == "completed-with-violations"
    assert {v["metric_name"] for v in worse.violations} >= {"accuracy", "auc"}
    assert worse.alerts and worse.alerts[0]["severity"] == "critical"
    up = served.lineage.upstream(f"monitor-report:{worse.id}")
    assert {"dataset:ep-ground-truth@2", "dataset:ep-labelled@2", "endpoint:ep"} <= up.refs()


def test_model_quality_of_a_dataset_with_a_baseline_dataset(workspace: Workspace) -> None:
    rng = np.random.default_rng(8)
    y = rng.integers(0, 2, 300)
    good = pd.DataFrame({"y": y, "yhat": np.where(rng.random(300) < 0.9, y, 1 - y)})
    workspace.data.register("scored-validation", good)
    workspace.data.register("scored", good)
    workspace.monitoring.create_monitor(
        dataset="scored",
        kind="model_quality",
        options={"label": "y", "prediction": "yhat", "baseline_dataset": "scored-validation"},
        thresholds={"accuracy": 0.02},
    )
    assert workspace.monitoring.run_monitor("scored-model-quality").violations == []
    bad = good.assign(yhat=np.where(rng.random(300) < 0.7, y, 1 - y))
    workspace.data.register("scored", bad)
    result = workspace.monitoring.run_monitor("scored-model-quality")
    assert "accuracy" in {v["metric_name"] for v in result.violations}
