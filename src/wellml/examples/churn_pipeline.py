"""The churn workload's pipelines: the first training, and retraining after drift.

``develop`` trains the three candidate algorithms (gradient boosting with hyperparameters
tuned first), compares them on the validation set, and registers the best one when it meets
the ROC AUC target (a quality gate)::

    wellml pipelines run wellml.examples.churn_pipeline:develop --param workspace=. \\
        --param train_dataset=churn-train@1 --param validation_dataset=churn-validation@1

``retrain`` is what a drift alert on the churn endpoint asks for (a retrain trigger): tune,
train, evaluate, and register the candidate only when it beats the production model on the
validation set; it can also be run by hand with the same parameters.

Every step is cached by its code, parameters and inputs, so a second run on the same dataset
versions does no work. Nothing is approved here: a person does that.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

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


CANDIDATES = ("logistic-regression", "random-forest", "gradient-boosting")
"""The algorithms ``develop`` compares; gradient boosting is tuned before it is trained."""
TUNED = "gradient-boosting"
# Gradient boosting's search in ``develop``: the names are the candidate pipeline's.
DEVELOP_SPACE: dict[str, Any] = {
    "model__learning_rate": (0.03, 0.3, "log"),
    "model__max_leaf_nodes": (8, 48),
    "model__min_samples_leaf": (10, 60),
}


def candidate_pipeline(name: str) -> Pipeline:
    """One of :data:`CANDIDATES`: imputed, scaled numbers and one-hot categoricals, then the
    algorithm (its step is ``model``).

    Raises:
        ValueError: an unknown candidate name.
    """
    models: dict[str, Any] = {
        "logistic-regression": LogisticRegression(C=1.0, max_iter=1000),
        "random-forest": RandomForestClassifier(
            n_estimators=150, min_samples_leaf=5, n_jobs=2, random_state=0
        ),
        "gradient-boosting": HistGradientBoostingClassifier(
            max_iter=200, learning_rate=0.08, early_stopping=False, random_state=0
        ),
    }
    if name not in models:
        raise ValueError(f"unknown candidate {name!r}: use {', '.join(models)}")
    numbers = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    prepare = ColumnTransformer(
        [
            ("num", numbers, list(churn.NUMERIC)),
            (
                "cat",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                list(churn.CATEGORICAL),
            ),
        ]
    )
    return Pipeline([("prepare", prepare), ("model", models[name])])


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


# --- the first training -------------------------------------------------------------------------


@step
def tune_candidate(
    data: pd.DataFrame,
    workspace: str,
    name: str,
    trials: int,
    budget_s: float,
    sample_rows: int,
    seed: int,
) -> dict[str, Any]:
    """Tune a candidate's hyperparameters on a sample of the training rows, within a budget
    of trials and seconds; each trial is a tracked run. Returns the best parameters."""
    sample = data.sample(n=min(sample_rows, len(data)), random_state=seed)
    ws = Workspace.open(workspace)
    try:
        study = ws.tuning.tune(
            candidate_pipeline(name),
            DEVELOP_SPACE,
            X=sample[list(churn.FEATURES)],
            y=sample[churn.TARGET],
            metric="roc_auc",
            n_trials=trials,
            timeout=budget_s,
            seed=seed,
            refit=False,
            experiment="churn",
            name=f"tune-{name}",
        )
        if study.best_params is None or study.best_value is None:
            raise RuntimeError("no tuning trial completed")
        return {
            "params": dict(study.best_params),
            "cv_roc_auc": float(study.best_value),
            "study": study.id,
        }
    finally:
        ws.close()


@step
def train_candidate(
    workspace: str,
    train_dataset: str,
    validation_dataset: str,
    name: str,
    tuned: dict[str, Any],
) -> dict[str, Any]:
    """Fit one candidate (with its tuned parameters, if any) on the training rows in a tracked
    run that logs validation metrics and the model; return the run and its figures."""
    from wellml.tracking.autolog import autolog

    ws = Workspace.open(workspace)
    try:
        train = ws.data.get(train_dataset)
        validation = ws.data.get(validation_dataset)
        columns = [*churn.FEATURES, churn.TARGET]
        data, held = ws.data.load(train, columns=columns), ws.data.load(validation, columns=columns)
        params = dict(tuned.get("params") or {})
        tags = {"candidate": name}
        if tuned.get("study"):
            tags["tuning.study"] = tuned["study"]
        with ws.tracking.start_run("churn", name=name, tags=tags) as run:
            run.log_input(train, "train")
            run.log_input(validation, "validation")
            model = candidate_pipeline(name).set_params(**params)
            eval_set = (held[list(churn.FEATURES)], held[churn.TARGET])
            with autolog(run, eval_set=eval_set):
                model.fit(data[list(churn.FEATURES)], data[churn.TARGET])
            metrics = run.record().metrics
        validation_metrics = {
            k.removeprefix("val_"): float(v)
            for k, v in metrics.items()
            if k.startswith("val_") and k != "val_loss" and v is not None
        }
        return {
            "candidate": name,
            "run_id": run.id,
            "params": params,
            "roc_auc": validation_metrics.get("roc_auc", 0.0),
            "metrics": validation_metrics,
        }
    finally:
        ws.close()


@step
def compare(
    logistic: dict[str, Any], forest: dict[str, Any], boosting: dict[str, Any]
) -> dict[str, Any]:
    """The candidate with the best validation ROC AUC, and every candidate's score."""
    ranked = sorted((logistic, forest, boosting), key=lambda c: -c["roc_auc"])
    return {
        "best": ranked[0],
        "scores": {c["candidate"]: c["roc_auc"] for c in (logistic, forest, boosting)},
    }


@gate
def meets_target(comparison: dict[str, Any], target_auc: float) -> GateResult:
    """Pass only if the best candidate reaches the ROC AUC the business case asks for."""
    best = comparison["best"]
    return GateResult.beats(best["roc_auc"], target_auc, metric="roc_auc")


@step
def register_best(
    comparison: dict[str, Any], workspace: str, train_dataset: str, validation_dataset: str
) -> str:
    """Register the best candidate's model (logged by its run), with its model card; return
    the new version's reference. Approval is a person's decision, made outside the pipeline."""
    from wellml.registry.packaging import load_model

    best = comparison["best"]
    ws = Workspace.open(workspace)
    try:
        run = ws.tracking.get_run(best["run_id"])
        model = load_model(ws.artifacts.get_bytes(run.artifacts["model.skops"]["digest"]))
        data = ws.data.load(train_dataset, columns=[*churn.FEATURES, churn.TARGET])
        scores = comparison["scores"]
        card = {
            "intended_use": "Rank current subscribers by churn risk for retention offers; "
            "not for pricing or credit decisions.",
            "training_data": [train_dataset],
            "evaluation_data": [validation_dataset],
            "metrics": best["metrics"],
            "limitations": "Trained on six months of snapshots; re-validate after price "
            "changes or contract-mix shifts.",
            "ethical_considerations": "Senior status and gender are not model inputs' targets; "
            "review offer rates by segment before use.",
            "kpis": ["roc_auc", "retention_rate"],
            "selection": f"best validation ROC AUC of {len(scores)} candidates: "
            + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
            + (f"; {TUNED} tuned with Optuna first" if TUNED in scores else ""),
        }
        mv = ws.registry.register(
            MODEL,
            model,
            X=data[list(churn.FEATURES)],
            y=data[churn.TARGET],
            run=run,
            card=card,
            metrics=best["metrics"],
            owner="ml-lead",
            description="Churn risk classifier",
        )
        return mv.ref
    finally:
        ws.close()


@pipeline
def develop(
    workspace: str,
    train_dataset: str,
    validation_dataset: str,
    trials: int = 4,
    budget_s: float = 60.0,
    sample_rows: int = 1500,
    seed: int = 0,
    target_auc: float = 0.8,
) -> None:
    """Train three candidates (gradient boosting tuned first), compare them on the
    validation set, and register the best if it reaches the ROC AUC target."""
    data = load(workspace, train_dataset)
    tuned = tune_candidate(data, workspace, TUNED, trials, budget_s, sample_rows, seed)
    trained = {
        name: train_candidate.with_options(name=f"train_{name.replace('-', '_')}")(
            workspace, train_dataset, validation_dataset, name, tuned if name == TUNED else {}
        )
        for name in CANDIDATES
    }
    comparison = compare(
        trained["logistic-regression"], trained["random-forest"], trained["gradient-boosting"]
    )
    passed = meets_target(comparison, target_auc)
    with after(passed):
        register_best(comparison, workspace, train_dataset, validation_dataset)
