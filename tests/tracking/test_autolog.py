"""Autologging: params, training and validation metrics, learning curves and the model."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from wellml.registry.packaging import load_model
from wellml.tracking.autolog import autolog, evaluation_metrics
from wellml.workspace import Workspace


def _data(n: int = 300) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    return X, (X["a"] + 0.5 * rng.normal(size=n) > 0).astype(int)


def test_top_level_fit_logs_params_metrics_and_model(workspace: Workspace) -> None:
    X, y = _data()
    with workspace.tracking.start_run("auto") as run:
        with autolog(run, eval_set=(X.tail(100), y.tail(100))):
            model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5)).fit(
                X.head(200), y.head(200)
            )
    rec = workspace.tracking.get_run(run.id)
    assert rec.params["logisticregression__C"] == "0.5"
    assert rec.tags["estimator"] == "Pipeline"
    for key in (
        "training_accuracy",
        "training_roc_auc",
        "val_accuracy",
        "val_f1",
        "val_roc_auc",
        "val_log_loss",
    ):
        assert key in rec.metrics, key
    expected = evaluation_metrics(model, X.tail(100), y.tail(100))["roc_auc"]
    assert rec.metrics["val_roc_auc"] == expected
    stored = workspace.artifacts.get_bytes(rec.artifacts["model.skops"]["digest"])
    np.testing.assert_array_equal(load_model(stored).predict(X), model.predict(X))


def test_inner_fits_are_not_logged_and_patching_is_undone(workspace: Workspace) -> None:
    X, y = _data()
    original = LogisticRegression.fit
    with workspace.tracking.start_run("auto") as run, autolog(run, log_model=False):
        make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    assert LogisticRegression.fit is original
    rec = workspace.tracking.get_run(run.id)
    assert rec.tags["estimator"] == "Pipeline" and rec.artifacts == {}


def test_staged_models_get_a_learning_curve(workspace: Workspace) -> None:
    X, y = _data()
    with workspace.tracking.start_run("auto") as run:
        with autolog(run, eval_set=(X, y), log_model=False):
            HistGradientBoostingClassifier(max_iter=30, early_stopping=False).fit(X, y)
    curve = workspace.tracking.metric_history(run.id, "val_loss")
    assert [p["step"] for p in curve] == list(range(1, 31))
    assert curve[-1]["value"] < curve[0]["value"]


def test_regressors_get_regression_metrics() -> None:
    X, _ = _data()
    y = 2 * X["a"] + 1
    m = evaluation_metrics(LinearRegression().fit(X, y), X, y)
    assert set(m) == {"mae", "rmse", "r2"} and m["r2"] > 0.999
