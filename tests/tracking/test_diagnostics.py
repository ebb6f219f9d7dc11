"""Diagnostics rules flag overfitting, no gain over a dummy, class imbalance and constant
features; autolog records them with the learning curves a model exposes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier
from sklearn.tree import DecisionTreeClassifier

from wellml.tracking.autolog import autolog
from wellml.tracking.diagnostics import diagnose, learning_curves
from wellml.workspace import Workspace


def _separable(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    return X, (X["a"] + 0.3 * rng.normal(size=n) > 0).astype(int)


def test_a_good_model_on_clean_data_raises_no_flag() -> None:
    X, y = _separable()
    model = LogisticRegression().fit(X[:300], y[:300])
    diag = diagnose(model, X[:300], y[:300], eval_set=(X[300:], y[300:]))
    assert diag.flags == []
    assert set(diag.checked) == {
        "overfitting",
        "no_improvement",
        "class_imbalance",
        "constant_features",
    }
    assert diag.scores["validation_accuracy"] > 0.85


def test_a_tree_that_memorised_noise_is_flagged_overfitting_and_no_improvement() -> None:
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    y = pd.Series(rng.integers(0, 2, 300))  # labels unrelated to X
    model = DecisionTreeClassifier(random_state=0).fit(X[:200], y[:200])
    diag = diagnose(model, X[:200], y[:200], eval_set=(X[200:], y[200:]))
    assert "overfitting" in diag.flags and "no_improvement" in diag.flags
    over = next(f for f in diag.findings if f.rule == "overfitting")
    assert over.details["training"] == 1.0 and over.details["gap"] > 0.3


def test_imbalance_and_constant_columns_are_flagged() -> None:
    X, y = _separable(400)
    y = pd.Series(np.r_[np.zeros(380, int), np.ones(20, int)])
    X = X.assign(flat=1.0, empty=np.nan)
    model = LogisticRegression().fit(X[["a", "b", "flat"]], y)
    diag = diagnose(model, X[["a", "b", "flat"]], y)
    assert set(diag.flags) >= {"class_imbalance", "constant_features"}
    assert "overfitting" not in diag.checked  # no validation set
    imbalance = next(f for f in diag.findings if f.rule == "class_imbalance")
    assert imbalance.details["counts"] == {"0": 380, "1": 20}
    assert next(f for f in diag.findings if f.rule == "constant_features").details["columns"] == [
        "flat"
    ]


def test_a_regressor_no_better_than_the_mean_is_flagged() -> None:
    rng = np.random.default_rng(2)
    X = pd.DataFrame({"a": rng.normal(size=200)})
    y = pd.Series(rng.normal(size=200))
    model = Ridge(alpha=1e6).fit(X[:150], y[:150])
    diag = diagnose(model, X[:150], y[:150], eval_set=(X[150:], y[150:]))
    assert "no_improvement" in diag.flags


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_autolog_records_curves_iterations_and_diagnostics(workspace: Workspace) -> None:
    X, y = _separable()
    with workspace.tracking.start_run("auto") as run:
        with autolog(run, eval_set=(X[300:], y[300:]), log_model=False):
            MLPClassifier(hidden_layer_sizes=(8,), max_iter=40, random_state=0).fit(
                X[:300], y[:300]
            )
    rec = workspace.tracking.get_run(run.id)
    loss = workspace.tracking.metric_history(run.id, "training_loss")
    assert len(loss) == rec.metrics["n_iter"] == 40
    assert loss[-1]["value"] < loss[0]["value"]
    assert rec.tags["diagnostics.flags"] == ""
    recorded = json.loads(rec.tags["diagnostics"])
    assert "overfitting" in recorded["checked"] and recorded["findings"] == []
    assert float(rec.tags["system.cpu_time_s"]) > 0


def test_autolog_flags_a_problem_in_the_tags(workspace: Workspace) -> None:
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"a": rng.normal(size=300), "c": 0.0})
    y = pd.Series(rng.integers(0, 2, 300))
    with workspace.tracking.start_run("auto") as run:
        with autolog(run, eval_set=(X[200:], y[200:]), log_model=False):
            DecisionTreeClassifier(random_state=0).fit(X[:200], y[:200])
    tags = workspace.tracking.get_run(run.id).tags
    assert {"overfitting", "constant_features"} <= set(tags["diagnostics.flags"].split(","))
    assert "gap" in tags["diagnostics.overfitting"]


def test_histogram_boosting_with_early_stopping_exposes_score_curves() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = _separable()
    model = HistGradientBoostingClassifier(
        max_iter=20, early_stopping=True, n_iter_no_change=50, random_state=0
    ).fit(X, y)
    curves = learning_curves(model)
    assert len(curves["training_score"]) == len(curves["validation_score"]) == 21
