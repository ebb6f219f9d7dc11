"""The churn workload's retraining pipeline: tune, train, evaluate, gate, register.

A drift alert on the churn endpoint asks for this pipeline (a retrain trigger); it can also be
run by hand::

    wellml pipelines run wellml.examples.churn_pipeline:retrain \\
        --param workspace=. --param train=churn-train@1 --param validation=churn-validation@1

Every step is cached by its code, parameters and inputs, so a second run on the same dataset
versions does no work. The candidate is registered only when it beats the production model
on the validation set (a quality gate), and it is never approved here: a person does that.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from wellml.examples import churn
from wellml.pipelines import GateResult, after, gate, pipeline, step
from wellml.workspace import Workspace

MODEL = "churn"
# The search is small on purpose: the demo shows the mechanism in seconds, not a thorough search.
SEARCH_SPACE: dict[str, Any] = {
    "model__learning_rate": (0.03, 0.3, "log"),
    "model__max_leaf_nodes": (8, 32),
    "model__l2_regularization": (1e-4, 1.0, "log"),
}


def candidate() -> Pipeline:
    """The candidate: one-hot categoricals, then histogram gradient boosting."""
    encode = ColumnTransformer(
        [("categorical", OneHotEncoder(handle_unknown="ignore"), list(churn.CATEGORICAL))],
        remainder="passthrough",
    )
    model = HistGradientBoostingClassifier(max_iter=80, random_state=0)
    return Pipeline([("encode", encode), ("model", model)])


@step
def load(workspace: str, dataset: str) -> pd.DataFrame:
    """A dataset version's rows (the reference pins the version, so the cache is exact)."""
    ws = Workspace.open(workspace)
    try:
        return ws.data.load(dataset, columns=[*churn.FEATURES, churn.TARGET])
    finally:
        ws.close()


@step
def tune(
    data: pd.DataFrame, workspace: str, trials: int, sample_rows: int, seed: int
) -> dict[str, Any]:
    """Search the candidate's hyperparameters on a sample (start small); each trial is a
    tracked run. The chosen parameters are then fitted on all rows by ``train``."""
    sample = data.sample(n=min(sample_rows, len(data)), random_state=seed)
    ws = Workspace.open(workspace)
    try:
        study = ws.tuning.tune(
            candidate(),
            SEARCH_SPACE,
            X=sample[list(churn.FEATURES)],
            y=sample[churn.TARGET],
            metric="roc_auc",
            n_trials=trials,
            seed=seed,
            refit=False,
            experiment="churn-retraining",
            name="churn-retrain",
        )
        if study.best_params is None or study.best_value is None:
            raise RuntimeError("no tuning trial completed")
        return {"params": dict(study.best_params), "cv_roc_auc": float(study.best_value)}
    finally:
        ws.close()


@step
def train(data: pd.DataFrame, tuned: dict[str, Any]) -> Pipeline:
    """Fit the candidate with the tuned parameters on all training rows."""
    model = candidate().set_params(**tuned["params"])
    return model.fit(data[list(churn.FEATURES)], data[churn.TARGET])


@step
def evaluate(model: Pipeline, validation: pd.DataFrame) -> dict[str, float]:
    """Validation ROC AUC of the candidate."""
    scores = model.predict_proba(validation[list(churn.FEATURES)])[:, 1]
    return {
        "roc_auc": float(roc_auc_score(validation[churn.TARGET], scores)),
        "rows": float(len(validation)),
    }


@gate
def beats_production(
    metrics: dict[str, float], validation: pd.DataFrame, workspace: str, margin: float
) -> GateResult:
    """Pass only if the candidate beats the production model on the same validation rows."""
    ws = Workspace.open(workspace)
    try:
        production = ws.registry.load(f"{MODEL}@production")
    finally:
        ws.close()
    scores = production.predict_proba(validation[list(churn.FEATURES)])[:, 1]
    current = float(roc_auc_score(validation[churn.TARGET], scores))
    return GateResult.beats(metrics["roc_auc"], current, margin=margin, metric="roc_auc")


@step
def register(
    model: Pipeline, metrics: dict[str, float], train_data: pd.DataFrame, workspace: str
) -> str:
    """Register the candidate (pending approval) with a model card; return its reference."""
    ws = Workspace.open(workspace)
    try:
        X = train_data[list(churn.FEATURES)]
        mv = ws.registry.register(
            MODEL,
            model,
            X=X,
            y=train_data[churn.TARGET],
            metrics={"roc_auc": metrics["roc_auc"]},
            card={
                "intended_use": "Rank current subscribers by churn risk for retention offers.",
                "metrics": {"roc_auc": metrics["roc_auc"]},
                "selection": "retrained by the drift-triggered pipeline; tuned with Optuna; "
                "passed the gate against the production model on the validation set",
                "kpis": ["roc_auc", "retention_rate"],
            },
            owner="ml-lead",
            description="Churn risk classifier, retrained after drift (pending approval)",
        )
        return mv.ref
    finally:
        ws.close()


@pipeline
def retrain(
    workspace: str,
    train_dataset: str,
    validation_dataset: str,
    trials: int = 6,
    sample_rows: int = 4000,
    seed: int = 0,
    margin: float = 0.0,
) -> None:
    """Tune and train a churn candidate; register it only if it beats production."""
    data = load(workspace, train_dataset)
    validation = load(workspace, validation_dataset)
    tuned = tune(data, workspace, trials, sample_rows, seed)
    model = train(data, tuned)
    metrics = evaluate(model, validation)
    passed = beats_production(metrics, validation, workspace, margin)
    with after(passed):
        register(model, metrics, data, workspace)
